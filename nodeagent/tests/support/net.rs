//! A throwaway node network for proxy tests, all inside network namespaces the test makes:
//! the test's own thread is the node (a fresh netns), a bridge `skt0` with 10.240.0.1/24 is its
//! pod network, and each "pod" is an `unshare -n sleep` child wired to the bridge by a veth,
//! serving a page of its own with `busybox httpd`. Everything goes when the processes and the
//! thread end: pods are killed by PID on drop, which removes their namespaces and veths.

#![allow(dead_code)]

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BRIDGE: &str = "skt0";
pub const NODE_BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 240, 0, 1);
pub const POD_CIDR: &str = "10.240.0.0/24";
pub const SERVICE_CIDR: &str = "10.96.0.0/16";

fn which(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|d| d.join(tool).is_file())
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        .unwrap_or(false)
}

/// Whether the tests may run: root and the tools. Skips with a message when not, unless
/// `CI=true`, where that is a failure.
pub fn require() -> bool {
    let mut missing: Vec<String> = [
        "ip",
        "iptables",
        "iptables-save",
        "iptables-restore",
        "busybox",
        "unshare",
        "nsenter",
    ]
    .iter()
    .filter(|t| !which(t))
    .map(|t| t.to_string())
    .collect();
    if !is_root() {
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

/// Runs `test` on a thread of its own in a fresh network namespace (loopback up, forwarding
/// on), so nothing it does to interfaces, routes or iptables reaches the host.
pub fn in_netns<T: Send + 'static>(test: impl FnOnce() -> T + Send + 'static) -> T {
    let thread = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare the netns");
        sh(&["ip", "link", "set", "lo", "up"]);
        // /proc/sys/net follows the calling thread's netns.
        fs::write("/proc/sys/net/ipv4/ip_forward", "1").expect("ip_forward");
        test()
    });
    match thread.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs a command to success, panicking with its output otherwise.
pub fn sh(args: &[&str]) -> String {
    let output = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {args:?}: {e}"));
    assert!(
        output.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The node's pod bridge, and a route sending the Service CIDR to it (as the node network
/// does: the ClusterIPs need a route for the OUTPUT chain's DNAT to happen on).
pub fn make_bridge() {
    sh(&["ip", "link", "add", BRIDGE, "type", "bridge"]);
    sh(&["ip", "addr", "add", "10.240.0.1/24", "dev", BRIDGE]);
    sh(&["ip", "link", "set", BRIDGE, "up"]);
    sh(&["ip", "route", "add", SERVICE_CIDR, "dev", BRIDGE]);
}

/// The "machine's" own network for a node under test: a bridge `name` holding `address/24`
/// (the node's InternalIP), up. Left alone when it exists already (tests sharing a namespace).
pub fn node_bridge(name: &str, address: Ipv4Addr) {
    if sh(&["ip", "-o", "link", "show"])
        .lines()
        .any(|l| l.split(':').nth(1).map(str::trim) == Some(name))
    {
        return;
    }
    sh(&["ip", "link", "add", name, "type", "bridge"]);
    sh(&["ip", "addr", "add", &format!("{address}/24"), "dev", name]);
    sh(&["ip", "link", "set", name, "up"]);
}

/// A "pod": its own netns (an `unshare -n sleep` child), a veth to the bridge, an address, and
/// `busybox httpd` answering `GET /` with `page`.
pub struct Pod {
    pub ip: Ipv4Addr,
    holder: Child,
    server: Option<Child>,
    _root: tempfile::TempDir,
}

impl Pod {
    /// `index` picks the address (10.240.0.{10+index}) and the veth name.
    pub fn start(index: u8, page: &str) -> Pod {
        let ip = Ipv4Addr::new(10, 240, 0, 10 + index);
        let root = tempfile::tempdir().expect("web root");
        fs::write(root.path().join("index.html"), page).expect("page");
        let holder = Command::new("unshare")
            .args(["-n", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare");
        let mut pod = Pod {
            ip,
            holder,
            server: None,
            _root: root,
        };
        let pid = pod.holder.id().to_string();
        // `unshare` execs sleep only after the netns exists.
        let ours = fs::read_link("/proc/thread-self/ns/net").expect("own netns");
        let deadline = Instant::now() + Duration::from_secs(5);
        while fs::read_link(format!("/proc/{pid}/ns/net")).ok().as_ref() == Some(&ours) {
            assert!(Instant::now() < deadline, "pod netns not created");
            std::thread::sleep(Duration::from_millis(10));
        }
        let host_side = format!("vskt{index}");
        sh(&[
            "ip", "link", "add", &host_side, "type", "veth", "peer", "name", "eth0", "netns", &pid,
        ]);
        sh(&["ip", "link", "set", &host_side, "master", BRIDGE, "up"]);
        let cidr = format!("{ip}/24");
        let gateway = NODE_BRIDGE_IP.to_string();
        for args in [
            vec!["ip", "link", "set", "lo", "up"],
            vec!["ip", "addr", "add", &cidr, "dev", "eth0"],
            vec!["ip", "link", "set", "eth0", "up"],
            vec!["ip", "route", "add", "default", "via", &gateway],
        ] {
            let mut full = vec!["nsenter", "-t", &pid, "-n"];
            full.extend(args);
            sh(&full);
        }
        let web_root = pod._root.path().to_string_lossy().into_owned();
        pod.server = Some(
            Command::new("nsenter")
                .args([
                    "-t", &pid, "-n", "busybox", "httpd", "-f", "-p", "80", "-h", &web_root,
                ])
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn httpd"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while get(SocketAddr::from((ip, 80))).is_err() {
            assert!(Instant::now() < deadline, "httpd in pod {ip} not answering");
            std::thread::sleep(Duration::from_millis(20));
        }
        pod
    }

    /// Runs a command inside this pod's netns.
    pub fn exec(&self, args: &[&str]) -> std::process::Output {
        let pid = self.holder.id().to_string();
        Command::new("nsenter")
            .args(["-t", &pid, "-n"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("nsenter")
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        for child in self.server.iter_mut().chain([&mut self.holder]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `GET /` over a fresh connection from the calling thread: the body, or the connect error.
pub fn get(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidData, response))
}

/// Which pages `n` requests to `addr` returned, and how often.
pub fn hits(addr: SocketAddr, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        let body = get(addr).unwrap_or_else(|e| panic!("GET {addr}: {e}"));
        *seen.entry(body.trim().to_string()).or_insert(0) += 1;
    }
    seen
}

/// The `SKIFF-*` chains of the calling thread's netns, in both tables.
pub fn skiff_chains() -> Vec<String> {
    ["filter", "nat"]
        .iter()
        .flat_map(|table| {
            sh(&["iptables-save", "-t", table])
                .lines()
                .filter(|l| l.contains("SKIFF-"))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}
