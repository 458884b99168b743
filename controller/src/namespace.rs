//! kube-controller-manager's namespace controller (upstream `pkg/controller/namespace` and its
//! `NamespacedResourcesDeleter`): a namespace being deleted is emptied — every namespaced
//! resource the server serves, found by discovery, is deleted in it — and then released by
//! removing the `kubernetes` finalizer through `namespaces/<name>/finalize`, after which the
//! API server deletes it. While content remains the namespace stays `Terminating` (the API
//! server's NamespaceLifecycle admission refuses new objects in it) and its status conditions
//! say what is left and why, with upstream's types, reasons and messages.
//!
//! A sync starts no sooner than 5 s after the deletion (upstream's
//! `namespaceDeletionGracePeriod`): a create admitted just before the namespace turned
//! Terminating may still be on its way to storage, and listing before it lands would leave it
//! behind in a namespace about to vanish. The wait is measured from `deletionTimestamp`, not
//! from when this process saw the event, so a restarted controller waits no longer than needed.
//!
//! Content that goes slowly (pods in their grace period, objects with finalizers) is waited
//! for by requeueing the namespace after half the estimated time, as upstream; errors are
//! retried with upstream's per-item exponential backoff.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition, NamespaceStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResource, APIResourceList, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::ApiResource;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::manager::{ControllerError, drive};

/// kube-controller-manager's name for it (`--controllers`).
pub const NAME: &str = "namespace-controller";

/// The finalizer this controller owns in `spec.finalizers` (upstream's `FinalizerKubernetes`).
pub const FINALIZER_TOKEN: &str = "kubernetes";

/// How long after a namespace's deletion its content is first deleted (upstream's
/// `namespaceDeletionGracePeriod`; see the module comment).
const DELETION_GRACE_PERIOD: Duration = Duration::from_secs(5);

/// The wait assumed for objects held by finalizers (upstream's `finalizerEstimateSeconds`):
/// someone else (the garbage collector, an operator) has to act on them.
const FINALIZER_ESTIMATE_SECONDS: i64 = 15;

/// Upstream's `DefaultControllerRateLimiter` per-item backoff: 5 ms doubling to 1000 s.
const BACKOFF_BASE: Duration = Duration::from_millis(5);
const BACKOFF_MAX: Duration = Duration::from_secs(1000);

// The condition types the deleter maintains, in upstream's order (`conditionTypes`).
pub const DISCOVERY_FAILURE: &str = "NamespaceDeletionDiscoveryFailure";
pub const GROUP_VERSION_PARSING_FAILURE: &str = "NamespaceDeletionGroupVersionParsingFailure";
pub const CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
pub const CONTENT_REMAINING: &str = "NamespaceContentRemaining";
pub const FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";
const CONDITION_TYPES: [&str; 5] = [
    DISCOVERY_FAILURE,
    GROUP_VERSION_PARSING_FAILURE,
    CONTENT_FAILURE,
    CONTENT_REMAINING,
    FINALIZERS_REMAINING,
];

struct Context {
    client: Client,
    /// Consecutive failed syncs per namespace, for the backoff; forgotten on success.
    failures: Mutex<HashMap<String, u32>>,
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("getting namespace {namespace}: {source}")]
    Get {
        namespace: String,
        source: kube::Error,
    },
    #[error("marking namespace {namespace} Terminating: {source}")]
    Terminate {
        namespace: String,
        source: kube::Error,
    },
    #[error("finalizing namespace {namespace}: {source}")]
    Finalize {
        namespace: String,
        source: kube::Error,
    },
    #[error("namespace {namespace}: namespace uid has changed across retries")]
    UidChanged { namespace: String },
    /// Discovery, group version and content errors of one pass, as upstream aggregates them.
    #[error("deleting the content of namespace {namespace}: {message}")]
    Content { namespace: String, message: String },
}

/// Runs the controller until its watch ends (it retries transient errors itself).
pub async fn run(client: Client) -> Result<(), ControllerError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ctx = Arc::new(Context {
        client,
        failures: Mutex::new(HashMap::new()),
    });
    let results = Controller::new(namespaces, watcher::Config::default()).run(
        sync_namespace,
        error_policy,
        ctx,
    );
    drive(NAME, results).await
}

/// What a pass over a terminating namespace left to wait for.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Gone, not being deleted, or released by this controller.
    Done,
    /// Content remains; look again in about this many seconds (upstream's
    /// `ResourcesRemainingError`).
    Remaining { estimate: i64 },
}

/// Upstream's `syncNamespaceFromKey`, less the queue: namespaces not being deleted are none of
/// its business.
async fn sync_namespace(namespace: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, SyncError> {
    let Some(deleted_at) = &namespace.metadata.deletion_timestamp else {
        return Ok(Action::await_change());
    };
    if let Some(wait) = grace_wait(deleted_at.0, Timestamp::now()) {
        return Ok(Action::requeue(wait));
    }
    let name = namespace.name_any();
    let outcome = delete(&ctx.client, &name).await?;
    ctx.failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&name);
    match outcome {
        Outcome::Done => Ok(Action::await_change()),
        Outcome::Remaining { estimate } => {
            let wait = requeue_after(estimate);
            tracing::debug!(controller = NAME, namespace = %name, ?wait, "content remaining");
            Ok(Action::requeue(wait))
        }
    }
}

fn error_policy(namespace: Arc<Namespace>, error: &SyncError, ctx: Arc<Context>) -> Action {
    let mut failures = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
    let count = failures.entry(namespace.name_any()).or_insert(0);
    let wait = backoff(*count);
    *count = count.saturating_add(1);
    tracing::warn!(controller = NAME, %error, ?wait, "retrying");
    Action::requeue(wait)
}

/// How long to wait before the first pass over a namespace deleted at `deleted_at`, if at all.
/// Clamped to the grace period, so a clock ahead of the API server's cannot stall it.
fn grace_wait(deleted_at: Timestamp, now: Timestamp) -> Option<Duration> {
    let since = Duration::try_from(now.duration_since(deleted_at)).unwrap_or(Duration::ZERO);
    let wait = DELETION_GRACE_PERIOD.saturating_sub(since);
    (!wait.is_zero()).then_some(wait)
}

/// Upstream's worker: content estimated to take `estimate` s is looked at again after half
/// of it, plus one second.
fn requeue_after(estimate: i64) -> Duration {
    Duration::from_secs(u64::try_from(estimate / 2 + 1).unwrap_or(1))
}

fn backoff(failures: u32) -> Duration {
    BACKOFF_BASE
        .checked_mul(2u32.saturating_pow(failures.min(31)))
        .map_or(BACKOFF_MAX, |d| d.min(BACKOFF_MAX))
}

/// Upstream's `NamespacedResourcesDeleter.Delete`: reads the namespace afresh (several
/// controllers edit a namespace while it terminates), makes sure its phase says Terminating,
/// deletes its content and, once nothing is left, removes the finalizer.
async fn delete(client: &Client, name: &str) -> Result<Outcome, SyncError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = match namespaces.get_opt(name).await {
        Ok(Some(ns)) => ns,
        Ok(None) => return Ok(Outcome::Done),
        Err(source) => {
            return Err(SyncError::Get {
                namespace: name.into(),
                source,
            });
        }
    };
    if namespace.metadata.deletion_timestamp.is_none() {
        return Ok(Outcome::Done);
    }
    let namespace = match retry_on_conflict(&namespaces, namespace, mark_terminating).await {
        Ok(ns) => ns,
        Err(RetryError::Api(kube::Error::Api(s))) if s.code == 404 => return Ok(Outcome::Done),
        Err(e) => {
            return Err(
                e.into_sync_error(name, |namespace, source| SyncError::Terminate {
                    namespace,
                    source,
                }),
            );
        }
    };
    if finalized(&namespace) {
        return Ok(Outcome::Done);
    }
    let estimate = delete_all_content(client, &namespaces, namespace.clone()).await?;
    if estimate > 0 {
        return Ok(Outcome::Remaining { estimate });
    }
    match retry_on_conflict(&namespaces, namespace, finalize).await {
        Ok(_) => {
            tracing::info!(controller = NAME, namespace = %name, "namespace content removed; finalized");
            Ok(Outcome::Done)
        }
        // Another controller with the same token finished first.
        Err(RetryError::Api(kube::Error::Api(s))) if s.code == 404 => Ok(Outcome::Done),
        Err(e) => Err(
            e.into_sync_error(name, |namespace, source| SyncError::Finalize {
                namespace,
                source,
            }),
        ),
    }
}

enum RetryError {
    Api(kube::Error),
    UidChanged,
}

impl RetryError {
    fn into_sync_error(
        self,
        namespace: &str,
        api: impl FnOnce(String, kube::Error) -> SyncError,
    ) -> SyncError {
        match self {
            RetryError::Api(source) => api(namespace.into(), source),
            RetryError::UidChanged => SyncError::UidChanged {
                namespace: namespace.into(),
            },
        }
    }
}

/// Upstream's `retryOnConflictError`: on 409, read the namespace again and retry, unless it is
/// another namespace by the same name by now.
async fn retry_on_conflict<F, Fut>(
    api: &Api<Namespace>,
    mut namespace: Namespace,
    update: F,
) -> Result<Namespace, RetryError>
where
    F: Fn(Api<Namespace>, Namespace) -> Fut,
    Fut: std::future::Future<Output = Result<Namespace, kube::Error>>,
{
    loop {
        match update(api.clone(), namespace.clone()).await {
            Ok(ns) => return Ok(ns),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(RetryError::Api(e)),
        }
        let latest = api
            .get(&namespace.name_any())
            .await
            .map_err(RetryError::Api)?;
        if latest.metadata.uid != namespace.metadata.uid {
            return Err(RetryError::UidChanged);
        }
        namespace = latest;
    }
}

/// Upstream's `updateNamespaceStatusFunc`: a deleted namespace's phase is Terminating (the API
/// server sets it on delete; this covers a deletionTimestamp set some other way).
async fn mark_terminating(
    api: Api<Namespace>,
    mut ns: Namespace,
) -> Result<Namespace, kube::Error> {
    if ns.metadata.deletion_timestamp.is_none() || phase(&ns) == Some("Terminating") {
        return Ok(ns);
    }
    ns.status.get_or_insert_with(Default::default).phase = Some("Terminating".into());
    api.replace_status(&ns.name_any(), &PostParams::default(), &ns)
        .await
}

fn phase(ns: &Namespace) -> Option<&str> {
    ns.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// No finalizers left in `spec.finalizers`: nothing more for any namespace controller to do.
fn finalized(ns: &Namespace) -> bool {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_none_or(|f| f.is_empty())
}

/// Upstream's `finalizeNamespace`: `spec.finalizers` without our token (sorted, without
/// duplicates, as upstream's set), written through the finalize subresource.
async fn finalize(api: Api<Namespace>, mut ns: Namespace) -> Result<Namespace, kube::Error> {
    let spec = ns.spec.get_or_insert_with(Default::default);
    spec.finalizers = Some(without_token(
        spec.finalizers.as_deref().unwrap_or_default(),
    ));
    api.replace_subresource("finalize", &ns.name_any(), &PostParams::default(), &ns)
        .await
}

fn without_token(finalizers: &[String]) -> Vec<String> {
    let mut rest: Vec<String> = finalizers
        .iter()
        .filter(|f| *f != FINALIZER_TOKEN)
        .cloned()
        .collect();
    rest.sort();
    rest.dedup();
    rest
}

// ---- discovery ----

/// A namespaced resource that can be deleted, at the version discovery prefers.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Deletable {
    group: String,
    version: String,
    resource: String,
    kind: String,
    list: bool,
    delete_collection: bool,
}

impl Deletable {
    fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.clone(),
            version: self.version.clone(),
            api_version: group_version_string(&self.group, &self.version),
            kind: self.kind.clone(),
            plural: self.resource.clone(),
        }
    }

    /// Go's `%v` of a `schema.GroupVersionResource`, as upstream's messages print it.
    fn gvr(&self) -> String {
        format!("{{{} {} {}}}", self.group, self.version, self.resource)
    }
}

fn group_version_string(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// client-go's `ErrGroupDiscoveryFailed` (or a failure to list the groups at all).
#[derive(Debug, Clone, PartialEq, Eq)]
enum DiscoveryError {
    /// Group version → why its resources could not be listed.
    Groups(BTreeMap<String, String>),
    Other(String),
}

impl std::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DiscoveryError::Groups(groups) => {
                let groups: Vec<String> =
                    groups.iter().map(|(gv, e)| format!("{gv}: {e}")).collect();
                write!(
                    f,
                    "unable to retrieve the complete list of server APIs: {}",
                    groups.join(", ")
                )
            }
            DiscoveryError::Other(msg) => f.write_str(msg),
        }
    }
}

/// Go's `err.Error()` for an API error is the Status message.
fn error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        e => e.to_string(),
    }
}

/// client-go's `ServerPreferredNamespacedResources`: every group's versions are read; a
/// resource is taken at its group's preferred version where that version serves it, else at
/// the first version that does. Subresources and cluster-scoped resources are left out.
/// Groups that fail are reported next to what was found (discovery errors are not fatal:
/// what was found can still be deleted).
async fn discover(client: &Client) -> (Vec<APIResourceList>, Option<DiscoveryError>) {
    let mut groups: Vec<ServedGroup> = Vec::new();
    match client.list_core_api_versions().await {
        Ok(core) => {
            let preferred = core.versions.first().cloned().unwrap_or_default();
            let versions = core
                .versions
                .iter()
                .map(|v| (v.clone(), v.clone()))
                .collect();
            groups.push(ServedGroup {
                name: String::new(),
                versions,
                preferred,
            });
        }
        Err(e) => return (Vec::new(), Some(DiscoveryError::Other(error_message(&e)))),
    }
    match client.list_api_groups().await {
        Ok(list) => {
            for g in list.groups {
                let preferred = g
                    .preferred_version
                    .as_ref()
                    .or(g.versions.first())
                    .map(|v| v.version.clone())
                    .unwrap_or_default();
                let versions = g
                    .versions
                    .into_iter()
                    .map(|v| (v.group_version, v.version))
                    .collect();
                groups.push(ServedGroup {
                    name: g.name,
                    versions,
                    preferred,
                });
            }
        }
        Err(e) => return (Vec::new(), Some(DiscoveryError::Other(error_message(&e)))),
    }
    let mut fetched: Vec<FetchedList> = Vec::new();
    let mut failed = BTreeMap::new();
    for group in &groups {
        for (group_version, version) in &group.versions {
            let list = if group.name.is_empty() {
                client.list_core_api_resources(version).await
            } else {
                client.list_api_group_resources(group_version).await
            };
            match list {
                Ok(list) => fetched.push(FetchedList {
                    group: group.name.clone(),
                    version: version.clone(),
                    preferred: group.preferred.clone(),
                    list,
                }),
                Err(e) => {
                    failed.insert(group_version.clone(), error_message(&e));
                }
            }
        }
    }
    let lists = preferred_namespaced(fetched);
    let error = (!failed.is_empty()).then_some(DiscoveryError::Groups(failed));
    (lists, error)
}

/// A group as discovery lists it: its versions (group version, version) and the preferred one.
struct ServedGroup {
    name: String,
    versions: Vec<(String, String)>,
    preferred: String,
}

/// One group version's resources, with what the selection needs to know about its group.
struct FetchedList {
    group: String,
    version: String,
    preferred: String,
    list: APIResourceList,
}

/// The selection half of `ServerPreferredNamespacedResources`, over the fetched lists in
/// discovery order.
fn preferred_namespaced(fetched: Vec<FetchedList>) -> Vec<APIResourceList> {
    // (group, resource) → index of the list it is taken from.
    let mut chosen: HashMap<(String, String), usize> = HashMap::new();
    for (i, f) in fetched.iter().enumerate() {
        for r in &f.list.resources {
            if r.name.contains('/') || !r.namespaced {
                continue;
            }
            let key = (f.group.clone(), r.name.clone());
            if chosen.contains_key(&key) && f.version != f.preferred {
                continue;
            }
            chosen.insert(key, i);
        }
    }
    fetched
        .iter()
        .enumerate()
        .map(|(i, f)| APIResourceList {
            group_version: f.list.group_version.clone(),
            resources: f
                .list
                .resources
                .iter()
                .filter(|r| chosen.get(&(f.group.clone(), r.name.clone())) == Some(&i))
                .cloned()
                .collect(),
        })
        .collect()
}

/// `discovery.FilteredBy(SupportsAllVerbs{"delete"})` then `discovery.GroupVersionResources`:
/// the deletable resources, and the group versions that did not parse (upstream's
/// `ParseGroupVersion` takes "", "version" or "group/version").
fn deletable_resources(lists: &[APIResourceList]) -> (Vec<Deletable>, Vec<String>) {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for list in lists {
        let (group, version) = match parse_group_version(&list.group_version) {
            Ok(gv) => gv,
            Err(e) => {
                if !errors.contains(&e) {
                    errors.push(e);
                }
                continue;
            }
        };
        for r in &list.resources {
            if !has_verb(r, "delete") {
                continue;
            }
            let d = Deletable {
                group: group.clone(),
                version: version.clone(),
                resource: r.name.clone(),
                kind: r.kind.clone(),
                list: has_verb(r, "list"),
                delete_collection: has_verb(r, "deletecollection"),
            };
            if !out.contains(&d) {
                out.push(d);
            }
        }
    }
    (out, errors)
}

fn has_verb(r: &APIResource, verb: &str) -> bool {
    r.verbs.iter().any(|v| v == verb)
}

fn parse_group_version(gv: &str) -> Result<(String, String), String> {
    if gv.is_empty() || gv == "/" {
        return Ok((String::new(), String::new()));
    }
    match gv.split('/').collect::<Vec<_>>()[..] {
        [version] => Ok((String::new(), version.to_string())),
        [group, version] => Ok((group.to_string(), version.to_string())),
        _ => Err(format!("unexpected GroupVersion string: {gv}")),
    }
}

/// `utilerrors.NewAggregate(...).Error()`: one message as it is, several in brackets.
fn aggregate(messages: &[String]) -> String {
    match messages {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

// ---- content ----

/// What is left of one resource after a pass (upstream's `gvrDeletionMetadata`).
#[derive(Debug, Default, PartialEq, Eq)]
struct GvrRemaining {
    /// Seconds to wait for it; 0 means no estimate, not that nothing remains.
    estimate: i64,
    remaining: usize,
    finalizers: BTreeMap<String, usize>,
}

/// What is left of the namespace after a pass (upstream's `allGVRDeletionMetadata`).
#[derive(Debug, Default, PartialEq, Eq)]
struct Remaining {
    /// "resource.group" → instances left.
    resources: BTreeMap<String, usize>,
    /// finalizer → instances it holds.
    finalizers: BTreeMap<String, usize>,
}

/// Upstream's `deleteAllContent`: discovery, then every deletable resource in turn (discovery
/// order; upstream's is a Go map's), collecting errors rather than stopping at the first, then
/// the conditions. Returns the longest estimate; any error fails the pass.
async fn delete_all_content(
    client: &Client,
    namespaces: &Api<Namespace>,
    mut ns: Namespace,
) -> Result<i64, SyncError> {
    let name = ns.name_any();
    let deleted_at = ns
        .metadata
        .deletion_timestamp
        .as_ref()
        .map_or_else(Timestamp::now, |t| t.0);
    let mut errors: Vec<String> = Vec::new();
    let mut conditions = ConditionUpdater::default();
    let (lists, discovery_error) = discover(client).await;
    if let Some(e) = discovery_error {
        errors.push(e.to_string());
        conditions.discovery_failed(&e, now());
    }
    let (resources, gv_errors) = deletable_resources(&lists);
    if !gv_errors.is_empty() {
        let msg = aggregate(&gv_errors);
        errors.push(msg.clone());
        conditions.group_version_failed(&msg, now());
    }
    let mut estimate = 0;
    let mut remaining = Remaining::default();
    for resource in &resources {
        let (left, error) = delete_all_of(client, resource, &name, deleted_at).await;
        if let Some(e) = error {
            errors.push(e.clone());
            conditions.delete_content_failed(e);
        }
        estimate = estimate.max(left.estimate);
        if left.remaining > 0 {
            remaining.resources.insert(
                format!("{}.{}", resource.resource, resource.group),
                left.remaining,
            );
            for (f, n) in left.finalizers {
                *remaining.finalizers.entry(f).or_insert(0) += n;
            }
        }
    }
    conditions.content_totals(&remaining, now());
    // Always written when it changed: a condition that was failing must say it stopped.
    let status = ns.status.get_or_insert_with(Default::default);
    if conditions.update(status, now())
        && let Err(e) = namespaces
            .replace_status(&name, &PostParams::default(), &ns)
            .await
    {
        tracing::warn!(controller = NAME, namespace = %name, error = %e,
            "couldn't update status conditions");
    }
    if errors.is_empty() {
        Ok(estimate)
    } else {
        Err(SyncError::Content {
            namespace: name,
            message: aggregate(&errors),
        })
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Upstream's `deleteAllContentForGroupVersionResource`: estimate, delete the collection (or
/// each item when the server cannot), then list what is left and why.
async fn delete_all_of(
    client: &Client,
    resource: &Deletable,
    namespace: &str,
    deleted_at: Timestamp,
) -> (GvrRemaining, Option<String>) {
    let estimate =
        match estimate_graceful_termination(client, resource, namespace, deleted_at).await {
            Ok(e) => e,
            Err(e) => return (GvrRemaining::default(), Some(e)),
        };
    let with_estimate = || GvrRemaining {
        estimate,
        ..Default::default()
    };
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &resource.api_resource());
    // Background: the namespace controller deletes everything itself, so no dependent should
    // be orphaned (or waited for) on its account.
    let params = DeleteParams::background();
    let mut collection_deleted = false;
    if resource.delete_collection {
        match api.delete_collection(&params, &ListParams::default()).await {
            Ok(_) => collection_deleted = true,
            // Discovery said it could; the server says otherwise (upstream's special case).
            Err(kube::Error::Api(s)) if s.code == 405 || s.code == 404 => {}
            Err(e) => return (with_estimate(), Some(error_message(&e))),
        }
    }
    if !collection_deleted && resource.list {
        match api.list_metadata(&ListParams::default()).await {
            Ok(items) => {
                for item in items {
                    match api.delete(&item.name_any(), &params).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 405 => {}
                        Err(e) => return (with_estimate(), Some(error_message(&e))),
                    }
                }
            }
            Err(kube::Error::Api(s)) if s.code == 405 || s.code == 404 => {}
            Err(e) => return (with_estimate(), Some(error_message(&e))),
        }
    }
    if !resource.list {
        return (with_estimate(), None);
    }
    let items = match api.list_metadata(&ListParams::default()).await {
        Ok(items) => items.items,
        Err(kube::Error::Api(s)) if s.code == 405 || s.code == 404 => {
            return (with_estimate(), None);
        }
        Err(e) => return (with_estimate(), Some(error_message(&e))),
    };
    let finalizers = items
        .iter()
        .map(|i| i.finalizers().to_vec())
        .collect::<Vec<_>>();
    match remaining_of(estimate, &finalizers) {
        Ok(left) => (left, None),
        Err(left) => {
            let e = format!(
                "unexpected items still remain in namespace: {namespace} for gvr: {}",
                resource.gvr()
            );
            (left, Some(e))
        }
    }
}

/// The verdict on what a list after deletion shows (each item's finalizers): nothing left;
/// left with an estimate (graceful deletion under way); left with finalizers (a default
/// wait); or left for no known reason, an error (returned as `Err`, with the counts).
fn remaining_of(estimate: i64, items: &[Vec<String>]) -> Result<GvrRemaining, GvrRemaining> {
    if items.is_empty() {
        return Ok(GvrRemaining::default());
    }
    let mut finalizers = BTreeMap::new();
    for f in items.iter().flatten() {
        *finalizers.entry(f.clone()).or_insert(0) += 1;
    }
    if estimate != 0 {
        return Ok(GvrRemaining {
            estimate,
            remaining: items.len(),
            finalizers,
        });
    }
    if !finalizers.is_empty() {
        return Ok(GvrRemaining {
            estimate: FINALIZER_ESTIMATE_SECONDS,
            remaining: items.len(),
            finalizers,
        });
    }
    Err(GvrRemaining {
        estimate,
        remaining: items.len(),
        finalizers,
    })
}

/// Upstream's `estimateGracefulTermination`: only pods take time to delete (their grace
/// period); the estimate lapses once that long has passed since the namespace's deletion.
async fn estimate_graceful_termination(
    client: &Client,
    resource: &Deletable,
    namespace: &str,
    deleted_at: Timestamp,
) -> Result<i64, String> {
    if !(resource.group.is_empty() && resource.resource == "pods") {
        return Ok(0);
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default())
        .await
        .map_err(|e| error_message(&e))?;
    let estimate = pods_estimate(&list.items);
    let since = Timestamp::now().duration_since(deleted_at).as_secs();
    Ok(if since >= estimate { 0 } else { estimate })
}

/// The longest `terminationGracePeriodSeconds` of the pods that have not terminated
/// (upstream's `estimateGracefulTerminationForPods`).
fn pods_estimate(pods: &[Pod]) -> i64 {
    pods.iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .filter_map(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .max()
        .unwrap_or(0)
        .max(0)
}

// ---- conditions ----

/// Upstream's `namespaceConditionUpdater`: the failing conditions of one pass; `update` sets
/// the rest to their "all well" variants.
#[derive(Debug, Default)]
struct ConditionUpdater {
    new_conditions: Vec<NamespaceCondition>,
    delete_content_errors: Vec<String>,
}

fn condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Time,
) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: Some(now),
    }
}

impl ConditionUpdater {
    fn discovery_failed(&mut self, e: &DiscoveryError, now: Time) {
        let message = match e {
            DiscoveryError::Groups(groups) => {
                format!(
                    "Discovery failed for some groups, {} failing: {e}",
                    groups.len()
                )
            }
            DiscoveryError::Other(_) => e.to_string(),
        };
        self.new_conditions.push(condition(
            DISCOVERY_FAILURE,
            "True",
            "DiscoveryFailed",
            message,
            now,
        ));
    }

    fn group_version_failed(&mut self, message: &str, now: Time) {
        self.new_conditions.push(condition(
            GROUP_VERSION_PARSING_FAILURE,
            "True",
            "GroupVersionParsingFailed",
            message.to_string(),
            now,
        ));
    }

    fn delete_content_failed(&mut self, message: String) {
        self.delete_content_errors.push(message);
    }

    fn content_totals(&mut self, remaining: &Remaining, now: Time) {
        // BTreeMaps: sorted for stable updates, as upstream sorts.
        let resources: Vec<String> = remaining
            .resources
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        if !remaining.resources.is_empty() {
            self.new_conditions.push(condition(
                CONTENT_REMAINING,
                "True",
                "SomeResourcesRemain",
                format!("Some resources are remaining: {}", resources.join(", ")),
                now.clone(),
            ));
        }
        let finalizers: Vec<String> = remaining
            .finalizers
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        if !remaining.finalizers.is_empty() {
            self.new_conditions.push(condition(
                FINALIZERS_REMAINING,
                "True",
                "SomeFinalizersRemain",
                format!(
                    "Some content in the namespace has finalizers remaining: {}",
                    finalizers.join(", ")
                ),
                now,
            ));
        }
    }

    /// Folds this pass into `status.conditions`; whether anything changed.
    fn update(mut self, status: &mut NamespaceStatus, now: Time) -> bool {
        if !self
            .new_conditions
            .iter()
            .any(|c| c.type_ == CONTENT_FAILURE)
            && !self.delete_content_errors.is_empty()
        {
            let mut msgs = self.delete_content_errors.clone();
            msgs.sort();
            self.new_conditions.push(condition(
                CONTENT_FAILURE,
                "True",
                "ContentDeletionFailed",
                format!(
                    "Failed to delete all resource types, {} remaining: {}",
                    msgs.len(),
                    msgs.join(", ")
                ),
                now.clone(),
            ));
        }
        update_conditions(status, &self.new_conditions, now)
    }
}

/// Upstream's `updateConditions`: every maintained type gets its new condition or its "all
/// well" variant; the transition time moves only when the status does.
fn update_conditions(status: &mut NamespaceStatus, new: &[NamespaceCondition], now: Time) -> bool {
    let mut changed = false;
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    for type_ in CONDITION_TYPES {
        let wanted = new
            .iter()
            .find(|c| c.type_ == type_)
            .cloned()
            .unwrap_or_else(|| successful(type_, now.clone()));
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            None => {
                conditions.push(wanted);
                changed = true;
            }
            Some(old)
                if old.status != wanted.status
                    || old.message != wanted.message
                    || old.reason != wanted.reason =>
            {
                if old.status != wanted.status {
                    old.last_transition_time = Some(now.clone());
                }
                old.status = wanted.status;
                old.reason = wanted.reason;
                old.message = wanted.message;
                changed = true;
            }
            Some(_) => {}
        }
    }
    changed
}

/// Upstream's `newSuccessfulCondition`, with its `okReasons` and `okMessages`.
fn successful(type_: &str, now: Time) -> NamespaceCondition {
    let (reason, message) = match type_ {
        DISCOVERY_FAILURE => (
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
        GROUP_VERSION_PARSING_FAILURE => (
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        CONTENT_FAILURE => (
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
        _ => ("ContentRemoved", "All content successfully removed"),
    };
    condition(type_, "False", reason, message.to_string(), now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("timestamp"))
    }

    fn by_type<'a>(status: &'a NamespaceStatus, type_: &str) -> &'a NamespaceCondition {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_)
            .unwrap_or_else(|| panic!("no {type_} condition"))
    }

    #[test]
    fn remaining_content_is_reported_as_upstream_words_it() {
        let mut updater = ConditionUpdater::default();
        let remaining = Remaining {
            resources: BTreeMap::from([
                ("pods.".to_string(), 2),
                ("configmaps.".to_string(), 1),
                ("replicasets.apps".to_string(), 1),
            ]),
            finalizers: BTreeMap::from([
                ("example.com/hold".to_string(), 1),
                ("a.io/b".to_string(), 3),
            ]),
        };
        updater.content_totals(&remaining, at(10));
        let mut status = NamespaceStatus::default();
        assert!(updater.update(&mut status, at(10)));
        let content = by_type(&status, CONTENT_REMAINING);
        assert_eq!(content.status, "True");
        assert_eq!(content.reason.as_deref(), Some("SomeResourcesRemain"));
        assert_eq!(
            content.message.as_deref(),
            Some(
                "Some resources are remaining: configmaps. has 1 resource instances, pods. has 2 resource instances, replicasets.apps has 1 resource instances"
            )
        );
        let finalizers = by_type(&status, FINALIZERS_REMAINING);
        assert_eq!(finalizers.reason.as_deref(), Some("SomeFinalizersRemain"));
        assert_eq!(
            finalizers.message.as_deref(),
            Some(
                "Some content in the namespace has finalizers remaining: a.io/b in 3 resource instances, example.com/hold in 1 resource instances"
            )
        );
        // The three others are there in their "all well" variants, in upstream's order.
        let types: Vec<&str> = status
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, CONDITION_TYPES);
        let discovery = by_type(&status, DISCOVERY_FAILURE);
        assert_eq!(
            (
                discovery.status.as_str(),
                discovery.reason.as_deref(),
                discovery.message.as_deref()
            ),
            (
                "False",
                Some("ResourcesDiscovered"),
                Some("All resources successfully discovered")
            )
        );
        let parsing = by_type(&status, GROUP_VERSION_PARSING_FAILURE);
        assert_eq!(
            parsing.message.as_deref(),
            Some("All legacy kube types successfully parsed")
        );
        let failure = by_type(&status, CONTENT_FAILURE);
        assert_eq!(
            (failure.reason.as_deref(), failure.message.as_deref()),
            (
                Some("ContentDeleted"),
                Some("All content successfully deleted, may be waiting on finalization")
            )
        );
    }

    #[test]
    fn conditions_change_only_when_their_content_does() {
        let mut status = NamespaceStatus::default();
        assert!(ConditionUpdater::default().update(&mut status, at(10)));
        // The same pass again writes nothing.
        assert!(!ConditionUpdater::default().update(&mut status, at(20)));

        // Content remains: the condition flips, and its transition time moves.
        let mut updater = ConditionUpdater::default();
        let remaining = Remaining {
            resources: BTreeMap::from([("pods.".to_string(), 2)]),
            finalizers: BTreeMap::new(),
        };
        updater.content_totals(&remaining, at(30));
        assert!(updater.update(&mut status, at(30)));
        let content = by_type(&status, CONTENT_REMAINING);
        assert_eq!(content.status, "True");
        assert_eq!(
            content.message.as_deref(),
            Some("Some resources are remaining: pods. has 2 resource instances")
        );
        assert_eq!(content.last_transition_time, Some(at(30)));
        // Unchanged conditions keep their time.
        assert_eq!(
            by_type(&status, DISCOVERY_FAILURE).last_transition_time,
            Some(at(10))
        );

        // A new count, same status: message updated, time kept.
        let mut updater = ConditionUpdater::default();
        let remaining = Remaining {
            resources: BTreeMap::from([("pods.".to_string(), 1)]),
            finalizers: BTreeMap::new(),
        };
        updater.content_totals(&remaining, at(40));
        assert!(updater.update(&mut status, at(40)));
        let content = by_type(&status, CONTENT_REMAINING);
        assert_eq!(
            content.message.as_deref(),
            Some("Some resources are remaining: pods. has 1 resource instances")
        );
        assert_eq!(content.last_transition_time, Some(at(30)));

        // All gone: back to "all well", at a new time.
        assert!(ConditionUpdater::default().update(&mut status, at(50)));
        let content = by_type(&status, CONTENT_REMAINING);
        assert_eq!(
            (
                content.status.as_str(),
                content.reason.as_deref(),
                content.message.as_deref()
            ),
            (
                "False",
                Some("ContentRemoved"),
                Some("All content successfully removed")
            )
        );
        assert_eq!(content.last_transition_time, Some(at(50)));
        assert_eq!(status.conditions.as_ref().map(Vec::len), Some(5));
    }

    #[test]
    fn failures_are_reported_as_upstream_words_them() {
        let mut updater = ConditionUpdater::default();
        let discovery = DiscoveryError::Groups(BTreeMap::from([
            (
                "metrics.k8s.io/v1beta1".to_string(),
                "the server is currently unable to handle the request".to_string(),
            ),
            ("apps/v1".to_string(), "boom".to_string()),
        ]));
        updater.discovery_failed(&discovery, at(1));
        updater.group_version_failed(
            &aggregate(&["unexpected GroupVersion string: a/b/c".to_string()]),
            at(1),
        );
        updater.delete_content_failed("zeta failed".into());
        updater.delete_content_failed("alpha failed".into());
        let mut status = NamespaceStatus::default();
        assert!(updater.update(&mut status, at(1)));
        let d = by_type(&status, DISCOVERY_FAILURE);
        assert_eq!(
            (d.status.as_str(), d.reason.as_deref()),
            ("True", Some("DiscoveryFailed"))
        );
        assert_eq!(
            d.message.as_deref(),
            Some(
                "Discovery failed for some groups, 2 failing: unable to retrieve the complete list of server APIs: apps/v1: boom, metrics.k8s.io/v1beta1: the server is currently unable to handle the request"
            )
        );
        let g = by_type(&status, GROUP_VERSION_PARSING_FAILURE);
        assert_eq!(g.reason.as_deref(), Some("GroupVersionParsingFailed"));
        assert_eq!(
            g.message.as_deref(),
            Some("unexpected GroupVersion string: a/b/c")
        );
        let c = by_type(&status, CONTENT_FAILURE);
        assert_eq!(c.reason.as_deref(), Some("ContentDeletionFailed"));
        assert_eq!(
            c.message.as_deref(),
            Some("Failed to delete all resource types, 2 remaining: alpha failed, zeta failed")
        );
        // A failure to list the groups at all is reported as it is.
        let mut updater = ConditionUpdater::default();
        updater.discovery_failed(&DiscoveryError::Other("connection refused".into()), at(2));
        let mut status = NamespaceStatus::default();
        updater.update(&mut status, at(2));
        assert_eq!(
            by_type(&status, DISCOVERY_FAILURE).message.as_deref(),
            Some("connection refused")
        );
    }

    #[test]
    fn group_versions_parse_as_upstream() {
        assert_eq!(parse_group_version("v1"), Ok((String::new(), "v1".into())));
        assert_eq!(
            parse_group_version("apps/v1"),
            Ok(("apps".into(), "v1".into()))
        );
        assert_eq!(parse_group_version(""), Ok((String::new(), String::new())));
        assert_eq!(
            parse_group_version("a/b/c"),
            Err("unexpected GroupVersion string: a/b/c".into())
        );
        assert_eq!(aggregate(&["x".into()]), "x");
        assert_eq!(aggregate(&["x".into(), "y".into()]), "[x, y]");
    }

    fn resource(name: &str, namespaced: bool, verbs: &[&str]) -> APIResource {
        serde_json::from_value(json!({
            "name": name, "singularName": "", "namespaced": namespaced,
            "kind": "Thing", "verbs": verbs,
        }))
        .expect("APIResource")
    }

    fn list(gv: &str, resources: Vec<APIResource>) -> APIResourceList {
        APIResourceList {
            group_version: gv.into(),
            resources,
        }
    }

    fn fetched(group: &str, version: &str, preferred: &str, list: APIResourceList) -> FetchedList {
        FetchedList {
            group: group.into(),
            version: version.into(),
            preferred: preferred.into(),
            list,
        }
    }

    #[test]
    fn discovery_takes_namespaced_resources_at_the_preferred_version() {
        let all = [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        let fetched = vec![
            fetched(
                "",
                "v1",
                "v1",
                list(
                    "v1",
                    vec![
                        resource("pods", true, &all),
                        resource("pods/status", true, &["get", "patch", "update"]),
                        resource("namespaces", false, &all),
                        resource("bindings", true, &["create"]),
                    ],
                ),
            ),
            fetched(
                "batch",
                "v1beta1",
                "v1",
                list(
                    "batch/v1beta1",
                    vec![
                        resource("cronjobs", true, &all),
                        resource("old", true, &["delete"]),
                    ],
                ),
            ),
            fetched(
                "batch",
                "v1",
                "v1",
                list(
                    "batch/v1",
                    vec![
                        resource("cronjobs", true, &all),
                        resource("jobs", true, &all),
                    ],
                ),
            ),
        ];
        let lists = preferred_namespaced(fetched);
        let names: Vec<(String, Vec<String>)> = lists
            .iter()
            .map(|l| {
                (
                    l.group_version.clone(),
                    l.resources.iter().map(|r| r.name.clone()).collect(),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![
                (
                    "v1".to_string(),
                    vec!["pods".to_string(), "bindings".to_string()]
                ),
                ("batch/v1beta1".to_string(), vec!["old".to_string()]),
                (
                    "batch/v1".to_string(),
                    vec!["cronjobs".to_string(), "jobs".to_string()]
                ),
            ]
        );
        let (deletable, errors) = deletable_resources(&lists);
        assert!(errors.is_empty());
        let found: Vec<(String, bool, bool)> = deletable
            .iter()
            .map(|d| (d.gvr(), d.list, d.delete_collection))
            .collect();
        assert_eq!(
            found,
            vec![
                ("{ v1 pods}".to_string(), true, true),
                ("{batch v1beta1 old}".to_string(), false, false),
                ("{batch v1 cronjobs}".to_string(), true, true),
                ("{batch v1 jobs}".to_string(), true, true),
            ]
        );
        assert_eq!(deletable[0].api_resource().api_version, "v1");
        assert_eq!(deletable[2].api_resource().api_version, "batch/v1");
        let (_, errors) = deletable_resources(&[list("a/b/c", vec![resource("x", true, &all)])]);
        assert_eq!(
            errors,
            vec!["unexpected GroupVersion string: a/b/c".to_string()]
        );
    }

    #[test]
    fn what_remains_after_a_pass() {
        assert_eq!(remaining_of(30, &[]), Ok(GvrRemaining::default()));
        // Pods in their grace period: the estimate stands.
        assert_eq!(
            remaining_of(30, &[vec![], vec![]]),
            Ok(GvrRemaining {
                estimate: 30,
                remaining: 2,
                finalizers: BTreeMap::new()
            })
        );
        // Finalizers: the default wait, counted per finalizer.
        assert_eq!(
            remaining_of(
                0,
                &[
                    vec!["example.com/hold".into()],
                    vec!["example.com/hold".into(), "b/c".into()]
                ]
            ),
            Ok(GvrRemaining {
                estimate: FINALIZER_ESTIMATE_SECONDS,
                remaining: 2,
                finalizers: BTreeMap::from([("b/c".into(), 1), ("example.com/hold".into(), 2)]),
            })
        );
        // Nothing explains it: an error.
        assert_eq!(
            remaining_of(0, &[vec![]]),
            Err(GvrRemaining {
                estimate: 0,
                remaining: 1,
                finalizers: BTreeMap::new()
            })
        );
    }

    fn pod(grace: Option<i64>, phase: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [], "terminationGracePeriodSeconds": grace},
            "status": {"phase": phase},
        }))
        .expect("pod")
    }

    #[test]
    fn pods_are_waited_for_their_longest_grace_period() {
        assert_eq!(pods_estimate(&[]), 0);
        assert_eq!(
            pods_estimate(&[
                pod(Some(30), Some("Running")),
                pod(Some(90), Some("Succeeded")),
                pod(Some(45), None),
                pod(None, Some("Pending")),
            ]),
            45
        );
    }

    #[test]
    fn timing() {
        let deleted = Timestamp::from_second(100).expect("ts");
        assert_eq!(grace_wait(deleted, deleted), Some(DELETION_GRACE_PERIOD));
        assert_eq!(
            grace_wait(deleted, Timestamp::from_second(102).expect("ts")),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            grace_wait(deleted, Timestamp::from_second(105).expect("ts")),
            None
        );
        // A deletion "in the future" (clock skew) waits no longer than the grace period.
        assert_eq!(
            grace_wait(deleted, Timestamp::from_second(50).expect("ts")),
            Some(DELETION_GRACE_PERIOD)
        );
        assert_eq!(requeue_after(30), Duration::from_secs(16));
        assert_eq!(requeue_after(15), Duration::from_secs(8));
        assert_eq!(backoff(0), Duration::from_millis(5));
        assert_eq!(backoff(3), Duration::from_millis(40));
        assert_eq!(backoff(40), BACKOFF_MAX);
    }

    #[test]
    fn finalize_removes_only_our_token() {
        assert_eq!(without_token(&["kubernetes".into()]), Vec::<String>::new());
        assert_eq!(
            without_token(&[
                "z.io/x".into(),
                "kubernetes".into(),
                "a.io/y".into(),
                "z.io/x".into()
            ]),
            vec!["a.io/y".to_string(), "z.io/x".to_string()]
        );
    }
}
