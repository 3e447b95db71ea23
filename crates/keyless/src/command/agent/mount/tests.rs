use super::cache::{Block, Lru};
use super::*;

#[test]
fn a_range_of_a_block_is_a_slice_of_it_cut_to_its_end() {
    let b = Block(bytes::Bytes::from_static(b"abcdefghij"));
    let range = |from, to| String::from_utf8(b.range(from, to).to_vec()).unwrap_or_default();
    assert_eq!(range(0, 10), "abcdefghij");
    assert_eq!(range(2, 8), "cdefgh");
    assert_eq!(range(9, 10), "j");
    assert_eq!(range(5, 5), "");
    assert_eq!(range(8, 20), "ij");
    assert_eq!(range(12, 20), "");
}

#[test]
fn the_cache_drops_the_least_recently_used_blocks_to_stay_in_its_budget() {
    let mut lru: Lru<u8> = Lru::new(10);
    assert!(lru.insert((1, 0), 4, 0).is_empty());
    assert!(lru.insert((1, 1), 4, 1).is_empty());
    // Using block 0 makes block 1 the oldest.
    assert_eq!(lru.get((1, 0)), Some(0));
    assert_eq!(lru.insert((2, 0), 4, 2), vec![(1, 1)]);
    assert_eq!(lru.get((1, 1)), None);
    assert!(lru.contains((1, 0)) && lru.contains((2, 0)));
    assert_eq!(lru.used, 8);
    // A file changed: all its blocks go.
    assert_eq!(lru.remove_file(1), vec![(1, 0)]);
    assert_eq!(lru.used, 4);
    // Inserting a block again counts it once.
    assert!(lru.insert((2, 0), 6, 3).is_empty());
    assert_eq!((lru.used, lru.get((2, 0))), (6, Some(3)));
}

#[test]
fn an_access_expires_when_its_token_or_sas_says() {
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(br#"{"exp":1790000000}"#);
    assert_eq!(
        token_expiry(&format!("Bearer h.{payload}.s")),
        Some(1_790_000_000)
    );
    assert_eq!(token_expiry("Basic abc"), None);
    assert_eq!(
        sas_expiry("sp=rl&st=2026-12-04T10%3A00%3A00Z&se=2026-12-04T11%3A00%3A00Z&sr=c&sig=x"),
        Some(1_796_382_000)
    );
    assert_eq!(sas_expiry("sp=rl&sig=x"), None);
}

#[test]
fn blob_names_are_encoded_segment_by_segment_and_odd_names_refused() {
    assert_eq!(encode_blob("a dir/é.csv"), "a%20dir/%C3%A9%2Ecsv");
    for bad in ["", ".", "..", "a/b"] {
        assert!(!valid_name(bad), "{bad}");
    }
    assert!(valid_name("model.pkl"));
}

#[test]
fn a_files_blob_is_its_path_under_the_ports_prefix() {
    let now = SystemTime::UNIX_EPOCH;
    let mut tree = Tree {
        nodes: HashMap::new(),
        next: 2,
    };
    tree.nodes.insert(
        1,
        Node {
            parent: 1,
            name: String::new(),
            port: None,
            kind: Kind::Dir(BTreeMap::new()),
            mtime: now,
        },
    );
    let outputs = tree.dir(1, "outputs", None, now);
    let port = tree.dir(outputs, "model", Some(0), now);
    let deep = tree.dir(port, "deep", Some(0), now);
    let file = tree.file(deep, "w.bin", 0, FileState::default(), now);
    assert!(tree.is_port_root(port) && !tree.is_port_root(deep));
    assert_eq!(tree.rel(file), "deep/w.bin");
    assert_eq!(tree.files_under(port), vec![file]);
    assert_eq!(tree.unlink(deep, "w.bin"), Some(file));
    assert!(tree.files_under(port).is_empty());
}
