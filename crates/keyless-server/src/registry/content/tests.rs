//! The registry's parsing of names, digests and ranges.

use super::{parse_digest, range, valid_repository, valid_tag};

#[test]
fn repository_names_follow_the_distribution_grammar() {
    for ok in ["app", "team/app", "a.b-c_d/e__f", "x1/y2/z3"] {
        assert!(valid_repository(ok), "{ok}");
    }
    for bad in [
        "", "App", "-a", "a-", "a//b", "/a", "a/", "a..b", "a___b", "a/../b",
    ] {
        assert!(!valid_repository(bad), "{bad}");
    }
}

#[test]
fn tags_and_digests_are_checked() {
    assert!(valid_tag("v1.0_rc-2"));
    assert!(!valid_tag(".hidden"));
    assert!(!valid_tag(&"a".repeat(129)));
    let good = format!("sha256:{}", "ab".repeat(32));
    assert!(parse_digest(&good).is_ok());
    assert!(parse_digest("sha256:AB").is_err());
    assert!(parse_digest(&format!("sha512:{}", "ab".repeat(64))).is_err());
}

#[test]
fn ranges_are_clamped_to_the_blob() {
    assert_eq!(range("bytes=0-9", 100), Some((0, 10)));
    assert_eq!(range("bytes=90-", 100), Some((90, 10)));
    assert_eq!(range("bytes=90-200", 100), Some((90, 10)));
    assert_eq!(range("bytes=100-", 100), None);
    assert_eq!(range("bytes=5-4", 100), None);
    assert_eq!(range("bytes=0-", 0), None);
}
