//! Which identity reads the data: the Azure Machine Learning rules, as pure functions.
//!
//! A job's inputs and outputs, and a data preview in the workspace, each read
//! storage as exactly one identity. The rules (in order):
//!
//! 1. A datastore that holds a credential (account key, SAS, service principal,
//!    certificate) is read with that credential, whatever the job asks for.
//! 2. Otherwise the job's `identity` decides: `user_identity` reads as the user who
//!    submitted the job; `managed` reads as the compute's managed identity (a
//!    user-assigned one chosen by client or object id, else the compute's default);
//!    no identity falls back to the compute's default managed identity.
//! 3. A compute's default managed identity is its system-assigned identity, else
//!    its first user-assigned one. Serverless compute has no system-assigned
//!    identity: it uses the workspace's user-assigned identities.
//! 4. A job never mixes the user's identity and a managed identity.
//!
//! Where Azure's documents leave a case open, keyless chooses and says so in the
//! reason: `aml_token` on a credential-less datastore is refused (the documents do
//! not say which principal would read), and a serverless job without identity reads
//! as the submitting user.

use std::fmt;

/// What a datastore holds to reach its storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredCredential {
    /// Nothing: access is identity-based.
    None,
    /// An account key.
    AccountKey,
    /// A SAS token.
    Sas,
    /// A service principal's client secret.
    ServicePrincipal,
    /// A service principal's certificate.
    Certificate,
}

impl StoredCredential {
    /// The name Azure ML's REST API gives the kind (`credentialsType`).
    pub fn rest_name(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::AccountKey => "AccountKey",
            Self::Sas => "Sas",
            Self::ServicePrincipal => "ServicePrincipal",
            Self::Certificate => "Certificate",
        }
    }
}

/// The `identity` a job asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobIdentity {
    /// `identity` absent.
    Absent,
    /// `user_identity`: the submitting user's token is passed through.
    User,
    /// `managed` / `managed_identity`, optionally naming a user-assigned identity.
    Managed {
        /// Picks a user-assigned identity by client id.
        client_id: Option<String>,
        /// Picks a user-assigned identity by object (principal) id.
        object_id: Option<String>,
    },
    /// `aml_token`.
    AmlToken,
}

/// A managed identity as the rule needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedIdentity {
    /// Its object (principal) id: the storage sees this.
    pub object_id: String,
    /// Its client id: what `DEFAULT_IDENTITY_CLIENT_ID` carries.
    pub client_id: String,
    /// Whether it is a system-assigned identity.
    pub system_assigned: bool,
}

/// Where a job runs, as far as identities go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compute {
    /// A compute target of the workspace (cluster, instance, Kubernetes).
    Target {
        /// Its name, for messages.
        name: String,
        /// Its system-assigned identity, if any.
        system_assigned: Option<ManagedIdentity>,
        /// Its user-assigned identities, in the order they were attached.
        user_assigned: Vec<ManagedIdentity>,
    },
    /// Serverless compute: the workspace's user-assigned identities serve.
    Serverless {
        /// The workspace's user-assigned identities, the primary one first.
        workspace_user_assigned: Vec<ManagedIdentity>,
    },
}

impl Compute {
    /// The default managed identity: the system-assigned one, else the first
    /// user-assigned one.
    pub fn default_identity(&self) -> Option<&ManagedIdentity> {
        match self {
            Self::Target {
                system_assigned,
                user_assigned,
                ..
            } => system_assigned.as_ref().or(user_assigned.first()),
            Self::Serverless {
                workspace_user_assigned,
            } => workspace_user_assigned.first(),
        }
    }

    fn name(&self) -> &str {
        match self {
            Self::Target { name, .. } => name,
            Self::Serverless { .. } => "serverless",
        }
    }

    fn user_assigned(&self) -> &[ManagedIdentity] {
        match self {
            Self::Target { user_assigned, .. } => user_assigned,
            Self::Serverless {
                workspace_user_assigned,
            } => workspace_user_assigned,
        }
    }
}

/// Who reads the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reader {
    /// The credential the datastore holds.
    Credential(StoredCredential),
    /// The user who submitted the job.
    SubmittingUser,
    /// A managed identity of the compute (or of the workspace, on serverless).
    Managed(ManagedIdentity),
}

impl fmt::Display for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Credential(kind) => {
                write!(f, "the datastore's stored {} credential", kind.rest_name())
            }
            Self::SubmittingUser => f.write_str("the submitting user's identity"),
            Self::Managed(mi) if mi.system_assigned => write!(
                f,
                "the compute's system-assigned identity (object id {})",
                mi.object_id
            ),
            Self::Managed(mi) => write!(
                f,
                "the user-assigned identity with client id {} (object id {})",
                mi.client_id, mi.object_id
            ),
        }
    }
}

/// The identity chosen, with the rule that chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// Who reads.
    pub reader: Reader,
    /// The rule, in a sentence.
    pub reason: String,
}

/// Why no identity can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity a job's input or output is materialised with.
///
/// # Errors
/// A [`Refusal`] saying why no identity applies (a managed identity that is not
/// attached, a compute without any managed identity, `aml_token` on a
/// credential-less datastore).
pub fn job_data_reader(
    credential: StoredCredential,
    job: &JobIdentity,
    compute: &Compute,
) -> Result<Choice, Refusal> {
    if credential != StoredCredential::None {
        return Ok(Choice {
            reader: Reader::Credential(credential),
            reason: "the datastore holds a credential, which is used whatever the job's identity"
                .into(),
        });
    }
    match job {
        JobIdentity::User => Ok(Choice {
            reader: Reader::SubmittingUser,
            reason: "identity: user_identity reads credential-less data as the submitting user"
                .into(),
        }),
        JobIdentity::Managed {
            client_id,
            object_id,
        } => managed(compute, client_id.as_deref(), object_id.as_deref()),
        JobIdentity::Absent => match compute {
            Compute::Serverless { .. } => Ok(Choice {
                reader: Reader::SubmittingUser,
                reason: "a serverless job without identity reads as the submitting user".into(),
            }),
            Compute::Target { .. } => {
                let mi = compute.default_identity().ok_or_else(|| {
                    Refusal(format!(
                        "the job names no identity, so it would read as compute `{}`'s default managed identity, but the compute has none; set identity: user_identity or give the compute an identity",
                        compute.name()
                    ))
                })?;
                Ok(Choice {
                    reader: Reader::Managed(mi.clone()),
                    reason: format!(
                        "a job without identity reads as compute `{}`'s default managed identity",
                        compute.name()
                    ),
                })
            }
        },
        JobIdentity::AmlToken => Err(Refusal(
            "identity: aml_token cannot read a credential-less datastore on keyless (Azure does not document which principal would); use user_identity or managed".into(),
        )),
    }
}

fn managed(
    compute: &Compute,
    client_id: Option<&str>,
    object_id: Option<&str>,
) -> Result<Choice, Refusal> {
    let name = compute.name();
    if client_id.is_none() && object_id.is_none() {
        let mi = compute.default_identity().ok_or_else(|| {
            Refusal(format!(
                "identity: managed needs a managed identity on compute `{name}`, and it has none"
            ))
        })?;
        return Ok(Choice {
            reader: Reader::Managed(mi.clone()),
            reason: format!(
                "identity: managed reads as compute `{name}`'s default managed identity"
            ),
        });
    }
    let found = compute.user_assigned().iter().find(|mi| {
        client_id.is_none_or(|c| mi.client_id.eq_ignore_ascii_case(c))
            && object_id.is_none_or(|o| mi.object_id.eq_ignore_ascii_case(o))
    });
    match found {
        Some(mi) => Ok(Choice {
            reader: Reader::Managed(mi.clone()),
            reason: format!(
                "identity: managed names a user-assigned identity attached to compute `{name}`"
            ),
        }),
        None => Err(Refusal(format!(
            "identity: managed names {} , which is not a user-assigned identity attached to compute `{name}`",
            match (client_id, object_id) {
                (Some(c), _) => format!("client id {c}"),
                (None, Some(o)) => format!("object id {o}"),
                (None, None) => String::new(),
            }
        ))),
    }
}

/// Which workspace identity `serviceDataAccessAuthIdentity` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceAccess {
    /// `None`: the toggle is off.
    Off,
    /// `WorkspaceSystemAssignedIdentity`.
    SystemAssigned,
    /// `WorkspaceUserAssignedIdentity` (the primary one).
    UserAssigned,
}

/// Who reads for a data preview in the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreviewReader {
    /// The workspace's managed identity (which one: the datastore's setting).
    Workspace(WorkspaceAccess),
    /// The datastore's stored credential.
    Credential(StoredCredential),
    /// The caller who asked for the preview.
    Caller,
}

/// The identity a data preview uses (the service-side column of the rules):
/// the workspace's managed identity when the datastore turns it on, else the
/// stored credential, else the caller.
pub fn preview_reader(
    credential: StoredCredential,
    access: WorkspaceAccess,
) -> (PreviewReader, &'static str) {
    match (access, credential) {
        (WorkspaceAccess::Off, StoredCredential::None) => (
            PreviewReader::Caller,
            "the datastore holds no credential and does not use the workspace identity, so the preview reads as the caller",
        ),
        (WorkspaceAccess::Off, kind) => (
            PreviewReader::Credential(kind),
            "the datastore holds a credential and does not use the workspace identity, so the preview uses the credential",
        ),
        (access, _) => (
            PreviewReader::Workspace(access),
            "the datastore asks for the workspace's managed identity for preview",
        ),
    }
}

#[cfg(test)]
mod tests;
