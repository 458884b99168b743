//! kube-controller-manager's TTL-after-finished controller
//! (`pkg/controller/ttlafterfinished`): a finished Job with `spec.ttlSecondsAfterFinished`
//! is deleted that many seconds after it finished (its Complete or Failed condition's
//! transition), in the foreground, so the garbage collector removes its pods first.
//!
//! As upstream, the decision is made on the cache and checked again on a fresh read just
//! before the delete (the TTL may have been changed, the Job replaced), and the delete carries
//! the uid and resourceVersion read as preconditions.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use crate::job::finish_condition;
use crate::manager::{ControllerError, drive};

/// kube-controller-manager's name for it (`--controllers`).
pub const NAME: &str = "ttl-after-finished-controller";

/// After a failed sync, when to try again.
const RETRY: Duration = Duration::from_secs(5);

struct Context {
    client: Client,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{verb} Job {namespace}/{name}: {source}")]
    Job {
        verb: &'static str,
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// Runs the controller until its watch ends.
pub async fn run(client: Client) -> Result<(), ControllerError> {
    let ctx = Arc::new(Context {
        client: client.clone(),
    });
    let results = Controller::new(Api::<Job>::all(client), watcher::Config::default()).run(
        sync,
        error_policy,
        ctx,
    );
    drive(NAME, results).await
}

fn error_policy(_job: Arc<Job>, error: &SyncError, _ctx: Arc<Context>) -> Action {
    tracing::debug!(controller = NAME, %error, "retrying");
    Action::requeue(RETRY)
}

/// When a Job expires: `None` when it has no TTL, is not finished, or is being deleted.
/// Upstream's `needsCleanup` and `timeLeft`.
pub fn expires_at(job: &Job) -> Option<Timestamp> {
    if job.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ttl = job.spec.as_ref()?.ttl_seconds_after_finished?;
    let finished = finish_condition(job)?.last_transition_time.as_ref()?.0;
    finished
        .checked_add(SignedDuration::from_secs(i64::from(ttl)))
        .ok()
}

/// How long from `now` until `at` (zero once past).
fn time_left(at: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// Upstream's `processJob`.
async fn sync(job: Arc<Job>, ctx: Arc<Context>) -> Result<Action, SyncError> {
    let Some(at) = expires_at(&job) else {
        return Ok(Action::await_change());
    };
    let left = time_left(at, Timestamp::now());
    if !left.is_zero() {
        return Ok(Action::requeue(left));
    }
    let namespace = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    let error = |verb, source| SyncError::Job {
        verb,
        namespace: namespace.clone(),
        name: name.clone(),
        source,
    };
    // The cache may be behind: the TTL could have been raised or removed since.
    let Some(fresh) = jobs.get_opt(&name).await.map_err(|e| error("reading", e))? else {
        return Ok(Action::await_change());
    };
    let Some(at) = expires_at(&fresh) else {
        return Ok(Action::await_change());
    };
    let left = time_left(at, Timestamp::now());
    if !left.is_zero() {
        return Ok(Action::requeue(left));
    }
    tracing::info!(controller = NAME, job = %format!("{namespace}/{name}"), "cleaning up a finished Job");
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: fresh.uid(),
            resource_version: fresh.resource_version(),
        }),
        ..Default::default()
    };
    match jobs.delete(&name, &params).await {
        Ok(_) => Ok(Action::await_change()),
        // Gone already, or changed since the read: a newer event syncs it again.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(Action::await_change()),
        Err(e) => Err(error("deleting", e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(ttl: Option<i32>, conditions: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "spec": {"template": {}, "ttlSecondsAfterFinished": ttl},
            "status": {"conditions": conditions},
        }))
        .expect("job")
    }

    #[test]
    fn a_finished_job_expires_its_ttl_after_finishing() {
        let done = json!([{"type": "Complete", "status": "True",
            "lastTransitionTime": "1970-01-01T00:16:40Z"}]);
        let failed = json!([{"type": "FailureTarget", "status": "True",
            "lastTransitionTime": "1970-01-01T00:00:00Z"},
            {"type": "Failed", "status": "True", "lastTransitionTime": "1970-01-01T00:16:40Z"}]);
        let running = json!([{"type": "SuccessCriteriaMet", "status": "True",
            "lastTransitionTime": "1970-01-01T00:16:40Z"}]);
        let t = |s| Timestamp::from_second(s).expect("time");
        assert_eq!(expires_at(&job(Some(30), done.clone())), Some(t(1030)));
        assert_eq!(expires_at(&job(Some(0), failed)), Some(t(1000)));
        assert_eq!(expires_at(&job(None, done)), None, "no TTL");
        assert_eq!(
            expires_at(&job(Some(30), running)),
            None,
            "not finished yet"
        );
        assert_eq!(time_left(t(1030), t(1000)), Duration::from_secs(30));
        assert_eq!(time_left(t(1030), t(2000)), Duration::ZERO);
    }
}
