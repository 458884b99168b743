//! skiffctl: Skiff's kubectl-like CLI. `Cli` is the whole command line; `run` connects
//! through the kubeconfig and hands over to the command's module (one per verb, as
//! kubectl's `pkg/cmd/<verb>`). Everything talks to the API server through kube-rs.

pub mod api_resources;
pub mod apply;
pub mod create;
pub mod delete;
pub mod describe;
pub mod discovery;
pub mod error;
pub mod exec;
pub mod get;
pub mod jsonpath;
pub mod logs;
pub mod manifest;
pub mod node;
pub mod output;
pub mod printer;
pub mod progress;
pub mod rollout;
pub mod scale;
pub mod session;
pub mod version;

use clap::{Parser, Subcommand};

pub use error::{Error, Result};
pub use session::{GlobalArgs, Session};

#[derive(Debug, Parser)]
#[command(
    name = "skiffctl",
    about = "skiffctl controls a Skiff (or any Kubernetes) cluster, as kubectl does",
    version
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply a configuration to resources by file name or stdin (server-side apply).
    Apply(apply::ApplyArgs),
    /// Create resources from files or stdin.
    Create(create::CreateArgs),
    /// Delete resources by file names, stdin, resources and names, or label selector.
    Delete(delete::DeleteArgs),
    /// Show details of a resource or group of resources, with their events.
    Describe(describe::DescribeArgs),
    /// Display one or many resources.
    Get(get::GetArgs),
    /// Print the logs of a container in a pod.
    Logs(logs::LogsArgs),
    /// Execute a command in a container.
    Exec(exec::ExecArgs),
    /// Set a new size for a Deployment, ReplicaSet or StatefulSet.
    Scale(scale::ScaleArgs),
    /// Manage the rollout of a Deployment.
    Rollout(rollout::RolloutArgs),
    /// Mark a node unschedulable.
    Cordon(node::NodeArgs),
    /// Mark a node schedulable again.
    Uncordon(node::NodeArgs),
    /// Cordon a node and evict its pods.
    Drain(node::DrainArgs),
    /// Print the client and server version information.
    Version(version::VersionArgs),
    /// Print the supported API resources on the server.
    #[command(name = "api-resources")]
    ApiResources(api_resources::ApiResourcesArgs),
}

/// Runs one command line; the process's exit code on success.
pub async fn run(cli: Cli) -> Result<u8> {
    if let Command::Version(args) = &cli.command
        && args.client
    {
        return version::run_client_only(args);
    }
    let session = Session::connect(&cli.global).await?;
    let done = |r: Result<()>| r.map(|()| 0);
    match cli.command {
        Command::Apply(args) => done(apply::run(&session, args).await),
        Command::Create(args) => done(create::run(&session, args).await),
        Command::Delete(args) => done(delete::run(&session, args).await),
        Command::Describe(args) => done(describe::run(&session, args).await),
        Command::Get(args) => done(get::run(&session, args).await),
        Command::Logs(args) => done(logs::run(&session, args).await),
        Command::Exec(args) => exec::run(&session, args).await,
        Command::Scale(args) => done(scale::run(&session, args).await),
        Command::Rollout(args) => done(rollout::run(&session, args).await),
        Command::Cordon(args) => done(node::cordon(&session, args, true).await),
        Command::Uncordon(args) => done(node::cordon(&session, args, false).await),
        Command::Drain(args) => done(node::drain(&session, args).await),
        Command::Version(args) => done(version::run(&session, args).await),
        Command::ApiResources(args) => done(api_resources::run(&session, args).await),
    }
}

/// Writes to stdout, turning a closed pipe (`skiffctl get … | head`) into an error instead
/// of a panic.
pub fn out(text: impl AsRef<str>) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_ref().as_bytes())?;
    stdout.flush()?;
    Ok(())
}

/// Raw bytes to stdout, flushed (logs, exec output).
pub fn out_bytes(bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()?;
    Ok(())
}

/// [`out`] with a newline.
pub fn outln(text: impl AsRef<str>) -> Result<()> {
    out(format!("{}\n", text.as_ref()))
}

/// A line on stderr (kubectl's warnings and per-object errors).
pub fn errln(text: impl AsRef<str>) {
    eprintln!("{}", text.as_ref());
}
