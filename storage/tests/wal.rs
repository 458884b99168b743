//! The embedded store's files: WAL segments and snapshots, and what opening makes of them
//! after a crash, after damage, and after snapshots and segment deletion.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use skiff_storage::embedded::{EmbeddedOptions, EmbeddedStore};
use skiff_storage::{KeyValue, ListOptions, Revision, Storage, StorageError, WatchEvent};

const WAIT: Duration = Duration::from_secs(10);

/// The files in `dir` whose names end with `ext`, sorted (segments then sort in log order).
fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|f| f.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect();
    found.sort();
    found
}

fn last_segment(dir: &Path) -> PathBuf {
    files(dir, ".wal").pop().expect("a WAL segment")
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

fn small_segments() -> EmbeddedOptions {
    EmbeddedOptions {
        segment_bytes: 1024,
        retain_revisions: 0,
        ..Default::default()
    }
}

/// Everything observable about a store: current and compacted revision, the full list at
/// every retained revision and the whole retained history as a watch replays it.
#[derive(Debug, PartialEq)]
struct Observed {
    current: Revision,
    compacted: Revision,
    lists: Vec<Vec<KeyValue>>,
    history: Vec<WatchEvent>,
}

async fn observe(s: &EmbeddedStore) -> Observed {
    let current = s.current_revision().await.unwrap();
    let compacted = s.compacted_revision().await.unwrap();
    let mut lists = Vec::new();
    for at in compacted.max(1)..=current {
        let listed = s
            .list(ListOptions {
                revision: Some(at),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.revision, at);
        lists.push(listed.kvs);
    }
    let mut history = Vec::new();
    let mut w = s.watch("", (compacted - 1).max(0)).await.unwrap();
    while history.last().map(WatchEvent::revision).unwrap_or(0) < current {
        let event = tokio::time::timeout(WAIT, w.next())
            .await
            .expect("history within timeout")
            .expect("watch open")
            .expect("no watch error");
        history.push(event);
    }
    Observed {
        current,
        compacted,
        lists,
        history,
    }
}

/// Creates, updates and deletes under `/w/` for `rounds` rounds (about 4 writes a round).
async fn churn(s: &EmbeddedStore, from: usize, rounds: usize) {
    for i in from..from + rounds {
        let key = format!("/w/{:03}", i % 17);
        match s.get(&key).await.unwrap() {
            None => {
                s.create(&key, format!("created {i}").into_bytes())
                    .await
                    .unwrap();
            }
            Some(kv) if i % 5 == 0 => {
                s.delete(&key, Some(kv.mod_revision)).await.unwrap();
            }
            Some(kv) => {
                s.update(&key, vec![b'u'; 40 + i % 50], kv.mod_revision)
                    .await
                    .unwrap();
            }
        }
        s.create(&format!("/x/{i:04}"), vec![b'x'; 60])
            .await
            .unwrap();
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Damages the segment at the path, given its length before and after the last write.
type Damage = fn(&Path, u64, u64);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_last_record_is_cut_off_and_acknowledged_writes_stay() {
    // Each way a crash can leave the end of the newest segment.
    let damages: [(&str, Damage); 5] = [
        ("a partial header", |p, _, _| append(p, &[7, 0, 0])),
        ("a header promising more than follows", |p, _, _| {
            append(p, &[200, 0, 0, 0, 1, 2, 3, 4, 1, 2, 3])
        }),
        (
            "zeros (file size extended, data never written)",
            |p, _, _| append(p, &[0; 4096]),
        ),
        ("half of the last record", |p, acked, full| {
            let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(acked + (full - acked) / 2).unwrap();
        }),
        ("the last record with a damaged byte", |p, _, full| {
            let mut bytes = std::fs::read(p).unwrap();
            let i = full as usize - 3;
            bytes[i] ^= 0xff;
            std::fs::write(p, bytes).unwrap();
        }),
    ];
    for (what, damage) in damages {
        let dir = tempfile::tempdir().unwrap();
        let mut acked = Vec::new();
        let (acked_len, full_len);
        {
            let s = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
            for i in 0..20 {
                acked.push(
                    s.create(&format!("/t/{i:02}"), format!("v{i}").into_bytes())
                        .await
                        .unwrap(),
                );
            }
            acked_len = file_len(&last_segment(dir.path()));
            // One more write, standing in for the batch a crash tears (the damages that cut
            // or garble it make it unacknowledged; the others leave it whole).
            s.create("/t/last", b"last".to_vec()).await.unwrap();
            full_len = file_len(&last_segment(dir.path()));
        }
        damage(&last_segment(dir.path()), acked_len, full_len);

        let s = EmbeddedStore::open(dir.path(), EmbeddedOptions::default())
            .unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
        for kv in &acked {
            assert_eq!(s.get(&kv.key).await.unwrap().as_ref(), Some(kv), "{what}");
        }
        let current = s.current_revision().await.unwrap();
        let last = s.get("/t/last").await.unwrap();
        assert_eq!(current, 20 + last.is_some() as i64, "{what}");
        let len = file_len(&last_segment(dir.path()));
        assert!(len == acked_len || len == full_len, "{what}: tail cut off");
        // The store goes on from there, and what it writes next is not mistaken for damage.
        let next = s.create("/t/next", b"next".to_vec()).await.unwrap();
        assert_eq!(next.mod_revision, current + 1, "{what}");
        drop(s);
        let s = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
        assert_eq!(s.get("/t/next").await.unwrap(), Some(next), "{what}");
        assert_eq!(s.current_revision().await.unwrap(), current + 1, "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_before_the_tail_fails_the_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = EmbeddedStore::open(dir.path(), small_segments()).unwrap();
        churn(&s, 0, 60).await;
    }
    let segments = files(dir.path(), ".wal");
    assert!(segments.len() >= 3, "several segments: {segments:?}");

    let flip = |path: &Path, at: usize| {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[at] ^= 0x01;
        std::fs::write(path, bytes).unwrap();
    };
    let expect_corrupt = |what: &str| match EmbeddedStore::open(dir.path(), small_segments()) {
        Err(StorageError::Internal(msg)) => assert!(msg.contains("corrupt"), "{what}: {msg}"),
        Err(e) => panic!("{what}: unexpected error {e}"),
        Ok(_) => panic!("{what}: opened over a damaged record"),
    };

    // In the middle of the newest segment: valid records follow the damaged one.
    let newest = segments.last().unwrap();
    let middle = file_len(newest) as usize / 2;
    flip(newest, middle);
    expect_corrupt("middle of the newest segment");
    flip(newest, middle);
    assert!(EmbeddedStore::open(dir.path(), small_segments()).is_ok());

    // At the very end of an older segment: nothing follows it there, but it was complete and
    // synced before the next segment began, so this is damage, not a torn write.
    let older = &segments[segments.len() - 2];
    let end = file_len(older) as usize - 1;
    flip(older, end);
    expect_corrupt("end of an older segment");
    // And in the middle of one.
    flip(older, end);
    flip(older, 20);
    expect_corrupt("middle of an older segment");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_after_a_snapshot_and_more_wal_gives_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let before;
    {
        let s = EmbeddedStore::open(dir.path(), small_segments()).unwrap();
        churn(&s, 0, 80).await;
        let mid = s.current_revision().await.unwrap() - 60;
        s.compact(mid).await.unwrap();
        wait_for("a snapshot", || files(dir.path(), ".snap").len() == 1).await;
        // More WAL after the snapshot, including deletes of keys the snapshot holds.
        churn(&s, 80, 40).await;
        before = observe(&s).await;
    }
    assert!(before.compacted > 1 && before.history.len() > 100);
    let s = EmbeddedStore::open(dir.path(), small_segments()).unwrap();
    let after = observe(&s).await;
    assert_eq!(after.current, before.current);
    assert_eq!(after.compacted, before.compacted);
    assert_eq!(
        after.lists, before.lists,
        "same state at every retained revision"
    );
    assert_eq!(after.history, before.history, "same history");
    // Revisions keep counting, and a watch resumed from before the reopen continues.
    let mut w = s.watch("/x/", before.current - 3).await.unwrap();
    let kv = s.create("/x/new", vec![]).await.unwrap();
    assert_eq!(kv.mod_revision, before.current + 1);
    let mut seen = Vec::new();
    while seen.last() != Some(&kv.mod_revision) {
        let e = tokio::time::timeout(WAIT, w.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(e.revision());
    }
    assert!(seen.iter().all(|&r| r > before.current - 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_then_snapshot_deletes_the_segments_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let s = EmbeddedStore::open(dir.path(), small_segments()).unwrap();
    churn(&s, 0, 100).await;
    let segments = files(dir.path(), ".wal");
    assert!(segments.len() >= 5, "several segments: {}", segments.len());
    assert!(
        files(dir.path(), ".snap").is_empty(),
        "no snapshot before compaction"
    );

    // Compacting to the current revision leaves every closed segment behind.
    let current = s.current_revision().await.unwrap();
    s.compact(current).await.unwrap();
    wait_for("the covered segments to go", || {
        files(dir.path(), ".snap").len() == 1 && files(dir.path(), ".wal").len() == 1
    })
    .await;
    assert_eq!(
        files(dir.path(), ".wal"),
        vec![segments.last().unwrap().clone()],
        "only the segment in progress is left"
    );
    let before = observe(&s).await;

    // A later compaction makes a newer snapshot, which replaces the old one.
    churn(&s, 100, 50).await;
    let first_snapshot = files(dir.path(), ".snap");
    let current = s.current_revision().await.unwrap();
    s.compact(current - 5).await.unwrap();
    wait_for("a newer snapshot", || {
        let snaps = files(dir.path(), ".snap");
        snaps.len() == 1 && snaps != first_snapshot
    })
    .await;
    let later = observe(&s).await;
    drop(s);
    assert!(before.current < later.current);

    let s = EmbeddedStore::open(dir.path(), small_segments()).unwrap();
    assert_eq!(observe(&s).await, later);
    assert!(matches!(
        s.list(ListOptions {
            revision: Some(current - 6),
            ..Default::default()
        })
        .await,
        Err(StorageError::Compacted { .. })
    ));
}
