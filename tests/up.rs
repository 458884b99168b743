//! `skiff up` / `skiff down` end to end, driven by the real kubectl: the demo manifests run,
//! are served through their Services, scale, roll out a new image and back, and everything
//! goes again.
//!
//! The test's thread is the machine (a fresh network namespace, `nodeagent/tests/support/net.rs`)
//! with its address on a bridge `node0`; `skiff up` runs with a temporary data dir, runtime state
//! dir and cgroup root, and HOME pointing at a temporary home, so the kubeconfig it merges into is
//! the test's. On drop, `skiff down --purge` stops the cluster process (by the pid in its data
//! dir) and removes what it made. Root only.

#[path = "../nodeagent/tests/support/net.rs"]
mod net;
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_runtime::container::{Runtime, RuntimeConfig};

const SKIFF: &str = env!("CARGO_BIN_EXE_skiff");
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 203, 2);
const NODE_NAME: &str = "up-node";
const NODE_PORT: u16 = 30080;

struct UpCluster {
    dir: tempfile::TempDir,
    cgroup_root: String,
}

impl UpCluster {
    /// Must run inside `net::in_netns`.
    fn new() -> UpCluster {
        net::sh(&["ip", "link", "add", "node0", "type", "bridge"]);
        net::sh(&[
            "ip",
            "addr",
            "add",
            &format!("{NODE_IP}/24"),
            "dev",
            "node0",
        ]);
        net::sh(&["ip", "link", "set", "node0", "up"]);
        let dir = tempfile::Builder::new()
            .prefix("skiff-up-test-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("home/.kube")).expect("home");
        UpCluster {
            dir,
            cgroup_root: format!("skiff-test-up-{}", std::process::id()),
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn skiff(&self, args: &[&str]) -> Output {
        Command::new(SKIFF)
            .args(args)
            .env("HOME", self.home())
            .env_remove("KUBECONFIG")
            .env("SKIFF_LOG", "info")
            .stdin(Stdio::null())
            .output()
            .expect("run skiff")
    }

    fn up(&self) -> Output {
        let data = self.data_dir().display().to_string();
        let state = self.dir.path().join("state").display().to_string();
        self.skiff(&[
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
        ])
    }

    fn down(&self) -> Output {
        self.skiff(&["down", "--data-dir", &self.data_dir().display().to_string()])
    }

    fn runtime(&self) -> Runtime {
        Runtime::new(RuntimeConfig {
            state_dir: self.dir.path().join("state"),
            data_dir: self.data_dir().join("runtime"),
            helper_binary: PathBuf::from(SKIFF),
        })
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.data_dir().join("skiff.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// kubectl as the user would run it: with the kubeconfig `skiff up` merged into `~/.kube`.
    fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(support::kubectl_path())
            .args(args)
            .env("HOME", self.home())
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.kubectl(args);
        assert!(ok, "kubectl {args:?} failed:\n{stdout}{stderr}");
        stdout
    }

    fn kubectl_json(&self, args: &[&str]) -> Value {
        let mut full = args.to_vec();
        full.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&full)).expect("kubectl json")
    }

    /// The demo's web pods that are Ready (and not terminating).
    fn ready_web_pods(&self) -> Vec<Value> {
        self.kubectl_json(&["-n", "demo", "get", "pods", "-l", "app=web"])["items"]
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
    fn pod_containers(&self) -> Vec<String> {
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

    fn log(&self) -> String {
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

fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Pages from `n` requests to `addr`, once every one of them succeeds and `accept` holds for
/// all of them (the proxy's rules follow endpoint changes within about a second).
fn pages(addr: SocketAddr, n: usize, accept: impl Fn(&str) -> bool) -> Vec<String> {
    wait_until(
        &format!("{n} pages from {addr}"),
        Duration::from_secs(60),
        || {
            let got: Vec<String> = (0..n).map_while(|_| net::get(addr).ok()).collect();
            (got.len() == n && got.iter().all(|p| accept(p))).then_some(got)
        },
    )
}

/// `Served by pod NAME, …` → NAME.
fn serving_pod(page: &str) -> String {
    page.split("Served by pod ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_default()
        .to_string()
}

fn rollout_done(cluster: &UpCluster) {
    cluster.kubectl_ok(&[
        "-n",
        "demo",
        "rollout",
        "status",
        "deployment/web",
        "--timeout=120s",
    ]);
}

/// Whether `pid` runs (a zombie waiting for init to reap it does not).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

fn links() -> Vec<String> {
    net::sh(&["ip", "-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect()
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&dir)))
        .map(str::to_string)
        .collect()
}

fn cgroups_named(root: &str) -> Vec<PathBuf> {
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

#[test]
fn up_runs_the_demo_through_its_services_and_down_leaves_nothing() {
    if !net::require() {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let demo = repo.join("manifests/demo.yaml").display().to_string();
    net::in_netns(move || {
        let cluster = UpCluster::new();
        // A kubeconfig the user had before: `skiff up` adds to it and changes only the
        // current context.
        std::fs::write(
            cluster.home().join(".kube/config"),
            "apiVersion: v1\nkind: Config\nclusters:\n- name: elsewhere\n  cluster:\n    server: https://elsewhere.invalid:6443\ncontexts:\n- name: elsewhere\n  context:\n    cluster: elsewhere\n    user: someone\nusers:\n- name: someone\n  user:\n    token: kept\ncurrent-context: elsewhere\n",
        )
        .expect("an existing kubeconfig");

        let started = Instant::now();
        let out = cluster.up();
        let up_took = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "skiff up failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("Node {NODE_NAME} is Ready")),
            "{stdout}"
        );
        eprintln!("skiff up to node Ready: {:.2} s", up_took.as_secs_f64());
        let pid = cluster.pid().expect("the cluster's pid file");

        // Again: harmless, the same process.
        let again = cluster.up();
        let again_out = String::from_utf8_lossy(&again.stdout);
        assert!(again.status.success(), "second skiff up: {again_out}");
        assert!(again_out.contains("already running"), "{again_out}");
        assert_eq!(cluster.pid(), Some(pid));

        let contexts = cluster.kubectl_ok(&["config", "get-contexts", "-o", "name"]);
        assert_eq!(
            contexts.lines().collect::<Vec<_>>(),
            vec!["elsewhere", "skiff"]
        );
        assert_eq!(
            cluster.kubectl_ok(&["config", "current-context"]).trim(),
            "skiff"
        );

        // One schedulable control-plane node, as k3s leaves it.
        let node = cluster.kubectl_json(&["get", "node", NODE_NAME]);
        assert_eq!(
            node["metadata"]["labels"]["node-role.kubernetes.io/control-plane"],
            "true"
        );
        assert!(
            node["spec"]["taints"]
                .as_array()
                .is_none_or(|t| t.is_empty()),
            "{}",
            node["spec"]
        );
        assert_eq!(node["spec"]["podCIDR"], "10.244.0.0/24");

        // The demo: three pods Ready, the page through the ClusterIP and the NodePort.
        let applied = cluster.kubectl_ok(&["apply", "-f", &demo]);
        assert!(applied.contains("deployment.apps/web created"), "{applied}");
        rollout_done(&cluster);
        let ready = wait_until("3 web pods Ready", Duration::from_secs(60), || {
            let pods = cluster.ready_web_pods();
            (pods.len() == 3).then_some(pods)
        });
        assert!(ready.iter().all(|p| p["spec"]["nodeName"] == NODE_NAME));
        let cluster_ip: Ipv4Addr = cluster
            .kubectl_ok(&[
                "-n",
                "demo",
                "get",
                "service",
                "web",
                "-o",
                "jsonpath={.spec.clusterIP}",
            ])
            .trim()
            .parse()
            .expect("a ClusterIP");
        let via_cluster_ip = SocketAddr::from((cluster_ip, 80));
        let via_node_port = SocketAddr::from((NODE_IP, NODE_PORT));
        let v1 = |p: &str| p.contains("Hello from Skiff") && p.contains("image version v1.");
        let seen = pages(via_cluster_ip, 30, v1);
        let pod_names: std::collections::BTreeSet<String> = ready
            .iter()
            .map(|p| {
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        let served: std::collections::BTreeSet<String> =
            seen.iter().map(|p| serving_pod(p)).collect();
        assert!(served.is_subset(&pod_names), "{served:?} ⊄ {pod_names:?}");
        assert!(served.len() > 1, "30 requests all went to {served:?}");
        pages(via_node_port, 10, v1);

        // Scale to 5.
        cluster.kubectl_ok(&["-n", "demo", "scale", "deployment/web", "--replicas=5"]);
        rollout_done(&cluster);
        wait_until("5 web pods Ready", Duration::from_secs(60), || {
            (cluster.ready_web_pods().len() == 5).then_some(())
        });

        // A new image tag, then back.
        cluster.kubectl_ok(&[
            "-n",
            "demo",
            "set",
            "image",
            "deployment/web",
            "web=skiff.local/busybox:v2",
        ]);
        rollout_done(&cluster);
        pages(via_cluster_ip, 20, |p| p.contains("image version v2."));
        pages(via_node_port, 10, |p| p.contains("image version v2."));
        let history = cluster.kubectl_ok(&["-n", "demo", "rollout", "history", "deployment/web"]);
        assert!(history.contains('1') && history.contains('2'), "{history}");
        cluster.kubectl_ok(&["-n", "demo", "rollout", "undo", "deployment/web"]);
        rollout_done(&cluster);
        pages(via_cluster_ip, 20, v1);
        let images: Vec<String> = cluster
            .ready_web_pods()
            .iter()
            .map(|p| {
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        assert_eq!(images.len(), 5);
        assert!(
            images.iter().all(|i| i == "skiff.local/busybox:v1"),
            "{images:?}"
        );

        // The namespace goes, and with it every pod and container.
        cluster.kubectl_ok(&["delete", "namespace", "demo", "--timeout=120s"]);
        let (found, _, _) = cluster.kubectl(&["get", "namespace", "demo"]);
        assert!(!found, "namespace demo is still there");
        wait_until("the pods' containers gone", Duration::from_secs(60), || {
            cluster.pod_containers().is_empty().then_some(())
        });
        assert!(
            net::get(via_node_port).is_err(),
            "the NodePort still answers"
        );

        // Down: no process, interfaces, rules, mounts or cgroups left; the kubeconfig as it was.
        let out = cluster.down();
        assert!(
            out.status.success(),
            "skiff down failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!alive(pid), "the cluster process {pid} is still there");
        let left: Vec<String> = links()
            .into_iter()
            .filter(|l| l != "lo" && l != "node0")
            .collect();
        assert!(left.is_empty(), "interfaces left: {left:?}");
        assert_eq!(net::skiff_chains(), Vec::<String>::new());
        let routes = net::sh(&["ip", "route", "show", "proto", "83"]);
        assert!(routes.trim().is_empty(), "routes left: {routes}");
        assert_eq!(mounts_under(cluster.dir.path()), Vec::<String>::new());
        assert_eq!(cgroups_named(&cluster.cgroup_root), Vec::<PathBuf>::new());
        assert!(cluster.runtime().list().unwrap_or_default().is_empty());
        assert_eq!(
            cluster
                .kubectl_ok(&["config", "get-contexts", "-o", "name"])
                .trim(),
            "elsewhere"
        );
        let kept =
            std::fs::read_to_string(cluster.home().join(".kube/config")).expect("kubeconfig");
        assert!(kept.contains("token: kept"), "{kept}");

        // Down again: nothing to stop, still fine.
        let again = cluster.down();
        assert!(
            again.status.success(),
            "{}",
            String::from_utf8_lossy(&again.stderr)
        );
    });
}
