//! What plugins see of the cluster: pods with their requests worked out once (`PodInfo`), nodes
//! with what is allocatable and what their pods use (`NodeInfo`), and a `Snapshot` of all nodes
//! taken at the start of a cycle.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Node, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use skiff_apimachinery::quantity;

/// Upstream's defaults for scoring a container without requests (`GetNonzeroRequests`): 100m
/// CPU and 200 MiB memory, so that best-effort pods still spread.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of each resource, in upstream's units: milli-CPU, bytes, pod count, and the
/// scalar (extended, hugepages) resources by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub allowed_pods: i64,
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// From a resource list (requests, limits, allocatable, overhead).
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list.into_iter().flatten() {
            r.set(name, &q.0);
        }
        r
    }

    fn set(&mut self, name: &str, text: &str) {
        let Some(q) = quantity::Quantity::parse(text) else {
            return;
        };
        match name {
            // Milli-units, rounded up as upstream's MilliValue does.
            "cpu" => self.milli_cpu = ceil_div(q.nanos, 1_000_000),
            "memory" => self.memory = ceil_div(q.nanos, 1_000_000_000),
            "ephemeral-storage" => self.ephemeral_storage = ceil_div(q.nanos, 1_000_000_000),
            "pods" => self.allowed_pods = ceil_div(q.nanos, 1_000_000_000),
            other if is_scalar_resource(other) => {
                self.scalar
                    .insert(other.to_string(), ceil_div(q.nanos, 1_000_000_000));
            }
            _ => {}
        }
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral_storage += other.ephemeral_storage;
        self.allowed_pods += other.allowed_pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, other: &Resources) {
        self.milli_cpu -= other.milli_cpu;
        self.memory -= other.memory;
        self.ephemeral_storage -= other.ephemeral_storage;
        self.allowed_pods -= other.allowed_pods;
        for (k, v) in &other.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Each resource the larger of the two.
    pub fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.allowed_pods = self.allowed_pods.max(other.allowed_pods);
        for (k, v) in &other.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
}

fn ceil_div(nanos: i128, unit: i128) -> i64 {
    let q = nanos / unit;
    let q = if nanos % unit > 0 { q + 1 } else { q };
    i64::try_from(q).unwrap_or(i64::MAX)
}

/// Extended resources (`example.com/gpu`), hugepages and attachable volumes are "scalar"
/// resources upstream; `kubernetes.io/`-prefixed native ones other than those are not.
pub fn is_scalar_resource(name: &str) -> bool {
    name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
        || (name.contains('/') && !name.starts_with("kubernetes.io/"))
}

/// A host port a pod asks for (`hostIP` defaults to 0.0.0.0).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

/// A pod with what scheduling needs worked out once.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// What the pod requests, as upstream's `PodRequests`: containers summed, init containers
    /// (with restartable sidecars running alongside) as a maximum, plus the pod overhead.
    pub requests: Resources,
    /// The same with upstream's non-zero defaults for CPU and memory (used for scoring).
    pub non_zero_requests: Resources,
    pub host_ports: Vec<HostPort>,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let meta = &pod.metadata;
        let (requests, non_zero_requests) = pod_requests(&pod);
        let host_ports = pod
            .spec
            .iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.unwrap_or(0) > 0)
            .map(|p| HostPort {
                ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port: p.host_port.unwrap_or(0),
            })
            .collect();
        PodInfo {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            requests,
            non_zero_requests,
            host_ports,
            pod,
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.pod.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }

    pub fn node_name(&self) -> Option<&str> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
    }
}

fn container_requests(c: &Container) -> Resources {
    Resources::from_list(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

fn non_zero(mut r: Resources) -> Resources {
    if r.milli_cpu == 0 {
        r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
    }
    if r.memory == 0 {
        r.memory = DEFAULT_MEMORY_REQUEST;
    }
    r
}

/// Upstream's `resourcehelper.PodRequests` (and its non-zero variant for scoring).
fn pod_requests(pod: &Pod) -> (Resources, Resources) {
    let Some(spec) = pod.spec.as_ref() else {
        return (Resources::default(), Resources::default());
    };
    let compute = |per_container: &dyn Fn(&Container) -> Resources| {
        let mut requests = Resources::default();
        for c in &spec.containers {
            requests.add(&per_container(c));
        }
        let mut sidecars = Resources::default();
        let mut init_max = Resources::default();
        for c in spec.init_containers.iter().flatten() {
            let mut this = per_container(c);
            if c.restart_policy.as_deref() == Some("Always") {
                // A sidecar keeps running next to what starts after it.
                requests.add(&this);
                sidecars.add(&this);
                this = sidecars.clone();
            } else {
                this.add(&sidecars);
            }
            init_max.max_with(&this);
        }
        requests.max_with(&init_max);
        if let Some(overhead) = spec.overhead.as_ref() {
            requests.add(&Resources::from_list(Some(overhead)));
        }
        requests
    };
    (
        compute(&container_requests),
        compute(&|c| non_zero(container_requests(c))),
    )
}

/// A node, its allocatable resources and the pods on it (bound or assumed).
///
/// `repr(C)` keeps the fields every cycle's filters and scores read (the flags, the pod count,
/// the three resource sums) first and together: a cycle touches 500 nodes once each, and at
/// that point their lines are usually cold, so the fewer lines per node the better.
#[derive(Debug, Clone)]
#[repr(C)]
pub struct NodeInfo {
    /// The node's `Ready` condition is `True` (worked out once: filters ask on every cycle).
    pub ready: bool,
    /// Cordoned (`spec.unschedulable`).
    pub unschedulable: bool,
    /// The node has taints: most have none, and the flag spares the filters a trip into
    /// the `Node` object (a cache miss per node and cycle).
    pub tainted: bool,
    pub pods: Vec<Arc<PodInfo>>,
    pub allocatable: Resources,
    pub requested: Resources,
    pub non_zero_requested: Resources,
    pub node: Arc<Node>,
    pub name: String,
    pub used_ports: HashSet<HostPort>,
    /// Pods on this node with pod (anti-)affinity terms, for InterPodAffinity.
    pub pods_with_affinity: Vec<Arc<PodInfo>>,
    pub pods_with_required_anti_affinity: Vec<Arc<PodInfo>>,
}

impl NodeInfo {
    pub fn new(node: Arc<Node>) -> NodeInfo {
        let allocatable = Resources::from_list(
            node.status
                .as_ref()
                .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref())),
        );
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True");
        let unschedulable = node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
        let tainted = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|t| !t.is_empty());
        NodeInfo {
            name: node.metadata.name.clone().unwrap_or_default(),
            ready,
            unschedulable,
            tainted,
            node,
            pods: Vec::new(),
            allocatable,
            requested: Resources::default(),
            non_zero_requested: Resources::default(),
            used_ports: HashSet::new(),
            pods_with_affinity: Vec::new(),
            pods_with_required_anti_affinity: Vec::new(),
        }
    }

    pub fn labels(&self) -> &BTreeMap<String, String> {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.node.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.add(&pod.non_zero_requests);
        self.used_ports.extend(pod.host_ports.iter().cloned());
        let affinity = pod.pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let has_affinity =
            affinity.is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some());
        let has_required_anti = affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_some_and(|t| !t.is_empty());
        if has_affinity {
            self.pods_with_affinity.push(pod.clone());
        }
        if has_required_anti {
            self.pods_with_required_anti_affinity.push(pod.clone());
        }
        self.pods.push(pod);
    }

    /// Removes the pod with `uid`; false when it was not here.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        let Some(i) = self.pods.iter().position(|p| p.uid == uid) else {
            return false;
        };
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.sub(&pod.non_zero_requests);
        for port in &pod.host_ports {
            self.used_ports.remove(port);
        }
        self.pods_with_affinity.retain(|p| p.uid != uid);
        self.pods_with_required_anti_affinity
            .retain(|p| p.uid != uid);
        true
    }
}

/// All nodes as one cycle sees them.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub nodes: Vec<Arc<NodeInfo>>,
    /// Shared with the cache, which changes it only when nodes come or go: building it per
    /// cycle (a String per node) was most of a cycle's cost at 5,000 nodes.
    index: Arc<HashMap<String, usize>>,
    /// Nodes holding a pod with pod (anti-)affinity terms, and those holding one with required
    /// anti-affinity (upstream's `HavePodsWithAffinityList` and
    /// `HavePodsWithRequiredAntiAffinityList`): InterPodAffinity looks only at these when the
    /// incoming pod has no terms of its own, instead of walking every node.
    pub have_pods_with_affinity: Vec<Arc<NodeInfo>>,
    pub have_pods_with_required_anti_affinity: Vec<Arc<NodeInfo>>,
    /// The cache generation this snapshot reflects (see `Cache::update_snapshot`).
    pub(crate) generation: u64,
}

impl Snapshot {
    pub fn new(nodes: Vec<Arc<NodeInfo>>) -> Snapshot {
        let index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        Snapshot::with_index(nodes, Arc::new(index))
    }

    /// A snapshot over `nodes` with a name index the caller keeps (`index[name]` is the
    /// position in `nodes`); the affinity lists are found by walking the nodes.
    pub fn with_index(nodes: Vec<Arc<NodeInfo>>, index: Arc<HashMap<String, usize>>) -> Snapshot {
        let with_affinity = nodes
            .iter()
            .filter(|n| !n.pods_with_affinity.is_empty())
            .map(|n| n.name.clone())
            .collect::<Vec<_>>();
        let with_anti = nodes
            .iter()
            .filter(|n| !n.pods_with_required_anti_affinity.is_empty())
            .map(|n| n.name.clone())
            .collect::<Vec<_>>();
        Snapshot::with_affinity_lists(nodes, index, &with_affinity, &with_anti)
    }

    /// As `with_index`, with the names of the nodes holding pods with affinity terms and with
    /// required anti-affinity terms kept by the caller (names not in `index` are ignored).
    pub fn with_affinity_lists<'a>(
        nodes: Vec<Arc<NodeInfo>>,
        index: Arc<HashMap<String, usize>>,
        with_affinity: impl IntoIterator<Item = &'a String>,
        with_required_anti_affinity: impl IntoIterator<Item = &'a String>,
    ) -> Snapshot {
        debug_assert_eq!(nodes.len(), index.len());
        let mut snapshot = Snapshot {
            nodes,
            index,
            have_pods_with_affinity: Vec::new(),
            have_pods_with_required_anti_affinity: Vec::new(),
            generation: 0,
        };
        snapshot.set_affinity_lists(with_affinity, with_required_anti_affinity);
        snapshot
    }

    /// Sets the affinity lists from node names (names not in the snapshot are ignored).
    pub(crate) fn set_affinity_lists<'a>(
        &mut self,
        with_affinity: impl IntoIterator<Item = &'a String>,
        with_required_anti_affinity: impl IntoIterator<Item = &'a String>,
    ) {
        let pick = |names: &mut dyn Iterator<Item = &'a String>| -> Vec<Arc<NodeInfo>> {
            names
                .filter_map(|n| self.index.get(n).map(|&i| self.nodes[i].clone()))
                .collect()
        };
        let with_affinity = pick(&mut with_affinity.into_iter());
        let with_anti = pick(&mut with_required_anti_affinity.into_iter());
        self.have_pods_with_affinity = with_affinity;
        self.have_pods_with_required_anti_affinity = with_anti;
    }

    /// Whether this snapshot's name index is `index` (the same allocation).
    pub(crate) fn shares_index(&self, index: &Arc<HashMap<String, usize>>) -> bool {
        Arc::ptr_eq(&self.index, index)
    }

    /// Builds a snapshot from nodes and the pods bound to them (tests, benchmarks).
    pub fn from_objects(nodes: Vec<Node>, pods: Vec<Pod>) -> Snapshot {
        let mut infos: Vec<NodeInfo> = nodes
            .into_iter()
            .map(|n| NodeInfo::new(Arc::new(n)))
            .collect();
        let index: HashMap<String, usize> = infos
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.clone(), i))
            .collect();
        for pod in pods {
            let info = PodInfo::new(Arc::new(pod));
            if let Some(&i) = info.node_name().and_then(|n| index.get(n)) {
                infos[i].add_pod(Arc::new(info));
            }
        }
        Snapshot::new(infos.into_iter().map(Arc::new).collect())
    }

    pub fn get(&self, name: &str) -> Option<&Arc<NodeInfo>> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> PodInfo {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": spec,
        }))
        .expect("pod");
        PodInfo::new(Arc::new(pod))
    }

    fn c(name: &str, cpu: &str, mem: &str) -> serde_json::Value {
        json!({"name": name, "image": "x", "resources": {"requests": {"cpu": cpu, "memory": mem}}})
    }

    #[test]
    fn requests_sum_containers_and_take_the_init_maximum_plus_overhead() {
        let p = pod(json!({
            "containers": [c("a", "100m", "100Mi"), c("b", "200m", "50Mi")],
            "initContainers": [c("i1", "500m", "10Mi"), c("i2", "50m", "400Mi")],
            "overhead": {"cpu": "10m", "memory": "1Mi"},
        }));
        assert_eq!(p.requests.milli_cpu, 510);
        assert_eq!(p.requests.memory, (400 + 1) << 20);
    }

    #[test]
    fn sidecars_run_alongside() {
        let mut sidecar = c("s", "100m", "10Mi");
        sidecar["restartPolicy"] = json!("Always");
        let p = pod(json!({
            "containers": [c("a", "200m", "100Mi")],
            "initContainers": [sidecar, c("i", "250m", "10Mi")],
        }));
        // Running: a + sidecar = 300m; init phase: i + sidecar = 350m.
        assert_eq!(p.requests.milli_cpu, 350);
        assert_eq!(p.requests.memory, 110 << 20);
    }

    #[test]
    fn non_zero_defaults_and_scalars() {
        let p = pod(json!({"containers": [{"name": "a", "image": "x",
            "resources": {"requests": {"example.com/gpu": "2"}}}]}));
        assert_eq!(p.requests.milli_cpu, 0);
        assert_eq!(p.non_zero_requests.milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(p.non_zero_requests.memory, DEFAULT_MEMORY_REQUEST);
        assert_eq!(p.requests.scalar.get("example.com/gpu"), Some(&2));
    }

    #[test]
    fn node_info_tracks_pods() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"}},
        }))
        .expect("node");
        let mut info = NodeInfo::new(Arc::new(node));
        assert_eq!(info.allocatable.milli_cpu, 2000);
        assert_eq!(info.allocatable.allowed_pods, 110);
        let p = Arc::new(pod(json!({"containers": [c("a", "1500m", "1Gi")]})));
        info.add_pod(p.clone());
        assert_eq!(info.requested.milli_cpu, 1500);
        assert!(info.remove_pod("u1"));
        assert_eq!(info.requested, Resources::default());
        assert!(!info.remove_pod("u1"));
    }
}
