//! `skiffctl cordon|uncordon|drain NODE`: mark a node (un)schedulable; drain cordons it and
//! then evicts its pods (through `pods/eviction` when the server serves it, else by deleting
//! them), refusing, as kubectl's drain does, DaemonSet pods (`--ignore-daemonsets`), pods
//! no controller would recreate (`--force`) and pods with emptyDir data
//! (`--delete-emptydir-data`); mirror pods are left alone.

use std::time::Duration;

use clap::Args;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams};

use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::{Session, errln, outln};

const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[arg(required = true)]
    pub nodes: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    #[arg(required = true)]
    pub nodes: Vec<String>,
    /// Go on although DaemonSet-managed pods are there (they are left running).
    #[arg(long)]
    pub ignore_daemonsets: bool,
    /// Go on although pods use emptyDir (their data is lost).
    #[arg(long)]
    pub delete_emptydir_data: bool,
    /// Go on although pods have no controller (they are not recreated anywhere).
    #[arg(long)]
    pub force: bool,
    /// Seconds each pod gets to terminate (-1: its own).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub grace_period: i64,
    /// How long to wait for the pods to go (0: as long as it takes).
    #[arg(long, default_value = "0s")]
    pub timeout: String,
}

async fn set_unschedulable(api: &Api<Node>, name: &str, unschedulable: bool) -> Result<String> {
    let node = api.get(name).await?;
    let current = node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
    let word = if unschedulable {
        "cordoned"
    } else {
        "uncordoned"
    };
    if current == unschedulable {
        return Ok(format!("node/{name} already {word}"));
    }
    let patch = serde_json::json!({"spec": {"unschedulable": unschedulable.then_some(true)}});
    api.patch(
        name,
        &PatchParams {
            field_manager: Some("skiffctl-cordon".into()),
            ..PatchParams::default()
        },
        &Patch::Strategic(&patch),
    )
    .await?;
    Ok(format!("node/{name} {word}"))
}

pub async fn cordon(session: &Session, args: NodeArgs, unschedulable: bool) -> Result<()> {
    let api: Api<Node> = Api::all(session.client.clone());
    for name in &args.nodes {
        outln(set_unschedulable(&api, name, unschedulable).await?)?;
    }
    Ok(())
}

/// What drain does with a pod.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Evict,
    /// Evicted, with kubectl's warning for this kind of pod (`--force`,
    /// `--delete-emptydir-data`).
    EvictWithWarning(&'static str),
    /// Left alone, with a warning (DaemonSet pods with --ignore-daemonsets).
    IgnoreWithWarning,
    /// Left alone silently (mirror pods).
    Skip,
    /// Stops the drain: kubectl's message prefix for this kind of pod.
    Refuse(&'static str),
}

/// kubectl drain's filters, in its order.
pub fn verdict(pod: &Pod, args: &DrainArgs) -> Verdict {
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    let controller = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true));
    if pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
    {
        return Verdict::Skip;
    }
    if controller.is_some_and(|c| c.kind == "DaemonSet") && !finished {
        return if args.ignore_daemonsets {
            Verdict::IgnoreWithWarning
        } else {
            Verdict::Refuse(
                "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)",
            )
        };
    }
    if controller.is_none() && !finished {
        if !args.force {
            return Verdict::Refuse(
                "cannot delete Pods that declare no controller (use --force to override)",
            );
        }
        return Verdict::EvictWithWarning("deleting Pods that declare no controller");
    }
    let has_empty_dir = pod
        .spec
        .as_ref()
        .is_some_and(|s| s.volumes.iter().flatten().any(|v| v.empty_dir.is_some()));
    if has_empty_dir && !finished {
        if !args.delete_emptydir_data {
            return Verdict::Refuse(
                "cannot delete Pods with local storage (use --delete-emptydir-data to override)",
            );
        }
        return Verdict::EvictWithWarning("deleting Pods with local storage");
    }
    Verdict::Evict
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

pub async fn drain(session: &Session, args: DrainArgs) -> Result<()> {
    let nodes: Api<Node> = Api::all(session.client.clone());
    let timeout = crate::delete::parse_duration(&args.timeout)?;
    let catalog = session.catalog().await?;
    let evictions = catalog.has_subresource("", "pods", "eviction");
    for name in &args.nodes {
        outln(set_unschedulable(&nodes, name, true).await?)?;
        let all_pods: Api<Pod> = Api::all(session.client.clone());
        let on_node = all_pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
            .await?
            .items;
        let mut refusals: Vec<(&'static str, Vec<String>)> = Vec::new();
        let mut warnings: Vec<(&'static str, Vec<String>)> = Vec::new();
        let mut warn =
            |what: &'static str, pod: &Pod| match warnings.iter_mut().find(|(w, _)| *w == what) {
                Some((_, pods)) => pods.push(pod_key(pod)),
                None => warnings.push((what, vec![pod_key(pod)])),
            };
        let mut to_evict = Vec::new();
        for pod in on_node {
            match verdict(&pod, &args) {
                Verdict::Evict => to_evict.push(pod),
                Verdict::EvictWithWarning(what) => {
                    warn(what, &pod);
                    to_evict.push(pod);
                }
                Verdict::IgnoreWithWarning => warn("ignoring DaemonSet-managed Pods", &pod),
                Verdict::Skip => {}
                Verdict::Refuse(why) => match refusals.iter_mut().find(|(w, _)| *w == why) {
                    Some((_, pods)) => pods.push(pod_key(&pod)),
                    None => refusals.push((why, vec![pod_key(&pod)])),
                },
            }
        }
        if !refusals.is_empty() {
            let reasons: Vec<String> = refusals
                .iter()
                .map(|(why, pods)| format!("{why}: {}", pods.join(", ")))
                .collect();
            errln(format!(
                "error: unable to drain node {name:?} due to error: {}, continuing command...",
                reasons.join(", ")
            ));
            errln(format!(
                "There are pending nodes to be drained:\n {name}\n{}",
                reasons.join("\n")
            ));
            return Err(Error::AlreadyReported);
        }
        if !warnings.is_empty() {
            // kubectl's one line: `Warning: what: pods; what: pods`.
            let text: Vec<String> = warnings
                .iter()
                .map(|(what, pods)| format!("{what}: {}", pods.join(", ")))
                .collect();
            errln(format!("Warning: {}", text.join("; ")));
        }
        evict_all(session, &to_evict, &args, evictions, timeout).await?;
        outln(format!("node/{name} drained"))?;
    }
    Ok(())
}

async fn evict_all(
    session: &Session,
    pods: &[Pod],
    args: &DrainArgs,
    evictions: bool,
    timeout: Option<Duration>,
) -> Result<()> {
    let grace = u32::try_from(args.grace_period).ok();
    let progress = Progress::new(Some(pods.len() as u64));
    for pod in pods {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(session.client.clone(), namespace);
        progress.line(&format!("evicting pod {namespace}/{name}"))?;
        let delete = DeleteParams {
            grace_period_seconds: grace,
            ..DeleteParams::default()
        };
        let result = if evictions {
            api.evict(
                name,
                &EvictParams {
                    delete_options: Some(delete),
                    ..EvictParams::default()
                },
            )
            .await
            .map(|_| ())
        } else {
            api.delete(name, &delete).await.map(|_| ())
        };
        match result.map_err(Error::from) {
            Ok(()) => {}
            Err(err) if err.is_not_found() => {}
            Err(err) => {
                progress.finish();
                return Err(err);
            }
        }
    }
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    for pod in pods {
        let namespace = pod.metadata.namespace.as_deref().unwrap_or("default");
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(session.client.clone(), namespace);
        progress.message(&format!("waiting for {namespace}/{name}"));
        loop {
            match api.get_opt(name).await? {
                Some(current) if current.metadata.uid == pod.metadata.uid => {}
                _ => break,
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                progress.finish();
                return Err(Error::Other(format!(
                    "drain did not complete within {}: pod {namespace}/{name} is still there",
                    args.timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        progress.step();
        progress.line(&format!("pod/{name} evicted"))?;
    }
    progress.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, PodSpec, Volume};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn args(ignore_daemonsets: bool, delete_emptydir_data: bool, force: bool) -> DrainArgs {
        DrainArgs {
            nodes: vec!["n".into()],
            ignore_daemonsets,
            delete_emptydir_data,
            force,
            grace_period: -1,
            timeout: "0s".into(),
        }
    }

    fn owned_by(kind: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.owner_references = Some(vec![OwnerReference {
            kind: kind.into(),
            controller: Some(true),
            ..OwnerReference::default()
        }]);
        pod
    }

    #[test]
    fn drain_filters() {
        let daemon = owned_by("DaemonSet");
        assert!(matches!(
            verdict(&daemon, &args(false, false, false)),
            Verdict::Refuse(_)
        ));
        assert_eq!(
            verdict(&daemon, &args(true, false, false)),
            Verdict::IgnoreWithWarning
        );

        let bare = Pod::default();
        assert!(matches!(
            verdict(&bare, &args(true, true, false)),
            Verdict::Refuse(_)
        ));
        assert_eq!(
            verdict(&bare, &args(false, false, true)),
            Verdict::EvictWithWarning("deleting Pods that declare no controller")
        );

        let mut scratch = owned_by("ReplicaSet");
        scratch.spec = Some(PodSpec {
            volumes: Some(vec![Volume {
                name: "tmp".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            }]),
            ..PodSpec::default()
        });
        assert!(matches!(
            verdict(&scratch, &args(false, false, false)),
            Verdict::Refuse(_)
        ));
        assert_eq!(
            verdict(&scratch, &args(false, true, false)),
            Verdict::EvictWithWarning("deleting Pods with local storage")
        );
        assert_eq!(
            verdict(&owned_by("ReplicaSet"), &args(false, false, false)),
            Verdict::Evict
        );

        let mut mirror = Pod::default();
        mirror.metadata.annotations =
            Some([(MIRROR_ANNOTATION.to_string(), "x".to_string())].into());
        assert_eq!(verdict(&mirror, &args(false, false, false)), Verdict::Skip);
    }
}
