//! `keyless`: the server (`keyless serve`) and client commands shaped like `az`.

mod client;
mod command;
mod output;
mod profile;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use command::{
    access, account, acr, ad, admin, agent, configure, env, group, hosts, identity, keyvault, ml,
    monitor, role, serve, shim, storage,
};
use output::Format;

/// mimalloc instead of the system allocator: a request allocates and frees many
/// small buffers across threads, where glibc's malloc took a tenth of the CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Identity-based data access for machine-learning teams.
#[derive(Debug, Parser)]
#[command(name = "keyless", version, about, long_about = None)]
struct Cli {
    /// Output format of client commands.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Format::Json)]
    output: Format,
    /// A JMESPath query applied to the result before it is printed, as az's.
    #[arg(long, global = true)]
    query: Option<String>,
    /// The subscription of this command (default: the signed-in account's).
    #[arg(long, global = true)]
    subscription: Option<String>,
    /// Print errors only: no warnings or progress, as az's.
    #[arg(long, global = true)]
    only_show_errors: bool,
    /// Print each management request (method, URL, status, time) on stderr.
    #[arg(long, global = true)]
    verbose: bool,
    /// As --verbose, with each request's ids (never a header's or a body's content).
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(serve::Args),
    /// Print the environment a client needs, as `export` lines.
    Env(env::Args),
    /// Run a command (an unmodified Azure SDK script) in that environment.
    Run(env::RunArgs),
    /// The /etc/hosts lines for the storage host names SDKs build (`<account>.blob.<suffix>`).
    Hosts,
    /// Sign in (device code by default).
    Login(account::LoginArgs),
    /// Defaults for --resource-group, --workspace-name and --location, as `az configure`.
    Configure(configure::Args),
    /// Forget the signed-in account.
    Logout,
    /// The signed-in account and its tokens.
    #[command(subcommand)]
    Account(account::AccountCommand),
    /// The directory: users, groups, service principals, directory roles.
    #[command(subcommand)]
    Ad(ad::AdCommand),
    /// Resource groups.
    Group(group::GroupArgs),
    /// Role definitions and role assignments (Azure RBAC).
    #[command(subcommand)]
    Role(role::RoleCommand),
    /// Ask whether a principal may do something, and why.
    #[command(subcommand)]
    Access(access::AccessCommand),
    /// Storage accounts, containers and blobs.
    #[command(subcommand)]
    Storage(storage::StorageCommand),
    /// User-assigned managed identities.
    Identity(identity::IdentityArgs),
    /// Container registries (images are served on the registry listener).
    Acr(acr::AcrArgs),
    /// Key vaults (secrets are served on the vault listener, for SecretClient).
    #[command(subcommand)]
    Keyvault(keyvault::KeyvaultCommand),
    /// Machine learning: workspaces, computes, datastores, data assets (the YAML of `az ml`).
    #[command(subcommand)]
    Ml(ml::MlCommand),
    /// The activity log: who changed what, and when.
    #[command(subcommand)]
    Monitor(monitor::MonitorCommand),
    /// Server administration: tenants, signing keys.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Install an `az` executable that forwards token requests to keyless.
    #[command(name = "az-shim", subcommand)]
    AzShim(shim::ShimCommand),
    /// A job's agent, started on the compute by keyless (reads `KEYLESS_JOB_HANDLE`).
    #[command(name = "job-agent", hide = true)]
    JobAgent,
    /// Starts a job's agent as the root of a user namespace holding only the
    /// image agents' uid (as 0) and the job's (run by the sandbox, as root).
    #[command(name = "job-userns", hide = true)]
    JobUserns {
        agent_uid: u32,
        job_uid: u32,
        #[arg(last = true, required = true)]
        program: Vec<std::ffi::OsString>,
    },
    /// The `az` commands the shim forwards (`az account get-access-token`, `az account show`).
    #[command(hide = true)]
    Az(shim::AzArgs),
}

fn main() -> ExitCode {
    let matches = configure::apply(Cli::command()).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    output::set_verbosity(match (cli.only_show_errors, cli.verbose, cli.debug) {
        (_, _, true) => output::Verbosity::Debug,
        (_, true, false) => output::Verbosity::Verbose,
        (true, false, false) => output::Verbosity::Quiet,
        (false, false, false) => output::Verbosity::Normal,
    });
    if let Some(id) = &cli.subscription {
        client::set_subscription(id.clone());
    }
    if let Some(text) = &cli.query {
        match output::Query::compile(text) {
            Ok(q) => output::set_query(q),
            Err(e) => {
                eprintln!("ERROR: argument --query: invalid jmespath_type value: '{text}': {e}");
                return ExitCode::from(2);
            }
        }
    }
    // Before any thread exists: a process with threads cannot enter a new
    // user namespace.
    if let Command::JobUserns {
        agent_uid,
        job_uid,
        program,
    } = &cli.command
    {
        let Err(e) = agent::userns::enter(*agent_uid, *job_uid, program);
        eprintln!("ERROR: {e:#}");
        return ExitCode::FAILURE;
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if matches!(cli.command, Command::JobAgent) {
        // The agent shares its node with the job it serves, and its work is
        // waiting on sockets, files and FUSE. One worker thread leaves the
        // other cores to the job, and keeps a response's hand-off from its
        // connection's task to the task reading it (once per TLS record) on
        // one CPU: across two, every hand-off woke the other CPU, and a
        // mount read a file 10% slower.
        builder.worker_threads(1);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let format = cli.output;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Env(args) => env::run(&args).await,
            Command::Run(args) => env::run_command(args).await,
            Command::Hosts => hosts::run().await,
            Command::Login(args) => account::login(args, format).await,
            Command::Logout => account::logout(),
            Command::Configure(args) => configure::run(&args, format),
            Command::Account(cmd) => account::run(cmd, format).await,
            Command::Ad(cmd) => ad::run(cmd, format).await,
            Command::Identity(cmd) => identity::run(cmd, format).await,
            Command::Group(args) => group::run(args, format).await,
            Command::Storage(cmd) => storage::run(cmd, format).await,
            Command::Keyvault(cmd) => keyvault::run(cmd, format).await,
            Command::Acr(cmd) => acr::run(cmd, format).await,
            Command::Ml(cmd) => ml::run(cmd, format).await,
            Command::Role(cmd) => role::run(cmd, format).await,
            Command::Access(cmd) => access::run(cmd, format).await,
            Command::Admin(cmd) => admin::run(cmd, format).await,
            Command::Monitor(cmd) => monitor::run(cmd, format).await,
            Command::AzShim(cmd) => shim::run(cmd),
            Command::Az(args) => shim::az(args).await,
            Command::JobAgent => agent::run().await,
            Command::JobUserns { .. } => Err(anyhow::anyhow!("job-userns runs before the runtime")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // az's form: the reason on stderr, nothing on stdout, its exit status.
            eprintln!("ERROR: {e:#}");
            ExitCode::from(client::exit_status(&e))
        }
    }
}
