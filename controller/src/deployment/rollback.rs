//! Upstream's `rollback.go`: the `deprecated.deployment.rollback.to` annotation (how
//! extensions/v1beta1's `spec.rollbackTo` reaches apps/v1) copies a revision's template back
//! into the deployment. kubectl's `rollout undo` does the same copy itself, client-side.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use kube::ResourceExt;

use super::util;
use super::{SyncError, Syncer};

/// The revision asked for (0: the previous one), if any.
pub(super) fn rollback_to(d: &Deployment) -> Option<i64> {
    let value = d
        .metadata
        .annotations
        .as_ref()?
        .get(util::ROLLBACK_TO_ANNOTATION)?;
    // Upstream treats an unparsable revision as no rollback at all.
    value.parse().ok()
}

impl Syncer<'_> {
    /// Upstream's `rollback`.
    pub(super) async fn rollback(&mut self, rs_list: &[ReplicaSet]) -> Result<(), SyncError> {
        let (new_rs, old) = self
            .get_all_replica_sets_and_sync_revision(rs_list, true)
            .await?;
        let all: Vec<&ReplicaSet> = old.iter().chain(new_rs.as_ref()).collect();
        let mut revision = rollback_to(&self.d).unwrap_or(0);
        if revision == 0 {
            revision = util::last_revision(&all);
            if revision == 0 {
                tracing::warn!(controller = super::NAME, deployment = %self.key(),
                    reason = "DeploymentRollbackRevisionNotFound", "unable to find last revision");
                return self.update_deployment_and_clear_rollback_to().await;
            }
        }
        let target = all
            .iter()
            .find(|rs| util::revision(rs).ok() == Some(revision))
            .map(|rs| (*rs).clone());
        let Some(rs) = target else {
            tracing::warn!(controller = super::NAME, deployment = %self.key(),
                reason = "DeploymentRollbackRevisionNotFound", "unable to find the revision to rollback to");
            return self.update_deployment_and_clear_rollback_to().await;
        };
        let template = util::rs_template(&rs);
        if util::equal_ignore_hash(&util::template(&self.d), &template) {
            tracing::warn!(controller = super::NAME, deployment = %self.key(),
                reason = "DeploymentRollbackTemplateUnchanged",
                "the rollback revision contains the same template as current deployment");
        } else {
            // Upstream's `SetFromReplicaSetTemplate`: the template without the hash label.
            let mut template = template;
            if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
                labels.remove(util::POD_TEMPLATE_HASH_LABEL);
            }
            self.d.spec.template = template;
            util::set_deployment_annotations_to(&mut self.d, &rs);
            tracing::info!(controller = super::NAME, deployment = %self.key(),
                reason = "DeploymentRollback", "rolled back deployment {:?} to revision {revision}", self.d.name_any());
        }
        self.update_deployment_and_clear_rollback_to().await
    }

    /// Upstream's `updateDeploymentAndClearRollbackTo`.
    async fn update_deployment_and_clear_rollback_to(&mut self) -> Result<(), SyncError> {
        if let Some(a) = self.d.metadata.annotations.as_mut() {
            a.remove(util::ROLLBACK_TO_ANNOTATION);
        }
        let name = self.d.name_any();
        match self
            .d_api
            .replace(&name, &Self::post_params(), &self.d)
            .await
        {
            Ok(stored) => {
                self.d = stored;
                Ok(())
            }
            Err(source) => Err(self.write_error("updating", "Deployment", &name, source)),
        }
    }
}
