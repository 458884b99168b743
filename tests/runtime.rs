//! Whole-runtime integration tests: real containers (namespaces, cgroups, overlay root
//! filesystems, seccomp, capabilities) started through `skiff_runtime`'s library API and through
//! `skiff runtime …`, as root.
//!
//! Every test works in its own temp directory (state dir, data dir with a freshly imported busybox
//! image, logs, bundles), gives its containers cgroups named `skiff-test-<unique>…`, and cleans up
//! on drop even when an assertion fails: containers are force-deleted, leftover mounts under the
//! temp dir unmounted, leftover cgroup directories removed. Tests that delete a container assert
//! that its state dir, cgroup dirs, overlay mount and writable layer are gone.
//!
//! The root package has no `nix`/`libc`/`oci-spec` dependency, so signals come from
//! `skiff_runtime::cli::parse_signal`, OCI types are reached through `CreateOptions::spec` (and
//! built from JSON where needed), and processes are inspected through /proc.
//!
//! Without root (or the `umoci`/`busybox` fixture tools) the tests are skipped, unless `CI=true`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use skiff_runtime::cli::parse_signal;
use skiff_runtime::container::{
    ContainerStatus, CreateOptions, ExecOptions, ExitStatus, Runtime, RuntimeConfig, RuntimeError,
    StdioConfig,
};
use skiff_runtime::image::Image;
use skiff_runtime::sandbox::SandboxConfig;
use skiff_runtime::spec;

const SKIFF: &str = env!("CARGO_BIN_EXE_skiff");
const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------------------------
// Environment checks and small helpers.

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        .unwrap_or(false)
}

/// Whether the tests may run: root and the fixture tools. Skips with a message when not, unless
/// `CI=true`, where that is a failure.
fn require(tools: &[&str]) -> bool {
    let mut missing: Vec<String> = tools
        .iter()
        .filter(|t| which(t).is_none())
        .map(|t| t.to_string())
        .collect();
    if !is_root() {
        missing.push("root privileges".into());
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

/// The busybox OCI layout (scripts/fixtures/busybox-image.sh), built once per target dir.
fn busybox_layout() -> PathBuf {
    static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
    LAYOUT
        .get_or_init(|| {
            let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox-oci");
            let script =
                Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fixtures/busybox-image.sh");
            let status = Command::new("bash")
                .arg(script)
                .arg(&out)
                .stdout(Stdio::null())
                .status()
                .expect("run busybox-image.sh");
            assert!(status.success(), "busybox-image.sh failed: {status}");
            out
        })
        .clone()
}

/// A tag unique to this process and call, for ids, cgroups and temp dirs.
fn unique(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{name}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn poll<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The process exists and is not a zombie.
fn alive(pid: i32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 2..].split(' ').next())
        .unwrap_or("");
    !matches!(state, "Z" | "X" | "")
}

/// Mount points at or below `dir`, from /proc/self/mountinfo.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// Every v1/v2 hierarchy mounted under /sys/fs/cgroup.
fn cgroup_roots() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = fs::read_dir("/sys/fs/cgroup")
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        roots = vec![PathBuf::from("/sys/fs/cgroup")];
    }
    roots.retain(|r| r.is_dir());
    roots
}

/// The cgroup directory of `path` for a v1 controller (or the v2 directory).
fn cgroup_dir(controller: &str, path: &str) -> PathBuf {
    let v1 = Path::new("/sys/fs/cgroup").join(controller);
    if v1.is_dir() {
        v1.join(path)
    } else {
        Path::new("/sys/fs/cgroup").join(path)
    }
}

fn cgroup_file(controller: &str, path: &str, file: &str) -> String {
    let p = cgroup_dir(controller, path).join(file);
    fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
        .trim()
        .to_string()
}

fn cgroup_exists_anywhere(path: &str) -> Vec<PathBuf> {
    cgroup_roots()
        .into_iter()
        .map(|r| r.join(path))
        .filter(|p| p.exists())
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

/// `key=value` lines into a map.
fn key_values(lines: &[String]) -> BTreeMap<String, String> {
    lines
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// `2024-01-02T03:04:05.123456789Z`-style (RFC 3339, optional fraction of up to 9 digits).
fn is_rfc3339_nano(ts: &str) -> bool {
    let b = ts.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut rest = &ts[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z" || (rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')))
}

fn output_text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// The per-test environment.

struct Env {
    tag: String,
    runtime: Runtime,
    image: Image,
    /// Cgroup paths this test made (or had made), removed on drop if still there.
    cgroups: Mutex<Vec<String>>,
    /// Last: removed after everything in it is unmounted.
    tmp: tempfile::TempDir,
}

impl Env {
    fn new(name: &str) -> Option<Env> {
        if !require(&["umoci", "busybox"]) {
            return None;
        }
        let tag = unique(name);
        let tmp = tempfile::Builder::new()
            .prefix(&format!("skiff-rt-{tag}-"))
            .tempdir_in("/tmp")
            .expect("tempdir");
        let runtime = Runtime::new(RuntimeConfig {
            state_dir: tmp.path().join("state"),
            data_dir: tmp.path().join("data"),
            helper_binary: PathBuf::from(SKIFF),
        });
        let images = runtime
            .images()
            .expect("image store")
            .import(&busybox_layout())
            .expect("import busybox");
        let image = images.into_iter().next().expect("one image");
        Some(Env {
            tag,
            runtime,
            image,
            cgroups: Mutex::new(Vec::new()),
            tmp,
        })
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    fn state_dir(&self) -> PathBuf {
        self.runtime.config().state_dir.clone()
    }

    fn data_dir(&self) -> PathBuf {
        self.runtime.config().data_dir.clone()
    }

    /// The unique cgroup path of container `id` (recorded for cleanup).
    fn cgroup(&self, id: &str) -> String {
        let path = format!("skiff-test-{}-{id}", self.tag);
        let mut cgroups = self.cgroups.lock().unwrap_or_else(|e| e.into_inner());
        if !cgroups.contains(&path) {
            cgroups.push(path.clone());
        }
        path
    }

    fn log_path(&self, id: &str) -> PathBuf {
        self.path().join("logs").join(format!("{id}.log"))
    }

    /// Options for a container of the busybox image running `args`: an overlay rootfs, the
    /// default spec, a unique cgroup, stdout/stderr into a CRI log.
    fn options(&self, id: &str, args: &[&str]) -> CreateOptions {
        let prepared = self
            .runtime
            .prepare_image_rootfs(id, &self.image)
            .expect("prepare rootfs");
        let mut spec = spec::default_spec(&prepared.rootfs, strings(args));
        let cgroup = self.cgroup(id);
        spec.linux_mut()
            .as_mut()
            .expect("linux")
            .set_cgroups_path(Some(PathBuf::from(cgroup)));
        let mut options = CreateOptions::new(spec, self.path());
        options.stdio = StdioConfig::Log {
            path: self.log_path(id),
            max_size_bytes: 1 << 20,
            max_files: 2,
        };
        options.managed_dir = Some(prepared.managed_dir);
        options.image_layers = prepared.image_layers;
        options
    }

    /// Creates, starts and waits for a container.
    fn run(&self, id: &str, options: CreateOptions) -> ExitStatus {
        self.runtime
            .create_and_start(id, options)
            .unwrap_or_else(|e| panic!("create_and_start {id}: {e}"));
        self.wait(id)
    }

    fn wait(&self, id: &str) -> ExitStatus {
        self.runtime
            .wait_timeout(id, Some(WAIT))
            .unwrap_or_else(|e| panic!("wait {id}: {e}\nlog:\n{}", self.raw_log(id)))
    }

    fn raw_log(&self, id: &str) -> String {
        fs::read_to_string(self.log_path(id)).unwrap_or_default()
    }

    /// The log's records as (stream, content), each line checked to be in the CRI format.
    fn log(&self, id: &str) -> Vec<(String, String)> {
        self.raw_log(id)
            .lines()
            .map(|line| {
                let parts: Vec<&str> = line.splitn(4, ' ').collect();
                assert_eq!(parts.len(), 4, "CRI log line {line:?}");
                assert!(is_rfc3339_nano(parts[0]), "timestamp of {line:?}");
                assert!(
                    parts[1] == "stdout" || parts[1] == "stderr",
                    "stream of {line:?}"
                );
                assert!(parts[2] == "F" || parts[2] == "P", "tag of {line:?}");
                (parts[1].to_string(), parts[3].to_string())
            })
            .collect()
    }

    fn stdout(&self, id: &str) -> Vec<String> {
        self.log(id)
            .into_iter()
            .filter(|(s, _)| s == "stdout")
            .map(|(_, c)| c)
            .collect()
    }

    fn exec(&self, id: &str, options: ExecOptions) -> Output {
        let mut cmd = self
            .runtime
            .exec(id, options)
            .unwrap_or_else(|e| panic!("exec in {id}: {e}"));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("run exec helper")
    }

    fn exec_args(&self, id: &str, args: &[&str]) -> Output {
        self.exec(
            id,
            ExecOptions {
                args: strings(args),
                ..Default::default()
            },
        )
    }

    fn kill(&self, id: &str, signal: &str) {
        let signal = parse_signal(signal).expect("signal");
        self.runtime
            .kill(id, signal, false)
            .unwrap_or_else(|e| panic!("kill {id}: {e}"));
    }

    /// Deletes `id` and asserts that nothing of it is left.
    fn delete_and_check(&self, id: &str, force: bool) {
        let cgroup = self.cgroup(id);
        self.runtime
            .delete(id, force)
            .unwrap_or_else(|e| panic!("delete {id}: {e}"));
        self.assert_gone(id, &cgroup);
    }

    fn assert_gone(&self, id: &str, cgroup: &str) {
        assert!(
            !self.state_dir().join(id).exists(),
            "state dir of {id} is left"
        );
        assert!(
            matches!(self.runtime.state(id), Err(RuntimeError::NotFound(_))),
            "{id} still has a state"
        );
        let left = cgroup_exists_anywhere(cgroup);
        assert!(left.is_empty(), "cgroup dirs left: {left:?}");
        let managed = self.data_dir().join("containers").join(id);
        let mounts = mounts_under(&managed);
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        assert!(!managed.exists(), "{} is left", managed.display());
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
        // Rootfs mounts of containers that were never created (or whose delete failed).
        let mut mounts = mounts_under(self.tmp.path());
        mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        let cgroups = self
            .cgroups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for cgroup in cgroups.iter().rev() {
            for dir in cgroup_exists_anywhere(cgroup) {
                remove_cgroup_tree(&dir);
            }
        }
    }
}

/// Edits an OCI spec as JSON (for fields without an editor in `skiff_runtime::spec`).
fn edit_spec(options: &mut CreateOptions, f: impl FnOnce(&mut Value)) {
    let mut value = serde_json::to_value(&options.spec).expect("spec to json");
    f(&mut value);
    options.spec = serde_json::from_value(value).expect("json to spec");
}

fn set_resources(options: &mut CreateOptions, resources: Value) {
    spec::set_resources(
        &mut options.spec,
        serde_json::from_value(resources).expect("resources"),
    );
}

fn remove_pid_namespace(options: &mut CreateOptions) {
    edit_spec(options, |v| {
        if let Some(nss) = v["linux"]["namespaces"].as_array_mut() {
            nss.retain(|ns| ns["type"] != "pid");
        }
    });
}

fn rootfs_of(options: &CreateOptions) -> PathBuf {
    options.spec.root().as_ref().expect("root").path().clone()
}

// ---------------------------------------------------------------------------------------------
// 1. Lifecycle through the library.

#[test]
fn lifecycle_create_start_wait_delete() {
    let Some(env) = Env::new("life") else { return };
    let id = "life";
    let options = env.options(
        id,
        &[
            "sh",
            "-c",
            "echo hello; echo oops >&2; while [ ! -e /tmp/go ]; do sleep 0.02; done; exit 3",
        ],
    );
    let rootfs = rootfs_of(&options);
    let cgroup = env.cgroup(id);
    assert!(
        !mounts_under(&rootfs).is_empty(),
        "the image rootfs is an overlay mount"
    );

    let created = env.runtime.create(id, options).expect("create");
    assert_eq!(created.status, ContainerStatus::Created);
    let pid = created.pid();
    assert!(pid > 0, "created container has a pid");
    assert!(alive(pid));
    // The init waits in its cgroup for start.
    let procs = cgroup_file("memory", &cgroup, "cgroup.procs");
    assert!(
        procs.lines().any(|p| p == pid.to_string()),
        "pid {pid} in cgroup.procs {procs:?}"
    );
    assert!(cgroup_dir("pids", &cgroup).is_dir());
    assert_eq!(
        env.runtime.state(id).expect("state").status,
        ContainerStatus::Created
    );
    assert!(
        !env.log_path(id).exists() || env.raw_log(id).is_empty(),
        "nothing runs before start"
    );

    env.runtime.start(id).expect("start");
    let running = env.runtime.state(id).expect("state");
    assert_eq!(running.status, ContainerStatus::Running);
    assert_eq!(running.pid(), pid);
    let listed = env.runtime.list().expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id(), id);

    fs::write(rootfs.join("tmp/go"), "").expect("release the container");
    let exit = env.wait(id);
    assert_eq!(exit.code, 3);
    assert_eq!(exit.signal, None);
    assert!(!exit.oom_killed);
    assert_eq!(exit.reason(), "Error");
    let stopped = env.runtime.state(id).expect("state");
    assert_eq!(stopped.status, ContainerStatus::Stopped);
    assert_eq!(stopped.exit.as_ref().map(|e| e.code), Some(3));
    assert!(!alive(pid));

    let log = env.log(id);
    assert!(
        log.contains(&("stdout".into(), "hello".into())),
        "log {log:?}"
    );
    assert!(
        log.contains(&("stderr".into(), "oops".into())),
        "log {log:?}"
    );
    assert!(
        env.raw_log(id)
            .lines()
            .any(|l| l.ends_with(" stdout F hello"))
    );

    env.delete_and_check(id, false);
    assert!(mounts_under(&rootfs).is_empty());
}

// ---------------------------------------------------------------------------------------------
// 2. What the process sees inside.

#[test]
fn inside_the_container() {
    let Some(env) = Env::new("inside") else {
        return;
    };
    let id = "inside";
    let script = r#"
        echo "host=$(hostname)"
        echo "pid=$$"
        echo "net=$(ls /sys/class/net | tr '\n' ' ')"
        echo "netdev=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ' ')"
        if [ -e /usr ] || [ -e /lib ] || [ -e /etc/os-release ]; then echo rootfs=host; else echo rootfs=image; fi
        echo "passwd=$(cat /etc/passwd | wc -l)"
        if mount -t tmpfs none /tmp 2>/dev/null; then echo mount=allowed; else echo mount=denied; fi
        if echo 1 2>/dev/null >/proc/sys/net/ipv4/ip_forward; then echo procsys=writable; else echo procsys=refused; fi
        echo "procsysopts=$(awk '$5 == "/proc/sys" {print $6}' /proc/self/mountinfo)"
        echo "capeff=$(awk '/^CapEff/ {print $2}' /proc/self/status)"
        echo "timer_list=$(cat /proc/timer_list 2>&1 | wc -c)"
        echo "masked=$(awk '$5 == "/proc/timer_list" || $5 == "/proc/keys" {print $5}' /proc/self/mountinfo | tr '\n' ' ')"
        for d in null zero full random urandom tty; do [ -c /dev/$d ] || echo "missing-dev=$d"; done
        echo "devnull=$(echo discard >/dev/null && echo ok)"
    "#;
    let mut options = env.options(id, &["sh", "-c", script]);
    options.spec.set_hostname(Some("inside-host".into()));
    let exit = env.run(id, options);
    assert_eq!(exit.code, 0, "log: {}", env.raw_log(id));
    let kv = key_values(&env.stdout(id));
    assert_eq!(kv["host"], "inside-host");
    assert_eq!(kv["pid"], "1");
    assert_eq!(kv["net"], "lo", "only loopback in a new network namespace");
    assert_eq!(kv["netdev"], "lo");
    assert_eq!(kv["rootfs"], "image");
    assert_eq!(kv["passwd"], "2", "the image's /etc/passwd");
    assert_eq!(kv["mount"], "denied", "no CAP_SYS_ADMIN by default");
    assert_eq!(kv["procsys"], "refused");
    assert!(
        kv["procsysopts"].split(',').any(|o| o == "ro"),
        "/proc/sys mount options {:?}",
        kv["procsysopts"]
    );
    // Docker's 14 default capabilities: CAP_SYS_ADMIN (bit 21) is not among them.
    let capeff = u64::from_str_radix(&kv["capeff"], 16).expect("CapEff hex");
    assert_eq!(capeff.count_ones(), 14, "CapEff {capeff:x}");
    assert_eq!(capeff & (1 << 21), 0);
    assert_eq!(kv["timer_list"], "0", "/proc/timer_list is masked");
    assert_eq!(kv["masked"], "/proc/keys /proc/timer_list");
    assert!(!kv.contains_key("missing-dev"), "default devices: {kv:?}");
    assert_eq!(kv["devnull"], "ok");
    env.delete_and_check(id, false);
}

// ---------------------------------------------------------------------------------------------
// 3. Resources.

#[test]
fn memory_limit_oom_kills() {
    let Some(env) = Env::new("oom") else { return };
    let id = "oom";
    let mut options = env.options(id, &["tail", "/dev/zero"]);
    set_resources(&mut options, json!({"memory": {"limit": 16 << 20}}));
    let exit = env.run(id, options);
    assert_eq!(exit.code, 137, "{exit:?}");
    assert_eq!(exit.signal, Some(9));
    assert!(exit.oom_killed, "{exit:?}");
    assert_eq!(exit.reason(), "OOMKilled");
    env.delete_and_check(id, false);
}

#[test]
fn cgroup_limits_stats_and_update() {
    let Some(env) = Env::new("limits") else {
        return;
    };
    let id = "limits";
    let cgroup = env.cgroup(id);
    let mut options = env.options(id, &["sleep", "30"]);
    set_resources(
        &mut options,
        json!({
            "memory": {"limit": 16 << 20},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000},
            "pids": {"limit": 20}
        }),
    );
    env.runtime.create_and_start(id, options).expect("create");
    assert_eq!(
        cgroup_file("memory", &cgroup, "memory.limit_in_bytes"),
        (16u64 << 20).to_string()
    );
    assert_eq!(cgroup_file("cpu", &cgroup, "cpu.cfs_quota_us"), "50000");
    assert_eq!(cgroup_file("cpu", &cgroup, "cpu.cfs_period_us"), "100000");
    assert_eq!(cgroup_file("cpu", &cgroup, "cpu.shares"), "512");
    assert_eq!(cgroup_file("pids", &cgroup, "pids.max"), "20");

    let stats = env.runtime.stats(id).expect("stats");
    assert!(stats.memory_usage_bytes > 0, "{stats:?}");
    assert_eq!(stats.memory_limit_bytes, 16 << 20);
    assert!(stats.pids_current >= 1, "{stats:?}");

    env.runtime
        .update_resources(
            id,
            &serde_json::from_value(json!({"memory": {"limit": 32 << 20}, "pids": {"limit": 30}}))
                .expect("resources"),
        )
        .expect("update_resources");
    assert_eq!(
        cgroup_file("memory", &cgroup, "memory.limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    assert_eq!(cgroup_file("pids", &cgroup, "pids.max"), "30");
    assert_eq!(
        env.runtime.stats(id).expect("stats").memory_limit_bytes,
        32 << 20
    );
    // Still the same process, still running.
    assert_eq!(
        env.runtime.state(id).expect("state").status,
        ContainerStatus::Running
    );
    env.kill(id, "KILL");
    assert_eq!(env.wait(id).code, 137);
    env.delete_and_check(id, false);
}

#[test]
fn pids_limit_caps_forks() {
    let Some(env) = Env::new("pids") else { return };
    let id = "pids";
    let cgroup = env.cgroup(id);
    let mut options = env.options(id, &["sleep", "30"]);
    set_resources(&mut options, json!({"pids": {"limit": 8}}));
    env.runtime.create_and_start(id, options).expect("create");
    assert_eq!(cgroup_file("pids", &cgroup, "pids.max"), "8");
    // A fork loop (through exec, which joins the cgroup): busybox sh gives up at the first
    // refused fork.
    let out = env.exec_args(
        id,
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 20 ]; do sleep 30 </dev/null >/dev/null 2>&1 & i=$((i+1)); done; echo all-forked",
        ],
    );
    let (stdout, stderr) = output_text(&out);
    assert_ne!(out.status.code(), Some(0), "{stdout} {stderr}");
    assert!(!stdout.contains("all-forked"), "{stdout}");
    assert!(
        stderr.contains("fork"),
        "sh reports the refused fork: {stderr}"
    );
    let current: u64 = cgroup_file("pids", &cgroup, "pids.current")
        .parse()
        .expect("pids.current");
    assert!(
        (2..=8).contains(&current),
        "pids.current {current}: some sleeps, never above the limit; {stderr}"
    );
    let procs = cgroup_file("pids", &cgroup, "cgroup.procs");
    assert!(procs.lines().count() <= 8, "{procs}");
    let events = cgroup_file("pids", &cgroup, "pids.events");
    let refused: u64 = events
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(refused > 0, "forks were refused: pids.events {events:?}");
    // kill --all reaches the orphaned sleeps too; then a plain delete finds nothing running.
    let pids: Vec<i32> = procs.lines().filter_map(|p| p.parse().ok()).collect();
    env.runtime
        .kill(id, parse_signal("KILL").expect("sig"), true)
        .expect("kill all");
    assert_eq!(env.wait(id).code, 137);
    poll("every process of the cgroup to end", WAIT, || {
        pids.iter().all(|p| !alive(*p)).then_some(())
    });
    env.delete_and_check(id, false);
}

// ---------------------------------------------------------------------------------------------
// 4. Exit codes.

#[test]
fn exit_codes_and_signals() {
    let Some(env) = Env::new("exit") else { return };
    let zero = env.options("zero", &["sh", "-c", "exit 0"]);
    let forty_two = env.options("fortytwo", &["sh", "-c", "exit 42"]);
    let sigkill = env.options("sigkill", &["sleep", "30"]);
    // An init of a PID namespace ignores SIGTERM without a handler: run this one in the host's.
    let mut sigterm = env.options("sigterm", &["sleep", "30"]);
    remove_pid_namespace(&mut sigterm);
    for (id, options) in [
        ("zero", zero),
        ("fortytwo", forty_two),
        ("sigkill", sigkill),
        ("sigterm", sigterm),
    ] {
        env.runtime
            .create_and_start(id, options)
            .unwrap_or_else(|e| panic!("{id}: {e}"));
    }
    env.kill("sigkill", "KILL");
    env.kill("sigterm", "TERM");

    let e = env.wait("zero");
    assert_eq!((e.code, e.signal, e.reason()), (0, None, "Completed"));
    let e = env.wait("fortytwo");
    assert_eq!((e.code, e.signal, e.reason()), (42, None, "Error"));
    let e = env.wait("sigkill");
    assert_eq!((e.code, e.signal, e.oom_killed), (137, Some(9), false));
    // A created container that never ran is deleted without force, as with runc.
    let never = env.options("never", &["sleep", "30"]);
    let state = env.runtime.create("never", never).expect("create never");
    env.delete_and_check("never", false);
    assert!(!alive(state.pid()), "the waiting init is gone");
    let e = env.wait("sigterm");
    assert_eq!((e.code, e.signal, e.oom_killed), (143, Some(15), false));
    // Killing a stopped container is refused.
    assert!(matches!(
        env.runtime
            .kill("zero", parse_signal("KILL").expect("sig"), false),
        Err(RuntimeError::InvalidState { .. })
    ));
    for id in ["zero", "fortytwo", "sigkill", "sigterm"] {
        env.delete_and_check(id, false);
    }
}

/// The node agent waits without blocking its async runtime.
#[tokio::test]
async fn wait_async_returns_the_exit_status() {
    let Some(env) = Env::new("async") else { return };
    let id = "async";
    let options = env.options(id, &["sh", "-c", "sleep 0.3; exit 9"]);
    env.runtime.create_and_start(id, options).expect("create");
    let exit = tokio::time::timeout(WAIT, env.runtime.wait_async(id))
        .await
        .expect("wait_async in time")
        .expect("wait_async");
    assert_eq!((exit.code, exit.signal), (9, None));
    // Again, once stopped: at once.
    let again = env.runtime.wait_async(id).await.expect("wait_async");
    assert_eq!(again, exit);
    env.delete_and_check(id, false);
}

// ---------------------------------------------------------------------------------------------
// 5. Exec.

#[test]
fn exec_into_a_running_container() {
    let Some(env) = Env::new("exec") else { return };
    let id = "exec";
    let mut options = env.options(id, &["sleep", "30"]);
    options.spec.set_hostname(Some("exec-host".into()));
    let state = env.runtime.create_and_start(id, options).expect("create");

    let out = env.exec_args(id, &["sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(output_text(&out), ("out\n".into(), "err\n".into()));

    let out = env.exec_args(id, &["cat", "/proc/1/cmdline"]);
    assert_eq!(out.stdout, b"sleep\x0030\x00", "{out:?}");
    let out = env.exec_args(id, &["hostname"]);
    assert_eq!(output_text(&out).0, "exec-host\n");
    let out = env.exec_args(
        id,
        &["sh", "-c", "[ -e /usr ] || [ -e /lib ] || echo image"],
    );
    assert_eq!(output_text(&out).0, "image\n");
    // Same PID and network namespaces as the container's init.
    for ns in ["pid", "net", "mnt"] {
        let out = env.exec_args(id, &["readlink", &format!("/proc/self/ns/{ns}")]);
        let theirs = fs::read_link(format!("/proc/{}/ns/{ns}", state.pid())).expect("readlink");
        assert_eq!(
            output_text(&out).0.trim(),
            theirs.to_string_lossy(),
            "{ns} namespace"
        );
    }
    // The exec'd process sits in the container's cgroup.
    let out = env.exec_args(
        id,
        &["sh", "-c", "grep -E ':(memory|pids):' /proc/self/cgroup"],
    );
    let cgroup = env.cgroup(id);
    let text = output_text(&out).0;
    assert!(
        text.lines().count() == 2 && text.lines().all(|l| l.ends_with(&format!(":/{cgroup}"))),
        "exec cgroups: {text:?}"
    );

    let out = env.exec(
        id,
        ExecOptions {
            args: strings(&["sh", "-c", "id -u; id -g; pwd; echo $FOO"]),
            uid: Some(1000),
            gid: Some(1000),
            cwd: Some("/tmp".into()),
            env: vec!["FOO=bar".into()],
            ..Default::default()
        },
    );
    assert_eq!(output_text(&out).0, "1000\n1000\n/tmp\nbar\n", "{out:?}");

    let out = env.exec_args(id, &["no-such-program"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        output_text(&out)
            .1
            .contains("executable file not found in $PATH"),
        "{out:?}"
    );

    env.kill(id, "KILL");
    env.wait(id);
    let err = env
        .runtime
        .exec(
            id,
            ExecOptions {
                args: strings(&["true"]),
                ..Default::default()
            },
        )
        .expect_err("exec into a stopped container fails");
    assert!(
        matches!(
            err,
            RuntimeError::InvalidState {
                status: ContainerStatus::Stopped,
                ..
            }
        ),
        "{err}"
    );
    env.delete_and_check(id, false);
}

// ---------------------------------------------------------------------------------------------
// 6. Bind mounts and a read-only root.

#[test]
fn bind_mounts_and_readonly_root() {
    let Some(env) = Env::new("mounts") else {
        return;
    };
    let id = "mounts";
    let rw = env.path().join("rw");
    let ro = env.path().join("ro");
    fs::create_dir(&rw).expect("mkdir");
    fs::create_dir(&ro).expect("mkdir");
    fs::write(rw.join("f"), "host-rw\n").expect("write");
    fs::write(ro.join("f"), "host-ro\n").expect("write");
    let script = r#"
        echo "rw-read=$(cat /rw/f)"
        if echo changed >/rw/f; then echo rw-write=ok; else echo rw-write=refused; fi
        echo "ro-read=$(cat /ro/f)"
        if echo changed 2>/dev/null >/ro/f; then echo ro-write=ok; else echo ro-write=refused; fi
        if touch /x 2>/dev/null; then echo root-write=ok; else echo root-write=refused; fi
        if echo shm >/dev/shm/t; then echo shm-write=ok; else echo shm-write=refused; fi
    "#;
    let mut options = env.options(id, &["sh", "-c", script]);
    spec::add_bind_mount(&mut options.spec, &rw, Path::new("/rw"), false);
    spec::add_bind_mount(&mut options.spec, &ro, Path::new("/ro"), true);
    options
        .spec
        .root_mut()
        .as_mut()
        .expect("root")
        .set_readonly(Some(true));
    let rootfs = rootfs_of(&options);
    let exit = env.run(id, options);
    assert_eq!(exit.code, 0, "{}", env.raw_log(id));
    let kv = key_values(&env.stdout(id));
    assert_eq!(kv["rw-read"], "host-rw");
    assert_eq!(kv["rw-write"], "ok");
    assert_eq!(kv["ro-read"], "host-ro");
    assert_eq!(kv["ro-write"], "refused");
    assert_eq!(kv["root-write"], "refused");
    assert_eq!(kv["shm-write"], "ok");
    assert_eq!(fs::read_to_string(rw.join("f")).expect("read"), "changed\n");
    assert_eq!(fs::read_to_string(ro.join("f")).expect("read"), "host-ro\n");
    assert!(!rootfs.join("x").exists());
    env.delete_and_check(id, false);
    // The bind sources are untouched by delete.
    assert!(rw.join("f").exists() && ro.join("f").exists());
}

// ---------------------------------------------------------------------------------------------
// 7. A new Runtime finds running containers again.

/// The runtime's own processes run with transparent huge pages off (a fresh allocator segment
/// would otherwise cost each monitor a zeroed 2 MiB page); the container's process gets the
/// host's setting back, with an exec'd process too.
#[test]
fn runtime_processes_run_lean_but_containers_keep_huge_pages() {
    let Some(env) = Env::new("huge-pages") else {
        return;
    };
    let thp_enabled = |pid: i32| -> String {
        fs::read_to_string(format!("/proc/{pid}/status"))
            .expect("status")
            .lines()
            .find_map(|l| l.strip_prefix("THP_enabled:"))
            .map(|v| v.trim().to_string())
            .expect("THP_enabled in /proc/PID/status")
    };
    let id = "huge-pages";
    let state = env
        .runtime
        .create_and_start(id, env.options(id, &["sleep", "30"]))
        .expect("create");
    let pid = state.pid();
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let monitor: i32 = stat[stat.rfind(')').expect("comm") + 2..]
        .split(' ')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("ppid");
    assert_eq!(thp_enabled(monitor), "0", "the monitor");
    assert_eq!(thp_enabled(pid), "1", "the container's process");
    // The helpers allocate from glibc's heap (src/allocator.rs); mimalloc would show its arena,
    // an anonymous reservation of 1 GiB.
    let maps = fs::read_to_string(format!("/proc/{monitor}/maps")).expect("maps");
    let largest_anonymous = maps
        .lines()
        .filter(|l| l.split_whitespace().nth(5).is_none())
        .filter_map(|l| {
            let (start, end) = l.split_whitespace().next()?.split_once('-')?;
            Some(u64::from_str_radix(end, 16).ok()? - u64::from_str_radix(start, 16).ok()?)
        })
        .max()
        .unwrap_or(0);
    assert!(
        largest_anonymous < 256 << 20,
        "the monitor has an anonymous mapping of {} MiB: an allocator arena\n{maps}",
        largest_anonymous >> 20
    );
    let exec = env.exec_args(id, &["grep", "THP_enabled", "/proc/self/status"]);
    let (stdout, stderr) = output_text(&exec);
    assert!(exec.status.success(), "exec failed: {stderr}");
    assert_eq!(
        stdout.split_whitespace().collect::<Vec<_>>(),
        ["THP_enabled:", "1"],
        "an exec'd process"
    );
    env.kill(id, "KILL");
    env.runtime.wait_timeout(id, Some(WAIT)).expect("wait");
    env.delete_and_check(id, false);
}

#[test]
fn restarted_runtime_finds_running_containers() {
    let Some(env) = Env::new("restart") else {
        return;
    };
    let id = "restart";
    let options = env.options(id, &["sleep", "30"]);
    let first = Runtime::new(env.runtime.config().clone());
    let state = first.create_and_start(id, options).expect("create");
    let pid = state.pid();
    drop(first);
    // The monitor is detached: neither the container nor its parent is our child.
    let ppid = |pid: i32| -> i32 {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        rest.split(' ')
            .nth(1)
            .and_then(|p| p.parse().ok())
            .expect("ppid")
    };
    let monitor = ppid(pid);
    let me = std::process::id() as i32;
    assert_ne!(monitor, me);
    assert_ne!(ppid(monitor), me);

    let second = Runtime::new(env.runtime.config().clone());
    let listed = second.list().expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id(), id);
    assert_eq!(listed[0].status, ContainerStatus::Running);
    assert_eq!(listed[0].pid(), pid);
    let out = second
        .exec(
            id,
            ExecOptions {
                args: strings(&["sh", "-c", "echo $$ alive"]),
                ..Default::default()
            },
        )
        .expect("exec")
        .stdin(Stdio::null())
        .output()
        .expect("exec output");
    assert_eq!(output_text(&out).0, "2 alive\n", "{out:?}");
    second
        .kill(id, parse_signal("KILL").expect("sig"), false)
        .expect("kill");
    let exit = second.wait_timeout(id, Some(WAIT)).expect("wait");
    assert_eq!(exit.code, 137);
    second.delete(id, false).expect("delete");
    env.assert_gone(id, &env.cgroup(id));
}

// ---------------------------------------------------------------------------------------------
// 8. The command line: runc-compatible bundles and verbs.

/// A bundle with a copy of busybox as its rootfs and runc's default config.json (from
/// `runc spec`, or `skiff runtime spec` when runc is missing), edited by `edit`.
fn busybox_bundle(dir: &Path, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let rootfs = dir.join("rootfs");
    for sub in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
        fs::create_dir_all(rootfs.join(sub)).expect("mkdir");
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod");
    let busybox = which("busybox").expect("busybox");
    fs::copy(&busybox, rootfs.join("bin/busybox")).expect("copy busybox");
    let list = Command::new(&busybox)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = symlink("busybox", rootfs.join("bin").join(applet));
        }
    }
    let status = match which("runc") {
        Some(runc) => Command::new(runc)
            .args(["spec", "--bundle"])
            .arg(dir)
            .status(),
        None => Command::new(SKIFF)
            .args(["runtime", "spec", "--bundle"])
            .arg(dir)
            .status(),
    }
    .expect("spec");
    assert!(status.success());
    let path = dir.join("config.json");
    let mut config: Value =
        serde_json::from_slice(&fs::read(&path).expect("read config")).expect("config json");
    config["process"]["terminal"] = json!(false);
    edit(&mut config);
    fs::write(&path, serde_json::to_vec_pretty(&config).expect("json")).expect("write config");
    dir.to_path_buf()
}

fn set_args(config: &mut Value, args: &[&str]) {
    config["process"]["args"] = json!(args);
}

impl Env {
    /// `skiff runtime --root STATE --data-root DATA ARGS…`.
    fn cli(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(SKIFF);
        cmd.arg("runtime")
            .arg("--root")
            .arg(self.state_dir())
            .arg("--data-root")
            .arg(self.data_dir())
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a CLI command whose container may hold stdout/stderr: output goes to files.
    fn cli_files(&self, args: &[&str]) -> (i32, String, String) {
        let name = unique("cli");
        let out_path = self.path().join(format!("{name}.out"));
        let err_path = self.path().join(format!("{name}.err"));
        let status = self
            .cli(args)
            .stdout(fs::File::create(&out_path).expect("out file"))
            .stderr(fs::File::create(&err_path).expect("err file"))
            .status()
            .expect("run skiff");
        (
            status.code().unwrap_or(-1),
            fs::read_to_string(out_path).unwrap_or_default(),
            fs::read_to_string(err_path).unwrap_or_default(),
        )
    }

    fn cli_state(&self, id: &str) -> Value {
        let (code, out, err) = self.cli_files(&["state", id]);
        assert_eq!(code, 0, "state {id}: {err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("state JSON {out:?}: {e}"))
    }
}

/// Deletes runc/crun containers left by a failed test.
struct OciRuntimeGuard {
    binary: PathBuf,
    root: PathBuf,
    ids: Vec<String>,
}

impl Drop for OciRuntimeGuard {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = Command::new(&self.binary)
                .arg("--root")
                .arg(&self.root)
                .args(["delete", "-f", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[test]
fn cli_runs_runc_bundles() {
    let Some(env) = Env::new("clirun") else {
        return;
    };
    let five_cg = format!("/{}", env.cgroup("five"));
    let bundle = busybox_bundle(&env.path().join("b5"), |c| {
        set_args(c, &["sh", "-c", "echo hi; echo err >&2; exit 5"]);
        c["linux"]["cgroupsPath"] = json!(five_cg);
    });
    let out = env
        .cli(&["run", "--bundle", bundle.to_str().expect("utf8"), "five"])
        .output()
        .expect("skiff runtime run");
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert_eq!(output_text(&out), ("hi\n".into(), "err\n".into()));
    env.assert_gone("five", &env.cgroup("five"));
    assert!(
        bundle.join("rootfs/bin/busybox").exists(),
        "the bundle is the caller's: delete leaves it"
    );

    // Self-inflicted SIGKILL passes through as 137 (in the host PID namespace: a namespace's
    // init cannot be killed from inside).
    let selfkill_cg = format!("/{}", env.cgroup("selfkill"));
    let bundle9 = busybox_bundle(&env.path().join("b9"), |c| {
        set_args(c, &["sh", "-c", "kill -9 $$; exit 1"]);
        c["linux"]["cgroupsPath"] = json!(selfkill_cg);
        if let Some(nss) = c["linux"]["namespaces"].as_array_mut() {
            nss.retain(|ns| ns["type"] != "pid");
        }
    });
    let out = env
        .cli(&["run", "-b", bundle9.to_str().expect("utf8"), "selfkill"])
        .output()
        .expect("skiff runtime run");
    assert_eq!(out.status.code(), Some(137), "{out:?}");
    env.assert_gone("selfkill", &env.cgroup("selfkill"));

    // The same bundles under runc and crun.
    for tool in ["runc", "crun"] {
        let Some(binary) = which(tool) else {
            eprintln!("NOTE: {tool} not installed, not compared");
            continue;
        };
        let root = env.path().join(format!("{tool}-state"));
        let mut guard = OciRuntimeGuard {
            binary: binary.clone(),
            root: root.clone(),
            ids: Vec::new(),
        };
        for (bundle, expected) in [(&bundle, 5), (&bundle9, 137)] {
            let id = unique(tool);
            guard.ids.push(id.clone());
            let out = Command::new(&binary)
                .arg("--root")
                .arg(&root)
                .args(["run", "--bundle"])
                .arg(bundle)
                .arg(&id)
                .stdin(Stdio::null())
                .output()
                .expect("run oci runtime");
            let (stdout, stderr) = output_text(&out);
            if tool == "crun" && out.status.code() != Some(expected) && stderr.contains("cgroup") {
                // crun 1.8 refuses hybrid hosts whose cgroup2 mount has controllers, and needs
                // every v1 controller (hugetlb too) mounted otherwise.
                eprintln!(
                    "NOTE: crun refuses this host's cgroups, not compared: {}",
                    stderr.trim()
                );
                break;
            }
            assert_eq!(
                out.status.code(),
                Some(expected),
                "{tool}: {stdout} {stderr}"
            );
            if expected == 5 {
                assert_eq!(stdout, "hi\n", "{tool}");
            }
        }
    }
    for id in ["five", "selfkill"] {
        let left = cgroup_exists_anywhere(&env.cgroup(id));
        assert!(left.is_empty(), "cgroups left by runc/crun: {left:?}");
    }

    // Not JSON: a clear error naming the file.
    let bad = env.path().join("bad");
    fs::create_dir_all(bad.join("rootfs")).expect("mkdir");
    fs::write(bad.join("config.json"), "this is not json").expect("write");
    let out = env
        .cli(&["run", "--bundle", bad.to_str().expect("utf8"), "bad"])
        .output()
        .expect("run");
    let (_, stderr) = output_text(&out);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains(&bad.join("config.json").display().to_string()),
        "{stderr}"
    );
    assert!(!env.state_dir().join("bad").exists());
}

#[test]
fn cli_verbs_and_state_json() {
    let Some(env) = Env::new("cliverbs") else {
        return;
    };
    let cg1 = format!("/{}", env.cgroup("one"));
    let cg2 = format!("/{}", env.cgroup("two"));
    let b1 = busybox_bundle(&env.path().join("b1"), |c| {
        set_args(c, &["sleep", "30"]);
        c["linux"]["cgroupsPath"] = json!(cg1);
    });
    let b2 = busybox_bundle(&env.path().join("b2"), |c| {
        set_args(c, &["sleep", "30"]);
        c["linux"]["cgroupsPath"] = json!(cg2);
    });
    let pid_file = env.path().join("one.pid");
    let (code, _, err) = env.cli_files(&[
        "create",
        "--bundle",
        b1.to_str().expect("utf8"),
        "--pid-file",
        pid_file.to_str().expect("utf8"),
        "one",
    ]);
    assert_eq!(code, 0, "create: {err}");
    let state = env.cli_state("one");
    assert_eq!(state["ociVersion"], "1.0.2");
    assert_eq!(state["id"], "one");
    assert_eq!(state["status"], "created");
    assert_eq!(state["bundle"], b1.to_str().expect("utf8"));
    let pid = state["pid"].as_i64().expect("pid") as i32;
    assert!(pid > 0 && alive(pid));
    assert_eq!(
        fs::read_to_string(&pid_file).expect("pid file").trim(),
        pid.to_string()
    );

    let (code, _, err) = env.cli_files(&["start", "one"]);
    assert_eq!(code, 0, "start: {err}");
    assert_eq!(env.cli_state("one")["status"], "running");
    // Starting again is refused.
    let (code, _, err) = env.cli_files(&["start", "one"]);
    assert_ne!(code, 0);
    assert!(err.contains("running"), "{err}");

    // A second container, then `list` from yet another process.
    let (code, _, err) =
        env.cli_files(&["run", "-d", "--bundle", b2.to_str().expect("utf8"), "two"]);
    assert_eq!(code, 0, "run -d: {err}");
    let (code, out, err) = env.cli_files(&["list", "--format", "json"]);
    assert_eq!(code, 0, "list: {err}");
    let list: Value = serde_json::from_str(&out).expect("list json");
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["id"], "one");
    assert_eq!(list[0]["status"], "running");
    assert_eq!(list[0]["pid"], pid);
    assert_eq!(list[1]["id"], "two");
    assert_eq!(list[1]["status"], "running");
    let (code, out, _) = env.cli_files(&["list", "-q"]);
    assert_eq!((code, out.as_str()), (0, "one\ntwo\n"));
    let (code, out, _) = env.cli_files(&["list"]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("one") && l.contains("running")),
        "{out}"
    );

    // delete without --force refuses a running container, with --force it goes.
    let (code, _, err) = env.cli_files(&["delete", "one"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("running") && err.contains("force"),
        "delete of a running container: {err}"
    );
    assert!(alive(pid));
    let (code, _, err) = env.cli_files(&["delete", "--force", "one"]);
    assert_eq!(code, 0, "delete --force: {err}");
    assert!(!alive(pid));
    env.assert_gone("one", &env.cgroup("one"));

    // kill, then state shows stopped, then delete.
    // exec through the CLI: output and exit code pass through.
    let out = env
        .cli(&[
            "exec",
            "-u",
            "1000:1000",
            "two",
            "sh",
            "-c",
            "echo in $(id -u); exit 3",
        ])
        .output()
        .expect("exec");
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(output_text(&out).0, "in 1000\n");

    let (code, _, err) = env.cli_files(&["kill", "two", "KILL"]);
    assert_eq!(code, 0, "kill: {err}");
    poll("two to stop", WAIT, || {
        (env.cli_state("two")["status"] == "stopped").then_some(())
    });
    let (code, out, _) = env.cli_files(&["wait", "two"]);
    assert_eq!((code, out.trim()), (137, "137"));
    let (code, _, err) = env.cli_files(&["delete", "two"]);
    assert_eq!(code, 0, "delete: {err}");
    env.assert_gone("two", &env.cgroup("two"));
    let (code, _, err) = env.cli_files(&["state", "two"]);
    assert_ne!(code, 0);
    assert!(err.contains("does not exist"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// 9. Pod sandboxes.

#[test]
fn sandbox_shares_namespaces() {
    let Some(env) = Env::new("sandbox") else {
        return;
    };
    let pod_cgroup = env.cgroup("pod");
    let sandbox = env
        .runtime
        .create_sandbox(
            "pod",
            &SandboxConfig {
                hostname: Some("pod-a".into()),
                cgroup_parent: pod_cgroup.clone(),
                ..Default::default()
            },
        )
        .expect("create sandbox");
    assert!(sandbox.pid > 0 && alive(sandbox.pid));
    let pause_ns = |ns: &str| {
        fs::read_link(format!("/proc/{}/ns/{ns}", sandbox.pid))
            .expect("readlink")
            .to_string_lossy()
            .into_owned()
    };
    assert_ne!(
        pause_ns("net"),
        fs::read_link("/proc/self/ns/net")
            .expect("readlink")
            .to_string_lossy(),
        "the pause process has its own network namespace"
    );
    let found = env.runtime.sandbox("pod").expect("sandbox()");
    assert_eq!(found.pid, sandbox.pid);

    let mut pids = Vec::new();
    for cid in ["ctr-a", "ctr-b"] {
        let mut options = env.options(
            cid,
            &[
                "sh",
                "-c",
                "echo net=$(readlink /proc/self/ns/net); echo ipc=$(readlink /proc/self/ns/ipc); \
                 echo uts=$(readlink /proc/self/ns/uts); echo host=$(hostname); echo ready; \
                 exec sleep 30",
            ],
        );
        let cgroup = format!("{pod_cgroup}/{cid}");
        options
            .spec
            .linux_mut()
            .as_mut()
            .expect("linux")
            .set_cgroups_path(Some(PathBuf::from(&cgroup)));
        for ns in &sandbox.namespaces {
            spec::set_namespace_path(
                &mut options.spec,
                ns.typ(),
                ns.path().as_deref().expect("namespace path"),
            );
        }
        let state = env.runtime.create_and_start(cid, options).expect("create");
        poll("container output", WAIT, || {
            env.stdout(cid).iter().any(|l| l == "ready").then_some(())
        });
        let kv = key_values(&env.stdout(cid));
        assert_eq!(kv["net"], pause_ns("net"), "{cid} net namespace");
        assert_eq!(kv["ipc"], pause_ns("ipc"), "{cid} ipc namespace");
        assert_eq!(kv["uts"], pause_ns("uts"), "{cid} uts namespace");
        assert_eq!(kv["host"], "pod-a");
        // Below the pod cgroup.
        for controller in ["memory", "pids", "cpu"] {
            let procs = cgroup_file(controller, &cgroup, "cgroup.procs");
            assert!(
                procs.lines().any(|p| p == state.pid().to_string()),
                "{cid} in {controller}:{cgroup}: {procs:?}"
            );
        }
        pids.push(state.pid());
    }
    assert!(
        cgroup_file("memory", &pod_cgroup, "cgroup.procs")
            .lines()
            .any(|p| p == sandbox.pid.to_string())
            || {
                // The pause process lives in its own child cgroup of the pod.
                cgroup_file("memory", &format!("{pod_cgroup}/pod"), "cgroup.procs")
                    .lines()
                    .any(|p| p == sandbox.pid.to_string())
            }
    );

    // The first container is deleted as usual; the second is still running when the sandbox
    // goes, and goes with it.
    env.runtime.delete("ctr-a", true).expect("delete ctr-a");
    env.assert_gone("ctr-a", &format!("{pod_cgroup}/ctr-a"));
    env.runtime.remove_sandbox("pod").expect("remove sandbox");
    poll("the pod's processes to end", WAIT, || {
        (!alive(sandbox.pid) && !alive(pids[1])).then_some(())
    });
    let left = cgroup_exists_anywhere(&pod_cgroup);
    assert!(left.is_empty(), "pod cgroup dirs left: {left:?}");
    assert!(!env.state_dir().join("pod").exists());
    assert_eq!(
        env.runtime.state("ctr-b").expect("state").status,
        ContainerStatus::Stopped
    );
    env.delete_and_check("ctr-b", false);
}

// ---------------------------------------------------------------------------------------------
// 10. Bad input.

#[test]
fn bad_input_is_refused_cleanly() {
    let Some(env) = Env::new("bad") else { return };

    // A program that does not exist: create fails with runc's message and leaves nothing.
    let id = "missing";
    let options = env.options(id, &["no-such-program", "arg"]);
    let managed = options.managed_dir.clone().expect("managed dir");
    let err = env
        .runtime
        .create(id, options)
        .expect_err("create of a missing program");
    assert!(
        err.to_string()
            .contains("exec: \"no-such-program\": executable file not found in $PATH"),
        "{err}"
    );
    assert!(!env.state_dir().join(id).exists(), "state dir left");
    let left = cgroup_exists_anywhere(&env.cgroup(id));
    assert!(left.is_empty(), "cgroup dirs left: {left:?}");
    // The caller's rootfs is the caller's to remove.
    skiff_runtime::image::remove_rootfs(&managed).expect("remove rootfs");
    assert!(mounts_under(&managed).is_empty());

    // An absolute path that does not exist.
    let options = env.options("abs", &["/bin/nope"]);
    let err = env
        .runtime
        .create("abs", options)
        .expect_err("missing path");
    assert!(
        err.to_string().contains("no such file or directory"),
        "{err}"
    );
    assert!(!env.state_dir().join("abs").exists());

    // Duplicate id.
    let options = env.options("dup", &["sleep", "30"]);
    let spec_copy = options.clone();
    env.runtime.create("dup", options).expect("create dup");
    let err = env.runtime.create("dup", spec_copy).expect_err("duplicate");
    assert!(
        matches!(err, RuntimeError::AlreadyExists(ref i) if i == "dup"),
        "{err}"
    );
    assert_eq!(
        env.runtime.state("dup").expect("state").status,
        ContainerStatus::Created,
        "the first container is untouched"
    );

    // Start of a created container whose init was killed: an error, not a hang.
    let options = env.options("dead", &["sleep", "30"]);
    let state = env.runtime.create("dead", options).expect("create dead");
    env.kill("dead", "KILL");
    poll("the init to die", WAIT, || {
        (!alive(state.pid())).then_some(())
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let config = env.runtime.config().clone();
    std::thread::spawn(move || {
        let _ = tx.send(
            Runtime::new(config)
                .start("dead")
                .map_err(|e| e.to_string()),
        );
    });
    let result = rx
        .recv_timeout(WAIT)
        .expect("start of a dead container returns");
    assert!(result.is_err(), "start of a dead container: {result:?}");
    assert_eq!(
        env.runtime.state("dead").expect("state").status,
        ContainerStatus::Stopped
    );
    env.delete_and_check("dead", false);

    // Start twice.
    env.runtime.start("dup").expect("start");
    let err = env.runtime.start("dup").expect_err("second start");
    assert!(
        matches!(
            err,
            RuntimeError::InvalidState {
                status: ContainerStatus::Running,
                ..
            }
        ),
        "{err}"
    );
    // Delete without force refuses a running container.
    let err = env
        .runtime
        .delete("dup", false)
        .expect_err("delete running");
    assert!(matches!(err, RuntimeError::InvalidState { .. }), "{err}");
    env.delete_and_check("dup", true);

    // Invalid ids.
    for bad in ["../x", "a/b", "", "-x"] {
        let err = env
            .runtime
            .create(
                bad,
                CreateOptions::new(spec::default_spec(env.path(), strings(&["sh"])), env.path()),
            )
            .expect_err("invalid id");
        assert!(matches!(err, RuntimeError::InvalidId(_)), "{bad:?}: {err}");
        assert!(matches!(
            env.runtime.prepare_image_rootfs(bad, &env.image),
            Err(RuntimeError::InvalidId(_))
        ));
        assert!(matches!(
            env.runtime.state(bad),
            Err(RuntimeError::InvalidId(_))
        ));
    }
    assert!(!env.path().join("x").exists());
    assert!(matches!(
        env.runtime.state("nope"),
        Err(RuntimeError::NotFound(_))
    ));

    // Empty args and a missing root.
    let mut options = env.options("noargs", &["sh"]);
    edit_spec(&mut options, |v| v["process"]["args"] = json!([]));
    assert!(matches!(
        env.runtime.create("noargs", options),
        Err(RuntimeError::InvalidSpec(_))
    ));
    let options = CreateOptions::new(
        spec::default_spec(&env.path().join("no-such-rootfs"), strings(&["sh"])),
        env.path(),
    );
    assert!(matches!(
        env.runtime.create("noroot", options),
        Err(RuntimeError::InvalidSpec(_))
    ));
    assert!(env.runtime.list().expect("list").is_empty());
}

// ---------------------------------------------------------------------------------------------
// 11. A terminal.

#[test]
fn terminal_output_is_logged() {
    let Some(env) = Env::new("tty") else { return };
    let id = "tty";
    let mut options = env.options(
        id,
        &["sh", "-c", "echo hi; [ -t 1 ] && echo tty=yes; exit 4"],
    );
    options
        .spec
        .process_mut()
        .as_mut()
        .expect("process")
        .set_terminal(Some(true));
    let exit = env.run(id, options);
    assert_eq!(exit.code, 4, "{}", env.raw_log(id));
    let lines: Vec<String> = env
        .stdout(id)
        .into_iter()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect();
    assert!(lines.contains(&"hi".to_string()), "{lines:?}");
    assert!(lines.contains(&"tty=yes".to_string()), "{lines:?}");
    env.delete_and_check(id, false);
}

// ---------------------------------------------------------------------------------------------
// 12. A user namespace.

#[test]
fn user_namespace_maps_root() {
    let Some(env) = Env::new("userns") else {
        return;
    };
    let id = "userns";
    let shared = env.path().join("shared");
    fs::create_dir(&shared).expect("mkdir");
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).expect("chmod");
    let mut options = env.options(
        id,
        &[
            "sh",
            "-c",
            "echo uid=$(id -u); echo gid=$(id -g); echo owner=$(stat -c %u /bin/busybox); \
             touch /shared/made-inside",
        ],
    );
    spec::add_bind_mount(&mut options.spec, &shared, Path::new("/shared"), false);
    // As with runc, the mapped root cannot create mount points in a rootfs owned by the host's
    // root: make them beforehand.
    let rootfs = rootfs_of(&options);
    for dir in ["proc", "sys", "dev", "shared"] {
        fs::create_dir_all(rootfs.join(dir)).expect("mkdir mount point");
    }
    edit_spec(&mut options, |v| {
        v["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces")
            .push(json!({"type": "user"}));
        let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        v["linux"]["uidMappings"] = map.clone();
        v["linux"]["gidMappings"] = map;
    });
    let exit = env.run(id, options);
    assert_eq!(exit.code, 0, "{}", env.raw_log(id));
    let kv = key_values(&env.stdout(id));
    assert_eq!(kv["uid"], "0");
    assert_eq!(kv["gid"], "0");
    assert_eq!(
        kv["owner"], "65534",
        "host root is unmapped: the overflow uid"
    );
    let meta = fs::metadata(shared.join("made-inside")).expect("file made inside");
    assert_eq!((meta.uid(), meta.gid()), (100000, 100000));
    env.delete_and_check(id, false);
}

/// `delete` right after the process exits — while its monitor is still reaping it and writing
/// exit.json into the state directory — waits for the monitor, then succeeds and leaves nothing.
/// The monitor is held with SIGSTOP so that the window is certain.
#[test]
fn delete_waits_for_the_monitor_to_record_the_exit() {
    let Some(env) = Env::new("quickdel") else {
        return;
    };
    let signal = |sig: &str, pid: i32| {
        let status = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {sig} {pid}");
    };
    let options = env.options("quick", &["sleep", "0.2"]);
    let state = env
        .runtime
        .create_and_start("quick", options)
        .expect("create");
    let (pid, monitor) = (state.pid(), state.stored.monitor_pid);
    signal("-STOP", monitor);
    // Never leave the monitor stopped, even when an assertion below fails.
    struct ContinueOnDrop(i32);
    impl Drop for ContinueOnDrop {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-CONT", &self.0.to_string()])
                .status();
        }
    }
    let _continue = ContinueOnDrop(monitor);
    poll("the process to exit", Duration::from_secs(10), || {
        (!alive(pid)).then_some(())
    });
    let started = Instant::now();
    let resume = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        signal("-CONT", monitor);
    });
    env.delete_and_check("quick", false);
    // The monitor had finished (exit recorded, process gone) before the state was removed.
    assert!(
        !alive(monitor),
        "delete returned while the monitor was still running"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "delete did not wait for the monitor ({:?})",
        started.elapsed()
    );
    resume.join().expect("resume thread");
}

/// `exec -t` makes the caller's terminal the process's controlling terminal. The terminal is a
/// pty Python's `pty.spawn` provides, as an interactive shell would.
#[test]
fn exec_with_a_terminal() {
    let Some(env) = Env::new("exectty") else {
        return;
    };
    if !require(&["python3"]) {
        return;
    }
    let options = env.options("tty", &["sleep", "30"]);
    env.runtime
        .create_and_start("tty", options)
        .expect("create");
    let script = "import pty, sys\nsys.exit(pty.spawn(sys.argv[1:]) >> 8)";
    let out = Command::new("python3")
        .args(["-c", script, SKIFF, "runtime", "--root"])
        .arg(env.state_dir())
        .args(["exec", "-t", "tty", "sh", "-c"])
        .arg("[ -t 0 ] && [ -t 1 ] && echo stdin-and-stdout-are-a-tty; exit 4")
        .stdin(Stdio::null())
        .output()
        .expect("python3 pty.spawn");
    let (stdout, stderr) = output_text(&out);
    assert!(
        stdout.contains("stdin-and-stdout-are-a-tty"),
        "stdout {stdout:?} stderr {stderr:?}"
    );
    assert_eq!(out.status.code(), Some(4), "stderr {stderr:?}");
    env.delete_and_check("tty", true);
}

/// A chatty container's log is capped: rotated at `max_size_bytes`, at most `max_files` files,
/// the newest lines in the live file.
#[test]
fn log_is_capped_and_rotated() {
    let Some(env) = Env::new("logrot") else {
        return;
    };
    let mut options = env.options(
        "chatty",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 6000 ]; do echo \"line $i ........................................\"; i=$((i+1)); done",
        ],
    );
    const CAP: u64 = 32 * 1024;
    let log = env.log_path("chatty");
    options.stdio = StdioConfig::Log {
        path: log.clone(),
        max_size_bytes: CAP,
        max_files: 3,
    };
    let exit = env.run("chatty", options);
    assert_eq!(exit.code, 0);
    let rotated = |n: u32| PathBuf::from(format!("{}.{n}", log.display()));
    for file in [log.clone(), rotated(1), rotated(2)] {
        let size = fs::metadata(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .len();
        assert!(size <= CAP, "{} is {size} bytes", file.display());
    }
    assert!(!rotated(3).exists(), "more than max_files files kept");
    let last = skiff_runtime::logs::read_log(
        &log,
        &skiff_runtime::logs::ReadOptions {
            tail: Some(1),
            ..Default::default()
        },
    )
    .expect("read log");
    assert_eq!(last.len(), 1);
    assert!(last[0].content.starts_with("line 5999 "), "{:?}", last[0]);
    env.delete_and_check("chatty", false);
}

/// In a sandbox that shares one PID namespace, the pause process is PID 1 and reaps orphans: a
/// process whose parent exited does not stay a zombie.
#[test]
fn shared_pid_sandbox_reaps_orphans() {
    let Some(env) = Env::new("reaper") else {
        return;
    };
    let pod_cgroup = env.cgroup("pod");
    let sandbox = env
        .runtime
        .create_sandbox(
            "pod",
            &SandboxConfig {
                cgroup_parent: pod_cgroup.clone(),
                share_pid: true,
                ..Default::default()
            },
        )
        .expect("create sandbox");
    let mut options = env.options(
        "orphans",
        &[
            "sh",
            "-c",
            "cat /proc/1/cmdline | tr '\\0' ' '; echo; (sleep 0.2 &); sleep 1; \
             for f in /proc/[0-9]*/stat; do cat $f 2>/dev/null; done | grep -c ') Z' || true",
        ],
    );
    options
        .spec
        .linux_mut()
        .as_mut()
        .expect("linux")
        .set_cgroups_path(Some(PathBuf::from(format!("{pod_cgroup}/orphans"))));
    for ns in &sandbox.namespaces {
        spec::set_namespace_path(
            &mut options.spec,
            ns.typ(),
            ns.path().as_deref().expect("namespace path"),
        );
    }
    let exit = env.run("orphans", options);
    assert_eq!(exit.code, 0, "{}", env.raw_log("orphans"));
    let out = env.stdout("orphans");
    assert!(
        out.first().is_some_and(|l| l.contains("pause")),
        "PID 1 is the pause process: {out:?}"
    );
    assert_eq!(
        out.last().map(String::as_str),
        Some("0"),
        "zombies: {out:?}"
    );
    env.delete_and_check("orphans", false);
    env.runtime.remove_sandbox("pod").expect("remove sandbox");
    assert!(cgroup_exists_anywhere(&pod_cgroup).is_empty());
}

/// Capabilities added and dropped as a Kubernetes securityContext would: with CAP_SYS_ADMIN added
/// (and the seccomp profile widened to match, as Docker does) `mount` works; with CAP_CHOWN
/// dropped `chown` fails.
#[test]
fn capabilities_added_and_dropped() {
    let Some(env) = Env::new("caps") else {
        return;
    };
    let script = "if mount -t tmpfs none /tmp 2>/dev/null; then echo mount=allowed; else echo mount=denied; fi; \
                  touch /f; if chown 1000 /f 2>/dev/null; then echo chown=allowed; else echo chown=denied; fi";
    let mut options = env.options("adjusted", &["sh", "-c", script]);
    spec::set_capabilities(&mut options.spec, &["SYS_ADMIN"], &["CHOWN"]).expect("caps");
    let exit = env.run("adjusted", options);
    assert_eq!(exit.code, 0, "{}", env.raw_log("adjusted"));
    let kv = key_values(&env.stdout("adjusted"));
    assert_eq!(kv["mount"], "allowed", "CAP_SYS_ADMIN added");
    assert_eq!(kv["chown"], "denied", "CAP_CHOWN dropped");
    env.delete_and_check("adjusted", false);

    let exit = env.run("defaults", env.options("defaults", &["sh", "-c", script]));
    assert_eq!(exit.code, 0, "{}", env.raw_log("defaults"));
    let kv = key_values(&env.stdout("defaults"));
    assert_eq!(kv["mount"], "denied");
    assert_eq!(kv["chown"], "allowed");
    env.delete_and_check("defaults", false);
}

/// A multi-threaded caller (this test binary, like the node agent) gets its monitors forked by
/// one spawner process per helper binary instead of exec'ing the helper for each; a spawner
/// that dies is replaced, and containers keep being created.
#[test]
fn monitors_come_from_one_spawner_which_is_replaced_when_it_dies() {
    let Some(env) = Env::new("spawner") else {
        return;
    };
    // A helper path of this test's own, so that its spawner is not the other tests'.
    let helper = env.path().join("helper");
    symlink(SKIFF, &helper).expect("symlink the helper");
    let runtime = Runtime::new(RuntimeConfig {
        helper_binary: helper.clone(),
        ..env.runtime.config().clone()
    });
    let wanted_cmdline = format!("{}\0__skiff_runtime\0spawner\0", helper.display());
    let spawners = || -> Vec<i32> {
        let me = std::process::id().to_string();
        let mut found = Vec::new();
        for entry in fs::read_dir("/proc").expect("/proc").flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let fields: Vec<&str> = stat
                .rsplit_once(')')
                .map(|(_, rest)| rest.split_whitespace().collect())
                .unwrap_or_default();
            let live_child = fields.first().is_some_and(|s| *s != "Z")
                && fields.get(1).is_some_and(|ppid| *ppid == me);
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if live_child && cmdline == wanted_cmdline.as_bytes() {
                found.push(pid);
            }
        }
        found
    };
    let run = |id: &str| {
        runtime
            .create_and_start(id, env.options(id, &["true"]))
            .unwrap_or_else(|e| panic!("create_and_start {id}: {e}"));
        let exit = runtime
            .wait_timeout(id, Some(WAIT))
            .unwrap_or_else(|e| panic!("wait {id}: {e}"));
        assert_eq!(exit.code, 0, "{id}: {}", env.raw_log(id));
    };

    run("one");
    let first = spawners();
    assert_eq!(first.len(), 1, "one spawner for the helper: {first:?}");
    run("two");
    assert_eq!(spawners(), first, "the same spawner forks every monitor");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first[0]),
        nix::sys::signal::SIGKILL,
    )
    .expect("kill the spawner");
    let deadline = Instant::now() + WAIT;
    while spawners() == first {
        assert!(Instant::now() < deadline, "the spawner did not die");
        std::thread::sleep(Duration::from_millis(10));
    }
    run("three");
    let second = spawners();
    assert_eq!(second.len(), 1, "a new spawner: {second:?}");
    assert_ne!(second, first, "the dead spawner was replaced");
    for id in ["one", "two", "three"] {
        env.delete_and_check(id, false);
    }
}
