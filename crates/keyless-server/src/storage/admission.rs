//! What a request needs beyond its operation's role or SAS permission: the
//! account's network rules, the details a SAS grants apart (overwriting, owners
//! and ACLs, a rename's source), and the rights of the identities behind a user
//! delegation SAS (its delegator's roles, its agent's ACLs).

use percent_encoding::percent_decode_str;

use keyless_store::StorageAccount;

use super::error::StorageError;
use super::operation::Operation;
use super::{access, auth, hns, sas};
use crate::state::SharedState;

/// Whether the identity that signed a user delegation SAS may, at the time of
/// use, do what the request does (its role assignments, through its groups).
pub(crate) async fn delegator_may(
    state: &SharedState,
    account: &StorageAccount,
    oid: &str,
    tid: &str,
    op: Operation,
    container: &str,
) -> Result<(), StorageError> {
    let refused =
        |why: &str| StorageError::auth(format!("The user delegation SAS is not valid: {why}."));
    let tenant = keyless_core::TenantId::parse(tid).map_err(|_| refused("sktid is malformed"))?;
    if tenant != account.tenant_id {
        return Err(refused("the delegating identity belongs to another tenant"));
    }
    let object = keyless_core::ObjectId::parse(oid).map_err(|_| refused("skoid is malformed"))?;
    let principal = state
        .store
        .principal(object)
        .await?
        .filter(|p| p.enabled)
        .ok_or_else(|| refused("the delegating identity no longer exists or is disabled"))?;
    let mut principals = vec![object];
    principals.extend(state.store.transitive_groups(object).await?);
    let name = principal
        .user_principal_name
        .clone()
        .unwrap_or_else(|| oid.to_owned());
    let who = access::Who {
        tenant,
        principals: &principals,
        name: &name,
        object_id: oid,
    };
    access::authorize_principals(state, account, who, op.permission(), container)
}

/// The path (within its filesystem) a rename names in `x-ms-rename-source`.
pub(super) fn rename_source_path(headers: &axum::http::HeaderMap) -> Option<String> {
    rename_source(headers).map(|s| s.path)
}

/// What `x-ms-rename-source` names: `/{filesystem}/{path}`, decoded, optionally
/// followed by a SAS for the source.
pub(crate) struct RenameSource {
    pub(crate) filesystem: String,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
}

/// The rename source of a request, or `None` when the header is absent or names
/// no path.
pub(crate) fn rename_source(headers: &axum::http::HeaderMap) -> Option<RenameSource> {
    let raw = headers.get("x-ms-rename-source")?.to_str().ok()?;
    let (path, query) = raw.split_once('?').unwrap_or((raw, ""));
    let decoded = percent_decode_str(path).decode_utf8_lossy();
    let (filesystem, path) = decoded.trim_start_matches('/').split_once('/')?;
    Some(RenameSource {
        filesystem: filesystem.to_owned(),
        path: path.trim_end_matches('/').to_owned(),
        query: serde_urlencoded::from_str(query).unwrap_or_default(),
    })
}

/// The account's network rules for a request from `client` by `identity`: a
/// refused address gets nowhere, on this account and as the source of a copy.
pub(crate) fn admit(
    account: &StorageAccount,
    client: Option<std::net::IpAddr>,
    identity: Option<&auth::Identity>,
    trusted_service: bool,
) -> Result<(), StorageError> {
    let acls = account.body.get("networkAcls");
    let caller = crate::network::Caller {
        trusted_service,
        managed_resource: identity
            .filter(|i| i.principal_type() == "ManagedIdentity")
            .and_then(|i| i.claims.xms_mirid.as_deref()),
    };
    if crate::network::Rules::may_refuse(acls)
        && let Err(why) = crate::network::Rules::from_acls(acls)?.admit(client, caller)
    {
        return Err(StorageError::new(
            axum::http::StatusCode::FORBIDDEN,
            "AuthorizationFailure",
            "This request is not authorized to perform this operation.",
        )
        .explained(why));
    }
    Ok(())
}

/// What a SAS needs beyond its operation's permission, from the request itself:
/// `w` to overwrite a blob (`c` creates new ones only); `o` to change an owner or
/// group and `p` to change an ACL or mode; `m` on the source of a rename, which
/// must lie inside the SAS's scope, or inside the scope of a SAS the source URL
/// carries.
pub(super) async fn sas_details(
    state: &SharedState,
    account: &StorageAccount,
    sas: &sas::Sas,
    op: Operation,
    (container, blob): (&str, &str),
    headers: &axum::http::HeaderMap,
    client: Option<std::net::IpAddr>,
) -> Result<(), StorageError> {
    let writes = matches!(
        op,
        Operation::PutBlob | Operation::PutBlockList | Operation::CopyBlob
    );
    if writes
        && !sas.grants('w')
        && state
            .store
            .blob(&account.name, container, blob)
            .await?
            .is_some()
    {
        return Err(StorageError::new(
            axum::http::StatusCode::FORBIDDEN,
            "AuthorizationPermissionMismatch",
            "This request is not authorized to perform this operation using this permission: the blob exists, and overwriting it needs `w`; `c` creates new blobs only.",
        ));
    }
    match op {
        Operation::SetAccessControl => {
            if headers.contains_key("x-ms-owner") || headers.contains_key("x-ms-group") {
                sas.needs("o")?;
            }
            if headers.contains_key("x-ms-acl") || headers.contains_key("x-ms-permissions") {
                sas.needs("p")?;
            }
        }
        Operation::RenamePath => {
            let Some(RenameSource {
                filesystem,
                path,
                query,
            }) = rename_source(headers)
            else {
                return Err(StorageError::bad(
                    "InvalidSourceUri",
                    "x-ms-rename-source must be /{filesystem}/{path}",
                ));
            };
            let (fs, source) = (filesystem.as_str(), path.as_str());
            if query.iter().any(|(k, _)| k == "sig") {
                let keys = state.account_keys(account)?;
                let own = sas::verify_sas(
                    &account.name,
                    (fs, source),
                    &keys,
                    &query,
                    state.now(),
                    client,
                )?;
                own.authorize_move_source(fs, source)?;
                if let Some((oid, tid)) = &own.delegator {
                    delegator_may(state, account, oid, tid, op, fs).await?;
                }
            } else {
                sas.authorize_move_source(fs, source)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A user delegation SAS acting for another identity: valid on a hierarchical
/// namespace only, and for `suoid`, the ACLs of the path must allow that
/// identity what the request does (the delegator's roles were checked before).
pub(super) async fn agent_may(
    state: &SharedState,
    account: &StorageAccount,
    agent: &sas::Agent,
    request: hns::AclRequest<'_>,
) -> Result<(), StorageError> {
    let refused = |why: String| {
        StorageError::new(
            axum::http::StatusCode::FORBIDDEN,
            "AuthorizationFailure",
            "This request is not authorized to perform this operation.",
        )
        .explained(why)
    };
    if !account.hns {
        return Err(refused(
            "saoid and suoid are valid only on an account with a hierarchical namespace".into(),
        ));
    }
    let sas::Agent::Unauthorized(oid) = agent else {
        return Ok(());
    };
    let object = keyless_core::ObjectId::parse(oid).map_err(|_| {
        StorageError::auth("The user delegation SAS is not valid: suoid is malformed.")
    })?;
    let groups: Vec<String> = state
        .store
        .transitive_groups(object)
        .await?
        .iter()
        .map(ToString::to_string)
        .collect();
    let caller = keyless_core::acl::Caller {
        object_id: oid,
        groups: &groups,
    };
    match hns::authorize_by_acl(state, &account.name, caller, request).await? {
        None | Some(keyless_core::acl::AclDecision::Allow) => Ok(()),
        Some(denied) => Err(StorageError::new(
            axum::http::StatusCode::FORBIDDEN,
            "AuthorizationPermissionMismatch",
            "This request is not authorized to perform this operation using this permission.",
        )
        .explained(format!("for suoid {oid}: {}", denied.explanation()))),
    }
}
