//! Authenticating a storage request: SharedKey now; the one place bearer tokens
//! and SAS join.

use std::net::IpAddr;

use axum::http::{HeaderMap, Method, StatusCode};

use keyless_auth::shared_key::{SignedRequest, string_to_sign, verify};
use keyless_store::StorageAccount;

use super::error::StorageError;
use super::sas::{Sas, verify_sas};
use super::xml::parse_http_date;
use crate::state::SharedState;

/// How far `x-ms-date` may be from the server's clock.
const SKEW_SECONDS: i64 = 15 * 60;

/// How a request authenticated.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    /// Signed with an account key: full access to the account.
    SharedKey,
    /// A shared access signature, which limits what the request may do.
    Sas(Sas),
}

impl Auth {
    /// The name the storage log uses.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::SharedKey => "SharedKey",
            Self::Sas(_) => "SAS",
        }
    }
}

/// The parts of a request authentication looks at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Presented<'a> {
    pub(crate) method: &'a Method,
    pub(crate) raw_path: &'a str,
    pub(crate) container: &'a str,
    pub(crate) blob: &'a str,
    pub(crate) query: &'a [(String, String)],
    pub(crate) headers: &'a HeaderMap,
    pub(crate) client: Option<IpAddr>,
}

/// Authenticates a request to `account`.
pub(crate) async fn authenticate(
    state: &SharedState,
    account: &StorageAccount,
    req: Presented<'_>,
) -> Result<Auth, StorageError> {
    let (method, raw_path, query, headers) = (req.method, req.raw_path, req.query, req.headers);
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    let Some(authorization) = authorization else {
        if query.iter().any(|(k, _)| k == "sig") {
            if !account.allow_shared_key {
                return Err(key_based_refused());
            }
            let keys = state.account_keys(account)?;
            return verify_sas(
                &account.name,
                (req.container, req.blob),
                &keys,
                query,
                state.now(),
                req.client,
            )
            .map(Auth::Sas);
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
        return Err(key_based_refused());
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
            return Ok(Auth::SharedKey);
        }
        tracing::debug!(string_to_sign = ?text, "SharedKey signature did not match");
    }
    Err(StorageError::auth(
        "The MAC signature found in the HTTP request is not the same as any computed signature.",
    ))
}

fn key_based_refused() -> StorageError {
    StorageError::new(
        StatusCode::FORBIDDEN,
        "KeyBasedAuthenticationNotPermitted",
        "Key based authentication is not permitted on this storage account.",
    )
}
