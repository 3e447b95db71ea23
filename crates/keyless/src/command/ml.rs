//! `keyless ml …`: workspaces, computes, datastores and data assets from the YAML
//! files of `az ml`, with az's flags.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use keyless_ml::yaml::{self, Spec};

use crate::client::{Api, segment, values};

mod job;
use crate::output::{Format, print};

const API_VERSION: &str = "2024-10-01";

/// A YAML file with `--set` overrides.
#[derive(Debug, clap::Args)]
pub(crate) struct FileArgs {
    /// The YAML file, as for `az ml`.
    #[arg(long, short = 'f')]
    file: PathBuf,
    /// Overrides a key of the file (`--set max_instances=4`, dotted paths for nested keys).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

/// The workspace a child resource lives in.
#[derive(Debug, clap::Args)]
pub(crate) struct InWorkspace {
    #[arg(long = "workspace-name", short = 'w')]
    workspace: String,
    #[arg(long, short = 'g')]
    resource_group: String,
}

/// A file for a resource inside a workspace; `-n` overrides the file's name.
#[derive(Debug, clap::Args)]
pub(crate) struct FromFile {
    #[command(flatten)]
    file: FileArgs,
    #[command(flatten)]
    at: InWorkspace,
    #[arg(long, short = 'n')]
    name: Option<String>,
}

/// A resource inside a workspace, by name.
#[derive(Debug, clap::Args)]
pub(crate) struct Named {
    #[arg(long, short = 'n')]
    name: String,
    #[command(flatten)]
    at: InWorkspace,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum MlCommand {
    /// Workspaces.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Compute targets (amlcompute, computeinstance, kubernetes).
    #[command(subcommand)]
    Compute(ComputeCommand),
    /// Datastores.
    #[command(subcommand)]
    Datastore(DatastoreCommand),
    /// Data assets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Jobs: submit, follow, cancel, download.
    #[command(subcommand)]
    Job(job::JobCommand),
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum WorkspaceCommand {
    /// Create a workspace from a YAML file.
    Create {
        #[command(flatten)]
        file: FileArgs,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        #[arg(long, short = 'n')]
        name: Option<String>,
    },
    /// Update a workspace from a YAML file (list every user-assigned identity to keep).
    Update {
        #[command(flatten)]
        file: FileArgs,
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
        #[arg(long, short = 'n')]
        name: Option<String>,
    },
    /// Show a workspace.
    Show {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
    },
    /// List the workspaces of a resource group, or of the subscription.
    List {
        #[arg(long, short = 'g')]
        resource_group: Option<String>,
    },
    /// Delete a workspace with its computes, datastores and identities.
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'g')]
        resource_group: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ComputeCommand {
    /// Create a compute from a YAML file.
    Create(FromFile),
    /// Update a compute from a YAML file.
    Update(FromFile),
    /// Show a compute, with its identities and (for instances) the idle-shutdown rule.
    Show(Named),
    /// List the computes of a workspace.
    List {
        #[command(flatten)]
        at: InWorkspace,
    },
    /// Delete a compute and its system-assigned identity.
    Delete(Named),
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum DatastoreCommand {
    /// Create a datastore from a YAML file; credentials go sealed into the workspace vault.
    Create(FromFile),
    /// Update a datastore from a YAML file.
    Update(FromFile),
    /// Show a datastore (never its credentials).
    Show(Named),
    /// List the datastores of a workspace.
    List {
        #[command(flatten)]
        at: InWorkspace,
    },
    /// Delete a datastore (its credential leaves the vault).
    Delete(Named),
    /// Print a datastore's stored credential (needs datastores/listsecrets/action).
    ListSecrets(Named),
    /// The first rows of a file, or a folder's entries, read as the preview rule says.
    Preview {
        /// `azureml://datastores/<d>/paths/<p>`, `azureml:<asset>:<version>` or a storage URL.
        uri: String,
        #[command(flatten)]
        at: InWorkspace,
        /// How many lines to show.
        #[arg(long, default_value_t = 10)]
        rows: usize,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum DataCommand {
    /// Create a data asset version from a YAML file.
    Create {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        at: InWorkspace,
        #[arg(long, short = 'n')]
        name: Option<String>,
        #[arg(long, short = 'v')]
        version: Option<String>,
    },
    /// Show a data asset version.
    Show {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'v')]
        version: String,
        #[command(flatten)]
        at: InWorkspace,
    },
    /// List data assets, or the versions of one.
    List {
        #[arg(long, short = 'n')]
        name: Option<String>,
        #[command(flatten)]
        at: InWorkspace,
    },
    /// Delete a data asset version.
    Delete {
        #[arg(long, short = 'n')]
        name: String,
        #[arg(long, short = 'v')]
        version: String,
        #[command(flatten)]
        at: InWorkspace,
    },
}

type Reader = fn(&str, &str, &[(String, String)]) -> Result<Spec, keyless_core::Error>;

/// Reads a YAML file into its ARM body.
fn read(args: &FileArgs, reader: Reader) -> Result<Spec> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let mut sets = Vec::new();
    for s in &args.set {
        let Some((k, v)) = s.split_once('=') else {
            bail!("--set `{s}` must read KEY=VALUE");
        };
        sets.push((k.trim().to_owned(), v.to_owned()));
    }
    let name = args.file.display().to_string();
    reader(&name, &text, &sets).map_err(|e| anyhow::anyhow!("{e}"))
}

fn workspace_base(api: &Api, rg: &str) -> Result<String> {
    Ok(format!(
        "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.MachineLearningServices/workspaces",
        api.subscription()?,
        segment(rg)
    ))
}

fn child(api: &Api, at: &InWorkspace, rest: &str) -> Result<String> {
    Ok(format!(
        "{}/{}/{rest}?api-version={API_VERSION}",
        workspace_base(api, &at.resource_group)?,
        segment(&at.workspace)
    ))
}

fn base_dir(file: &Path) -> PathBuf {
    file.parent().map(Path::to_path_buf).unwrap_or_default()
}

pub(crate) async fn run(cmd: MlCommand, format: Format) -> Result<()> {
    let api = Api::connect().await?;
    let value = match cmd {
        MlCommand::Workspace(cmd) => workspace(&api, cmd).await?,
        MlCommand::Compute(cmd) => compute(&api, cmd).await?,
        MlCommand::Datastore(cmd) => datastore(&api, cmd).await?,
        MlCommand::Data(cmd) => data(&api, cmd).await?,
        MlCommand::Job(cmd) => job::run(&api, cmd).await?,
    };
    if !value.is_null() {
        print(&value, format);
    }
    Ok(())
}

async fn workspace(api: &Api, cmd: WorkspaceCommand) -> Result<Value> {
    match cmd {
        WorkspaceCommand::Create {
            file,
            resource_group,
            name,
        }
        | WorkspaceCommand::Update {
            file,
            resource_group,
            name,
        } => {
            let spec = read(&file, yaml::workspace)?;
            let rg = resource_group
                .or(spec.resource_group.clone())
                .context("give the resource group with -g (or resource_group in the file)")?;
            let name = name.unwrap_or(spec.name);
            let path = format!(
                "{}/{}?api-version={API_VERSION}",
                workspace_base(api, &rg)?,
                segment(&name)
            );
            api.put(&path, &spec.body).await
        }
        WorkspaceCommand::Show {
            name,
            resource_group,
        } => {
            api.get(&format!(
                "{}/{}?api-version={API_VERSION}",
                workspace_base(api, &resource_group)?,
                segment(&name)
            ))
            .await
        }
        WorkspaceCommand::List { resource_group } => {
            let path = match resource_group {
                Some(rg) => format!("{}?api-version={API_VERSION}", workspace_base(api, &rg)?),
                None => format!(
                    "/subscriptions/{}/providers/Microsoft.MachineLearningServices/workspaces?api-version={API_VERSION}",
                    api.subscription()?
                ),
            };
            api.get(&path).await.map(values)
        }
        WorkspaceCommand::Delete {
            name,
            resource_group,
        } => {
            api.delete(&format!(
                "{}/{}?api-version={API_VERSION}",
                workspace_base(api, &resource_group)?,
                segment(&name)
            ))
            .await
        }
    }
}

/// Sends a file as the body of `<kind>/<name>` in its workspace.
async fn put_file(api: &Api, f: FromFile, kind: &str, reader: Reader) -> Result<Value> {
    let spec = read(&f.file, reader)?;
    let name = f.name.unwrap_or(spec.name);
    api.put(
        &child(api, &f.at, &format!("{kind}/{}", segment(&name)))?,
        &spec.body,
    )
    .await
}

impl Named {
    /// The path of `<kind>/<name>` (then `suffix`) in its workspace.
    fn path(&self, api: &Api, kind: &str, suffix: &str) -> Result<String> {
        child(
            api,
            &self.at,
            &format!("{kind}/{}{suffix}", segment(&self.name)),
        )
    }
}

async fn compute(api: &Api, cmd: ComputeCommand) -> Result<Value> {
    match cmd {
        ComputeCommand::Create(f) | ComputeCommand::Update(f) => {
            put_file(api, f, "computes", yaml::compute).await
        }
        ComputeCommand::Show(n) => api.get(&n.path(api, "computes", "")?).await,
        ComputeCommand::List { at } => api.get(&child(api, &at, "computes")?).await.map(values),
        ComputeCommand::Delete(n) => api.delete(&n.path(api, "computes", "")?).await,
    }
}

async fn datastore(api: &Api, cmd: DatastoreCommand) -> Result<Value> {
    match cmd {
        DatastoreCommand::Create(f) | DatastoreCommand::Update(f) => {
            put_file(api, f, "datastores", yaml::datastore).await
        }
        DatastoreCommand::Show(n) => api.get(&n.path(api, "datastores", "")?).await,
        DatastoreCommand::List { at } => api.get(&child(api, &at, "datastores")?).await.map(values),
        DatastoreCommand::Delete(n) => api.delete(&n.path(api, "datastores", "")?).await,
        DatastoreCommand::ListSecrets(n) => {
            api.post(&n.path(api, "datastores", "/listSecrets")?, &json!({}))
                .await
        }
        DatastoreCommand::Preview { uri, at, rows } => {
            api.post(
                &child(api, &at, "previewData")?,
                &json!({ "uri": uri, "rows": rows }),
            )
            .await
        }
    }
}

async fn data(api: &Api, cmd: DataCommand) -> Result<Value> {
    match cmd {
        DataCommand::Create {
            file,
            at,
            name,
            version,
        } => {
            let spec = read(&file, yaml::data)?;
            let name = name.unwrap_or(spec.name);
            let version = version.or(spec.version).unwrap_or_else(|| "1".into());
            // A local path is relative to the file, as az resolves it; keyless stores URIs only.
            if let Some(path) = spec
                .body
                .pointer("/properties/dataUri")
                .and_then(Value::as_str)
                && !path.contains(':')
            {
                bail!(
                    "{}: path `{path}` is local ({}); upload it to a datastore first and use its azureml:// URI",
                    file.file.display(),
                    base_dir(&file.file).join(path).display()
                );
            }
            api.put(
                &child(
                    api,
                    &at,
                    &format!("data/{}/versions/{}", segment(&name), segment(&version)),
                )?,
                &spec.body,
            )
            .await
        }
        DataCommand::Show { name, version, at } => {
            api.get(&child(
                api,
                &at,
                &format!("data/{}/versions/{}", segment(&name), segment(&version)),
            )?)
            .await
        }
        DataCommand::List { name, at } => {
            let rest = match name {
                Some(n) => format!("data/{}/versions", segment(&n)),
                None => "data".to_owned(),
            };
            api.get(&child(api, &at, &rest)?).await.map(values)
        }
        DataCommand::Delete { name, version, at } => {
            api.delete(&child(
                api,
                &at,
                &format!("data/{}/versions/{}", segment(&name), segment(&version)),
            )?)
            .await
        }
    }
}
