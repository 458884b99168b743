//! Unit tests: mountinfo parsing, conversions, and the v2 code paths against a fake root
//! directory (the development host is hybrid, so real v2 cannot be exercised here).

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResourcesBuilder,
};

use super::mountinfo::{self, Picked};
use super::*;

const HYBRID: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

const PURE_V2: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

const COMOUNTED: &str = "\
25 22 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:28 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,net_cls,net_prio
32 25 0:29 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
33 25 0:30 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,pids
34 25 0:31 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,cpuset,clone_children
";

fn v1_pairs(p: &Picked) -> Vec<(String, String)> {
    match p {
        Picked::V1(v) => v
            .iter()
            .map(|(c, m)| (c.clone(), m.display().to_string()))
            .collect(),
        other => panic!("expected v1, got {other:?}"),
    }
}

#[test]
fn mountinfo_hybrid_uses_v1_with_each_controller() {
    let mounts = mountinfo::parse(HYBRID);
    assert_eq!(mounts.len(), 10, "tmpfs and ext4 are not cgroup mounts");
    assert!(mounts.iter().any(|m| m.v2));
    let pairs = v1_pairs(&mountinfo::pick(&mounts));
    for c in V1_CONTROLLERS {
        let want = format!("/sys/fs/cgroup/{c}");
        assert!(
            pairs.iter().any(|(k, m)| k == c && *m == want),
            "{c} missing in {pairs:?}"
        );
    }
    assert!(!pairs.iter().any(|(k, _)| k == "name=systemd"));

    let h = Hierarchy::from_mountinfo(HYBRID, "test").expect("hybrid");
    assert!(!h.is_v2());
    assert_eq!(
        h.v1_mount("cpuacct"),
        Some(Path::new("/sys/fs/cgroup/cpuacct"))
    );
    let cg = Cgroup::new(&h, "/skiff/pod-a/ctr-b");
    assert_eq!(cg.path(), "skiff/pod-a/ctr-b");
    assert_eq!(cg.dirs().len(), 8);
    assert_eq!(
        cg.dir("memory"),
        Some(Path::new("/sys/fs/cgroup/memory/skiff/pod-a/ctr-b"))
    );
}

#[test]
fn mountinfo_pure_v2() {
    let mounts = mountinfo::parse(PURE_V2);
    assert_eq!(
        mountinfo::pick(&mounts),
        Picked::V2(PathBuf::from("/sys/fs/cgroup"))
    );
}

#[test]
fn mountinfo_comounted_cpu_cpuacct() {
    let pairs = v1_pairs(&mountinfo::pick(&mountinfo::parse(COMOUNTED)));
    let get = |c: &str| pairs.iter().find(|(k, _)| k == c).map(|(_, m)| m.clone());
    assert_eq!(get("cpu").as_deref(), Some("/sys/fs/cgroup/cpu,cpuacct"));
    assert_eq!(
        get("cpuacct").as_deref(),
        Some("/sys/fs/cgroup/cpu,cpuacct")
    );
    assert_eq!(get("cpuset").as_deref(), Some("/sys/fs/cgroup/cpuset"));
    assert_eq!(get("devices"), None);
    assert!(
        get("net_cls").is_none(),
        "controllers we do not use are ignored"
    );

    let h = Hierarchy::from_mountinfo(COMOUNTED, "test").expect("v1");
    let cg = Cgroup::new(&h, "skiff/x");
    // cpu and cpuacct share a directory: 4 distinct mounts, not 5.
    assert_eq!(cg.dirs().len(), 4);
    assert_eq!(cg.dir("cpu"), cg.dir("cpuacct"));
    assert_eq!(
        cg.dir("cpu"),
        Some(Path::new("/sys/fs/cgroup/cpu,cpuacct/skiff/x"))
    );
    assert_eq!(cg.dir("freezer"), None);
}

#[test]
fn mountinfo_systemd_named_only_is_v2_and_nothing_is_an_error() {
    let text = "\
27 25 0:24 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
26 22 0:23 / /run/other\\040cg rw - cgroup2 cgroup2 rw
28 22 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
";
    assert_eq!(
        mountinfo::pick(&mountinfo::parse(text)),
        Picked::V2(PathBuf::from("/sys/fs/cgroup"))
    );
    let mounts = mountinfo::parse(text);
    assert_eq!(mounts[1].mountpoint, PathBuf::from("/run/other cg"));

    let err = Hierarchy::from_mountinfo("22 1 8:1 / / rw - ext4 /dev/vda1 rw\n", "fake")
        .expect_err("no cgroups");
    assert!(err.to_string().contains("fake"), "{err}");
}

#[test]
fn shares_to_weight_matches_runc() {
    assert_eq!(shares_to_weight(0), 0);
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1), 1, "clamped, no underflow");
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(shares_to_weight(1_000_000), 10_000);
    assert_eq!(shares_to_weight(102), 4);
}

#[test]
fn cpu_max_values() {
    assert_eq!(v2::cpu_max(None, None), None);
    assert_eq!(v2::cpu_max(Some(0), Some(0)), None);
    assert_eq!(
        v2::cpu_max(Some(50_000), Some(100_000)).as_deref(),
        Some("50000 100000")
    );
    assert_eq!(
        v2::cpu_max(Some(20_000), None).as_deref(),
        Some("20000 100000")
    );
    assert_eq!(
        v2::cpu_max(Some(-1), Some(50_000)).as_deref(),
        Some("max 50000")
    );
    assert_eq!(
        v2::cpu_max(None, Some(50_000)).as_deref(),
        Some("max 50000")
    );
}

#[test]
fn device_rules_format() {
    let rule = |allow: bool, typ: Option<LinuxDeviceType>, maj, min, access: Option<&str>| {
        let mut b = LinuxDeviceCgroupBuilder::default().allow(allow);
        if let Some(t) = typ {
            b = b.typ(t);
        }
        if let Some(m) = maj {
            b = b.major(m);
        }
        if let Some(m) = min {
            b = b.minor(m);
        }
        if let Some(a) = access {
            b = b.access(a.to_string());
        }
        b.build().expect("rule")
    };
    assert_eq!(
        v1::device_rule(&rule(false, None, None, None, Some("rwm"))),
        "a"
    );
    assert_eq!(
        v1::device_rule(&rule(
            true,
            Some(LinuxDeviceType::C),
            Some(1),
            Some(3),
            Some("rwm")
        )),
        "c 1:3 rwm"
    );
    assert_eq!(
        v1::device_rule(&rule(
            true,
            Some(LinuxDeviceType::C),
            Some(136),
            None,
            Some("rw")
        )),
        "c 136:* rw"
    );
    assert_eq!(
        v1::device_rule(&rule(true, Some(LinuxDeviceType::B), None, None, None)),
        "b *:* rwm"
    );
}

#[test]
fn limits_parse_unlimited() {
    assert_eq!(fsutil::parse_limit("max"), Some(u64::MAX));
    assert_eq!(fsutil::parse_limit("9223372036854771712"), Some(u64::MAX));
    assert_eq!(fsutil::parse_limit("1048576"), Some(1_048_576));
    assert_eq!(fsutil::parse_limit("x"), None);
    assert_eq!(
        fsutil::keyed("a 1\noom_kill 7\noom_group_kill 9\n", "oom_kill"),
        Some(7)
    );
}

#[test]
fn invalid_paths_are_refused() {
    let tmp = FakeV2::new();
    let h = tmp.hierarchy();
    for p in ["", "/", "a/../../etc", "."] {
        let cg = Cgroup::new(&h, p);
        assert!(
            matches!(cg.create(), Err(CgroupError::InvalidPath { .. })),
            "{p:?}"
        );
        assert!(
            matches!(cg.destroy(), Err(CgroupError::InvalidPath { .. })),
            "{p:?}"
        );
        assert!(!cg.exists());
        assert!(cg.procs().is_empty());
    }
}

/// A directory laid out like a cgroup2 root. Unlike cgroupfs, files are not created by the
/// kernel: the test creates those the code writes.
struct FakeV2 {
    dir: tempfile::TempDir,
}

impl FakeV2 {
    fn new() -> FakeV2 {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            dir.path().join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids rdma misc\n",
        )
        .expect("write");
        fs::write(dir.path().join("cgroup.subtree_control"), "").expect("write");
        FakeV2 { dir }
    }
    fn root(&self) -> &Path {
        self.dir.path()
    }
    fn hierarchy(&self) -> Hierarchy {
        Hierarchy::v2(self.root()).expect("fake v2")
    }
    fn mkdir(&self, rel: &str, files: &[&str]) -> PathBuf {
        let d = self.root().join(rel);
        fs::create_dir_all(&d).expect("mkdir");
        for f in files {
            fs::write(d.join(f), "").expect("write");
        }
        d
    }
    fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.root().join(rel)).expect("read")
    }
}

#[test]
fn v2_detect_from_mountinfo_reads_controllers() {
    let fake = FakeV2::new();
    let text = format!(
        "26 22 0:23 / {} rw - cgroup2 cgroup2 rw\n",
        fake.root().display()
    );
    let h = Hierarchy::from_mountinfo(&text, "test").expect("v2");
    assert!(h.is_v2());
    assert_eq!(h.v2_root(), Some(fake.root()));
    assert_eq!(
        h.v2_controllers(),
        &["cpuset", "cpu", "io", "memory", "pids"]
    );
    assert_eq!(h.v1_mount("cpu"), None);
}

#[test]
fn v2_create_enables_controllers_in_ancestors_only() {
    let fake = FakeV2::new();
    fake.mkdir("skiff", &["cgroup.subtree_control"]);
    fake.mkdir("skiff/pod-a", &["cgroup.subtree_control"]);
    let h = fake.hierarchy();
    let cg = Cgroup::new(&h, "skiff/pod-a/ctr-b");
    assert!(!cg.exists());
    cg.create().expect("create");
    assert!(cg.exists());
    let want = "+cpuset +cpu +io +memory +pids";
    assert_eq!(fake.read("cgroup.subtree_control"), want);
    assert_eq!(fake.read("skiff/cgroup.subtree_control"), want);
    assert_eq!(fake.read("skiff/pod-a/cgroup.subtree_control"), want);
    assert!(
        !fake
            .root()
            .join("skiff/pod-a/ctr-b/cgroup.subtree_control")
            .exists()
    );
    // Idempotent.
    cg.create().expect("create again");
}

#[test]
fn v2_apply_writes_converted_values() {
    let fake = FakeV2::new();
    let files = [
        "cpu.weight",
        "cpu.max",
        "cpuset.cpus",
        "cpuset.mems",
        "memory.max",
        "memory.swap.max",
        "memory.low",
        "pids.max",
    ];
    fake.mkdir("skiff/c1", &files);
    let h = fake.hierarchy();
    let cg = Cgroup::new(&h, "skiff/c1");
    let res = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .shares(1024u64)
                .quota(50_000i64)
                .period(100_000u64)
                .cpus("0")
                .mems("0")
                .build()
                .expect("cpu"),
        )
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .reservation(32 << 20)
                .build()
                .expect("mem"),
        )
        .pids(LinuxPidsBuilder::default().limit(10).build().expect("pids"))
        .devices(vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .expect("dev"),
        ])
        .build()
        .expect("resources");
    cg.apply(&res).expect("apply");
    assert_eq!(fake.read("skiff/c1/cpu.weight"), "39");
    assert_eq!(fake.read("skiff/c1/cpu.max"), "50000 100000");
    assert_eq!(fake.read("skiff/c1/cpuset.cpus"), "0");
    assert_eq!(fake.read("skiff/c1/memory.max"), (64u64 << 20).to_string());
    assert_eq!(fake.read("skiff/c1/memory.swap.max"), "0");
    assert_eq!(fake.read("skiff/c1/memory.low"), (32u64 << 20).to_string());
    assert_eq!(fake.read("skiff/c1/pids.max"), "10");

    // Update in place: unlimited pids and memory, explicit swap.
    let res = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(100i64)
                .swap(300i64)
                .build()
                .expect("mem"),
        )
        .pids(LinuxPidsBuilder::default().limit(-1).build().expect("pids"))
        .build()
        .expect("resources");
    cg.apply(&res).expect("apply again");
    assert_eq!(fake.read("skiff/c1/memory.max"), "100");
    assert_eq!(fake.read("skiff/c1/memory.swap.max"), "200");
    assert_eq!(fake.read("skiff/c1/pids.max"), "max");

    let res = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(-1)
                .build()
                .expect("mem"),
        )
        .cpu(LinuxCpuBuilder::default().quota(-1).build().expect("cpu"))
        .build()
        .expect("resources");
    cg.apply(&res).expect("apply unlimited");
    assert_eq!(fake.read("skiff/c1/memory.max"), "max");
    assert_eq!(fake.read("skiff/c1/memory.swap.max"), "max");
    assert_eq!(fake.read("skiff/c1/cpu.max"), "max 100000");

    let bad = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(300i64)
                .swap(100i64)
                .build()
                .expect("mem"),
        )
        .build()
        .expect("resources");
    let err = cg.apply(&bad).expect_err("swap below memory");
    assert!(matches!(err, CgroupError::InvalidResources { .. }), "{err}");
}

#[test]
fn v2_apply_error_names_file_and_errno() {
    let fake = FakeV2::new();
    fake.mkdir("skiff/c2", &[]);
    let h = fake.hierarchy();
    let cg = Cgroup::new(&h, "skiff/c2");
    let res = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(5).build().expect("pids"))
        .build()
        .expect("resources");
    let err = cg.apply(&res).expect_err("no pids.max in the fake");
    let msg = err.to_string();
    assert!(msg.contains("pids.max"), "{msg}");
    assert!(msg.contains("write \"5\""), "{msg}");
    assert_eq!(err.errno(), Some(libc::ENOENT), "{msg}");
}

#[test]
fn v2_stats_and_oom_from_files() {
    let fake = FakeV2::new();
    let d = fake.mkdir("skiff/c3", &[]);
    fs::write(
        d.join("cpu.stat"),
        "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
    )
    .expect("write");
    fs::write(d.join("memory.current"), "1048576\n").expect("write");
    fs::write(
        d.join("memory.stat"),
        "anon 524288\nfile 524288\nactive_file 4096\ninactive_file 8192\n",
    )
    .expect("write");
    fs::write(d.join("memory.max"), "max\n").expect("write");
    fs::write(d.join("pids.current"), "3\n").expect("write");
    fs::write(
        d.join("memory.events"),
        "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n",
    )
    .expect("write");
    let h = fake.hierarchy();
    let cg = Cgroup::new(&h, "skiff/c3");
    assert_eq!(
        cg.stats(),
        CgroupStats {
            cpu_usage_nanos: 1_500_000,
            memory_usage_bytes: 1_048_576,
            memory_working_set_bytes: 1_048_576 - 8192,
            memory_limit_bytes: u64::MAX,
            pids_current: 3,
            oom_kill_count: 2,
        }
    );
    assert_eq!(cg.oom_kill_count(), 2);
    fs::write(d.join("cgroup.procs"), "").expect("write");
    assert!(cg.procs().is_empty());
    // No cgroup.kill in the fake and no processes: nothing to do.
    cg.kill_all(nix::sys::signal::Signal::SIGKILL)
        .expect("kill_all");

    let missing = Cgroup::new(&h, "skiff/none");
    assert_eq!(missing.stats(), CgroupStats::default());
    assert_eq!(missing.oom_kill_count(), 0);
    assert!(missing.procs().is_empty());
    missing
        .destroy()
        .expect("destroying what does not exist is fine");
}
