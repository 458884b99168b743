//! Probes, as kubelet's prober workers run them: one task per (container, probe kind) of a
//! running container — exec in the container, httpGet and tcpSocket against the pod's IP —
//! on its periodSeconds after initialDelaySeconds, each attempt bounded by timeoutSeconds,
//! the result flipping only after successThreshold/failureThreshold consecutive outcomes.
//! A startup probe holds the other two back until it has succeeded (then it stops).
//! Readiness and startup start out false, liveness true.
//!
//! A result change wakes the pod's worker, which reads the results for the status (ready,
//! started) and restarts a container whose liveness failed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use skiff_runtime::container::{ExecOptions, Runtime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Liveness => c.liveness_probe.as_ref(),
            ProbeKind::Readiness => c.readiness_probe.as_ref(),
            ProbeKind::Startup => c.startup_probe.as_ref(),
        }
    }

    /// The result before the first verdict: a container is not ready, nor started, until
    /// its probe says so; it is alive until its liveness probe says otherwise.
    fn initial(self) -> bool {
        self == ProbeKind::Liveness
    }
}

type Results = Arc<Mutex<HashMap<(String, ProbeKind), bool>>>;

struct Worker {
    runtime_id: String,
    task: tokio::task::JoinHandle<()>,
}

/// The probes of one pod.
pub struct Prober {
    runtime: Arc<Runtime>,
    wake: Arc<Notify>,
    workers: HashMap<(String, ProbeKind), Worker>,
    results: Results,
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop_all();
    }
}

impl Prober {
    pub fn new(runtime: Arc<Runtime>, wake: Arc<Notify>) -> Prober {
        Prober {
            runtime,
            wake,
            workers: HashMap::new(),
            results: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Probes exactly the running containers in `running` (container name → runtime id):
    /// a new runtime id (a restart) starts the container's probes afresh.
    pub fn sync(&mut self, pod: &Pod, pod_ip: Option<Ipv4Addr>, running: &HashMap<String, String>) {
        let containers = pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default();
        let mut wanted: HashMap<(String, ProbeKind), (Container, Probe, String)> = HashMap::new();
        for c in &containers {
            let Some(id) = running.get(&c.name) else {
                continue;
            };
            for kind in [
                ProbeKind::Liveness,
                ProbeKind::Readiness,
                ProbeKind::Startup,
            ] {
                if let Some(p) = kind.of(c) {
                    wanted.insert((c.name.clone(), kind), (c.clone(), p.clone(), id.clone()));
                }
            }
        }
        let stale: Vec<(String, ProbeKind)> = self
            .workers
            .iter()
            .filter(|(key, w)| {
                wanted
                    .get(*key)
                    .is_none_or(|(_, _, id)| *id != w.runtime_id)
            })
            .map(|(key, _)| key.clone())
            .collect();
        for key in stale {
            if let Some(w) = self.workers.remove(&key) {
                w.task.abort();
            }
            self.lock().remove(&key);
        }
        for (key, (container, probe, id)) in wanted {
            if self.workers.contains_key(&key) {
                continue;
            }
            self.lock().insert(key.clone(), key.1.initial());
            let has_startup = container.startup_probe.is_some();
            let task = tokio::spawn(probe_loop(ProbeTask {
                runtime: self.runtime.clone(),
                wake: self.wake.clone(),
                results: self.results.clone(),
                key: key.clone(),
                container,
                probe,
                runtime_id: id.clone(),
                pod_ip,
                has_startup,
            }));
            self.workers.insert(
                key,
                Worker {
                    runtime_id: id,
                    task,
                },
            );
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, ProbeKind), bool>> {
        self.results.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn result(&self, container: &str, kind: ProbeKind) -> Option<bool> {
        self.lock().get(&(container.to_string(), kind)).copied()
    }

    /// Readiness of a running container (true without a readiness probe).
    pub fn ready(&self, container: &Container) -> bool {
        container.readiness_probe.is_none()
            || self.result(&container.name, ProbeKind::Readiness) == Some(true)
    }

    /// Whether a running container's startup probe has passed (true without one).
    pub fn started(&self, container: &Container) -> bool {
        container.startup_probe.is_none()
            || self.result(&container.name, ProbeKind::Startup) == Some(true)
    }

    /// Whether the liveness probe of the container's current run has failed.
    pub fn liveness_failed(&self, container: &str) -> bool {
        self.result(container, ProbeKind::Liveness) == Some(false)
    }

    pub fn stop_all(&mut self) {
        for (_, w) in self.workers.drain() {
            w.task.abort();
        }
        self.lock().clear();
    }
}

struct ProbeTask {
    runtime: Arc<Runtime>,
    wake: Arc<Notify>,
    results: Results,
    key: (String, ProbeKind),
    container: Container,
    probe: Probe,
    runtime_id: String,
    pod_ip: Option<Ipv4Addr>,
    has_startup: bool,
}

impl ProbeTask {
    fn get(&self, key: &(String, ProbeKind)) -> Option<bool> {
        self.results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .copied()
    }

    fn set(&self, value: bool) -> bool {
        let mut results = self.results.lock().unwrap_or_else(|e| e.into_inner());
        let changed = results.insert(self.key.clone(), value) != Some(value);
        drop(results);
        if changed {
            self.wake.notify_one();
        }
        changed
    }
}

fn seconds(v: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(v.unwrap_or(default).max(0)).unwrap_or(0))
}

async fn probe_loop(task: ProbeTask) {
    let p = &task.probe;
    let period = seconds(p.period_seconds, 10).max(Duration::from_secs(1));
    let timeout = seconds(p.timeout_seconds, 1).max(Duration::from_secs(1));
    let success_threshold = p.success_threshold.unwrap_or(1).max(1);
    let failure_threshold = p.failure_threshold.unwrap_or(3).max(1);
    let kind = task.key.1;
    let startup_key = (task.key.0.clone(), ProbeKind::Startup);
    tokio::time::sleep(seconds(p.initial_delay_seconds, 0)).await;
    let (mut successes, mut failures) = (0, 0);
    loop {
        if kind != ProbeKind::Startup && task.has_startup && task.get(&startup_key) != Some(true) {
            tokio::time::sleep(period.min(Duration::from_secs(1))).await;
            continue;
        }
        let ok = run_probe(&task, timeout).await;
        if ok {
            successes += 1;
            failures = 0;
        } else {
            failures += 1;
            successes = 0;
        }
        if ok && successes >= success_threshold {
            task.set(true);
            if kind == ProbeKind::Startup {
                return;
            }
        } else if !ok && failures >= failure_threshold {
            task.set(false);
            if kind == ProbeKind::Liveness {
                tracing::info!(container = %task.key.0, id = %task.runtime_id,
                    "liveness probe failed: the container will be restarted");
                return;
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// One probe attempt: true on success.
async fn run_probe(task: &ProbeTask, timeout: Duration) -> bool {
    let p = &task.probe;
    if let Some(exec) = &p.exec {
        let args = exec.command.clone().unwrap_or_default();
        return tokio::time::timeout(timeout, exec_probe(&task.runtime, &task.runtime_id, args))
            .await
            .unwrap_or(false);
    }
    if let Some(http) = &p.http_get {
        let Some(port) = resolve_port(&http.port, &task.container) else {
            return false;
        };
        let host = http
            .host
            .as_deref()
            .and_then(|h| h.parse::<IpAddr>().ok())
            .or(task.pod_ip.map(IpAddr::V4));
        let Some(host) = host else { return false };
        if http
            .scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
        {
            tracing::warn!(container = %task.key.0, "HTTPS probes are not supported yet");
            return false;
        }
        let headers: Vec<(String, String)> = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        return tokio::time::timeout(
            timeout,
            http_probe(SocketAddr::new(host, port), &path, &headers),
        )
        .await
        .unwrap_or(false);
    }
    if let Some(tcp) = &p.tcp_socket {
        let Some(port) = resolve_port(&tcp.port, &task.container) else {
            return false;
        };
        let host = tcp
            .host
            .as_deref()
            .and_then(|h| h.parse::<IpAddr>().ok())
            .or(task.pod_ip.map(IpAddr::V4));
        let Some(host) = host else { return false };
        return matches!(
            tokio::time::timeout(
                timeout,
                tokio::net::TcpStream::connect(SocketAddr::new(host, port))
            )
            .await,
            Ok(Ok(_))
        );
    }
    tracing::warn!(container = %task.key.0, "probe type not supported (gRPC probes are not)");
    false
}

/// A port number, or a named container port.
pub fn resolve_port(port: &IntOrString, c: &Container) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => name.parse().ok().or_else(|| {
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
        }),
    }
}

async fn exec_probe(runtime: &Arc<Runtime>, id: &str, args: Vec<String>) -> bool {
    let Ok(cmd) = runtime.exec(
        id,
        ExecOptions {
            args,
            ..Default::default()
        },
    ) else {
        return false;
    };
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    matches!(cmd.status().await, Ok(s) if s.success())
}

/// kubelet's HTTP probe: a GET, success on 200–399.
async fn http_probe(addr: SocketAddr, path: &str, headers: &[(String, String)]) -> bool {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return false;
    };
    let host = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| addr.to_string());
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kube-probe/1.35\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (name, value) in headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
    {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 64];
    let mut read = 0;
    while read < 12 {
        match stream.read(&mut head[read..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let line = String::from_utf8_lossy(&head[..read]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (200..400).contains(&code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn named_ports_resolve_from_the_container() {
        let c: Container = serde_json::from_value(json!({"name": "c",
            "ports": [{"name": "http", "containerPort": 8080}]}))
        .expect("container");
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Some(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Some(8080)
        );
        assert_eq!(
            resolve_port(&IntOrString::String("81".into()), &c),
            Some(81)
        );
        assert_eq!(resolve_port(&IntOrString::String("nope".into()), &c), None);
    }

    #[tokio::test]
    async fn http_probes_count_2xx_and_3xx_as_success() {
        async fn serve(status: &'static str) -> SocketAddr {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::spawn(async move {
                while let Ok((mut s, _)) = listener.accept().await {
                    let mut buf = [0u8; 512];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                        )
                        .await;
                }
            });
            addr
        }
        assert!(http_probe(serve("200 OK").await, "/", &[]).await);
        assert!(http_probe(serve("302 Found").await, "/", &[]).await);
        assert!(!http_probe(serve("404 Not Found").await, "/", &[]).await);
        assert!(!http_probe(serve("500 Internal Server Error").await, "/healthz", &[]).await);
        // Nothing listening.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        assert!(!http_probe(closed, "/", &[]).await);
    }
}
