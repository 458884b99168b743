//! Skiff's node agent: the kubelet, the pod network and the Service proxy of one node.
//!
//! - [`kubelet`]: registers the Node and renews its Lease, watches the pods bound here and
//!   runs each through [`skiff_runtime`] with a per-pod worker (syncing → terminating →
//!   terminated), and writes their status.
//! - [`network`]: the node's bridge (`skiff0`), one veth per pod sandbox, pod IPs from the
//!   node's podCIDR (recorded on disk), routes to the other nodes' podCIDRs (host-gw).
//! - [`proxy`]: kube-proxy's iptables mode, rules from Services and EndpointSlices.
//! - [`server`]: the agent's own HTTP port: container logs and exec, which the API server's
//!   `pods/log` and `pods/exec` proxy to.
//! - [`naming`]: the names the parts agree on (runtime ids, labels, log paths).
//!
//! Only the API server touches storage: the agent reads and writes through the API alone.

pub mod kubelet;
pub mod naming;
pub mod network;
pub mod proxy;
pub mod server;

use std::future::Future;

/// Runs the node agent — kubelet and Service proxy — until `shutdown` resolves. Pods keep
/// running after it returns, and the proxy's rules stay in place.
pub async fn run(
    client: kube::Client,
    mut config: kubelet::KubeletConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), kubelet::KubeletError> {
    let node_ip = config.node_ip.unwrap_or_else(kubelet::detect_node_ip);
    config.node_ip = Some(node_ip);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let mut proxy_config = proxy::ProxyConfig::new(config.node_name.clone());
    proxy_config.cluster_cidr = config.cluster_cidr.parse().ok();
    let proxier = tokio::spawn(proxy::Proxier::run(
        client.clone(),
        proxy_config,
        stopped(stop_rx.clone()),
    ));
    let listen = std::net::SocketAddr::from((node_ip, config.port));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| kubelet::KubeletError::Io {
            context: format!("listening on {listen} for logs and exec"),
            source,
        })?;
    let server = tokio::spawn(server::serve(
        listener,
        server::ServerContext {
            runtime: std::sync::Arc::new(skiff_runtime::container::Runtime::new(
                config.runtime.clone(),
            )),
            log_root: config.log_root(),
        },
        stopped(stop_rx.clone()),
    ));
    let kubelet = tokio::spawn(kubelet::run(client, config, stopped(stop_rx)));
    shutdown.await;
    let _ = stop_tx.send(true);
    match proxier.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "the service proxy stopped"),
        Err(e) => tracing::warn!(error = %e, "the service proxy failed"),
        Ok(Ok(())) => {}
    }
    match server.await {
        Ok(Err(e)) => tracing::warn!(error = %e, "the logs/exec server stopped"),
        Err(e) => tracing::warn!(error = %e, "the logs/exec server failed"),
        Ok(Ok(())) => {}
    }
    kubelet
        .await
        .map_err(|e| kubelet::KubeletError::Other(format!("the kubelet failed: {e}")))?
}

/// Removes everything the agent made on this node: every pod's containers and sandbox (with
/// their mounts and cgroups), the pods' volumes, and the pod network.
pub fn cleanup(config: &kubelet::KubeletConfig) -> Result<(), kubelet::KubeletError> {
    let runtime = skiff_runtime::container::Runtime::new(config.runtime.clone());
    let mut failures = Vec::new();
    let containers = runtime.list().unwrap_or_default();
    // Containers before sandboxes: a sandbox's removal takes the pod cgroup.
    let (sandboxes, others): (Vec<_>, Vec<_>) = containers
        .into_iter()
        .filter(|c| c.stored.labels.contains_key(naming::LABEL_POD_UID))
        .partition(|c| {
            c.stored
                .labels
                .get(naming::LABEL_CONTAINER_KIND)
                .map(String::as_str)
                == Some("sandbox")
        });
    for c in others {
        if let Err(e) = runtime.delete(c.id(), true) {
            failures.push(format!("container {}: {e}", c.id()));
        }
    }
    for s in sandboxes {
        if let Err(e) = runtime.remove_sandbox(s.id()) {
            failures.push(format!("sandbox {}: {e}", s.id()));
        }
    }
    if let Ok(pods) = std::fs::read_dir(config.pods_dir()) {
        for pod in pods.flatten() {
            if let Err(e) = kubelet::volumes::teardown(&pod.path()) {
                failures.push(format!("volumes of {}: {e}", pod.path().display()));
            }
            let _ = std::fs::remove_dir_all(pod.path());
        }
    }
    // The network's cleanup goes by the bridge, the routes' protocol and the state dir; the
    // ranges are only there to fill the config.
    let parse = |text: &str| text.parse::<network::Ipv4Cidr>();
    match (parse(&config.cluster_cidr), parse(&config.service_cidr)) {
        (Ok(cluster), Ok(service)) => {
            let net = network::NetworkConfig {
                bridge: kubelet::node::BRIDGE.into(),
                pod_cidr: cluster,
                cluster_cidr: cluster,
                service_cidr: service,
                state_dir: config.root_dir.join("network"),
            };
            if let Err(e) = network::PodNetwork::cleanup(&net) {
                failures.push(format!("pod network: {e}"));
            }
        }
        _ => failures.push("pod network: the cluster or service CIDR does not parse".into()),
    }
    if let Err(e) = proxy::Proxier::cleanup() {
        failures.push(format!("service proxy rules: {e}"));
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(kubelet::KubeletError::Other(failures.join("; ")))
    }
}
