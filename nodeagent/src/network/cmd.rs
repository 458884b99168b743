//! Running iproute2 and iptables. Every child is spawned from the calling thread, so it acts in
//! that thread's network namespace (the host's, or a pod's on a thread that entered one).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use super::NetworkError;

/// `program` from PATH, else from the sbin directories (absent from some users' PATH).
fn tool(program: &'static str) -> PathBuf {
    static CACHE: OnceLock<std::sync::Mutex<Vec<(&'static str, PathBuf)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, path)) = cache.iter().find(|(name, _)| *name == program) {
        return path.clone();
    }
    let search = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&search)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| PathBuf::from(program));
    cache.push((program, found.clone()));
    found
}

fn describe(program: &str, args: &[&str]) -> String {
    let mut text = program.to_string();
    for arg in args {
        text.push(' ');
        text.push_str(arg);
    }
    text
}

fn output(
    program: &'static str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<Output, NetworkError> {
    let mut command = Command::new(tool(program));
    command
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let spawn_error = |source| NetworkError::Spawn {
        program: program.to_string(),
        source,
    };
    let mut child = command.spawn().map_err(spawn_error)?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A child that exits early closes the pipe; its exit status and stderr tell why.
        let _ = pipe.write_all(input.as_bytes());
    }
    child.wait_with_output().map_err(spawn_error)
}

fn failure(program: &str, args: &[&str], stdin: Option<&str>, out: &Output) -> NetworkError {
    let mut command = describe(program, args);
    if let Some(input) = stdin {
        command.push_str(" <<< ");
        command.push_str(&input.trim_end().replace('\n', "; "));
    }
    NetworkError::Command {
        command,
        status: out.status.to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    }
}

/// Runs `program args` and fails unless it exits 0; returns its stdout.
pub(super) fn run(program: &'static str, args: &[&str]) -> Result<String, NetworkError> {
    let out = output(program, args, None)?;
    if !out.status.success() {
        return Err(failure(program, args, None, &out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `program args` and returns whether it exited 0 (for checks such as `iptables -C`).
pub(super) fn succeeds(program: &'static str, args: &[&str]) -> Result<bool, NetworkError> {
    Ok(output(program, args, None)?.status.success())
}

/// Runs `program args` feeding `input` on stdin and fails unless it exits 0.
pub(super) fn run_with_input(
    program: &'static str,
    args: &[&str],
    input: &str,
) -> Result<(), NetworkError> {
    let out = output(program, args, Some(input))?;
    if !out.status.success() {
        return Err(failure(program, args, Some(input), &out));
    }
    Ok(())
}

/// Runs iproute2 commands (one per line, without the leading `ip`) in one process. With
/// `keep_going`, later commands still run after one fails (the error reports the failures).
pub(super) fn ip_batch(commands: &[String], keep_going: bool) -> Result<(), NetworkError> {
    if commands.is_empty() {
        return Ok(());
    }
    let mut input = commands.join("\n");
    input.push('\n');
    let args: &[&str] = if keep_going {
        &["-force", "-batch", "-"]
    } else {
        &["-batch", "-"]
    };
    run_with_input("ip", args, &input)
}

/// `ip -json ARGS`, parsed.
pub(super) fn ip_json(args: &[&str]) -> Result<serde_json::Value, NetworkError> {
    let mut full = vec!["-json"];
    full.extend_from_slice(args);
    let stdout = run("ip", &full)?;
    if stdout.trim().is_empty() {
        return Ok(serde_json::Value::Array(Vec::new()));
    }
    serde_json::from_str(&stdout).map_err(|e| NetworkError::Output {
        command: describe("ip", &full),
        detail: e.to_string(),
    })
}
