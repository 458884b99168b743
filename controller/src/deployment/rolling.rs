//! Upstream's `rolling.go`: a RollingUpdate step — grow the new ReplicaSet within maxSurge,
//! shrink the old ones within maxUnavailable — then the status.

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::runtime::controller::Action;

use super::util::{self, rs_replicas};
use super::{SyncError, Syncer};

impl Syncer<'_> {
    /// Upstream's `rolloutRolling`.
    pub(super) async fn rollout_rolling(
        &mut self,
        rs_list: &[ReplicaSet],
    ) -> Result<Action, SyncError> {
        let (new_rs, old) = self
            .get_all_replica_sets_and_sync_revision(rs_list, true)
            .await?;
        let all: Vec<&ReplicaSet> = old.iter().chain(new_rs.as_ref()).collect();
        let Some(new) = new_rs.as_ref() else {
            // Created just now but not returned: never happens with `create`; be safe.
            return self.sync_rollout_status(&all, None).await;
        };
        if self.reconcile_new_replica_set(&all, new).await? {
            return self.sync_rollout_status(&all, Some(new)).await;
        }
        let active_old: Vec<ReplicaSet> = util::filter_active(&old).into_iter().cloned().collect();
        if self
            .reconcile_old_replica_sets(&all, active_old, new)
            .await?
        {
            return self.sync_rollout_status(&all, Some(new)).await;
        }
        let status = self.d.status.clone().unwrap_or_default();
        if util::deployment_complete(&self.d, &status) {
            self.cleanup_deployment(&old).await?;
        }
        self.sync_rollout_status(&all, Some(new)).await
    }

    /// Upstream's `reconcileNewReplicaSet`: scale the new ReplicaSet up as far as the surge
    /// allows (or down, if the deployment shrank). True when it was scaled.
    async fn reconcile_new_replica_set(
        &mut self,
        all: &[&ReplicaSet],
        new: &ReplicaSet,
    ) -> Result<bool, SyncError> {
        let replicas = util::replicas(&self.d);
        if rs_replicas(new) == replicas {
            return Ok(false);
        }
        if rs_replicas(new) > replicas {
            let (scaled, _) = self
                .scale_replica_set_and_record_event(new, replicas)
                .await?;
            return Ok(scaled);
        }
        let count =
            util::new_rs_new_replicas(&self.d, all, new).map_err(|message| SyncError::Invalid {
                namespace: self.namespace.clone(),
                name: kube::ResourceExt::name_any(&self.d),
                message,
            })?;
        let (scaled, _) = self.scale_replica_set_and_record_event(new, count).await?;
        Ok(scaled)
    }

    /// Upstream's `reconcileOldReplicaSets`: scale old ReplicaSets down, never below the
    /// minimum availability — counting the new ReplicaSet's unavailable pods against it, so
    /// a new template that never becomes ready does not eat into the old pods.
    async fn reconcile_old_replica_sets(
        &mut self,
        all: &[&ReplicaSet],
        old: Vec<ReplicaSet>,
        new: &ReplicaSet,
    ) -> Result<bool, SyncError> {
        let old_pods = util::replica_count(&old);
        if old_pods == 0 {
            return Ok(false);
        }
        let all_pods = util::replica_count(all.iter().copied());
        let min_available = util::replicas(&self.d) - util::max_unavailable(&self.d);
        let new_unavailable = rs_replicas(new) - util::lasting_available(new);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        // Unhealthy old replicas go first: removing them costs no availability, and left
        // alone they could block the rollout for good.
        let (old, cleaned) = self
            .cleanup_unhealthy_replicas(old, max_scaled_down)
            .await?;
        let all: Vec<&ReplicaSet> = old.iter().chain([new]).collect();
        let scaled = self
            .scale_down_old_replica_sets_for_rolling_update(&all, old.clone())
            .await?;
        Ok(cleaned + scaled > 0)
    }

    /// Upstream's `cleanupUnhealthyReplicas`: the old ReplicaSets lose their unavailable
    /// replicas, oldest first, at most `max_cleanup` in all (the ReplicaSet controller deletes
    /// not-ready pods first).
    async fn cleanup_unhealthy_replicas(
        &mut self,
        mut old: Vec<ReplicaSet>,
        max_cleanup: i32,
    ) -> Result<(Vec<ReplicaSet>, i32), SyncError> {
        old.sort_by(util::by_creation);
        let mut total = 0;
        for rs in old.iter_mut() {
            if total >= max_cleanup {
                break;
            }
            let replicas = rs_replicas(rs);
            let available = rs
                .status
                .as_ref()
                .and_then(|s| s.available_replicas)
                .unwrap_or(0);
            let down = util::unhealthy_to_clean_up(replicas, available, max_cleanup - total);
            if down == 0 {
                continue;
            }
            let (_, updated) = self
                .scale_replica_set_and_record_event(rs, replicas - down)
                .await?;
            total += down;
            *rs = updated;
        }
        Ok((old, total))
    }

    /// Upstream's `scaleDownOldReplicaSetsForRollingUpdate`: as many old replicas as there
    /// are available pods above the minimum, oldest ReplicaSets first.
    async fn scale_down_old_replica_sets_for_rolling_update(
        &mut self,
        all: &[&ReplicaSet],
        mut old: Vec<ReplicaSet>,
    ) -> Result<i32, SyncError> {
        let min_available = util::replicas(&self.d) - util::max_unavailable(&self.d);
        let available = util::lasting_available_replica_count(all.iter().copied());
        if available <= min_available {
            return Ok(0);
        }
        old.sort_by(util::by_creation);
        let wanted = available - min_available;
        let mut total = 0;
        for rs in &old {
            if total >= wanted {
                break;
            }
            let replicas = rs_replicas(rs);
            if replicas == 0 {
                continue;
            }
            let down = replicas.min(wanted - total);
            self.scale_replica_set_and_record_event(rs, replicas - down)
                .await?;
            total += down;
        }
        Ok(total)
    }
}
