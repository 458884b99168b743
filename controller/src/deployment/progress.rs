//! Upstream's `progress.go`: the status after a rollout step, with the Progressing condition
//! measured against `progressDeadlineSeconds`, and the requeue that notices a stuck rollout
//! when nothing else happens.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DeploymentStatus, ReplicaSet};
use k8s_openapi::jiff::SignedDuration;
use kube::ResourceExt;
use kube::runtime::controller::Action;

use super::util;
use super::{SyncError, Syncer};

impl Syncer<'_> {
    /// Upstream's `syncRolloutStatus`.
    pub(super) async fn sync_rollout_status(
        &mut self,
        all: &[&ReplicaSet],
        new_rs: Option<&ReplicaSet>,
    ) -> Result<Action, SyncError> {
        let mut status = util::calculate_status(all, new_rs, &self.d, self.now);
        if !util::has_progress_deadline(&self.d) {
            util::remove_condition(&mut status, util::PROGRESSING);
        }
        let current = util::get_condition(self.d.status.as_ref(), util::PROGRESSING).cloned();
        // One active ReplicaSet and a finished rollout: a resync, nothing to estimate.
        let complete = util::count(status.replicas) == util::count(status.updated_replicas)
            && current.as_ref().and_then(|c| c.reason.as_deref())
                == Some(util::NEW_RS_AVAILABLE_REASON);
        let name = self.d.name_any();
        let subject = |verb: &str| match new_rs {
            Some(rs) => format!("ReplicaSet {:?} {verb}", rs.name_any()),
            None => format!("Deployment {name:?} {verb}"),
        };
        if util::has_progress_deadline(&self.d) && !complete {
            if util::deployment_complete(&self.d, &status) {
                let cond = util::new_condition(
                    util::PROGRESSING,
                    "True",
                    util::NEW_RS_AVAILABLE_REASON,
                    subject("has successfully progressed."),
                    self.now,
                );
                util::set_condition(&mut status, cond);
            } else if util::deployment_progressing(&self.d, &status) {
                // Progress refreshes lastUpdateTime even with the same reason (the deadline
                // counts from it); the transition time stays while it stays True.
                let mut cond = util::new_condition(
                    util::PROGRESSING,
                    "True",
                    util::REPLICA_SET_UPDATED_REASON,
                    subject("is progressing."),
                    self.now,
                );
                if let Some(c) = &current {
                    if c.status.as_deref() == Some("True") {
                        cond.last_transition_time = c.last_transition_time.clone();
                    }
                    util::remove_condition(&mut status, util::PROGRESSING);
                }
                util::set_condition(&mut status, cond);
            } else if util::deployment_timed_out(&self.d, &status, self.now) {
                let cond = util::new_condition(
                    util::PROGRESSING,
                    "False",
                    util::TIMED_OUT_REASON,
                    subject("has timed out progressing."),
                    self.now,
                );
                util::set_condition(&mut status, cond);
            }
        }
        // ReplicaSets' failures (failed pod creates) surface on the deployment, the new
        // ReplicaSet's before the old ones'.
        let failure = new_rs
            .into_iter()
            .chain(all.iter().copied())
            .flat_map(|rs| rs.status.iter().flat_map(|s| s.conditions.iter().flatten()))
            .find(|c| c.type_.as_deref() == Some(util::REPLICA_FAILURE))
            .map(|c| k8s_openapi::api::apps::v1::DeploymentCondition {
                type_: c.type_.clone(),
                status: c.status.clone(),
                reason: c.reason.clone(),
                message: c.message.clone(),
                last_update_time: c.last_transition_time.clone(),
                last_transition_time: c.last_transition_time.clone(),
            });
        match failure {
            Some(c) => util::set_condition(&mut status, c),
            None => util::remove_condition(&mut status, util::REPLICA_FAILURE),
        }
        if self.d.status.as_ref() == Some(&status) {
            return Ok(self.requeue_stuck_deployment(&status));
        }
        self.d.status = Some(status);
        self.update_status().await?;
        // The write's own event brings the next sync, which schedules any progress check.
        Ok(Action::await_change())
    }

    /// Upstream's `requeueStuckDeployment`: with no progress in sight, look again when the
    /// deadline would pass (a second late, against clock skew).
    fn requeue_stuck_deployment(&self, status: &DeploymentStatus) -> Action {
        let Some(deadline) = util::progress_deadline_seconds(&self.d) else {
            return Action::await_change();
        };
        let Some(current) = util::get_condition(self.d.status.as_ref(), util::PROGRESSING) else {
            return Action::await_change();
        };
        if util::deployment_complete(&self.d, status)
            || current.reason.as_deref() == Some(util::TIMED_OUT_REASON)
        {
            return Action::await_change();
        }
        let Some(updated) = current.last_update_time.as_ref() else {
            return Action::await_change();
        };
        let due = updated
            .0
            .checked_add(SignedDuration::from_secs(i64::from(deadline)))
            .unwrap_or(updated.0);
        let after = self.now.duration_until(due);
        if after < SignedDuration::from_secs(1) {
            return Action::requeue(Duration::from_secs(1));
        }
        let after = Duration::try_from(after).unwrap_or(Duration::from_secs(1));
        Action::requeue(after + Duration::from_secs(1))
    }
}
