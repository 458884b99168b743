use std::net::Ipv4Addr;
use std::time::Duration;

pub use crate::network::Ipv4Cidr;

/// How the proxy programs this node.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// This node's name: endpoints whose `nodeName` it is are local (traffic policy `Local`).
    pub node_name: String,
    /// The addresses NodePorts answer on (kube-proxy's `--nodeport-addresses`). Empty: every
    /// local address (`-m addrtype --dst-type LOCAL`), as kube-proxy by default.
    pub node_ips: Vec<Ipv4Addr>,
    /// The pods' addresses. Traffic to a ClusterIP from outside it is masqueraded, and with
    /// `externalTrafficPolicy: Local` pods still reach every endpoint. `None`: neither.
    pub cluster_cidr: Option<Ipv4Cidr>,
    /// NodePorts on 127.0.0.1 too (kube-proxy's `--iptables-localhost-nodeports`, its
    /// default): sets `net.ipv4.conf.all.route_localnet=1` and drops martian localnet packets.
    pub localhost_node_ports: bool,
    /// Least time between two syncs, so a burst of changes is applied once.
    pub min_sync_interval: Duration,
    /// Longest time between two syncs, which repair rules someone else changed.
    pub sync_period: Duration,
}

impl ProxyConfig {
    /// kube-proxy's defaults: NodePorts on every local address including localhost, 1 s
    /// between syncs at least and 30 s at most.
    pub fn new(node_name: impl Into<String>) -> ProxyConfig {
        ProxyConfig {
            node_name: node_name.into(),
            node_ips: Vec::new(),
            cluster_cidr: None,
            localhost_node_ports: true,
            min_sync_interval: Duration::from_secs(1),
            sync_period: Duration::from_secs(30),
        }
    }
}
