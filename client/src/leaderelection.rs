//! Leader election through a `coordination.k8s.io/v1` Lease, as client-go's leaderelection:
//! the holder renews it every `retry_period`; another candidate takes it over only once it has
//! not been renewed for `lease_duration`; a holder that cannot renew within `renew_deadline`
//! stops, so two schedulers (or controller managers) never both act.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::sync::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum LeaderElectionError {
    #[error("invalid leader election config: {0}")]
    InvalidConfig(&'static str),
    #[error("lease {lease} taken by another holder")]
    TakenOver { lease: String },
    #[error("could not renew lease {lease} within {deadline:?}: {source}")]
    RenewDeadline {
        lease: String,
        deadline: Duration,
        source: kube::Error,
    },
    #[error("the renewal of lease {lease} stopped")]
    RenewalEnded { lease: String },
}

#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    pub namespace: String,
    /// The Lease's name, which is the component's (`kube-scheduler`,
    /// `kube-controller-manager`): candidates for the same role share it.
    pub name: String,
    /// Unique per candidate.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderElectionConfig {
    /// The Lease `kube-system/<name>` with client-go's timings (15 s lease, 10 s renew
    /// deadline, 2 s retry) and this host and process as the identity. There is no `Default`:
    /// a component that forgot to name its lease would contend for someone else's.
    pub fn new(name: impl Into<String>) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "skiff".into());
        LeaderElectionConfig {
            namespace: "kube-system".into(),
            name: name.into(),
            identity: format!("{host}_{}", std::process::id()),
            // client-go's defaults (kube-scheduler's and kube-controller-manager's).
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// client-go's `NewLeaderElector` checks: a holder must be able to retry before its renew
    /// deadline and give up before its lease could expire under it.
    fn validate(&self) -> Result<(), LeaderElectionError> {
        if self.name.is_empty() {
            return Err(LeaderElectionError::InvalidConfig(
                "the lease name is empty",
            ));
        }
        if self.identity.is_empty() {
            return Err(LeaderElectionError::InvalidConfig("the identity is empty"));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(LeaderElectionError::InvalidConfig(
                "leaseDuration must be greater than renewDeadline",
            ));
        }
        // client-go's JitterFactor is 1.2.
        if self.renew_deadline.as_secs_f64() <= self.retry_period.as_secs_f64() * 1.2 {
            return Err(LeaderElectionError::InvalidConfig(
                "renewDeadline must be greater than retryPeriod*JitterFactor",
            ));
        }
        Ok(())
    }

    fn lease(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Held leadership; `lost` resolves when it is gone. Dropping it stops the renewals (the lease
/// then expires and another candidate takes over).
pub struct LeaderElection {
    lost: oneshot::Receiver<LeaderElectionError>,
    renewal: tokio::task::JoinHandle<()>,
    lease: String,
}

impl Drop for LeaderElection {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

impl LeaderElection {
    /// Waits until this candidate holds the lease, then keeps renewing it in the background.
    pub async fn acquire(
        client: Client,
        config: LeaderElectionConfig,
    ) -> Result<LeaderElection, LeaderElectionError> {
        config.validate()?;
        let lease = config.lease();
        let api: Api<Lease> = Api::namespaced(client, &config.namespace);
        loop {
            match try_acquire_or_renew(&api, &config).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::debug!(error = %e, "leader election"),
            }
            tokio::time::sleep(config.retry_period).await;
        }
        tracing::info!(lease = %config.name, identity = %config.identity, "became leader");
        let (tx, rx) = oneshot::channel();
        let renewal = tokio::spawn(async move {
            let mut last_renew = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(config.retry_period).await;
                match try_acquire_or_renew(&api, &config).await {
                    Ok(true) => last_renew = tokio::time::Instant::now(),
                    Ok(false) => {
                        let _ = tx.send(LeaderElectionError::TakenOver {
                            lease: config.lease(),
                        });
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "renewing the lease");
                        if last_renew.elapsed() > config.renew_deadline {
                            let _ = tx.send(LeaderElectionError::RenewDeadline {
                                lease: config.lease(),
                                deadline: config.renew_deadline,
                                source: e,
                            });
                            return;
                        }
                    }
                }
            }
        });
        Ok(LeaderElection {
            lost: rx,
            renewal,
            lease,
        })
    }

    /// Resolves when leadership is gone, with why.
    pub async fn lost(&mut self) -> LeaderElectionError {
        match (&mut self.lost).await {
            Ok(why) => why,
            Err(_) => LeaderElectionError::RenewalEnded {
                lease: self.lease.clone(),
            },
        }
    }
}

/// One attempt: true when we hold the lease afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaderElectionConfig,
) -> Result<bool, kube::Error> {
    let now = k8s_openapi::jiff::Timestamp::now();
    let ours = |transitions: i32, acquired: Option<MicroTime>| LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(config.lease_duration.as_secs() as i32),
        acquire_time: acquired.or(Some(MicroTime(now))),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    };
    let existing = match api.get_opt(&config.name).await? {
        Some(lease) => lease,
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    namespace: Some(config.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(ours(0, None)),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        }
    };
    let spec = existing.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let is_ours = holder == config.identity;
    if !is_ours && !holder.is_empty() {
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(0) as u64);
        let renewed = spec.renew_time.as_ref().map(|t| t.0);
        let expired =
            renewed.is_none_or(|r| now.duration_since(r).unsigned_abs() > duration && now > r);
        if !expired {
            return Ok(false);
        }
    }
    let transitions = spec.lease_transitions.unwrap_or(0) + if is_ours { 0 } else { 1 };
    let acquired = if is_ours {
        spec.acquire_time.clone()
    } else {
        None
    };
    let mut updated = existing;
    updated.spec = Some(ours(transitions, acquired));
    // The resourceVersion in `updated` makes this a compare-and-swap: of two candidates racing
    // for an expired lease, one gets 409.
    match api
        .replace(&config.name, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_go_timings_are_valid() {
        let config = LeaderElectionConfig::new("kube-controller-manager");
        assert_eq!(config.namespace, "kube-system");
        assert_eq!(config.lease_duration, Duration::from_secs(15));
        assert!(config.validate().is_ok());
    }

    #[test]
    fn invalid_timings_are_refused() {
        let base = LeaderElectionConfig::new("kube-scheduler");
        let unnamed = LeaderElectionConfig {
            name: String::new(),
            ..base.clone()
        };
        let deadline_past_lease = LeaderElectionConfig {
            renew_deadline: Duration::from_secs(15),
            ..base.clone()
        };
        let retry_past_deadline = LeaderElectionConfig {
            retry_period: Duration::from_secs(9),
            ..base
        };
        for config in [unnamed, deadline_past_lease, retry_past_deadline] {
            assert!(
                matches!(
                    config.validate(),
                    Err(LeaderElectionError::InvalidConfig(_))
                ),
                "{config:?}"
            );
        }
    }
}
