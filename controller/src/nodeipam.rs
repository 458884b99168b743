//! kube-controller-manager's node IPAM controller with its range allocator
//! (`--allocate-node-cidrs`): every node gets `spec.podCIDR`/`spec.podCIDRs`, a block of the
//! cluster CIDR (default 10.244.0.0/16, a /24 per node), never one another node holds.
//!
//! The blocks in use are read from the node cache when a node needs one, plus the blocks this
//! controller has handed out whose nodes the cache does not show with them yet (the patch is in
//! flight or its watch event is): so a restart loses nothing, and a slow watch never hands a
//! block out twice. A deleted node's block is free again once the cache drops the node. As
//! upstream's `CidrSet`, the search for a free block starts after the last one handed out.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::events::{EventRecorder, EventType};
use crate::manager::{ControllerError, drive};

/// kube-controller-manager's name for it (`--controllers`).
pub const NAME: &str = "node-ipam-controller";

/// When to look again at a node no block was left for, or whose patch failed.
const RETRY: Duration = Duration::from_secs(5);

/// An IPv4 network: an address with its host bits zero, and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    network: u32,
    prefix: u8,
}

impl Ipv4Cidr {
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn host_bits(prefix: u8) -> u32 {
        32 - u32::from(prefix)
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (address/prefix)"))?;
        let addr: Ipv4Addr = addr
            .parse()
            .map_err(|e| format!("{s:?}: {e} (only IPv4 is supported)"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{s:?}: the prefix must be 0 to 32"))?;
        let network = u32::from(addr);
        let mask = u32::MAX.checked_shl(Self::host_bits(prefix)).unwrap_or(0);
        if network & !mask != 0 {
            return Err(format!(
                "{s:?} has host bits set (the network is {}/{prefix})",
                Ipv4Addr::from(network & mask)
            ));
        }
        Ok(Ipv4Cidr { network, prefix })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

/// `--cluster-cidr` and `--node-cidr-mask-size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIpamConfig {
    pub cluster_cidr: Ipv4Cidr,
    pub node_mask_size: u8,
}

impl Default for NodeIpamConfig {
    fn default() -> Self {
        NodeIpamConfig {
            cluster_cidr: Ipv4Cidr {
                network: u32::from(Ipv4Addr::new(10, 244, 0, 0)),
                prefix: 16,
            },
            node_mask_size: 24,
        }
    }
}

/// The cluster CIDR cut into node blocks, numbered from 0.
#[derive(Debug, Clone)]
struct CidrSet {
    cluster: Ipv4Cidr,
    node_prefix: u8,
    blocks: u32,
}

impl CidrSet {
    fn new(config: &NodeIpamConfig) -> Result<CidrSet, String> {
        let (cluster, node_prefix) = (config.cluster_cidr, config.node_mask_size);
        // Upstream refuses a node mask more than 16 bits longer than the cluster's.
        if node_prefix < cluster.prefix || node_prefix > 32 || node_prefix - cluster.prefix > 16 {
            return Err(format!(
                "--node-cidr-mask-size {node_prefix} does not fit --cluster-cidr {cluster} \
                 (it must be at least the cluster's prefix and at most 16 more)"
            ));
        }
        Ok(CidrSet {
            cluster,
            node_prefix,
            blocks: 1 << (node_prefix - cluster.prefix),
        })
    }

    fn block(&self, index: u32) -> Ipv4Cidr {
        Ipv4Cidr {
            network: self.cluster.network + (index << Ipv4Cidr::host_bits(self.node_prefix)),
            prefix: self.node_prefix,
        }
    }

    /// The block number of `cidr`, if it is one of this set's blocks.
    fn index_of(&self, cidr: &Ipv4Cidr) -> Option<u32> {
        let offset = cidr.network.checked_sub(self.cluster.network)?;
        let index = offset >> Ipv4Cidr::host_bits(self.node_prefix);
        (cidr.prefix == self.node_prefix && index < self.blocks).then_some(index)
    }

    /// The first free block at or after `start`, wrapping around.
    fn next_free(&self, used: &HashSet<u32>, start: u32) -> Option<u32> {
        (0..self.blocks)
            .map(|i| (start.wrapping_add(i)) % self.blocks)
            .find(|i| !used.contains(i))
    }
}

struct Context {
    client: Client,
    nodes: Store<Node>,
    set: CidrSet,
    allocator: Mutex<Allocations>,
}

/// Blocks handed out that the node cache may not show yet, by node name; and where the next
/// search starts.
#[derive(Default)]
struct Allocations {
    in_flight: HashMap<String, u32>,
    next: u32,
    /// Nodes told (by an Event) that no block was left, so that waiting is told once.
    told_full: HashSet<String>,
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("the node cache stopped")]
    NodeCacheGone,
    #[error("setting podCIDR {cidr} on node {node}: {source}")]
    Patch {
        node: String,
        cidr: Ipv4Cidr,
        source: kube::Error,
    },
}

/// Runs the controller until its watch ends; a cluster CIDR the node mask does not fit stops
/// it at once.
pub async fn run(client: Client, config: NodeIpamConfig) -> Result<(), ControllerError> {
    let set = CidrSet::new(&config).map_err(|reason| ControllerError::Stopped {
        controller: NAME,
        reason,
    })?;
    let controller = Controller::new(Api::<Node>::all(client.clone()), watcher::Config::default());
    let ctx = Arc::new(Context {
        client,
        nodes: controller.store(),
        set,
        allocator: Mutex::new(Allocations::default()),
    });
    drive(NAME, controller.run(sync, error_policy, ctx)).await
}

fn error_policy(_node: Arc<Node>, error: &SyncError, _ctx: Arc<Context>) -> Action {
    tracing::debug!(controller = NAME, %error, "retrying");
    Action::requeue(RETRY)
}

fn pod_cidrs(node: &Node) -> Vec<String> {
    let spec = node.spec.as_ref();
    let mut all: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if let Some(single) = spec.and_then(|s| s.pod_cidr.clone())
        && !single.is_empty()
        && !all.contains(&single)
    {
        all.push(single);
    }
    all
}

/// Upstream's `rangeAllocator.AllocateOrOccupyCIDR`.
async fn sync(node: Arc<Node>, ctx: Arc<Context>) -> Result<Action, SyncError> {
    ctx.nodes
        .wait_until_ready()
        .await
        .map_err(|_| SyncError::NodeCacheGone)?;
    if !pod_cidrs(&node).is_empty() || node.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let name = node.name_any();
    let Some(cidr) = allocate(&ctx, &name) else {
        if ctx.lock().told_full.insert(name.clone()) {
            tracing::warn!(controller = NAME, node = %name, cluster_cidr = %ctx.set.cluster,
                "no pod CIDR left for the node");
            record_no_cidr(&ctx, &node).await;
        }
        return Ok(Action::requeue(RETRY));
    };
    let patch = json!({"spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]}});
    let params = PatchParams {
        field_manager: Some(NAME.into()),
        ..Default::default()
    };
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    match nodes.patch(&name, &params, &Patch::Strategic(patch)).await {
        Ok(_) => {
            tracing::info!(controller = NAME, node = %name, %cidr, "pod CIDR allocated");
            Ok(Action::await_change())
        }
        Err(source) => {
            ctx.lock().in_flight.remove(&name);
            match source {
                // Gone: its block is free with it.
                kube::Error::Api(s) if s.code == 404 => Ok(Action::await_change()),
                source => Err(SyncError::Patch {
                    node: name,
                    cidr,
                    source,
                }),
            }
        }
    }
}

impl Context {
    fn lock(&self) -> std::sync::MutexGuard<'_, Allocations> {
        self.allocator.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Picks a free block for node `name` and records it as in flight. Under one lock, so that
/// nodes synced at the same time never get the same block.
fn allocate(ctx: &Context, name: &str) -> Option<Ipv4Cidr> {
    let mut allocations = ctx.lock();
    let nodes = ctx.nodes.state();
    let mut used = HashSet::new();
    let mut shown: HashMap<String, Vec<u32>> = HashMap::new();
    for node in &nodes {
        let blocks: Vec<u32> = pod_cidrs(node)
            .iter()
            .filter_map(|c| c.parse::<Ipv4Cidr>().ok())
            .filter_map(|c| ctx.set.index_of(&c))
            .collect();
        used.extend(blocks.iter().copied());
        shown.insert(node.name_any(), blocks);
    }
    // An in-flight block is settled once its node shows it, or once the node is gone.
    allocations
        .in_flight
        .retain(|node, block| shown.get(node).is_some_and(|b| !b.contains(block)));
    if let Some(&block) = allocations.in_flight.get(name) {
        return Some(ctx.set.block(block));
    }
    used.extend(allocations.in_flight.values().copied());
    let block = ctx.set.next_free(&used, allocations.next)?;
    allocations.next = (block + 1) % ctx.set.blocks;
    allocations.in_flight.insert(name.to_string(), block);
    allocations.told_full.remove(name);
    Some(ctx.set.block(block))
}

/// Upstream's `recordNodeStatusChange(..., "CIDRNotAvailable")`.
async fn record_no_cidr(ctx: &Context, node: &Node) {
    let name = node.name_any();
    EventRecorder::new(ctx.client.clone(), "cidrAllocator")
        .record(
            node,
            EventType::Normal,
            "CIDRNotAvailable",
            format!("Node {name} status is now: CIDRNotAvailable"),
        )
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().expect("cidr")
    }

    #[test]
    fn cidrs_parse_and_print() {
        assert_eq!(cidr("10.244.0.0/16").to_string(), "10.244.0.0/16");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        for bad in [
            "10.244.0.0",
            "10.244.0.1/16",
            "10.244.0.0/33",
            "fd00::/64",
            "x/8",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_cluster_cidr_is_cut_into_node_blocks() {
        let set = CidrSet::new(&NodeIpamConfig::default()).expect("set");
        assert_eq!(set.blocks, 256);
        assert_eq!(set.block(0), cidr("10.244.0.0/24"));
        assert_eq!(set.block(255), cidr("10.244.255.0/24"));
        assert_eq!(set.index_of(&cidr("10.244.7.0/24")), Some(7));
        assert_eq!(set.index_of(&cidr("10.245.0.0/24")), None, "outside");
        assert_eq!(set.index_of(&cidr("10.244.7.0/25")), None, "another size");
        assert_eq!(set.index_of(&cidr("10.243.0.0/24")), None, "below");

        let used: HashSet<u32> = [0, 1, 3].into_iter().collect();
        assert_eq!(set.next_free(&used, 0), Some(2));
        assert_eq!(
            set.next_free(&used, 3),
            Some(4),
            "the search starts where asked"
        );
        let all: HashSet<u32> = (0..256).collect();
        assert_eq!(set.next_free(&all, 0), None);

        let bad = |cluster: &str, mask| {
            CidrSet::new(&NodeIpamConfig {
                cluster_cidr: cidr(cluster),
                node_mask_size: mask,
            })
            .is_err()
        };
        assert!(
            bad("10.244.0.0/16", 15),
            "a node block larger than the cluster"
        );
        assert!(bad("10.0.0.0/8", 25), "more than 16 bits longer");
        assert!(!bad("10.244.0.0/23", 24));
    }
}
