//! Running another process inside a running container: the helper binary joins the container's
//! cgroup and namespaces, forks (so the PID namespace applies), and the child takes the
//! container's process settings (user, capabilities, rlimits, seccomp) before `execve`. The helper
//! waits for it and exits with its code, so the caller sees an ordinary child process.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use super::{Runtime, RuntimeError};
use super::{init, state};
use crate::cgroups::{Cgroup, Hierarchy};
use crate::security::{PreparedCapabilities, PreparedRlimits, PreparedSeccomp};

/// What to run. Unset fields take the container's own process settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecOptions {
    pub args: Vec<String>,
    /// Added to (and overriding) the container's environment.
    #[serde(default)]
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Make stdin (a terminal the caller supplies) the controlling terminal.
    #[serde(default)]
    pub tty: bool,
}

/// The exec'd process as the caller's child: set its stdio, spawn it (std or tokio), and its exit
/// code is the process's (128 + signal when killed).
pub type ExecProcess = Command;

#[derive(Serialize, Deserialize)]
struct ExecRequest {
    dir: PathBuf,
    options: ExecOptions,
}

pub(super) fn spawn(
    runtime: &Runtime,
    dir: &Path,
    options: ExecOptions,
) -> Result<ExecProcess, RuntimeError> {
    if options.args.is_empty() {
        return Err(RuntimeError::InvalidSpec("exec needs a command".into()));
    }
    let request = ExecRequest {
        dir: dir.to_path_buf(),
        options,
    };
    let json = serde_json::to_string(&request)
        .map_err(|e| RuntimeError::Sys(format!("encoding exec request: {e}")))?;
    let mut command = Command::new(&runtime.config().helper_binary);
    command.args([crate::reexec::MARKER, "exec", &json]);
    Ok(command)
}

/// Entry of the re-executed exec helper; returns the exit code to leave with.
pub(crate) fn run_exec_process(json: &str) -> i32 {
    match exec_main(json) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("skiff runtime exec: {message}");
            126
        }
    }
}

fn exec_main(json: &str) -> Result<i32, String> {
    let request: ExecRequest =
        serde_json::from_str(json).map_err(|e| format!("bad exec request: {e}"))?;
    let stored = state::read_stored(&request.dir).map_err(|e| e.to_string())?;
    if !state::process_alive(stored.pid, stored.pid_start_time) {
        return Err(format!("container \"{}\" is not running", stored.id));
    }
    let config_path = request.dir.join(state::CONFIG_FILE);
    let spec: Spec = std::fs::read(&config_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        .map_err(|e| format!("reading {}: {e}", config_path.display()))?;
    let process = spec.process().clone().unwrap_or_default();
    let linux = spec.linux().clone().unwrap_or_default();
    let seccomp = linux
        .seccomp()
        .as_ref()
        .map(PreparedSeccomp::prepare)
        .transpose()
        .map_err(|e| format!("seccomp: {e}"))?;
    let capabilities = process
        .capabilities()
        .as_ref()
        .map(|c| PreparedCapabilities::prepare(&super::raisable_capabilities(c)))
        .transpose()
        .map_err(|e| format!("capabilities: {e}"))?;
    let rlimits = PreparedRlimits::prepare(process.rlimits().as_deref().unwrap_or(&[]))
        .map_err(|e| format!("rlimits: {e}"))?;

    let options = request.options;
    let mut env: Vec<String> = process.env().clone().unwrap_or_default();
    for extra in &options.env {
        let key = extra.split('=').next().unwrap_or("");
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(extra.clone());
    }
    let cwd = options.cwd.clone().unwrap_or_else(|| process.cwd().clone());
    let uid = options.uid.unwrap_or(process.user().uid());
    let gid = options.gid.unwrap_or(process.user().gid());
    let groups: Vec<libc::gid_t> = process.user().additional_gids().clone().unwrap_or_default();
    let no_new_privileges = process.no_new_privileges().unwrap_or(false);

    // Join the cgroup first, so the forked child starts inside it.
    let hierarchy = Hierarchy::shared().map_err(|e| e.to_string())?;
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    Cgroup::new(&hierarchy, &stored.cgroup_path)
        .add_process(me)
        .map_err(|e| e.to_string())?;

    // user first (it grants the rights for the rest), mnt last (it changes what paths mean).
    let mut joined = Vec::new();
    for (name, flag) in [
        ("user", libc::CLONE_NEWUSER),
        ("ipc", libc::CLONE_NEWIPC),
        ("uts", libc::CLONE_NEWUTS),
        ("net", libc::CLONE_NEWNET),
        ("pid", libc::CLONE_NEWPID),
        ("cgroup", libc::CLONE_NEWCGROUP),
        ("mnt", libc::CLONE_NEWNS),
    ] {
        let theirs = format!("/proc/{}/ns/{name}", stored.pid);
        let ours = format!("/proc/self/ns/{name}");
        let (Ok(their_meta), Ok(our_meta)) = (std::fs::metadata(&theirs), std::fs::metadata(&ours))
        else {
            continue;
        };
        if their_meta.ino() == our_meta.ino() {
            continue;
        }
        let file = File::open(&theirs).map_err(|e| format!("opening {theirs}: {e}"))?;
        joined.push((name, flag, file));
    }
    for (name, flag, file) in &joined {
        // SAFETY: setns with a namespace descriptor we own.
        if unsafe { libc::setns(file.as_raw_fd(), *flag) } != 0 {
            return Err(format!(
                "joining the container's {name} namespace: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    drop(joined);

    let program = options.args.first().ok_or("exec needs a command")?;
    let path = init::find_executable(program, &env)?;
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| "NUL in path")?;
    let argv_c = init::to_cstrings(&options.args)?;
    let envp_c = init::to_cstrings(&env)?;
    let argv = init::pointer_array(&argv_c);
    let envp = init::pointer_array(&envp_c);

    // SAFETY: this helper is single-threaded, so the child may run ordinary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        let fail = |what: String| -> ! {
            eprintln!("skiff runtime exec: {what}");
            // SAFETY: leaving the child.
            unsafe { libc::_exit(126) }
        };
        // SAFETY: plain system calls in the single-threaded child.
        unsafe {
            if options.tty {
                // The terminal may already control the caller's session (a shell's terminal
                // passed through): take it over (force=1; we still hold CAP_SYS_ADMIN here).
                libc::setsid();
                if libc::ioctl(0, libc::TIOCSCTTY, 1) != 0 {
                    fail(format!(
                        "making stdin the controlling terminal: {}",
                        std::io::Error::last_os_error()
                    ));
                }
            }
        }
        if let Err(e) = std::env::set_current_dir(&cwd) {
            fail(format!("changing to {}: {e}", cwd.display()));
        }
        crate::reexec::set_huge_pages(true);
        if !no_new_privileges && let Some(s) = &seccomp {
            s.apply().unwrap_or_else(|e| fail(format!("seccomp: {e}")));
        }
        rlimits
            .apply()
            .unwrap_or_else(|e| fail(format!("rlimits: {e}")));
        init::set_identity(uid, gid, &groups, true).unwrap_or_else(|e| fail(e));
        if let Some(c) = &capabilities {
            c.apply()
                .unwrap_or_else(|e| fail(format!("capabilities: {e}")));
        }
        if no_new_privileges {
            crate::security::set_no_new_privileges()
                .unwrap_or_else(|e| fail(format!("no_new_privs: {e}")));
            if let Some(s) = &seccomp {
                s.apply().unwrap_or_else(|e| fail(format!("seccomp: {e}")));
            }
        }
        // SAFETY: null-terminated arrays of valid C strings.
        unsafe { libc::execve(c_path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        fail(format!(
            "exec {program}: {}",
            std::io::Error::last_os_error()
        ));
    }
    // Pass signals the caller sends us on to the process, as if it were the caller's child.
    forward_signals_to(pid);
    let status = super::monitor::wait_pid(pid);
    Ok(if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    })
}

static FORWARD_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward(signal: libc::c_int) {
    let pid = FORWARD_PID.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, signal) };
    }
}

fn forward_signals_to(pid: i32) {
    FORWARD_PID.store(pid, std::sync::atomic::Ordering::Relaxed);
    for signal in [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGWINCH,
    ] {
        // SAFETY: installing an async-signal-safe handler.
        unsafe { libc::signal(signal, forward as *const () as libc::sighandler_t) };
    }
}
