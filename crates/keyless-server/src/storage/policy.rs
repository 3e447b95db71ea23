//! Get and Set Container ACL: a container's stored access policies (what a
//! service SAS may name with `si=`, and revoke by their removal) and its public
//! access level.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use quick_xml::Reader;
use quick_xml::events::Event;

use keyless_store::AccessPolicy;

use super::Ctx;
use super::blob::insert;
use super::conditions::Conditions;
use super::error::StorageError;
use super::xml::{escape, http_date, parse_iso8601};

/// Azure's limit on a container's stored access policies.
const MAX_POLICIES: usize = 5;
/// The permission letters a policy may hold.
const LETTERS: &str = "racwdxyltfmeop";

fn invalid(why: impl std::fmt::Display) -> StorageError {
    StorageError::bad(
        "InvalidXmlDocument",
        format!("XML specified is not syntactically valid: {why}"),
    )
}

/// Parses and checks a `<SignedIdentifiers>` body.
pub(crate) fn parse(body: &[u8]) -> Result<Vec<AccessPolicy>, StorageError> {
    let mut reader = Reader::from_reader(body);
    let mut out: Vec<AccessPolicy> = Vec::new();
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut current: Option<AccessPolicy> = None;
    let mut buf = Vec::new();
    loop {
        match reader
            .read_event_into(&mut buf)
            .map_err(|e| invalid(e.to_string()))?
        {
            Event::Start(e) => {
                if e.name().as_ref() == b"SignedIdentifier" {
                    current = Some(AccessPolicy::default());
                }
                path.push(e.name().as_ref().to_vec());
            }
            Event::Text(t) => {
                let text = t
                    .unescape()
                    .map_err(|e| invalid(e.to_string()))?
                    .trim()
                    .to_owned();
                let Some(p) = current.as_mut() else {
                    if text.is_empty() {
                        continue;
                    }
                    return Err(invalid("text outside a signed identifier"));
                };
                match path.last().map(Vec::as_slice) {
                    Some(b"Id") => p.id = text,
                    Some(b"Start") if !text.is_empty() => p.start = Some(text),
                    Some(b"Expiry") if !text.is_empty() => p.expiry = Some(text),
                    Some(b"Permission") if !text.is_empty() => p.permission = Some(text),
                    _ => {}
                }
            }
            Event::End(e) => {
                path.pop();
                if e.name().as_ref() == b"SignedIdentifier" {
                    out.extend(current.take());
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if out.len() > MAX_POLICIES {
        return Err(invalid(format_args!(
            "a container holds at most {MAX_POLICIES} stored access policies ({} given)",
            out.len()
        )));
    }
    for (i, p) in out.iter().enumerate() {
        if p.id.is_empty() || p.id.chars().count() > 64 {
            return Err(invalid("a signed identifier's Id has 1 to 64 characters"));
        }
        if out.iter().take(i).any(|q| q.id == p.id) {
            return Err(invalid(format_args!("the Id `{}` is given twice", p.id)));
        }
        for t in [&p.start, &p.expiry].into_iter().flatten() {
            if parse_iso8601(t).is_none() {
                return Err(invalid(format_args!("`{t}` is not an ISO 8601 time")));
            }
        }
        if let Some(letters) = &p.permission
            && let Some(c) = letters.chars().find(|c| !LETTERS.contains(*c))
        {
            return Err(invalid(format_args!(
                "`{c}` is not a permission letter of a stored access policy"
            )));
        }
    }
    Ok(out)
}

fn to_xml(policies: &[AccessPolicy]) -> String {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?><SignedIdentifiers>");
    for p in policies {
        xml.push_str(&format!(
            "<SignedIdentifier><Id>{}</Id><AccessPolicy>",
            escape(&p.id)
        ));
        for (name, value) in [
            ("Start", &p.start),
            ("Expiry", &p.expiry),
            ("Permission", &p.permission),
        ] {
            if let Some(v) = value {
                xml.push_str(&format!("<{name}>{}</{name}>", escape(v)));
            }
        }
        xml.push_str("</AccessPolicy></SignedIdentifier>");
    }
    xml.push_str("</SignedIdentifiers>");
    xml
}

/// `x-ms-blob-public-access` of a request: `container`, `blob`, or absent
/// (private). A level is refused when the account does not allow public access.
pub(crate) fn public_access(ctx: &Ctx) -> Result<Option<String>, StorageError> {
    let Some(level) = ctx.header("x-ms-blob-public-access") else {
        return Ok(None);
    };
    let level = match level.trim().to_ascii_lowercase().as_str() {
        "container" => "container",
        "blob" => "blob",
        _ => {
            return Err(StorageError::bad(
                "InvalidHeaderValue",
                format!(
                    "The value for one of the HTTP headers is not in the correct format: x-ms-blob-public-access `{level}` is container or blob"
                ),
            ));
        }
    };
    if !crate::management::storage_accounts::public_access_allowed(&ctx.account) {
        return Err(StorageError::new(
            StatusCode::CONFLICT,
            "PublicAccessNotPermitted",
            "Public access is not permitted on this storage account.",
        ));
    }
    Ok(Some(level.to_owned()))
}

/// Whether a request without credentials may do `op` on `container`: the account
/// allows public access and the container's level opens the operation
/// (`blob`: reading blobs; `container`: also listing them and reading the
/// container's properties).
pub(crate) async fn public_read(
    state: &crate::state::SharedState,
    account: &keyless_store::StorageAccount,
    op: super::operation::Operation,
    container: &str,
) -> Result<bool, StorageError> {
    use super::operation::Operation as Op;
    if container.is_empty() || !crate::management::storage_accounts::public_access_allowed(account)
    {
        return Ok(false);
    }
    let Some(c) = state.store.container(&account.name, container).await? else {
        return Ok(false);
    };
    let blob_read = matches!(
        op,
        Op::GetBlob
            | Op::GetBlobProperties
            | Op::GetBlobMetadata
            | Op::GetBlockList
            | Op::GetPageRanges
    );
    let container_read = matches!(op, Op::ListBlobs | Op::GetContainerProperties);
    Ok(match c.state.public_access.as_deref() {
        Some("container") => blob_read || container_read,
        Some("blob") => blob_read,
        _ => false,
    })
}

/// The container's public access level as a response header.
pub(crate) fn header(h: &mut HeaderMap, level: Option<&str>) {
    if let Some(level) = level {
        insert(h, HeaderName::from_static("x-ms-blob-public-access"), level);
    }
}

fn refused(e: keyless_core::Error) -> StorageError {
    super::lease::refusal(&e, true).unwrap_or_else(|| super::conditions::condition_error(e, false))
}

/// Get Container ACL.
pub(crate) async fn get(ctx: &Ctx) -> Result<Response, StorageError> {
    let c = super::container::load(ctx).await?;
    if ctx.header("x-ms-lease-id").is_some() {
        Conditions::from(ctx)?
            .container(&c, false)
            .map_err(refused)?;
    }
    let mut h = HeaderMap::new();
    insert(&mut h, header::ETAG, &c.etag);
    insert(&mut h, header::LAST_MODIFIED, &http_date(c.last_modified));
    header(&mut h, c.state.public_access.as_deref());
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    Ok((StatusCode::OK, h, to_xml(&c.state.policies)).into_response())
}

/// Set Container ACL: replaces the policies and the public access level.
pub(crate) async fn set(ctx: &Ctx, body: Body) -> Result<Response, StorageError> {
    let body = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| invalid("the body is larger than 64 KiB or could not be read"))?;
    let policies = if body.iter().all(u8::is_ascii_whitespace) {
        Vec::new()
    } else {
        parse(&body)?
    };
    let level = public_access(ctx)?;
    let conditions = Conditions::from(ctx)?;
    let c = super::container::modify(ctx, |c| {
        conditions.container(c, false).map_err(refused)?;
        c.state.policies.clone_from(&policies);
        c.state.public_access.clone_from(&level);
        Ok(())
    })
    .await?;
    let mut h = HeaderMap::new();
    insert(&mut h, header::ETAG, &c.etag);
    insert(&mut h, header::LAST_MODIFIED, &http_date(c.last_modified));
    Ok((StatusCode::OK, h).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_their_limits_hold() {
        let body = br#"<?xml version="1.0" encoding="utf-8"?><SignedIdentifiers><SignedIdentifier><Id>read-only</Id><AccessPolicy><Start>2026-12-01T00:00:00.0000000Z</Start><Expiry>2026-12-31T00:00:00Z</Expiry><Permission>rl</Permission></AccessPolicy></SignedIdentifier><SignedIdentifier><Id>open</Id><AccessPolicy /></SignedIdentifier></SignedIdentifiers>"#;
        let p = parse(body).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].permission.as_deref(), Some("rl"));
        assert_eq!(
            p[1],
            AccessPolicy {
                id: "open".into(),
                ..AccessPolicy::default()
            }
        );
        assert_eq!(parse(to_xml(&p).as_bytes()).unwrap(), p);
        let six: String = (0..6)
            .map(|i| format!("<SignedIdentifier><Id>p{i}</Id></SignedIdentifier>"))
            .collect();
        assert!(parse(format!("<SignedIdentifiers>{six}</SignedIdentifiers>").as_bytes()).is_err());
        for bad in [
            "<SignedIdentifiers><SignedIdentifier><Id></Id></SignedIdentifier></SignedIdentifiers>",
            "<SignedIdentifiers><SignedIdentifier><Id>a</Id></SignedIdentifier><SignedIdentifier><Id>a</Id></SignedIdentifier></SignedIdentifiers>",
            "<SignedIdentifiers><SignedIdentifier><Id>a</Id><AccessPolicy><Permission>rq</Permission></AccessPolicy></SignedIdentifier></SignedIdentifiers>",
            "<SignedIdentifiers><SignedIdentifier><Id>a</Id><AccessPolicy><Expiry>soon</Expiry></AccessPolicy></SignedIdentifier></SignedIdentifiers>",
        ] {
            assert!(parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }
}
