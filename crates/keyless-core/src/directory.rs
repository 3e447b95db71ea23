//! Directory roles: who may change the directory itself (users, groups, applications).
//!
//! As in Entra, these are separate from Azure RBAC: a subscription Owner cannot create
//! users unless a directory role allows it.

use crate::Error;

/// A directory role a principal may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DirectoryRole {
    /// Everything in the directory, including directory roles and signing keys.
    GlobalAdministrator,
    /// Users and groups.
    UserAdministrator,
    /// Groups.
    GroupsAdministrator,
    /// App registrations, service principals and their credentials.
    ApplicationAdministrator,
}

/// A change to the directory that needs a directory role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryOperation {
    /// Create, update, disable or delete users.
    ManageUsers,
    /// Create or delete groups and change their members.
    ManageGroups,
    /// Create or delete service principals and their credentials.
    ManageApplications,
    /// Grant or revoke directory roles.
    ManageRoles,
    /// Rotate the token signing keys.
    ManageSigningKeys,
}

impl DirectoryRole {
    /// Every role, for listings.
    pub const ALL: [Self; 4] = [
        Self::GlobalAdministrator,
        Self::UserAdministrator,
        Self::GroupsAdministrator,
        Self::ApplicationAdministrator,
    ];

    /// The role's name as Entra spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GlobalAdministrator => "Global Administrator",
            Self::UserAdministrator => "User Administrator",
            Self::GroupsAdministrator => "Groups Administrator",
            Self::ApplicationAdministrator => "Application Administrator",
        }
    }

    /// Parses a role name, case-insensitively and with or without spaces.
    ///
    /// # Errors
    /// [`crate::ErrorKind::InvalidInput`] listing the known roles.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let squashed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        Self::ALL
            .into_iter()
            .find(|r| r.as_str().replace(' ', "").eq_ignore_ascii_case(&squashed))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown directory role `{text}`; known roles: Global Administrator, User Administrator, Groups Administrator, Application Administrator"
                ))
            })
    }

    /// Whether the role permits `operation`.
    pub fn permits(self, operation: DirectoryOperation) -> bool {
        use DirectoryOperation as Op;
        match self {
            Self::GlobalAdministrator => true,
            Self::UserAdministrator => matches!(operation, Op::ManageUsers | Op::ManageGroups),
            Self::GroupsAdministrator => matches!(operation, Op::ManageGroups),
            Self::ApplicationAdministrator => matches!(operation, Op::ManageApplications),
        }
    }
}

impl DirectoryOperation {
    /// The least role that permits the operation, named in refusals.
    pub fn least_role(self) -> DirectoryRole {
        match self {
            Self::ManageUsers => DirectoryRole::UserAdministrator,
            Self::ManageGroups => DirectoryRole::GroupsAdministrator,
            Self::ManageApplications => DirectoryRole::ApplicationAdministrator,
            Self::ManageRoles | Self::ManageSigningKeys => DirectoryRole::GlobalAdministrator,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_permit_what_entra_documents() {
        use DirectoryOperation as Op;
        assert!(DirectoryRole::GlobalAdministrator.permits(Op::ManageSigningKeys));
        assert!(DirectoryRole::UserAdministrator.permits(Op::ManageGroups));
        assert!(!DirectoryRole::UserAdministrator.permits(Op::ManageApplications));
        assert!(!DirectoryRole::ApplicationAdministrator.permits(Op::ManageUsers));
        assert!(!DirectoryRole::GroupsAdministrator.permits(Op::ManageRoles));
        assert_eq!(
            DirectoryRole::parse("user administrator").unwrap(),
            DirectoryRole::UserAdministrator
        );
        assert!(DirectoryRole::parse("root").is_err());
    }
}
