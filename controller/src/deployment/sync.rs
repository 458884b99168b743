//! Upstream's `sync.go`: the new ReplicaSet and revisions, scaling (proportional during a
//! rollout), cleanup of old ReplicaSets beyond `revisionHistoryLimit`, the plain status sync,
//! and the paused conditions.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::DeleteParams;

use super::util::{self, rs_replicas};
use super::{SyncError, Syncer};

impl Syncer<'_> {
    /// Upstream's `getAllReplicaSetsAndSyncRevision`: the new ReplicaSet (created when
    /// `create` and missing) with its revision above every old one, and all the old ones.
    pub(super) async fn get_all_replica_sets_and_sync_revision(
        &mut self,
        rs_list: &[ReplicaSet],
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>), SyncError> {
        let old = util::find_old_replica_sets(&self.d, rs_list);
        let new_rs = self.get_new_replica_set(rs_list, &old, create).await?;
        Ok((new_rs, old))
    }

    /// Upstream's `getNewReplicaSet`.
    async fn get_new_replica_set(
        &mut self,
        rs_list: &[ReplicaSet],
        old: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>, SyncError> {
        let existing = util::find_new_replica_set(&self.d, rs_list).cloned();
        let new_revision = (util::max_revision(old) + 1).to_string();
        let min_ready = self.d.spec.min_ready_seconds;

        if let Some(existing) = existing {
            // Bring the new ReplicaSet's annotations (the deployment's, its revision) and
            // minReadySeconds up to date first; the deployment follows on the next sync.
            let mut copy = existing;
            let annotations_updated =
                util::set_new_replica_set_annotations(&self.d, &mut copy, &new_revision, true);
            let spec = &mut copy.spec;
            if annotations_updated || spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0)
            {
                spec.min_ready_seconds = min_ready;
                return self.update_replica_set(&copy).await.map(Some);
            }
            // The revision the ReplicaSet carries is the one to show: it may be above
            // `new_revision` when old ReplicaSets were deleted since.
            let revision = copy
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(util::REVISION_ANNOTATION))
                .cloned()
                .unwrap_or_default();
            let revision_changed = util::set_deployment_revision(&mut self.d, &revision);
            let mut status_changed = false;
            if util::has_progress_deadline(&self.d)
                && util::get_condition(self.d.status.as_ref(), util::PROGRESSING).is_none()
            {
                let msg = format!("Found new replica set {:?}", copy.name_any());
                let cond = util::new_condition(
                    util::PROGRESSING,
                    "True",
                    util::FOUND_NEW_RS_REASON,
                    msg,
                    self.now,
                );
                util::set_condition(self.d.status.get_or_insert_with(Default::default), cond);
                status_changed = true;
            }
            self.persist(revision_changed, status_changed).await?;
            return Ok(Some(copy));
        }
        if !create {
            return Ok(None);
        }

        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let mut template = util::template(&self.d);
        let hash = util::compute_hash(&template, collision_count);
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(util::POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        let mut selector = self.d.spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(util::POD_TEMPLATE_HASH_LABEL.into(), hash.clone());
        // Deterministic, so a retried create finds its earlier success.
        let name = format!("{}-{}", self.d.name_any(), hash);
        let mut new_rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.namespace.clone()),
                owner_references: Some(vec![self.controller_ref()]),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                ..Default::default()
            },
            spec: ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: min_ready,
                selector,
                template: Some(template),
            },
            status: None,
        };
        let all: Vec<&ReplicaSet> = old.iter().chain([&new_rs]).collect();
        let count = util::new_rs_new_replicas(&self.d, &all, &new_rs).map_err(|message| {
            SyncError::Invalid {
                namespace: self.namespace.clone(),
                name: self.d.name_any(),
                message,
            }
        })?;
        new_rs.spec.replicas = Some(count);
        util::set_new_replica_set_annotations(&self.d, &mut new_rs, &new_revision, false);

        let mut already_exists = false;
        let created = match self.rs_api.create(&Self::post_params(), &new_rs).await {
            Ok(rs) => rs,
            Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => {
                // A slow cache, or a hash collision: ours only if we control it and it has
                // our template; otherwise bump collisionCount so the next sync hashes anew.
                already_exists = true;
                let found =
                    self.rs_api.get(&name).await.map_err(|source| {
                        self.write_error("reading", "ReplicaSet", &name, source)
                    })?;
                let ours = controller_of_uid(&found) == self.d.uid()
                    && util::equal_ignore_hash(
                        &util::template(&self.d),
                        &util::rs_template(&found),
                    );
                if ours {
                    found
                } else {
                    let status = self.d.status.get_or_insert_with(Default::default);
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    if let Err(e) = self.update_status().await {
                        tracing::debug!(controller = super::NAME, error = %e, "recording the hash collision");
                    } else {
                        tracing::info!(controller = super::NAME, deployment = %self.key(),
                            "found a hash collision; bumped collisionCount to resolve it");
                    }
                    return Err(SyncError::HashCollision {
                        namespace: self.namespace.clone(),
                        name,
                    });
                }
            }
            Err(source) => {
                let terminating = matches!(&source, kube::Error::Api(s)
                    if s.code == 403 && s.message.contains("being terminated"));
                if !terminating && util::has_progress_deadline(&self.d) {
                    let msg = format!("Failed to create new replica set {name:?}: {source}");
                    let cond = util::new_condition(
                        util::PROGRESSING,
                        "False",
                        util::FAILED_RS_CREATE_REASON,
                        msg,
                        self.now,
                    );
                    util::set_condition(self.d.status.get_or_insert_with(Default::default), cond);
                    // The bigger issue is the failed create; this write is best effort.
                    if let Err(e) = self.update_status().await {
                        tracing::debug!(controller = super::NAME, error = %e, "recording the failed create");
                    }
                }
                return Err(self.write_error("creating", "ReplicaSet", &name, source));
            }
        };
        if !already_exists {
            tracing::info!(controller = super::NAME, deployment = %self.key(),
                replicaset = %name, replicas = count, "created new replica set");
        }
        let revision_changed = util::set_deployment_revision(&mut self.d, &new_revision);
        let mut status_changed = false;
        if !already_exists && util::has_progress_deadline(&self.d) {
            let msg = format!("Created new replica set {name:?}");
            let cond = util::new_condition(
                util::PROGRESSING,
                "True",
                util::NEW_REPLICA_SET_REASON,
                msg,
                self.now,
            );
            util::set_condition(self.d.status.get_or_insert_with(Default::default), cond);
            status_changed = true;
        }
        self.persist(revision_changed, status_changed).await?;
        Ok(Some(created))
    }

    /// Upstream's `sync`: for paused deployments and scaling events — scale, clean up (when
    /// paused), and write the status; no rollout step.
    pub(super) async fn sync(&mut self, rs_list: &[ReplicaSet]) -> Result<(), SyncError> {
        let (new_rs, old) = self
            .get_all_replica_sets_and_sync_revision(rs_list, false)
            .await?;
        self.scale(new_rs.as_ref(), &old).await?;
        if self.paused() && super::rollback::rollback_to(&self.d).is_none() {
            self.cleanup_deployment(&old).await?;
        }
        let all: Vec<&ReplicaSet> = old.iter().chain(new_rs.as_ref()).collect();
        self.sync_deployment_status(&all, new_rs.as_ref()).await
    }

    /// Upstream's `syncStatusOnly` (a deployment being deleted).
    pub(super) async fn sync_status_only(
        &mut self,
        rs_list: &[ReplicaSet],
    ) -> Result<(), SyncError> {
        let (new_rs, old) = self
            .get_all_replica_sets_and_sync_revision(rs_list, false)
            .await?;
        let all: Vec<&ReplicaSet> = old.iter().chain(new_rs.as_ref()).collect();
        self.sync_deployment_status(&all, new_rs.as_ref()).await
    }

    /// Upstream's `syncDeploymentStatus`: the calculated status, written if it differs.
    pub(super) async fn sync_deployment_status(
        &mut self,
        all: &[&ReplicaSet],
        new_rs: Option<&ReplicaSet>,
    ) -> Result<(), SyncError> {
        let status = util::calculate_status(all, new_rs, &self.d, self.now);
        if self.d.status.as_ref() == Some(&status) {
            return Ok(());
        }
        self.d.status = Some(status);
        self.update_status().await
    }

    /// Upstream's `checkPausedConditions`: Progressing Unknown/DeploymentPaused when paused,
    /// DeploymentResumed when resumed — never over a ProgressDeadlineExceeded.
    pub(super) async fn check_paused_conditions(&mut self) -> Result<(), SyncError> {
        if !util::has_progress_deadline(&self.d) {
            return Ok(());
        }
        let cond = util::get_condition(self.d.status.as_ref(), util::PROGRESSING);
        let reason = cond.and_then(|c| c.reason.as_deref());
        if reason == Some(util::TIMED_OUT_REASON) {
            return Ok(());
        }
        let paused_cond_exists = reason == Some(util::PAUSED_DEPLOY_REASON);
        let (reason, message) = match (self.paused(), paused_cond_exists) {
            (true, false) => (util::PAUSED_DEPLOY_REASON, "Deployment is paused"),
            (false, true) => (util::RESUMED_DEPLOY_REASON, "Deployment is resumed"),
            _ => return Ok(()),
        };
        let cond = util::new_condition(
            util::PROGRESSING,
            "Unknown",
            reason,
            message.into(),
            self.now,
        );
        util::set_condition(self.d.status.get_or_insert_with(Default::default), cond);
        self.update_status().await
    }

    /// Upstream's `isScalingEvent`: an active ReplicaSet was sized for another
    /// `spec.replicas` than the deployment's now.
    pub(super) async fn is_scaling_event(
        &mut self,
        rs_list: &[ReplicaSet],
    ) -> Result<bool, SyncError> {
        let (new_rs, old) = self
            .get_all_replica_sets_and_sync_revision(rs_list, false)
            .await?;
        let Some(new_rs) = new_rs else {
            return Ok(false);
        };
        let replicas = util::replicas(&self.d);
        let all: Vec<&ReplicaSet> = old.iter().chain([&new_rs]).collect();
        let scaling = util::filter_active(all).into_iter().find(|rs| {
            util::int_annotation(rs, util::DESIRED_REPLICAS_ANNOTATION)
                .is_some_and(|desired| desired != replicas)
        });
        if let Some(rs) = scaling {
            tracing::debug!(controller = super::NAME, deployment = %self.key(),
                replicaset = %rs.name_any(), replicas,
                desired = ?util::int_annotation(rs, util::DESIRED_REPLICAS_ANNOTATION),
                resource_version = ?rs.resource_version(), "scaling event");
        }
        Ok(scaling.is_some())
    }

    /// Upstream's `scale`: one active ReplicaSet gets every replica; a saturated new one
    /// leaves the old ones none; otherwise (a rolling deployment scaled mid-rollout) the
    /// difference is spread over the active ReplicaSets in proportion to their sizes.
    pub(super) async fn scale(
        &mut self,
        new_rs: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<(), SyncError> {
        let replicas = util::replicas(&self.d);
        if let Some(active) = util::find_active_or_latest(new_rs, old) {
            if rs_replicas(active) == replicas {
                return Ok(());
            }
            let active = active.clone();
            self.scale_replica_set_and_record_event(&active, replicas)
                .await?;
            return Ok(());
        }
        if util::is_saturated(&self.d, new_rs) {
            for rs in util::filter_active(old) {
                let rs = rs.clone();
                self.scale_replica_set_and_record_event(&rs, 0).await?;
            }
            return Ok(());
        }
        if !util::is_rolling_update(&self.d) {
            return Ok(());
        }
        let mut all: Vec<&ReplicaSet> = util::filter_active(old.iter().chain(new_rs));
        let all_replicas = util::replica_count(all.iter().copied());
        let allowed = if replicas > 0 {
            replicas + util::max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - all_replicas;
        // Largest first; between equals, scale up the newer and down the older first.
        let operation = if to_add > 0 {
            all.sort_by(|a, b| util::by_size_newer(a, b));
            "up"
        } else if to_add < 0 {
            all.sort_by(|a, b| util::by_size_older(a, b));
            "down"
        } else {
            ""
        };
        let mut added = 0;
        let mut sizes: Vec<i32> = Vec::with_capacity(all.len());
        for rs in &all {
            if to_add != 0 {
                let proportion = util::get_proportion(rs, &self.d, to_add, added);
                sizes.push(rs_replicas(rs) + proportion);
                added += proportion;
            } else {
                sizes.push(rs_replicas(rs));
            }
        }
        // The rounding leftover goes to the largest.
        if to_add != 0
            && let Some(first) = sizes.first_mut()
        {
            *first = (*first + to_add - added).max(0);
        }
        let all: Vec<ReplicaSet> = all.into_iter().cloned().collect();
        for (rs, size) in all.iter().zip(sizes) {
            self.scale_replica_set(rs, size, operation).await?;
        }
        Ok(())
    }

    /// Upstream's `scaleReplicaSetAndRecordEvent`.
    pub(super) async fn scale_replica_set_and_record_event(
        &self,
        rs: &ReplicaSet,
        new_scale: i32,
    ) -> Result<(bool, ReplicaSet), SyncError> {
        if rs_replicas(rs) == new_scale {
            return Ok((false, rs.clone()));
        }
        let operation = if rs_replicas(rs) < new_scale {
            "up"
        } else {
            "down"
        };
        self.scale_replica_set(rs, new_scale, operation).await
    }

    /// Upstream's `scaleReplicaSet`: the size and the replica annotations in one update.
    /// True when the size changed.
    pub(super) async fn scale_replica_set(
        &self,
        rs: &ReplicaSet,
        new_scale: i32,
        operation: &str,
    ) -> Result<(bool, ReplicaSet), SyncError> {
        let replicas = util::replicas(&self.d);
        let max = replicas + util::max_surge(&self.d);
        let size_changes = rs_replicas(rs) != new_scale;
        if !size_changes && !util::replicas_annotations_need_update(rs, replicas, max) {
            return Ok((false, rs.clone()));
        }
        let old_scale = rs_replicas(rs);
        let mut copy = rs.clone();
        copy.spec.replicas = Some(new_scale);
        util::set_replicas_annotations(&mut copy, replicas, max);
        let updated = self.update_replica_set(&copy).await?;
        if size_changes {
            tracing::info!(controller = super::NAME, deployment = %self.key(),
                "Scaled {operation} replica set {} from {old_scale} to {new_scale}", rs.name_any());
        }
        Ok((size_changes, updated))
    }

    /// Upstream's `cleanupDeployment`: the oldest revisions beyond `revisionHistoryLimit` are
    /// deleted, if they have no pods (and their controller has seen that).
    pub(super) async fn cleanup_deployment(&self, old: &[ReplicaSet]) -> Result<(), SyncError> {
        let Some(limit) = util::revision_history_limit(&self.d) else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> = old
            .iter()
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let diff = i64::try_from(cleanable.len()).unwrap_or(i64::MAX) - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| util::by_revision(a, b));
        for rs in cleanable
            .into_iter()
            .take(usize::try_from(diff).unwrap_or(0))
        {
            let status = rs.status.as_ref();
            let busy = status.is_some_and(|s| s.replicas != 0)
                || rs_replicas(rs) != 0
                || rs.metadata.generation > status.and_then(|s| s.observed_generation);
            if busy {
                continue;
            }
            tracing::info!(controller = super::NAME, deployment = %self.key(),
                replicaset = %rs.name_any(), "deleting old replica set beyond the revision history limit");
            match self
                .rs_api
                .delete(&rs.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    return Err(self.write_error("deleting", "ReplicaSet", &rs.name_any(), source));
                }
            }
        }
        Ok(())
    }
}

fn controller_of_uid(rs: &ReplicaSet) -> Option<String> {
    super::controller_of(&rs.metadata.owner_references).map(|r| r.uid.clone())
}
