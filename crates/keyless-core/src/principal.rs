//! Principals of the directory: users, groups, service principals and managed identities.

use serde::{Deserialize, Serialize};

use crate::{ClientId, Error, ObjectId, TenantId};

/// What kind of principal an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PrincipalKind {
    /// A person who signs in with a password or a device code.
    User,
    /// A set of principals; groups may nest.
    Group,
    /// An application's identity, with secrets, certificates or federated credentials.
    ServicePrincipal,
    /// An identity that only computes and jobs obtain tokens for; it cannot sign in.
    ManagedIdentity,
}

impl PrincipalKind {
    /// The stored name of the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
            Self::ServicePrincipal => "ServicePrincipal",
            Self::ManagedIdentity => "ManagedIdentity",
        }
    }

    /// The `principalType` ARM shows in role assignments (managed identities are service principals there).
    pub fn arm_principal_type(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Group => "Group",
            Self::ServicePrincipal | Self::ManagedIdentity => "ServicePrincipal",
        }
    }

    /// Parses a stored name.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] for an unknown name.
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "User" => Ok(Self::User),
            "Group" => Ok(Self::Group),
            "ServicePrincipal" => Ok(Self::ServicePrincipal),
            "ManagedIdentity" => Ok(Self::ManagedIdentity),
            other => Err(Error::invalid(format!("unknown principal kind `{other}`"))),
        }
    }

    /// Whether tokens of this kind are app-only tokens (`idtyp=app`).
    pub fn is_app(self) -> bool {
        matches!(self, Self::ServicePrincipal | Self::ManagedIdentity)
    }
}

/// A directory object that can hold roles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The object id.
    pub object_id: ObjectId,
    /// The tenant the principal belongs to.
    pub tenant_id: TenantId,
    /// Its kind.
    pub kind: PrincipalKind,
    /// A human-readable name.
    pub display_name: String,
    /// Users: the user principal name, `name@domain`.
    pub user_principal_name: Option<String>,
    /// Service principals and managed identities: the application (client) id.
    pub app_id: Option<ClientId>,
    /// Disabled principals cannot obtain tokens.
    pub enabled: bool,
    /// Managed identities: the ARM resource id of the identity (`xms_mirid`).
    pub resource_id: Option<String>,
    /// Creation time, seconds since the epoch.
    pub created_at: i64,
}

/// Checks a user principal name: `local@domain`, where the domain is the tenant's.
///
/// # Errors
/// [`crate::ErrorKind::InvalidInput`] naming what is wrong.
pub fn validate_upn(upn: &str, tenant_domain: &str) -> Result<(), Error> {
    let Some((local, domain)) = upn.split_once('@') else {
        return Err(Error::invalid(format!(
            "user principal name `{upn}` must look like `name@{tenant_domain}`"
        )));
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-'".contains(c));
    if !local_ok {
        return Err(Error::invalid(format!(
            "user principal name `{upn}`: the part before `@` may hold letters, digits and `._-'` (at most 64)"
        )));
    }
    if !domain.eq_ignore_ascii_case(tenant_domain) {
        return Err(Error::invalid(format!(
            "user principal name `{upn}`: the domain must be the tenant's domain `{tenant_domain}`"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upn_rules() {
        assert!(validate_upn("alice@keyless.local", "keyless.local").is_ok());
        assert!(validate_upn("Alice.B@KEYLESS.local", "keyless.local").is_ok());
        assert!(validate_upn("alice", "keyless.local").is_err());
        assert!(validate_upn("@keyless.local", "keyless.local").is_err());
        assert!(validate_upn("al ice@keyless.local", "keyless.local").is_err());
        assert!(validate_upn("alice@other.local", "keyless.local").is_err());
    }

    #[test]
    fn kinds_round_trip() {
        for kind in [
            PrincipalKind::User,
            PrincipalKind::Group,
            PrincipalKind::ServicePrincipal,
            PrincipalKind::ManagedIdentity,
        ] {
            assert_eq!(PrincipalKind::parse(kind.as_str()).unwrap(), kind);
        }
        assert_eq!(
            PrincipalKind::ManagedIdentity.arm_principal_type(),
            "ServicePrincipal"
        );
    }
}
