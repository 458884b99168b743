//! Every acknowledged write survives `kill -9`.
//!
//! The test re-runs its own test binary as a child in "writer mode" (selected by an
//! environment variable), which creates keys from several tasks in a loop and prints each
//! acknowledged key and revision. After a few hundred acknowledgements the child is killed
//! with SIGKILL, mid-write, and the store is reopened to check that nothing acknowledged was
//! lost and that revisions go on from where they were.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use skiff_storage::embedded::{EmbeddedOptions, EmbeddedStore};
use skiff_storage::{ListOptions, Storage};

const WRITER_DIR_ENV: &str = "SKIFF_CRASH_WRITER_DIR";
const SMALL_SEGMENTS_ENV: &str = "SKIFF_CRASH_SMALL_SEGMENTS";
const ACKS_BEFORE_KILL: usize = 300;

/// The child's side. In a normal test run (no environment variable) it passes at once.
#[test]
fn crash_writer_child() {
    let Some(dir) = std::env::var_os(WRITER_DIR_ENV) else {
        return;
    };
    let opts = options(std::env::var_os(SMALL_SEGMENTS_ENV).is_some());
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let store = Arc::new(EmbeddedStore::open(Path::new(&dir), opts).unwrap());
        // Several concurrent writers, so the kill can also land inside a group commit.
        let mut tasks = Vec::new();
        for t in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let key = format!("/crash/{t}/{i:08}");
                    let kv = store.create(&key, key.as_bytes().to_vec()).await.unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ACK {} {}", kv.key, kv.mod_revision).unwrap();
                    out.flush().unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

/// With `small_segments`, the WAL is cut into 4 KiB segments and history beyond 50 revisions
/// is compacted every 20 ms, so snapshots are written, and segments deleted, while the writer
/// is killed.
fn options(small_segments: bool) -> EmbeddedOptions {
    if small_segments {
        EmbeddedOptions {
            segment_bytes: 4 << 10,
            retain_revisions: 50,
            compaction_interval: Duration::from_millis(20),
            ..Default::default()
        }
    } else {
        EmbeddedOptions::default()
    }
}

/// Kills the child if the test fails before it does.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    crash_and_check(false);
}

#[test]
fn acknowledged_writes_survive_sigkill_amid_snapshots() {
    crash_and_check(true);
}

fn crash_and_check(small_segments: bool) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "crash_writer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(WRITER_DIR_ENV, dir.path())
        .env_remove(SMALL_SEGMENTS_ENV);
    if small_segments {
        command.env(SMALL_SEGMENTS_ENV, "1");
    }
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut child = KillOnDrop(child);

    let (ack_tx, ack_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("ACK ") {
                let (key, rev) = rest.split_once(' ').expect("ACK <key> <rev>");
                let ack = (key.to_owned(), rev.parse::<i64>().expect("revision"));
                if ack_tx.send(ack).is_err() {
                    break;
                }
            }
        }
    });

    let mut acks = Vec::new();
    while acks.len() < ACKS_BEFORE_KILL {
        match ack_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(ack) => acks.push(ack),
            Err(e) => panic!("writer child stalled after {} acks: {e}", acks.len()),
        }
    }
    child.0.kill().unwrap(); // SIGKILL
    let status = child.0.wait().unwrap();
    assert!(!status.success(), "the child was killed, not finished");
    reader.join().unwrap();
    // Acknowledgements printed before the kill but not yet read count too.
    acks.extend(ack_rx.try_iter());
    let max_acked = acks.iter().map(|(_, r)| *r).max().unwrap();
    let revisions: BTreeSet<i64> = acks.iter().map(|(_, r)| *r).collect();
    assert_eq!(
        revisions.len(),
        acks.len(),
        "acknowledged revisions are distinct"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = EmbeddedStore::open(dir.path(), options(small_segments)).unwrap();
        let current = store.current_revision().await.unwrap();
        assert!(
            current >= max_acked,
            "revision went back: {current} < {max_acked}"
        );
        for (key, rev) in &acks {
            let kv = store
                .get(key)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("acknowledged {key} at {rev} was lost"));
            assert_eq!(kv.mod_revision, *rev);
            assert_eq!(kv.value, key.as_bytes());
        }
        // Unacknowledged writes may or may not have landed, but the store is consistent:
        // every key present has exactly the revisions the log agrees on.
        let listed = store
            .list(ListOptions {
                prefix: "/crash/".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.kvs.len() as i64, current);
        let next = store.create("/after-crash", vec![]).await.unwrap();
        assert_eq!(next.mod_revision, current + 1);
    });
}
