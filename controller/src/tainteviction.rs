//! kube-controller-manager's taint eviction controller (the "taint manager"): a pod on a node
//! with NoExecute taints goes at once if it does not tolerate them all, after the least
//! `tolerationSeconds` of the tolerations it uses if it does, and never if those tolerate
//! forever. The clock starts when the controller first sees the pod so placed, as upstream's
//! (its `CreatedAt`); a taint removed, or tolerated for ever, before then cancels the eviction.
//!
//! An evicted pod gets the `DisruptionTarget` condition (reason `DeletionByTaintManager`)
//! and a `TaintManagerEviction` Event, then is deleted with its own grace period.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::events::{EventRecorder, EventType};
use crate::informers::NodeInformers;
use crate::manager::ControllerError;
use crate::taints::{NO_EXECUTE, toleration_time};

/// kube-controller-manager's name for it (`--controllers`).
pub const NAME: &str = "taint-eviction-controller";

/// Changes arriving within this long are handled in one pass.
const COALESCE: Duration = Duration::from_millis(50);

/// When to try again after a failed eviction.
const RETRY: Duration = Duration::from_secs(1);

/// A pod whose eviction is scheduled.
#[derive(Debug, Clone)]
struct Scheduled {
    namespace: String,
    name: String,
    due: Instant,
    /// The pod does not tolerate some taint (rather than tolerating them for a while).
    untolerated: bool,
}

/// What one pass decided.
#[derive(Debug, Default)]
struct Plan {
    /// Pods to evict now (by uid).
    due: Vec<String>,
    /// Scheduled evictions called off: (namespace, name).
    cancelled: Vec<(String, String)>,
}

/// Runs the controller on `informers` until they stop.
pub async fn run(client: Client, informers: NodeInformers) -> Result<(), ControllerError> {
    informers.wait_until_ready().await?;
    let mut changes = informers.subscribe();
    let recorder = EventRecorder::new(client.clone(), "taint-eviction-controller");
    let mut scheduled: HashMap<String, Scheduled> = HashMap::new();
    loop {
        let now = Instant::now();
        let pods = informers.pods.state();
        let plan = plan(&informers, &pods, &mut scheduled, now);
        for (namespace, name) in plan.cancelled {
            tracing::info!(controller = NAME, pod = %format!("{namespace}/{name}"), "eviction cancelled");
            if let Some(pod) = pods
                .iter()
                .find(|p| p.namespace().as_deref() == Some(&namespace) && p.name_any() == name)
            {
                recorder
                    .record(
                        &**pod,
                        EventType::Normal,
                        "TaintManagerEviction",
                        format!("Cancelling deletion of Pod {namespace}/{name}"),
                    )
                    .await;
            }
        }
        for uid in plan.due {
            let Some(pod) = pods.iter().find(|p| p.uid().as_deref() == Some(&uid)) else {
                scheduled.remove(&uid);
                continue;
            };
            match evict(&client, &recorder, pod).await {
                Ok(()) => {
                    scheduled.remove(&uid);
                }
                Err(e) => {
                    tracing::warn!(controller = NAME, error = %e, "eviction failed; will retry");
                    if let Some(s) = scheduled.get_mut(&uid) {
                        s.due = Instant::now() + RETRY;
                    }
                }
            }
        }
        let next = scheduled.values().map(|s| s.due).min();
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Err(ControllerError::Stopped {
                        controller: NAME,
                        reason: "the node informers stopped".into(),
                    });
                }
                tokio::time::sleep(COALESCE).await;
            }
            () = async {
                match next {
                    Some(due) => tokio::time::sleep_until(due.into()).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

/// Upstream's `processPodOnNode` for every pod on a node with NoExecute taints: updates
/// `scheduled` and returns what is due now and what was called off.
fn plan(
    informers: &NodeInformers,
    pods: &[Arc<Pod>],
    scheduled: &mut HashMap<String, Scheduled>,
    now: Instant,
) -> Plan {
    let tainted: HashMap<String, Vec<Taint>> = informers
        .nodes
        .state()
        .iter()
        .filter_map(|node| {
            let taints: Vec<Taint> = node
                .spec
                .as_ref()?
                .taints
                .as_ref()?
                .iter()
                .filter(|t| t.effect == NO_EXECUTE)
                .cloned()
                .collect();
            (!taints.is_empty()).then(|| (node.name_any(), taints))
        })
        .collect();
    let mut plan = Plan::default();
    let mut still = HashSet::new();
    if !tainted.is_empty() {
        for pod in pods {
            let Some(taints) = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .and_then(|n| tainted.get(n))
            else {
                continue;
            };
            let Some(uid) = pod.uid() else { continue };
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let tolerations = pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.as_deref())
                .unwrap_or_default();
            let taints: Vec<&Taint> = taints.iter().collect();
            // `None`: some taint is not tolerated, the pod goes now.
            let wait = match toleration_time(tolerations, &taints) {
                None => None,
                // Tolerated for ever: nothing to do (an eviction scheduled before is cancelled).
                Some(None) => continue,
                Some(Some(seconds)) => {
                    Some(Duration::from_secs(u64::try_from(seconds).unwrap_or(0)))
                }
            };
            still.insert(uid.clone());
            let entry = scheduled.entry(uid.clone()).or_insert_with(|| {
                tracing::info!(controller = NAME,
                    pod = %format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any()),
                    after = ?wait.unwrap_or_default(), "eviction scheduled");
                Scheduled {
                    namespace: pod.namespace().unwrap_or_default(),
                    name: pod.name_any(),
                    due: now + wait.unwrap_or_default(),
                    untolerated: wait.is_none(),
                }
            });
            // As upstream, a scheduled eviction keeps its time, unless a taint the pod does not
            // tolerate came since: then it goes now.
            if wait.is_none() && !entry.untolerated {
                entry.untolerated = true;
                entry.due = now;
            }
            if entry.due <= now {
                plan.due.push(uid);
            }
        }
    }
    scheduled.retain(|uid, s| {
        let keep = still.contains(uid);
        if !keep {
            plan.cancelled.push((s.namespace.clone(), s.name.clone()));
        }
        keep
    });
    plan
}

#[derive(Debug, thiserror::Error)]
enum EvictError {
    #[error("marking pod {pod} as a disruption target: {source}")]
    Condition { pod: String, source: kube::Error },
    #[error("deleting pod {pod}: {source}")]
    Delete { pod: String, source: kube::Error },
}

/// Upstream's `addConditionAndDeletePod`.
async fn evict(client: &Client, recorder: &EventRecorder, pod: &Pod) -> Result<(), EvictError> {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let full = format!("{namespace}/{name}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    recorder
        .record(
            pod,
            EventType::Normal,
            "TaintManagerEviction",
            format!("Marking for deletion Pod {full}"),
        )
        .await;
    let condition = json!({"status": {"conditions": [{
        "type": "DisruptionTarget",
        "status": "True",
        "reason": "DeletionByTaintManager",
        "message": "Taint manager: deleting due to NoExecute taint",
        "lastTransitionTime": Time(Timestamp::now()),
    }]}});
    let params = PatchParams {
        field_manager: Some(NAME.into()),
        ..Default::default()
    };
    match pods
        .patch_status(&name, &params, &Patch::Strategic(condition))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
        Err(source) => {
            return Err(EvictError::Condition { pod: full, source });
        }
    }
    let delete = DeleteParams {
        preconditions: pod.uid().map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..Default::default()
    };
    match pods.delete(&name, &delete).await {
        Ok(_) => {
            tracing::info!(controller = NAME, pod = %full, "pod evicted");
            Ok(())
        }
        // Gone already, or replaced by a namesake (uid precondition).
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
        Err(source) => Err(EvictError::Delete { pod: full, source }),
    }
}
