//! List Blobs: a container's blobs, flat or hierarchical (`delimiter`), in pages,
//! with what `include` asks for (metadata, tags, snapshots).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use keyless_store::{Blob, Page, Retained, RetainedKind};

use super::Ctx;
use super::blob::container_exists;
use super::container::max_results;
use super::error::StorageError;
use super::xml::{escape, http_date};

/// A listed blob's state elements besides tier and lease: its tag count, an
/// append blob's seal, a page blob's sequence number.
fn state_xml(b: &Blob) -> String {
    let mut out = String::new();
    if !b.state.tags.is_empty() {
        out.push_str(&format!("<TagCount>{}</TagCount>", b.state.tags.len()));
    }
    if b.state.sealed {
        out.push_str("<Sealed>true</Sealed>");
    }
    if b.state.kind == keyless_store::BlobKind::PageBlob {
        out.push_str(&format!(
            "<x-ms-blob-sequence-number>{}</x-ms-blob-sequence-number>",
            b.state.sequence_number
        ));
    }
    out
}

/// What `include` adds to each listed blob.
#[derive(Debug, Clone, Copy)]
struct Include {
    metadata: bool,
    tags: bool,
    copy: bool,
}

/// What a listed entry is besides a blob: a snapshot, a version, the current
/// version, and whether it is deleted (when, and until when).
#[derive(Debug, Clone, Copy, Default)]
struct Entry<'a> {
    snapshot: Option<&'a str>,
    version: Option<&'a str>,
    current: bool,
    deleted: Option<(i64, i64)>,
}

impl Entry<'_> {
    fn xml(&self) -> String {
        let mut out = String::new();
        if self.deleted.is_some() {
            out.push_str("<Deleted>true</Deleted>");
        }
        if let Some(s) = self.snapshot {
            out.push_str(&format!("<Snapshot>{s}</Snapshot>"));
        }
        if let Some(v) = self.version {
            out.push_str(&format!("<VersionId>{v}</VersionId>"));
        }
        if self.current {
            out.push_str("<IsCurrentVersion>true</IsCurrentVersion>");
        }
        out
    }

    fn properties_xml(&self, now: i64) -> String {
        self.deleted.map_or_else(String::new, |(at, until)| {
            let days = ((until - now).max(0) + 24 * 3600 - 1) / (24 * 3600);
            let days = days.max(1);
            format!(
                "<DeletedTime>{}</DeletedTime><RemainingRetentionDays>{days}</RemainingRetentionDays>",
                http_date(at)
            )
        })
    }
}

/// A blob (or one of its snapshots or versions) as a listing shows it, with its
/// metadata and tags when `include` (metadata, tags) asks for them.
/// `now` is in milliseconds (leases), `secs` in seconds (retention).
fn listed_xml(b: &Blob, entry: Entry<'_>, include: Include, now: i64, secs: i64) -> String {
    let Include {
        metadata: with_metadata,
        tags: with_tags,
        copy: with_copy,
    } = include;
    let p = &b.properties;
    let opt = |v: &Option<String>| v.as_deref().map(escape).unwrap_or_default();
    let mut xml = format!(
        "<Blob><Name>{}</Name>{}<Properties><Creation-Time>{}</Creation-Time><Last-Modified>{}</Last-Modified><Etag>{}</Etag><Content-Length>{}</Content-Length><Content-Type>{}</Content-Type><Content-Encoding>{}</Content-Encoding><Content-Language>{}</Content-Language><Content-CRC64 /><Content-MD5>{}</Content-MD5><Cache-Control>{}</Cache-Control><Content-Disposition>{}</Content-Disposition><BlobType>{}</BlobType>{}{}<ServerEncrypted>true</ServerEncrypted>{}{}</Properties>",
        escape(&b.name),
        entry.xml(),
        http_date(b.created_at),
        http_date(b.last_modified),
        // Azure lists a blob's ETag without the quotes its header carries.
        escape(b.etag.trim_matches('"')),
        b.size,
        p.content_type
            .as_deref()
            .map(escape)
            .unwrap_or_else(|| "application/octet-stream".into()),
        opt(&p.content_encoding),
        opt(&p.content_language),
        p.content_md5
            .as_ref()
            .map(|m| STANDARD.encode(m))
            .unwrap_or_default(),
        opt(&p.cache_control),
        opt(&p.content_disposition),
        b.state.kind.as_str(),
        super::tier::xml(b),
        super::lease::xml(b.state.lease.as_ref(), now),
        state_xml(b),
        entry.properties_xml(secs),
    );
    if with_copy {
        // Inside `<Properties>`, before it closes.
        if let Some(at) = xml.rfind("</Properties>") {
            xml.insert_str(at, &super::copy::xml(b));
        }
    }
    // A blob without metadata has no element: the SDKs read an empty one as
    // "no metadata known" (`None`) rather than none set (`{}`).
    if with_metadata && !b.metadata.is_empty() {
        xml.push_str("<Metadata>");
        for (k, v) in &b.metadata {
            xml.push_str(&format!("<{k}>{}</{k}>", escape(v)));
        }
        xml.push_str("</Metadata>");
    }
    if with_tags && !b.state.tags.is_empty() {
        xml.push_str(&super::tags::to_xml(&b.state.tags));
    }
    xml.push_str("</Blob>");
    xml
}

/// What a listing shows of a name that has staged blocks and no blob.
fn uncommitted(ctx: &Ctx, name: &str, now: i64) -> Blob {
    Blob {
        account: ctx.account.name.clone(),
        container: ctx.container.clone(),
        name: name.to_owned(),
        etag: String::new(),
        created_at: now,
        last_modified: now,
        size: 0,
        content: keyless_store::Content::Inline(bytes::Bytes::new()),
        properties: keyless_store::BlobProperties::default(),
        metadata: Vec::new(),
        committed_blocks: Vec::new(),
        is_dir: false,
        acl: None,
        state: keyless_store::BlobState::default(),
    }
}

/// List Blobs, flat or hierarchical (`delimiter`), in pages of `maxresults`.
pub(crate) async fn list(ctx: &Ctx) -> Result<Response, StorageError> {
    container_exists(ctx).await?;
    let prefix = ctx.param("prefix").unwrap_or_default();
    let delimiter = ctx.param("delimiter").filter(|d| !d.is_empty());
    let marker = ctx.param("marker").unwrap_or_default();
    let max = max_results(ctx)?;
    let include = ctx
        .param("include")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let with_metadata = include.split(',').any(|i| i == "metadata");
    let with_tags = include.split(',').any(|i| i == "tags");
    let with_snapshots = include.split(',').any(|i| i == "snapshots");
    let with_versions = include.split(',').any(|i| i == "versions");
    let with_deleted = include.split(',').any(|i| i == "deleted");
    let with_uncommitted = include.split(',').any(|i| i == "uncommittedblobs");
    let include_of = Include {
        metadata: with_metadata,
        tags: with_tags,
        copy: include.split(',').any(|i| i == "copy"),
    };
    // Names with no current blob are listed for their versions or their
    // deleted state, when asked.
    let mut kept_kinds = Vec::new();
    if with_versions {
        kept_kinds.push(RetainedKind::Version);
    }
    if with_deleted {
        kept_kinds.push(RetainedKind::Deleted);
    }
    // `startFrom` lists from a name on, inclusively: the cursor (exclusive) starts
    // at a name before it, and the names still before it are skipped.
    let start_from = ctx.param("startFrom").unwrap_or_default();

    enum Item {
        Blob(String, Option<Box<Blob>>),
        Prefix(String),
    }
    let skip_past = |p: &str| format!("{p}\u{10FFFF}");
    let mut cursor = match delimiter {
        Some(d) if marker.ends_with(d) => skip_past(marker),
        _ => marker.to_owned(),
    };
    if let Some((last, _)) = start_from.char_indices().last() {
        let before = start_from.get(..last).unwrap_or_default();
        if before > cursor.as_str() {
            cursor = before.to_owned();
        }
    }
    let mut items: Vec<Item> = Vec::new();
    let mut more = false;
    let listed = prefix.rsplit_once('/').map_or("", |(d, _)| d);
    let mut view = super::hns::ListingView::new(ctx, listed);
    const BATCH: usize = 1000;
    'outer: loop {
        let page = || Page {
            prefix,
            marker: &cursor,
            max: BATCH,
        };
        let store = &ctx.state.store;
        let blobs = store
            .blobs(&ctx.account.name, &ctx.container, page())
            .await?;
        let kept = if kept_kinds.is_empty() || ctx.account.hns {
            Vec::new()
        } else {
            store
                .retained_names(
                    &ctx.account.name,
                    &ctx.container,
                    page(),
                    &kept_kinds,
                    with_deleted,
                )
                .await?
        };
        let staged = if with_uncommitted {
            store
                .staged_names(&ctx.account.name, &ctx.container, page())
                .await?
        } else {
            Vec::new()
        };
        // The sources are merged up to the first name one of them may not have
        // given whole; the next round starts after it.
        let mut frontier: Option<String> = None;
        for full_last in [
            (blobs.len() == BATCH)
                .then(|| blobs.last().map(|b| b.name.clone()))
                .flatten(),
            (kept.len() == BATCH)
                .then(|| kept.last().cloned())
                .flatten(),
            (staged.len() == BATCH)
                .then(|| staged.last().cloned())
                .flatten(),
        ]
        .into_iter()
        .flatten()
        {
            if frontier.as_ref().is_none_or(|f| full_last < *f) {
                frontier = Some(full_last);
            }
        }
        let mut batch: std::collections::BTreeMap<String, Option<Box<Blob>>> = blobs
            .into_iter()
            .map(|b| (b.name.clone(), Some(Box::new(b))))
            .collect();
        for name in kept.into_iter().chain(staged) {
            batch.entry(name).or_insert(None);
        }
        if let Some(f) = &frontier {
            batch.retain(|name, _| name <= f);
        }
        if batch.is_empty() {
            break;
        }
        for (name, b) in batch {
            if name.as_str() < start_from {
                cursor.clone_from(&name);
                continue;
            }
            if items.len() == max {
                more = true;
                break 'outer;
            }
            let rest = name.get(prefix.len()..).unwrap_or_default();
            if let Some(d) = delimiter
                && let Some(at) = rest.find(d)
            {
                let p = format!("{prefix}{}", rest.get(..at + d.len()).unwrap_or_default());
                cursor = skip_past(&p);
                items.push(Item::Prefix(p));
                continue 'outer;
            }
            cursor.clone_from(&name);
            if let Some(v) = view.as_mut()
                && !v.shows(&name).await?
            {
                continue;
            }
            items.push(Item::Blob(name, b));
        }
        if frontier.is_none() {
            break;
        }
    }
    let next = if more {
        items.last().map(|i| match i {
            Item::Blob(name, _) => name.clone(),
            Item::Prefix(p) => p.clone(),
        })
    } else {
        None
    };
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"{}/{}/\" ContainerName=\"{}\">",
        escape(&ctx.state.urls.storage),
        escape(&ctx.account.name),
        escape(&ctx.container)
    );
    if !prefix.is_empty() {
        xml.push_str(&format!("<Prefix>{}</Prefix>", escape(prefix)));
    }
    if !marker.is_empty() {
        xml.push_str(&format!("<Marker>{}</Marker>", escape(marker)));
    }
    if ctx.param("maxresults").is_some() {
        xml.push_str(&format!("<MaxResults>{max}</MaxResults>"));
    }
    if let Some(d) = delimiter {
        xml.push_str(&format!("<Delimiter>{}</Delimiter>", escape(d)));
    }
    xml.push_str("<Blobs>");
    let now = super::lease::now(&ctx.state);
    for item in &items {
        match item {
            Item::Prefix(p) => xml.push_str(&format!(
                "<BlobPrefix><Name>{}</Name></BlobPrefix>",
                escape(p)
            )),
            Item::Blob(name, current) => {
                let kept = if (with_snapshots || !kept_kinds.is_empty()) && !ctx.account.hns {
                    ctx.state
                        .store
                        .retained(&ctx.account.name, &ctx.container, name)
                        .await?
                } else {
                    Vec::new()
                };
                let secs = ctx.state.now();
                let shown = |r: &&Retained| {
                    r.deleted
                        .is_none_or(|(_, until)| with_deleted && until >= secs)
                };
                // A blob's snapshots come first, oldest first; deleted states
                // of a blob that was written again count as its snapshots.
                let latest_deleted = kept
                    .iter()
                    .rfind(|r| r.kind == RetainedKind::Deleted && shown(r))
                    .filter(|_| current.is_none());
                for r in kept.iter().filter(shown) {
                    let as_snapshot = r.kind == RetainedKind::Snapshot
                        || (r.kind == RetainedKind::Deleted
                            && latest_deleted.is_none_or(|l| l.id != r.id));
                    if as_snapshot && with_snapshots {
                        let entry = Entry {
                            snapshot: Some(&r.id),
                            deleted: r.deleted,
                            ..Entry::default()
                        };
                        xml.push_str(&listed_xml(&r.blob, entry, include_of, now, secs));
                    }
                }
                if with_versions {
                    for r in kept
                        .iter()
                        .filter(shown)
                        .filter(|r| r.kind == RetainedKind::Version)
                    {
                        let entry = Entry {
                            version: Some(&r.id),
                            deleted: r.deleted,
                            ..Entry::default()
                        };
                        xml.push_str(&listed_xml(&r.blob, entry, include_of, now, secs));
                    }
                }
                if let Some(r) = latest_deleted {
                    let entry = Entry {
                        deleted: r.deleted,
                        ..Entry::default()
                    };
                    xml.push_str(&listed_xml(&r.blob, entry, include_of, now, secs));
                }
                if let Some(b) = current {
                    let entry = Entry {
                        version: b.state.version_id.as_deref(),
                        current: b.state.version_id.is_some(),
                        ..Entry::default()
                    };
                    xml.push_str(&listed_xml(b, entry, include_of, now, secs));
                } else if with_uncommitted && kept.is_empty() {
                    // Staged blocks and nothing committed: an empty block blob
                    // as far as the listing goes.
                    let placeholder = uncommitted(ctx, name, secs);
                    xml.push_str(&listed_xml(
                        &placeholder,
                        Entry::default(),
                        include_of,
                        now,
                        secs,
                    ));
                }
            }
        }
    }
    xml.push_str("</Blobs>");
    xml.push_str(&format!(
        "<NextMarker>{}</NextMarker></EnumerationResults>",
        next.as_deref().map(escape).unwrap_or_default()
    ));
    Ok(([(header::CONTENT_TYPE, "application/xml")], xml).into_response())
}
