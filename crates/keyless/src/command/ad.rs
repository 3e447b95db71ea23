//! `keyless ad …`: users, groups, service principals, federated credentials and
//! directory roles, shaped like `az ad`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::client::{Api, segment};
use crate::output::{Format, print};

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AdCommand {
    /// Users.
    #[command(subcommand)]
    User(UserCommand),
    /// Groups.
    #[command(subcommand)]
    Group(GroupCommand),
    /// Service principals.
    #[command(subcommand)]
    Sp(SpCommand),
    /// App registrations: federated credentials and tokens.
    #[command(subcommand)]
    App(AppCommand),
    /// Directory roles.
    #[command(subcommand)]
    Role(RoleCommand),
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum UserCommand {
    /// Create a user.
    Create {
        #[arg(long)]
        display_name: String,
        #[arg(long)]
        user_principal_name: String,
        #[arg(long, env = "KEYLESS_NEW_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        account_enabled: bool,
    },
    /// List users.
    List,
    /// Show a user (object id or user principal name).
    Show {
        #[arg(long)]
        id: String,
    },
    /// Enable or disable a user.
    Update {
        #[arg(long)]
        id: String,
        #[arg(long, action = clap::ArgAction::Set)]
        account_enabled: bool,
    },
    /// Delete a user.
    Delete {
        #[arg(long)]
        id: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum GroupCommand {
    /// Create a group.
    Create {
        #[arg(long)]
        display_name: String,
        #[arg(long)]
        mail_nickname: Option<String>,
    },
    /// List groups.
    List,
    /// Show a group.
    Show {
        #[arg(long, short = 'g')]
        group: String,
    },
    /// Delete a group.
    Delete {
        #[arg(long, short = 'g')]
        group: String,
    },
    /// Group members.
    #[command(subcommand)]
    Member(MemberCommand),
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum MemberCommand {
    /// Add a member (user, group, service principal or managed identity).
    Add {
        #[arg(long, short = 'g')]
        group: String,
        #[arg(long)]
        member_id: String,
    },
    /// Remove a member.
    Remove {
        #[arg(long, short = 'g')]
        group: String,
        #[arg(long)]
        member_id: String,
    },
    /// List the direct members.
    List {
        #[arg(long, short = 'g')]
        group: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum SpCommand {
    /// Create an application and its service principal with a secret (or a certificate).
    CreateForRbac {
        #[arg(long, short = 'n')]
        name: String,
        /// Register this PEM certificate instead of generating a secret.
        #[arg(long)]
        cert: Option<PathBuf>,
        #[arg(long)]
        years: Option<u32>,
    },
    /// List service principals and managed identities.
    List,
    /// Show one (app id, object id or name).
    Show {
        #[arg(long)]
        id: String,
    },
    /// Enable or disable one.
    Update {
        #[arg(long)]
        id: String,
        #[arg(long, action = clap::ArgAction::Set)]
        enabled: bool,
    },
    /// Delete one.
    Delete {
        #[arg(long)]
        id: String,
    },
    /// Credentials.
    #[command(subcommand)]
    Credential(CredentialCommand),
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum CredentialCommand {
    /// Replace (or with --append, add) a secret, or register a certificate.
    Reset {
        #[arg(long)]
        id: String,
        #[arg(long)]
        append: bool,
        #[arg(long)]
        years: Option<u32>,
        /// RFC 3339 end of validity.
        #[arg(long)]
        end_date: Option<String>,
        #[arg(long)]
        cert: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum AppCommand {
    /// Federated identity credentials.
    #[command(subcommand)]
    FederatedCredential(FederatedCommand),
    /// Issue a federated token (for AZURE_FEDERATED_TOKEN_FILE) under the tenant's issuer.
    FederatedToken {
        #[arg(long)]
        id: String,
        #[arg(long)]
        subject: String,
        #[arg(long)]
        lifetime_seconds: Option<i64>,
        /// Write the token to this file (mode 0600) instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum FederatedCommand {
    /// Add one: --parameters takes JSON (`{"name","issuer","subject","audiences"}`) or @FILE.
    Create {
        #[arg(long)]
        id: String,
        #[arg(long)]
        parameters: String,
    },
    /// List them.
    List {
        #[arg(long)]
        id: String,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum RoleCommand {
    /// Grant a directory role (e.g. "User Administrator") to a principal.
    Assign {
        #[arg(long)]
        role: String,
        #[arg(long)]
        assignee: String,
    },
}

fn read_pem(path: &PathBuf) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read `{}`", path.display()))
}

pub(crate) async fn run(cmd: AdCommand, format: Format) -> Result<()> {
    let api = Api::connect().await?;
    let value = match cmd {
        AdCommand::User(cmd) => match cmd {
            UserCommand::Create { display_name, user_principal_name, password, account_enabled } => {
                api.post(
                    "/directory/users",
                    &json!({ "displayName": display_name, "userPrincipalName": user_principal_name, "password": password, "accountEnabled": account_enabled }),
                )
                .await?
            }
            UserCommand::List => api.get("/directory/users").await.map(crate::client::values)?,
            UserCommand::Show { id } => api.get(&format!("/directory/users/{}", segment(&id))).await?,
            UserCommand::Update { id, account_enabled } => {
                api.patch(&format!("/directory/users/{}", segment(&id)), &json!({ "accountEnabled": account_enabled })).await?
            }
            UserCommand::Delete { id } => api.delete(&format!("/directory/users/{}", segment(&id))).await?,
        },
        AdCommand::Group(cmd) => match cmd {
            GroupCommand::Create { display_name, mail_nickname } => {
                api.post("/directory/groups", &json!({ "displayName": display_name, "mailNickname": mail_nickname })).await?
            }
            GroupCommand::List => api.get("/directory/groups").await.map(crate::client::values)?,
            GroupCommand::Show { group } => api.get(&format!("/directory/groups/{}", segment(&group))).await?,
            GroupCommand::Delete { group } => api.delete(&format!("/directory/groups/{}", segment(&group))).await?,
            GroupCommand::Member(MemberCommand::Add { group, member_id }) => {
                api.post(&format!("/directory/groups/{}/members", segment(&group)), &json!({ "member": member_id })).await?
            }
            GroupCommand::Member(MemberCommand::Remove { group, member_id }) => {
                api.delete(&format!("/directory/groups/{}/members/{}", segment(&group), segment(&member_id))).await?
            }
            GroupCommand::Member(MemberCommand::List { group }) => {
                api.get(&format!("/directory/groups/{}/members", segment(&group))).await.map(crate::client::values)?
            }
        },
        AdCommand::Sp(cmd) => match cmd {
            SpCommand::CreateForRbac { name, cert, years } => {
                let certificate = cert.as_ref().map(read_pem).transpose()?;
                api.post("/directory/servicePrincipals", &json!({ "displayName": name, "certificate": certificate, "years": years })).await?
            }
            SpCommand::List => api.get("/directory/servicePrincipals").await.map(crate::client::values)?,
            SpCommand::Show { id } => api.get(&format!("/directory/servicePrincipals/{}", segment(&id))).await?,
            SpCommand::Update { id, enabled } => {
                api.patch(&format!("/directory/servicePrincipals/{}", segment(&id)), &json!({ "accountEnabled": enabled })).await?
            }
            SpCommand::Delete { id } => api.delete(&format!("/directory/servicePrincipals/{}", segment(&id))).await?,
            SpCommand::Credential(CredentialCommand::Reset { id, append, years, end_date, cert }) => {
                let certificate = cert.as_ref().map(read_pem).transpose()?;
                api.post(
                    &format!("/directory/servicePrincipals/{}/credentials/reset", segment(&id)),
                    &json!({ "append": append, "years": years, "endDate": end_date, "certificate": certificate }),
                )
                .await?
            }
        },
        AdCommand::App(AppCommand::FederatedCredential(FederatedCommand::Create { id, parameters })) => {
            let text = match parameters.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read `{path}`"))?,
                None => parameters,
            };
            let body: Value = serde_json::from_str(&text).context("--parameters is not JSON")?;
            api.post(&format!("/directory/servicePrincipals/{}/federatedCredentials", segment(&id)), &body).await?
        }
        AdCommand::App(AppCommand::FederatedCredential(FederatedCommand::List { id })) => {
            api.get(&format!("/directory/servicePrincipals/{}/federatedCredentials", segment(&id))).await.map(crate::client::values)?
        }
        AdCommand::App(AppCommand::FederatedToken { id, subject, lifetime_seconds, out }) => {
            let reply = api
                .post(
                    &format!("/directory/servicePrincipals/{}/federatedTokens", segment(&id)),
                    &json!({ "subject": subject, "lifetimeSeconds": lifetime_seconds }),
                )
                .await?;
            match out {
                Some(path) => {
                    let token = reply.get("token").and_then(Value::as_str).context("no token in the reply")?;
                    keyless_server::tls::write_private(&path, token.as_bytes()).map_err(|e| anyhow::anyhow!("{e}"))?;
                    json!({ "file": path, "issuer": reply.get("issuer"), "subject": reply.get("subject"), "expiresOn": reply.get("expiresOn") })
                }
                None => reply,
            }
        }
        AdCommand::Role(RoleCommand::Assign { role, assignee }) => {
            api.post(&format!("/directory/roles/{}/members", segment(&role)), &json!({ "principal": assignee })).await?
        }
    };
    if !value.is_null() {
        print(&value, format);
    }
    Ok(())
}
