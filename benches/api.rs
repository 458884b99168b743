//! The API server benchmark: `cargo bench --bench api` (see BENCHMARKS.md).
//!
//! In one run, against a release `skiff server` per backend (embedded, then etcd), it measures
//!
//! * create / get / update / list throughput and p50/p99 latency at 1, 16 and 64 concurrent
//!   clients (plain HTTP/JSON on ConfigMaps),
//! * a paced phase of writes at a fixed rate (500/s by default), the issue's latency target,
//! * watch fan-out: many HTTP watchers while one writer makes a number of changes,
//!
//! and, as the yardstick, the raw put (and create-shaped txn) rate of a throwaway etcd at the
//! same concurrencies through `etcd-client`. It prints tables and a PASS/MISS column for each
//! target; it never asserts.
//!
//! Every process it starts (skiff, etcd) is its child, runs on 127.0.0.1 only, and is killed by
//! PID when its guard drops, or, through a supervisor holding a pipe, when this process dies.
//!
//! Knobs (environment variables, defaults in brackets):
//! `SKIFF_BENCH_OPS` [5000] operations per phase and concurrency level,
//! `SKIFF_BENCH_PHASE_SECS` [10] time cap of such a phase,
//! `SKIFF_BENCH_CLIENTS` [1,16,64] concurrency levels,
//! `SKIFF_BENCH_BACKENDS` [embedded,etcd],
//! `SKIFF_BENCH_LIST_SIZE` [100] ConfigMaps in the listed namespace,
//! `SKIFF_BENCH_PACED_RATE` [500] writes/s and `SKIFF_BENCH_PACED_SECS` [10],
//! `SKIFF_BENCH_WATCHERS` [1000], `SKIFF_BENCH_WATCH_CHANGES` [1000],
//! `SKIFF_BENCH_WATCH_WRITERS` [4] concurrent writers making the changes,
//! `SKIFF_BENCH_WATCH_SECS` [120] time cap, `SKIFF_BENCH_WATCH_BACKENDS` [as BACKENDS],
//! `SKIFF_BENCH_BIN` [the `skiff` binary cargo built with this bench].

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};
use etcd_client::{Compare, CompareOp, KvClient, Txn, TxnOp};
use futures::StreamExt;
use serde_json::{Value, json};
use skiff_storage::testutil::EtcdServer;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

// ---- configuration ----

struct Config {
    ops: u64,
    phase_time: Duration,
    clients: Vec<usize>,
    backends: Vec<Backend>,
    list_size: usize,
    paced_rate: u64,
    paced_time: Duration,
    watchers: usize,
    watch_changes: u64,
    watch_writers: usize,
    watch_time: Duration,
    watch_backends: Vec<Backend>,
    binary: PathBuf,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not valid")),
        _ => default,
    }
}

fn env_list<T: std::str::FromStr>(name: &str, default: &str) -> Vec<T> {
    let raw = std::env::var(name).unwrap_or_else(|_| default.to_string());
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .unwrap_or_else(|_| panic!("{name}: {s:?} is not valid"))
        })
        .collect()
}

impl Config {
    fn from_env() -> Config {
        let backends: Vec<Backend> = env_list("SKIFF_BENCH_BACKENDS", "embedded,etcd");
        let watch_default = backends
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(",");
        Config {
            ops: env_or("SKIFF_BENCH_OPS", 5000),
            phase_time: Duration::from_secs_f64(env_or("SKIFF_BENCH_PHASE_SECS", 10.0)),
            clients: env_list("SKIFF_BENCH_CLIENTS", "1,16,64"),
            backends,
            list_size: env_or("SKIFF_BENCH_LIST_SIZE", 100),
            paced_rate: env_or("SKIFF_BENCH_PACED_RATE", 500),
            paced_time: Duration::from_secs_f64(env_or("SKIFF_BENCH_PACED_SECS", 10.0)),
            watchers: env_or("SKIFF_BENCH_WATCHERS", 1000),
            watch_changes: env_or("SKIFF_BENCH_WATCH_CHANGES", 1000),
            watch_writers: env_or("SKIFF_BENCH_WATCH_WRITERS", 4),
            watch_time: Duration::from_secs_f64(env_or("SKIFF_BENCH_WATCH_SECS", 120.0)),
            watch_backends: env_list("SKIFF_BENCH_WATCH_BACKENDS", &watch_default),
            binary: std::env::var_os("SKIFF_BENCH_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_skiff"))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Backend {
    Embedded,
    Etcd,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Etcd => "etcd",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "embedded" => Ok(Backend::Embedded),
            "etcd" => Ok(Backend::Etcd),
            other => Err(format!("unknown backend {other:?}")),
        }
    }
}

// ---- processes ----

/// Runs the program (`$0`, its arguments the rest) until standard input closes, then kills it
/// by PID. Interrupts are ignored here so that a Ctrl-C, which ends this benchmark and closes
/// the pipe, still reaches the `kill`.
const SUPERVISOR: &str = r#"trap '' INT TERM HUP
"$0" "$@" &
pid=$!
read -r _
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
exit 0"#;

/// A `skiff server` on a free loopback port with a temporary data dir, and the etcd behind it
/// for the etcd backend; both are killed when this is dropped.
struct SkiffServer {
    child: Child,
    /// Closing this makes the supervisor kill the server.
    stdin: Option<ChildStdin>,
    url: String,
    port: u16,
    dir: tempfile::TempDir,
    // Dropped after the server (fields drop in order).
    _etcd: Option<EtcdServer>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl SkiffServer {
    fn start(binary: &PathBuf, backend: Backend) -> SkiffServer {
        let etcd = match backend {
            Backend::Embedded => None,
            Backend::Etcd => Some(EtcdServer::start()),
        };
        let dir = tempfile::Builder::new()
            .prefix("skiff-bench-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).expect("server log");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(SUPERVISOR)
            .arg(binary)
            .arg("server")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("SKIFF_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("server log"))
            .stderr(log);
        if let Some(etcd) = &etcd {
            cmd.arg("--etcd-servers").arg(&etcd.endpoint);
        }
        let mut child = cmd.spawn().expect("spawn skiff server");
        let stdin = child.stdin.take();
        let server = SkiffServer {
            child,
            stdin,
            url: format!("http://127.0.0.1:{port}"),
            port,
            dir,
            _etcd: etcd,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http_status(self.port, "/readyz") == Some(200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        panic!("skiff server not ready in 30s; its log:\n{log}");
    }
}

impl Drop for SkiffServer {
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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP GET on loopback, answering the status code.
fn http_status(port: u16, path: &str) -> Option<u16> {
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

// ---- measurement ----

/// What one phase measured.
#[derive(Default, Clone)]
struct Stats {
    ok: u64,
    errors: u64,
    elapsed: Duration,
    /// Latencies of the successful operations, sorted.
    latencies: Vec<Duration>,
    first_error: Option<String>,
}

impl Stats {
    fn rate(&self) -> f64 {
        if self.elapsed.is_zero() {
            0.0
        } else {
            self.ok as f64 / self.elapsed.as_secs_f64()
        }
    }

    fn percentile(&self, q: f64) -> Option<Duration> {
        if self.latencies.is_empty() {
            return None;
        }
        let rank = ((q * self.latencies.len() as f64).ceil() as usize).max(1);
        Some(self.latencies[rank.min(self.latencies.len()) - 1])
    }

    fn p50(&self) -> Option<Duration> {
        self.percentile(0.50)
    }

    fn p99(&self) -> Option<Duration> {
        self.percentile(0.99)
    }

    fn merge(parts: Vec<Stats>, elapsed: Duration) -> Stats {
        let mut all = Stats {
            elapsed,
            ..Default::default()
        };
        for p in parts {
            all.ok += p.ok;
            all.errors += p.errors;
            all.latencies.extend(p.latencies);
            if all.first_error.is_none() {
                all.first_error = p.first_error;
            }
        }
        all.latencies.sort_unstable();
        all
    }

    fn record(&mut self, started: Instant, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.ok += 1;
                self.latencies.push(started.elapsed());
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn warn_errors(&self, what: &str) {
        if let Some(e) = &self.first_error {
            eprintln!("  ! {what}: {} errors, first: {e}", self.errors);
        }
    }
}

/// Runs `op` from `states.len()` concurrent workers until `ops` operations were started or
/// `limit` has passed. Each worker owns its state; `op` gets it and the operation's number
/// and hands it back with the outcome.
async fn closed_loop<S, F, Fut>(states: Vec<S>, ops: u64, limit: Duration, op: F) -> (Stats, Vec<S>)
where
    S: Send + 'static,
    F: Fn(S, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = (S, Result<(), String>)> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + limit;
    let mut tasks = JoinSet::new();
    for (w, state) in states.into_iter().enumerate() {
        let (op, next) = (Arc::clone(&op), Arc::clone(&next));
        tasks.spawn(async move {
            let mut state = state;
            let mut stats = Stats::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops || Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                let (s, result) = op(state, i).await;
                state = s;
                stats.record(t, result);
            }
            (w, state, stats)
        });
    }
    let mut parts = Vec::new();
    let mut states: Vec<(usize, S)> = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (w, state, stats) = done.expect("bench worker panicked");
        parts.push(stats);
        states.push((w, state));
    }
    let elapsed = start.elapsed();
    states.sort_by_key(|(w, _)| *w);
    (
        Stats::merge(parts, elapsed),
        states.into_iter().map(|(_, s)| s).collect(),
    )
}

// ---- the API client ----

/// 256 bytes of payload, so that an object is roughly the size of a small real ConfigMap.
fn payload() -> String {
    "x".repeat(256)
}

fn configmap(name: &str, value: u64, rv: Option<&str>) -> Value {
    let mut metadata = json!({"name": name, "labels": {"app": "skiff-bench"}});
    if let Some(rv) = rv {
        metadata["resourceVersion"] = json!(rv);
    }
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata,
        "data": {"value": value.to_string(), "payload": payload()},
    })
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(base: &str) -> Api {
        Api {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(usize::MAX)
                .build()
                .expect("http client"),
            base: base.to_string(),
        }
    }

    fn cms(&self, ns: &str) -> String {
        format!("{}/api/v1/namespaces/{ns}/configmaps", self.base)
    }

    /// Sends a request; answers the body of a 2xx response or an error naming the status.
    async fn send(&self, req: reqwest::RequestBuilder) -> Result<bytes::Bytes, String> {
        let resp = req.send().await.map_err(|e| format!("request: {e}"))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| format!("body: {e}"))?;
        if status.is_success() {
            Ok(body)
        } else {
            let text = String::from_utf8_lossy(&body);
            Err(format!(
                "{status}: {}",
                text.chars().take(300).collect::<String>()
            ))
        }
    }

    /// The resourceVersion of an object (or list) in a response body.
    fn rv_of(body: &[u8]) -> Result<String, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("decode: {e}"))?;
        v["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "no resourceVersion in the response".to_string())
    }

    async fn create_namespace(&self, ns: &str) {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        self.send(
            self.http
                .post(format!("{}/api/v1/namespaces", self.base))
                .json(&body),
        )
        .await
        .unwrap_or_else(|e| panic!("creating namespace {ns}: {e}"));
    }

    /// Creates a ConfigMap; answers its resourceVersion.
    async fn create(&self, ns: &str, name: &str, value: u64) -> Result<String, String> {
        let body = self
            .send(
                self.http
                    .post(self.cms(ns))
                    .json(&configmap(name, value, None)),
            )
            .await?;
        Self::rv_of(&body)
    }

    async fn get(&self, ns: &str, name: &str) -> Result<bytes::Bytes, String> {
        self.send(self.http.get(format!("{}/{name}", self.cms(ns))))
            .await
    }

    /// Replaces a ConfigMap, conditionally when `rv` is given; answers the new resourceVersion.
    async fn update(
        &self,
        ns: &str,
        name: &str,
        value: u64,
        rv: Option<&str>,
    ) -> Result<String, String> {
        let body = self
            .send(
                self.http
                    .put(format!("{}/{name}", self.cms(ns)))
                    .json(&configmap(name, value, rv)),
            )
            .await?;
        Self::rv_of(&body)
    }

    /// Lists a namespace's ConfigMaps; answers the list's resourceVersion and item count.
    async fn list(&self, ns: &str) -> Result<(String, usize), String> {
        let body = self.send(self.http.get(self.cms(ns))).await?;
        let v: Value = serde_json::from_slice(&body).map_err(|e| format!("decode: {e}"))?;
        let rv = v["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let n = v["items"].as_array().map_or(0, Vec::len);
        Ok((rv, n))
    }

    /// Creates `count` ConfigMaps named `{prefix}{i}` with 16 clients, outside any measurement.
    async fn fill(&self, ns: &str, prefix: &str, count: u64) {
        let states = vec![(); 16];
        let (api, ns2, prefix) = (self.clone(), ns.to_string(), prefix.to_string());
        let (stats, _) = closed_loop(states, count, Duration::from_secs(600), move |s, i| {
            let (api, ns, name) = (api.clone(), ns2.clone(), format!("{prefix}{i}"));
            async move { (s, api.create(&ns, &name, i).await.map(drop)) }
        })
        .await;
        assert_eq!(
            stats.ok,
            count,
            "filling {ns}: {:?}",
            stats.first_error.unwrap_or_default()
        );
    }
}

// ---- the API phases ----

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Create,
    Get,
    Update,
    List,
}

const OPS: [Op; 4] = [Op::Create, Op::Get, Op::Update, Op::List];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Get => "get",
            Op::Update => "update",
            Op::List => "list",
        }
    }
}

/// One worker's objects: (name, resourceVersion), and where it is in them.
#[derive(Default)]
struct Owned {
    objects: Vec<(String, String)>,
    cursor: usize,
}

impl Owned {
    fn next_index(&mut self) -> Option<usize> {
        if self.objects.is_empty() {
            return None;
        }
        let i = self.cursor % self.objects.len();
        self.cursor += 1;
        Some(i)
    }
}

type ApiResults = HashMap<(Op, usize), Stats>;

/// create, get, update and list at each concurrency level.
async fn api_phases(cfg: &Config, api: &Api) -> ApiResults {
    let mut results = HashMap::new();
    api.create_namespace("bench-list").await;
    api.fill("bench-list", "cm-", cfg.list_size as u64).await;
    for &c in &cfg.clients {
        let ns = format!("bench-c{c}");
        api.create_namespace(&ns).await;

        // create: each worker keeps what it created, for the phases below.
        let states: Vec<Owned> = (0..c).map(|_| Owned::default()).collect();
        let (a, n) = (api.clone(), ns.clone());
        let (stats, states) = closed_loop(states, cfg.ops, cfg.phase_time, move |mut s, i| {
            let (api, ns) = (a.clone(), n.clone());
            async move {
                let name = format!("cm-{i}");
                match api.create(&ns, &name, i).await {
                    Ok(rv) => {
                        s.objects.push((name, rv));
                        (s, Ok(()))
                    }
                    Err(e) => (s, Err(e)),
                }
            }
        })
        .await;
        report_phase(Op::Create, c, &stats);
        results.insert((Op::Create, c), stats);

        // get: each worker reads its own objects round-robin.
        let (a, n) = (api.clone(), ns.clone());
        let (stats, states) = closed_loop(states, cfg.ops, cfg.phase_time, move |mut s, _| {
            let (api, ns) = (a.clone(), n.clone());
            async move {
                let Some(k) = s.next_index() else {
                    return (s, Err("worker owns no object".into()));
                };
                let r = api.get(&ns, &s.objects[k].0).await.map(drop);
                (s, r)
            }
        })
        .await;
        report_phase(Op::Get, c, &stats);
        results.insert((Op::Get, c), stats);

        // update: conditional replaces (as a controller does) of the worker's own objects,
        // so that no two clients ever conflict.
        let (a, n) = (api.clone(), ns.clone());
        let (stats, _) = closed_loop(states, cfg.ops, cfg.phase_time, move |mut s, i| {
            let (api, ns) = (a.clone(), n.clone());
            async move {
                let Some(k) = s.next_index() else {
                    return (s, Err("worker owns no object".into()));
                };
                let (name, rv) = &s.objects[k];
                match api.update(&ns, name, 1_000_000 + i, Some(rv)).await {
                    Ok(new_rv) => {
                        s.objects[k].1 = new_rv;
                        (s, Ok(()))
                    }
                    Err(e) => (s, Err(e)),
                }
            }
        })
        .await;
        report_phase(Op::Update, c, &stats);
        results.insert((Op::Update, c), stats);

        // list: the whole of a namespace of `list_size` ConfigMaps. The count was checked
        // once; the measured lists are not decoded here, to leave the CPU to the server.
        let (_, listed) = api.list("bench-list").await.expect("list bench-list");
        assert_eq!(listed, cfg.list_size, "items in bench-list");
        let a = api.clone();
        let states = vec![(); c];
        let (stats, _) = closed_loop(states, cfg.ops, cfg.phase_time, move |s, _| {
            let api = a.clone();
            async move {
                let r = match api.send(api.http.get(api.cms("bench-list"))).await {
                    Ok(body) if body.starts_with(b"{") => Ok(()),
                    Ok(_) => Err("the list is not a JSON object".to_string()),
                    Err(e) => Err(e),
                };
                (s, r)
            }
        })
        .await;
        report_phase(Op::List, c, &stats);
        results.insert((Op::List, c), stats);
    }
    results
}

fn report_phase(op: Op, c: usize, s: &Stats) {
    eprintln!(
        "  {:<6} c={c:<3} {:>6} ok in {:>6.2}s  {:>8.0} ops/s  p50 {} p99 {}",
        op.name(),
        s.ok,
        s.elapsed.as_secs_f64(),
        s.rate(),
        ms(s.p50()),
        ms(s.p99())
    );
    s.warn_errors(op.name());
}

/// Writes at a fixed rate, open loop: operation `i` is due at `start + i / rate` whether or not
/// earlier ones have finished, and its latency counts from when it was due (so a stalled server
/// cannot hide its queue). Even operations create new ConfigMaps, odd ones replace (without a
/// precondition) one of a pool of existing ones, each revisited only every few seconds.
async fn paced_phase(cfg: &Config, api: &Api) -> Stats {
    let ns = "bench-paced";
    let pool: u64 = (cfg.paced_rate * 2).max(16);
    api.create_namespace(ns).await;
    api.fill(ns, "pool-", pool).await;
    let total = (cfg.paced_rate as f64 * cfg.paced_time.as_secs_f64()).round() as u64;
    let period = Duration::from_secs_f64(1.0 / cfg.paced_rate as f64);
    // More in flight than this means the server is far behind; stop offering then.
    let max_in_flight = 4096;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let start = tokio::time::Instant::now() + Duration::from_millis(20);
    let mut tasks = JoinSet::new();
    let mut shed = 0u64;
    for i in 0..total {
        let due = start + period.mul_f64(i as f64);
        tokio::time::sleep_until(due).await;
        if in_flight.load(Ordering::Relaxed) >= max_in_flight {
            shed += 1;
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (api, in_flight) = (api.clone(), Arc::clone(&in_flight));
        tasks.spawn(async move {
            let result = if i % 2 == 0 {
                api.create(ns, &format!("paced-{i}"), i).await
            } else {
                let name = format!("pool-{}", (i / 2) % pool);
                api.update(ns, &name, i, None).await
            };
            let done = tokio::time::Instant::now();
            in_flight.fetch_sub(1, Ordering::Relaxed);
            (result.map(drop), done.duration_since(due), done)
        });
    }
    let mut stats = Stats::default();
    let mut last = start;
    while let Some(r) = tasks.join_next().await {
        let (result, latency, done) = r.expect("paced task panicked");
        last = last.max(done);
        match result {
            Ok(()) => {
                stats.ok += 1;
                stats.latencies.push(latency);
            }
            Err(e) => {
                stats.errors += 1;
                stats.first_error.get_or_insert(e);
            }
        }
    }
    stats.errors += shed;
    if shed > 0 {
        stats
            .first_error
            .get_or_insert(format!("{shed} writes not sent: {max_in_flight} in flight"));
    }
    stats.elapsed = last.duration_since(start);
    stats.latencies.sort_unstable();
    eprintln!(
        "  paced  {:>6} ok in {:>6.2}s  {:>8.0} writes/s  p50 {} p99 {}",
        stats.ok,
        stats.elapsed.as_secs_f64(),
        stats.rate(),
        ms(stats.p50()),
        ms(stats.p99())
    );
    stats.warn_errors("paced");
    stats
}

// ---- watch fan-out ----

struct FanOut {
    watchers: usize,
    /// Watchers whose stream was open when the writer started.
    connected: usize,
    /// Watchers that saw every change.
    complete: usize,
    changes: u64,
    delivered: u64,
    connect_time: Duration,
    /// From the first write to the last write's acknowledgement.
    write_time: Duration,
    /// From the first write until every complete watcher had seen the last change.
    all_seen: Duration,
    /// From the last write's acknowledgement until every watcher had seen it.
    lag_after_last: Duration,
    /// Median time from the last acknowledgement until a watcher had seen everything.
    lag_p50: Duration,
}

impl FanOut {
    fn events_per_sec(&self) -> f64 {
        if self.all_seen.is_zero() {
            0.0
        } else {
            self.delivered as f64 / self.all_seen.as_secs_f64()
        }
    }
}

/// `watchers` HTTP watch streams on one namespace, from the same resourceVersion, while
/// `watch_writers` clients create `watch_changes` ConfigMaps there. A watcher counts the
/// events (lines) it receives and notes when it has seen all of them.
async fn watch_phase(cfg: &Config, api: &Api) -> FanOut {
    let ns = "bench-watch";
    api.create_namespace(ns).await;
    let (rv, _) = api.list(ns).await.expect("list before watching");
    let url = format!(
        "{}?watch=true&resourceVersion={rv}&timeoutSeconds={}",
        api.cms(ns),
        cfg.watch_time.as_secs() + 60
    );
    // A client of its own: one connection per watch stream.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("http client");
    let want = cfg.watch_changes;
    let connected = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let opening = Arc::new(Semaphore::new(64));
    let t_connect = Instant::now();
    let deadline = t_connect + cfg.watch_time;
    let mut tasks = JoinSet::new();
    for _ in 0..cfg.watchers {
        let (http, url) = (http.clone(), url.clone());
        let (connected, stop, opening) = (
            Arc::clone(&connected),
            Arc::clone(&stop),
            Arc::clone(&opening),
        );
        tasks.spawn(async move {
            let permit = opening.acquire_owned().await.expect("semaphore");
            let resp = match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => r,
                Ok(r) => return (0, None, Some(format!("watch: {}", r.status()))),
                Err(e) => return (0, None, Some(format!("watch: {e}"))),
            };
            drop(permit);
            connected.fetch_add(1, Ordering::SeqCst);
            let mut seen = 0u64;
            let mut body = resp.bytes_stream();
            loop {
                let next = tokio::time::timeout(Duration::from_millis(500), body.next()).await;
                match next {
                    Ok(Some(Ok(chunk))) => {
                        seen += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
                        if seen >= want {
                            return (seen, Some(Instant::now()), None);
                        }
                    }
                    Ok(Some(Err(e))) => return (seen, None, Some(format!("stream: {e}"))),
                    Ok(None) => return (seen, None, Some("stream ended early".into())),
                    Err(_) if stop.load(Ordering::SeqCst) || Instant::now() >= deadline => {
                        return (seen, None, Some("timed out".into()));
                    }
                    Err(_) => {}
                }
            }
        });
    }
    while connected.load(Ordering::SeqCst) < cfg.watchers
        && Instant::now() < deadline
        && tasks.len() == cfg.watchers
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let connect_time = t_connect.elapsed();
    let connected_at_start = connected.load(Ordering::SeqCst);
    eprintln!(
        "  {connected_at_start} watchers connected in {:.2}s",
        connect_time.as_secs_f64()
    );

    let t_write = Instant::now();
    let states = vec![(); cfg.watch_writers.max(1)];
    let a = api.clone();
    let (writes, _) = closed_loop(states, want, cfg.watch_time, move |s, i| {
        let api = a.clone();
        async move { (s, api.create(ns, &format!("w-{i}"), i).await.map(drop)) }
    })
    .await;
    let t_last_ack = Instant::now();
    writes.warn_errors("watch writer");

    let mut delivered = 0;
    let mut done_at = Vec::new();
    let mut first_error = None;
    while let Some(r) = tasks.join_next().await {
        let (seen, done, err) = r.expect("watcher panicked");
        delivered += seen;
        if let Some(t) = done {
            done_at.push(t);
        }
        if first_error.is_none() {
            first_error = err;
        }
        if Instant::now() >= deadline {
            stop.store(true, Ordering::SeqCst);
        }
    }
    if let Some(e) = first_error {
        eprintln!("  ! watchers: first problem: {e}");
    }
    done_at.sort_unstable();
    let last_seen = done_at.last().copied().unwrap_or(t_last_ack);
    let lag_p50 = done_at
        .get(done_at.len() / 2)
        .map_or(Duration::ZERO, |t| t.saturating_duration_since(t_last_ack));
    let result = FanOut {
        watchers: cfg.watchers,
        connected: connected_at_start,
        complete: done_at.len(),
        changes: writes.ok,
        delivered,
        connect_time,
        write_time: t_last_ack - t_write,
        all_seen: last_seen.saturating_duration_since(t_write),
        lag_after_last: last_seen.saturating_duration_since(t_last_ack),
        lag_p50,
    };
    eprintln!(
        "  fan-out: {} events to {} watchers, {:.0} events/s, all seen {:.1} ms after the last write",
        result.delivered,
        result.complete,
        result.events_per_sec(),
        result.lag_after_last.as_secs_f64() * 1e3
    );
    result
}

// ---- the raw etcd yardstick ----

struct RawEtcd {
    put: Stats,
    txn: Stats,
    get_txn: Stats,
}

/// A create shaped as skiff's: a txn guarded on create_revision == 0.
fn create_txn(key: &str, value: &[u8]) -> Txn {
    Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(key, value, None)])
        .or_else([TxnOp::get(key, None)])
}

async fn txn_create(kv: &mut KvClient, key: &str, value: &[u8]) -> Result<(), String> {
    match kv.txn(create_txn(key, value)).await {
        Ok(resp) if resp.succeeded() => Ok(()),
        Ok(_) => Err(format!("{key} exists")),
        Err(e) => Err(e.to_string()),
    }
}

fn report_raw(what: &str, c: usize, s: &Stats) {
    eprintln!(
        "  {what:<7} c={c:<3} {:>6} ok in {:>6.2}s  {:>8.0} ops/s  p50 {} p99 {}",
        s.ok,
        s.elapsed.as_secs_f64(),
        s.rate(),
        ms(s.p50()),
        ms(s.p99())
    );
    s.warn_errors(what);
}

/// Through one etcd-client connection shared by `c` workers, with `value_size`-byte values:
/// plain puts (the yardstick), creates shaped as skiff's (a guarded txn), and a linearizable
/// get followed by such a txn, which is the storage work of an etcd-backed create (the
/// namespace check, then the write).
async fn raw_etcd(cfg: &Config, value_size: usize) -> HashMap<usize, RawEtcd> {
    let etcd = tokio::task::spawn_blocking(EtcdServer::start)
        .await
        .expect("etcd start");
    let client = etcd_client::Client::connect(etcd.endpoints(), None)
        .await
        .expect("connect to etcd");
    let value = Arc::new(vec![b'x'; value_size]);
    let mut kv = client.kv_client();
    kv.put("/bench/namespace", value.as_slice(), None)
        .await
        .expect("etcd put");
    // Warm up (connection, WAL), unmeasured.
    for i in 0..200 {
        kv.put(format!("/bench/warmup/{i}"), value.as_slice(), None)
            .await
            .expect("etcd put");
    }
    let mut out = HashMap::new();
    for &c in &cfg.clients {
        let states = vec![client.kv_client(); c];
        let v = Arc::clone(&value);
        let (put, states) = closed_loop(states, cfg.ops, cfg.phase_time, move |mut kv, i| {
            let v = Arc::clone(&v);
            async move {
                let r = kv
                    .put(format!("/bench/put/{c}/{i}"), v.as_slice(), None)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string());
                (kv, r)
            }
        })
        .await;
        report_raw("put", c, &put);
        let v = Arc::clone(&value);
        let (txn, states) = closed_loop(states, cfg.ops, cfg.phase_time, move |mut kv, i| {
            let v = Arc::clone(&v);
            async move {
                let r = txn_create(&mut kv, &format!("/bench/txn/{c}/{i}"), &v).await;
                (kv, r)
            }
        })
        .await;
        report_raw("txn", c, &txn);
        let v = Arc::clone(&value);
        let (get_txn, _) = closed_loop(states, cfg.ops, cfg.phase_time, move |mut kv, i| {
            let v = Arc::clone(&v);
            async move {
                let r = match kv.get("/bench/namespace", None).await {
                    Ok(resp) if resp.kvs().len() == 1 => {
                        txn_create(&mut kv, &format!("/bench/get-txn/{c}/{i}"), &v).await
                    }
                    Ok(_) => Err("the namespace key is missing".to_string()),
                    Err(e) => Err(e.to_string()),
                };
                (kv, r)
            }
        })
        .await;
        report_raw("get+txn", c, &get_txn);
        out.insert(c, RawEtcd { put, txn, get_txn });
    }
    drop((kv, client));
    tokio::task::spawn_blocking(move || drop(etcd))
        .await
        .expect("etcd stop");
    out
}

// ---- output ----

fn ms(d: Option<Duration>) -> String {
    match d {
        Some(d) => format!("{:.2}", d.as_secs_f64() * 1e3),
        None => "-".into(),
    }
}

fn rate(s: Option<&Stats>) -> String {
    s.map_or("-".into(), |s| format!("{:.0}", s.rate()))
}

fn table(header: Vec<&str>) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(header);
    t
}

/// Right-aligns every column but the first `left` ones.
fn align(t: &mut Table, left: usize) {
    for (i, col) in t.column_iter_mut().enumerate() {
        if i >= left {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
}

fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn print_section(title: impl Display, t: &Table) {
    println!("\n{title}\n{t}");
}

#[derive(Default)]
struct Results {
    api: HashMap<Backend, ApiResults>,
    paced: HashMap<Backend, Stats>,
    fanout: HashMap<Backend, FanOut>,
    raw: HashMap<usize, RawEtcd>,
}

fn print_results(cfg: &Config, r: &Results) {
    let get = |b: Backend, op: Op, c: usize| r.api.get(&b).and_then(|m| m.get(&(op, c)));

    // 1. Throughput and latency, backends side by side.
    let mut header = vec!["op", "clients"];
    for b in &cfg.backends {
        header.extend(match b {
            Backend::Embedded => ["embedded ops/s", "p50 ms", "p99 ms", "errors"],
            Backend::Etcd => ["etcd ops/s", "p50 ms", "p99 ms", "errors"],
        });
    }
    let mut t = table(header);
    for op in OPS {
        for &c in &cfg.clients {
            let mut row = vec![op.name().to_string(), c.to_string()];
            for &b in &cfg.backends {
                let s = get(b, op, c);
                row.extend([
                    rate(s),
                    ms(s.and_then(Stats::p50)),
                    ms(s.and_then(Stats::p99)),
                    s.map_or("-".into(), |s| s.errors.to_string()),
                ]);
            }
            t.add_row(row);
        }
    }
    align(&mut t, 1);
    print_section(
        format!(
            "API throughput and latency (ConfigMaps over HTTP/JSON; up to {} ops or {:.0}s per cell; list = {} items)",
            cfg.ops,
            cfg.phase_time.as_secs_f64(),
            cfg.list_size
        ),
        &t,
    );

    // 2. The raw etcd yardstick.
    if !r.raw.is_empty() {
        let mut t = table(vec![
            "clients",
            "etcd put/s",
            "p50 ms",
            "p99 ms",
            "txn-create/s",
            "p50 ms",
            "p99 ms",
            "get+txn-create/s",
            "p50 ms",
            "p99 ms",
        ]);
        for &c in &cfg.clients {
            if let Some(x) = r.raw.get(&c) {
                t.add_row(vec![
                    c.to_string(),
                    rate(Some(&x.put)),
                    ms(x.put.p50()),
                    ms(x.put.p99()),
                    rate(Some(&x.txn)),
                    ms(x.txn.p50()),
                    ms(x.txn.p99()),
                    rate(Some(&x.get_txn)),
                    ms(x.get_txn.p50()),
                    ms(x.get_txn.p99()),
                ]);
            }
        }
        align(&mut t, 0);
        print_section(
            "Raw etcd via etcd-client (one shared connection)\n\
             txn-create: a put guarded on create_revision = 0, as skiff's create. get+txn-create:\n\
             a linearizable get, then that txn: the etcd round trips of one skiff create.",
            &t,
        );
    }

    // 3. Paced writes.
    if !r.paced.is_empty() {
        let mut t = table(vec![
            "backend",
            "offered/s",
            "achieved/s",
            "writes",
            "errors",
            "p50 ms",
            "p99 ms",
            "max ms",
        ]);
        for &b in &cfg.backends {
            if let Some(s) = r.paced.get(&b) {
                t.add_row(vec![
                    b.name().to_string(),
                    cfg.paced_rate.to_string(),
                    format!("{:.0}", s.rate()),
                    s.ok.to_string(),
                    s.errors.to_string(),
                    ms(s.p50()),
                    ms(s.p99()),
                    ms(s.latencies.last().copied()),
                ]);
            }
        }
        align(&mut t, 1);
        print_section(
            format!(
                "Paced writes, open loop, {:.0}s (half creates, half unconditional updates)",
                cfg.paced_time.as_secs_f64()
            ),
            &t,
        );
    }

    // 4. Watch fan-out.
    if !r.fanout.is_empty() {
        let mut t = table(vec![
            "backend",
            "watchers",
            "complete",
            "changes",
            "events",
            "events/s",
            "connect s",
            "writes s",
            "all seen s",
            "lag p50 ms",
            "lag max ms",
        ]);
        for &b in &cfg.watch_backends {
            if let Some(f) = r.fanout.get(&b) {
                t.add_row(vec![
                    b.name().to_string(),
                    format!("{}/{}", f.connected, f.watchers),
                    f.complete.to_string(),
                    f.changes.to_string(),
                    f.delivered.to_string(),
                    format!("{:.0}", f.events_per_sec()),
                    format!("{:.2}", f.connect_time.as_secs_f64()),
                    format!("{:.2}", f.write_time.as_secs_f64()),
                    format!("{:.2}", f.all_seen.as_secs_f64()),
                    format!("{:.1}", f.lag_p50.as_secs_f64() * 1e3),
                    format!("{:.1}", f.lag_after_last.as_secs_f64() * 1e3),
                ]);
            }
        }
        align(&mut t, 1);
        print_section(
            "Watch fan-out (HTTP watch streams on one namespace; the changes are creates)\n\
             watchers: streams open when writing began / started. events/s: events delivered\n\
             / (first write → every watcher saw the last). lag: last write acknowledged → a\n\
             watcher saw it (median, slowest).",
            &t,
        );
    }

    // 5. Targets.
    let mut t = table(vec!["target", "backend", "measured", "result"]);
    for &b in &cfg.backends {
        if let Some(s) = r.paced.get(&b) {
            let p99 = s.p99().unwrap_or(Duration::MAX);
            let rate_ok = s.rate() >= 0.95 * cfg.paced_rate as f64 && s.errors == 0;
            t.add_row(vec![
                format!(
                    "mutating p99 ≤ 50 ms at {} writes/s (achieved ≥ 95%, no errors)",
                    cfg.paced_rate
                ),
                b.name().to_string(),
                format!("p99 {} ms at {:.0}/s", ms(s.p99()), s.rate()),
                pass(rate_ok && p99 <= Duration::from_millis(50)).to_string(),
            ]);
        }
    }
    if cfg.backends.contains(&Backend::Etcd) {
        for &c in &cfg.clients {
            if let (Some(s), Some(raw)) = (get(Backend::Etcd, Op::Create, c), r.raw.get(&c)) {
                let x = ratio(s.rate(), raw.put.rate());
                t.add_row(vec![
                    format!("etcd-backed create ≥ 0.5× raw etcd put, {c} clients"),
                    "etcd".to_string(),
                    format!("{:.0} / {:.0} = {x:.2}×", s.rate(), raw.put.rate()),
                    pass(x >= 0.5).to_string(),
                ]);
            }
        }
    }
    if cfg.backends.contains(&Backend::Embedded) && cfg.backends.contains(&Backend::Etcd) {
        for op in OPS {
            let ratios: Vec<f64> = cfg
                .clients
                .iter()
                .filter_map(|&c| {
                    let e = get(Backend::Embedded, op, c)?;
                    let d = get(Backend::Etcd, op, c)?;
                    Some(ratio(e.rate(), d.rate()))
                })
                .collect();
            if ratios.is_empty() {
                continue;
            }
            let shown: Vec<String> = ratios.iter().map(|x| format!("{x:.2}×")).collect();
            let clients: Vec<String> = cfg.clients.iter().map(usize::to_string).collect();
            t.add_row(vec![
                format!(
                    "embedded {} ops/s ≥ etcd-backed, at {} clients",
                    op.name(),
                    clients.join("/")
                ),
                "both".to_string(),
                shown.join(" / "),
                pass(ratios.iter().all(|&x| x >= 1.0)).to_string(),
            ]);
        }
    }
    print_section("Targets (issue section 5)", &t);
}

// ---- main ----

fn main() {
    // kube (ring) and reqwest (aws-lc-rs) together enable two rustls providers; pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cfg = Config::from_env();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(run(cfg));
}

async fn run(cfg: Config) {
    let profile = if cfg.binary.components().any(|c| c.as_os_str() == "debug") {
        "DEBUG BUILD: numbers mean little"
    } else {
        "release"
    };
    println!(
        "skiff API benchmark: server {} ({profile}); {} cores; ops/phase {}, phase cap {:.0}s, clients {:?}, backends {:?}, paced {}/s for {:.0}s, {} watchers × {} changes",
        cfg.binary.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cfg.ops,
        cfg.phase_time.as_secs_f64(),
        cfg.clients,
        cfg.backends.iter().map(|b| b.name()).collect::<Vec<_>>(),
        cfg.paced_rate,
        cfg.paced_time.as_secs_f64(),
        cfg.watchers,
        cfg.watch_changes,
    );
    println!("load average at start: {}", load_average());
    let mut results = Results::default();
    let mut value_size = 0;
    for &backend in &cfg.backends {
        eprintln!("== {} backend", backend.name());
        let binary = cfg.binary.clone();
        let server = tokio::task::spawn_blocking(move || SkiffServer::start(&binary, backend))
            .await
            .expect("server start");
        let api = Api::new(&server.url);
        results.api.insert(backend, api_phases(&cfg, &api).await);
        if value_size == 0 {
            // What the raw etcd writes: the size of a stored ConfigMap, roughly.
            value_size = api.get("bench-list", "cm-0").await.map_or(512, |b| b.len());
        }
        if cfg.paced_rate > 0 && !cfg.paced_time.is_zero() {
            results.paced.insert(backend, paced_phase(&cfg, &api).await);
        }
        if cfg.watchers > 0 && cfg.watch_backends.contains(&backend) {
            results
                .fanout
                .insert(backend, watch_phase(&cfg, &api).await);
        }
        tokio::task::spawn_blocking(move || drop(server))
            .await
            .expect("server stop");
    }
    if cfg.backends.contains(&Backend::Etcd) {
        eprintln!("== raw etcd ({value_size}-byte values)");
        results.raw = raw_etcd(&cfg, value_size.max(1)).await;
    }
    print_results(&cfg, &results);
    println!("\nload average at end: {}", load_average());
}

/// The 1, 5 and 15 minute load averages (Linux), to tell whether something else was running.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
