//! The activity log, ARM's control-plane audit: every write on the management
//! listener (PUT, PATCH, POST, DELETE) leaves an event naming who, what, where,
//! when, from which address and with which outcome, refusals included; read
//! back in the shape of `Microsoft.Insights/eventtypes/management/values`, which
//! `az monitor activity-log list` reads.
//!
//! Events of a scope under a subscription are read at that subscription by
//! anyone who may read it (`Microsoft.Insights/eventtypes/values/read`, which
//! Reader holds); directory events, which have no subscription, at
//! `/providers/Microsoft.Insights/eventtypes/management/values` by a Global
//! Administrator. Request bodies are not recorded (they carry passwords and
//! secrets), except the principal and role of a role assignment.

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use keyless_core::ResourceId;
use keyless_core::directory::DirectoryOperation;
use keyless_store::ActivityEvent;

use super::caller::{authenticate, authorized, require_directory};
use super::error::MgmtError;
use super::respond;
use crate::http::{ClientAddr, REQUEST_ID, bearer};
use crate::state::SharedState;

/// Events one query returns at most.
const MAX_EVENTS: usize = 10_000;
/// The largest role assignment body read for its principal and role.
const ASSIGNMENT_BODY: usize = 64 * 1024;
/// Without a start time, a query reaches this far back (az's default is 6 hours).
const DEFAULT_SPAN: i64 = 6 * 3600;

pub(crate) fn router() -> Router<SharedState> {
    Router::new()
        .route(
            "/subscriptions/{sub}/providers/{ns}/eventtypes/management/values",
            get(list_subscription),
        )
        .route(
            "/providers/{ns}/eventtypes/management/values",
            get(list_directory),
        )
}

/// Middleware: records every write with its outcome.
pub(crate) async fn record(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    if matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(request).await;
    }
    let path = request.uri().path().to_owned();
    let client = request
        .extensions()
        .get::<ClientAddr>()
        .map(|c| c.0.ip().to_string());
    let correlation = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let caller = bearer(request.headers()).and_then(|t| {
        state
            .verifier
            .verify(t, &super::caller::ACCEPTED, state.now())
            .ok()
    });
    let (request, assignment) = assignment_body(request, &method, &path).await;
    let response = next.run(request).await;
    let status = response.status();
    let now = state.now();
    let operation = operation_name(&method, &path);
    let subscription = subscription_of(&path);
    let id = uuid::Uuid::new_v4().to_string();
    let mut body = json!({
        "eventDataId": id,
        "eventTimestamp": timestamp(now),
        "submissionTimestamp": timestamp(now),
        "operationName": { "value": operation, "localizedValue": operation },
        "authorization": { "action": operation, "scope": path },
        "resourceId": path,
        "resourceGroupName": resource_group_of(&path),
        "subscriptionId": subscription,
        "category": { "value": "Administrative", "localizedValue": "Administrative" },
        "level": if status.is_success() { "Informational" } else { "Error" },
        "status": {
            "value": if status.is_success() { "Succeeded" } else { "Failed" },
            "localizedValue": if status.is_success() { "Succeeded" } else { "Failed" },
        },
        "subStatus": {
            "value": status.canonical_reason().unwrap_or_default().replace(' ', ""),
            "localizedValue": format!("{} ({})", status.canonical_reason().unwrap_or_default(), status.as_u16()),
        },
        "httpRequest": { "clientIpAddress": client, "method": method.as_str() },
        "correlationId": correlation,
        "caller": caller.as_ref().map_or_else(
            || "anonymous".to_owned(),
            |c| c.upn.clone().unwrap_or_else(|| c.oid.clone()),
        ),
        "claims": caller.as_ref().map(|c| json!({
            "oid": c.oid, "tid": c.tid, "appid": c.appid, "upn": c.upn, "idtyp": c.idtyp,
        })),
    });
    if let (Some(details), Some(map)) = (assignment, body.as_object_mut()) {
        map.insert("properties".into(), details);
    }
    let event = ActivityEvent {
        id,
        time: now,
        tenant_id: caller
            .as_ref()
            .and_then(|c| keyless_core::TenantId::parse(&c.tid).ok()),
        subscription_id: subscription,
        body,
    };
    if let Err(e) = state.store.activity_add(&event).await {
        tracing::error!(error = %e, operation = %operation, "the activity log could not record a write");
    }
    response
}

/// For a role assignment write, the principal and role it names (read from the
/// body, which is put back for the handler). Nothing of other bodies is kept.
async fn assignment_body(
    request: Request,
    method: &Method,
    path: &str,
) -> (Request, Option<Value>) {
    if *method != Method::PUT
        || !path
            .to_ascii_lowercase()
            .contains("/providers/microsoft.authorization/roleassignments/")
    {
        return (request, None);
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, ASSIGNMENT_BODY).await else {
        return (Request::from_parts(parts, axum::body::Body::empty()), None);
    };
    let sent: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let details = json!({
        "principalId": sent.pointer("/properties/principalId"),
        "roleDefinitionId": sent.pointer("/properties/roleDefinitionId"),
        "principalType": sent.pointer("/properties/principalType"),
    });
    (
        Request::from_parts(parts, axum::body::Body::from(bytes)),
        Some(details),
    )
}

/// ARM's name for what a request does: `Microsoft.Authorization/roleAssignments/write`,
/// `Microsoft.Storage/storageAccounts/listKeys/action`, and for keyless's own
/// directory API `Microsoft.Directory/users/write`.
pub(crate) fn operation_name(method: &Method, path: &str) -> String {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let verb = match *method {
        Method::DELETE => "delete",
        Method::POST => "action",
        _ => "write",
    };
    let lower: Vec<String> = segments.iter().map(|s| s.to_ascii_lowercase()).collect();
    let (namespace, rest): (String, &[&str]) = match lower.iter().rposition(|s| s == "providers") {
        Some(i) if i + 1 < segments.len() => (
            segments.get(i + 1).copied().unwrap_or_default().to_owned(),
            segments.get(i + 2..).unwrap_or_default(),
        ),
        _ => match segments.first().copied() {
            Some("subscriptions") => (
                "Microsoft.Resources".to_owned(),
                segments.get(..).unwrap_or_default(),
            ),
            Some("directory") => (
                "Microsoft.Directory".to_owned(),
                segments.get(1..).unwrap_or_default(),
            ),
            Some(first) => (
                format!("keyless.{first}"),
                segments.get(1..).unwrap_or_default(),
            ),
            None => ("keyless".to_owned(), &[]),
        },
    };
    // Types and names alternate; a POST's odd segment at the end is its action
    // (keyless's directory API creates by POST to a collection instead).
    let mut types: Vec<&str> = rest.iter().step_by(2).copied().collect();
    let directory = namespace == "Microsoft.Directory";
    let verb = if directory { "write" } else { verb };
    let action = (*method == Method::POST && rest.len() % 2 == 1 && !directory)
        .then(|| types.pop())
        .flatten();
    let mut name = namespace;
    for t in &types {
        name.push('/');
        name.push_str(t);
    }
    match action {
        Some(a) => format!("{name}/{a}/action"),
        None => format!("{name}/{verb}"),
    }
}

fn subscription_of(path: &str) -> Option<String> {
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    match (segments.next(), segments.next()) {
        (Some(s), Some(id)) if s.eq_ignore_ascii_case("subscriptions") => Some(id.to_owned()),
        _ => None,
    }
}

fn resource_group_of(path: &str) -> Option<String> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    segments
        .iter()
        .position(|s| s.eq_ignore_ascii_case("resourceGroups"))
        .and_then(|i| segments.get(i + 1))
        .map(|s| (*s).to_owned())
}

fn timestamp(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
    #[serde(rename = "$filter")]
    filter: Option<String>,
}

/// What a `$filter` selects: az writes `eventTimestamp ge '…' and eventTimestamp le '…'`,
/// then `resourceGroupName eq '…'`, `resourceUri eq '…'`, `caller eq '…'`,
/// `correlationId eq '…'` or `status eq '…'`.
#[derive(Debug, Default)]
struct Selection {
    since: Option<i64>,
    until: Option<i64>,
    equal: Vec<(String, String)>,
}

impl Selection {
    fn parse(filter: Option<&str>) -> Result<Self, MgmtError> {
        let mut out = Self::default();
        let Some(filter) = filter.filter(|f| !f.trim().is_empty()) else {
            return Ok(out);
        };
        let bad = |clause: &str| {
            MgmtError::bad_request(
                "InvalidFilter",
                format!(
                    "the $filter clause `{clause}` is not understood: use `eventTimestamp ge '<time>'`, `eventTimestamp le '<time>'`, or `<field> eq '<value>'` for resourceGroupName, resourceUri, resourceId, caller, correlationId or status, joined by `and`"
                ),
            )
        };
        for clause in filter.split(" and ") {
            let clause = clause.trim();
            let mut words = clause.splitn(3, ' ');
            let (Some(field), Some(op), Some(value)) = (words.next(), words.next(), words.next())
            else {
                return Err(bad(clause));
            };
            let value = value.trim().trim_matches('\'').to_owned();
            match (field, op) {
                ("eventTimestamp", "ge" | "gt") => {
                    out.since = Some(parse_time(&value).ok_or_else(|| bad(clause))?);
                }
                ("eventTimestamp", "le" | "lt") => {
                    out.until = Some(parse_time(&value).ok_or_else(|| bad(clause))?);
                }
                (
                    "resourceGroupName" | "resourceUri" | "resourceId" | "caller" | "correlationId"
                    | "status",
                    "eq",
                ) => out.equal.push((field.to_owned(), value)),
                _ => return Err(bad(clause)),
            }
        }
        Ok(out)
    }

    fn matches(&self, event: &ActivityEvent) -> bool {
        let b = &event.body;
        self.until.is_none_or(|u| event.time <= u)
            && self.equal.iter().all(|(field, value)| {
                let got = match field.as_str() {
                    "resourceGroupName" => b["resourceGroupName"].as_str(),
                    "resourceUri" | "resourceId" => b["resourceId"].as_str(),
                    "caller" => b["caller"].as_str(),
                    "correlationId" => b["correlationId"].as_str(),
                    _ => b.pointer("/status/value").and_then(Value::as_str),
                };
                got.is_some_and(|g| g.eq_ignore_ascii_case(value))
            })
    }
}

fn parse_time(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .ok()
        .or_else(|| {
            text.parse::<jiff::civil::DateTime>()
                .ok()
                .and_then(|d| d.to_zoned(jiff::tz::TimeZone::UTC).ok())
                .map(|z| z.timestamp().as_second())
        })
}

async fn list_subscription(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((sub, ns)): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> Response {
    respond(async {
        require_insights(&ns, q.api_version.as_deref())?;
        let scope = ResourceId::parse(&format!("/subscriptions/{sub}"))
            .map_err(|e| MgmtError::bad_request("InvalidSubscriptionId", e.to_string()))?;
        let caller = authorized(
            &state,
            &headers,
            &sub,
            "Microsoft.Insights/eventtypes/values/read",
            &scope,
        )
        .await?;
        list(
            &state,
            caller.principal.tenant_id,
            Some(&sub),
            q.filter.as_deref(),
        )
        .await
    })
    .await
}

async fn list_directory(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(ns): Path<String>,
    Query(q): Query<ListQuery>,
) -> Response {
    respond(async {
        require_insights(&ns, q.api_version.as_deref())?;
        let caller = authenticate(&state, &headers).await?;
        require_directory(&state, &caller, DirectoryOperation::ManageRoles).await?;
        list(
            &state,
            caller.principal.tenant_id,
            None,
            q.filter.as_deref(),
        )
        .await
    })
    .await
}

fn require_insights(namespace: &str, api_version: Option<&str>) -> Result<(), MgmtError> {
    if !namespace.eq_ignore_ascii_case("microsoft.insights") {
        return Err(MgmtError::not_found(
            "NoRegisteredProviderFound",
            format!("no resource provider `{namespace}` serves event types here"),
        ));
    }
    if api_version.is_none() {
        return Err(MgmtError::bad_request(
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    }
    Ok(())
}

async fn list(
    state: &SharedState,
    tenant: keyless_core::TenantId,
    subscription: Option<&str>,
    filter: Option<&str>,
) -> Result<(StatusCode, Value), MgmtError> {
    let selection = Selection::parse(filter)?;
    let since = selection
        .since
        .unwrap_or_else(|| state.now() - DEFAULT_SPAN);
    let events = state
        .store
        .activity(tenant, subscription, since, MAX_EVENTS)
        .await?;
    // Newest first, as Azure lists them.
    let value: Vec<Value> = events
        .iter()
        .rev()
        .filter(|e| selection.matches(e))
        .map(|e| e.body.clone())
        .collect();
    Ok((StatusCode::OK, json!({ "value": value })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_are_named_as_arm_names_them() {
        let sub = "/subscriptions/s/resourceGroups/g/providers";
        for (method, path, name) in [
            (
                Method::PUT,
                "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/x".to_owned(),
                "Microsoft.Authorization/roleAssignments/write",
            ),
            (
                Method::DELETE,
                format!("{sub}/Microsoft.Storage/storageAccounts/a"),
                "Microsoft.Storage/storageAccounts/delete",
            ),
            (
                Method::POST,
                format!("{sub}/Microsoft.Storage/storageAccounts/a/listKeys"),
                "Microsoft.Storage/storageAccounts/listKeys/action",
            ),
            (
                Method::PUT,
                format!("{sub}/Microsoft.MachineLearningServices/workspaces/w/computes/c"),
                "Microsoft.MachineLearningServices/workspaces/computes/write",
            ),
            (
                Method::POST,
                format!("{sub}/Microsoft.MachineLearningServices/workspaces/w/jobs/j/cancel"),
                "Microsoft.MachineLearningServices/workspaces/jobs/cancel/action",
            ),
            (
                Method::PUT,
                "/subscriptions/s/resourceGroups/g".to_owned(),
                "Microsoft.Resources/subscriptions/resourceGroups/write",
            ),
            (
                Method::POST,
                "/directory/users".to_owned(),
                "Microsoft.Directory/users/write",
            ),
            (
                Method::PATCH,
                "/directory/users/alice@x".to_owned(),
                "Microsoft.Directory/users/write",
            ),
        ] {
            assert_eq!(operation_name(&method, &path), name, "{method} {path}");
        }
    }

    #[test]
    fn filters_are_read_as_az_writes_them_and_anything_else_is_refused() {
        let s = Selection::parse(Some(
            "eventTimestamp ge '2026-12-01T00:00:00Z' and eventTimestamp le '2026-12-02T00:00:00Z' and resourceGroupName eq 'data'",
        ))
        .unwrap();
        assert_eq!(s.since, Some(1_796_083_200));
        assert_eq!(s.until, Some(1_796_169_600));
        assert_eq!(
            s.equal,
            vec![("resourceGroupName".to_owned(), "data".to_owned())]
        );
        assert!(Selection::parse(Some("caller ne 'x'")).is_err());
        assert!(Selection::parse(Some("eventTimestamp ge 'yesterday'")).is_err());
    }
}
