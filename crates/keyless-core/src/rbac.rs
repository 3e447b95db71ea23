//! Azure RBAC: role definitions, role assignments and the decision function.
//!
//! Effective permissions of a role are `(actions − notActions)` for control-plane
//! operations and `(dataActions − notDataActions)` for data operations; a role's
//! `actions` never grant a data action. Assignments are inherited by every scope
//! below theirs. Anything not granted is denied.

use serde::{Deserialize, Serialize};

use crate::{ObjectId, ResourceId};

/// A role: named sets of permitted operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDefinition {
    /// The role definition GUID scripts refer to.
    pub id: String,
    /// The role name, e.g. `Storage Blob Data Reader`.
    pub name: String,
    /// What the role is for.
    pub description: String,
    /// Control-plane operations granted (with `*` wildcards).
    pub actions: Vec<String>,
    /// Control-plane operations taken away again.
    pub not_actions: Vec<String>,
    /// Data-plane operations granted.
    pub data_actions: Vec<String>,
    /// Data-plane operations taken away again.
    pub not_data_actions: Vec<String>,
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
    /// Allowed by `assignment`, which grants role `role_name`.
    Allow {
        /// The assignment that grants.
        assignment: String,
        /// The role it grants.
        role_name: String,
        /// The scope it was made at.
        scope: String,
    },
    /// Denied: no assignment at the scope or above grants the permission.
    Deny {
        /// The permission that was missing.
        missing: String,
        /// The scope it was needed at.
        scope: String,
    },
}

impl Decision {
    /// Whether the operation may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Self::Allow { .. })
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
}

/// Decides whether any of `principals` (a principal and its transitive groups) may
/// perform `permission` at `scope`, given every assignment and role definition.
pub fn evaluate<'a>(
    principals: &[ObjectId],
    assignments: impl IntoIterator<Item = &'a RoleAssignment>,
    roles: &[RoleDefinition],
    permission: Permission<'_>,
    scope: &ResourceId,
) -> Decision {
    for assignment in assignments {
        if !principals.contains(&assignment.principal_id) || !assignment.scope.contains(scope) {
            continue;
        }
        let Some(role) = roles
            .iter()
            .find(|r| r.id.eq_ignore_ascii_case(&assignment.role_definition_id))
        else {
            continue;
        };
        if role.grants(permission) {
            return Decision::Allow {
                assignment: assignment.name.clone(),
                role_name: role.name.clone(),
                scope: assignment.scope.to_string(),
            };
        }
    }
    Decision::Deny {
        missing: permission.as_str().to_owned(),
        scope: scope.to_string(),
    }
}

/// Matches an operation against a pattern with `*` wildcards, case-insensitively.
pub fn action_matches(pattern: &str, operation: &str) -> bool {
    glob(pattern.as_bytes(), operation.as_bytes())
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

fn role(
    id: &str,
    name: &str,
    description: &str,
    actions: &[&str],
    not_actions: &[&str],
) -> RoleDefinition {
    RoleDefinition {
        id: id.into(),
        name: name.into(),
        description: description.into(),
        actions: actions.iter().map(|s| (*s).to_owned()).collect(),
        not_actions: not_actions.iter().map(|s| (*s).to_owned()).collect(),
        data_actions: Vec::new(),
        not_data_actions: Vec::new(),
    }
}

/// The GUID of the built-in Owner role.
pub const OWNER_ROLE_ID: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";

/// Azure's built-in roles that keyless knows, by their exact names, GUIDs and operations.
pub fn builtin_roles() -> Vec<RoleDefinition> {
    vec![
        role(
            OWNER_ROLE_ID,
            "Owner",
            "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
            &["*"],
            &[],
        ),
        role(
            "b24988ac-6180-42a0-ab88-20f7382dd24c",
            "Contributor",
            "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC.",
            &["*"],
            &[
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/elevateAccess/Action",
                "Microsoft.Blueprint/blueprintAssignments/write",
                "Microsoft.Blueprint/blueprintAssignments/delete",
                "Microsoft.Compute/galleries/share/action",
                "Microsoft.Purview/consents/write",
                "Microsoft.Purview/consents/delete",
                "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
                "Microsoft.Subscription/cancel/action",
                "Microsoft.Subscription/enable/action",
            ],
        ),
        role(
            "acdd72a7-3385-48ef-bd42-f606fba81ae7",
            "Reader",
            "View all resources, but does not allow you to make any changes.",
            &["*/read"],
            &[],
        ),
        role(
            "18d7d88d-d35e-4fb5-a5c3-7773c4a72b9d",
            "User Access Administrator",
            "Lets you manage user access to Azure resources.",
            &["*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"],
            &[],
        ),
        role(
            "f1a07417-d97a-45cb-824c-7a7467783830",
            "Managed Identity Operator",
            "Read and Assign User Assigned Identity",
            &[
                "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
                "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
                "Microsoft.Authorization/*/read",
                "Microsoft.Insights/alertRules/*",
                "Microsoft.Resources/subscriptions/resourceGroups/read",
                "Microsoft.Resources/deployments/*",
                "Microsoft.Support/*",
            ],
            &[],
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_azure() {
        assert!(action_matches(
            "*",
            "Microsoft.Storage/storageAccounts/read"
        ));
        assert!(action_matches(
            "*/read",
            "Microsoft.Storage/storageAccounts/read"
        ));
        assert!(!action_matches(
            "*/read",
            "Microsoft.Storage/storageAccounts/write"
        ));
        assert!(action_matches(
            "Microsoft.Authorization/*/Write",
            "microsoft.authorization/roleAssignments/write"
        ));
        assert!(!action_matches(
            "Microsoft.Authorization/*/Write",
            "Microsoft.Storage/x/write"
        ));
        assert!(action_matches(
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
            "Microsoft.ManagedIdentity/userAssignedIdentities/a/b/read"
        ));
        assert!(!action_matches("Microsoft.Storage/*", "Microsoft.Stor"));
    }

    #[test]
    fn contributor_cannot_write_role_assignments_owner_can() {
        let roles = builtin_roles();
        let owner = roles.iter().find(|r| r.name == "Owner").unwrap();
        let contributor = roles.iter().find(|r| r.name == "Contributor").unwrap();
        let op = Permission::Action("Microsoft.Authorization/roleAssignments/write");
        assert!(owner.grants(op));
        assert!(!contributor.grants(op));
        assert!(contributor.grants(Permission::Action(
            "Microsoft.ManagedIdentity/userAssignedIdentities/write"
        )));
        assert!(!owner.grants(Permission::DataAction(
            "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read"
        )));
    }

    #[test]
    fn assignments_are_inherited_downwards_only() {
        let roles = builtin_roles();
        let p = ObjectId::new_random();
        let rg = ResourceId::parse("/subscriptions/s1/resourceGroups/rg").unwrap();
        let a = RoleAssignment {
            name: "a1".into(),
            scope: rg.clone(),
            role_definition_id: OWNER_ROLE_ID.into(),
            principal_id: p,
        };
        let below = rg
            .child(
                "providers/Microsoft.ManagedIdentity/userAssignedIdentities",
                "x",
            )
            .unwrap();
        let write = Permission::Action("Microsoft.ManagedIdentity/userAssignedIdentities/write");
        assert!(evaluate(&[p], [&a], &roles, write, &below).is_allowed());
        let sub = ResourceId::parse("/subscriptions/s1").unwrap();
        assert!(!evaluate(&[p], [&a], &roles, write, &sub).is_allowed());
        assert!(!evaluate(&[ObjectId::new_random()], [&a], &roles, write, &below).is_allowed());
    }
}
