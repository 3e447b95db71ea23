//! The signed-in account, kept in `~/.keyless/profile.json` (mode 0600), like
//! az's `~/.azure`. `KEYLESS_CONFIG_DIR` moves it.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// How the profile signs in again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Credential {
    /// A user: a refresh token from the last sign-in.
    User {
        /// The user principal name.
        username: String,
        /// The refresh token (rotated on every use).
        refresh_token: String,
    },
    /// A service principal with a client secret.
    ServicePrincipal {
        /// The application (client) id.
        app_id: String,
        /// The client secret.
        secret: String,
    },
}

/// Everything client commands need.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Profile {
    pub(crate) login_url: String,
    pub(crate) management_url: String,
    /// The storage URL (older profiles lack it).
    #[serde(default)]
    pub(crate) storage_url: Option<String>,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) tenant: String,
    pub(crate) client_id: String,
    pub(crate) subscription: Option<String>,
    pub(crate) credential: Credential,
}

pub(crate) fn dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("KEYLESS_CONFIG_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; set KEYLESS_CONFIG_DIR")?;
    Ok(PathBuf::from(home).join(".keyless"))
}

fn path() -> Result<PathBuf> {
    Ok(dir()?.join("profile.json"))
}

impl Profile {
    pub(crate) fn load() -> Result<Self> {
        let path = path()?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("not signed in; run `keyless login`")
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
        };
        serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "`{}` is malformed; run `keyless login` again",
                path.display()
            )
        })
    }

    pub(crate) fn save(&self) -> Result<()> {
        let dir = dir()?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
        let bytes = serde_json::to_vec_pretty(self)?;
        keyless_server::tls::write_private(&path()?, &bytes).map_err(|e| anyhow::anyhow!("{e}"))
    }

    pub(crate) fn remove() -> Result<bool> {
        match std::fs::remove_file(path()?) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
