//! The proxy's rules applied with the real iptables and driven by real traffic, as root, each
//! test in a network namespace of its own (see `support/net.rs`): a bridge, "pods" in their own
//! namespaces serving distinct pages, ClusterIPs routed to the bridge as the node network does.

mod support;

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{Value, json};
use skiff_nodeagent::proxy::{Proxier, ProxyConfig};
use support::net::{self, Pod, get, hits, in_netns, sh};

const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const NODE_PORT: u16 = 30080;

fn config() -> ProxyConfig {
    ProxyConfig {
        cluster_cidr: Some(net::POD_CIDR.parse().expect("cidr")),
        ..ProxyConfig::new("node-a")
    }
}

fn web_service(extra: Value) -> Service {
    let mut spec = json!({"type": "NodePort", "clusterIP": CLUSTER_IP.to_string(),
        "ports": [{"name": "http", "port": 80, "nodePort": NODE_PORT}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(
        json!({"metadata": {"namespace": "default", "name": "web"}, "spec": spec}),
    )
    .expect("service")
}

fn web_slice(pods: &[&Pod]) -> EndpointSlice {
    let endpoints: Vec<Value> = pods
        .iter()
        .map(|p| json!({"addresses": [p.ip.to_string()], "conditions": {"ready": true}}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "web-abc",
            "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .expect("slice")
}

/// The node's own address, on an interface of its own (not the pod bridge; this kernel has
/// no dummy interfaces, a bridge without ports stands in).
fn add_node_address() {
    sh(&["ip", "link", "add", "node0", "type", "bridge"]);
    sh(&[
        "ip",
        "addr",
        "add",
        &format!("{NODE_IP}/24"),
        "dev",
        "node0",
    ]);
    sh(&["ip", "link", "set", "node0", "up"]);
}

/// Removes the proxy's rules even when the test fails half-way (the netns would take them
/// along anyway; this keeps `cleanup` itself exercised on every path).
struct CleanupGuard;

impl Drop for CleanupGuard {
    fn drop(&mut self) {
        let _ = Proxier::cleanup();
    }
}

#[test]
fn cluster_ip_and_node_ports_reach_every_endpoint_and_follow_updates() {
    if !net::require() {
        return;
    }
    in_netns(|| {
        net::make_bridge();
        add_node_address();
        // localhost NodePorts need this in the node's netns, as Proxier::run sets it.
        std::fs::write("/proc/sys/net/ipv4/conf/all/route_localnet", "1").expect("route_localnet");
        let one = Pod::start(1, "endpoint-1");
        let two = Pod::start(2, "endpoint-2");
        let client = Pod::start(3, "client");
        let _cleanup = CleanupGuard;
        let config = config();
        let service = web_service(json!({}));
        Proxier::apply(
            &config,
            std::slice::from_ref(&service),
            &[web_slice(&[&one, &two])],
        )
        .expect("apply");

        let cluster_ip = SocketAddr::from((CLUSTER_IP, 80));
        let seen = hits(cluster_ip, 40);
        assert_eq!(
            seen.keys().collect::<Vec<_>>(),
            ["endpoint-1", "endpoint-2"],
            "{seen:?}"
        );

        for node_port in [
            SocketAddr::from((NODE_IP, NODE_PORT)),
            SocketAddr::from((net::NODE_BRIDGE_IP, NODE_PORT)),
            SocketAddr::from((Ipv4Addr::LOCALHOST, NODE_PORT)),
        ] {
            let seen = hits(node_port, 20);
            assert_eq!(seen.values().sum::<usize>(), 20, "{node_port}: {seen:?}");
            assert!(
                seen.keys().all(|k| k.starts_with("endpoint-")),
                "{node_port}: {seen:?}"
            );
        }
        // From another "pod": through PREROUTING and FORWARD rather than OUTPUT (busybox
        // wget crashes with -T, so coreutils bounds it).
        let url = format!("http://{}:{NODE_PORT}/", net::NODE_BRIDGE_IP);
        let output = client.exec(&["timeout", "10", "busybox", "wget", "-q", "-O", "-", &url]);
        let body = String::from_utf8_lossy(&output.stdout);
        assert!(
            body.starts_with("endpoint-"),
            "wget from a pod: {body:?} {output:?}"
        );
        let url = format!("http://{CLUSTER_IP}/");
        let output = client.exec(&["timeout", "10", "busybox", "wget", "-q", "-O", "-", &url]);
        let body = String::from_utf8_lossy(&output.stdout);
        assert!(
            body.starts_with("endpoint-"),
            "ClusterIP from a pod: {body:?} {output:?}"
        );

        // An endpoint leaves: the next sync sends everything to the other one, and its chain goes.
        let before = net::skiff_chains();
        Proxier::apply(
            &config,
            std::slice::from_ref(&service),
            &[web_slice(&[&one])],
        )
        .expect("apply");
        let seen = hits(cluster_ip, 20);
        assert_eq!(seen.keys().collect::<Vec<_>>(), ["endpoint-1"], "{seen:?}");
        let after = net::skiff_chains();
        assert!(
            after
                .iter()
                .filter(|l| l.starts_with(":SKIFF-SEP-"))
                .count()
                < before
                    .iter()
                    .filter(|l| l.starts_with(":SKIFF-SEP-"))
                    .count(),
            "stale endpoint chain left: {after:#?}"
        );

        // No endpoints: refused at once rather than timing out, on the ClusterIP and NodePort.
        Proxier::apply(&config, std::slice::from_ref(&service), &[web_slice(&[])]).expect("apply");
        for addr in [cluster_ip, SocketAddr::from((NODE_IP, NODE_PORT))] {
            let started = Instant::now();
            let error = get(addr).expect_err("no endpoints, yet connected");
            assert_eq!(
                error.kind(),
                ErrorKind::ConnectionRefused,
                "{addr}: {error}"
            );
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{addr}: slow reject"
            );
        }

        // Applying twice leaves one copy of each jump rule.
        Proxier::apply(
            &config,
            std::slice::from_ref(&service),
            &[web_slice(&[&one])],
        )
        .expect("apply");
        let nat = sh(&["iptables-save", "-t", "nat"]);
        assert_eq!(nat.matches("-A PREROUTING ").count(), 1, "{nat}");
        assert_eq!(nat.matches("-A OUTPUT ").count(), 1, "{nat}");
        assert_eq!(nat.matches("-A POSTROUTING ").count(), 1, "{nat}");

        Proxier::cleanup().expect("cleanup");
        assert_eq!(net::skiff_chains(), Vec::<String>::new());
        // And without rules the ClusterIP leads nowhere.
        assert!(get(cluster_ip).is_err());
    });
}

#[test]
fn client_ip_affinity_pins_a_client_to_one_endpoint() {
    if !net::require() {
        return;
    }
    in_netns(|| {
        net::make_bridge();
        let pods: Vec<Pod> = (1..=3)
            .map(|i| Pod::start(i, &format!("endpoint-{i}")))
            .collect();
        let _cleanup = CleanupGuard;
        let service = web_service(json!({"sessionAffinity": "ClientIP"}));
        let refs: Vec<&Pod> = pods.iter().collect();
        Proxier::apply(&config(), &[service], &[web_slice(&refs)]).expect("apply");
        let seen = hits(SocketAddr::from((CLUSTER_IP, 80)), 30);
        assert_eq!(seen.len(), 1, "affinity broken: {seen:?}");

        // The same endpoints without affinity spread (30 tries all landing on one of three
        // endpoints by chance: 3 * (1/3)^30).
        let service = web_service(json!({}));
        Proxier::apply(&config(), &[service], &[web_slice(&refs)]).expect("apply");
        let seen = hits(SocketAddr::from((CLUSTER_IP, 80)), 30);
        assert!(seen.len() > 1, "no balancing: {seen:?}");
        Proxier::cleanup().expect("cleanup");
        assert_eq!(net::skiff_chains(), Vec::<String>::new());
    });
}

#[test]
fn cleanup_leaves_other_rules_alone() {
    if !net::require() {
        return;
    }
    in_netns(|| {
        sh(&["iptables", "-t", "nat", "-N", "OTHER"]);
        sh(&["iptables", "-t", "nat", "-A", "OUTPUT", "-j", "OTHER"]);
        sh(&[
            "iptables",
            "-A",
            "FORWARD",
            "-s",
            "10.9.9.9/32",
            "-j",
            "DROP",
        ]);
        let _cleanup = CleanupGuard;
        Proxier::apply(&config(), &[web_service(json!({}))], &[]).expect("apply");
        let output = sh(&["iptables-save"]);
        assert!(output.contains(":SKIFF-SERVICES"), "{output}");
        Proxier::cleanup().expect("cleanup");
        let output = sh(&["iptables-save"]);
        assert!(!output.contains("SKIFF-"), "{output}");
        assert!(output.contains("-A OUTPUT -j OTHER"), "{output}");
        assert!(
            output.contains("-A FORWARD -s 10.9.9.9/32 -j DROP"),
            "{output}"
        );
        // Cleaning up twice is fine.
        Proxier::cleanup().expect("second cleanup");
    });
}

#[test]
fn iptables_accepts_every_kind_of_rule() {
    if !net::require() {
        return;
    }
    in_netns(|| {
        let _cleanup = CleanupGuard;
        let mut services: Vec<Service> = [
            json!({"name": "udp", "spec": {"clusterIP": "10.96.0.11",
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}}),
            json!({"name": "sctp", "spec": {"clusterIP": "10.96.0.12",
                "ports": [{"port": 9999, "protocol": "SCTP"}]}}),
            json!({"name": "sticky", "spec": {"clusterIP": "10.96.0.13", "sessionAffinity": "ClientIP",
                "ports": [{"port": 80}]}}),
            json!({"name": "local", "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.14",
                "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Local",
                "externalIPs": ["192.0.2.1"], "ports": [{"port": 80, "nodePort": 30001}]}}),
            json!({"name": "empty", "spec": {"type": "NodePort", "clusterIP": "10.96.0.15",
                "externalIPs": ["192.0.2.2"], "ports": [{"port": 80, "nodePort": 30002}]}}),
        ]
        .into_iter()
        .map(|v| {
            serde_json::from_value(json!({
                "metadata": {"namespace": "default", "name": v["name"]}, "spec": v["spec"]}))
            .expect("service")
        })
        .collect();
        services[3].status =
            serde_json::from_value(json!({"loadBalancer": {"ingress": [{"ip": "198.51.100.1"}]}}))
                .expect("status");
        let slices: Vec<EndpointSlice> = [
            (
                "udp",
                json!([{"name": "dns", "port": 5353, "protocol": "UDP"}]),
            ),
            ("sctp", json!([{"port": 9999, "protocol": "SCTP"}])),
            ("sticky", json!([{"port": 8080}])),
            ("local", json!([{"port": 8080}])),
        ]
        .into_iter()
        .map(|(name, ports)| {
            serde_json::from_value(json!({
                "metadata": {"namespace": "default", "name": format!("{name}-a"),
                    "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4",
                "ports": ports,
                "endpoints": [
                    {"addresses": ["10.240.0.21"], "nodeName": "node-a"},
                    {"addresses": ["10.240.0.22"], "nodeName": "node-b",
                        "conditions": {"ready": false, "serving": true, "terminating": true}},
                    {"addresses": ["10.240.0.23"], "nodeName": "node-b"},
                ],
            }))
            .expect("slice")
        })
        .collect();
        Proxier::apply(&config(), &services, &slices).expect("apply");
        let nat = sh(&["iptables-save", "-t", "nat"]);
        for chain in ["SKIFF-SVC-", "SKIFF-SVL-", "SKIFF-EXT-", "SKIFF-SEP-"] {
            assert!(
                nat.contains(&format!(":{chain}")),
                "no {chain} chain:\n{nat}"
            );
        }
        for rule in [
            "-m recent --rcheck --seconds 10800 --reap",
            "-p sctp",
            "-p udp",
            "--random-fully",
        ] {
            assert!(nat.contains(rule), "no {rule:?} in:\n{nat}");
        }
        let filter = sh(&["iptables-save", "-t", "filter"]);
        assert_eq!(filter.matches("-j REJECT").count(), 3, "{filter}");

        // Everything removed at once: the next sync deletes every per-Service chain.
        Proxier::apply(&config(), &[], &[]).expect("apply nothing");
        let nat = sh(&["iptables-save", "-t", "nat"]);
        assert!(
            !nat.contains("SKIFF-SVC-") && !nat.contains("SKIFF-SEP-"),
            "{nat}"
        );
        assert!(nat.contains(":SKIFF-SERVICES"), "{nat}");
    });
}
