//! Behaviour of the embedded store beyond the shared conformance suite: lagging watchers,
//! automatic compaction, the writer's lifecycle and on-disk persistence details (the WAL and
//! snapshot files themselves are exercised in `wal.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use skiff_storage::embedded::{EmbeddedOptions, EmbeddedStore};
use skiff_storage::{ListOptions, Revision, Storage, StorageError, WatchEvent, WatchStream};

const WAIT: Duration = Duration::from_secs(10);

fn open(dir: &std::path::Path, opts: EmbeddedOptions) -> Arc<dyn Storage> {
    Arc::new(EmbeddedStore::open(dir, opts).expect("open"))
}

async fn next_item(w: &mut WatchStream) -> Option<Result<WatchEvent, StorageError>> {
    tokio::time::timeout(WAIT, w.next())
        .await
        .expect("watch item within timeout")
}

#[tokio::test]
async fn revisions_start_at_one_and_the_files_are_in_the_dir() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        EmbeddedStore::open(&dir.path().join("nested/store"), EmbeddedOptions::default()).unwrap();
    assert_eq!(store.path(), dir.path().join("nested/store"));
    assert!(store.path().join("LOCK").exists());
    let wal_files = std::fs::read_dir(store.path())
        .unwrap()
        .filter(|f| {
            f.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".wal")
        })
        .count();
    assert_eq!(wal_files, 1, "one WAL segment");
    assert_eq!(store.current_revision().await.unwrap(), 0);
    assert_eq!(store.compacted_revision().await.unwrap(), 0);
    let kv = store.create("/a", b"a".to_vec()).await.unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision), (1, 1));
    let listed = store.list(ListOptions::default()).await.unwrap();
    assert_eq!((listed.kvs.len(), listed.revision), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_rereads_missed_events_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(
        dir.path(),
        EmbeddedOptions {
            watch_buffer: 2,
            ..Default::default()
        },
    );
    let mut w = s.watch("/slow/", 0).await.unwrap();
    let first = s.create("/slow/0", b"0".to_vec()).await.unwrap();
    match next_item(&mut w).await {
        Some(Ok(WatchEvent::Put { kv, prev: None })) => assert_eq!(kv, first),
        other => panic!("unexpected {other:?}"),
    }
    // One write at a time: each is its own batch, so the two-batch buffer overflows many
    // times over while the watcher is not reading.
    for i in 1..300 {
        s.create(&format!("/slow/{i}"), vec![b'v'; 32])
            .await
            .unwrap();
        if i % 2 == 0 {
            s.create(&format!("/other/{i}"), vec![]).await.unwrap();
        }
    }
    let mut last = first.mod_revision;
    for i in 1..300 {
        let e = next_item(&mut w).await.expect("event").expect("no error");
        assert_eq!(e.key(), format!("/slow/{i}"));
        assert!(e.revision() > last);
        last = e.revision();
    }
    // Still live after catching up.
    let after = s.create("/slow/after", vec![]).await.unwrap();
    let e = next_item(&mut w).await.unwrap().unwrap();
    assert_eq!(e.revision(), after.mod_revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watcher_that_falls_behind_a_compaction_ends_with_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(
        dir.path(),
        EmbeddedOptions {
            watch_buffer: 1,
            ..Default::default()
        },
    );
    let mut w = s.watch("/c/", 0).await.unwrap();
    for i in 0..20 {
        s.create(&format!("/c/{i}"), vec![]).await.unwrap();
    }
    let current = s.current_revision().await.unwrap();
    s.compact(current).await.unwrap();
    match next_item(&mut w).await {
        Some(Err(StorageError::Compacted { compacted, .. })) => assert_eq!(compacted, current),
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(
        next_item(&mut w).await.is_none(),
        "the stream ends after the error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_compaction_keeps_the_configured_history() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(
        dir.path(),
        EmbeddedOptions {
            retain_revisions: 10,
            compaction_interval: Duration::from_millis(20),
            ..Default::default()
        },
    );
    for i in 0..30 {
        s.create(&format!("/ac/{i:02}"), vec![]).await.unwrap();
    }
    let deadline = Instant::now() + WAIT;
    while s.compacted_revision().await.unwrap() != 20 {
        assert!(Instant::now() < deadline, "no automatic compaction");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let at = |revision: Revision| {
        s.list(ListOptions {
            prefix: "/ac/".into(),
            revision: Some(revision),
            ..Default::default()
        })
    };
    assert!(matches!(at(19).await, Err(StorageError::Compacted { .. })));
    assert_eq!(at(20).await.unwrap().kvs.len(), 20);
    assert!(s.watch("/ac/", 18).await.is_err());
    assert!(s.watch("/ac/", 19).await.is_ok());
    // Retention is relative to the current revision: nothing more to do until it moves.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(s.compacted_revision().await.unwrap(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_guarded_writes_in_one_batch_fail_alone() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), EmbeddedOptions::default());
    let base = s.create("/race/x", b"0".to_vec()).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let own = s.create(&format!("/race/own/{t}"), vec![]).await;
            let dup = s.create("/race/same", format!("{t}").into_bytes()).await;
            let upd = s
                .update("/race/x", format!("{t}").into_bytes(), base.mod_revision)
                .await;
            (own.is_ok(), dup, upd)
        }));
    }
    let (mut created, mut updated) = (0, 0);
    for t in tasks {
        let (own_ok, dup, upd) = t.await.unwrap();
        assert!(
            own_ok,
            "an unrelated write never fails because of another's guard"
        );
        match dup {
            Ok(_) => created += 1,
            Err(StorageError::AlreadyExists(_)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
        match upd {
            Ok(_) => updated += 1,
            Err(StorageError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!((created, updated), (1, 1));
    // 1 base + 32 own + 1 create + 1 update, with no revision lost to a failed guard.
    assert_eq!(s.current_revision().await.unwrap(), 35);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_store_ends_watches_and_frees_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), EmbeddedOptions::default());
    let mut w = s.watch("", 0).await.unwrap();
    s.create("/x", vec![]).await.unwrap();
    assert!(matches!(next_item(&mut w).await, Some(Ok(_))));

    // While the first store is open, a second one cannot take the same directory.
    assert!(EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).is_err());

    drop(s);
    assert!(matches!(
        next_item(&mut w).await,
        Some(Err(StorageError::Unavailable(_)))
    ));
    assert!(next_item(&mut w).await.is_none());
    // The directory is free as soon as the store is gone, even with a watch stream left open.
    let s = open(dir.path(), EmbeddedOptions::default());
    assert_eq!(s.current_revision().await.unwrap(), 1);
    drop(w);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_reopens_keep_counting() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = 0;
    for round in 0..5 {
        let s = open(dir.path(), EmbeddedOptions::default());
        assert_eq!(s.current_revision().await.unwrap(), expected);
        assert_eq!(
            s.list(ListOptions::default()).await.unwrap().kvs.len(),
            round * 3
        );
        for i in 0..3 {
            let kv = s
                .create(&format!("/round{round}/{i}"), vec![])
                .await
                .unwrap();
            expected += 1;
            assert_eq!(kv.mod_revision, expected);
        }
        if round == 2 {
            s.compact(expected - 1).await.unwrap();
        }
    }
    let s = open(dir.path(), EmbeddedOptions::default());
    assert_eq!(s.compacted_revision().await.unwrap(), 8);
    // The whole retained history replays after reopening.
    let mut w = s.watch("", 7).await.unwrap();
    for r in 8..=15 {
        assert_eq!(next_item(&mut w).await.unwrap().unwrap().revision(), r);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_undo_handles_many_changes_to_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), EmbeddedOptions::default());
    let mut kv = s.create("/h/k", b"0".to_vec()).await.unwrap();
    let mut versions = vec![kv.clone()];
    for i in 1..50 {
        if i % 10 == 0 {
            s.delete("/h/k", Some(kv.mod_revision)).await.unwrap();
            kv = s.create("/h/k", format!("{i}").into_bytes()).await.unwrap();
        } else {
            kv = s
                .update("/h/k", format!("{i}").into_bytes(), kv.mod_revision)
                .await
                .unwrap();
        }
        versions.push(kv.clone());
    }
    for v in &versions {
        let listed = s
            .list(ListOptions {
                prefix: "/h/".into(),
                revision: Some(v.mod_revision),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(listed.kvs, vec![v.clone()]);
    }
    // Between a delete and the re-create the key is absent.
    let deleted_at = versions[10].mod_revision - 1;
    let listed = s
        .list(ListOptions {
            prefix: "/h/".into(),
            revision: Some(deleted_at),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(listed.kvs.is_empty());
}
