//! The Service proxy: kube-proxy's iptables mode.
//!
//! [`Proxier::run`] keeps reflectors of every Service and EndpointSlice and, after each burst
//! of changes (and every [`ProxyConfig::sync_period`]), writes the whole rule set
//! ([`build_ruleset`], a pure function) with one `iptables-restore --noflush`, then makes sure
//! the built-in chains jump to ours. Only `SKIFF-*` chains are ever written, so other users of
//! iptables on the node are left alone; [`Proxier::cleanup`] removes them all.
//!
//! Not done (yet) compared with kube-proxy: IPv6, topology-aware hints,
//! `loadBalancerSourceRanges`, health-check NodePorts, clearing stale UDP conntrack entries
//! after endpoint changes, partial syncs (every sync writes every chain).

mod config;
mod iptables;
mod model;
mod rules;

use std::future::Future;
use std::sync::Arc;

use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::reflector::{self, Store, reflector};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, warn};

pub use config::{Ipv4Cidr, ProxyConfig};
pub use model::SERVICE_NAME_LABEL;
pub use rules::{
    CHAIN_PREFIX, MASQUERADE_MARK, build_ruleset, endpoint_chain, external_chain, local_chain,
    service_chain,
};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("running {command}: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("setting {path}: {source}")]
    Sysctl {
        path: &'static str,
        source: std::io::Error,
    },
    #[error("the Service or EndpointSlice watch stopped")]
    WatchStopped,
}

/// Lets packets to 127.0.0.0/8 be routed elsewhere once DNAT changed their destination, which
/// localhost NodePorts need (kube-proxy sets the same sysctl).
const ROUTE_LOCALNET: &str = "/proc/sys/net/ipv4/conf/all/route_localnet";

/// The node's Service proxy.
pub struct Proxier;

impl Proxier {
    /// Programs the node from the API until `shutdown` completes. Rules stay in place when it
    /// returns, so Services keep working while the agent restarts. Fails when iptables cannot
    /// be programmed at all; a failed sync is logged and retried.
    pub async fn run(
        client: kube::Client,
        config: ProxyConfig,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ProxyError> {
        if config.localhost_node_ports {
            std::fs::write(ROUTE_LOCALNET, "1").map_err(|source| ProxyError::Sysctl {
                path: ROUTE_LOCALNET,
                source,
            })?;
        }
        let changed = Arc::new(Notify::new());
        let (services, services_writer) = reflector::store::<Service>();
        let (slices, slices_writer) = reflector::store::<EndpointSlice>();
        let service_events = reflector(
            services_writer,
            watcher(
                Api::<Service>::all(client.clone()),
                watcher::Config::default(),
            )
            .default_backoff(),
        )
        .map(|event| event.map(|_| ()));
        let slice_events = reflector(
            slices_writer,
            watcher(
                Api::<EndpointSlice>::all(client),
                watcher::Config::default().labels(SERVICE_NAME_LABEL),
            )
            .default_backoff(),
        )
        .map(|event| event.map(|_| ()));
        let watches = futures::stream::select(service_events, slice_events).for_each(|event| {
            match event {
                Ok(()) => changed.notify_one(),
                Err(error) => warn!(%error, "Service/EndpointSlice watch failed; retrying"),
            }
            future::ready(())
        });

        tokio::select! {
            () = shutdown => Ok(()),
            () = watches => Err(ProxyError::WatchStopped),
            result = sync_loop(&config, &services, &slices, &changed) => result,
        }
    }

    /// Programs the node once for these objects: reads the nat table's chains (to delete
    /// stale ones), restores [`build_ruleset`]'s output and inserts the jump rules.
    pub fn apply(
        config: &ProxyConfig,
        services: &[Service],
        slices: &[EndpointSlice],
    ) -> Result<(), ProxyError> {
        let existing = iptables::chains("nat")?;
        let input = build_ruleset(config, services, slices, &existing);
        iptables::restore(&input)?;
        iptables::ensure_jumps()
    }

    /// Removes every `SKIFF-*` chain of the filter and nat tables and the jumps into them.
    pub fn cleanup() -> Result<(), ProxyError> {
        iptables::cleanup()
    }
}

async fn sync_loop(
    config: &ProxyConfig,
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    changed: &Notify,
) -> Result<(), ProxyError> {
    if services.wait_until_ready().await.is_err() || slices.wait_until_ready().await.is_err() {
        return Err(ProxyError::WatchStopped);
    }
    let mut last_sync: Option<Instant> = None;
    let mut retry = false;
    loop {
        if let Some(last) = last_sync {
            let wait = if retry {
                config.min_sync_interval
            } else {
                config.sync_period
            };
            // A change or the periodic resync, whichever comes first.
            let _ = tokio::time::timeout_at(last + wait, changed.notified()).await;
            // Changes closer together than min_sync_interval are applied together.
            tokio::time::sleep_until(last + config.min_sync_interval).await;
        }
        let service_list: Vec<Service> = services.state().iter().map(|s| (**s).clone()).collect();
        let slice_list: Vec<EndpointSlice> = slices.state().iter().map(|s| (**s).clone()).collect();
        let started = Instant::now();
        let task_config = config.clone();
        let result = tokio::task::spawn_blocking(move || {
            Proxier::apply(&task_config, &service_list, &slice_list)
        })
        .await;
        last_sync = Some(Instant::now());
        match result {
            Ok(Ok(())) => {
                retry = false;
                debug!(elapsed = ?started.elapsed(), "synced proxy rules");
            }
            Ok(Err(error)) => {
                retry = true;
                warn!(%error, "syncing proxy rules failed; retrying");
            }
            Err(error) => {
                retry = true;
                warn!(%error, "the proxy sync task failed; retrying");
            }
        }
    }
}

#[cfg(test)]
mod tests;
