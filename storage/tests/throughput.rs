//! A write-throughput check of the embedded store, ignored in normal runs:
//!
//! ```sh
//! cargo test --release -p skiff-storage --test throughput -- --ignored --nocapture
//! ```
//!
//! Many concurrent tasks create and then update keys with ~3 KB values (the size of a pod's
//! JSON), then read them back. It prints writes/s and the CPU time per write of the whole
//! process and of the store's writer thread (from `/proc`), the CPU time per `get`, and the
//! process's resident memory at the end (all history retained: no compaction).
//! Knobs: `SKIFF_TP_WRITES` [20000] writes in all (half creates, half updates),
//! `SKIFF_TP_TASKS` [64] concurrent tasks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use skiff_storage::Storage;
use skiff_storage::embedded::{EmbeddedOptions, EmbeddedStore};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time (user + system) of the whole process so far, in clock ticks of 10 ms.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // Fields after the command name (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// CPU time of the thread named `name` (nanosecond precision, from schedstat), if alive.
fn thread_cpu(name: &str) -> Option<Duration> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            let sched = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            let ns: u64 = sched.split(' ').next()?.parse().ok()?;
            return Some(Duration::from_nanos(ns));
        }
    }
    None
}

/// The resident set size of this process, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn value(i: usize, round: usize) -> Vec<u8> {
    let mut v = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{{\"name\":\"pod-{i}\",\"round\":{round}}},\"spec\":\""
    )
    .into_bytes();
    v.resize(3000, b'x');
    v.extend_from_slice(b"\"}");
    v
}

#[test]
#[ignore = "a measurement, not a check: run with --ignored --nocapture"]
fn embedded_write_throughput() {
    let writes = env_usize("SKIFF_TP_WRITES", 20_000).max(2);
    let tasks = env_usize("SKIFF_TP_TASKS", 64).max(1);
    let keys = writes / 2;
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Arc::new(
            EmbeddedStore::open(
                dir.path(),
                EmbeddedOptions {
                    retain_revisions: 0,
                    ..Default::default()
                },
            )
            .unwrap(),
        );
        // The writer thread's name as the kernel shows it (15 bytes).
        let writer = "skiff-storage-w";
        // The thread names itself once it runs.
        for _ in 0..100 {
            if thread_cpu(writer).is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let (cpu0, w0, t0) = (process_cpu(), thread_cpu(writer), Instant::now());
        let mut handles = Vec::new();
        for t in 0..tasks {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                let mut revs = Vec::new();
                for i in (t..keys).step_by(tasks) {
                    let kv = store
                        .create(&format!("/registry/pods/bench/pod-{i:06}"), value(i, 0))
                        .await
                        .unwrap();
                    revs.push((i, kv.mod_revision));
                }
                for (i, rev) in revs {
                    store
                        .update(&format!("/registry/pods/bench/pod-{i:06}"), value(i, 1), rev)
                        .await
                        .unwrap();
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let (cpu1, w1, wall) = (process_cpu(), thread_cpu(writer), t0.elapsed());
        let n = (keys * 2) as f64;
        println!(
            "writes: {} in {:.2}s = {:.0} writes/s; process CPU {:.1} µs/write; writer thread CPU {} µs/write",
            keys * 2,
            wall.as_secs_f64(),
            n / wall.as_secs_f64(),
            (cpu1 - cpu0).as_secs_f64() * 1e6 / n,
            match (w0, w1) {
                (Some(a), Some(b)) => format!("{:.1}", (b - a).as_secs_f64() * 1e6 / n),
                _ => "?".into(),
            }
        );

        let (cpu0, t0) = (process_cpu(), Instant::now());
        let mut handles = Vec::new();
        for t in 0..tasks {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                for round in 0..4 {
                    for i in (t..keys).step_by(tasks) {
                        let kv = store
                            .get(&format!("/registry/pods/bench/pod-{i:06}"))
                            .await
                            .unwrap()
                            .unwrap();
                        assert_eq!(kv.value.len(), 3002, "round {round}");
                    }
                }
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        let (cpu1, wall) = (process_cpu(), t0.elapsed());
        let n = (keys * 4) as f64;
        println!(
            "gets: {} in {:.2}s = {:.0} gets/s; process CPU {:.1} µs/get",
            keys * 4,
            wall.as_secs_f64(),
            n / wall.as_secs_f64(),
            (cpu1 - cpu0).as_secs_f64() * 1e6 / n,
        );
        println!(
            "RSS {:.0} MiB with {keys} keys and {} writes of history retained",
            rss_mib(),
            keys * 2
        );
    });
}
