//! Behaviour of the etcd backend beyond the shared conformance suite: an absent or restarted
//! server, and compaction done by another client.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use futures::StreamExt;
use skiff_storage::etcd::{EtcdOptions, EtcdStore};
use skiff_storage::testutil::EtcdServer;
use skiff_storage::{ListOptions, Storage, StorageError};

fn unused_endpoint() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port())
}

fn quick() -> EtcdOptions {
    EtcdOptions {
        request_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_millis(500),
        ready_timeout: Duration::from_millis(500),
    }
}

#[tokio::test]
async fn no_server_means_unavailable_not_a_connect_error() {
    let store = EtcdStore::connect_with(&[unused_endpoint()], quick())
        .await
        .expect("connect is lazy");
    assert!(!store.ready().await);
    let started = Instant::now();
    assert!(matches!(
        store.get("/a").await,
        Err(StorageError::Unavailable(_))
    ));
    assert!(matches!(
        store.create("/a", vec![]).await,
        Err(StorageError::Unavailable(_))
    ));
    assert!(matches!(
        store.list(ListOptions::default()).await,
        Err(StorageError::Unavailable(_))
    ));
    assert!(matches!(
        store.watch("/", 0).await,
        Err(StorageError::Unavailable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_server_restart() {
    let mut server = EtcdServer::start();
    let store = EtcdStore::connect_with(&server.endpoints(), quick())
        .await
        .unwrap();
    let a = store.create("/r/a", b"a".to_vec()).await.unwrap();
    let mut w = store.watch("/r/", a.mod_revision).await.unwrap();

    server.stop();
    assert!(!store.ready().await);
    assert!(matches!(
        store.get("/r/a").await,
        Err(StorageError::Unavailable(_))
    ));
    // The watch cannot go on without the server; it says so and ends.
    match tokio::time::timeout(Duration::from_secs(30), w.next()).await {
        Ok(Some(Err(StorageError::Unavailable(_)))) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }

    server.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !store.ready().await {
        assert!(Instant::now() < deadline, "client did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.get("/r/a").await.unwrap(), Some(a));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sees_compaction_done_by_another_client() {
    let server = EtcdServer::start();
    let one = EtcdStore::connect(&server.endpoints()).await.unwrap();
    let two = EtcdStore::connect(&server.endpoints()).await.unwrap();
    let mut last = 0;
    for i in 0..40 {
        last = one
            .create(&format!("/x/{i}"), vec![])
            .await
            .unwrap()
            .mod_revision;
    }
    one.compact(last - 5).await.unwrap();
    assert_eq!(two.compacted_revision().await.unwrap(), last - 5);
    assert!(matches!(
        two.watch("/x/", 1).await,
        Err(StorageError::Compacted { compacted, .. }) if compacted == last - 5
    ));
}
