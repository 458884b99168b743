//! The scheduler benchmark: `cargo bench --bench scheduler` (see BENCHMARKS.md).
//!
//! kube-scheduler's scheduler_perf `SchedulingBasic` workload (5,000 nodes, then 10,000 pods of
//! scheduler_perf's default pod template: one container requesting 100m CPU and 500Mi), twice:
//!
//! 1. **Algorithm alone, in process**: a [`Cache`] holding the nodes, and each pod in turn
//!    through `cache.update_snapshot(..)` (one snapshot kept up to date, as the scheduler's
//!    loop does), `default_framework().schedule(..)` and `cache.assume(..)`, timed per pod
//!    (each step separately too).
//! 2. **End to end**: a release `skiff server` (embedded store, fresh temp data dir, its
//!    in-process scheduler off) and `skiff scheduler --leader-elect=false` as child processes;
//!    the nodes are created through the API (32 in flight), then the pods (64 in flight). The
//!    scheduling rate counts from the first pod create to the last binding seen on a watch on
//!    pods (a pod counts once its `spec.nodeName` is set); the create rate alone (first create
//!    sent to last create answered) shows whether the API or the scheduler is the bottleneck.
//!    The CPU time each process used during the pod phase comes from `/proc/<pid>/stat`.
//!
//! The target (≥ 2,000 pods/s end to end) is printed as PASS/MISS; the benchmark never asserts
//! on it. Every process it starts is its child on 127.0.0.1 only and is killed by PID when its
//! guard drops (also on panic), or, through a supervisor holding a pipe, when this process dies.
//!
//! Node Leases: as a kubelet would, the benchmark creates a Lease per node in
//! `kube-node-lease` (owned by its Node) and renews each every `SCHED_BENCH_LEASE_RENEW_SECS`
//! (kubelet's 10 s), spread evenly, for as long as the nodes exist, so that a node lifecycle
//! controller would keep them Ready. The renewals load the API server during the pod phase
//! as real nodes would (5,000 nodes: 500 Lease updates/s).
//!
//! Knobs (environment variables, defaults in brackets):
//! `SCHED_BENCH_NODES` [5000], `SCHED_BENCH_PODS` [10000],
//! `SCHED_BENCH_PHASES` [algorithm,e2e],
//! `SCHED_BENCH_NODE_CONCURRENCY` [32], `SCHED_BENCH_POD_CONCURRENCY` [64] creates in flight,
//! `SCHED_BENCH_TIMEOUT_SECS` [300] cap on waiting for the bindings,
//! `SCHED_BENCH_LEASE_RENEW_SECS` [10] each node Lease's renewal interval (0: no Leases),
//! `SCHED_BENCH_PERF` [unset] a directory: record `perf record -g` of the server and the
//! scheduler during the pod phase into it,
//! `SKIFF_BENCH_BIN` [the `skiff` binary cargo built with this bench].

/// The same allocator as the `skiff` binary, so the in-process algorithm phase measures what
/// the scheduler process runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "support/mod.rs"]
mod support;
use support::*;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use serde::Deserialize;
use serde_json::json;
use skiff_scheduler::cache::Cache;
use skiff_scheduler::framework::{CycleState, PodInfo, ScheduleError, Snapshot};
use skiff_scheduler::plugins::default_framework;

const TARGET_PODS_PER_SEC: f64 = 2000.0;
const NAMESPACE: &str = "sched-bench";

// ---- configuration ----

struct Config {
    nodes: usize,
    pods: usize,
    algorithm: bool,
    /// End to end with `skiff server`'s own scheduler (the default deployment).
    e2e: bool,
    /// End to end with the scheduler as a separate `skiff scheduler` process.
    e2e_separate: bool,
    node_concurrency: usize,
    pod_concurrency: usize,
    timeout: Duration,
    /// Each node Lease is renewed this often (zero: no Leases).
    lease_renew: Duration,
    perf_dir: Option<PathBuf>,
    binary: PathBuf,
}

impl Config {
    fn from_env() -> Config {
        let phases = std::env::var("SCHED_BENCH_PHASES")
            .unwrap_or_else(|_| "algorithm,e2e,e2e-separate".into());
        let phases: Vec<&str> = phases.split(',').map(str::trim).collect();
        for p in &phases {
            assert!(
                matches!(*p, "algorithm" | "e2e" | "e2e-separate" | ""),
                "SCHED_BENCH_PHASES: unknown phase {p:?} (algorithm, e2e, e2e-separate)"
            );
        }
        Config {
            nodes: env_or("SCHED_BENCH_NODES", 5000),
            pods: env_or("SCHED_BENCH_PODS", 10000),
            algorithm: phases.contains(&"algorithm"),
            e2e: phases.contains(&"e2e"),
            e2e_separate: phases.contains(&"e2e-separate"),
            node_concurrency: env_or("SCHED_BENCH_NODE_CONCURRENCY", 32usize).max(1),
            pod_concurrency: env_or("SCHED_BENCH_POD_CONCURRENCY", 64usize).max(1),
            timeout: Duration::from_secs_f64(env_or("SCHED_BENCH_TIMEOUT_SECS", 300.0)),
            lease_renew: Duration::from_secs_f64(env_or("SCHED_BENCH_LEASE_RENEW_SECS", 10.0)),
            perf_dir: std::env::var_os("SCHED_BENCH_PERF")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            binary: std::env::var_os("SKIFF_BENCH_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_skiff"))),
        }
    }
}

// ---- the objects: scheduler_perf's templates ----

/// What the benchmark's own watch needs of a pod: its name and node. Decoding only these
/// (the rest of each event is skipped unparsed into values) keeps the benchmark's CPU — which
/// shares the 2 cores with the server and the scheduler — low.
#[derive(Clone, Debug, serde::Deserialize)]
struct PodPlacement {
    #[serde(deserialize_with = "name_and_version")]
    metadata: ObjectMeta,
    spec: Option<PlacementSpec>,
}

#[derive(Clone, Debug, serde::Deserialize)]
struct PlacementSpec {
    #[serde(rename = "nodeName")]
    node_name: Option<String>,
}

fn name_and_version<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(serde::Deserialize)]
    struct Light {
        name: Option<String>,
        namespace: Option<String>,
        #[serde(rename = "resourceVersion")]
        resource_version: Option<String>,
    }
    let light = Light::deserialize(d)?;
    Ok(ObjectMeta {
        name: light.name,
        namespace: light.namespace,
        resource_version: light.resource_version,
        ..ObjectMeta::default()
    })
}

impl kube::Resource for PodPlacement {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// scheduler_perf's `pod-default.yaml`: one pause container, port 80, requests = limits =
/// 100m CPU and 500Mi.
fn pod(i: usize, uid: Option<String>) -> Pod {
    let mut metadata = json!({"name": format!("pod-{i}"), "namespace": NAMESPACE});
    if let Some(uid) = uid {
        metadata["uid"] = json!(uid);
    }
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [{
            "name": "pause",
            "image": "registry.k8s.io/pause:3.10",
            "ports": [{"containerPort": 80}],
            "resources": {
                "limits": {"cpu": "100m", "memory": "500Mi"},
                "requests": {"cpu": "100m", "memory": "500Mi"},
            },
        }]},
    }))
    .expect("pod")
}

// ---- measurement helpers ----

// ---- 1. the algorithm alone ----

struct AlgorithmResult {
    elapsed: Duration,
    scheduled: usize,
    failed: usize,
    first_error: Option<String>,
    total: Samples,
    snapshot: Samples,
    schedule: Samples,
    assume: Samples,
    state_drop: Samples,
    evaluated_mean: f64,
    pods_per_node: (usize, usize),
}

fn algorithm_phase(cfg: &Config) -> AlgorithmResult {
    let mut cache = Cache::new();
    for i in 0..cfg.nodes {
        cache.upsert_node(node(&format!("scheduler-perf-{i}")));
    }
    let framework = default_framework();
    // As the scheduler does, the PodInfo is built when the pod arrives, not in the cycle.
    let pods: Vec<Arc<PodInfo>> = (0..cfg.pods)
        .map(|i| Arc::new(PodInfo::new(Arc::new(pod(i, Some(format!("uid-{i}")))))))
        .collect();
    let (mut total, mut snap_t, mut sched_t, mut assume_t, mut drop_t) = (
        Vec::with_capacity(cfg.pods),
        Vec::with_capacity(cfg.pods),
        Vec::with_capacity(cfg.pods),
        Vec::with_capacity(cfg.pods),
        Vec::with_capacity(cfg.pods),
    );
    let (mut scheduled, mut failed, mut evaluated) = (0usize, 0usize, 0usize);
    let mut first_error = None;
    // As in the scheduler's loop: one snapshot, brought up to date at the start of each cycle
    // (copying only the nodes that changed).
    let mut snapshot = Snapshot::default();
    let start = Instant::now();
    for info in pods {
        let t0 = Instant::now();
        cache.update_snapshot(&mut snapshot);
        let t1 = Instant::now();
        let mut state = CycleState::new();
        let result = framework.schedule(&mut state, &info, &snapshot);
        let t2 = Instant::now();
        // Dropping the cycle state (what the plugins computed) ends the cycle.
        drop(state);
        let t3 = Instant::now();
        match result {
            Ok(r) => {
                cache.assume(info, &r.node);
                scheduled += 1;
                evaluated += r.evaluated_nodes;
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| match e {
                    ScheduleError::Unschedulable(f) => f.message(),
                    ScheduleError::Internal(m) => m,
                });
            }
        }
        let t4 = Instant::now();
        snap_t.push(t1 - t0);
        sched_t.push(t2 - t1);
        drop_t.push(t3 - t2);
        assume_t.push(t4 - t3);
        total.push(t4 - t0);
    }
    let elapsed = start.elapsed();
    cache.update_snapshot(&mut snapshot);
    let counts = snapshot.nodes.iter().map(|n| n.pods.len());
    let pods_per_node = (counts.clone().min().unwrap_or(0), counts.max().unwrap_or(0));
    AlgorithmResult {
        elapsed,
        scheduled,
        failed,
        first_error,
        total: Samples::new(total),
        snapshot: Samples::new(snap_t),
        schedule: Samples::new(sched_t),
        assume: Samples::new(assume_t),
        state_drop: Samples::new(drop_t),
        evaluated_mean: if scheduled == 0 {
            0.0
        } else {
            evaluated as f64 / scheduled as f64
        },
        pods_per_node,
    }
}

// ---- processes ----

/// Where the scheduler runs in an end-to-end run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SchedulerIn {
    /// Inside `skiff server`, as it runs by default (a client of the API through the
    /// server's router, no TCP connection).
    Server,
    /// A separate `skiff scheduler` process connected through the kubeconfig.
    Process,
}

/// `skiff server` (embedded store) and, for [`SchedulerIn::Process`], once started,
/// `skiff scheduler`. Fields drop in order: the scheduler first, then the server, then the
/// temporary directory.
struct Cluster {
    scheduler: Option<Supervised>,
    server: ServerProcess,
}

impl Cluster {
    fn start_server(binary: &Path, scheduler_in: SchedulerIn) -> Cluster {
        let scheduler = if scheduler_in == SchedulerIn::Server {
            "--scheduler=true"
        } else {
            "--scheduler=false"
        };
        // As scheduler_perf: an API server and a scheduler, no controller manager (its
        // ReplicaSet controller would decode every pod once more).
        let started = ServerProcess::start(
            binary,
            "skiff-sched-bench-",
            &[scheduler, "--controllers=false"],
        );
        Cluster {
            scheduler: None,
            server: started,
        }
    }

    fn start_scheduler(&mut self, binary: &Path) {
        let kubeconfig = self.server.dir.path().join("data").join("kubeconfig");
        self.scheduler = Some(Supervised::spawn(
            "skiff scheduler",
            binary,
            &[
                "scheduler",
                "--kubeconfig",
                kubeconfig.to_str().expect("utf-8 temp path"),
                "--leader-elect=false",
            ],
            self.server.dir.path().join("scheduler.log"),
        ));
    }

    fn client(&self) -> Client {
        self.server.client()
    }
}

/// `perf record -g` attached to a PID; stopped with SIGINT (by PID) when dropped.
struct PerfRecord(Child);

impl PerfRecord {
    fn start(pid: u32, out: &Path) -> Option<PerfRecord> {
        let child = Command::new("perf")
            .args(["record", "-F", "499", "-g", "-p", &pid.to_string(), "-o"])
            .arg(out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| eprintln!("  ! perf record: {e}"))
            .ok()?;
        Some(PerfRecord(child))
    }
}

impl Drop for PerfRecord {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---- 2. end to end ----

#[derive(Default)]
struct E2eResult {
    scheduler_in: Option<SchedulerIn>,
    node_create: Duration,
    node_errors: usize,
    pods: usize,
    create_errors: usize,
    first_create_error: Option<String>,
    /// First create sent → last create answered.
    create: Duration,
    /// First create sent → last binding seen.
    scheduled: usize,
    to_last_bound: Duration,
    /// Last create answered → last binding seen.
    tail: Duration,
    latency: Option<Samples>,
    cpu_server: Option<Duration>,
    cpu_scheduler: Option<Duration>,
    cpu_bench: Option<Duration>,
    /// The server's threads by name: CPU time run, and time spent ready but waiting for a CPU.
    server_threads: Vec<(String, Duration, Duration)>,
    rss_server: Option<f64>,
    rss_scheduler: Option<f64>,
    timed_out: bool,
    /// (seconds since the first create, pods created, pods bound) once a second.
    progress: Vec<(f64, u64, u64)>,
    /// Node Lease renewals from the first pod create to the last binding, and failed
    /// renewals over the whole run.
    lease_renewals: u64,
    lease_failures: u64,
}

async fn e2e_phase(cfg: &Config, scheduler_in: SchedulerIn) -> E2eResult {
    let mut r = E2eResult {
        pods: cfg.pods,
        scheduler_in: Some(scheduler_in),
        ..Default::default()
    };
    let binary = cfg.binary.clone();
    let mut cluster =
        tokio::task::spawn_blocking(move || Cluster::start_server(&binary, scheduler_in))
            .await
            .expect("server start");
    let client = cluster.client();
    Api::<Namespace>::all(client.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).expect("ns"),
        )
        .await
        .expect("namespace");

    // Nodes, before the scheduler starts (it lists them when it starts).
    eprintln!(
        "  creating {} nodes, {} in flight",
        cfg.nodes, cfg.node_concurrency
    );
    let with_leases = !cfg.lease_renew.is_zero();
    let names: Vec<String> = (0..cfg.nodes)
        .map(|i| format!("scheduler-perf-{i}"))
        .collect();
    let registered = register_nodes(&client, &names, cfg.node_concurrency, with_leases).await;
    r.node_create = registered.elapsed;
    r.node_errors = registered.errors;
    if let Some(e) = &registered.first_error {
        eprintln!("  ! {} node creates failed, first: {e}", r.node_errors);
    }
    let (renewed, renew_failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let latest_leases = registered.leases;
    let lease_keeper = with_leases.then(|| {
        keep_leases_fresh(
            client.clone(),
            names.clone(),
            latest_leases,
            cfg.lease_renew,
            renewed.clone(),
            renew_failed.clone(),
        )
    });

    if scheduler_in == SchedulerIn::Process {
        eprintln!("  starting the scheduler");
        cluster.start_scheduler(&cfg.binary);
    }
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    // A warm-up pod proves the scheduler is up with its watches running.
    pods_api
        .create(&PostParams::default(), &{
            let mut p = pod(0, None);
            p.metadata.name = Some("warmup".into());
            p
        })
        .await
        .expect("warm-up pod");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let p = pods_api.get("warmup").await.expect("warm-up pod");
        if p.spec.and_then(|s| s.node_name).is_some() {
            break;
        }
        let sched = cluster
            .scheduler
            .as_mut()
            .unwrap_or(&mut cluster.server.process);
        if Instant::now() > deadline || sched.exited() {
            panic!(
                "the warm-up pod was not scheduled in 60s; the scheduler's log:\n{}",
                sched.log_tail()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let server_pid = cluster.server.process.pid();
    let scheduler_pid = cluster.scheduler.as_ref().and_then(Supervised::pid);
    eprintln!(
        "  server pid {server_pid:?}, scheduler pid {scheduler_pid:?}; data in {}",
        cluster.server.dir.path().display()
    );

    // The watch that sees the bindings, running before the first create.
    let n = cfg.pods;
    let t0 = Instant::now();
    let nanos = |t: Instant| t.saturating_duration_since(t0).as_nanos() as u64;
    let created_at: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let bound_count = Arc::new(AtomicU64::new(0));
    let created_count = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let watch = {
        let api: Api<PodPlacement> = Api::namespaced(client.clone(), NAMESPACE);
        let bound_count = bound_count.clone();
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut bound_at: Vec<Option<Instant>> = vec![None; n];
            let mut seen = HashSet::new();
            let mut last = None;
            let mut stream = watcher(api, watcher::Config::default()).boxed();
            while let Some(event) = stream.next().await {
                let pod = match event {
                    Ok(watcher::Event::InitDone) => {
                        if let Some(tx) = ready.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
                    Ok(_) => continue,
                    Err(e) => {
                        eprintln!("  ! bench watch: {e}");
                        continue;
                    }
                };
                let bound = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| !n.is_empty());
                let Some(i) = pod
                    .metadata
                    .name
                    .as_deref()
                    .and_then(|n| n.strip_prefix("pod-"))
                    .and_then(|i| i.parse::<usize>().ok())
                    .filter(|&i| i < n)
                else {
                    continue;
                };
                if bound && seen.insert(i) {
                    let now = Instant::now();
                    bound_at[i] = Some(now);
                    last = Some(now);
                    if bound_count.fetch_add(1, Ordering::Relaxed) + 1 == n as u64 {
                        break;
                    }
                }
            }
            (bound_at, last)
        })
    };
    ready_rx.await.expect("the bench watch started");

    // Progress, once a second.
    let progress_samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let progress = {
        let (bound_count, created_count, samples) = (
            bound_count.clone(),
            created_count.clone(),
            progress_samples.clone(),
        );
        tokio::spawn(async move {
            let start = Instant::now();
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let s = (
                    start.elapsed().as_secs_f64(),
                    created_count.load(Ordering::Relaxed),
                    bound_count.load(Ordering::Relaxed),
                );
                eprintln!("    {:5.1}s created {:6} bound {:6}", s.0, s.1, s.2);
                samples.lock().expect("samples").push(s);
            }
        })
    };

    let perf: Vec<PerfRecord> = match &cfg.perf_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).expect("perf dir");
            [("server", server_pid), ("scheduler", scheduler_pid)]
                .into_iter()
                .filter_map(|(name, pid)| {
                    PerfRecord::start(pid?, &dir.join(format!("{name}.perf.data")))
                })
                .collect()
        }
        None => Vec::new(),
    };
    // The request bodies are encoded before the clock starts; responses are decoded as
    // `PodPlacement` (name and node only), as the watch does.
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..n)
            .map(|i| serde_json::to_vec(&pod(i, None)).expect("pod JSON"))
            .collect(),
    );
    let create_path = Arc::new(format!("/api/v1/namespaces/{NAMESPACE}/pods"));
    let threads_before = server_pid.map(thread_times).unwrap_or_default();
    let cpu_before = (
        server_pid.and_then(cpu_time),
        scheduler_pid.and_then(cpu_time),
        cpu_time(std::process::id()),
    );
    let renewed_before = renewed.load(Ordering::Relaxed);

    eprintln!("  creating {n} pods, {} in flight", cfg.pod_concurrency);
    let t_first = Instant::now();
    let results: Vec<Result<(), String>> = futures::stream::iter(0..n)
        .map(|i| {
            let (client, created_at, created_count) =
                (client.clone(), created_at.clone(), created_count.clone());
            let (bodies, create_path) = (bodies.clone(), create_path.clone());
            async move {
                created_at[i].store(nanos(Instant::now()).max(1), Ordering::Relaxed);
                let request = http::Request::post(create_path.as_str())
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(bodies[i].clone())
                    .map_err(|e| e.to_string());
                let out = match request {
                    Ok(request) => client
                        .request::<PodPlacement>(request)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                };
                created_count.fetch_add(1, Ordering::Relaxed);
                out
            }
        })
        .buffer_unordered(cfg.pod_concurrency)
        .collect()
        .await;
    let t_last_create = Instant::now();
    r.create = t_last_create - t_first;
    r.create_errors = results.iter().filter(|x| x.is_err()).count();
    r.first_create_error = results.into_iter().find_map(Result::err);

    let watched = tokio::time::timeout(cfg.timeout, watch).await;
    let t_done = Instant::now();
    let threads_after = server_pid.map(thread_times).unwrap_or_default();
    let cpu_after = (
        server_pid.and_then(cpu_time),
        scheduler_pid.and_then(cpu_time),
        cpu_time(std::process::id()),
    );
    drop(perf);
    progress.abort();
    if let Some(keeper) = lease_keeper {
        keeper.abort();
    }
    r.lease_renewals = renewed.load(Ordering::Relaxed) - renewed_before;
    r.lease_failures = renew_failed.load(Ordering::Relaxed);
    r.progress = progress_samples.lock().expect("samples").clone();
    r.cpu_server = cpu_after.0.zip(cpu_before.0).map(|(a, b)| a - b);
    r.cpu_scheduler = cpu_after.1.zip(cpu_before.1).map(|(a, b)| a - b);
    r.cpu_bench = cpu_after.2.zip(cpu_before.2).map(|(a, b)| a - b);
    r.server_threads = thread_times_between(&threads_before, threads_after);
    r.rss_server = server_pid.and_then(rss_mib);
    r.rss_scheduler = scheduler_pid.and_then(rss_mib);
    r.scheduled = bound_count.load(Ordering::Relaxed) as usize;
    match watched {
        Ok(Ok((bound_at, last))) => {
            let last = last.unwrap_or(t_done);
            r.to_last_bound = last - t_first;
            r.tail = last.saturating_duration_since(t_last_create);
            let latencies = bound_at
                .iter()
                .enumerate()
                .filter_map(|(i, b)| {
                    let c = created_at[i].load(Ordering::Relaxed);
                    let b = (*b)?;
                    (c > 0).then(|| Duration::from_nanos(nanos(b).saturating_sub(c)))
                })
                .collect();
            r.latency = Some(Samples::new(latencies));
        }
        Ok(Err(e)) => panic!("the bench watch failed: {e}"),
        Err(_) => {
            r.timed_out = true;
            r.to_last_bound = t_done - t_first;
            eprintln!(
                "  ! only {} of {n} pods bound within {:.0}s; the scheduler's log:\n{}",
                r.scheduled,
                cfg.timeout.as_secs_f64(),
                cluster
                    .scheduler
                    .as_ref()
                    .unwrap_or(&cluster.server.process)
                    .log_tail()
            );
        }
    }
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .expect("cluster stop");
    r
}

// ---- output ----

impl E2eResult {
    fn setup(&self) -> &'static str {
        match self.scheduler_in {
            Some(SchedulerIn::Process) => "skiff server (embedded) + a skiff scheduler process",
            _ => "skiff server (embedded) running its own scheduler (the default)",
        }
    }
}

fn print_algorithm(cfg: &Config, a: &AlgorithmResult) {
    let mut t = table(vec![
        "nodes",
        "pods",
        "scheduled",
        "pods/s",
        "µs/pod mean",
        "p50",
        "p99",
        "max",
        "snapshot update p50",
        "schedule p50",
        "state drop p50",
        "assume p50",
        "nodes evaluated",
        "pods/node min–max",
    ]);
    t.add_row(vec![
        cfg.nodes.to_string(),
        cfg.pods.to_string(),
        a.scheduled.to_string(),
        format!("{:.0}", rate(a.scheduled, a.elapsed)),
        us(a.total.mean()),
        us(a.total.pct(0.5)),
        us(a.total.pct(0.99)),
        us(a.total.max()),
        us(a.snapshot.pct(0.5)),
        us(a.schedule.pct(0.5)),
        us(a.state_drop.pct(0.5)),
        us(a.assume.pct(0.5)),
        format!("{:.0}", a.evaluated_mean),
        format!("{}–{}", a.pods_per_node.0, a.pods_per_node.1),
    ]);
    align(&mut t, 0);
    print_section(
        format!(
            "1. The algorithm alone, in process (cache.update_snapshot → \
             default_framework().schedule → drop the cycle state → assume, one pod after \
             another; µs per pod)\n\
             p99 of snapshot update / schedule / state drop / assume: {} / {} / {} / {} µs",
            us(a.snapshot.pct(0.99)),
            us(a.schedule.pct(0.99)),
            us(a.state_drop.pct(0.99)),
            us(a.assume.pct(0.99))
        ),
        &t,
    );
    if a.failed > 0 {
        println!(
            "  ! {} pods failed to schedule, first: {}",
            a.failed,
            a.first_error.as_deref().unwrap_or("?")
        );
    }
}

fn per_pod(cpu: Option<Duration>, pods: usize) -> String {
    match cpu {
        Some(c) if pods > 0 => format!(
            "{:.2} s ({:.0} µs/pod)",
            c.as_secs_f64(),
            c.as_secs_f64() * 1e6 / pods as f64
        ),
        _ => "-".into(),
    }
}

fn print_e2e(cfg: &Config, e: &E2eResult) {
    let mut t = table(vec![
        "nodes",
        "node creates/s",
        "pods",
        "pod creates/s",
        "scheduled",
        "e2e pods/s",
        "first create → last bound s",
        "last create → last bound s",
        "create→bound p50 ms",
        "p99 ms",
        "max ms",
    ]);
    let lat = e.latency.as_ref();
    t.add_row(vec![
        cfg.nodes.to_string(),
        format!("{:.0}", rate(cfg.nodes - e.node_errors, e.node_create)),
        e.pods.to_string(),
        format!("{:.0}", rate(e.pods - e.create_errors, e.create)),
        e.scheduled.to_string(),
        format!("{:.0}", rate(e.scheduled, e.to_last_bound)),
        format!("{:.2}", e.to_last_bound.as_secs_f64()),
        format!("{:.2}", e.tail.as_secs_f64()),
        lat.map_or("-".into(), |l| ms(l.pct(0.5))),
        lat.map_or("-".into(), |l| ms(l.pct(0.99))),
        lat.map_or("-".into(), |l| ms(l.max())),
    ]);
    align(&mut t, 0);
    print_section(
        format!(
            "2. End to end: {}, {} node creates and {} pod creates in flight; e2e = pods bound / \
             (first pod create → last binding seen on a watch)",
            e.setup(),
            cfg.node_concurrency,
            cfg.pod_concurrency
        ),
        &t,
    );
    let mut t = table(vec![
        "process",
        "CPU during the pod phase",
        "RSS at end MiB",
    ]);
    let in_server = e.scheduler_in == Some(SchedulerIn::Server);
    t.add_row(vec![
        if in_server {
            "skiff server (with its scheduler)"
        } else {
            "skiff server"
        }
        .to_string(),
        per_pod(e.cpu_server, e.pods),
        e.rss_server.map_or("-".into(), |m| format!("{m:.0}")),
    ]);
    for (name, run, wait) in &e.server_threads {
        t.add_row(vec![
            format!(
                "  threads {name} (ready but waiting for a CPU: {:.2} s)",
                wait.as_secs_f64()
            ),
            per_pod(Some(*run), e.pods),
            String::new(),
        ]);
    }
    if !in_server {
        t.add_row(vec![
            "skiff scheduler".to_string(),
            per_pod(e.cpu_scheduler, e.pods),
            e.rss_scheduler.map_or("-".into(), |m| format!("{m:.0}")),
        ]);
    }
    t.add_row(vec![
        "benchmark client".to_string(),
        per_pod(e.cpu_bench, e.pods),
        rss_mib(std::process::id()).map_or("-".into(), |m| format!("{m:.0}")),
    ]);
    align(&mut t, 1);
    print_section(
        format!(
            "CPU time used from the first pod create to the last binding ({:.2} s wall, {} cores)",
            e.to_last_bound.as_secs_f64(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ),
        &t,
    );
    if !e.progress.is_empty() {
        let shown: Vec<String> = e
            .progress
            .iter()
            .map(|(s, c, b)| format!("{s:.0}s {c}/{b}"))
            .collect();
        println!("progress (created/bound, per second): {}", shown.join(", "));
    }
    if cfg.lease_renew.is_zero() {
        println!("node Leases: none (SCHED_BENCH_LEASE_RENEW_SECS=0)");
    } else {
        println!(
            "node Leases: {} renewed during the pod phase ({:.0}/s, each every {:.0} s); {} \
             renewals failed",
            e.lease_renewals,
            rate(e.lease_renewals as usize, e.to_last_bound),
            cfg.lease_renew.as_secs_f64(),
            e.lease_failures
        );
    }
    if e.create_errors > 0 {
        println!(
            "  ! {} pod creates failed, first: {}",
            e.create_errors,
            e.first_create_error.as_deref().unwrap_or("?")
        );
    }
    if e.timed_out {
        println!(
            "  ! timed out after {:.0}s with {} of {} pods bound",
            cfg.timeout.as_secs_f64(),
            e.scheduled,
            e.pods
        );
    }
}

fn print_targets(cfg: &Config, a: Option<&AlgorithmResult>, runs: &[E2eResult]) {
    let mut t = table(vec!["target", "measured", "result"]);
    for e in runs {
        let r = rate(e.scheduled, e.to_last_bound);
        t.add_row(vec![
            format!(
                "end to end ≥ {TARGET_PODS_PER_SEC:.0} pods/s ({} nodes, {} pods, all bound; {})",
                cfg.nodes,
                cfg.pods,
                e.setup()
            ),
            format!("{r:.0} pods/s"),
            pass(r >= TARGET_PODS_PER_SEC && e.scheduled == e.pods && !e.timed_out).to_string(),
        ]);
    }
    if let Some(a) = a {
        let r = rate(a.scheduled, a.elapsed);
        t.add_row(vec![
            format!("(for reference) the algorithm alone ≥ {TARGET_PODS_PER_SEC:.0} pods/s"),
            format!("{r:.0} pods/s"),
            pass(r >= TARGET_PODS_PER_SEC && a.failed == 0).to_string(),
        ]);
    }
    print_section("Targets", &t);
}

// ---- main ----

fn main() {
    // kube (ring) and reqwest (aws-lc-rs) together enable two rustls providers; pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = Config::from_env();
    let profile = if cfg.binary.components().any(|c| c.as_os_str() == "debug") {
        "DEBUG BUILD: numbers mean little"
    } else {
        "release"
    };
    println!(
        "skiff scheduler benchmark (SchedulingBasic): {} nodes, {} pods; server {} ({profile}); \
         {} cores",
        cfg.nodes,
        cfg.pods,
        cfg.binary.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!("load average at start: {}", load_average());
    let algorithm = cfg.algorithm.then(|| {
        eprintln!("== the algorithm alone");
        algorithm_phase(&cfg)
    });
    if let Some(a) = &algorithm {
        print_algorithm(&cfg, a);
    }
    let mut runs = Vec::new();
    for (wanted, scheduler_in) in [
        (cfg.e2e, SchedulerIn::Server),
        (cfg.e2e_separate, SchedulerIn::Process),
    ] {
        if !wanted {
            continue;
        }
        let run = E2eResult {
            scheduler_in: Some(scheduler_in),
            ..Default::default()
        };
        eprintln!("== end to end: {}", run.setup());
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        let run = runtime.block_on(e2e_phase(&cfg, scheduler_in));
        print_e2e(&cfg, &run);
        runs.push(run);
    }
    print_targets(&cfg, algorithm.as_ref(), &runs);
    println!("\nload average at end: {}", load_average());
}
