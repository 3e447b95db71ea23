//! `keyless ml …`: workspaces, computes, datastores and data assets from the YAML
//! files of `az ml`, with az's flags.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use keyless_ml::yaml::{self, Spec};

use crate::client::{Api, segment, values};

mod job;
mod view;
use crate::output::{Format, print};

const API_VERSION: &str = "2024-10-01";

/// A YAML file with `--set` overrides.
#[derive(Debug, clap::Args)]
pub(crate) struct FileArgs {
    /// The YAML file, as for `az ml`; without one, the flags describe the resource.
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,
    /// Overrides a key of the file (`--set max_instances=4`, dotted paths for nested keys).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl FileArgs {
    /// The file, for the commands that take nothing but a file.
    fn required(&self) -> Result<&Path> {
        self.file
            .as_deref()
            .context("the --file (-f) argument is required")
    }
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

/// A compute from a file or from `az ml compute create`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct ComputeArgs {
    #[command(flatten)]
    from: FromFile,
    /// `amlcompute`, `computeinstance` or `kubernetes`.
    #[arg(long = "type", short = 't')]
    kind: Option<String>,
    /// The VM size.
    #[arg(long)]
    size: Option<String>,
    #[arg(long)]
    min_instances: Option<u32>,
    #[arg(long)]
    max_instances: Option<u32>,
    /// `system_assigned`, `user_assigned`, `system_assigned,user_assigned` or `none`
    /// (az's spellings `systemassigned`, `userassigned` too).
    #[arg(long)]
    identity_type: Option<String>,
    /// Resource ids of user-assigned identities (comma- or space-separated).
    #[arg(long, num_args = 1..)]
    user_assigned_identities: Vec<String>,
}

impl ComputeArgs {
    /// The flags as overrides of the file's keys, which they win over.
    fn overrides(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                out.push((k.to_owned(), v));
            }
        };
        add("name", self.from.name.clone());
        add("type", self.kind.clone());
        add("size", self.size.clone());
        add("min_instances", self.min_instances.map(|n| n.to_string()));
        add("max_instances", self.max_instances.map(|n| n.to_string()));
        add(
            "identity.type",
            self.identity_type.as_deref().map(identity_type),
        );
        let ids = self.identity_ids();
        if !ids.is_empty() {
            let listed: Vec<Value> = ids.iter().map(|id| json!({ "resource_id": id })).collect();
            out.push((
                "identity.user_assigned_identities".into(),
                Value::Array(listed).to_string(),
            ));
        }
        Ok(out)
    }

    fn identity_ids(&self) -> Vec<String> {
        self.user_assigned_identities
            .iter()
            .flat_map(|s| s.split([',', ' ']))
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// az's spellings of an identity type, as the YAML writes it.
fn identity_type(text: &str) -> String {
    text.split(',')
        .map(
            |part| match part.trim().to_ascii_lowercase().replace('_', "").as_str() {
                "systemassigned" => "system_assigned".to_owned(),
                "userassigned" => "user_assigned".to_owned(),
                other => other.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join(",")
}

/// One version of an asset (data, environment) inside a workspace.
#[derive(Debug, clap::Args)]
pub(crate) struct NamedVersion {
    #[arg(long, short = 'n')]
    name: String,
    #[arg(long, short = 'v')]
    version: String,
    #[command(flatten)]
    at: InWorkspace,
}

impl NamedVersion {
    /// The path of this version of a `kind` asset.
    fn path(&self, api: &Api, kind: &str) -> Result<String> {
        child(
            api,
            &self.at,
            &version_path(kind, &self.name, &self.version),
        )
    }
}

/// `<kind>/<name>/versions/<version>`, each segment encoded.
fn version_path(kind: &str, name: &str, version: &str) -> String {
    format!("{kind}/{}/versions/{}", segment(name), segment(version))
}

/// The flags a command was given, as overrides of a file's keys.
fn given<const N: usize>(flags: [(&str, Option<String>); N]) -> Vec<(String, String)> {
    flags
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect()
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
    /// Environments: the image (or build context) a job names.
    #[command(subcommand)]
    Environment(EnvironmentCommand),
    /// Jobs: submit, follow, cancel, download.
    #[command(subcommand)]
    Job(job::JobCommand),
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum WorkspaceCommand {
    /// Create a workspace from a YAML file, or from flags.
    Create(WorkspaceArgs),
    /// Update a workspace from a YAML file, or from flags (list every user-assigned identity to keep).
    Update(WorkspaceArgs),
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

/// A workspace from a file or from `az ml workspace create`'s flags; the flags
/// win over the file.
#[derive(Debug, clap::Args)]
pub(crate) struct WorkspaceArgs {
    #[command(flatten)]
    file: FileArgs,
    #[arg(long, short = 'g')]
    resource_group: Option<String>,
    #[arg(long, short = 'n')]
    name: Option<String>,
    #[arg(long, short = 'l')]
    location: Option<String>,
    #[arg(long)]
    display_name: Option<String>,
    #[arg(long)]
    description: Option<String>,
    /// The resource id of the workspace's container registry.
    #[arg(long)]
    container_registry: Option<String>,
    #[arg(long)]
    storage_account: Option<String>,
    #[arg(long)]
    key_vault: Option<String>,
    #[arg(long)]
    primary_user_assigned_identity: Option<String>,
    /// Lets an update change the workspace's associated resources (registry…).
    #[arg(long)]
    update_dependent_resources: bool,
}

impl WorkspaceArgs {
    fn overrides(&self) -> Vec<(String, String)> {
        given([
            ("name", self.name.clone()),
            ("location", self.location.clone()),
            ("display_name", self.display_name.clone()),
            ("description", self.description.clone()),
            ("container_registry", self.container_registry.clone()),
            ("storage_account", self.storage_account.clone()),
            ("key_vault", self.key_vault.clone()),
            (
                "primary_user_assigned_identity",
                self.primary_user_assigned_identity.clone(),
            ),
        ])
    }
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ComputeCommand {
    /// Create a compute from a YAML file, or from flags.
    Create(ComputeArgs),
    /// Update a compute from a YAML file, or change its identity or scale with flags.
    Update(ComputeArgs),
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
    /// Create a data asset version from a YAML file, or from flags.
    Create {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        at: InWorkspace,
        #[arg(long, short = 'n')]
        name: Option<String>,
        #[arg(long, short = 'v')]
        version: Option<String>,
        /// Where the data is: `azureml://datastores/<d>/paths/<p>` or a storage URL.
        #[arg(long, short = 'p')]
        path: Option<String>,
        /// `uri_file` or `uri_folder` (default).
        #[arg(long = "type", short = 't')]
        kind: Option<String>,
        #[arg(long, short = 'd')]
        description: Option<String>,
    },
    /// Show a data asset version.
    Show(NamedVersion),
    /// List data assets, or the versions of one.
    List {
        #[arg(long, short = 'n')]
        name: Option<String>,
        #[command(flatten)]
        at: InWorkspace,
    },
    /// Delete a data asset version.
    Delete(NamedVersion),
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum EnvironmentCommand {
    /// Create an environment version from a YAML file (`image:`, `conda_file:`, `build:`).
    Create {
        #[command(flatten)]
        file: FileArgs,
        #[command(flatten)]
        at: InWorkspace,
        #[arg(long, short = 'n')]
        name: Option<String>,
        #[arg(long, short = 'v')]
        version: Option<String>,
        /// The image, as az ml's `--image` (instead of, or over, the file's).
        #[arg(long, short = 'i')]
        image: Option<String>,
        /// A conda file to build the image's Python environment from.
        #[arg(long)]
        conda_file: Option<PathBuf>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Show an environment version.
    Show(NamedVersion),
}

type Reader = fn(&str, &str, &[(String, String)]) -> Result<Spec, keyless_core::Error>;

/// Reads a YAML file (or, without one, the flags alone) into its ARM body;
/// `--set` and then the command's flags (`flags`) win over the file.
fn read(args: &FileArgs, reader: Reader, flags: Vec<(String, String)>) -> Result<Spec> {
    let (name, text) = match &args.file {
        Some(file) => (
            file.display().to_string(),
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?,
        ),
        None => ("the command line".to_owned(), "{}".to_owned()),
    };
    let mut sets = Vec::new();
    for s in &args.set {
        let Some((k, v)) = s.split_once('=') else {
            bail!("--set `{s}` must read KEY=VALUE");
        };
        sets.push((k.trim().to_owned(), v.to_owned()));
    }
    sets.extend(flags);
    reader(&name, &text, &sets).map_err(|e| {
        let message = e.to_string();
        // Without a file, a missing key is a missing flag.
        match message.split_once("missing field `") {
            Some((_, rest)) if args.file.is_none() => {
                let field = rest.split('`').next().unwrap_or_default();
                anyhow::anyhow!(
                    "give --{} (or a --file that names `{field}`)",
                    field.replace('_', "-")
                )
            }
            _ => anyhow::anyhow!("{message}"),
        }
    })
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
        MlCommand::Environment(cmd) => environment(&api, cmd).await?,
        MlCommand::Job(cmd) => job::run(&api, cmd).await?,
    };
    if !value.is_null() {
        print(&value, format);
    }
    Ok(())
}

async fn workspace(api: &Api, cmd: WorkspaceCommand) -> Result<Value> {
    match cmd {
        WorkspaceCommand::Update(args)
            if args.container_registry.is_some() && !args.update_dependent_resources =>
        {
            bail!(
                "changing a workspace's container registry changes a dependent resource: add --update-dependent-resources"
            )
        }
        WorkspaceCommand::Create(args) | WorkspaceCommand::Update(args) => {
            let spec = read(&args.file, yaml::workspace, args.overrides())?;
            let rg = args
                .resource_group
                .or(spec.resource_group.clone())
                .context("give the resource group with -g (or resource_group in the file)")?;
            let name = spec.name;
            let path = format!(
                "{}/{}?api-version={API_VERSION}",
                workspace_base(api, &rg)?,
                segment(&name)
            );
            api.put(&path, &spec.body).await.map(view::workspace)
        }
        WorkspaceCommand::Show {
            name,
            resource_group,
        } => api
            .get(&format!(
                "{}/{}?api-version={API_VERSION}",
                workspace_base(api, &resource_group)?,
                segment(&name)
            ))
            .await
            .map(view::workspace),
        WorkspaceCommand::List { resource_group } => {
            let path = match resource_group {
                Some(rg) => format!("{}?api-version={API_VERSION}", workspace_base(api, &rg)?),
                None => format!(
                    "/subscriptions/{}/providers/Microsoft.MachineLearningServices/workspaces?api-version={API_VERSION}",
                    api.subscription()?
                ),
            };
            api.get(&path)
                .await
                .map(|v| view::each(values(v), view::workspace))
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
    let flags: Vec<(String, String)> = f.name.iter().map(|n| ("name".into(), n.clone())).collect();
    let spec = read(&f.file, reader, flags)?;
    let name = spec.name;
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
    let shown = match cmd {
        ComputeCommand::Update(c) if c.from.file.file.is_none() => update_compute(api, &c).await,
        ComputeCommand::Create(c) | ComputeCommand::Update(c) => {
            let spec = read(&c.from.file, yaml::compute, c.overrides()?)?;
            api.put(
                &child(
                    api,
                    &c.from.at,
                    &format!("computes/{}", segment(&spec.name)),
                )?,
                &spec.body,
            )
            .await
        }
        ComputeCommand::Show(n) => api.get(&n.path(api, "computes", "")?).await,
        ComputeCommand::List { at } => api.get(&child(api, &at, "computes")?).await.map(values),
        ComputeCommand::Delete(n) => api.delete(&n.path(api, "computes", "")?).await,
    };
    shown.map(|v| view::each(v, view::compute))
}

/// `az ml compute update --name … --identity-type … [--user-assigned-identities …]
/// [--min-instances …] [--max-instances …]`: the compute as it is, with those changed.
async fn update_compute(api: &Api, c: &ComputeArgs) -> Result<Value> {
    let name = c
        .from
        .name
        .clone()
        .context("give the compute with --name (or a file with --file)")?;
    if c.kind.is_some() || c.size.is_some() {
        bail!("a compute's --type and --size cannot change; create another compute");
    }
    let path = child(api, &c.from.at, &format!("computes/{}", segment(&name)))?;
    let mut body = api.get(&path).await?;
    // User-assigned identities without a type make the compute's identity
    // user-assigned (a cluster holds one kind of identity, not both).
    let kind = match (&c.identity_type, c.identity_ids().is_empty()) {
        (Some(kind), _) => Some(identity_type(kind)),
        (None, true) => None,
        (None, false) => Some("user_assigned".to_owned()),
    };
    if let Some(kind) = kind {
        let kind = keyless_ml::identity::Kind::parse(&kind).map_err(|e| anyhow::anyhow!("{e}"))?;
        let identity = keyless_ml::identity::identity_rest(kind, &c.identity_ids());
        body.as_object_mut()
            .context("the compute's record is not an object")?
            .insert("identity".into(), identity);
    }
    let scale = body.pointer_mut("/properties/properties/scaleSettings");
    match (scale, c.min_instances, c.max_instances) {
        (_, None, None) => {}
        (Some(scale), min, max) => {
            let scale = scale
                .as_object_mut()
                .context("the compute's scale settings are not an object")?;
            if let Some(min) = min {
                scale.insert("minNodeCount".into(), json!(min));
            }
            if let Some(max) = max {
                scale.insert("maxNodeCount".into(), json!(max));
            }
        }
        (None, ..) => bail!("compute `{name}` has no scale settings to change"),
    }
    api.put(&path, &body).await
}

async fn datastore(api: &Api, cmd: DatastoreCommand) -> Result<Value> {
    match cmd {
        DatastoreCommand::Create(f) | DatastoreCommand::Update(f) => {
            put_file(api, f, "datastores", yaml::datastore)
                .await
                .map(view::datastore)
        }
        DatastoreCommand::Show(n) => api
            .get(&n.path(api, "datastores", "")?)
            .await
            .map(view::datastore),
        DatastoreCommand::List { at } => api
            .get(&child(api, &at, "datastores")?)
            .await
            .map(|v| view::each(values(v), view::datastore)),
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
    let shown = match cmd {
        DataCommand::Create {
            file,
            at,
            name,
            version,
            path,
            kind,
            description,
        } => {
            let flags = given([
                ("name", name),
                ("version", version),
                ("path", path),
                ("type", kind),
                ("description", description),
            ]);
            let spec = read(&file, yaml::data, flags)?;
            let name = spec.name;
            let version = spec.version.unwrap_or_else(|| "1".into());
            // A local path is relative to the file, as az resolves it; keyless stores URIs only.
            if let Some(local) = spec
                .body
                .pointer("/properties/dataUri")
                .and_then(Value::as_str)
                && !local.contains(':')
            {
                let dir = file.file.as_deref().map(base_dir).unwrap_or_default();
                bail!(
                    "path `{local}` is local ({}); upload it to a datastore first and use its azureml:// URI",
                    dir.join(local).display()
                );
            }
            api.put(
                &child(api, &at, &version_path("data", &name, &version))?,
                &spec.body,
            )
            .await
        }
        DataCommand::Show(v) => api.get(&v.path(api, "data")?).await,
        DataCommand::List { name, at } => {
            let rest = match name {
                Some(n) => format!("data/{}/versions", segment(&n)),
                None => "data".to_owned(),
            };
            api.get(&child(api, &at, &rest)?).await.map(values)
        }
        DataCommand::Delete(v) => api.delete(&v.path(api, "data")?).await,
    };
    shown.map(|v| view::each(v, view::data))
}

async fn environment(api: &Api, cmd: EnvironmentCommand) -> Result<Value> {
    let shown = match cmd {
        EnvironmentCommand::Create {
            file,
            at,
            name,
            version,
            image,
            conda_file,
            description,
        } => {
            let dir = file.file.as_deref().map(base_dir).unwrap_or_default();
            let flags = given([
                ("name", name),
                ("version", version),
                ("image", image),
                ("description", description),
            ]);
            let mut spec = read(&file, yaml::environment, flags)?;
            // A conda file named by path is read from beside the YAML file (or, from
            // the flag, from where the command runs), as az ml reads it.
            let conda = match conda_file {
                Some(path) => Some(path),
                None => spec
                    .body
                    .pointer("/properties/condaFile")
                    .and_then(Value::as_str)
                    .filter(|p| !p.contains('\n'))
                    .map(|p| dir.join(p)),
            };
            if let Some(path) = conda {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read the conda file {}", path.display()))?;
                if let Some(props) = spec
                    .body
                    .get_mut("properties")
                    .and_then(Value::as_object_mut)
                {
                    props.insert("condaFile".into(), text.into());
                }
            }
            let version = spec.version.clone().unwrap_or_else(|| "1".into());
            api.put(
                &child(
                    api,
                    &at,
                    &version_path("environments", &spec.name, &version),
                )?,
                &spec.body,
            )
            .await
        }
        EnvironmentCommand::Show(v) => api.get(&v.path(api, "environments")?).await,
    };
    shown.map(view::environment)
}
