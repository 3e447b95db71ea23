//! Container operations and the service's container listing.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use keyless_core::ErrorKind;
use keyless_store::{Container, Page};

use super::Ctx;
use super::conditions::{Conditions, new_etag};
use super::error::StorageError;
use super::xml::{escape, http_date};

/// Container names: 3–63 lowercase letters, digits and single hyphens, starting
/// and ending with a letter or digit (`$root` and friends are not supported).
pub(crate) fn validate_name(name: &str) -> Result<(), StorageError> {
    // Azure's system containers: the root container, logs, static websites.
    if matches!(name, "$root" | "$logs" | "$web") {
        return Ok(());
    }
    if !(3..=63).contains(&name.len()) {
        return Err(StorageError::bad(
            "OutOfRangeInput",
            format!(
                "The specified resource name length is not within the permissible limits. A container name has 3 to 63 characters (`{name}` has {}).",
                name.len()
            ),
        ));
    }
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        return Ok(());
    }
    Err(StorageError::bad(
        "InvalidResourceName",
        format!(
            "The specified resource name contains invalid characters. A container name (`{name}`) has 3–63 lowercase letters, digits or single hyphens."
        ),
    ))
}

/// Get Account Information: the account's SKU, kind and whether it has a
/// hierarchical namespace, as headers.
pub(crate) fn account_information(ctx: &Ctx) -> Response {
    let body = &ctx.account.body;
    let text = |pointer: &str, default: &'static str| {
        body.pointer(pointer)
            .and_then(serde_json::Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("x-ms-sku-name", text("/sku/name", "Standard_LRS")),
        ("x-ms-account-kind", text("/kind", "StorageV2")),
        ("x-ms-is-hns-enabled", ctx.account.hns.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    (StatusCode::OK, h).into_response()
}

fn container_headers(c: &Container) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&c.etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(c.last_modified)) {
        h.insert(header::LAST_MODIFIED, v);
    }
    h
}

pub(crate) async fn create(ctx: &Ctx) -> Result<Response, StorageError> {
    let container = Container {
        account: ctx.account.name.clone(),
        name: ctx.container.clone(),
        etag: new_etag(),
        last_modified: ctx.state.now(),
        metadata: ctx.metadata()?,
        acl: ctx
            .account
            .hns
            .then(|| keyless_core::acl::PathAcl::root(&super::hns::creator(&ctx.auth))),
        state: keyless_store::ContainerState {
            public_access: super::policy::public_access(ctx)?,
            ..keyless_store::ContainerState::default()
        },
    };
    match ctx.state.store.container_create(&container).await {
        Ok(()) => Ok((StatusCode::CREATED, container_headers(&container)).into_response()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(StorageError::new(
            StatusCode::CONFLICT,
            "ContainerAlreadyExists",
            "The specified container already exists.",
        )),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn delete(ctx: &Ctx) -> Result<Response, StorageError> {
    let conditions = Conditions::from(ctx)?;
    let check = |c: &Container| conditions.container(c, true);
    // Kept deleted, with its blobs, when the account keeps deleted containers.
    let version = super::protection::container_version();
    let keep = super::protection::Protection::of(&ctx.account)
        .container_window(ctx.state.now())
        .map(|(at, until)| (version.as_str(), at, until));
    let released = ctx
        .state
        .store
        .container_delete_keeping(&ctx.account.name, &ctx.container, &check, keep)
        .await
        .map_err(refused)?
        .ok_or_else(StorageError::container_not_found)?;
    ctx.state.blobs.remove(&released).await;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Restore Container: a container kept deleted (`x-ms-deleted-container-name`
/// and `-version`) comes back, with its blobs, under the request's name.
pub(crate) async fn restore(ctx: &Ctx) -> Result<Response, StorageError> {
    let (Some(name), Some(version)) = (
        ctx.header("x-ms-deleted-container-name"),
        ctx.header("x-ms-deleted-container-version"),
    ) else {
        return Err(StorageError::bad(
            "MissingRequiredHeader",
            "An HTTP header that's mandatory for this request is not specified: x-ms-deleted-container-name and x-ms-deleted-container-version name the container to restore",
        ));
    };
    match ctx
        .state
        .store
        .container_restore(&ctx.account.name, name, version, &ctx.container)
        .await
    {
        Ok(()) => {
            let c = load(ctx).await?;
            Ok((StatusCode::CREATED, container_headers(&c)).into_response())
        }
        Err(e) => Err(match e.kind() {
            keyless_core::ErrorKind::NotFound => StorageError::new(
                StatusCode::NOT_FOUND,
                "ContainerNotFound",
                format!("No deleted container `{name}` of version `{version}` is kept."),
            ),
            keyless_core::ErrorKind::AlreadyExists => StorageError::new(
                StatusCode::CONFLICT,
                "ContainerAlreadyExists",
                "The specified container already exists.",
            ),
            _ => e.into(),
        }),
    }
}

pub(super) async fn load(ctx: &Ctx) -> Result<Container, StorageError> {
    ctx.state
        .store
        .container(&ctx.account.name, &ctx.container)
        .await?
        .ok_or_else(StorageError::container_not_found)
}

/// A failed lease check or condition on a container, as Azure replies.
fn refused(e: keyless_core::Error) -> StorageError {
    super::lease::refusal(&e, true).unwrap_or_else(|| super::conditions::condition_error(e, false))
}

pub(crate) async fn properties(ctx: &Ctx) -> Result<Response, StorageError> {
    let c = load(ctx).await?;
    if ctx.header("x-ms-lease-id").is_some() {
        Conditions::from(ctx)?
            .container(&c, false)
            .map_err(refused)?;
    }
    let mut headers = container_headers(&c);
    for (k, v) in &c.metadata {
        if let (Ok(name), Ok(value)) = (
            header::HeaderName::from_bytes(format!("x-ms-meta-{k}").as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.insert(name, value);
        }
    }
    super::lease::headers(
        &mut headers,
        c.state.lease.as_ref(),
        super::lease::now(&ctx.state),
    );
    super::policy::header(&mut headers, c.state.public_access.as_deref());
    headers.insert(
        "x-ms-has-immutability-policy",
        HeaderValue::from_static("false"),
    );
    headers.insert("x-ms-has-legal-hold", HeaderValue::from_static("false"));
    Ok((StatusCode::OK, headers).into_response())
}

pub(crate) async fn set_metadata(ctx: &Ctx) -> Result<Response, StorageError> {
    let conditions = Conditions::from(ctx)?;
    let metadata = ctx.metadata()?;
    let c = modify(ctx, |c| {
        conditions.container(c, false).map_err(refused)?;
        c.metadata.clone_from(&metadata);
        Ok(())
    })
    .await?;
    Ok((StatusCode::OK, container_headers(&c)).into_response())
}

/// Loads the request's container, applies `change` (which may refuse), gives it
/// a new ETag and writes it back if it is still as loaded (loading it again a few
/// times when it changed in between).
pub(super) async fn modify(
    ctx: &Ctx,
    mut change: impl FnMut(&mut Container) -> Result<(), StorageError>,
) -> Result<Container, StorageError> {
    const CHANGED: &str = "the container changed while it was being modified";
    for _ in 0..5 {
        let loaded = load(ctx).await?;
        let mut c = loaded.clone();
        change(&mut c)?;
        c.etag = new_etag();
        c.last_modified = ctx.state.now();
        let check = |current: &Container| {
            if current.etag == loaded.etag && current.state == loaded.state {
                Ok(())
            } else {
                Err(keyless_core::Error::new(ErrorKind::Conflict, CHANGED))
            }
        };
        match ctx.state.store.container_update(&c, &check).await {
            Ok(()) => return Ok(c),
            Err(e) if e.message() == CHANGED => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(StorageError::new(
        StatusCode::CONFLICT,
        "OperationTimedOut",
        "The container kept changing while this request tried to modify it; retry.",
    ))
}

pub(crate) async fn list(ctx: &Ctx) -> Result<Response, StorageError> {
    let prefix = ctx.param("prefix").unwrap_or_default();
    let marker = ctx.param("marker").unwrap_or_default();
    let max = max_results(ctx)?;
    let include = ctx.param("include").unwrap_or_default();
    let with_metadata = include.split(',').any(|x| x == "metadata");
    let with_deleted = include.split(',').any(|x| x == "deleted");
    let live = ctx
        .state
        .store
        .containers(
            &ctx.account.name,
            Page {
                prefix,
                marker,
                max: max + 1,
            },
        )
        .await?;
    // Live containers, and (when asked) deleted ones by name, each after its
    // live namesake.
    let mut page: Vec<(Container, Option<Deleted>)> = live.into_iter().map(|c| (c, None)).collect();
    if with_deleted {
        let secs = ctx.state.now();
        for d in ctx
            .state
            .store
            .containers_deleted(&ctx.account.name, prefix)
            .await?
        {
            if d.container.name.as_str() > marker && d.deleted.1 >= secs {
                page.push((d.container, Some((d.version, d.deleted))));
            }
        }
        page.sort_by(|a, b| (&a.0.name, a.1.is_some()).cmp(&(&b.0.name, b.1.is_some())));
    }
    let next = if page.len() > max {
        page.truncate(max);
        page.last().map(|c| c.0.name.clone())
    } else {
        None
    };
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"{}/{}/\">",
        escape(&ctx.state.urls.storage),
        escape(&ctx.account.name)
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
    xml.push_str("<Containers>");
    let now = super::lease::now(&ctx.state);
    let secs = ctx.state.now();
    for (c, deleted) in &page {
        let (deleted_xml, deleted_properties) = match deleted {
            None => (String::new(), String::new()),
            Some((version, (at, until))) => {
                let days = ((until - secs).max(0) + DAY - 1) / DAY;
                (
                    format!(
                        "<Deleted>true</Deleted><Version>{}</Version>",
                        escape(version)
                    ),
                    format!(
                        "<DeletedTime>{}</DeletedTime><RemainingRetentionDays>{}</RemainingRetentionDays>",
                        http_date(*at),
                        days.max(1)
                    ),
                )
            }
        };
        xml.push_str(&format!(
            "<Container><Name>{}</Name>{deleted_xml}<Properties><Last-Modified>{}</Last-Modified><Etag>{}</Etag>{}{}<HasImmutabilityPolicy>false</HasImmutabilityPolicy><HasLegalHold>false</HasLegalHold>{deleted_properties}</Properties>",
            escape(&c.name),
            http_date(c.last_modified),
            escape(&c.etag),
            super::lease::xml(c.state.lease.as_ref(), now),
            c.state
                .public_access
                .as_deref()
                .map(|a| format!("<PublicAccess>{a}</PublicAccess>"))
                .unwrap_or_default(),
        ));
        if with_metadata {
            xml.push_str("<Metadata>");
            for (k, v) in &c.metadata {
                xml.push_str(&format!("<{k}>{}</{k}>", escape(v)));
            }
            xml.push_str("</Metadata>");
        }
        xml.push_str("</Container>");
    }
    xml.push_str("</Containers>");
    xml.push_str(&format!(
        "<NextMarker>{}</NextMarker></EnumerationResults>",
        next.as_deref().map(escape).unwrap_or_default()
    ));
    Ok(([(header::CONTENT_TYPE, "application/xml")], xml).into_response())
}

/// A deleted container's version, and when it was deleted and goes for good.
type Deleted = (String, (i64, i64));

/// Seconds in a day, the unit of retention.
const DAY: i64 = 24 * 3600;

/// `maxresults`: 1–5000, default 5000.
pub(crate) fn max_results(ctx: &Ctx) -> Result<usize, StorageError> {
    match ctx.param("maxresults") {
        None => Ok(5000),
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=5000).contains(&n) => Ok(n),
            _ => Err(StorageError::bad(
                "OutOfRangeQueryParameterValue",
                format!("maxresults `{v}` must be between 1 and 5000"),
            )),
        },
    }
}
