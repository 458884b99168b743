//! The container runtime benchmark: `cargo bench --bench runtime` (see BENCHMARKS.md).
//!
//! In one run, with the runtimes' CLIs as a container engine calls them, it measures
//!
//! 1. the lifecycle of a container running `/bin/true` from one OCI bundle (a static busybox
//!    rootfs, `config.json` from `runc spec`), for `skiff runtime`, runc and crun:
//!    * **verbs**: `create --pid-file` (stdio /dev/null), `start`, wait for the exit (a pidfd on
//!      the container's pid, polled; for Skiff also, as a separate row, `skiff runtime wait`),
//!      `delete`;
//!    * **run**: one foreground `run` (which deletes the container itself; if a runtime leaves
//!      the container behind, the benchmark times a `delete` too and says so);
//!
//!    and, as the floor, a bare `unshare --mount --uts --ipc --net --pid --fork /bin/true`.
//!    Every iteration runs every case once, in an order that rotates from one iteration to the
//!    next, so drift on this noisy 2-core machine hits all of them alike. Each runtime has its
//!    own state root (`--root`) under a temporary directory and every container a fresh id.
//! 2. pulling the busybox image (`scripts/fixtures/busybox-image.sh`) from a local
//!    `docker-registry` into a fresh data root each time (download and unpack), a re-pull into
//!    a populated store (nothing to fetch), and as the peer `skopeo copy` into an OCI layout plus
//!    `umoci unpack`.
//!
//! It prints tables and PASS/MISS lines for the targets (Skiff faster than runc and no
//! slower than crun); it never asserts.
//!
//! crun 1.8 refuses a hybrid cgroup host (v1 controllers plus a v2 mount) unless `hugetlb` is
//! mounted as a v1 hierarchy, so the benchmark mounts it (`/sys/fs/cgroup/hugetlb`) when it is
//! not mounted yet, for the whole run (every runtime then sees the same host), and unmounts it at
//! the end. If crun still fails, it says why and carries on without it.
//!
//! Everything it makes is removed at the end, also on a panic (a Drop guard force-deletes
//! leftover containers in its state roots, removes cgroups named after its ids, unmounts
//! hugetlb, kills the registry by PID and removes the temporary directory).
//!
//! Must run as root. Knobs (environment variables, defaults in brackets):
//! `RUNTIME_BENCH_RUNS` [50] measured iterations, `RUNTIME_BENCH_WARMUP` [3] discarded ones,
//! `RUNTIME_BENCH_RUNTIMES` [skiff,runc,crun], `RUNTIME_BENCH_PULLS` [10] pulls per puller
//! (0 skips part 2), `RUNTIME_BENCH_REPULLS` [5], `SKIFF_BENCH_BIN` [the `skiff` binary cargo
//! built with this bench], `RUNTIME_BENCH_RUNC` [/usr/sbin/runc], `RUNTIME_BENCH_CRUN`
//! [/usr/bin/crun], `RUNTIME_BENCH_TMPDIR` [the system temp dir].

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, Table};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// A few libc calls (std links libc; no extra dependency for three functions).

unsafe extern "C" {
    fn syscall(number: std::ffi::c_long, ...) -> std::ffi::c_long;
    fn poll(fds: *mut PollFd, nfds: std::ffi::c_ulong, timeout: std::ffi::c_int)
    -> std::ffi::c_int;
    fn geteuid() -> u32;
}

#[repr(C)]
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}

const SYS_PIDFD_OPEN: std::ffi::c_long = 434; // the same number on every architecture
const POLLIN: i16 = 1;

fn pidfd_open(pid: i32) -> Result<OwnedFd, String> {
    // SAFETY: pidfd_open(pid, flags) returns a new descriptor or -1.
    let fd = unsafe {
        syscall(
            SYS_PIDFD_OPEN,
            pid as std::ffi::c_long,
            0 as std::ffi::c_long,
        )
    };
    if fd < 0 {
        return Err(format!(
            "pidfd_open({pid}): {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: a descriptor the kernel just gave us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits until the process behind `pidfd` has exited.
fn wait_pidfd(pidfd: &OwnedFd, timeout: Duration) -> Result<(), String> {
    let mut pfd = PollFd {
        fd: pidfd.as_raw_fd(),
        events: POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        let n = unsafe { poll(&mut pfd, 1, timeout.as_millis() as i32) };
        match n {
            1.. => return Ok(()),
            0 => return Err(format!("the container did not exit within {timeout:?}")),
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(format!("poll: {e}"));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Knobs.

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        _ => default,
    }
}

fn env_path(name: &str, default: &str) -> PathBuf {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map_or_else(|| default.into(), PathBuf::from)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

// ---------------------------------------------------------------------------------------------
// Statistics.

struct Samples {
    name: String,
    times: Vec<Duration>,
    failures: usize,
    first_error: Option<String>,
    note: Option<String>,
}

impl Samples {
    fn new(name: impl Into<String>) -> Samples {
        Samples {
            name: name.into(),
            times: Vec::new(),
            failures: 0,
            first_error: None,
            note: None,
        }
    }

    fn record(&mut self, result: Result<Duration, String>) {
        match result {
            Ok(d) => self.times.push(d),
            Err(e) => {
                self.failures += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(e);
                }
            }
        }
    }

    fn sorted(&self) -> Vec<Duration> {
        let mut v = self.times.clone();
        v.sort();
        v
    }

    /// Nearest-rank percentile.
    fn percentile(&self, q: f64) -> Option<Duration> {
        let v = self.sorted();
        if v.is_empty() {
            return None;
        }
        let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
        Some(v[rank - 1])
    }

    fn median(&self) -> Option<Duration> {
        let v = self.sorted();
        match v.len() {
            0 => None,
            n if n % 2 == 1 => Some(v[n / 2]),
            n => Some((v[n / 2 - 1] + v[n / 2]) / 2),
        }
    }

    fn mean(&self) -> Option<Duration> {
        if self.times.is_empty() {
            return None;
        }
        Some(self.times.iter().sum::<Duration>() / self.times.len() as u32)
    }

    fn min(&self) -> Option<Duration> {
        self.times.iter().min().copied()
    }

    fn max(&self) -> Option<Duration> {
        self.times.iter().max().copied()
    }
}

fn ms(d: Option<Duration>) -> String {
    d.map_or_else(
        || "-".into(),
        |d| format!("{:.1}", d.as_secs_f64() * 1000.0),
    )
}

fn print_table(title: &str, rows: &[&Samples]) {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(vec![
        "case",
        "runs",
        "failed",
        "median ms",
        "p90 ms",
        "min ms",
        "mean ms",
        "max ms",
    ]);
    for s in rows {
        table.add_row(vec![
            s.name.clone(),
            s.times.len().to_string(),
            s.failures.to_string(),
            ms(s.median()),
            ms(s.percentile(0.9)),
            ms(s.min()),
            ms(s.mean()),
            ms(s.max()),
        ]);
    }
    for i in 1..8 {
        if let Some(col) = table.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    println!("\n{title}\n{table}");
    for s in rows {
        if let Some(e) = &s.first_error {
            println!(
                "  {}: {} failure(s), the first: {}",
                s.name,
                s.failures,
                e.trim()
            );
        }
        if let Some(n) = &s.note {
            println!("  {}: {n}", s.name);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running commands.

/// Runs `cmd` with stdin and stdout on /dev/null and stderr into `errlog` (a file, so that a
/// container that inherits it never holds up anything); fails with that stderr.
fn exec(cmd: &mut Command, errlog: &Path) -> Result<(), String> {
    let err = File::create(errlog).map_err(|e| format!("creating {}: {e}", errlog.display()))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(err)
        .status()
        .map_err(|e| format!("spawning {cmd:?}: {e}"))?;
    if status.success() {
        return Ok(());
    }
    let stderr = std::fs::read_to_string(errlog).unwrap_or_default();
    Err(format!("{cmd:?} failed ({status}): {}", stderr.trim()))
}

/// A runtime's CLI with its own state root.
#[derive(Clone)]
struct Runtime {
    name: &'static str,
    bin: PathBuf,
    /// Arguments before the verb (`runtime --root R` for skiff, `--root R` for runc and crun).
    prefix: Vec<String>,
    root: PathBuf,
}

impl Runtime {
    fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut c = Command::new(&self.bin);
        c.args(&self.prefix).args(args);
        c
    }

    fn is_skiff(&self) -> bool {
        self.name == "skiff"
    }
}

// ---------------------------------------------------------------------------------------------
// Cleanup, also on panic.

struct Cleanup {
    runtimes: Vec<Runtime>,
    /// Container ids (and so cgroup names) all start with this.
    id_prefix: String,
    /// The hugetlb v1 hierarchy this benchmark mounted (and whether it made the directory).
    hugetlb: Option<(PathBuf, bool)>,
    registry: Option<Child>,
    tmp: Option<tempfile::TempDir>,
}

impl Cleanup {
    /// Force-deletes every container left in the runtimes' state roots; returns their ids.
    fn delete_leftover_containers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for rt in &self.runtimes {
            let Ok(entries) = std::fs::read_dir(&rt.root) else {
                continue;
            };
            for entry in entries.flatten() {
                if !entry.path().is_dir() {
                    continue;
                }
                let id = entry.file_name().to_string_lossy().into_owned();
                let _ = rt
                    .cmd(["delete", "--force", &id])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                left.push(format!("{}:{id}", rt.name));
            }
        }
        left
    }

    /// Removes cgroup directories named after this run's container ids (any controller, up to
    /// three levels deep); returns them.
    fn remove_leftover_cgroups(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, prefix: &str, depth: usize, out: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let Ok(ft) = entry.file_type() else { continue };
                if !ft.is_dir() {
                    continue;
                }
                let path = entry.path();
                if entry.file_name().to_string_lossy().starts_with(prefix) {
                    out.push(path);
                } else if depth > 0 {
                    walk(&path, prefix, depth - 1, out);
                }
            }
        }
        if self.id_prefix.is_empty() {
            return Vec::new();
        }
        let mut found = Vec::new();
        walk(Path::new("/sys/fs/cgroup"), &self.id_prefix, 3, &mut found);
        for path in &found {
            // Children first (rmdir of a cgroup with children fails).
            let _ = Command::new("find")
                .arg(path)
                .args(["-depth", "-type", "d", "-exec", "rmdir", "{}", ";"])
                .stderr(Stdio::null())
                .status();
        }
        found
    }

    fn unmount_hugetlb(&mut self) {
        if let Some((dir, made_dir)) = self.hugetlb.take() {
            let _ = Command::new("umount").arg(&dir).status();
            if made_dir {
                let _ = std::fs::remove_dir(&dir);
            }
        }
    }

    fn stop_registry(&mut self) {
        if let Some(mut child) = self.registry.take() {
            let _ = child.kill(); // by PID
            let _ = child.wait();
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.delete_leftover_containers();
        self.remove_leftover_cgroups();
        self.unmount_hugetlb();
        self.stop_registry();
        if let Some(tmp) = self.tmp.take() {
            let path = tmp.path().to_path_buf();
            if let Err(e) = tmp.close() {
                eprintln!("runtime bench: removing {}: {e}", path.display());
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Part 1: the container lifecycle.

fn is_mountpoint(dir: &Path) -> bool {
    let target = dir.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().any(|l| l.split(' ').nth(4) == Some(&*target)))
        .unwrap_or(false)
}

/// Mounts the hugetlb controller as a v1 hierarchy if it is not mounted; crun 1.8 wants it on
/// a hybrid host. Returns what it mounted (to be unmounted at the end).
fn mount_hugetlb() -> Result<Option<(PathBuf, bool)>, String> {
    let dir = PathBuf::from("/sys/fs/cgroup/hugetlb");
    if is_mountpoint(&dir) {
        return Ok(None);
    }
    let unified_only = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines()
                .any(|l| l.split(' ').nth(4) == Some("/sys/fs/cgroup") && l.contains(" - cgroup2 "))
        })
        .unwrap_or(false);
    if unified_only {
        return Ok(None); // a pure v2 host: nothing to do
    }
    let made_dir = !dir.exists();
    if made_dir {
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
    }
    let out = Command::new("mount")
        .args(["-t", "cgroup", "-o", "hugetlb", "cgroup"])
        .arg(&dir)
        .output()
        .map_err(|e| format!("running mount: {e}"))?;
    if !out.status.success() {
        if made_dir {
            let _ = std::fs::remove_dir(&dir);
        }
        return Err(format!(
            "mount hugetlb: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(Some((dir, made_dir)))
}

/// A bundle whose rootfs is a static busybox with a `true` applet, and `runc spec`'s config
/// running `/bin/true` without a terminal.
fn make_bundle(dir: &Path, runc: &Path) -> Result<(), String> {
    let bin = dir.join("rootfs/bin");
    std::fs::create_dir_all(&bin).map_err(|e| format!("mkdir {}: {e}", bin.display()))?;
    let busybox = env_path("BUSYBOX", "/bin/busybox");
    std::fs::copy(&busybox, bin.join("busybox")).map_err(|e| {
        format!(
            "copying {}: {e} (apt-get install busybox-static)",
            busybox.display()
        )
    })?;
    std::os::unix::fs::symlink("busybox", bin.join("true")).map_err(|e| e.to_string())?;
    let out = Command::new(runc)
        .args(["spec", "--bundle"])
        .arg(dir)
        .output()
        .map_err(|e| format!("running {} spec: {e}", runc.display()))?;
    if !out.status.success() {
        return Err(format!(
            "runc spec: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let path = dir.join("config.json");
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&path).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    spec["process"]["args"] = serde_json::json!(["/bin/true"]);
    spec["process"]["terminal"] = Value::Bool(false);
    std::fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).map_err(|e| e.to_string())
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// create, start, pidfd wait, delete
    Verbs,
    /// create, start, `skiff runtime wait`, delete (Skiff only)
    VerbsOwnWait,
    /// foreground run
    Run,
    /// bare unshare
    Unshare,
}

struct Case {
    kind: Kind,
    runtime: Option<Runtime>,
    samples: Samples,
    /// `run` left the container behind at least once (so a delete was timed too).
    run_left_container: bool,
}

struct Ctx {
    bundle: PathBuf,
    work: PathBuf,
    errlog: PathBuf,
}

fn one_lifecycle(case: &mut Case, ctx: &Ctx, id: &str) -> Result<Duration, String> {
    let errlog = &ctx.errlog;
    if case.kind == Kind::Unshare {
        let t0 = Instant::now();
        exec(
            Command::new("unshare").args([
                "--mount",
                "--uts",
                "--ipc",
                "--net",
                "--pid",
                "--fork",
                "/bin/true",
            ]),
            errlog,
        )?;
        return Ok(t0.elapsed());
    }
    let rt = case.runtime.clone().expect("a runtime");
    match case.kind {
        Kind::Verbs | Kind::VerbsOwnWait => {
            let pid_file = ctx.work.join(format!("{id}.pid"));
            let t0 = Instant::now();
            exec(
                rt.cmd(["create", "--bundle"])
                    .arg(&ctx.bundle)
                    .arg("--pid-file")
                    .arg(&pid_file)
                    .arg(id),
                errlog,
            )?;
            let pidfd = if case.kind == Kind::Verbs {
                let pid: i32 = std::fs::read_to_string(&pid_file)
                    .map_err(|e| format!("reading the pid file: {e}"))?
                    .trim()
                    .parse()
                    .map_err(|e| format!("pid file: {e}"))?;
                // Opened before `start`: the init is waiting then, so it cannot be gone yet.
                Some(pidfd_open(pid)?)
            } else {
                None
            };
            exec(&mut rt.cmd(["start", id]), errlog)?;
            match &pidfd {
                Some(fd) => wait_pidfd(fd, Duration::from_secs(30))?,
                None => exec(&mut rt.cmd(["wait", id]), errlog)?,
            }
            exec(&mut rt.cmd(["delete", id]), errlog)?;
            let elapsed = t0.elapsed();
            let _ = std::fs::remove_file(&pid_file);
            Ok(elapsed)
        }
        Kind::Run => {
            let t0 = Instant::now();
            exec(rt.cmd(["run", "--bundle"]).arg(&ctx.bundle).arg(id), errlog)?;
            if rt.root.join(id).exists() {
                case.run_left_container = true;
                exec(&mut rt.cmd(["delete", id]), errlog)?;
            }
            Ok(t0.elapsed())
        }
        Kind::Unshare => unreachable!(),
    }
}

fn case_name(kind: Kind, rt: Option<&Runtime>) -> String {
    match (kind, rt) {
        (Kind::Unshare, _) => {
            "unshare --mount --uts --ipc --net --pid --fork /bin/true (floor)".into()
        }
        (Kind::Verbs, Some(rt)) => format!("{}: create + start + wait (pidfd) + delete", rt.name),
        (Kind::VerbsOwnWait, Some(rt)) => {
            format!("{}: create + start + `{} wait` + delete", rt.name, rt.name)
        }
        (Kind::Run, Some(rt)) => format!("{}: run (foreground)", rt.name),
        _ => unreachable!(),
    }
}

fn lifecycle_bench(cleanup: &mut Cleanup, tmp: &Path, runtimes: Vec<Runtime>) {
    let runs: usize = env_or("RUNTIME_BENCH_RUNS", 50);
    let warmup: usize = env_or("RUNTIME_BENCH_WARMUP", 3);
    let runc = env_path("RUNTIME_BENCH_RUNC", "/usr/sbin/runc");
    let ctx = Ctx {
        bundle: tmp.join("bundle"),
        work: tmp.join("work"),
        errlog: tmp.join("work/stderr"),
    };
    std::fs::create_dir_all(&ctx.work).unwrap();
    make_bundle(&ctx.bundle, &runc).unwrap_or_else(|e| panic!("building the bundle: {e}"));

    let mut runtimes = runtimes;
    if runtimes.iter().any(|r| r.name == "crun") {
        match mount_hugetlb() {
            Ok(Some(m)) => {
                eprintln!(
                    "mounted the hugetlb v1 hierarchy at {} for crun (unmounted at the end)",
                    m.0.display()
                );
                cleanup.hugetlb = Some(m);
            }
            Ok(None) => {}
            Err(e) => eprintln!("could not mount hugetlb for crun ({e}); crun may refuse to run"),
        }
    }
    for rt in &runtimes {
        std::fs::create_dir_all(&rt.root).unwrap();
    }
    cleanup.runtimes = runtimes.clone();

    // One probe per runtime: a runtime that cannot run the bundle at all is dropped with its
    // reason instead of failing 50 times.
    runtimes.retain(|rt| {
        let mut probe = Case {
            kind: Kind::Run,
            runtime: Some(rt.clone()),
            samples: Samples::new(""),
            run_left_container: false,
        };
        let id = format!("{}probe-{}", cleanup.id_prefix, rt.name);
        match one_lifecycle(&mut probe, &ctx, &id) {
            Ok(d) => {
                eprintln!(
                    "probe: {} run /bin/true ok ({:.1} ms)",
                    rt.name,
                    d.as_secs_f64() * 1000.0
                );
                true
            }
            Err(e) => {
                println!("{} cannot run the bundle here, left out: {e}", rt.name);
                let _ = rt
                    .cmd(["delete", "--force", &id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
                false
            }
        }
    });

    let mut cases = vec![Case {
        kind: Kind::Unshare,
        runtime: None,
        samples: Samples::new(case_name(Kind::Unshare, None)),
        run_left_container: false,
    }];
    for rt in &runtimes {
        let mut kinds = vec![Kind::Verbs];
        if rt.is_skiff() {
            kinds.push(Kind::VerbsOwnWait);
        }
        kinds.push(Kind::Run);
        for kind in kinds {
            cases.push(Case {
                kind,
                runtime: Some(rt.clone()),
                samples: Samples::new(case_name(kind, Some(rt))),
                run_left_container: false,
            });
        }
    }

    eprintln!(
        "lifecycle: {} cases x {runs} runs (+{warmup} warm-up), rotating order; load average {}",
        cases.len(),
        loadavg()
    );
    let n = cases.len();
    let started = Instant::now();
    for iteration in 0..warmup + runs {
        for k in 0..n {
            let index = (iteration + k) % n;
            let case = &mut cases[index];
            let id = format!("{}{index}-{iteration}", cleanup.id_prefix);
            let result = one_lifecycle(case, &ctx, &id);
            if result.is_err()
                && let Some(rt) = &case.runtime
            {
                let _ = rt
                    .cmd(["delete", "--force", &id])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
            if iteration >= warmup {
                case.samples.record(result);
            } else if let Err(e) = result {
                eprintln!("warm-up: {}: {e}", case.samples.name);
            }
        }
        if (iteration + 1) % 10 == 0 {
            eprintln!(
                "  {}/{} iterations, {:.0} s",
                iteration + 1,
                warmup + runs,
                started.elapsed().as_secs_f64()
            );
        }
    }
    for case in &mut cases {
        if case.run_left_container {
            case.samples.note =
                Some("`run` left the container behind; a `delete` is included in the time".into());
        }
    }

    let rows: Vec<&Samples> = cases.iter().map(|c| &c.samples).collect();
    print_table(
        &format!(
            "Container lifecycle, /bin/true from one bundle ({runs} runs each, alternating; load average now {})",
            loadavg()
        ),
        &rows,
    );

    let kept: Vec<&str> = cases
        .iter()
        .filter(|c| c.run_left_container)
        .filter_map(|c| c.runtime.as_ref().map(|r| r.name))
        .collect();
    if kept.is_empty() {
        println!(
            "  every runtime's foreground `run` deleted its container itself (no delete timed)"
        );
    }

    // Leftovers after the runtimes' own deletes (correctness, not speed).
    let leftover_containers = cleanup.delete_leftover_containers();
    let leftover_cgroups = cleanup.remove_leftover_cgroups();
    if leftover_containers.is_empty() && leftover_cgroups.is_empty() {
        println!("  no containers or cgroups left behind by any runtime");
    } else {
        println!(
            "  left behind (now removed): {} container(s) {:?}, {} cgroup dir(s) {:?}",
            leftover_containers.len(),
            leftover_containers.iter().take(5).collect::<Vec<_>>(),
            leftover_cgroups.len(),
            leftover_cgroups.iter().take(5).collect::<Vec<_>>()
        );
    }

    // Targets.
    let median = |kind: Kind, name: &str| {
        cases
            .iter()
            .find(|c| c.kind == kind && c.runtime.as_ref().is_some_and(|r| r.name == name))
            .and_then(|c| c.samples.median())
    };
    let floor = cases[0].samples.median();
    println!(
        "\nTargets (issue: Skiff faster than runc, ≈33 ms here, and no slower than crun, ≈20 ms; bare unshare ≈7 ms is the floor):"
    );
    for (kind, label) in [
        (Kind::Verbs, "create+start+wait+delete"),
        (Kind::Run, "run"),
    ] {
        let Some(skiff) = median(kind, "skiff") else {
            println!("  {label}: no Skiff numbers");
            continue;
        };
        let fmt = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
        match median(kind, "runc") {
            Some(runc) => println!(
                "  {} {label}: Skiff median {} < runc median {}",
                if skiff < runc { "PASS" } else { "MISS" },
                fmt(skiff),
                fmt(runc)
            ),
            None => println!("  ---- {label}: no runc numbers"),
        }
        match median(kind, "crun") {
            Some(crun) => println!(
                "  {} {label}: Skiff median {} <= crun median {}",
                if skiff <= crun { "PASS" } else { "MISS" },
                fmt(skiff),
                fmt(crun)
            ),
            None => println!("  ---- {label}: no crun numbers"),
        }
        if let Some(floor) = floor {
            println!(
                "       {label}: Skiff is {:.1}x the unshare floor ({}), {} above it",
                skiff.as_secs_f64() / floor.as_secs_f64(),
                fmt(floor),
                fmt(skiff.saturating_sub(floor))
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Part 2: pulling an image from a local registry.

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn registry_ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200") || buf.starts_with("HTTP/1.0 200")
}

fn start_registry(cleanup: &mut Cleanup, dir: &Path) -> Result<u16, String> {
    let port = free_port();
    let storage = dir.join("storage");
    std::fs::create_dir_all(&storage).map_err(|e| e.to_string())?;
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        ),
    )
    .map_err(|e| e.to_string())?;
    let log = File::create(dir.join("registry.log")).map_err(|e| e.to_string())?;
    let child = Command::new(env_path("RUNTIME_BENCH_REGISTRY", "docker-registry"))
        .arg("serve")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting docker-registry: {e}"))?;
    cleanup.registry = Some(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if registry_ready(port) {
            return Ok(port);
        }
        if let Some(Ok(Some(status))) = cleanup.registry.as_mut().map(|c| c.try_wait()) {
            let log = std::fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
            return Err(format!("docker-registry exited ({status}): {log}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("docker-registry did not answer /v2/ within 15 s".into())
}

fn du_bytes(path: &Path) -> u64 {
    fn walk(p: &Path, total: &mut u64) {
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            return;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(p) {
                for e in entries.flatten() {
                    walk(&e.path(), total);
                }
            }
        } else {
            *total += meta.len();
        }
    }
    let mut total = 0;
    walk(path, &mut total);
    total
}

fn pull_bench(cleanup: &mut Cleanup, tmp: &Path, skiff: &Path) {
    let pulls: usize = env_or("RUNTIME_BENCH_PULLS", 10);
    let repulls: usize = env_or("RUNTIME_BENCH_REPULLS", 5);
    if pulls == 0 {
        return;
    }
    let dir = tmp.join("pull");
    let fixture = dir.join("busybox-oci");
    std::fs::create_dir_all(&dir).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fixtures/busybox-image.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(&fixture)
        .output()
        .expect("running busybox-image.sh");
    if !out.status.success() {
        println!(
            "\nimage pull: skipped, busybox-image.sh failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return;
    }
    let port = match start_registry(cleanup, &dir.join("registry")) {
        Ok(p) => p,
        Err(e) => {
            println!("\nimage pull: skipped, {e}");
            return;
        }
    };
    let host = format!("127.0.0.1:{port}");
    let reference = format!("{host}/busybox:latest");
    let errlog = dir.join("stderr");
    if let Err(e) = exec(
        Command::new("skopeo")
            .args([
                "--insecure-policy",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
            ])
            .arg(format!("oci:{}:busybox", fixture.display()))
            .arg(format!("docker://{reference}")),
        &errlog,
    ) {
        println!("\nimage pull: skipped, pushing the fixture failed: {e}");
        return;
    }
    let layer_bytes = du_bytes(&fixture.join("blobs"));
    eprintln!(
        "image pull: registry on {host}, busybox pushed ({layer_bytes} bytes of blobs); {pulls} pulls each"
    );

    let skiff_pull = |data_root: &Path| -> Result<Duration, String> {
        let t0 = Instant::now();
        exec(
            Command::new(skiff)
                .arg("runtime")
                .arg("--root")
                .arg(dir.join("skiff-state"))
                .arg("--data-root")
                .arg(data_root)
                .args(["pull", "--quiet", "--insecure-registry", &host, &reference]),
            &errlog,
        )?;
        Ok(t0.elapsed())
    };
    let skopeo_copy = |layout: &Path| -> Result<Duration, String> {
        let t0 = Instant::now();
        exec(
            Command::new("skopeo")
                .args([
                    "--insecure-policy",
                    "copy",
                    "--quiet",
                    "--src-tls-verify=false",
                ])
                .arg(format!("docker://{reference}"))
                .arg(format!("oci:{}:busybox", layout.display())),
            &errlog,
        )?;
        Ok(t0.elapsed())
    };
    let umoci_unpack = |layout: &Path, bundle: &Path| -> Result<Duration, String> {
        let t0 = Instant::now();
        exec(
            Command::new("umoci")
                .args(["unpack", "--image"])
                .arg(format!("{}:busybox", layout.display()))
                .arg(bundle),
            &errlog,
        )?;
        Ok(t0.elapsed())
    };

    let mut skiff_fresh = Samples::new("skiff runtime pull, fresh data root (download + unpack)");
    let mut skiff_again = Samples::new("skiff runtime pull, populated store (nothing fetched)");
    let mut skopeo = Samples::new("skopeo copy docker:// -> oci: (download)");
    let mut umoci = Samples::new("umoci unpack (unpack only)");
    let mut skopeo_umoci = Samples::new("skopeo copy + umoci unpack (download + unpack)");
    let have_skopeo_peer = Command::new("umoci")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());

    // One warm-up of each (page cache, registry's first-request costs).
    let _ = skiff_pull(&dir.join("warm-skiff"));
    let _ = std::fs::remove_dir_all(dir.join("warm-skiff"));
    if have_skopeo_peer {
        let _ = std::fs::create_dir_all(dir.join("warm-skopeo"));
        let _ = skopeo_copy(&dir.join("warm-skopeo/layout"));
        let _ = std::fs::remove_dir_all(dir.join("warm-skopeo"));
    }

    let mut skiff_unpacked = 0;
    for i in 0..pulls {
        let order = if i % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            if which == 0 {
                let root = dir.join(format!("skiff-{i}"));
                skiff_fresh.record(skiff_pull(&root));
                if i == 0 {
                    skiff_unpacked = du_bytes(&root);
                }
                if i + 1 < pulls {
                    let _ = std::fs::remove_dir_all(&root);
                }
            } else if have_skopeo_peer {
                let base = dir.join(format!("skopeo-{i}"));
                let layout = base.join("layout");
                let _ = std::fs::create_dir_all(&base);
                let copy = skopeo_copy(&layout);
                let unpack = copy
                    .as_ref()
                    .map_err(Clone::clone)
                    .and_then(|_| umoci_unpack(&layout, &base.join("bundle")));
                if let (Ok(c), Ok(u)) = (&copy, &unpack) {
                    skopeo_umoci.record(Ok(*c + *u));
                } else {
                    skopeo_umoci.record(Err(copy
                        .clone()
                        .err()
                        .or(unpack.clone().err())
                        .unwrap_or_default()));
                }
                skopeo.record(copy);
                umoci.record(unpack);
                let _ = std::fs::remove_dir_all(&base);
            }
        }
    }
    // Re-pulls into the last (populated) store.
    let populated = dir.join(format!("skiff-{}", pulls - 1));
    for _ in 0..repulls {
        skiff_again.record(skiff_pull(&populated));
    }
    let _ = std::fs::remove_dir_all(&populated);

    let mut rows = vec![&skiff_fresh, &skiff_again];
    if have_skopeo_peer {
        rows.extend([&skopeo, &umoci, &skopeo_umoci]);
    }
    print_table(
        &format!(
            "Image pull from a local docker-registry on 127.0.0.1 (busybox: {:.1} MiB of blobs; Skiff's data root after a pull: {:.1} MiB; load average now {})",
            layer_bytes as f64 / 1048576.0,
            skiff_unpacked as f64 / 1048576.0,
            loadavg()
        ),
        &rows,
    );
    cleanup.stop_registry();
}

// ---------------------------------------------------------------------------------------------

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    // SAFETY: geteuid has no preconditions.
    if unsafe { geteuid() } != 0 {
        eprintln!("the runtime benchmark must run as root (namespaces, cgroups, mounts)");
        std::process::exit(1);
    }
    let skiff = env_path("SKIFF_BENCH_BIN", env!("CARGO_BIN_EXE_skiff"));
    let runc = env_path("RUNTIME_BENCH_RUNC", "/usr/sbin/runc");
    let crun = env_path("RUNTIME_BENCH_CRUN", "/usr/bin/crun");
    let wanted: String = env_or("RUNTIME_BENCH_RUNTIMES", "skiff,runc,crun".to_string());

    let tmp_parent = env_path(
        "RUNTIME_BENCH_TMPDIR",
        &std::env::temp_dir().to_string_lossy(),
    );
    let tmp = tempfile::Builder::new()
        .prefix("skiff-runtime-bench-")
        .tempdir_in(&tmp_parent)
        .expect("creating a temp dir");
    let tmp_path = tmp.path().to_path_buf();
    let mut cleanup = Cleanup {
        runtimes: Vec::new(),
        id_prefix: format!("rtb{}-", std::process::id()),
        hugetlb: None,
        registry: None,
        tmp: Some(tmp),
    };

    let version = |bin: &Path, args: &[&str]| {
        Command::new(bin)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string()
            })
    };
    let mut runtimes = Vec::new();
    for name in wanted.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let root = tmp_path.join(format!("state-{name}"));
        let (bin, prefix) = match name {
            "skiff" => (
                skiff.clone(),
                vec![
                    "runtime".to_string(),
                    "--root".into(),
                    root.to_string_lossy().into(),
                ],
            ),
            "runc" => (
                runc.clone(),
                vec!["--root".to_string(), root.to_string_lossy().into()],
            ),
            "crun" => (
                crun.clone(),
                vec!["--root".to_string(), root.to_string_lossy().into()],
            ),
            other => {
                panic!("RUNTIME_BENCH_RUNTIMES: unknown runtime {other:?} (skiff, runc, crun)")
            }
        };
        let v = if name == "skiff" {
            Some(format!("skiff ({})", bin.display()))
        } else {
            version(&bin, &["--version"])
        };
        match v {
            Some(v) => {
                println!("{name}: {v}");
                runtimes.push(Runtime {
                    name: match name {
                        "skiff" => "skiff",
                        "runc" => "runc",
                        _ => "crun",
                    },
                    bin,
                    prefix,
                    root,
                });
            }
            None => println!("{name}: {} not usable, left out", bin.display()),
        }
    }
    println!(
        "machine: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );

    lifecycle_bench(&mut cleanup, &tmp_path, runtimes);
    if wanted.contains("skiff") {
        pull_bench(&mut cleanup, &tmp_path, &skiff);
    }
    drop(cleanup);
}
