//! Authenticating a storage request: SharedKey now; the one place bearer tokens
//! and SAS join.

use axum::http::{HeaderMap, Method, StatusCode};

use keyless_auth::shared_key::{SignedRequest, string_to_sign, verify};
use keyless_store::StorageAccount;

use super::error::StorageError;
use super::xml::parse_http_date;
use crate::state::SharedState;

/// How far `x-ms-date` may be from the server's clock.
const SKEW_SECONDS: i64 = 15 * 60;

/// Authenticates a request to `account`; returns the kind of authentication used.
pub(crate) async fn authenticate(
    state: &SharedState,
    account: &StorageAccount,
    method: &Method,
    raw_path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Result<&'static str, StorageError> {
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    let Some(authorization) = authorization else {
        if query.iter().any(|(k, _)| k == "sig") {
            return Err(StorageError::auth(
                "Shared access signatures are not accepted by this server yet; use the account key.",
            ));
        }
        return Err(StorageError::new(
            StatusCode::UNAUTHORIZED,
            "NoAuthenticationInformation",
            "Server failed to authenticate the request. Anonymous access is not allowed: sign the request with the account key.",
        ));
    };
    let (scheme, credential) = authorization.split_once(' ').unwrap_or((authorization, ""));
    match scheme {
        "SharedKey" => {}
        "Bearer" => {
            return Err(StorageError::auth(
                "Bearer tokens are not accepted by this storage endpoint yet; use the account key.",
            ));
        }
        other => {
            return Err(StorageError::auth(format!(
                "The authorization scheme `{other}` is not supported; use SharedKey."
            )));
        }
    }
    if !account.allow_shared_key {
        return Err(StorageError::new(
            StatusCode::FORBIDDEN,
            "KeyBasedAuthenticationNotPermitted",
            "Key based authentication is not permitted on this storage account.",
        ));
    }
    let (named, signature) = credential.trim().split_once(':').ok_or_else(|| {
        StorageError::auth("The SharedKey credential must be `<account>:<signature>`.")
    })?;
    if named != account.name {
        return Err(StorageError::auth(format!(
            "The request is signed for account `{named}`, not `{}`.",
            account.name
        )));
    }
    let date = headers
        .get("x-ms-date")
        .or_else(|| headers.get("date"))
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date)
        .ok_or_else(|| {
            StorageError::auth("The request must carry an x-ms-date header in RFC 1123 format.")
        })?;
    if (state.now() - date).abs() > SKEW_SECONDS {
        return Err(StorageError::auth(
            "Request date header too old or too far in the future: check the client's clock.",
        ));
    }
    // `x-ms-request-id` is the server's own, set on the request by the request-id layer.
    let list: Vec<(String, String)> = headers
        .iter()
        .filter(|(n, _)| n.as_str() != crate::http::REQUEST_ID.as_str())
        .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let keys = state.account_keys(account)?;
    let decoded_path = percent_encoding::percent_decode_str(raw_path)
        .decode_utf8_lossy()
        .into_owned();
    for path in [raw_path, decoded_path.as_str()] {
        let text = string_to_sign(&SignedRequest {
            method: method.as_str(),
            account: &account.name,
            path,
            query,
            headers: &list,
        });
        if keys.iter().any(|k| verify(k, &text, signature)) {
            return Ok("SharedKey");
        }
        tracing::debug!(string_to_sign = ?text, "SharedKey signature did not match");
    }
    Err(StorageError::auth(
        "The MAC signature found in the HTTP request is not the same as any computed signature.",
    ))
}
