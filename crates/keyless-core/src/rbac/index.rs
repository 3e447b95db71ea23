//! The compiled form of every role assignment, for checks that cost microseconds
//! whatever the number of assignments elsewhere.
//!
//! Assignments are grouped by principal; a principal with many assignments also
//! indexes them by scope, so a check looks up the target scope and each of its
//! ancestors instead of scanning. The index is immutable: a change to roles,
//! assignments or subscriptions builds a new one, which callers swap in whole.

use std::collections::HashMap;
use std::sync::Arc;

use crate::{ObjectId, ResourceId, TenantId};

use super::{Decision, Permission, RoleAssignment, RoleDefinition};

/// Above this many assignments a principal's are indexed by scope.
const SCAN_LIMIT: usize = 8;

/// Why a check was denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    /// No assignment on the path grants the permission; these roles would.
    NoAssignment {
        /// Names of roles that grant the permission (filled by [`RbacIndex::explain`]).
        roles_that_grant: Vec<String>,
    },
    /// The scope belongs to another tenant than the principal.
    CrossTenant {
        /// The principal's tenant.
        principal_tenant: TenantId,
        /// The scope's tenant.
        scope_tenant: TenantId,
    },
    /// The scope lies in no known subscription.
    UnknownScope,
}

/// One question for the index.
#[derive(Debug, Clone, Copy)]
pub struct AccessRequest<'a> {
    /// The tenant of the caller.
    pub tenant: TenantId,
    /// The caller's object id followed by its transitive groups.
    pub principals: &'a [ObjectId],
    /// The operation.
    pub permission: Permission<'a>,
    /// Where.
    pub scope: &'a ResourceId,
}

#[derive(Debug)]
struct Entry {
    name: String,
    scope: ResourceId,
    role: Arc<RoleDefinition>,
}

#[derive(Debug, Default)]
struct PrincipalEntries {
    entries: Vec<Entry>,
    by_scope: HashMap<String, Vec<usize>>,
}

/// Every role definition and assignment, compiled for checks.
#[derive(Debug, Default)]
pub struct RbacIndex {
    roles: Vec<Arc<RoleDefinition>>,
    by_principal: HashMap<ObjectId, PrincipalEntries>,
    subscriptions: HashMap<String, TenantId>,
    assignments: usize,
}

impl RbacIndex {
    /// Compiles `assignments` over `roles`. Assignments of unknown roles are dropped.
    pub fn new(
        roles: impl IntoIterator<Item = RoleDefinition>,
        assignments: impl IntoIterator<Item = RoleAssignment>,
        subscriptions: impl IntoIterator<Item = (String, TenantId)>,
    ) -> Self {
        let roles: Vec<Arc<RoleDefinition>> = roles.into_iter().map(Arc::new).collect();
        let by_id: HashMap<String, Arc<RoleDefinition>> = roles
            .iter()
            .map(|r| (r.id.to_ascii_lowercase(), Arc::clone(r)))
            .collect();
        let mut by_principal: HashMap<ObjectId, PrincipalEntries> = HashMap::new();
        let mut count = 0;
        for a in assignments {
            let Some(role) = by_id.get(&a.role_definition_id.to_ascii_lowercase()) else {
                continue;
            };
            let slot = by_principal.entry(a.principal_id).or_default();
            slot.entries.push(Entry {
                name: a.name,
                scope: a.scope,
                role: Arc::clone(role),
            });
            count += 1;
        }
        for slot in by_principal.values_mut() {
            if slot.entries.len() > SCAN_LIMIT {
                for (i, e) in slot.entries.iter().enumerate() {
                    slot.by_scope
                        .entry(e.scope.key().to_owned())
                        .or_default()
                        .push(i);
                }
            }
        }
        let subscriptions = subscriptions
            .into_iter()
            .map(|(id, t)| (id.to_ascii_lowercase(), t))
            .collect();
        Self {
            roles,
            by_principal,
            subscriptions,
            assignments: count,
        }
    }

    /// How many assignments the index holds.
    pub fn len(&self) -> usize {
        self.assignments
    }

    /// Whether the index holds no assignment.
    pub fn is_empty(&self) -> bool {
        self.assignments == 0
    }

    /// The tenant a scope belongs to, through its subscription.
    pub fn tenant_of(&self, scope: &ResourceId) -> Option<TenantId> {
        // The key is the id in lowercase, as the subscriptions are kept.
        let rest = scope.key().strip_prefix("/subscriptions/")?;
        let id = rest.split_once('/').map_or(rest, |(id, _)| id);
        self.subscriptions.get(id).copied()
    }

    /// A role definition by GUID or name, case-insensitively.
    pub fn role(&self, name_or_id: &str) -> Option<&RoleDefinition> {
        self.roles
            .iter()
            .find(|r| {
                r.id.eq_ignore_ascii_case(name_or_id) || r.name.eq_ignore_ascii_case(name_or_id)
            })
            .map(Arc::as_ref)
    }

    /// Every role definition.
    pub fn roles(&self) -> impl Iterator<Item = &RoleDefinition> {
        self.roles.iter().map(Arc::as_ref)
    }

    /// Whether the request is allowed: [`RbacIndex::check`] without building the
    /// decision, for the data plane, which needs the reason only on a refusal.
    pub fn allows(&self, request: &AccessRequest<'_>) -> bool {
        self.tenant_of(request.scope) == Some(request.tenant)
            && request.principals.iter().any(|principal| {
                self.by_principal
                    .get(principal)
                    .is_some_and(|slot| slot.find(request.scope, request.permission).is_some())
            })
    }

    /// Decides a request: deny by default, with the reason.
    pub fn check(&self, request: &AccessRequest<'_>) -> Decision {
        let deny = |reason| Decision::Deny {
            missing: request.permission.as_str().to_owned(),
            scope: request.scope.to_string(),
            reason,
        };
        match self.tenant_of(request.scope) {
            None => return deny(DenyReason::UnknownScope),
            Some(t) if t != request.tenant => {
                return deny(DenyReason::CrossTenant {
                    principal_tenant: request.tenant,
                    scope_tenant: t,
                });
            }
            Some(_) => {}
        }
        for principal in request.principals {
            let Some(slot) = self.by_principal.get(principal) else {
                continue;
            };
            if let Some(entry) = slot.find(request.scope, request.permission) {
                return Decision::Allow {
                    assignment: entry.name.clone(),
                    role_name: entry.role.name.clone(),
                    scope: entry.scope.to_string(),
                    principal_id: *principal,
                };
            }
        }
        deny(DenyReason::NoAssignment {
            roles_that_grant: Vec::new(),
        })
    }

    /// [`RbacIndex::check`], and for a denial the roles that would grant the
    /// permission (the slow part of a refusal, kept off the allow path).
    pub fn explain(&self, request: &AccessRequest<'_>) -> Decision {
        match self.check(request) {
            Decision::Deny {
                missing,
                scope,
                reason: DenyReason::NoAssignment { .. },
            } => {
                let roles_that_grant = self
                    .roles
                    .iter()
                    .filter(|r| r.grants(request.permission))
                    .map(|r| r.name.clone())
                    .take(4)
                    .collect();
                Decision::Deny {
                    missing,
                    scope,
                    reason: DenyReason::NoAssignment { roles_that_grant },
                }
            }
            other => other,
        }
    }
}

impl PrincipalEntries {
    fn find(&self, scope: &ResourceId, permission: Permission<'_>) -> Option<&Entry> {
        if self.by_scope.is_empty() {
            return self
                .entries
                .iter()
                .find(|e| e.scope.contains(scope) && e.role.grants(permission));
        }
        ancestors(scope.key()).find_map(|prefix| {
            self.by_scope
                .get(prefix)?
                .iter()
                .filter_map(|&i| self.entries.get(i))
                .find(|e| e.role.grants(permission))
        })
    }
}

/// The scope key itself, then each ancestor up to the root `/`.
fn ancestors(key: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(key);
    std::iter::from_fn(move || {
        let current = next?;
        next = match current.rfind('/') {
            _ if current == "/" => None,
            Some(0) | None => Some("/"),
            Some(i) => current.get(..i),
        };
        Some(current)
    })
}
