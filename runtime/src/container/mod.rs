//! The container lifecycle — create, start, wait, kill, delete, state, list, exec — over OCI
//! runtime specs.
//!
//! Every container has a *monitor*: a small process of our own, detached from whoever asked for the
//! container (double-forked into its own session), that clones the container's init into its new
//! namespaces, collects its stdout and stderr into a CRI log, reaps it and writes its exit status.
//! Because monitors outlive their callers and everything else lives under the state directory, a
//! restarted caller finds its containers again with [`Runtime::list`].
//!
//! ```text
//! caller ──spawn──▶ monitor ──clone(CLONE_NEW*)──▶ init: rootfs, pivot_root, … , waits on exec.fifo
//!   ◀── "ok <pid>" ──┘          ▲                          │
//! start: opens exec.fifo ───────┼──────────────────────────┘ execve(user's process)
//!                       waitpid, exit.json
//! ```

mod exec;
mod init;
mod monitor;
pub mod rootfs;
mod spawner;
mod state;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use oci_spec::runtime::Spec;

use crate::cgroups::{Cgroup, CgroupError, Hierarchy};
use crate::image::{Image, ImageError, ImageStore};

pub use exec::{ExecOptions, ExecProcess};
pub use state::{ContainerState, ContainerStatus, ExitStatus, StoredState};

pub(crate) use exec::run_exec_process;
pub(crate) use monitor::{
    MONITOR_SYNC_ON_STDOUT, run_monitor_process, run_monitor_process_sync_on_stdout,
};
pub(crate) use spawner::{SPAWNER_ROLE, run_spawner};

/// Where the runtime keeps its state and data, and how it re-executes itself.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Container state (`state.json`, fifos, exit files): tmpfs, gone at reboot like the containers.
    pub state_dir: PathBuf,
    /// Images, layers and containers' writable layers: on disk.
    pub data_dir: PathBuf,
    /// The binary that serves the runtime's own processes (monitor, exec, pause): this one.
    pub helper_binary: PathBuf,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            state_dir: PathBuf::from("/run/skiff/runtime"),
            data_dir: PathBuf::from("/var/lib/skiff/runtime"),
            helper_binary: std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container \"{0}\" does not exist")]
    NotFound(String),
    #[error("container \"{0}\" already exists")]
    AlreadyExists(String),
    #[error(
        "invalid container id \"{0}\": use letters, digits, '_', '-' and '.', starting with a letter or digit"
    )]
    InvalidId(String),
    #[error("container \"{id}\" is {status}: cannot {operation}")]
    InvalidState {
        id: String,
        status: ContainerStatus,
        operation: &'static str,
    },
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    #[error("{context} {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("starting container \"{id}\": {message}")]
    Start { id: String, message: String },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{0}")]
    Sys(String),
}

impl RuntimeError {
    pub(crate) fn io(path: &Path, context: &'static str, source: std::io::Error) -> RuntimeError {
        RuntimeError::Io {
            context,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Where the container's stdin, stdout and stderr go.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum StdioConfig {
    /// /dev/null for all three.
    #[default]
    Null,
    /// The creating process's own stdin, stdout and stderr (as `runc create` does).
    Inherit,
    /// stdout and stderr into a CRI-format log file with a size cap and rotation; stdin /dev/null.
    /// With `process.terminal`, the terminal's output is logged as stdout.
    Log {
        path: PathBuf,
        max_size_bytes: u64,
        max_files: usize,
    },
}

/// Everything `create` needs besides the id.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub spec: Spec,
    /// Directory a relative `root.path` is resolved against (the OCI bundle).
    pub bundle: PathBuf,
    pub stdio: StdioConfig,
    /// A directory the runtime made for this container (see [`Runtime::prepare_image_rootfs`]),
    /// unmounted and removed on delete.
    pub managed_dir: Option<PathBuf>,
    pub image_layers: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl CreateOptions {
    pub fn new(spec: Spec, bundle: impl Into<PathBuf>) -> CreateOptions {
        CreateOptions {
            spec,
            bundle: bundle.into(),
            stdio: StdioConfig::Null,
            managed_dir: None,
            image_layers: Vec::new(),
            labels: BTreeMap::new(),
        }
    }
}

/// The runtime: a state directory of containers, and an image store.
pub struct Runtime {
    config: RuntimeConfig,
    hierarchy: std::sync::OnceLock<Hierarchy>,
    images: std::sync::OnceLock<ImageStore>,
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Runtime {
        Runtime {
            config,
            hierarchy: std::sync::OnceLock::new(),
            images: std::sync::OnceLock::new(),
        }
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// The image store under `data_dir/images`, opened on first use.
    pub fn images(&self) -> Result<&ImageStore, RuntimeError> {
        if let Some(store) = self.images.get() {
            return Ok(store);
        }
        let store = ImageStore::open(&self.config.data_dir.join("images"))?;
        Ok(self.images.get_or_init(|| store))
    }

    pub(crate) fn hierarchy(&self) -> Result<&Hierarchy, RuntimeError> {
        if let Some(h) = self.hierarchy.get() {
            return Ok(h);
        }
        let h = Hierarchy::shared()?;
        Ok(self.hierarchy.get_or_init(|| h))
    }

    fn container_dir(&self, id: &str) -> PathBuf {
        self.config.state_dir.join(id)
    }

    /// Mounts a writable root filesystem made of `image`'s layers for container `id`, under
    /// `data_dir/containers/<id>`. Pass the result's fields to [`CreateOptions`].
    pub fn prepare_image_rootfs(
        &self,
        id: &str,
        image: &Image,
    ) -> Result<PreparedRootfs, RuntimeError> {
        state::validate_id(id)?;
        let dir = self.config.data_dir.join("containers").join(id);
        let rootfs = self.images()?.create_rootfs(image, &dir)?;
        Ok(PreparedRootfs {
            rootfs,
            managed_dir: dir,
            image_layers: image.layers.clone(),
        })
    }

    /// Sets the container up — namespaces, cgroup, root filesystem — and leaves its init waiting
    /// for [`Runtime::start`]. Returns once the init is ready (or failed).
    pub fn create(&self, id: &str, options: CreateOptions) -> Result<ContainerState, RuntimeError> {
        self.create_inner(id, options, false)
    }

    /// Creates and starts in one step (no exec fifo round trip).
    pub fn create_and_start(
        &self,
        id: &str,
        options: CreateOptions,
    ) -> Result<ContainerState, RuntimeError> {
        self.create_inner(id, options, true)
    }

    fn create_inner(
        &self,
        id: &str,
        options: CreateOptions,
        start_immediately: bool,
    ) -> Result<ContainerState, RuntimeError> {
        state::validate_id(id)?;
        let process = options
            .spec
            .process()
            .as_ref()
            .ok_or_else(|| RuntimeError::InvalidSpec("process is missing".into()))?;
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return Err(RuntimeError::InvalidSpec("process.args is empty".into()));
        }
        let root = options
            .spec
            .root()
            .as_ref()
            .ok_or_else(|| RuntimeError::InvalidSpec("root is missing".into()))?;
        let rootfs = if root.path().is_absolute() {
            root.path().clone()
        } else {
            options.bundle.join(root.path())
        };
        if !rootfs.is_dir() {
            return Err(RuntimeError::InvalidSpec(format!(
                "root.path {} is not a directory",
                rootfs.display()
            )));
        }
        std::fs::create_dir_all(&self.config.state_dir)
            .map_err(|e| RuntimeError::io(&self.config.state_dir, "creating", e))?;
        let dir = self.container_dir(id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::AlreadyExists(id.to_string()));
            }
            Err(e) => return Err(RuntimeError::io(&dir, "creating", e)),
        }
        let result = self.create_in_dir(id, &dir, rootfs, options, start_immediately);
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    fn create_in_dir(
        &self,
        id: &str,
        dir: &Path,
        rootfs: PathBuf,
        options: CreateOptions,
        start_immediately: bool,
    ) -> Result<ContainerState, RuntimeError> {
        let cgroup_path = cgroup_path_for(&options.spec, id);
        let log_path = match &options.stdio {
            StdioConfig::Log { path, .. } => Some(path.clone()),
            _ => None,
        };
        let annotations = options
            .spec
            .annotations()
            .clone()
            .map(|a| a.into_iter().collect())
            .unwrap_or_default();
        let stored = StoredState {
            id: id.to_string(),
            bundle: options.bundle.clone(),
            rootfs,
            cgroup_path,
            created: chrono::Utc::now(),
            pid: 0,
            pid_start_time: 0,
            monitor_pid: 0,
            monitor_start_time: 0,
            log_path,
            managed_dir: options.managed_dir.clone(),
            image_layers: options.image_layers.clone(),
            annotations,
            labels: options.labels.clone(),
        };
        let config_path = dir.join(state::CONFIG_FILE);
        let spec_bytes = serde_json::to_vec(&options.spec)
            .map_err(|e| RuntimeError::InvalidSpec(e.to_string()))?;
        state::write_atomic(&config_path, &spec_bytes)
            .map_err(|e| RuntimeError::io(&config_path, "writing", e))?;
        state::write_stored(dir, &stored)?;
        if !start_immediately {
            let fifo = dir.join(state::EXEC_FIFO);
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| RuntimeError::io(&fifo, "creating", e.into()))?;
        }
        let request = monitor::MonitorRequest {
            dir: dir.to_path_buf(),
            stdio: options.stdio,
        };
        let pid = monitor::spawn(self, &request)?;
        tracing::debug!(id, pid, "container created");
        state::current_state(dir)
    }

    /// Releases a created container's init to exec the user's process.
    pub fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let dir = self.existing_dir(id)?;
        let current = state::current_state(&dir)?;
        if current.status != ContainerStatus::Created || current.stored.pid == 0 {
            return Err(RuntimeError::InvalidState {
                id: id.to_string(),
                status: current.status,
                operation: "start",
            });
        }
        let fifo_path = dir.join(state::EXEC_FIFO);
        // Blocks until the init has the fifo open for writing; the monitor opens it too when the
        // init dies first, so this never waits for a process that is gone.
        let mut fifo = match File::open(&fifo_path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RuntimeError::InvalidState {
                    id: id.to_string(),
                    status: ContainerStatus::Stopped,
                    operation: "start",
                });
            }
            Err(e) => return Err(RuntimeError::io(&fifo_path, "opening", e)),
        };
        let mut byte = [0u8; 1];
        let n = fifo
            .read(&mut byte)
            .map_err(|e| RuntimeError::io(&fifo_path, "reading", e))?;
        let _ = std::fs::remove_file(&fifo_path);
        if n == 0 {
            return Err(RuntimeError::Start {
                id: id.to_string(),
                message: "the container's process exited before it was started".into(),
            });
        }
        Ok(())
    }

    pub fn state(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        let dir = self.existing_dir(id)?;
        state::current_state(&dir)
    }

    /// Every container under the state directory, by id.
    pub fn list(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        self.list_ids(|_| true)
    }

    /// The containers whose ids `keep` accepts, by id; only their state is read (a caller that
    /// names its containers with a common prefix reads just its own).
    pub fn list_ids(
        &self,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<ContainerState>, RuntimeError> {
        let entries = match std::fs::read_dir(&self.config.state_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RuntimeError::io(&self.config.state_dir, "listing", e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            if !entry.file_name().to_str().is_some_and(&keep) {
                continue;
            }
            let path = entry.path();
            if !path.join(state::STATE_FILE).exists() {
                continue;
            }
            match state::current_state(&path) {
                Ok(s) => out.push(s),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "skipping container"),
            }
        }
        out.sort_by(|a, b| a.stored.id.cmp(&b.stored.id));
        Ok(out)
    }

    /// Sends `signal` to the container's init, or with `all` to every process in its cgroup.
    pub fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<(), RuntimeError> {
        let dir = self.existing_dir(id)?;
        let current = state::current_state(&dir)?;
        if current.status == ContainerStatus::Stopped {
            return Err(RuntimeError::InvalidState {
                id: id.to_string(),
                status: current.status,
                operation: "kill",
            });
        }
        if all {
            let cgroup = Cgroup::new(self.hierarchy()?, &current.stored.cgroup_path);
            cgroup.kill_all(signal)?;
            return Ok(());
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(current.stored.pid), signal)
            .map_err(|e| RuntimeError::Sys(format!("signalling pid {}: {e}", current.stored.pid)))
    }

    /// Blocks until the container's process has exited and its monitor has recorded how.
    pub fn wait(&self, id: &str) -> Result<ExitStatus, RuntimeError> {
        self.wait_timeout(id, None)
    }

    pub fn wait_timeout(
        &self,
        id: &str,
        timeout: Option<Duration>,
    ) -> Result<ExitStatus, RuntimeError> {
        let dir = self.existing_dir(id)?;
        let stored = state::read_stored(&dir)?;
        if let Some(exit) = state::read_exit(&dir) {
            return Ok(exit);
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        if let Some(pidfd) = pidfd_open(stored.monitor_pid)
            && state::process_alive(stored.monitor_pid, stored.monitor_start_time)
        {
            let ms = deadline.map_or(-1, |d| {
                d.saturating_duration_since(Instant::now()).as_millis() as i32
            });
            poll_readable(&pidfd, ms);
        }
        // The monitor writes exit.json before it exits; if it died without doing so (killed),
        // fall back to watching the init process itself.
        loop {
            if let Some(exit) = state::read_exit(&dir) {
                return Ok(exit);
            }
            let monitor_alive = state::process_alive(stored.monitor_pid, stored.monitor_start_time);
            let init_alive = state::process_alive(stored.pid, stored.pid_start_time);
            if !monitor_alive && !init_alive {
                return Err(RuntimeError::Sys(format!(
                    "container \"{id}\" stopped but its monitor recorded no exit status"
                )));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RuntimeError::Timeout(timeout.unwrap_or_default()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits without blocking a thread of the async runtime.
    pub async fn wait_async(&self, id: &str) -> Result<ExitStatus, RuntimeError> {
        let dir = self.existing_dir(id)?;
        let stored = state::read_stored(&dir)?;
        if let Some(exit) = state::read_exit(&dir) {
            return Ok(exit);
        }
        if let Some(pidfd) = pidfd_open(stored.monitor_pid)
            && state::process_alive(stored.monitor_pid, stored.monitor_start_time)
        {
            // SAFETY: the AsyncFd owns the pidfd, so it stays open for as long as it is registered.
            let fd = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    pidfd,
                    tokio::io::Interest::READABLE,
                )
            }
            .map_err(|e| RuntimeError::Sys(format!("watching the monitor: {e}")))?;
            let _ = fd.readable().await;
        }
        self.wait_timeout(id, Some(Duration::from_secs(5)))
    }

    /// Removes a stopped (or, with `force`, any) container: its processes, cgroup, managed root
    /// filesystem and state.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let dir = self.existing_dir(id)?;
        let current = state::current_state(&dir)?;
        let cgroup = Cgroup::new(self.hierarchy()?, &current.stored.cgroup_path);
        match current.status {
            ContainerStatus::Stopped => {}
            ContainerStatus::Created => {
                // Never started: nothing of the user's runs yet, so delete as runc does.
                kill_quietly(current.stored.pid, Signal::SIGKILL);
                cgroup.kill_all(Signal::SIGKILL)?;
            }
            ContainerStatus::Running if force => {
                cgroup.kill_all(Signal::SIGKILL)?;
                kill_quietly(current.stored.pid, Signal::SIGKILL);
            }
            ContainerStatus::Running => {
                return Err(RuntimeError::InvalidState {
                    id: id.to_string(),
                    status: current.status,
                    operation: "delete (use force)",
                });
            }
        }
        if current.exit.is_none() {
            // Let the monitor reap the init and record its exit before the state goes — also when
            // the process has just exited and the monitor is still writing exit.json.
            let _ = self.wait_timeout(id, Some(Duration::from_secs(10)));
        }
        cgroup.destroy()?;
        if let Some(managed) = &current.stored.managed_dir {
            crate::image::remove_rootfs(managed)?;
        }
        std::fs::remove_dir_all(&dir).map_err(|e| RuntimeError::io(&dir, "removing", e))?;
        Ok(())
    }

    /// Resource usage of a container's cgroup.
    pub fn stats(&self, id: &str) -> Result<crate::cgroups::CgroupStats, RuntimeError> {
        let dir = self.existing_dir(id)?;
        let stored = state::read_stored(&dir)?;
        Ok(Cgroup::new(self.hierarchy()?, &stored.cgroup_path).stats())
    }

    /// Updates a running container's cgroup limits in place.
    pub fn update_resources(
        &self,
        id: &str,
        resources: &oci_spec::runtime::LinuxResources,
    ) -> Result<(), RuntimeError> {
        let dir = self.existing_dir(id)?;
        let stored = state::read_stored(&dir)?;
        Ok(Cgroup::new(self.hierarchy()?, &stored.cgroup_path).apply(resources)?)
    }

    /// The layers that containers' root filesystems are made of (for image pruning).
    pub fn layers_in_use(&self) -> Result<std::collections::HashSet<String>, RuntimeError> {
        Ok(self
            .list()?
            .into_iter()
            .flat_map(|c| c.stored.image_layers)
            .collect())
    }

    /// Runs another process inside a running container.
    pub fn exec(&self, id: &str, options: ExecOptions) -> Result<ExecProcess, RuntimeError> {
        let dir = self.existing_dir(id)?;
        let current = state::current_state(&dir)?;
        if current.status != ContainerStatus::Running {
            return Err(RuntimeError::InvalidState {
                id: id.to_string(),
                status: current.status,
                operation: "exec",
            });
        }
        exec::spawn(self, &dir, options)
    }

    fn existing_dir(&self, id: &str) -> Result<PathBuf, RuntimeError> {
        state::validate_id(id)?;
        let dir = self.container_dir(id);
        if dir.join(state::STATE_FILE).exists() {
            Ok(dir)
        } else {
            Err(RuntimeError::NotFound(id.to_string()))
        }
    }
}

/// The root filesystem [`Runtime::prepare_image_rootfs`] made.
#[derive(Debug, Clone)]
pub struct PreparedRootfs {
    pub rootfs: PathBuf,
    pub managed_dir: PathBuf,
    pub image_layers: Vec<String>,
}

/// `linux.cgroupsPath` when given (absolute paths are taken relative to the hierarchy roots, as
/// runc's cgroupfs driver does), else `skiff/<id>`.
fn cgroup_path_for(spec: &Spec, id: &str) -> String {
    spec.linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().trim_start_matches('/').to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| format!("skiff/{id}"))
}

/// `caps` with the ambient set reduced to what the kernel lets a process raise: capabilities that
/// are also permitted and inheritable. runc ignores the others, and the config.json `runc spec`
/// writes asks for ambient capabilities without inheritable ones, so failing on them would refuse
/// ordinary runc bundles.
pub(crate) fn raisable_capabilities(
    caps: &oci_spec::runtime::LinuxCapabilities,
) -> oci_spec::runtime::LinuxCapabilities {
    let mut caps = caps.clone();
    if let Some(ambient) = caps.ambient().clone() {
        let allowed = |c: &oci_spec::runtime::Capability| {
            caps.permitted().as_ref().is_some_and(|p| p.contains(c))
                && caps.inheritable().as_ref().is_some_and(|i| i.contains(c))
        };
        let keep = ambient.into_iter().filter(|c| allowed(c)).collect();
        caps.set_ambient(Some(keep));
    }
    caps
}

fn kill_quietly(pid: i32, signal: Signal) {
    if pid > 0 {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
    }
}

pub(crate) fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    if pid <= 0 {
        return None;
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        None
    } else {
        // SAFETY: the kernel just gave us this descriptor; nothing else owns it.
        Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }
}

/// Waits until `fd` is readable or `timeout_ms` passes (-1: no timeout).
pub(crate) fn poll_readable(fd: &OwnedFd, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if n >= 0 {
            return n > 0;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}
