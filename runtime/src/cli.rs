//! `skiff runtime …`: a runc-compatible command line for the common verbs (`create`, `start`,
//! `run`, `state`, `kill`, `delete`, `list`, plus `exec` and `wait`) over OCI bundles, and the image
//! verbs (`pull`, `import`, `images`, `rmi`, `prune`).
//!
//! Runs without an async runtime (and so single-threaded) except for pulls: the monitor is then
//! forked rather than re-executed, which keeps `create` and `run` fast.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use nix::sys::signal::Signal;
use oci_spec::runtime::Spec;

use crate::container::{
    ContainerStatus, CreateOptions, ExecOptions, Runtime, RuntimeConfig, StdioConfig,
};

#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// Where container state lives (tmpfs).
    #[arg(long, global = true, default_value = "/run/skiff/runtime")]
    pub root: PathBuf,
    /// Where images, layers and containers' writable layers live.
    #[arg(long, global = true, default_value = "/var/lib/skiff/runtime")]
    pub data_root: PathBuf,
    #[command(subcommand)]
    pub command: RuntimeCommand,
}

#[derive(Debug, Subcommand)]
pub enum RuntimeCommand {
    /// Create a container from an OCI bundle; it waits for `start`.
    Create {
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
        /// Write the container's pid to this file.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        id: String,
    },
    /// Start a created container.
    Start { id: String },
    /// Create and start a container, wait for it and delete it, exiting with its code
    /// (or with `--detach`, return once it runs).
    Run {
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
        #[arg(long, short = 'd')]
        detach: bool,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        id: String,
    },
    /// Print a container's state as JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to a container's init, or with --all to all its processes.
    Kill {
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
        #[arg(long, short = 'a')]
        all: bool,
    },
    /// Delete a stopped container (or any, with --force).
    Delete {
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// List containers.
    #[command(alias = "ps")]
    List {
        #[arg(long, short = 'q')]
        quiet: bool,
        #[arg(long, short = 'f', default_value = "table", value_parser = ["table", "json"])]
        format: String,
    },
    /// Wait for a container to exit and exit with its code.
    Wait { id: String },
    /// Run a process inside a running container.
    Exec {
        id: String,
        #[arg(long, short = 't')]
        tty: bool,
        #[arg(long)]
        cwd: Option<PathBuf>,
        #[arg(long, short = 'e')]
        env: Vec<String>,
        /// UID[:GID]
        #[arg(long, short = 'u')]
        user: Option<String>,
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<String>,
    },
    /// Pull an image from a registry.
    Pull {
        /// A registry (HOST:PORT) to reach over plain HTTP; repeatable.
        #[arg(long = "insecure-registry")]
        insecure_registries: Vec<String>,
        /// A Docker config.json with credentials.
        #[arg(long)]
        creds: Option<PathBuf>,
        #[arg(long, short = 'q')]
        quiet: bool,
        reference: String,
    },
    /// Import images from an OCI layout (directory or tar) or a `docker save` archive.
    Import { file: PathBuf },
    /// List images.
    Images {
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Remove an image.
    Rmi { reference: String },
    /// Remove blobs and layers no image or container uses.
    Prune,
    /// Write a default config.json (Docker's defaults) into a bundle directory.
    Spec {
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
    },
}

/// Runs a `skiff runtime` command; returns the process exit code.
pub fn run(args: RuntimeArgs) -> i32 {
    let runtime = Runtime::new(RuntimeConfig {
        state_dir: args.root.clone(),
        data_dir: args.data_root.clone(),
        ..RuntimeConfig::default()
    });
    match execute(&runtime, args.command) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("skiff runtime: {message}");
            1
        }
    }
}

fn execute(runtime: &Runtime, command: RuntimeCommand) -> Result<i32, String> {
    let err = |e: crate::container::RuntimeError| e.to_string();
    match command {
        RuntimeCommand::Create {
            bundle,
            pid_file,
            id,
        } => {
            let options = bundle_options(&bundle, StdioConfig::Inherit)?;
            let state = runtime.create(&id, options).map_err(err)?;
            write_pid_file(pid_file.as_deref(), state.pid())?;
            Ok(0)
        }
        RuntimeCommand::Start { id } => runtime.start(&id).map(|_| 0).map_err(err),
        RuntimeCommand::Run {
            bundle,
            detach,
            pid_file,
            id,
        } => {
            let options = bundle_options(&bundle, StdioConfig::Inherit)?;
            let state = runtime.create_and_start(&id, options).map_err(err)?;
            write_pid_file(pid_file.as_deref(), state.pid())?;
            if detach {
                return Ok(0);
            }
            let exit = runtime.wait(&id).map_err(err)?;
            runtime.delete(&id, true).map_err(err)?;
            Ok(exit.code)
        }
        RuntimeCommand::State { id } => {
            let state = runtime.state(&id).map_err(err)?;
            print_json(&state.oci_state())?;
            Ok(0)
        }
        RuntimeCommand::Kill { id, signal, all } => {
            let signal = parse_signal(&signal)?;
            runtime.kill(&id, signal, all).map(|_| 0).map_err(err)
        }
        RuntimeCommand::Delete { force, id } => runtime.delete(&id, force).map(|_| 0).map_err(err),
        RuntimeCommand::List { quiet, format } => {
            let containers = runtime.list().map_err(err)?;
            let mut out = std::io::stdout().lock();
            if quiet {
                for c in &containers {
                    let _ = writeln!(out, "{}", c.id());
                }
            } else if format == "json" {
                let states: Vec<_> = containers.iter().map(|c| c.oci_state()).collect();
                print_json(&serde_json::Value::Array(states))?;
            } else {
                let _ = writeln!(
                    out,
                    "{:<24} {:<8} {:<10} {:<40} {:<31}",
                    "ID", "PID", "STATUS", "BUNDLE", "CREATED"
                );
                for c in &containers {
                    let pid = if c.status == ContainerStatus::Stopped {
                        0
                    } else {
                        c.pid()
                    };
                    let _ = writeln!(
                        out,
                        "{:<24} {:<8} {:<10} {:<40} {:<31}",
                        c.id(),
                        pid,
                        c.status,
                        c.stored.bundle.display(),
                        c.stored
                            .created
                            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                    );
                }
            }
            Ok(0)
        }
        RuntimeCommand::Wait { id } => {
            let exit = runtime.wait(&id).map_err(err)?;
            println!("{}", exit.code);
            Ok(exit.code)
        }
        RuntimeCommand::Exec {
            id,
            tty,
            cwd,
            env,
            user,
            command,
        } => {
            let (uid, gid) = match user.as_deref() {
                None => (None, None),
                Some(u) => {
                    let mut parts = u.splitn(2, ':');
                    let uid = parts
                        .next()
                        .unwrap_or("")
                        .parse::<u32>()
                        .map_err(|_| format!("--user {u:?}: expected numeric UID[:GID]"))?;
                    let gid = parts
                        .next()
                        .map(|g| g.parse::<u32>())
                        .transpose()
                        .map_err(|_| format!("--user {u:?}: expected numeric UID[:GID]"))?;
                    (Some(uid), gid)
                }
            };
            let mut process = runtime
                .exec(
                    &id,
                    ExecOptions {
                        args: command,
                        env,
                        cwd,
                        uid,
                        gid,
                        tty,
                    },
                )
                .map_err(err)?;
            let status = process
                .status()
                .map_err(|e| format!("running the exec helper: {e}"))?;
            Ok(status.code().unwrap_or(1))
        }
        RuntimeCommand::Pull {
            insecure_registries,
            creds,
            quiet,
            reference,
        } => pull(runtime, insecure_registries, creds, quiet, &reference),
        RuntimeCommand::Import { file } => {
            let images = runtime
                .images()
                .map_err(err)?
                .import(&file)
                .map_err(|e| e.to_string())?;
            for image in images {
                println!("imported {} ({})", image.reference, image.id);
            }
            Ok(0)
        }
        RuntimeCommand::Images { quiet } => {
            let images = runtime
                .images()
                .map_err(err)?
                .list()
                .map_err(|e| e.to_string())?;
            let mut out = std::io::stdout().lock();
            if !quiet {
                let _ = writeln!(out, "{:<60} {:<20} {:>10}", "IMAGE", "ID", "SIZE");
            }
            for image in images {
                if quiet {
                    let _ = writeln!(out, "{}", image.reference);
                } else {
                    let short = image.id.trim_start_matches("sha256:");
                    let _ = writeln!(
                        out,
                        "{:<60} {:<20} {:>10}",
                        image.reference,
                        &short[..short.len().min(12)],
                        human_size(image.size)
                    );
                }
            }
            Ok(0)
        }
        RuntimeCommand::Rmi { reference } => {
            runtime
                .images()
                .map_err(err)?
                .remove(&reference)
                .map_err(|e| e.to_string())?;
            println!("untagged {reference}");
            Ok(0)
        }
        RuntimeCommand::Prune => {
            let keep = runtime.layers_in_use().map_err(err)?;
            let report = runtime
                .images()
                .map_err(err)?
                .prune(&keep)
                .map_err(|e| e.to_string())?;
            println!(
                "removed {} blobs and {} layers, freed {}",
                report.blobs.len(),
                report.layers.len(),
                human_size(report.bytes_freed)
            );
            Ok(0)
        }
        RuntimeCommand::Spec { bundle } => {
            let path = bundle.join("config.json");
            if path.exists() {
                return Err(format!("{} already exists", path.display()));
            }
            let spec = crate::spec::default_spec(Path::new("rootfs"), vec!["sh".into()]);
            let json = serde_json::to_vec_pretty(&spec).map_err(|e| e.to_string())?;
            std::fs::write(&path, json).map_err(|e| format!("writing {}: {e}", path.display()))?;
            Ok(0)
        }
    }
}

fn pull(
    runtime: &Runtime,
    insecure_registries: Vec<String>,
    creds: Option<PathBuf>,
    quiet: bool,
    reference: &str,
) -> Result<i32, String> {
    let store = runtime.images().map_err(|e| e.to_string())?;
    let options = crate::image::PullOptions {
        insecure_registries,
        credentials_file: creds,
        ..Default::default()
    };
    let async_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    // Plain lines, one per finished step of a blob (a terminal progress bar is skiffctl's job).
    let progress = move |event: crate::image::PullProgress| {
        use crate::image::PullStatus;
        if quiet {
            return;
        }
        let short = event.digest.trim_start_matches("sha256:");
        let short = &short[..short.len().min(12)];
        match event.status {
            PullStatus::Downloading => {}
            PullStatus::Downloaded => {
                eprintln!("{short}: downloaded {}", human_size(event.bytes_done))
            }
            PullStatus::AlreadyPresent => eprintln!("{short}: already present"),
            PullStatus::Extracted => eprintln!("{short}: unpacked"),
        }
    };
    let image = async_runtime
        .block_on(store.pull(reference, &options, &progress))
        .map_err(|e| e.to_string())?;
    println!("{} {}", image.reference, image.digest);
    Ok(0)
}

fn bundle_options(bundle: &Path, stdio: StdioConfig) -> Result<CreateOptions, String> {
    let config = bundle.join("config.json");
    let bytes = std::fs::read(&config).map_err(|e| format!("reading {}: {e}", config.display()))?;
    let spec: Spec = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: invalid OCI runtime spec: {e}", config.display()))?;
    let bundle =
        std::path::absolute(bundle).map_err(|e| format!("resolving {}: {e}", bundle.display()))?;
    let mut options = CreateOptions::new(spec, bundle);
    options.stdio = stdio;
    Ok(options)
}

fn write_pid_file(path: Option<&Path>, pid: i32) -> Result<(), String> {
    if let Some(path) = path {
        std::fs::write(path, pid.to_string())
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    Ok(())
}

fn print_json(value: &serde_json::Value) -> Result<(), String> {
    let text = serde_json::to_string_pretty(value).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

/// `KILL`, `SIGKILL` or `9`.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    if let Ok(number) = text.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| format!("unknown signal {text:?}"));
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>()
        .map_err(|_| format!("unknown signal {text:?}"))
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals() {
        assert_eq!(parse_signal("KILL").ok(), Some(Signal::SIGKILL));
        assert_eq!(parse_signal("sigterm").ok(), Some(Signal::SIGTERM));
        assert_eq!(parse_signal("9").ok(), Some(Signal::SIGKILL));
        assert!(parse_signal("NOPE").is_err());
    }
}
