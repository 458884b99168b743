//! `skiffctl`: Skiff's kubectl-like CLI. The commands live in the `skiff-ctl` crate; this is
//! the process around them: arguments, logging, the async runtime and kubectl's exit codes
//! (0 on success, 1 with the error on stderr, a remote command's own code for `exec`).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = skiff_ctl::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    // kube's rustls needs a process-wide crypto provider (ring, as the workspace pins it).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: skiff_ctl::Cli) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(skiff_ctl::run(cli)) {
        Ok(code) => Ok(code),
        Err(err) => {
            if let Some(line) = err.stderr_line() {
                eprintln!("{line}");
            }
            Ok(1)
        }
    }
}
