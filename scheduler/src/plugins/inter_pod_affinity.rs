//! InterPodAffinity: required pod affinity (the node's topology domain must hold a pod
//! matching each term), required anti-affinity (no matching pod in the domain) both of the
//! incoming pod and of the pods already running (their anti-affinity toward the incoming pod);
//! preferred terms of both sides score topology domains up (affinity) or down (anti-affinity).
//!
//! Namespaces of a term: its `namespaces`, or the pod's own namespace when that list is empty
//! and there is no `namespaceSelector`; a `namespaceSelector` adds namespaces whose labels
//! match. The snapshot carries no namespace labels, so a namespace selector is evaluated
//! against the one label every namespace has, `kubernetes.io/metadata.name`; a selector that
//! looks at any other label is taken to select all namespaces.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};

use skiff_apimachinery::labels::Selector;

use crate::framework::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeInfo, NodeScore, Plugin, PodInfo,
    PreFilterPlugin, PreScorePlugin, ScorePlugin, Snapshot, Status,
};
use crate::plugins::helpers::{label_selector, node_labels};

pub struct InterPodAffinity;

/// Upstream's reasons.
pub const REASON_EXISTING_ANTI_AFFINITY: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
pub const REASON_AFFINITY: &str = "node(s) didn't match pod affinity rules";
pub const REASON_ANTI_AFFINITY: &str = "node(s) didn't match pod anti-affinity rules";

/// Upstream's default `hardPodAffinityWeight`: existing pods' required affinity terms that
/// match the incoming pod count this much when scoring.
pub const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

const PRE_FILTER_KEY: &str = "PreFilterInterPodAffinity";
const PRE_SCORE_KEY: &str = "PreScoreInterPodAffinity";
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A parsed pod (anti-)affinity term.
#[derive(Debug, Clone)]
struct AffinityTerm {
    namespaces: BTreeSet<String>,
    namespace_selector: Selector,
    selector: Selector,
    topology_key: String,
}

impl AffinityTerm {
    fn parse(owner: &Pod, term: &PodAffinityTerm) -> Result<AffinityTerm, String> {
        // `matchLabelKeys`/`mismatchLabelKeys`: the owner's values, as the API server merges
        // them into the selector.
        let labels = owner.metadata.labels.clone().unwrap_or_default();
        let mut extra = Vec::new();
        for (keys, op) in [
            (&term.match_label_keys, "In"),
            (&term.mismatch_label_keys, "NotIn"),
        ] {
            for key in keys.iter().flatten() {
                if let Some(v) = labels.get(key) {
                    extra.push((key.clone(), op, v.clone()));
                }
            }
        }
        let selector = label_selector(term.label_selector.as_ref(), &extra)?;
        let namespace_selector = label_selector(term.namespace_selector.as_ref(), &[])?;
        let listed = term.namespaces.clone().unwrap_or_default();
        let namespaces = if listed.is_empty() && term.namespace_selector.is_none() {
            BTreeSet::from([owner.metadata.namespace.clone().unwrap_or_default()])
        } else {
            listed.into_iter().collect()
        };
        Ok(AffinityTerm {
            namespaces,
            namespace_selector,
            selector,
            topology_key: term.topology_key.clone(),
        })
    }

    /// Whether `pod` (in `namespace`, with `labels`) is selected by this term.
    fn matches(&self, pod: &PodInfo) -> bool {
        (self.namespaces.contains(&pod.namespace)
            || namespace_selected(&self.namespace_selector, &pod.namespace))
            && self.selector.matches(pod.labels())
    }
}

fn namespace_selected(selector: &Selector, namespace: &str) -> bool {
    if selector.matches_nothing() {
        return false;
    }
    if selector
        .requirements()
        .iter()
        .any(|r| r.key() != NAMESPACE_NAME_LABEL)
    {
        // Labels the snapshot does not know: taken as selecting every namespace.
        return true;
    }
    let labels = std::collections::BTreeMap::from([(
        NAMESPACE_NAME_LABEL.to_string(),
        namespace.to_string(),
    )]);
    selector.matches(&labels)
}

/// A pod's four lists of terms, as upstream's PodInfo holds them.
#[derive(Debug, Default)]
struct PodTerms {
    required_affinity: Vec<AffinityTerm>,
    required_anti_affinity: Vec<AffinityTerm>,
    preferred_affinity: Vec<(i64, AffinityTerm)>,
    preferred_anti_affinity: Vec<(i64, AffinityTerm)>,
}

type TermsResult<T> = Result<Vec<T>, String>;

impl PodTerms {
    /// Each list parsed on its own: a list with a bad term is an error for that list.
    #[allow(clippy::type_complexity)]
    fn parse_lists(
        pod: &Pod,
    ) -> (
        TermsResult<AffinityTerm>,
        TermsResult<AffinityTerm>,
        TermsResult<(i64, AffinityTerm)>,
        TermsResult<(i64, AffinityTerm)>,
    ) {
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> TermsResult<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::parse(pod, t))
                .collect()
        };
        let weighted = |terms: Option<
            &Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>,
        >|
         -> TermsResult<(i64, AffinityTerm)> {
            terms
                .into_iter()
                .flatten()
                .map(|t| {
                    Ok((
                        i64::from(t.weight),
                        AffinityTerm::parse(pod, &t.pod_affinity_term)?,
                    ))
                })
                .collect()
        };
        (
            required(pa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required(paa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            weighted(pa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            weighted(paa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
        )
    }

    /// For the incoming pod: any bad term is an error.
    fn parse_strict(pod: &Pod) -> Result<PodTerms, String> {
        let (ra, raa, pa, paa) = PodTerms::parse_lists(pod);
        fn tag<T>(what: &str, r: TermsResult<T>) -> TermsResult<T> {
            r.map_err(|e| format!("{what}: {e}"))
        }
        Ok(PodTerms {
            required_affinity: tag("requiredAffinityTerms", ra)?,
            required_anti_affinity: tag("requiredAntiAffinityTerms", raa)?,
            preferred_affinity: tag("preferredAffinityTerms", pa)?,
            preferred_anti_affinity: tag("preferredAntiAffinityTerms", paa)?,
        })
    }

    /// For pods already placed: a list with a bad term counts as empty (as upstream's
    /// PodInfo, which keeps the lists that parsed).
    fn parse_lenient(pod: &Pod) -> PodTerms {
        let (ra, raa, pa, paa) = PodTerms::parse_lists(pod);
        PodTerms {
            required_affinity: ra.unwrap_or_default(),
            required_anti_affinity: raa.unwrap_or_default(),
            preferred_affinity: pa.unwrap_or_default(),
            preferred_anti_affinity: paa.unwrap_or_default(),
        }
    }
}

/// Matching pods per (topology key, value).
type TopologyCounts = HashMap<(String, String), i64>;

fn add(counts: &mut TopologyCounts, node: &NodeInfo, key: &str, n: i64) {
    if let Some(value) = node.labels().get(key) {
        let entry = counts.entry((key.to_string(), value.clone())).or_default();
        *entry += n;
        if *entry == 0 {
            counts.remove(&(key.to_string(), value.clone()));
        }
    }
}

fn matches_all(terms: &[AffinityTerm], pod: &PodInfo) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod))
}

struct PreFilterState {
    /// Domains holding a pod whose required anti-affinity selects the incoming pod.
    existing_anti_affinity: TopologyCounts,
    /// Domains holding pods that match all of the incoming pod's required affinity terms.
    affinity: TopologyCounts,
    /// Domains holding pods matching one of the incoming pod's required anti-affinity terms.
    anti_affinity: TopologyCounts,
    terms: PodTerms,
    /// The incoming pod matches all of its own required affinity terms.
    matches_own_affinity: bool,
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot) -> Status {
        let terms = match PodTerms::parse_strict(&pod.pod) {
            Ok(t) => t,
            Err(e) => return Status::unresolvable(format!("parsing pod: {e}")),
        };
        let mut existing_anti_affinity = TopologyCounts::new();
        let mut affinity = TopologyCounts::new();
        let mut anti_affinity = TopologyCounts::new();
        let has_required =
            !terms.required_affinity.is_empty() || !terms.required_anti_affinity.is_empty();
        // Without required terms of its own, only nodes holding pods with required
        // anti-affinity can reject the pod (upstream's HavePodsWithRequiredAntiAffinityList).
        let nodes = if has_required {
            &snapshot.nodes
        } else {
            &snapshot.have_pods_with_required_anti_affinity
        };
        for node in nodes {
            for existing in &node.pods_with_required_anti_affinity {
                for t in PodTerms::parse_lenient(&existing.pod).required_anti_affinity {
                    if t.matches(pod) {
                        add(&mut existing_anti_affinity, node, &t.topology_key, 1);
                    }
                }
            }
            if !has_required {
                continue;
            }
            for existing in &node.pods {
                if matches_all(&terms.required_affinity, existing) {
                    for t in &terms.required_affinity {
                        add(&mut affinity, node, &t.topology_key, 1);
                    }
                }
                for t in &terms.required_anti_affinity {
                    if t.matches(existing) {
                        add(&mut anti_affinity, node, &t.topology_key, 1);
                    }
                }
            }
        }
        if existing_anti_affinity.is_empty() && !has_required {
            return Status::skip();
        }
        let matches_own_affinity = matches_all(&terms.required_affinity, pod);
        state.write(
            PRE_FILTER_KEY,
            PreFilterState {
                existing_anti_affinity,
                affinity,
                anti_affinity,
                terms,
                matches_own_affinity,
            },
        );
        Status::success()
    }
}

fn satisfies_pod_affinity(s: &PreFilterState, node: &NodeInfo) -> bool {
    let labels = node.labels();
    let mut pods_exist = true;
    for t in &s.terms.required_affinity {
        let Some(value) = labels.get(&t.topology_key) else {
            // The node must have every topology key.
            return false;
        };
        if s.affinity
            .get(&(t.topology_key.clone(), value.clone()))
            .copied()
            .unwrap_or(0)
            <= 0
        {
            pods_exist = false;
        }
    }
    // The first pod of a group whose affinity selects itself may go anywhere (with the
    // topology keys) while no pod anywhere matches.
    pods_exist || (s.affinity.is_empty() && s.matches_own_affinity)
}

fn satisfies_pod_anti_affinity(s: &PreFilterState, node: &NodeInfo) -> bool {
    let labels = node.labels();
    s.terms.required_anti_affinity.iter().all(|t| {
        labels.get(&t.topology_key).is_none_or(|value| {
            s.anti_affinity
                .get(&(t.topology_key.clone(), value.clone()))
                .copied()
                .unwrap_or(0)
                <= 0
        })
    })
}

fn satisfies_existing_anti_affinity(s: &PreFilterState, node: &NodeInfo) -> bool {
    s.existing_anti_affinity.is_empty()
        || node.labels().iter().all(|(k, v)| {
            s.existing_anti_affinity
                .get(&(k.clone(), v.clone()))
                .copied()
                .unwrap_or(0)
                <= 0
        })
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_KEY) else {
            return Status::error("InterPodAffinity: no PreFilter state");
        };
        if !satisfies_pod_affinity(s, node) {
            return Status::unresolvable(REASON_AFFINITY);
        }
        if !satisfies_pod_anti_affinity(s, node) {
            return Status::unschedulable(REASON_ANTI_AFFINITY);
        }
        if !satisfies_existing_anti_affinity(s, node) {
            return Status::unschedulable(REASON_EXISTING_ANTI_AFFINITY);
        }
        Status::success()
    }
}

/// Score per topology key, per value.
type ScoreMap = HashMap<String, HashMap<String, i64>>;

fn score_term(
    map: &mut ScoreMap,
    term: &AffinityTerm,
    weight: i64,
    target: &PodInfo,
    node: &NodeInfo,
) {
    if !term.matches(target) {
        return;
    }
    if let Some(value) = node.labels().get(&term.topology_key) {
        *map.entry(term.topology_key.clone())
            .or_default()
            .entry(value.clone())
            .or_default() += weight;
    }
}

impl PreScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        snapshot: &Snapshot,
    ) -> Status {
        if nodes.is_empty() {
            return Status::skip();
        }
        let terms = match PodTerms::parse_strict(&pod.pod) {
            Ok(t) => t,
            Err(e) => return Status::error(format!("failed to parse pod: {e}")),
        };
        let has_constraints =
            !terms.preferred_affinity.is_empty() || !terms.preferred_anti_affinity.is_empty();
        let mut map = ScoreMap::new();
        // Without preferences of its own, only nodes holding pods with affinity terms can
        // score (upstream's HavePodsWithAffinityList).
        let nodes = if has_constraints {
            &snapshot.nodes
        } else {
            &snapshot.have_pods_with_affinity
        };
        for node in nodes {
            if node.labels().is_empty() {
                continue;
            }
            // Without preferences of its own, only pods with affinity terms can matter.
            let existing_pods = if has_constraints {
                &node.pods
            } else {
                &node.pods_with_affinity
            };
            for existing in existing_pods {
                for (w, t) in &terms.preferred_affinity {
                    score_term(&mut map, t, *w, existing, node);
                }
                for (w, t) in &terms.preferred_anti_affinity {
                    score_term(&mut map, t, -*w, existing, node);
                }
                let theirs = PodTerms::parse_lenient(&existing.pod);
                for t in &theirs.required_affinity {
                    score_term(&mut map, t, HARD_POD_AFFINITY_WEIGHT, pod, node);
                }
                for (w, t) in &theirs.preferred_affinity {
                    score_term(&mut map, t, *w, pod, node);
                }
                for (w, t) in &theirs.preferred_anti_affinity {
                    score_term(&mut map, t, -*w, pod, node);
                }
            }
        }
        if map.is_empty() {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, map);
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(map) = state.read::<ScoreMap>(PRE_SCORE_KEY) else {
            return Err(Status::error("InterPodAffinity: no PreScore state"));
        };
        let labels = node_labels(&node.node);
        Ok(map
            .iter()
            .filter_map(|(key, values)| labels.get(key).and_then(|v| values.get(v)))
            .sum())
    }

    /// Min-max scaling to `0..=100` (all 0 when every node scored the same).
    fn normalize(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        if state
            .read::<ScoreMap>(PRE_SCORE_KEY)
            .is_none_or(|m| m.is_empty())
        {
            return Status::success();
        }
        let min = scores.iter().map(|s| s.score).min().unwrap_or(0);
        let max = scores.iter().map(|s| s.score).max().unwrap_or(0);
        let diff = max - min;
        for s in scores.iter_mut() {
            s.score = if diff > 0 {
                (MAX_NODE_SCORE as f64 * ((s.score - min) as f64 / diff as f64)) as i64
            } else {
                0
            };
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{self, node, pod};

    const ZONE: &str = "topology.kubernetes.io/zone";
    const HOST: &str = "kubernetes.io/hostname";

    fn term(labels: Value, key: &str) -> Value {
        json!({"labelSelector": {"matchLabels": labels}, "topologyKey": key})
    }

    fn with_affinity(name: &str, labels: Value, affinity: Value) -> PodInfo {
        pod(
            name,
            labels,
            json!({"containers": [], "affinity": affinity}),
        )
    }

    fn on(mut p: PodInfo, node_name: &str) -> Arc<PodInfo> {
        let mut raw = (*p.pod).clone();
        raw.spec.get_or_insert_default().node_name = Some(node_name.into());
        p = PodInfo::new(Arc::new(raw));
        Arc::new(p)
    }

    fn nodes_with(pods: &[(&str, PodInfo)]) -> Vec<NodeInfo> {
        let mut nodes = vec![
            node("a1", json!({ZONE: "a", HOST: "a1"}), json!({}), json!({})),
            node("a2", json!({ZONE: "a", HOST: "a2"}), json!({}), json!({})),
            node("b1", json!({ZONE: "b", HOST: "b1"}), json!({}), json!({})),
            node("nozone", json!({HOST: "nozone"}), json!({}), json!({})),
        ];
        for (n, p) in pods {
            let info = on(p.clone(), n);
            nodes
                .iter_mut()
                .find(|x| x.name == *n)
                .expect("node")
                .add_pod(info);
        }
        nodes
    }

    /// Runs PreFilter and Filter on every node; the codes by node name.
    fn filter_all(p: &PodInfo, nodes: &[NodeInfo]) -> Vec<(String, Code, Vec<String>)> {
        testing::filter_all(&InterPodAffinity, p, nodes)
            .into_iter()
            .map(|(name, status)| (name, status.code, status.reasons))
            .collect()
    }

    fn fits(results: &[(String, Code, Vec<String>)]) -> Vec<&str> {
        results
            .iter()
            .filter(|r| r.1 == Code::Success)
            .map(|r| r.0.as_str())
            .collect()
    }

    #[test]
    fn required_terms_filter_as_upstream() {
        let web = || pod("web", json!({"app": "web"}), json!({"containers": []}));
        let db_other_ns = {
            let mut raw = (*web().pod).clone();
            raw.metadata.namespace = Some("other".into());
            PodInfo::new(Arc::new(raw))
        };
        let affinity_zone = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            term(json!({"app": "web"}), ZONE)]}});
        let anti_host = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            term(json!({"app": "web"}), HOST)]}});
        let anti_zone = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            term(json!({"app": "web"}), ZONE)]}});
        let anti_zone_all_ns = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": ZONE,
             "namespaceSelector": {}}]}});
        let anti_zone_named_ns = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": ZONE,
             "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: "third"}}}]}});

        struct Case {
            name: &'static str,
            incoming: PodInfo,
            existing: Vec<(&'static str, PodInfo)>,
            fits: Vec<&'static str>,
            reason: Option<(&'static str, Code)>,
        }
        let cases = vec![
            Case {
                name: "affinity to a zone holding a match",
                incoming: with_affinity("in", json!({}), affinity_zone.clone()),
                existing: vec![("a2", web())],
                fits: vec!["a1", "a2"],
                reason: Some((REASON_AFFINITY, Code::UnschedulableAndUnresolvable)),
            },
            Case {
                name: "affinity with no match anywhere and not matching itself",
                incoming: with_affinity("in", json!({}), affinity_zone.clone()),
                existing: vec![],
                fits: vec![],
                reason: Some((REASON_AFFINITY, Code::UnschedulableAndUnresolvable)),
            },
            Case {
                name: "first pod of a group: matches itself, goes where the key is",
                incoming: with_affinity("in", json!({"app": "web"}), affinity_zone.clone()),
                existing: vec![],
                fits: vec!["a1", "a2", "b1"],
                reason: Some((REASON_AFFINITY, Code::UnschedulableAndUnresolvable)),
            },
            Case {
                name: "affinity ignores pods in other namespaces",
                incoming: with_affinity("in", json!({}), affinity_zone.clone()),
                existing: vec![("b1", db_other_ns.clone())],
                fits: vec![],
                reason: Some((REASON_AFFINITY, Code::UnschedulableAndUnresolvable)),
            },
            Case {
                name: "anti-affinity per host",
                incoming: with_affinity("in", json!({}), anti_host.clone()),
                existing: vec![("a1", web())],
                fits: vec!["a2", "b1", "nozone"],
                reason: Some((REASON_ANTI_AFFINITY, Code::Unschedulable)),
            },
            Case {
                name: "anti-affinity per zone; nodes without the key pass",
                incoming: with_affinity("in", json!({}), anti_zone.clone()),
                existing: vec![("a1", web())],
                fits: vec!["b1", "nozone"],
                reason: Some((REASON_ANTI_AFFINITY, Code::Unschedulable)),
            },
            Case {
                name: "anti-affinity in own namespace only",
                incoming: with_affinity("in", json!({}), anti_zone.clone()),
                existing: vec![("a1", db_other_ns.clone())],
                fits: vec!["a1", "a2", "b1", "nozone"],
                reason: None,
            },
            Case {
                name: "empty namespaceSelector selects all namespaces",
                incoming: with_affinity("in", json!({}), anti_zone_all_ns),
                existing: vec![("a1", db_other_ns.clone())],
                fits: vec!["b1", "nozone"],
                reason: Some((REASON_ANTI_AFFINITY, Code::Unschedulable)),
            },
            Case {
                name: "namespaceSelector on the name label selects only that namespace",
                incoming: with_affinity("in", json!({}), anti_zone_named_ns),
                existing: vec![("a1", db_other_ns.clone())],
                fits: vec!["a1", "a2", "b1", "nozone"],
                reason: None,
            },
            Case {
                name: "existing pod's anti-affinity keeps matching pods out of its zone",
                incoming: pod("in", json!({"app": "web"}), json!({"containers": []})),
                existing: vec![("a1", with_affinity("guard", json!({}), anti_zone.clone()))],
                fits: vec!["b1", "nozone"],
                reason: Some((REASON_EXISTING_ANTI_AFFINITY, Code::Unschedulable)),
            },
            Case {
                name: "existing pod's anti-affinity does not select other pods",
                incoming: pod("in", json!({"app": "db"}), json!({"containers": []})),
                existing: vec![("a1", with_affinity("guard", json!({}), anti_zone))],
                fits: vec!["a1", "a2", "b1", "nozone"],
                reason: None,
            },
        ];
        for c in cases {
            let nodes = nodes_with(&c.existing);
            let results = filter_all(&c.incoming, &nodes);
            assert_eq!(fits(&results), c.fits, "{}", c.name);
            if let Some((reason, code)) = c.reason {
                for r in results.iter().filter(|r| r.1 != Code::Success) {
                    assert_eq!(r.1, code, "{}: {}", c.name, r.0);
                    assert_eq!(r.2, vec![reason.to_string()], "{}: {}", c.name, r.0);
                }
            }
        }
    }

    #[test]
    fn pods_without_terms_skip_when_no_existing_anti_affinity() {
        let nodes = nodes_with(&[(
            "a1",
            pod("x", json!({"app": "web"}), json!({"containers": []})),
        )]);
        let snapshot = Snapshot::new(nodes.into_iter().map(Arc::new).collect());
        let p = pod("in", json!({"app": "web"}), json!({"containers": []}));
        let status = InterPodAffinity.pre_filter(&mut CycleState::new(), &p, &snapshot);
        assert_eq!(status.code, Code::Skip);
    }

    fn scores(p: &PodInfo, nodes: &[NodeInfo]) -> Option<Vec<i64>> {
        let s = testing::scores(&InterPodAffinity, p, nodes)?;
        Some(s.iter().map(|s| s.score).collect())
    }

    #[test]
    fn preferred_terms_score_topology_domains() {
        let web = || pod("web", json!({"app": "web"}), json!({"containers": []}));
        let db = || pod("db", json!({"app": "db"}), json!({"containers": []}));
        let prefer = |kind: &str, terms: Value| {
            with_affinity(
                "in",
                json!({"app": "in"}),
                json!({kind: {"preferredDuringSchedulingIgnoredDuringExecution": terms}}),
            )
        };
        let weighted = |w: i64, labels: Value, key: &str| json!({"weight": w, "podAffinityTerm": term(labels, key)});
        // Nodes: a1, a2 (zone a), b1 (zone b), nozone.
        type Case<'a> = (&'a str, PodInfo, Vec<(&'a str, PodInfo)>, Option<Vec<i64>>);
        let cases: Vec<Case> = vec![
            (
                "affinity to web's zone",
                prefer(
                    "podAffinity",
                    json!([weighted(10, json!({"app": "web"}), ZONE)]),
                ),
                vec![("a1", web())],
                Some(vec![100, 100, 0, 0]),
            ),
            (
                "anti-affinity away from web's zone",
                prefer(
                    "podAntiAffinity",
                    json!([weighted(10, json!({"app": "web"}), ZONE)]),
                ),
                vec![("a1", web()), ("b1", db())],
                Some(vec![0, 0, 100, 100]),
            ),
            (
                "nothing matches: skipped",
                prefer(
                    "podAffinity",
                    json!([weighted(10, json!({"app": "none"}), ZONE)]),
                ),
                vec![("a1", web())],
                None,
            ),
            (
                "existing pod's preferred affinity toward the incoming pod",
                pod("in", json!({"app": "in"}), json!({"containers": []})),
                vec![(
                    "b1",
                    with_affinity(
                        "fan",
                        json!({}),
                        json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                            weighted(5, json!({"app": "in"}), HOST)]}}),
                    ),
                )],
                Some(vec![0, 0, 100, 0]),
            ),
            (
                "existing pod's required affinity counts hardPodAffinityWeight; its preferred \
                 anti-affinity subtracts",
                pod("in", json!({"app": "in"}), json!({"containers": []})),
                vec![
                    (
                        "a1",
                        with_affinity(
                            "fan",
                            json!({}),
                            json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                                term(json!({"app": "in"}), ZONE)]}}),
                        ),
                    ),
                    (
                        "b1",
                        with_affinity(
                            "foe",
                            json!({}),
                            json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                                weighted(3, json!({"app": "in"}), ZONE)]}}),
                        ),
                    ),
                ],
                // a: +1, b: -3, nozone: 0 → min-max over [-3, 1].
                Some(vec![100, 100, 0, 75]),
            ),
        ];
        for (name, p, existing, want) in cases {
            let nodes = nodes_with(&existing);
            assert_eq!(scores(&p, &nodes), want, "{name}");
        }
    }
}
