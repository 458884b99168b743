//! The pure parts of the DaemonSet controller: upstream's `pkg/controller/daemon/util`
//! (tolerations, labels, the pinning node affinity, surge and unavailability), the node
//! eligibility of `NodeShouldRunDaemonPod` (with component-helpers' required node affinity),
//! the per-node decisions of `podsShouldBeOnNode` and `rollingUpdate`, the status counts and
//! the failed-pod backoff. Nothing here talks to the API, so all of it is unit-tested.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use skiff_apimachinery::labels::{Operator, Requirement};

use crate::deployment::util::scaled_value;
use crate::taints::{self, tolerates};

/// `apps.DefaultDaemonSetUniqueLabelKey` (= `ControllerRevisionHashLabelKey`): the hash of the
/// ControllerRevision a pod was made from.
pub const CONTROLLER_REVISION_HASH_LABEL: &str = "controller-revision-hash";
/// `extensions.DaemonSetTemplateGenerationKey`: the template generation a pod was made from.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// `apps.DeprecatedTemplateGeneration`: the DaemonSet's template generation, kept by the API
/// server.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

/// `metav1.ObjectNameField`: the one field a node selector's `matchFields` may name.
const OBJECT_NAME_FIELD: &str = "metadata.name";

// ---------------------------------------------------------------------------------------
// The pod template

/// Upstream's `GetTemplateGeneration`: `None` when the annotation is missing or unreadable.
pub fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_GENERATION_ANNOTATION)?
        .parse()
        .ok()
}

/// A toleration of every value of `key` with `effect`, forever.
fn exists(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    }
}

/// Upstream's `AddOrUpdateTolerationInPodSpec`: a toleration with the same key, operator,
/// value and effect is replaced (so a user's `tolerationSeconds` on it goes), else it is added.
fn add_or_update_toleration(spec: &mut PodSpec, toleration: Toleration) {
    let same = |t: &Toleration| {
        t.key == toleration.key
            && t.operator == toleration.operator
            && t.value == toleration.value
            && t.effect == toleration.effect
    };
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    match tolerations.iter_mut().find(|t| same(t)) {
        Some(existing) => *existing = toleration,
        None => tolerations.push(toleration),
    }
}

/// Upstream's `AddOrUpdateDaemonPodTolerations`: daemon pods survive the node problems that
/// evict or repel other pods — not-ready and unreachable (NoExecute, no tolerationSeconds, so
/// taint eviction never removes them), the pressure conditions and cordoning (NoSchedule), and
/// for host-network pods an unconfigured network.
pub fn add_daemon_pod_tolerations(spec: &mut PodSpec) {
    add_or_update_toleration(spec, exists(taints::NOT_READY, taints::NO_EXECUTE));
    add_or_update_toleration(spec, exists(taints::UNREACHABLE, taints::NO_EXECUTE));
    add_or_update_toleration(spec, exists(taints::DISK_PRESSURE, taints::NO_SCHEDULE));
    add_or_update_toleration(spec, exists(taints::MEMORY_PRESSURE, taints::NO_SCHEDULE));
    add_or_update_toleration(spec, exists(taints::PID_PRESSURE, taints::NO_SCHEDULE));
    add_or_update_toleration(spec, exists(taints::UNSCHEDULABLE, taints::NO_SCHEDULE));
    if spec.host_network == Some(true) {
        add_or_update_toleration(
            spec,
            exists(taints::NETWORK_UNAVAILABLE, taints::NO_SCHEDULE),
        );
    }
}

/// Upstream's `CreatePodTemplate`: the DaemonSet's template with the daemon tolerations and
/// the `pod-template-generation` and `controller-revision-hash` labels.
pub fn create_pod_template(ds: &DaemonSet, hash: &str) -> PodTemplateSpec {
    let mut template = ds.spec.template.clone();
    add_daemon_pod_tolerations(template.spec.get_or_insert_with(Default::default));
    let meta = template.metadata.get_or_insert_with(Default::default);
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    if let Some(generation) = template_generation(ds) {
        labels.insert(TEMPLATE_GENERATION_LABEL.into(), generation.to_string());
    }
    if !hash.is_empty() {
        labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash.into());
    }
    template
}

/// Upstream's `ReplaceDaemonSetPodNodeNameNodeAffinity`: the required node affinity becomes a
/// single term naming `node` through `matchFields` on `metadata.name`, so the scheduler places
/// the pod there (and only there); preferred terms and other affinities stay.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let required = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: OBJECT_NAME_FIELD.into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
            match_expressions: None,
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(required);
    affinity
}

/// Upstream's `GetTargetNodeName`: the node a daemon pod is bound to, or before binding the
/// node its `matchFields` term names.
pub fn target_node_name(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(name) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(name.into());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == OBJECT_NAME_FIELD && r.operator == "In")
        .and_then(|r| match r.values.as_deref() {
            Some([one]) => Some(one.clone()),
            _ => None,
        })
}

// ---------------------------------------------------------------------------------------
// Which nodes run a daemon pod

/// What upstream's `NodeShouldRunDaemonPod` answers for a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// A daemon pod should be created here.
    pub should_run: bool,
    /// A daemon pod already here may stay (a NoSchedule taint added later does not evict it).
    pub should_continue_running: bool,
}

/// Upstream's `NodeShouldRunDaemonPod`: the pod the DaemonSet would make for `node` (its
/// template with the daemon tolerations) fits the node's name, the template's nodeSelector
/// and required node affinity, and tolerates the node's NoSchedule and NoExecute taints; a
/// pod that only fails on a NoSchedule taint may keep running.
pub fn node_should_run(node: &Node, ds: &DaemonSet) -> Placement {
    const NO: Placement = Placement {
        should_run: false,
        should_continue_running: false,
    };
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    let mut spec = ds.spec.template.spec.clone().unwrap_or_default();
    if let Some(wanted) = spec.node_name.as_deref().filter(|n| !n.is_empty())
        && wanted != node_name
    {
        return NO;
    }
    if !required_node_affinity_matches(&spec, node) {
        return NO;
    }
    add_daemon_pod_tolerations(&mut spec);
    let tolerations = spec.tolerations.unwrap_or_default();
    let node_taints: &[Taint] = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default();
    let untolerated = |effect: &str| {
        node_taints
            .iter()
            .filter(|t| t.effect == effect)
            .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    };
    if untolerated(taints::NO_EXECUTE) {
        return NO;
    }
    if untolerated(taints::NO_SCHEDULE) {
        return Placement {
            should_run: false,
            should_continue_running: true,
        };
    }
    Placement {
        should_run: true,
        should_continue_running: true,
    }
}

/// component-helpers' `GetRequiredNodeAffinity(pod).Match(node)`: the nodeSelector's labels
/// AND any one of the required node selector terms (no terms at all: none match).
pub fn required_node_affinity_matches(spec: &PodSpec, node: &Node) -> bool {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&EMPTY);
    if let Some(selector) = &spec.node_selector
        && !selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let Some(required) = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return true;
    };
    required
        .node_selector_terms
        .iter()
        .any(|term| term_matches(term, node, labels))
}

/// One node selector term: its expressions on labels and its fields ANDed; an empty term
/// and a term that does not parse match nothing (upstream's `nodeSelectorTerms.Match`).
fn term_matches(term: &NodeSelectorTerm, node: &Node, labels: &BTreeMap<String, String>) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    for r in exprs {
        let op = match r.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            "Gt" => Operator::GreaterThan,
            "Lt" => Operator::LessThan,
            _ => return false,
        };
        match Requirement::new(r.key.clone(), op, r.values.clone().unwrap_or_default()) {
            Ok(req) if req.matches(labels) => {}
            _ => return false,
        }
    }
    let name = node.metadata.name.as_deref().unwrap_or_default();
    fields.iter().all(|r| {
        let [value] = r.values.as_deref().unwrap_or_default() else {
            return false;
        };
        let actual = if r.key == OBJECT_NAME_FIELD { name } else { "" };
        match r.operator.as_str() {
            "In" => actual == value,
            "NotIn" => actual != value,
            _ => false,
        }
    })
}

// ---------------------------------------------------------------------------------------
// Surge and unavailability

pub fn strategy_type(ds: &DaemonSet) -> &str {
    ds.spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

/// Upstream's `SurgeCount` (maxSurge of `desired`, rounded up; 0 unless RollingUpdate).
pub fn surge_count(ds: &DaemonSet, desired: i32) -> Result<i32, String> {
    rolling_value(ds, desired, |r| r.max_surge.as_ref())
}

/// Upstream's `UnavailableCount` (maxUnavailable of `desired`, rounded up; 0 unless
/// RollingUpdate).
pub fn unavailable_count(ds: &DaemonSet, desired: i32) -> Result<i32, String> {
    rolling_value(ds, desired, |r| r.max_unavailable.as_ref())
}

fn rolling_value(
    ds: &DaemonSet,
    desired: i32,
    field: impl Fn(&k8s_openapi::api::apps::v1::RollingUpdateDaemonSet) -> Option<&IntOrString>,
) -> Result<i32, String> {
    if strategy_type(ds) != "RollingUpdate" {
        return Ok(0);
    }
    let Some(value) = ds
        .spec
        .update_strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(field)
    else {
        return Ok(0);
    };
    scaled_value(value, desired, true)
}

/// Upstream's `AllowsSurge`: a node may hold an old and a new pod at once.
pub fn allows_surge(ds: &DaemonSet) -> bool {
    surge_count(ds, 1).is_ok_and(|s| s > 0)
}

/// The (maxSurge, maxUnavailable) a rolling update works with for `desired` nodes
/// (upstream's `updatedDesiredNodeCounts`): when both come to zero, one node may be
/// unavailable, so the update can move at all.
pub fn resolve_surge_and_unavailable(ds: &DaemonSet, desired: i32) -> Result<(i32, i32), String> {
    let unavailable = unavailable_count(ds, desired)?;
    let surge = surge_count(ds, desired)?;
    if desired > 0 && unavailable == 0 && surge == 0 {
        return Ok((0, 1));
    }
    Ok((surge, unavailable))
}

// ---------------------------------------------------------------------------------------
// Pods

pub fn pod_labels(pod: &Pod) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    let ready = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    Some(ready.last_transition_time.as_ref().map(|t| t.0))
}

/// Upstream's `IsPodReady`.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Upstream's `IsPodAvailable`: ready for at least `min_ready_seconds`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since.is_some_and(|since| {
            since
                .checked_add(SignedDuration::from_secs(i64::from(min_ready_seconds)))
                .is_ok_and(|at| at <= now)
        }),
    }
}

/// Upstream's `IsPodUpdated`: made from the current ControllerRevision (by hash) or, for pods
/// of older controllers, from the current template generation.
pub fn is_pod_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let labels = pod_labels(pod);
    let template_matches = generation.is_some_and(|g| {
        labels.get(TEMPLATE_GENERATION_LABEL).map(String::as_str) == Some(g.to_string().as_str())
    });
    let hash_matches = !hash.is_empty()
        && labels
            .get(CONTROLLER_REVISION_HASH_LABEL)
            .map(String::as_str)
            == Some(hash);
    hash_matches || template_matches
}

/// Upstream's `podByCreationTimestampAndPhase`: bound pods first, then older first, then
/// by name.
fn older_first(a: &Arc<Pod>, b: &Arc<Pod>) -> Ordering {
    let bound = |p: &Pod| {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    bound(b)
        .cmp(&bound(a))
        .then_with(|| created(a).cmp(&created(b)))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Daemon pods by the node they are on, or will be on (upstream's `getNodesToDaemonPods`):
/// terminal pods being deleted are left out (they only wait for their finalizers).
pub fn pods_by_node(pods: &[Arc<Pod>]) -> HashMap<String, Vec<Arc<Pod>>> {
    let mut map: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    for pod in pods {
        if is_terminal(pod) && pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(node) = target_node_name(pod) else {
            continue;
        };
        map.entry(node).or_default().push(pod.clone());
    }
    map
}

/// Upstream's `failedPodsBackoff` (`flowcontrol.Backoff`, 1 s doubling to 15 min) keyed by
/// DaemonSet and node: a daemon pod that keeps failing on a node is not recreated in a hot loop.
#[derive(Debug, Default)]
pub struct FailedPodsBackoff {
    entries: HashMap<String, (Duration, Instant)>,
}

const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

impl FailedPodsBackoff {
    pub fn key(ds_uid: &str, node: &str) -> String {
        format!("{ds_uid}/{node}")
    }

    /// Upstream's `IsInBackOffSinceUpdate`.
    pub fn in_backoff(&self, key: &str, now: Instant) -> bool {
        self.entries
            .get(key)
            .is_some_and(|(backoff, updated)| now.saturating_duration_since(*updated) < *backoff)
    }

    /// The current backoff of `key`.
    pub fn get(&self, key: &str) -> Duration {
        self.entries.get(key).map_or(Duration::ZERO, |(b, _)| *b)
    }

    /// Upstream's `Next`: start at the initial backoff (also after twice the maximum without
    /// a failure), else double it.
    pub fn next(&mut self, key: &str, now: Instant) {
        let entry = self
            .entries
            .entry(key.to_string())
            .or_insert((Duration::ZERO, now));
        if entry.0.is_zero() || now.saturating_duration_since(entry.1) > 2 * BACKOFF_MAX {
            entry.0 = BACKOFF_INITIAL;
        } else {
            entry.0 = (entry.0 * 2).min(BACKOFF_MAX);
        }
        entry.1 = now;
    }

    /// Upstream's `GC`: entries unused for twice the maximum go.
    pub fn gc(&mut self, now: Instant) {
        self.entries
            .retain(|_, (_, updated)| now.saturating_duration_since(*updated) <= 2 * BACKOFF_MAX);
    }
}

/// What [`pods_should_be_on_node`] decided for one node.
#[derive(Debug, Default)]
pub struct NodeDecision {
    /// A daemon pod is to be created on the node.
    pub create: bool,
    /// Pods to delete.
    pub delete: Vec<Arc<Pod>>,
    /// Of those, the failed pods (each worth a `FailedDaemonPod` Warning).
    pub failed: Vec<Arc<Pod>>,
    /// A failed pod waits out its backoff: look again after this.
    pub retry_after: Option<Duration>,
}

/// Upstream's `podsShouldBeOnNode`: the pods to create and delete on one node.
#[allow(clippy::too_many_arguments)]
pub fn pods_should_be_on_node(
    node: &Node,
    pods: Option<&Vec<Arc<Pod>>>,
    ds: &DaemonSet,
    hash: &str,
    backoff: &mut FailedPodsBackoff,
    now: Instant,
    wall_now: Timestamp,
) -> NodeDecision {
    let placement = node_should_run(node, ds);
    let node_name = node.metadata.name.as_deref().unwrap_or_default();
    let mut decision = NodeDecision::default();
    let pods = pods.filter(|p| !p.is_empty());
    match pods {
        None if placement.should_run => decision.create = true,
        None => {}
        Some(pods) if placement.should_continue_running => {
            let mut running: Vec<Arc<Pod>> = Vec::new();
            for pod in pods {
                if pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                match phase(pod) {
                    "Failed" => {
                        // Recreated at most as often as the backoff allows.
                        let key = FailedPodsBackoff::key(
                            &ds.metadata.uid.clone().unwrap_or_default(),
                            node_name,
                        );
                        if backoff.in_backoff(&key, now) {
                            let delay = backoff.get(&key);
                            decision.retry_after =
                                Some(decision.retry_after.map_or(delay, |d| d.min(delay)));
                            continue;
                        }
                        backoff.next(&key, now);
                        decision.failed.push(pod.clone());
                        decision.delete.push(pod.clone());
                    }
                    // A daemon pod that finished (restartPolicy never lets it, but a
                    // kubelet may) is replaced too.
                    "Succeeded" => decision.delete.push(pod.clone()),
                    _ => running.push(pod.clone()),
                }
            }
            running.sort_by(older_first);
            if !allows_surge(ds) {
                // One pod per node: the oldest stays.
                decision.delete.extend(running.iter().skip(1).cloned());
            } else if running.len() <= 1 {
                if running.is_empty() && placement.should_run {
                    decision.create = true;
                }
            } else {
                // Surging: an old and a new pod may share the node while the new one is not
                // yet available and the old one is ready; every other pod goes.
                let mut oldest_new: Option<&Arc<Pod>> = None;
                let mut oldest_old: Option<&Arc<Pod>> = None;
                for pod in &running {
                    let is_new = pod_labels(pod)
                        .get(CONTROLLER_REVISION_HASH_LABEL)
                        .map(String::as_str)
                        == Some(hash);
                    let slot = if is_new {
                        &mut oldest_new
                    } else {
                        &mut oldest_old
                    };
                    if slot.is_none() {
                        *slot = Some(pod);
                    } else {
                        decision.delete.push(pod.clone());
                    }
                }
                if let (Some(new), Some(old)) = (oldest_new, oldest_old)
                    && (!is_ready(old)
                        || is_available(new, ds.spec.min_ready_seconds.unwrap_or(0), wall_now))
                {
                    decision.delete.push(old.clone());
                }
            }
        }
        // Not to run here at all: every daemon pod on the node goes.
        Some(pods) => decision.delete.extend(
            pods.iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .cloned(),
        ),
    }
    decision
}

/// A node's up-to-date pod and old pod, each if any.
pub type NewAndOld<'a> = (Option<&'a Arc<Pod>>, Option<&'a Arc<Pod>>);

/// Upstream's `findUpdatedPodsOnNode`: the node's one new and one old pod (either may be
/// missing); `None` when there are more, which the manage loop cleans up first.
pub fn updated_pods_on_node<'a>(
    pods: &'a [Arc<Pod>],
    hash: &str,
    generation: Option<i64>,
) -> Option<NewAndOld<'a>> {
    let (mut new, mut old) = (None, None);
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if is_pod_updated(pod, hash, generation) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(pod);
    }
    Some((new, old))
}

/// What a rolling update step does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RollingStep {
    /// Old pods to delete (by name), in this order.
    pub delete: Vec<String>,
    /// Nodes to create a new pod on beside the old one (surge).
    pub create_on: Vec<String>,
}

/// Upstream's `rollingUpdate` decisions. `by_node` holds every node that should run a daemon
/// pod (with no pods when it has none) and every node that has daemon pods; `desired` counts
/// the nodes that should run one.
pub fn rolling_update_step(
    ds: &DaemonSet,
    by_node: &BTreeMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    max_surge: i32,
    max_unavailable: i32,
    now: Timestamp,
) -> RollingStep {
    let generation = template_generation(ds);
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    let available = |p: &Pod| is_available(p, min_ready, now);
    let mut step = RollingStep::default();
    if max_surge == 0 {
        // Delete just enough old pods to stay within maxUnavailable; the manage loop then
        // creates their replacements.
        let mut unavailable = 0;
        let mut replacements = Vec::new();
        let mut candidates = Vec::new();
        for pods in by_node.values() {
            let Some((new, old)) = updated_pods_on_node(pods, hash, generation) else {
                unavailable += 1;
                continue;
            };
            match (new, old) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => {
                    if !available(new) {
                        unavailable += 1;
                    }
                }
                (None, Some(old)) => {
                    if !available(old) {
                        // Unavailable anyway: replacing it costs nothing.
                        replacements.push(old.metadata.name.clone().unwrap_or_default());
                    } else if unavailable < max_unavailable {
                        candidates.push(old.metadata.name.clone().unwrap_or_default());
                    }
                }
            }
        }
        let room = usize::try_from(max_unavailable - unavailable)
            .unwrap_or(0)
            .min(candidates.len());
        step.delete = replacements;
        step.delete.extend(candidates.into_iter().take(room));
        return step;
    }
    // Surging: a new pod is started beside an old one (at once when the old one is
    // unavailable, else while fewer than maxSurge nodes are surging); the old one goes when
    // the new one is available.
    let mut surging = 0;
    let mut allowed = Vec::new();
    let mut candidates = Vec::new();
    for (node, pods) in by_node {
        let Some((new, old)) = updated_pods_on_node(pods, hash, generation) else {
            surging += 1;
            continue;
        };
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) => {
                if !available(old) {
                    allowed.push(node.clone());
                } else if surging < max_surge {
                    candidates.push(node.clone());
                }
            }
            (Some(new), Some(old)) => {
                if available(new) {
                    step.delete
                        .push(old.metadata.name.clone().unwrap_or_default());
                } else {
                    surging += 1;
                }
            }
        }
    }
    let room = usize::try_from(max_surge - surging)
        .unwrap_or(0)
        .min(candidates.len());
    step.create_on = allowed;
    step.create_on.extend(candidates.into_iter().take(room));
    step
}

/// The counts of a DaemonSet's status (upstream's `updateDaemonSetStatus`).
#[derive(Debug, Default, PartialEq, Eq, Clone, Copy)]
pub struct StatusCounts {
    pub desired_number_scheduled: i32,
    pub current_number_scheduled: i32,
    pub number_misscheduled: i32,
    pub number_ready: i32,
    pub updated_number_scheduled: i32,
    pub number_available: i32,
    pub number_unavailable: i32,
}

/// Upstream's `updateDaemonSetStatus` counting: per node that should run the pod, whether it
/// has one, and whether the oldest is ready, available and up to date; daemon pods on other
/// nodes are misscheduled.
pub fn status_counts(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    by_node: &HashMap<String, Vec<Arc<Pod>>>,
    hash: &str,
    now: Timestamp,
) -> StatusCounts {
    let generation = template_generation(ds);
    let min_ready = ds.spec.min_ready_seconds.unwrap_or(0);
    let mut c = StatusCounts::default();
    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let pods = by_node.get(name).filter(|p| !p.is_empty());
        if !node_should_run(node, ds).should_run {
            if pods.is_some() {
                c.number_misscheduled += 1;
            }
            continue;
        }
        c.desired_number_scheduled += 1;
        let Some(pods) = pods else {
            continue;
        };
        c.current_number_scheduled += 1;
        let mut pods = pods.clone();
        pods.sort_by(older_first);
        let pod = &pods[0];
        if is_ready(pod) {
            c.number_ready += 1;
            if is_available(pod, min_ready, now) {
                c.number_available += 1;
            }
        }
        if is_pod_updated(pod, hash, generation) {
            c.updated_number_scheduled += 1;
        }
    }
    c.number_unavailable = c.desired_number_scheduled - c.number_available;
    c
}

#[cfg(test)]
mod tests;
