//! User delegation keys: a bearer caller asks for a key, signs SAS with it, and
//! each request made with such a SAS is authorized as that caller at the time of
//! use (its current role assignments), within what the SAS grants.
//!
//! keyless keeps no key: the value is an HMAC, under the account's `key1`, of the
//! fields the key is returned with, so it can be derived again when a SAS arrives.
//! Regenerating `key1` revokes every user delegation key of the account.

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use keyless_auth::shared_key::sign;

use super::Ctx;
use super::auth::Auth;
use super::error::StorageError;
use super::xml::{escape, parse_iso8601};

/// The longest a key may live, as Azure allows.
const MAX_LIFETIME: i64 = 7 * 24 * 3600;

/// The fields a user delegation key is issued with (and a SAS repeats).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyFields<'a> {
    pub(crate) oid: &'a str,
    pub(crate) tid: &'a str,
    pub(crate) start: &'a str,
    pub(crate) expiry: &'a str,
    pub(crate) service: &'a str,
    pub(crate) version: &'a str,
}

/// The key's value (raw bytes) under the account's `key1`.
pub(crate) fn key_value(key1: &[u8], f: KeyFields<'_>) -> Vec<u8> {
    let text = [
        "keyless-user-delegation-key",
        f.oid,
        f.tid,
        f.start,
        f.expiry,
        f.service,
        f.version,
    ]
    .join("\n");
    STANDARD.decode(sign(key1, &text)).unwrap_or_default()
}

fn tag<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = body.find(&open)? + open.len();
    let len = body.get(start..)?.find(&close)?;
    body.get(start..start + len).map(str::trim)
}

/// A time as SAS and delegation keys spell it (`2026-11-22T08:00:00Z`).
pub(crate) fn iso(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// Get User Delegation Key: `POST /{account}?restype=service&comp=userdelegationkey`.
pub(crate) async fn get_key(ctx: &Ctx, body: Body) -> Result<Response, StorageError> {
    let Auth::Bearer(identity) = &ctx.auth else {
        return Err(StorageError::auth(
            "Only authentication scheme Bearer is supported",
        ));
    };
    let bytes = axum::body::to_bytes(body, 64 * 1024).await.map_err(|_| {
        StorageError::bad("InvalidXmlDocument", "the KeyInfo body could not be read")
    })?;
    let text = String::from_utf8_lossy(&bytes);
    let now = ctx.state.now();
    let bad = |what: &str| StorageError::bad("InvalidXmlNodeValue", what.to_owned());
    let start = match tag(&text, "Start").filter(|s| !s.is_empty()) {
        Some(s) => parse_iso8601(s).ok_or_else(|| bad("Start must be an ISO 8601 time"))?,
        None => now,
    };
    let expiry = tag(&text, "Expiry")
        .and_then(parse_iso8601)
        .ok_or_else(|| bad("KeyInfo needs an Expiry in ISO 8601"))?;
    if expiry <= now || expiry <= start {
        return Err(bad(
            "The Expiry must lie after the start and in the future.",
        ));
    }
    if expiry - now > MAX_LIFETIME {
        return Err(bad("A user delegation key lives at most 7 days."));
    }
    let keys = ctx.state.account_keys(&ctx.account)?;
    let (start, expiry) = (iso(start), iso(expiry));
    let tid = identity.tenant.to_string();
    let fields = KeyFields {
        oid: identity.object_id(),
        tid: &tid,
        start: &start,
        expiry: &expiry,
        service: "b",
        version: super::SERVICE_VERSION,
    };
    let [key1, _] = &*keys;
    let value = STANDARD.encode(key_value(key1, fields));
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><UserDelegationKey><SignedOid>{}</SignedOid><SignedTid>{}</SignedTid><SignedStart>{}</SignedStart><SignedExpiry>{}</SignedExpiry><SignedService>b</SignedService><SignedVersion>{}</SignedVersion><Value>{}</Value></UserDelegationKey>",
        escape(fields.oid),
        escape(fields.tid),
        fields.start,
        fields.expiry,
        fields.version,
        value
    );
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/xml")],
        xml,
    )
        .into_response())
}
