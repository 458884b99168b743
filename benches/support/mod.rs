//! What the benchmarks that run Skiff as processes share: environment knobs, percentiles,
//! per-process and per-thread CPU from `/proc`, tables, supervised child processes, and
//! kubelet stand-ins (scheduler_perf's Node template, node Leases renewed as kubelets do).
//! Included by each benchmark with `#[path]`; each uses a part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not valid")),
        _ => default,
    }
}

/// Sorted durations with percentiles.
pub struct Samples(pub Vec<Duration>);

impl Samples {
    pub fn new(mut v: Vec<Duration>) -> Samples {
        v.sort_unstable();
        Samples(v)
    }

    pub fn pct(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * self.0.len() as f64).ceil() as usize).max(1);
        self.0[rank.min(self.0.len()) - 1]
    }

    pub fn max(&self) -> Duration {
        self.0.last().copied().unwrap_or_default()
    }

    pub fn mean(&self) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        self.0.iter().sum::<Duration>() / self.0.len() as u32
    }
}

pub fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

pub fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

pub fn rate(n: usize, d: Duration) -> f64 {
    if d.is_zero() {
        0.0
    } else {
        n as f64 / d.as_secs_f64()
    }
}

/// User + system CPU time of a process so far (Linux `/proc/<pid>/stat`).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Per thread name (tokio workers share one), the CPU time its threads ran and the time they
/// were ready to run but waited for a CPU (`/proc/<pid>/task/*/schedstat`, nanoseconds).
pub fn thread_times(pid: u32) -> BTreeMap<String, (Duration, Duration)> {
    let mut times: BTreeMap<String, (Duration, Duration)> = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return times;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("schedstat")),
        ) else {
            continue;
        };
        let mut fields = stat
            .split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0));
        let (run, wait) = (fields.next().unwrap_or(0), fields.next().unwrap_or(0));
        let entry = times.entry(comm.trim().to_string()).or_default();
        entry.0 += Duration::from_nanos(run);
        entry.1 += Duration::from_nanos(wait);
    }
    times
}

/// `after - before` per thread name (threads that started in between count from zero).
pub fn thread_times_between(
    before: &BTreeMap<String, (Duration, Duration)>,
    after: BTreeMap<String, (Duration, Duration)>,
) -> Vec<(String, Duration, Duration)> {
    after
        .into_iter()
        .map(|(name, (run, wait))| {
            let (run0, wait0) = before.get(&name).copied().unwrap_or_default();
            (name, run.saturating_sub(run0), wait.saturating_sub(wait0))
        })
        .filter(|(_, run, _)| *run >= Duration::from_millis(10))
        .collect()
}

/// Resident memory of a process, in MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

pub fn table(header: Vec<&str>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header);
    t
}

pub fn align(t: &mut Table, from: usize) {
    let n = t.column_count();
    for i in from..n {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
}

pub fn print_section(title: impl std::fmt::Display, t: &Table) {
    println!("\n{title}\n{t}");
}

pub fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

/// Runs the program (`$0`, its arguments the rest) until standard input closes, then kills it
/// by PID. Interrupts are ignored here so that a Ctrl-C, which ends this benchmark and closes
/// the pipe, still reaches the `kill`.
pub const SUPERVISOR: &str = r#"trap '' INT TERM HUP
"$0" "$@" &
pid=$!
read -r _
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
exit 0"#;

/// A child process under the supervisor; killed when dropped.
pub struct Supervised {
    name: &'static str,
    child: Child,
    /// Closing this makes the supervisor kill the program.
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

impl Supervised {
    pub fn spawn(name: &'static str, binary: &Path, args: &[&str], log: PathBuf) -> Supervised {
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg(binary)
            .args(args)
            .env("SKIFF_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let mut s = Supervised {
            name,
            stdin: None,
            child,
            log,
        };
        s.stdin = s.child.stdin.take();
        s
    }

    /// The program's own PID (the supervisor's child).
    pub fn pid(&self) -> Option<u32> {
        let sup = self.child.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let children =
                std::fs::read_to_string(format!("/proc/{sup}/task/{sup}/children")).ok()?;
            if let Some(pid) = children.split_whitespace().next() {
                return pid.parse().ok();
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // The supervisor did not finish: kill it, our own child, by PID.
        eprintln!("  ! {} supervisor did not stop; killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

/// Now, as a Lease's `renewTime`.
pub fn now_micro_time() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// scheduler_perf's `node-default.yaml`: 4 CPU, 32 GiB, 110 pods, Ready; plus the hostname
/// label a kubelet sets.
pub fn node(name: &str) -> Node {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "capacity": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "32Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "phase": "Running",
        },
    }))
    .expect("node")
}

/// Node `i`'s Lease, as a kubelet writes it (holder = node, 40 s, owned by the Node).
pub fn node_lease(name: &str, node_uid: &str) -> Lease {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "kube-node-lease",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name,
                "uid": node_uid}]},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
            "renewTime": serde_json::to_value(now_micro_time()).expect("MicroTime")},
    }))
    .expect("lease")
}

/// Renews every node Lease once per `interval`, spread evenly (a batch every 100 ms), until
/// aborted; counts renewals and failures. As kubelet's lease controller: an update (PUT) of
/// the last Lease it wrote with a new `renewTime`, re-reading it after a conflict.
pub fn keep_leases_fresh(
    client: Client,
    names: Vec<String>,
    latest: Vec<Option<Lease>>,
    interval: Duration,
    renewed: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    let nodes = latest.len();
    let names = Arc::new(names);
    let latest: Arc<Vec<std::sync::Mutex<Option<Lease>>>> =
        Arc::new(latest.into_iter().map(std::sync::Mutex::new).collect());
    tokio::spawn(async move {
        let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
        let tick = Duration::from_millis(100);
        let per_tick =
            ((nodes as f64 * tick.as_secs_f64() / interval.as_secs_f64()).ceil() as usize).max(1);
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next = 0usize;
        loop {
            ticker.tick().await;
            let batch: Vec<usize> = (0..per_tick).map(|k| (next + k) % nodes).collect();
            next = (next + per_tick) % nodes;
            // Not awaited here: a slow batch must not delay the next one (kubelets renew
            // independently of each other).
            for i in batch {
                let (leases, names, latest, renewed, failed) = (
                    leases.clone(),
                    names.clone(),
                    latest.clone(),
                    renewed.clone(),
                    failed.clone(),
                );
                tokio::spawn(async move {
                    let name = &names[i];
                    let last = latest[i].lock().expect("lease slot").clone();
                    let mut lease = match last {
                        Some(l) => l,
                        None => match leases.get(name).await {
                            Ok(l) => l,
                            Err(_) => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                        },
                    };
                    if let Some(spec) = lease.spec.as_mut() {
                        spec.renew_time = Some(now_micro_time());
                    }
                    let result = leases.replace(name, &PostParams::default(), &lease).await;
                    let ok = result.is_ok();
                    // After a failure (a conflict), the next renewal reads the Lease afresh.
                    *latest[i].lock().expect("lease slot") = result.ok();
                    if ok {
                        renewed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        }
    })
}

/// What registering the nodes took, and each node's Lease as created (`None` without Leases
/// or after a failure), in the order of the names.
pub struct Registered {
    pub elapsed: Duration,
    pub errors: usize,
    pub first_error: Option<String>,
    pub leases: Vec<Option<Lease>>,
}

/// Creates a Node ([`node`]) per name and, with `with_leases`, its Lease ([`node_lease`]),
/// `concurrency` at a time, as kubelets registering.
pub async fn register_nodes(
    client: &Client,
    names: &[String],
    concurrency: usize,
    with_leases: bool,
) -> Registered {
    use futures::StreamExt;
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let t = Instant::now();
    // (node index, its Lease) per node: they complete out of order.
    let results: Vec<Result<(usize, Option<Lease>), String>> =
        futures::stream::iter(names.iter().enumerate())
            .map(|(i, name)| {
                let (nodes, leases) = (nodes.clone(), leases.clone());
                async move {
                    let created = nodes
                        .create(&PostParams::default(), &node(name))
                        .await
                        .map_err(|e| e.to_string())?;
                    if !with_leases {
                        return Ok((i, None));
                    }
                    let uid = created.metadata.uid.unwrap_or_default();
                    leases
                        .create(&PostParams::default(), &node_lease(name, &uid))
                        .await
                        .map(|l| (i, Some(l)))
                        .map_err(|e| format!("lease: {e}"))
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    let elapsed = t.elapsed();
    let errors = results.iter().filter(|x| x.is_err()).count();
    let first_error = results.iter().find_map(|x| x.as_ref().err().cloned());
    let mut latest: Vec<Option<Lease>> = vec![None; names.len()];
    for (i, lease) in results.into_iter().flatten() {
        latest[i] = lease;
    }
    Registered {
        elapsed,
        errors,
        first_error,
        leases: latest,
    }
}

/// A release `skiff server` on the embedded store in a fresh temporary directory, listening
/// on a free loopback port, ready (`/readyz` and its admin kubeconfig written).
pub struct ServerProcess {
    pub process: Supervised,
    pub port: u16,
    /// Holds `data/` (the store and kubeconfig) and `server.log`.
    pub dir: tempfile::TempDir,
}

impl ServerProcess {
    pub fn start(binary: &Path, prefix: &str, extra: &[&str]) -> ServerProcess {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let data = dir.path().join("data");
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec![
            "server",
            "--data-dir",
            data.to_str().expect("utf-8 temp path"),
            "--listen",
            &listen,
        ];
        args.extend_from_slice(extra);
        let mut process =
            Supervised::spawn("skiff server", binary, &args, dir.path().join("server.log"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_status(port, "/readyz") != Some(200) || !data.join("kubeconfig").exists() {
            if Instant::now() > deadline || process.exited() {
                panic!("skiff server not ready; its log:\n{}", process.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        ServerProcess { process, port, dir }
    }

    /// A client of the server over plain HTTP on loopback.
    pub fn client(&self) -> Client {
        let url = format!("http://127.0.0.1:{}", self.port);
        Client::try_from(kube::Config::new(url.parse().expect("url"))).expect("kube client")
    }
}
