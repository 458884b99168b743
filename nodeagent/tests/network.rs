//! The pod network on real interfaces, routes and iptables rules, as root.
//!
//! Every test runs on its own thread that first moves into a fresh network namespace
//! (`unshare(CLONE_NEWNET)`): the "node" is that namespace, so the bridge, veths, routes and nat
//! rules it makes vanish with the thread, and nothing reaches the machine's own network. Pods are
//! `unshare -n sleep` processes (their namespace is `/proc/PID/ns/net`), killed by PID on drop;
//! state directories are temp dirs. An "outside" host, where needed, is another such process
//! reached through a veth pair.
//!
//! Without root (or `ip`, `iptables`, `unshare`, `nsenter`, `busybox`) the tests are skipped,
//! unless `CI=true`, where that is a failure.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use skiff_nodeagent::network::{
    HOST_VETH_PREFIX, Ipv4Cidr, NAT_CHAIN, NetworkConfig, NetworkError, PodInterface, PodNetwork,
};

// ---------------------------------------------------------------------------------------------
// Environment.

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Whether the tests may run: root and the tools. Skips with a message when not, unless
/// `CI=true`, where that is a failure.
fn require() -> bool {
    let mut missing: Vec<String> = [
        "ip",
        "iptables",
        "iptables-restore",
        "iptables-save",
        "unshare",
        "nsenter",
        "busybox",
    ]
    .iter()
    .filter(|t| which(t).is_none())
    .map(|t| t.to_string())
    .collect();
    if !nix::unistd::geteuid().is_root() {
        missing.push("root privileges".into());
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("missing {}", missing.join(", "));
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

/// Runs `body` on a new thread inside a new network namespace (with `lo` up) and returns what
/// it returns; a panic in it fails the test. The namespace dies with the thread.
fn in_own_netns<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    let thread = std::thread::spawn(move || {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
        ip(&["link", "set", "lo", "up"]);
        body()
    });
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(which(program).unwrap_or_else(|| PathBuf::from(program)))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"))
}

fn ip(args: &[&str]) -> String {
    let out = run("ip", args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn link_exists(name: &str) -> bool {
    run("ip", &["link", "show", "dev", name]).status.success()
}

/// Our routes, one `ip route` line each, sorted.
fn our_routes() -> Vec<String> {
    let mut lines: Vec<String> = ip(&["-4", "route", "show", "proto", "83"])
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    lines
}

fn nat_rules() -> String {
    let out = run("iptables-save", &["-t", "nat"]);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A process in a network namespace of its own: a pod's sandbox, or an outside host.
struct NetnsProcess {
    child: Child,
    netns: PathBuf,
}

impl NetnsProcess {
    fn start() -> NetnsProcess {
        let child = Command::new(which("unshare").expect("unshare"))
            .args(["-n", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("starting unshare -n sleep");
        let netns = PathBuf::from(format!("/proc/{}/ns/net", child.id()));
        let process = NetnsProcess { child, netns };
        // Until unshare(2) has run the process is still in our namespace.
        let ours = std::fs::read_link("/proc/thread-self/ns/net").expect("our netns");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(&process.netns).ok().as_ref() == Some(&ours) {
            assert!(Instant::now() < deadline, "unshare -n did not take effect");
            std::thread::sleep(Duration::from_millis(2));
        }
        process
    }

    /// Runs a command inside the namespace.
    fn exec(&self, program: &str, args: &[&str]) -> Output {
        let net = format!("--net={}", self.netns.display());
        let mut full = vec![net.as_str(), program];
        full.extend_from_slice(args);
        run("nsenter", &full)
    }

    fn ip(&self, args: &[&str]) -> String {
        let ip = which("ip").expect("ip");
        let out = self.exec(ip.to_str().expect("path"), args);
        assert!(
            out.status.success(),
            "ip {} in {}: {}",
            args.join(" "),
            self.netns.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn ping(&self, address: Ipv4Addr) -> bool {
        let target = address.to_string();
        self.exec("busybox", &["ping", "-c", "1", "-W", "2", &target])
            .status
            .success()
    }
}

impl Drop for NetnsProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Node {
    state: tempfile::TempDir,
    config: NetworkConfig,
}

fn cidr(s: &str) -> Ipv4Cidr {
    s.parse().expect("CIDR")
}

fn node(pod_cidr: &str) -> Node {
    let state = tempfile::tempdir().expect("temp dir");
    let config = NetworkConfig {
        bridge: "skiff0".into(),
        pod_cidr: cidr(pod_cidr),
        cluster_cidr: cidr("10.244.0.0/16"),
        service_cidr: cidr("10.96.0.0/12"),
        state_dir: state.path().join("network"),
    };
    Node { state, config }
}

impl Node {
    fn network(&self) -> PodNetwork {
        PodNetwork::new(self.config.clone()).expect("valid config")
    }
}

/// The uplink of the test node: a veth to an "outside" host at 192.168.50.2, the node being
/// 192.168.50.1; peers (other nodes) are imagined on the same link.
fn uplink() -> NetnsProcess {
    let outside = NetnsProcess::start();
    let netns = outside.netns.to_str().expect("path").to_string();
    ip(&[
        "link", "add", "up0", "type", "veth", "peer", "name", "up1", "netns", &netns,
    ]);
    ip(&["address", "add", "192.168.50.1/24", "dev", "up0"]);
    // No IPv6 chatter (router solicitations, MLD) to blur the count of packets sent on it.
    std::fs::write("/proc/sys/net/ipv6/conf/up0/disable_ipv6", "1").expect("disable IPv6 on up0");
    ip(&["link", "set", "up0", "up"]);
    outside.ip(&["link", "set", "lo", "up"]);
    outside.ip(&["address", "add", "192.168.50.2/24", "dev", "up1"]);
    outside.ip(&["link", "set", "up1", "up"]);
    outside
}

fn tx_packets(link: &str) -> u64 {
    let json: serde_json::Value =
        serde_json::from_str(&ip(&["-j", "-s", "link", "show", "dev", link])).expect("json");
    json[0]["stats64"]["tx"]["packets"]
        .as_u64()
        .expect("tx packets")
}

fn attach_timed(network: &PodNetwork, id: &str, pod: &NetnsProcess) -> (PodInterface, Duration) {
    let start = Instant::now();
    let interface = network.attach(id, &pod.netns).expect("attach");
    (interface, start.elapsed())
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn node_setup_is_idempotent() {
    if !require() {
        return;
    }
    in_own_netns(|| {
        let node = node("10.244.1.0/24");
        let network = node.network();
        network.ensure_node().expect("first ensure_node");
        let routes = our_routes();
        let rules = nat_rules();
        network.ensure_node().expect("second ensure_node");
        assert_eq!(our_routes(), routes);
        assert_eq!(nat_rules(), rules);

        let addresses = ip(&["-4", "-o", "address", "show", "dev", "skiff0"]);
        assert_eq!(addresses.lines().count(), 1, "{addresses}");
        assert!(addresses.contains("inet 10.244.1.1/24"), "{addresses}");
        assert!(ip(&["link", "show", "dev", "skiff0"]).contains("link/ether 0a:58:0a:f4:01:01"));
        let forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").expect("sysctl");
        assert_eq!(forwarding.trim(), "1");
        assert_eq!(
            routes,
            [
                "10.96.0.0/12 dev skiff0 scope link linkdown",
                "unreachable 10.244.0.0/24",
                "unreachable 10.244.128.0/17",
                "unreachable 10.244.16.0/20",
                "unreachable 10.244.2.0/23",
                "unreachable 10.244.32.0/19",
                "unreachable 10.244.4.0/22",
                "unreachable 10.244.64.0/18",
                "unreachable 10.244.8.0/21",
            ]
        );
        let jumps = rules
            .lines()
            .filter(|l| l.starts_with("-A POSTROUTING") && l.contains(NAT_CHAIN))
            .count();
        assert_eq!(jumps, 1, "{rules}");
        assert!(
            rules.contains(&format!("-A {NAT_CHAIN} -s 10.244.1.0/24 -d 10.244.0.0/16")),
            "{rules}"
        );
        assert!(rules.contains("-j MASQUERADE"), "{rules}");

        // A podCIDR change moves the bridge's address instead of adding a second one.
        let moved = node_with(&node, "10.244.7.0/24").network();
        moved.ensure_node().expect("ensure_node with a new podCIDR");
        let addresses = ip(&["-4", "-o", "address", "show", "dev", "skiff0"]);
        assert_eq!(addresses.lines().count(), 1, "{addresses}");
        assert!(addresses.contains("inet 10.244.7.1/24"), "{addresses}");
    });
}

fn node_with(base: &Node, pod_cidr: &str) -> Node {
    let state = tempfile::tempdir().expect("temp dir");
    let mut config = base.config.clone();
    config.pod_cidr = cidr(pod_cidr);
    config.state_dir = state.path().join("network");
    Node { state, config }
}

#[test]
fn pods_on_the_bridge_reach_each_other_the_node_and_the_outside() {
    if !require() {
        return;
    }
    in_own_netns(|| {
        let outside = uplink();
        let node = node("10.244.1.0/24");
        let network = node.network();
        network.ensure_node().expect("ensure_node");
        let (a, b) = (NetnsProcess::start(), NetnsProcess::start());
        let (ia, took_a) = attach_timed(&network, "pod-a", &a);
        let (ib, took_b) = attach_timed(&network, "pod-b", &b);
        eprintln!("attach took {took_a:?} and {took_b:?}");
        assert_ne!(ia.ip, ib.ip);
        for interface in [&ia, &ib] {
            assert!(node.config.pod_cidr.contains(interface.ip));
            assert_eq!(interface.prefix_len, 24);
            assert_eq!(interface.gateway, Ipv4Addr::new(10, 244, 1, 1));
            assert!(
                interface.host_veth.starts_with(HOST_VETH_PREFIX)
                    && interface.host_veth.len() <= 15
            );
            let master = ip(&["link", "show", "dev", &interface.host_veth]);
            assert!(
                master.contains("master skiff0") && master.contains("state UP"),
                "{master}"
            );
            // Hairpin on, so a pod can reach itself through a Service address.
            let details = ip(&["-details", "link", "show", "dev", &interface.host_veth]);
            assert!(details.contains("hairpin on"), "{details}");
            // No IPv6 on the bridge port: no link-local address to probe and announce.
            if std::path::Path::new("/proc/sys/net/ipv6").exists() {
                let v6 = ip(&["-6", "address", "show", "dev", &interface.host_veth]);
                assert!(!v6.contains("inet6"), "{v6}");
                assert!(details.contains("addrgenmode none"), "{details}");
            }
        }
        // No IPv6 address on the pod end either (the pod network is IPv4 only), so nothing to
        // probe, solicit or report; loopback keeps ::1.
        if std::path::Path::new("/proc/sys/net/ipv6").exists() {
            let v6 = a.ip(&["-6", "address", "show"]);
            assert!(!v6.contains("scope link"), "{v6}");
            assert!(v6.contains("inet6 ::1/128"), "{v6}");
            let details = a.ip(&["-d", "link", "show", "dev", "eth0"]);
            assert!(details.contains("addrgenmode none"), "{details}");
        }
        let pod_routes = a.ip(&["-4", "route", "show"]);
        assert!(
            pod_routes.contains("default via 10.244.1.1 dev eth0"),
            "{pod_routes}"
        );
        assert!(
            a.ip(&["-4", "address", "show", "dev", "eth0"])
                .contains(&format!("inet {}/24", ia.ip))
        );

        assert!(a.ping(ib.ip), "pod a cannot reach pod b");
        assert!(b.ping(ia.ip), "pod b cannot reach pod a");
        assert!(
            a.ping(network.gateway()),
            "pod a cannot reach the node's bridge address"
        );
        let from_node = run(
            "busybox",
            &["ping", "-c", "1", "-W", "2", &ib.ip.to_string()],
        );
        assert!(from_node.status.success(), "the node cannot reach pod b");
        // Pod to pod keeps its source address (the bridge hands its packets to iptables too).
        assert!(nat_packets("RETURN") > 0);
        assert_eq!(
            nat_packets("MASQUERADE"),
            0,
            "traffic inside the cluster was masqueraded"
        );
        // The outside host has no route to the pod network: only a masqueraded ping comes back.
        assert!(
            a.ping(Ipv4Addr::new(192, 168, 50, 2)),
            "pod a's traffic leaving the cluster is not masqueraded"
        );
        assert_eq!(nat_packets("MASQUERADE"), 1);
        drop(outside);
    });
}

/// Packets counted by the rule with this target in the pod network's nat chain.
fn nat_packets(target: &str) -> u64 {
    let out = run(
        "iptables",
        &["-w", "-t", "nat", "-L", NAT_CHAIN, "-v", "-x", "-n"],
    );
    assert!(out.status.success());
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    listing
        .lines()
        .find(|line| line.split_whitespace().nth(2) == Some(target))
        .and_then(|line| line.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {target} rule in {listing}"))
}

#[test]
fn detach_releases_the_address_and_removes_the_veth() {
    if !require() {
        return;
    }
    in_own_netns(|| {
        let node = node("10.244.1.0/24");
        let network = node.network();
        network.ensure_node().expect("ensure_node");
        let pod = NetnsProcess::start();
        let interface = network.attach("pod-a", &pod.netns).expect("attach");
        assert_eq!(
            network.allocations().expect("allocations"),
            [("pod-a".to_string(), interface.ip)]
        );
        network.detach("pod-a").expect("detach");
        assert!(!link_exists(&interface.host_veth));
        assert!(
            !pod.exec("ip", &["link", "show", "dev", "eth0"])
                .status
                .success(),
            "eth0 left in the pod"
        );
        assert!(network.allocations().expect("allocations").is_empty());
        network.detach("pod-a").expect("second detach");
        network
            .detach("never-attached")
            .expect("detach of an unknown sandbox");
        // The pod can be wired again.
        let again = network
            .attach("pod-a", &pod.netns)
            .expect("attach after detach");
        assert!(pod.ping(again.gateway));
    });
}

#[test]
fn allocations_survive_a_restarted_agent() {
    if !require() {
        return;
    }
    in_own_netns(|| {
        let node = node("10.244.1.0/24");
        let (a, b, c) = (
            NetnsProcess::start(),
            NetnsProcess::start(),
            NetnsProcess::start(),
        );
        let (ia, ib) = {
            let network = node.network();
            network.ensure_node().expect("ensure_node");
            (
                network.attach("pod-a", &a.netns).expect("attach a"),
                network.attach("pod-b", &b.netns).expect("attach b"),
            )
        };
        let veth_before = ip(&["-o", "link", "show", "dev", &ia.host_veth]);

        let restarted = node.network();
        restarted.ensure_node().expect("ensure_node after restart");
        let mut listed = restarted.allocations().expect("allocations");
        listed.sort();
        assert_eq!(
            listed,
            [("pod-a".to_string(), ia.ip), ("pod-b".to_string(), ib.ip)]
        );
        let (again, took) = attach_timed(&restarted, "pod-a", &a);
        eprintln!("re-attach of a wired sandbox took {took:?}");
        assert_eq!(again, ia);
        // Still the same pair: re-attaching did not rebuild it.
        let ifindex = |line: &str| line.split(':').next().map(str::to_string);
        assert_eq!(
            ifindex(&ip(&["-o", "link", "show", "dev", &ia.host_veth])),
            ifindex(&veth_before)
        );
        let ic = restarted.attach("pod-c", &c.netns).expect("attach c");
        assert!(ic.ip != ia.ip && ic.ip != ib.ip, "{ic:?}");
        assert!(c.ping(ia.ip) && a.ping(ic.ip));
    });
}

#[test]
fn allocation_skips_reserved_addresses_and_reports_exhaustion() {
    if !require() {
        return;
    }
    in_own_netns(|| {
        // A /29 holds .0 (network), .1 (gateway), .2-.6 (pods) and .7 (broadcast).
        let node = node("10.244.1.0/29");
        let network = node.network();
        network.ensure_node().expect("ensure_node");
        let pods: Vec<NetnsProcess> = (0..6).map(|_| NetnsProcess::start()).collect();
        let mut given = Vec::new();
        for (i, pod) in pods.iter().take(5).enumerate() {
            given.push(
                network
                    .attach(&format!("pod-{i}"), &pod.netns)
                    .expect("attach")
                    .ip
                    .to_string(),
            );
        }
        given.sort();
        assert_eq!(
            given,
            [
                "10.244.1.2",
                "10.244.1.3",
                "10.244.1.4",
                "10.244.1.5",
                "10.244.1.6"
            ]
        );
        let error = network
            .attach("pod-5", &pods[5].netns)
            .expect_err("a sixth pod fits nowhere");
        assert!(
            matches!(error, NetworkError::Exhausted { allocated: 5, .. }),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "no free address left in the pod CIDR 10.244.1.0/29 (5 in use)"
        );
        assert!(
            !pods[5]
                .exec("ip", &["link", "show", "dev", "eth0"])
                .status
                .success()
        );
        // A failed wiring of a new sandbox gives its address back and leaves no veth.
        network.detach("pod-4").expect("detach");
        let missing = Path::new("/proc/self/ns/does-not-exist");
        assert!(network.attach("pod-x", missing).is_err());
        assert!(!link_exists(&skiff_nodeagent::network::host_veth_name(
            "pod-x"
        )));
        assert_eq!(network.allocations().expect("allocations").len(), 4);
        network
            .attach("pod-5", &pods[5].netns)
            .expect("attach into the freed address");
    });
}

#[test]
fn concurrent_attaches_get_distinct_addresses() {
    if !require() {
        return;
    }
    in_own_netns(|| {
        let node = node("10.244.1.0/24");
        let network = std::sync::Arc::new(node.network());
        network.ensure_node().expect("ensure_node");
        let pods: Vec<std::sync::Arc<NetnsProcess>> = (0..8)
            .map(|_| std::sync::Arc::new(NetnsProcess::start()))
            .collect();
        // Threads started here share this thread's (the node's) namespace.
        let workers: Vec<_> = pods
            .iter()
            .enumerate()
            .map(|(i, pod)| {
                let (network, pod) = (network.clone(), pod.clone());
                std::thread::spawn(move || {
                    network
                        .attach(&format!("pod-{i}"), &pod.netns)
                        .expect("attach")
                        .ip
                })
            })
            .collect();
        let ips: Vec<Ipv4Addr> = workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .collect();
        let distinct: HashSet<_> = ips.iter().collect();
        assert_eq!(distinct.len(), ips.len(), "{ips:?}");
        assert_eq!(network.allocations().expect("allocations").len(), 8);
        assert!(pods[0].ping(ips[7]));
    });
}

#[test]
fn peer_routes_follow_the_peers() {
    if !require() {
        return;
    }
    in_own_netns(|| {
        let _outside = uplink();
        let node = node("10.244.1.0/24");
        let network = node.network();
        network.ensure_node().expect("ensure_node");
        let gw = |last: u8| Ipv4Addr::new(192, 168, 50, last);
        network
            .sync_peer_routes(&[
                (cidr("10.244.2.0/24"), gw(2)),
                (cidr("10.244.3.0/24"), gw(3)),
            ])
            .expect("sync");
        assert_eq!(
            our_routes(),
            [
                "10.244.2.0/24 via 192.168.50.2 dev up0",
                "10.244.3.0/24 via 192.168.50.3 dev up0",
                "10.96.0.0/12 dev skiff0 scope link linkdown",
                "unreachable 10.244.0.0/24",
                "unreachable 10.244.128.0/17",
                "unreachable 10.244.16.0/20",
                "unreachable 10.244.32.0/19",
                "unreachable 10.244.4.0/22",
                "unreachable 10.244.64.0/18",
                "unreachable 10.244.8.0/21",
            ]
        );
        // One peer moves, one leaves, one joins; a peer overlapping this node is ignored.
        network
            .sync_peer_routes(&[
                (cidr("10.244.2.0/24"), gw(4)),
                (cidr("10.244.8.0/21"), gw(8)),
                (cidr("10.244.1.0/25"), gw(9)),
            ])
            .expect("sync");
        let expected = [
            "10.244.2.0/24 via 192.168.50.4 dev up0",
            "10.244.8.0/21 via 192.168.50.8 dev up0",
            "10.96.0.0/12 dev skiff0 scope link linkdown",
            "unreachable 10.244.0.0/24",
            "unreachable 10.244.128.0/17",
            "unreachable 10.244.16.0/20",
            "unreachable 10.244.3.0/24",
            "unreachable 10.244.32.0/19",
            "unreachable 10.244.4.0/22",
            "unreachable 10.244.64.0/18",
        ];
        assert_eq!(our_routes(), expected);
        // A restarted agent's node setup keeps the peers until it syncs them itself.
        node.network()
            .ensure_node()
            .expect("ensure_node after restart");
        assert_eq!(our_routes(), expected);
        let get = ip(&["route", "get", "10.244.9.9"]);
        assert!(get.contains("via 192.168.50.8 dev up0"), "{get}");
        let unreachable = run("ip", &["route", "get", "10.244.200.1"]);
        assert!(
            !unreachable.status.success(),
            "a cluster address no node holds is routable"
        );

        network.sync_peer_routes(&[]).expect("sync to no peers");
        assert_eq!(
            our_routes(),
            [
                "10.96.0.0/12 dev skiff0 scope link linkdown",
                "unreachable 10.244.0.0/24",
                "unreachable 10.244.128.0/17",
                "unreachable 10.244.16.0/20",
                "unreachable 10.244.2.0/23",
                "unreachable 10.244.32.0/19",
                "unreachable 10.244.4.0/22",
                "unreachable 10.244.64.0/18",
                "unreachable 10.244.8.0/21",
            ]
        );
        // A gateway on no link fails, and the other routes are still applied.
        let error = network
            .sync_peer_routes(&[
                (cidr("10.244.5.0/24"), Ipv4Addr::new(172, 31, 0, 1)),
                (cidr("10.244.6.0/24"), gw(6)),
            ])
            .expect_err("unreachable gateway");
        assert!(matches!(error, NetworkError::Command { .. }), "{error}");
        assert!(our_routes().contains(&"10.244.6.0/24 via 192.168.50.6 dev up0".to_string()));
    });
}

#[test]
fn service_addresses_without_dnat_stay_on_the_bridge() {
    if !require() {
        return;
    }
    in_own_netns(|| {
        let outside = uplink();
        ip(&[
            "route",
            "add",
            "default",
            "via",
            "192.168.50.2",
            "dev",
            "up0",
        ]);
        let node = node("10.244.1.0/24");
        let network = node.network();
        network.ensure_node().expect("ensure_node");
        let get = ip(&["route", "get", "10.96.0.10"]);
        assert!(get.contains("dev skiff0"), "{get}");
        let sent_before = tx_packets("up0");
        let connect = TcpStream::connect_timeout(
            &SocketAddr::from(([10, 96, 0, 10], 80)),
            Duration::from_millis(500),
        );
        assert!(
            connect.is_err(),
            "a service address with no endpoint accepted a connection"
        );
        // A pod's packet to the same address dies on the bridge too.
        let pod = NetnsProcess::start();
        network.attach("pod-a", &pod.netns).expect("attach");
        assert!(!pod.ping(Ipv4Addr::new(10, 96, 0, 10)));
        assert_eq!(
            tx_packets("up0"),
            sent_before,
            "service traffic left through the default route"
        );
        // And a cluster address no node holds fails at once instead of leaving.
        let started = Instant::now();
        let error = TcpStream::connect_timeout(
            &SocketAddr::from(([10, 244, 200, 1], 80)),
            Duration::from_secs(2),
        )
        .expect_err("connect to an unheld cluster address");
        assert!(started.elapsed() < Duration::from_secs(1), "{error}");
        assert_eq!(tx_packets("up0"), sent_before);
        drop(outside);
    });
}

#[test]
fn cleanup_removes_everything() {
    if !require() {
        return;
    }
    in_own_netns(|| {
        let _outside = uplink();
        let node = node("10.244.1.0/24");
        let network = node.network();
        network.ensure_node().expect("ensure_node");
        let pods = [NetnsProcess::start(), NetnsProcess::start()];
        for (i, pod) in pods.iter().enumerate() {
            network
                .attach(&format!("pod-{i}"), &pod.netns)
                .expect("attach");
        }
        network
            .sync_peer_routes(&[(cidr("10.244.2.0/24"), Ipv4Addr::new(192, 168, 50, 2))])
            .expect("sync");
        PodNetwork::cleanup(&node.config).expect("cleanup");

        assert!(!link_exists("skiff0"));
        let links = ip(&["-o", "link", "show"]);
        assert!(!links.contains(HOST_VETH_PREFIX), "{links}");
        assert!(our_routes().is_empty(), "{:?}", our_routes());
        assert!(!nat_rules().contains(NAT_CHAIN), "{}", nat_rules());
        assert!(!node.config.state_dir.exists());
        for pod in &pods {
            assert!(
                !pod.exec("ip", &["link", "show", "dev", "eth0"])
                    .status
                    .success()
            );
        }
        PodNetwork::cleanup(&node.config).expect("second cleanup");
        // The uplink is not ours and stays.
        assert!(link_exists("up0"));
        assert!(node.state.path().exists());
    });
}
