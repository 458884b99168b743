//! The caches the node controllers share (client-go's shared informer factory for them): one
//! watch each of nodes, pods and node Leases, and a signal raised on every change.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::manager::ControllerError;

/// Where kubelets keep their heartbeat Leases (`v1.NamespaceNodeLease`).
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

#[derive(Clone)]
pub struct NodeInformers {
    pub nodes: Store<Node>,
    pub pods: Store<Pod>,
    pub leases: Store<Lease>,
    /// Counts the changes to any of the caches: a receiver wakes on the next one.
    changes: Arc<watch::Sender<u64>>,
}

impl NodeInformers {
    /// Starts the watches; the future keeps the caches current and only returns (with an
    /// error) if a watch stream ends.
    pub fn start(
        client: &Client,
        name: &'static str,
    ) -> (
        NodeInformers,
        impl std::future::Future<Output = Result<(), ControllerError>> + Send + use<>,
    ) {
        let changed = Arc::new(watch::Sender::new(0));
        let (nodes, node_writer) = reflector::store();
        let (pods, pod_writer) = reflector::store();
        let (leases, lease_writer) = reflector::store();
        let node_events = cache(
            Api::<Node>::all(client.clone()),
            node_writer,
            changed.clone(),
        );
        let pod_events = cache(Api::<Pod>::all(client.clone()), pod_writer, changed.clone());
        let lease_events = cache(
            Api::<Lease>::namespaced(client.clone(), NODE_LEASE_NAMESPACE),
            lease_writer,
            changed.clone(),
        );
        let driver = async move {
            tokio::select! {
                () = node_events => {}
                () = pod_events => {}
                () = lease_events => {}
            }
            Err(ControllerError::Stopped {
                controller: name,
                reason: "a node, pod or lease watch ended".into(),
            })
        };
        (
            NodeInformers {
                nodes,
                pods,
                leases,
                changes: changed,
            },
            driver,
        )
    }

    /// A receiver that sees every change from now on (`changed().await`).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Waits until every cache has its initial list.
    pub async fn wait_until_ready(&self) -> Result<(), ControllerError> {
        let gone = |_| ControllerError::Stopped {
            controller: "node informers",
            reason: "a cache stopped before its first list".into(),
        };
        self.nodes.wait_until_ready().await.map_err(gone)?;
        self.pods.wait_until_ready().await.map_err(gone)?;
        self.leases.wait_until_ready().await.map_err(gone)?;
        Ok(())
    }
}

/// Drops `metadata.managedFields` from an object about to be cached, as upstream's controller
/// manager and scheduler informers do (`TransformStripManagedFields`): no controller reads
/// them, and each entry's `fieldsV1` is a JSON tree kept for every cached copy of every pod.
pub fn strip_managed_fields<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// Mirrors `api` into `writer`, raising `changed` on every event, until the watch ends
/// (kube-rs's watcher retries errors with backoff itself).
async fn cache<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    changed: Arc<watch::Sender<u64>>,
) where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(strip_managed_fields)
        .reflect(writer)
        .for_each(|event| {
            if let Err(e) = &event {
                tracing::debug!(error = %e, "node informer watch error (retrying)");
            }
            changed.send_modify(|n| *n = n.wrapping_add(1));
            async {}
        })
        .await;
}
