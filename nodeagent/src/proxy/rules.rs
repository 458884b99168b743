//! The iptables rules of kube-proxy's iptables mode (pkg/proxy/iptables/proxier.go,
//! `syncProxyRules`), as one `iptables-restore --noflush` input, with Skiff's chain names.
//!
//! nat: PREROUTING/OUTPUT → `SKIFF-SERVICES` → per Service port `SKIFF-SVC-*` (every
//! endpoint), `SKIFF-SVL-*` (this node's, for traffic policy Local) and `SKIFF-EXT-*`
//! (NodePort, external and load-balancer IPs) → per endpoint `SKIFF-SEP-*` (DNAT). Packets
//! that must leave with the node's address are marked by `SKIFF-MARK-MASQ` and masqueraded by
//! `SKIFF-POSTROUTING`. filter: `SKIFF-SERVICES`/`SKIFF-EXTERNAL-SERVICES` reject traffic
//! to Services without endpoints, `SKIFF-FORWARD` accepts what the nat rules let in.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use sha2::{Digest, Sha256};

use super::config::ProxyConfig;
use super::model::{self, Endpoint, ServicePort};

pub const SERVICES_CHAIN: &str = "SKIFF-SERVICES";
pub const EXTERNAL_SERVICES_CHAIN: &str = "SKIFF-EXTERNAL-SERVICES";
pub const NODEPORTS_CHAIN: &str = "SKIFF-NODEPORTS";
pub const POSTROUTING_CHAIN: &str = "SKIFF-POSTROUTING";
pub const MARK_MASQ_CHAIN: &str = "SKIFF-MARK-MASQ";
pub const FORWARD_CHAIN: &str = "SKIFF-FORWARD";
pub const FIREWALL_CHAIN: &str = "SKIFF-FIREWALL";
/// The packet mark bit that asks `SKIFF-POSTROUTING` to masquerade (kube-proxy's default).
pub const MASQUERADE_MARK: &str = "0x4000";

/// Every chain of ours starts with this.
pub const CHAIN_PREFIX: &str = "SKIFF-";
const SVC_PREFIX: &str = "SKIFF-SVC-";
const SVL_PREFIX: &str = "SKIFF-SVL-";
const EXT_PREFIX: &str = "SKIFF-EXT-";
const SEP_PREFIX: &str = "SKIFF-SEP-";
/// Chains made per Service port or endpoint: those not written by a sync are deleted.
const PER_SERVICE_PREFIXES: [&str; 4] = [SVC_PREFIX, SVL_PREFIX, EXT_PREFIX, SEP_PREFIX];

/// The filter chains every sync declares (and so flushes).
pub const FILTER_CHAINS: [&str; 4] = [
    SERVICES_CHAIN,
    EXTERNAL_SERVICES_CHAIN,
    FORWARD_CHAIN,
    FIREWALL_CHAIN,
];
/// The nat chains every sync declares (and so flushes).
pub const NAT_CHAINS: [&str; 4] = [
    SERVICES_CHAIN,
    NODEPORTS_CHAIN,
    POSTROUTING_CHAIN,
    MARK_MASQ_CHAIN,
];

/// Whether a nat chain is one a sync makes per Service port or endpoint.
pub fn is_per_service_chain(chain: &str) -> bool {
    PER_SERVICE_PREFIXES.iter().any(|p| chain.starts_with(p))
}

/// kube-proxy's `portProtoHash`: the first 16 characters of the base32 of
/// sha256(`namespace/name:port` + protocol [+ `ip:port`]).
fn chain_hash(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
    }
    let mut encoded = base32(&hasher.finalize());
    encoded.truncate(16);
    encoded
}

/// RFC 4648 base32 (the standard alphabet), without padding: only a prefix is used.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(ALPHABET[((buffer >> bits) & 31) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((buffer << (5 - bits)) & 31) as usize]));
    }
    out
}

/// `SKIFF-SVC-…` of a Service port (kube-proxy's `servicePortChainName`).
pub fn service_chain(port_name: &str, protocol: &str) -> String {
    format!("{SVC_PREFIX}{}", chain_hash(&[port_name, protocol]))
}

/// `SKIFF-SVL-…`: the Service port's local endpoints.
pub fn local_chain(port_name: &str, protocol: &str) -> String {
    format!("{SVL_PREFIX}{}", chain_hash(&[port_name, protocol]))
}

/// `SKIFF-EXT-…`: the Service port's NodePort and external IPs.
pub fn external_chain(port_name: &str, protocol: &str) -> String {
    format!("{EXT_PREFIX}{}", chain_hash(&[port_name, protocol]))
}

/// `SKIFF-SEP-…` of one endpoint of a Service port (`servicePortEndpointChainName`).
pub fn endpoint_chain(port_name: &str, protocol: &str, endpoint: &str) -> String {
    format!(
        "{SEP_PREFIX}{}",
        chain_hash(&[port_name, protocol, endpoint])
    )
}

#[derive(Default)]
struct Lines {
    filter_chains: String,
    filter_rules: String,
    nat_chains: String,
    nat_rules: String,
    active_nat_chains: BTreeSet<String>,
}

impl Lines {
    fn declare_nat(&mut self, chain: &str) {
        let _ = writeln!(self.nat_chains, ":{chain} - [0:0]");
        self.active_nat_chains.insert(chain.to_string());
    }
}

/// Appends one rule: its words joined by spaces. Comments with spaces arrive already quoted.
fn push(out: &mut String, words: &[&str]) {
    out.push_str(&words.join(" "));
    out.push('\n');
}

/// The whole rule set for these Services and EndpointSlices, as `iptables-restore --noflush`
/// input for the filter and nat tables. Only `SKIFF-*` chains are declared (which flushes
/// them); `existing_nat_chains` (the nat table's chains now, e.g. from `iptables-save -t nat`)
/// name the per-Service chains of earlier syncs, deleted here when no longer written.
pub fn build_ruleset(
    config: &ProxyConfig,
    services: &[Service],
    slices: &[EndpointSlice],
    existing_nat_chains: &[String],
) -> String {
    let mut ports: Vec<ServicePort> = services.iter().flat_map(model::service_ports).collect();
    ports.sort_by(|a, b| a.key.cmp(&b.key));
    let endpoints = model::endpoints_by_port(slices, &config.node_name);
    let mask = format!("{MASQUERADE_MARK}/{MASQUERADE_MARK}");

    let mut lines = Lines::default();
    for chain in FILTER_CHAINS {
        let _ = writeln!(lines.filter_chains, ":{chain} - [0:0]");
    }
    for chain in NAT_CHAINS {
        lines.declare_nat(chain);
    }

    push(
        &mut lines.nat_rules,
        &[
            "-A",
            POSTROUTING_CHAIN,
            "-m",
            "mark",
            "!",
            "--mark",
            &mask,
            "-j",
            "RETURN",
        ],
    );
    // Clearing the mark keeps a packet that traverses the stack again from being masqueraded twice.
    push(
        &mut lines.nat_rules,
        &[
            "-A",
            POSTROUTING_CHAIN,
            "-j",
            "MARK",
            "--xor-mark",
            MASQUERADE_MARK,
        ],
    );
    push(
        &mut lines.nat_rules,
        &[
            "-A",
            POSTROUTING_CHAIN,
            "-m",
            "comment",
            "--comment",
            "\"skiff service traffic requiring SNAT\"",
            "-j",
            "MASQUERADE",
            "--random-fully",
        ],
    );
    push(
        &mut lines.nat_rules,
        &[
            "-A",
            MARK_MASQ_CHAIN,
            "-j",
            "MARK",
            "--or-mark",
            MASQUERADE_MARK,
        ],
    );
    if config.localhost_node_ports {
        // route_localnet lets anyone who can reach the node send to 127.0.0.0/8; only
        // connections the NodePort rules translated may (kubernetes#90259).
        push(
            &mut lines.filter_rules,
            &[
                "-A",
                FIREWALL_CHAIN,
                "-m",
                "comment",
                "--comment",
                "\"block incoming localnet connections\"",
                "-d",
                "127.0.0.0/8",
                "!",
                "-s",
                "127.0.0.0/8",
                "-m",
                "conntrack",
                "!",
                "--ctstate",
                "RELATED,ESTABLISHED,DNAT",
                "-j",
                "DROP",
            ],
        );
    }

    for port in &ports {
        let list = endpoints.get(&port.key).map(Vec::as_slice).unwrap_or(&[]);
        write_service_port(config, port, list, &mut lines);
    }

    // Per-Service chains of earlier syncs: declared (flushed) first, as iptables-restore wants.
    let mut deleted = Vec::new();
    for chain in existing_nat_chains {
        if is_per_service_chain(chain) && !lines.active_nat_chains.contains(chain) {
            let _ = writeln!(lines.nat_chains, ":{chain} - [0:0]");
            deleted.push(chain.as_str());
        }
    }
    for chain in deleted {
        push(&mut lines.nat_rules, &["-X", chain]);
    }

    // NodePorts last: a ClusterIP or external IP that is also a local address wins.
    let nodeports_comment =
        "\"skiff service nodeports; NOTE: this must be the last rule in this chain\"";
    if config.node_ips.is_empty() {
        let mut rule = vec![
            "-A",
            SERVICES_CHAIN,
            "-m",
            "comment",
            "--comment",
            nodeports_comment,
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
        ];
        if !config.localhost_node_ports {
            rule.extend(["!", "-d", "127.0.0.0/8"]);
        }
        rule.extend(["-j", NODEPORTS_CHAIN]);
        push(&mut lines.nat_rules, &rule);
    } else {
        for ip in &config.node_ips {
            if ip.is_loopback() && !config.localhost_node_ports {
                continue;
            }
            let ip = ip.to_string();
            push(
                &mut lines.nat_rules,
                &[
                    "-A",
                    SERVICES_CHAIN,
                    "-m",
                    "comment",
                    "--comment",
                    nodeports_comment,
                    "-d",
                    &ip,
                    "-j",
                    NODEPORTS_CHAIN,
                ],
            );
        }
    }

    // Dropping INVALID packets avoids resets of connections whose packets conntrack could not
    // place (kubernetes#74839).
    push(
        &mut lines.filter_rules,
        &[
            "-A",
            FORWARD_CHAIN,
            "-m",
            "conntrack",
            "--ctstate",
            "INVALID",
            "-j",
            "DROP",
        ],
    );
    // Marked packets are Service traffic: forwarded even when the FORWARD policy is DROP.
    push(
        &mut lines.filter_rules,
        &[
            "-A",
            FORWARD_CHAIN,
            "-m",
            "comment",
            "--comment",
            "\"skiff forwarding rules\"",
            "-m",
            "mark",
            "--mark",
            &mask,
            "-j",
            "ACCEPT",
        ],
    );
    push(
        &mut lines.filter_rules,
        &[
            "-A",
            FORWARD_CHAIN,
            "-m",
            "comment",
            "--comment",
            "\"skiff forwarding conntrack rule\"",
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
            "-j",
            "ACCEPT",
        ],
    );

    let Lines {
        filter_chains,
        filter_rules,
        nat_chains,
        nat_rules,
        ..
    } = lines;
    format!("*filter\n{filter_chains}{filter_rules}COMMIT\n*nat\n{nat_chains}{nat_rules}COMMIT\n")
}

fn write_service_port(
    config: &ProxyConfig,
    port: &ServicePort,
    endpoints: &[Endpoint],
    lines: &mut Lines,
) {
    let name = port.key.display_name();
    let protocol = port.key.protocol.iptables_name();
    let categorized = model::categorize(port, endpoints);
    let cluster_chain = service_chain(&name, protocol);
    let local_chain = local_chain(&name, protocol);
    let ext_chain = external_chain(&name, protocol);
    let cluster_ip = port.cluster_ip.to_string();
    let service_port = port.port.to_string();
    let cluster_ip_comment = format!("\"{name} cluster IP\"");
    let endpoint_chain_of = |e: &Endpoint| endpoint_chain(&name, protocol, &e.address());

    let uses_cluster_chain = !categorized.cluster.is_empty() && port.uses_cluster_endpoints();
    let uses_local_chain = !categorized.local.is_empty() && port.uses_local_endpoints();

    let (internal_chain, has_internal) = if port.internal_policy_local {
        (&local_chain, !categorized.local.is_empty())
    } else {
        (&cluster_chain, categorized.any)
    };
    let (external_policy_chain, has_external) = if port.external_policy_local {
        (&local_chain, !categorized.local.is_empty())
    } else {
        (&cluster_chain, categorized.any)
    };
    // The EXT chain exists whenever there are endpoints anywhere: its short-circuits for
    // pods and the node itself work even without local endpoints.
    let uses_ext_chain = categorized.any && port.externally_accessible();

    let no_endpoints_comment = format!("\"{name} has no endpoints\"");
    let no_local_comment = format!("\"{name} has no local endpoints\"");
    // Without any endpoint, callers are told at once (REJECT); with endpoints elsewhere only,
    // traffic policy Local silently drops what is not short-circuited (as upstream).
    let filter = if categorized.any {
        ("DROP", no_local_comment.as_str())
    } else {
        ("REJECT", no_endpoints_comment.as_str())
    };
    let (internal_filter, external_filter) = (filter, filter);

    let proto_match = ["-m", protocol, "-p", protocol];

    if has_internal {
        let mut rule = vec![
            "-A",
            SERVICES_CHAIN,
            "-m",
            "comment",
            "--comment",
            &cluster_ip_comment,
        ];
        rule.extend(proto_match);
        rule.extend([
            "-d",
            &cluster_ip,
            "--dport",
            &service_port,
            "-j",
            internal_chain,
        ]);
        push(&mut lines.nat_rules, &rule);
    } else {
        let mut rule = vec![
            "-A",
            SERVICES_CHAIN,
            "-m",
            "comment",
            "--comment",
            internal_filter.1,
        ];
        rule.extend(proto_match);
        rule.extend([
            "-d",
            &cluster_ip,
            "--dport",
            &service_port,
            "-j",
            internal_filter.0,
        ]);
        push(&mut lines.filter_rules, &rule);
    }

    let external_ip_comment = format!("\"{name} external IP\"");
    let load_balancer_comment = format!("\"{name} loadbalancer IP\"");
    let external_destinations = port
        .external_ips
        .iter()
        .map(|ip| (ip, &external_ip_comment))
        .chain(
            port.load_balancer_ips
                .iter()
                .map(|ip| (ip, &load_balancer_comment)),
        );
    for (ip, comment) in external_destinations {
        let ip = ip.to_string();
        if categorized.any {
            let mut rule = vec!["-A", SERVICES_CHAIN, "-m", "comment", "--comment", comment];
            rule.extend(proto_match);
            rule.extend(["-d", &ip, "--dport", &service_port, "-j", &ext_chain]);
            push(&mut lines.nat_rules, &rule);
        }
        if !has_external {
            let mut rule = vec![
                "-A",
                EXTERNAL_SERVICES_CHAIN,
                "-m",
                "comment",
                "--comment",
                external_filter.1,
            ];
            rule.extend(proto_match);
            rule.extend(["-d", &ip, "--dport", &service_port, "-j", external_filter.0]);
            push(&mut lines.filter_rules, &rule);
        }
    }

    if let Some(node_port) = port.node_port {
        let node_port = node_port.to_string();
        if categorized.any {
            let mut rule = vec!["-A", NODEPORTS_CHAIN, "-m", "comment", "--comment", &name];
            rule.extend(proto_match);
            rule.extend(["--dport", &node_port, "-j", &ext_chain]);
            push(&mut lines.nat_rules, &rule);
        }
        if !has_external {
            let mut rule = vec![
                "-A",
                EXTERNAL_SERVICES_CHAIN,
                "-m",
                "comment",
                "--comment",
                external_filter.1,
                "-m",
                "addrtype",
                "--dst-type",
                "LOCAL",
            ];
            rule.extend(proto_match);
            rule.extend(["--dport", &node_port, "-j", external_filter.0]);
            push(&mut lines.filter_rules, &rule);
        }
    }

    if has_internal && let Some(cidr) = config.cluster_cidr {
        // Off-cluster clients reach a ClusterIP through a route to some node; the reply must
        // come back through that node, so their traffic leaves with its address.
        let cidr = cidr.to_string();
        let mut rule = vec![
            "-A",
            internal_chain,
            "-m",
            "comment",
            "--comment",
            &cluster_ip_comment,
        ];
        rule.extend(proto_match);
        rule.extend([
            "-d",
            &cluster_ip,
            "--dport",
            &service_port,
            "!",
            "-s",
            &cidr,
            "-j",
            MARK_MASQ_CHAIN,
        ]);
        push(&mut lines.nat_rules, &rule);
    }

    if uses_ext_chain {
        lines.declare_nat(&ext_chain);
        if !port.external_policy_local {
            // Endpoints may be on other nodes: replies must come back through this one.
            let comment = format!("\"masquerade traffic for {name} external destinations\"");
            push(
                &mut lines.nat_rules,
                &[
                    "-A",
                    &ext_chain,
                    "-m",
                    "comment",
                    "--comment",
                    &comment,
                    "-j",
                    MARK_MASQ_CHAIN,
                ],
            );
        } else {
            if let Some(cidr) = config.cluster_cidr {
                // A pod reaching a NodePort behaves as if it went out to a load balancer and
                // back: no traffic policy applies to it.
                let cidr = cidr.to_string();
                let comment = format!("\"pod traffic for {name} external destinations\"");
                push(
                    &mut lines.nat_rules,
                    &[
                        "-A",
                        &ext_chain,
                        "-m",
                        "comment",
                        "--comment",
                        &comment,
                        "-s",
                        &cidr,
                        "-j",
                        &cluster_chain,
                    ],
                );
            }
            // The node's own connections leave with a local source address that the
            // endpoint could not answer directly.
            let comment = format!("\"masquerade LOCAL traffic for {name} external destinations\"");
            push(
                &mut lines.nat_rules,
                &[
                    "-A",
                    &ext_chain,
                    "-m",
                    "comment",
                    "--comment",
                    &comment,
                    "-m",
                    "addrtype",
                    "--src-type",
                    "LOCAL",
                    "-j",
                    MARK_MASQ_CHAIN,
                ],
            );
            let comment = format!("\"route LOCAL traffic for {name} external destinations\"");
            push(
                &mut lines.nat_rules,
                &[
                    "-A",
                    &ext_chain,
                    "-m",
                    "comment",
                    "--comment",
                    &comment,
                    "-m",
                    "addrtype",
                    "--src-type",
                    "LOCAL",
                    "-j",
                    &cluster_chain,
                ],
            );
        }
        if has_external {
            push(
                &mut lines.nat_rules,
                &["-A", &ext_chain, "-j", external_policy_chain],
            );
        }
    }

    if uses_cluster_chain {
        lines.declare_nat(&cluster_chain);
        write_balancing_rules(
            &mut lines.nat_rules,
            &name,
            port,
            &cluster_chain,
            &categorized.cluster,
            &endpoint_chain_of,
        );
    }
    if uses_local_chain {
        lines.declare_nat(&local_chain);
        write_balancing_rules(
            &mut lines.nat_rules,
            &name,
            port,
            &local_chain,
            &categorized.local,
            &endpoint_chain_of,
        );
    }

    for endpoint in &categorized.reachable {
        let chain = endpoint_chain_of(endpoint);
        lines.declare_nat(&chain);
        let source = format!("{}/32", endpoint.ip);
        // A pod reaching itself through the Service: without masquerade it would answer
        // itself directly and the client would drop the reply from an unexpected address.
        push(
            &mut lines.nat_rules,
            &[
                "-A",
                &chain,
                "-m",
                "comment",
                "--comment",
                &name,
                "-s",
                &source,
                "-j",
                MARK_MASQ_CHAIN,
            ],
        );
        let address = endpoint.address();
        let mut rule = vec!["-A", chain.as_str(), "-m", "comment", "--comment", &name];
        if port.affinity_timeout.is_some() {
            rule.extend(["-m", "recent", "--name", &chain, "--set"]);
        }
        rule.extend(proto_match);
        rule.extend(["-j", "DNAT", "--to-destination", &address]);
        push(&mut lines.nat_rules, &rule);
    }
}

/// Session affinity first (a client seen within the timeout goes back to its endpoint), then
/// an even random choice: rule i of n matches with probability 1/(n-i), the last always.
fn write_balancing_rules(
    out: &mut String,
    name: &str,
    port: &ServicePort,
    chain: &str,
    endpoints: &[&Endpoint],
    endpoint_chain_of: &dyn Fn(&Endpoint) -> String,
) {
    if let Some(timeout) = port.affinity_timeout {
        let timeout = timeout.to_string();
        for endpoint in endpoints {
            let target = endpoint_chain_of(endpoint);
            let comment = format!("\"{name} -> {}\"", endpoint.address());
            push(
                out,
                &[
                    "-A",
                    chain,
                    "-m",
                    "comment",
                    "--comment",
                    &comment,
                    "-m",
                    "recent",
                    "--name",
                    &target,
                    "--rcheck",
                    "--seconds",
                    &timeout,
                    "--reap",
                    "-j",
                    &target,
                ],
            );
        }
    }
    let count = endpoints.len();
    for (i, endpoint) in endpoints.iter().enumerate() {
        let target = endpoint_chain_of(endpoint);
        let comment = format!("\"{name} -> {}\"", endpoint.address());
        let mut rule = vec!["-A", chain, "-m", "comment", "--comment", &comment];
        let probability;
        if i + 1 < count {
            probability = format!("{:.10}", 1.0 / (count - i) as f64);
            rule.extend([
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &probability,
            ]);
        }
        rule.extend(["-j", &target]);
        push(out, &rule);
    }
}
