//! Shared access signatures: account SAS and service SAS (container and blob)
//! signed with an account key, and user delegation SAS signed with a user
//! delegation key. Account and service SAS from service version 2015-04-05 on,
//! each version verified with the fields it signs; user delegation SAS from 2020-12-06.

use std::net::IpAddr;

use axum::http::StatusCode;

use keyless_auth::shared_key::verify;

use super::delegation::{KeyFields, iso, key_value};
use super::error::StorageError;
use super::operation::Operation;
use super::xml::parse_iso8601;

/// What a verified SAS allows.
#[derive(Debug, Clone)]
pub(crate) struct Sas {
    permissions: String,
    scope: Scope,
    /// Response header overrides (`rscc`, `rscd`, `rsce`, `rscl`, `rsct`).
    pub(crate) overrides: Vec<(&'static str, String)>,
    /// For a user delegation SAS, the identity that delegated (object id, tenant id):
    /// its role assignments at the time of use limit the request too.
    pub(crate) delegator: Option<(String, String)>,
    /// For a user delegation SAS on behalf of another identity: `saoid` (the
    /// delegator vouches for it) or `suoid` (its ACLs are checked as well).
    pub(crate) agent: Option<Agent>,
}

/// The identity a user delegation SAS acts for, besides its delegator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Agent {
    /// `saoid`: authorized by the delegator; no check of its own.
    Preauthorized(String),
    /// `suoid`: assumed unauthorized; the path's ACLs must allow it.
    Unauthorized(String),
}

#[derive(Debug, Clone)]
enum Scope {
    Account {
        services: String,
        resource_types: String,
    },
    Container(String),
    Blob(String, String),
    /// `sr=d`: a directory of a hierarchical namespace and every path beneath it.
    Directory(String, String),
}

/// The query parameters a SAS is made of.
const SAS_FIELDS: [&str; 29] = [
    "sv", "ss", "srt", "sp", "st", "se", "sip", "spr", "sr", "si", "sig", "sdd", "ses", "sst",
    "skoid", "sktid", "skt", "ske", "sks", "skv", "saoid", "suoid", "scid", "sduoid", "rscc",
    "rscd", "rsce", "rscl", "rsct",
];

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The string a user delegation SAS signs: the layout of the service versions
/// since 2025 (`long`, 28 lines) or the older one (24 lines).
fn delegation_text<'q: 'c, 'c>(
    get: &dyn Fn(&str) -> &'q str,
    canonical: &'c str,
    long: bool,
) -> String {
    let mut lines = vec![
        get("sp"),
        get("st"),
        get("se"),
        canonical,
        get("skoid"),
        get("sktid"),
        get("skt"),
        get("ske"),
        get("sks"),
        get("skv"),
        get("saoid"),
        get("suoid"),
        get("scid"),
    ];
    if long {
        lines.extend([get("skdutid"), get("sduoid")]);
    }
    lines.extend([
        get("sip"),
        get("spr"),
        get("sv"),
        get("sr"),
        signed_time(get),
        get("ses"),
    ]);
    if long {
        lines.extend([get("srh"), get("srq")]);
    }
    lines.extend([
        get("rscc"),
        get("rscd"),
        get("rsce"),
        get("rscl"),
        get("rsct"),
    ]);
    lines.join("\n")
}

fn mismatch(code: &'static str, message: &str) -> StorageError {
    StorageError::new(StatusCode::FORBIDDEN, code, message)
}

/// Verifies the SAS in `query` for `account` with its keys; checks its window,
/// protocol and address. A SAS naming a stored access policy (`si`) is refused
/// here: [`verify_sas_with_policy`] resolves it.
pub(crate) fn verify_sas(
    account: &str,
    target: (&str, &str),
    keys: &[Vec<u8>; 2],
    query: &[(String, String)],
    now: i64,
    client: Option<IpAddr>,
) -> Result<Sas, StorageError> {
    verify_sas_with_policy(account, target, keys, query, now, client, None)
}

/// [`verify_sas`] for a service SAS that names one of its container's stored
/// access policies (`si`), given as `policy` (`None`: the container has none of
/// that id). The policy supplies the start, expiry and permissions the SAS leaves
/// out; a field given by both is refused, as Azure refuses it. Deleting or
/// changing the policy revokes or changes every SAS that names it.
pub(crate) fn verify_sas_with_policy(
    account: &str,
    (container, blob): (&str, &str),
    keys: &[Vec<u8>; 2],
    query: &[(String, String)],
    now: i64,
    client: Option<IpAddr>,
    policy: Option<&keyless_store::AccessPolicy>,
) -> Result<Sas, StorageError> {
    if let Some(twice) = SAS_FIELDS
        .iter()
        .find(|f| query.iter().filter(|(k, _)| k == *f).count() > 1)
    {
        return Err(StorageError::auth(format!(
            "The SAS field `{twice}` appears more than once: a SAS names each field once."
        )));
    }
    let get = |n: &str| param(query, n).unwrap_or("");
    let version = get("sv");
    let delegated = !get("skoid").is_empty();
    // Each service version signs its own list of fields; keyless verifies the
    // layouts from 2015-04-05 on (user delegation SAS: 2020-12-06 on).
    let oldest = if delegated {
        "2020-12-06"
    } else {
        "2015-04-05"
    };
    if version < oldest || version.len() != 10 {
        return Err(StorageError::auth(format!(
            "Signed version `{version}` is not supported; keyless accepts this kind of SAS from version {oldest} on."
        )));
    }
    let si = get("si");
    let policy = match (si.is_empty(), policy) {
        (true, _) => None,
        (false, _) if delegated || !get("ss").is_empty() => {
            return Err(StorageError::auth(
                "Only a service SAS signed with an account key may name a stored access policy (si).",
            ));
        }
        (false, Some(p)) if p.id == si => Some(p),
        (false, _) => {
            return Err(StorageError::auth(format!(
                "The stored access policy `{si}` does not exist on the container (it may have been removed, which revokes every SAS naming it)."
            )));
        }
    };
    // A field comes from the SAS or from its policy, never both.
    let from_policy = |name: &str, value: Option<&String>| -> Result<String, StorageError> {
        match (get(name), value) {
            ("", Some(v)) => Ok(v.clone()),
            (own, None) => Ok(own.to_owned()),
            (_, Some(_)) => Err(StorageError::auth(format!(
                "The SAS and its stored access policy both give `{name}`; it must come from one of them."
            ))),
        }
    };
    let (sp, st, se) = match policy {
        Some(p) => (
            from_policy("sp", p.permission.as_ref())?,
            from_policy("st", p.start.as_ref())?,
            from_policy("se", p.expiry.as_ref())?,
        ),
        None => (
            get("sp").to_owned(),
            get("st").to_owned(),
            get("se").to_owned(),
        ),
    };
    let (text, scope) = if delegated {
        let (canonical, scope) = service_resource(account, container, blob, get("sr"), get("sdd"))?;
        let long = delegation_text(&get, &canonical, true);
        let short = delegation_text(&get, &canonical, false);
        let [key1, _] = keys;
        let value = key_value(
            key1,
            KeyFields {
                oid: get("skoid"),
                tid: get("sktid"),
                start: get("skt"),
                expiry: get("ske"),
                service: get("sks"),
                version: get("skv"),
            },
        );

        let key_expiry = parse_iso8601(get("ske")).ok_or_else(|| {
            StorageError::auth("The user delegation SAS must carry the key expiry (ske).")
        })?;
        if now >= key_expiry {
            return Err(StorageError::auth(
                "The user delegation key has expired: ask for a new key and sign a new SAS.",
            ));
        }
        let text = [long, short]
            .into_iter()
            .find(|text| verify(&value, text, get("sig")))
            .ok_or_else(|| {
                StorageError::auth(
                    "Signature did not match: the user delegation SAS does not verify with the key its fields name.",
                )
            })?;
        (text, scope)
    } else if !get("ss").is_empty() || !get("srt").is_empty() {
        let mut fields = vec![
            account,
            get("sp"),
            get("ss"),
            get("srt"),
            get("st"),
            get("se"),
            get("sip"),
            get("spr"),
            version,
        ];
        if version >= "2020-12-06" {
            fields.push(get("ses"));
        }
        fields.push("");
        let text = fields.join("\n");
        (
            text,
            Scope::Account {
                services: get("ss").to_owned(),
                resource_types: get("srt").to_owned(),
            },
        )
    } else {
        let (canonical, scope) = service_resource(account, container, blob, get("sr"), get("sdd"))?;
        let mut fields = vec![
            get("sp"),
            get("st"),
            get("se"),
            canonical.as_str(),
            get("si"),
            get("sip"),
            get("spr"),
            version,
        ];
        if version >= "2018-11-09" {
            fields.extend([get("sr"), signed_time(&get)]);
        }
        if version >= "2020-12-06" {
            fields.push(get("ses"));
        }
        fields.extend([
            get("rscc"),
            get("rscd"),
            get("rsce"),
            get("rscl"),
            get("rsct"),
        ]);
        let text = fields.join("\n");
        (text, scope)
    };
    let sig = get("sig");
    if !delegated && !keys.iter().any(|k| verify(k, &text, sig)) {
        return Err(StorageError::auth(
            "Signature did not match. String to sign used was the one of the SAS fields of this request; check the key and the fields.",
        ));
    }
    let expiry = parse_iso8601(&se)
        .ok_or_else(|| StorageError::auth("The SAS must carry an expiry (se) in ISO 8601."))?;
    if now >= expiry {
        return Err(StorageError::auth(
            "Signed expiry time has passed: the SAS expired; create a new one.",
        ));
    }
    if let Some(start) = Some(st.as_str()).filter(|s| !s.is_empty()) {
        let start = parse_iso8601(start)
            .ok_or_else(|| StorageError::auth("The SAS start (st) is not ISO 8601."))?;
        if now + 300 < start {
            return Err(StorageError::auth(
                "The SAS is not valid yet (st lies in the future).",
            ));
        }
    }
    if let Some(range) = param(query, "sip").filter(|s| !s.is_empty()) {
        let allowed = client.is_some_and(|ip| ip_in(range, ip));
        if !allowed {
            return Err(mismatch(
                "AuthorizationSourceIPMismatch",
                "This request is not authorized to perform this operation using this source IP.",
            ));
        }
    }
    let mut overrides = Vec::new();
    for (q, h) in [
        ("rscc", "cache-control"),
        ("rscd", "content-disposition"),
        ("rsce", "content-encoding"),
        ("rscl", "content-language"),
        ("rsct", "content-type"),
    ] {
        if let Some(v) = param(query, q).filter(|v| !v.is_empty()) {
            overrides.push((h, v.to_owned()));
        }
    }
    Ok(Sas {
        permissions: sp,
        scope,
        overrides,
        delegator: delegated.then(|| (get("skoid").to_owned(), get("sktid").to_owned())),
        agent: match (get("saoid"), get("suoid")) {
            _ if !delegated => None,
            ("", "") => None,
            (saoid, "") => Some(Agent::Preauthorized(saoid.to_owned())),
            ("", suoid) => Some(Agent::Unauthorized(suoid.to_owned())),
            _ => {
                return Err(StorageError::auth(
                    "A user delegation SAS names either saoid or suoid, not both.",
                ));
            }
        },
    })
}

/// The resource a service SAS signs, and its scope. The request's own resource is
/// used, so a SAS for another container or blob does not verify.
fn service_resource(
    account: &str,
    container: &str,
    blob: &str,
    sr: &str,
    sdd: &str,
) -> Result<(String, Scope), StorageError> {
    match sr {
        "d" => {
            // The directory is the first `sdd` segments of the request's path.
            let depth: usize = sdd.parse().map_err(|_| {
                StorageError::auth("A directory SAS (sr=d) must carry its depth (sdd) as a number.")
            })?;
            let mut segments = blob.split('/');
            let dir: Vec<&str> = segments.by_ref().take(depth).collect();
            if depth == 0 || dir.len() < depth {
                return Err(StorageError::auth(format!(
                    "The request's path `{blob}` does not lie within a directory of depth {depth} (sdd)."
                )));
            }
            let dir = dir.join("/");
            Ok((
                format!("/blob/{account}/{container}/{dir}"),
                Scope::Directory(container.to_owned(), dir),
            ))
        }
        "c" => Ok((
            format!("/blob/{account}/{container}"),
            Scope::Container(container.to_owned()),
        )),
        "b" | "bs" | "bv" => Ok((
            format!("/blob/{account}/{container}/{blob}"),
            Scope::Blob(container.to_owned(), blob.to_owned()),
        )),
        other => Err(StorageError::auth(format!(
            "Signed resource `{other}` is not supported; use sr=c, sr=b, sr=bs, sr=bv or sr=d."
        ))),
    }
}

/// The snapshot time or version id a SAS for a snapshot (`sr=bs`) or a version
/// (`sr=bv`) signs: the request's own `snapshot=` or `versionid=`, so that the
/// SAS reaches that state alone.
fn signed_time<'a>(get: &dyn Fn(&str) -> &'a str) -> &'a str {
    match get("sr") {
        "bs" => get("snapshot"),
        "bv" => get("versionid"),
        _ => get("sst"),
    }
}

fn ip_in(range: &str, ip: IpAddr) -> bool {
    match range.split_once('-') {
        Some((lo, hi)) => match (lo.parse::<IpAddr>(), hi.parse::<IpAddr>()) {
            (Ok(lo), Ok(hi)) => lo <= ip && ip <= hi,
            _ => false,
        },
        None => range.parse::<IpAddr>().is_ok_and(|one| one == ip),
    }
}

impl Sas {
    /// Whether the SAS is for a directory (`sr=d`), which only a hierarchical namespace has.
    pub(crate) fn is_directory(&self) -> bool {
        matches!(self.scope, Scope::Directory(..))
    }

    /// Whether the SAS grants permission `p` (`r`, `w`, `c`, `m`, …).
    pub(crate) fn grants(&self, p: char) -> bool {
        self.permissions.contains(p)
    }

    /// Whether the SAS covers `op` on `container`/`blob`.
    pub(crate) fn authorize(
        &self,
        op: Operation,
        container: &str,
        blob: &str,
    ) -> Result<(), StorageError> {
        use Operation as Op;
        let (kind, needed): (char, &str) = match op {
            Op::ListContainers => ('s', "l"),
            Op::GetServiceProperties | Op::GetServiceStats => ('s', "r"),
            // Any valid SAS of the account may ask what kind of account it is.
            Op::GetAccountInformation => return Ok(()),
            Op::GetUserDelegationKey => {
                return Err(StorageError::auth(
                    "Only authentication scheme Bearer is supported",
                ));
            }
            Op::SetServiceProperties => ('s', "w"),
            Op::CreateContainer | Op::RestoreContainer => ('c', "cw"),
            Op::DeleteContainer => ('c', "d"),
            Op::GetContainerProperties => ('c', "r"),
            Op::SetContainerMetadata => ('c', "w"),
            Op::ListBlobs => ('c', "l"),
            Op::LeaseContainer | Op::SetContainerAcl => ('c', "w"),
            Op::GetContainerAcl => ('c', "r"),
            Op::FindBlobsByTags if container.is_empty() => ('s', "f"),
            Op::FindBlobsByTags => ('c', "f"),
            Op::GetBlobTags | Op::SetBlobTags => ('o', "t"),
            Op::LeaseBlob | Op::SealBlob | Op::SetBlobTier | Op::PutPage => ('o', "w"),
            Op::GetPageRanges => ('o', "r"),
            // `c` may snapshot a blob, as it may create one.
            Op::CreateSnapshot => ('o', "cw"),
            Op::UndeleteBlob => ('o', "w"),
            Op::AppendBlock => ('o', "aw"),
            // `c` creates new blobs only; the dispatcher refuses an overwrite without `w`.
            Op::PutBlob | Op::PutBlock | Op::PutBlockList | Op::CopyBlob => ('o', "cw"),
            Op::GetBlockList | Op::GetBlob | Op::GetBlobProperties | Op::GetBlobMetadata => {
                ('o', "r")
            }
            Op::SetBlobMetadata | Op::SetBlobProperties => ('o', "w"),
            Op::DeleteBlob | Op::DeletePath => ('o', "d"),
            // The envelope asks nothing; each sub-request is checked when it runs.
            Op::BlobBatch => return Ok(()),
            Op::CreateFilesystem => ('c', "cw"),
            Op::DeleteFilesystem => ('c', "d"),
            Op::GetFilesystemProperties => ('c', "r"),
            Op::ListPaths => ('c', "l"),
            Op::CreatePath | Op::AppendData | Op::FlushData => ('o', "cw"),
            Op::GetPathStatus | Op::GetAccessControl => ('o', "r"),
            // The destination of a rename; its source needs `m` ([`Self::authorize_move_source`]).
            Op::RenamePath => ('o', "cw"),
            // Owner and group changes need `o`, ACL and mode changes `p`: the
            // dispatcher checks which the request makes.
            Op::SetAccessControl => ('o', "op"),
            Op::SetAccessControlRecursive => ('o', "p"),
        };
        self.covers(kind, op, container, blob)?;
        self.needs(needed)
    }

    /// Whether the SAS lets the source of a rename move: `m` on a path inside its scope.
    pub(crate) fn authorize_move_source(
        &self,
        container: &str,
        path: &str,
    ) -> Result<(), StorageError> {
        self.covers('o', Operation::RenamePath, container, path)
            .map_err(|_| {
                mismatch(
                    "AuthorizationResourceTypeMismatch",
                    "The SAS does not cover the source of the rename: a rename moves only paths inside the SAS's own scope.",
                )
            })?;
        self.needs("m")
    }

    /// Refuses unless the SAS grants one of `needed`.
    pub(crate) fn needs(&self, needed: &str) -> Result<(), StorageError> {
        if !needed.chars().any(|p| self.permissions.contains(p)) {
            return Err(mismatch(
                "AuthorizationPermissionMismatch",
                &format!(
                    "This request is not authorized to perform this operation using this permission: it needs `{needed}`, the SAS grants `{}`.",
                    self.permissions
                ),
            ));
        }
        Ok(())
    }

    /// Whether the SAS's resource covers a request of kind `kind` (`s`ervice,
    /// `c`ontainer, `o`bject) on `container`/`blob`.
    fn covers(
        &self,
        kind: char,
        op: Operation,
        container: &str,
        blob: &str,
    ) -> Result<(), StorageError> {
        use Operation as Op;
        match &self.scope {
            Scope::Account {
                services,
                resource_types,
            } => {
                if !services.contains('b') {
                    return Err(mismatch(
                        "AuthorizationServiceMismatch",
                        "This request is not authorized to perform this operation using this service (ss lacks b).",
                    ));
                }
                if !resource_types.contains(kind) {
                    return Err(mismatch(
                        "AuthorizationResourceTypeMismatch",
                        "This request is not authorized to perform this operation using this resource type.",
                    ));
                }
            }
            Scope::Container(c) => {
                // A service SAS reaches the blobs of its container and lists them;
                // the container's own properties and metadata need an account SAS.
                if kind == 's'
                    || c != container
                    || matches!(
                        op,
                        Op::CreateContainer
                            | Op::RestoreContainer
                            | Op::DeleteContainer
                            | Op::GetContainerProperties
                            | Op::SetContainerMetadata
                            | Op::LeaseContainer
                            | Op::GetContainerAcl
                            | Op::SetContainerAcl
                    )
                {
                    return Err(mismatch(
                        "AuthorizationResourceTypeMismatch",
                        "The service SAS is for another resource than this request's.",
                    ));
                }
            }
            Scope::Directory(c, dir) => {
                let within = blob == dir
                    || blob
                        .strip_prefix(dir.as_str())
                        .is_some_and(|rest| rest.starts_with('/'));
                if kind != 'o' || c != container || !within {
                    return Err(mismatch(
                        "AuthorizationResourceTypeMismatch",
                        "The directory SAS is for another directory than this request's path.",
                    ));
                }
            }
            Scope::Blob(c, b) => {
                if kind != 'o' || c != container || b != blob {
                    return Err(mismatch(
                        "AuthorizationResourceTypeMismatch",
                        "The service SAS is for another resource than this request's.",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What a server-signed user delegation SAS for one container grants.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ContainerGrant<'a> {
    pub(crate) account: &'a str,
    pub(crate) container: &'a str,
    /// The delegating identity: its role assignments bound the SAS at use time.
    pub(crate) oid: &'a str,
    pub(crate) tid: &'a str,
    pub(crate) permissions: &'a str,
    pub(crate) start: i64,
    pub(crate) expiry: i64,
}

/// Signs a user delegation SAS for a container, as a client would with a key
/// from Get User Delegation Key: keyless derives the key itself (it holds no
/// key), so a SAS it hands out is checked exactly like one a client signed.
/// Returns the query string.
pub(crate) fn sign_container_delegation(key1: &[u8], g: ContainerGrant<'_>) -> String {
    sign_delegation(key1, g, None)
}

/// Like [`sign_container_delegation`], for the one blob `blob` of the container.
pub(crate) fn sign_blob_delegation(key1: &[u8], g: ContainerGrant<'_>, blob: &str) -> String {
    sign_delegation(key1, g, Some(blob))
}

fn sign_delegation(key1: &[u8], g: ContainerGrant<'_>, blob: Option<&str>) -> String {
    let (start, expiry) = (iso(g.start), iso(g.expiry));
    let version = super::SERVICE_VERSION;
    let mut fields: Vec<(String, String)> = [
        ("sp", g.permissions),
        ("st", &start),
        ("se", &expiry),
        ("skoid", g.oid),
        ("sktid", g.tid),
        ("skt", &start),
        ("ske", &expiry),
        ("sks", "b"),
        ("skv", version),
        ("spr", "https"),
        ("sv", version),
        ("sr", if blob.is_some() { "b" } else { "c" }),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let get = |name: &str| param(&fields, name).unwrap_or("");
    let canonical = match blob {
        Some(b) => format!("/blob/{}/{}/{b}", g.account, g.container),
        None => format!("/blob/{}/{}", g.account, g.container),
    };
    let key = key_value(
        key1,
        KeyFields {
            oid: g.oid,
            tid: g.tid,
            start: &start,
            expiry: &expiry,
            service: "b",
            version,
        },
    );
    let sig = keyless_auth::shared_key::sign(&key, &delegation_text(&get, &canonical, true));
    fields.push(("sig".into(), sig));
    query_of(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// SAS fields as a query string, each value percent-encoded.
fn query_of<'a>(fields: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    fields
        .map(|(k, v)| {
            let v = percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC);
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Signs a service SAS for one blob with an account key, as a client holding the
/// key would; returns the query string. keyless hands such a SAS to a job's agent
/// for exactly the blob it must read or write, never the key behind it.
pub(crate) fn sign_blob(
    key: &[u8],
    (account, container, blob): (&str, &str, &str),
    permissions: &str,
    start: i64,
    expiry: i64,
) -> String {
    sign_service(
        key,
        (account, container, Some(blob)),
        permissions,
        start,
        expiry,
    )
}

/// Like [`sign_blob`], for the whole container: what a job's agent is handed
/// to serve a mount of a datastore whose stored credential reaches it.
pub(crate) fn sign_container(
    key: &[u8],
    (account, container): (&str, &str),
    permissions: &str,
    start: i64,
    expiry: i64,
) -> String {
    sign_service(key, (account, container, None), permissions, start, expiry)
}

fn sign_service(
    key: &[u8],
    (account, container, blob): (&str, &str, Option<&str>),
    permissions: &str,
    start: i64,
    expiry: i64,
) -> String {
    let (start, expiry) = (iso(start), iso(expiry));
    let version = super::SERVICE_VERSION;
    let (canonical, resource) = match blob {
        Some(b) => (format!("/blob/{account}/{container}/{b}"), "b"),
        None => (format!("/blob/{account}/{container}"), "c"),
    };
    let text = [
        permissions,
        &start,
        &expiry,
        &canonical,
        "",
        "",
        "https",
        version,
        resource,
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    ]
    .join("\n");
    let sig = keyless_auth::shared_key::sign(key, &text);
    let fields: [(&str, &str); 7] = [
        ("sp", permissions),
        ("st", &start),
        ("se", &expiry),
        ("spr", "https"),
        ("sv", version),
        ("sr", resource),
        ("sig", &sig),
    ];
    query_of(fields.into_iter())
}

#[cfg(test)]
mod tests;
