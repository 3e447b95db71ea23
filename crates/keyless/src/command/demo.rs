//! `keyless serve --demo`: seeds the hello-census world on first start, with the
//! same CLI commands a user would type, so the demo shows nothing the product
//! cannot do from outside.
//!
//! - users alice (AzureML Data Scientist on the workspace, Storage Blob Data
//!   Reader on the data) and bob (AzureML Data Scientist only), with generated
//!   passwords in `<data dir>/demo.json` (mode 0600);
//! - storage account `censusdata` with `data/census.csv`;
//! - workspace `census-ws`, compute cluster `cpu-cluster` with a system-assigned
//!   identity, and the identity-based datastore `mydata`.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde_json::json;

const WORKSPACE: &str = include_str!("../../../../examples/hello-census/workspace.yml");
const CLUSTER: &str = include_str!("../../../../examples/hello-census/cluster.yml");
const DATASTORE: &str = include_str!("../../../../examples/hello-census/datastore.yml");
const CENSUS: &str = include_str!("../../../../examples/hello-census/census.csv");

/// Seeds the demo unless `<data dir>/demo.json` says it was seeded already.
pub(crate) async fn seed(data_dir: &Path, domain: &str) -> Result<()> {
    let record = data_dir.join("demo.json");
    if record.exists() {
        println!(
            "demo: already seeded; users and passwords are in {}",
            record.display()
        );
        return Ok(());
    }
    let work = data_dir.join("demo");
    std::fs::create_dir_all(&work)?;
    for (name, text) in [
        ("workspace.yml", WORKSPACE),
        ("cluster.yml", CLUSTER),
        ("datastore.yml", DATASTORE),
        ("census.csv", CENSUS),
    ] {
        std::fs::write(work.join(name), text)?;
    }
    let admin: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data_dir.join("admin.json"))?)
            .context("reading the admin credentials")?;
    let cli = Cli {
        exe: std::env::current_exe()?,
        data_dir: data_dir.to_path_buf(),
        config_dir: work.join("cli"),
    };
    let text = |k: &str| {
        admin
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    cli.run(&["login", "-u", &text("username"), "-p", &text("password")])
        .await?;
    let sub = text("subscription");
    let account_id = format!(
        "/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.Storage/storageAccounts/censusdata"
    );
    let ws_id = format!(
        "/subscriptions/{sub}/resourceGroups/default/providers/Microsoft.MachineLearningServices/workspaces/census-ws"
    );
    let csv = work.join("census.csv").display().to_string();
    let file = |n: &str| work.join(n).display().to_string();
    cli.run(&[
        "storage",
        "account",
        "create",
        "-n",
        "censusdata",
        "-g",
        "default",
    ])
    .await?;
    cli.run(&[
        "storage",
        "container",
        "create",
        "-n",
        "data",
        "--account-name",
        "censusdata",
        "-g",
        "default",
        "--auth-mode",
        "key",
    ])
    .await?;
    cli.run(&[
        "storage",
        "blob",
        "upload",
        "--account-name",
        "censusdata",
        "-g",
        "default",
        "-c",
        "data",
        "-n",
        "census.csv",
        "-f",
        &csv,
        "--auth-mode",
        "key",
    ])
    .await?;
    cli.run(&[
        "ml",
        "workspace",
        "create",
        "-f",
        &file("workspace.yml"),
        "-g",
        "default",
    ])
    .await?;
    cli.run(&[
        "ml",
        "compute",
        "create",
        "-f",
        &file("cluster.yml"),
        "-w",
        "census-ws",
        "-g",
        "default",
    ])
    .await?;
    cli.run(&[
        "ml",
        "datastore",
        "create",
        "-f",
        &file("datastore.yml"),
        "-w",
        "census-ws",
        "-g",
        "default",
    ])
    .await?;
    let mut users = serde_json::Map::new();
    for (who, name) in [("alice", "Alice"), ("bob", "Bob")] {
        let upn = format!("{who}@{domain}");
        let password = format!(
            "{}-{}",
            name,
            keyless_auth::secret::random_token()
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .take(16)
                .collect::<String>()
        );
        cli.run(&[
            "ad",
            "user",
            "create",
            "--display-name",
            name,
            "--user-principal-name",
            &upn,
            "--password",
            &password,
        ])
        .await?;
        cli.run(&[
            "role",
            "assignment",
            "create",
            "--assignee",
            &upn,
            "--role",
            "AzureML Data Scientist",
            "--scope",
            &ws_id,
        ])
        .await?;
        users.insert(who.into(), json!({ "username": upn, "password": password }));
    }
    cli.run(&[
        "role",
        "assignment",
        "create",
        "--assignee",
        &format!("alice@{domain}"),
        "--role",
        "Storage Blob Data Reader",
        "--scope",
        &account_id,
    ])
    .await?;
    let body = serde_json::to_vec_pretty(&serde_json::Value::Object(users))?;
    write_private(&record, &body)?;
    let _ = std::fs::remove_dir_all(work.join("cli"));
    println!(
        "demo: seeded alice@{domain} (reads the census data) and bob@{domain} (does not); passwords in {}",
        record.display()
    );
    println!(
        "demo: keyless login -u alice@{domain} -p \"$(jq -r .alice.password {})\"",
        record.display()
    );
    println!(
        "demo: keyless ml job create -f examples/hello-census/job.yml -w census-ws -g default --stream"
    );
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    Ok(())
}

struct Cli {
    exe: std::path::PathBuf,
    data_dir: std::path::PathBuf,
    config_dir: std::path::PathBuf,
}

impl Cli {
    async fn run(&self, args: &[&str]) -> Result<()> {
        let mut command = tokio::process::Command::new(&self.exe);
        command
            .args(args)
            .env("KEYLESS_CONFIG_DIR", &self.config_dir)
            .env("KEYLESS_DATA_DIR", &self.data_dir)
            .stdin(std::process::Stdio::null());
        if args.first() == Some(&"login") {
            command.arg("--data-dir").arg(&self.data_dir);
        }
        let out = command.output().await?;
        if !out.status.success() {
            // Never echo the arguments: they may hold a password.
            bail!(
                "demo seeding failed at `keyless {}`: {}",
                args.iter().take(3).copied().collect::<Vec<_>>().join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}
