//! Microsoft Graph v1.0, the subset `az ad`, `az role assignment --assignee` and
//! the Graph SDKs use: users, groups and their members, applications with their
//! passwords and certificates, service principals, `me`, and directory objects
//! by id. Served under `/graph` on the management listener (the keyless cloud's
//! `microsoftGraphResourceId`), over keyless's one directory, for tokens with
//! Graph's audience; writes are governed by directory roles, as the directory
//! API's are.
//!
//! keyless keeps an application and its service principal as one principal: the
//! application object's `id` is its `appId`, creating the service principal of
//! an application answers with the principal that exists already, and deleting
//! either deletes both.

pub(crate) mod filter;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use keyless_auth::cert::CertificateCredential;
use keyless_core::{ObjectId, Principal, PrincipalKind};
use keyless_store::{Credential, CredentialKind};

use super::applications::{certificate_credential, new_application, new_secret};
use super::caller::{Caller, authenticate_for, require_directory};
use super::directory::{
    group_of, new_group, new_user, remove_principal, resolve, set_enabled, timestamp,
};
use super::error::MgmtError;
use super::{Body, respond};
use crate::http::set;
use crate::login::resource::GRAPH;
use crate::state::SharedState;
use filter::Filter;

use keyless_core::directory::DirectoryOperation;

pub(crate) fn router() -> Router<SharedState> {
    Router::new()
        .route("/graph/v1.0/me", get(me))
        .route("/graph/v1.0/users", get(list_users).post(create_user))
        .route(
            "/graph/v1.0/users/{key}",
            get(show_user).patch(update_user).delete(delete_object),
        )
        .route(
            "/graph/v1.0/users/{key}/getMemberGroups",
            post(member_groups),
        )
        .route("/graph/v1.0/groups", get(list_groups).post(create_group))
        .route(
            "/graph/v1.0/groups/{key}",
            get(show_group).delete(delete_object),
        )
        .route("/graph/v1.0/groups/{key}/members", get(list_members))
        .route("/graph/v1.0/groups/{key}/members/$ref", post(add_member))
        .route(
            "/graph/v1.0/groups/{key}/members/{member}/$ref",
            axum::routing::delete(remove_member),
        )
        .route(
            "/graph/v1.0/groups/{key}/getMemberGroups",
            post(member_groups),
        )
        .route(
            "/graph/v1.0/applications",
            get(list_applications).post(create_application),
        )
        .route(
            "/graph/v1.0/applications/{key}",
            get(show_application)
                .patch(update_application)
                .delete(delete_object),
        )
        .route(
            "/graph/v1.0/applications/{key}/addPassword",
            post(add_password),
        )
        .route(
            "/graph/v1.0/applications/{key}/removePassword",
            post(remove_password),
        )
        .route(
            "/graph/v1.0/servicePrincipals",
            get(list_service_principals).post(create_service_principal),
        )
        .route(
            "/graph/v1.0/servicePrincipals/{key}",
            get(show_service_principal)
                .patch(update_service_principal)
                .delete(delete_object),
        )
        .route("/graph/v1.0/directoryObjects/getByIds", post(get_by_ids))
        .route("/graph/v1.0/directoryObjects/{key}", get(show_object))
        .route(
            "/graph/v1.0/directoryObjects/{key}/checkMemberGroups",
            post(check_member_groups),
        )
        .route("/graph/{*rest}", axum::routing::any(unknown))
}

/// Graph's answer to a path it does not serve.
async fn unknown(Path(rest): Path<String>) -> Response {
    respond(async move {
        Err::<(StatusCode, Value), _>(MgmtError::bad_request(
            "BadRequest",
            format!(
                "Resource not found for the segment '{rest}'. keyless serves Graph v1.0's users, groups, applications, servicePrincipals, me and directoryObjects."
            ),
        ))
    })
    .await
}

async fn caller(state: &SharedState, headers: &HeaderMap) -> Result<Caller, MgmtError> {
    authenticate_for(state, headers, &[GRAPH]).await
}

// --- objects ------------------------------------------------------------------

/// The kinds of directory object Graph tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    User,
    Group,
    ServicePrincipal,
    Application,
}

impl Kind {
    fn of(p: &Principal) -> Self {
        match p.kind {
            PrincipalKind::User => Self::User,
            PrincipalKind::Group => Self::Group,
            PrincipalKind::ServicePrincipal | PrincipalKind::ManagedIdentity => {
                Self::ServicePrincipal
            }
        }
    }

    fn odata(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Group => "group",
            Self::ServicePrincipal => "servicePrincipal",
            Self::Application => "application",
        }
    }

    fn collection(self) -> &'static str {
        match self {
            Self::User => "users",
            Self::Group => "groups",
            Self::ServicePrincipal => "servicePrincipals",
            Self::Application => "applications",
        }
    }

    /// Whether `p` appears in this kind's collection.
    fn holds(self, p: &Principal) -> bool {
        match self {
            Self::Application => p.kind == PrincipalKind::ServicePrincipal,
            kind => Kind::of(p) == kind,
        }
    }
}

/// A principal as a Graph object of `kind`, with its credentials for applications.
fn object(p: &Principal, kind: Kind, credentials: &[Credential]) -> Value {
    let mut v = json!({
        "@odata.type": format!("#microsoft.graph.{}", kind.odata()),
        "id": p.object_id.to_string(),
        "displayName": p.display_name,
    });
    let app_id = p.app_id.map(|a| a.to_string());
    match kind {
        Kind::User => {
            set(&mut v, "userPrincipalName", json!(p.user_principal_name));
            set(&mut v, "accountEnabled", json!(p.enabled));
            set(&mut v, "mail", Value::Null);
            set(&mut v, "givenName", Value::Null);
            set(&mut v, "surname", Value::Null);
            set(&mut v, "jobTitle", Value::Null);
            set(&mut v, "mobilePhone", Value::Null);
            set(&mut v, "officeLocation", Value::Null);
            set(&mut v, "preferredLanguage", Value::Null);
            set(&mut v, "businessPhones", json!([]));
        }
        Kind::Group => {
            set(&mut v, "createdDateTime", json!(timestamp(p.created_at)));
            set(&mut v, "description", Value::Null);
            set(&mut v, "groupTypes", json!([]));
            set(&mut v, "mail", Value::Null);
            set(&mut v, "mailEnabled", json!(false));
            set(
                &mut v,
                "mailNickname",
                json!(p.display_name.replace(' ', "")),
            );
            set(&mut v, "securityEnabled", json!(true));
        }
        Kind::ServicePrincipal => {
            let managed = p.kind == PrincipalKind::ManagedIdentity;
            let mut names = vec![json!(app_id)];
            if let Some(r) = &p.resource_id {
                names.push(json!(r));
            }
            set(&mut v, "appId", json!(app_id));
            set(&mut v, "appDisplayName", json!(p.display_name));
            set(
                &mut v,
                "appOwnerOrganizationId",
                json!(p.tenant_id.to_string()),
            );
            set(&mut v, "accountEnabled", json!(p.enabled));
            set(
                &mut v,
                "servicePrincipalType",
                json!(if managed {
                    "ManagedIdentity"
                } else {
                    "Application"
                }),
            );
            set(&mut v, "servicePrincipalNames", json!(names));
            set(
                &mut v,
                "alternativeNames",
                json!(
                    p.resource_id
                        .as_ref()
                        .map(|r| vec!["isExplicit=True".to_owned(), r.clone()])
                        .unwrap_or_default()
                ),
            );
            set(&mut v, "passwordCredentials", json!([]));
            set(&mut v, "keyCredentials", json!([]));
            set(&mut v, "tags", json!([]));
        }
        Kind::Application => {
            set(&mut v, "id", json!(app_id));
            set(&mut v, "appId", json!(app_id));
            set(&mut v, "createdDateTime", json!(timestamp(p.created_at)));
            set(&mut v, "signInAudience", json!("AzureADMyOrg"));
            set(&mut v, "identifierUris", json!([]));
            set(&mut v, "web", json!({ "redirectUris": [] }));
            set(&mut v, "publicClient", json!({ "redirectUris": [] }));
            set(&mut v, "requiredResourceAccess", json!([]));
            let of = |f: fn(&CredentialKind) -> Option<Value>, c: &Credential| {
                f(&c.kind).map(|mut extra| {
                    set(&mut extra, "keyId", json!(c.id));
                    set(&mut extra, "displayName", json!(c.display_name));
                    set(&mut extra, "startDateTime", json!(timestamp(c.starts_at)));
                    set(&mut extra, "endDateTime", json!(timestamp(c.expires_at)));
                    extra
                })
            };
            let passwords: Vec<Value> = credentials
                .iter()
                .filter_map(|c| {
                    of(
                        |k| match k {
                            CredentialKind::Secret { hint, .. } => Some(
                                json!({ "hint": hint, "secretText": null, "customKeyIdentifier": null }),
                            ),
                            _ => None,
                        },
                        c,
                    )
                })
                .collect();
            let keys: Vec<Value> = credentials
                .iter()
                .filter_map(|c| {
                    of(
                        |k| match k {
                            CredentialKind::Certificate { thumbprint, .. } => Some(json!({
                                "type": "AsymmetricX509Cert",
                                "usage": "Verify",
                                "customKeyIdentifier": thumbprint,
                                "key": null,
                            })),
                            _ => None,
                        },
                        c,
                    )
                })
                .collect();
            set(&mut v, "passwordCredentials", json!(passwords));
            set(&mut v, "keyCredentials", json!(keys));
        }
    }
    v
}

async fn object_of(state: &SharedState, p: &Principal, kind: Kind) -> Result<Value, MgmtError> {
    let credentials = if kind == Kind::Application {
        state.store.credentials(p.object_id).await?
    } else {
        Vec::new()
    };
    Ok(object(p, kind, &credentials))
}

/// Finds an object of `kind` by its id (or, as keyless resolves names, app id or
/// user principal name); Graph's 404 otherwise.
async fn find(
    state: &SharedState,
    caller: &Caller,
    key: &str,
    kind: Kind,
) -> Result<Principal, MgmtError> {
    let missing = || {
        MgmtError::not_found(
            "Request_ResourceNotFound",
            format!(
                "Resource '{key}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    };
    let p = resolve(state, caller.principal.tenant_id, key)
        .await
        .map_err(|_| missing())?;
    if kind.holds(&p) {
        Ok(p)
    } else {
        Err(missing())
    }
}

fn collection(state: &SharedState, kind: Kind, value: Vec<Value>) -> Value {
    json!({
        "@odata.context": format!("{}v1.0/$metadata#{}", crate::cloud::graph_url(&state.urls), kind.collection()),
        "value": value,
    })
}

// --- lists and reads ----------------------------------------------------------

async fn list(
    state: &SharedState,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    kind: Kind,
) -> Result<(StatusCode, Value), MgmtError> {
    let caller = caller(state, headers).await?;
    let filter = query
        .get("$filter")
        .map(|f| Filter::parse(f))
        .transpose()
        .map_err(|e| {
            MgmtError::bad_request(
                "Request_UnsupportedQuery",
                format!("Unsupported query: {e}"),
            )
        })?;
    let mut value = Vec::new();
    for p in state
        .store
        .principals(caller.principal.tenant_id, None)
        .await?
    {
        if !kind.holds(&p) {
            continue;
        }
        let v = object_of(state, &p, kind).await?;
        if filter.as_ref().is_none_or(|f| f.matches(&v)) {
            value.push(v);
        }
    }
    if let Some(top) = query.get("$top") {
        let top: usize = top.parse().map_err(|_| {
            MgmtError::bad_request(
                "Request_BadRequest",
                format!("`$top` must be a number, not `{top}`"),
            )
        })?;
        value.truncate(top);
    }
    Ok((StatusCode::OK, collection(state, kind, value)))
}

async fn show(
    state: &SharedState,
    headers: &HeaderMap,
    key: &str,
    kind: Kind,
) -> Result<(StatusCode, Value), MgmtError> {
    let caller = caller(state, headers).await?;
    let p = find(state, &caller, key, kind).await?;
    Ok((StatusCode::OK, object_of(state, &p, kind).await?))
}

macro_rules! list_and_show {
    ($list:ident, $show:ident, $kind:expr) => {
        async fn $list(
            State(state): State<SharedState>,
            headers: HeaderMap,
            Query(query): Query<HashMap<String, String>>,
        ) -> Response {
            respond(list(&state, &headers, &query, $kind)).await
        }

        async fn $show(
            State(state): State<SharedState>,
            headers: HeaderMap,
            Path(key): Path<String>,
        ) -> Response {
            respond(show(&state, &headers, &key, $kind)).await
        }
    };
}

list_and_show!(list_users, show_user, Kind::User);
list_and_show!(list_groups, show_group, Kind::Group);
list_and_show!(list_applications, show_application, Kind::Application);
list_and_show!(
    list_service_principals,
    show_service_principal,
    Kind::ServicePrincipal
);

async fn me(State(state): State<SharedState>, headers: HeaderMap) -> Response {
    respond(async {
        let caller = caller(&state, &headers).await?;
        if caller.principal.kind != PrincipalKind::User {
            return Err(MgmtError::bad_request(
                "BadRequest",
                "/me request is only valid with delegated authentication flow.",
            ));
        }
        Ok((StatusCode::OK, object(&caller.principal, Kind::User, &[])))
    })
    .await
}

async fn show_object(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    respond(async {
        let caller = caller(&state, &headers).await?;
        let p = resolve(&state, caller.principal.tenant_id, &key).await?;
        Ok((StatusCode::OK, object(&p, Kind::of(&p), &[])))
    })
    .await
}

async fn get_by_ids(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Body(body): Body<Value>,
) -> Response {
    respond(async {
        let caller = caller(&state, &headers).await?;
        let ids = strings(&body, "ids")?.unwrap_or_default();
        if ids.len() > 1000 {
            return Err(MgmtError::bad_request(
                "Request_BadRequest",
                "`ids` takes up to 1000 ids",
            ));
        }
        let types = strings(&body, "types")?;
        let mut value = Vec::new();
        for id in ids {
            let Ok(id) = ObjectId::parse(&id) else {
                continue;
            };
            let Some(p) = state.store.principal(id).await? else {
                continue;
            };
            if p.tenant_id != caller.principal.tenant_id {
                continue;
            }
            let kind = Kind::of(&p);
            let wanted = types.as_ref().is_none_or(|t| {
                t.iter().any(|t| {
                    t.eq_ignore_ascii_case(kind.odata())
                        || t.eq_ignore_ascii_case("directoryObject")
                })
            });
            if wanted {
                value.push(object(&p, kind, &[]));
            }
        }
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

/// A list of strings in a body, or a clear refusal.
fn strings(body: &Value, name: &str) -> Result<Option<Vec<String>>, MgmtError> {
    let Some(v) = body.get(name) else {
        return Ok(None);
    };
    v.as_array()
        .and_then(|items| {
            items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
        .map(Some)
        .ok_or_else(|| {
            MgmtError::bad_request(
                "Request_BadRequest",
                format!("`{name}` must be a list of strings"),
            )
        })
}

// --- memberships ----------------------------------------------------------------

async fn list_members(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    respond(async {
        let caller = caller(&state, &headers).await?;
        let group = find(&state, &caller, &key, Kind::Group).await?;
        let mut value = Vec::new();
        for id in state.store.group_members(group.object_id).await? {
            if let Some(p) = state.store.principal(id).await? {
                value.push(object(&p, Kind::of(&p), &[]));
            }
        }
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

async fn add_member(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Body(body): Body<Value>,
) -> Response {
    respond(async {
        let caller = caller(&state, &headers).await?;
        require_directory(&state, &caller, DirectoryOperation::ManageGroups).await?;
        let group = group_of(&state, &caller, &key).await?;
        let reference = body
            .get("@odata.id")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                MgmtError::bad_request(
                    "Request_BadRequest",
                    "the body must name the member as `@odata.id`: …/directoryObjects/<id>",
                )
            })?;
        let id = reference.trim_end_matches('/').rsplit('/').next().unwrap_or_default();
        let member = resolve(&state, caller.principal.tenant_id, id).await?;
        if state
            .store
            .group_members(group.object_id)
            .await?
            .contains(&member.object_id)
        {
            return Err(MgmtError::bad_request(
                "Request_BadRequest",
                "One or more added object references already exist for the following modified properties: 'members'.",
            ));
        }
        state
            .store
            .group_add_member(group.object_id, member.object_id)
            .await?;
        Ok((StatusCode::NO_CONTENT, Value::Null))
    })
    .await
}

async fn remove_member(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((key, member)): Path<(String, String)>,
) -> Response {
    respond(async {
        let caller = caller(&state, &headers).await?;
        require_directory(&state, &caller, DirectoryOperation::ManageGroups).await?;
        let group = group_of(&state, &caller, &key).await?;
        let member = resolve(&state, caller.principal.tenant_id, &member).await?;
        if !state
            .store
            .group_members(group.object_id)
            .await?
            .contains(&member.object_id)
        {
            return Err(MgmtError::not_found(
                "Request_ResourceNotFound",
                format!(
                    "`{}` is not a member of `{}`",
                    member.object_id, group.display_name
                ),
            ));
        }
        state
            .store
            .group_remove_member(group.object_id, member.object_id)
            .await?;
        Ok((StatusCode::NO_CONTENT, Value::Null))
    })
    .await
}

/// `getMemberGroups`: the groups an object belongs to, through nested groups too.
async fn member_groups(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    respond(async {
        let caller = caller(&state, &headers).await?;
        let p = resolve(&state, caller.principal.tenant_id, &key).await?;
        let groups: Vec<String> = state
            .store
            .transitive_groups(p.object_id)
            .await?
            .iter()
            .map(ToString::to_string)
            .collect();
        Ok((StatusCode::OK, json!({ "value": groups })))
    })
    .await
}

/// `checkMemberGroups`: which of `groupIds` an object belongs to.
async fn check_member_groups(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Body(body): Body<Value>,
) -> Response {
    respond(async {
        let caller = caller(&state, &headers).await?;
        let p = resolve(&state, caller.principal.tenant_id, &key).await?;
        let asked = strings(&body, "groupIds")?.ok_or_else(|| {
            MgmtError::bad_request("Request_BadRequest", "the body must list `groupIds`")
        })?;
        let holds = state.store.transitive_groups(p.object_id).await?;
        let value: Vec<String> = asked
            .into_iter()
            .filter(|g| ObjectId::parse(g).is_ok_and(|g| holds.contains(&g)))
            .collect();
        Ok((StatusCode::OK, json!({ "value": value })))
    })
    .await
}

// --- writes -----------------------------------------------------------------------

/// The properties of a body, refusing any not in `known`: keyless does not keep
/// what it cannot honour.
fn properties<'a>(body: &'a Value, known: &[&str]) -> Result<&'a Map<String, Value>, MgmtError> {
    let map = body.as_object().ok_or_else(|| {
        MgmtError::bad_request("Request_BadRequest", "the body must be a JSON object")
    })?;
    if let Some(other) = map
        .keys()
        .find(|k| !k.starts_with("@odata.") && !known.contains(&k.as_str()))
    {
        return Err(MgmtError::bad_request(
            "Request_BadRequest",
            format!(
                "keyless does not support the property `{other}` here (it takes {})",
                known.join(", ")
            ),
        ));
    }
    Ok(map)
}

fn text<'a>(map: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, MgmtError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(MgmtError::bad_request(
            "Request_BadRequest",
            format!("`{name}` must be a string"),
        )),
    }
}

fn flag(map: &Map<String, Value>, name: &str) -> Result<Option<bool>, MgmtError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(MgmtError::bad_request(
            "Request_BadRequest",
            format!("`{name}` must be true or false"),
        )),
    }
}

fn required<'a>(map: &'a Map<String, Value>, name: &str) -> Result<&'a str, MgmtError> {
    text(map, name)?.ok_or_else(|| {
        MgmtError::bad_request(
            "Request_BadRequest",
            format!("the property `{name}` is required"),
        )
    })
}

async fn create_user(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Body(body): Body<Value>,
) -> Response {
    respond(async {
        let caller = caller(&state, &headers).await?;
        let map = properties(
            &body,
            &["accountEnabled", "displayName", "userPrincipalName", "passwordProfile", "mailNickname"],
        )?;
        let profile = map.get("passwordProfile").and_then(Value::as_object);
        let password = profile
            .and_then(|p| p.get("password"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                MgmtError::bad_request(
                    "Request_BadRequest",
                    "the property `passwordProfile.password` is required",
                )
            })?;
        if profile
            .and_then(|p| p.get("forceChangePasswordNextSignIn"))
            .and_then(Value::as_bool)
            == Some(true)
        {
            return Err(MgmtError::bad_request(
                "Request_BadRequest",
                "keyless cannot force a password change at the next sign-in; create the user without it",
            ));
        }
        let user = new_user(
            &state,
            &caller,
            required(map, "displayName")?.to_owned(),
            required(map, "userPrincipalName")?,
            password,
            flag(map, "accountEnabled")?.unwrap_or(true),
        )
        .await?;
        Ok((StatusCode::CREATED, object(&user, Kind::User, &[])))
    })
    .await
}

async fn update_enabled(
    state: &SharedState,
    headers: &HeaderMap,
    key: &str,
    body: &Value,
    kind: Kind,
) -> Result<(StatusCode, Value), MgmtError> {
    let caller = caller(state, headers).await?;
    let p = find(state, &caller, key, kind).await?;
    let map = properties(body, &["accountEnabled", "displayName"])?;
    if let Some(name) = text(map, "displayName")?
        && name != p.display_name
    {
        return Err(MgmtError::bad_request(
            "Request_BadRequest",
            "keyless cannot rename directory objects",
        ));
    }
    let op = if kind == Kind::User {
        DirectoryOperation::ManageUsers
    } else {
        DirectoryOperation::ManageApplications
    };
    require_directory(state, &caller, op).await?;
    if let Some(enabled) = flag(map, "accountEnabled")? {
        set_enabled(state, &p, enabled).await?;
    }
    Ok((StatusCode::NO_CONTENT, Value::Null))
}

async fn update_user(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Body(body): Body<Value>,
) -> Response {
    respond(update_enabled(&state, &headers, &key, &body, Kind::User)).await
}

async fn update_service_principal(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Body(body): Body<Value>,
) -> Response {
    respond(update_enabled(
        &state,
        &headers,
        &key,
        &body,
        Kind::ServicePrincipal,
    ))
    .await
}

async fn create_group(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Body(body): Body<Value>,
) -> Response {
    respond(async {
        let caller = caller(&state, &headers).await?;
        let map = properties(
            &body,
            &[
                "displayName",
                "mailNickname",
                "mailEnabled",
                "securityEnabled",
                "description",
            ],
        )?;
        if flag(map, "mailEnabled")? == Some(true) || flag(map, "securityEnabled")? == Some(false) {
            return Err(MgmtError::bad_request(
                "Request_BadRequest",
                "keyless keeps security groups only (mailEnabled false, securityEnabled true)",
            ));
        }
        let group = new_group(&state, &caller, required(map, "displayName")?).await?;
        Ok((StatusCode::CREATED, object(&group, Kind::Group, &[])))
    })
    .await
}

/// The application properties keyless keeps or accepts empty.
const APPLICATION_PROPERTIES: [&str; 3] = ["displayName", "keyCredentials", "passwordCredentials"];

/// Certificates of a `keyCredentials` list (base64 DER in `key`).
fn key_credentials(
    map: &Map<String, Value>,
) -> Result<Option<Vec<CertificateCredential>>, MgmtError> {
    let Some(list) = map.get("keyCredentials") else {
        return Ok(None);
    };
    let items = list.as_array().ok_or_else(|| {
        MgmtError::bad_request("Request_BadRequest", "`keyCredentials` must be a list")
    })?;
    let mut out = Vec::new();
    for item in items {
        let key = item.get("key").and_then(Value::as_str).ok_or_else(|| {
            MgmtError::bad_request(
                "Request_BadRequest",
                "each key credential needs its certificate, base64, as `key`",
            )
        })?;
        if let Some(t) = item.get("type").and_then(Value::as_str)
            && t != "AsymmetricX509Cert"
        {
            return Err(MgmtError::bad_request(
                "Request_BadRequest",
                format!("keyless takes key credentials of type AsymmetricX509Cert, not {t}"),
            ));
        }
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            key.trim()
        );
        out.push(CertificateCredential::parse(pem.as_bytes())?);
    }
    Ok(Some(out))
}

fn no_passwords(map: &Map<String, Value>) -> Result<(), MgmtError> {
    match map.get("passwordCredentials") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(a)) if a.is_empty() => Ok(()),
        Some(_) => Err(MgmtError::bad_request(
            "Request_BadRequest",
            "passwords are added with `addPassword`, which returns the secret once",
        )),
    }
}

async fn create_application(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Body(body): Body<Value>,
) -> Response {
    respond(async {
        let caller = caller(&state, &headers).await?;
        let map = properties(&body, &APPLICATION_PROPERTIES)?;
        no_passwords(map)?;
        let certificates = key_credentials(map)?.unwrap_or_default();
        let app = new_application(&state, &caller, required(map, "displayName")?).await?;
        for cert in certificates {
            state
                .store
                .credential_add(&certificate_credential(&app, cert))
                .await?;
        }
        Ok((
            StatusCode::CREATED,
            object_of(&state, &app, Kind::Application).await?,
        ))
    })
    .await
}

/// PATCH of an application: its certificates (the list replaces the old one).
async fn update_application(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Body(body): Body<Value>,
) -> Response {
    respond(async {
        let caller = caller(&state, &headers).await?;
        let app = find(&state, &caller, &key, Kind::Application).await?;
        let map = properties(&body, &APPLICATION_PROPERTIES)?;
        require_directory(&state, &caller, DirectoryOperation::ManageApplications).await?;
        no_passwords(map)?;
        if let Some(name) = text(map, "displayName")?
            && name != app.display_name
        {
            return Err(MgmtError::bad_request(
                "Request_BadRequest",
                "keyless cannot rename applications",
            ));
        }
        if let Some(certificates) = key_credentials(map)? {
            for old in state.store.credentials(app.object_id).await? {
                if matches!(old.kind, CredentialKind::Certificate { .. }) {
                    state
                        .store
                        .credential_remove(app.object_id, &old.id)
                        .await?;
                }
            }
            for cert in certificates {
                state
                    .store
                    .credential_add(&certificate_credential(&app, cert))
                    .await?;
            }
        }
        Ok((StatusCode::NO_CONTENT, Value::Null))
    })
    .await
}

async fn add_password(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Body(body): Body<Value>,
) -> Response {
    respond(async {
        let caller = caller(&state, &headers).await?;
        let app = find(&state, &caller, &key, Kind::Application).await?;
        require_directory(&state, &caller, DirectoryOperation::ManageApplications).await?;
        let wanted = body
            .get("passwordCredential")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let map = properties(&wanted, &["displayName", "endDateTime", "startDateTime"])?;
        let end = text(map, "endDateTime")?
            .map(|d| d.parse::<jiff::Timestamp>().map(|t| t.as_second()))
            .transpose()
            .map_err(|e| {
                MgmtError::bad_request(
                    "Request_BadRequest",
                    format!("`endDateTime` is not an ISO 8601 time: {e}"),
                )
            })?;
        let name = text(map, "displayName")?.unwrap_or("");
        let (credential, secret) = new_secret(&state, &app, name, 2, end)?;
        state.store.credential_add(&credential).await?;
        tracing::info!(actor = %caller.principal.object_id, app = %app.object_id, "application password added");
        let mut out = object(&app, Kind::Application, std::slice::from_ref(&credential))
            .get("passwordCredentials")
            .and_then(|p| p.get(0))
            .cloned()
            .unwrap_or_default();
        set(&mut out, "secretText", json!(secret));
        Ok((StatusCode::OK, out))
    })
    .await
}

async fn remove_password(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Body(body): Body<Value>,
) -> Response {
    respond(async {
        let caller = caller(&state, &headers).await?;
        let app = find(&state, &caller, &key, Kind::Application).await?;
        require_directory(&state, &caller, DirectoryOperation::ManageApplications).await?;
        let map = properties(&body, &["keyId"])?;
        let id = required(map, "keyId")?;
        let is_secret = state
            .store
            .credentials(app.object_id)
            .await?
            .iter()
            .any(|c| c.id == id && matches!(c.kind, CredentialKind::Secret { .. }));
        if !is_secret || !state.store.credential_remove(app.object_id, id).await? {
            return Err(MgmtError::not_found(
                "Request_ResourceNotFound",
                format!("the application has no password with keyId `{id}`"),
            ));
        }
        Ok((StatusCode::NO_CONTENT, Value::Null))
    })
    .await
}

/// Creating the service principal of an application: in keyless it exists with
/// the application, so this answers with it.
async fn create_service_principal(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Body(body): Body<Value>,
) -> Response {
    respond(async {
        let caller = caller(&state, &headers).await?;
        let map = properties(&body, &["appId", "accountEnabled", "tags"])?;
        require_directory(&state, &caller, DirectoryOperation::ManageApplications).await?;
        let app_id = required(map, "appId")?;
        let app = find(&state, &caller, app_id, Kind::Application)
            .await
            .map_err(|_| {
                MgmtError::not_found(
                    "Request_ResourceNotFound",
                    format!("No application has the appId '{app_id}' in this tenant."),
                )
            })?;
        if let Some(enabled) = flag(map, "accountEnabled")?
            && enabled != app.enabled
        {
            set_enabled(&state, &app, enabled).await?;
        }
        let app = state.store.principal(app.object_id).await?.unwrap_or(app);
        Ok((
            StatusCode::CREATED,
            object(&app, Kind::ServicePrincipal, &[]),
        ))
    })
    .await
}

/// DELETE of a user, group, application or service principal: the collection
/// in the path must hold the object.
async fn delete_object(
    State(state): State<SharedState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Path(key): Path<String>,
) -> Response {
    respond(async {
        let caller = caller(&state, &headers).await?;
        let segment = uri.path().split('/').nth(3).unwrap_or_default();
        let kind = [
            Kind::User,
            Kind::Group,
            Kind::Application,
            Kind::ServicePrincipal,
        ]
        .into_iter()
        .find(|k| k.collection() == segment)
        .ok_or_else(|| keyless_core::Error::internal("a delete route outside the collections"))?;
        let p = find(&state, &caller, &key, kind).await?;
        remove_principal(&state, &caller, &p).await?;
        Ok((StatusCode::NO_CONTENT, Value::Null))
    })
    .await
}
