//! Azure RBAC: role definitions, role assignments and the decision function.
//!
//! Effective permissions of a role are `(actions − notActions)` for control-plane
//! operations and `(dataActions − notDataActions)` for data operations; a role's
//! `actions` never grant a data action. `*` in a pattern matches any run of
//! characters, across `/` (so `*/read` matches every read). Assignments are
//! inherited by every scope below theirs. Anything not granted is denied, and a
//! principal never reaches another tenant's scopes.

mod index;

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

use crate::{ObjectId, ResourceId};

pub use index::{AccessRequest, DenyReason, RbacIndex};

/// A role: named sets of permitted operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDefinition {
    /// The role definition GUID scripts refer to.
    pub id: String,
    /// The role name, e.g. `Storage Blob Data Reader`.
    pub name: String,
    /// What the role is for.
    #[serde(default)]
    pub description: String,
    /// Control-plane operations granted (with `*` wildcards).
    #[serde(default)]
    pub actions: Vec<String>,
    /// Control-plane operations taken away again.
    #[serde(default)]
    pub not_actions: Vec<String>,
    /// Data-plane operations granted.
    #[serde(default)]
    pub data_actions: Vec<String>,
    /// Data-plane operations taken away again.
    #[serde(default)]
    pub not_data_actions: Vec<String>,
    /// Where a custom role may be assigned (empty for built-in roles: anywhere).
    #[serde(default)]
    pub assignable_scopes: Vec<String>,
    /// Whether the role is one of Azure's built-ins.
    #[serde(default = "yes")]
    pub builtin: bool,
}

fn yes() -> bool {
    true
}

/// An operation to authorize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission<'a> {
    /// A control-plane action such as `Microsoft.Authorization/roleAssignments/write`.
    Action(&'a str),
    /// A data action such as `Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read`.
    DataAction(&'a str),
}

impl Permission<'_> {
    /// The operation string.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Action(a) | Self::DataAction(a) => a,
        }
    }
}

/// A grant of a role to a principal at a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleAssignment {
    /// The assignment's GUID name.
    pub name: String,
    /// Where it applies (and below).
    pub scope: ResourceId,
    /// The role definition GUID.
    pub role_definition_id: String,
    /// The principal (user, group, service principal or managed identity) granted.
    pub principal_id: ObjectId,
}

/// The outcome of an authorization check, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed by `assignment`, which grants role `role_name` to `principal_id`.
    Allow {
        /// The assignment that grants.
        assignment: String,
        /// The role it grants.
        role_name: String,
        /// The scope it was made at.
        scope: String,
        /// The principal it was made to: the caller or one of its groups.
        principal_id: ObjectId,
    },
    /// Denied.
    Deny {
        /// The permission that was missing.
        missing: String,
        /// The scope it was needed at.
        scope: String,
        /// Why nothing granted it.
        reason: DenyReason,
    },
}

impl Decision {
    /// Whether the operation may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow { .. })
    }

    /// One sentence for people: who granted, or what was missing where and how to grant it.
    pub fn explanation(&self) -> String {
        match self {
            Self::Allow {
                assignment,
                role_name,
                scope,
                principal_id,
            } => {
                format!(
                    "allowed by role assignment `{assignment}` of `{role_name}` to `{principal_id}` at scope `{scope}`"
                )
            }
            Self::Deny {
                missing,
                scope,
                reason,
            } => match reason {
                DenyReason::NoAssignment { roles_that_grant } if roles_that_grant.is_empty() => {
                    format!(
                        "no role assignment at `{scope}` or above grants `{missing}`, and no known role grants it"
                    )
                }
                DenyReason::NoAssignment { roles_that_grant } => format!(
                    "no role assignment at `{scope}` or above grants `{missing}`; any of {} assigned there would grant it",
                    roles_that_grant
                        .iter()
                        .map(|r| format!("`{r}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                DenyReason::CrossTenant {
                    principal_tenant,
                    scope_tenant,
                } => format!(
                    "`{scope}` belongs to tenant `{scope_tenant}`, the principal to tenant `{principal_tenant}`; cross-tenant access is not supported"
                ),
                DenyReason::UnknownScope => {
                    format!("`{scope}` lies in no subscription this server hosts")
                }
            },
        }
    }
}

impl RoleDefinition {
    /// Whether this role grants `permission`.
    pub fn grants(&self, permission: Permission<'_>) -> bool {
        let (allow, deny) = match permission {
            Permission::Action(_) => (&self.actions, &self.not_actions),
            Permission::DataAction(_) => (&self.data_actions, &self.not_data_actions),
        };
        let op = permission.as_str();
        allow.iter().any(|p| action_matches(p, op)) && !deny.iter().any(|p| action_matches(p, op))
    }

    /// Whether the role may be assigned at `scope`.
    pub fn assignable_at(&self, scope: &ResourceId) -> bool {
        self.builtin
            || self
                .assignable_scopes
                .iter()
                .any(|s| ResourceId::parse(s).is_ok_and(|allowed| allowed.contains(scope)))
    }
}

/// Matches an operation against a pattern with `*` wildcards, case-insensitively.
///
/// A `/*/` segment also matches a single `/`: Managed Identity Operator's
/// `userAssignedIdentities/*/assign/action` grants `userAssignedIdentities/assign/action`,
/// and AzureML Data Scientist needs its `workspaces/write` not-action precisely because
/// `workspaces/*/write` would otherwise grant it.
pub fn action_matches(pattern: &str, operation: &str) -> bool {
    if !pattern.contains('*') {
        return pattern.eq_ignore_ascii_case(operation);
    }
    glob(pattern.as_bytes(), operation.as_bytes())
        || (pattern.contains("/*/")
            && glob(
                pattern.replacen("/*/", "/", 1).as_bytes(),
                operation.as_bytes(),
            ))
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative wildcard matching with backtracking to the last `*`.
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if text.get(t).is_some_and(|x| x.eq_ignore_ascii_case(c)) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern
        .get(p..)
        .is_some_and(|rest| rest.iter().all(|&c| c == b'*'))
}

/// The GUID of the built-in Owner role.
pub const OWNER_ROLE_ID: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";

static BUILTIN: LazyLock<Vec<RoleDefinition>> = LazyLock::new(|| {
    serde_json::from_str(include_str!("rbac/builtin_roles.json")).unwrap_or_default()
});

/// Azure's built-in roles that keyless knows, by their exact names, GUIDs and operations.
pub fn builtin_roles() -> &'static [RoleDefinition] {
    &BUILTIN
}

/// A built-in role by name or GUID, case-insensitively.
pub fn builtin_role(name_or_id: &str) -> Option<&'static RoleDefinition> {
    builtin_roles()
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(name_or_id) || r.id.eq_ignore_ascii_case(name_or_id))
}

#[cfg(test)]
mod tests;
