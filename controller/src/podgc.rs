//! kube-controller-manager's pod garbage collector: force-deletes the pods nothing else will
//! finish — pods bound to a node that no longer exists (after a quarantine, and only once a
//! fresh GET confirms the node is gone, since the cache may lag), pods being deleted that were
//! never scheduled (no kubelet will confirm them), and, beyond `terminated_pod_gc_threshold`,
//! the oldest terminated pods. An orphaned pod is first marked Failed with the
//! `DisruptionTarget` condition (reason `DeletionByPodGC`), as upstream does.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::informers::NodeInformers;
use crate::manager::ControllerError;

/// kube-controller-manager's name for it (`--controllers`).
pub const NAME: &str = "pod-garbage-collector-controller";

/// kube-controller-manager's pod GC settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodGcConfig {
    /// How often to look (upstream's `gcCheckPeriod`, 20 s).
    pub period: Duration,
    /// How long a pod's node must be missing before the pod goes (upstream's
    /// `quarantineTime`, 40 s).
    pub quarantine: Duration,
    /// `--terminated-pod-gc-threshold`: terminated pods kept before the oldest go (0: no limit).
    pub terminated_pod_gc_threshold: usize,
}

impl Default for PodGcConfig {
    fn default() -> Self {
        PodGcConfig {
            period: Duration::from_secs(20),
            quarantine: Duration::from_secs(40),
            terminated_pod_gc_threshold: 12_500,
        }
    }
}

/// Runs the collector on `informers` until they stop.
pub async fn run(
    client: Client,
    config: PodGcConfig,
    informers: NodeInformers,
) -> Result<(), ControllerError> {
    informers.wait_until_ready().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    // Node name → when this collector first saw it missing.
    let mut missing_since: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(config.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let pods = informers.pods.state();
        gc_terminated(&client, &pods, config.terminated_pod_gc_threshold).await;

        let now = Instant::now();
        let mut orphans: HashMap<String, Vec<&Arc<Pod>>> = HashMap::new();
        for pod in &pods {
            if let Some(node) = node_of(pod)
                && informers.nodes.get(&ObjectRef::new(node)).is_none()
            {
                orphans.entry(node.to_string()).or_default().push(pod);
            }
        }
        missing_since.retain(|node, _| orphans.contains_key(node));
        for (node, pods) in orphans {
            let since = *missing_since.entry(node.clone()).or_insert(now);
            if now.saturating_duration_since(since) < config.quarantine {
                continue;
            }
            match nodes.get_opt(&node).await {
                Ok(None) => {}
                // There after all (the cache is behind).
                Ok(Some(_)) => continue,
                Err(e) => {
                    tracing::warn!(controller = NAME, node = %node, error = %e, "checking a node");
                    continue;
                }
            }
            for pod in pods {
                tracing::info!(controller = NAME, pod = %key(pod), node = %node,
                    "deleting a pod whose node no longer exists");
                let condition = ("DeletionByPodGC", "PodGC: node no longer exists");
                force_delete(&client, pod, Some(condition)).await;
            }
        }

        for pod in &pods {
            if pod.metadata.deletion_timestamp.is_some() && node_of(pod).is_none() {
                tracing::info!(controller = NAME, pod = %key(pod),
                    "deleting an unscheduled pod that is terminating");
                force_delete(&client, pod, None).await;
            }
        }
    }
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

fn is_terminated(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Upstream's `gcTerminated`: the oldest terminated pods beyond the threshold.
async fn gc_terminated(client: &Client, pods: &[Arc<Pod>], threshold: usize) {
    if threshold == 0 {
        return;
    }
    let mut terminated: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| is_terminated(p) && p.metadata.deletion_timestamp.is_none())
        .collect();
    let Some(excess) = terminated.len().checked_sub(threshold).filter(|n| *n > 0) else {
        return;
    };
    terminated.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
            .then_with(|| key(a).cmp(&key(b)))
    });
    tracing::info!(
        controller = NAME,
        excess,
        threshold,
        "deleting the oldest terminated pods"
    );
    for pod in terminated.into_iter().take(excess) {
        force_delete(client, pod, None).await;
    }
}

/// Marks the pod (a non-terminal one becomes Failed) with the `DisruptionTarget` condition
/// when given one, then deletes it at once. Errors are logged: the next round retries.
async fn force_delete(client: &Client, pod: &Pod, condition: Option<(&str, &str)>) {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let api: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    if let Some((reason, message)) = condition {
        let mut status = json!({"conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": reason,
            "message": message,
            "lastTransitionTime": Time(Timestamp::now()),
        }]});
        if !is_terminated(pod) {
            status["phase"] = json!("Failed");
        }
        let params = PatchParams {
            field_manager: Some(NAME.into()),
            ..Default::default()
        };
        if let Err(e) = api
            .patch_status(&name, &params, &Patch::Strategic(json!({"status": status})))
            .await
        {
            tracing::warn!(controller = NAME, pod = %key(pod), error = %e, "marking a pod Failed");
        }
    }
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: pod.uid().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
        Err(e) => tracing::warn!(controller = NAME, pod = %key(pod), error = %e, "deleting a pod"),
    }
}
