//! Security module: profile compilation, capability arithmetic, and real behaviour in forked
//! children (the child only makes system calls, then `_exit`s; the parent checks the exit code).

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg,
    LinuxSeccompOperator, LinuxSyscall, PosixRlimit,
};
use skiff_runtime::security::{
    PreparedCapabilities, PreparedRlimits, PreparedSeccomp, SecurityError, all_capabilities,
    compute_capabilities, default_capabilities, default_seccomp, keep_caps_for_setuid,
    parse_capability, seccomp_for_capabilities, set_no_new_privileges, syscall_number,
};

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs `f` in a forked child and returns its exit code (128 + signal if killed). `f` must only
/// make system calls (no allocation: the parent is multi-threaded).
fn in_child(f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only runs `f`, which makes system calls, then `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = f();
        // SAFETY: ends the child without running the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid, "waitpid");
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        255
    }
}

fn errno() -> i32 {
    // SAFETY: thread-local errno location.
    unsafe { *libc::__errno_location() }
}

fn caps(list: &[Capability]) -> LinuxCapabilities {
    let set: HashSet<Capability> = list.iter().copied().collect();
    let mut c = LinuxCapabilities::default();
    c.set_bounding(Some(set.clone()));
    c.set_effective(Some(set.clone()));
    c.set_permitted(Some(set));
    c.set_inheritable(Some(HashSet::new()));
    c.set_ambient(Some(HashSet::new()));
    c
}

fn cap_mask(list: &[Capability]) -> u64 {
    list.iter()
        .map(|c| 1u64 << skiff_runtime::security::capability_number(*c))
        .fold(0, |a, b| a | b)
}

// ---- pure ----

#[test]
fn default_profile_compiles_to_a_sane_program() {
    let profile = default_seccomp();
    let prepared = PreparedSeccomp::prepare(&profile).expect("default profile compiles");
    let n = prepared.len();
    assert!((300..2000).contains(&n), "instructions: {n}");
    // Docker's list names syscalls of other architectures: skipped, not errors.
    assert!(prepared.skipped_syscalls().iter().any(|s| s == "chown32"));
    assert!(!prepared.skipped_syscalls().iter().any(|s| s == "read"));

    let all = PreparedSeccomp::prepare(&seccomp_for_capabilities(&all_capabilities()))
        .expect("all-caps profile compiles");
    assert!(all.len() > 300);
}

#[test]
fn default_profile_shape() {
    let profile = default_seccomp();
    assert_eq!(profile.default_action(), LinuxSeccompAction::ScmpActErrno);
    assert_eq!(profile.default_errno_ret(), Some(libc::EPERM as u32));
    let names = |p: &LinuxSeccomp, action: LinuxSeccompAction| -> HashSet<String> {
        p.syscalls()
            .iter()
            .flatten()
            .filter(|s| s.action() == action && s.args().is_none())
            .flat_map(|s| s.names().iter().cloned())
            .collect()
    };
    let allowed = names(&profile, LinuxSeccompAction::ScmpActAllow);
    for s in [
        "read", "write", "execve", "getpid", "futex", "chroot", "openat",
    ] {
        assert!(allowed.contains(s), "{s} allowed");
    }
    for s in [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "reboot",
        "init_module",
        "bpf",
    ] {
        assert!(!allowed.contains(s), "{s} not allowed by default");
    }
    let admin = names(
        &seccomp_for_capabilities(&[Capability::SysAdmin]),
        LinuxSeccompAction::ScmpActAllow,
    );
    for s in ["mount", "umount2", "unshare", "setns", "clone", "clone3"] {
        assert!(admin.contains(s), "{s} allowed with CAP_SYS_ADMIN");
    }
    assert!(!admin.contains("chroot"), "chroot needs CAP_SYS_CHROOT");
    let ptrace = names(
        &seccomp_for_capabilities(&[Capability::SysPtrace, Capability::SysTime]),
        LinuxSeccompAction::ScmpActAllow,
    );
    assert!(ptrace.contains("kcmp") && ptrace.contains("clock_settime"));
}

#[test]
fn invalid_profiles_are_errors() {
    let mut p = default_seccomp();
    p.set_default_action(LinuxSeccompAction::ScmpActNotify);
    assert!(matches!(
        PreparedSeccomp::prepare(&p),
        Err(SecurityError::UnsupportedSeccompAction { .. })
    ));

    let mut p = LinuxSeccomp::default();
    p.set_default_action(LinuxSeccompAction::ScmpActAllow);
    let mut sc = LinuxSyscall::default();
    sc.set_names(vec!["getpid".into()]);
    sc.set_action(LinuxSeccompAction::ScmpActErrno);
    sc.set_args(Some(vec![arg(6, 0, None, LinuxSeccompOperator::ScmpCmpEq)]));
    p.set_syscalls(Some(vec![sc]));
    let err = PreparedSeccomp::prepare(&p).expect_err("index 6");
    assert!(err.to_string().contains("argument index 6"), "{err}");

    let mut p = LinuxSeccomp::default();
    let mut sc = LinuxSyscall::default();
    sc.set_names(vec!["no_such_syscall".into(), "getpid".into()]);
    sc.set_action(LinuxSeccompAction::ScmpActErrno);
    p.set_syscalls(Some(vec![sc]));
    let prepared = PreparedSeccomp::prepare(&p).expect("unknown names are skipped");
    assert_eq!(prepared.skipped_syscalls(), ["no_such_syscall"]);
}

#[test]
fn capability_names() {
    assert_eq!(parse_capability("CAP_CHOWN").ok(), Some(Capability::Chown));
    assert_eq!(
        parse_capability("net_admin").ok(),
        Some(Capability::NetAdmin)
    );
    assert_eq!(
        parse_capability("Cap_Sys_Admin").ok(),
        Some(Capability::SysAdmin)
    );
    let err = parse_capability("CAP_FLY").expect_err("unknown");
    assert!(err.to_string().contains("CAP_FLY"), "{err}");
    assert!(parse_capability("ALL").is_err());
    assert!(compute_capabilities(&default_capabilities(), &["NOPE"], &[] as &[&str]).is_err());
    assert!(compute_capabilities(&default_capabilities(), &[] as &[&str], &["CAP_NOPE"]).is_err());
    assert_eq!(default_capabilities().len(), 14);
}

#[test]
fn add_drop_arithmetic() {
    let d = default_capabilities();
    let none: &[&str] = &[];

    let r = compute_capabilities(&d, &["NET_ADMIN", "cap_sys_time"], &["chown", "CAP_KILL"])
        .expect("valid");
    assert!(r.contains(&Capability::NetAdmin) && r.contains(&Capability::SysTime));
    assert!(!r.contains(&Capability::Chown) && !r.contains(&Capability::Kill));
    assert_eq!(r.len(), 14);

    let r = compute_capabilities(&d, &["ALL"], none).expect("valid");
    assert_eq!(r.len(), all_capabilities().len());

    let r = compute_capabilities(&d, &["ALL"], &["SYS_ADMIN"]).expect("valid");
    assert_eq!(r.len(), all_capabilities().len() - 1);
    assert!(!r.contains(&Capability::SysAdmin));

    let r = compute_capabilities(&d, &["NET_BIND_SERVICE"], &["ALL"]).expect("valid");
    assert_eq!(r, vec![Capability::NetBindService]);

    let r = compute_capabilities(&d, none, &["all"]).expect("valid");
    assert!(r.is_empty());

    // Drop wins over add for the same capability (containerd's order).
    let r = compute_capabilities(&d, &["NET_ADMIN"], &["NET_ADMIN"]).expect("valid");
    assert!(!r.contains(&Capability::NetAdmin));

    // Sorted by number, no duplicates.
    let r = compute_capabilities(&d, &["CHOWN", "CAP_CHOWN"], none).expect("valid");
    assert_eq!(r, d);
}

#[test]
fn rlimit_validation() {
    let rl: Vec<PosixRlimit> =
        serde_json::from_str(r#"[{"type":"RLIMIT_NOFILE","soft":10,"hard":5}]"#).expect("json");
    let err = PreparedRlimits::prepare(&rl).expect_err("soft > hard");
    assert!(err.to_string().contains("RLIMIT_NOFILE"), "{err}");
    let rl: Vec<PosixRlimit> = serde_json::from_str(
        r#"[{"type":"RLIMIT_NOFILE","soft":1,"hard":5},{"type":"RLIMIT_NOFILE","soft":1,"hard":5}]"#,
    )
    .expect("json");
    assert!(matches!(
        PreparedRlimits::prepare(&rl),
        Err(SecurityError::DuplicateRlimit(_))
    ));
}

// ---- forked children ----

#[test]
fn default_seccomp_blocks_mount_and_unshare_in_a_child() {
    let prepared = PreparedSeccomp::prepare(&default_seccomp()).expect("compiles");
    let code = in_child(|| {
        if set_no_new_privileges().is_err() {
            return 10;
        }
        if prepared.apply().is_err() {
            return 11;
        }
        // SAFETY: plain system calls with static C strings.
        unsafe {
            if libc::getpid() <= 0 {
                return 12;
            }
            let rc = libc::mount(
                c"none".as_ptr(),
                c"/tmp".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            );
            if rc != -1 || errno() != libc::EPERM {
                return 13;
            }
            if libc::unshare(libc::CLONE_NEWNS) != -1 || errno() != libc::EPERM {
                return 14;
            }
            if libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) != -1
                || errno() != libc::ENOSYS
            {
                return 15;
            }
            // clone with a namespace flag: EPERM; without: allowed (fork works).
            let rc = libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_NEWNS | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            );
            if rc == 0 {
                libc::_exit(0);
            }
            if rc != -1 || errno() != libc::EPERM {
                return 16;
            }
            let pid = libc::fork();
            if pid == 0 {
                libc::_exit(7);
            }
            if pid < 0 {
                return 17;
            }
            let mut status = 0;
            if libc::waitpid(pid, &mut status, 0) != pid || libc::WEXITSTATUS(status) != 7 {
                return 18;
            }
            // personality: only the allowed values.
            if libc::personality(0xffff_ffff) == -1 {
                return 19;
            }
            if libc::personality(0x0040_0000) != -1 || errno() != libc::EPERM {
                return 20;
            }
        }
        0
    });
    assert_eq!(code, 0, "child check {code} failed");
}

#[test]
fn sys_admin_profile_allows_unshare_in_a_child() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let prepared =
        PreparedSeccomp::prepare(&seccomp_for_capabilities(&[Capability::SysAdmin])).expect("ok");
    let code = in_child(|| {
        if set_no_new_privileges().is_err() || prepared.apply().is_err() {
            return 10;
        }
        // SAFETY: plain system call.
        if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
            return 11;
        }
        0
    });
    assert_eq!(code, 0);
}

fn arg(
    index: usize,
    value: u64,
    value_two: Option<u64>,
    op: LinuxSeccompOperator,
) -> LinuxSeccompArg {
    let mut json = serde_json::json!({"index": index, "value": value, "op": op});
    if let Some(v2) = value_two {
        json["valueTwo"] = v2.into();
    }
    serde_json::from_value(json).expect("arg json")
}

/// A profile that allows everything but returns `errno 77` from `getpid` when `args` match.
fn getpid_rule(args: Vec<LinuxSeccompArg>) -> PreparedSeccomp {
    let mut sc = LinuxSyscall::default();
    sc.set_names(vec!["getpid".into()]);
    sc.set_action(LinuxSeccompAction::ScmpActErrno);
    sc.set_errno_ret(Some(77));
    sc.set_args(Some(args));
    let mut p = LinuxSeccomp::default();
    p.set_default_action(LinuxSeccompAction::ScmpActAllow);
    p.set_syscalls(Some(vec![sc]));
    PreparedSeccomp::prepare(&p).expect("compiles")
}

/// In a child with `filter`, calls getpid with each of `calls` as (arg1, arg2) and returns a
/// bitmask of the calls that were denied (bit 7 set on an unexpected result).
fn denied_mask(filter: &PreparedSeccomp, calls: &[(u64, u64)]) -> i32 {
    in_child(|| {
        if set_no_new_privileges().is_err() || filter.apply().is_err() {
            return 255;
        }
        let mut mask = 0;
        for (i, (a1, a2)) in calls.iter().enumerate() {
            // SAFETY: getpid ignores its arguments; seccomp sees them.
            let rc = unsafe { libc::syscall(libc::SYS_getpid, 0u64, *a1, *a2) };
            if rc == -1 {
                if errno() != 77 {
                    return 128;
                }
                mask |= 1 << i;
            }
        }
        mask
    })
}

#[test]
fn argument_comparisons_match_unsigned_64_bit_semantics_in_a_child() {
    let values: [u64; 7] = [
        0,
        5,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0005,
        0x8000_0000_0000_0000,
        u64::MAX,
    ];
    let ops = [
        LinuxSeccompOperator::ScmpCmpEq,
        LinuxSeccompOperator::ScmpCmpNe,
        LinuxSeccompOperator::ScmpCmpLt,
        LinuxSeccompOperator::ScmpCmpLe,
        LinuxSeccompOperator::ScmpCmpGt,
        LinuxSeccompOperator::ScmpCmpGe,
    ];
    let calls: Vec<(u64, u64)> = values.iter().map(|v| (*v, 0)).collect();
    for op in ops {
        for value in values {
            let filter = getpid_rule(vec![arg(1, value, None, op)]);
            let expected = values
                .iter()
                .enumerate()
                .filter(|(_, a)| match op {
                    LinuxSeccompOperator::ScmpCmpEq => **a == value,
                    LinuxSeccompOperator::ScmpCmpNe => **a != value,
                    LinuxSeccompOperator::ScmpCmpLt => **a < value,
                    LinuxSeccompOperator::ScmpCmpLe => **a <= value,
                    LinuxSeccompOperator::ScmpCmpGt => **a > value,
                    LinuxSeccompOperator::ScmpCmpGe => **a >= value,
                    LinuxSeccompOperator::ScmpCmpMaskedEq => unreachable!(),
                })
                .fold(0, |m, (i, _)| m | (1 << i));
            assert_eq!(denied_mask(&filter, &calls), expected, "{op:?} {value:#x}");
        }
    }
    // MASKED_EQ: (arg & value) == valueTwo.
    for (mask, datum) in [
        (0x7E02_0000u64, 0u64),
        (0xff, 0x05),
        (0xffff_ffff_0000_0000, 0x1_0000_0000),
    ] {
        let filter = getpid_rule(vec![arg(
            1,
            mask,
            Some(datum),
            LinuxSeccompOperator::ScmpCmpMaskedEq,
        )]);
        let expected = values
            .iter()
            .enumerate()
            .filter(|(_, a)| **a & mask == datum)
            .fold(0, |m, (i, _)| m | (1 << i));
        assert_eq!(
            denied_mask(&filter, &calls),
            expected,
            "masked {mask:#x} {datum:#x}"
        );
    }
}

#[test]
fn several_conditions_and_or_in_a_child() {
    // Distinct indices: AND.
    let and = getpid_rule(vec![
        arg(1, 5, None, LinuxSeccompOperator::ScmpCmpEq),
        arg(2, 6, None, LinuxSeccompOperator::ScmpCmpEq),
    ]);
    assert_eq!(denied_mask(&and, &[(5, 6), (5, 0), (0, 6), (0, 0)]), 0b0001);
    // The same index twice: OR (runc's rule).
    let or = getpid_rule(vec![
        arg(1, 5, None, LinuxSeccompOperator::ScmpCmpEq),
        arg(1, 7, None, LinuxSeccompOperator::ScmpCmpEq),
    ]);
    assert_eq!(denied_mask(&or, &[(5, 0), (7, 0), (6, 0)]), 0b011);
}

#[test]
fn capabilities_decide_chown_in_a_child() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("owned-by-root");
    std::fs::write(&file, b"x").expect("write");
    let path = CString::new(file.as_os_str().as_bytes()).expect("no NUL");

    let without: Vec<Capability> = default_capabilities()
        .into_iter()
        .filter(|c| *c != Capability::Chown)
        .collect();
    let without = PreparedCapabilities::prepare(&caps(&without)).expect("prepare");
    let with = PreparedCapabilities::prepare(&caps(&default_capabilities())).expect("prepare");

    let code = in_child(|| {
        if without.apply().is_err() {
            return 10;
        }
        // SAFETY: valid C string.
        let rc = unsafe { libc::chown(path.as_ptr(), 1234, 1234) };
        if rc != -1 || errno() != libc::EPERM {
            return 11;
        }
        // The bounding set lost CAP_SYS_ADMIN.
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_CAPBSET_READ, 21, 0, 0, 0) } != 0 {
            return 12;
        }
        0
    });
    assert_eq!(code, 0, "without CAP_CHOWN: check {code} failed");

    let code = in_child(|| {
        if with.apply().is_err() {
            return 10;
        }
        // SAFETY: valid C string.
        if unsafe { libc::chown(path.as_ptr(), 1234, 1234) } != 0 {
            return 11;
        }
        0
    });
    assert_eq!(code, 0, "with CAP_CHOWN: check {code} failed");
    let meta = std::fs::metadata(&file).expect("stat");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 1234);
}

#[test]
fn capabilities_survive_setuid_with_keepcaps_in_a_child() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let wanted = default_capabilities();
    let mask = cap_mask(&wanted);
    let mut lc = caps(&wanted);
    lc.set_inheritable(Some([Capability::NetBindService].into()));
    lc.set_ambient(Some([Capability::NetBindService].into()));
    let prepared = PreparedCapabilities::prepare(&lc).expect("prepare");
    assert_eq!(prepared.effective_mask(), mask);

    let code = in_child(|| {
        if keep_caps_for_setuid().is_err() {
            return 10;
        }
        // SAFETY: plain system calls.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(1000) != 0
                || libc::setuid(1000) != 0
            {
                return 11;
            }
        }
        if prepared.apply().is_err() {
            return 12;
        }
        // Read back with capget (v3: two data structs).
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        let mut header = Header {
            version: 0x2008_0522,
            pid: 0,
        };
        let mut data = [[0u32; 3]; 2];
        // SAFETY: valid v3 header and data.
        if unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) } != 0 {
            return 13;
        }
        let eff = u64::from(data[0][0]) | (u64::from(data[1][0]) << 32);
        let perm = u64::from(data[0][1]) | (u64::from(data[1][1]) << 32);
        if eff != mask || perm != mask {
            return 14;
        }
        // SAFETY: prctl with integer arguments.
        let ambient = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_IS_SET as libc::c_ulong,
                10 as libc::c_ulong,
                0,
                0,
            )
        };
        if ambient != 1 {
            return 15;
        }
        0
    });
    assert_eq!(code, 0, "check {code} failed");
}

#[test]
fn rlimits_apply_in_a_child() {
    let rl: Vec<PosixRlimit> = serde_json::from_str(
        r#"[{"type":"RLIMIT_NOFILE","soft":123,"hard":456},{"type":"RLIMIT_CORE","soft":0,"hard":0}]"#,
    )
    .expect("json");
    let prepared = PreparedRlimits::prepare(&rl).expect("prepare");
    assert_eq!(prepared.len(), 2);
    let code = in_child(|| {
        if prepared.apply().is_err() {
            return 10;
        }
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid out pointer.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
            return 11;
        }
        if r.rlim_cur != 123 || r.rlim_max != 456 {
            return 12;
        }
        0
    });
    assert_eq!(code, 0, "check {code} failed");
}

#[test]
fn syscall_table_resolves_names() {
    assert_eq!(syscall_number("mount"), Some(libc::SYS_mount));
    assert_eq!(syscall_number("clone3"), Some(libc::SYS_clone3));
    assert_eq!(syscall_number("definitely_not"), None);
}
