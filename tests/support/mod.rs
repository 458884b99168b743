//! The harness for whole-system tests: start `skiff server` on a free loopback port with a
//! temporary data dir (and, for the etcd backend, a throwaway etcd), and stop it by PID.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use skiff_storage::testutil::EtcdServer;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Etcd,
}

pub struct Server {
    child: Option<Child>,
    /// The address it listens on: loopback, unless a test's nodes need to reach it.
    pub host: std::net::Ipv4Addr,
    pub url: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    extra_args: Vec<String>,
    etcd: Option<EtcdServer>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Server {
    pub fn start(backend: Backend) -> Server {
        Self::start_with(backend, &[])
    }

    pub fn start_with(backend: Backend, extra: &[&str]) -> Server {
        Self::start_at(backend, std::net::Ipv4Addr::LOCALHOST, extra)
    }

    /// Listening on `host` (an address of a network namespace the test made).
    pub fn start_at(backend: Backend, host: std::net::Ipv4Addr, extra: &[&str]) -> Server {
        let etcd = match backend {
            Backend::Embedded => None,
            Backend::Etcd => Some(EtcdServer::start()),
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let kubeconfig = dir.path().join("kubeconfig");
        let mut server = Server {
            child: None,
            host,
            url: format!("http://{host}:{port}"),
            port,
            dir,
            kubeconfig,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            etcd,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
        cmd.arg("server")
            .arg("--data-dir")
            .arg(self.dir.path())
            .arg("--listen")
            .arg(format!("{}:{}", self.host, self.port))
            .args(&self.extra_args)
            .env("SKIFF_LOG", "warn")
            .stdin(Stdio::null());
        if let Some(etcd) = &self.etcd {
            cmd.arg("--etcd-servers").arg(&etcd.endpoint);
        }
        let child = cmd.spawn().expect("spawn skiff server");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("skiff server exited early: {status}");
            }
            if http_get_at(self.host, self.port, "/readyz").is_some_and(|(code, _)| code == 200)
                && self.kubeconfig.exists()
            {
                return;
            }
            assert!(Instant::now() < deadline, "skiff server not ready in 30s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kill the server (SIGKILL) and start it again on the same data dir and port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop the etcd behind an etcd-backed server (the server keeps running).
    pub fn stop_etcd(&mut self) {
        self.etcd.take();
    }

    pub async fn client(&self) -> kube::Client {
        // kube and reqwest together enable two rustls providers; pick ring once.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = kube::Config::new(self.url.parse().expect("server url"));
        kube::Client::try_from(config).expect("kube client")
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server process's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `f` every 50 ms until it yields a value, failing the test after 20 s.
pub async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A plain HTTP GET on loopback: (status code, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_at(std::net::Ipv4Addr::LOCALHOST, port, path)
}

/// [`http_get`] to `host`.
pub fn http_get_at(host: std::net::Ipv4Addr, port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect((host, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// Real kubectl v1.35, as installed by scripts/install-kubectl.sh.
pub fn kubectl_path() -> PathBuf {
    if let Ok(p) = std::env::var("SKIFF_KUBECTL") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".cache/tools/bin/kubectl");
    assert!(
        p.exists(),
        "kubectl v1.35 not found at {}: run scripts/install-kubectl.sh",
        p.display()
    );
    p
}

/// An API server without its in-process controllers and scheduler, a client, and a
/// controller manager running in this process with `config`, less leader election.
pub async fn with_controller_manager(
    config: skiff_controller::ControllerManagerConfig,
) -> (Server, kube::Client, tokio::task::JoinHandle<()>) {
    start_controller_manager(config, false).await
}

/// [`with_controller_manager`], with the server's in-process scheduler binding pods.
pub async fn with_controller_manager_and_scheduler(
    config: skiff_controller::ControllerManagerConfig,
) -> (Server, kube::Client, tokio::task::JoinHandle<()>) {
    start_controller_manager(config, true).await
}

async fn start_controller_manager(
    config: skiff_controller::ControllerManagerConfig,
    scheduler: bool,
) -> (Server, kube::Client, tokio::task::JoinHandle<()>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = Server::start_with(
        Backend::Embedded,
        &[
            "--controllers=false",
            if scheduler {
                "--scheduler=true"
            } else {
                "--scheduler=false"
            },
        ],
    );
    let client = server.client().await;
    let manager = tokio::spawn({
        let client = client.clone();
        async move {
            let config = skiff_controller::ControllerManagerConfig {
                leader_election: None,
                ..config
            };
            if let Err(e) = skiff_controller::run(client, config).await {
                panic!("the controller manager stopped: {e}");
            }
        }
    });
    (server, client, manager)
}
