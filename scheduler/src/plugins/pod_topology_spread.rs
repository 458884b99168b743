//! PodTopologySpread: `topologySpreadConstraints` spread matching pods (same namespace,
//! selector) over topology domains. `DoNotSchedule` constraints filter: placing the pod in a
//! domain may not make it exceed the least loaded domain by more than `maxSkew`.
//! `ScheduleAnyway` constraints score: fewer matching pods, higher score.
//!
//! A pod without constraints gets upstream's system defaults (hostname maxSkew 3, zone maxSkew
//! 5, ScheduleAnyway). Upstream selects the pods of the Services/ReplicaSets/StatefulSets that
//! select the pod; the snapshot has none of those, so the defaults select the pods with the
//! same controller ownerReference (kind and name) instead — pods sharing an owner spread.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, TopologySpreadConstraint};
use skiff_apimachinery::labels::Selector;

use crate::framework::{
    CycleState, FilterPlugin, MAX_NODE_SCORE, NodeInfo, NodeScore, Plugin, PodInfo,
    PreFilterPlugin, PreScorePlugin, ScorePlugin, Snapshot, Status,
};
use crate::plugins::helpers::{
    RequiredNodeAffinity, has_untolerated_schedule_taint, label_selector,
};

pub struct PodTopologySpread;

/// Upstream's reasons.
pub const REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
pub const REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";

pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_ZONE: &str = "topology.kubernetes.io/zone";

const PRE_FILTER_KEY: &str = "PreFilterPodTopologySpread";
const PRE_SCORE_KEY: &str = "PreScorePodTopologySpread";

/// Which pods a constraint counts.
#[derive(Debug, Clone)]
enum PodMatcher {
    Labels(Selector),
    /// System defaults: pods with this controller owner (kind, name).
    Owner(String, String),
}

impl PodMatcher {
    fn matches(&self, pod: &Pod) -> bool {
        match self {
            PodMatcher::Labels(sel) => {
                static EMPTY: BTreeMap<String, String> = BTreeMap::new();
                sel.matches(pod.metadata.labels.as_ref().unwrap_or(&EMPTY))
            }
            PodMatcher::Owner(kind, name) => {
                controller_of(pod).is_some_and(|(k, n)| k == kind && n == name)
            }
        }
    }
}

fn controller_of(pod: &Pod) -> Option<(&str, &str)> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| (o.kind.as_str(), o.name.as_str()))
}

#[derive(Debug, Clone)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    matcher: PodMatcher,
    min_domains: i64,
    honor_node_affinity: bool,
    honor_node_taints: bool,
}

impl Constraint {
    /// Whether `node` takes part in this constraint (upstream's node inclusion policies:
    /// affinity honored, taints ignored, unless the constraint says otherwise).
    fn includes(&self, pod: &Pod, node: &Node, affinity: &RequiredNodeAffinity) -> bool {
        (!self.honor_node_affinity || affinity.matches(node))
            && (!self.honor_node_taints || !has_untolerated_schedule_taint(node, pod))
    }
}

/// Upstream's `countPodsMatchSelector`: pods in `namespace`, not terminating, matching. An
/// empty label selector counts nothing.
fn count_matching(pods: &[Arc<PodInfo>], matcher: &PodMatcher, namespace: &str) -> i64 {
    if let PodMatcher::Labels(sel) = matcher
        && sel.is_empty()
    {
        return 0;
    }
    pods.iter()
        .filter(|p| {
            p.pod.metadata.deletion_timestamp.is_none()
                && p.namespace == namespace
                && matcher.matches(&p.pod)
        })
        .count() as i64
}

fn has_all_keys(node: &NodeInfo, constraints: &[Constraint]) -> bool {
    let labels = node.labels();
    constraints
        .iter()
        .all(|c| labels.contains_key(&c.topology_key))
}

/// The pod's constraints with `whenUnsatisfiable == action`, or the system defaults when it
/// has none; the flag tells whether they are the defaults.
fn constraints(pod: &PodInfo, action: &str) -> Result<(Vec<Constraint>, bool), String> {
    let own = pod
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.topology_spread_constraints.as_deref())
        .unwrap_or_default();
    if !own.is_empty() {
        return Ok((filter_constraints(own, pod, action)?, false));
    }
    let Some((kind, name)) = controller_of(&pod.pod) else {
        return Ok((Vec::new(), true));
    };
    let defaults = [(LABEL_HOSTNAME, 3), (LABEL_ZONE, 5)]
        .into_iter()
        .filter(|_| action == "ScheduleAnyway")
        .map(|(key, skew)| Constraint {
            max_skew: skew,
            topology_key: key.to_string(),
            matcher: PodMatcher::Owner(kind.to_string(), name.to_string()),
            min_domains: 1,
            honor_node_affinity: true,
            honor_node_taints: false,
        })
        .collect();
    Ok((defaults, true))
}

fn filter_constraints(
    own: &[TopologySpreadConstraint],
    pod: &PodInfo,
    action: &str,
) -> Result<Vec<Constraint>, String> {
    own.iter()
        .filter(|c| c.when_unsatisfiable == action)
        .map(|c| {
            // `matchLabelKeys`: the pod's own values join the selector.
            let extra: Vec<(String, &'static str, String)> = c
                .match_label_keys
                .iter()
                .flatten()
                .filter_map(|k| pod.labels().get(k).map(|v| (k.clone(), "In", v.clone())))
                .collect();
            Ok(Constraint {
                max_skew: i64::from(c.max_skew),
                topology_key: c.topology_key.clone(),
                matcher: PodMatcher::Labels(label_selector(c.label_selector.as_ref(), &extra)?),
                min_domains: i64::from(c.min_domains.unwrap_or(1)),
                honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_node_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            })
        })
        .collect()
}

struct PreFilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: matching pods per topology value (eligible domains only).
    counts: Vec<HashMap<String, i64>>,
}

impl PreFilterState {
    /// The global minimum of constraint `i`; 0 while there are fewer domains than
    /// `minDomains`.
    fn min_match(&self, i: usize) -> i64 {
        let counts = &self.counts[i];
        if (counts.len() as i64) < self.constraints[i].min_domains {
            return 0;
        }
        counts
            .values()
            .copied()
            .min()
            .unwrap_or(i64::from(i32::MAX))
    }
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, snapshot: &Snapshot) -> Status {
        let constraints = match constraints(pod, "DoNotSchedule") {
            Ok((c, _)) => c,
            Err(e) => return Status::error(e),
        };
        if constraints.is_empty() {
            return Status::skip();
        }
        let affinity = RequiredNodeAffinity::from_pod(&pod.pod);
        let mut counts = vec![HashMap::new(); constraints.len()];
        for node in &snapshot.nodes {
            if !has_all_keys(node, &constraints) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if !c.includes(&pod.pod, &node.node, &affinity) {
                    continue;
                }
                let value = node.labels()[&c.topology_key].clone();
                *counts[i].entry(value).or_default() +=
                    count_matching(&node.pods, &c.matcher, &pod.namespace);
            }
        }
        state.write(
            PRE_FILTER_KEY,
            PreFilterState {
                constraints,
                counts,
            },
        );
        Status::success()
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>(PRE_FILTER_KEY) else {
            return Status::error("PodTopologySpread: no PreFilter state");
        };
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.labels().get(&c.topology_key) else {
                return Status::unresolvable(REASON_NODE_LABEL_NOT_MATCH);
            };
            let self_match = i64::from(c.matcher.matches(&pod.pod));
            let count = s.counts[i].get(value).copied().unwrap_or(0);
            if count + self_match - s.min_match(i) > c.max_skew {
                return Status::unschedulable(REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }
}

struct PreScoreState {
    constraints: Vec<Constraint>,
    /// Nodes missing a topology key: scored 0.
    ignored: HashSet<String>,
    /// The same nodes by position in the scored list (what normalize sees).
    ignored_at: HashSet<usize>,
    /// Per constraint: matching pods per topology value (not for the hostname key, which is
    /// counted on the node itself in Score).
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: ln(domains + 2), so counts in small topologies are not watered down.
    weights: Vec<f64>,
}

/// The node's value of a topology key (empty when it lacks the label).
fn topology_value(node: &NodeInfo, key: &str) -> String {
    node.labels().get(key).cloned().unwrap_or_default()
}

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        snapshot: &Snapshot,
    ) -> Status {
        if nodes.is_empty() || snapshot.is_empty() {
            return Status::skip();
        }
        let (constraints, system_defaulted) = match constraints(pod, "ScheduleAnyway") {
            Ok(c) => c,
            Err(e) => return Status::error(e),
        };
        if constraints.is_empty() {
            return Status::skip();
        }
        // The defaults don't require every key, so that nodes without a zone still spread
        // by hostname.
        let require_all = !system_defaulted;
        let mut ignored = HashSet::new();
        let mut ignored_at = HashSet::new();
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        for (position, node) in nodes.iter().enumerate() {
            if require_all && !has_all_keys(node, &constraints) {
                ignored.insert(node.name.clone());
                ignored_at.insert(position);
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key == LABEL_HOSTNAME {
                    continue;
                }
                let value = topology_value(node, &c.topology_key);
                counts[i].entry(value).or_insert(0);
            }
        }
        let weights = constraints
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.topology_key == LABEL_HOSTNAME {
                    nodes.len() - ignored.len()
                } else {
                    counts[i].len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        let affinity = RequiredNodeAffinity::from_pod(&pod.pod);
        for node in &snapshot.nodes {
            if require_all && !has_all_keys(node, &constraints) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if !c.includes(&pod.pod, &node.node, &affinity) {
                    continue;
                }
                let value = topology_value(node, &c.topology_key);
                // Only domains of candidate nodes are counted.
                if let Some(count) = counts[i].get_mut(&value) {
                    *count += count_matching(&node.pods, &c.matcher, &pod.namespace);
                }
            }
        }
        state.write(
            PRE_SCORE_KEY,
            PreScoreState {
                constraints,
                ignored,
                ignored_at,
                counts,
                weights,
            },
        );
        Status::success()
    }
}

impl ScorePlugin for PodTopologySpread {
    /// The (weighted) number of matching pods in the node's domains; reversed in normalize.
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Result<i64, Status> {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return Err(Status::error("PodTopologySpread: no PreScore state"));
        };
        if s.ignored.contains(&node.name) {
            return Ok(0);
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(value) = node.labels().get(&c.topology_key) else {
                continue;
            };
            let count = if c.topology_key == LABEL_HOSTNAME {
                count_matching(&node.pods, &c.matcher, &pod.namespace)
            } else {
                s.counts[i].get(value).copied().unwrap_or(0)
            };
            // maxSkew - 1 waters down differences between domains.
            score += count as f64 * s.weights[i] + (c.max_skew - 1) as f64;
        }
        Ok(score.round() as i64)
    }

    /// Fewest matching pods → 100: `100 * (max + min - score) / max`; ignored nodes 0.
    fn normalize(&self, state: &CycleState, _pod: &PodInfo, scores: &mut [NodeScore]) -> Status {
        let Some(s) = state.read::<PreScoreState>(PRE_SCORE_KEY) else {
            return Status::success();
        };
        let counted = || scores.iter().filter(|n| !s.ignored_at.contains(&n.index));
        let min = counted().map(|n| n.score).min().unwrap_or(i64::MAX);
        let max = counted().map(|n| n.score).max().unwrap_or(0).max(0);
        for n in scores.iter_mut() {
            n.score = if s.ignored_at.contains(&n.index) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - n.score) / max
            };
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{self, node, pod};

    fn spread(skew: i32, key: &str, when: &str, labels: Value) -> Value {
        json!({"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": labels}})
    }

    fn incoming(constraints: Value) -> PodInfo {
        pod(
            "in",
            json!({"app": "web"}),
            json!({"containers": [], "topologySpreadConstraints": constraints}),
        )
    }

    fn placed(name: &str, labels: Value, node_name: &str) -> Arc<PodInfo> {
        Arc::new(pod(
            name,
            labels,
            json!({"containers": [], "nodeName": node_name}),
        ))
    }

    /// Zones a (a1, a2), b (b1), c (c1, labelled "ssd": false); `nozone` has no zone.
    fn cluster(pods: &[(&str, Value)]) -> Vec<NodeInfo> {
        let mut nodes = vec![
            node(
                "a1",
                json!({LABEL_ZONE: "a", LABEL_HOSTNAME: "a1", "disk": "ssd"}),
                json!({}),
                json!({}),
            ),
            node(
                "a2",
                json!({LABEL_ZONE: "a", LABEL_HOSTNAME: "a2", "disk": "ssd"}),
                json!({}),
                json!({}),
            ),
            node(
                "b1",
                json!({LABEL_ZONE: "b", LABEL_HOSTNAME: "b1", "disk": "ssd"}),
                json!({}),
                json!({}),
            ),
            node(
                "c1",
                json!({LABEL_ZONE: "c", LABEL_HOSTNAME: "c1"}),
                json!({"taints": [{"key": "k", "effect": "NoSchedule"}]}),
                json!({}),
            ),
            node(
                "nozone",
                json!({LABEL_HOSTNAME: "nozone", "disk": "ssd"}),
                json!({}),
                json!({}),
            ),
        ];
        for (i, (n, labels)) in pods.iter().enumerate() {
            let p = placed(&format!("p{i}"), labels.clone(), n);
            nodes.iter_mut().find(|x| x.name == *n).unwrap().add_pod(p);
        }
        nodes
    }

    fn filter_all(p: &PodInfo, nodes: &[NodeInfo]) -> Vec<(String, Status)> {
        testing::filter_all(&PodTopologySpread, p, nodes)
    }

    #[test]
    fn hard_constraints_filter_by_skew() {
        let web = json!({"app": "web"});
        let zone1 = spread(1, LABEL_ZONE, "DoNotSchedule", web.clone());
        type Case<'a> = (&'a str, PodInfo, Vec<(&'a str, Value)>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            (
                "zone a has 2, b and c 0: a is full at skew 1",
                incoming(json!([zone1])),
                vec![("a1", web.clone()), ("a2", web.clone())],
                vec!["b1", "c1"],
            ),
            (
                "one each in a and b, none in c: only c",
                incoming(json!([zone1])),
                vec![("a1", web.clone()), ("b1", web.clone())],
                vec!["c1"],
            ),
            (
                "pods of other apps and namespaces do not count",
                incoming(json!([zone1])),
                vec![("a1", json!({"app": "db"}))],
                vec!["a1", "a2", "b1", "c1"],
            ),
            (
                "maxSkew 2 leaves room",
                incoming(json!([spread(2, LABEL_ZONE, "DoNotSchedule", web.clone())])),
                vec![("a1", web.clone())],
                vec!["a1", "a2", "b1", "c1"],
            ),
            (
                "the incoming pod not matching the selector does not count itself",
                incoming(json!([spread(
                    1,
                    LABEL_ZONE,
                    "DoNotSchedule",
                    json!({"app": "db"})
                )])),
                vec![("a1", json!({"app": "db"}))],
                vec!["a1", "a2", "b1", "c1"],
            ),
            (
                "ScheduleAnyway does not filter",
                incoming(json!([spread(
                    1,
                    LABEL_ZONE,
                    "ScheduleAnyway",
                    web.clone()
                )])),
                vec![("a1", web.clone()), ("a2", web.clone())],
                vec!["a1", "a2", "b1", "c1", "nozone"],
            ),
            (
                "minDomains above the domain count makes the global minimum 0",
                incoming(json!([{"maxSkew": 1, "topologyKey": LABEL_ZONE,
                    "whenUnsatisfiable": "DoNotSchedule", "minDomains": 5,
                    "labelSelector": {"matchLabels": web.clone()}}])),
                vec![
                    ("a1", web.clone()),
                    ("b1", web.clone()),
                    ("c1", web.clone()),
                ],
                vec![],
            ),
        ];
        for (name, p, pods, want) in cases {
            let results = filter_all(&p, &cluster(&pods));
            let fits: Vec<&str> = results
                .iter()
                .filter(|r| r.1.is_success())
                .map(|r| r.0.as_str())
                .collect();
            assert_eq!(fits, want, "{name}");
            for (n, status) in results.iter().filter(|r| !r.1.is_success()) {
                let (code, reason) = if n == "nozone" {
                    (
                        Code::UnschedulableAndUnresolvable,
                        REASON_NODE_LABEL_NOT_MATCH,
                    )
                } else {
                    (Code::Unschedulable, REASON_CONSTRAINTS_NOT_MATCH)
                };
                assert_eq!(status.code, code, "{name}: {n}");
                assert_eq!(status.reasons, vec![reason.to_string()], "{name}: {n}");
            }
        }
    }

    #[test]
    fn node_inclusion_policies_decide_which_domains_count() {
        let web = json!({"app": "web"});
        // a and b hold one each, c none; c1 lacks disk=ssd (which the pod requires) and is
        // tainted, so whether zone c counts (its 0 as the minimum) depends on the policies.
        let pods = vec![("a1", web.clone()), ("b1", web.clone())];
        let with = |policy: Value, taints: Value| {
            pod(
                "in",
                web.clone(),
                json!({"containers": [], "nodeSelector": {"disk": "ssd"},
                    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": LABEL_ZONE,
                        "whenUnsatisfiable": "DoNotSchedule", "nodeAffinityPolicy": policy,
                        "nodeTaintsPolicy": taints, "labelSelector": {"matchLabels": web}}]}),
            )
        };
        for (name, p, want) in [
            // c is out: min is 1, so a and b (1 + 1 - 1 = 1) fit.
            (
                "affinity honored",
                with(json!("Honor"), json!(null)),
                vec!["a1", "a2", "b1", "c1"],
            ),
            // c counts with 0: a and b are at skew 2.
            (
                "affinity ignored",
                with(json!("Ignore"), json!(null)),
                vec!["c1"],
            ),
            // c is tainted: with taints honored it is out again (affinity ignored).
            (
                "taints honored",
                with(json!("Ignore"), json!("Honor")),
                vec!["a1", "a2", "b1", "c1"],
            ),
        ] {
            let results = filter_all(&p, &cluster(&pods));
            let fits: Vec<&str> = results
                .iter()
                .filter(|r| r.1.is_success())
                .map(|r| r.0.as_str())
                .collect();
            assert_eq!(fits, want, "{name}");
        }
    }

    fn scores(p: &PodInfo, nodes: &[NodeInfo]) -> Option<Vec<(String, i64)>> {
        let s = testing::scores(&PodTopologySpread, p, nodes)?;
        Some(
            s.into_iter()
                .map(|s| (nodes[s.index].name.clone(), s.score))
                .collect(),
        )
    }

    #[test]
    fn soft_constraints_prefer_emptier_domains() {
        let web = json!({"app": "web"});
        let p = incoming(json!([spread(
            1,
            LABEL_ZONE,
            "ScheduleAnyway",
            web.clone()
        )]));
        // a: 2, b: 1, c: 0. weight ln(3 + 2); raw a 3.2→3, b 1.6→2, c 0; nozone ignored.
        let got = scores(
            &p,
            &cluster(&[
                ("a1", web.clone()),
                ("a2", web.clone()),
                ("b1", web.clone()),
            ]),
        )
        .expect("scored");
        let want: Vec<(String, i64)> =
            [("a1", 0), ("a2", 0), ("b1", 33), ("c1", 100), ("nozone", 0)]
                .into_iter()
                .map(|(n, s)| (n.to_string(), s))
                .collect();
        assert_eq!(got, want);
        // Nothing matches anywhere: all (counted) nodes score the maximum.
        let got = scores(&p, &cluster(&[])).expect("scored");
        let values: Vec<i64> = got.iter().map(|x| x.1).collect();
        assert_eq!(values, vec![100, 100, 100, 100, 0]);
    }

    #[test]
    fn system_defaults_spread_pods_of_the_same_owner() {
        let owned = |name: &str, owner: &str, node_name: Option<&str>| {
            let mut v = json!({
                "metadata": {"name": name, "namespace": "default", "uid": name,
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                        "name": owner, "uid": owner, "controller": true}]},
                "spec": {"containers": []},
            });
            if let Some(n) = node_name {
                v["spec"]["nodeName"] = json!(n);
            }
            PodInfo::new(Arc::new(serde_json::from_value::<Pod>(v).unwrap()))
        };
        let mut nodes = cluster(&[]);
        for (name, owner, n) in [
            ("r1", "rs", "a1"),
            ("r2", "rs", "a2"),
            ("o1", "other", "b1"),
        ] {
            let p = Arc::new(owned(name, owner, Some(n)));
            nodes.iter_mut().find(|x| x.name == n).unwrap().add_pod(p);
        }
        let p = owned("new", "rs", None);
        let got = scores(&p, &nodes).expect("scored");
        let by_name: HashMap<String, i64> = got.into_iter().collect();
        // Zone a and hosts a1, a2 hold replicas; b1 only a pod of another owner.
        assert!(by_name["b1"] > by_name["a1"], "{by_name:?}");
        assert!(by_name["c1"] >= by_name["b1"], "{by_name:?}");
        // Nodes without a zone are still scored by hostname under the defaults.
        assert!(by_name["nozone"] > by_name["a1"], "{by_name:?}");
        assert_eq!(by_name["a1"], by_name["a2"]);

        // A bare pod (no controller) has no default constraints.
        let bare = pod("bare", json!({}), json!({"containers": []}));
        assert!(scores(&bare, &nodes).is_none());
        // Defaults never filter.
        let status = PodTopologySpread.pre_filter(
            &mut CycleState::new(),
            &p,
            &Snapshot::new(nodes.into_iter().map(Arc::new).collect()),
        );
        assert_eq!(status.code, Code::Skip);
    }
}
