//! The single-node cluster benchmark: `cargo bench --bench up` (see BENCHMARKS.md; root only).
//!
//! 1. **`skiff up` to node Ready**: the wall time of the `skiff up` command, which returns once
//!    the Node is Ready (and the kubeconfig is merged). *Cold*: a fresh data dir each time (the
//!    store is created, the demo images are built from the host's busybox). *Warm*: `skiff
//!    down` then `skiff up` on the same data. Target: ≤ 2 s.
//! 2. **Memory of the whole cluster**, idle and then with the demo (`manifests/demo.yaml`, 3
//!    pods) plus `UP_PODS` busybox `sleep` pods: every Skiff process — the cluster process
//!    (`skiff up --foreground`: API server, store, scheduler, controllers, node agent), each
//!    container's monitor and each pod's pause process — RSS and PSS from
//!    `/proc/PID/smaps_rollup`. The monitors and pause processes are the same binary and share
//!    its pages, which RSS counts once per process and PSS divides among them. The
//!    containers' own processes (httpd, sleep) are the workload and are not counted. Targets:
//!    ≤ 64 MB idle, ≤ 150 MB with 100 pods.
//!
//! The cluster is `tests/support/up_cluster.rs`'s: the benchmark's thread in a fresh network
//! namespace, the node IP on a bridge `node0`, temporary data and state dirs, its own cgroup
//! root; `skiff down --purge` removes everything at the end, also on a panic.
//!
//! Knobs: `UP_RUNS` [3] cold and warm starts each, `UP_PODS` [100], `UP_IDLE_SECS` [10] to let
//! the cluster settle before measuring, `UP_TIMEOUT_SECS` [300] for the pods to be Ready.

#[path = "support/mod.rs"]
mod bench_support;
#[path = "../nodeagent/tests/support/net.rs"]
mod net;
#[path = "../tests/support/mod.rs"]
mod support;
#[path = "../tests/support/up_cluster.rs"]
mod up_cluster;

use std::time::{Duration, Instant};

use bench_support::{Samples, align, env_or, load_average, ms, pass, print_section, table};
use skiff_nodeagent::naming;
use up_cluster::{UpCluster, wait_until};

const UP_TARGET: Duration = Duration::from_secs(2);
const IDLE_TARGET_MB: f64 = 64.0;
const LOADED_TARGET_MB: f64 = 150.0;

/// RSS and PSS of a group of processes, in kB.
#[derive(Default, Clone, Copy)]
struct Memory {
    processes: usize,
    rss_kb: u64,
    pss_kb: u64,
}

impl Memory {
    fn add(&mut self, pid: i32) {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")) else {
            return;
        };
        let field = |name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        self.processes += 1;
        self.rss_kb += field("Rss:");
        self.pss_kb += field("Pss:");
    }
}

/// The cluster process, the monitors and the pause processes.
struct ClusterMemory {
    cluster: Memory,
    monitors: Memory,
    pauses: Memory,
}

impl ClusterMemory {
    fn measure(up: &UpCluster) -> ClusterMemory {
        let mut cluster = Memory::default();
        if let Some(pid) = up.pid() {
            cluster.add(pid);
            // Its runtime helpers (the monitor spawner) count with it.
            for child in runtime_helpers_of(pid) {
                cluster.add(child);
            }
        }
        let mut monitors = Memory::default();
        let mut pauses = Memory::default();
        for container in up.runtime().list().unwrap_or_default() {
            if container.stored.monitor_pid > 0 {
                monitors.add(container.stored.monitor_pid);
            }
            let sandbox = container
                .stored
                .labels
                .get(naming::LABEL_CONTAINER_KIND)
                .is_some_and(|k| k == "sandbox");
            if sandbox && container.stored.pid > 0 {
                pauses.add(container.stored.pid);
            }
        }
        ClusterMemory {
            cluster,
            monitors,
            pauses,
        }
    }

    fn total(&self) -> Memory {
        Memory {
            processes: self.cluster.processes + self.monitors.processes + self.pauses.processes,
            rss_kb: self.cluster.rss_kb + self.monitors.rss_kb + self.pauses.rss_kb,
            pss_kb: self.cluster.pss_kb + self.monitors.pss_kb + self.pauses.pss_kb,
        }
    }
}

/// The children of `parent` that are the runtime's own processes (`skiff __skiff_runtime …`).
fn runtime_helpers_of(parent: i32) -> Vec<i32> {
    let parent = parent.to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1).map(str::to_string));
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let helper = cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == skiff_runtime::reexec::MARKER.as_bytes());
        if ppid.as_deref() == Some(parent.as_str()) && helper {
            found.push(pid);
        }
    }
    found
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn up_timed(cluster: &UpCluster) -> Duration {
    let started = Instant::now();
    let out = cluster.up();
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "skiff up failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn ready_pods(cluster: &UpCluster) -> usize {
    cluster.kubectl_json(&["get", "pods", "-A"])["items"]
        .as_array()
        .map(|pods| {
            pods.iter()
                .filter(|p| {
                    p["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    })
                })
                .count()
        })
        .unwrap_or(0)
}

struct Results {
    cold: Samples,
    warm: Samples,
    idle: ClusterMemory,
    loaded: ClusterMemory,
    pods: usize,
    pods_ready_after: Duration,
}

fn main() {
    if !net::require() {
        return;
    }
    let runs: usize = env_or("UP_RUNS", 3);
    let pods: usize = env_or("UP_PODS", 100);
    let idle = Duration::from_secs(env_or("UP_IDLE_SECS", 10));
    let timeout = Duration::from_secs(env_or("UP_TIMEOUT_SECS", 300));
    println!(
        "skiff up: {runs} cold and {runs} warm starts, then the demo plus {pods} pods; load average {}",
        load_average()
    );
    let demo = up_cluster::demo_manifest();
    let results = net::in_netns(move || {
        let mut cold = Vec::new();
        for _ in 0..runs {
            let cluster = UpCluster::new();
            cold.push(up_timed(&cluster));
            drop(cluster);
        }
        let cluster = UpCluster::new();
        up_timed(&cluster);
        let mut warm = Vec::new();
        for _ in 0..runs {
            let out = cluster.down();
            assert!(out.status.success(), "skiff down failed");
            warm.push(up_timed(&cluster));
        }
        std::thread::sleep(idle);
        let idle_memory = ClusterMemory::measure(&cluster);

        cluster.kubectl_ok(&["apply", "-f", &demo]);
        let load = cluster.dir.path().join("load.yaml");
        std::fs::write(
            &load,
            format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: load\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: sleepers\n  namespace: load\nspec:\n  replicas: {pods}\n  selector:\n    matchLabels:\n      app: sleepers\n  template:\n    metadata:\n      labels:\n        app: sleepers\n    spec:\n      terminationGracePeriodSeconds: 0\n      containers:\n      - name: sleep\n        image: skiff.local/busybox:v1\n        imagePullPolicy: IfNotPresent\n        command: [sleep, \"3600\"]\n"
            ),
        )
        .expect("the load manifest");
        let started = Instant::now();
        cluster.kubectl_ok(&["apply", "-f", &load.display().to_string()]);
        let want = pods + 3;
        wait_until(&format!("{want} pods Ready"), timeout, || {
            (ready_pods(&cluster) >= want).then_some(())
        });
        let pods_ready_after = started.elapsed();
        std::thread::sleep(idle);
        let loaded = ClusterMemory::measure(&cluster);
        cluster.kubectl_ok(&["delete", "namespace", "load", "demo", "--timeout=300s"]);
        drop(cluster);
        Results {
            cold: Samples::new(cold),
            warm: Samples::new(warm),
            idle: idle_memory,
            loaded,
            pods,
            pods_ready_after,
        }
    });
    println!("load average at the end {}", load_average());
    report(&results);
}

fn report(r: &Results) {
    let mut t = table(vec![
        "skiff up → node Ready",
        "n",
        "p50 ms",
        "max ms",
        "target",
        "",
    ]);
    for (what, samples) in [
        ("cold (fresh data dir, demo images built)", &r.cold),
        ("warm (skiff down, then up on the same data)", &r.warm),
    ] {
        t.add_row(vec![
            what.to_string(),
            samples.0.len().to_string(),
            ms(samples.pct(0.5)),
            ms(samples.max()),
            "≤ 2 s".into(),
            pass(samples.pct(0.5) <= UP_TARGET).into(),
        ]);
    }
    align(&mut t, 1);
    print_section("Start-up", &t);

    let mut t = table(vec![
        "memory",
        "processes",
        "cluster process (+ spawner) RSS MB",
        "monitors RSS MB",
        "pause RSS MB",
        "total RSS MB",
        "total PSS MB",
        "target",
        "RSS",
        "PSS",
    ]);
    for (what, m, target) in [
        ("idle".to_string(), &r.idle, IDLE_TARGET_MB),
        (
            format!(
                "demo + {} pods (all Ready after {} ms)",
                r.pods,
                ms(r.pods_ready_after)
            ),
            &r.loaded,
            LOADED_TARGET_MB,
        ),
    ] {
        let total = m.total();
        t.add_row(vec![
            what,
            format!(
                "{} ({} monitors, {} pause)",
                total.processes, m.monitors.processes, m.pauses.processes
            ),
            format!("{:.1}", mb(m.cluster.rss_kb)),
            format!("{:.1}", mb(m.monitors.rss_kb)),
            format!("{:.1}", mb(m.pauses.rss_kb)),
            format!("{:.1}", mb(total.rss_kb)),
            format!("{:.1}", mb(total.pss_kb)),
            format!("≤ {target} MB"),
            pass(mb(total.rss_kb) <= target).into(),
            pass(mb(total.pss_kb) <= target).into(),
        ]);
    }
    align(&mut t, 1);
    print_section("Memory of every Skiff process", &t);
    println!(
        "cluster process alone: idle RSS {:.1} MB / PSS {:.1} MB; loaded RSS {:.1} MB / PSS {:.1} MB",
        mb(r.idle.cluster.rss_kb),
        mb(r.idle.cluster.pss_kb),
        mb(r.loaded.cluster.rss_kb),
        mb(r.loaded.cluster.pss_kb)
    );
}
