//! What the runtime remembers about a container, on disk under the state directory, so that any
//! process (a restarted agent, another CLI invocation) can find it again.
//!
//! Layout of `<state_dir>/<id>/`:
//! - `state.json`: [`StoredState`], written by whoever creates the container, completed with the
//!   pids by the monitor once the container's init is waiting to be started.
//! - `config.json`: the OCI spec the container was created from (exec reuses its process settings).
//! - `exec.fifo`: present between create and start; `start` opens it to release the init.
//! - `exit.json`: [`ExitStatus`], written by the monitor when the container's init has been reaped.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::RuntimeError;

pub(crate) const STATE_FILE: &str = "state.json";
pub(crate) const CONFIG_FILE: &str = "config.json";
pub(crate) const EXEC_FIFO: &str = "exec.fifo";
pub(crate) const EXIT_FILE: &str = "exit.json";

/// The lifecycle states of the OCI runtime specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    /// Set up and waiting for `start`.
    Created,
    /// The user's process is running.
    Running,
    /// The process has exited (or was never seen running by this runtime).
    Stopped,
}

impl std::fmt::Display for ContainerStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            ContainerStatus::Created => "created",
            ContainerStatus::Running => "running",
            ContainerStatus::Stopped => "stopped",
        })
    }
}

/// How a container's init process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExitStatus {
    /// The exit code as a shell reports it: the process's code, or 128 + the signal number.
    pub code: i32,
    /// The signal that killed the process, if one did.
    pub signal: Option<i32>,
    /// The cgroup's OOM killer killed the process.
    pub oom_killed: bool,
    pub finished_at: DateTime<Utc>,
}

impl ExitStatus {
    pub(crate) fn from_wait_status(status: i32, oom_kills: u64) -> ExitStatus {
        let (code, signal) = if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            (128 + sig, Some(sig))
        } else {
            (libc::WEXITSTATUS(status), None)
        };
        ExitStatus {
            code,
            signal,
            oom_killed: signal == Some(libc::SIGKILL) && oom_kills > 0,
            finished_at: Utc::now(),
        }
    }

    /// The reason Kubernetes would give: `OOMKilled`, `Completed` or `Error`.
    pub fn reason(&self) -> &'static str {
        if self.oom_killed {
            "OOMKilled"
        } else if self.code == 0 {
            "Completed"
        } else {
            "Error"
        }
    }
}

/// What `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredState {
    pub id: String,
    pub bundle: PathBuf,
    /// The root filesystem as seen from the host.
    pub rootfs: PathBuf,
    /// Cgroup path relative to the hierarchy roots.
    pub cgroup_path: String,
    pub created: DateTime<Utc>,
    /// The container's init, as seen from the host's PID namespace (0 until the monitor reports).
    #[serde(default)]
    pub pid: i32,
    /// `/proc/<pid>/stat` start time, to tell our process from a later one with a reused pid.
    #[serde(default)]
    pub pid_start_time: u64,
    #[serde(default)]
    pub monitor_pid: i32,
    #[serde(default)]
    pub monitor_start_time: u64,
    /// Where stdout and stderr go in the CRI log format, when they are logged.
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    /// A directory this runtime made for the container (an image rootfs), removed on delete.
    #[serde(default)]
    pub managed_dir: Option<PathBuf>,
    /// The image layers the rootfs is made of (kept by `prune` while the container exists).
    #[serde(default)]
    pub image_layers: Vec<String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A container as the runtime sees it now.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    #[serde(flatten)]
    pub stored: StoredState,
    pub status: ContainerStatus,
    pub exit: Option<ExitStatus>,
}

impl ContainerState {
    pub fn id(&self) -> &str {
        &self.stored.id
    }
    pub fn pid(&self) -> i32 {
        self.stored.pid
    }

    /// The state as `runc state` prints it.
    pub fn oci_state(&self) -> serde_json::Value {
        serde_json::json!({
            "ociVersion": "1.0.2",
            "id": self.stored.id,
            "pid": if self.status == ContainerStatus::Stopped { 0 } else { self.stored.pid },
            "status": self.status,
            "bundle": self.stored.bundle,
            "rootfs": self.stored.rootfs,
            "created": self.stored.created.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            "annotations": self.stored.annotations,
            "owner": "",
        })
    }
}

/// Container ids name directories and cgroups: keep them to a safe alphabet.
pub(crate) fn validate_id(id: &str) -> Result<(), RuntimeError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .enumerate()
            .all(|(i, b)| b.is_ascii_alphanumeric() || (i > 0 && matches!(b, b'_' | b'-' | b'.')));
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::InvalidId(id.to_string()))
    }
}

/// Writes `contents` to `path` so that readers see the old file or the new one, never a part.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(contents)?;
    std::fs::rename(&tmp, path)
}

/// Field 22 of `/proc/<pid>/stat`: the process's start time in clock ticks since boot.
pub(crate) fn process_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: skip past its last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// The process exists, is not a zombie, and is the one we started (same start time).
pub(crate) fn process_alive(pid: i32, start_time: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = stat.rfind(')') else {
        return false;
    };
    let mut fields = stat[close + 2..].split(' ');
    let state = fields.next().unwrap_or("");
    if state == "Z" || state == "X" {
        return false;
    }
    let started: Option<u64> = fields.nth(18).and_then(|f| f.parse().ok());
    start_time == 0 || started == Some(start_time)
}

pub(crate) fn read_stored(dir: &Path) -> Result<StoredState, RuntimeError> {
    let path = dir.join(STATE_FILE);
    let bytes = std::fs::read(&path).map_err(|e| RuntimeError::io(&path, "reading", e))?;
    serde_json::from_slice(&bytes).map_err(|e| RuntimeError::Corrupt {
        path,
        detail: e.to_string(),
    })
}

pub(crate) fn write_stored(dir: &Path, state: &StoredState) -> Result<(), RuntimeError> {
    let path = dir.join(STATE_FILE);
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| RuntimeError::Corrupt {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    write_atomic(&path, &bytes).map_err(|e| RuntimeError::io(&path, "writing", e))
}

pub(crate) fn read_exit(dir: &Path) -> Option<ExitStatus> {
    let bytes = std::fs::read(dir.join(EXIT_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Computes the current status from what is on disk and in /proc.
pub(crate) fn current_state(dir: &Path) -> Result<ContainerState, RuntimeError> {
    let stored = read_stored(dir)?;
    let exit = read_exit(dir);
    let status = if exit.is_some() {
        ContainerStatus::Stopped
    } else if process_alive(stored.pid, stored.pid_start_time) {
        if dir.join(EXEC_FIFO).exists() {
            ContainerStatus::Created
        } else {
            ContainerStatus::Running
        }
    } else if stored.pid == 0 && process_alive(stored.monitor_pid, stored.monitor_start_time) {
        // Still being set up by its monitor.
        ContainerStatus::Created
    } else {
        ContainerStatus::Stopped
    };
    Ok(ContainerState {
        stored,
        status,
        exit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "web-1", "pod_x.y", "0abc"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "../x", "a/b", "a b", ".hidden"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exit_status_from_wait_status() {
        let exited = ExitStatus::from_wait_status(3 << 8, 0);
        assert_eq!(
            (exited.code, exited.signal, exited.reason()),
            (3, None, "Error")
        );
        let killed = ExitStatus::from_wait_status(libc::SIGKILL, 1);
        assert_eq!(killed.code, 137);
        assert!(killed.oom_killed);
        assert_eq!(killed.reason(), "OOMKilled");
        let termed = ExitStatus::from_wait_status(libc::SIGTERM, 1);
        assert!(!termed.oom_killed);
        assert_eq!(ExitStatus::from_wait_status(0, 0).reason(), "Completed");
    }

    #[test]
    fn own_start_time_is_readable() {
        let pid = std::process::id() as i32;
        let start = process_start_time(pid).expect("start time");
        assert!(process_alive(pid, start));
        assert!(!process_alive(pid, start + 1));
    }
}
