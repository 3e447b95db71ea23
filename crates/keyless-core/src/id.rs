//! GUID newtypes for the directory: tenants, objects and applications.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Error;

macro_rules! guid_newtype {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random id.
            pub fn new_random() -> Self {
                Self(Uuid::new_v4())
            }

            /// Parses the id from its GUID text.
            ///
            /// # Errors
            /// [`crate::ErrorKind::InvalidInput`] when `text` is not a GUID.
            pub fn parse(text: &str) -> Result<Self, Error> {
                Uuid::try_parse(text)
                    .map(Self)
                    .map_err(|_| Error::invalid(format!(concat!("`{}` is not a valid ", $what, " (a GUID)"), text)))
            }

            /// The underlying GUID.
            pub fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Self::parse(s)
            }
        }
    };
}

guid_newtype!(
    /// The id of a tenant (a directory).
    TenantId,
    "tenant id"
);
guid_newtype!(
    /// The object id of a principal: the key of RBAC and ACL matching.
    ObjectId,
    "object id"
);
guid_newtype!(
    /// The application (client) id of an app registration or a managed identity.
    ClientId,
    "client id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_and_refuses_garbage() {
        let id = ObjectId::new_random();
        assert_eq!(ObjectId::parse(&id.to_string()).unwrap(), id);
        let err = TenantId::parse("contoso").unwrap_err();
        assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
        assert!(err.message().contains("`contoso`"));
    }
}
