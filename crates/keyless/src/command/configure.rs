//! `keyless configure --defaults group=… workspace=… location=…`, as
//! `az configure`: defaults for `--resource-group`, `--workspace-name` and
//! `--location` wherever a command takes them and the command line leaves them
//! out. `AZURE_DEFAULTS_GROUP`, `AZURE_DEFAULTS_WORKSPACE` and
//! `AZURE_DEFAULTS_LOCATION` win over the stored ones, as in az.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use serde_json::{Value, json};

use crate::output::{Format, print};

/// `keyless configure`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Defaults as `name=value` (group, workspace, location); an empty value
    /// removes one.
    #[arg(long, short = 'd', num_args = 1..)]
    defaults: Vec<String>,
    /// Lists the defaults and where each comes from.
    #[arg(long, short = 'l')]
    list_defaults: bool,
}

/// The names a default may have, and the long option each fills.
const NAMES: [(&str, &str); 3] = [
    ("group", "resource-group"),
    ("workspace", "workspace-name"),
    ("location", "location"),
];

fn file() -> Result<PathBuf> {
    Ok(crate::profile::dir()?.join("defaults.json"))
}

fn stored() -> BTreeMap<String, String> {
    file()
        .ok()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

/// Each default in force: its name, value and source.
fn in_force() -> Vec<(String, String, String)> {
    let stored = stored();
    let source = file().map(|f| f.display().to_string()).unwrap_or_default();
    NAMES
        .iter()
        .filter_map(|(name, _)| {
            let var = format!("AZURE_DEFAULTS_{}", name.to_ascii_uppercase());
            match std::env::var(&var).ok().filter(|v| !v.is_empty()) {
                Some(v) => Some(((*name).to_owned(), v, var)),
                None => stored
                    .get(*name)
                    .map(|v| ((*name).to_owned(), v.clone(), source.clone())),
            }
        })
        .collect()
}

/// The command line's definition with the defaults in force filled in: an
/// option a default covers is no longer required, and takes the default when
/// left out.
pub(crate) fn apply(command: clap::Command) -> clap::Command {
    let defaults: Vec<(&'static str, &'static str)> = in_force()
        .into_iter()
        .filter_map(|(name, value, _)| {
            let long = NAMES.iter().find(|(n, _)| *n == name)?.1;
            Some((long, &*Box::leak(value.into_boxed_str())))
        })
        .collect();
    if defaults.is_empty() {
        command
    } else {
        fill(command, &defaults)
    }
}

fn fill(mut command: clap::Command, defaults: &[(&'static str, &'static str)]) -> clap::Command {
    let covered: Vec<(String, &'static str)> = command
        .get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?;
            let value = defaults.iter().find(|(l, _)| *l == long)?.1;
            Some((a.get_id().to_string(), value))
        })
        .collect();
    for (id, value) in covered {
        command = command.mut_arg(id, |a| a.default_value(value).required(false));
    }
    let subcommands: Vec<String> = command
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    for name in subcommands {
        command = command.mut_subcommand(name, |s| fill(s, defaults));
    }
    command
}

/// Runs `keyless configure`.
pub(crate) fn run(args: &Args, format: Format) -> Result<()> {
    if args.defaults.is_empty() && !args.list_defaults {
        bail!("give --defaults name=value … or --list-defaults");
    }
    if !args.defaults.is_empty() {
        let mut stored = stored();
        for pair in &args.defaults {
            let (name, value) = pair
                .split_once('=')
                .with_context(|| format!("`{pair}` is not name=value"))?;
            if !NAMES.iter().any(|(n, _)| *n == name) {
                bail!("`{name}` is not a default keyless keeps: group, workspace, location");
            }
            if value.is_empty() {
                stored.remove(name);
            } else {
                stored.insert(name.to_owned(), value.to_owned());
            }
        }
        let path = file()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
        }
        std::fs::write(&path, serde_json::to_string_pretty(&stored)?)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    if args.list_defaults {
        let listed: Vec<Value> = in_force()
            .into_iter()
            .map(|(name, value, source)| json!({ "name": name, "source": source, "value": value }))
            .collect();
        print(&Value::Array(listed), format);
    }
    Ok(())
}
