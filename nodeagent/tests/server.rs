//! The agent's server against real containers: busybox containers started through
//! `skiff_runtime` with the labels and log paths of `skiff_nodeagent::naming`, the server on a
//! loopback port, and real HTTP and WebSocket clients.
//!
//! This binary is its own runtime helper (`harness = false`): `main` first hands the runtime's
//! re-executed processes (container monitors, exec helpers) to `skiff_runtime::reexec`, then
//! runs the tests one after another. Each test works in its own temp directory with unique
//! cgroups and cleans up on drop even when it fails. Without root or the fixture tools
//! (umoci, busybox) the tests are skipped, unless `CI=true`.

use std::collections::BTreeMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use serde_json::Value;
use skiff_nodeagent::naming;
use skiff_nodeagent::server::{self, STREAM_PROTOCOL_V4, STREAM_PROTOCOL_V5, ServerContext};
use skiff_runtime::container::{CreateOptions, Runtime, RuntimeConfig, StdioConfig};
use skiff_runtime::image::Image;
use skiff_runtime::spec;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const WAIT: Duration = Duration::from_secs(15);
const NAMESPACE: &str = "default";
const POD: &str = "web";
const CONTAINER: &str = "app";

// ---------------------------------------------------------------------------------------------
// Environment.

fn which(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|d| d.join(tool).is_file())
}

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Root and the fixture tools; skipped with a message without them, unless `CI=true`.
fn require() -> bool {
    let mut missing: Vec<&str> = ["umoci", "busybox"]
        .into_iter()
        .filter(|t| !which(t))
        .collect();
    if !is_root() {
        missing.push("root privileges");
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "missing {} (scripts/install-test-deps.sh installs the tools)",
        missing.join(", ")
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

fn busybox_layout() -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox-oci");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/fixtures/busybox-image.sh");
    let status = Command::new("bash")
        .arg(script)
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .expect("run busybox-image.sh");
    assert!(status.success(), "busybox-image.sh failed: {status}");
    out
}

fn unique(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect()
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// A runtime over a temp dir with busybox imported, a log root, and one pod's identity.
struct Env {
    tag: String,
    runtime: Arc<Runtime>,
    image: Image,
    pod_uid: String,
    tmp: tempfile::TempDir,
}

impl Env {
    fn new(name: &str) -> Env {
        let tag = unique(name);
        let tmp = tempfile::Builder::new()
            .prefix(&format!("skiff-agent-{tag}-"))
            .tempdir_in("/tmp")
            .expect("tempdir");
        let helper = std::env::current_exe().expect("own path");
        let runtime = Runtime::new(RuntimeConfig {
            state_dir: tmp.path().join("state"),
            data_dir: tmp.path().join("data"),
            helper_binary: helper,
        });
        let image = runtime
            .images()
            .expect("image store")
            .import(&busybox_layout())
            .expect("import busybox")
            .into_iter()
            .next()
            .expect("one image");
        Env {
            pod_uid: format!("uid-{}", tag.replace('.', "-")),
            tag,
            runtime: Arc::new(runtime),
            image,
            tmp,
        }
    }

    fn log_root(&self) -> PathBuf {
        self.tmp.path().join("pods")
    }

    fn cgroup(&self, id: &str) -> String {
        format!("skiff-test-{}-{id}", self.tag)
    }

    fn log_path(&self, attempt: u32) -> PathBuf {
        naming::container_log_path(
            &self.log_root(),
            NAMESPACE,
            POD,
            &self.pod_uid,
            CONTAINER,
            attempt,
        )
    }

    /// Starts attempt `attempt` of the pod's container running `script` under `sh -c`;
    /// returns its runtime id and root filesystem (as the host sees it).
    fn start(&self, attempt: u32, script: &str) -> (String, PathBuf) {
        let id = naming::container_id(&self.pod_uid, CONTAINER, attempt);
        let prepared = self
            .runtime
            .prepare_image_rootfs(&id, &self.image)
            .expect("prepare rootfs");
        let mut spec = spec::default_spec(
            &prepared.rootfs,
            vec!["sh".into(), "-c".into(), script.into()],
        );
        spec.linux_mut()
            .as_mut()
            .expect("linux")
            .set_cgroups_path(Some(PathBuf::from(self.cgroup(&id))));
        let log = self.log_path(attempt);
        fs::create_dir_all(log.parent().expect("log dir")).expect("create log dir");
        let mut options = CreateOptions::new(spec, self.tmp.path());
        options.stdio = StdioConfig::Log {
            path: log,
            max_size_bytes: 1 << 20,
            max_files: 2,
        };
        options.managed_dir = Some(prepared.managed_dir);
        options.image_layers = prepared.image_layers;
        options.labels = BTreeMap::from([
            (naming::LABEL_POD_NAMESPACE.into(), NAMESPACE.into()),
            (naming::LABEL_POD_NAME.into(), POD.into()),
            (naming::LABEL_POD_UID.into(), self.pod_uid.clone()),
            (naming::LABEL_CONTAINER_NAME.into(), CONTAINER.into()),
            (naming::LABEL_CONTAINER_ATTEMPT.into(), attempt.to_string()),
            (naming::LABEL_CONTAINER_KIND.into(), "app".into()),
        ]);
        self.runtime
            .create_and_start(&id, options)
            .unwrap_or_else(|e| panic!("start {id}: {e}"));
        (id, prepared.rootfs)
    }

    fn wait(&self, id: &str) -> i32 {
        self.runtime
            .wait_timeout(id, Some(WAIT))
            .unwrap_or_else(|e| panic!("wait {id}: {e}"))
            .code
    }

    /// Waits until the live log of `attempt` holds `records` records.
    fn wait_for_records(&self, attempt: u32, records: usize) {
        let deadline = Instant::now() + WAIT;
        while fs::read_to_string(self.log_path(attempt))
            .unwrap_or_default()
            .lines()
            .count()
            < records
        {
            assert!(Instant::now() < deadline, "log never had {records} records");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn context(&self) -> ServerContext {
        ServerContext {
            runtime: Arc::clone(&self.runtime),
            log_root: self.log_root(),
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(containers) = self.runtime.list() {
            for c in containers {
                if let Err(e) = self.runtime.delete(c.id(), true) {
                    eprintln!("cleanup: deleting {}: {e}", c.id());
                }
            }
        }
        let mut mounts = mounts_under(self.tmp.path());
        mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        let prefix = format!("skiff-test-{}-", self.tag);
        for root in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            for dir in fs::read_dir(root.path()).into_iter().flatten().flatten() {
                if dir.file_name().to_string_lossy().starts_with(&prefix) {
                    remove_cgroup_tree(&dir.path());
                }
            }
        }
    }
}

/// The server on a free loopback port; stops when dropped.
struct Agent {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Agent {
    async fn start(ctx: ServerContext) -> Agent {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = server::serve(listener, ctx, shutdown).await {
                eprintln!("agent server: {e}");
            }
        });
        Agent {
            addr,
            stop: Some(stop),
        }
    }

    fn logs_path(query: &str) -> String {
        format!("/containerLogs/{NAMESPACE}/{POD}/{CONTAINER}?{query}")
    }

    /// A GET: status and the body, read to its end.
    async fn get(&self, path: &str) -> (u16, String) {
        let mut response = self.request(path).await;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(frame) = tokio::time::timeout(WAIT, response.frame())
            .await
            .expect("body in time")
        {
            if let Ok(data) = frame.expect("body frame").into_data() {
                body.extend_from_slice(&data);
            }
        }
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn request(&self, path: &str) -> hyper::Response<hyper::body::Incoming> {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect to the agent");
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("HTTP handshake");
        tokio::spawn(connection);
        let request = hyper::Request::get(path)
            .header("host", self.addr.to_string())
            .body(Empty::<Bytes>::new())
            .expect("request");
        tokio::time::timeout(WAIT, sender.send_request(request))
            .await
            .expect("answer in time")
            .expect("answer")
    }

    /// Opens an exec WebSocket offering `protocols`; the protocol the server chose.
    async fn exec(
        &self,
        query: &str,
        protocols: &str,
    ) -> (
        tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
        String,
    ) {
        let url = format!(
            "ws://{}/exec/{NAMESPACE}/{POD}/{CONTAINER}?{query}",
            self.addr
        );
        let mut request = url.into_client_request().expect("ws request");
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            protocols.parse().expect("header value"),
        );
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect to the agent");
        let (socket, response) = tokio_tungstenite::client_async(request, stream)
            .await
            .expect("WebSocket upgrade");
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (socket, protocol)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// What an exec session carried: data per channel, until the server closed it.
#[derive(Debug, Default)]
struct Session {
    stdout: String,
    stderr: String,
    status: Option<Value>,
}

async fn collect(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) -> Session {
    let mut session = Session::default();
    loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("exec output in time");
        match message {
            Some(Ok(Message::Binary(data))) => {
                let text = String::from_utf8_lossy(&data[1..]).into_owned();
                match data[0] {
                    1 => session.stdout.push_str(&text),
                    2 => session.stderr.push_str(&text),
                    3 => {
                        assert!(session.status.is_none(), "one status only");
                        session.status = Some(serde_json::from_str(&text).expect("status JSON"));
                    }
                    other => panic!("unexpected channel {other}"),
                }
            }
            Some(Ok(Message::Close(frame))) => {
                // kubectl takes anything but a normal closure for a broken stream.
                let code = frame.map(|f| u16::from(f.code));
                assert_eq!(code, Some(1000), "the server closes normally");
                return session;
            }
            None => panic!("the connection ended without a close frame"),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("exec socket failed: {e}"),
        }
    }
}

fn query(command: &[&str], flags: &str) -> String {
    let mut parts: Vec<String> = command
        .iter()
        .map(|c| {
            let encoded: String = c
                .bytes()
                .map(|b| match b {
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("command={encoded}")
        })
        .collect();
    parts.push(flags.to_string());
    parts.join("&")
}

fn success() -> Value {
    serde_json::json!({"metadata": {}, "status": "Success"})
}

// ---------------------------------------------------------------------------------------------
// Logs.

async fn logs_read_as_the_kubelet_serves_them() {
    let env = Env::new("logs");
    let (first, _) = env.start(0, "echo first-0; echo err-0 >&2; exit 1");
    assert_eq!(env.wait(&first), 1);
    let (second, rootfs) = env.start(
        1,
        "echo one; sleep 0.1; echo two >&2; sleep 1.1; echo three; \
         while [ ! -e /tmp/go ]; do sleep 0.05; done; echo four",
    );
    env.wait_for_records(1, 3);
    let agent = Agent::start(env.context()).await;

    assert_eq!(agent.get("/healthz").await, (200, "ok".to_string()));
    assert_eq!(
        agent.get(&Agent::logs_path("")).await,
        (200, "one\ntwo\nthree\n".to_string())
    );
    assert_eq!(
        agent.get(&Agent::logs_path("tailLines=1")).await,
        (200, "three\n".to_string())
    );
    assert_eq!(
        agent.get(&Agent::logs_path("limitBytes=6")).await,
        (200, "one\ntw".to_string())
    );
    assert_eq!(
        agent.get(&Agent::logs_path("stream=Stderr")).await,
        (200, "two\n".to_string())
    );

    // Timestamps: RFC3339 with 9 fraction digits, UTC, then a space and the line.
    let (status, stamped) = agent.get(&Agent::logs_path("timestamps=true")).await;
    assert_eq!(status, 200);
    let stamped: Vec<(&str, &str)> = stamped
        .lines()
        .map(|l| l.split_once(' ').expect("timestamp and line"))
        .collect();
    assert_eq!(
        stamped.iter().map(|(_, l)| *l).collect::<Vec<_>>(),
        ["one", "two", "three"]
    );
    for (ts, _) in &stamped {
        assert_eq!(ts.len(), 30, "fixed-width RFC3339Nano: {ts}");
        assert!(
            chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z'),
            "{ts}"
        );
    }
    // "three" came more than a second after "two": since its time shows it alone.
    let three_at = stamped[2].0;
    assert_eq!(
        agent
            .get(&Agent::logs_path(&format!("sinceTime={three_at}")))
            .await,
        (200, "three\n".to_string())
    );
    assert_eq!(
        agent.get(&Agent::logs_path("sinceSeconds=3600")).await,
        (200, "one\ntwo\nthree\n".to_string())
    );

    // The previous attempt.
    assert_eq!(
        agent.get(&Agent::logs_path("previous=true")).await,
        (200, "first-0\nerr-0\n".to_string())
    );

    // Bad queries and unknown pods.
    let (status, _) = agent.get(&Agent::logs_path("tailLines=-2")).await;
    assert_eq!(status, 400);
    let (status, body) = agent.get("/containerLogs/default/nosuch/app").await;
    assert_eq!(
        (status, body.as_str()),
        (404, "pod \"nosuch\" does not exist")
    );

    // Follow: what is there, then new lines as written, and the end when the container exits.
    let mut response = agent.request(&Agent::logs_path("follow=true")).await;
    assert_eq!(response.status(), 200);
    let mut seen = String::new();
    while !seen.ends_with("three\n") {
        let frame = tokio::time::timeout(WAIT, response.frame())
            .await
            .expect("follow output in time")
            .expect("stream open")
            .expect("frame");
        seen.push_str(&String::from_utf8_lossy(
            &frame.into_data().unwrap_or_default(),
        ));
    }
    assert_eq!(seen, "one\ntwo\nthree\n");
    fs::write(rootfs.join("tmp/go"), "").expect("signal the container");
    while let Some(frame) = tokio::time::timeout(WAIT, response.frame())
        .await
        .expect("follow ends in time once the container exits")
    {
        seen.push_str(&String::from_utf8_lossy(
            &frame.expect("frame").into_data().unwrap_or_default(),
        ));
    }
    assert_eq!(seen, "one\ntwo\nthree\nfour\n");
    assert_eq!(env.wait(&second), 0);
}

async fn previous_without_a_restart_is_refused() {
    let env = Env::new("noprev");
    let (id, _) = env.start(0, "echo only");
    assert_eq!(env.wait(&id), 0);
    let agent = Agent::start(env.context()).await;
    assert_eq!(
        agent.get(&Agent::logs_path("previous=true")).await,
        (
            400,
            format!("previous terminated container \"{CONTAINER}\" in pod \"{POD}\" not found")
        )
    );
    // The container is gone from the runtime: its log is still served (from the log dir).
    env.runtime.delete(&id, false).expect("delete");
    assert_eq!(
        agent.get(&Agent::logs_path("follow=true")).await,
        (200, "only\n".to_string())
    );
}

// ---------------------------------------------------------------------------------------------
// Exec.

async fn exec_streams_and_exit_codes() {
    let env = Env::new("exec");
    let (id, _) = env.start(0, "while true; do sleep 1; done");
    let agent = Agent::start(env.context()).await;
    let offered = format!("{STREAM_PROTOCOL_V5}, {STREAM_PROTOCOL_V4}");

    // stdout, stderr and a non-zero exit, on v5.
    let (mut socket, protocol) = agent
        .exec(
            &query(
                &["sh", "-c", "echo out; echo err >&2; exit 3"],
                "stdout=true&stderr=true",
            ),
            &offered,
        )
        .await;
    assert_eq!(protocol, STREAM_PROTOCOL_V5);
    let session = collect(&mut socket).await;
    assert_eq!(
        (session.stdout.as_str(), session.stderr.as_str()),
        ("out\n", "err\n")
    );
    let status = session.status.expect("a status");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "NonZeroExitCode");
    assert_eq!(status["details"]["causes"][0]["reason"], "ExitCode");
    assert_eq!(status["details"]["causes"][0]["message"], "3");
    assert_eq!(
        status["message"],
        "command terminated with non-zero exit code: error executing command [sh -c echo out; echo err >&2; exit 3], exit code 3"
    );

    // v4 when only v4 is offered; success.
    let (mut socket, protocol) = agent
        .exec(&query(&["echo", "hi"], "stdout=true"), STREAM_PROTOCOL_V4)
        .await;
    assert_eq!(protocol, STREAM_PROTOCOL_V4);
    let session = collect(&mut socket).await;
    assert_eq!(session.stdout, "hi\n");
    assert_eq!(session.status, Some(success()));

    // stdin, half-closed with v5's close signal: cat sees its end and exits.
    let (mut socket, _) = agent
        .exec(&query(&["cat"], "stdin=true&stdout=true"), &offered)
        .await;
    socket
        .send(Message::binary(b"\x00hello\n".to_vec()))
        .await
        .expect("send stdin");
    socket
        .send(Message::binary(vec![255u8, 0]))
        .await
        .expect("close stdin");
    let session = collect(&mut socket).await;
    assert_eq!(session.stdout, "hello\n");
    assert_eq!(session.status, Some(success()));

    // A terminal: resized, then asked for its size.
    let (mut socket, _) = agent
        .exec(
            &query(
                &["sh", "-c", "read line; stty size"],
                "stdin=true&stdout=true&tty=true",
            ),
            &offered,
        )
        .await;
    let mut resize = vec![4u8];
    resize.extend_from_slice(br#"{"Width":100,"Height":40}"#);
    socket.send(Message::binary(resize)).await.expect("resize");
    socket
        .send(Message::binary(b"\x00go\r".to_vec()))
        .await
        .expect("send a line");
    let session = collect(&mut socket).await;
    assert!(
        session.stdout.contains("40 100"),
        "stty size after the resize: {:?}",
        session.stdout
    );
    assert_eq!(session.status, Some(success()));

    // No stream protocol offered, or a container that does not run: refused before upgrading.
    let (status, _) = agent
        .get(&format!(
            "/exec/{NAMESPACE}/{POD}/{CONTAINER}?{}",
            query(&["ls"], "stdout=true")
        ))
        .await;
    assert_eq!(status, 400);
    env.runtime
        .kill(&id, nix::sys::signal::Signal::SIGKILL, true)
        .expect("kill");
    env.wait(&id);
    let (status, body) = agent
        .get(&format!(
            "/exec/{NAMESPACE}/{POD}/{CONTAINER}?{}",
            query(&["ls"], "stdout=true")
        ))
        .await;
    assert_eq!(
        (status, body.as_str()),
        (404, "container not found (\"app\")")
    );
}

// ---------------------------------------------------------------------------------------------

type TestFn = fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

fn main() {
    if let Some(code) = skiff_runtime::reexec::dispatch() {
        std::process::exit(code);
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let tests: &[(&str, TestFn)] = &[
        ("logs_read_as_the_kubelet_serves_them", || {
            Box::pin(logs_read_as_the_kubelet_serves_them())
        }),
        ("previous_without_a_restart_is_refused", || {
            Box::pin(previous_without_a_restart_is_refused())
        }),
        ("exec_streams_and_exit_codes", || {
            Box::pin(exec_streams_and_exit_codes())
        }),
    ];
    if !require() {
        return;
    }
    let mut failed = Vec::new();
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        eprintln!("test {name} ...");
        let result = std::panic::catch_unwind(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(test())
        });
        match result {
            Ok(()) => eprintln!("test {name} ... ok"),
            Err(_) => {
                eprintln!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
    }
    if !failed.is_empty() {
        eprintln!("failed: {failed:?}");
        std::process::exit(1);
    }
}
