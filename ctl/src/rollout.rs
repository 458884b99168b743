//! `skiffctl rollout status|history|undo|restart` for Deployments, with kubectl's messages:
//! status is kubectl's DeploymentStatusViewer, history lists the ReplicaSets' revisions,
//! undo copies an older ReplicaSet's template back (the previous revision, or
//! `--to-revision`), restart stamps `kubectl.kubernetes.io/restartedAt` on the template.

use std::time::Duration;

use clap::{Args, Subcommand};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::{Api, ListParams, Patch, PatchParams};

use crate::error::{Error, Result};
use crate::printer;
use crate::progress::Progress;
use crate::{Session, out, outln};

const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
const CHANGE_CAUSE_ANNOTATION: &str = "kubernetes.io/change-cause";
const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub command: RolloutCommand,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Show the status of the rollout, waiting until it is done.
    Status {
        /// deployment/NAME or deployment NAME.
        #[arg(required = true)]
        args: Vec<String>,
        /// Watch until the rollout is done (false: print the status once).
        #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        watch: bool,
        /// How long to wait (e.g. 2m); 0 waits as long as it takes.
        #[arg(long, default_value = "0s")]
        timeout: String,
    },
    /// View previous rollout revisions.
    History {
        #[arg(required = true)]
        args: Vec<String>,
    },
    /// Roll back to the previous revision, or to --to-revision.
    Undo {
        #[arg(required = true)]
        args: Vec<String>,
        #[arg(long, default_value_t = 0)]
        to_revision: i64,
    },
    /// Restart the Deployment's pods with a new rollout.
    Restart {
        #[arg(required = true)]
        args: Vec<String>,
    },
}

pub async fn run(session: &Session, args: RolloutArgs) -> Result<()> {
    let (arguments, command) = match &args.command {
        RolloutCommand::Status { args, .. } => (args, "status"),
        RolloutCommand::History { args } => (args, "history"),
        RolloutCommand::Undo { args, .. } => (args, "undo"),
        RolloutCommand::Restart { args } => (args, "restart"),
    };
    let names = deployment_names(session, arguments, command).await?;
    let api: Api<Deployment> = Api::namespaced(session.client.clone(), &session.namespace);
    for name in names {
        match &args.command {
            RolloutCommand::Status { watch, timeout, .. } => {
                status(&api, &name, *watch, crate::delete::parse_duration(timeout)?).await?
            }
            RolloutCommand::History { .. } => history(session, &api, &name).await?,
            RolloutCommand::Undo { to_revision, .. } => {
                undo(session, &api, &name, *to_revision).await?
            }
            RolloutCommand::Restart { .. } => restart(&api, &name).await?,
        }
    }
    Ok(())
}

/// The Deployments named by `deployment/web` or `deployment web…` arguments.
async fn deployment_names(
    session: &Session,
    args: &[String],
    command: &str,
) -> Result<Vec<String>> {
    let catalog = session.catalog().await?;
    let targets = crate::get::targets(catalog, args)?;
    let mut names = Vec::new();
    for target in targets {
        if target.info.api.kind != "Deployment" || target.info.api.group != "apps" {
            return Err(Error::Other(format!(
                "no {command} has been implemented for {{{} {}}}: skiffctl rolls out Deployments only",
                target.info.api.group, target.info.api.kind
            )));
        }
        if target.names.is_empty() {
            return Err(Error::usage("required resource not specified"));
        }
        names.extend(target.names);
    }
    Ok(names)
}

/// kubectl's DeploymentStatusViewer: the message and whether the rollout is done.
pub fn deployment_status(deployment: &Deployment) -> Result<(String, bool)> {
    let name = deployment.metadata.name.as_deref().unwrap_or_default();
    let generation = deployment.metadata.generation.unwrap_or(0);
    let status = deployment.status.clone().unwrap_or_default();
    if generation > status.observed_generation.unwrap_or(0) {
        return Ok((
            "Waiting for deployment spec update to be observed...".to_string(),
            false,
        ));
    }
    let progress_deadline_exceeded = status.conditions.iter().flatten().any(|c| {
        c.type_.as_deref() == Some("Progressing")
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    if progress_deadline_exceeded {
        return Err(Error::Other(format!(
            "deployment {name:?} exceeded its progress deadline"
        )));
    }
    let wanted = deployment.spec.replicas;
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let message = match wanted {
        Some(wanted) if updated < wanted => format!(
            "Waiting for deployment {name:?} rollout to finish: {updated} out of {wanted} new replicas have been updated..."
        ),
        _ if replicas > updated => format!(
            "Waiting for deployment {name:?} rollout to finish: {} old replicas are pending termination...",
            replicas - updated
        ),
        _ if available < updated => format!(
            "Waiting for deployment {name:?} rollout to finish: {available} of {updated} updated replicas are available..."
        ),
        _ => return Ok((format!("deployment {name:?} successfully rolled out"), true)),
    };
    Ok((message, false))
}

async fn status(
    api: &Api<Deployment>,
    name: &str,
    watch: bool,
    timeout: Option<Duration>,
) -> Result<()> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut progress = Progress::new(None);
    loop {
        let deployment = api.get(name).await?;
        let (message, done) = match deployment_status(&deployment) {
            Ok(found) => found,
            Err(err) => {
                progress.finish();
                return Err(err);
            }
        };
        if done || !watch {
            progress.finish();
            return outln(message);
        }
        progress.status(&message)?;
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            progress.finish();
            return Err(Error::Other(
                "timed out waiting for the condition".to_string(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The Deployment's ReplicaSets (controlled by it) with their revisions, oldest first.
async fn revisions(session: &Session, deployment: &Deployment) -> Result<Vec<(i64, ReplicaSet)>> {
    let api: Api<ReplicaSet> = Api::namespaced(session.client.clone(), &session.namespace);
    let uid = deployment.metadata.uid.as_deref();
    let mut owned: Vec<(i64, ReplicaSet)> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|rs| {
            rs.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid)
        })
        .filter_map(|rs| {
            let revision = rs
                .metadata
                .annotations
                .as_ref()?
                .get(REVISION_ANNOTATION)?
                .parse()
                .ok()?;
            Some((revision, rs))
        })
        .collect();
    owned.sort_by_key(|(revision, _)| *revision);
    Ok(owned)
}

async fn history(session: &Session, api: &Api<Deployment>, name: &str) -> Result<()> {
    let deployment = api.get(name).await?;
    let revisions = revisions(session, &deployment).await?;
    outln(format!("deployment.apps/{name} "))?;
    if revisions.is_empty() {
        return outln("No rollout history found.");
    }
    let mut lines = vec![vec!["REVISION".to_string(), "CHANGE-CAUSE".to_string()]];
    for (revision, rs) in &revisions {
        let cause = rs
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CHANGE_CAUSE_ANNOTATION))
            .cloned()
            .unwrap_or_else(|| "<none>".to_string());
        lines.push(vec![revision.to_string(), cause]);
    }
    out(printer::tabwrite_with(&lines, 0, 2))?;
    outln("")
}

/// A template without the `pod-template-hash` label the ReplicaSet controller adds, for
/// comparing and copying templates.
fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut template = template.clone();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    template
}

async fn undo(
    session: &Session,
    api: &Api<Deployment>,
    name: &str,
    to_revision: i64,
) -> Result<()> {
    let deployment = api.get(name).await?;
    if deployment.spec.paused == Some(true) {
        return Err(Error::Other(format!(
            "you cannot rollback a paused deployment; resume it first with 'skiffctl rollout resume deployment/{name}' and try again"
        )));
    }
    let revisions = revisions(session, &deployment).await?;
    let target = if to_revision == 0 {
        // The newest revision below the current (highest) one.
        match revisions.len() {
            0 | 1 => {
                return Err(Error::Other(format!(
                    "no rollout history found for deployment {name:?}"
                )));
            }
            n => &revisions[n - 2],
        }
    } else {
        revisions
            .iter()
            .find(|(revision, _)| *revision == to_revision)
            .ok_or_else(|| {
                Error::Other(format!(
                    "unable to find specified revision {to_revision} in history"
                ))
            })?
    };
    let (revision, rs) = target;
    let template = rs
        .spec
        .template
        .as_ref()
        .map(without_hash)
        .unwrap_or_default();
    let current = without_hash(&deployment.spec.template);
    if current == template {
        return outln(format!(
            "deployment.apps/{name} skipped rollback (current template already matches revision {revision})"
        ));
    }
    let patch = serde_json::json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": deployment.metadata.resource_version},
        {"op": "replace", "path": "/spec/template", "value": template},
    ]);
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|e| Error::Other(e.to_string()))?;
    api.patch(name, &rollout_params(), &Patch::Json::<()>(patch))
        .await?;
    outln(format!("deployment.apps/{name} rolled back"))
}

fn rollout_params() -> PatchParams {
    PatchParams {
        field_manager: Some("skiffctl-rollout".into()),
        ..PatchParams::default()
    }
}

async fn restart(api: &Api<Deployment>, name: &str) -> Result<()> {
    let deployment = api.get(name).await?;
    if deployment.spec.paused == Some(true) {
        return Err(Error::Other(format!(
            "deployments.apps \"{name}\" can't restart paused deployment (run rollout resume first)"
        )));
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: now}}}}});
    api.patch(name, &rollout_params(), &Patch::Strategic(&patch))
        .await?;
    outln(format!("deployment.apps/{name} restarted"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};

    fn deployment(generation: i64, replicas: i32, status: DeploymentStatus) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.name = Some("web".into());
        d.metadata.generation = Some(generation);
        d.spec = DeploymentSpec {
            replicas: Some(replicas),
            ..DeploymentSpec::default()
        };
        d.status = Some(status);
        d
    }

    fn status(observed: i64, replicas: i32, updated: i32, available: i32) -> DeploymentStatus {
        DeploymentStatus {
            observed_generation: Some(observed),
            replicas: Some(replicas),
            updated_replicas: Some(updated),
            available_replicas: Some(available),
            ..DeploymentStatus::default()
        }
    }

    #[test]
    fn status_messages_are_kubectls() {
        let cases = [
            (
                deployment(2, 3, status(1, 3, 3, 3)),
                "Waiting for deployment spec update to be observed...",
                false,
            ),
            (
                deployment(2, 3, status(2, 3, 1, 1)),
                "Waiting for deployment \"web\" rollout to finish: 1 out of 3 new replicas have been updated...",
                false,
            ),
            (
                deployment(2, 3, status(2, 4, 3, 3)),
                "Waiting for deployment \"web\" rollout to finish: 1 old replicas are pending termination...",
                false,
            ),
            (
                deployment(2, 3, status(2, 3, 3, 1)),
                "Waiting for deployment \"web\" rollout to finish: 1 of 3 updated replicas are available...",
                false,
            ),
            (
                deployment(2, 3, status(2, 3, 3, 3)),
                "deployment \"web\" successfully rolled out",
                true,
            ),
        ];
        for (d, message, done) in cases {
            assert_eq!(deployment_status(&d).unwrap(), (message.to_string(), done));
        }
        let mut stuck = status(2, 3, 1, 1);
        stuck.conditions = Some(vec![DeploymentCondition {
            type_: Some("Progressing".into()),
            reason: Some("ProgressDeadlineExceeded".into()),
            status: Some("False".into()),
            ..DeploymentCondition::default()
        }]);
        assert_eq!(
            deployment_status(&deployment(2, 3, stuck))
                .unwrap_err()
                .to_string(),
            "deployment \"web\" exceeded its progress deadline"
        );
    }
}
