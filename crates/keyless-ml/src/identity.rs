//! The managed identities of workspaces and computes: which kinds each resource
//! allows, and how a workspace's identities may change.

use serde_json::{Map, Value, json};

use keyless_core::Error;

/// The identity `type` of a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `none`.
    None,
    /// `system_assigned`.
    SystemAssigned,
    /// `user_assigned`.
    UserAssigned,
    /// `system_assigned,user_assigned`.
    Both,
}

impl Kind {
    /// Parses a type as the SDK does: camel case and snake case alike
    /// (`SystemAssigned`, `system_assigned`), blanks around the comma ignored.
    ///
    /// # Errors
    /// [`Error`] listing the types.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let snake: Vec<String> = text
            .split(',')
            .map(|part| snake_case(part.trim()))
            .collect();
        let parts: Vec<&str> = snake.iter().map(String::as_str).collect();
        match parts.as_slice() {
            ["none"] => Ok(Self::None),
            ["system_assigned"] => Ok(Self::SystemAssigned),
            ["user_assigned"] => Ok(Self::UserAssigned),
            ["system_assigned", "user_assigned"] | ["user_assigned", "system_assigned"] => {
                Ok(Self::Both)
            }
            _ => Err(Error::invalid(format!(
                "identity type `{text}` is not one of system_assigned, user_assigned, system_assigned,user_assigned, none"
            ))),
        }
    }

    /// The ARM spelling.
    pub fn rest_name(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::SystemAssigned => "SystemAssigned",
            Self::UserAssigned => "UserAssigned",
            Self::Both => "SystemAssigned,UserAssigned",
        }
    }

    /// Whether it includes a system-assigned identity.
    pub fn has_system(self) -> bool {
        matches!(self, Self::SystemAssigned | Self::Both)
    }

    /// Whether it includes user-assigned identities.
    pub fn has_user(self) -> bool {
        matches!(self, Self::UserAssigned | Self::Both)
    }
}

/// `SystemAssigned` → `system_assigned`; snake case stays as it is.
pub fn snake_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for (i, c) in text.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A resource's identity block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identities {
    /// The type.
    pub kind: Kind,
    /// User-assigned identity resource ids, in the order given.
    pub user_assigned: Vec<String>,
}

const UAI_MARK: &str = "/providers/microsoft.managedidentity/userassignedidentities/";

impl Identities {
    /// Parses the ARM `identity` object; absent means `default`.
    ///
    /// # Errors
    /// [`Error`] for an unknown type, a malformed identity id, or identities that
    /// do not match the type.
    pub fn from_rest(identity: Option<&Value>, default: Kind) -> Result<Self, Error> {
        let Some(identity) = identity.filter(|v| !v.is_null()) else {
            return Ok(Self {
                kind: default,
                user_assigned: Vec::new(),
            });
        };
        let kind = match identity.get("type").and_then(Value::as_str) {
            Some(t) => Kind::parse(t)?,
            None => default,
        };
        let mut user_assigned: Vec<String> = Vec::new();
        if let Some(map) = identity
            .get("userAssignedIdentities")
            .and_then(Value::as_object)
        {
            for id in map.keys() {
                if !id.to_ascii_lowercase().contains(UAI_MARK) || !id.starts_with("/subscriptions/")
                {
                    return Err(Error::invalid(format!(
                        "`{id}` is not a user-assigned identity id (/subscriptions/<s>/resourceGroups/<rg>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>)"
                    )));
                }
                if !user_assigned.iter().any(|u| u.eq_ignore_ascii_case(id)) {
                    user_assigned.push(id.clone());
                }
            }
        }
        if kind.has_user() && user_assigned.is_empty() {
            return Err(Error::invalid(format!(
                "identity type {} needs at least one entry in userAssignedIdentities",
                kind.rest_name()
            )));
        }
        if !kind.has_user() && !user_assigned.is_empty() {
            return Err(Error::invalid(format!(
                "identity type {} takes no user-assigned identities; use user_assigned or system_assigned,user_assigned",
                kind.rest_name()
            )));
        }
        Ok(Self {
            kind,
            user_assigned,
        })
    }

    /// The ARM `identity` object: the system-assigned identity's ids, if there is
    /// one, and each user-assigned identity with what `described` says of it.
    pub fn to_rest(
        &self,
        system: Option<&keyless_core::Principal>,
        described: &Map<String, Value>,
    ) -> Value {
        let mut out = Map::new();
        out.insert("type".into(), self.kind.rest_name().into());
        if let Some(p) = system {
            out.insert("principalId".into(), p.object_id.to_string().into());
            out.insert("tenantId".into(), p.tenant_id.to_string().into());
        }
        if !self.user_assigned.is_empty() {
            let map: Map<String, Value> = self
                .user_assigned
                .iter()
                .map(|id| {
                    (
                        id.clone(),
                        described.get(id).cloned().unwrap_or_else(|| json!({})),
                    )
                })
                .collect();
            out.insert("userAssignedIdentities".into(), Value::Object(map));
        }
        Value::Object(out)
    }
}

/// The kinds of compute, as far as their identity rules go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComputeType {
    /// `amlcompute` (`AmlCompute`): a cluster.
    Cluster,
    /// `computeinstance` (`ComputeInstance`).
    Instance,
    /// `kubernetes` (`Kubernetes`).
    Kubernetes,
}

impl ComputeType {
    /// Parses the REST `computeType`.
    ///
    /// # Errors
    /// [`Error`] listing the types keyless runs.
    pub fn parse(rest: &str) -> Result<Self, Error> {
        match rest {
            "AmlCompute" => Ok(Self::Cluster),
            "ComputeInstance" => Ok(Self::Instance),
            "Kubernetes" => Ok(Self::Kubernetes),
            other => Err(Error::invalid(format!(
                "compute type `{other}` is not one keyless provides: use AmlCompute (amlcompute), ComputeInstance (computeinstance) or Kubernetes (kubernetes)"
            ))),
        }
    }

    /// The REST `computeType`.
    pub fn rest_name(self) -> &'static str {
        match self {
            Self::Cluster => "AmlCompute",
            Self::Instance => "ComputeInstance",
            Self::Kubernetes => "Kubernetes",
        }
    }

    /// The YAML `type`.
    pub fn yaml_name(self) -> &'static str {
        match self {
            Self::Cluster => "amlcompute",
            Self::Instance => "computeinstance",
            Self::Kubernetes => "kubernetes",
        }
    }

    /// The longest name allowed.
    pub fn max_name(self) -> usize {
        match self {
            Self::Cluster => 16,
            Self::Instance | Self::Kubernetes => 24,
        }
    }

    /// Checks the identities a compute of this type may carry.
    ///
    /// # Errors
    /// [`Error`] citing the documented rule.
    pub fn check(self, ids: &Identities) -> Result<(), Error> {
        match (self, ids.kind) {
            (Self::Cluster, Kind::Both) => Err(Error::invalid(
                "a compute cluster takes one system-assigned identity or one or more user-assigned identities, not both (Azure ML: \"compute clusters support one system-assigned identity or multiple user-assigned identities, not both\")",
            )),
            (Self::Kubernetes | Self::Instance, Kind::Both) => Err(Error::invalid(format!(
                "a {} compute takes one system-assigned identity or one user-assigned identity, not both",
                self.yaml_name()
            ))),
            (Self::Kubernetes | Self::Instance, Kind::UserAssigned)
                if ids.user_assigned.len() > 1 =>
            {
                Err(Error::invalid(format!(
                    "a {} compute takes one user-assigned identity, not {}",
                    self.yaml_name(),
                    ids.user_assigned.len()
                )))
            }
            _ => Ok(()),
        }
    }
}

/// A workspace's identities with its primary user-assigned identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceIdentities {
    /// The identity block.
    pub ids: Identities,
    /// `primaryUserAssignedIdentity`: one of the user-assigned identities.
    pub primary: Option<String>,
}

impl WorkspaceIdentities {
    /// Parses the workspace's `identity` and `properties.primaryUserAssignedIdentity`.
    /// An absent identity means system-assigned, as the SDK sends.
    ///
    /// # Errors
    /// [`Error`] when the primary identity is not one of the listed ones.
    pub fn from_rest(identity: Option<&Value>, primary: Option<&str>) -> Result<Self, Error> {
        let ids = Identities::from_rest(identity, Kind::SystemAssigned)?;
        let primary = match primary.filter(|p| !p.is_empty()) {
            Some(p) => {
                let listed = ids.user_assigned.iter().find(|u| u.eq_ignore_ascii_case(p));
                Some(
                    listed
                        .ok_or_else(|| {
                            Error::invalid(format!(
                                "primary_user_assigned_identity `{p}` must be one of the workspace's user-assigned identities"
                            ))
                        })?
                        .clone(),
                )
            }
            // A workspace with only user-assigned identities needs a primary one:
            // the first listed serves.
            None => ids.user_assigned.first().cloned(),
        };
        Ok(Self { ids, primary })
    }

    /// Checks that a workspace may move from `self` to `next`.
    ///
    /// Documented: system-assigned → system-assigned + user-assigned is allowed;
    /// system-assigned + user-assigned → system-assigned alone is not; an update
    /// lists every user-assigned identity to keep. keyless's choice for the rest:
    /// an identity kind, once present, is never dropped by an update (the system-
    /// assigned identity goes only with the workspace, and a workspace that has
    /// user-assigned identities keeps at least one); adding one is always allowed.
    ///
    /// # Errors
    /// [`Error`] saying which transition is refused and what to do instead.
    pub fn check_transition(&self, next: &Self) -> Result<(), Error> {
        let (from, to) = (self.ids.kind, next.ids.kind);
        if from.has_system() && !to.has_system() {
            return Err(Error::invalid(format!(
                "the workspace identity cannot change from {} to {}: its system-assigned identity can only be removed with the workspace",
                from.rest_name(),
                to.rest_name()
            )));
        }
        if from.has_user() && !to.has_user() {
            return Err(Error::invalid(format!(
                "the workspace identity cannot change from {} to {}: user-assigned identities cannot be dropped by switching the type; list the ones to keep (at least one)",
                from.rest_name(),
                to.rest_name()
            )));
        }
        Ok(())
    }
}

/// The ARM `identity` object: the type and the user-assigned identities, if any.
pub fn identity_rest(kind: Kind, resource_ids: &[String]) -> Value {
    let map: Map<String, Value> = resource_ids
        .iter()
        .map(|id| (id.clone(), json!({})))
        .collect();
    if map.is_empty() {
        json!({ "type": kind.rest_name() })
    } else {
        json!({ "type": kind.rest_name(), "userAssignedIdentities": map })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uai(n: &str) -> String {
        format!(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{n}"
        )
    }

    fn ws(kind: &str, uais: &[&str]) -> WorkspaceIdentities {
        let map: Map<String, Value> = uais.iter().map(|n| (uai(n), json!({}))).collect();
        let identity = json!({ "type": kind, "userAssignedIdentities": map });
        WorkspaceIdentities::from_rest(Some(&identity), None)
            .unwrap_or_else(|e| panic!("{kind}: {e}"))
    }

    #[test]
    fn types_parse_in_both_spellings() -> Result<(), Error> {
        assert_eq!(Kind::parse("SystemAssigned")?, Kind::SystemAssigned);
        assert_eq!(Kind::parse("system_assigned")?, Kind::SystemAssigned);
        assert_eq!(Kind::parse("SystemAssigned,UserAssigned")?, Kind::Both);
        assert_eq!(Kind::parse("system_assigned, user_assigned")?, Kind::Both);
        assert_eq!(Kind::parse("None")?, Kind::None);
        assert!(Kind::parse("managed").is_err());
        Ok(())
    }

    #[test]
    fn workspace_transitions_follow_the_documents_and_our_stated_choices() {
        let allowed = [
            (
                ws("SystemAssigned", &[]),
                ws("SystemAssigned,UserAssigned", &["a"]),
            ),
            (
                ws("SystemAssigned,UserAssigned", &["a"]),
                ws("SystemAssigned,UserAssigned", &["b"]),
            ),
            (
                ws("UserAssigned", &["a"]),
                ws("SystemAssigned,UserAssigned", &["a"]),
            ),
            (ws("UserAssigned", &["a", "b"]), ws("UserAssigned", &["b"])),
            (ws("None", &[]), ws("SystemAssigned", &[])),
        ];
        for (from, to) in allowed {
            assert!(from.check_transition(&to).is_ok(), "{from:?} -> {to:?}");
        }
        let refused = [
            (
                ws("SystemAssigned,UserAssigned", &["a"]),
                ws("SystemAssigned", &[]),
                "dropped",
            ),
            (
                ws("SystemAssigned", &[]),
                ws("UserAssigned", &["a"]),
                "system-assigned",
            ),
            (
                ws("SystemAssigned", &[]),
                ws("None", &[]),
                "system-assigned",
            ),
            (
                ws("UserAssigned", &["a"]),
                ws("SystemAssigned", &[]),
                "dropped",
            ),
        ];
        for (from, to, words) in refused {
            let err = from
                .check_transition(&to)
                .err()
                .map(|e| e.message().to_owned())
                .unwrap_or_default();
            assert!(err.contains(words), "{from:?} -> {to:?}: {err}");
        }
    }

    #[test]
    fn primary_must_be_listed_and_defaults_to_the_first() {
        let identity = json!({ "type": "UserAssigned", "userAssignedIdentities": { uai("a"): {}, uai("b"): {} } });
        let w = WorkspaceIdentities::from_rest(Some(&identity), Some(&uai("b"))).ok();
        assert_eq!(w.and_then(|w| w.primary), Some(uai("b")));
        assert!(WorkspaceIdentities::from_rest(Some(&identity), Some(&uai("c"))).is_err());
        let w = WorkspaceIdentities::from_rest(Some(&identity), None).ok();
        assert!(w.and_then(|w| w.primary).is_some());
    }

    #[test]
    fn compute_rules_cite_the_documents() {
        let both = Identities {
            kind: Kind::Both,
            user_assigned: vec![uai("a")],
        };
        let two = Identities {
            kind: Kind::UserAssigned,
            user_assigned: vec![uai("a"), uai("b")],
        };
        let err = ComputeType::Cluster
            .check(&both)
            .err()
            .map(|e| e.message().to_owned())
            .unwrap_or_default();
        assert!(err.contains("not both"), "{err}");
        assert!(ComputeType::Cluster.check(&two).is_ok());
        assert!(ComputeType::Kubernetes.check(&two).is_err());
        assert!(ComputeType::Kubernetes.check(&both).is_err());
    }

    #[test]
    fn identities_must_match_their_type() {
        let listed_without_type =
            json!({ "type": "SystemAssigned", "userAssignedIdentities": { uai("a"): {} } });
        assert!(Identities::from_rest(Some(&listed_without_type), Kind::None).is_err());
        let missing = json!({ "type": "UserAssigned" });
        assert!(Identities::from_rest(Some(&missing), Kind::None).is_err());
        let bad_id = json!({ "type": "UserAssigned", "userAssignedIdentities": { "/subscriptions/s/x": {} } });
        assert!(Identities::from_rest(Some(&bad_id), Kind::None).is_err());
    }
}
