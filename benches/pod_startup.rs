//! The pod startup latency benchmark: `cargo bench --bench pod_startup` (see BENCHMARKS.md;
//! root only).
//!
//! Pod startup latency as the Kubernetes SLO defines it: from the pod's create call until a
//! watch observes it Running (phase Running, every container running), its image already on
//! the node. One node: the benchmark's thread in a fresh network namespace, a release
//! `skiff server` (embedded store, scheduler and controllers in process) and `skiff agent`
//! with the pod network, exactly as `tests/agent.rs` sets them up
//! (`tests/support/agent_cluster.rs`). Pods are busybox `sleep 3600`, imagePullPolicy
//! IfNotPresent, terminationGracePeriodSeconds 0.
//!
//! 1. **One pod at a time**, `POD_STARTUP_RUNS` times after `POD_STARTUP_WARMUP` discarded
//!    rounds: p50, p90, max. Target: p50 ≤ 200 ms.
//! 2. **A burst**: `POD_STARTUP_BURST` pods created at once: p50, p99, max, and the time until
//!    the last one runs. Target: p99 ≤ 1 s.
//!
//! Each pod's time is broken down into steps: the create call, the watch seeing it bound
//! (`spec.nodeName`), the agent beginning its sandbox and its container (the `created` stamps
//! the runtime records on the node, wall clock), and the watch seeing it Running. The pod's
//! own condition timestamps are whole seconds, too coarse for this. Between rounds the pods
//! are deleted and the benchmark waits until the node's runtime holds no container, so every
//! round starts on a quiet node.
//!
//! Knobs: `POD_STARTUP_RUNS` [20], `POD_STARTUP_WARMUP` [1], `POD_STARTUP_BURST` [100]
//! (0 skips it), `POD_STARTUP_TIMEOUT_SECS` [120] per wait.
//!
//! Everything goes at the end, also on a panic: the agent is killed by PID, `skiff agent
//! --cleanup` removes the pods' containers, mounts and network, the cgroup root is removed,
//! the server is killed by PID, and the network namespace vanishes with the thread. The
//! benchmark then checks that no interface, `SKIFF` iptables rule, mount or cgroup of its own
//! is left and says so.

#[path = "support/mod.rs"]
mod bench_support;
#[path = "../tests/support/agent_cluster.rs"]
mod cluster;
#[path = "../nodeagent/tests/support/net.rs"]
mod net;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bench_support::{Samples, align, cpu_time, env_or, load_average, ms, pass, print_section};
use cluster::{Cluster, NODE};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_nodeagent::naming;
use skiff_runtime::container::Runtime;

const LABEL: &str = "skiff.io/bench";
const LABEL_VALUE: &str = "pod-startup";
const CONTAINER: &str = "c";
const SINGLE_TARGET: Duration = Duration::from_millis(200);
const BURST_TARGET: Duration = Duration::from_secs(1);

struct Config {
    runs: usize,
    warmup: usize,
    burst: usize,
    timeout: Duration,
}

/// When one pod reached each step, in milliseconds after its create call began. Steps the
/// benchmark could not see are `None`.
#[derive(Clone, Default)]
struct Steps {
    created: Option<f64>,
    scheduled: Option<f64>,
    sandbox_begun: Option<f64>,
    container_begun: Option<f64>,
    running: Option<f64>,
}

const STEP_NAMES: [&str; 5] = [
    "create call returned",
    "watch saw it bound (spec.nodeName)",
    "agent began the sandbox",
    "agent began the container (sandbox, pod IP, volumes, rootfs done)",
    "watch saw it Running (container started, status written)",
];

impl Steps {
    fn all(&self) -> [Option<f64>; 5] {
        [
            self.created,
            self.scheduled,
            self.sandbox_begun,
            self.container_begun,
            self.running,
        ]
    }
}

/// What the benchmark's pod watch saw of one pod, when.
#[derive(Clone, Default)]
struct Seen {
    uid: Option<String>,
    scheduled: Option<Instant>,
    running: Option<Instant>,
    gone: bool,
}

/// A watch of the benchmark's pods, recording when each was first seen bound and Running.
struct Tracker {
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    changed: tokio::sync::watch::Receiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

fn is_running(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    let wanted = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    let running = status
        .container_statuses
        .iter()
        .flatten()
        .filter(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
        .count();
    status.phase.as_deref() == Some("Running") && running == wanted
}

impl Tracker {
    async fn start(client: Client, timeout: Duration) -> Tracker {
        let api: Api<Pod> = Api::namespaced(client, "default");
        let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::default();
        let (tx, changed) = tokio::sync::watch::channel(0u64);
        let (listed_tx, listed) = tokio::sync::oneshot::channel();
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                let config = watcher::Config::default().labels(&format!("{LABEL}={LABEL_VALUE}"));
                let mut events = watcher(api, config).boxed();
                let mut listed_tx = Some(listed_tx);
                while let Some(event) = events.next().await {
                    let now = Instant::now();
                    match event {
                        Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                            let mut seen = seen.lock().expect("tracker");
                            let entry = seen.entry(pod.name_any()).or_default();
                            entry.uid = pod.uid();
                            let bound = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
                            if bound && entry.scheduled.is_none() {
                                entry.scheduled = Some(now);
                            }
                            if is_running(&pod) && entry.running.is_none() {
                                entry.running = Some(now);
                            }
                        }
                        Ok(watcher::Event::Delete(pod)) => {
                            let mut seen = seen.lock().expect("tracker");
                            seen.entry(pod.name_any()).or_default().gone = true;
                        }
                        Ok(watcher::Event::InitDone) => {
                            if let Some(tx) = listed_tx.take() {
                                let _ = tx.send(());
                            }
                        }
                        Ok(watcher::Event::Init) => {}
                        Err(e) => eprintln!("  ! pod watch: {e}"),
                    }
                    tx.send_modify(|n| *n += 1);
                }
            }
        });
        tokio::time::timeout(timeout, listed)
            .await
            .expect("the pod watch did not start")
            .expect("the pod watch stopped");
        Tracker {
            seen,
            changed,
            task,
        }
    }

    /// Waits until `f` finds what it looks for in what the watch has seen.
    async fn wait<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&HashMap<String, Seen>) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(v) = f(&self.seen.lock().expect("tracker")) {
                return v;
            }
            let changed = tokio::time::timeout_at(deadline, self.changed.changed()).await;
            assert!(changed.is_ok(), "timed out waiting for {what}");
            assert!(changed.is_ok_and(|r| r.is_ok()), "the pod watch stopped");
        }
    }

    fn get(&self, name: &str) -> Seen {
        self.seen
            .lock()
            .expect("tracker")
            .get(name)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {LABEL: LABEL_VALUE}},
        "spec": {
            // `sleep` as PID 1 ignores TERM: with a grace period each deletion would wait it out.
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": CONTAINER, "image": "busybox",
                "imagePullPolicy": "IfNotPresent", "command": ["sleep", "3600"]}],
        },
    }))
    .expect("pod")
}

fn millis_between(from: Instant, to: Option<Instant>) -> Option<f64> {
    to.map(|t| t.saturating_duration_since(from).as_secs_f64() * 1e3)
}

/// When the runtime on the node recorded creating container `id`, in ms after `wall_start`.
fn runtime_created(runtime: &Runtime, id: &str, wall_start: SystemTime) -> Option<f64> {
    let created = runtime
        .state(id)
        .ok()?
        .stored
        .created
        .timestamp_nanos_opt()?;
    let start = wall_start
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some((created as f64 - start as f64) / 1e6)
}

/// The steps of a pod the watch has seen Running (its containers still exist).
fn steps_of(
    seen: &Seen,
    runtime: &Runtime,
    started: Instant,
    wall_start: SystemTime,
    create_returned: Instant,
) -> Steps {
    let uid = seen.uid.clone().unwrap_or_default();
    Steps {
        created: millis_between(started, Some(create_returned)),
        scheduled: millis_between(started, seen.scheduled),
        sandbox_begun: runtime_created(runtime, &naming::sandbox_id(&uid), wall_start),
        container_begun: runtime_created(
            runtime,
            &naming::container_id(&uid, CONTAINER, 0),
            wall_start,
        ),
        running: millis_between(started, seen.running),
    }
}

/// Deletes the pods and waits until the watch saw them go and the node's runtime holds no
/// container any more.
async fn delete_and_settle(
    pods: &Api<Pod>,
    tracker: &mut Tracker,
    runtime: &Runtime,
    names: &[String],
    timeout: Duration,
) {
    let deletes = names.iter().map(|name| async move {
        if let Err(e) = pods.delete(name, &DeleteParams::default()).await {
            panic!("deleting {name}: {e}");
        }
    });
    futures::future::join_all(deletes).await;
    tracker
        .wait("the pods to be gone", timeout, |seen| {
            names
                .iter()
                .all(|n| seen.get(n).is_some_and(|s| s.gone))
                .then_some(())
        })
        .await;
    let deadline = Instant::now() + timeout;
    loop {
        let left = runtime.list().map(|l| l.len()).unwrap_or(0);
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the agent left {left} containers behind"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Percentile by the nearest-rank rule (as `Samples::pct`).
fn pct(values: &[f64], q: f64) -> Option<f64> {
    let mut v: Vec<f64> = values.to_vec();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.1}"))
}

/// Per step: the time since the previous step (per pod), then its time since the create
/// call, at the quantiles given.
fn steps_table(title: &str, all: &[Steps], quantiles: &[(&str, f64)]) {
    let mut header = vec!["step"];
    let delta_headers: Vec<String> = quantiles
        .iter()
        .map(|(q, _)| format!("Δ {q} (ms)"))
        .collect();
    let total_headers: Vec<String> = quantiles
        .iter()
        .map(|(q, _)| format!("since create {q}"))
        .collect();
    header.extend(delta_headers.iter().map(String::as_str));
    header.extend(total_headers.iter().map(String::as_str));
    let mut t = bench_support::table(header);
    for (i, name) in STEP_NAMES.iter().enumerate() {
        let at: Vec<f64> = all.iter().filter_map(|s| s.all()[i]).collect();
        // Against the latest earlier step the pod has: a step may be missing.
        let deltas: Vec<f64> = all
            .iter()
            .filter_map(|s| {
                let steps = s.all();
                let now = steps[i]?;
                let before = steps[..i].iter().rev().find_map(|x| *x).unwrap_or(0.0);
                Some(now - before)
            })
            .collect();
        let mut row = vec![name.to_string()];
        row.extend(quantiles.iter().map(|(_, q)| cell(pct(&deltas, *q))));
        row.extend(quantiles.iter().map(|(_, q)| cell(pct(&at, *q))));
        t.add_row(row);
    }
    align(&mut t, 1);
    print_section(title, &t);
}

struct Results {
    single: Vec<Steps>,
    burst: Vec<Steps>,
    burst_last_running: Option<Duration>,
    burst_last_bound: Option<Duration>,
    /// How long listing the node's runtime took with the burst running (median of 5), and
    /// how many containers it listed: every pod sync of the agent lists them all.
    burst_runtime_list: Option<(Duration, usize)>,
    /// CPU time of (agent, server) during the single rounds and during the burst.
    cpu_single: (Option<Duration>, Option<Duration>),
    cpu_burst: (Option<Duration>, Option<Duration>),
    leftovers: Vec<String>,
    temp_dir: String,
    cgroup_root: String,
}

fn cpu_pair(cluster: &Cluster) -> (Option<Duration>, Option<Duration>) {
    (
        cluster.agent.as_ref().and_then(|c| cpu_time(c.id())),
        cluster.server.pid().and_then(cpu_time),
    )
}

fn cpu_since(
    before: (Option<Duration>, Option<Duration>),
    after: (Option<Duration>, Option<Duration>),
) -> (Option<Duration>, Option<Duration>) {
    let sub = |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?));
    (sub(before.0, after.0), sub(before.1, after.1))
}

async fn wait_node_ready(client: &Client, timeout: Duration) {
    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(n) = nodes.get(NODE).await {
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let cidr = n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some();
            if ready && cidr {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the node did not become Ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn measure(cluster: &Cluster, config: &Config) -> Results {
    let client = cluster.server.client().await;
    let runtime = cluster.runtime();
    wait_node_ready(&client, config.timeout).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut tracker = Tracker::start(client.clone(), config.timeout).await;

    // 1. One pod at a time.
    let mut single = Vec::new();
    let mut cpu_single = (None, None);
    let mut cpu_before = cpu_pair(cluster);
    for round in 0..config.warmup + config.runs {
        if round == config.warmup {
            cpu_before = cpu_pair(cluster);
        }
        let name = format!("single-{round}");
        let wall_start = SystemTime::now();
        let started = Instant::now();
        pods.create(&PostParams::default(), &pod(&name))
            .await
            .unwrap_or_else(|e| panic!("creating {name}: {e}"));
        let create_returned = Instant::now();
        let seen = tracker
            .wait(&format!("{name} Running"), config.timeout, |seen| {
                seen.get(&name).filter(|s| s.running.is_some()).cloned()
            })
            .await;
        let steps = steps_of(&seen, &runtime, started, wall_start, create_returned);
        if round >= config.warmup {
            single.push(steps);
        }
        delete_and_settle(
            &pods,
            &mut tracker,
            &runtime,
            std::slice::from_ref(&name),
            config.timeout,
        )
        .await;
    }
    if config.runs > 0 {
        cpu_single = cpu_since(cpu_before, cpu_pair(cluster));
    }

    // 2. A burst on the same node.
    let mut burst = Vec::new();
    let (mut burst_last_running, mut burst_last_bound) = (None, None);
    let mut burst_runtime_list = None;
    let mut cpu_burst = (None, None);
    if config.burst > 0 {
        let names: Vec<String> = (0..config.burst).map(|i| format!("burst-{i}")).collect();
        let cpu_before = cpu_pair(cluster);
        let burst_start = Instant::now();
        let creates = names.iter().map(|name| {
            let pods = pods.clone();
            async move {
                let wall_start = SystemTime::now();
                let started = Instant::now();
                pods.create(&PostParams::default(), &pod(name))
                    .await
                    .unwrap_or_else(|e| panic!("creating {name}: {e}"));
                (wall_start, started, Instant::now())
            }
        });
        let times = futures::future::join_all(creates).await;
        tracker
            .wait("the burst Running", config.timeout * 3, |seen| {
                names
                    .iter()
                    .all(|n| seen.get(n).is_some_and(|s| s.running.is_some()))
                    .then_some(())
            })
            .await;
        cpu_burst = cpu_since(cpu_before, cpu_pair(cluster));
        let mut lists: Vec<(Duration, usize)> = (0..5)
            .map(|_| {
                let t = Instant::now();
                let n = runtime.list().map(|l| l.len()).unwrap_or(0);
                (t.elapsed(), n)
            })
            .collect();
        lists.sort();
        burst_runtime_list = lists.get(lists.len() / 2).copied();
        for (name, (wall_start, started, create_returned)) in names.iter().zip(times) {
            let seen = tracker.get(name);
            burst_last_running = burst_last_running.max(seen.running.map(|t| t - burst_start));
            burst_last_bound = burst_last_bound.max(seen.scheduled.map(|t| t - burst_start));
            burst.push(steps_of(
                &seen,
                &runtime,
                started,
                wall_start,
                create_returned,
            ));
        }
        delete_and_settle(&pods, &mut tracker, &runtime, &names, config.timeout * 3).await;
    }
    Results {
        single,
        burst,
        burst_last_running,
        burst_last_bound,
        burst_runtime_list,
        cpu_single,
        cpu_burst,
        leftovers: Vec::new(),
        temp_dir: cluster.dir.path().display().to_string(),
        cgroup_root: cluster.cgroup_root.clone(),
    }
}

/// What is left in the benchmark's network namespace once the cluster is gone.
fn netns_leftovers() -> Vec<String> {
    let mut left: Vec<String> = net::sh(&["ip", "-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(str::trim))
        .filter(|name| *name != "lo" && *name != "node0")
        .map(|name| format!("interface {name}"))
        .collect();
    left.extend(
        net::skiff_chains()
            .into_iter()
            .map(|l| format!("iptables {l}")),
    );
    left
}

/// Mounts and cgroups of the benchmark's node left on the host.
fn host_leftovers(temp_dir: &str, cgroup_root: &str) -> Vec<String> {
    let mut left: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(temp_dir))
        .map(|l| format!("mount {l}"))
        .collect();
    for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
        for entry in std::fs::read_dir(root).into_iter().flatten().flatten() {
            let candidate = entry.path().join(cgroup_root);
            if candidate.exists() {
                left.push(format!("cgroup {}", candidate.display()));
            }
        }
        let direct = std::path::Path::new(root).join(cgroup_root);
        if direct.exists() {
            left.push(format!("cgroup {}", direct.display()));
        }
    }
    if std::path::Path::new(temp_dir).exists() {
        left.push(format!("directory {temp_dir}"));
    }
    left.sort();
    left.dedup();
    left
}

fn latency_row(
    t: &mut comfy_table::Table,
    what: &str,
    steps: &[Steps],
    last: Option<Duration>,
    target: (&str, f64, Duration),
) {
    let latencies = Samples::new(
        steps
            .iter()
            .filter_map(|s| s.running)
            .map(|ms| Duration::from_secs_f64(ms / 1e3))
            .collect(),
    );
    let (target_name, q, limit) = target;
    let measured = latencies.pct(q);
    t.add_row(vec![
        what.to_string(),
        latencies.0.len().to_string(),
        ms(latencies.pct(0.5)),
        ms(latencies.pct(0.9)),
        ms(latencies.pct(0.99)),
        ms(latencies.max()),
        last.map_or_else(|| "—".into(), ms),
        format!("{target_name} ≤ {}", ms(limit)),
        pass(!latencies.0.is_empty() && measured <= limit).to_string(),
    ]);
}

fn report(config: &Config, r: &Results) {
    let mut t = bench_support::table(vec![
        "pods (create call → watch sees Running)",
        "n",
        "p50 (ms)",
        "p90 (ms)",
        "p99 (ms)",
        "max (ms)",
        "last Running after (ms)",
        "target",
        "",
    ]);
    if config.runs > 0 {
        latency_row(
            &mut t,
            "one at a time",
            &r.single,
            None,
            ("p50", 0.5, SINGLE_TARGET),
        );
    }
    if config.burst > 0 {
        latency_row(
            &mut t,
            &format!("burst of {} at once", config.burst),
            &r.burst,
            r.burst_last_running,
            ("p99", 0.99, BURST_TARGET),
        );
    }
    align(&mut t, 1);
    print_section("Pod startup latency (image present; one node)", &t);
    if config.runs > 0 {
        steps_table(
            &format!(
                "Where the time goes: one pod at a time ({} pods)",
                r.single.len()
            ),
            &r.single,
            &[("p50", 0.5), ("p90", 0.9), ("max", 1.0)],
        );
    }
    if config.burst > 0 {
        steps_table(
            &format!("Where the time goes: the burst of {}", config.burst),
            &r.burst,
            &[("p50", 0.5), ("p99", 0.99), ("max", 1.0)],
        );
        if let Some(bound) = r.burst_last_bound {
            println!(
                "  the last pod of the burst was seen bound {} ms after the burst began",
                ms(bound)
            );
        }
        if let Some((took, n)) = r.burst_runtime_list {
            println!(
                "  listing the node's runtime ({n} containers, as each agent pod sync does) took {} ms",
                ms(took)
            );
        }
    }
    let mut cpu = bench_support::table(vec![
        "CPU time (ms)",
        "agent",
        "server",
        "per pod, agent + server",
    ]);
    let rows = [
        ("one at a time", r.cpu_single, r.single.len()),
        ("burst", r.cpu_burst, r.burst.len()),
    ];
    for (what, (agent, server), n) in rows {
        if n == 0 {
            continue;
        }
        let per_pod = match (agent, server) {
            (Some(a), Some(s)) => ms((a + s) / n as u32),
            _ => "—".into(),
        };
        cpu.add_row(vec![
            what.to_string(),
            agent.map_or_else(|| "—".into(), ms),
            server.map_or_else(|| "—".into(), ms),
            per_pod,
        ]);
    }
    align(&mut cpu, 1);
    print_section(
        "CPU of the agent and server processes (container monitors and pause processes not counted)",
        &cpu,
    );
    if r.leftovers.is_empty() {
        println!(
            "\n  nothing left behind (interfaces, SKIFF iptables rules, mounts, cgroups, directories)"
        );
    } else {
        println!("\n  LEFT BEHIND:");
        for l in &r.leftovers {
            println!("    {l}");
        }
    }
}

fn main() {
    if !net::require() {
        return;
    }
    let config = Config {
        runs: env_or("POD_STARTUP_RUNS", 20),
        warmup: env_or("POD_STARTUP_WARMUP", 1),
        burst: env_or("POD_STARTUP_BURST", 100),
        timeout: Duration::from_secs(env_or("POD_STARTUP_TIMEOUT_SECS", 120)),
    };
    println!(
        "pod startup: {} single pods (+{} warm-up), a burst of {}; load average {}",
        config.runs,
        config.warmup,
        config.burst,
        load_average()
    );
    let mut results = net::in_netns(move || {
        let cluster = Cluster::start();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let results = rt.block_on(measure(&cluster, &config));
        drop(cluster);
        let mut results = results;
        results.leftovers = netns_leftovers();
        (results, config)
    });
    let leftovers = host_leftovers(&results.0.temp_dir, &results.0.cgroup_root);
    results.0.leftovers.extend(leftovers);
    println!("load average at the end {}", load_average());
    report(&results.1, &results.0);
}
