//! Real cgroups (run as root). Every test works under its own parent `skiff-test-<pid>-<n>`,
//! removed by a Drop guard even when the test fails. Tests are skipped (with a message) when
//! not root or when the host has no cgroups.

mod cgroups {
    use std::io::Write;
    use std::os::unix::process::ExitStatusExt;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::{Duration, Instant};

    use nix::sys::signal::Signal;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
        LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
    };
    use skiff_runtime::cgroups::{Cgroup, Hierarchy, V1_CONTROLLERS};

    static N: AtomicUsize = AtomicUsize::new(0);

    /// The unique test parent; destroyed (with everything below it) on drop.
    struct Parent {
        h: Hierarchy,
        name: String,
    }

    impl Parent {
        fn new() -> Option<Parent> {
            if !nix::unistd::Uid::effective().is_root() {
                eprintln!("skipping: cgroup tests need root");
                return None;
            }
            let h = match Hierarchy::detect() {
                Ok(h) => h,
                Err(e) => {
                    eprintln!("skipping: {e}");
                    return None;
                }
            };
            let name = format!(
                "skiff-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            );
            Some(Parent { h, name })
        }
        fn cgroup(&self, sub: &str) -> Cgroup {
            if sub.is_empty() {
                Cgroup::new(&self.h, &self.name)
            } else {
                Cgroup::new(&self.h, &format!("{}/{sub}", self.name))
            }
        }
    }

    impl Drop for Parent {
        fn drop(&mut self) {
            if let Err(e) = self.cgroup("").destroy() {
                eprintln!("cleanup of {} failed: {e}", self.name);
            }
        }
    }

    /// A `sh -c` child that waits for a line on stdin before running its script, so it can be
    /// put in a cgroup first. Killed and reaped on drop.
    struct Proc {
        child: Child,
    }

    impl Proc {
        fn spawn(script: &str) -> Proc {
            let child = Command::new("sh")
                .arg("-c")
                .arg(format!("read _ ; {script}"))
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn sh");
            Proc { child }
        }
        fn pid(&self) -> i32 {
            self.child.id() as i32
        }
        fn go(&mut self) {
            if let Some(mut stdin) = self.child.stdin.take() {
                stdin.write_all(b"go\n").expect("release child");
            }
        }
        fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
            let deadline = Instant::now() + timeout;
            loop {
                if let Some(st) = self.child.try_wait().expect("try_wait") {
                    return Some(st);
                }
                if Instant::now() >= deadline {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    impl Drop for Proc {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
            .trim()
            .to_string()
    }

    fn file(cg: &Cgroup, controller: &str, name: &str) -> PathBuf {
        cg.dir(controller)
            .unwrap_or_else(|| panic!("{controller} not available"))
            .join(name)
    }

    fn pids_limit(n: i64) -> LinuxResources {
        LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(n).build().expect("pids"))
            .build()
            .expect("resources")
    }

    fn memory_limit(bytes: i64) -> LinuxResources {
        LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(bytes)
                    .build()
                    .expect("memory"),
            )
            .build()
            .expect("resources")
    }

    #[test]
    fn create_nested_dirs_in_every_controller() {
        let Some(p) = Parent::new() else { return };
        let ctr = p.cgroup("pod-a/ctr-b");
        assert!(!ctr.exists());
        ctr.create().expect("create");
        assert!(ctr.exists());
        ctr.create().expect("create is idempotent");
        if p.h.is_v2() {
            assert!(ctr.dir("memory").expect("dir").is_dir());
            return;
        }
        for c in V1_CONTROLLERS {
            if let Some(mount) = p.h.v1_mount(c) {
                let d = mount.join(&p.name).join("pod-a/ctr-b");
                assert!(d.is_dir(), "{} missing", d.display());
                assert_eq!(ctr.dir(c), Some(d.as_path()));
            }
        }
        if let Some(cpuset) = p.h.v1_mount("cpuset") {
            for level in [
                p.name.clone(),
                format!("{}/pod-a", p.name),
                ctr.path().into(),
            ] {
                let d = cpuset.join(level);
                assert!(!read(&d.join("cpuset.cpus")).is_empty(), "{}", d.display());
                assert!(!read(&d.join("cpuset.mems")).is_empty(), "{}", d.display());
            }
        }
    }

    /// A level left without cpus/mems (a create interrupted between its mkdir and its write, or
    /// one another thread made and has not filled yet) is filled by the next create below it;
    /// and creators racing on new levels of one parent all succeed.
    #[test]
    fn cpuset_levels_left_empty_are_filled_by_the_next_create_below() {
        let Some(p) = Parent::new() else { return };
        let Some(cpuset) = p.h.v1_mount("cpuset") else {
            eprintln!("skipping: no v1 cpuset");
            return;
        };
        // What an interrupted create leaves: the parent and a pod level, both empty.
        let pod = cpuset.join(&p.name).join("pod");
        std::fs::create_dir_all(&pod).expect("mkdir");
        assert_eq!(read(&pod.join("cpuset.mems")), "");
        let ctr = p.cgroup("pod/ctr");
        ctr.create().expect("create below an empty level");
        for d in [cpuset.join(&p.name), pod.clone(), pod.join("ctr")] {
            assert!(!read(&d.join("cpuset.cpus")).is_empty(), "{}", d.display());
            assert!(!read(&d.join("cpuset.mems")).is_empty(), "{}", d.display());
        }
        let mut proc = Proc::spawn("exit 0");
        ctr.add_process(proc.pid()).expect("a task can join it");
        proc.go();
        assert!(proc.wait(Duration::from_secs(10)).is_some());

        // Eight threads creating pods under one new parent at once.
        let racing = Parent::new().expect("parent");
        let h = &racing.h;
        std::thread::scope(|scope| {
            for i in 0..8 {
                let name = format!("{}/pod-{i}/ctr", racing.name);
                scope.spawn(move || Cgroup::new(h, &name).create().expect("racing create"));
            }
        });
        for i in 0..8 {
            let d = cpuset.join(&racing.name).join(format!("pod-{i}/ctr"));
            assert!(!read(&d.join("cpuset.mems")).is_empty(), "{}", d.display());
        }
    }

    #[test]
    fn apply_limits_and_update_them() {
        let Some(p) = Parent::new() else { return };
        let cg = p.cgroup("ctr");
        cg.create().expect("create");
        let res = LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50_000i64)
                    .period(100_000u64)
                    .cpus("0")
                    .mems("0")
                    .build()
                    .expect("cpu"),
            )
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(64i64 << 20)
                    .reservation(32i64 << 20)
                    .build()
                    .expect("memory"),
            )
            .pids(LinuxPidsBuilder::default().limit(10).build().expect("pids"))
            .devices(vec![
                LinuxDeviceCgroupBuilder::default()
                    .allow(false)
                    .access("rwm")
                    .build()
                    .expect("dev"),
                LinuxDeviceCgroupBuilder::default()
                    .allow(true)
                    .typ(LinuxDeviceType::C)
                    .major(1)
                    .minor(3)
                    .access("rwm")
                    .build()
                    .expect("dev"),
            ])
            .build()
            .expect("resources");
        cg.apply(&res).expect("apply");

        let memsw = |cg: &Cgroup| {
            let f = file(cg, "memory", "memory.memsw.limit_in_bytes");
            f.exists().then(|| read(&f))
        };
        if p.h.is_v2() {
            assert_eq!(read(&file(&cg, "cpu", "cpu.weight")), "20");
            assert_eq!(read(&file(&cg, "cpu", "cpu.max")), "50000 100000");
            assert_eq!(read(&file(&cg, "memory", "memory.max")), "67108864");
            assert_eq!(read(&file(&cg, "pids", "pids.max")), "10");
        } else {
            assert_eq!(read(&file(&cg, "cpu", "cpu.shares")), "512");
            assert_eq!(read(&file(&cg, "cpu", "cpu.cfs_quota_us")), "50000");
            assert_eq!(read(&file(&cg, "cpu", "cpu.cfs_period_us")), "100000");
            assert_eq!(read(&file(&cg, "cpuset", "cpuset.cpus")), "0");
            assert_eq!(read(&file(&cg, "cpuset", "cpuset.mems")), "0");
            assert_eq!(
                read(&file(&cg, "memory", "memory.limit_in_bytes")),
                "67108864"
            );
            if let Some(v) = memsw(&cg) {
                assert_eq!(v, "67108864", "swap equal to memory");
            }
            assert_eq!(
                read(&file(&cg, "memory", "memory.soft_limit_in_bytes")),
                "33554432"
            );
            assert_eq!(read(&file(&cg, "pids", "pids.max")), "10");
            assert_eq!(read(&file(&cg, "devices", "devices.list")), "c 1:3 rwm");
        }
        assert_eq!(cg.stats().memory_limit_bytes, 64 << 20);

        // Raise (memsw must move first on v1), then lower, then unlimited.
        for (bytes, want) in [
            (256i64 << 20, "268435456"),
            (32i64 << 20, "33554432"),
            (128i64 << 20, "134217728"),
        ] {
            cg.apply(&memory_limit(bytes)).expect("update memory");
            if p.h.is_v2() {
                assert_eq!(read(&file(&cg, "memory", "memory.max")), want);
            } else {
                assert_eq!(read(&file(&cg, "memory", "memory.limit_in_bytes")), want);
                if let Some(v) = memsw(&cg) {
                    assert_eq!(v, want);
                }
            }
        }
        cg.apply(&memory_limit(-1)).expect("unlimited memory");
        assert_eq!(cg.stats().memory_limit_bytes, u64::MAX);

        // New period with a quota above it, then no quota at all.
        let cpu = |quota: i64, period: u64| {
            LinuxResourcesBuilder::default()
                .cpu(
                    LinuxCpuBuilder::default()
                        .quota(quota)
                        .period(period)
                        .build()
                        .expect("cpu"),
                )
                .build()
                .expect("resources")
        };
        cg.apply(&cpu(200_000, 50_000)).expect("update cpu");
        cg.apply(&cpu(-1, 100_000)).expect("no quota");
        if !p.h.is_v2() {
            assert_eq!(read(&file(&cg, "cpu", "cpu.cfs_quota_us")), "-1");
            assert_eq!(read(&file(&cg, "cpu", "cpu.cfs_period_us")), "100000");
        }
        cg.apply(&pids_limit(0)).expect("unlimited pids");
        assert_eq!(read(&file(&cg, "pids", "pids.max")), "max");
    }

    #[test]
    fn processes_are_added_listed_and_signalled() {
        let Some(p) = Parent::new() else { return };
        let cg = p.cgroup("pod/ctr");
        cg.create().expect("create");
        assert!(cg.procs().is_empty());
        let mut a = Proc::spawn("exec sleep 60");
        let mut b = Proc::spawn("exec sleep 60");
        cg.add_process(a.pid()).expect("add a");
        cg.add_process(b.pid()).expect("add b");
        let mut procs = cg.procs();
        procs.sort();
        let mut want = vec![a.pid(), b.pid()];
        want.sort();
        assert_eq!(procs, want);
        for d in cg.dirs() {
            let listed = read(&d.join("cgroup.procs"));
            assert!(
                listed.lines().any(|l| l == a.pid().to_string()),
                "{}",
                d.display()
            );
        }
        let pod = p.cgroup("pod");
        assert!(pod.procs().is_empty(), "procs() is not recursive");
        assert_eq!(pod.procs_recursive().expect("recursive").len(), 2);
        assert_eq!(cg.stats().pids_current, 2);

        a.go();
        b.go();
        pod.kill_all(Signal::SIGTERM).expect("kill_all");
        for proc in [&mut a, &mut b] {
            let st = proc.wait(Duration::from_secs(5)).expect("exited");
            assert_eq!(st.signal(), Some(libc::SIGTERM));
        }
    }

    #[test]
    fn pids_limit_is_enforced() {
        let Some(p) = Parent::new() else { return };
        let cg = p.cgroup("ctr");
        cg.create().expect("create");
        cg.apply(&pids_limit(5)).expect("apply");
        let mut sh = Proc::spawn("for i in $(seq 20); do sleep 5 & done; wait");
        cg.add_process(sh.pid()).expect("add");
        sh.go();
        // Give the loop time to hit the limit.
        let deadline = Instant::now() + Duration::from_secs(5);
        let events = file(&cg, "pids", "pids.events");
        let hit = || {
            std::fs::read_to_string(&events)
                .ok()
                .and_then(|s| {
                    s.split_whitespace()
                        .nth(1)
                        .and_then(|n| n.parse::<u64>().ok())
                })
                .unwrap_or(0)
        };
        while hit() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(hit() > 0, "fork never failed on the limit");
        let current = cg.stats().pids_current;
        assert!((1..=5).contains(&current), "pids.current = {current}");
        assert!(cg.procs().len() <= 5);
    }

    #[test]
    fn memory_limit_oom_kills_and_is_counted() {
        let Some(p) = Parent::new() else { return };
        let cg = p.cgroup("ctr");
        cg.create().expect("create");
        assert_eq!(cg.oom_kill_count(), 0);
        cg.apply(&memory_limit(32 << 20)).expect("apply");
        let mut sh = Proc::spawn("x=$(head -c 200M /dev/zero | tr '\\0' a); echo done");
        cg.add_process(sh.pid()).expect("add");
        sh.go();
        let st = sh.wait(Duration::from_secs(30)).expect("finished");
        assert!(
            !st.success(),
            "allocating 200M under a 32M limit must fail: {st:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        while cg.oom_kill_count() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(cg.oom_kill_count() > 0, "no OOM kill counted");
        assert!(cg.stats().oom_kill_count > 0);
    }

    #[test]
    fn stats_of_a_busy_process() {
        let Some(p) = Parent::new() else { return };
        let cg = p.cgroup("ctr");
        cg.create().expect("create");
        let mut sh = Proc::spawn("x=$(head -c 4M /dev/zero | tr '\\0' a); while :; do :; done");
        cg.add_process(sh.pid()).expect("add");
        sh.go();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut s = cg.stats();
        while (s.cpu_usage_nanos < 50_000_000 || s.memory_usage_bytes < 1 << 20)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
            s = cg.stats();
        }
        assert!(s.cpu_usage_nanos >= 50_000_000, "{s:?}");
        assert!(s.memory_usage_bytes >= 1 << 20, "{s:?}");
        assert!(s.memory_working_set_bytes > 0, "{s:?}");
        assert!(s.memory_working_set_bytes <= s.memory_usage_bytes, "{s:?}");
        assert_eq!(s.memory_limit_bytes, u64::MAX, "{s:?}");
        assert!(s.pids_current >= 1, "{s:?}");
        assert_eq!(s.oom_kill_count, 0, "{s:?}");
    }

    #[test]
    fn destroy_kills_and_removes_nested_cgroups() {
        let Some(p) = Parent::new() else { return };
        let pod = p.cgroup("pod");
        let c1 = p.cgroup("pod/c1");
        let c2 = p.cgroup("pod/c2/deeper");
        c1.create().expect("create c1");
        c2.create().expect("create c2");
        let mut a = Proc::spawn("exec sleep 60");
        let mut b = Proc::spawn("sleep 60 & sleep 60 & wait");
        c1.add_process(a.pid()).expect("add a");
        c2.add_process(b.pid()).expect("add b");
        a.go();
        b.go();
        // Let b fork its sleeps.
        let deadline = Instant::now() + Duration::from_secs(5);
        while c2.procs().len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(c2.procs().len(), 3);
        let started = Instant::now();
        pod.destroy().expect("destroy pod");
        eprintln!("destroy with 4 processes took {:?}", started.elapsed());
        for cg in [&pod, &c1, &c2] {
            assert!(!cg.exists());
            for d in cg.dirs() {
                assert!(!d.exists(), "{} still exists", d.display());
            }
        }
        for proc in [&mut a, &mut b] {
            let st = proc.wait(Duration::from_secs(5)).expect("killed");
            assert_eq!(st.signal(), Some(libc::SIGKILL));
        }
        pod.destroy().expect("second destroy is fine");
    }

    #[test]
    fn destroy_of_missing_cgroup_is_ok() {
        let Some(p) = Parent::new() else { return };
        let cg = p.cgroup("never/created");
        assert!(!cg.exists());
        cg.destroy().expect("destroy missing");
        assert!(cg.procs().is_empty());
        assert_eq!(cg.oom_kill_count(), 0);
        cg.kill_all(Signal::SIGKILL).expect("kill_all on missing");
    }

    #[test]
    fn hot_path_create_add_destroy_is_fast() {
        let Some(p) = Parent::new() else { return };
        p.cgroup("pod").create().expect("pod");
        let mut best = Duration::MAX;
        for i in 0..5 {
            let cg = p.cgroup(&format!("pod/ctr-{i}"));
            let mut sh = Proc::spawn("exit 0");
            let started = Instant::now();
            cg.create().expect("create");
            cg.apply(&pids_limit(100)).expect("apply");
            cg.add_process(sh.pid()).expect("add");
            let t = started.elapsed();
            sh.go();
            sh.wait(Duration::from_secs(5)).expect("exited");
            let started = Instant::now();
            cg.destroy().expect("destroy");
            best = best.min(t + started.elapsed());
            assert!(!cg.exists());
        }
        eprintln!("create+apply+add_process+destroy: best {best:?}");
        assert!(best < Duration::from_millis(50), "{best:?}");
    }
}
