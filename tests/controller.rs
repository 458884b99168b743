//! The controller manager against a real API server (embedded store): each test runs
//! `skiff_controller::run` in this process against a `skiff server` whose own controllers are
//! off, except the ones that check what `skiff server` and `skiff controller-manager` run.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use skiff_client::LeaderElectionConfig;
use skiff_controller::{ControllerError, ControllerManagerConfig};
use support::{Backend, Server, wait_for};

/// An API server without its in-process controllers (and scheduler), and a client.
async fn without_controllers() -> (Server, kube::Client) {
    let server = Server::start_with(
        Backend::Embedded,
        &["--controllers=false", "--scheduler=false"],
    );
    let client = server.client().await;
    (server, client)
}

/// One controller manager without leader election, in this process.
fn run_controllers(client: &kube::Client) -> tokio::task::JoinHandle<Result<(), ControllerError>> {
    tokio::spawn(skiff_controller::run(
        client.clone(),
        ControllerManagerConfig {
            leader_election: None,
            ..Default::default()
        },
    ))
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": name}})).expect("namespace");
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create namespace");
}

/// The uid of `namespace`'s `default` ServiceAccount, if there is one.
async fn default_uid(sas: &Api<ServiceAccount>) -> Option<String> {
    sas.get_opt("default")
        .await
        .ok()
        .flatten()
        .and_then(|sa| sa.metadata.uid)
}

/// The uid of `namespace`'s `default` ServiceAccount once it exists.
async fn default_service_account(client: &kube::Client, namespace: &str) -> String {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    wait_for(&format!("ServiceAccount {namespace}/default"), || {
        default_uid(&sas)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_namespace_gets_default_service_account() {
    let (_server, client) = without_controllers().await;
    let controllers = run_controllers(&client);
    // The namespaces the API server made at start-up, and one made after the controller.
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        default_service_account(&client, ns).await;
    }
    create_namespace(&client, "team-a").await;
    default_service_account(&client, "team-a").await;
    assert!(!controllers.is_finished());
    controllers.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_default_service_account_comes_back() {
    let (_server, client) = without_controllers().await;
    let controllers = run_controllers(&client);
    create_namespace(&client, "team-b").await;
    let first = default_service_account(&client, "team-b").await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "team-b");
    sas.delete("default", &DeleteParams::default())
        .await
        .expect("delete");
    let again = wait_for("a new default ServiceAccount", || async {
        default_uid(&sas).await.filter(|uid| *uid != first)
    })
    .await;
    assert_ne!(again, first);
    controllers.abort();
}

/// A namespace being deleted gets nothing new, and the controller does not loop on the
/// API server's refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_namespace_gets_no_service_account() {
    let (_server, client) = without_controllers().await;
    let controllers = run_controllers(&client);
    create_namespace(&client, "leaving").await;
    default_service_account(&client, "leaving").await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    // The namespace controller empties it no sooner than 5 s after the deletion, so it is
    // Terminating with its content for the rest of this test.
    namespaces
        .delete("leaving", &DeleteParams::default())
        .await
        .expect("delete namespace");
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "leaving");
    sas.delete("default", &DeleteParams::default())
        .await
        .expect("delete");
    // Another namespace still works, which also shows the controller has seen past the delete.
    create_namespace(&client, "staying").await;
    default_service_account(&client, "staying").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        sas.get_opt("default").await.expect("get").is_none(),
        "a ServiceAccount was created in a terminating namespace"
    );
    assert!(!controllers.is_finished());
    controllers.abort();
}

/// `skiff server` runs the controller manager by default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skiff_server_runs_the_controllers_by_default() {
    let server = Server::start(Backend::Embedded);
    let client = server.client().await;
    default_service_account(&client, "default").await;
    create_namespace(&client, "team-c").await;
    default_service_account(&client, "team-c").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let lease = leases
        .get("kube-controller-manager")
        .await
        .expect("the in-process controller manager holds its Lease");
    assert!(lease.spec.and_then(|s| s.holder_identity).is_some());
}

/// Kills the child by PID when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `skiff controller-manager --kubeconfig FILE` runs the controllers alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skiff_controller_manager_runs_alone() {
    let (server, client) = without_controllers().await;
    let _manager = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("controller-manager")
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .arg("--leader-elect=false")
            .env("SKIFF_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn skiff controller-manager"),
    );
    create_namespace(&client, "team-d").await;
    default_service_account(&client, "team-d").await;
}

/// Two controller managers, one Lease: only the holder runs its controllers; when it stops
/// renewing, the other takes over once the lease expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lease_one_active_controller_manager() {
    let (_server, client) = without_controllers().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let config = |identity: &str| ControllerManagerConfig {
        leader_election: Some(LeaderElectionConfig {
            identity: identity.into(),
            lease_duration: Duration::from_secs(2),
            renew_deadline: Duration::from_millis(1500),
            retry_period: Duration::from_millis(200),
            ..LeaderElectionConfig::new("kube-controller-manager")
        }),
        ..Default::default()
    };
    let holder = || async {
        leases
            .get_opt("kube-controller-manager")
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec?.holder_identity)
    };
    let first = tokio::spawn(skiff_controller::run(client.clone(), config("first")));
    wait_for("first to hold the lease", || async {
        (holder().await.as_deref() == Some("first")).then_some(())
    })
    .await;
    let second = tokio::spawn(skiff_controller::run(client.clone(), config("second")));
    create_namespace(&client, "team-e").await;
    default_service_account(&client, "team-e").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(holder().await.as_deref(), Some("first"), "the lease moved");
    assert!(!second.is_finished());

    // The leader goes away without releasing: the other takes over once the lease expires
    // and runs the controllers.
    first.abort();
    wait_for("second to take the lease", || async {
        (holder().await.as_deref() == Some("second")).then_some(())
    })
    .await;
    create_namespace(&client, "team-f").await;
    default_service_account(&client, "team-f").await;
    second.abort();
}
