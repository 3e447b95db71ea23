//! List Blobs: a container's blobs, flat or hierarchical (`delimiter`), in pages,
//! with what `include` asks for (metadata, tags, snapshots).

use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use keyless_store::{Blob, Page};

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

/// A blob (or one of its snapshots) as a listing shows it, with its metadata
/// and tags when `include` (metadata, tags) asks for them.
fn listed_xml(b: &Blob, snapshot: Option<&str>, include: (bool, bool), now: i64) -> String {
    let (with_metadata, with_tags) = include;
    let p = &b.properties;
    let opt = |v: &Option<String>| v.as_deref().map(escape).unwrap_or_default();
    let mut xml = format!(
        "<Blob><Name>{}</Name>{}<Properties><Creation-Time>{}</Creation-Time><Last-Modified>{}</Last-Modified><Etag>{}</Etag><Content-Length>{}</Content-Length><Content-Type>{}</Content-Type><Content-Encoding>{}</Content-Encoding><Content-Language>{}</Content-Language><Content-CRC64 /><Content-MD5>{}</Content-MD5><Cache-Control>{}</Cache-Control><Content-Disposition>{}</Content-Disposition><BlobType>{}</BlobType>{}{}<ServerEncrypted>true</ServerEncrypted>{}</Properties>",
        escape(&b.name),
        snapshot
            .map(|s| format!("<Snapshot>{s}</Snapshot>"))
            .unwrap_or_default(),
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
    );
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

/// List Blobs, flat or hierarchical (`delimiter`), in pages of `maxresults`.
pub(crate) async fn list(ctx: &Ctx) -> Result<Response, StorageError> {
    container_exists(ctx).await?;
    let prefix = ctx.param("prefix").unwrap_or_default();
    let delimiter = ctx.param("delimiter").filter(|d| !d.is_empty());
    let marker = ctx.param("marker").unwrap_or_default();
    let max = max_results(ctx)?;
    let include = ctx.param("include").unwrap_or_default();
    let with_metadata = include.split(',').any(|i| i == "metadata");
    let with_tags = include.split(',').any(|i| i == "tags");
    let with_snapshots = include.split(',').any(|i| i == "snapshots");
    let include_of = (with_metadata, with_tags);
    // `startFrom` lists from a name on, inclusively: the cursor (exclusive) starts
    // at a name before it, and the names still before it are skipped.
    let start_from = ctx.param("startFrom").unwrap_or_default();

    enum Item {
        Blob(Box<Blob>),
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
    'outer: loop {
        let batch = ctx
            .state
            .store
            .blobs(
                &ctx.account.name,
                &ctx.container,
                Page {
                    prefix,
                    marker: &cursor,
                    max: 1000,
                },
            )
            .await?;
        if batch.is_empty() {
            break;
        }
        let full = batch.len() == 1000;
        for b in batch {
            if b.name.as_str() < start_from {
                cursor.clone_from(&b.name);
                continue;
            }
            if items.len() == max {
                more = true;
                break 'outer;
            }
            let rest = b.name.get(prefix.len()..).unwrap_or_default();
            if let Some(d) = delimiter
                && let Some(at) = rest.find(d)
            {
                let p = format!("{prefix}{}", rest.get(..at + d.len()).unwrap_or_default());
                cursor = skip_past(&p);
                items.push(Item::Prefix(p));
                continue 'outer;
            }
            cursor.clone_from(&b.name);
            if let Some(v) = view.as_mut()
                && !v.shows(&b.name).await?
            {
                continue;
            }
            items.push(Item::Blob(Box::new(b)));
        }
        if !full {
            break;
        }
    }
    let next = if more {
        items.last().map(|i| match i {
            Item::Blob(b) => b.name.clone(),
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
            Item::Blob(b) => {
                if with_snapshots && !ctx.account.hns {
                    // A blob's snapshots come before it, oldest first.
                    for (snapshot, shot) in ctx
                        .state
                        .store
                        .snapshots(&ctx.account.name, &ctx.container, &b.name)
                        .await?
                    {
                        xml.push_str(&listed_xml(&shot, Some(&snapshot), include_of, now));
                    }
                }
                xml.push_str(&listed_xml(b, None, include_of, now));
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
