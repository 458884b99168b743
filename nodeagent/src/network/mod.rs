//! The pod network of one node: what a CNI bridge + host-local + host-gw setup gives a kubelet,
//! as a library.
//!
//! - **Node** ([`PodNetwork::ensure_node`]): the bridge `skiff0` holds the first address of the
//!   node's podCIDR (the pods' gateway) and a fixed MAC derived from it (a bridge otherwise takes
//!   the lowest MAC of its ports, so the gateway's MAC would change under the pods as they come
//!   and go); IPv4 forwarding on; the service CIDR routed onto the bridge; masquerade for pod
//!   traffic leaving the cluster CIDR in the nat chain [`NAT_CHAIN`], jumped to from
//!   `POSTROUTING`.
//! - **Pods** ([`PodNetwork::attach`] / [`PodNetwork::detach`]): one veth pair per sandbox, the
//!   host end (`skv` + 12 hex digits of a hash of the sandbox id) on the bridge with hairpin on
//!   (a pod reaching itself through a Service VIP), the pod end `eth0` in the sandbox's netns
//!   with an address from the podCIDR and a default route via the gateway.
//! - **Addresses** (`ipam.rs`): one file per allocated address under `state_dir/ips/`, written
//!   atomically under a lock before the address is configured, released on detach; the agent
//!   keeps a copy in memory, reread only when another process changed the directory.
//! - **Other nodes** ([`PodNetwork::sync_peer_routes`]): host-gw, a route to each peer's
//!   podCIDR via its InternalIP; `unreachable` routes for the rest of the cluster CIDR.
//!
//! Every route this module adds carries the protocol number [`ROUTE_PROTOCOL`], which is how it
//! finds its own routes again (to reconcile them, after a restart, and in [`PodNetwork::cleanup`]).
//!
//! Everything happens in the network namespace of the thread that calls — the host's for the
//! agent, a test's own namespace in tests: node setup runs iproute2 and iptables as children of
//! that thread; a pod's veth is made per sandbox without any process — the host end with
//! rtnetlink requests (`host_side.rs`), the pod end with interface ioctls from a short-lived
//! thread that has entered the sandbox's namespace (`pod_side.rs`, `setns`, no `nsenter`).
//!
//! Using it: `PodNetwork::new(config)` once, `ensure_node()` at start (and whenever the node may
//! have been tampered with), `sync_peer_routes()` whenever the Nodes' podCIDRs/InternalIPs
//! change, `attach()` after a sandbox is created and `detach()` before it is deleted (a
//! sandbox's attach and detach must not race each other; different sandboxes may be handled
//! from any number of threads). After a restart, `allocations()` lists what is recorded, and
//! the caller detaches the sandboxes that no longer exist. [`dns`] builds the pod's
//! `/etc/hosts` and `/etc/resolv.conf`.

mod cidr;
mod cmd;
pub mod dns;
mod host_side;
mod hostport;
mod ipam;
mod pod_side;

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::sched::CloneFlags;
use serde_json::Value;

pub use cidr::{CidrError, Ipv4Cidr};
use ipam::Ipam;

/// The routing protocol number on every route this module adds (`ip route show proto 83`).
pub use hostport::{HOSTPORT_CHAIN, HOSTPORT_MASQ_CHAIN, HostPortMapping};

pub const ROUTE_PROTOCOL: u8 = 83;
/// The nat chain holding the pod network's masquerade rules.
pub const NAT_CHAIN: &str = "SKIFF-POSTROUTING-NET";
/// The prefix of every host-side veth.
pub const HOST_VETH_PREFIX: &str = "skv";
/// The pod end of the veth pair, inside the sandbox's namespace.
pub const POD_INTERFACE: &str = "eth0";

const JUMP_COMMENT: &str = "skiff pod network masquerade";
const MULTICAST: &str = "224.0.0.0/4";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("invalid network configuration: {0}")]
    Config(String),
    #[error("invalid sandbox id {0:?}: it must be non-empty, without whitespace or '/'")]
    SandboxId(String),
    #[error("no free address left in the pod CIDR {pod_cidr} ({allocated} in use)")]
    Exhausted {
        pod_cidr: Ipv4Cidr,
        allocated: usize,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    #[error("unexpected output from `{command}`: {detail}")]
    Output { command: String, detail: String },
    #[error("configuring the pod's {POD_INTERFACE} in {netns}: {source}")]
    PodInterface {
        netns: PathBuf,
        source: std::io::Error,
    },
    #[error("{action} {interface}: {source}")]
    HostInterface {
        action: &'static str,
        interface: String,
        source: std::io::Error,
    },
    #[error("entering the network namespace {path}: {source}")]
    Netns { path: PathBuf, source: nix::Error },
    #[error("{0} exists and is not a bridge")]
    NotABridge(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The bridge's name, e.g. `skiff0`.
    pub bridge: String,
    /// This node's podCIDR, e.g. 10.244.1.0/24 (its first address is the gateway).
    pub pod_cidr: Ipv4Cidr,
    /// The whole cluster's pod network, e.g. 10.244.0.0/16.
    pub cluster_cidr: Ipv4Cidr,
    /// The Service ClusterIP range, e.g. 10.96.0.0/12.
    pub service_cidr: Ipv4Cidr,
    /// Where the address allocations are recorded.
    pub state_dir: PathBuf,
}

/// A wired sandbox: its address on `eth0` and the host end of its veth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInterface {
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub host_veth: String,
}

pub struct PodNetwork {
    config: NetworkConfig,
    gateway: Ipv4Addr,
    ipam: Ipam,
    /// The peers of the last [`PodNetwork::sync_peer_routes`]; `None` until one ran in this
    /// process, when [`PodNetwork::ensure_node`] takes them from the routes in the kernel.
    peers: Mutex<Option<Vec<(Ipv4Cidr, Ipv4Addr)>>>,
}

/// One of our routes as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    /// `DST dev DEV` (the service CIDR onto the bridge).
    OnLink(Ipv4Cidr, String),
    /// `DST via GATEWAY` (a peer's podCIDR).
    Via(Ipv4Cidr, Ipv4Addr),
    Unreachable(Ipv4Cidr),
    /// Anything else carrying our protocol: removed by reconciliation.
    Other(Ipv4Cidr, String),
}

impl Route {
    fn destination(&self) -> Ipv4Cidr {
        match self {
            Route::OnLink(dst, _) | Route::Via(dst, _) | Route::Unreachable(dst) => *dst,
            Route::Other(dst, _) => *dst,
        }
    }

    fn replace_command(&self) -> String {
        match self {
            Route::OnLink(dst, dev) => {
                format!("route replace {dst} dev {dev} proto {ROUTE_PROTOCOL}")
            }
            Route::Via(dst, gateway) => {
                format!("route replace {dst} via {gateway} proto {ROUTE_PROTOCOL}")
            }
            Route::Unreachable(dst) => {
                format!("route replace unreachable {dst} proto {ROUTE_PROTOCOL}")
            }
            Route::Other(dst, kind) => {
                format!("route replace {kind} {dst} proto {ROUTE_PROTOCOL}")
            }
        }
    }

    fn delete_command(&self) -> String {
        let kind = match self {
            Route::Unreachable(_) => "unreachable ",
            Route::Other(_, kind) => {
                return format!(
                    "route del {kind} {} proto {ROUTE_PROTOCOL}",
                    self.destination()
                );
            }
            _ => "",
        };
        format!(
            "route del {kind}{} proto {ROUTE_PROTOCOL}",
            self.destination()
        )
    }
}

impl PodNetwork {
    /// Checks the configuration; changes nothing on the node.
    pub fn new(config: NetworkConfig) -> Result<PodNetwork, NetworkError> {
        if config.bridge.is_empty()
            || config.bridge.len() > 15
            || !config
                .bridge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            return Err(NetworkError::Config(format!(
                "bridge name {:?} is not a valid interface name (1-15 of [A-Za-z0-9._-])",
                config.bridge
            )));
        }
        if config.pod_cidr.prefix_len() > 30 {
            return Err(NetworkError::Config(format!(
                "pod CIDR {} has no room for pods (at most a /30)",
                config.pod_cidr
            )));
        }
        if !config.cluster_cidr.covers(&config.pod_cidr) {
            return Err(NetworkError::Config(format!(
                "pod CIDR {} is not inside the cluster CIDR {}",
                config.pod_cidr, config.cluster_cidr
            )));
        }
        if config.service_cidr.overlaps(&config.cluster_cidr) {
            return Err(NetworkError::Config(format!(
                "service CIDR {} overlaps the cluster CIDR {}",
                config.service_cidr, config.cluster_cidr
            )));
        }
        let gateway = gateway_of(&config.pod_cidr)?;
        Ok(PodNetwork {
            ipam: Ipam::new(&config.state_dir, config.pod_cidr),
            gateway,
            config,
            peers: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// The pods' default gateway: the bridge's address, the podCIDR's first.
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// Idempotent node setup (see the module documentation). After an agent restart the peer
    /// routes already in the kernel are kept until the next [`PodNetwork::sync_peer_routes`].
    pub fn ensure_node(&self) -> Result<(), NetworkError> {
        self.ensure_bridge()?;
        write_sysctl("net/ipv4/ip_forward", "1", true)?;
        // Pod → Service → pod on the same bridge is bridged, not routed: without this the
        // proxy's DNAT would never see the reply.
        write_sysctl("net/bridge/bridge-nf-call-iptables", "1", false)?;
        let peers = {
            let remembered = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            remembered.clone()
        };
        let peers = match peers {
            Some(peers) => peers,
            None => current_routes()?
                .into_iter()
                .filter_map(|route| match route {
                    Route::Via(dst, gateway) => Some((dst, gateway)),
                    _ => None,
                })
                .collect(),
        };
        self.reconcile_routes(&peers)?;
        self.ensure_masquerade()?;
        tracing::debug!(bridge = %self.config.bridge, pod_cidr = %self.config.pod_cidr, "node network ready");
        Ok(())
    }

    fn ensure_bridge(&self) -> Result<(), NetworkError> {
        let bridge = &self.config.bridge;
        let mut commands = Vec::new();
        let mut stale_addresses = Vec::new();
        match interface_index(bridge) {
            None => {
                commands.push(format!("link add {bridge} type bridge"));
                commands.push(format!(
                    "link set {bridge} address {}",
                    gateway_mac(self.gateway)
                ));
            }
            Some(_) => {
                let links = cmd::ip_json(&["-details", "address", "show", "dev", bridge])?;
                let link = links.get(0).cloned().unwrap_or(Value::Null);
                if link["linkinfo"]["info_kind"].as_str() != Some("bridge") {
                    return Err(NetworkError::NotABridge(bridge.clone()));
                }
                if let Some(addresses) = link["addr_info"].as_array() {
                    for address in addresses {
                        if address["family"].as_str() != Some("inet") {
                            continue;
                        }
                        let local = address["local"].as_str().unwrap_or_default();
                        let prefix = address["prefixlen"].as_u64().unwrap_or(32);
                        if local != self.gateway.to_string()
                            || prefix != u64::from(self.config.pod_cidr.prefix_len())
                        {
                            stale_addresses.push(format!("{local}/{prefix}"));
                        }
                    }
                }
            }
        }
        for stale in stale_addresses {
            tracing::info!(%bridge, address = %stale, "removing an address of an old podCIDR from the bridge");
            commands.push(format!("address del {stale} dev {bridge}"));
        }
        commands.push(format!(
            "address replace {}/{} dev {bridge}",
            self.gateway,
            self.config.pod_cidr.prefix_len()
        ));
        commands.push(format!("link set {bridge} up"));
        cmd::ip_batch(&commands, false)
    }

    fn ensure_masquerade(&self) -> Result<(), NetworkError> {
        let pods = self.config.pod_cidr;
        let cluster = self.config.cluster_cidr;
        // Declaring the chain in a --noflush restore creates it or flushes it, so the rules
        // below replace whatever an older version left.
        let rules = format!(
            "*nat\n\
             :{NAT_CHAIN} - [0:0]\n\
             -A {NAT_CHAIN} -s {pods} -d {cluster} -m comment --comment \"pod to pod keeps its source\" -j RETURN\n\
             -A {NAT_CHAIN} -s {pods} ! -d {MULTICAST} -m comment --comment \"pod leaving the cluster network\" -j MASQUERADE\n\
             COMMIT\n"
        );
        cmd::run_with_input("iptables-restore", &["-w", "--noflush"], &rules)?;
        let jump = [
            "-t",
            "nat",
            "POSTROUTING",
            "-m",
            "comment",
            "--comment",
            JUMP_COMMENT,
            "-j",
            NAT_CHAIN,
        ];
        if !cmd::succeeds("iptables", &iptables_args("-C", &jump))? {
            cmd::run("iptables", &iptables_args("-A", &jump))?;
        }
        Ok(())
    }

    /// Wires a sandbox (see the module documentation); idempotent per sandbox id. The address
    /// is recorded before anything is configured; if wiring a newly allocated address fails,
    /// the address is released and the veth removed again.
    pub fn attach(&self, sandbox_id: &str, netns: &Path) -> Result<PodInterface, NetworkError> {
        check_sandbox_id(sandbox_id)?;
        let started = std::time::Instant::now();
        let host_veth = host_veth_name(sandbox_id);
        let (record, fresh) = {
            let locked = self.ipam.lock()?;
            match locked.find(sandbox_id)? {
                Some(record) => (record, false),
                None => (locked.allocate(sandbox_id, &host_veth)?, true),
            }
        };
        let interface = PodInterface {
            ip: record.ip,
            prefix_len: self.config.pod_cidr.prefix_len(),
            gateway: self.gateway,
            host_veth: record.host_veth.clone(),
        };
        match self.wire(&interface, netns, fresh) {
            Ok(()) => {
                tracing::debug!(sandbox_id, ip = %interface.ip, host_veth = %interface.host_veth, fresh, elapsed = ?started.elapsed(), "sandbox attached");
                Ok(interface)
            }
            Err(error) => {
                if fresh {
                    tracing::warn!(sandbox_id, %error, "wiring the sandbox failed; releasing its address");
                    if let Err(undo) = self.detach(sandbox_id) {
                        tracing::warn!(sandbox_id, error = %undo, "undoing a failed attach");
                    }
                }
                Err(error)
            }
        }
    }

    fn wire(
        &self,
        interface: &PodInterface,
        netns: &Path,
        fresh: bool,
    ) -> Result<(), NetworkError> {
        let bridge = &self.config.bridge;
        let host_veth = &interface.host_veth;
        let host_error = |action: &'static str| {
            move |source| NetworkError::HostInterface {
                action,
                interface: host_veth.clone(),
                source,
            }
        };
        let bridge_index = interface_index(bridge)
            .ok_or_else(|| NetworkError::Config(format!("the bridge {bridge} does not exist")))?;
        let mut create_pair = true;
        if let Some(host_index) = interface_index(host_veth) {
            // Either this sandbox was wired before (agent restart), or the veth belongs to an
            // earlier sandbox with the same id whose namespace is still held somewhere.
            let peer = in_netns(netns, || {
                Ok(cmd::ip_json(&["link", "show", "dev", POD_INTERFACE])
                    .ok()
                    .and_then(|links| links.get(0)?["link_index"].as_u64()))
            })?;
            if peer == Some(u64::from(host_index)) {
                create_pair = false;
            } else {
                tracing::info!(%host_veth, netns = %netns.display(), fresh, "replacing a veth that is not paired with the sandbox's eth0");
                delete_link(host_veth)?;
            }
        }
        let mut rtnetlink =
            host_side::Rtnetlink::open().map_err(host_error("opening rtnetlink for"))?;
        if create_pair {
            let namespace = File::open(netns).map_err(|source| NetworkError::Io {
                path: netns.to_path_buf(),
                source,
            })?;
            rtnetlink
                .add_veth(host_veth, POD_INTERFACE, &namespace, bridge_index)
                .map_err(host_error("creating the veth"))?;
        }
        let host_index = interface_index(host_veth).ok_or_else(|| NetworkError::HostInterface {
            action: "finding",
            interface: host_veth.clone(),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
        if create_pair {
            // Before it comes up: a bridge port needs no address, and with one each new port
            // would probe it and send MLD reports — packets the bridge floods to every other
            // port, work that grows with the pods on the node.
            rtnetlink
                .skip_ipv6_addresses(host_index)
                .map_err(host_error("turning IPv6 addresses off for"))?;
        }
        rtnetlink
            .attach_to_bridge(host_index, bridge_index)
            .map_err(host_error("putting on the bridge"))?;
        rtnetlink
            .set_hairpin(host_index)
            .map_err(host_error("turning hairpin on for"))?;
        in_netns(netns, || {
            // Before eth0 comes up: the pod network is IPv4 only (as Docker leaves the
            // interfaces of an IPv4-only network), so eth0 gets no IPv6 link-local address —
            // whose duplicate address probe, router solicitations and MLD reports the bridge
            // (no multicast querier on it) floods to every other pod, work that grows with the
            // pods on the node. The pod's loopback keeps ::1.
            let index =
                interface_index(POD_INTERFACE).ok_or_else(|| NetworkError::PodInterface {
                    netns: netns.to_path_buf(),
                    source: std::io::ErrorKind::NotFound.into(),
                })?;
            host_side::Rtnetlink::open()
                .and_then(|mut link| link.skip_ipv6_addresses(index))
                .map_err(|source| NetworkError::PodInterface {
                    netns: netns.to_path_buf(),
                    source,
                })?;
            pod_side::configure(
                POD_INTERFACE,
                interface.ip,
                interface.prefix_len,
                interface.gateway,
            )
            .map_err(|source| NetworkError::PodInterface {
                netns: netns.to_path_buf(),
                source,
            })
        })
    }

    /// Removes the sandbox's veth (its pod end goes with it) and releases its address.
    /// Idempotent: a sandbox never attached, or already detached, is fine.
    pub fn detach(&self, sandbox_id: &str) -> Result<(), NetworkError> {
        check_sandbox_id(sandbox_id)?;
        let locked = self.ipam.lock()?;
        let record = locked.find(sandbox_id)?;
        let mut veths = vec![host_veth_name(sandbox_id)];
        if let Some(record) = &record
            && !record.host_veth.is_empty()
            && !veths.contains(&record.host_veth)
        {
            veths.push(record.host_veth.clone());
        }
        for veth in veths {
            delete_link(&veth)?;
        }
        // The address is free only once no interface holds it any more.
        let released = locked.release(sandbox_id)?;
        drop(locked);
        self.remove_host_ports(sandbox_id)?;
        tracing::debug!(sandbox_id, ?released, "sandbox detached");
        Ok(())
    }

    /// Every recorded allocation: (sandbox id, address), in address order. After a restart the
    /// agent detaches those whose sandbox is gone.
    pub fn allocations(&self) -> Result<Vec<(String, Ipv4Addr)>, NetworkError> {
        Ok(self
            .ipam
            .lock()?
            .records()?
            .into_iter()
            .map(|record| (record.sandbox_id, record.ip))
            .collect())
    }

    /// host-gw: makes the node's routes match exactly `peers` (podCIDR, InternalIP) plus
    /// `unreachable` routes for the parts of the cluster CIDR no node holds. A peer whose podCIDR
    /// overlaps this node's or an earlier peer's is skipped with a warning. Routes that cannot
    /// be added (e.g. a gateway not on any link) are reported after all others were applied.
    pub fn sync_peer_routes(&self, peers: &[(Ipv4Cidr, Ipv4Addr)]) -> Result<(), NetworkError> {
        let mut accepted: Vec<(Ipv4Cidr, Ipv4Addr)> = Vec::new();
        for &(cidr, node_ip) in peers {
            if cidr.overlaps(&self.config.pod_cidr) {
                tracing::warn!(peer_cidr = %cidr, %node_ip, pod_cidr = %self.config.pod_cidr, "a peer's podCIDR overlaps this node's; no route to it");
                continue;
            }
            if let Some((other, _)) = accepted.iter().find(|(seen, _)| seen.overlaps(&cidr)) {
                tracing::warn!(peer_cidr = %cidr, %node_ip, other = %other, "two peers' podCIDRs overlap; keeping the first");
                continue;
            }
            accepted.push((cidr, node_ip));
        }
        let result = self.reconcile_routes(&accepted);
        *self.peers.lock().unwrap_or_else(|p| p.into_inner()) = Some(accepted);
        result
    }

    fn desired_routes(&self, peers: &[(Ipv4Cidr, Ipv4Addr)]) -> Vec<Route> {
        let mut routes = vec![Route::OnLink(
            self.config.service_cidr,
            self.config.bridge.clone(),
        )];
        routes.extend(peers.iter().map(|&(cidr, ip)| Route::Via(cidr, ip)));
        let mut held: Vec<Ipv4Cidr> = peers.iter().map(|(cidr, _)| *cidr).collect();
        held.push(self.config.pod_cidr);
        routes.extend(
            self.config
                .cluster_cidr
                .subtract(&held)
                .into_iter()
                .map(Route::Unreachable),
        );
        routes
    }

    fn reconcile_routes(&self, peers: &[(Ipv4Cidr, Ipv4Addr)]) -> Result<(), NetworkError> {
        let desired = self.desired_routes(peers);
        let current = current_routes()?;
        let mut commands = Vec::new();
        for route in &current {
            // A destination still wanted is changed in place by its `replace` below.
            if !desired
                .iter()
                .any(|d| d.destination() == route.destination())
            {
                commands.push(route.delete_command());
            }
        }
        for route in &desired {
            if !current.contains(route) {
                commands.push(route.replace_command());
            }
        }
        if !commands.is_empty() {
            tracing::debug!(changes = commands.len(), "updating pod network routes");
        }
        cmd::ip_batch(&commands, true)
    }

    /// Removes everything this module made on the node: veths, bridge, routes, the nat chain and
    /// its jump, and the allocation records (the state directory too, if that leaves it empty).
    /// IPv4 forwarding stays on: other software may rely on it.
    pub fn cleanup(config: &NetworkConfig) -> Result<(), NetworkError> {
        let links = cmd::ip_json(&["link", "show"])?;
        for link in links.as_array().map(Vec::as_slice).unwrap_or_default() {
            let Some(name) = link["ifname"].as_str() else {
                continue;
            };
            let on_bridge = link["master"].as_str() == Some(config.bridge.as_str());
            if on_bridge || name.starts_with(HOST_VETH_PREFIX) {
                delete_link(name)?;
            }
        }
        delete_link(&config.bridge)?;
        let routes: Vec<String> = current_routes()?
            .iter()
            .map(Route::delete_command)
            .collect();
        cmd::ip_batch(&routes, true)?;
        let jump = [
            "-t",
            "nat",
            "POSTROUTING",
            "-m",
            "comment",
            "--comment",
            JUMP_COMMENT,
            "-j",
            NAT_CHAIN,
        ];
        while cmd::succeeds("iptables", &iptables_args("-C", &jump))? {
            cmd::run("iptables", &iptables_args("-D", &jump))?;
        }
        if cmd::succeeds("iptables", &["-w", "-t", "nat", "-n", "-L", NAT_CHAIN])? {
            cmd::run("iptables", &["-w", "-t", "nat", "-F", NAT_CHAIN])?;
            cmd::run("iptables", &["-w", "-t", "nat", "-X", NAT_CHAIN])?;
        }
        hostport::cleanup(&config.state_dir)?;
        Ipam::remove_state(&config.state_dir)
    }
}

/// `iptables -w OP` followed by `rest` with its table and chain.
fn iptables_args<'a>(op: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["-w", op];
    // `rest` starts with "-t TABLE CHAIN": the operation goes before the chain.
    args.splice(1..1, rest[..2].iter().copied());
    args.extend_from_slice(&rest[2..]);
    args
}

fn gateway_of(pod_cidr: &Ipv4Cidr) -> Result<Ipv4Addr, NetworkError> {
    pod_cidr
        .nth(1)
        .ok_or_else(|| NetworkError::Config(format!("pod CIDR {pod_cidr} has no gateway address")))
}

/// A locally administered MAC holding the gateway's address (as OVN-Kubernetes derives its
/// ports' MACs), stable across restarts and distinct per node.
fn gateway_mac(gateway: Ipv4Addr) -> String {
    let [a, b, c, d] = gateway.octets();
    format!("0a:58:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// The host-side veth of a sandbox: `skv` and 12 hex digits of the id's FNV-1a hash, which
/// fits the 15-character limit on interface names and is the same after a restart.
pub fn host_veth_name(sandbox_id: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in sandbox_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{HOST_VETH_PREFIX}{:012x}", hash & 0xffff_ffff_ffff)
}

fn check_sandbox_id(sandbox_id: &str) -> Result<(), NetworkError> {
    if sandbox_id.is_empty() || sandbox_id.contains(|c: char| c.is_whitespace() || c == '/') {
        return Err(NetworkError::SandboxId(sandbox_id.to_string()));
    }
    Ok(())
}

/// The interface's index in the calling thread's namespace, or `None` if it has none by that
/// name (the ioctl behind it works on a socket, which is created in the thread's namespace).
fn interface_index(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

fn delete_link(name: &str) -> Result<(), NetworkError> {
    let Some(index) = interface_index(name) else {
        return Ok(());
    };
    let deleted = host_side::Rtnetlink::open().and_then(|mut link| link.delete(index));
    match deleted {
        Ok(()) => Ok(()),
        // Gone in between (its peer's namespace went away): what we wanted.
        Err(_) if interface_index(name).is_none() => Ok(()),
        Err(source) => Err(NetworkError::HostInterface {
            action: "deleting",
            interface: name.to_string(),
            source,
        }),
    }
}

/// The routes in the main table carrying [`ROUTE_PROTOCOL`].
fn current_routes() -> Result<Vec<Route>, NetworkError> {
    let protocol = ROUTE_PROTOCOL.to_string();
    let listed = cmd::ip_json(&["-4", "route", "show", "table", "main", "proto", &protocol])?;
    let mut routes = Vec::new();
    for entry in listed.as_array().map(Vec::as_slice).unwrap_or_default() {
        let Some(dst) = entry["dst"].as_str() else {
            continue;
        };
        let dst = match dst {
            "default" => Ipv4Cidr::new(Ipv4Addr::UNSPECIFIED, 0),
            with_prefix if with_prefix.contains('/') => with_prefix
                .parse()
                .map_err(|e: CidrError| CidrError::Syntax(e.to_string())),
            address => address
                .parse::<Ipv4Addr>()
                .map_err(|_| CidrError::Syntax(address.to_string()))
                .and_then(|a| Ipv4Cidr::new(a, 32)),
        };
        let Ok(dst) = dst else {
            tracing::warn!(route = %entry, "ignoring a route with an unreadable destination");
            continue;
        };
        let kind = entry["type"].as_str().unwrap_or("unicast");
        let gateway = entry["gateway"].as_str().and_then(|g| g.parse().ok());
        let route = match (kind, gateway, entry["dev"].as_str()) {
            ("unreachable", _, _) => Route::Unreachable(dst),
            ("unicast", Some(gateway), _) => Route::Via(dst, gateway),
            ("unicast", None, Some(dev)) => Route::OnLink(dst, dev.to_string()),
            (other, _, _) => Route::Other(dst, other.to_string()),
        };
        routes.push(route);
    }
    Ok(routes)
}

/// Runs `work` on a new thread that has entered the network namespace at `netns`; the calling
/// thread's namespace is untouched.
fn in_netns<T: Send>(
    netns: &Path,
    work: impl FnOnce() -> Result<T, NetworkError> + Send,
) -> Result<T, NetworkError> {
    let namespace = File::open(netns).map_err(|source| NetworkError::Io {
        path: netns.to_path_buf(),
        source,
    })?;
    std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            nix::sched::setns(&namespace, CloneFlags::CLONE_NEWNET).map_err(|source| {
                NetworkError::Netns {
                    path: netns.to_path_buf(),
                    source,
                }
            })?;
            work()
        });
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Writes a sysctl of the calling thread's network namespace (`/proc/sys` follows the thread).
fn write_sysctl(key: &str, value: &str, required: bool) -> Result<(), NetworkError> {
    let path = Path::new("/proc/sys").join(key);
    if !required && !path.exists() {
        return Ok(());
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current.trim() == value {
        return Ok(());
    }
    std::fs::write(&path, value).map_err(|source| NetworkError::Io { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_names_fit_and_are_stable() {
        let a = host_veth_name("8f9e0c52-1d6b-4f3a-9c1e-0a7b5d2e4f61");
        assert_eq!(a.len(), 15);
        assert!(a.starts_with(HOST_VETH_PREFIX));
        assert_eq!(a, host_veth_name("8f9e0c52-1d6b-4f3a-9c1e-0a7b5d2e4f61"));
        assert_ne!(a, host_veth_name("8f9e0c52-1d6b-4f3a-9c1e-0a7b5d2e4f62"));
        // FNV-1a of the empty input is the offset basis: the hash is the documented one.
        assert_eq!(host_veth_name(""), "skv9ce484222325");
    }

    #[test]
    fn configuration_is_checked() {
        let config = |pods: &str, cluster: &str, services: &str| NetworkConfig {
            bridge: "skiff0".into(),
            pod_cidr: pods.parse().unwrap(),
            cluster_cidr: cluster.parse().unwrap(),
            service_cidr: services.parse().unwrap(),
            state_dir: "/nonexistent".into(),
        };
        let ok = PodNetwork::new(config("10.244.1.0/24", "10.244.0.0/16", "10.96.0.0/12")).unwrap();
        assert_eq!(ok.gateway().to_string(), "10.244.1.1");
        for (pods, cluster, services) in [
            ("10.245.1.0/24", "10.244.0.0/16", "10.96.0.0/12"),
            ("10.244.1.0/31", "10.244.0.0/16", "10.96.0.0/12"),
            ("10.244.1.0/24", "10.244.0.0/16", "10.240.0.0/12"),
        ] {
            assert!(matches!(
                PodNetwork::new(config(pods, cluster, services)),
                Err(NetworkError::Config(_))
            ));
        }
        assert_eq!(
            gateway_mac("10.244.1.1".parse().unwrap()),
            "0a:58:0a:f4:01:01"
        );
    }

    #[test]
    fn desired_routes_cover_the_cluster_once() {
        let network = PodNetwork::new(NetworkConfig {
            bridge: "skiff0".into(),
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            cluster_cidr: "10.244.0.0/22".parse().unwrap(),
            service_cidr: "10.96.0.0/12".parse().unwrap(),
            state_dir: "/nonexistent".into(),
        })
        .unwrap();
        let peer = (
            "10.244.2.0/24".parse().unwrap(),
            "192.168.50.2".parse().unwrap(),
        );
        let commands: Vec<String> = network
            .desired_routes(&[peer])
            .iter()
            .map(Route::replace_command)
            .collect();
        assert_eq!(
            commands,
            [
                "route replace 10.96.0.0/12 dev skiff0 proto 83",
                "route replace 10.244.2.0/24 via 192.168.50.2 proto 83",
                "route replace unreachable 10.244.0.0/24 proto 83",
                "route replace unreachable 10.244.3.0/24 proto 83",
            ]
        );
        assert_eq!(
            Route::Unreachable("10.244.0.0/24".parse().unwrap()).delete_command(),
            "route del unreachable 10.244.0.0/24 proto 83"
        );
        assert_eq!(
            iptables_args("-C", &["-t", "nat", "POSTROUTING", "-j", "X"]),
            ["-w", "-t", "nat", "-C", "POSTROUTING", "-j", "X"]
        );
    }
}
