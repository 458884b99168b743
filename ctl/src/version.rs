//! `skiffctl version`: the client's version and the server's `/version`.

use clap::Args;

use crate::error::{Error, Result};
use crate::{Session, out, outln};

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Only the client version, without asking the server.
    #[arg(long)]
    pub client: bool,
    /// yaml or json instead of lines.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
}

fn client_version() -> String {
    format!("v{}", env!("CARGO_PKG_VERSION"))
}

pub fn run_client_only(args: &VersionArgs) -> Result<u8> {
    print(args, None)?;
    Ok(0)
}

pub async fn run(session: &Session, args: VersionArgs) -> Result<()> {
    let info = session.client.apiserver_version().await?;
    print(&args, Some(&info))
}

fn print(
    args: &VersionArgs,
    server: Option<&k8s_openapi::apimachinery::pkg::version::Info>,
) -> Result<()> {
    let mut document = serde_json::json!({
        "clientVersion": {"gitVersion": client_version(), "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH)},
    });
    if let Some(info) = server {
        document["serverVersion"] =
            serde_json::to_value(info).map_err(|e| Error::Other(e.to_string()))?;
    }
    match args.output.as_deref() {
        Some("yaml") => out(crate::output::to_yaml(&document)?),
        Some("json") => out(crate::output::to_json_indented(&document, b"  ")?),
        Some(other) => Err(Error::usage(format!(
            "--output must be 'yaml' or 'json', not {other:?}"
        ))),
        None => {
            outln(format!("Client Version: {}", client_version()))?;
            if let Some(info) = server {
                outln(format!("Server Version: {}", info.git_version))?;
            }
            Ok(())
        }
    }
}
