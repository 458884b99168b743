//! The one-node cluster of the node agent's whole-system tests and the pod startup
//! benchmark: the calling thread's network namespace is the node (see
//! `nodeagent/tests/support/net.rs`), its address on a bridge `node0`; a real `skiff server`
//! (embedded store, scheduler and controllers in process) and `skiff agent` with its own
//! directories and cgroup root. On drop the agent is killed by PID, `skiff agent --cleanup`
//! removes its pods' containers and network, and the cgroup root is removed.
//!
//! Included with `#[path]` next to `net` (`nodeagent/tests/support/net.rs`) and `support`
//! (`tests/support/mod.rs`) as crate-level modules of those names. Root only.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use skiff_runtime::container::{Runtime, RuntimeConfig};

use crate::net;
use crate::support::{Backend, Server};

pub const SKIFF: &str = env!("CARGO_BIN_EXE_skiff");
pub const NODE: &str = "agent-node";
pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 200, 2);

pub static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A one-node cluster in the calling thread's network namespace.
pub struct Cluster {
    pub agent: Option<Child>,
    pub dir: tempfile::TempDir,
    /// The runtime's state, on tmpfs as the agent's default (/run/skiff/runtime) is on a
    /// standard Debian, where /run is a tmpfs.
    pub state: tempfile::TempDir,
    /// Whether `state` has a tmpfs of its own, mounted because /run here is not one (a
    /// machine without systemd): unmounted on drop.
    pub state_tmpfs: bool,
    pub cgroup_root: String,
    pub port: u16,
    pub agent_flags: Vec<String>,
    // Dropped last: the agent's cleanup needs nothing from it, but the pods' status does.
    pub server: Server,
}

pub fn busybox_layout() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox-oci");
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fixtures/busybox-image.sh");
        let status = Command::new("bash")
            .arg(script)
            .arg(&out)
            .status()
            .expect("run busybox-image.sh");
        assert!(status.success(), "busybox-image.sh failed");
        out
    })
    .clone()
}

impl Cluster {
    /// Must run inside `net::in_netns`.
    pub fn start() -> Cluster {
        Self::start_with(&[])
    }

    /// [`Cluster::start`] with extra `skiff agent` flags.
    pub fn start_with(agent_flags: &[&str]) -> Cluster {
        net::node_bridge("node0", NODE_IP);
        let server = Server::start(Backend::Embedded);
        let dir = tempfile::Builder::new()
            .prefix("skiff-agent-test-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let state = tempfile::Builder::new()
            .prefix("skiff-agent-test-state-")
            .tempdir_in("/run")
            .expect("tempdir for the runtime's state");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let cgroup_root = format!("skiff-test-agent-{}-{n}", std::process::id());
        let runtime = Runtime::new(RuntimeConfig {
            state_dir: state.path().to_path_buf(),
            data_dir: dir.path().join("data"),
            helper_binary: PathBuf::from(SKIFF),
        });
        runtime
            .images()
            .expect("image store")
            .import(&busybox_layout())
            .expect("import busybox");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut cluster = Cluster {
            agent: None,
            dir,
            state,
            state_tmpfs: false,
            cgroup_root,
            port,
            agent_flags: agent_flags.iter().map(|s| s.to_string()).collect(),
            server,
        };
        cluster.state_tmpfs = mount_tmpfs_unless_on_one(cluster.state.path());
        cluster.start_agent();
        cluster
    }

    pub fn agent_args(&self) -> Vec<String> {
        let d = self.dir.path();
        vec![
            "agent".into(),
            "--node-name".into(),
            NODE.into(),
            "--root-dir".into(),
            d.join("agent").display().to_string(),
            "--runtime-state-dir".into(),
            self.state.path().display().to_string(),
            "--runtime-data-dir".into(),
            d.join("data").display().to_string(),
            "--cgroup-root".into(),
            self.cgroup_root.clone(),
            "--port".into(),
            self.port.to_string(),
            // The host's disk is not the test's business (a full disk would taint the node).
            "--eviction-hard=nodefs.available<0%".into(),
        ]
    }

    pub fn start_agent(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("agent log");
        let child = Command::new(SKIFF)
            .args(self.agent_args())
            .arg("--kubeconfig")
            .arg(&self.server.kubeconfig)
            .arg("--node-ip")
            .arg(NODE_IP.to_string())
            .args(&self.agent_flags)
            .env("SKIFF_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn skiff agent");
        self.agent = Some(child);
    }

    /// SIGKILL: the agent gets no chance to tidy up.
    pub fn kill_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn runtime(&self) -> Runtime {
        Runtime::new(RuntimeConfig {
            state_dir: self.state.path().to_path_buf(),
            data_dir: self.dir.path().join("data"),
            helper_binary: PathBuf::from(SKIFF),
        })
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// The stdout/stderr lines of one attempt of a container, from its CRI log file.
    pub fn log(&self, pod: &Pod, container: &str, attempt: u32) -> Vec<String> {
        let path = self.dir.path().join("agent/logs").join(format!(
            "{}_{}_{}/{container}/{attempt}.log",
            pod.namespace().unwrap_or_default(),
            pod.name_any(),
            pod.uid().unwrap_or_default()
        ));
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.splitn(4, ' ').nth(3).map(str::to_string))
            .collect()
    }

    pub fn pod_dir(&self, pod: &Pod) -> PathBuf {
        self.dir
            .path()
            .join("agent/pods")
            .join(pod.uid().unwrap_or_default())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_agent();
        let status = Command::new(SKIFF)
            .args(self.agent_args())
            .arg("--cleanup")
            .env("SKIFF_LOG", "warn")
            .stdin(Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("skiff agent --cleanup failed");
        }
        if self.state_tmpfs
            && let Err(e) = nix::mount::umount2(self.state.path(), nix::mount::MntFlags::MNT_DETACH)
        {
            eprintln!("unmounting {}: {e}", self.state.path().display());
        }
        for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
            let Ok(entries) = std::fs::read_dir(root) else {
                continue;
            };
            let mut dirs: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path().join(&self.cgroup_root))
                .chain([Path::new(root).join(&self.cgroup_root)])
                .filter(|p| p.is_dir())
                .collect();
            dirs.sort();
            dirs.dedup();
            for d in dirs {
                remove_cgroup_tree(&d);
            }
        }
        if std::thread::panicking() {
            eprintln!("--- agent log ---\n{}", self.agent_log());
        }
    }
}

/// Mounts a tmpfs at `dir` unless it already is on one; returns whether it did. The runtime's
/// state is a few small files per container, rewritten at each step: on a disk file system
/// their inode churn would be measured as the runtime's cost, which on a standard install
/// (/run a tmpfs) it is not.
fn mount_tmpfs_unless_on_one(dir: &Path) -> bool {
    let on_tmpfs = nix::sys::statfs::statfs(dir)
        .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    if on_tmpfs {
        return false;
    }
    nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some("mode=0700,size=256m"),
    )
    .unwrap_or_else(|e| panic!("mounting a tmpfs at {}: {e}", dir.display()));
    true
}

pub fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}
