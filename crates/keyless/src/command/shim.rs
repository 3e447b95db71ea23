//! The `az` shim: an `az` executable that forwards the token commands Azure SDK
//! credentials run (`az account get-access-token`, `az account show`) to keyless,
//! so `AzureCliCredential` and `DefaultAzureCredential` work after `keyless login`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use super::account::{TokenArgs, access_token};
use crate::output::{Format, print};
use crate::profile::Profile;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ShimCommand {
    /// Write `az` into DIR; put DIR first on PATH.
    Install {
        /// The directory to write the shim into.
        #[arg(long)]
        dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct AzArgs {
    /// The az command line.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

pub(crate) fn run(cmd: ShimCommand) -> Result<()> {
    let ShimCommand::Install { dir } = cmd;
    println!("{}", install(&dir)?.display());
    Ok(())
}

/// The line that marks the shim, so that `keyless env` tells it from a real az.
pub(crate) const MARK: &str = "# Forwards az's token commands to keyless.";

/// Writes `DIR/az` for this keyless executable, unless it is there already.
pub(crate) fn install(dir: &std::path::Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the keyless executable")?;
    let script = format!(
        "#!/bin/sh\n{MARK}\nexec '{}' az \"$@\"\n",
        exe.display().to_string().replace('\'', "'\\''")
    );
    let path = dir.join("az");
    if std::fs::read_to_string(&path).is_ok_and(|s| s == script) {
        return Ok(path);
    }
    // Written beside and renamed, so a script running `az` never sees half a file.
    let staged = dir.join(format!(".az.{}", std::process::id()));
    std::fs::write(&staged, script)
        .with_context(|| format!("cannot write `{}`", staged.display()))?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o700))?;
    std::fs::rename(&staged, &path)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(path)
}

/// Runs the az command line the shim received.
pub(crate) async fn az(args: AzArgs) -> Result<()> {
    let words: Vec<&str> = args.args.iter().map(String::as_str).collect();
    let (group, rest) = match words.as_slice() {
        ["account", "get-access-token", rest @ ..] => ("get-access-token", rest),
        ["account", "show", rest @ ..] => ("show", rest),
        ["--version", ..] | ["version", ..] => {
            println!(
                "{{\"azure-cli\": \"2.99.0\", \"keyless\": \"{}\"}}",
                env!("CARGO_PKG_VERSION")
            );
            return Ok(());
        }
        _ => bail!(
            "this `az` is keyless's shim; it answers `az account get-access-token` and `az account show` only"
        ),
    };
    let mut token = TokenArgs {
        resource: None,
        scope: None,
        tenant: None,
        subscription: None,
    };
    let mut format = Format::Json;
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .map(|s| (*s).to_owned())
                .with_context(|| format!("{flag} needs a value"))
        };
        match *flag {
            "--resource" => token.resource = Some(value()?),
            "--scope" => token.scope = Some(value()?),
            "--tenant" | "-t" => token.tenant = Some(value()?),
            "--subscription" => token.subscription = Some(value()?),
            "--output" | "-o" => {
                format = match value()?.as_str() {
                    "table" => Format::Table,
                    _ => Format::Json,
                }
            }
            other => bail!("unrecognized argument: {other}"),
        }
    }
    if group == "show" {
        let profile = Profile::load().context("Please run 'az login' to setup account.")?;
        print(
            &serde_json::json!({ "id": profile.subscription, "tenantId": profile.tenant, "isDefault": true, "state": "Enabled" }),
            format,
        );
        return Ok(());
    }
    let profile = Profile::load();
    if profile.is_err() {
        // AzureCliCredential recognises az's own wording for "not signed in".
        bail!("Please run 'az login' to setup account.");
    }
    print(&access_token(&token).await?, format);
    Ok(())
}
