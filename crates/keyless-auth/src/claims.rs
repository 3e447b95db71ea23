//! The claims of a keyless access token, shaped like Entra's.

use serde::{Deserialize, Serialize};

/// Access-token claims. Optional claims are omitted from the token when `None`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Claims {
    /// The audience: the resource the token is for.
    pub aud: String,
    /// The issuer: `<login url>/<tenant id>/v2.0`.
    pub iss: String,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Expires at.
    pub exp: i64,
    /// The tenant of the principal.
    pub tid: String,
    /// The object id of the principal.
    pub oid: String,
    /// The subject; equals `oid`.
    pub sub: String,
    /// The client application id (v1 name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appid: Option<String>,
    /// The client application id (v2 name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub azp: Option<String>,
    /// How the client authenticated: `0` public, `1` secret, `2` certificate or assertion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appidacr: Option<String>,
    /// `app` for app-only tokens, `user` for user tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idtyp: Option<String>,
    /// Users: the user principal name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upn: Option<String>,
    /// Users: the user principal name (v1 name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_name: Option<String>,
    /// Users: the display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Delegated scopes of a user token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scp: Option<String>,
    /// Managed identities: the identity's resource id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub xms_mirid: Option<String>,
    /// Object ids of the groups the principal belongs to, transitively.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// keyless: the job a token was issued to (by the job's identity endpoint, or
    /// to materialise its data). Such a token stops working when the job ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xms_job: Option<String>,
    /// The token's unique id.
    pub uti: String,
    /// The token format version.
    pub ver: String,
}

impl Claims {
    /// `User`, `ServicePrincipal` or `ManagedIdentity`, as Azure's logs name the
    /// kind of principal a token speaks for.
    #[must_use]
    pub fn principal_type(&self) -> &'static str {
        match (self.idtyp.as_deref(), &self.xms_mirid) {
            (Some("user"), _) => "User",
            (_, Some(_)) => "ManagedIdentity",
            _ => "ServicePrincipal",
        }
    }
}
