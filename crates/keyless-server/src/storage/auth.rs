//! Authenticating a storage request: bearer tokens, SharedKey and SAS, in one place.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, Method, StatusCode, header};

use keyless_auth::shared_key::{SignedRequest, string_to_sign, string_to_sign_lite, verify};
use keyless_auth::{Claims, VerifyError};
use keyless_core::{ObjectId, TenantId};
use keyless_store::StorageAccount;

use super::error::StorageError;
use super::sas::{Sas, verify_sas_with_policy};
use super::xml::parse_http_date;
use crate::login::resource::STORAGE;
use crate::state::SharedState;

/// The stored access policy a SAS names (`si`), read from its container now.
pub(crate) async fn stored_policy(
    state: &SharedState,
    account: &str,
    container: &str,
    query: &[(String, String)],
) -> Result<Option<keyless_store::AccessPolicy>, StorageError> {
    let Some((_, si)) = query
        .iter()
        .find(|(k, _)| k == "si")
        .filter(|(_, v)| !v.is_empty())
    else {
        return Ok(None);
    };
    if container.is_empty() {
        return Ok(None);
    }
    Ok(state
        .store
        .container(account, container)
        .await?
        .and_then(|c| c.state.policies.into_iter().find(|p| &p.id == si)))
}

/// How far `x-ms-date` may be from the server's clock.
const SKEW_SECONDS: i64 = 15 * 60;

/// How a request authenticated.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    /// Signed with an account key: full access to the account.
    SharedKey,
    /// A shared access signature, which limits what the request may do.
    Sas(Sas),
    /// A bearer token: RBAC decides what the identity may do.
    Bearer(Identity),
    /// No credentials, let in by the container's public access level (reads only).
    Anonymous,
}

/// How a request tries to authenticate, as the storage log names it: `OAuth`,
/// `AccountKey`, `SAS`, `UserDelegationSAS` or `Anonymous`.
pub(crate) fn presented_kind(headers: &HeaderMap, query: &[(String, String)]) -> &'static str {
    // The scheme alone, from the bytes: the whole value is a token of a
    // thousand bytes or more, which `authenticate` checks.
    let scheme = headers.get(header::AUTHORIZATION).map(|v| {
        let v = v.as_bytes().trim_ascii_start();
        v.split(u8::is_ascii_whitespace).next().unwrap_or_default()
    });
    match scheme {
        Some(s) if s.eq_ignore_ascii_case(b"bearer") => "OAuth",
        Some(_) => "AccountKey",
        None if query.iter().any(|(k, _)| k == "skoid") => "UserDelegationSAS",
        None if query.iter().any(|(k, _)| k == "sig") => "SAS",
        None => "Anonymous",
    }
}

impl Auth {
    /// The identity behind the request, when it came with a token.
    pub(crate) fn identity(&self) -> Option<&Identity> {
        match self {
            Self::Bearer(identity) => Some(identity),
            Self::SharedKey | Self::Sas(_) | Self::Anonymous => None,
        }
    }
}

/// Who a bearer token speaks for.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub(crate) claims: Arc<Claims>,
    pub(crate) tenant: TenantId,
    /// The caller's object id, then the groups the token lists (transitive).
    pub(crate) principals: Vec<ObjectId>,
}

impl Identity {
    pub(crate) fn object_id(&self) -> &str {
        &self.claims.oid
    }

    /// The groups the token lists (transitive), for ACL checks.
    pub(crate) fn groups(&self) -> Vec<String> {
        self.principals
            .iter()
            .skip(1)
            .map(ToString::to_string)
            .collect()
    }

    /// A user's UPN, or the object id.
    pub(crate) fn name(&self) -> &str {
        self.claims.upn.as_deref().unwrap_or(&self.claims.oid)
    }

    /// `User`, `ServicePrincipal` or `ManagedIdentity`, as storage logs name them.
    pub(crate) fn principal_type(&self) -> &'static str {
        self.claims.principal_type()
    }
}

/// The audience of `account` itself. A storage token carries it or `STORAGE`, either
/// with or without a trailing `/` (the verifier compares audiences as Azure does).
fn own_audience(account: &str) -> String {
    const HOST: &str = ".blob.core.windows.net";
    let mut own = String::with_capacity("https://".len() + account.len() + HOST.len());
    own.push_str("https://");
    own.push_str(account);
    own.push_str(HOST);
    own
}

/// The challenge that sends a token client to the account's tenant for a storage token.
pub(crate) fn challenge(state: &SharedState, account: &StorageAccount) -> String {
    format!(
        "Bearer authorization_uri={}/{}/oauth2/authorize resource_id={STORAGE}",
        state.urls.login, account.tenant_id
    )
}

fn bearer(
    state: &SharedState,
    account: &StorageAccount,
    token: &str,
) -> Result<Identity, StorageError> {
    let own = own_audience(&account.name);
    let accepted = [STORAGE, own.as_str()];
    let unauthenticated = |message: String| {
        StorageError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationInfo",
            message,
        )
        .with_challenge(challenge(state, account))
    };
    let claims = state
        .verifier
        .verify(token, &accepted, state.now())
        .map_err(|e| match e {
            VerifyError::Expired(_) => {
                unauthenticated(format!("Lifetime validation failed. The token is expired: {e}."))
            }
            VerifyError::Audience { .. } => unauthenticated(format!(
                "Audience validation failed: {e}; ask for a token for {STORAGE}/.default."
            )),
            other => unauthenticated(format!(
                "Server failed to authenticate the request: the bearer token is not valid ({other})."
            )),
        })?;
    let malformed =
        || unauthenticated("The bearer token has a malformed 'tid' or 'oid'.".to_owned());
    let tenant = TenantId::parse(&claims.tid).map_err(|_| malformed())?;
    if tenant != account.tenant_id {
        // No challenge: it would send the client to a tenant it has no identity in.
        return Err(StorageError::auth(format!(
            "The token is issued by tenant {tenant}, but account `{}` belongs to tenant {}; cross-tenant access is not supported.",
            account.name, account.tenant_id
        )));
    }
    let mut principals = vec![ObjectId::parse(&claims.oid).map_err(|_| malformed())?];
    principals.extend(claims.groups.iter().filter_map(|g| ObjectId::parse(g).ok()));
    Ok(Identity {
        claims,
        tenant,
        principals,
    })
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
    // A value that is not visible ASCII is refused, not taken for no credential.
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(|v| {
            v.to_str().map_err(|_| {
                StorageError::auth(
                    "The Authorization header holds bytes that are not visible ASCII.",
                )
            })
        })
        .transpose()?;
    let Some(authorization) = authorization else {
        if query.iter().any(|(k, _)| k == "sig") {
            if !account.allow_shared_key {
                return Err(key_based_refused());
            }
            let keys = state.account_keys(account)?;
            let policy = stored_policy(state, &account.name, req.container, query).await?;
            let sas = verify_sas_with_policy(
                &account.name,
                (req.container, req.blob),
                &keys,
                query,
                state.now(),
                req.client,
                policy.as_ref(),
            )?;
            let sig = query
                .iter()
                .find(|(k, _)| k == "sig")
                .map_or("", |(_, v)| v.as_str());
            if let Some(crate::jobs::MintedSas::Revoked(job)) = state.jobs.minted_sas(sig) {
                return Err(StorageError::auth(format!(
                    "This SAS was issued to job {} for its data, and the job has ended: it no longer works.",
                    job.rsplit('/').next().unwrap_or(&job)
                )));
            }
            if sas.is_directory() && !account.hns {
                return Err(StorageError::auth(
                    "A directory SAS (sr=d) is valid only on an account with a hierarchical namespace.",
                ));
            }
            return Ok(Auth::Sas(sas));
        }
        return Err(StorageError::new(
            StatusCode::UNAUTHORIZED,
            "NoAuthenticationInformation",
            "Server failed to authenticate the request. Anonymous access is not allowed: send a bearer token for https://storage.azure.com, or sign the request.",
        )
        .with_challenge(challenge(state, account)));
    };
    let (scheme, credential) = authorization.split_once(' ').unwrap_or((authorization, ""));
    let lite = match scheme {
        "SharedKey" => false,
        "SharedKeyLite" => true,
        "Bearer" => return bearer(state, account, credential.trim()).map(Auth::Bearer),
        other => {
            return Err(StorageError::auth(format!(
                "The authorization scheme `{other}` is not supported; use Bearer, SharedKey or SharedKeyLite."
            )));
        }
    };
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
    // The path as sent, which Azure signs; some clients sign it decoded. A decoded
    // path that still holds `%` is not taken: it is the raw path of another name
    // (`q%2541` decodes to `q%41`, which is how `qA` may be sent), and one
    // signature would cover two blobs.
    let decoded_path = percent_encoding::percent_decode_str(raw_path)
        .decode_utf8_lossy()
        .into_owned();
    let unambiguous = !decoded_path.contains('%') && decoded_path != raw_path;
    let paths = [Some(raw_path), unambiguous.then_some(decoded_path.as_str())];
    for path in paths.into_iter().flatten() {
        let signed = SignedRequest {
            method: method.as_str(),
            account: &account.name,
            path,
            query,
            headers: &list,
        };
        let text = if lite {
            string_to_sign_lite(&signed)
        } else {
            string_to_sign(&signed)
        };
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
