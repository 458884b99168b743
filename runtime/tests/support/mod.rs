//! Test support for the image tests: a throwaway local registry (`docker-registry` with its own
//! config on a free loopback port, killed by PID on drop), pushes with skopeo, and the busybox
//! fixture image (scripts/fixtures/busybox-image.sh).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Whether the tests may run: the tools are on PATH and we are root. When something is missing
/// the test is skipped with a message, unless `CI=true`, where that is a failure.
pub fn require(tools: &[&str]) -> bool {
    let mut missing: Vec<String> = tools
        .iter()
        .filter(|t| which(t).is_none())
        .map(|t| t.to_string())
        .collect();
    if !nix::unistd::Uid::effective().is_root() {
        missing.push("root privileges".to_string());
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

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// The busybox OCI layout (tag `busybox`), built once per target dir and shared read-only.
pub fn busybox_layout() -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox-oci");
    let status = Command::new("bash")
        .arg(repo_root().join("scripts/fixtures/busybox-image.sh"))
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .expect("run busybox-image.sh");
    assert!(status.success(), "busybox-image.sh failed: {status}");
    out
}

/// A free loopback port (nothing listens on it once this returns).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Manifest format for [`Registry::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Oci,
    V2s2,
}

/// A `docker-registry serve` on 127.0.0.1:<free port> with filesystem storage in a temp dir.
pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    /// `user:password` when the registry demands basic auth (htpasswd), or the push user the
    /// token server grants `push` to.
    creds: Option<String>,
    /// The token server when the registry uses `auth: token`.
    token: Option<TokenServer>,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_inner(None)
    }

    /// A registry that answers 401 without `user`/`password` (htpasswd basic auth; the bcrypt
    /// hash comes from Python's crypt, i.e. libxcrypt).
    pub fn start_with_auth(user: &str, password: &str) -> Registry {
        Registry::start_inner(Some((user, password)))
    }

    /// A registry with Docker Hub style bearer-token auth (`auth: token`): it answers 401 with
    /// `WWW-Authenticate: Bearer realm=…,service=…,scope=…`, and the token server
    /// (tests/fixtures/token_server.py) hands out RS256 JWTs. Anonymous callers get `pull`
    /// (nothing for `forbidden/…`, a 401 from the token server for `refused/…`);
    /// [`TOKEN_PUSH_USER`]:[`TOKEN_PUSH_PASSWORD`] gets `pull,push`, which [`Registry::push`] uses.
    pub fn start_with_token_auth() -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = TokenServer::start(&dir.path().join("token"));
        let auth_config = format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
            token.port,
            token.cert().display()
        );
        Registry::launch(
            dir,
            "info",
            &auth_config,
            Some(format!("{TOKEN_PUSH_USER}:{TOKEN_PUSH_PASSWORD}")),
            Some(token),
        )
    }

    fn start_inner(auth: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let auth_config = match auth {
            None => String::new(),
            Some((user, password)) => {
                let out = Command::new("python3")
                    .args([
                        "-W",
                        "ignore",
                        "-c",
                        "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
                        password,
                    ])
                    .output()
                    .expect("python3 for a bcrypt hash");
                assert!(out.status.success(), "bcrypt: {out:?}");
                // Go's bcrypt reads the "2a" prefix; libxcrypt writes "2b" (same algorithm).
                let hash = String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .replacen("$2b$", "$2a$", 1);
                let htpasswd = dir.path().join("htpasswd");
                std::fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                    htpasswd.display()
                )
            }
        };
        let creds = auth.map(|(u, p)| format!("{u}:{p}"));
        Registry::launch(dir, "warn", &auth_config, creds, None)
    }

    /// Starts `docker-registry serve` in `dir` (retrying on another port if it does not come
    /// up); `token` is owned (and killed) by the returned registry.
    fn launch(
        mut dir: tempfile::TempDir,
        log_level: &str,
        auth_config: &str,
        creds: Option<String>,
        mut token: Option<TokenServer>,
    ) -> Registry {
        let storage = dir.path().join("storage");
        std::fs::create_dir(&storage).expect("mkdir storage");
        let mut last_err = String::new();
        for _ in 0..5 {
            let port = free_port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: {log_level}\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_config}",
                    storage.display()
                ),
            )
            .expect("write registry config");
            let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("spawn docker-registry");
            // Owned by a Registry at once, so a panic below still kills it.
            let mut reg = Registry {
                child,
                dir,
                port,
                creds: creds.clone(),
                token: token.take(),
            };
            if reg.wait_ready(Duration::from_secs(15)) {
                return reg;
            }
            last_err = reg.log();
            reg.kill();
            token = reg.token.take();
            dir = reg.take_dir();
        }
        panic!("docker-registry did not come up: {last_err}");
    }

    /// Moves the temp dir out (for a retry on another port); `self` is already killed.
    fn take_dir(mut self) -> tempfile::TempDir {
        let placeholder = tempfile::tempdir().expect("tempdir");
        std::mem::replace(&mut self.dir, placeholder)
    }

    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // By PID: only the process we started.
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }

    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Some(status) = http_status(self.port, "/v2/")
                && (status == 200 || status == 401)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's storage root (`docker/registry/v2/...` below it).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// Path of a blob's data file inside the registry storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    pub fn log(&self) -> String {
        let mut log =
            std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default();
        if let Some(token) = &self.token {
            log.push_str("\n--- token server ---\n");
            log.push_str(&token.log());
        }
        log
    }

    /// The requests the token server answered, in order (empty without one); see
    /// [`TokenRequest`].
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.token
            .as_ref()
            .map(TokenServer::requests)
            .unwrap_or_default()
    }

    /// Pushes `layout:src_tag` to `dest` (`name:tag`) with skopeo; returns the manifest digest.
    pub fn push(
        &self,
        layout: &Path,
        src_tag: &str,
        dest: &str,
        format: Format,
        all: bool,
    ) -> String {
        let digest_file = self
            .dir
            .path()
            .join(format!("digest-{}", dest.replace(['/', ':'], "_")));
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--quiet", "--dest-tls-verify=false", "--digestfile"])
            .arg(&digest_file);
        if format == Format::V2s2 {
            cmd.args(["--format", "v2s2"]);
        }
        if all {
            cmd.arg("--all");
        }
        if let Some(creds) = &self.creds {
            cmd.args(["--dest-creds", creds]);
        }
        cmd.arg(format!("oci:{}:{src_tag}", layout.display()))
            .arg(format!("docker://{}/{dest}", self.host()));
        let out = cmd.output().expect("run skopeo");
        assert!(
            out.status.success(),
            "skopeo copy failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        std::fs::read_to_string(&digest_file)
            .expect("digest file")
            .trim()
            .to_string()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
        // The token server next, before its files (in `dir`) go.
        drop(self.token.take());
    }
}

/// The `service` (JWT `aud`) and `issuer` (`iss`) of [`Registry::start_with_token_auth`].
pub const TOKEN_SERVICE: &str = "skiff-test-registry";
pub const TOKEN_ISSUER: &str = "skiff-test-issuer";
/// The user the token server grants `pull,push` (skopeo pushes as this user).
pub const TOKEN_PUSH_USER: &str = "skiff-pusher";
pub const TOKEN_PUSH_PASSWORD: &str = "push-s3cret";

/// One request to the token server, from its `requests.log`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct TokenRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The `scope` parameters, e.g. `repository:library/busybox:pull`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// `none` (anonymous), `basic` (the push user) or `bad` (wrong credentials).
    #[serde(default)]
    pub auth: String,
    pub status: u16,
    /// The `access` claim of the issued token (200 only).
    #[serde(default)]
    pub granted: Option<serde_json::Value>,
}

/// tests/fixtures/token_server.py on 127.0.0.1:<port it picked>, with its RSA key and
/// self-signed certificate (the registry's `rootcertbundle`) in `dir`; killed by PID on drop.
pub struct TokenServer {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl TokenServer {
    /// `dir` is created (it lives inside the registry's temp dir).
    fn start(dir: &Path) -> TokenServer {
        std::fs::create_dir_all(dir).expect("mkdir token dir");
        let out = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
            .args(["-subj", "/CN=skiff-test-token", "-days", "1", "-keyout"])
            .arg(dir.join("key.pem"))
            .arg("-out")
            .arg(dir.join("cert.pem"))
            .stdin(Stdio::null())
            .output()
            .expect("run openssl req");
        assert!(
            out.status.success(),
            "openssl req: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let log = std::fs::File::create(dir.join("server.log")).expect("token server log");
        let child = Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/token_server.py"))
            .arg("--dir")
            .arg(dir)
            .args(["--issuer", TOKEN_ISSUER, "--service", TOKEN_SERVICE])
            .args(["--user", TOKEN_PUSH_USER, "--password", TOKEN_PUSH_PASSWORD])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn python3 token_server.py");
        // Owned at once, so a panic below still kills it.
        let mut server = TokenServer {
            child,
            dir: dir.to_path_buf(),
            port: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            // The server writes its port (by rename, so never half) once it listens.
            if let Ok(p) = std::fs::read_to_string(dir.join("port")) {
                server.port = p.trim().parse().expect("token server port");
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("token server exited ({status}): {}", server.log());
            }
            assert!(
                Instant::now() < deadline,
                "token server did not come up: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
        server
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The certificate whose key signs the tokens.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }

    /// The server's stderr (Python's access log and tracebacks).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        std::fs::read_to_string(self.dir.join("requests.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // By PID: only the process we started.
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// Status code of `GET path` on 127.0.0.1:port, `None` when nothing answers.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    let head = String::from_utf8_lossy(&buf[..n]);
    head.split_whitespace().nth(1)?.parse().ok()
}

/// A tiny process-wide lock for tests that must not overlap (none so far needs it, but tests
/// that count mounts use it).
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| Mutex::new(()))
        .lock()
        .unwrap_or_else(|e| e.into_inner())
}
