//! The Node object and its Lease: registration, status (capacity, allocatable, addresses,
//! nodeInfo, conditions) and the heartbeat, as kubelet's `nodestatus` and `nodelease` do.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use std::sync::Arc;

use futures::StreamExt;
use kube::ResourceExt;
use kube::runtime::{WatchStreamExt, watcher};

use super::machine::{self, MachineInfo, Pressure};
use super::{KubeletConfig, KubeletError, Shared};
use crate::network::{Ipv4Cidr, NetworkConfig, PodNetwork};

/// kubelet's `nodeStatusReportFrequency` when nothing changes (leases carry the heartbeat).
const STATUS_REPORT_PERIOD: Duration = Duration::from_secs(60);
pub const FIELD_MANAGER: &str = "skiff-agent";
pub const RUNTIME_VERSION: &str = concat!("skiff://", env!("CARGO_PKG_VERSION"));
/// The Kubernetes version whose API Skiff serves, reported as the kubelet's.
pub const KUBELET_VERSION: &str = "v1.35.0";

/// Whether the pod network is ready, and why not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkState {
    Ready,
    NotReady(String),
}

/// What the status reflects besides the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    pub network: NetworkState,
    pub pressure: Pressure,
}

/// The labels kubelet puts on its node.
pub fn node_labels(config: &KubeletConfig) -> BTreeMap<String, String> {
    let mut labels = config.node_labels.clone();
    labels.insert("kubernetes.io/hostname".into(), config.node_name.clone());
    labels.insert("kubernetes.io/os".into(), "linux".into());
    labels.insert(
        "kubernetes.io/arch".into(),
        machine::go_arch(std::env::consts::ARCH).into(),
    );
    labels.insert("beta.kubernetes.io/os".into(), "linux".into());
    labels.insert(
        "beta.kubernetes.io/arch".into(),
        machine::go_arch(std::env::consts::ARCH).into(),
    );
    labels
}

fn quantity(s: String) -> Quantity {
    Quantity(s)
}

/// Capacity and allocatable: allocatable is capacity less the hard eviction thresholds (and
/// the configured reservations), as kubelet computes it.
pub fn resources(
    machine: &MachineInfo,
    config: &KubeletConfig,
) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    let mut capacity = BTreeMap::new();
    capacity.insert("cpu".into(), quantity(machine.cpus.to_string()));
    capacity.insert(
        "memory".into(),
        quantity(format!("{}Ki", machine.memory_bytes / 1024)),
    );
    capacity.insert(
        "ephemeral-storage".into(),
        quantity(format!("{}Ki", machine.disk_bytes / 1024)),
    );
    capacity.insert("pods".into(), quantity(config.max_pods.to_string()));
    capacity.insert("hugepages-1Gi".into(), quantity("0".into()));
    capacity.insert("hugepages-2Mi".into(), quantity("0".into()));

    let mut allocatable = capacity.clone();
    let cpu_milli = (u64::from(machine.cpus) * 1000).saturating_sub(config.reserved_cpu_millis);
    allocatable.insert(
        "cpu".into(),
        quantity(if cpu_milli % 1000 == 0 {
            (cpu_milli / 1000).to_string()
        } else {
            format!("{cpu_milli}m")
        }),
    );
    let memory = machine
        .memory_bytes
        .saturating_sub(config.eviction_hard.memory_available_bytes)
        .saturating_sub(config.reserved_memory_bytes);
    allocatable.insert("memory".into(), quantity(format!("{}Ki", memory / 1024)));
    let disk = machine.disk_bytes / 100 * (100 - config.eviction_hard.nodefs_available_percent);
    allocatable.insert("ephemeral-storage".into(), quantity(disk.to_string()));
    (capacity, allocatable)
}

fn condition(kind: &str, status: bool, reason: &str, message: &str, now: &Time) -> NodeCondition {
    NodeCondition {
        type_: kind.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(now.clone()),
    }
}

/// The conditions kubelet reports, in kubelet's order.
pub fn conditions(facts: &NodeFacts, now: &Time) -> Vec<NodeCondition> {
    let p = facts.pressure;
    let mut out = vec![
        if p.memory {
            condition(
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
                now,
            )
        } else {
            condition(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                now,
            )
        },
        if p.disk {
            condition(
                "DiskPressure",
                true,
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
                now,
            )
        } else {
            condition(
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                now,
            )
        },
        if p.pids {
            condition(
                "PIDPressure",
                true,
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
                now,
            )
        } else {
            condition(
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
                now,
            )
        },
    ];
    out.push(match &facts.network {
        NetworkState::Ready => condition(
            "Ready",
            true,
            "KubeletReady",
            "kubelet is posting ready status",
            now,
        ),
        NetworkState::NotReady(why) => condition(
            "Ready",
            false,
            "KubeletNotReady",
            &format!(
                "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:{why}"
            ),
            now,
        ),
    });
    out
}

/// Keeps each condition's lastTransitionTime from `previous` while its status is unchanged.
fn carry_transition_times(conditions: &mut [NodeCondition], previous: &[NodeCondition]) {
    for c in conditions.iter_mut() {
        if let Some(old) = previous.iter().find(|o| o.type_ == c.type_)
            && old.status == c.status
            && old.last_transition_time.is_some()
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
}

/// The node's addresses: InternalIP then Hostname.
pub fn addresses(config: &KubeletConfig, node_ip: Ipv4Addr) -> Vec<NodeAddress> {
    vec![
        NodeAddress {
            type_: "InternalIP".into(),
            address: node_ip.to_string(),
        },
        NodeAddress {
            type_: "Hostname".into(),
            address: config.node_name.clone(),
        },
    ]
}

/// The full status this kubelet reports now.
pub fn status(
    config: &KubeletConfig,
    machine: &MachineInfo,
    node_ip: Ipv4Addr,
    facts: &NodeFacts,
    previous: Option<&NodeStatus>,
) -> NodeStatus {
    let now = Time(Timestamp::now());
    let (capacity, allocatable) = resources(machine, config);
    let mut conds = conditions(facts, &now);
    if let Some(prev) = previous.and_then(|p| p.conditions.as_ref()) {
        carry_transition_times(&mut conds, prev);
    }
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        addresses: Some(addresses(config, node_ip)),
        conditions: Some(conds),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(config.port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: machine.architecture.clone(),
            boot_id: machine.boot_id.clone(),
            container_runtime_version: RUNTIME_VERSION.into(),
            kernel_version: machine.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: machine.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: machine.os_image.clone(),
            system_uuid: machine.machine_id.clone(),
            swap: None,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Conditions without their heartbeat times: what decides whether a report is news.
fn comparable(status: &NodeStatus) -> serde_json::Value {
    let mut v = serde_json::to_value(status).unwrap_or_default();
    if let Some(conds) = v.get_mut("conditions").and_then(|c| c.as_array_mut()) {
        for c in conds {
            if let Some(o) = c.as_object_mut() {
                o.remove("lastHeartbeatTime");
            }
        }
    }
    v
}

/// Registers the node (or takes over an existing Node object of the same name, updating its
/// labels) and returns it.
pub async fn register(client: &Client, config: &KubeletConfig) -> Result<Node, KubeletError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut node = Node::default();
    node.metadata.name = Some(config.node_name.clone());
    node.metadata.labels = Some(node_labels(config));
    if !config.register_taints.is_empty() {
        node.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            taints: Some(config.register_taints.clone()),
            ..Default::default()
        });
    }
    match nodes.create(&PostParams::default(), &node).await {
        Ok(created) => {
            tracing::info!(node = %config.node_name, "registered the node");
            Ok(created)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let patch = json!({"metadata": {"labels": node_labels(config)}});
            let existing = nodes
                .patch(
                    &config.node_name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(|e| KubeletError::api("updating the existing Node", e))?;
            tracing::info!(node = %config.node_name, "the node was registered before; carrying on");
            Ok(existing)
        }
        Err(e) => Err(KubeletError::api("registering the Node", e)),
    }
}

/// Reports the node's status when it changed or every [`STATUS_REPORT_PERIOD`].
pub struct StatusReporter {
    last: Option<(serde_json::Value, Instant)>,
    reported: Option<NodeStatus>,
}

impl StatusReporter {
    pub fn new() -> StatusReporter {
        StatusReporter {
            last: None,
            reported: None,
        }
    }

    pub async fn report(
        &mut self,
        client: &Client,
        status: NodeStatus,
        node_name: &str,
    ) -> Result<bool, KubeletError> {
        let key = comparable(&status);
        if let Some((last, at)) = &self.last
            && *last == key
            && at.elapsed() < STATUS_REPORT_PERIOD
        {
            return Ok(false);
        }
        let nodes: Api<Node> = Api::all(client.clone());
        let patch = json!({"status": status});
        nodes
            .patch_status(node_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| KubeletError::api("updating the Node's status", e))?;
        self.last = Some((key, Instant::now()));
        self.reported = Some(status);
        Ok(true)
    }

    pub fn reported(&self) -> Option<&NodeStatus> {
        self.reported.as_ref()
    }
}

impl Default for StatusReporter {
    fn default() -> Self {
        Self::new()
    }
}

/// Creates or renews the node's Lease in kube-node-lease, owned by the Node.
pub async fn renew_lease(
    client: &Client,
    config: &KubeletConfig,
    node: &Node,
) -> Result<(), KubeletError> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = MicroTime(Timestamp::now());
    let owner = OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: config.node_name.clone(),
        uid: node.metadata.uid.clone().unwrap_or_default(),
        ..Default::default()
    };
    let patch = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": config.node_name, "namespace": "kube-node-lease",
            "ownerReferences": [owner]},
        "spec": {
            "holderIdentity": config.node_name,
            "leaseDurationSeconds": config.lease_duration_seconds,
            "renewTime": now,
        },
    });
    leases
        .patch(
            &config.node_name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|e| KubeletError::api("renewing the node's Lease", e))?;
    Ok(())
}

/// The node's loops: Lease renewal, status reports, and the Node watch that brings the pod
/// network up once this node has a podCIDR and keeps the routes to the other nodes current.
pub async fn heartbeat(shared: Arc<Shared>, machine: MachineInfo, registered: Node) {
    let config = &shared.config;
    let mut node = registered;
    let mut reporter = StatusReporter::new();
    let mut lease_tick = tokio::time::interval(config.lease_renew_interval);
    let mut status_tick = tokio::time::interval(config.status_update_interval);
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let mut node_events = watcher(nodes, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut all_nodes: BTreeMap<String, Node> = BTreeMap::new();
    let mut listing: BTreeMap<String, Node> = BTreeMap::new();
    let mut network_error: Option<String> = None;
    loop {
        let mut nodes_changed = false;
        tokio::select! {
            _ = lease_tick.tick() => {
                if let Err(e) = renew_lease(&shared.client, config, &node).await {
                    tracing::warn!(error = %e, "lease renewal failed");
                }
                continue;
            }
            _ = status_tick.tick() => {}
            event = node_events.next() => {
                match event {
                    Some(Ok(watcher::Event::Init)) => listing.clear(),
                    Some(Ok(watcher::Event::InitApply(n))) => {
                        listing.insert(n.name_any(), n);
                    }
                    Some(Ok(watcher::Event::InitDone)) => {
                        all_nodes = std::mem::take(&mut listing);
                        nodes_changed = true;
                    }
                    Some(Ok(watcher::Event::Apply(n))) => {
                        all_nodes.insert(n.name_any(), n);
                        nodes_changed = true;
                    }
                    Some(Ok(watcher::Event::Delete(n))) => {
                        all_nodes.remove(&n.name_any());
                        nodes_changed = true;
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "node watch"),
                    None => return,
                }
                if !nodes_changed {
                    continue;
                }
            }
        }
        if let Some(own) = all_nodes.get(&config.node_name) {
            node = own.clone();
        }
        if nodes_changed {
            network_error = sync_network(&shared, &node, &all_nodes).await.err();
        }
        let network = if config.disable_pod_network || shared.network.read().await.is_some() {
            NetworkState::Ready
        } else {
            NetworkState::NotReady(
                network_error
                    .clone()
                    .unwrap_or_else(|| "the node has no podCIDR yet".to_string()),
            )
        };
        let facts = NodeFacts {
            network,
            pressure: machine::pressure(&config.runtime.data_dir, &config.eviction_hard),
        };
        let previous = reporter.reported().cloned().or_else(|| node.status.clone());
        let status = status(config, &machine, shared.node_ip, &facts, previous.as_ref());
        if let Err(e) = reporter
            .report(&shared.client, status, &config.node_name)
            .await
        {
            tracing::warn!(error = %e, "node status update failed");
        }
    }
}

/// Brings the pod network up when the node first has a podCIDR, then routes to the other
/// nodes' podCIDRs.
async fn sync_network(
    shared: &Arc<Shared>,
    own: &Node,
    all: &BTreeMap<String, Node>,
) -> Result<(), String> {
    let config = &shared.config;
    if config.disable_pod_network {
        return Ok(());
    }
    let existing = shared.network.read().await.clone();
    let network = match existing {
        Some(n) => n,
        None => {
            let Some(pod_cidr) = own.spec.as_ref().and_then(|s| s.pod_cidr.clone()) else {
                return Err("the node has no podCIDR yet".into());
            };
            let net_config = NetworkConfig {
                bridge: BRIDGE.into(),
                pod_cidr: pod_cidr
                    .parse()
                    .map_err(|e| format!("podCIDR {pod_cidr:?}: {e}"))?,
                cluster_cidr: config
                    .cluster_cidr
                    .parse()
                    .map_err(|e| format!("cluster CIDR: {e}"))?,
                service_cidr: config
                    .service_cidr
                    .parse()
                    .map_err(|e| format!("service CIDR: {e}"))?,
                state_dir: config.root_dir.join("network"),
            };
            let network = tokio::task::spawn_blocking(move || {
                let network = PodNetwork::new(net_config)?;
                network.ensure_node()?;
                Ok::<_, crate::network::NetworkError>(network)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            let network = Arc::new(network);
            *shared.network.write().await = Some(network.clone());
            tracing::info!(pod_cidr, "pod network ready");
            network
        }
    };
    let peers: Vec<(Ipv4Cidr, Ipv4Addr)> = all
        .values()
        .filter(|n| n.metadata.name.as_deref() != Some(config.node_name.as_str()))
        .filter_map(|n| {
            let cidr = n.spec.as_ref()?.pod_cidr.as_ref()?.parse().ok()?;
            let ip = n
                .status
                .as_ref()?
                .addresses
                .iter()
                .flatten()
                .find(|a| a.type_ == "InternalIP")?
                .address
                .parse()
                .ok()?;
            Some((cidr, ip))
        })
        .collect();
    tokio::task::spawn_blocking(move || network.sync_peer_routes(&peers))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// The node's bridge.
pub const BRIDGE: &str = "skiff0";

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> KubeletConfig {
        KubeletConfig::new("n1")
    }

    fn machine() -> MachineInfo {
        MachineInfo {
            cpus: 2,
            memory_bytes: 4 * 1024 * 1024 * 1024,
            disk_bytes: 100 * 1024 * 1024 * 1024,
            kernel_version: "6.1".into(),
            os_image: "Debian".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            architecture: "amd64".into(),
        }
    }

    #[test]
    fn allocatable_is_capacity_less_eviction_thresholds() {
        let (cap, alloc) = resources(&machine(), &config());
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(cap["memory"].0, "4194304Ki");
        assert_eq!(cap["pods"].0, "110");
        assert_eq!(alloc["cpu"].0, "2");
        assert_eq!(
            alloc["memory"].0,
            format!("{}Ki", 4 * 1024 * 1024 - 100 * 1024)
        );
        let mut reserved = config();
        reserved.reserved_cpu_millis = 250;
        let (_, alloc) = resources(&machine(), &reserved);
        assert_eq!(alloc["cpu"].0, "1750m");
    }

    #[test]
    fn ready_follows_the_network_and_transitions_are_kept() {
        let now = Time(Timestamp::now());
        let facts = NodeFacts {
            network: NetworkState::NotReady("no podCIDR yet".into()),
            pressure: Pressure::default(),
        };
        let conds = conditions(&facts, &now);
        let types: Vec<&str> = conds.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
        assert_eq!(conds[3].status, "False");
        assert!(
            conds[3]
                .message
                .as_deref()
                .is_some_and(|m| m.contains("NetworkReady=false"))
        );
        let earlier = Time(Timestamp::from_second(1000).expect("time"));
        let mut previous = conds.clone();
        for c in &mut previous {
            c.last_transition_time = Some(earlier.clone());
        }
        let ready = NodeFacts {
            network: NetworkState::Ready,
            pressure: Pressure::default(),
        };
        let mut now_conds = conditions(&ready, &now);
        carry_transition_times(&mut now_conds, &previous);
        assert_eq!(now_conds[0].last_transition_time, Some(earlier));
        assert_eq!(now_conds[3].status, "True");
        assert_eq!(now_conds[3].last_transition_time, Some(now));
    }
}
