//! ACR's token service: `POST /oauth2/exchange` turns an Entra access token
//! into a registry refresh token; `/oauth2/token` turns a refresh token (POST),
//! or Basic credentials (GET: the admin user, or the null GUID with a refresh
//! token as password), into an access token for the scopes asked, holding only
//! the actions the caller's roles allow. Both tokens are JWTs signed with the
//! server's signing keys, issued by `Azure Container Registry` for one login
//! server: no other listener accepts them, and they buy nothing elsewhere.

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use keyless_auth::{Claims, jwt};
use keyless_core::rbac::{AccessRequest, Permission};
use keyless_core::{ObjectId, ResourceId, TenantId};

use keyless_store::Registry;

use super::{Action, Ctx, Need, RegError, Seen};
use crate::login::resource::{CONTAINER_REGISTRY, MANAGEMENT};
use crate::state::SharedState;

/// The issuer ACR's tokens name.
const ISSUER: &str = "Azure Container Registry";
/// The user name that says "the password is a refresh token".
const NULL_GUID: &str = "00000000-0000-0000-0000-000000000000";
/// A refresh token lives three hours, as ACR's do.
const REFRESH_LIFETIME: i64 = 3 * 3600;
/// An access token lives five minutes; roles are checked again on every use.
const ACCESS_LIFETIME: i64 = 300;
/// The largest form the token service reads.
const MAX_FORM: usize = 64 * 1024;

/// Who a registry request is, as its token or credentials say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Who {
    /// The object id; none for the admin user.
    pub(crate) oid: Option<String>,
    #[serde(rename = "tid")]
    pub(crate) tenant: String,
    pub(crate) upn: Option<String>,
    pub(crate) appid: Option<String>,
    /// `User`, `ServicePrincipal`, `ManagedIdentity`, or `Admin`.
    #[serde(rename = "idtyp")]
    pub(crate) kind: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) groups: Vec<String>,
    /// The job whose identity asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) job: Option<String>,
}

impl Who {
    fn of(claims: &Claims) -> Self {
        Self {
            oid: Some(claims.oid.clone()),
            tenant: claims.tid.clone(),
            upn: claims.upn.clone(),
            appid: claims.appid.clone().or_else(|| claims.azp.clone()),
            kind: claims.principal_type().to_owned(),
            groups: claims.groups.clone(),
            job: claims.xms_job.clone(),
        }
    }

    /// A managed identity acting for a job.
    pub(crate) fn managed(
        principal: &keyless_core::Principal,
        groups: &[ObjectId],
        job: &str,
    ) -> Self {
        Self {
            oid: Some(principal.object_id.to_string()),
            tenant: principal.tenant_id.to_string(),
            upn: None,
            appid: principal.app_id.map(|a| a.to_string()),
            kind: "ManagedIdentity".into(),
            groups: groups.iter().map(ToString::to_string).collect(),
            job: Some(job.to_owned()),
        }
    }

    fn admin(ctx: &Ctx) -> Self {
        Self {
            oid: None,
            tenant: ctx.registry.tenant_id.to_string(),
            upn: Some(ctx.registry.name.clone()),
            appid: None,
            kind: "Admin".into(),
            groups: Vec::new(),
            job: None,
        }
    }

    fn is_admin(&self) -> bool {
        self.oid.is_none()
    }

    pub(crate) fn authentication_type(&self) -> &'static str {
        if self.is_admin() { "Basic" } else { "OAuth" }
    }

    /// The caller as explanations name it.
    fn name(&self) -> String {
        match &self.oid {
            Some(oid) => crate::http::who(self.upn.as_deref().unwrap_or(oid), oid),
            None => format!(
                "the admin user of registry {}",
                self.upn.as_deref().unwrap_or_default()
            ),
        }
    }
}

/// One grant of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Access {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    actions: Vec<String>,
}

/// The claims of both token kinds.
#[derive(Debug, Serialize, Deserialize)]
struct TokenClaims {
    jti: String,
    sub: String,
    iss: String,
    aud: String,
    nbf: i64,
    iat: i64,
    exp: i64,
    /// `refresh_token` or `access_token`.
    grant_type: String,
    tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    permissions: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    access: Vec<Access>,
    #[serde(flatten)]
    who: Who,
}

fn sign(ctx: &Ctx, claims: &TokenClaims) -> Result<String, RegError> {
    let ring = ctx.state.verifier.ring();
    Ok(jwt::sign(ring.current(), claims)?)
}

fn new_claims(ctx: &Ctx, who: &Who, grant_type: &str, lifetime: i64) -> TokenClaims {
    let now = ctx.state.now();
    TokenClaims {
        jti: uuid::Uuid::new_v4().to_string(),
        sub: who.oid.clone().unwrap_or_else(|| ctx.registry.name.clone()),
        iss: ISSUER.into(),
        aud: ctx.login_server.clone(),
        nbf: now - 60,
        iat: now,
        exp: now + lifetime,
        grant_type: grant_type.into(),
        tenant: who.tenant.clone(),
        permissions: None,
        access: Vec::new(),
        who: who.clone(),
    }
}

/// Checks a registry token of kind `grant_type` for this login server; the
/// reason when it is refused.
fn verify(ctx: &Ctx, token: &str, grant_type: &str) -> Result<TokenClaims, String> {
    let parts = jwt::split(token).map_err(|_| "the token is not a JWT".to_owned())?;
    let ring = ctx.state.verifier.ring();
    let key = parts
        .header
        .kid
        .as_deref()
        .and_then(|kid| ring.find(kid))
        .ok_or("the token is not signed by this server")?;
    if parts.header.alg != "RS256" || !key.verify(parts.signed.as_bytes(), &parts.signature) {
        return Err("the token's signature is not valid".into());
    }
    let claims: TokenClaims =
        jwt::claims(&parts).map_err(|_| "the token is not a registry token".to_owned())?;
    if claims.iss != ISSUER {
        return Err(format!(
            "the token is not a registry {grant_type} (issuer `{}`); exchange an Entra token at /oauth2/exchange first",
            claims.iss
        ));
    }
    if !claims.aud.eq_ignore_ascii_case(&ctx.login_server) {
        return Err(format!(
            "the token is for registry {}, not {}",
            claims.aud, ctx.login_server
        ));
    }
    if claims.grant_type != grant_type {
        return Err(format!("a {} is not a {grant_type}", claims.grant_type));
    }
    let now = ctx.state.now();
    if now >= claims.exp || now < claims.nbf {
        return Err(format!("the {grant_type} has expired"));
    }
    if let Some(job) = &claims.who.job
        && !ctx.state.verifier.job_is_live(job)
    {
        return Err(format!("job {job} has ended; its tokens are void"));
    }
    if let Some(oid) = &claims.who.oid
        && ctx.state.verifier.is_disabled(oid)
    {
        return Err(format!("identity {oid} is disabled"));
    }
    Ok(claims)
}

/// Whether `who` may do `action` in this registry now; the explanation when not.
pub(super) fn permits(ctx: &Ctx, who: &Who, action: Action) -> Result<(), String> {
    permits_in(&ctx.state, &ctx.registry, who, action)
}

/// Whether `who` may do `action` in `registry` now; the explanation when not.
fn permits_in(
    state: &SharedState,
    registry: &Registry,
    who: &Who,
    action: Action,
) -> Result<(), String> {
    if who.is_admin() {
        let enabled = registry
            .body
            .pointer("/properties/adminUserEnabled")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        return if enabled {
            Ok(())
        } else {
            Err(format!(
                "the admin user of registry {} is disabled",
                registry.name
            ))
        };
    }
    let oid = who.oid.as_deref().unwrap_or_default();
    let mut principals = vec![ObjectId::parse(oid).map_err(|_| "malformed object id".to_owned())?];
    principals.extend(who.groups.iter().filter_map(|g| ObjectId::parse(g).ok()));
    let tenant = TenantId::parse(&who.tenant).map_err(|_| "malformed tenant".to_owned())?;
    let scope = ResourceId::parse(&registry.id).map_err(|e| e.message().to_owned())?;
    let index = state.rbac();
    let request = AccessRequest {
        tenant,
        principals: &principals,
        permission: Permission::Action(action.azure_action()),
        scope: &scope,
    };
    if index.allows(&request) {
        return Ok(());
    }
    Err(format!(
        "{} may not {} in registry {}: {}",
        who.name(),
        action.name(),
        registry.name,
        index.explain(&request).explanation()
    ))
}

/// A pull token for a job's image, for the identity the compute pulls with
/// (tagged with the job, so the registry log names it and the token dies with
/// the job); the explanation when that identity may not pull.
pub(crate) fn job_pull(
    state: &SharedState,
    registry: &Registry,
    who: &Who,
    repository: &str,
) -> Result<String, String> {
    permits_in(state, registry, who, Action::Pull)?;
    let now = state.now();
    let claims = TokenClaims {
        jti: uuid::Uuid::new_v4().to_string(),
        sub: who.oid.clone().unwrap_or_default(),
        iss: ISSUER.into(),
        aud: crate::cloud::login_server(&state.urls, &registry.name),
        nbf: now - 60,
        iat: now,
        exp: now + ACCESS_LIFETIME,
        grant_type: "access_token".into(),
        tenant: who.tenant.clone(),
        permissions: None,
        access: vec![Access {
            kind: "repository".into(),
            name: repository.to_owned(),
            actions: vec!["pull".into()],
        }],
        who: who.clone(),
    };
    jwt::sign(state.verifier.ring().current(), &claims).map_err(|e| e.message().to_owned())
}

/// Who Basic credentials are: the admin user, or the null GUID with a refresh
/// token as password.
fn basic(ctx: &Ctx, headers: &HeaderMap) -> Option<Result<Who, String>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return Some(Err("malformed Basic credentials".into()));
    };
    Some(credentials(ctx, user, password))
}

fn credentials(ctx: &Ctx, user: &str, password: &str) -> Result<Who, String> {
    if user == NULL_GUID {
        return verify(ctx, password, "refresh_token").map(|c| c.who);
    }
    if !user.eq_ignore_ascii_case(&ctx.registry.name) {
        return Err(format!(
            "unknown user `{user}`: sign in as the admin user `{}` (while it is enabled) or as `{NULL_GUID}` with a refresh token from /oauth2/exchange",
            ctx.registry.name
        ));
    }
    let admin = Who::admin(ctx);
    permits(ctx, &admin, Action::Pull)?;
    let master = ctx.state.master();
    let matches = [
        ("password", &ctx.registry.password1),
        ("password2", &ctx.registry.password2),
    ]
    .iter()
    .filter_map(|(which, sealed)| {
        master
            .open(&super::password_context(&ctx.registry.name, which), sealed)
            .ok()
    })
    .any(|p| aws_lc_rs::constant_time::verify_slices_are_equal(&p, password.as_bytes()).is_ok());
    if matches {
        Ok(admin)
    } else {
        Err("wrong password for the admin user".into())
    }
}

/// Authenticates a distribution API request and checks it may do `need`; the
/// caller goes into `seen` as soon as it is known, refused or not.
pub(super) fn authenticate(
    ctx: &Ctx,
    need: Option<&Need>,
    seen: &mut Seen,
) -> Result<Who, RegError> {
    let who = if let Some(token) = crate::http::bearer(&ctx.headers) {
        let claims =
            verify(ctx, token, "access_token").map_err(|why| ctx.unauthorized(need, Some(why)))?;
        seen.who = Some(claims.who.clone());
        if let Some(n) = need {
            let (kind, name, action) = match n {
                Need::Repository(name, a) => ("repository", name.as_str(), a.name()),
                Need::Catalog => ("registry", "catalog", "*"),
            };
            let granted = claims.access.iter().any(|a| {
                a.kind == kind
                    && a.name == name
                    && a.actions.iter().any(|x| x == action || x == "*")
            });
            if !granted {
                // The client asks the token service for this scope and comes back;
                // the roles say whether it gets it.
                let why = permits(ctx, &claims.who, n.action()).err();
                return Err(ctx.unauthorized(need, why));
            }
        }
        claims.who
    } else if let Some(result) = basic(ctx, &ctx.headers) {
        let who = result.map_err(|why| ctx.unauthorized(need, Some(why)))?;
        seen.who = Some(who.clone());
        who
    } else {
        return Err(ctx.unauthorized(need, None));
    };
    if let Some(n) = need {
        permits(ctx, &who, n.action()).map_err(|why| ctx.unauthorized(need, Some(why)))?;
    }
    Ok(who)
}

pub(super) async fn serve(
    ctx: &Ctx,
    rest: &str,
    body: Body,
    seen: &mut Seen,
) -> Result<Response, RegError> {
    match (&ctx.method, rest) {
        (&Method::POST, "exchange") => {
            seen.operation = "Exchange";
            exchange(ctx, &form(body).await?, seen)
        }
        (&Method::POST, "token") => {
            seen.operation = "Token";
            let form = form(body).await?;
            let one = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            let who = match one("grant_type") {
                Some("refresh_token") => verify(
                    ctx,
                    one("refresh_token").unwrap_or_default(),
                    "refresh_token",
                )
                .map(|c| c.who),
                Some("password") => credentials(
                    ctx,
                    one("username").unwrap_or_default(),
                    one("password").unwrap_or_default(),
                ),
                other => {
                    return Err(RegError::bad(
                        "UNSUPPORTED",
                        format!(
                            "grant_type `{}` is not supported: use refresh_token or password",
                            other.unwrap_or_default()
                        ),
                    ));
                }
            };
            let who = who.map_err(|why| token_refused(ctx, why))?;
            seen.who = Some(who.clone());
            issue(ctx, &who, &scopes(&form), false)
        }
        (&Method::GET, "token") => {
            seen.operation = "Token";
            let who = match basic(ctx, &ctx.headers) {
                Some(Ok(who)) => who,
                Some(Err(why)) => return Err(token_refused(ctx, why)),
                None => return Err(ctx.unauthorized(
                    None,
                    Some(
                        "anonymous pull is off: send Basic credentials, or POST a refresh token"
                            .into(),
                    ),
                )),
            };
            seen.who = Some(who.clone());
            issue(ctx, &who, &scopes(&ctx.query), true)
        }
        _ => Err(RegError::unsupported(format!(
            "`{} /oauth2/{rest}` is not part of the token service (POST /oauth2/exchange, GET or POST /oauth2/token)",
            ctx.method
        ))),
    }
}

fn token_refused(ctx: &Ctx, why: String) -> RegError {
    let mut e = ctx.unauthorized(None, Some(why));
    e.challenge = None;
    e
}

async fn form(body: Body) -> Result<Vec<(String, String)>, RegError> {
    let bytes = axum::body::to_bytes(body, MAX_FORM)
        .await
        .map_err(|_| RegError::bad("UNSUPPORTED", "the form is larger than 64 KiB"))?;
    serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| RegError::bad("UNSUPPORTED", format!("the body is not a form: {e}")))
}

/// Every `scope` value, each split at spaces (containerd sends several in one).
fn scopes(fields: &[(String, String)]) -> Vec<String> {
    fields
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split_whitespace().map(str::to_owned))
        .collect()
}

fn exchange(ctx: &Ctx, form: &[(String, String)], seen: &mut Seen) -> Result<Response, RegError> {
    let one = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    match one("grant_type") {
        Some("access_token" | "access_token_refresh_token") => {}
        other => {
            return Err(RegError::bad(
                "UNSUPPORTED",
                format!(
                    "grant_type `{}` is not supported: send grant_type=access_token with an Entra access token",
                    other.unwrap_or_default()
                ),
            ));
        }
    }
    if let Some(service) = one("service")
        && !service.eq_ignore_ascii_case(&ctx.login_server)
    {
        return Err(RegError::bad(
            "UNSUPPORTED",
            format!(
                "service `{service}` is not this registry ({})",
                ctx.login_server
            ),
        ));
    }
    let token = one("access_token").unwrap_or_default();
    let audiences = [MANAGEMENT[0], MANAGEMENT[1], CONTAINER_REGISTRY];
    let claims = ctx
        .state
        .verifier
        .verify(token, &audiences, ctx.state.now())
        .map_err(|e| {
            token_refused(
                ctx,
                format!("the Entra access token is not valid: {e}; ask for a token for {CONTAINER_REGISTRY} or the resource manager"),
            )
        })?;
    if !claims
        .tid
        .eq_ignore_ascii_case(&ctx.registry.tenant_id.to_string())
    {
        return Err(token_refused(
            ctx,
            format!(
                "the token is from tenant {}, the registry belongs to tenant {}",
                claims.tid, ctx.registry.tenant_id
            ),
        ));
    }
    let who = Who::of(&claims);
    seen.who = Some(who.clone());
    let mut refresh = new_claims(ctx, &who, "refresh_token", REFRESH_LIFETIME);
    // The token's own limit binds the refresh token: a job's token dies with it.
    refresh.exp = refresh
        .exp
        .min(claims.exp.max(ctx.state.now() + ACCESS_LIFETIME));
    refresh.permissions = Some(json!({ "actions": ["read", "write", "delete"], "notActions": [] }));
    let token = sign(ctx, &refresh)?;
    Ok(json_response(&json!({ "refresh_token": token })))
}

/// Parses one scope: `repository:<name>:<actions>` or `registry:catalog:*`.
fn parse_scope(scope: &str) -> Option<(String, String, Vec<String>)> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions: Vec<String> = actions.split(',').map(str::to_owned).collect();
    Some((kind.to_owned(), name.to_owned(), actions))
}

fn issue(ctx: &Ctx, who: &Who, scopes: &[String], both_names: bool) -> Result<Response, RegError> {
    let mut access = Vec::new();
    for scope in scopes {
        let Some((kind, name, actions)) = parse_scope(scope) else {
            return Err(RegError::bad(
                "UNSUPPORTED",
                format!(
                    "scope `{scope}` is not `repository:<name>:<actions>` or `registry:catalog:*`"
                ),
            ));
        };
        let granted: Vec<String> = match kind.as_str() {
            "repository" => {
                if !super::content::valid_repository(&name) {
                    return Err(RegError::bad(
                        "NAME_INVALID",
                        format!("invalid repository name `{name}`"),
                    ));
                }
                let wanted: Vec<Action> = if actions.iter().any(|a| a == "*") {
                    vec![Action::Pull, Action::Push, Action::Delete]
                } else {
                    actions.iter().filter_map(|a| Action::parse(a)).collect()
                };
                wanted
                    .into_iter()
                    .filter(|a| permits(ctx, who, *a).is_ok())
                    .map(|a| a.name().to_owned())
                    .collect()
            }
            "registry" if name == "catalog" => {
                if permits(ctx, who, Action::Pull).is_ok() {
                    vec!["*".to_owned()]
                } else {
                    Vec::new()
                }
            }
            _ => Vec::new(),
        };
        if !granted.is_empty() {
            access.push(Access {
                kind,
                name,
                actions: granted,
            });
        }
    }
    let mut claims = new_claims(ctx, who, "access_token", ACCESS_LIFETIME);
    claims.access = access;
    let token = sign(ctx, &claims)?;
    let issued = jiff::Timestamp::from_second(claims.iat)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let mut answer =
        json!({ "access_token": token, "expires_in": ACCESS_LIFETIME, "issued_at": issued });
    if both_names && let Some(map) = answer.as_object_mut() {
        map.insert("token".into(), json!(token));
    }
    Ok(json_response(&answer))
}

fn json_response(v: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        v.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::parse_scope;

    #[test]
    fn scopes_split_at_the_first_and_last_colon() {
        assert_eq!(
            parse_scope("repository:team/app:pull,push"),
            Some((
                "repository".into(),
                "team/app".into(),
                vec!["pull".into(), "push".into()]
            ))
        );
        assert_eq!(
            parse_scope("registry:catalog:*"),
            Some(("registry".into(), "catalog".into(), vec!["*".into()]))
        );
        assert_eq!(parse_scope("repository"), None);
    }
}
