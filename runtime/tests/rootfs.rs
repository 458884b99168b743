//! Real-mount tests of the container root filesystem setup (run as root).
//!
//! Each test builds a tiny busybox rootfs in a temp dir, writes a spec, and re-runs this test
//! binary as a child selecting the hidden `rootfs_child_entry`. That child forks (the libtest
//! process is multi-threaded, and unshare(CLONE_NEWNS) needs a single-threaded caller), the fork
//! unshares mount/pid/uts/ipc(/net) namespaces and forks again so the grandchild is pid 1 of the new
//! pid namespace; the grandchild calls `prepare_rootfs` and `finalize_rootfs` and execs
//! `/bin/busybox sh -c <checks>`, whose `@key=value` lines the test asserts.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use oci_spec::runtime::{
    LinuxDeviceBuilder, LinuxDeviceType, Mount, MountBuilder, Spec, get_default_mounts,
};
use skiff_runtime::container::rootfs::{finalize_rootfs, prepare_rootfs};

const ENV_SPEC: &str = "SKIFF_ROOTFS_TEST_SPEC";
const ENV_BUNDLE: &str = "SKIFF_ROOTFS_TEST_BUNDLE";
const ENV_SCRIPT: &str = "SKIFF_ROOTFS_TEST_SCRIPT";
const ENV_NO_NETNS: &str = "SKIFF_ROOTFS_TEST_NO_NETNS";

const APPLETS: &[&str] = &[
    "sh", "ls", "cat", "mount", "touch", "stat", "readlink", "grep", "wc", "head", "cut", "echo",
];

// ---------------------------------------------------------------------------------------------
// The child side.

/// Not a test: the entry point of the child process the other tests spawn.
#[test]
#[ignore = "entry point of the child process spawned by the other tests"]
fn rootfs_child_entry() {
    let (Ok(spec), Ok(bundle), Ok(script)) = (
        std::env::var(ENV_SPEC),
        std::env::var(ENV_BUNDLE),
        std::env::var(ENV_SCRIPT),
    ) else {
        return;
    };
    let netns = std::env::var_os(ENV_NO_NETNS).is_none();
    let spec = Spec::load(&spec).expect("load spec");
    // SAFETY: the fork's child only runs single-threaded code and ends in _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        panic!("fork: {}", std::io::Error::last_os_error());
    }
    if pid == 0 {
        let code = intermediate(&spec, Path::new(&bundle), &script, netns);
        // SAFETY: leaving the forked child without running the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    let code = wait_for(pid);
    std::process::exit(code);
}

fn wait_for(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    loop {
        // SAFETY: plain waitpid on our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return 125;
        }
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    }
}

fn die_with_parent() {
    // SAFETY: prctl with plain integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
}

/// In the (single-threaded) fork: new namespaces, then the container's pid 1.
fn intermediate(spec: &Spec, bundle: &Path, script: &str, netns: bool) -> i32 {
    die_with_parent();
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if netns {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: unshare with flags only.
    if unsafe { libc::unshare(flags) } != 0 {
        eprintln!("@error=unshare: {}", std::io::Error::last_os_error());
        return 120;
    }
    // SAFETY: as above; the grandchild execs or _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return 119;
    }
    if pid == 0 {
        die_with_parent();
        let code = container_init(spec, bundle, script);
        // SAFETY: see above.
        unsafe { libc::_exit(code) };
    }
    wait_for(pid)
}

/// Pid 1 of the new pid namespace: the code under test, then the checks.
fn container_init(spec: &Spec, bundle: &Path, script: &str) -> i32 {
    let start = std::time::Instant::now();
    let cpu_start = thread_cpu_us();
    if let Err(e) = prepare_rootfs(spec, bundle) {
        println!("@prepare_error={e}");
        return 121;
    }
    if let Err(e) = finalize_rootfs(spec) {
        println!("@finalize_error={e}");
        return 122;
    }
    println!(
        "\n@setup_us={} wall, {} cpu",
        start.elapsed().as_micros(),
        thread_cpu_us() - cpu_start
    );
    let (Ok(prog), Ok(a0), Ok(a1), Ok(a2), Ok(env)) = (
        CString::new("/bin/busybox"),
        CString::new("sh"),
        CString::new("-c"),
        CString::new(script),
        CString::new("PATH=/bin"),
    ) else {
        return 123;
    };
    let argv = [a0.as_ptr(), a1.as_ptr(), a2.as_ptr(), std::ptr::null()];
    let envp = [env.as_ptr(), std::ptr::null()];
    // SAFETY: NUL-terminated strings and NULL-terminated arrays that outlive the call.
    unsafe { libc::execve(prog.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    println!("@exec_error={}", std::io::Error::last_os_error());
    124
}

/// CPU time of this thread (user + system), in microseconds: unlike wall time, not inflated by a
/// busy machine.
fn thread_cpu_us() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec * 1_000_000 + ts.tv_nsec / 1000
}

// ---------------------------------------------------------------------------------------------
// The test side.

/// A temp dir that, whatever happens, gets every mount under it lazily unmounted before removal.
struct Sandbox {
    dir: Option<tempfile::TempDir>,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("skiff-rootfs-test")
            .tempdir()
            .expect("temp dir");
        Sandbox { dir: Some(dir) }
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().expect("live sandbox").path()
    }

    /// Removes the directory, failing if that is not possible.
    fn close(mut self) -> std::io::Result<()> {
        match self.dir.take() {
            Some(d) => d.close(),
            None => Ok(()),
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            for mp in mounts_under(d.path()) {
                if let Ok(c) = CString::new(mp.as_os_str().as_bytes()) {
                    // SAFETY: a NUL-terminated path.
                    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
                }
            }
        }
    }
}

/// Mount points in this (the host's) mount namespace at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut out: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|f| PathBuf::from(f.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    out.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    out
}

/// Makes `bundle/rootfs` with busybox and its applet links. Returns the rootfs path.
fn make_rootfs(bundle: &Path) -> PathBuf {
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir rootfs/bin");
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
    for a in APPLETS {
        symlink("busybox", rootfs.join("bin").join(a)).expect("applet link");
    }
    rootfs
}

fn bind(src: &Path, dest: &str, opts: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(src)
        .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .expect("mount")
}

fn tmpfs(dest: &str) -> Mount {
    MountBuilder::default()
        .destination(dest)
        .typ("tmpfs")
        .source("tmpfs")
        .options(vec!["nosuid".to_string(), "size=64k".to_string()])
        .build()
        .expect("mount")
}

struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
    kv: BTreeMap<String, String>,
}

impl Outcome {
    fn get(&self, k: &str) -> &str {
        self.kv.get(k).map(String::as_str).unwrap_or_else(|| {
            panic!(
                "no @{k} in the child's output\nstdout:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs `script` in a container made from `spec` (bundle dir `bundle`).
fn run_container(spec: &Spec, bundle: &Path, script: &str, netns: bool) -> Outcome {
    let spec_path = bundle.join("config.json");
    spec.save(&spec_path).expect("write config.json");
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "rootfs_child_entry",
        "--nocapture",
        "--ignored",
        "--test-threads=1",
    ])
    .env(ENV_SPEC, &spec_path)
    .env(ENV_BUNDLE, bundle)
    .env(ENV_SCRIPT, script)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    if !netns {
        cmd.env(ENV_NO_NETNS, "1");
    }
    let child = cmd.spawn().expect("spawn the child test process");
    let pid = child.id() as libc::pid_t;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(r) => r.expect("wait for the child"),
        Err(_) => {
            // SAFETY: killing the child this test spawned, by its pid.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("the container child timed out");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let kv = stdout
        .lines()
        .chain(stderr.lines())
        // The first line may follow libtest's "test rootfs_child_entry ... ".
        .map(|l| l.split_once(" ... ").map_or(l, |(_, rest)| rest))
        .filter_map(|l| l.strip_prefix('@'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_end().to_string()))
        .collect();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stdout,
        stderr,
        kv,
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn full_container_view() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let sb = Sandbox::new();
    let tmp = sb.path().to_path_buf();
    let bundle = tmp.join("bundle");
    let rootfs = make_rootfs(&bundle);
    std::fs::write(rootfs.join("marker"), "skiff-rootfs-marker\n").expect("marker");
    std::fs::write(rootfs.join("secret"), "secret-data\n").expect("secret");
    std::fs::create_dir(rootfs.join("secretdir")).expect("mkdir");
    std::fs::write(rootfs.join("secretdir/file"), "secret-data\n").expect("secret");
    // Symlinks in the image that point outside the rootfs if followed on the host.
    symlink("/etc", rootfs.join("evil")).expect("symlink");
    symlink("../../../../../../../../etc", rootfs.join("evil2")).expect("symlink");
    symlink("/made/by/dangling", rootfs.join("dangling")).expect("symlink");
    let evil_name = format!("skiff-rootfs-test-{}", std::process::id());
    assert!(!Path::new("/etc").join(&evil_name).exists());
    assert!(!Path::new("/made").exists());

    let shared = tmp.join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::write(shared.join("from_host"), "host-data\n").expect("write");
    let ro = tmp.join("ro");
    std::fs::create_dir(&ro).expect("mkdir");
    std::fs::write(ro.join("file"), "ro-data\n").expect("write");
    let hosts = tmp.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 skiff-test-host\n").expect("write");

    let mut spec = Spec::default();
    let mut mounts = get_default_mounts();
    mounts.extend([
        bind(&shared, "/mnt/shared", &["rbind", "rw"]),
        bind(&ro, "/mnt/ro", &["bind", "ro", "nosuid", "nodev"]),
        bind(&hosts, "/etc/hosts", &["bind", "ro"]),
        tmpfs(&format!("/evil/{evil_name}")),
        bind(&hosts, &format!("/evil2/{evil_name}.file"), &["bind"]),
        tmpfs("/dangling/sub"),
    ]);
    spec.set_mounts(Some(mounts));
    let linux = spec.linux_mut().as_mut().expect("linux");
    let mut masked = linux.masked_paths().clone().unwrap_or_default();
    masked.extend(["/secret".to_string(), "/secretdir".to_string()]);
    linux.set_masked_paths(Some(masked));
    linux.set_devices(Some(vec![
        LinuxDeviceBuilder::default()
            .path("/dev/skiff/fuse")
            .typ(LinuxDeviceType::C)
            .major(10)
            .minor(229)
            .file_mode(0o600u32)
            .uid(1000u32)
            .gid(1001u32)
            .build()
            .expect("device"),
    ]));
    // Spec::default(): root "rootfs" (relative to the bundle), read-only, the default masked and
    // read-only paths.
    let script = format!(
        r#"
echo "@root=$(echo $(ls /))"
echo "@marker=$(cat /marker)"
echo "@pid=$$"
echo "@exe1=$(readlink /proc/1/exe) $(head -c 2 /proc/1/cmdline)"
echo "@procmount=$(grep -c '^proc /proc proc ' /proc/mounts)"
if (echo x > /proc/sys/kernel/domainname) 2>/dev/null; then echo @procsys=rw; else echo @procsys=ro; fi
echo "@secret=$(stat -c '%F %t:%T' /secret) $(wc -c < /secret)"
echo "@secretdir=$(ls /secretdir | wc -l) $(grep -c ' /secretdir tmpfs ro,' /proc/mounts)"
echo "@keys=$(stat -c '%t:%T' /proc/keys 2>/dev/null || echo absent)"
if [ -e /proc/kcore ]; then echo "@kcore=$(stat -c '%t:%T' /proc/kcore) $(wc -c < /proc/kcore)"; else echo "@kcore=absent"; fi
echo "@acpi=$(ls /proc/acpi 2>&1 | wc -l) $(grep -c ' /proc/acpi tmpfs ro' /proc/mounts)"
echo "@sysmount=$(grep ' /sys sysfs ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1)"
if touch /sys/x 2>/dev/null; then echo @systouch=ok; else echo @systouch=fail; fi
echo "@cgroup=$(grep -c ' /sys/fs/cgroup/memory cgroup ro,' /proc/mounts)"
if touch /sys/fs/cgroup/memory/x 2>/dev/null; then echo @cgtouch=ok; else echo @cgtouch=fail; fi
echo "@dev=$(echo $(ls /dev))"
for n in null zero full random urandom tty; do echo "@dev_$n=$(stat -c '%F %t:%T %a' /dev/$n)"; done
echo "@fuse=$(stat -c '%F %t:%T %a %u:%g' /dev/skiff/fuse)"
echo "@links=$(readlink /dev/ptmx) $(readlink /dev/fd) $(readlink /dev/stdin) $(readlink /dev/stdout) $(readlink /dev/stderr) $(readlink /dev/core)"
exec 3<>/dev/ptmx && echo "@pts=$(echo $(ls /dev/pts))"
exec 3>&-
echo "@ptsmount=$(grep -c ' /dev/pts devpts ' /proc/mounts)"
echo shm-data > /dev/shm/x && echo "@shm=$(cat /dev/shm/x)"
echo "@mqueue=$(grep -c ' /dev/mqueue mqueue ' /proc/mounts)"
echo "@shared=$(cat /mnt/shared/from_host)"
echo container-data > /mnt/shared/from_container && echo @shared_write=ok
echo "@ro=$(cat /mnt/ro/file)"
if (echo x > /mnt/ro/new) 2>/dev/null; then echo @ro_write=ok; else echo @ro_write=fail; fi
echo "@hosts=$(cat /etc/hosts)"
if touch /x 2>/dev/null; then echo @root_write=ok; else echo @root_write=fail; fi
echo "@evil_dir=$(grep -c ' /etc/{evil_name} tmpfs ' /proc/mounts)"
echo "@evil_file=$(cat /etc/{evil_name}.file)"
echo "@dangling=$(grep -c ' /made/by/dangling/sub tmpfs ' /proc/mounts)"
echo @done=1
"#
    );
    let out = run_container(&spec, &bundle, &script, true);
    let ctx = format!("stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert_eq!(out.code, 0, "{ctx}");
    assert_eq!(out.get("done"), "1");
    // The container's / is the rootfs.
    assert_eq!(
        out.get("root"),
        "bin dangling dev etc evil evil2 made marker mnt proc secret secretdir sys",
        "{ctx}"
    );
    assert_eq!(out.get("marker"), "skiff-rootfs-marker");
    // /proc of the new pid namespace, and we are its pid 1.
    assert_eq!(out.get("pid"), "1");
    assert_eq!(out.get("exe1"), "/bin/busybox sh");
    assert_eq!(out.get("procmount"), "1");
    assert_eq!(out.get("procsys"), "ro");
    // Masked: a file by /dev/null, a directory by an empty read-only tmpfs.
    assert_eq!(out.get("secret"), "character special file 1:3 0", "{ctx}");
    assert_eq!(out.get("secretdir"), "0 1", "{ctx}");
    let kcore = if Path::new("/proc/kcore").exists() {
        "1:3 0"
    } else {
        "absent"
    };
    assert_eq!(out.get("kcore"), kcore);
    let keys = if Path::new("/proc/keys").exists() {
        "1:3"
    } else {
        "absent"
    };
    assert_eq!(out.get("keys"), keys);
    eprintln!("prepare+finalize took {} us", out.get("setup_us"));
    assert_eq!(out.get("acpi"), "0 1", "{ctx}");
    assert_eq!(out.get("sysmount"), "ro");
    assert_eq!(out.get("systouch"), "fail");
    assert_eq!(out.get("cgroup"), "1", "{ctx}");
    assert_eq!(out.get("cgtouch"), "fail");
    // /dev: exactly the defaults, the spec's device, and the mounts.
    assert_eq!(
        out.get("dev"),
        "core fd full mqueue null ptmx pts random shm skiff stderr stdin stdout tty urandom zero"
    );
    for (n, mm) in [
        ("null", "1:3"),
        ("zero", "1:5"),
        ("full", "1:7"),
        ("random", "1:8"),
        ("urandom", "1:9"),
        ("tty", "5:0"),
    ] {
        assert_eq!(
            out.get(&format!("dev_{n}")),
            format!("character special file {mm} 666")
        );
    }
    assert_eq!(out.get("fuse"), "character special file a:e5 600 1000:1001");
    assert_eq!(
        out.get("links"),
        "pts/ptmx /proc/self/fd /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2 /proc/kcore"
    );
    assert_eq!(out.get("pts"), "0 ptmx");
    assert_eq!(out.get("ptsmount"), "1");
    assert_eq!(out.get("shm"), "shm-data");
    assert_eq!(out.get("mqueue"), "1");
    // Bind mounts.
    assert_eq!(out.get("shared"), "host-data");
    assert_eq!(out.get("shared_write"), "ok");
    assert_eq!(
        std::fs::read_to_string(shared.join("from_container")).expect("written by the container"),
        "container-data\n"
    );
    assert_eq!(out.get("ro"), "ro-data");
    assert_eq!(out.get("ro_write"), "fail");
    assert!(!ro.join("new").exists());
    assert_eq!(out.get("hosts"), "127.0.0.1 skiff-test-host");
    // Read-only root.
    assert_eq!(out.get("root_write"), "fail");
    assert!(!rootfs.join("x").exists());
    // Symlinked destinations were resolved inside the rootfs.
    assert_eq!(out.get("evil_dir"), "1", "{ctx}");
    assert_eq!(out.get("evil_file"), "127.0.0.1 skiff-test-host");
    assert_eq!(out.get("dangling"), "1");
    assert!(!Path::new("/etc").join(&evil_name).exists());
    assert!(!Path::new("/etc").join(format!("{evil_name}.file")).exists());
    assert!(!Path::new("/made").exists());
    assert!(rootfs.join("etc").join(&evil_name).is_dir());
    assert!(
        rootfs
            .join("etc")
            .join(format!("{evil_name}.file"))
            .is_file()
    );
    assert!(rootfs.join("made/by/dangling/sub").is_dir());
    assert!(rootfs.join("etc/hosts").is_file());

    // Nothing leaked into the host's mount namespace, and everything can be removed.
    assert_eq!(mounts_under(&tmp), Vec::<PathBuf>::new());
    sb.close().expect("remove the temp dir");
}

#[test]
fn writable_root_without_netns_and_readonly_dev() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let sb = Sandbox::new();
    let tmp = sb.path().to_path_buf();
    let bundle = tmp.join("bundle");
    let rootfs = make_rootfs(&bundle);

    let mut spec = Spec::default();
    let mut mounts = get_default_mounts();
    for m in &mut mounts {
        if m.destination() == Path::new("/dev") {
            let mut o = m.options().clone().unwrap_or_default();
            o.push("ro".into());
            m.set_options(Some(o));
        }
    }
    spec.set_mounts(Some(mounts));
    let root = spec.root_mut().as_mut().expect("root");
    root.set_path(rootfs.clone()); // absolute this time
    root.set_readonly(Some(false));
    let linux = spec.linux_mut().as_mut().expect("linux");
    linux.set_rootfs_propagation(Some("rslave".into()));
    let script = r#"
touch /x && echo @root_write=ok
if touch /dev/y 2>/dev/null; then echo @dev_write=ok; else echo @dev_write=fail; fi
echo "@devmount=$(grep ' /dev tmpfs ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1)"
echo "@null=$(stat -c '%t:%T' /dev/null)"
echo "@sys=$(grep -c ' /sys sysfs ro,' /proc/mounts)"
echo @done=1
"#;
    let out = run_container(&spec, &bundle, script, false);
    let ctx = format!("stdout:\n{}\nstderr:\n{}", out.stdout, out.stderr);
    assert_eq!(out.code, 0, "{ctx}");
    assert_eq!(out.get("done"), "1");
    assert_eq!(out.get("root_write"), "ok");
    assert!(rootfs.join("x").exists());
    assert_eq!(out.get("dev_write"), "fail");
    assert_eq!(out.get("devmount"), "ro");
    assert_eq!(out.get("null"), "1:3");
    assert_eq!(out.get("sys"), "1");
    assert_eq!(mounts_under(&tmp), Vec::<PathBuf>::new());
    sb.close().expect("remove the temp dir");
}

#[test]
fn missing_bind_source_is_reported() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let sb = Sandbox::new();
    let tmp = sb.path().to_path_buf();
    let bundle = tmp.join("bundle");
    make_rootfs(&bundle);
    let mut spec = Spec::default();
    let mut mounts = get_default_mounts();
    mounts.push(bind(&tmp.join("nope"), "/mnt/nope", &["bind"]));
    spec.set_mounts(Some(mounts));
    let out = run_container(&spec, &bundle, "echo @done=1", true);
    assert_eq!(
        out.code, 121,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let err = out.get("prepare_error");
    assert!(err.contains("nope") && err.contains("ENOENT"), "{err}");
    assert_eq!(mounts_under(&tmp), Vec::<PathBuf>::new());
    sb.close().expect("remove the temp dir");
}
