//! Upstream's `recreate.go`: every old pod is gone before the new ReplicaSet is scaled up.

use k8s_openapi::api::apps::v1::ReplicaSet;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::util::{self, rs_replicas};
use super::{PodMap, SyncError, Syncer};

impl Syncer<'_> {
    /// Upstream's `rolloutRecreate`.
    pub(super) async fn rollout_recreate(
        &mut self,
        rs_list: &[ReplicaSet],
        pod_map: &PodMap,
    ) -> Result<Action, SyncError> {
        // The new ReplicaSet is not created yet: creating it would scale it up before the old
        // ones are down.
        let (mut new_rs, mut old) = self
            .get_all_replica_sets_and_sync_revision(rs_list, false)
            .await?;
        let active_old: Vec<ReplicaSet> = util::filter_active(&old).into_iter().cloned().collect();
        if self
            .scale_down_old_replica_sets_for_recreate(&active_old)
            .await?
        {
            let all: Vec<&ReplicaSet> = old.iter().chain(new_rs.as_ref()).collect();
            return self.sync_rollout_status(&all, new_rs.as_ref()).await;
        }
        if old_pods_running(new_rs.as_ref(), &old, pod_map) {
            let all: Vec<&ReplicaSet> = old.iter().chain(new_rs.as_ref()).collect();
            return self.sync_rollout_status(&all, new_rs.as_ref()).await;
        }
        if new_rs.is_none() {
            (new_rs, old) = self
                .get_all_replica_sets_and_sync_revision(rs_list, true)
                .await?;
        }
        if let Some(new) = new_rs.as_ref() {
            self.scale_replica_set_and_record_event(new, util::replicas(&self.d))
                .await?;
        }
        let status = self.d.status.clone().unwrap_or_default();
        if util::deployment_complete(&self.d, &status) {
            self.cleanup_deployment(&old).await?;
        }
        let all: Vec<&ReplicaSet> = old.iter().chain(new_rs.as_ref()).collect();
        self.sync_rollout_status(&all, new_rs.as_ref()).await
    }

    /// Upstream's `scaleDownOldReplicaSetsForRecreate`: every old ReplicaSet to zero.
    async fn scale_down_old_replica_sets_for_recreate(
        &mut self,
        old: &[ReplicaSet],
    ) -> Result<bool, SyncError> {
        let mut scaled = false;
        for rs in old {
            if rs_replicas(rs) == 0 {
                continue;
            }
            let (did, _) = self.scale_replica_set_and_record_event(rs, 0).await?;
            scaled |= did;
        }
        Ok(scaled)
    }
}

/// Upstream's `oldPodsRunning`: an old ReplicaSet still reports pods, or a pod of one is in
/// any phase but Succeeded/Failed (being deleted counts: it may still run).
fn old_pods_running(new_rs: Option<&ReplicaSet>, old: &[ReplicaSet], pod_map: &PodMap) -> bool {
    if util::actual_replica_count(old) > 0 {
        return true;
    }
    let new_uid = new_rs.and_then(|rs| rs.uid());
    pod_map.iter().any(|(uid, pods)| {
        Some(uid) != new_uid.as_ref()
            && pods.iter().any(|p| {
                let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
                !matches!(phase, Some("Succeeded" | "Failed"))
            })
    })
}
