//! `skiffctl exec [-i] [-t] POD|TYPE/NAME [-c C] -- COMMAND…`: a process in a container
//! through `pods/exec` (kube's websocket client, protocol v5 when the server offers it).
//! The remote command's exit code becomes skiffctl's, and a non-zero one is reported as
//! kubectl reports it (`command terminated with exit code N`). With `-t` on a terminal, the
//! local terminal is put in raw mode for the session and restored after.

use std::io::IsTerminal;

use clap::Args;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::logs::{pick_container, resolve_pod};
use crate::{Session, errln};

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// POD, pod/POD, or deployment|replicaset|job/NAME.
    pub target: String,
    /// The container to run in.
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Allocate a terminal for the command.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// The terminal in raw mode while it lives (keys go to the remote process as typed).
struct RawTerminal {
    original: nix::sys::termios::Termios,
}

impl RawTerminal {
    fn enter() -> Option<RawTerminal> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let original = tcgetattr(&stdin).ok()?;
        let mut raw = original.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawTerminal { original })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        use nix::sys::termios::{SetArg, tcsetattr};
        if let Err(err) = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.original) {
            tracing::warn!(%err, "restoring the terminal");
        }
    }
}

/// The remote command's exit code from the Status the server ends the session with.
pub fn exit_code(status: Option<&Status>) -> Result<u8> {
    let Some(status) = status else { return Ok(0) };
    if status.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    if status.reason.as_deref() == Some("NonZeroExitCode") {
        let code = status
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|causes| {
                causes
                    .iter()
                    .find(|c| c.reason.as_deref() == Some("ExitCode"))
            })
            .and_then(|c| c.message.as_deref())
            .and_then(|m| m.parse::<i64>().ok())
            .unwrap_or(1);
        return Ok(u8::try_from(code.clamp(0, 255)).unwrap_or(1));
    }
    Err(Error::Other(status.message.clone().unwrap_or_default()))
}

pub async fn run(session: &Session, args: ExecArgs) -> Result<u8> {
    let pod = resolve_pod(session, &args.target).await?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    let mut tty = args.tty;
    if tty && !std::io::stdin().is_terminal() {
        errln("Unable to use a TTY - input is not a terminal or the right kind of file");
        tty = false;
    }
    let mut params = AttachParams::default()
        .stdin(args.stdin)
        .stdout(true)
        .stderr(!tty)
        .tty(tty);
    if let Some(container) = pick_container(&pod, args.container.as_deref()) {
        params = params.container(container);
    }
    let pods: Api<Pod> = Api::namespaced(session.client.clone(), &session.namespace);
    let mut process = pods.exec(&name, args.command.clone(), &params).await?;
    let raw = if tty && args.stdin {
        RawTerminal::enter()
    } else {
        None
    };
    let stdin_task = process.stdin().map(|mut remote| {
        tokio::spawn(async move {
            let mut local = tokio::io::stdin();
            let mut buf = vec![0u8; 8192];
            loop {
                match local.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if remote.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
            // The end of input closes the remote stdin, as `cat` expects.
            let _ = remote.shutdown().await;
        })
    });
    let stdout_task = process
        .stdout()
        .map(|remote| tokio::spawn(pump(remote, false)));
    let stderr_task = process
        .stderr()
        .map(|remote| tokio::spawn(pump(remote, true)));
    let status = match process.take_status() {
        Some(status) => status.await,
        None => None,
    };
    for task in [stdout_task, stderr_task].into_iter().flatten() {
        if let Ok(Err(err)) = task.await {
            tracing::debug!(%err, "copying the remote output");
        }
    }
    if let Some(task) = stdin_task {
        task.abort();
    }
    drop(raw);
    let code = exit_code(status.as_ref())?;
    if code != 0 {
        errln(format!("command terminated with exit code {code}"));
    }
    Ok(code)
}

async fn pump<R: tokio::io::AsyncRead + Unpin>(
    mut remote: R,
    to_stderr: bool,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 8192];
    loop {
        let n = remote.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        if to_stderr {
            let mut err = tokio::io::stderr();
            err.write_all(&buf[..n]).await?;
            err.flush().await?;
        } else {
            let mut out = tokio::io::stdout();
            out.write_all(&buf[..n]).await?;
            out.flush().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_from_the_final_status() {
        let status = |v: serde_json::Value| -> Status { serde_json::from_value(v).unwrap() };
        assert_eq!(exit_code(None).unwrap(), 0);
        assert_eq!(
            exit_code(Some(&status(serde_json::json!({"status": "Success"})))).unwrap(),
            0
        );
        let failed = status(serde_json::json!({
            "status": "Failure", "reason": "NonZeroExitCode",
            "message": "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}
        }));
        assert_eq!(exit_code(Some(&failed)).unwrap(), 3);
        let broken = status(
            serde_json::json!({"status": "Failure", "reason": "InternalError", "message": "no such container"}),
        );
        assert_eq!(
            exit_code(Some(&broken)).unwrap_err().to_string(),
            "no such container"
        );
    }
}
