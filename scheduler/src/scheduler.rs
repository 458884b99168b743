//! The scheduler process: watches pods and nodes through the API, runs one scheduling cycle at a
//! time from the queue, assumes the pod onto the chosen node in the cache and binds it through
//! `pods/binding` in the background; records `FailedScheduling` (condition and Event) when no
//! node fits. Only the holder of the `kube-system/kube-scheduler` Lease schedules.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Binding, Event, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use skiff_client::{LeaderElection, LeaderElectionConfig};
use tokio::sync::{Notify, Semaphore};

use crate::cache::Cache;
use crate::framework::{CycleState, Framework, PodInfo, ScheduleError, Snapshot};
use crate::plugins::default_framework;
use crate::queue::{ClusterEvent, SchedulingQueue};
use crate::watched::WatchedPod;

/// How the scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Pods with this `spec.schedulerName` are ours.
    pub scheduler_name: String,
    /// How long a bound pod's assumption waits for the watch to confirm it.
    pub assumed_ttl: Duration,
    /// Bindings in flight at once.
    pub bind_concurrency: usize,
    /// `None`: schedule without a lease (a single scheduler, tests).
    pub leader_election: Option<LeaderElectionConfig>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: "default-scheduler".into(),
            assumed_ttl: Duration::from_secs(30),
            bind_concurrency: 64,
            leader_election: Some(LeaderElectionConfig::new("kube-scheduler")),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("watching {what}: {source}")]
    Watch {
        what: &'static str,
        source: watcher::Error,
    },
    #[error("leader election: {0}")]
    Leadership(String),
}

struct State {
    cache: Cache,
    queue: SchedulingQueue,
}

struct Shared {
    client: Client,
    config: SchedulerConfig,
    framework: Framework,
    state: Mutex<State>,
    /// Wakes the scheduling loop when the queue may have work.
    wake: Notify,
    binds: Arc<Semaphore>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs until the watches fail for good or leadership is lost.
pub async fn run(client: Client, config: SchedulerConfig) -> Result<(), SchedulerError> {
    let leadership = match &config.leader_election {
        Some(le) => Some(
            LeaderElection::acquire(client.clone(), le.clone())
                .await
                .map_err(|e| SchedulerError::Leadership(e.to_string()))?,
        ),
        None => None,
    };
    let framework = default_framework();
    let queue = SchedulingQueue::new(framework.queue_sort.clone());
    let shared = Arc::new(Shared {
        client: client.clone(),
        binds: Arc::new(Semaphore::new(config.bind_concurrency.max(1))),
        config,
        framework,
        state: Mutex::new(State {
            cache: Cache::new(),
            queue,
        }),
        wake: Notify::new(),
    });
    tracing::info!(scheduler = %shared.config.scheduler_name, "scheduler started");
    let nodes = tokio::spawn(watch_nodes(shared.clone()));
    let pods = tokio::spawn(watch_pods(shared.clone()));
    let timers = tokio::spawn(run_timers(shared.clone()));
    // Whether run() returns or is dropped (aborted), the background tasks stop with it.
    let _tasks = AbortOnDrop(vec![
        nodes.abort_handle(),
        pods.abort_handle(),
        timers.abort_handle(),
    ]);
    tokio::select! {
        r = schedule_loop(shared.clone()) => r,
        r = flatten(nodes) => r,
        r = flatten(pods) => r,
        lost = async {
            match leadership {
                Some(mut l) => l.lost().await.to_string(),
                None => std::future::pending().await,
            }
        } => Err(SchedulerError::Leadership(lost)),
    }
}

struct AbortOnDrop(Vec<tokio::task::AbortHandle>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

async fn flatten(
    task: tokio::task::JoinHandle<Result<(), SchedulerError>>,
) -> Result<(), SchedulerError> {
    match task.await {
        Ok(r) => r,
        Err(e) => Err(SchedulerError::Leadership(format!("a task died: {e}"))),
    }
}

fn is_ours_and_pending(pod: &Pod, scheduler_name: &str) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let terminal = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    spec.node_name.as_deref().is_none_or(str::is_empty)
        && spec
            .scheduler_name
            .as_deref()
            .unwrap_or("default-scheduler")
            == scheduler_name
        && pod.metadata.deletion_timestamp.is_none()
        && !terminal
}

/// The next event of a watch; errors are logged and waited out, since the watcher retries by
/// itself (relisting after 410 Gone). `None` when the stream ends.
async fn next_event<K>(
    stream: &mut futures::stream::BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>,
    what: &'static str,
) -> Option<watcher::Event<K>> {
    loop {
        match stream.next().await? {
            Ok(event) => return Some(event),
            Err(e) => {
                tracing::warn!(error = %e, "{what} watch");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn watch_pods(shared: Arc<Shared>) -> Result<(), SchedulerError> {
    let api: Api<WatchedPod> = Api::all(shared.client.clone());
    let mut stream = watcher(api, watcher::Config::default())
        .map_ok(unwrap_pods)
        .boxed();
    // Pods seen during a (re)list: what the cache holds beyond them was deleted meanwhile.
    let mut relisted: Option<HashSet<String>> = None;
    while let Some(event) = next_event(&mut stream, "pod").await {
        match event {
            watcher::Event::Init => relisted = Some(HashSet::new()),
            watcher::Event::InitApply(pod) => {
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(pod.metadata.uid.clone().unwrap_or_default());
                }
                apply_pod(&shared, pod);
            }
            watcher::Event::InitDone => {
                if let Some(seen) = relisted.take() {
                    let mut state = shared.state();
                    state.cache.retain_pods(|uid| seen.contains(uid));
                }
            }
            watcher::Event::Apply(pod) => apply_pod(&shared, pod),
            watcher::Event::Delete(pod) => {
                let info = PodInfo::new(Arc::from(pod));
                let mut state = shared.state();
                state.cache.remove_pod(&info.uid);
                state.queue.delete(&info.key());
                state.queue.on_event(ClusterEvent::PodDeleted);
                drop(state);
                shared.wake.notify_one();
            }
        }
    }
    Ok(())
}

fn unwrap_pods(event: watcher::Event<WatchedPod>) -> watcher::Event<Box<Pod>> {
    match event {
        watcher::Event::Apply(WatchedPod(p)) => watcher::Event::Apply(p),
        watcher::Event::Delete(WatchedPod(p)) => watcher::Event::Delete(p),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(WatchedPod(p)) => watcher::Event::InitApply(p),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

fn apply_pod(shared: &Shared, pod: Box<Pod>) {
    let pending = is_ours_and_pending(&pod, &shared.config.scheduler_name);
    let info = Arc::new(PodInfo::new(Arc::from(pod)));
    let mut state = shared.state();
    if pending {
        if !state.cache.is_assumed(&info.uid) {
            state.queue.update(info);
            drop(state);
            shared.wake.notify_one();
        }
    } else {
        let key = info.key();
        let gone = info.pod.metadata.deletion_timestamp.is_some();
        state.queue.delete(&key);
        state.cache.upsert_pod_info(info);
        if gone {
            state.queue.on_event(ClusterEvent::PodDeleted);
            drop(state);
            shared.wake.notify_one();
        }
    }
}

async fn watch_nodes(shared: Arc<Shared>) -> Result<(), SchedulerError> {
    let api: Api<Node> = Api::all(shared.client.clone());
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    let mut relisted: Option<HashSet<String>> = None;
    while let Some(event) = next_event(&mut stream, "node").await {
        let mut state = shared.state();
        match event {
            watcher::Event::Init => relisted = Some(HashSet::new()),
            watcher::Event::InitApply(node) | watcher::Event::Apply(node) => {
                let name = node.metadata.name.clone().unwrap_or_default();
                if let Some(seen) = relisted.as_mut() {
                    seen.insert(name.clone());
                }
                let known = state.cache.has_node(&name);
                state.cache.upsert_node(node);
                state.queue.on_event(if known {
                    ClusterEvent::NodeChanged
                } else {
                    ClusterEvent::NodeAdded
                });
            }
            watcher::Event::InitDone => {
                if let Some(seen) = relisted.take() {
                    for name in state.cache.node_names() {
                        if !seen.contains(&name) {
                            state.cache.remove_node(&name);
                        }
                    }
                }
            }
            watcher::Event::Delete(node) => {
                state
                    .cache
                    .remove_node(node.metadata.name.as_deref().unwrap_or_default());
            }
        }
        drop(state);
        shared.wake.notify_one();
    }
    Ok(())
}

/// Backoff expiry, stale unschedulable pods and unconfirmed assumptions.
async fn run_timers(shared: Arc<Shared>) {
    loop {
        let next = {
            let mut state = shared.state();
            let now = Instant::now();
            state.cache.expire_assumed(now);
            let before = state.queue.active_len();
            let next = state.queue.flush(now);
            if state.queue.active_len() > before {
                shared.wake.notify_one();
            }
            next
        };
        let sleep = next
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(1))
            .clamp(Duration::from_millis(10), Duration::from_secs(1));
        tokio::time::sleep(sleep).await;
    }
}

async fn schedule_loop(shared: Arc<Shared>) -> Result<(), SchedulerError> {
    // Kept between cycles and brought up to date with only the nodes that changed.
    let mut snapshot = Snapshot::default();
    loop {
        let next = {
            let mut state = shared.state();
            let pod = state.queue.pop();
            if pod.is_some() {
                state.cache.update_snapshot(&mut snapshot);
            }
            pod
        };
        let Some(pod) = next else {
            shared.wake.notified().await;
            continue;
        };
        let mut cycle = CycleState::new();
        let outcome = shared.framework.schedule(&mut cycle, &pod.info, &snapshot);
        match outcome {
            Ok(result) => {
                shared.state().cache.assume(pod.info.clone(), &result.node);
                let permit = shared.binds.clone().acquire_owned().await;
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    bind(&shared, pod, result.node).await;
                });
            }
            Err(ScheduleError::Unschedulable(fit)) => {
                let message = fit.message();
                tracing::debug!(pod = %pod.info.key(), %message, "unschedulable");
                let info = pod.info.clone();
                shared
                    .state()
                    .queue
                    .add_unschedulable(pod, fit.diagnosis.unschedulable_plugins.clone());
                let shared = shared.clone();
                tokio::spawn(async move { record_failure(&shared, &info, &message).await });
            }
            Err(ScheduleError::Internal(message)) => {
                tracing::warn!(pod = %pod.info.key(), %message, "scheduling cycle failed");
                shared.state().queue.add_backoff(pod);
            }
        }
        // Let the watches and binders run between cycles.
        tokio::task::yield_now().await;
    }
}

async fn bind(shared: &Shared, pod: crate::framework::QueuedPod, node: String) {
    let info = &pod.info;
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &info.namespace);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(info.name.clone()),
            namespace: Some(info.namespace.clone()),
            uid: Some(info.uid.clone()).filter(|u| !u.is_empty()),
            ..Default::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.clone()),
            ..Default::default()
        },
    };
    let result: Result<serde_json::Value, kube::Error> = api
        .create_subresource("binding", &info.name, &PostParams::default(), &binding)
        .await;
    let mut state = shared.state();
    match result {
        Ok(_) => {
            state
                .cache
                .finish_binding(&info.uid, shared.config.assumed_ttl);
            state.queue.done(&info.key());
        }
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            // Gone, or bound by someone else: nothing to retry.
            tracing::debug!(pod = %info.key(), error = %status.message, "binding not needed");
            state.cache.forget(&info.uid);
            state.queue.done(&info.key());
        }
        Err(e) => {
            tracing::warn!(pod = %info.key(), %node, error = %e, "binding failed");
            state.cache.forget(&info.uid);
            state.queue.add_backoff(pod.clone());
            drop(state);
            shared.wake.notify_one();
        }
    }
}

/// `PodScheduled=False` (reason Unschedulable) and a `FailedScheduling` Event, as upstream.
async fn record_failure(shared: &Shared, info: &PodInfo, message: &str) {
    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), &info.namespace);
    let condition = serde_json::json!({"status": {"conditions": [{
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastTransitionTime": Time(k8s_openapi::jiff::Timestamp::now()),
    }]}});
    if let Err(e) = pods
        .patch_status(
            &info.name,
            &PatchParams::default(),
            &Patch::Strategic(condition),
        )
        .await
    {
        tracing::debug!(pod = %info.key(), error = %e, "recording PodScheduled=False");
    }
    let now = k8s_openapi::jiff::Timestamp::now();
    let event = Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", info.name, now.as_nanosecond() as u64)),
            namespace: Some(info.namespace.clone()),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            name: Some(info.name.clone()),
            namespace: Some(info.namespace.clone()),
            uid: Some(info.uid.clone()),
            resource_version: info.pod.metadata.resource_version.clone(),
            ..Default::default()
        },
        reason: Some("FailedScheduling".into()),
        message: Some(message.to_string()),
        type_: Some("Warning".into()),
        action: Some("Scheduling".into()),
        reporting_component: Some(shared.config.scheduler_name.clone()),
        reporting_instance: Some(shared.config.scheduler_name.clone()),
        source: Some(k8s_openapi::api::core::v1::EventSource {
            component: Some(shared.config.scheduler_name.clone()),
            host: None,
        }),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        count: Some(1),
        ..Default::default()
    };
    let events: Api<Event> = Api::namespaced(shared.client.clone(), &info.namespace);
    if let Err(e) = events.create(&PostParams::default(), &event).await {
        tracing::debug!(pod = %info.key(), error = %e, "recording FailedScheduling");
    }
}
