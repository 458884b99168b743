//! The Deployment benchmark: `cargo bench --bench deployment` (see BENCHMARKS.md).
//!
//! A release `skiff server` as it runs by default — its scheduler and its controller manager
//! in process — with Node objects only (scheduler_perf's node template, their Leases renewed
//! as kubelets do), and the benchmark standing in for the kubelets: a pod bound to a node is
//! marked Running and Ready through the status subresource, a pod being deleted is confirmed
//! gone (deleted with grace period 0, as a kubelet does once its containers stopped).
//!
//! 1. **Scale-out**: a Deployment of `DEPLOY_BENCH_REPLICAS` (1,000) replicas is created; the
//!    times until all its pods exist, are bound, and the Deployment reports them all available.
//! 2. **Rolling update**: the pod template's image changes (RollingUpdate, 25% surge and 25%
//!    unavailable, the defaults); the time until the rollout is complete as `kubectl rollout
//!    status` judges it (observedGeneration current, every replica updated and available, no
//!    old replica left).
//!
//! Knobs: `DEPLOY_BENCH_REPLICAS` [1000], `DEPLOY_BENCH_NODES` [100],
//! `DEPLOY_BENCH_TIMEOUT_SECS` [300], `SKIFF_BENCH_BIN` [the `skiff` cargo built].
//! Every process it starts is its child on 127.0.0.1 and is killed by PID when done.

#[path = "support/mod.rs"]
mod support;
use support::*;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

const NAMESPACE: &str = "deploy-bench";
const NAME: &str = "web";

struct Config {
    replicas: usize,
    nodes: usize,
    timeout: Duration,
    binary: PathBuf,
}

/// Counts the kubelet stand-in keeps, per phase.
#[derive(Default)]
struct Counters {
    /// Pods seen (ADDED) and bound, by uid.
    seen: Mutex<HashSet<String>>,
    /// Pods seen per ReplicaSet (their `pod-template-hash`), in order of first sight.
    per_hash: Mutex<Vec<(String, usize)>>,
    bound: Mutex<HashSet<String>>,
    /// Pods marked Ready and pods confirmed deleted.
    readied: AtomicU64,
    removed: AtomicU64,
    failures: AtomicU64,
}

/// Plays every node's kubelet for the benchmark's namespace until aborted.
fn kubelets(client: Client, counters: Arc<Counters>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let pods: Api<Pod> = Api::namespaced(client, NAMESPACE);
        // Status writes and deletions in flight at once (kubelets work in parallel).
        let in_flight = Arc::new(tokio::sync::Semaphore::new(64));
        let mut handled: HashSet<(String, bool)> = HashSet::new();
        let mut events = watcher(pods.clone(), watcher::Config::default()).boxed();
        while let Some(event) = events.next().await {
            let pod = match event {
                Ok(watcher::Event::Apply(p)) | Ok(watcher::Event::InitApply(p)) => p,
                Ok(_) => continue,
                Err(_) => {
                    counters.failures.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            let Some(uid) = pod.uid() else { continue };
            if counters.seen.lock().expect("counters").insert(uid.clone()) {
                let hash = pod
                    .labels()
                    .get("pod-template-hash")
                    .cloned()
                    .unwrap_or_default();
                let mut per_hash = counters.per_hash.lock().expect("counters");
                match per_hash.iter_mut().find(|(h, _)| *h == hash) {
                    Some((_, n)) => *n += 1,
                    None => per_hash.push((hash, 1)),
                }
            }
            let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
            if node.is_some() {
                counters.bound.lock().expect("counters").insert(uid.clone());
            }
            let deleting = pod.metadata.deletion_timestamp.is_some();
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let act = if deleting {
                true
            } else {
                node.is_some() && !ready
            };
            if !act || !handled.insert((uid.clone(), deleting)) {
                continue;
            }
            let (pods, counters, permit) = (
                pods.clone(),
                counters.clone(),
                in_flight.clone().acquire_owned().await,
            );
            let name = pod.name_any();
            let ip = format!(
                "10.244.{}.{}",
                handled.len() / 250 % 250,
                handled.len() % 250 + 1
            );
            tokio::spawn(async move {
                let _permit = permit;
                let result = if deleting {
                    pods.delete(&name, &DeleteParams::default().grace_period(0))
                        .await
                        .map(|_| &counters.removed)
                } else {
                    let now = k8s_openapi::jiff::Timestamp::now().to_string();
                    let status = json!({"status": {
                        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                        "startTime": now,
                        "conditions": [
                            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                            {"type": "Ready", "status": "True", "lastTransitionTime": now},
                        ],
                    }});
                    pods.patch_status(&name, &PatchParams::default(), &Patch::Strategic(status))
                        .await
                        .map(|_| &counters.readied)
                };
                match result {
                    Ok(counter) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    // Gone meanwhile (a scale-down or rollout can beat the status write).
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(_) => {
                        counters.failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    })
}

fn deployment(replicas: usize, image: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": NAME},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": {"app": NAME}},
                "spec": {"containers": [{"name": "c", "image": image,
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
            },
        },
    }))
    .expect("deployment")
}

/// `kubectl rollout status`'s verdict: the controller saw the latest spec, and every replica
/// is updated and available with no old one left.
fn rolled_out(d: &Deployment, replicas: usize) -> bool {
    let (Some(status), Some(generation)) = (d.status.as_ref(), d.metadata.generation) else {
        return false;
    };
    let n = replicas as i32;
    status.observed_generation.unwrap_or(0) >= generation
        && status.updated_replicas.unwrap_or(0) == n
        && status.replicas.unwrap_or(0) == n
        && status.available_replicas.unwrap_or(0) == n
}

/// What one phase measured.
struct Phase {
    name: &'static str,
    /// When the pods existed and were bound (scale-out only), and when done.
    all_created: Option<Duration>,
    all_bound: Option<Duration>,
    done: Option<Duration>,
    pods: usize,
    server_cpu: Option<Duration>,
    rss: Option<f64>,
}

async fn run_phase(
    name: &'static str,
    cfg: &Config,
    deployments: &Api<Deployment>,
    counters: &Counters,
    server_pid: Option<u32>,
    change: impl std::future::Future<Output = ()>,
) -> Phase {
    let cpu_before = server_pid.and_then(cpu_time);
    let (seen_before, bound_before) = (
        counters.seen.lock().expect("counters").len(),
        counters.bound.lock().expect("counters").len(),
    );
    let t0 = Instant::now();
    change.await;
    let (mut all_created, mut all_bound, mut done) = (None, None, None);
    let deadline = t0 + cfg.timeout;
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    while done.is_none() && Instant::now() < deadline {
        ticker.tick().await;
        let seen = counters.seen.lock().expect("counters").len() - seen_before;
        let bound = counters.bound.lock().expect("counters").len() - bound_before;
        if all_created.is_none() && seen >= cfg.replicas {
            all_created = Some(t0.elapsed());
        }
        if all_bound.is_none() && bound >= cfg.replicas {
            all_bound = Some(t0.elapsed());
        }
        if let Ok(d) = deployments.get_status(NAME).await
            && rolled_out(&d, cfg.replicas)
        {
            done = Some(t0.elapsed());
        }
    }
    if done.is_none() {
        eprintln!(
            "  ! {name}: not done within {:.0}s",
            cfg.timeout.as_secs_f64()
        );
    }
    let pods = counters.seen.lock().expect("counters").len() - seen_before;
    Phase {
        name,
        all_created,
        all_bound,
        done,
        pods,
        server_cpu: match (cpu_before, server_pid.and_then(cpu_time)) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        },
        rss: server_pid.and_then(rss_mib),
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or_else(|| "—".into(), |d| format!("{:.2}", d.as_secs_f64()))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = Config {
        replicas: env_or("DEPLOY_BENCH_REPLICAS", 1000),
        nodes: env_or("DEPLOY_BENCH_NODES", 100),
        timeout: Duration::from_secs_f64(env_or("DEPLOY_BENCH_TIMEOUT_SECS", 300.0)),
        binary: std::env::var_os("SKIFF_BENCH_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_skiff"))),
    };
    println!(
        "Deployment benchmark: {} replicas on {} nodes, skiff server with its scheduler and \
         controller manager ({}), load average {}",
        cfg.replicas,
        cfg.nodes,
        cfg.binary.display(),
        load_average()
    );
    let server = ServerProcess::start(&cfg.binary, "skiff-deploy-bench-", &[]);
    let server_pid = server.process.pid();
    let client = server.client();
    let names: Vec<String> = (0..cfg.nodes).map(|i| format!("node-{i}")).collect();
    let registered = register_nodes(&client, &names, 32, true).await;
    assert_eq!(
        registered.errors, 0,
        "registering nodes: {:?}",
        registered.first_error
    );
    let (renewed, renew_failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let leases = keep_leases_fresh(
        client.clone(),
        names,
        registered.leases,
        Duration::from_secs(10),
        renewed,
        renew_failed,
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
    let counters = Arc::new(Counters::default());
    let kubelets = kubelets(client.clone(), counters.clone());
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);

    let scale_out = run_phase(
        "scale-out: create",
        &cfg,
        &deployments,
        &counters,
        server_pid,
        async {
            deployments
                .create(
                    &PostParams::default(),
                    &deployment(cfg.replicas, "busybox:1"),
                )
                .await
                .expect("create deployment");
        },
    )
    .await;
    let rollout = run_phase(
        "rolling update: new image",
        &cfg,
        &deployments,
        &counters,
        server_pid,
        async {
            let patch = json!({"spec": {"template": {"spec": {"containers": [
                {"name": "c", "image": "busybox:2"}]}}}});
            deployments
                .patch(NAME, &PatchParams::default(), &Patch::Strategic(patch))
                .await
                .expect("update the image");
        },
    )
    .await;
    kubelets.abort();
    leases.abort();
    let final_sizes: Vec<String> =
        match Api::<k8s_openapi::api::apps::v1::ReplicaSet>::namespaced(client.clone(), NAMESPACE)
            .list(&Default::default())
            .await
        {
            Ok(list) => list
                .items
                .iter()
                .map(|rs| {
                    let hash = rs
                        .labels()
                        .get("pod-template-hash")
                        .cloned()
                        .unwrap_or_default();
                    format!("{hash}: {}", rs.spec.replicas.unwrap_or(0))
                })
                .collect(),
            Err(e) => vec![format!("listing ReplicaSets: {e}")],
        };

    let mut t = table(vec![
        "phase",
        "replicas",
        "pods created",
        "all pods created s",
        "all bound s",
        "done s",
        "pods/s",
        "server CPU s",
        "server RSS MiB",
    ]);
    for p in [&scale_out, &rollout] {
        t.add_row(vec![
            p.name.to_string(),
            cfg.replicas.to_string(),
            p.pods.to_string(),
            secs(p.all_created),
            secs(p.all_bound),
            secs(p.done),
            p.done
                .map_or_else(|| "—".into(), |d| format!("{:.0}", rate(p.pods, d))),
            p.server_cpu
                .map_or_else(|| "—".into(), |d| format!("{:.2}", d.as_secs_f64())),
            p.rss.map_or_else(|| "—".into(), |r| format!("{r:.0}")),
        ]);
    }
    align(&mut t, 1);
    print_section(
        "done = the Deployment reports every replica updated and available (rollout status); \
         pods/s = pods created in the phase / done",
        &t,
    );
    let per_hash: Vec<String> = counters
        .per_hash
        .lock()
        .expect("counters")
        .iter()
        .map(|(h, n)| format!("{h}: {n}"))
        .collect();
    println!(
        "pods created per ReplicaSet (pod-template-hash), both phases: {}; their final sizes: {}",
        per_hash.join(", "),
        final_sizes.join(", ")
    );
    println!(
        "kubelet stand-in: {} pods marked Ready, {} confirmed deleted, {} failed writes; \
         load average at end: {}",
        counters.readied.load(Ordering::Relaxed),
        counters.removed.load(Ordering::Relaxed),
        counters.failures.load(Ordering::Relaxed),
        load_average()
    );
    drop(server);
}
