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
