//! Entry points for the runtime's own processes — the per-container monitor, the exec helper and
//! the pod sandbox's pause process — which the runtime starts by re-executing its helper binary
//! (the `skiff` binary) with [`MARKER`] as the first argument.

/// The first argument that marks a re-executed runtime process.
pub const MARKER: &str = "__skiff_runtime";

/// Call first thing in `main`, before any thread or async runtime exists: when this process is one
/// of the runtime's own, runs it and returns the code to exit with.
pub fn dispatch() -> Option<i32> {
    let mut args = std::env::args();
    args.next();
    if args.next()? != MARKER {
        return None;
    }
    let role = args.next().unwrap_or_default();
    let payload = args.next().unwrap_or_default();
    set_huge_pages(false);
    Some(match role.as_str() {
        "monitor" => crate::container::run_monitor_process(&payload),
        crate::container::MONITOR_SYNC_ON_STDOUT => {
            crate::container::run_monitor_process_sync_on_stdout(&payload)
        }
        "exec" => crate::container::run_exec_process(&payload),
        "pause" => crate::sandbox::pause(),
        crate::container::SPAWNER_ROLE => crate::container::run_spawner(),
        other => {
            eprintln!("skiff: unknown runtime process role {other:?}");
            2
        }
    })
}

/// Turns transparent huge pages off (or back on) for this process. The runtime's own processes
/// (spawner, monitors, pause, exec helper) turn them off: each is small, but with THP on every
/// fresh 2 MiB stretch of the allocator's heap is faulted in as one zeroed huge page — most of a
/// monitor's memory and a third of its start-up CPU. The setting survives fork and execve, so a
/// container's own process gets it back on just before its execve (ahead of seccomp, which may
/// forbid prctl). Failure only costs memory, so it is ignored. Allocation-free.
pub fn set_huge_pages(allowed: bool) {
    let disable = libc::c_ulong::from(!allowed);
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, disable, 0, 0, 0) };
}
