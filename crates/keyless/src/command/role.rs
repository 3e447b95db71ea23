//! `keyless role definition …` and `keyless role assignment …`, like `az role`.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::client::{Api, segment, values};
use crate::output::{Format, print};

const API_VERSION: &str = "2022-04-01";

#[derive(Debug, clap::Subcommand)]
pub(crate) enum RoleCommand {
    /// Role definitions.
    #[command(subcommand)]
    Definition(DefinitionCommand),
    /// Role assignments.
    #[command(subcommand)]
    Assignment(AssignmentCommand),
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum DefinitionCommand {
    /// List role definitions (built-in and custom).
    List {
        #[arg(long, short = 'n')]
        name: Option<String>,
        #[arg(long)]
        custom_role_only: bool,
    },
    /// Show one by name or GUID.
    Show {
        #[arg(long, short = 'n')]
        name: String,
    },
    /// Create a custom role from az's JSON (`Name`, `Description`, `Actions`,
    /// `NotActions`, `DataActions`, `NotDataActions`, `AssignableScopes`) or @FILE.
    Create {
        #[arg(long)]
        role_definition: String,
    },
    /// Delete a custom role (and its assignments).
    Delete {
        #[arg(long, short = 'n')]
        name: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AssignmentCommand {
    /// Assign a role to a principal at a scope.
    Create {
        /// User principal name, app id, object id or group name.
        #[arg(long)]
        assignee: String,
        /// Role name or GUID.
        #[arg(long)]
        role: String,
        /// The scope (default: the subscription).
        #[arg(long)]
        scope: Option<String>,
    },
    /// List assignments at, above and below a scope.
    List {
        #[arg(long)]
        assignee: Option<String>,
        #[arg(long)]
        scope: Option<String>,
        /// Everything in the subscription.
        #[arg(long)]
        all: bool,
    },
    /// Delete assignments by id, or by assignee, role and scope.
    Delete {
        #[arg(long, num_args = 1..)]
        ids: Vec<String>,
        #[arg(long)]
        assignee: Option<String>,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        scope: Option<String>,
    },
}

pub(crate) async fn run(cmd: RoleCommand, format: Format) -> Result<()> {
    let api = Api::connect().await?;
    let sub_scope = || api.subscription().map(|s| format!("/subscriptions/{s}"));
    let value = match cmd {
        RoleCommand::Definition(cmd) => {
            let value = definition(&api, cmd, &sub_scope()?).await?;
            match value {
                Value::Array(items) => Value::Array(items.iter().map(flat_definition).collect()),
                Value::Null => Value::Null,
                one => flat_definition(&one),
            }
        }
        RoleCommand::Assignment(AssignmentCommand::Create {
            assignee,
            role,
            scope,
        }) => {
            let scope = scope.map_or_else(sub_scope, Ok)?;
            let principal = object_id(&api, &assignee).await?;
            let role = role_definition(&api, &scope, &role).await?;
            let role_id = role
                .get("id")
                .and_then(Value::as_str)
                .context("no role id")?
                .to_owned();
            let name = uuid_v4();
            let body =
                json!({ "properties": { "roleDefinitionId": role_id, "principalId": principal } });
            let names = role_names(&api, &scope).await?;
            match api.put(&format!("{}/providers/Microsoft.Authorization/roleAssignments/{name}?api-version={API_VERSION}", path(&scope)), &body).await {
                Ok(created) => flatten(&created, &names),
                // az is idempotent here: the assignment that exists is the answer.
                Err(e) if assignment_exists(&e) => {
                    let held = api.get(&format!("{}/providers/Microsoft.Authorization/roleAssignments?api-version={API_VERSION}&$filter=assignedTo('{principal}')", path(&scope))).await.map(values)?;
                    let same = held.as_array().into_iter().flatten().find(|a| {
                        let p = |k: &str| a.pointer(&format!("/properties/{k}")).and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
                        p("roleDefinitionId") == role_id.to_ascii_lowercase() && p("scope") == scope.to_ascii_lowercase()
                    });
                    match same {
                        Some(a) => flatten(a, &names),
                        None => return Err(e),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        RoleCommand::Assignment(AssignmentCommand::List {
            assignee,
            scope,
            all,
        }) => {
            let scope = match (scope, all) {
                (Some(s), false) => s,
                (None, _) | (_, true) => sub_scope()?,
            };
            let filter = match assignee {
                Some(a) => format!("&$filter=assignedTo('{}')", object_id(&api, &a).await?),
                None => String::new(),
            };
            let list = api.get(&format!("{}/providers/Microsoft.Authorization/roleAssignments?api-version={API_VERSION}{filter}", path(&scope))).await.map(values)?;
            let names = role_names(&api, &scope).await?;
            Value::Array(
                list.as_array()
                    .map(|a| a.iter().map(|x| flatten(x, &names)).collect())
                    .unwrap_or_default(),
            )
        }
        RoleCommand::Assignment(AssignmentCommand::Delete {
            ids,
            assignee,
            role,
            scope,
        }) => {
            let targets: Vec<String> = if !ids.is_empty() {
                ids
            } else {
                let scope = scope.map_or_else(sub_scope, Ok)?;
                let filter = match &assignee {
                    Some(a) => format!("&$filter=assignedTo('{}')", object_id(&api, a).await?),
                    None => String::new(),
                };
                let list = api.get(&format!("{}/providers/Microsoft.Authorization/roleAssignments?api-version={API_VERSION}{filter}", path(&scope))).await.map(values)?;
                let role_id = match &role {
                    Some(r) => role_definition(&api, &scope, r)
                        .await?
                        .get("name")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    None => None,
                };
                list.as_array()
                    .into_iter()
                    .flatten()
                    .filter(|a| {
                        a.pointer("/properties/scope")
                            .and_then(Value::as_str)
                            .is_some_and(|s| s.eq_ignore_ascii_case(&scope))
                    })
                    .filter(|a| {
                        role_id.as_deref().is_none_or(|r| {
                            a.pointer("/properties/roleDefinitionId")
                                .and_then(Value::as_str)
                                .is_some_and(|d| d.ends_with(r))
                        })
                    })
                    .filter_map(|a| a.get("id").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            };
            if targets.is_empty() {
                bail!("no role assignment matches");
            }
            let mut deleted = Vec::new();
            for id in targets {
                deleted.push(
                    api.delete(&format!("{}?api-version={API_VERSION}", path(&id)))
                        .await?,
                );
            }
            Value::Array(deleted)
        }
    };
    print(&value, format);
    Ok(())
}

async fn definition(api: &Api, cmd: DefinitionCommand, sub: &str) -> Result<Value> {
    let base = format!("{sub}/providers/Microsoft.Authorization/roleDefinitions");
    Ok(match cmd {
        DefinitionCommand::List {
            name,
            custom_role_only,
        } => {
            let filter = name
                .map(|n| format!("&$filter=roleName eq '{}'", n.replace('\'', "''")))
                .unwrap_or_default();
            let list = api
                .get(&format!(
                    "{}?api-version={API_VERSION}{filter}",
                    path(&base)
                ))
                .await
                .map(values)?;
            let keep = |d: &&Value| {
                !custom_role_only
                    || d.pointer("/properties/type").and_then(Value::as_str) == Some("CustomRole")
            };
            Value::Array(
                list.as_array()
                    .map(|a| a.iter().filter(keep).cloned().collect())
                    .unwrap_or_default(),
            )
        }
        DefinitionCommand::Show { name } => role_definition(api, sub, &name).await?,
        DefinitionCommand::Create { role_definition } => {
            let text = match role_definition.strip_prefix('@') {
                Some(file) => std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read `{file}`"))?,
                None => role_definition,
            };
            let az: Value = serde_json::from_str(&text).context("--role-definition is not JSON")?;
            let field = |k: &str| {
                az.get(k)
                    .or_else(|| az.get(k.to_ascii_lowercase()))
                    .cloned()
            };
            let list = |k: &str| field(k).unwrap_or_else(|| json!([]));
            let name = field("Name")
                .and_then(|v| v.as_str().map(str::to_owned))
                .context("the role definition needs `Name`")?;
            let body = json!({ "properties": {
                "roleName": name,
                "description": field("Description").unwrap_or_else(|| json!("")),
                "type": "CustomRole",
                "permissions": [{ "actions": list("Actions"), "notActions": list("NotActions"), "dataActions": list("DataActions"), "notDataActions": list("NotDataActions") }],
                "assignableScopes": list("AssignableScopes"),
            }});
            api.put(
                &format!("{}/{}?api-version={API_VERSION}", path(&base), uuid_v4()),
                &body,
            )
            .await?
        }
        DefinitionCommand::Delete { name } => {
            let role = role_definition(api, sub, &name).await?;
            let id = role
                .get("name")
                .and_then(Value::as_str)
                .context("no role id")?;
            api.delete(&format!("{}/{id}?api-version={API_VERSION}", path(&base)))
                .await?
        }
    })
}

/// A role definition as az prints it: ARM's `properties` lifted to the top,
/// their `type` as `roleType`, beside `id`, `name` and `type`.
fn flat_definition(arm: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in ["id", "name", "type"] {
        out.insert(key.into(), arm.get(key).cloned().unwrap_or(Value::Null));
    }
    if let Some(props) = arm.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            let key = if k == "type" { "roleType" } else { k.as_str() };
            out.insert(key.into(), v.clone());
        }
    }
    for key in ["createdBy", "createdOn", "updatedBy", "updatedOn"] {
        out.entry(key).or_insert(Value::Null);
    }
    Value::Object(out)
}

/// A role definition by name or GUID.
async fn role_definition(api: &Api, scope: &str, role: &str) -> Result<Value> {
    let base = format!(
        "{}/providers/Microsoft.Authorization/roleDefinitions",
        path(scope)
    );
    if uuid_like(role) {
        return api
            .get(&format!("{base}/{role}?api-version={API_VERSION}"))
            .await;
    }
    let list = api
        .get(&format!(
            "{base}?api-version={API_VERSION}&$filter=roleName eq '{}'",
            role.replace('\'', "''")
        ))
        .await
        .map(values)?;
    list.as_array()
        .and_then(|a| a.first())
        .cloned()
        .with_context(|| {
            format!("no role named `{role}`; `keyless role definition list` shows them")
        })
}

async fn role_names(api: &Api, scope: &str) -> Result<HashMap<String, String>> {
    let list = api
        .get(&format!(
            "{}/providers/Microsoft.Authorization/roleDefinitions?api-version={API_VERSION}",
            path(scope)
        ))
        .await
        .map(values)?;
    Ok(list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| {
            Some((
                d.get("name")?.as_str()?.to_ascii_lowercase(),
                d.pointer("/properties/roleName")?.as_str()?.to_owned(),
            ))
        })
        .collect())
}

/// az's flat shape of an assignment.
fn flatten(a: &Value, names: &HashMap<String, String>) -> Value {
    let p = |k: &str| {
        a.pointer(&format!("/properties/{k}"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let role_id = p("roleDefinitionId");
    let role_name = role_id
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .and_then(|g| names.get(&g.to_ascii_lowercase()))
        .cloned();
    json!({
        "id": a.get("id"),
        "name": a.get("name"),
        "principalId": p("principalId"),
        "principalType": p("principalType"),
        "roleDefinitionId": role_id,
        "roleDefinitionName": role_name,
        "scope": p("scope"),
        "type": "Microsoft.Authorization/roleAssignments",
    })
}

pub(crate) async fn object_id(api: &Api, key: &str) -> Result<String> {
    let p = api
        .get(&format!("/directory/objects/{}", segment(key)))
        .await?;
    p.get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("the directory returned no id")
}

/// Percent-encodes each segment of a scope, keeping the slashes.
fn path(scope: &str) -> String {
    scope.split('/').map(segment).collect::<Vec<_>>().join("/")
}

fn uuid_like(text: &str) -> bool {
    text.len() == 36 && text.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

fn uuid_v4() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Whether a refusal says the role assignment exists already.
fn assignment_exists(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|e| e.downcast_ref::<crate::client::ApiError>())
        .any(|e| e.code == "RoleAssignmentExists")
}
