//! Find Blobs by Tags, on the account or on one container.

use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::Ctx;
use super::container::max_results;
use super::error::StorageError;
use super::tags;
use super::xml::escape;

/// `GET /{account}?comp=blobs&where=…` and `GET /{account}/{container}?restype=container&comp=blobs&where=…`:
/// the blobs whose tags satisfy the expression, by container then name, each with
/// the tags the expression names. The marker is `container/name` of the last one.
pub(crate) async fn run(ctx: &Ctx) -> Result<Response, StorageError> {
    tags::refuse_on_hns(ctx)?;
    let on_account = ctx.container.is_empty();
    let text = ctx.param("where").ok_or_else(|| {
        StorageError::bad(
            "MissingRequiredQueryParameter",
            "A query parameter that's mandatory for this request is not specified: where",
        )
    })?;
    let expr = tags::filter(text)?;
    if !on_account {
        super::blob::container_exists(ctx).await?;
    }
    let max = max_results(ctx)?;
    let marker = ctx.param("marker").unwrap_or_default();
    let (mut after_container, mut after_name) = if marker.is_empty() {
        (String::new(), String::new())
    } else {
        let (c, n) = marker.split_once('/').ok_or_else(|| {
            StorageError::bad(
                "InvalidQueryParameterValue",
                format!("the marker `{marker}` is not one this server gave"),
            )
        })?;
        (c.to_owned(), n.to_owned())
    };
    let container = (!on_account).then_some(ctx.container.as_str());
    let named = expr.named_keys();
    let mut found = Vec::new();
    let mut next = None;
    'pages: loop {
        let page = ctx
            .state
            .store
            .tagged_blobs(
                &ctx.account.name,
                container,
                (&after_container, &after_name),
                1000,
            )
            .await?;
        let full = page.len() == 1000;
        for b in page {
            after_container.clone_from(&b.container);
            after_name.clone_from(&b.name);
            if !expr.matches(&b.container, &b.state.tags) {
                continue;
            }
            if found.len() == max {
                next = found
                    .last()
                    .map(|(c, n, _): &(String, String, _)| format!("{c}/{n}"));
                break 'pages;
            }
            let shown: Vec<(String, String)> = b
                .state
                .tags
                .into_iter()
                .filter(|(k, _)| named.contains(&k.as_str()))
                .collect();
            found.push((b.container, b.name, shown));
        }
        if !full {
            break;
        }
    }
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"{}/{}/\"><Where>{}</Where><Blobs>",
        escape(&ctx.state.urls.storage),
        escape(&ctx.account.name),
        escape(text)
    );
    for (c, n, shown) in &found {
        xml.push_str(&format!(
            "<Blob><Name>{}</Name><ContainerName>{}</ContainerName>{}</Blob>",
            escape(n),
            escape(c),
            tags::to_xml(shown)
        ));
    }
    xml.push_str(&format!(
        "</Blobs><NextMarker>{}</NextMarker></EnumerationResults>",
        next.as_deref().map(escape).unwrap_or_default()
    ));
    Ok(([(header::CONTENT_TYPE, "application/xml")], xml).into_response())
}
