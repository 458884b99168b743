//! What several plugins share: upstream's `DefaultNormalizeScore`, the pod's required node
//! affinity (`nodeSelector` AND `requiredDuringScheduling…` node selector terms, as
//! component-helpers' `GetRequiredNodeAffinity`), label selector conversion, taint toleration
//! (TaintToleration, and PodTopologySpread's `nodeTaintsPolicy: Honor`) and reading a plugin's
//! cycle state.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use skiff_apimachinery::labels::{Operator, Requirement, Selector};

use crate::framework::{CycleState, NodeScore, Status};

/// Upstream's `helper.DefaultNormalizeScore`: scales scores to `0..=max` by the highest one
/// (all stay 0 when the highest is 0, or become `max` when `reverse`); `reverse` flips them.
pub fn default_normalize_score(max: i64, reverse: bool, scores: &mut [NodeScore]) {
    let highest = scores.iter().map(|s| s.score).max().unwrap_or(0).max(0);
    if highest == 0 {
        if reverse {
            for s in scores.iter_mut() {
                s.score = max;
            }
        }
        return;
    }
    for s in scores.iter_mut() {
        let scaled = max * s.score / highest;
        s.score = if reverse { max - scaled } else { scaled };
    }
}

/// A metav1.LabelSelector as a [`Selector`] (upstream's `LabelSelectorAsSelector`: `None`
/// selects nothing, `{}` everything), with `extra` requirements (`matchLabelKeys` and the
/// like) added when the selector is present.
pub fn label_selector(
    selector: Option<&LabelSelector>,
    extra: &[(String, &'static str, String)],
) -> Result<Selector, String> {
    let mut value = match selector {
        None => serde_json::Value::Null,
        Some(s) => serde_json::to_value(s).map_err(|e| e.to_string())?,
    };
    if !extra.is_empty()
        && let Some(obj) = value.as_object_mut()
    {
        let exprs = obj
            .entry("matchExpressions")
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if exprs.is_null() {
            *exprs = serde_json::Value::Array(Vec::new());
        }
        if let Some(list) = exprs.as_array_mut() {
            for (key, op, v) in extra {
                list.push(serde_json::json!({"key": key, "operator": op, "values": [v]}));
            }
        }
    }
    Selector::from_label_selector_value(&value).map_err(|e| e.to_string())
}

/// One parsed node selector term: its label requirements and `metadata.name` field
/// requirements, ANDed. A term that failed to parse matches nothing (upstream's lazy errors).
#[derive(Debug, Clone)]
pub struct ParsedNodeSelectorTerm {
    labels: Vec<Requirement>,
    /// `(key, equal, value)`: In is `key == value`, NotIn `key != value`.
    fields: Vec<(String, bool, String)>,
    pub errors: Vec<String>,
}

impl ParsedNodeSelectorTerm {
    /// `None` for an empty term (no expressions, no fields), which selects nothing.
    pub fn parse(term: &NodeSelectorTerm) -> Option<ParsedNodeSelectorTerm> {
        let exprs = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        if exprs.is_empty() && fields.is_empty() {
            return None;
        }
        let mut parsed = ParsedNodeSelectorTerm {
            labels: Vec::new(),
            fields: Vec::new(),
            errors: Vec::new(),
        };
        for (i, r) in exprs.iter().enumerate() {
            match label_requirement(r) {
                Ok(req) => parsed.labels.push(req),
                Err(e) => parsed.errors.push(format!("matchExpressions[{i}]: {e}")),
            }
        }
        for (i, r) in fields.iter().enumerate() {
            let values = r.values.as_deref().unwrap_or_default();
            let equal = match r.operator.as_str() {
                "In" => true,
                "NotIn" => false,
                other => {
                    parsed.errors.push(format!(
                        "matchFields[{i}].operator: Unsupported value: {other:?}: supported \
                         values: \"In\", \"NotIn\""
                    ));
                    continue;
                }
            };
            match values {
                [v] => parsed.fields.push((r.key.clone(), equal, v.clone())),
                _ => parsed
                    .errors
                    .push(format!("matchFields[{i}].values: must have one element")),
            }
        }
        Some(parsed)
    }

    pub fn matches(&self, node: &Node) -> bool {
        if !self.errors.is_empty() {
            return false;
        }
        let labels = node_labels(node);
        if !self.labels.iter().all(|r| r.matches(labels)) {
            return false;
        }
        // Nodes have one field, `metadata.name`; a nameless node skips field matching.
        let name = node.metadata.name.as_deref().unwrap_or_default();
        if name.is_empty() {
            return true;
        }
        self.fields.iter().all(|(key, equal, value)| {
            let actual = if key == "metadata.name" { name } else { "" };
            (actual == value) == *equal
        })
    }
}

fn label_requirement(r: &NodeSelectorRequirement) -> Result<Requirement, String> {
    let op = match r.operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::GreaterThan,
        "Lt" => Operator::LessThan,
        other => return Err(format!("operator: Unsupported value: {other:?}")),
    };
    Requirement::new(r.key.clone(), op, r.values.clone().unwrap_or_default())
        .map_err(|e| e.to_string())
}

pub fn node_labels(node: &Node) -> &BTreeMap<String, String> {
    static EMPTY: BTreeMap<String, String> = BTreeMap::new();
    node.metadata.labels.as_ref().unwrap_or(&EMPTY)
}

/// A pod's `spec.nodeSelector` AND its required node affinity terms (ORed).
#[derive(Debug, Clone, Default)]
pub struct RequiredNodeAffinity {
    node_selector: Option<BTreeMap<String, String>>,
    /// `Some` when the pod has `requiredDuringSchedulingIgnoredDuringExecution` (an empty
    /// list of terms then matches nothing).
    terms: Option<Vec<ParsedNodeSelectorTerm>>,
}

impl RequiredNodeAffinity {
    pub fn from_pod(pod: &Pod) -> RequiredNodeAffinity {
        let spec = pod.spec.as_ref();
        let node_selector = spec
            .and_then(|s| s.node_selector.clone())
            .filter(|s| !s.is_empty());
        let terms = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|ns| {
                ns.node_selector_terms
                    .iter()
                    .filter_map(ParsedNodeSelectorTerm::parse)
                    .collect()
            });
        RequiredNodeAffinity {
            node_selector,
            terms,
        }
    }

    pub fn matches(&self, node: &Node) -> bool {
        let labels = node_labels(node);
        if let Some(sel) = &self.node_selector
            && !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
        {
            return false;
        }
        match &self.terms {
            None => true,
            Some(terms) => terms.iter().any(|t| t.matches(node)),
        }
    }
}

/// Whether `toleration` tolerates `taint`, as upstream's `Toleration.ToleratesTaint`: an empty
/// effect matches every effect, an empty key matches every key (validation allows that only
/// with `Exists`), `Equal` (or no operator) compares values, `Exists` matches any value. Other
/// operators (the feature-gated `Lt`/`Gt`, off by default upstream) match nothing.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        "Exists" => true,
        _ => false,
    }
}

/// The first of `taints` (in node order) that passes `applies` and no toleration tolerates.
pub fn find_untolerated<'a>(
    taints: impl IntoIterator<Item = &'a Taint>,
    tolerations: &[Toleration],
    applies: impl Fn(&Taint) -> bool,
) -> Option<&'a Taint> {
    taints
        .into_iter()
        .filter(|t| applies(t))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

/// The pod's `spec.tolerations`.
pub fn pod_tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

/// The node's `spec.taints`.
pub fn node_taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[])
}

/// Whether the node has a NoSchedule or NoExecute taint the pod does not tolerate.
pub fn has_untolerated_schedule_taint(node: &Node, pod: &Pod) -> bool {
    find_untolerated(node_taints(node), pod_tolerations(pod), |t| {
        t.effect == "NoSchedule" || t.effect == "NoExecute"
    })
    .is_some()
}

/// What a plugin wrote to the cycle state under `key`, or an error status naming the key.
pub fn read_state<'a, T: std::any::Any + Send + Sync>(
    state: &'a CycleState,
    key: &'static str,
) -> Result<&'a T, Status> {
    state
        .read::<T>(key)
        .ok_or_else(|| Status::error(format!("reading {key:?} from cycle state")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::framework::MAX_NODE_SCORE;

    fn scores(v: &[i64]) -> Vec<NodeScore> {
        v.iter()
            .enumerate()
            .map(|(index, &score)| NodeScore { index, score })
            .collect()
    }

    #[test]
    fn default_normalize_scales_by_the_highest() {
        for (input, reverse, want) in [
            (vec![0, 5, 10], false, vec![0, 50, 100]),
            (vec![0, 5, 10], true, vec![100, 50, 0]),
            (vec![0, 0], false, vec![0, 0]),
            (vec![0, 0], true, vec![100, 100]),
            (vec![1, 3], false, vec![33, 100]),
        ] {
            let mut s = scores(&input);
            default_normalize_score(100, reverse, &mut s);
            let got: Vec<i64> = s.iter().map(|s| s.score).collect();
            assert_eq!(got, want, "{input:?} reverse={reverse}");
        }
    }

    #[test]
    fn tolerations_match_taints_as_upstream() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"},
            "spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]},
        }))
        .unwrap();
        for (tolerations, untolerated) in [
            (serde_json::json!([]), true),
            (
                serde_json::json!([{"key": "k", "operator": "Equal", "value": "v"}]),
                false,
            ),
            (serde_json::json!([{"key": "k", "value": "w"}]), true),
            (serde_json::json!([{"operator": "Exists"}]), false),
            (
                serde_json::json!([{"key": "k", "operator": "Exists", "effect": "NoExecute"}]),
                true,
            ),
        ] {
            let pod: Pod = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p"},
                "spec": {"containers": [], "tolerations": tolerations},
            }))
            .unwrap();
            assert_eq!(
                has_untolerated_schedule_taint(&node, &pod),
                untolerated,
                "{tolerations}"
            );
        }
    }

    #[test]
    fn toleration_matching_follows_upstream() {
        let taint: Taint = serde_json::from_value(json!(
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}))
        .unwrap();
        let cases = [
            (
                json!({"key": "dedicated", "operator": "Equal", "value": "gpu"}),
                true,
            ),
            (json!({"key": "dedicated", "value": "gpu"}), true),
            (json!({"key": "dedicated", "value": "cpu"}), false),
            (json!({"key": "dedicated", "operator": "Exists"}), true),
            (json!({"key": "other", "operator": "Exists"}), false),
            (json!({"operator": "Exists"}), true),
            (json!({"operator": "Exists", "effect": "NoExecute"}), false),
            (
                json!({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}),
                true,
            ),
            (
                json!({"key": "dedicated", "value": "gpu", "effect": "PreferNoSchedule"}),
                false,
            ),
            (
                json!({"key": "dedicated", "operator": "Lt", "value": "gpu"}),
                false,
            ),
        ];
        for (tol, want) in cases {
            let t: Toleration = serde_json::from_value(tol.clone()).unwrap();
            assert_eq!(tolerates(&t, &taint), want, "{tol}");
        }
    }

    #[test]
    fn default_normalize_score_matches_upstream() {
        let cases: [(&[i64], bool, &[i64]); 5] = [
            (&[0, 0, 0], true, &[100, 100, 100]),
            (&[0, 0, 0], false, &[0, 0, 0]),
            (&[1, 2, 3], false, &[33, 66, 100]),
            (&[1, 2, 3], true, &[67, 34, 0]),
            (&[0, 5, 10], true, &[100, 50, 0]),
        ];
        for (raw, reverse, want) in cases {
            let mut scores: Vec<NodeScore> = raw
                .iter()
                .enumerate()
                .map(|(index, &score)| NodeScore { index, score })
                .collect();
            default_normalize_score(MAX_NODE_SCORE, reverse, &mut scores);
            let got: Vec<i64> = scores.iter().map(|s| s.score).collect();
            assert_eq!(got, want, "{raw:?} reverse={reverse}");
        }
    }
}
