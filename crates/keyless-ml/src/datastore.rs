//! Datastores: where a workspace's data lives, and what (if anything) it holds
//! to reach it.
//!
//! The REST body (`properties` of `…/workspaces/<w>/datastores/<d>`) is parsed
//! into a [`Datastore`] and validated by the rules Azure ML documents: which
//! credential kinds each type allows, that Azure Files cannot be identity-based,
//! that ADLS Gen1 is retired. The secret part of a credential is split off so that
//! the stored body never holds it.

use serde_json::{Map, Value, json};

use keyless_core::Error;
use keyless_core::identity_rule::{StoredCredential, WorkspaceAccess};

/// The storage a datastore points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreType {
    /// `azure_blob`.
    Blob,
    /// `azure_data_lake_gen2`.
    DataLakeGen2,
    /// `azure_file`.
    File,
}

impl StoreType {
    /// The REST `datastoreType`.
    pub fn rest_name(self) -> &'static str {
        match self {
            Self::Blob => "AzureBlob",
            Self::DataLakeGen2 => "AzureDataLakeGen2",
            Self::File => "AzureFile",
        }
    }

    /// The YAML `type`.
    pub fn yaml_name(self) -> &'static str {
        match self {
            Self::Blob => "azure_blob",
            Self::DataLakeGen2 => "azure_data_lake_gen2",
            Self::File => "azure_file",
        }
    }

    /// The REST key naming the container, filesystem or share.
    fn container_key(self) -> &'static str {
        match self {
            Self::Blob => "containerName",
            Self::DataLakeGen2 => "filesystem",
            Self::File => "fileShareName",
        }
    }

    fn parse(rest: &str) -> Result<Self, Error> {
        match rest {
            "AzureBlob" => Ok(Self::Blob),
            "AzureDataLakeGen2" => Ok(Self::DataLakeGen2),
            "AzureFile" => Ok(Self::File),
            "AzureDataLakeGen1" => Err(Error::invalid(
                "Azure Data Lake Storage Gen1 datastores cannot be created: Gen1 was retired on 29 February 2024; move the data to ADLS Gen2 (type azure_data_lake_gen2)",
            )),
            other => Err(Error::invalid(format!(
                "unsupported datastore type `{other}`: use AzureBlob, AzureDataLakeGen2 or AzureFile"
            ))),
        }
    }
}

/// The secret half of a stored credential; never written to the datastore's body.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// The REST `secretsType` (`AccountKey`, `Sas`, `ServicePrincipal`, `Certificate`).
    pub kind: &'static str,
    /// The REST key holding the value (`key`, `sasToken`, `clientSecret`, `certificate`).
    pub field: &'static str,
    /// The value.
    pub value: String,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secret")
            .field("kind", &self.kind)
            .field("value", &"<redacted>")
            .finish()
    }
}

impl Secret {
    /// The REST `secrets` object, as `listSecrets` returns it.
    pub fn to_rest(&self) -> Value {
        json!({ "secretsType": self.kind, self.field: self.value })
    }
}

/// A validated datastore.
#[derive(Debug, Clone)]
pub struct Datastore {
    /// Its name.
    pub name: String,
    /// Its storage type.
    pub store_type: StoreType,
    /// The storage account.
    pub account: String,
    /// The container, filesystem or file share.
    pub container: String,
    /// The storage suffix (`core.windows.net` unless given).
    pub endpoint: String,
    /// `https`, `wasbs` or `abfss`.
    pub protocol: String,
    /// What it holds to reach the storage.
    pub credential: StoredCredential,
    /// The non-secret fields of the credential (tenant, client id, thumbprint, …).
    pub credential_fields: Map<String, Value>,
    /// Which workspace identity previews the data.
    pub workspace_access: WorkspaceAccess,
    /// Description, tags and other passive fields, echoed back.
    pub extra: Map<String, Value>,
}

/// Datastore names: lowercase letters, digits and `_`, at most 255 characters.
///
/// # Errors
/// [`Error`] saying what the name may hold.
pub fn validate_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "datastore name `{name}` is invalid: use 1–255 lowercase letters, digits and underscores (no hyphens)"
        )))
    }
}

fn text<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    map.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn required<'a>(map: &'a Map<String, Value>, key: &str, what: &str) -> Result<&'a str, Error> {
    text(map, key).ok_or_else(|| Error::invalid(format!("a {what} datastore needs `{key}`")))
}

impl Datastore {
    /// Parses and validates the REST `properties`, splitting off the secret.
    ///
    /// # Errors
    /// [`Error`] naming the rule broken.
    pub fn from_rest(name: &str, properties: &Value) -> Result<(Self, Option<Secret>), Error> {
        Self::parse(name, properties, true)
    }

    /// Reads back a body written by [`Datastore::to_rest`], which holds no secret.
    ///
    /// # Errors
    /// [`Error`] when the stored body no longer validates.
    pub fn from_stored(name: &str, properties: &Value) -> Result<Self, Error> {
        Self::parse(name, properties, false).map(|(store, _)| store)
    }

    fn parse(
        name: &str,
        properties: &Value,
        with_secret: bool,
    ) -> Result<(Self, Option<Secret>), Error> {
        validate_name(name)?;
        let map = properties
            .as_object()
            .ok_or_else(|| Error::invalid("the datastore needs a `properties` object"))?;
        let kind = text(map, "datastoreType")
            .ok_or_else(|| Error::invalid("the datastore needs `properties.datastoreType`"))?;
        let store_type = StoreType::parse(kind)?;
        let what = store_type.yaml_name();
        let account = required(map, "accountName", what)?.to_owned();
        crate::names::storage_account(&account)?;
        let container = required(map, store_type.container_key(), what)?.to_owned();
        let endpoint = text(map, "endpoint")
            .unwrap_or("core.windows.net")
            .to_owned();
        let protocol = text(map, "protocol")
            .unwrap_or("https")
            .to_ascii_lowercase();
        let protocols: &[&str] = match store_type {
            StoreType::Blob => &["https", "wasbs"],
            StoreType::DataLakeGen2 => &["https", "abfss"],
            StoreType::File => &["https"],
        };
        if !protocols.contains(&protocol.as_str()) {
            return Err(Error::invalid(format!(
                "protocol `{protocol}` does not apply to a {what} datastore: use {}",
                protocols.join(" or ")
            )));
        }
        let empty = Map::new();
        let creds = map
            .get("credentials")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let (credential, credential_fields, secret) = credentials(store_type, creds, with_secret)?;
        let workspace_access = match text(map, "serviceDataAccessAuthIdentity").unwrap_or("None") {
            "None" => WorkspaceAccess::Off,
            "WorkspaceSystemAssignedIdentity" => WorkspaceAccess::SystemAssigned,
            "WorkspaceUserAssignedIdentity" => WorkspaceAccess::UserAssigned,
            other => {
                return Err(Error::invalid(format!(
                    "serviceDataAccessAuthIdentity `{other}` is not one of None, WorkspaceSystemAssignedIdentity, WorkspaceUserAssignedIdentity"
                )));
            }
        };
        let mut extra = Map::new();
        for key in ["description", "tags", "properties"] {
            if let Some(v) = map.get(key) {
                extra.insert(key.to_owned(), v.clone());
            }
        }
        let store = Self {
            name: name.to_owned(),
            store_type,
            account,
            container,
            endpoint,
            protocol,
            credential,
            credential_fields,
            workspace_access,
            extra,
        };
        Ok((store, secret))
    }

    /// The REST `properties`, without any secret.
    pub fn to_rest(&self, is_default: bool) -> Value {
        let mut credentials = self.credential_fields.clone();
        credentials.insert("credentialsType".into(), self.credential.rest_name().into());
        let mut props = self.extra.clone();
        props.insert("datastoreType".into(), self.store_type.rest_name().into());
        props.insert("accountName".into(), self.account.clone().into());
        props.insert(
            self.store_type.container_key().into(),
            self.container.clone().into(),
        );
        props.insert("endpoint".into(), self.endpoint.clone().into());
        props.insert("protocol".into(), self.protocol.clone().into());
        props.insert("credentials".into(), Value::Object(credentials));
        props.insert(
            "serviceDataAccessAuthIdentity".into(),
            match self.workspace_access {
                WorkspaceAccess::Off => "None",
                WorkspaceAccess::SystemAssigned => "WorkspaceSystemAssignedIdentity",
                WorkspaceAccess::UserAssigned => "WorkspaceUserAssignedIdentity",
            }
            .into(),
        );
        props.insert("isDefault".into(), is_default.into());
        Value::Object(props)
    }
}

type Parsed = (StoredCredential, Map<String, Value>, Option<Secret>);

/// Picks the credential kind by `credentialsType` (REST) and checks it against the
/// store type.
/// `with_secret`: whether the secret must be present (a new credential) or is
/// absent by design (a stored body).
fn credentials(
    store: StoreType,
    creds: &Map<String, Value>,
    with_secret: bool,
) -> Result<Parsed, Error> {
    let what = store.yaml_name();
    let kind = text(creds, "credentialsType").unwrap_or("None");
    let secrets = creds
        .get("secrets")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let secret_of = |field: &'static str, kind: &'static str| -> Result<Option<Secret>, Error> {
        match text(&secrets, field) {
            Some(v) => Ok(Some(Secret {
                kind,
                field,
                value: v.to_owned(),
            })),
            None if with_secret => Err(Error::invalid(format!(
                "a {kind} credential needs `secrets.{field}`"
            ))),
            None => Ok(None),
        }
    };
    let mut fields = Map::new();
    let mut keep = |keys: &[&str]| {
        for key in keys {
            if let Some(v) = creds.get(*key).filter(|v| !v.is_null()) {
                fields.insert((*key).to_owned(), v.clone());
            }
        }
    };
    let parsed = match kind {
        "None" => {
            if store == StoreType::File {
                return Err(Error::invalid(
                    "an azure_file datastore cannot be identity-based: Azure Files datastores need account_key or sas_token credentials (identity-based access works for azure_blob and azure_data_lake_gen2)",
                ));
            }
            (StoredCredential::None, None)
        }
        "AccountKey" | "Sas" if store == StoreType::DataLakeGen2 => {
            return Err(Error::invalid(format!(
                "an {what} datastore takes a service principal (tenant_id, client_id, client_secret), a certificate, or no credentials; {kind} credentials are for azure_blob and azure_file"
            )));
        }
        "AccountKey" => (
            StoredCredential::AccountKey,
            secret_of("key", "AccountKey")?,
        ),
        "Sas" => (StoredCredential::Sas, secret_of("sasToken", "Sas")?),
        "ServicePrincipal" | "Certificate" if store != StoreType::DataLakeGen2 => {
            return Err(Error::invalid(format!(
                "an {what} datastore takes account_key, sas_token or no credentials; service principal and certificate credentials are for azure_data_lake_gen2"
            )));
        }
        "ServicePrincipal" => {
            for key in ["tenantId", "clientId"] {
                required(creds, key, "service principal credential")?;
            }
            keep(&["tenantId", "clientId", "authorityUrl", "resourceUrl"]);
            (
                StoredCredential::ServicePrincipal,
                secret_of("clientSecret", "ServicePrincipal")?,
            )
        }
        "Certificate" => {
            for key in ["tenantId", "clientId", "thumbprint"] {
                required(creds, key, "certificate credential")?;
            }
            keep(&[
                "tenantId",
                "clientId",
                "thumbprint",
                "authorityUrl",
                "resourceUrl",
            ]);
            let secret = text(&secrets, "certificate").map(|v| Secret {
                kind: "Certificate",
                field: "certificate",
                value: v.to_owned(),
            });
            (StoredCredential::Certificate, secret)
        }
        other => {
            return Err(Error::invalid(format!(
                "credentialsType `{other}` is not one of None, AccountKey, Sas, ServicePrincipal, Certificate"
            )));
        }
    };
    Ok((parsed.0, fields, parsed.1))
}

#[cfg(test)]
mod tests;
