//! One conformance suite, run unchanged against both backends: every `case` below becomes
//! `embedded::<case>` (a store in a temp dir) and `etcd::<case>` (a real etcd started for the
//! test, killed when it ends, pass or fail).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use skiff_storage::embedded::{EmbeddedOptions, EmbeddedStore};
use skiff_storage::etcd::EtcdStore;
use skiff_storage::testutil::EtcdServer;
use skiff_storage::{
    KeyValue, ListOptions, ListResult, Revision, Storage, StorageError, WatchEvent, WatchStream,
};

/// A backend under test: owns the store's home (temp dir or etcd process) across reopens.
pub enum Backend {
    Embedded {
        dir: tempfile::TempDir,
        opts: EmbeddedOptions,
    },
    Etcd {
        server: EtcdServer,
    },
}

impl Backend {
    pub fn embedded() -> Backend {
        Backend::embedded_with(EmbeddedOptions::default())
    }

    pub fn embedded_with(opts: EmbeddedOptions) -> Backend {
        Backend::Embedded {
            dir: tempfile::tempdir().expect("temp dir"),
            opts,
        }
    }

    pub fn etcd() -> Backend {
        Backend::Etcd {
            server: EtcdServer::start(),
        }
    }

    /// A new store on this backend's data: the embedded store reopens its directory, etcd
    /// gets a new client.
    pub async fn open(&self) -> Arc<dyn Storage> {
        match self {
            Backend::Embedded { dir, opts } => {
                Arc::new(EmbeddedStore::open(dir.path(), opts.clone()).expect("open embedded"))
            }
            Backend::Etcd { server } => Arc::new(
                EtcdStore::connect(&server.endpoints())
                    .await
                    .expect("connect etcd"),
            ),
        }
    }

    /// Simulates a server restart between a close and the next `open` (etcd is killed and
    /// started again on the same data; the embedded store has no server).
    pub fn restart(&mut self) {
        if let Backend::Etcd { server } = self {
            server.restart().expect("restart etcd");
        }
    }
}

const WAIT: Duration = Duration::from_secs(10);

async fn next_event(w: &mut WatchStream) -> WatchEvent {
    match tokio::time::timeout(WAIT, w.next()).await {
        Ok(Some(Ok(e))) => e,
        Ok(Some(Err(e))) => panic!("watch failed: {e}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!("no watch event within {WAIT:?}"),
    }
}

async fn assert_quiet(w: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), w.next()).await {
        panic!("unexpected watch item: {item:?}");
    }
}

async fn list(s: &Arc<dyn Storage>, prefix: &str) -> ListResult {
    s.list(ListOptions {
        prefix: prefix.into(),
        ..Default::default()
    })
    .await
    .expect("list")
}

async fn list_at(
    s: &Arc<dyn Storage>,
    prefix: &str,
    revision: Revision,
) -> Result<ListResult, StorageError> {
    s.list(ListOptions {
        prefix: prefix.into(),
        revision: Some(revision),
        ..Default::default()
    })
    .await
}

fn keys(r: &ListResult) -> Vec<&str> {
    r.kvs.iter().map(|kv| kv.key.as_str()).collect()
}

fn put(kv: &KeyValue, prev: Option<&KeyValue>) -> WatchEvent {
    WatchEvent::Put {
        kv: kv.clone(),
        prev: prev.cloned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Cases

pub async fn create_and_get(b: Backend) {
    let s = b.open().await;
    let before = s.current_revision().await.unwrap();
    let kv = s
        .create("/registry/pods/ns/a", b"v1".to_vec())
        .await
        .unwrap();
    assert_eq!(kv.key, "/registry/pods/ns/a");
    assert_eq!(kv.value, b"v1");
    assert!(kv.create_revision > before);
    assert_eq!(kv.create_revision, kv.mod_revision);
    assert_eq!(s.current_revision().await.unwrap(), kv.mod_revision);
    assert_eq!(
        s.get("/registry/pods/ns/a").await.unwrap(),
        Some(kv.clone())
    );
    assert_eq!(s.get("/registry/pods/ns/missing").await.unwrap(), None);
    // A prefix of an existing key is a different key.
    assert_eq!(s.get("/registry/pods/ns/").await.unwrap(), None);

    match s.create("/registry/pods/ns/a", b"v2".to_vec()).await {
        Err(StorageError::AlreadyExists(k)) => assert_eq!(k, "/registry/pods/ns/a"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    // The failed create changed nothing, not even the revision.
    assert_eq!(
        s.get("/registry/pods/ns/a").await.unwrap(),
        Some(kv.clone())
    );
    assert_eq!(s.current_revision().await.unwrap(), kv.mod_revision);
    assert!(s.ready().await);
}

pub async fn guarded_update(b: Backend) {
    let s = b.open().await;
    let v1 = s.create("/k/a", b"1".to_vec()).await.unwrap();
    let v2 = s
        .update("/k/a", b"2".to_vec(), v1.mod_revision)
        .await
        .unwrap();
    assert_eq!(v2.value, b"2");
    assert_eq!(v2.create_revision, v1.create_revision);
    assert!(v2.mod_revision > v1.mod_revision);
    assert_eq!(s.get("/k/a").await.unwrap(), Some(v2.clone()));

    match s.update("/k/a", b"3".to_vec(), v1.mod_revision).await {
        Err(StorageError::Conflict {
            key,
            expected,
            current,
        }) => {
            assert_eq!(key, "/k/a");
            assert_eq!(expected, v1.mod_revision);
            assert_eq!(current, v2.mod_revision);
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(s.get("/k/a").await.unwrap(), Some(v2.clone()));

    match s.update("/k/missing", b"x".to_vec(), v2.mod_revision).await {
        Err(StorageError::NotFound(k)) => assert_eq!(k, "/k/missing"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    // Expecting revision 0 must not create the key.
    assert!(matches!(
        s.update("/k/missing", b"x".to_vec(), 0).await,
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(s.get("/k/missing").await.unwrap(), None);
    assert_eq!(s.current_revision().await.unwrap(), v2.mod_revision);
}

pub async fn guarded_and_unguarded_delete(b: Backend) {
    let s = b.open().await;
    let a1 = s.create("/k/a", b"1".to_vec()).await.unwrap();
    let a2 = s
        .update("/k/a", b"2".to_vec(), a1.mod_revision)
        .await
        .unwrap();

    match s.delete("/k/a", Some(a1.mod_revision)).await {
        Err(StorageError::Conflict {
            key,
            expected,
            current,
        }) => {
            assert_eq!(
                (key.as_str(), expected, current),
                ("/k/a", a1.mod_revision, a2.mod_revision)
            );
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(s.get("/k/a").await.unwrap(), Some(a2.clone()));

    let (prev, rev) = s.delete("/k/a", Some(a2.mod_revision)).await.unwrap();
    assert_eq!(prev, a2);
    assert!(rev > a2.mod_revision);
    assert_eq!(s.current_revision().await.unwrap(), rev);
    assert_eq!(s.get("/k/a").await.unwrap(), None);

    assert!(matches!(s.delete("/k/a", None).await, Err(StorageError::NotFound(k)) if k == "/k/a"));
    assert!(matches!(
        s.delete("/k/a", Some(a2.mod_revision)).await,
        Err(StorageError::NotFound(_))
    ));

    let b1 = s.create("/k/b", b"b".to_vec()).await.unwrap();
    let (prev, rev) = s.delete("/k/b", None).await.unwrap();
    assert_eq!(prev, b1);
    assert!(rev > b1.mod_revision);
    assert_eq!(s.get("/k/b").await.unwrap(), None);

    // A deleted key can be created again, with a new create revision.
    let again = s.create("/k/b", b"again".to_vec()).await.unwrap();
    assert!(again.create_revision > rev);
}

pub async fn list_prefix_and_pagination(b: Backend) {
    let s = b.open().await;
    for key in [
        "/registry/pods/ns1/e",
        "/registry/pods/ns1/a",
        "/registry/pods/ns1/c",
        "/registry/pods/ns2/x",
        "/registry/pods/ns1/b",
        "/registry/pods/ns1/d",
        "/registry/podsecurity/ns1/z",
        "/registry/services/ns1/a",
    ] {
        s.create(key, key.as_bytes().to_vec()).await.unwrap();
    }
    let current = s.current_revision().await.unwrap();

    let all = list(&s, "/registry/pods/").await;
    assert_eq!(
        keys(&all),
        [
            "/registry/pods/ns1/a",
            "/registry/pods/ns1/b",
            "/registry/pods/ns1/c",
            "/registry/pods/ns1/d",
            "/registry/pods/ns1/e",
            "/registry/pods/ns2/x",
        ]
    );
    assert!(!all.more);
    assert_eq!(all.revision, current);
    for kv in &all.kvs {
        assert_eq!(kv.value, kv.key.as_bytes());
    }
    assert_eq!(list(&s, "/registry/pods/ns1/").await.kvs.len(), 5);
    assert_eq!(list(&s, "/registry/pod").await.kvs.len(), 7);
    assert_eq!(list(&s, "").await.kvs.len(), 8);
    assert!(list(&s, "/registry/nothing/").await.kvs.is_empty());

    // Pages of two, each starting after the last key of the previous one.
    let mut seen = Vec::new();
    let mut start_after = None;
    let mut pages = 0;
    loop {
        let page = s
            .list(ListOptions {
                prefix: "/registry/pods/".into(),
                start_after: start_after.clone(),
                limit: 2,
                revision: Some(current),
            })
            .await
            .unwrap();
        pages += 1;
        assert!(page.kvs.len() <= 2);
        assert_eq!(page.revision, current);
        seen.extend(page.kvs.iter().map(|kv| kv.key.clone()));
        if !page.more {
            break;
        }
        start_after = page.kvs.last().map(|kv| kv.key.clone());
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, keys(&all));

    // A limit equal to what is left leaves nothing more.
    let exact = s
        .list(ListOptions {
            prefix: "/registry/pods/".into(),
            limit: 6,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(exact.kvs.len(), 6);
    assert!(!exact.more);
    let cut = s
        .list(ListOptions {
            prefix: "/registry/pods/".into(),
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(cut.kvs.len(), 5);
    assert!(cut.more);

    // start_after before the prefix, and after every key under it.
    let from_before = s
        .list(ListOptions {
            prefix: "/registry/pods/ns2/".into(),
            start_after: Some("/registry/pods/ns1/z".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(keys(&from_before), ["/registry/pods/ns2/x"]);
    let past_end = s
        .list(ListOptions {
            prefix: "/registry/pods/".into(),
            start_after: Some("/registry/pods/ns2/x".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(past_end.kvs.is_empty());
    assert!(!past_end.more);
}

pub async fn list_at_old_revision(b: Backend) {
    let s = b.open().await;
    let a1 = s.create("/p/a", b"a1".to_vec()).await.unwrap();
    let b1 = s.create("/p/b", b"b1".to_vec()).await.unwrap();
    let r2 = b1.mod_revision;
    let a2 = s
        .update("/p/a", b"a2".to_vec(), a1.mod_revision)
        .await
        .unwrap();
    let r3 = a2.mod_revision;
    let (_, r4) = s.delete("/p/b", None).await.unwrap();
    let c1 = s.create("/p/c", b"c1".to_vec()).await.unwrap();
    s.create("/q/outside", b"x".to_vec()).await.unwrap();

    let at = |r| list_at(&s, "/p/", r);
    let l1 = at(a1.mod_revision).await.unwrap();
    assert_eq!(l1.kvs, vec![a1.clone()]);
    assert_eq!(l1.revision, a1.mod_revision);
    assert_eq!(at(r2).await.unwrap().kvs, vec![a1.clone(), b1.clone()]);
    assert_eq!(at(r3).await.unwrap().kvs, vec![a2.clone(), b1.clone()]);
    assert_eq!(at(r4).await.unwrap().kvs, vec![a2.clone()]);
    assert_eq!(
        at(c1.mod_revision).await.unwrap().kvs,
        vec![a2.clone(), c1.clone()]
    );
    assert_eq!(list(&s, "/p/").await.kvs, vec![a2.clone(), c1.clone()]);

    // Pagination at an old revision.
    let first = s
        .list(ListOptions {
            prefix: "/p/".into(),
            limit: 1,
            revision: Some(r3),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (first.kvs.clone(), first.more, first.revision),
        (vec![a2.clone()], true, r3)
    );
    let second = s
        .list(ListOptions {
            prefix: "/p/".into(),
            limit: 1,
            revision: Some(r3),
            start_after: Some("/p/a".into()),
        })
        .await
        .unwrap();
    assert_eq!((second.kvs, second.more), (vec![b1.clone()], false));
}

pub async fn revisions_are_consecutive_and_failures_free(b: Backend) {
    let s = b.open().await;
    let mut last = s.current_revision().await.unwrap();
    let mut expect_next = |r: Revision| {
        assert_eq!(r, last + 1, "each successful write takes the next revision");
        last = r;
    };
    let a = s.create("/m/a", b"1".to_vec()).await.unwrap();
    expect_next(a.mod_revision);
    assert!(s.create("/m/a", b"x".to_vec()).await.is_err());
    let mut cur = a;
    for i in 0..10 {
        assert!(
            s.update("/m/a", b"x".to_vec(), cur.mod_revision - 1)
                .await
                .is_err()
        );
        cur = s
            .update("/m/a", format!("{i}").into_bytes(), cur.mod_revision)
            .await
            .unwrap();
        expect_next(cur.mod_revision);
    }
    assert!(s.delete("/m/a", Some(1)).await.is_err());
    let (_, r) = s.delete("/m/a", None).await.unwrap();
    expect_next(r);
    assert!(s.delete("/m/a", None).await.is_err());
    assert_eq!(s.current_revision().await.unwrap(), r);
}

pub async fn watch_replays_then_goes_live(b: Backend) {
    let s = b.open().await;
    let base = s.current_revision().await.unwrap();
    let a1 = s
        .create("/registry/pods/ns/a", b"a1".to_vec())
        .await
        .unwrap();
    s.create("/registry/services/ns/x", b"x".to_vec())
        .await
        .unwrap();
    let a2 = s
        .update("/registry/pods/ns/a", b"a2".to_vec(), a1.mod_revision)
        .await
        .unwrap();

    let mut w = s.watch("/registry/pods/", base).await.unwrap();
    let mut all = s.watch("", base).await.unwrap();
    let mut mid = s.watch("/registry/pods/", a1.mod_revision).await.unwrap();

    // Replayed history.
    assert_eq!(next_event(&mut w).await, put(&a1, None));
    assert_eq!(next_event(&mut w).await, put(&a2, Some(&a1)));

    // Live changes.
    let b1 = s
        .create("/registry/pods/ns/b", b"b1".to_vec())
        .await
        .unwrap();
    let (prev, del_rev) = s.delete("/registry/pods/ns/a", None).await.unwrap();
    assert_eq!(prev, a2);
    s.create("/registry/services/ns/y", b"y".to_vec())
        .await
        .unwrap();
    let b2 = s
        .update("/registry/pods/ns/b", b"b2".to_vec(), b1.mod_revision)
        .await
        .unwrap();

    assert_eq!(next_event(&mut w).await, put(&b1, None));
    let del = next_event(&mut w).await;
    assert_eq!(
        del,
        WatchEvent::Delete {
            prev: a2.clone(),
            revision: del_rev
        }
    );
    assert_eq!(del.revision(), del_rev);
    assert_eq!(del.key(), "/registry/pods/ns/a");
    assert_eq!(next_event(&mut w).await, put(&b2, Some(&b1)));
    assert_quiet(&mut w).await;

    // From a middle revision: only what came after it.
    assert_eq!(next_event(&mut mid).await, put(&a2, Some(&a1)));
    assert_eq!(next_event(&mut mid).await, put(&b1, None));

    // The empty prefix sees every key, in revision order with no gaps.
    let mut revs = Vec::new();
    for _ in 0..7 {
        revs.push(next_event(&mut all).await.revision());
    }
    let expected: Vec<Revision> = (base + 1..=base + 7).collect();
    assert_eq!(revs, expected);
    assert_quiet(&mut all).await;
}

pub async fn watch_from_now_sees_only_new_events(b: Backend) {
    let s = b.open().await;
    s.create("/w/old", b"old".to_vec()).await.unwrap();
    let now = s.current_revision().await.unwrap();
    let mut w = s.watch("/w/", now).await.unwrap();
    assert_quiet(&mut w).await;
    let n = s.create("/w/new", b"new".to_vec()).await.unwrap();
    assert_eq!(next_event(&mut w).await, put(&n, None));

    // A watch from a future revision waits for it.
    let mut future = s.watch("/w/", n.mod_revision + 1).await.unwrap();
    let x = s.create("/w/x", b"x".to_vec()).await.unwrap();
    let y = s.create("/w/y", b"y".to_vec()).await.unwrap();
    assert_eq!(x.mod_revision, n.mod_revision + 1);
    assert_eq!(next_event(&mut future).await, put(&y, None));
}

pub async fn watch_during_concurrent_writes_has_no_gaps(b: Backend) {
    let s = b.open().await;
    let base = s.current_revision().await.unwrap();
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                s.create(&format!("/g/{i:04}"), vec![b'x'; 64])
                    .await
                    .unwrap();
            }
        })
    };
    // Start watching while the writes are in flight.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut w = s.watch("/g/", base).await.unwrap();
    for i in 0..200 {
        let e = next_event(&mut w).await;
        assert_eq!(e.revision(), base + 1 + i, "event {i}");
        assert_eq!(e.key(), format!("/g/{i:04}"));
    }
    writer.await.unwrap();
    assert_quiet(&mut w).await;
}

pub async fn compaction(b: Backend) {
    let s = b.open().await;
    let mut revs = Vec::new();
    for i in 1..=5 {
        revs.push(
            s.create(&format!("/c/k{i}"), vec![i as u8])
                .await
                .unwrap()
                .mod_revision,
        );
    }
    let (r1, r2, r3) = (revs[0], revs[1], revs[2]);
    s.compact(r3).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), r3);

    match s.watch("/c/", r1).await {
        Err(StorageError::Compacted { compacted, .. }) => assert_eq!(compacted, r3),
        Err(e) => panic!("expected Compacted, got {e}"),
        Ok(_) => panic!("expected Compacted, got a watch"),
    }
    // From r3 - 1 on, everything needed is still there.
    let mut w = s.watch("/c/", r2).await.unwrap();
    for r in &revs[2..] {
        assert_eq!(next_event(&mut w).await.revision(), *r);
    }

    match list_at(&s, "/c/", r2).await {
        Err(StorageError::Compacted {
            requested,
            compacted,
        }) => assert_eq!((requested, compacted), (r2, r3)),
        other => panic!("expected Compacted, got {other:?}"),
    }
    let at3 = list_at(&s, "/c/", r3).await.unwrap();
    assert_eq!(keys(&at3), ["/c/k1", "/c/k2", "/c/k3"]);
    // The current state is untouched.
    assert_eq!(list(&s, "/c/").await.kvs.len(), 5);

    // Compacting again below the compacted revision is a no-op.
    s.compact(r2).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), r3);
}

pub async fn future_revision(b: Backend) {
    let s = b.open().await;
    s.create("/f/a", b"a".to_vec()).await.unwrap();
    let current = s.current_revision().await.unwrap();
    match list_at(&s, "/f/", current + 10).await {
        Err(StorageError::FutureRevision {
            requested,
            current: c,
        }) => assert_eq!((requested, c), (current + 10, current)),
        other => panic!("expected FutureRevision, got {other:?}"),
    }
    assert!(matches!(
        s.compact(current + 10).await,
        Err(StorageError::FutureRevision { .. })
    ));
    // The current revision itself is fine.
    assert_eq!(list_at(&s, "/f/", current).await.unwrap().kvs.len(), 1);
}

pub async fn concurrent_writers(b: Backend) {
    let s = b.open().await;
    let before = s.current_revision().await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..16 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..50 {
                let kv = s
                    .create(
                        &format!("/cw/{t:02}/{i:02}"),
                        format!("{t}-{i}").into_bytes(),
                    )
                    .await
                    .unwrap();
                assert_eq!(kv.create_revision, kv.mod_revision);
                revs.push(kv.mod_revision);
            }
            revs
        }));
    }
    let mut all = BTreeSet::new();
    for t in tasks {
        let revs = t.await.unwrap();
        // One task's writes are acknowledged in order.
        assert!(revs.windows(2).all(|w| w[0] < w[1]));
        all.extend(revs);
    }
    assert_eq!(all.len(), 800, "every write has its own revision");
    let expected: BTreeSet<Revision> = (before + 1..=before + 800).collect();
    assert_eq!(all, expected);
    assert_eq!(s.current_revision().await.unwrap(), before + 800);
    let listed = list(&s, "/cw/").await;
    assert_eq!(listed.kvs.len(), 800);
    for kv in &listed.kvs {
        let parts: Vec<&str> = kv.key.split('/').collect();
        let expected_value = format!(
            "{}-{}",
            parts[2].parse::<u32>().unwrap(),
            parts[3].parse::<u32>().unwrap()
        );
        assert_eq!(kv.value, expected_value.into_bytes());
    }
}

pub async fn reopen_keeps_data_and_revisions(mut b: Backend) {
    let (a2, compacted_at, mid, last) = {
        let s = b.open().await;
        let a1 = s.create("/r/a", b"a1".to_vec()).await.unwrap();
        let b1 = s.create("/r/b", b"b1".to_vec()).await.unwrap();
        let compacted_at = b1.mod_revision;
        let a2 = s
            .update("/r/a", b"a2".to_vec(), a1.mod_revision)
            .await
            .unwrap();
        let mid = a2.mod_revision;
        s.delete("/r/b", None).await.unwrap();
        s.compact(compacted_at).await.unwrap();
        let last = s.current_revision().await.unwrap();
        (a2, compacted_at, mid, last)
    };
    b.restart();
    let s = b.open().await;
    assert_eq!(s.current_revision().await.unwrap(), last);
    assert_eq!(s.compacted_revision().await.unwrap(), compacted_at);
    assert_eq!(s.get("/r/a").await.unwrap(), Some(a2.clone()));
    assert_eq!(s.get("/r/b").await.unwrap(), None);
    // Retained history survives too.
    assert_eq!(
        keys(&list_at(&s, "/r/", mid).await.unwrap()),
        ["/r/a", "/r/b"]
    );
    let mut w = s.watch("/r/", mid).await.unwrap();
    assert!(matches!(
        next_event(&mut w).await,
        WatchEvent::Delete { .. }
    ));
    drop(w);

    let c = s.create("/r/c", b"c".to_vec()).await.unwrap();
    assert_eq!(c.mod_revision, last + 1);
    drop(s);

    // And once more, to see the new write made it too.
    b.restart();
    let s = b.open().await;
    assert_eq!(s.get("/r/c").await.unwrap(), Some(c));
    assert_eq!(s.current_revision().await.unwrap(), last + 1);
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Backend::embedded()).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Backend::etcd()).await;
                }
            )*
        }
    };
}

conformance!(
    create_and_get,
    guarded_update,
    guarded_and_unguarded_delete,
    list_prefix_and_pagination,
    list_at_old_revision,
    revisions_are_consecutive_and_failures_free,
    watch_replays_then_goes_live,
    watch_from_now_sees_only_new_events,
    watch_during_concurrent_writes_has_no_gaps,
    compaction,
    future_revision,
    concurrent_writers,
    reopen_keeps_data_and_revisions,
);
