//! Test helpers (cargo feature `test-util`): a throwaway single-node etcd.
//!
//! ```no_run
//! # async fn demo() {
//! use skiff_storage::{Storage, etcd::EtcdStore, testutil::EtcdServer};
//! let etcd = EtcdServer::start(); // on free 127.0.0.1 ports, data in a temp dir
//! let store = EtcdStore::connect(&[etcd.endpoint.clone()]).await.unwrap();
//! store.create("/registry/pods/default/a", b"{}".to_vec()).await.unwrap();
//! // Dropping `etcd` kills the server and removes its data.
//! # }
//! ```
//!
//! The server runs under a small `sh` supervisor that holds a pipe from this process: when the
//! guard is dropped, or this process dies for any reason (even SIGKILL), the pipe closes and
//! the supervisor kills etcd by its PID. No process is ever looked up by name.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// Where etcd is looked for unless `SKIFF_ETCD_BIN` names another binary.
const DEFAULT_ETCD: &str = "/usr/bin/etcd";

/// How long a fresh etcd may take to report healthy.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Attempts at finding free ports (another process may take a port between our probe and
/// etcd binding it).
const START_ATTEMPTS: usize = 5;

/// Runs etcd (its path is `$0`, its flags the rest) until standard input closes, then kills it.
const SUPERVISOR: &str = r#""$0" "$@" &
pid=$!
read -r _
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
exit 0"#;

/// A single-node etcd for tests, listening on 127.0.0.1 only, killed when dropped.
pub struct EtcdServer {
    /// The client URL, `http://127.0.0.1:<port>`.
    pub endpoint: String,
    client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
    process: Option<Supervised>,
}

struct Supervised {
    child: Child,
    /// Closing this makes the supervisor kill etcd.
    stdin: Option<ChildStdin>,
}

impl EtcdServer {
    /// Starts etcd and waits until it is healthy.
    ///
    /// # Panics
    /// If etcd cannot be started; tests want a loud failure. Use [`EtcdServer::try_start`] to
    /// handle the error instead.
    pub fn start() -> EtcdServer {
        match Self::try_start() {
            Ok(server) => server,
            Err(e) => panic!("starting a test etcd failed: {e}"),
        }
    }

    /// Starts etcd on free ports with its data in a new temporary directory, and waits until
    /// it is healthy.
    pub fn try_start() -> io::Result<EtcdServer> {
        let mut last_err = io::Error::other("no attempt made");
        for attempt in 1..=START_ATTEMPTS {
            let (client_port, peer_port) = free_port_pair()?;
            let mut server = EtcdServer {
                endpoint: format!("http://127.0.0.1:{client_port}"),
                client_port,
                peer_port,
                // A fresh directory per attempt: a half-initialised member would remember
                // the ports of the failed one.
                dir: tempfile::Builder::new().prefix("skiff-etcd-").tempdir()?,
                process: None,
            };
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "test etcd did not start");
                    last_err = e;
                    // Dropping `server` kills what was started and removes its directory.
                }
            }
        }
        Err(last_err)
    }

    /// The client URLs to give [`crate::etcd::EtcdStore::connect`].
    pub fn endpoints(&self) -> Vec<String> {
        vec![self.endpoint.clone()]
    }

    /// The etcd data directory (inside this server's temporary directory).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// What etcd has logged so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Kills etcd (as a crash would) and starts it again on the same data and ports.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.launch()
    }

    /// Kills etcd now and waits for it to be gone; dropping the guard does the same.
    pub fn stop(&mut self) {
        let Some(mut process) = self.process.take() else {
            return;
        };
        drop(process.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match process.child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => break,
            }
        }
        // The supervisor did not finish in time: kill it (our own child, by PID).
        let _ = process.child.kill();
        let _ = process.child.wait();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn launch(&mut self) -> io::Result<()> {
        let binary = std::env::var_os("SKIFF_ETCD_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ETCD));
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg(&binary)
            .arg("--name=default")
            .arg(format!("--data-dir={}", self.data_dir().display()))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=default={peer}"))
            // A one-member cluster elects itself after one election timeout; keep it short.
            .arg("--heartbeat-interval=10")
            .arg("--election-timeout=100")
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::piped())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let stdin = child.stdin.take();
        self.process = Some(Supervised { child, stdin });
        wait_healthy(self.client_port, &self.log_path()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{e}; etcd ({}) log:\n{}", binary.display(), self.log()),
            )
        })
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Two distinct ports that were free a moment ago.
fn free_port_pair() -> io::Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

fn wait_healthy(port: u16, log: &Path) -> io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if healthy(addr) {
            return Ok(());
        }
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("address already in use") {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "etcd could not bind its port",
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("etcd was not healthy within {START_TIMEOUT:?}"),
    ))
}

fn healthy(addr: SocketAddr) -> bool {
    let attempt = || -> io::Result<bool> {
        let mut conn = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
        conn.set_read_timeout(Some(Duration::from_secs(1)))?;
        conn.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut body = String::new();
        conn.read_to_string(&mut body)?;
        Ok(body.contains("\"health\":\"true\""))
    };
    attempt().unwrap_or(false)
}
