//! kube-controller-manager's Job controller (`pkg/controller/job`): a Job runs pods from its
//! template until `spec.completions` of them succeed (or, without completions, until one
//! does), at most `spec.parallelism` at a time, and fails once more than `spec.backoffLimit`
//! have failed or it has been active for `spec.activeDeadlineSeconds`.
//!
//! Counting is exact with *tracking finalizers*, as upstream since 1.26: every pod is created
//! with the `batch.kubernetes.io/job-tracking` finalizer, so a finished pod cannot vanish
//! before the Job has counted it. A sync (upstream's `syncJob`) first writes the uids of newly
//! finished pods to `status.uncountedTerminatedPods`, then removes their finalizers, then
//! moves them from the uncounted lists to `succeeded`/`failed` — a crash anywhere in between
//! neither loses nor doubles a pod. Every status write carries the resourceVersion read, and
//! a sync never works from a Job older than its own last write (see [`Context::written`]).
//!
//! A Job that meets its completions gets `SuccessCriteriaMet` at once and `Complete` once no
//! pod is left terminating; one that fails gets `FailureTarget`, its active pods deleted, and
//! `Failed` once they are gone (1.31+'s interim conditions). Failed pods are replaced after an
//! exponential backoff (upstream's `backoffRecord`, 10 s doubling, capped at 10 min). `Indexed`
//! Jobs give each pod a completion index (annotation, label, hostname, `JOB_COMPLETION_INDEX`)
//! and report `completedIndexes`. A suspended Job's active pods are deleted (uncounted).
//!
//! Pods are named by the controller (`<job>-<5 chars>`, `<job>-<index>-<5 chars>` when
//! Indexed, as upstream's generateName) so creations are expected by name before they are
//! sent, as the ReplicaSet controller does.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use rand::Rng;
use serde_json::json;
use skiff_apimachinery::labels::Selector;
use tokio::sync::mpsc;

use crate::events::{EventRecorder, EventType};
use crate::manager::{ControllerError, drive};
use crate::replicaset::{controller_of, is_ready, pod_labels, pods_to_delete};

/// kube-controller-manager's name for it (`--controllers`).
pub const NAME: &str = "job-controller";

/// Upstream's `batch.JobTrackingFinalizer`: a pod keeps it until its Job has counted it.
pub const JOB_TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";

/// Upstream's `batch.JobCompletionIndexAnnotation` (also the label, `PodIndexLabel`).
pub const JOB_COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// The environment variable an Indexed Job's containers read their index from.
const JOB_COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";

/// Upstream's `MaxUncountedPods`: keeps `uncountedTerminatedPods` under ~20 KB and one
/// sync from starving the others.
const MAX_UNCOUNTED_PODS: usize = 500;

/// Upstream's `MaxPodCreateDeletePerSync`.
const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;

/// Upstream's `syncJobBatchPeriod`: the least delay of a requeue for backoff.
const SYNC_JOB_BATCH_PERIOD: Duration = Duration::from_secs(1);

/// Upstream's `ExpectationsTimeout`.
const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(300);

/// After a failed sync, when to try again (upstream's `DefaultJobApiBackOff`).
const RETRY: Duration = Duration::from_secs(1);

/// Field manager of the controller's writes.
const FIELD_MANAGER: &str = "job-controller";

/// Condition types and reasons, as `batch/v1`'s constants.
const COMPLETE: &str = "Complete";
const FAILED: &str = "Failed";
const SUSPENDED: &str = "Suspended";
const SUCCESS_CRITERIA_MET: &str = "SuccessCriteriaMet";
const FAILURE_TARGET: &str = "FailureTarget";
pub const REASON_BACKOFF_LIMIT_EXCEEDED: &str = "BackoffLimitExceeded";
pub const REASON_DEADLINE_EXCEEDED: &str = "DeadlineExceeded";
pub const REASON_COMPLETIONS_REACHED: &str = "CompletionsReached";
const MESSAGE_BACKOFF_LIMIT_EXCEEDED: &str = "Job has reached the specified backoff limit";
const MESSAGE_DEADLINE_EXCEEDED: &str = "Job was active longer than specified deadline";
const MESSAGE_COMPLETIONS_REACHED: &str = "Reached expected number of succeeded pods";

/// The Job controller's settings (upstream's are package variables, "exported for tests").
#[derive(Debug, Clone)]
pub struct JobControllerConfig {
    /// Upstream's `DefaultJobPodFailureBackOff`: the delay before replacing the first failed
    /// pod; it doubles with each further failure since the last success.
    pub pod_failure_backoff: Duration,
    /// Upstream's `MaxJobPodFailureBackOff`: the cap of that delay.
    pub max_pod_failure_backoff: Duration,
}

impl Default for JobControllerConfig {
    fn default() -> Self {
        JobControllerConfig {
            pod_failure_backoff: Duration::from_secs(10),
            max_pod_failure_backoff: Duration::from_secs(600),
        }
    }
}

struct Context {
    client: Client,
    pods: Store<Pod>,
    config: JobControllerConfig,
    recorder: EventRecorder,
    expectations: Expectations,
    finalizer_expectations: FinalizerExpectations,
    backoff: Mutex<HashMap<ObjectRef<Job>, BackoffRecord>>,
    /// Per Job, the resourceVersion of this controller's last status write. A sync that finds
    /// another version in the cache reads the Job from the API first: counting from a Job
    /// older than the last write would miss pods whose finalizers that write accounted for.
    written: Mutex<HashMap<ObjectRef<Job>, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("the pod cache stopped")]
    PodCacheGone,
    #[error("{verb} pod {namespace}/{name}: {source}")]
    Pod {
        verb: &'static str,
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("{verb} Job {namespace}/{name}: {source}")]
    Job {
        verb: &'static str,
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// Runs the controller until its watches end (they retry transient errors themselves).
pub async fn run(client: Client, config: JobControllerConfig) -> Result<(), ControllerError> {
    let (pods, pod_writer) = reflector::store();
    let ctx = Arc::new(Context {
        client: client.clone(),
        pods,
        config,
        recorder: EventRecorder::new(client.clone(), NAME),
        expectations: Expectations::default(),
        finalizer_expectations: FinalizerExpectations::default(),
        backoff: Mutex::new(HashMap::new()),
        written: Mutex::new(HashMap::new()),
    });
    let controller = Controller::new(Api::<Job>::all(client.clone()), watcher::Config::default());
    let jobs = controller.store();
    // Pods holding the tracking finalizer whose Job is gone or finished go to the orphan
    // worker (upstream's `orphanQueue`), which no Job sync would ever reach.
    let (orphans, orphan_queue) = mpsc::unbounded_channel::<(String, String)>();
    let observer = ctx.clone();
    let orphan_jobs = jobs.clone();
    // The pod watch feeds the cache first, then the expectations, then the triggers: a sync
    // woken by a pod event sees that event everywhere.
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(crate::informers::strip_managed_fields)
        .reflect(pod_writer)
        .inspect_ok(move |event| {
            observer.expectations.observe(event);
            observer.finalizer_expectations.observe(event);
            if let watcher::Event::Apply(pod) | watcher::Event::InitApply(pod) = event
                && has_tracking_finalizer(pod)
                && maybe_orphan(pod, &orphan_jobs)
            {
                let _ = orphans.send((pod.namespace().unwrap_or_default(), pod.name_any()));
            }
        })
        .touched_objects();
    let trigger_jobs = jobs.clone();
    let results = controller
        .watches_stream(pod_events, move |pod| jobs_of(&pod, &trigger_jobs))
        .run(sync, error_policy, ctx.clone());
    tokio::select! {
        r = drive(NAME, results) => r,
        () = orphan_worker(ctx, jobs, orphan_queue) => Err(ControllerError::Stopped {
            controller: NAME,
            reason: "its orphan pod queue closed".into(),
        }),
    }
}

/// Whether a pod with the tracking finalizer may have no running Job to count it: its
/// controller is a Job the cache does not show unfinished. The worker checks again.
fn maybe_orphan(pod: &Pod, jobs: &Store<Job>) -> bool {
    match controller_of(pod) {
        Some(owner) if is_job_ref(owner) => {
            let key = ObjectRef::new(&owner.name).within(&pod.namespace().unwrap_or_default());
            jobs.get(&key)
                .is_none_or(|j| j.uid().as_deref() != Some(owner.uid.as_str()) || is_finished(&j))
        }
        Some(_) => false,
        None => true,
    }
}

/// Upstream's `syncOrphanPod`: removes the tracking finalizer from a pod no unfinished Job
/// controls (its Job deleted or finished, or the pod released).
async fn orphan_worker(
    ctx: Arc<Context>,
    jobs: Store<Job>,
    mut queue: mpsc::UnboundedReceiver<(String, String)>,
) {
    while let Some((namespace, name)) = queue.recv().await {
        // Until the Job cache is filled, every Job would look deleted.
        if jobs.wait_until_ready().await.is_err() || ctx.pods.wait_until_ready().await.is_err() {
            return;
        }
        let Some(pod) = ctx
            .pods
            .get(&ObjectRef::new(&name).within(&namespace))
            .filter(|p| has_tracking_finalizer(p) && maybe_orphan(p, &jobs))
        else {
            continue;
        };
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
        if let Err(e) = remove_tracking_finalizer(&api, &pod).await {
            tracing::warn!(controller = NAME, pod = %format!("{namespace}/{name}"), error = %e,
                "removing the tracking finalizer of an orphan pod");
        }
    }
}

/// The Jobs a pod event concerns: its controller, or for an orphan every Job of its namespace
/// whose selector matches it (one may adopt it). Upstream's `getPodJobs`.
fn jobs_of(pod: &Pod, jobs: &Store<Job>) -> Vec<ObjectRef<Job>> {
    let namespace = pod.namespace().unwrap_or_default();
    if let Some(owner) = controller_of(pod) {
        if is_job_ref(owner) {
            return vec![ObjectRef::new(&owner.name).within(&namespace)];
        }
        return Vec::new();
    }
    jobs.state()
        .iter()
        .filter(|j| j.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|j| selector_of(j).is_ok_and(|s| s.matches(pod_labels(pod))))
        .map(|j| ObjectRef::from_obj(&**j))
        .collect()
}

fn is_job_ref(owner: &OwnerReference) -> bool {
    owner.kind == "Job" && owner.api_version == "batch/v1"
}

fn error_policy(_job: Arc<Job>, error: &SyncError, _ctx: Arc<Context>) -> Action {
    tracing::debug!(controller = NAME, %error, "retrying");
    Action::requeue(RETRY)
}

/// What one sync works with (upstream's `syncJobCtx`).
struct JobCtx {
    job: Job,
    pods: Vec<Arc<Pod>>,
    active_pods: Vec<Arc<Pod>>,
    ready: i32,
    terminating: i32,
    succeeded: i32,
    failed: i32,
    expected_rm_finalizers: HashSet<String>,
    finished: Option<JobCondition>,
    /// Indexed Jobs: the indexes `status.completedIndexes` had, and with this sync's.
    prev_succeeded_indexes: BTreeSet<i32>,
    succeeded_indexes: BTreeSet<i32>,
    new_backoff: BackoffRecord,
}

#[derive(Default, Clone)]
struct Uncounted {
    succeeded: HashSet<String>,
    failed: HashSet<String>,
}

/// Upstream's `syncJob`.
async fn sync(cached: Arc<Job>, ctx: Arc<Context>) -> Result<Action, SyncError> {
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(|_| SyncError::PodCacheGone)?;
    let key = ObjectRef::from_obj(&*cached);
    let namespace = cached.namespace().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut job = (*cached).clone();
    let last_written = lock(&ctx.written).get(&key).cloned();
    if let Some(rv) = last_written
        && job.resource_version().as_deref() != Some(rv.as_str())
    {
        match jobs.get_opt(&job.name_any()).await {
            Ok(Some(fresh)) if fresh.uid() == job.uid() => {
                if fresh.resource_version() == job.resource_version() {
                    // The cache has caught up with (or passed) the last write.
                    lock(&ctx.written).remove(&key);
                }
                job = fresh;
            }
            Ok(_) => return Ok(Action::await_change()),
            Err(source) => return Err(job_error("reading", &job, source)),
        }
    }

    if is_finished(&job) {
        lock(&ctx.backoff).remove(&key);
        lock(&ctx.written).remove(&key);
        // Upstream's `cleanupPodFinalizers` backup: a finished Job has counted all its pods.
        cleanup_pod_finalizers(&ctx, &job).await?;
        return Ok(Action::await_change());
    }
    let spec = job.spec.clone().unwrap_or_default();
    if let Some(mode) = spec.completion_mode.as_deref()
        && mode != "NonIndexed"
        && mode != "Indexed"
    {
        ctx.recorder
            .record(
                &job,
                EventType::Warning,
                "UnknownCompletionMode",
                "Skipped Job sync because completion mode is unknown".into(),
            )
            .await;
        return Ok(Action::await_change());
    }
    let selector = match selector_of(&job) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(controller = NAME, job = %key, error = %e, "invalid selector");
            return Ok(Action::await_change());
        }
    };
    let now = Timestamp::now();
    let mut requeue: Option<Duration> = None;

    // Checked before the pods are read: a pod created after this may be missed by this sync,
    // never double-counted by the next.
    let satisfied = ctx.expectations.satisfied(&key);
    let pods = claim_pods(&ctx, &job, &selector).await?;
    let status = job.status.clone().unwrap_or_default();
    let uncounted = Uncounted::from_status(&status);
    let expected_rm_finalizers = ctx.finalizer_expectations.expected(&key);
    let active_pods: Vec<Arc<Pod>> = pods.iter().filter(|p| is_active(p)).cloned().collect();
    let ready = count(active_pods.iter().filter(|p| is_ready(p)));
    let terminating = count(pods.iter().filter(|p| is_terminating(p)));
    let (new_succeeded, new_failed) =
        new_finished_pods(&job, &pods, &uncounted, &expected_rm_finalizers);
    let succeeded = status.succeeded.unwrap_or(0)
        + count(new_succeeded.iter())
        + count(uncounted.succeeded.iter());
    let failed =
        status.failed.unwrap_or(0) + count(new_failed.iter()) + count(uncounted.failed.iter());
    let suspended = spec.suspend == Some(true);

    // First start; a Job created suspended starts when it is resumed.
    let status_ref = job.status.get_or_insert_with(Default::default);
    if status_ref.start_time.is_none() && !suspended {
        status_ref.start_time = Some(Time(now));
    }
    let previous_backoff = lock(&ctx.backoff).get(&key).cloned().unwrap_or_default();
    let new_backoff = previous_backoff.updated(
        &new_succeeded
            .iter()
            .map(|p| finish_time(p, now))
            .collect::<Vec<_>>(),
        &new_failed
            .iter()
            .map(|p| finish_time(p, now))
            .collect::<Vec<_>>(),
    );
    let mut jc = JobCtx {
        job,
        pods,
        active_pods,
        ready,
        terminating,
        succeeded,
        failed,
        expected_rm_finalizers,
        finished: None,
        prev_succeeded_indexes: BTreeSet::new(),
        succeeded_indexes: BTreeSet::new(),
        new_backoff,
    };
    let mut active = count(jc.active_pods.iter());

    // A Job with SuccessCriteriaMet stays on course to Complete; one with FailureTarget to
    // Failed; otherwise the backoff limit, then the deadline.
    let conditions = conditions_of(&jc.job);
    jc.finished = find_condition(&conditions, SUCCESS_CRITERIA_MET)
        .filter(|c| c.status == "True")
        .cloned();
    if jc.finished.is_none()
        && let Some(target) = find_condition(&conditions, FAILURE_TARGET)
        && target.status == "True"
    {
        jc.finished = Some(new_condition(
            FAILED,
            "True",
            target.reason.as_deref().unwrap_or(""),
            target.message.as_deref().unwrap_or(""),
            now,
        ));
    }
    if jc.finished.is_none() {
        let backoff_limit = spec.backoff_limit.unwrap_or(6);
        if jc.failed > backoff_limit || past_backoff_limit_on_failure(&jc.job, &jc.pods) {
            jc.finished = Some(new_condition(
                FAILURE_TARGET,
                "True",
                REASON_BACKOFF_LIMIT_EXCEEDED,
                MESSAGE_BACKOFF_LIMIT_EXCEEDED,
                now,
            ));
        } else if let Some(left) = active_deadline_left(&jc.job, now) {
            if left.is_zero() {
                jc.finished = Some(new_condition(
                    FAILURE_TARGET,
                    "True",
                    REASON_DEADLINE_EXCEEDED,
                    MESSAGE_DEADLINE_EXCEEDED,
                    now,
                ));
            } else {
                requeue = Some(left);
            }
        }
    }
    if is_indexed(&jc.job) {
        let completions = spec.completions.unwrap_or(0);
        jc.prev_succeeded_indexes = parse_indexes(
            jc.job
                .status
                .as_ref()
                .and_then(|s| s.completed_indexes.as_deref())
                .unwrap_or(""),
            completions,
        );
        jc.succeeded_indexes = jc.prev_succeeded_indexes.clone();
        for p in &jc.pods {
            if phase(p) == Some("Succeeded")
                && has_tracking_finalizer(p)
                && let Some(ix) = completion_index(p).filter(|ix| *ix < completions)
            {
                jc.succeeded_indexes.insert(ix);
            }
        }
        jc.succeeded = count(jc.succeeded_indexes.iter());
    }

    let mut manage_error = None;
    let mut suspend_changed = false;
    if jc.finished.is_some() {
        // The Job is done: its active pods go (keeping their finalizers, so they are counted
        // as failed), and it is declared finished only once every one is on its way out.
        let (deleted_ready, deleted, err) =
            delete_active_pods(&ctx, &jc.job, &jc.active_pods).await;
        if deleted != active || !satisfied {
            jc.finished = None;
        }
        active -= deleted;
        jc.terminating += deleted;
        jc.ready -= deleted_ready;
        manage_error = err;
    } else {
        let mut manage_called = false;
        if satisfied && jc.job.metadata.deletion_timestamp.is_none() {
            let (now_active, wait, err) = manage_job(&ctx, &key, &mut jc, now).await;
            active = now_active;
            if let Some(wait) = wait {
                requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
            }
            manage_error = err;
            manage_called = true;
        }
        let complete = match spec.completions {
            None => jc.succeeded > 0 && active == 0,
            Some(c) => jc.succeeded >= c && active == 0,
        };
        if complete {
            jc.finished = Some(new_condition(
                SUCCESS_CRITERIA_MET,
                "True",
                REASON_COMPLETIONS_REACHED,
                MESSAGE_COMPLETIONS_REACHED,
                now,
            ));
        } else if manage_called {
            let conditions = &mut jc
                .job
                .status
                .get_or_insert_with(Default::default)
                .conditions;
            let mut list = conditions.take().unwrap_or_default();
            if suspended {
                if ensure_condition(
                    &mut list,
                    SUSPENDED,
                    "True",
                    "JobSuspended",
                    "Job suspended",
                    now,
                ) {
                    suspend_changed = true;
                    ctx.recorder
                        .record(
                            &jc.job,
                            EventType::Normal,
                            "Suspended",
                            "Job suspended".into(),
                        )
                        .await;
                }
            } else if ensure_condition(
                &mut list,
                SUSPENDED,
                "False",
                "JobResumed",
                "Job resumed",
                now,
            ) {
                suspend_changed = true;
                // The deadline counts the time a Job is continuously active.
                if let Some(s) = jc.job.status.as_mut() {
                    s.start_time = Some(Time(now));
                }
                ctx.recorder
                    .record(&jc.job, EventType::Normal, "Resumed", "Job resumed".into())
                    .await;
            }
            jc.job
                .status
                .get_or_insert_with(Default::default)
                .conditions = (!list.is_empty()).then_some(list);
        }
    }

    let status = jc.job.status.get_or_insert_with(Default::default);
    let needs_update = suspend_changed
        || status.active.unwrap_or(0) != active
        || status.ready != Some(jc.ready)
        || status.terminating != Some(jc.terminating)
        || cached.status.as_ref().and_then(|s| s.start_time.clone()) != status.start_time;
    status.active = Some(active);
    status.ready = Some(jc.ready);
    status.terminating = Some(jc.terminating);
    track_job_status_and_remove_finalizers(&ctx, &key, &jobs, &mut jc, needs_update, now).await?;
    if let Some(e) = manage_error {
        return Err(e);
    }
    Ok(requeue.map_or_else(Action::await_change, Action::requeue))
}

/// Upstream's `manageJob`: creates or deletes pods toward the active count the Job wants.
/// Returns the active count after it, how long pod creation is held back by the failure
/// backoff (then the Job is synced again), and the first error.
async fn manage_job(
    ctx: &Context,
    key: &ObjectRef<Job>,
    jc: &mut JobCtx,
    now: Timestamp,
) -> (i32, Option<Duration>, Option<SyncError>) {
    let job = jc.job.clone();
    let spec = job.spec.clone().unwrap_or_default();
    let mut active = count(jc.active_pods.iter());
    if spec.suspend == Some(true) {
        let victims = pods_for_removal(&job, &jc.active_pods, jc.active_pods.len());
        let (removed_ready, removed, err) = delete_job_pods(ctx, key, &job, &victims).await;
        jc.terminating += removed;
        jc.ready -= removed_ready;
        return (active - removed, None, err);
    }
    let want = want_active(
        spec.completions,
        spec.parallelism.unwrap_or(1),
        jc.succeeded,
        active,
    );
    let remove = usize::try_from(active - want).unwrap_or(0);
    let mut victims = pods_for_removal(&job, &jc.active_pods, remove);
    victims.truncate(MAX_POD_CREATE_DELETE_PER_SYNC);
    if !victims.is_empty() {
        // Creating and deleting in one sync is never needed; deleting goes first.
        let (removed_ready, removed, err) = delete_job_pods(ctx, key, &job, &victims).await;
        jc.terminating += removed;
        jc.ready -= removed_ready;
        return (active - removed, None, err);
    }
    // With `podReplacementPolicy: Failed` a pod is replaced only once it has failed, not
    // while it terminates.
    let terminating = if spec.pod_replacement_policy.as_deref() == Some("Failed") {
        jc.terminating
    } else {
        0
    };
    let diff = want - terminating - active;
    if diff <= 0 {
        return (active, None, None);
    }
    let wait = jc.new_backoff.remaining(
        now,
        ctx.config.pod_failure_backoff,
        ctx.config.max_pod_failure_backoff,
    );
    if !wait.is_zero() {
        return (active, Some(wait.max(SYNC_JOB_BATCH_PERIOD)), None);
    }
    let mut diff = usize::try_from(diff)
        .unwrap_or(0)
        .min(MAX_POD_CREATE_DELETE_PER_SYNC);
    let indexes: Vec<Option<i32>> = if is_indexed(&job) {
        let active_indexes: BTreeSet<i32> = jc
            .active_pods
            .iter()
            .filter_map(|p| completion_index(p))
            .collect();
        let list = first_pending_indexes(
            &jc.succeeded_indexes,
            &active_indexes,
            diff,
            spec.completions.unwrap_or(0),
        );
        diff = list.len();
        list.into_iter().map(Some).collect()
    } else {
        vec![None; diff]
    };
    let namespace = job.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let pods: Vec<Pod> = indexes
        .iter()
        .map(|ix| pod_from_template(&job, *ix))
        .collect();
    ctx.expectations
        .expect_creations(key, pods.iter().map(|p| p.name_any()));
    active += count(pods.iter());
    // Slow start, as the ReplicaSet controller: batches of 1, 2, 4, … so a Job whose pods
    // all fail to create makes one request, not hundreds.
    let mut remaining = pods.into_iter();
    let mut batch = 1.min(diff);
    while batch > 0 {
        let this: Vec<Pod> = remaining.by_ref().take(batch).collect();
        let results = futures::future::join_all(this.iter().map(|pod| {
            let api = api.clone();
            async move { api.create(&post_params(), pod).await }
        }))
        .await;
        let mut first_error = None;
        for (pod, result) in this.iter().zip(results) {
            let name = pod.name_any();
            match result {
                Ok(_) => {
                    ctx.recorder
                        .record(
                            &job,
                            EventType::Normal,
                            "SuccessfulCreate",
                            format!("Created pod: {name}"),
                        )
                        .await;
                }
                Err(source) => {
                    ctx.expectations.creation_failed(key, &name);
                    active -= 1;
                    ctx.recorder
                        .record(
                            &job,
                            EventType::Warning,
                            "FailedCreate",
                            format!("Error creating: {source}"),
                        )
                        .await;
                    first_error.get_or_insert(SyncError::Pod {
                        verb: "creating",
                        namespace: namespace.clone(),
                        name,
                        source,
                    });
                }
            }
        }
        if let Some(e) = first_error {
            // The pods not tried are not expected; the next sync tries them again.
            for pod in remaining {
                ctx.expectations.creation_failed(key, &pod.name_any());
                active -= 1;
            }
            return (active, None, Some(e));
        }
        batch = (batch * 2).min(remaining.len());
    }
    (active, None, None)
}

/// Upstream's `wantActive`: parallelism, but never more than the completions left; without
/// completions, once one pod has succeeded, whatever runs is left running and nothing new.
fn want_active(completions: Option<i32>, parallelism: i32, succeeded: i32, active: i32) -> i32 {
    match completions {
        None if succeeded > 0 => active,
        None => parallelism,
        Some(c) => (c - succeeded).min(parallelism).max(0),
    }
}

/// Upstream's `activePodsForRemoval`: an Indexed Job's pods with a duplicate or invalid
/// index first, then by the ReplicaSet ranking (unscheduled, pending, not ready first).
fn pods_for_removal(job: &Job, active: &[Arc<Pod>], at_least: usize) -> Vec<Arc<Pod>> {
    let mut remove = Vec::new();
    let mut left = Vec::new();
    if is_indexed(job) {
        let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
        let mut seen = HashSet::new();
        for p in active {
            match completion_index(p) {
                Some(ix) if ix < completions && seen.insert(ix) => left.push(p.clone()),
                _ => remove.push(p.clone()),
            }
        }
    } else {
        left = active.to_vec();
    }
    if remove.len() < at_least {
        let more = at_least - remove.len();
        remove.extend(pods_to_delete(&left, more));
    }
    remove
}

/// Upstream's `firstPendingIndexes`: the lowest indexes neither succeeded nor running.
fn first_pending_indexes(
    succeeded: &BTreeSet<i32>,
    active: &BTreeSet<i32>,
    n: usize,
    completions: i32,
) -> Vec<i32> {
    (0..completions)
        .filter(|ix| !succeeded.contains(ix) && !active.contains(ix))
        .take(n)
        .collect()
}

/// Upstream's `deleteJobPods` (suspension, too many pods): the finalizer goes first, so the
/// deleted pod is not counted as failed.
async fn delete_job_pods(
    ctx: &Context,
    key: &ObjectRef<Job>,
    job: &Job,
    victims: &[Arc<Pod>],
) -> (i32, i32, Option<SyncError>) {
    let namespace = job.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    ctx.expectations
        .expect_deletions(key, victims.iter().map(|p| p.uid().unwrap_or_default()));
    let results = futures::future::join_all(victims.iter().map(|pod| {
        let api = api.clone();
        async move {
            remove_tracking_finalizer(&api, pod).await?;
            match api.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(e),
            }
        }
    }))
    .await;
    tally_deletions(ctx, Some(key), job, victims, results).await
}

/// Upstream's `deleteActivePods` (a finished Job): plain deletes, keeping the finalizers so
/// the pods are counted as failed before they go.
async fn delete_active_pods(
    ctx: &Context,
    job: &Job,
    victims: &[Arc<Pod>],
) -> (i32, i32, Option<SyncError>) {
    let namespace = job.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let results = futures::future::join_all(victims.iter().map(|pod| {
        let api = api.clone();
        async move {
            match api.delete(&pod.name_any(), &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(e),
            }
        }
    }))
    .await;
    tally_deletions(ctx, None, job, victims, results).await
}

/// (ready pods deleted, pods deleted, first error), recording an Event per deletion.
async fn tally_deletions(
    ctx: &Context,
    key: Option<&ObjectRef<Job>>,
    job: &Job,
    victims: &[Arc<Pod>],
    results: Vec<Result<(), kube::Error>>,
) -> (i32, i32, Option<SyncError>) {
    let (mut ready, mut deleted, mut first_error) = (0, 0, None);
    for (pod, result) in victims.iter().zip(results) {
        match result {
            Ok(()) => {
                deleted += 1;
                if is_ready(pod) {
                    ready += 1;
                }
                ctx.recorder
                    .record(
                        job,
                        EventType::Normal,
                        "SuccessfulDelete",
                        format!("Deleted pod: {}", pod.name_any()),
                    )
                    .await;
            }
            Err(source) => {
                if let Some(key) = key {
                    ctx.expectations
                        .deletion_failed(key, &pod.uid().unwrap_or_default());
                }
                first_error.get_or_insert(SyncError::Pod {
                    verb: "deleting",
                    namespace: pod.namespace().unwrap_or_default(),
                    name: pod.name_any(),
                    source,
                });
            }
        }
    }
    (ready, deleted, first_error)
}

/// Upstream's `trackJobStatusAndRemoveFinalizers`: newly finished pods into
/// `uncountedTerminatedPods`, written; their finalizers removed; then counted; then, when
/// nothing is left uncounted or terminating, the terminal condition.
async fn track_job_status_and_remove_finalizers(
    ctx: &Context,
    key: &ObjectRef<Job>,
    jobs: &Api<Job>,
    jc: &mut JobCtx,
    mut needs_flush: bool,
    now: Timestamp,
) -> Result<(), SyncError> {
    let indexed = is_indexed(&jc.job);
    let completions = jc
        .job
        .spec
        .as_ref()
        .and_then(|s| s.completions)
        .unwrap_or(0);
    let deleting = jc.job.metadata.deletion_timestamp.is_some();
    let mut uids_with_finalizer: HashSet<String> = jc
        .pods
        .iter()
        .filter(|p| has_tracking_finalizer(p))
        .filter_map(|p| p.uid())
        .filter(|uid| !jc.expected_rm_finalizers.contains(uid))
        .collect();
    // Taken out while the pods are examined (they need the Job); put back before the write.
    let mut owned_status = jc.job.status.take().unwrap_or_default();
    let status = &mut owned_status;
    if clean_uncounted(status, &uids_with_finalizer) {
        needs_flush = true;
    }
    let mut uncounted = Uncounted::from_status(status);
    let mut to_unfinalize = Vec::new();
    let mut new_indexes = Vec::new();
    let mut reached_max = false;
    let finished_failing = jc
        .finished
        .as_ref()
        .is_some_and(|c| c.type_ != SUCCESS_CRITERIA_MET);
    for pod in &jc.pods {
        let uid = pod.uid().unwrap_or_default();
        if !has_tracking_finalizer(pod) || jc.expected_rm_finalizers.contains(&uid) {
            continue;
        }
        let failed = is_pod_failed(pod, &jc.job);
        // Upstream's `canRemoveFinalizer`.
        if !(deleting || jc.finished.is_some() || phase(pod) == Some("Succeeded") || failed) {
            continue;
        }
        to_unfinalize.push(pod.clone());
        if phase(pod) == Some("Succeeded") && !uncounted.failed.contains(&uid) {
            if indexed {
                if let Some(ix) = completion_index(pod).filter(|ix| *ix < completions)
                    && !jc.prev_succeeded_indexes.contains(&ix)
                {
                    new_indexes.push(ix);
                    needs_flush = true;
                }
            } else if uncounted.succeeded.insert(uid.clone()) {
                needs_flush = true;
                push_uid(status, true, uid);
            }
        } else if (failed || finished_failing)
            && !uncounted.failed.contains(&uid)
            && (!indexed || completion_index(pod).is_some_and(|ix| ix < completions))
        {
            uncounted.failed.insert(uid.clone());
            needs_flush = true;
            push_uid(status, false, uid);
        }
        let uncounted_len = new_indexes.len()
            + status.uncounted_terminated_pods.as_ref().map_or(0, |u| {
                u.succeeded.as_ref().map_or(0, Vec::len) + u.failed.as_ref().map_or(0, Vec::len)
            });
        if uncounted_len >= MAX_UNCOUNTED_PODS {
            reached_max = true;
            break;
        }
    }
    if indexed {
        jc.succeeded_indexes.extend(new_indexes);
        let text = format_indexes(&jc.succeeded_indexes);
        if status.completed_indexes.as_deref().unwrap_or("") != text {
            needs_flush = true;
        }
        status.succeeded = Some(count(jc.succeeded_indexes.iter()));
        status.completed_indexes = Some(text);
    }
    // The interim condition goes in with the uncounted pods, before any finalizer is removed:
    // a restarted controller finds the verdict already made.
    if let Some(target) = jc.finished.clone() {
        let list = status.conditions.get_or_insert_with(Vec::new);
        if target.type_ == FAILURE_TARGET {
            list.push(target.clone());
            needs_flush = true;
            jc.finished = Some(new_condition(
                FAILED,
                "True",
                target.reason.as_deref().unwrap_or(""),
                target.message.as_deref().unwrap_or(""),
                now,
            ));
        } else if target.type_ == SUCCESS_CRITERIA_MET {
            if find_condition(list, SUCCESS_CRITERIA_MET).is_none() {
                list.push(target.clone());
                needs_flush = true;
            }
            jc.finished = Some(new_condition(
                COMPLETE,
                "True",
                target.reason.as_deref().unwrap_or(""),
                target.message.as_deref().unwrap_or(""),
                now,
            ));
        }
    }

    jc.job.status = Some(owned_status);
    // Upstream's `flushUncountedAndRemoveFinalizers`.
    if needs_flush {
        update_status(ctx, key, jobs, &mut jc.job).await?;
        lock(&ctx.backoff).insert(key.clone(), jc.new_backoff.clone());
        needs_flush = false;
    }
    let mut remove_error = None;
    if !to_unfinalize.is_empty() {
        ctx.finalizer_expectations
            .expect(key, to_unfinalize.iter().filter_map(|p| p.uid()));
        let namespace = jc.job.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
        let results = futures::future::join_all(
            to_unfinalize
                .iter()
                .map(|p| remove_tracking_finalizer(&api, p)),
        )
        .await;
        for (pod, result) in to_unfinalize.iter().zip(results) {
            let uid = pod.uid().unwrap_or_default();
            match result {
                Ok(()) => {
                    uids_with_finalizer.remove(&uid);
                }
                Err(source) => {
                    ctx.finalizer_expectations.observed(key, &uid);
                    remove_error.get_or_insert(SyncError::Pod {
                        verb: "removing the tracking finalizer of",
                        namespace: namespace.clone(),
                        name: pod.name_any(),
                        source,
                    });
                }
            }
        }
    }
    let status = jc.job.status.get_or_insert_with(Default::default);
    if clean_uncounted(status, &uids_with_finalizer) {
        needs_flush = true;
    }
    if let Some(e) = remove_error {
        if needs_flush {
            update_status(ctx, key, jobs, &mut jc.job).await?;
        }
        return Err(e);
    }

    // Upstream's `enactJobFinished`: the terminal condition once every pod is counted and none
    // is left terminating.
    let mut finished = false;
    if !reached_max && let Some(cond) = jc.finished.clone() {
        let status = jc.job.status.get_or_insert_with(Default::default);
        let uncounted_left = status.uncounted_terminated_pods.as_ref().is_some_and(|u| {
            u.succeeded.as_ref().is_some_and(|v| !v.is_empty())
                || u.failed.as_ref().is_some_and(|v| !v.is_empty())
        });
        if !uncounted_left && jc.terminating == 0 {
            let list = status.conditions.get_or_insert_with(Vec::new);
            ensure_condition(
                list,
                &cond.type_,
                "True",
                cond.reason.as_deref().unwrap_or(""),
                cond.message.as_deref().unwrap_or(""),
                now,
            );
            if cond.type_ == COMPLETE {
                status.completion_time = Some(Time(now));
            }
            finished = true;
            needs_flush = true;
        }
    }
    if needs_flush {
        update_status(ctx, key, jobs, &mut jc.job).await?;
    }
    if finished && let Some(cond) = &jc.finished {
        record_job_finished(ctx, &jc.job, cond).await;
    }
    Ok(())
}

/// Upstream's `recordJobFinished`.
async fn record_job_finished(ctx: &Context, job: &Job, cond: &JobCondition) {
    if cond.type_ == COMPLETE {
        let completions = job.spec.as_ref().and_then(|s| s.completions);
        let succeeded = job.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0);
        if completions.is_some_and(|c| succeeded > c) {
            ctx.recorder
                .record(
                    job,
                    EventType::Warning,
                    "TooManySucceededPods",
                    "Too many succeeded pods running after completion count reached".into(),
                )
                .await;
        }
        ctx.recorder
            .record(job, EventType::Normal, "Completed", "Job completed".into())
            .await;
    } else {
        ctx.recorder
            .record(
                job,
                EventType::Warning,
                cond.reason.as_deref().unwrap_or(FAILED),
                cond.message.clone().unwrap_or_default(),
            )
            .await;
    }
}

fn push_uid(status: &mut JobStatus, succeeded: bool, uid: String) {
    let u = status
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default);
    let list = if succeeded {
        &mut u.succeeded
    } else {
        &mut u.failed
    };
    list.get_or_insert_with(Vec::new).push(uid);
}

/// Upstream's `cleanUncountedPodsWithoutFinalizers`: uncounted pods whose finalizer is gone
/// are counted. True when anything moved.
fn clean_uncounted(status: &mut JobStatus, with_finalizer: &HashSet<String>) -> bool {
    let u = status
        .uncounted_terminated_pods
        .get_or_insert_with(UncountedTerminatedPods::default);
    let mut moved = false;
    for (list, counter) in [
        (&mut u.succeeded, &mut status.succeeded),
        (&mut u.failed, &mut status.failed),
    ] {
        let Some(uids) = list.as_mut() else { continue };
        let before = uids.len();
        uids.retain(|uid| with_finalizer.contains(uid));
        let gone = before - uids.len();
        if gone > 0 {
            moved = true;
            *counter = Some(counter.unwrap_or(0) + i32::try_from(gone).unwrap_or(i32::MAX));
        }
        if uids.is_empty() {
            *list = None;
        }
    }
    moved
}

/// Writes the Job's status (guarded by the resourceVersion read) and remembers the version
/// written.
async fn update_status(
    ctx: &Context,
    key: &ObjectRef<Job>,
    jobs: &Api<Job>,
    job: &mut Job,
) -> Result<(), SyncError> {
    let name = job.name_any();
    match jobs.replace_status(&name, &post_params(), &*job).await {
        Ok(stored) => {
            job.metadata.resource_version = stored.metadata.resource_version.clone();
            if let Some(rv) = stored.metadata.resource_version {
                lock(&ctx.written).insert(key.clone(), rv);
            }
            Ok(())
        }
        Err(source) => Err(job_error("updating the status of", job, source)),
    }
}

fn job_error(verb: &'static str, job: &Job, source: kube::Error) -> SyncError {
    SyncError::Job {
        verb,
        namespace: job.namespace().unwrap_or_default(),
        name: job.name_any(),
        source,
    }
}

/// Removes the tracking finalizer (`$deleteFromPrimitiveList`, as upstream, so other
/// finalizers are untouched); a pod already gone is fine.
async fn remove_tracking_finalizer(api: &Api<Pod>, pod: &Pod) -> Result<(), kube::Error> {
    if !has_tracking_finalizer(pod) {
        return Ok(());
    }
    let patch = json!({"metadata": {
        "$deleteFromPrimitiveList/finalizers": [JOB_TRACKING_FINALIZER],
    }});
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api
        .patch(&pod.name_any(), &params, &Patch::Strategic(patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// A finished Job's pods that still hold the finalizer let go of it.
async fn cleanup_pod_finalizers(ctx: &Context, job: &Job) -> Result<(), SyncError> {
    let uid = job.uid().unwrap_or_default();
    let namespace = job.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    for pod in ctx.pods.state() {
        if pod.namespace().as_deref() == Some(namespace.as_str())
            && has_tracking_finalizer(&pod)
            && controller_of(&pod).is_some_and(|o| o.uid == uid)
        {
            remove_tracking_finalizer(&api, &pod)
                .await
                .map_err(|source| SyncError::Pod {
                    verb: "removing the tracking finalizer of",
                    namespace: namespace.clone(),
                    name: pod.name_any(),
                    source,
                })?;
        }
    }
    Ok(())
}

/// Upstream's `getPodsForJob` (`ClaimPods` with the tracking finalizer): every pod of the
/// namespace the Job controls and whose labels it still selects — finished ones too — after
/// adopting matching orphans (ownerReference and finalizer patched in) and releasing its pods
/// that stopped matching.
async fn claim_pods(
    ctx: &Context,
    job: &Job,
    selector: &Selector,
) -> Result<Vec<Arc<Pod>>, SyncError> {
    let uid = job.uid().unwrap_or_default();
    let deleting = job.metadata.deletion_timestamp.is_some();
    let namespace = job.namespace().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    };
    let mut owned = Vec::new();
    for pod in ctx.pods.state() {
        if pod.namespace().as_deref() != Some(namespace.as_str()) {
            continue;
        }
        let matches = selector.matches(pod_labels(&pod));
        let (verb, patch) = match controller_of(&pod) {
            Some(owner) if owner.uid != uid => continue,
            Some(_) if matches => {
                owned.push(pod);
                continue;
            }
            Some(_) if deleting => continue,
            Some(_) => (
                "releasing",
                json!({"metadata": {
                    "ownerReferences": [{"$patch": "delete", "uid": uid}],
                    "uid": pod.uid(),
                }}),
            ),
            None if deleting || !matches || pod.metadata.deletion_timestamp.is_some() => continue,
            None => (
                "adopting",
                json!({"metadata": {
                    "ownerReferences": [controller_ref(job)],
                    "finalizers": [JOB_TRACKING_FINALIZER],
                    "uid": pod.uid(),
                }}),
            ),
        };
        match api
            .patch(&pod.name_any(), &params, &Patch::Strategic(patch))
            .await
        {
            Ok(patched) if verb == "adopting" => owned.push(Arc::new(patched)),
            Ok(_) => {}
            // Gone, or a newer pod of the same name (the uid guard): nothing to claim.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 || s.code == 422 => {}
            Err(source) => {
                return Err(SyncError::Pod {
                    verb,
                    namespace: namespace.clone(),
                    name: pod.name_any(),
                    source,
                });
            }
        }
    }
    Ok(owned)
}

/// Upstream's `getNewFinishedPods`: finished pods holding the finalizer that are neither in
/// the uncounted lists nor being unfinalized.
fn new_finished_pods(
    job: &Job,
    pods: &[Arc<Pod>],
    uncounted: &Uncounted,
    expected_rm: &HashSet<String>,
) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
    let completions = job.spec.as_ref().and_then(|s| s.completions).unwrap_or(0);
    let valid = |p: &Pod| {
        let uid = p.uid().unwrap_or_default();
        has_tracking_finalizer(p)
            && !expected_rm.contains(&uid)
            && (!is_indexed(job) || completion_index(p).is_some_and(|ix| ix < completions))
    };
    let succeeded = pods
        .iter()
        .filter(|p| valid(p) && phase(p) == Some("Succeeded"))
        .filter(|p| !uncounted.succeeded.contains(&p.uid().unwrap_or_default()))
        .cloned()
        .collect();
    let failed = pods
        .iter()
        .filter(|p| valid(p) && is_pod_failed(p, job))
        .filter(|p| !uncounted.failed.contains(&p.uid().unwrap_or_default()))
        .cloned()
        .collect();
    (succeeded, failed)
}

impl Uncounted {
    fn from_status(status: &JobStatus) -> Self {
        let u = status.uncounted_terminated_pods.as_ref();
        let set = |l: Option<&Vec<String>>| l.into_iter().flatten().cloned().collect();
        Uncounted {
            succeeded: set(u.and_then(|u| u.succeeded.as_ref())),
            failed: set(u.and_then(|u| u.failed.as_ref())),
        }
    }
}

/// Upstream's `isPodFailed`: Failed, or — unless only failed pods are replaced — deleted
/// before it succeeded (an orphan never reaches Failed).
fn is_pod_failed(pod: &Pod, job: &Job) -> bool {
    if phase(pod) == Some("Failed") {
        return true;
    }
    let only_failed = job
        .spec
        .as_ref()
        .and_then(|s| s.pod_replacement_policy.as_deref())
        == Some("Failed");
    !only_failed && pod.metadata.deletion_timestamp.is_some() && phase(pod) != Some("Succeeded")
}

/// Upstream's `pastBackoffLimitOnFailure`: with `restartPolicy: OnFailure` the kubelet
/// restarts containers in place, so their restarts count against the limit.
fn past_backoff_limit_on_failure(job: &Job, pods: &[Arc<Pod>]) -> bool {
    let spec = job.spec.as_ref();
    let policy = spec
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.restart_policy.as_deref());
    if policy != Some("OnFailure") {
        return false;
    }
    let restarts: i32 = pods
        .iter()
        .filter(|p| matches!(phase(p), Some("Running" | "Pending")))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum();
    let limit = spec.and_then(|s| s.backoff_limit).unwrap_or(6);
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

/// How long until `activeDeadlineSeconds` passes (zero once it has); `None` without one, or
/// for a suspended or not yet started Job.
fn active_deadline_left(job: &Job, now: Timestamp) -> Option<Duration> {
    let spec = job.spec.as_ref()?;
    let deadline = spec.active_deadline_seconds?;
    if spec.suspend == Some(true) {
        return None;
    }
    let start = job.status.as_ref()?.start_time.as_ref()?.0;
    let elapsed = now.duration_since(start);
    let left = SignedDuration::from_secs(deadline) - elapsed;
    Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
}

/// When a pod finished (upstream's `getFinishedTime`): its containers' latest termination,
/// else its deletion, else now.
fn finish_time(pod: &Pod, now: Timestamp) -> Timestamp {
    let containers = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    containers
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now)
}

/// Upstream's `backoffRecord`: failures since the last success and when the last one was.
#[derive(Debug, Clone, Default, PartialEq)]
struct BackoffRecord {
    failures_after_last_success: u32,
    last_failure_time: Option<Timestamp>,
}

impl BackoffRecord {
    /// Upstream's `newBackoffRecord`: this sync's newly finished pods applied. A success
    /// resets the count; failures after the last success still count.
    fn updated(&self, succeeded: &[Timestamp], failed: &[Timestamp]) -> BackoffRecord {
        let mut failed = failed.to_vec();
        failed.sort();
        let Some(last_success) = succeeded.iter().max() else {
            let Some(last) = failed.last() else {
                return self.clone();
            };
            return BackoffRecord {
                failures_after_last_success: self.failures_after_last_success
                    + u32::try_from(failed.len()).unwrap_or(u32::MAX),
                last_failure_time: Some(*last),
            };
        };
        let after: Vec<&Timestamp> = failed.iter().filter(|t| *t > last_success).collect();
        BackoffRecord {
            failures_after_last_success: u32::try_from(after.len()).unwrap_or(u32::MAX),
            last_failure_time: after.last().map(|t| **t),
        }
    }

    /// Upstream's `getRemainingTime`: `base` doubled for each failure after the first, capped
    /// at `max`, less the time since the last failure.
    fn remaining(&self, now: Timestamp, base: Duration, max: Duration) -> Duration {
        let (n, Some(last)) = (self.failures_after_last_success, self.last_failure_time) else {
            return Duration::ZERO;
        };
        if n == 0 {
            return Duration::ZERO;
        }
        let mut backoff = base;
        for _ in 1..n {
            backoff = backoff.saturating_mul(2);
            if backoff >= max {
                backoff = max;
                break;
            }
        }
        let elapsed = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
        backoff.saturating_sub(elapsed)
    }
}

/// A pod from the Job's template (upstream's `GetPodFromTemplate` plus the tracking
/// finalizer), controlled by the Job; with a completion index for Indexed Jobs.
fn pod_from_template(job: &Job, index: Option<i32>) -> Pod {
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut finalizers = meta.finalizers.unwrap_or_default();
    if !finalizers.iter().any(|f| f == JOB_TRACKING_FINALIZER) {
        finalizers.push(JOB_TRACKING_FINALIZER.into());
    }
    let mut labels = meta.labels;
    let mut annotations = meta.annotations;
    let mut spec = template.spec;
    let job_name = job.name_any();
    let name = match index {
        Some(ix) => {
            annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(JOB_COMPLETION_INDEX.into(), ix.to_string());
            labels
                .get_or_insert_with(BTreeMap::new)
                .insert(JOB_COMPLETION_INDEX.into(), ix.to_string());
            if let Some(spec) = spec.as_mut() {
                spec.hostname = Some(format!("{job_name}-{ix}"));
                let env = EnvVar {
                    name: JOB_COMPLETION_INDEX_ENV.into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            api_version: None,
                            field_path: format!("metadata.annotations['{JOB_COMPLETION_INDEX}']"),
                        }),
                        ..Default::default()
                    }),
                };
                for c in spec
                    .containers
                    .iter_mut()
                    .chain(spec.init_containers.iter_mut().flatten())
                {
                    let vars = c.env.get_or_insert_with(Vec::new);
                    if !vars.iter().any(|v| v.name == JOB_COMPLETION_INDEX_ENV) {
                        vars.push(env.clone());
                    }
                }
            }
            generate_name(&indexed_prefix(&job_name, ix))
        }
        None => generate_name(&format!("{job_name}-")),
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: job.namespace(),
            labels,
            annotations,
            finalizers: Some(finalizers),
            owner_references: Some(vec![controller_ref(job)]),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

/// Upstream's `podGenerateNameWithIndex`: `<job>-<index>-`, the Job's name cut so the prefix
/// fits the 58 characters generateName keeps.
fn indexed_prefix(job: &str, index: i32) -> String {
    let appendix = format!("-{index}-");
    let keep = 58usize.saturating_sub(appendix.len());
    let base: String = job.chars().take(keep).collect();
    format!("{base}{appendix}")
}

/// The API server's generateName: the prefix cut to 58 characters and 5 random consonants and
/// digits.
fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let base: String = prefix.chars().take(58).collect();
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect();
    format!("{base}{suffix}")
}

fn controller_ref(job: &Job) -> OwnerReference {
    OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job.name_any(),
        uid: job.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// Upstream's `IsJobFinished`: Complete or Failed is True.
pub fn is_finished(job: &Job) -> bool {
    finish_condition(job).is_some()
}

/// The Job's Complete or Failed condition, when True.
pub fn finish_condition(job: &Job) -> Option<&JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == COMPLETE || c.type_ == FAILED) && c.status == "True")
}

fn conditions_of(job: &Job) -> Vec<JobCondition> {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
}

fn find_condition<'a>(list: &'a [JobCondition], type_: &str) -> Option<&'a JobCondition> {
    list.iter().find(|c| c.type_ == type_)
}

fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: status.into(),
        reason: (!reason.is_empty()).then(|| reason.into()),
        message: (!message.is_empty()).then(|| message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Upstream's `ensureJobConditionStatus`: sets a condition of `type_` (a False one is never
/// added, only updated to). True when the list changed.
fn ensure_condition(
    list: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    let new = new_condition(type_, status, reason, message, now);
    if let Some(c) = list.iter_mut().find(|c| c.type_ == type_) {
        if c.status != new.status || c.reason != new.reason || c.message != new.message {
            *c = new;
            return true;
        }
        return false;
    }
    if status != "False" {
        list.push(new);
        return true;
    }
    false
}

fn is_indexed(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.completion_mode.as_deref()) == Some("Indexed")
}

/// The pod's completion index (annotation, as upstream's `getCompletionIndex`).
fn completion_index(pod: &Pod) -> Option<i32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(JOB_COMPLETION_INDEX)?
        .parse()
        .ok()
        .filter(|ix| *ix >= 0)
}

/// Upstream's `orderedIntervals.String`: `1,3-5,7`.
fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last += 1;
            iter.next();
        }
        out.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
    }
    out.join(",")
}

/// Upstream's `parseIndexesFromString`: what does not parse, or is past `completions`, is
/// dropped.
fn parse_indexes(text: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) else {
            continue;
        };
        out.extend((a.max(0)..=b.min(completions - 1)).filter(|ix| *ix >= a));
    }
    out
}

fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == JOB_TRACKING_FINALIZER))
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// Upstream's `IsPodActive`.
fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase(pod), Some("Succeeded" | "Failed"))
}

/// Upstream's `CountTerminatingPods`: being deleted, not yet finished.
fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !matches!(phase(pod), Some("Succeeded" | "Failed"))
}

fn count<T>(iter: impl Iterator<Item = T>) -> i32 {
    i32::try_from(iter.count()).unwrap_or(i32::MAX)
}

fn selector_of(job: &Job) -> Result<Selector, String> {
    let selector = job.spec.as_ref().and_then(|s| s.selector.as_ref());
    let value = serde_json::to_value(selector).unwrap_or_default();
    Selector::from_label_selector_value(&value).map_err(|e| e.to_string())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Per Job, the pods its last sync created (by name) that the pod watch has not shown yet,
/// and those it deleted (by uid) that the watch still shows (upstream's
/// `ControllerExpectations`, by identity as the ReplicaSet controller's).
#[derive(Default)]
struct Expectations(Mutex<HashMap<ObjectRef<Job>, Pending>>);

struct Pending {
    creations: HashSet<String>,
    deletions: HashSet<String>,
    since: Instant,
}

impl Expectations {
    fn entry<'a>(
        map: &'a mut HashMap<ObjectRef<Job>, Pending>,
        key: &ObjectRef<Job>,
    ) -> &'a mut Pending {
        let p = map.entry(key.clone()).or_insert_with(|| Pending {
            creations: HashSet::new(),
            deletions: HashSet::new(),
            since: Instant::now(),
        });
        p.since = Instant::now();
        p
    }

    fn expect_creations(&self, key: &ObjectRef<Job>, names: impl Iterator<Item = String>) {
        Self::entry(&mut lock(&self.0), key).creations.extend(names);
    }

    fn expect_deletions(&self, key: &ObjectRef<Job>, uids: impl Iterator<Item = String>) {
        Self::entry(&mut lock(&self.0), key).deletions.extend(uids);
    }

    fn creation_failed(&self, key: &ObjectRef<Job>, name: &str) {
        if let Some(p) = lock(&self.0).get_mut(key) {
            p.creations.remove(name);
        }
    }

    fn deletion_failed(&self, key: &ObjectRef<Job>, uid: &str) {
        if let Some(p) = lock(&self.0).get_mut(key) {
            p.deletions.remove(uid);
        }
    }

    fn satisfied(&self, key: &ObjectRef<Job>) -> bool {
        let mut map = lock(&self.0);
        let Some(p) = map.get(key) else {
            return true;
        };
        let met = (p.creations.is_empty() && p.deletions.is_empty())
            || p.since.elapsed() > EXPECTATIONS_TIMEOUT;
        if met {
            map.remove(key);
        }
        met
    }

    fn observe(&self, event: &watcher::Event<Pod>) {
        let Some((pod, deleted)) = event_pod(event) else {
            return;
        };
        let Some(key) = job_key(pod) else { return };
        let mut map = lock(&self.0);
        if let Some(p) = map.get_mut(&key) {
            p.creations.remove(&pod.name_any());
            if deleted {
                p.deletions.remove(&pod.uid().unwrap_or_default());
            }
        }
    }
}

/// Per Job, the uids of pods whose tracking finalizer this controller removed and the pod
/// watch still shows with it (upstream's `uidTrackingExpectations`): a stale cache must not
/// have them counted twice.
#[derive(Default)]
struct FinalizerExpectations(Mutex<HashMap<ObjectRef<Job>, HashSet<String>>>);

impl FinalizerExpectations {
    fn expect(&self, key: &ObjectRef<Job>, uids: impl Iterator<Item = String>) {
        lock(&self.0).entry(key.clone()).or_default().extend(uids);
    }

    fn expected(&self, key: &ObjectRef<Job>) -> HashSet<String> {
        lock(&self.0).get(key).cloned().unwrap_or_default()
    }

    fn observed(&self, key: &ObjectRef<Job>, uid: &str) {
        let mut map = lock(&self.0);
        if let Some(set) = map.get_mut(key) {
            set.remove(uid);
            if set.is_empty() {
                map.remove(key);
            }
        }
    }

    fn observe(&self, event: &watcher::Event<Pod>) {
        let Some((pod, deleted)) = event_pod(event) else {
            return;
        };
        if !deleted && has_tracking_finalizer(pod) {
            return;
        }
        // A deleted pod's event is the last; a pod without the finalizer is settled.
        let Some(key) = job_key(pod) else { return };
        if matches!(event, watcher::Event::Delete(_)) || !has_tracking_finalizer(pod) {
            self.observed(&key, &pod.uid().unwrap_or_default());
        }
    }
}

/// The pod of a watch event, and whether the event shows it deleted or being deleted.
fn event_pod(event: &watcher::Event<Pod>) -> Option<(&Pod, bool)> {
    match event {
        watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
            Some((p, p.metadata.deletion_timestamp.is_some()))
        }
        watcher::Event::Delete(p) => Some((p, true)),
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

fn job_key(pod: &Pod) -> Option<ObjectRef<Job>> {
    let owner = controller_of(pod).filter(|o| is_job_ref(o))?;
    Some(ObjectRef::new(&owner.name).within(&pod.namespace().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("time")
    }

    fn job(value: Value) -> Job {
        serde_json::from_value(value).expect("job")
    }

    fn pod(value: Value) -> Pod {
        serde_json::from_value(value).expect("pod")
    }

    #[test]
    fn backoff_doubles_from_the_base_and_is_capped() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(600);
        let record = |n: u32| BackoffRecord {
            failures_after_last_success: n,
            last_failure_time: Some(at(1000)),
        };
        assert_eq!(record(0).remaining(at(1000), base, max), Duration::ZERO);
        assert_eq!(record(1).remaining(at(1000), base, max), base);
        assert_eq!(
            record(3).remaining(at(1000), base, max),
            Duration::from_secs(40)
        );
        assert_eq!(
            record(3).remaining(at(1015), base, max),
            Duration::from_secs(25)
        );
        assert_eq!(record(3).remaining(at(2000), base, max), Duration::ZERO);
        assert_eq!(
            record(7).remaining(at(1000), base, max),
            max,
            "640 s capped"
        );
        assert_eq!(record(40).remaining(at(1000), base, max), max);
    }

    #[test]
    fn backoff_record_counts_failures_since_the_last_success() {
        let none = BackoffRecord::default();
        let two = none.updated(&[], &[at(20), at(10)]);
        assert_eq!(
            two,
            BackoffRecord {
                failures_after_last_success: 2,
                last_failure_time: Some(at(20)),
            }
        );
        assert_eq!(two.updated(&[], &[]), two, "nothing new: unchanged");
        let reset = two.updated(&[at(30)], &[]);
        assert_eq!(reset, BackoffRecord::default());
        let after = two.updated(&[at(30)], &[at(25), at(35), at(40)]);
        assert_eq!(
            after,
            BackoffRecord {
                failures_after_last_success: 2,
                last_failure_time: Some(at(40)),
            }
        );
    }

    #[test]
    fn wanted_active_pods() {
        assert_eq!(want_active(Some(3), 2, 0, 0), 2);
        assert_eq!(want_active(Some(3), 2, 2, 1), 1, "one completion left");
        assert_eq!(want_active(Some(3), 2, 4, 0), 0);
        assert_eq!(want_active(None, 2, 0, 1), 2);
        assert_eq!(
            want_active(None, 2, 1, 1),
            1,
            "after a success: no new pods"
        );
    }

    #[test]
    fn uncounted_pods_are_counted_once_their_finalizer_is_gone() {
        let mut status: JobStatus = serde_json::from_value(json!({
            "succeeded": 2, "failed": 1,
            "uncountedTerminatedPods": {"succeeded": ["a", "b"], "failed": ["c"]},
        }))
        .expect("status");
        let with: HashSet<String> = ["b".to_string()].into();
        assert!(clean_uncounted(&mut status, &with));
        assert_eq!(status.succeeded, Some(3));
        assert_eq!(status.failed, Some(2));
        let u = status.uncounted_terminated_pods.clone().expect("uncounted");
        assert_eq!(u.succeeded, Some(vec!["b".to_string()]));
        assert_eq!(u.failed, None);
        assert!(!clean_uncounted(&mut status, &with), "nothing more moves");
    }

    #[test]
    fn failed_pods_and_deleted_ones() {
        let j = job(json!({"metadata": {"name": "j"}, "spec": {"template": {}}}));
        let only_failed = job(json!({"metadata": {"name": "j"},
            "spec": {"template": {}, "podReplacementPolicy": "Failed"}}));
        let failed = pod(json!({"metadata": {"name": "p"}, "status": {"phase": "Failed"}}));
        let deleted = pod(json!({"metadata": {"name": "p",
            "deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Running"}}));
        let succeeded_deleted = pod(json!({"metadata": {"name": "p",
            "deletionTimestamp": "2024-01-01T00:00:00Z"}, "status": {"phase": "Succeeded"}}));
        assert!(is_pod_failed(&failed, &j));
        assert!(is_pod_failed(&deleted, &j));
        assert!(!is_pod_failed(&deleted, &only_failed));
        assert!(!is_pod_failed(&succeeded_deleted, &j));
        assert!(is_terminating(&deleted) && !is_active(&deleted));
    }

    #[test]
    fn conditions_are_added_and_updated_as_upstream() {
        let mut list = Vec::new();
        assert!(
            !ensure_condition(
                &mut list,
                SUSPENDED,
                "False",
                "JobResumed",
                "Job resumed",
                at(1)
            ),
            "a False condition is never added"
        );
        assert!(ensure_condition(
            &mut list,
            SUSPENDED,
            "True",
            "JobSuspended",
            "Job suspended",
            at(1)
        ));
        assert!(!ensure_condition(
            &mut list,
            SUSPENDED,
            "True",
            "JobSuspended",
            "Job suspended",
            at(2)
        ));
        assert!(ensure_condition(
            &mut list,
            SUSPENDED,
            "False",
            "JobResumed",
            "Job resumed",
            at(3)
        ));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].status, "False");
        assert_eq!(list[0].last_transition_time, Some(Time(at(3))));
    }

    #[test]
    fn completed_indexes_round_trip() {
        let set: BTreeSet<i32> = [0, 1, 2, 4, 6, 7].into();
        assert_eq!(format_indexes(&set), "0-2,4,6-7");
        assert_eq!(parse_indexes("0-2,4,6-7", 10), set);
        assert_eq!(parse_indexes("0-2,4,6-7", 7), [0, 1, 2, 4, 6].into());
        assert_eq!(parse_indexes("", 3), BTreeSet::new());
        assert_eq!(format_indexes(&BTreeSet::new()), "");
        assert_eq!(
            first_pending_indexes(&[0, 2].into(), &[1].into(), 2, 6),
            vec![3, 4]
        );
    }

    #[test]
    fn pods_carry_the_finalizer_labels_and_index() {
        let j = job(json!({
            "metadata": {"name": "pi", "namespace": "ns", "uid": "u1"},
            "spec": {"completionMode": "Indexed", "completions": 3, "template": {
                "metadata": {"labels": {"batch.kubernetes.io/job-name": "pi"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]},
            }},
        }));
        let p = pod_from_template(&j, Some(2));
        assert!(p.name_any().starts_with("pi-2-"), "{}", p.name_any());
        assert_eq!(p.name_any().len(), "pi-2-".len() + 5);
        assert!(has_tracking_finalizer(&p));
        assert_eq!(completion_index(&p), Some(2));
        assert_eq!(
            pod_labels(&p).get(JOB_COMPLETION_INDEX).map(String::as_str),
            Some("2")
        );
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some("pi-2"));
        let env = spec.containers[0].env.as_ref().expect("env");
        assert_eq!(env[0].name, JOB_COMPLETION_INDEX_ENV);
        let owner = controller_of(&p).expect("owner");
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.uid.as_str(),
                owner.block_owner_deletion
            ),
            ("Job", "u1", Some(true))
        );
        let plain = pod_from_template(&j, None);
        assert!(plain.name_any().starts_with("pi-") && plain.name_any().len() == 8);
        assert_eq!(indexed_prefix(&"x".repeat(70), 12).len(), 58);
    }

    #[test]
    fn deadline_counts_from_the_start() {
        let j = job(json!({"metadata": {"name": "j"},
            "spec": {"template": {}, "activeDeadlineSeconds": 10},
            "status": {"startTime": "1970-01-01T00:16:40Z"}}));
        assert_eq!(
            active_deadline_left(&j, at(1004)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(active_deadline_left(&j, at(1010)), Some(Duration::ZERO));
        let mut suspended = j.clone();
        suspended.spec.as_mut().expect("spec").suspend = Some(true);
        assert_eq!(active_deadline_left(&suspended, at(1010)), None);
    }

    #[test]
    fn restarts_count_against_the_limit_with_on_failure() {
        let j = job(
            json!({"metadata": {"name": "j"}, "spec": {"backoffLimit": 2,
            "template": {"spec": {"restartPolicy": "OnFailure", "containers": []}}}}),
        );
        let restarted = |n: i32| {
            Arc::new(pod(
                json!({"metadata": {"name": "p"}, "status": {"phase": "Running",
                "containerStatuses": [{"name": "c", "image": "i", "imageID": "", "ready": false,
                    "restartCount": n}]}}),
            ))
        };
        assert!(!past_backoff_limit_on_failure(&j, &[restarted(1)]));
        assert!(past_backoff_limit_on_failure(
            &j,
            &[restarted(1), restarted(1)]
        ));
    }
}
