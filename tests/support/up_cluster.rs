//! A single-node cluster made by `skiff up`, for `tests/up.rs` and `benches/up.rs`: the calling
//! thread's network namespace is the machine (see `nodeagent/tests/support/net.rs`), its
//! address on a bridge `node0`; `skiff up` runs with a temporary data dir, runtime state dir
//! and cgroup root, and HOME pointing at a temporary home, so the kubeconfig it merges into is
//! the caller's. On drop, `skiff down --purge` stops the cluster process (by the pid in its
//! data dir) and removes what it made.
//!
//! Included with `#[path]` next to `net` (`nodeagent/tests/support/net.rs`) and `support`
//! (`tests/support/mod.rs`) as crate-level modules of those names. Root only.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_runtime::container::{Runtime, RuntimeConfig};

use crate::{net, support};

pub const SKIFF: &str = env!("CARGO_BIN_EXE_skiff");
pub const SKIFFCTL: &str = env!("CARGO_BIN_EXE_skiffctl");

/// Which command-line client drives the cluster: the real kubectl, or Skiff's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ctl {
    Kubectl,
    Skiffctl,
}

impl Ctl {
    fn program(self) -> PathBuf {
        match self {
            Ctl::Kubectl => support::kubectl_path(),
            Ctl::Skiffctl => PathBuf::from(SKIFFCTL),
        }
    }
}
/// The demo a new user applies: `manifests/demo.yaml`.
pub fn demo_manifest() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("manifests/demo.yaml")
        .display()
        .to_string()
}

pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 203, 2);
pub const NODE_NAME: &str = "up-node";
pub const NODE_PORT: u16 = 30080;

pub struct UpCluster {
    pub dir: tempfile::TempDir,
    pub cgroup_root: String,
}

impl UpCluster {
    /// Must run inside `net::in_netns`.
    /// Several may share the namespace (one at a time up): the bridge is made once.
    pub fn new() -> UpCluster {
        net::node_bridge("node0", NODE_IP);
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = tempfile::Builder::new()
            .prefix("skiff-up-test-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("home/.kube")).expect("home");
        UpCluster {
            dir,
            cgroup_root: format!("skiff-test-up-{}-{n}", std::process::id()),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub fn skiff(&self, args: &[&str]) -> Output {
        Command::new(SKIFF)
            .args(args)
            .env("HOME", self.home())
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .output()
            .expect("run skiff")
    }

    pub fn up(&self) -> Output {
        self.up_with(&[])
    }

    /// `skiff up` with extra flags.
    pub fn up_with(&self, extra: &[&str]) -> Output {
        let data = self.data_dir().display().to_string();
        let state = self.dir.path().join("state").display().to_string();
        self.skiff(
            &[
                "up",
                "--data-dir",
                &data,
                "--node-ip",
                &NODE_IP.to_string(),
                "--node-name",
                NODE_NAME,
                "--runtime-state-dir",
                &state,
                "--cgroup-root",
                &self.cgroup_root,
                // The host's disk is not the test's business (a full disk would taint the node).
                "--eviction-hard=nodefs.available<0%",
            ]
            .into_iter()
            .chain(extra.iter().copied())
            .collect::<Vec<_>>(),
        )
    }

    pub fn down(&self) -> Output {
        self.skiff(&["down", "--data-dir", &self.data_dir().display().to_string()])
    }

    pub fn runtime(&self) -> Runtime {
        Runtime::new(RuntimeConfig {
            state_dir: self.dir.path().join("state"),
            data_dir: self.data_dir().join("runtime"),
            helper_binary: PathBuf::from(SKIFF),
        })
    }

    /// After `skiff down` (or a failed `skiff up`): no interface but the node's, no SKIFF
    /// chain, no route the agent made, no mount under the cluster's dirs, no cgroup.
    pub fn assert_nothing_left(&self) {
        let left: Vec<String> = links()
            .into_iter()
            .filter(|l| l != "lo" && l != "node0")
            .collect();
        assert!(left.is_empty(), "interfaces left: {left:?}");
        assert_eq!(net::skiff_chains(), Vec::<String>::new());
        let routes = net::sh(&["ip", "route", "show", "proto", "83"]);
        assert!(routes.trim().is_empty(), "routes left: {routes}");
        assert_eq!(mounts_under(self.dir.path()), Vec::<String>::new());
        assert_eq!(cgroups_named(&self.cgroup_root), Vec::<PathBuf>::new());
    }

    pub fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.data_dir().join("skiff.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// A client as the user would run it: with the kubeconfig `skiff up` merged into
    /// `~/.kube`.
    pub fn ctl(&self, ctl: Ctl, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(ctl.program())
            .args(args)
            .env("HOME", self.home())
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {ctl:?}: {e}"));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn ctl_ok(&self, ctl: Ctl, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.ctl(ctl, args);
        assert!(ok, "{ctl:?} {args:?} failed:\n{stdout}{stderr}");
        stdout
    }

    pub fn ctl_json(&self, ctl: Ctl, args: &[&str]) -> Value {
        let mut full = args.to_vec();
        full.extend(["-o", "json"]);
        serde_json::from_str(&self.ctl_ok(ctl, &full))
            .unwrap_or_else(|e| panic!("{ctl:?} {args:?} -o json: {e}"))
    }

    pub fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        self.ctl(Ctl::Kubectl, args)
    }

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        self.ctl_ok(Ctl::Kubectl, args)
    }

    pub fn kubectl_json(&self, args: &[&str]) -> Value {
        self.ctl_json(Ctl::Kubectl, args)
    }

    /// The demo's web pods that are Ready (and not terminating), as `ctl` lists them.
    pub fn ready_web_pods(&self, ctl: Ctl) -> Vec<Value> {
        self.ctl_json(ctl, &["-n", "demo", "get", "pods", "-l", "app=web"])["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .filter(|p| {
                p["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
            .collect()
    }

    /// Containers of pods the runtime still has.
    pub fn pod_containers(&self) -> Vec<String> {
        self.runtime()
            .list()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| {
                c.stored
                    .labels
                    .contains_key(skiff_nodeagent::naming::LABEL_POD_UID)
            })
            .map(|c| c.id().to_string())
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("skiff.log")).unwrap_or_default()
    }
}

impl Drop for UpCluster {
    fn drop(&mut self) {
        let log = self.log();
        let data = self.data_dir().display().to_string();
        let out = self.skiff(&["down", "--purge", "--data-dir", &data]);
        if !out.status.success() {
            eprintln!(
                "skiff down --purge failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if std::thread::panicking() {
            let tail: Vec<&str> = log.lines().rev().take(80).collect();
            eprintln!(
                "--- skiff.log (last 80 lines) ---\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}

pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether `pid` runs (a zombie waiting for init to reap it does not).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

pub fn links() -> Vec<String> {
    net::sh(&["ip", "-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect()
}

pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&dir)))
        .map(str::to_string)
        .collect()
}

pub fn cgroups_named(root: &str) -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path().join(root))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default()
}
