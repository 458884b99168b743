//! `skiffctl logs POD|TYPE/NAME [-c C] [-f] [--previous] [--tail N] [--since D]`: a
//! container's log through `pods/log`, streamed as it comes. Without `-c`, a pod's
//! `kubectl.kubernetes.io/default-container` or first container, as kubectl picks it; for a
//! Deployment, ReplicaSet or Job, the first of its pods.

use clap::Args;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};

use crate::error::{Error, Result};
use crate::{Session, errln};

const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// POD, pod/POD, or deployment|replicaset|job/NAME.
    pub target: String,
    /// The container to read.
    #[arg(short = 'c', long)]
    pub container: Option<String>,
    /// Keep streaming new lines.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// The previous instance of the container (after a restart).
    #[arg(short = 'p', long)]
    pub previous: bool,
    /// Only the last N lines (-1: all).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub tail: i64,
    /// Only lines newer than this (e.g. 5s, 2m, 3h).
    #[arg(long)]
    pub since: Option<String>,
    /// Prefix each line with its RFC3339 timestamp.
    #[arg(long)]
    pub timestamps: bool,
}

/// The pod a logs/exec target names: `POD`, `pod/POD`, or the first pod of a workload.
pub async fn resolve_pod(session: &Session, target: &str) -> Result<Pod> {
    let pods: Api<Pod> = Api::namespaced(session.client.clone(), &session.namespace);
    let Some((kind, name)) = target.split_once('/') else {
        return Ok(pods.get(target).await?);
    };
    let catalog = session.catalog().await?;
    let info = catalog.resolve(kind)?;
    if info.api.kind == "Pod" {
        return Ok(pods.get(name).await?);
    }
    let owner = session
        .api(info, Some(&session.namespace))
        .get(name)
        .await?;
    let selector = crate::describe::selector_string(&owner.data["spec"]["selector"], false);
    if selector.is_empty() {
        return Err(Error::Other(format!(
            "cannot attach to {}: selector for {} not implemented",
            info.kind_group(),
            info.kind_group()
        )));
    }
    let mut found = pods
        .list(&ListParams::default().labels(&selector))
        .await?
        .items;
    found.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let count = found.len();
    let pod = found.into_iter().next().ok_or_else(|| {
        Error::Other(format!(
            "timed out waiting for the condition: no pods for {}/{name}",
            info.kind_group()
        ))
    })?;
    if count > 1 {
        errln(format!(
            "Found {count} pods, using pod/{}",
            pod.metadata.name.as_deref().unwrap_or_default()
        ));
    }
    Ok(pod)
}

/// The container kubectl would pick: `-c`, the default-container annotation, or the first
/// (saying so when there was a choice).
pub fn pick_container(pod: &Pod, asked: Option<&str>) -> Option<String> {
    if let Some(asked) = asked {
        return Some(asked.to_string());
    }
    if let Some(annotated) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DEFAULT_CONTAINER_ANNOTATION))
    {
        return Some(annotated.clone());
    }
    let containers: Vec<&str> = pod
        .spec
        .as_ref()
        .map(|s| s.containers.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    let first = containers.first()?.to_string();
    if containers.len() > 1 {
        errln(format!(
            "Defaulted container {first:?} out of: {}",
            containers.join(", ")
        ));
    }
    Some(first)
}

/// kubectl checks a named container against the pod before asking the server.
pub fn check_container(pod: &Pod, container: &str) -> Result<()> {
    let spec = pod.spec.as_ref();
    let known = spec.is_some_and(|s| {
        s.containers.iter().any(|c| c.name == container)
            || s.init_containers
                .iter()
                .flatten()
                .any(|c| c.name == container)
            || s.ephemeral_containers
                .iter()
                .flatten()
                .any(|c| c.name == container)
    });
    if known {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "container {container} is not valid for pod {}",
            pod.metadata.name.as_deref().unwrap_or_default()
        )))
    }
}

pub async fn run(session: &Session, args: LogsArgs) -> Result<()> {
    // kubectl's logs finds its pod through a helper that words NotFound its own way.
    let pod = resolve_pod(session, &args.target)
        .await
        .map_err(|err| match err {
            Error::Server(status) if status.code == 404 => Error::Other(format!(
                "error from server (NotFound): {} in namespace {:?}",
                status.message, session.namespace
            )),
            other => other,
        })?;
    let name = pod.metadata.name.clone().unwrap_or_default();
    if let Some(container) = &args.container {
        check_container(&pod, container)?;
    }
    let since_seconds = match &args.since {
        Some(since) => crate::delete::parse_duration(since)?.map(|d| d.as_secs().max(1) as i64),
        None => None,
    };
    let params = LogParams {
        container: pick_container(&pod, args.container.as_deref()),
        follow: args.follow,
        previous: args.previous,
        tail_lines: (args.tail >= 0).then_some(args.tail),
        since_seconds,
        timestamps: args.timestamps,
        ..LogParams::default()
    };
    let pods: Api<Pod> = Api::namespaced(session.client.clone(), &session.namespace);
    let stream = pods.log_stream(&name, &params).await?;
    futures::pin_mut!(stream);
    // Written as it arrives: a followed log is read by people and pipes.
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = futures::AsyncReadExt::read(&mut stream, &mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        crate::out_bytes(&buf[..n])?;
    }
}
