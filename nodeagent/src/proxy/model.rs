//! What the proxier programs, distilled from the API objects: one [`ServicePort`] per port of
//! each proxied Service, and the [`Endpoint`]s EndpointSlices list for it.
//!
//! Mirrors upstream's `ServicePort`/`Endpoint` caches (pkg/proxy/servicechangetracker.go,
//! endpointslicecache.go): IPv4 only, one address per endpoint, endpoints of all slices of a
//! Service merged and deduplicated by `ip:port`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Upstream's default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10800;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(protocol: Option<&str>) -> Option<Protocol> {
        match protocol.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// The name iptables matches (`-p`/`-m`) and kube-proxy hashes into chain names.
    pub fn iptables_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// Identifies the endpoints of one Service port: namespace, Service, port name, protocol.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortKey {
    pub namespace: String,
    pub service: String,
    pub port_name: String,
    pub protocol: Protocol,
}

impl ServicePortKey {
    /// kube-proxy's `ServicePortName.String()`: `namespace/name:port`, or `namespace/name` for
    /// an unnamed port. Chain hashes and rule comments are made of it.
    pub fn display_name(&self) -> String {
        if self.port_name.is_empty() {
            format!("{}/{}", self.namespace, self.service)
        } else {
            format!("{}/{}:{}", self.namespace, self.service, self.port_name)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub key: ServicePortKey,
    pub cluster_ip: Ipv4Addr,
    pub port: u16,
    pub node_port: Option<u16>,
    pub external_ips: Vec<Ipv4Addr>,
    pub load_balancer_ips: Vec<Ipv4Addr>,
    /// `Some(timeout seconds)` with sessionAffinity ClientIP.
    pub affinity_timeout: Option<u32>,
    pub external_policy_local: bool,
    pub internal_policy_local: bool,
}

impl ServicePort {
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some()
            || !self.external_ips.is_empty()
            || !self.load_balancer_ips.is_empty()
    }

    /// Whether some traffic goes to endpoints anywhere in the cluster (upstream's
    /// `UsesClusterEndpoints`): even with external traffic policy Local, pods and the node
    /// itself reach a NodePort through every endpoint.
    pub fn uses_cluster_endpoints(&self) -> bool {
        !self.internal_policy_local || self.externally_accessible()
    }

    /// Whether some traffic goes only to this node's endpoints (upstream's `UsesLocalEndpoints`).
    pub fn uses_local_endpoints(&self) -> bool {
        self.internal_policy_local || (self.externally_accessible() && self.external_policy_local)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// On this node.
    pub local: bool,
}

impl Endpoint {
    /// `ip:port`, as DNAT targets, comments and endpoint chain hashes spell it.
    pub fn address(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }
}

/// The ports of a Service that get rules: none for ExternalName and headless Services (or a
/// clusterIP that is not IPv4); only TCP, UDP and SCTP ports.
pub fn service_ports(service: &Service) -> Vec<ServicePort> {
    let (Some(namespace), Some(name), Some(spec)) = (
        service.metadata.namespace.as_deref(),
        service.metadata.name.as_deref(),
        service.spec.as_ref(),
    ) else {
        return Vec::new();
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let Some(cluster_ip) = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
    else {
        return Vec::new();
    };
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECONDS)
    });
    let external_ips: Vec<Ipv4Addr> = spec
        .external_ips
        .iter()
        .flatten()
        .filter_map(|ip| ip.parse().ok())
        .collect();
    let load_balancer_ips: Vec<Ipv4Addr> = if spec.type_.as_deref() == Some("LoadBalancer") {
        service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|ingress| ingress.ip.as_deref()?.parse().ok())
            .collect()
    } else {
        Vec::new()
    };
    let node_ports_allowed = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
    spec.ports
        .iter()
        .flatten()
        .filter_map(|port| {
            let protocol = Protocol::parse(port.protocol.as_deref())?;
            Some(ServicePort {
                key: ServicePortKey {
                    namespace: namespace.to_string(),
                    service: name.to_string(),
                    port_name: port.name.clone().unwrap_or_default(),
                    protocol,
                },
                cluster_ip,
                port: u16::try_from(port.port).ok()?,
                node_port: port
                    .node_port
                    .filter(|_| node_ports_allowed)
                    .and_then(|p| u16::try_from(p).ok())
                    .filter(|p| *p != 0),
                external_ips: external_ips.clone(),
                load_balancer_ips: load_balancer_ips.clone(),
                affinity_timeout,
                external_policy_local: spec.external_traffic_policy.as_deref() == Some("Local"),
                internal_policy_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            })
        })
        .collect()
}

/// The endpoints of every Service port the slices name, each list sorted by `ip:port` and
/// without duplicates (the first slice, by name, to list an address wins).
pub fn endpoints_by_port(
    slices: &[EndpointSlice],
    node_name: &str,
) -> BTreeMap<ServicePortKey, Vec<Endpoint>> {
    let mut sorted: Vec<&EndpointSlice> = slices.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut found: BTreeMap<ServicePortKey, Vec<Endpoint>> = BTreeMap::new();
    for slice in sorted {
        if slice.address_type != "IPv4" {
            continue;
        }
        let (Some(namespace), Some(service)) = (
            slice.metadata.namespace.as_deref(),
            slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL)),
        ) else {
            continue;
        };
        for port in slice.ports.iter().flatten() {
            let (Some(protocol), Some(number)) = (
                Protocol::parse(port.protocol.as_deref()),
                port.port.and_then(|p| u16::try_from(p).ok()),
            ) else {
                continue;
            };
            let key = ServicePortKey {
                namespace: namespace.to_string(),
                service: service.clone(),
                port_name: port.name.clone().unwrap_or_default(),
                protocol,
            };
            let list = found.entry(key).or_default();
            for endpoint in slice.endpoints.iter().flatten() {
                let Some(ip) = endpoint
                    .addresses
                    .first()
                    .and_then(|a| a.parse::<Ipv4Addr>().ok())
                else {
                    continue;
                };
                if list.iter().any(|e| e.ip == ip && e.port == number) {
                    continue;
                }
                let conditions = endpoint.conditions.as_ref();
                let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
                list.push(Endpoint {
                    ip,
                    port: number,
                    ready,
                    serving: conditions.and_then(|c| c.serving).unwrap_or(ready),
                    terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
                    local: endpoint.node_name.as_deref() == Some(node_name),
                });
            }
        }
    }
    for list in found.values_mut() {
        list.sort_by_key(Endpoint::address);
    }
    found
}

/// The endpoints traffic may use, by policy (upstream's `CategorizeEndpoints`, without
/// topology hints): ready ones, or when none is ready, those serving while terminating.
#[derive(Debug, Default)]
pub struct Categorized<'a> {
    pub cluster: Vec<&'a Endpoint>,
    pub local: Vec<&'a Endpoint>,
    /// Cluster and local endpoints together: each gets an endpoint chain.
    pub reachable: Vec<&'a Endpoint>,
    /// Whether the Service has usable endpoints anywhere.
    pub any: bool,
}

pub fn categorize<'a>(port: &ServicePort, endpoints: &'a [Endpoint]) -> Categorized<'a> {
    let usable = |filter: &dyn Fn(&Endpoint) -> bool| -> Vec<&'a Endpoint> {
        let ready: Vec<&Endpoint> = endpoints.iter().filter(|e| e.ready && filter(e)).collect();
        if !ready.is_empty() {
            return ready;
        }
        endpoints
            .iter()
            .filter(|e| e.serving && e.terminating && filter(e))
            .collect()
    };
    let mut categorized = Categorized {
        any: endpoints
            .iter()
            .any(|e| e.ready || (e.serving && e.terminating)),
        ..Categorized::default()
    };
    if port.uses_cluster_endpoints() {
        categorized.cluster = usable(&|_| true);
    }
    if port.uses_local_endpoints() {
        categorized.local = usable(&|e| e.local);
    }
    let mut seen = BTreeSet::new();
    categorized.reachable = categorized
        .cluster
        .iter()
        .chain(categorized.local.iter())
        .copied()
        .filter(|e| seen.insert(e.address()))
        .collect();
    categorized.reachable.sort_by_key(|e| e.address());
    categorized
}
