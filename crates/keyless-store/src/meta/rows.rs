//! Records from rows, the same for every engine: each engine's row type reads
//! its columns through [`Cols`], and the decoders here turn them into records.

use bytes::Bytes;

use keyless_core::acl::PathAcl;
use keyless_core::{ClientId, Error, ObjectId, Principal, PrincipalKind, TenantId};

use crate::meta::{
    AuthorizationCode, Credential, CredentialKind, DeviceCode, Resource, StoredRoleAssignment,
    Tenant,
};
use crate::registry::{Manifest, Registry, RegistryBlob, Tag, Upload};
use crate::storage::{
    Blob, BlobProperties, BlobState, Block, Container, ContainerState, Content, Retained,
    RetainedKind, StorageAccount,
};
use crate::vault::{SecretVersion, Vault};

/// The columns of one row, by name, as the types the records use.
pub(crate) trait Cols {
    fn text(&self, name: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, name: &str) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, name: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, name: &str) -> Result<Option<i64>, sqlx::Error>;
    fn flag(&self, name: &str) -> Result<bool, sqlx::Error>;
    fn bytes(&self, name: &str) -> Result<Vec<u8>, sqlx::Error>;
    fn opt_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, sqlx::Error>;
}

macro_rules! cols_for {
    ($row:ty) => {
        impl Cols for $row {
            fn text(&self, name: &str) -> Result<String, sqlx::Error> {
                sqlx::Row::try_get(self, name)
            }
            fn opt_text(&self, name: &str) -> Result<Option<String>, sqlx::Error> {
                sqlx::Row::try_get(self, name)
            }
            fn int(&self, name: &str) -> Result<i64, sqlx::Error> {
                sqlx::Row::try_get(self, name)
            }
            fn opt_int(&self, name: &str) -> Result<Option<i64>, sqlx::Error> {
                sqlx::Row::try_get(self, name)
            }
            fn flag(&self, name: &str) -> Result<bool, sqlx::Error> {
                sqlx::Row::try_get(self, name)
            }
            fn bytes(&self, name: &str) -> Result<Vec<u8>, sqlx::Error> {
                sqlx::Row::try_get(self, name)
            }
            fn opt_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
                sqlx::Row::try_get(self, name)
            }
        }
    };
}

#[cfg(feature = "sqlite")]
cols_for!(sqlx::sqlite::SqliteRow);
#[cfg(feature = "postgres")]
cols_for!(sqlx::postgres::PgRow);

/// The SQLite writing connection's rows (see `sqlite::writer`): its errors
/// reach the decoders as sqlx's column errors.
#[cfg(feature = "sqlite")]
impl Cols for rusqlite::Row<'_> {
    fn text(&self, name: &str) -> Result<String, sqlx::Error> {
        direct(self.get(name))
    }
    fn opt_text(&self, name: &str) -> Result<Option<String>, sqlx::Error> {
        direct(self.get(name))
    }
    fn int(&self, name: &str) -> Result<i64, sqlx::Error> {
        direct(self.get(name))
    }
    fn opt_int(&self, name: &str) -> Result<Option<i64>, sqlx::Error> {
        direct(self.get(name))
    }
    fn flag(&self, name: &str) -> Result<bool, sqlx::Error> {
        direct(self.get(name))
    }
    fn bytes(&self, name: &str) -> Result<Vec<u8>, sqlx::Error> {
        direct(self.get(name))
    }
    fn opt_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        direct(self.get(name))
    }
}

#[cfg(feature = "sqlite")]
fn direct<T>(value: rusqlite::Result<T>) -> Result<T, sqlx::Error> {
    value.map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// Converts a driver error at the boundary: constraint violations keep their
/// meaning, everything else is internal.
pub(crate) fn db_error(err: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &err {
        if db.is_unique_violation() {
            return Error::exists("a record with the same key exists already");
        }
        if db.is_foreign_key_violation() {
            return Error::not_found("a record this one refers to does not exist");
        }
    }
    Error::internal(format!("metadata store: {err}"))
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("metadata store holds a malformed {what}: {e}"))
}

/// A column holding JSON.
fn json<T: serde::de::DeserializeOwned>(
    row: &impl Cols,
    name: &str,
    what: &str,
) -> Result<T, Error> {
    let text = row.text(name).map_err(|e| corrupt(what, e))?;
    serde_json::from_str(&text).map_err(|e| corrupt(what, e))
}

/// A nullable column holding JSON, `None` when NULL.
fn opt_json<T: serde::de::DeserializeOwned>(
    row: &impl Cols,
    name: &str,
    what: &str,
) -> Result<Option<T>, Error> {
    row.opt_text(name)
        .map_err(|e| corrupt(what, e))?
        .map(|text| serde_json::from_str(&text).map_err(|e| corrupt(what, e)))
        .transpose()
}

fn size(row: &impl Cols, what: &str) -> Result<u64, Error> {
    let size = row.int("size").map_err(|e| corrupt(what, e))?;
    u64::try_from(size).map_err(|e| corrupt("size", e))
}

pub(crate) const PRINCIPAL_COLUMNS: &str =
    "object_id, tenant_id, kind, display_name, upn, app_id, resource_id, enabled, created_at";

pub(crate) fn principal(row: &impl Cols) -> Result<Principal, Error> {
    let c = |e| corrupt("principal", e);
    Ok(Principal {
        object_id: ObjectId::parse(&row.text("object_id").map_err(c)?)?,
        tenant_id: TenantId::parse(&row.text("tenant_id").map_err(c)?)?,
        kind: PrincipalKind::parse(&row.text("kind").map_err(c)?)?,
        display_name: row.text("display_name").map_err(c)?,
        user_principal_name: row.opt_text("upn").map_err(c)?,
        app_id: row
            .opt_text("app_id")
            .map_err(c)?
            .map(|a| ClientId::parse(&a))
            .transpose()?,
        resource_id: row.opt_text("resource_id").map_err(c)?,
        enabled: row.flag("enabled").map_err(c)?,
        created_at: row.int("created_at").map_err(c)?,
    })
}

pub(crate) fn tenant(row: &impl Cols) -> Result<Tenant, Error> {
    let c = |e| corrupt("tenant", e);
    Ok(Tenant {
        id: TenantId::parse(&row.text("id").map_err(c)?)?,
        domain: row.text("domain").map_err(c)?,
        display_name: row.text("display_name").map_err(c)?,
        created_at: row.int("created_at").map_err(c)?,
    })
}

pub(crate) fn credential(row: &impl Cols) -> Result<Credential, Error> {
    let c = |e| corrupt("credential", e);
    let get = |name: &str| row.opt_text(name).map_err(c);
    let kind = match row.text("kind").map_err(c)?.as_str() {
        "secret" => CredentialKind::Secret {
            digest: get("secret_digest")?.unwrap_or_default(),
            hint: get("hint")?.unwrap_or_default(),
        },
        "certificate" => CredentialKind::Certificate {
            thumbprint: get("thumbprint")?.unwrap_or_default(),
            public_key: row.opt_bytes("public_key").map_err(c)?.unwrap_or_default(),
        },
        "federated" => CredentialKind::Federated {
            issuer: get("issuer")?.unwrap_or_default(),
            subject: get("subject")?.unwrap_or_default(),
            audiences: serde_json::from_str(&get("audiences")?.unwrap_or_else(|| "[]".into()))
                .map_err(|e| corrupt("credential", e))?,
        },
        other => return Err(corrupt("credential", format!("kind `{other}`"))),
    };
    Ok(Credential {
        id: row.text("id").map_err(c)?,
        principal_id: ObjectId::parse(&row.text("principal_id").map_err(c)?)?,
        display_name: row.text("display_name").map_err(c)?,
        kind,
        starts_at: row.int("starts_at").map_err(c)?,
        expires_at: row.int("expires_at").map_err(c)?,
    })
}

/// A credential's kind-dependent columns, as `insert_credential` binds them.
#[derive(Default)]
pub(crate) struct CredentialColumns<'a> {
    pub(crate) kind: &'static str,
    pub(crate) digest: Option<&'a str>,
    pub(crate) hint: Option<&'a str>,
    pub(crate) thumbprint: Option<&'a str>,
    pub(crate) public_key: Option<&'a [u8]>,
    pub(crate) issuer: Option<&'a str>,
    pub(crate) subject: Option<&'a str>,
    pub(crate) audiences: Option<String>,
}

pub(crate) fn credential_columns(c: &Credential) -> Result<CredentialColumns<'_>, Error> {
    Ok(match &c.kind {
        CredentialKind::Secret { digest, hint } => CredentialColumns {
            kind: "secret",
            digest: Some(digest),
            hint: Some(hint),
            ..Default::default()
        },
        CredentialKind::Certificate {
            thumbprint,
            public_key,
        } => CredentialColumns {
            kind: "certificate",
            thumbprint: Some(thumbprint),
            public_key: Some(public_key),
            ..Default::default()
        },
        CredentialKind::Federated {
            issuer,
            subject,
            audiences,
        } => CredentialColumns {
            kind: "federated",
            issuer: Some(issuer),
            subject: Some(subject),
            audiences: Some(to_json(audiences)?),
            ..Default::default()
        },
    })
}

pub(crate) fn device_code(row: &impl Cols) -> Result<DeviceCode, Error> {
    let c = |e| corrupt("device code", e);
    Ok(DeviceCode {
        digest: row.text("digest").map_err(c)?,
        user_code: row.text("user_code").map_err(c)?,
        tenant_id: TenantId::parse(&row.text("tenant_id").map_err(c)?)?,
        client_id: row.text("client_id").map_err(c)?,
        scope: row.text("scope").map_err(c)?,
        expires_at: row.int("expires_at").map_err(c)?,
        approved_by: row
            .opt_text("approved_by")
            .map_err(c)?
            .map(|s| ObjectId::parse(&s))
            .transpose()?,
    })
}

pub(crate) fn authorization_code(row: &impl Cols) -> Result<AuthorizationCode, Error> {
    let c = |e| corrupt("authorization code", e);
    Ok(AuthorizationCode {
        digest: row.text("digest").map_err(c)?,
        tenant_id: TenantId::parse(&row.text("tenant_id").map_err(c)?)?,
        principal_id: ObjectId::parse(&row.text("principal_id").map_err(c)?)?,
        client_id: row.text("client_id").map_err(c)?,
        scope: row.text("scope").map_err(c)?,
        redirect_uri: row.text("redirect_uri").map_err(c)?,
        code_challenge: row.text("code_challenge").map_err(c)?,
        nonce: row.opt_text("nonce").map_err(c)?,
        expires_at: row.int("expires_at").map_err(c)?,
    })
}

pub(crate) fn resource(row: &impl Cols) -> Result<Resource, Error> {
    let c = |e| corrupt("resource", e);
    Ok(Resource {
        id: row.text("id").map_err(c)?,
        subscription_id: row.text("subscription_id").map_err(c)?,
        resource_group: row.text("resource_group").map_err(c)?,
        kind: row.text("type").map_err(c)?,
        name: row.text("name").map_err(c)?,
        location: row.text("location").map_err(c)?,
        body: json(row, "body", "resource")?,
        created_at: row.int("created_at").map_err(c)?,
    })
}

pub(crate) fn assignment(row: &impl Cols) -> Result<StoredRoleAssignment, Error> {
    let c = |e| corrupt("role assignment", e);
    Ok(StoredRoleAssignment {
        name: row.text("name").map_err(c)?,
        tenant_id: TenantId::parse(&row.text("tenant_id").map_err(c)?)?,
        scope: row.text("scope").map_err(c)?,
        role_definition_id: row.text("role_definition_id").map_err(c)?,
        principal_id: ObjectId::parse(&row.text("principal_id").map_err(c)?)?,
        created_at: row.int("created_at").map_err(c)?,
    })
}

pub(crate) fn vault(row: &impl Cols) -> Result<Vault, Error> {
    let c = |e| corrupt("vault", e);
    Ok(Vault {
        name: row.text("name").map_err(c)?,
        id: row.text("id").map_err(c)?,
        tenant_id: TenantId::parse(&row.text("tenant_id").map_err(c)?)?,
        subscription_id: row.text("subscription_id").map_err(c)?,
        resource_group: row.text("resource_group").map_err(c)?,
        location: row.text("location").map_err(c)?,
        body: json(row, "body", "vault")?,
        created_at: row.int("created_at").map_err(c)?,
        deleted_at: row.opt_int("deleted_at").map_err(c)?,
    })
}

pub(crate) fn secret(row: &impl Cols) -> Result<SecretVersion, Error> {
    let c = |e| corrupt("secret", e);
    Ok(SecretVersion {
        vault: row.text("vault").map_err(c)?,
        name: row.text("name").map_err(c)?,
        version: row.text("version").map_err(c)?,
        created: row.int("created").map_err(c)?,
        updated: row.int("updated").map_err(c)?,
        enabled: row.flag("enabled").map_err(c)?,
        not_before: row.opt_int("not_before").map_err(c)?,
        expires: row.opt_int("expires").map_err(c)?,
        content_type: row.opt_text("content_type").map_err(c)?,
        tags: json(row, "tags", "secret")?,
        wrapped_key: row.bytes("wrapped_key").map_err(c)?,
        sealed_value: row.bytes("sealed_value").map_err(c)?,
    })
}

pub(crate) fn account(row: &impl Cols) -> Result<StorageAccount, Error> {
    let c = |e| corrupt("storage account", e);
    Ok(StorageAccount {
        name: row.text("name").map_err(c)?,
        id: row.text("id").map_err(c)?,
        tenant_id: TenantId::parse(&row.text("tenant_id").map_err(c)?)?,
        subscription_id: row.text("subscription_id").map_err(c)?,
        resource_group: row.text("resource_group").map_err(c)?,
        location: row.text("location").map_err(c)?,
        hns: row.flag("hns").map_err(c)?,
        allow_shared_key: row.flag("allow_shared_key").map_err(c)?,
        body: json(row, "body", "storage account")?,
        key1: row.bytes("key1").map_err(c)?,
        key2: row.bytes("key2").map_err(c)?,
        created_at: row.int("created_at").map_err(c)?,
    })
}

pub(crate) fn container(row: &impl Cols) -> Result<Container, Error> {
    let c = |e| corrupt("container", e);
    Ok(Container {
        account: row.text("account").map_err(c)?,
        name: row.text("name").map_err(c)?,
        etag: row.text("etag").map_err(c)?,
        last_modified: row.int("last_modified").map_err(c)?,
        metadata: json(row, "metadata", "container")?,
        acl: opt_json::<PathAcl>(row, "acl", "container")?,
        state: opt_json::<ContainerState>(row, "state", "container")?.unwrap_or_default(),
    })
}

pub(crate) fn blob(row: &impl Cols) -> Result<Blob, Error> {
    let c = |e| corrupt("blob", e);
    Ok(Blob {
        account: row.text("account").map_err(c)?,
        container: row.text("container").map_err(c)?,
        name: row.text("name").map_err(c)?,
        etag: row.text("etag").map_err(c)?,
        created_at: row.int("created_at").map_err(c)?,
        last_modified: row.int("last_modified").map_err(c)?,
        size: size(row, "blob")?,
        content: match row.opt_bytes("content").map_err(c)? {
            Some(bytes) => Content::Inline(Bytes::from(bytes)),
            None => Content::File(row.text("file_id").map_err(c)?),
        },
        properties: BlobProperties {
            content_type: row.opt_text("content_type").map_err(c)?,
            content_encoding: row.opt_text("content_encoding").map_err(c)?,
            content_language: row.opt_text("content_language").map_err(c)?,
            content_disposition: row.opt_text("content_disposition").map_err(c)?,
            cache_control: row.opt_text("cache_control").map_err(c)?,
            content_md5: row.opt_bytes("content_md5").map_err(c)?,
        },
        metadata: json(row, "metadata", "blob")?,
        committed_blocks: json(row, "committed_blocks", "blob")?,
        is_dir: row.flag("is_dir").map_err(c)?,
        acl: opt_json::<PathAcl>(row, "acl", "blob")?,
        state: opt_json::<BlobState>(row, "state", "blob")?.unwrap_or_default(),
    })
}

pub(crate) fn block(row: &impl Cols) -> Result<Block, Error> {
    let c = |e| corrupt("block", e);
    Ok(Block {
        account: row.text("account").map_err(c)?,
        container: row.text("container").map_err(c)?,
        blob: row.text("blob").map_err(c)?,
        block_id: row.text("block_id").map_err(c)?,
        size: size(row, "block")?,
        file_id: row.text("file_id").map_err(c)?,
        created_at: row.int("created_at").map_err(c)?,
    })
}

pub(crate) fn retained(row: &impl Cols) -> Result<Retained, Error> {
    let c = |e| corrupt("kept blob", e);
    let kind = row.text("kind").map_err(c)?;
    let deleted_at = row.opt_int("deleted_at").map_err(c)?;
    let expires_at = row.opt_int("expires_at").map_err(c)?;
    Ok(Retained {
        kind: RetainedKind::parse(&kind)
            .ok_or_else(|| corrupt("kept blob", format_args!("unknown kind `{kind}`")))?,
        id: row.text("snapshot").map_err(c)?,
        deleted: deleted_at.zip(expires_at),
        blob: blob(row)?,
    })
}

/// JSON text of a value, for a column holding JSON.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|e| Error::internal(e.to_string()))
}

/// A blob's state column: NULL for the state of a fresh block blob.
pub(crate) fn blob_state_json(state: &BlobState) -> Result<Option<String>, Error> {
    (!state.is_empty()).then(|| to_json(state)).transpose()
}

/// A container's state column: NULL for the state of a fresh container.
pub(crate) fn container_state_json(state: &ContainerState) -> Result<Option<String>, Error> {
    (!state.is_empty()).then(|| to_json(state)).transpose()
}

pub(crate) fn acl_json(acl: Option<&PathAcl>) -> Result<Option<String>, Error> {
    acl.map(to_json).transpose()
}

pub(crate) fn size_i64(size: u64) -> Result<i64, Error> {
    i64::try_from(size).map_err(|_| Error::invalid("the size is too large"))
}

/// A `LIKE` pattern matching names that begin with `prefix` (escape `\`).
pub(crate) fn like_prefix(prefix: &str) -> String {
    let escaped = prefix
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("{escaped}%")
}

pub(crate) fn registry(row: &impl Cols) -> Result<Registry, Error> {
    let c = |e| corrupt("registry", e);
    Ok(Registry {
        name: row.text("name").map_err(c)?,
        id: row.text("id").map_err(c)?,
        tenant_id: TenantId::parse(&row.text("tenant_id").map_err(c)?)?,
        subscription_id: row.text("subscription_id").map_err(c)?,
        resource_group: row.text("resource_group").map_err(c)?,
        location: row.text("location").map_err(c)?,
        body: json(row, "body", "registry")?,
        password1: row.bytes("password1").map_err(c)?,
        password2: row.bytes("password2").map_err(c)?,
        created_at: row.int("created_at").map_err(c)?,
    })
}

pub(crate) fn registry_blob(row: &impl Cols) -> Result<RegistryBlob, Error> {
    let c = |e| corrupt("registry blob", e);
    Ok(RegistryBlob {
        registry: row.text("registry").map_err(c)?,
        digest: row.text("digest").map_err(c)?,
        file_id: row.text("file_id").map_err(c)?,
        size: u64::try_from(row.int("size").map_err(c)?).unwrap_or_default(),
        created_at: row.int("created_at").map_err(c)?,
    })
}

pub(crate) fn manifest(row: &impl Cols) -> Result<Manifest, Error> {
    let c = |e| corrupt("manifest", e);
    Ok(Manifest {
        registry: row.text("registry").map_err(c)?,
        repository: row.text("repository").map_err(c)?,
        digest: row.text("digest").map_err(c)?,
        media_type: row.text("media_type").map_err(c)?,
        body: row.bytes("body").map_err(c)?,
        created_at: row.int("created_at").map_err(c)?,
    })
}

pub(crate) fn tag(row: &impl Cols) -> Result<Tag, Error> {
    let c = |e| corrupt("tag", e);
    Ok(Tag {
        name: row.text("name").map_err(c)?,
        digest: row.text("digest").map_err(c)?,
        updated_at: row.int("updated_at").map_err(c)?,
    })
}

pub(crate) fn upload(row: &impl Cols) -> Result<Upload, Error> {
    let c = |e| corrupt("upload", e);
    Ok(Upload {
        id: row.text("id").map_err(c)?,
        registry: row.text("registry").map_err(c)?,
        repository: row.text("repository").map_err(c)?,
        file_id: row.text("file_id").map_err(c)?,
        size: u64::try_from(row.int("size").map_err(c)?).unwrap_or_default(),
        created_at: row.int("created_at").map_err(c)?,
    })
}
