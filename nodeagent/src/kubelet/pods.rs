//! The pods bound to this node: a watch (fieldSelector `spec.nodeName`), one worker task per
//! pod, and what a worker does — kubelet's pod workers and `SyncPod`:
//!
//! - syncing: sandbox (namespaces, cgroup, network) → volumes → init containers one by one
//!   → the containers; exited ones restart per restartPolicy with back-off (10 s doubling to
//!   5 min, counted from the restart count, so an agent restart keeps it); the status is
//!   written whenever it changes.
//! - terminating (deletionTimestamp, or the pod left the API): preStop, SIGTERM, SIGKILL when
//!   the grace period is up, then the sandbox, network and volumes go.
//! - terminated: the pod object is deleted (grace 0, uid precondition) once nothing runs;
//!   a pod that ended by itself (Succeeded/Failed) keeps its status until it is deleted.
//!
//! The runtime is the record of what runs: each sync lists the pod's runtime containers (by
//! the names in [`crate::naming`]), so a restarted agent picks up where it was.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use nix::sys::signal::Signal;
use oci_spec::runtime::LinuxNamespaceType;
use serde_json::json;
use skiff_runtime::container::{
    ContainerState, ContainerStatus, CreateOptions, RuntimeError, StdioConfig,
};
use skiff_runtime::image::{Image, PullOptions};
use skiff_runtime::sandbox::SandboxConfig;
use tokio::sync::{Notify, watch};

use super::containers::{self, ContainerFiles};
use super::env::{self, Sources};
use super::prober::Prober;
use super::status::{self, Attempt, AttemptState, Observed};
use super::{Shared, volumes};
use crate::naming;
use crate::network::{HostPortMapping, dns};
use skiff_client::record::{EventType, object_reference};

const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const LOG_MAX_BYTES: u64 = 10 * 1024 * 1024;
const LOG_MAX_FILES: usize = 5;
/// kubelet's default when a pod has no deletionGracePeriodSeconds.
const DEFAULT_GRACE: i64 = 30;

/// How long to wait before starting attempt `restarts + 1` after attempt `restarts` ended:
/// the first restart is immediate, then 10 s doubling up to 5 min (kubelet's back-off).
pub fn restart_delay(restarts: u32) -> Duration {
    if restarts == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(restarts - 1).unwrap_or(u32::MAX);
    INITIAL_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

struct Worker {
    tx: watch::Sender<Option<Arc<Pod>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Watches the node's pods and keeps one worker per pod.
pub async fn run(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::all(shared.client.clone());
    let config =
        watcher::Config::default().fields(&format!("spec.nodeName={}", shared.config.node_name));
    // Without managedFields, as upstream's informers keep them: nothing here reads them, and
    // every worker holds its pod.
    let mut events = watcher(api, config)
        .default_backoff()
        .modify(|pod: &mut Pod| pod.metadata.managed_fields = None)
        .boxed();
    let mut workers: HashMap<String, Worker> = HashMap::new();
    let mut listing: HashMap<String, Arc<Pod>> = HashMap::new();
    let mut orphans_checked = false;
    while let Some(event) = events.next().await {
        workers.retain(|_, w| !w.task.is_finished());
        match event {
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitApply(p)) => {
                if let Some(uid) = p.uid() {
                    listing.insert(uid, Arc::new(p));
                }
            }
            Ok(watcher::Event::InitDone) => {
                let known: HashSet<String> = listing.keys().cloned().collect();
                for (uid, pod) in listing.drain() {
                    dispatch(&shared, &mut workers, &uid, Some(pod));
                }
                let gone: Vec<String> = workers
                    .keys()
                    .filter(|uid| !known.contains(*uid))
                    .cloned()
                    .collect();
                for uid in gone {
                    dispatch(&shared, &mut workers, &uid, None);
                }
                if !orphans_checked {
                    orphans_checked = true;
                    tokio::spawn(remove_orphans(shared.clone(), known));
                }
            }
            Ok(watcher::Event::Apply(p)) => {
                if let Some(uid) = p.uid() {
                    dispatch(&shared, &mut workers, &uid, Some(Arc::new(p)));
                }
            }
            Ok(watcher::Event::Delete(p)) => {
                if let Some(uid) = p.uid() {
                    dispatch(&shared, &mut workers, &uid, None);
                }
            }
            Err(e) => tracing::debug!(error = %e, "pod watch"),
        }
    }
}

fn dispatch(
    shared: &Arc<Shared>,
    workers: &mut HashMap<String, Worker>,
    uid: &str,
    pod: Option<Arc<Pod>>,
) {
    if let Some(w) = workers.get(uid)
        && !w.task.is_finished()
    {
        w.tx.send_replace(pod);
        return;
    }
    let Some(pod) = pod else { return };
    let (tx, rx) = watch::channel(Some(pod));
    let task = tokio::spawn(worker(shared.clone(), uid.to_string(), rx));
    workers.insert(uid.to_string(), Worker { tx, task });
}

/// What a worker remembers between syncs (all of it can be rebuilt after a restart).
#[derive(Default)]
struct Memory {
    pod_ip: Option<Ipv4Addr>,
    /// Runtime ids whose exit a task is waiting for.
    watched: HashSet<String>,
    /// Image pull failures: container → (failures, when the last one happened).
    pull_failures: HashMap<String, (u32, std::time::Instant)>,
    last_status: Option<serde_json::Value>,
    terminated: bool,
    /// The pod reached Succeeded or Failed on its own.
    finished: bool,
    prober: Option<Prober>,
    /// Runtime ids being stopped after a failed liveness probe.
    killing: HashSet<String>,
    /// (container, reason, detail) of the waiting-state Events already recorded, so a state
    /// that lasts many syncs is one Event (upstream's correlator counts them instead).
    reported: HashSet<(String, String, String)>,
    /// The runtime ids of the pod's containers (not its sandbox) as of the last observation,
    /// in id order; `None` until the first, which lists the runtime's state directory. Later
    /// ones read just these and those the worker started since, as kubelet reads its PLEG
    /// cache rather than the runtime: a listing reads every container on the node, and a
    /// burst of pods made it quadratic.
    container_ids: Option<std::collections::BTreeSet<String>>,
    /// What [`write_pod_files`] last wrote.
    pod_files: Option<PodFiles>,
}

async fn worker(shared: Arc<Shared>, uid: String, mut rx: watch::Receiver<Option<Arc<Pod>>>) {
    let wake = Arc::new(Notify::new());
    let mut memory = Memory::default();
    let mut last_pod: Option<Arc<Pod>> = None;
    loop {
        let current = rx.borrow_and_update().clone();
        let next = match current {
            None => {
                // The pod object is gone: stop what is left at once and forget the pod.
                terminate(&shared, &uid, last_pod.as_deref(), 0).await;
                remove_pod_files(&shared, &uid, last_pod.as_deref()).await;
                shared.sources.release(&uid);
                tracing::info!(uid, "pod removed");
                return;
            }
            Some(pod) => {
                last_pod = Some(pod.clone());
                if pod.metadata.deletion_timestamp.is_some() {
                    if !memory.terminated {
                        memory.prober = None;
                        let grace = pod
                            .metadata
                            .deletion_grace_period_seconds
                            .unwrap_or(DEFAULT_GRACE);
                        terminate(&shared, &uid, Some(&pod), grace).await;
                        memory.terminated = true;
                        let _ = write_status(&shared, &pod, &mut memory, &wake, false).await;
                    }
                    delete_pod_object(&shared, &pod).await
                } else if memory.finished {
                    None
                } else if matches!(status_phase(&pod), "Succeeded" | "Failed") {
                    // Ended before (e.g. before an agent restart): terminal pods never run again.
                    memory.finished = true;
                    stop_sandbox(&shared, &uid).await;
                    None
                } else {
                    match sync_pod(&shared, &pod, &mut memory, &wake).await {
                        Ok(next) => next,
                        Err(e) => {
                            tracing::warn!(pod = %key(&pod), error = %e, "sync failed");
                            Some(Duration::from_secs(2))
                        }
                    }
                }
            }
        };
        let sleep = next
            .unwrap_or(shared.config.sync_period)
            .min(shared.config.sync_period);
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

/// Records an Event about the pod, or one of its containers (kubelet's fieldPath
/// `spec.containers{name}`), without holding the sync up.
fn event(
    shared: &Arc<Shared>,
    pod: &Pod,
    container: Option<&str>,
    kind: EventType,
    reason: &'static str,
    message: String,
) {
    let mut involved = object_reference(pod);
    if let Some(name) = container {
        let init = pod
            .spec
            .as_ref()
            .and_then(|s| s.init_containers.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.name == name));
        let list = if init { "initContainers" } else { "containers" };
        involved.field_path = Some(format!("spec.{list}{{{name}}}"));
    }
    let recorder = shared.recorder.clone();
    tokio::spawn(async move { recorder.record_for(involved, kind, reason, message).await });
}

fn status_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn pod_dir(shared: &Shared, uid: &str) -> PathBuf {
    shared.config.pods_dir().join(uid)
}

/// The pod's runtime containers (not its sandbox), through the worker's memory of their ids
/// (see [`Memory::container_ids`]).
async fn observe_known(
    shared: &Arc<Shared>,
    uid: &str,
    memory: &mut Memory,
) -> Vec<ContainerState> {
    let known = match memory.container_ids.clone() {
        Some(ids) => {
            let runtime = shared.runtime.clone();
            tokio::task::spawn_blocking(move || {
                let mut records = Vec::new();
                for id in ids {
                    match runtime.state(&id) {
                        Ok(r) => records.push(r),
                        // Removed (an old attempt pruned, the pod's containers removed).
                        Err(RuntimeError::NotFound(_)) => {}
                        // Unreadable for now: list the directory instead.
                        Err(_) => return None,
                    }
                }
                Some(records)
            })
            .await
            .ok()
            .flatten()
        }
        None => None,
    };
    let records = match known {
        Some(records) => records,
        None => observe(shared, uid).await,
    };
    memory.container_ids = Some(records.iter().map(|r| r.id().to_string()).collect());
    records
}

/// The pod's runtime containers (not its sandbox), from a listing of the runtime.
async fn observe(shared: &Arc<Shared>, uid: &str) -> Vec<ContainerState> {
    let runtime = shared.runtime.clone();
    let uid = uid.to_string();
    tokio::task::spawn_blocking(move || {
        // The pod's containers are named after its uid: read only theirs.
        runtime
            .list_ids(|id| id.starts_with(uid.as_str()))
            .unwrap_or_default()
            .into_iter()
            .filter(|c| {
                c.stored.labels.get(naming::LABEL_POD_UID) == Some(&uid)
                    && c.stored
                        .labels
                        .get(naming::LABEL_CONTAINER_KIND)
                        .map(String::as_str)
                        != Some("sandbox")
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}

fn attempts_of(
    records: &[ContainerState],
    termination_logs: &Path,
) -> HashMap<String, Vec<Attempt>> {
    let mut out: HashMap<String, Vec<Attempt>> = HashMap::new();
    for r in records {
        let Some((_, name, attempt)) = naming::parse_container_id(r.id()) else {
            continue;
        };
        let started = r.stored.created;
        let state = match (&r.status, &r.exit) {
            (ContainerStatus::Stopped, Some(exit)) => AttemptState::Exited {
                started,
                exit: exit.clone(),
                message: std::fs::read_to_string(termination_log(termination_logs, name, attempt))
                    .ok(),
            },
            // The process is gone but its monitor has not recorded how yet: not decided
            // until it has (the exit waiter wakes the worker then) — unless the monitor is gone
            // too and never will.
            (ContainerStatus::Stopped, None) if monitor_alive(r) => {
                AttemptState::Running { started }
            }
            (ContainerStatus::Stopped, None) => AttemptState::Exited {
                started,
                exit: skiff_runtime::container::ExitStatus {
                    code: 137,
                    signal: Some(9),
                    oom_killed: false,
                    finished_at: started,
                },
                message: None,
            },
            _ => AttemptState::Running { started },
        };
        out.entry(name.to_string()).or_default().push(Attempt {
            id: r.id().to_string(),
            attempt,
            state,
            image: r
                .stored
                .annotations
                .get("skiff.io/image")
                .cloned()
                .unwrap_or_default(),
            image_id: r
                .stored
                .annotations
                .get("skiff.io/image-id")
                .cloned()
                .unwrap_or_default(),
        });
    }
    for list in out.values_mut() {
        list.sort_by_key(|a| a.attempt);
    }
    out
}

fn monitor_alive(r: &ContainerState) -> bool {
    r.stored.monitor_pid > 0 && Path::new(&format!("/proc/{}", r.stored.monitor_pid)).exists()
}

fn termination_log(dir: &Path, container: &str, attempt: u32) -> PathBuf {
    dir.join(format!("{container}.{attempt}.termination-log"))
}

/// Makes sure the pod's sandbox runs and is wired; returns its namespaces to join, and
/// whether it had to make a new one (which stopped the containers in `records`).
async fn ensure_sandbox(
    shared: &Arc<Shared>,
    pod: &Pod,
    memory: &mut Memory,
    records: &[ContainerState],
) -> Result<(Vec<(LinuxNamespaceType, PathBuf)>, bool), String> {
    let uid = pod.uid().unwrap_or_default();
    let runtime = shared.runtime.clone();
    let id = naming::sandbox_id(&uid);
    let existing = {
        let runtime = runtime.clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || runtime.sandbox(&id).ok())
            .await
            .map_err(|e| e.to_string())?
    };
    let made = existing.is_none();
    let sandbox = match existing {
        Some(s) => s,
        None => {
            // A dead sandbox takes its containers with it: they restart in the new one.
            let running: Vec<String> = records
                .iter()
                .filter(|r| r.status != ContainerStatus::Stopped)
                .map(|r| r.id().to_string())
                .collect();
            let spec = pod.spec.clone().unwrap_or_default();
            let mut labels = pod_labels(pod);
            labels.insert(naming::LABEL_CONTAINER_KIND.into(), "sandbox".into());
            let config = SandboxConfig {
                hostname: Some(hostname(pod)),
                cgroup_parent: format!("{}/pod{uid}", shared.config.cgroup_root),
                resources: None,
                share_pid: spec.share_process_namespace.unwrap_or(false),
                host_network: spec.host_network.unwrap_or(false),
                sysctls: spec
                    .security_context
                    .as_ref()
                    .and_then(|s| s.sysctls.as_ref())
                    .map(|s| {
                        s.iter()
                            .map(|x| (x.name.clone(), x.value.clone()))
                            .collect()
                    })
                    .unwrap_or_default(),
                labels,
            };
            let network = shared.network.read().await.clone();
            let created = tokio::task::spawn_blocking(move || {
                for r in &running {
                    let _ = runtime.kill(r, Signal::SIGKILL, true);
                }
                if runtime.state(&id).is_ok() {
                    let _ = runtime.remove_sandbox(&id);
                }
                if let Some(n) = &network {
                    let _ = n.detach(&id);
                }
                runtime.create_sandbox(&id, &config)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("creating the pod sandbox: {e}"))?;
            memory.pod_ip = None;
            tracing::info!(pod = %key(pod), pid = created.pid, "sandbox started");
            created
        }
    };
    let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
    if host_network {
        memory.pod_ip = Some(shared.node_ip);
    } else if memory.pod_ip.is_none()
        && let Some(network) = shared.network.read().await.clone()
    {
        let id = naming::sandbox_id(&uid);
        let netns = sandbox.netns.clone();
        let ports = host_ports(pod);
        let iface = tokio::task::spawn_blocking(move || {
            let iface = network.attach(&id, &netns)?;
            let mappings: Vec<HostPortMapping> = ports
                .into_iter()
                .map(
                    |(protocol, host_ip, host_port, container_port)| HostPortMapping {
                        protocol,
                        host_ip,
                        host_port,
                        pod_ip: iface.ip,
                        container_port,
                    },
                )
                .collect();
            network.set_host_ports(&id, &mappings)?;
            Ok::<_, crate::network::NetworkError>(iface)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("wiring the pod network: {e}"))?;
        memory.pod_ip = Some(iface.ip);
    }
    write_pod_files(shared, pod, memory.pod_ip, &mut memory.pod_files)
        .map_err(|e| format!("writing the pod's files: {e}"))?;
    let namespaces = sandbox
        .namespaces
        .iter()
        .filter_map(|ns| ns.path().as_ref().map(|p| (ns.typ(), p.clone())))
        .collect();
    Ok((namespaces, made))
}

/// The pod's hostPorts: (protocol, hostIP, hostPort, containerPort).
fn host_ports(pod: &Pod) -> Vec<(String, Option<Ipv4Addr>, u16, u16)> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = u16::try_from(p.host_port?).ok().filter(|p| *p > 0)?;
            Some((
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                p.host_ip.as_deref().and_then(|ip| ip.parse().ok()),
                host_port,
                u16::try_from(p.container_port).ok()?,
            ))
        })
        .collect()
}

fn hostname(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| pod.name_any())
        .chars()
        .take(63)
        .collect()
}

fn pod_labels(pod: &Pod) -> std::collections::BTreeMap<String, String> {
    [
        (
            naming::LABEL_POD_NAMESPACE,
            pod.namespace().unwrap_or_default(),
        ),
        (naming::LABEL_POD_NAME, pod.name_any()),
        (naming::LABEL_POD_UID, pod.uid().unwrap_or_default()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The contents of a pod's /etc/hosts, /etc/resolv.conf and /etc/hostname.
#[derive(PartialEq)]
struct PodFiles {
    hosts: String,
    resolv: String,
    hostname: String,
}

/// Writes the pod's hosts, resolv.conf and hostname files, unless they hold what was
/// `written` last. In place, not renamed over: the containers bind-mount these very inodes.
fn write_pod_files(
    shared: &Shared,
    pod: &Pod,
    pod_ip: Option<Ipv4Addr>,
    written: &mut Option<PodFiles>,
) -> std::io::Result<()> {
    let dir = pod_dir(shared, &pod.uid().unwrap_or_default());
    let spec = pod.spec.clone().unwrap_or_default();
    let name = hostname(pod);
    let namespace = pod.namespace().unwrap_or_default();
    let domain = &shared.config.cluster_domain;
    let hosts = match pod_ip {
        Some(ip) => {
            let aliases: Vec<(String, Vec<String>)> = spec
                .host_aliases
                .iter()
                .flatten()
                .map(|a| (a.ip.clone(), a.hostnames.clone().unwrap_or_default()))
                .collect();
            let host_domain = spec
                .subdomain
                .as_deref()
                .and_then(|sub| dns::pod_host_domain(sub, &namespace, domain));
            dns::pod_hosts_file(ip.into(), &name, host_domain.as_deref(), &aliases)
        }
        // No pod network (the kubelet alone): the node's own hosts file.
        None => std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
    };
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let policy = dns::DnsPolicy::for_pod(
        spec.dns_policy.as_deref(),
        spec.host_network.unwrap_or(false),
    );
    let resolv = dns::pod_resolv_conf(
        &host_resolv,
        &shared.config.cluster_dns,
        domain,
        &namespace,
        policy,
        spec.dns_config.as_ref(),
    );
    let files = PodFiles {
        hosts,
        resolv,
        hostname: format!("{name}\n"),
    };
    if written.as_ref() == Some(&files) {
        return Ok(());
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("etc-hosts"), &files.hosts)?;
    std::fs::write(dir.join("resolv.conf"), &files.resolv)?;
    std::fs::write(dir.join("hostname"), &files.hostname)?;
    *written = Some(files);
    Ok(())
}

/// One sync of a running pod. Returns when to look again, if sooner than the sync period.
async fn sync_pod(
    shared: &Arc<Shared>,
    pod: &Pod,
    memory: &mut Memory,
    wake: &Arc<Notify>,
) -> Result<Option<Duration>, String> {
    let uid = pod.uid().unwrap_or_default();
    let namespace = pod.namespace().unwrap_or_default();
    let dir = pod_dir(shared, &uid);
    let mut records = observe_known(shared, &uid, memory).await;
    watch_exits(shared, &records, memory, wake);

    let mut waiting: HashMap<String, (String, String)> = HashMap::new();
    let spec = pod.spec.clone().unwrap_or_default();
    let namespaces = match ensure_sandbox(shared, pod, memory, &records).await {
        Ok((namespaces, made)) => {
            if made {
                records = observe_known(shared, &uid, memory).await;
            }
            namespaces
        }
        Err(message) => {
            tracing::warn!(pod = %key(pod), %message, "FailedCreatePodSandBox");
            // As kubelet: a Warning on the pod, so that `kubectl describe` says why it stays
            // in ContainerCreating (once per distinct message, as FailedMount).
            if memory.reported.insert((
                String::new(),
                "FailedCreatePodSandBox".into(),
                message.clone(),
            )) {
                event(
                    shared,
                    pod,
                    None,
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {message}"),
                );
            }
            let _ = write_status(shared, pod, memory, wake, false).await;
            return Ok(Some(Duration::from_secs(2)));
        }
    };
    let mut sources = Sources::new(shared.sources.clone(), &namespace, &uid);
    let volumes = match volumes::setup(pod, &dir, &mut sources).await {
        Ok(v) => v,
        Err(message) => {
            tracing::warn!(pod = %key(pod), %message, "FailedMount");
            if memory
                .reported
                .insert((String::new(), "FailedMount".into(), message.clone()))
            {
                event(
                    shared,
                    pod,
                    None,
                    EventType::Warning,
                    "FailedMount",
                    message.clone(),
                );
            }
            write_observed(shared, pod, memory, &records, waiting, true).await;
            return Ok(Some(Duration::from_secs(2)));
        }
    };
    let attempts = attempts_of(&records, &dir);
    let policy = status::restart_policy(pod).to_string();
    let mut next: Option<Duration> = None;
    let mut to_start: Vec<(Container, u32, bool)> = Vec::new();

    // Init containers, one at a time, each to success.
    let mut initialized = true;
    for c in spec.init_containers.iter().flatten() {
        match attempts.get(&c.name).and_then(|a| a.last()) {
            None => {
                to_start.push((c.clone(), 0, true));
                initialized = false;
                break;
            }
            Some(a) => match &a.state {
                AttemptState::Running { .. } => {
                    initialized = false;
                    break;
                }
                AttemptState::Exited { exit, .. } if exit.code == 0 => {}
                AttemptState::Exited { exit, .. } => {
                    initialized = false;
                    if policy != "Never" {
                        match backoff_left(a.attempt, exit.finished_at) {
                            Duration::ZERO => to_start.push((c.clone(), a.attempt + 1, true)),
                            left => {
                                waiting.insert(c.name.clone(), crash_loop(pod, &c.name, a.attempt));
                                back_off_event(shared, pod, memory, &c.name, a.attempt);
                                next = Some(next.map_or(left, |n: Duration| n.min(left)));
                            }
                        }
                    }
                    break;
                }
            },
        }
    }
    if initialized {
        for c in &spec.containers {
            match attempts.get(&c.name).and_then(|a| a.last()) {
                None => to_start.push((c.clone(), 0, false)),
                Some(a) => {
                    if let AttemptState::Exited { exit, .. } = &a.state {
                        let restart =
                            policy == "Always" || (policy == "OnFailure" && exit.code != 0);
                        if restart {
                            match backoff_left(a.attempt, exit.finished_at) {
                                Duration::ZERO => to_start.push((c.clone(), a.attempt + 1, false)),
                                left => {
                                    waiting.insert(
                                        c.name.clone(),
                                        crash_loop(pod, &c.name, a.attempt),
                                    );
                                    back_off_event(shared, pod, memory, &c.name, a.attempt);
                                    next = Some(next.map_or(left, |n: Duration| n.min(left)));
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    let started_any = !to_start.is_empty();
    for (c, attempt, init) in to_start {
        // Known before it exists, so that a half-made attempt is seen (and found gone) later.
        if let Some(ids) = memory.container_ids.as_mut() {
            ids.insert(naming::container_id(&uid, &c.name, attempt));
        }
        let started = start_container(
            shared,
            pod,
            &c,
            attempt,
            init,
            &namespaces,
            &volumes,
            &mut sources,
            memory,
        )
        .await;
        match started {
            Ok(id) => {
                event(
                    shared,
                    pod,
                    Some(&c.name),
                    EventType::Normal,
                    "Created",
                    format!("Created container: {}", c.name),
                );
                event(
                    shared,
                    pod,
                    Some(&c.name),
                    EventType::Normal,
                    "Started",
                    format!("Started container {}", c.name),
                );
                memory.watched.insert(id.clone());
                let runtime = shared.runtime.clone();
                let wake = wake.clone();
                tokio::spawn(async move {
                    let _ = runtime.wait_async(&id).await;
                    wake.notify_one();
                });
                prune_attempts(shared, &uid, &c.name, attempt).await;
            }
            Err((reason, message)) => {
                tracing::info!(pod = %key(pod), container = %c.name, %reason, %message, "container not started");
                if memory
                    .reported
                    .insert((c.name.clone(), reason.clone(), message.clone()))
                {
                    let (event_reason, text) = match reason.as_str() {
                        "ImagePullBackOff" => ("BackOff", message.clone()),
                        "ErrImageNeverPull" => ("ErrImageNeverPull", message.clone()),
                        "ErrImagePull" => ("Failed", message.clone()),
                        _ => ("Failed", format!("Error: {message}")),
                    };
                    event(
                        shared,
                        pod,
                        Some(&c.name),
                        EventType::Warning,
                        event_reason,
                        text,
                    );
                }
                waiting.insert(c.name.clone(), (reason, message));
                next = Some(next.map_or(Duration::from_secs(2), |n| n.min(Duration::from_secs(2))));
            }
        }
    }

    if started_any {
        records = observe_known(shared, &uid, memory).await;
    }
    restart_unhealthy(shared, pod, memory, &records, wake);
    let phase = write_observed(shared, pod, memory, &records, waiting, true).await;
    if phase == "Succeeded" || phase == "Failed" {
        memory.prober = None;
        // Done by itself: the sandbox goes; the status stays until the pod is deleted.
        memory.finished = true;
        stop_sandbox(shared, &uid).await;
        tracing::info!(pod = %key(pod), phase, "pod finished");
    }
    Ok(next)
}

/// Keeps the probes on the running containers, and stops a container whose liveness probe
/// failed (its restart then follows the restart policy, as after any other exit).
fn restart_unhealthy(
    shared: &Arc<Shared>,
    pod: &Pod,
    memory: &mut Memory,
    records: &[ContainerState],
    wake: &Arc<Notify>,
) {
    let mut running: HashMap<String, String> = HashMap::new();
    for r in records {
        if r.status != ContainerStatus::Running
            || r.stored
                .labels
                .get(naming::LABEL_CONTAINER_KIND)
                .map(String::as_str)
                != Some("app")
        {
            continue;
        }
        if let Some((_, name, _)) = naming::parse_container_id(r.id()) {
            running.insert(name.to_string(), r.id().to_string());
        }
    }
    memory
        .killing
        .retain(|id| running.values().any(|r| r == id));
    let prober = memory
        .prober
        .get_or_insert_with(|| Prober::new(shared.runtime.clone(), wake.clone()));
    prober.sync(pod, memory.pod_ip, &running);
    let spec = pod.spec.clone().unwrap_or_default();
    for c in &spec.containers {
        let Some(id) = running.get(&c.name) else {
            continue;
        };
        if !prober.liveness_failed(&c.name) || !memory.killing.insert(id.clone()) {
            continue;
        }
        let grace = c
            .liveness_probe
            .as_ref()
            .and_then(|p| p.termination_grace_period_seconds)
            .or(spec.termination_grace_period_seconds)
            .unwrap_or(DEFAULT_GRACE);
        tracing::info!(pod = %key(pod), container = %c.name, "Container failed liveness probe, will be restarted");
        event(
            shared,
            pod,
            Some(&c.name),
            EventType::Warning,
            "Unhealthy",
            "Liveness probe failed".into(),
        );
        event(
            shared,
            pod,
            Some(&c.name),
            EventType::Normal,
            "Killing",
            format!(
                "Container {} failed liveness probe, will be restarted",
                c.name
            ),
        );
        let shared = shared.clone();
        let id = id.clone();
        let container = c.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(grace.max(0) as u64);
            stop_container(&shared, &id, Some(&container), deadline).await;
        });
    }
}

fn back_off_event(
    shared: &Arc<Shared>,
    pod: &Pod,
    memory: &mut Memory,
    container: &str,
    attempt: u32,
) {
    if memory
        .reported
        .insert((container.to_string(), "BackOff".into(), attempt.to_string()))
    {
        event(
            shared,
            pod,
            Some(container),
            EventType::Warning,
            "BackOff",
            format!(
                "Back-off restarting failed container {container} in pod {}_{}({})",
                pod.name_any(),
                pod.namespace().unwrap_or_default(),
                pod.uid().unwrap_or_default()
            ),
        );
    }
}

fn crash_loop(pod: &Pod, container: &str, restarts: u32) -> (String, String) {
    let delay = restart_delay(restarts);
    (
        "CrashLoopBackOff".into(),
        format!(
            "back-off {} restarting failed container={container} pod={}_{}({})",
            humantime(delay),
            pod.name_any(),
            pod.namespace().unwrap_or_default(),
            pod.uid().unwrap_or_default()
        ),
    )
}

/// Go's duration formatting for whole seconds: 10s, 1m20s, 5m0s.
fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

fn backoff_left(restarts: u32, finished: chrono::DateTime<Utc>) -> Duration {
    let delay = restart_delay(restarts);
    let elapsed = (Utc::now() - finished).to_std().unwrap_or(Duration::ZERO);
    delay.saturating_sub(elapsed)
}

/// Waits for the exit of running containers no task waits for yet (after an agent restart).
fn watch_exits(
    shared: &Arc<Shared>,
    records: &[ContainerState],
    memory: &mut Memory,
    wake: &Arc<Notify>,
) {
    for r in records {
        if r.status == ContainerStatus::Running && memory.watched.insert(r.id().to_string()) {
            let runtime = shared.runtime.clone();
            let wake = wake.clone();
            let id = r.id().to_string();
            tokio::spawn(async move {
                let _ = runtime.wait_async(&id).await;
                wake.notify_one();
            });
        }
    }
}

/// Keeps the current and the previous attempt of a container (for `logs --previous`).
async fn prune_attempts(shared: &Arc<Shared>, uid: &str, container: &str, current: u32) {
    if current < 2 {
        return;
    }
    let records = observe(shared, uid).await;
    let old: Vec<String> = records
        .iter()
        .filter_map(|r| {
            let (_, name, attempt) = naming::parse_container_id(r.id())?;
            (name == container && attempt + 1 < current && r.status == ContainerStatus::Stopped)
                .then(|| r.id().to_string())
        })
        .collect();
    let runtime = shared.runtime.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for id in old {
            let _ = runtime.delete(&id, true);
        }
    })
    .await;
}

/// Computes and writes the status from runtime records; returns the phase.
async fn write_observed(
    shared: &Arc<Shared>,
    pod: &Pod,
    memory: &mut Memory,
    records: &[ContainerState],
    waiting: HashMap<String, (String, String)>,
    sandbox_ready: bool,
) -> String {
    let uid = pod.uid().unwrap_or_default();
    let mut ready = HashMap::new();
    let mut started = HashMap::new();
    for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        let (r, s) = match &memory.prober {
            Some(p) => (p.ready(c), p.started(c)),
            None => (c.readiness_probe.is_none(), c.startup_probe.is_none()),
        };
        ready.insert(c.name.clone(), r);
        started.insert(c.name.clone(), s);
    }
    let observed = Observed {
        attempts: attempts_of(records, &pod_dir(shared, &uid)),
        waiting,
        ready,
        started,
        sandbox_ready,
        pod_ip: memory.pod_ip,
        host_ip: Some(shared.node_ip),
    };
    let status = status::pod_status(pod, &observed);
    let phase = status.phase.clone().unwrap_or_default();
    if !patch_status(shared, pod, memory, &status).await {
        // Not recorded: the pod is not done until its end is in the API.
        return "Unknown".into();
    }
    phase
}

async fn write_status(
    shared: &Arc<Shared>,
    pod: &Pod,
    memory: &mut Memory,
    _wake: &Arc<Notify>,
    sandbox_ready: bool,
) -> String {
    let records = observe_known(shared, &pod.uid().unwrap_or_default(), memory).await;
    write_observed(shared, pod, memory, &records, HashMap::new(), sandbox_ready).await
}

/// Writes the status unless it is what was written last; false when the write failed.
async fn patch_status(
    shared: &Arc<Shared>,
    pod: &Pod,
    memory: &mut Memory,
    status: &k8s_openapi::api::core::v1::PodStatus,
) -> bool {
    let value = serde_json::to_value(status).unwrap_or_default();
    if memory.last_status.as_ref() == Some(&value) {
        return true;
    }
    let api: Api<Pod> =
        Api::namespaced(shared.client.clone(), &pod.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"uid": pod.uid()}, "status": value});
    match api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {
            memory.last_status = Some(value);
            true
        }
        Err(e) => {
            tracing::debug!(pod = %key(pod), error = %e, "status update failed");
            false
        }
    }
}

async fn pull_credentials(shared: &Arc<Shared>, pod: &Pod) -> Option<PathBuf> {
    let secrets = pod.spec.as_ref()?.image_pull_secrets.clone()?;
    let api: Api<Secret> =
        Api::namespaced(shared.client.clone(), &pod.namespace().unwrap_or_default());
    let mut auths = serde_json::Map::new();
    for r in secrets {
        let Ok(Some(secret)) = api.get_opt(&r.name).await else {
            continue;
        };
        let data = secret.data.unwrap_or_default();
        let config = data
            .get(".dockerconfigjson")
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b.0).ok())
            .and_then(|v| v.get("auths").cloned())
            .or_else(|| {
                data.get(".dockercfg")
                    .and_then(|b| serde_json::from_slice(&b.0).ok())
            });
        if let Some(serde_json::Value::Object(map)) = config {
            auths.extend(map);
        }
    }
    if auths.is_empty() {
        return None;
    }
    let path = pod_dir(shared, &pod.uid().unwrap_or_default()).join("pull-credentials.json");
    let body = serde_json::to_vec(&json!({"auths": auths})).ok()?;
    std::fs::write(&path, body).ok()?;
    Some(path)
}

/// The container's image per its pull policy, or (reason, message) for its waiting state.
async fn ensure_image(
    shared: &Arc<Shared>,
    pod: &Pod,
    c: &Container,
    memory: &mut Memory,
) -> Result<Image, (String, String)> {
    let reference = c.image.clone().unwrap_or_default();
    let normalized = skiff_runtime::image::normalize(&reference).map_err(|e| {
        (
            "InvalidImageName".to_string(),
            format!("Failed to apply default image tag {reference:?}: {e}"),
        )
    })?;
    let store = shared
        .runtime
        .images()
        .map_err(|e| ("ErrImagePull".to_string(), e.to_string()))?
        .clone();
    let present = {
        let store = store.clone();
        let normalized = normalized.clone();
        tokio::task::spawn_blocking(move || store.get(&normalized).ok())
            .await
            .ok()
            .flatten()
    };
    // The API server defaults the policy; this is its rule for objects that somehow lack it.
    let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
        let tagged = reference.rsplit('/').next().unwrap_or("").contains(':');
        if reference.contains('@') || (tagged && !reference.ends_with(":latest")) {
            "IfNotPresent".into()
        } else {
            "Always".into()
        }
    });
    match (policy.as_str(), present) {
        ("Never", None) => Err((
            "ErrImageNeverPull".into(),
            format!("Container image {reference:?} is not present with pull policy of Never"),
        )),
        ("Never" | "IfNotPresent", Some(image)) => {
            event(
                shared,
                pod,
                Some(&c.name),
                EventType::Normal,
                "Pulled",
                format!("Container image {reference:?} already present on machine"),
            );
            Ok(image)
        }
        _ => {
            if let Some((failures, at)) = memory.pull_failures.get(&c.name)
                && at.elapsed() < restart_delay(*failures)
            {
                return Err((
                    "ImagePullBackOff".into(),
                    format!("Back-off pulling image {reference:?}"),
                ));
            }
            let options = PullOptions {
                insecure_registries: shared.config.insecure_registries.clone(),
                credentials_file: pull_credentials(shared, pod).await,
                platform: None,
            };
            tracing::info!(pod = %key(pod), image = %reference, "pulling image");
            event(
                shared,
                pod,
                Some(&c.name),
                EventType::Normal,
                "Pulling",
                format!("Pulling image {reference:?}"),
            );
            let started = std::time::Instant::now();
            match store.pull(&normalized, &options, &|_| {}).await {
                Ok(image) => {
                    memory.pull_failures.remove(&c.name);
                    event(
                        shared,
                        pod,
                        Some(&c.name),
                        EventType::Normal,
                        "Pulled",
                        format!(
                            "Successfully pulled image {reference:?} in {:.3}s. Image size: {} bytes.",
                            started.elapsed().as_secs_f64(),
                            image.size
                        ),
                    );
                    Ok(image)
                }
                Err(e) => {
                    let entry = memory
                        .pull_failures
                        .entry(c.name.clone())
                        .or_insert((0, std::time::Instant::now()));
                    entry.0 += 1;
                    entry.1 = std::time::Instant::now();
                    Err((
                        "ErrImagePull".into(),
                        format!("failed to pull and unpack image {reference:?}: {e}"),
                    ))
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn start_container(
    shared: &Arc<Shared>,
    pod: &Pod,
    c: &Container,
    attempt: u32,
    init: bool,
    namespaces: &[(LinuxNamespaceType, PathBuf)],
    volumes: &HashMap<String, PathBuf>,
    sources: &mut Sources,
    memory: &mut Memory,
) -> Result<String, (String, String)> {
    let uid = pod.uid().unwrap_or_default();
    let namespace = pod.namespace().unwrap_or_default();
    let image = ensure_image(shared, pod, c, memory).await?;
    let config_error = |m: String| ("CreateContainerConfigError".to_string(), m);
    let env = env::container_env(pod, c, sources, &shared.allocatable)
        .await
        .map_err(config_error)?;
    let env_lines: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut expanded = c.clone();
    expanded.command = c
        .command
        .as_ref()
        .map(|v| v.iter().map(|s| env::expand(s, &lookup)).collect());
    expanded.args = c
        .args
        .as_ref()
        .map(|v| v.iter().map(|s| env::expand(s, &lookup)).collect());
    // The service-account directory, unless the container mounts something there itself.
    if volumes.contains_key(volumes::SERVICE_ACCOUNT_VOLUME)
        && !c
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path.trim_end_matches('/') == volumes::SERVICE_ACCOUNT_MOUNT)
    {
        expanded.volume_mounts.get_or_insert_with(Vec::new).push(
            k8s_openapi::api::core::v1::VolumeMount {
                name: volumes::SERVICE_ACCOUNT_VOLUME.into(),
                mount_path: volumes::SERVICE_ACCOUNT_MOUNT.into(),
                read_only: Some(true),
                ..Default::default()
            },
        );
    }

    let id = naming::container_id(&uid, &c.name, attempt);
    let dir = pod_dir(shared, &uid);
    let term_log = termination_log(&dir, &c.name, attempt);
    std::fs::write(&term_log, b"").map_err(|e| config_error(format!("termination log: {e}")))?;
    let log_path = naming::container_log_path(
        &shared.config.log_root(),
        &namespace,
        &pod.name_any(),
        &uid,
        &c.name,
        attempt,
    );
    if let Some(parent) = log_path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| config_error(format!("log dir: {e}")))?;
    }
    let hosts = dir.join("etc-hosts");
    let resolv = dir.join("resolv.conf");
    let hostname_file = dir.join("hostname");
    let host = hostname(pod);
    let runtime = shared.runtime.clone();
    let mut labels = pod_labels(pod);
    labels.insert(naming::LABEL_CONTAINER_NAME.into(), c.name.clone());
    labels.insert(naming::LABEL_CONTAINER_ATTEMPT.into(), attempt.to_string());
    labels.insert(
        naming::LABEL_CONTAINER_KIND.into(),
        if init { "init" } else { "app" }.into(),
    );
    let cgroup_path = format!("{}/pod{uid}/{id}", shared.config.cgroup_root);
    let seccomp_profile_root = shared.config.seccomp_profile_root();
    let seccomp_default = shared.config.seccomp_default;
    let pod_copy = pod.clone();
    let namespaces = namespaces.to_vec();
    let volumes = volumes.clone();
    let image_ref = c.image.clone().unwrap_or_default();
    let id_for_task = id.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<(), (String, String)> {
        let id = id_for_task;
        // A leftover of this very attempt (e.g. a crash between create and the status write).
        if runtime.state(&id).is_ok() {
            let _ = runtime.delete(&id, true);
        }
        let prepared = runtime
            .prepare_image_rootfs(&id, &image)
            .map_err(|e| ("CreateContainerError".to_string(), e.to_string()))?;
        let files = ContainerFiles {
            rootfs: &prepared.rootfs,
            namespaces,
            volumes: &volumes,
            etc_hosts: Some(&hosts),
            resolv_conf: Some(&resolv),
            hostname_file: Some(&hostname_file),
            termination_log: Some(&term_log),
            hostname: &host,
            cgroup_path,
            seccomp_profile_root: &seccomp_profile_root,
            seccomp_default,
        };
        let spec = containers::build_spec(&pod_copy, &expanded, &image, &env_lines, &files)
            .map_err(|m| {
                let _ = skiff_runtime::image::remove_rootfs(&prepared.managed_dir);
                ("CreateContainerConfigError".to_string(), m)
            })?;
        let mut options = CreateOptions::new(spec, "/");
        options.stdio = StdioConfig::Log {
            path: log_path,
            max_size_bytes: LOG_MAX_BYTES,
            max_files: LOG_MAX_FILES,
        };
        // A failed create leaves the prepared rootfs to us: unmounted here, or every retry
        // would mount another overlay over the last.
        let managed_dir = prepared.managed_dir.clone();
        options.managed_dir = Some(prepared.managed_dir);
        options.image_layers = prepared.image_layers;
        options.labels = labels;
        let mut annotations = options.spec.annotations().clone().unwrap_or_default();
        annotations.insert("skiff.io/image".into(), image_ref.clone());
        annotations.insert("skiff.io/image-id".into(), image_id(&image));
        options.spec.set_annotations(Some(annotations));
        runtime.create_and_start(&id, options).map_err(|e| {
            let _ = skiff_runtime::image::remove_rootfs(&managed_dir);
            ("RunContainerError".to_string(), e.to_string())
        })?;
        Ok(())
    })
    .await
    .map_err(|e| ("RunContainerError".to_string(), e.to_string()))?;
    result?;
    tracing::info!(pod = %key(pod), container = %c.name, attempt, "container started");
    Ok(id)
}

/// The imageID a status shows: `repository@digest`.
fn image_id(image: &Image) -> String {
    let repo = image
        .reference
        .split('@')
        .next()
        .map(|r| match r.rfind(':') {
            Some(i) if !r[i..].contains('/') => &r[..i],
            _ => r,
        })
        .unwrap_or_default();
    format!("{repo}@{}", image.digest)
}

/// Stops the pod: preStop hooks, SIGTERM, SIGKILL at the end of `grace` seconds, then the
/// sandbox and the network. Containers' records stay for status and logs.
async fn terminate(shared: &Arc<Shared>, uid: &str, pod: Option<&Pod>, grace: i64) {
    let records = observe(shared, uid).await;
    let running: Vec<ContainerState> = records
        .into_iter()
        .filter(|r| r.status != ContainerStatus::Stopped)
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(grace.max(0) as u64);
    let mut stops = Vec::new();
    for r in running {
        let shared = shared.clone();
        let container = naming::parse_container_id(r.id()).map(|(_, n, _)| n.to_string());
        let spec = pod
            .and_then(|p| p.spec.as_ref())
            .and_then(|s| {
                s.containers
                    .iter()
                    .find(|c| Some(&c.name) == container.as_ref())
            })
            .cloned();
        let id = r.id().to_string();
        if let (Some(pod), Some(name)) = (pod, container.as_deref()) {
            event(
                &shared,
                pod,
                Some(name),
                EventType::Normal,
                "Killing",
                format!("Stopping container {name}"),
            );
        }
        stops.push(tokio::spawn(async move {
            stop_container(&shared, &id, spec.as_ref(), deadline).await;
        }));
    }
    for s in stops {
        let _ = s.await;
    }
    stop_sandbox(shared, uid).await;
    if let Some(pod) = pod {
        tracing::info!(pod = %key(pod), grace, "pod stopped");
    }
}

async fn stop_container(
    shared: &Arc<Shared>,
    id: &str,
    spec: Option<&Container>,
    deadline: tokio::time::Instant,
) {
    let runtime = shared.runtime.clone();
    if grace_left(deadline) > Duration::ZERO
        && let Some(exec) = spec
            .and_then(|c| c.lifecycle.as_ref())
            .and_then(|l| l.pre_stop.as_ref())
            .and_then(|h| h.exec.as_ref())
            .and_then(|e| e.command.clone())
    {
        let runtime = runtime.clone();
        let id = id.to_string();
        let hook = tokio::task::spawn_blocking(move || -> Option<()> {
            let mut cmd = runtime
                .exec(
                    &id,
                    skiff_runtime::container::ExecOptions {
                        args: exec,
                        ..Default::default()
                    },
                )
                .ok()?;
            cmd.stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            let _ = cmd.status();
            Some(())
        });
        let _ = tokio::time::timeout(grace_left(deadline), hook).await;
    }
    if grace_left(deadline) > Duration::ZERO {
        let _ = runtime.kill(id, Signal::SIGTERM, false);
        let _ = tokio::time::timeout(grace_left(deadline), runtime.wait_async(id)).await;
    }
    let id = id.to_string();
    let runtime2 = runtime.clone();
    let _ = tokio::task::spawn_blocking(move || {
        if runtime2
            .state(&id)
            .is_ok_and(|s| s.status != ContainerStatus::Stopped)
        {
            let _ = runtime2.kill(&id, Signal::SIGKILL, true);
            let _ = runtime2.wait_timeout(&id, Some(Duration::from_secs(10)));
        }
    })
    .await;
}

fn grace_left(deadline: tokio::time::Instant) -> Duration {
    deadline.saturating_duration_since(tokio::time::Instant::now())
}

/// Removes the pod's sandbox (pause process, pod cgroup) and releases its IP.
async fn stop_sandbox(shared: &Arc<Shared>, uid: &str) {
    let runtime = shared.runtime.clone();
    let network = shared.network.read().await.clone();
    let id = naming::sandbox_id(uid);
    let _ = tokio::task::spawn_blocking(move || {
        if let Some(n) = &network
            && let Err(e) = n.detach(&id)
        {
            tracing::warn!(sandbox = %id, error = %e, "releasing the pod network");
        }
        if runtime.state(&id).is_ok()
            && let Err(e) = runtime.remove_sandbox(&id)
        {
            tracing::warn!(sandbox = %id, error = %e, "removing the sandbox");
        }
    })
    .await;
}

/// Deletes the pod object once nothing of it runs (grace 0, only this uid). Returns when to
/// look again if that failed.
async fn delete_pod_object(shared: &Arc<Shared>, pod: &Pod) -> Option<Duration> {
    let api: Api<Pod> =
        Api::namespaced(shared.client.clone(), &pod.namespace().unwrap_or_default());
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&pod.name_any(), &params).await {
        Ok(_) => None,
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => None,
        Err(e) => {
            tracing::warn!(pod = %key(pod), error = %e, "deleting the pod object");
            Some(Duration::from_secs(2))
        }
    }
}

/// Forgets a pod for good: its containers, volumes, files and logs.
async fn remove_pod_files(shared: &Arc<Shared>, uid: &str, pod: Option<&Pod>) {
    let records = observe(shared, uid).await;
    let runtime = shared.runtime.clone();
    let dir = pod_dir(shared, uid);
    let log_dir = pod.map(|p| {
        naming::pod_log_dir(
            &shared.config.log_root(),
            &p.namespace().unwrap_or_default(),
            &p.name_any(),
            uid,
        )
    });
    let _ = tokio::task::spawn_blocking(move || {
        for r in records {
            if let Err(e) = runtime.delete(r.id(), true) {
                tracing::warn!(container = %r.id(), error = %e, "removing a container");
            }
        }
        if let Err(e) = volumes::teardown(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "removing volumes");
        }
        let _ = std::fs::remove_dir_all(&dir);
        if let Some(log_dir) = log_dir {
            let _ = std::fs::remove_dir_all(log_dir);
        }
    })
    .await;
}

/// After a restart: pods whose containers run here but that the API no longer has (deleted
/// while the agent was down) are stopped and removed.
async fn remove_orphans(shared: Arc<Shared>, known: HashSet<String>) {
    let runtime = shared.runtime.clone();
    let all = tokio::task::spawn_blocking(move || runtime.list().unwrap_or_default())
        .await
        .unwrap_or_default();
    let mut orphans: HashMap<String, Option<(String, String)>> = HashMap::new();
    for c in &all {
        let Some(uid) = c.stored.labels.get(naming::LABEL_POD_UID) else {
            continue;
        };
        if known.contains(uid) {
            continue;
        }
        let names = c
            .stored
            .labels
            .get(naming::LABEL_POD_NAMESPACE)
            .cloned()
            .zip(c.stored.labels.get(naming::LABEL_POD_NAME).cloned());
        orphans.entry(uid.clone()).or_insert(names);
    }
    for (uid, names) in orphans {
        tracing::info!(uid, "removing a pod deleted while the agent was away");
        terminate(&shared, &uid, None, 0).await;
        let pod = names.map(|(ns, name)| {
            let mut p = Pod::default();
            p.metadata.namespace = Some(ns);
            p.metadata.name = Some(name);
            p.metadata.uid = Some(uid.clone());
            p
        });
        remove_pod_files(&shared, &uid, pod.as_ref()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_from_ten_seconds_to_five_minutes() {
        let secs: Vec<u64> = (0..9).map(|n| restart_delay(n).as_secs()).collect();
        assert_eq!(secs, [0, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(restart_delay(60), MAX_BACKOFF);
        assert_eq!(humantime(Duration::from_secs(10)), "10s");
        assert_eq!(humantime(Duration::from_secs(80)), "1m20s");
        assert_eq!(humantime(Duration::from_secs(300)), "5m0s");
    }
}
