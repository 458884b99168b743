//! Upstream's `pkg/controller/deployment/util` (and the bits of `controller_utils.go` it uses):
//! the pure arithmetic and bookkeeping of a rollout — pod-template-hash, maxSurge and
//! maxUnavailable, revisions and their annotations, conditions, proportions, status. Nothing
//! here talks to the API, so all of it is unit-tested.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::Value;

/// `apps.DefaultDeploymentUniqueLabelKey`: the label (and selector term) that tells a
/// deployment's ReplicaSets, and their pods, apart.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// The rollout sequence number of a ReplicaSet (and, copied, of its deployment).
pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
/// The earlier revisions a ReplicaSet served (it was rolled back to).
pub const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
/// `spec.replicas` of the deployment when the ReplicaSet was last scaled by it: tells scaling
/// events (the deployment's size changed) from rollout steps.
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
/// `spec.replicas + maxSurge` at that time: the base of proportional scaling.
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
/// extensions/v1beta1's `spec.rollbackTo`, carried through apps/v1 as an annotation.
pub const ROLLBACK_TO_ANNOTATION: &str = "deprecated.deployment.rollback.to";
const LAST_APPLIED_CONFIG_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Upstream's cap on the revision-history annotation.
const MAX_REV_HISTORY_LENGTH_IN_CHARS: usize = 2000;

// Condition types and reasons, upstream's words (kubectl matches on some of them).
pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
pub const REPLICA_SET_UPDATED_REASON: &str = "ReplicaSetUpdated";
pub const FAILED_RS_CREATE_REASON: &str = "ReplicaSetCreateError";
pub const NEW_REPLICA_SET_REASON: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS_REASON: &str = "FoundNewReplicaSet";
pub const NEW_RS_AVAILABLE_REASON: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT_REASON: &str = "ProgressDeadlineExceeded";
pub const PAUSED_DEPLOY_REASON: &str = "DeploymentPaused";
pub const RESUMED_DEPLOY_REASON: &str = "DeploymentResumed";
pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

// ---------------------------------------------------------------------------------------
// pod-template-hash

/// Upstream's `controller.ComputeHash`: FNV-32a over the template, then the collision count
/// as eight little-endian bytes (a u32 and four zeros), the sum in decimal, each digit mapped
/// through `SafeEncodeString`'s alphabet.
///
/// Upstream hashes a `spew` dump of the Go struct, which nothing outside Go can reproduce;
/// we hash the template's JSON (k8s-openapi serialises fields in a fixed order and maps
/// sorted), so hashes are stable and well formed but not byte-equal to a Go controller's.
/// Nothing depends on that: the new ReplicaSet is found by comparing templates
/// (`EqualIgnoreHash`), and kubectl reads the label, it never recomputes it.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let json = serde_json::to_vec(template).unwrap_or_default();
    let mut hash = fnv32a(FNV32_OFFSET, &json);
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(count as u32).to_le_bytes());
        hash = fnv32a(hash, &bytes);
    }
    safe_encode_string(&hash.to_string())
}

const FNV32_OFFSET: u32 = 0x811c_9dc5;
const FNV32_PRIME: u32 = 0x0100_0193;

fn fnv32a(mut hash: u32, bytes: &[u8]) -> u32 {
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(FNV32_PRIME);
    }
    hash
}

/// apimachinery's `rand.SafeEncodeString`: each character to the generateName alphabet (no
/// vowels, no look-alikes), so hashes never spell words.
pub fn safe_encode_string(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.chars()
        .map(|c| char::from(ALPHANUMS[(c as usize) % ALPHANUMS.len()]))
        .collect()
}

// ---------------------------------------------------------------------------------------
// maxSurge / maxUnavailable

/// intstr's `GetScaledValueFromIntOrPercent`: an integer as is, `"N%"` of `total` rounded up
/// or down.
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let product = pct * i64::from(total);
            let v = if round_up {
                product.div_euclid(100) + i64::from(product.rem_euclid(100) != 0)
            } else {
                product.div_euclid(100)
            };
            i32::try_from(v).map_err(|_| format!("{s} of {total} is out of range"))
        }
    }
}

/// Upstream's `ResolveFenceposts`: maxSurge rounds up, maxUnavailable down, and when both
/// come to zero maxUnavailable is 1 (a rollout must be able to move; surge may be blocked by
/// quota).
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), String> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let mut unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.replicas.unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(1)
}

pub fn strategy_type(d: &Deployment) -> &str {
    d.spec
        .strategy
        .as_ref()
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

pub fn is_rolling_update(d: &Deployment) -> bool {
    strategy_type(d) == "RollingUpdate"
}

fn fenceposts(d: &Deployment) -> (i32, i32) {
    let ru = d
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref());
    // Validation keeps malformed values out; one that slips through counts as zero.
    resolve_fenceposts(
        ru.and_then(|r| r.max_surge.as_ref()),
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas(d),
    )
    .unwrap_or((0, 1))
}

/// Upstream's `MaxUnavailable`: never more than the replicas; zero for Recreate.
pub fn max_unavailable(d: &Deployment) -> i32 {
    if !is_rolling_update(d) || replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(replicas(d))
}

/// Upstream's `MaxSurge`: zero for Recreate.
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling_update(d) {
        return 0;
    }
    fenceposts(d).0
}

/// Upstream's `NewRSNewReplicas`: how far the new ReplicaSet may grow now.
///
/// One deliberate difference: a ReplicaSet counts as the larger of the pods it wants and the
/// pods it still has (`status.replicas`), where upstream counts `spec.replicas` only. An old
/// ReplicaSet just scaled down still has its pods until its controller has deleted them;
/// counting them keeps maxSurge true of the pods that exist, not only of the ReplicaSets'
/// sizes, at the price of waiting for the ReplicaSet controller's status.
pub fn new_rs_new_replicas(
    d: &Deployment,
    all: &[&ReplicaSet],
    new_rs: &ReplicaSet,
) -> Result<i32, String> {
    match strategy_type(d) {
        "RollingUpdate" => {
            let surge = d
                .spec
                .strategy
                .as_ref()
                .and_then(|s| s.rolling_update.as_ref())
                .and_then(|r| r.max_surge.clone())
                .unwrap_or(IntOrString::Int(0));
            let max_surge = scaled_value(&surge, replicas(d), true)?;
            let current: i32 = all
                .iter()
                .map(|rs| rs_replicas(rs).max(actual_replica_count([*rs])))
                .sum();
            let max_total = replicas(d) + max_surge;
            if current >= max_total {
                return Ok(rs_replicas(new_rs));
            }
            let up = (max_total - current).min(replicas(d) - rs_replicas(new_rs));
            Ok(rs_replicas(new_rs) + up)
        }
        "Recreate" => Ok(replicas(d)),
        other => Err(format!("deployment type {other:?} isn't supported")),
    }
}

/// How many of an old ReplicaSet's `replicas` to remove as unhealthy (upstream's
/// `cleanupUnhealthyReplicas` step): those not `available`, within `budget`. Never negative:
/// the ReplicaSet's status lags its spec right after a scale-down (more available than
/// wanted), and counting that as "minus unhealthy" scaled the ReplicaSet back up (upstream
/// refuses such a step with an error).
pub fn unhealthy_to_clean_up(replicas: i32, available: i32, budget: i32) -> i32 {
    (replicas - available).min(budget).max(0)
}

// ---------------------------------------------------------------------------------------
// Counting ReplicaSets.

/// Sum of `spec.replicas`.
pub fn replica_count<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(rs_replicas).sum()
}

fn status_sum<'a>(
    rss: impl IntoIterator<Item = &'a ReplicaSet>,
    f: impl Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32,
) -> i32 {
    rss.into_iter()
        .map(|rs| rs.status.as_ref().map_or(0, &f))
        .sum()
}

/// Sum of `status.replicas` (pods that exist).
pub fn actual_replica_count<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    status_sum(rss, |s| s.replicas)
}

pub fn ready_replica_count<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    status_sum(rss, |s| s.ready_replicas.unwrap_or(0))
}

pub fn available_replica_count<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    status_sum(rss, |s| s.available_replicas.unwrap_or(0))
}

/// Available pods that will still be there once each ReplicaSet matches its spec: a
/// ReplicaSet's available count, at most its `spec.replicas`. Right after a scale-down the
/// status still counts the pods about to go; summing it as upstream does let one step
/// remove every old pod while only part of the new ones were ready (seen in CI: 4 replicas,
/// maxUnavailable 1, 2 ready). The ReplicaSet controller deletes unavailable pods first, so
/// the capped count is what remains.
pub fn lasting_available_replica_count<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    rss.into_iter().map(lasting_available).sum()
}

/// One ReplicaSet's share of [`lasting_available_replica_count`].
pub fn lasting_available(rs: &ReplicaSet) -> i32 {
    let available = rs
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    available.min(rs_replicas(rs)).max(0)
}

/// `controller.FilterActiveReplicaSets`: those with replicas wanted.
pub fn filter_active<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> Vec<&'a ReplicaSet> {
    rss.into_iter().filter(|rs| rs_replicas(rs) > 0).collect()
}

fn created(rs: &ReplicaSet) -> Option<Timestamp> {
    rs.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// `controller.ReplicaSetsByCreationTimestamp`: oldest first, then by name.
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    created(a)
        .cmp(&created(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// `ReplicaSetsBySizeOlder`: larger first; of equal size the older first (scaling down).
pub fn by_size_older(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(a, b))
}

/// `ReplicaSetsBySizeNewer`: larger first; of equal size the newer first (scaling up).
pub fn by_size_newer(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    rs_replicas(b)
        .cmp(&rs_replicas(a))
        .then_with(|| by_creation(b, a))
}

/// `ReplicaSetsByRevision`: lowest revision first, creation order between equals (and
/// unparsable ones).
pub fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    match (revision(a), revision(b)) {
        (Ok(ra), Ok(rb)) if ra != rb => ra.cmp(&rb),
        _ => by_creation(a, b),
    }
}

// ---------------------------------------------------------------------------------------
// Which ReplicaSet is new.

/// Upstream's `EqualIgnoreHash`: the templates are the same apart from the pod-template-hash
/// label. As `apiequality.Semantic`, an empty list or map equals an absent one.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    let normal = |t: &PodTemplateSpec| {
        let mut t = t.clone();
        if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            labels.remove(POD_TEMPLATE_HASH_LABEL);
        }
        prune(serde_json::to_value(t).unwrap_or_default())
    };
    normal(a) == normal(b)
}

/// Drops nulls and empty objects and arrays, recursively.
fn prune(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, prune(v)))
                .filter(|(_, v)| !is_empty_value(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(prune).collect()),
        other => other,
    }
}

fn is_empty_value(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

pub fn rs_template(rs: &ReplicaSet) -> PodTemplateSpec {
    rs.spec.template.clone().unwrap_or_default()
}

pub fn template(d: &Deployment) -> PodTemplateSpec {
    d.spec.template.clone()
}

/// Upstream's `FindNewReplicaSet`: the oldest ReplicaSet whose template is the deployment's.
pub fn find_new_replica_set<'a>(d: &Deployment, rss: &'a [ReplicaSet]) -> Option<&'a ReplicaSet> {
    let wanted = template(d);
    let mut sorted: Vec<&ReplicaSet> = rss.iter().collect();
    sorted.sort_by(|a, b| by_creation(a, b));
    sorted
        .into_iter()
        .find(|rs| equal_ignore_hash(&rs_template(rs), &wanted))
}

/// Upstream's `FindOldReplicaSets` (its second list: every old ReplicaSet, scaled down or
/// not).
pub fn find_old_replica_sets(d: &Deployment, rss: &[ReplicaSet]) -> Vec<ReplicaSet> {
    let new_uid = find_new_replica_set(d, rss).and_then(|rs| rs.metadata.uid.clone());
    rss.iter()
        .filter(|rs| new_uid.is_none() || rs.metadata.uid != new_uid)
        .cloned()
        .collect()
}

/// Upstream's `FindActiveOrLatest`: the one ReplicaSet with replicas (or the newest when none
/// has any); `None` when several have replicas and must be scaled proportionally.
pub fn find_active_or_latest<'a>(
    new_rs: Option<&'a ReplicaSet>,
    old: &'a [ReplicaSet],
) -> Option<&'a ReplicaSet> {
    if new_rs.is_none() && old.is_empty() {
        return None;
    }
    let mut old_sorted: Vec<&ReplicaSet> = old.iter().collect();
    old_sorted.sort_by(|a, b| by_creation(b, a));
    let all: Vec<&ReplicaSet> = old_sorted.iter().copied().chain(new_rs).collect();
    let active = filter_active(all);
    match active.len() {
        0 => new_rs.or_else(|| old_sorted.first().copied()),
        1 => Some(active[0]),
        _ => None,
    }
}

/// Upstream's `IsSaturated`: the new ReplicaSet has, and was sized for, all the replicas, and
/// all of them are available.
pub fn is_saturated(d: &Deployment, rs: Option<&ReplicaSet>) -> bool {
    let Some(rs) = rs else {
        return false;
    };
    let Some(desired) = int_annotation(rs, DESIRED_REPLICAS_ANNOTATION) else {
        return false;
    };
    let available = rs
        .status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0);
    rs_replicas(rs) == replicas(d) && desired == replicas(d) && available == replicas(d)
}

// ---------------------------------------------------------------------------------------
// Revisions and annotations.

/// Upstream's `Revision`: the revision annotation, 0 without one.
pub fn revision(rs: &ReplicaSet) -> Result<i64, std::num::ParseIntError> {
    match annotations(&rs.metadata).get(REVISION_ANNOTATION) {
        None => Ok(0),
        Some(v) => v.parse(),
    }
}

/// Upstream's `MaxRevision` (unparsable revisions are skipped).
pub fn max_revision(rss: &[ReplicaSet]) -> i64 {
    rss.iter()
        .filter_map(|rs| revision(rs).ok())
        .max()
        .unwrap_or(0)
        .max(0)
}

/// Upstream's `LastRevision`: the second highest revision.
pub fn last_revision(rss: &[&ReplicaSet]) -> i64 {
    let (mut max, mut second) = (0, 0);
    for v in rss.iter().filter_map(|rs| revision(rs).ok()) {
        if v >= max {
            second = max;
            max = v;
        } else if v > second {
            second = v;
        }
    }
    second
}

fn annotations(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    meta.annotations.as_ref().unwrap_or(&EMPTY)
}

pub fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotations(&rs.metadata).get(key)?.parse().ok()
}

/// Annotations a deployment does not hand to its ReplicaSets (nor take back on rollback).
pub fn skip_copy_annotation(key: &str) -> bool {
    matches!(
        key,
        LAST_APPLIED_CONFIG_ANNOTATION
            | REVISION_ANNOTATION
            | REVISION_HISTORY_ANNOTATION
            | DESIRED_REPLICAS_ANNOTATION
            | MAX_REPLICAS_ANNOTATION
            | ROLLBACK_TO_ANNOTATION
    )
}

/// Upstream's `SetNewReplicaSetAnnotations`: the deployment's annotations (less the skipped),
/// the revision raised to `new_revision` (the one it had joins the revision history: the
/// deployment rolled back to it), and for a ReplicaSet about to be created the replica
/// annotations. True when anything changed.
pub fn set_new_replica_set_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: &str,
    exists: bool,
) -> bool {
    let mut changed = false;
    let from = annotations(&d.metadata).clone();
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in from {
        if skip_copy_annotation(&k) || ann.get(&k) == Some(&v) {
            continue;
        }
        ann.insert(k, v);
        changed = true;
    }
    let old_revision = ann.get(REVISION_ANNOTATION).cloned();
    let old_int = match old_revision.as_deref() {
        None | Some("") => 0,
        Some(v) => match v.parse::<i64>() {
            Ok(n) => n,
            // Upstream leaves a ReplicaSet with a garbled revision alone.
            Err(_) => return changed,
        },
    };
    let new_int: i64 = new_revision.parse().unwrap_or(0);
    if old_int < new_int {
        ann.insert(REVISION_ANNOTATION.into(), new_revision.into());
        changed = true;
        if let Some(old) = old_revision.filter(|o| !o.is_empty()) {
            let history = ann
                .get(REVISION_HISTORY_ANNOTATION)
                .cloned()
                .unwrap_or_default();
            if history.is_empty() {
                ann.insert(REVISION_HISTORY_ANNOTATION.into(), old);
            } else {
                let mut revisions: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > MAX_REV_HISTORY_LENGTH_IN_CHARS && start < revisions.len() {
                    total -= revisions[start].len() + 1;
                    start += 1;
                }
                if total <= MAX_REV_HISTORY_LENGTH_IN_CHARS {
                    revisions.drain(..start);
                    revisions.push(&old);
                    let joined = revisions.join(",");
                    ann.insert(REVISION_HISTORY_ANNOTATION.into(), joined);
                }
            }
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

/// Upstream's `SetReplicasAnnotations`; true when anything changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [
        (DESIRED_REPLICAS_ANNOTATION, desired.to_string()),
        (MAX_REPLICAS_ANNOTATION, max.to_string()),
    ] {
        if ann.get(k) != Some(&v) {
            ann.insert(k.into(), v);
            changed = true;
        }
    }
    changed
}

pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    let ann = annotations(&rs.metadata);
    ann.get(DESIRED_REPLICAS_ANNOTATION) != Some(&desired.to_string())
        || ann.get(MAX_REPLICAS_ANNOTATION) != Some(&max.to_string())
}

/// Upstream's `SetDeploymentRevision`; true when it changed.
pub fn set_deployment_revision(d: &mut Deployment, revision: &str) -> bool {
    let ann = d.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if ann.get(REVISION_ANNOTATION).map(String::as_str) == Some(revision) {
        return false;
    }
    ann.insert(REVISION_ANNOTATION.into(), revision.into());
    true
}

/// Upstream's `SetDeploymentAnnotationsTo` (rollback): the ReplicaSet's annotations replace
/// the deployment's, except the skipped ones, which the deployment keeps.
pub fn set_deployment_annotations_to(d: &mut Deployment, rs: &ReplicaSet) {
    let mut kept: BTreeMap<String, String> = annotations(&d.metadata)
        .iter()
        .filter(|(k, _)| skip_copy_annotation(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in annotations(&rs.metadata) {
        if !skip_copy_annotation(k) {
            kept.insert(k.clone(), v.clone());
        }
    }
    d.metadata.annotations = Some(kept);
}

// ---------------------------------------------------------------------------------------
// Proportional scaling.

/// Upstream's `GetProportion`: this ReplicaSet's share of `to_add`, of which `added` is
/// handed out already.
pub fn get_proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// Upstream's `getReplicaSetFraction`: the ReplicaSet's size scaled from the deployment size
/// it was made for (max-replicas) to the one now, less its size.
fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if replicas(d) == 0 {
        return -rs_replicas(rs);
    }
    let deployment_replicas = replicas(d) + max_surge(d);
    let annotated = int_annotation(rs, MAX_REPLICAS_ANNOTATION)
        .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0));
    if annotated == 0 {
        return 0;
    }
    let size = f64::from(rs_replicas(rs)) * f64::from(deployment_replicas) / f64::from(annotated);
    // Go's math.Round: halves away from zero, as f64::round.
    (size.round() as i32) - rs_replicas(rs)
}

// ---------------------------------------------------------------------------------------
// Conditions and status.

pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: Some(type_.into()),
        status: Some(status.into()),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

pub fn get_condition<'a>(
    status: Option<&'a DeploymentStatus>,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_.as_deref() == Some(type_))
}

/// Upstream's `SetDeploymentCondition`: nothing changes if a condition of the type with the
/// same status and reason is there; the transition time survives a change of reason only.
pub fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    let type_ = condition.type_.clone().unwrap_or_default();
    let current = get_condition(Some(status), &type_);
    if let Some(c) = current {
        if c.status == condition.status && c.reason == condition.reason {
            return;
        }
        if c.status == condition.status {
            condition.last_transition_time = c.last_transition_time.clone();
        }
    }
    remove_condition(status, &type_);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(condition);
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = status.conditions.as_mut() {
        cs.retain(|c| c.type_.as_deref() != Some(type_));
        if cs.is_empty() {
            status.conditions = None;
        }
    }
}

/// Go's `omitempty` for counts: a zero is absent.
fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

/// Upstream's `calculateStatus`: counts over the ReplicaSets, the conditions carried over and
/// Available set from the minimum availability.
pub fn calculate_status(
    all: &[&ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    d: &Deployment,
    now: Timestamp,
) -> DeploymentStatus {
    let available = available_replica_count(all.iter().copied());
    let total = replica_count(all.iter().copied());
    let unavailable = (total - available).max(0);
    let previous = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: nonzero(actual_replica_count(all.iter().copied())),
        updated_replicas: nonzero(actual_replica_count(new_rs)),
        ready_replicas: nonzero(ready_replica_count(all.iter().copied())),
        available_replicas: nonzero(available),
        unavailable_replicas: nonzero(unavailable),
        collision_count: previous.collision_count,
        conditions: previous.conditions.filter(|c| !c.is_empty()),
        terminating_replicas: previous.terminating_replicas,
    };
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut status,
            new_condition(
                AVAILABLE,
                "True",
                MINIMUM_REPLICAS_AVAILABLE,
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set_condition(
            &mut status,
            new_condition(
                AVAILABLE,
                "False",
                MINIMUM_REPLICAS_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    status
}

/// A status count, zero when absent.
pub fn count(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// Upstream's `DeploymentComplete`: every desired replica updated and available, no old pods,
/// the newest spec observed.
pub fn deployment_complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let want = replicas(d);
    count(status.updated_replicas) == want
        && count(status.replicas) == want
        && count(status.available_replicas) == want
        && status.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// Upstream's `DeploymentProgressing`: more updated, ready or available pods, or fewer old
/// ones, than the status the deployment has.
pub fn deployment_progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = count(old.replicas) - count(old.updated_replicas);
    let new_old = count(new.replicas) - count(new.updated_replicas);
    count(new.updated_replicas) > count(old.updated_replicas)
        || new_old < old_old
        || count(new.ready_replicas) > count(old.ready_replicas)
        || count(new.available_replicas) > count(old.available_replicas)
}

/// Upstream's `HasProgressDeadline` (MaxInt32 means none).
pub fn has_progress_deadline(d: &Deployment) -> bool {
    progress_deadline_seconds(d).is_some()
}

pub fn progress_deadline_seconds(d: &Deployment) -> Option<i32> {
    d.spec.progress_deadline_seconds.filter(|s| *s != i32::MAX)
}

/// Upstream's `HasRevisionHistoryLimit` (MaxInt32 keeps everything).
pub fn revision_history_limit(d: &Deployment) -> Option<i32> {
    d.spec.revision_history_limit.filter(|l| *l != i32::MAX)
}

/// Upstream's `DeploymentTimedOut`: the Progressing condition was last updated more than
/// progressDeadlineSeconds ago (or says so already).
pub fn deployment_timed_out(d: &Deployment, status: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline_seconds(d) else {
        return false;
    };
    let Some(c) = get_condition(Some(status), PROGRESSING) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE_REASON) => return false,
        Some(TIMED_OUT_REASON) => return true,
        _ => {}
    }
    let Some(from) = c.last_update_time.as_ref() else {
        return false;
    };
    from.0
        .checked_add(SignedDuration::from_secs(i64::from(deadline)))
        .is_ok_and(|at| at < now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unhealthy_clean_up_never_scales_up() {
        assert_eq!(unhealthy_to_clean_up(750, 537, 1000), 213);
        assert_eq!(unhealthy_to_clean_up(750, 537, 100), 100);
        assert_eq!(unhealthy_to_clean_up(750, 750, 100), 0);
        // Just scaled down to 439; the status still shows the 749 available before.
        assert_eq!(unhealthy_to_clean_up(439, 749, 213), 0);
        assert_eq!(unhealthy_to_clean_up(0, 0, 10), 0);
    }

    fn deployment(replicas: i32, surge: Value, unavailable: Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "d-uid", "generation": 2},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
            },
        }))
        .expect("deployment")
    }

    fn replica_set(name: &str, replicas: i32, created: i64, annotations: Value) -> ReplicaSet {
        let time = Time(Timestamp::from_second(created).expect("time"));
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": name,
                "creationTimestamp": time, "annotations": annotations},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}},
        }))
        .expect("replicaset")
    }

    #[test]
    fn lasting_availability_ignores_pods_a_scale_down_is_removing() {
        let mut old = replica_set("old", 2, 1, json!({}));
        // Scaled 3 → 2 a moment ago: the status still shows the 3 pods before.
        old.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
            replicas: 3,
            available_replicas: Some(3),
            ..Default::default()
        });
        let mut new = replica_set("new", 3, 2, json!({}));
        new.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
            replicas: 3,
            available_replicas: Some(2),
            ..Default::default()
        });
        assert_eq!(available_replica_count([&old, &new]), 5);
        assert_eq!(lasting_available_replica_count([&old, &new]), 4);
        assert_eq!(lasting_available(&old), 2);
        assert_eq!(lasting_available(&new), 2);
        let empty = replica_set("empty", 0, 3, json!({}));
        assert_eq!(lasting_available(&empty), 0);
    }

    #[test]
    fn hashes_use_fnv32a_and_the_safe_alphabet() {
        // FNV-32a test vectors.
        assert_eq!(fnv32a(FNV32_OFFSET, b""), 0x811c_9dc5);
        assert_eq!(fnv32a(FNV32_OFFSET, b"a"), 0xe40c_292c);
        assert_eq!(fnv32a(FNV32_OFFSET, b"foobar"), 0xbf9c_f968);
        // '0' is 48, 48 % 27 = 21 → '4'; '1' → '5'; '9' (57) → 57 % 27 = 3 → 'f'.
        assert_eq!(safe_encode_string("019"), "45f");

        let t: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
        .expect("template");
        let h = compute_hash(&t, None);
        assert!(!h.is_empty() && h.len() <= 10, "{h}");
        assert!(
            h.bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)),
            "{h}"
        );
        assert_eq!(h, compute_hash(&t.clone(), None), "stable");
        assert_ne!(
            h,
            compute_hash(&t, Some(1)),
            "the collision count changes it"
        );
        let mut other = t.clone();
        other.spec.as_mut().expect("spec").containers[0].image = Some("nginx".into());
        assert_ne!(h, compute_hash(&other, None));
        // The hash is of the decimal sum, digit by digit.
        let json = serde_json::to_vec(&t).expect("json");
        let sum = fnv32a(FNV32_OFFSET, &json);
        assert_eq!(h, safe_encode_string(&sum.to_string()));
        let mut with_count = sum;
        with_count = fnv32a(with_count, &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            compute_hash(&t, Some(1)),
            safe_encode_string(&with_count.to_string())
        );
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        let pct = |s: &str| IntOrString::String(s.into());
        let int = IntOrString::Int;
        // Upstream's ResolveFenceposts cases.
        assert_eq!(
            resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 10),
            Ok((3, 2))
        );
        assert_eq!(
            resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 4),
            Ok((1, 1))
        );
        assert_eq!(
            resolve_fenceposts(Some(&pct("25%")), Some(&pct("25%")), 1),
            Ok((1, 0))
        );
        assert_eq!(
            resolve_fenceposts(Some(&pct("0%")), Some(&pct("1%")), 2),
            Ok((0, 1)),
            "both zero: unavailable 1"
        );
        assert_eq!(
            resolve_fenceposts(Some(&pct("1%")), Some(&pct("25%")), 2),
            Ok((1, 0))
        );
        assert_eq!(
            resolve_fenceposts(Some(&int(0)), Some(&int(0)), 5),
            Ok((0, 1))
        );
        assert_eq!(
            resolve_fenceposts(Some(&int(2)), Some(&int(3)), 5),
            Ok((2, 3))
        );
        assert_eq!(resolve_fenceposts(None, None, 5), Ok((0, 1)));
        assert_eq!(
            resolve_fenceposts(Some(&pct("30%")), Some(&pct("30%")), 5),
            Ok((2, 1))
        );
        assert!(resolve_fenceposts(Some(&pct("x")), None, 5).is_err());

        let d = deployment(3, json!("50%"), json!("50%"));
        assert_eq!((max_surge(&d), max_unavailable(&d)), (2, 1));
        // maxUnavailable never exceeds the replicas; Recreate has neither.
        let d = deployment(2, json!(0), json!(5));
        assert_eq!(max_unavailable(&d), 2);
        let mut d = deployment(3, json!(1), json!(1));
        d.spec.strategy = Some(Default::default());
        d.spec.strategy.as_mut().expect("s").type_ = Some("Recreate".into());
        assert_eq!((max_surge(&d), max_unavailable(&d)), (0, 0));
    }

    #[test]
    fn new_replica_set_grows_within_the_surge() {
        let d = deployment(10, json!(3), json!(2));
        let old = replica_set("old", 10, 1, json!({}));
        let new = replica_set("new", 0, 2, json!({}));
        assert_eq!(new_rs_new_replicas(&d, &[&old, &new], &new), Ok(3));
        let new = replica_set("new", 3, 2, json!({}));
        assert_eq!(
            new_rs_new_replicas(&d, &[&old, &new], &new),
            Ok(3),
            "at 13 already"
        );
        let old = replica_set("old", 2, 1, json!({}));
        let new = replica_set("new", 8, 2, json!({}));
        assert_eq!(
            new_rs_new_replicas(&d, &[&old, &new], &new),
            Ok(10),
            "never past the replicas"
        );
        // An old ReplicaSet scaled down to 2 that still has 5 pods: nothing more yet.
        let mut old = replica_set("old", 2, 1, json!({}));
        old.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
            replicas: 5,
            ..Default::default()
        });
        assert_eq!(
            new_rs_new_replicas(&d, &[&old, &new], &new),
            Ok(8),
            "the old pods still count"
        );
    }

    #[test]
    fn revisions_and_their_history() {
        let d = deployment(3, json!(1), json!(1));
        let mut rs = replica_set("a", 0, 1, json!({}));
        assert!(set_new_replica_set_annotations(&d, &mut rs, "1", false));
        let ann = rs.metadata.annotations.clone().expect("annotations");
        assert_eq!(ann[REVISION_ANNOTATION], "1");
        assert_eq!(ann[DESIRED_REPLICAS_ANNOTATION], "3");
        assert_eq!(ann[MAX_REPLICAS_ANNOTATION], "4");
        assert!(!ann.contains_key(REVISION_HISTORY_ANNOTATION));
        // Rolled back to at revision 4, then 6: its old revisions are kept.
        assert!(set_new_replica_set_annotations(&d, &mut rs, "4", true));
        assert!(set_new_replica_set_annotations(&d, &mut rs, "6", true));
        let ann = rs.metadata.annotations.clone().expect("annotations");
        assert_eq!(ann[REVISION_ANNOTATION], "6");
        assert_eq!(ann[REVISION_HISTORY_ANNOTATION], "1,4");
        assert!(
            !set_new_replica_set_annotations(&d, &mut rs, "5", true),
            "never lowered"
        );

        let rss = [
            replica_set("a", 0, 1, json!({REVISION_ANNOTATION: "3"})),
            replica_set("b", 0, 2, json!({REVISION_ANNOTATION: "7"})),
            replica_set("c", 0, 3, json!({REVISION_ANNOTATION: "x"})),
            replica_set("d", 0, 4, json!({})),
        ];
        assert_eq!(max_revision(&rss), 7);
        assert_eq!(last_revision(&rss.iter().collect::<Vec<_>>()), 3);
        // (A garbled revision sorts by creation against everything; leave it out here.)
        let mut sorted: Vec<&ReplicaSet> = [&rss[1], &rss[3], &rss[0]].into_iter().collect();
        sorted.sort_by(|a, b| by_revision(a, b));
        let names: Vec<_> = sorted
            .iter()
            .map(|r| r.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["d", "a", "b"], "no annotation is revision 0");

        // Deployment annotations flow to the ReplicaSet, not the skipped ones.
        let mut d = d;
        d.metadata.annotations = Some(BTreeMap::from([
            ("team".to_string(), "a".to_string()),
            (LAST_APPLIED_CONFIG_ANNOTATION.to_string(), "{}".to_string()),
            (REVISION_ANNOTATION.to_string(), "9".to_string()),
        ]));
        let mut rs = replica_set("e", 0, 1, json!({}));
        set_new_replica_set_annotations(&d, &mut rs, "2", false);
        let ann = rs.metadata.annotations.expect("annotations");
        assert_eq!(ann.get("team").map(String::as_str), Some("a"));
        assert!(!ann.contains_key(LAST_APPLIED_CONFIG_ANNOTATION));
        assert_eq!(ann[REVISION_ANNOTATION], "2");
    }

    #[test]
    fn proportions_follow_the_max_replicas_annotation() {
        // Scaled from 10 to 20 (maxSurge 3) mid-rollout, 6 old and 4 new replicas made for
        // 13: 23 allowed now, 13 to add, handed out largest first.
        let d = deployment(20, json!(3), json!(2));
        let ann = json!({MAX_REPLICAS_ANNOTATION: "13"});
        let old = replica_set("old", 6, 1, ann.clone());
        let new = replica_set("new", 4, 2, ann);
        let p_old = get_proportion(&old, &d, 13, 0);
        let p_new = get_proportion(&new, &d, 13, p_old);
        assert_eq!(
            (p_old, p_new),
            (5, 3),
            "round(6*23/13) = 11, round(4*23/13) = 7"
        );
        // With a percentage surge the allowance scales too: 20 + 25% = 25.
        let d = deployment(20, json!("25%"), json!(0));
        assert_eq!(get_proportion(&old, &d, 15, 0), 6, "round(6*25/13) = 12");
        // Scaling to zero takes everything.
        let zero = deployment(0, json!(3), json!(2));
        assert_eq!(get_proportion(&old, &zero, -10, 0), -6);
        // Never more than allowed.
        assert_eq!(get_proportion(&old, &d, 3, 0), 3);
    }

    #[test]
    fn active_or_latest_and_saturation() {
        let old1 = replica_set("old1", 0, 1, json!({}));
        let old2 = replica_set("old2", 0, 2, json!({}));
        let olds = [old1.clone(), old2.clone()];
        let picked = find_active_or_latest(None, &olds).expect("one");
        assert_eq!(
            picked.metadata.name.as_deref(),
            Some("old2"),
            "the newest when none is active"
        );
        let new = replica_set("new", 3, 3, json!({}));
        assert_eq!(
            find_active_or_latest(Some(&new), &olds)
                .and_then(|r| r.metadata.name.clone())
                .as_deref(),
            Some("new")
        );
        let busy = [replica_set("old1", 2, 1, json!({}))];
        assert!(
            find_active_or_latest(Some(&new), &busy).is_none(),
            "two active"
        );

        let d = deployment(3, json!(1), json!(1));
        let mut sat = replica_set("new", 3, 3, json!({DESIRED_REPLICAS_ANNOTATION: "3"}));
        assert!(!is_saturated(&d, Some(&sat)), "not available yet");
        sat.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
            replicas: 3,
            available_replicas: Some(3),
            ..Default::default()
        });
        assert!(is_saturated(&d, Some(&sat)));
    }

    #[test]
    fn templates_compare_without_the_hash_label_and_empties() {
        let a: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web", POD_TEMPLATE_HASH_LABEL: "abc"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "env": []}]},
        }))
        .expect("a");
        let b: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}, "annotations": {}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
        .expect("b");
        assert!(equal_ignore_hash(&a, &b));
        let mut c = b.clone();
        c.spec.as_mut().expect("spec").containers[0].image = Some("nginx".into());
        assert!(!equal_ignore_hash(&a, &c));
    }

    #[test]
    fn conditions_keep_their_transition_time() {
        let t1 = Timestamp::from_second(100).expect("t1");
        let t2 = Timestamp::from_second(200).expect("t2");
        let mut s = DeploymentStatus::default();
        set_condition(
            &mut s,
            new_condition(PROGRESSING, "True", NEW_REPLICA_SET_REASON, "m".into(), t1),
        );
        set_condition(
            &mut s,
            new_condition(PROGRESSING, "True", NEW_REPLICA_SET_REASON, "m2".into(), t2),
        );
        let c = get_condition(Some(&s), PROGRESSING).expect("cond");
        assert_eq!(
            c.message.as_deref(),
            Some("m"),
            "same status and reason: untouched"
        );
        set_condition(
            &mut s,
            new_condition(
                PROGRESSING,
                "True",
                REPLICA_SET_UPDATED_REASON,
                "m3".into(),
                t2,
            ),
        );
        let c = get_condition(Some(&s), PROGRESSING).expect("cond");
        assert_eq!(c.last_transition_time, Some(Time(t1)));
        assert_eq!(c.last_update_time, Some(Time(t2)));
        set_condition(
            &mut s,
            new_condition(PROGRESSING, "False", TIMED_OUT_REASON, "m4".into(), t2),
        );
        let c = get_condition(Some(&s), PROGRESSING).expect("cond");
        assert_eq!(c.last_transition_time, Some(Time(t2)));
        remove_condition(&mut s, PROGRESSING);
        assert!(s.conditions.is_none());
    }

    #[test]
    fn timeouts_count_from_the_last_progress() {
        let mut d = deployment(3, json!(1), json!(1));
        d.spec.progress_deadline_seconds = Some(10);
        let t0 = Timestamp::from_second(1_000).expect("t0");
        let mut s = DeploymentStatus::default();
        set_condition(
            &mut s,
            new_condition(
                PROGRESSING,
                "True",
                REPLICA_SET_UPDATED_REASON,
                "m".into(),
                t0,
            ),
        );
        let at = |s: i64| Timestamp::from_second(1_000 + s).expect("t");
        assert!(!deployment_timed_out(&d, &s, at(10)));
        assert!(deployment_timed_out(&d, &s, at(11)));
        let mut done = s.clone();
        set_condition(
            &mut done,
            new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE_REASON, "m".into(), t0),
        );
        assert!(
            !deployment_timed_out(&d, &done, at(100)),
            "a finished rollout never times out"
        );
        d.spec.progress_deadline_seconds = Some(i32::MAX);
        assert!(
            !deployment_timed_out(&d, &s, at(100)),
            "MaxInt32 means no deadline"
        );
    }

    #[test]
    fn status_counts_and_availability() {
        let d = deployment(4, json!(1), json!(1));
        let mut old = replica_set("old", 2, 1, json!({}));
        old.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
            replicas: 2,
            ready_replicas: Some(2),
            available_replicas: Some(2),
            ..Default::default()
        });
        let mut new = replica_set("new", 3, 2, json!({}));
        new.status = Some(k8s_openapi::api::apps::v1::ReplicaSetStatus {
            replicas: 3,
            ready_replicas: Some(1),
            available_replicas: Some(1),
            ..Default::default()
        });
        let now = Timestamp::from_second(5).expect("now");
        let s = calculate_status(&[&old, &new], Some(&new), &d, now);
        assert_eq!(s.replicas, Some(5));
        assert_eq!(s.updated_replicas, Some(3));
        assert_eq!(s.ready_replicas, Some(3));
        assert_eq!(s.available_replicas, Some(3));
        assert_eq!(s.unavailable_replicas, Some(2));
        assert_eq!(s.observed_generation, Some(2));
        let a = get_condition(Some(&s), AVAILABLE).expect("available");
        assert_eq!(
            (a.status.as_deref(), a.reason.as_deref()),
            (Some("True"), Some(MINIMUM_REPLICAS_AVAILABLE)),
            "3 >= 4 - 1"
        );
        let s = calculate_status(&[&new], Some(&new), &d, now);
        let a = get_condition(Some(&s), AVAILABLE).expect("available");
        assert_eq!(a.reason.as_deref(), Some(MINIMUM_REPLICAS_UNAVAILABLE));
        assert!(!deployment_complete(&d, &s));
    }
}
