//! The controller manager: takes the `kube-system/kube-controller-manager` Lease (when
//! configured), then runs its controllers concurrently, as kube-controller-manager's
//! `Run`/`StartControllers` do. Controllers never return on a transient error (kube-rs's
//! runtime retries watches with backoff and requeues failed reconciles), so one returning at
//! all means it cannot go on, and the manager stops with it; a supervisor (`skiff server`, or
//! whatever runs `skiff controller-manager`) restarts the whole manager.

use std::future::Future;
use std::pin::Pin;

use kube::Client;
use skiff_client::{LeaderElection, LeaderElectionConfig, LeaderElectionError};

use crate::informers::NodeInformers;
use crate::job::{self, JobControllerConfig};
use crate::nodeipam::{self, NodeIpamConfig};
use crate::nodelifecycle::{self, NodeLifecycleConfig};
use crate::podgc::{self, PodGcConfig};
use crate::{
    daemonset, deployment, endpoints, garbagecollector, namespace, replicaset, serviceaccount,
    tainteviction, ttlafterfinished,
};

/// How the controller manager runs.
#[derive(Debug, Clone)]
pub struct ControllerManagerConfig {
    /// `None`: run without a lease (a single controller manager, tests).
    pub leader_election: Option<LeaderElectionConfig>,
    /// Pod CIDRs for nodes (`--allocate-node-cidrs`); `None` leaves nodes' podCIDR alone.
    pub node_ipam: Option<NodeIpamConfig>,
    /// Node health and the taints that follow it.
    pub node_lifecycle: NodeLifecycleConfig,
    /// The pod garbage collector's timing and threshold.
    pub pod_gc: PodGcConfig,
    /// The Job controller's pod failure backoff.
    pub job: JobControllerConfig,
}

impl Default for ControllerManagerConfig {
    fn default() -> Self {
        ControllerManagerConfig {
            leader_election: Some(LeaderElectionConfig::new("kube-controller-manager")),
            node_ipam: Some(NodeIpamConfig::default()),
            node_lifecycle: NodeLifecycleConfig::default(),
            pod_gc: PodGcConfig::default(),
            job: JobControllerConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("leader election: {0}")]
    Leadership(#[from] LeaderElectionError),
    #[error("the {controller} controller stopped: {reason}")]
    Stopped {
        controller: &'static str,
        reason: String,
    },
}

type ControllerFuture = Pin<Box<dyn Future<Output = Result<(), ControllerError>> + Send>>;

/// Drives a kube-rs `Controller`'s output until it ends, logging failed syncs (they are
/// requeued by the controller's error policy); its end is final for controller `name`.
pub(crate) async fn drive<K, E>(
    name: &'static str,
    results: impl futures::Stream<
        Item = Result<K, kube::runtime::controller::Error<E, kube::runtime::watcher::Error>>,
    >,
) -> Result<(), ControllerError>
where
    E: std::error::Error + 'static,
{
    use futures::StreamExt;
    use kube::runtime::controller::Error;
    results
        .for_each(|result| async move {
            match result {
                Ok(_) => {}
                // An event for an object already gone from the cache.
                Err(e @ Error::ObjectNotFound(_)) => {
                    tracing::debug!(controller = name, error = %e, "nothing to sync");
                }
                Err(e) => tracing::warn!(controller = name, error = %e, "sync failed"),
            }
        })
        .await;
    Err(ControllerError::Stopped {
        controller: name,
        reason: "its watch stream ended".into(),
    })
}

/// Runs until a controller stops for good or leadership is lost. Dropping the future stops
/// every controller.
pub async fn run(client: Client, config: ControllerManagerConfig) -> Result<(), ControllerError> {
    let leadership = match config.leader_election {
        Some(le) => Some(LeaderElection::acquire(client.clone(), le).await?),
        None => None,
    };
    // kube-controller-manager's `NewControllerDescriptors`, by name.
    let mut controllers: Vec<(&'static str, ControllerFuture)> = vec![
        (daemonset::NAME, Box::pin(daemonset::run(client.clone()))),
        (deployment::NAME, Box::pin(deployment::run(client.clone()))),
        (job::NAME, Box::pin(job::run(client.clone(), config.job))),
        (namespace::NAME, Box::pin(namespace::run(client.clone()))),
        (replicaset::NAME, Box::pin(replicaset::run(client.clone()))),
        (
            ttlafterfinished::NAME,
            Box::pin(ttlafterfinished::run(client.clone())),
        ),
        (
            serviceaccount::NAME,
            Box::pin(serviceaccount::run(client.clone())),
        ),
        (
            garbagecollector::NAME,
            Box::pin(garbagecollector::run(client.clone())),
        ),
    ];
    controllers.push((endpoints::NAME, Box::pin(endpoints::run(client.clone()))));
    // The node controllers share their node, pod and Lease caches.
    let (informers, informer_driver) = NodeInformers::start(&client, "node informers");
    controllers.push(("node-informers", Box::pin(informer_driver)));
    controllers.push((
        nodelifecycle::NAME,
        Box::pin(nodelifecycle::run(
            client.clone(),
            config.node_lifecycle,
            informers.clone(),
        )),
    ));
    controllers.push((
        tainteviction::NAME,
        Box::pin(tainteviction::run(client.clone(), informers.clone())),
    ));
    controllers.push((
        podgc::NAME,
        Box::pin(podgc::run(client.clone(), config.pod_gc, informers)),
    ));
    if let Some(ipam) = config.node_ipam {
        controllers.push((
            nodeipam::NAME,
            Box::pin(nodeipam::run(client.clone(), ipam)),
        ));
    }
    tracing::info!(
        controllers = ?controllers.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
        "controller manager started"
    );
    let all = futures::future::select_all(controllers.into_iter().map(|(name, controller)| {
        Box::pin(async move {
            controller.await?;
            Err::<(), _>(ControllerError::Stopped {
                controller: name,
                reason: "it returned".into(),
            })
        })
    }));
    tokio::select! {
        (first, _, _) = all => first,
        lost = async {
            match leadership {
                Some(mut l) => l.lost().await,
                None => std::future::pending().await,
            }
        } => Err(ControllerError::Leadership(lost)),
    }
}
