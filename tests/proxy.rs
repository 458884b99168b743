//! The Service proxy (`skiff_nodeagent::proxy::Proxier::run`) against a real API server: the
//! rules follow Services and EndpointSlices written through the API, proven by traffic. The
//! test thread is the node, in a network namespace of its own (so are the server, which it
//! starts, and the "pods"): see `nodeagent/tests/support/net.rs`. Root only.

#[path = "../nodeagent/tests/support/net.rs"]
mod net;
mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use net::{Pod, get, in_netns};
use serde_json::json;
use skiff_nodeagent::proxy::{Proxier, ProxyConfig};
use support::{Backend, Server, wait_for};

const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

/// `n` GETs of the ClusterIP off the runtime's thread (a connection to a ClusterIP without
/// rules waits for its timeout): the pages seen, or None if any failed.
async fn pages(n: usize) -> Option<Vec<String>> {
    tokio::task::spawn_blocking(move || {
        (0..n)
            .map(|_| {
                get(SocketAddr::from((CLUSTER_IP, 80)))
                    .ok()
                    .map(|b| b.trim().to_string())
            })
            .collect()
    })
    .await
    .ok()?
}

fn slice_endpoints(pods: &[&Pod]) -> serde_json::Value {
    pods.iter()
        .map(|p| json!({"addresses": [p.ip.to_string()], "conditions": {"ready": true}}))
        .collect()
}

#[test]
fn proxier_follows_services_and_endpoint_slices() {
    if !net::require() {
        return;
    }
    in_netns(|| {
        net::make_bridge();
        let one = Pod::start(1, "endpoint-1");
        let two = Pod::start(2, "endpoint-2");
        let server = Server::start_with(
            Backend::Embedded,
            &["--controllers=false", "--scheduler=false"],
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let client = server.client().await;
            let config = ProxyConfig {
                cluster_cidr: Some(net::POD_CIDR.parse().expect("cidr")),
                min_sync_interval: Duration::from_millis(100),
                sync_period: Duration::from_secs(5),
                ..ProxyConfig::new("node-a")
            };
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let proxier = tokio::spawn(Proxier::run(client.clone(), config, async {
                let _ = stopped.await;
            }));

            // A Service without a selector, with its EndpointSlice written by hand (no
            // controller manages either).
            let services: Api<Service> = Api::namespaced(client.clone(), "default");
            let service: Service = serde_json::from_value(json!({
                "metadata": {"name": "web"},
                "spec": {"clusterIP": CLUSTER_IP.to_string(),
                    "ports": [{"name": "http", "port": 80, "targetPort": 80}]},
            }))
            .expect("service");
            services
                .create(&PostParams::default(), &service)
                .await
                .expect("create service");
            let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
            let slice: EndpointSlice = serde_json::from_value(json!({
                "metadata": {"name": "web-1",
                    "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}],
                "endpoints": slice_endpoints(&[&one, &two]),
            }))
            .expect("slice");
            slices
                .create(&PostParams::default(), &slice)
                .await
                .expect("create slice");

            wait_for("both endpoints behind the ClusterIP", || async {
                let seen = pages(20).await?;
                (seen.contains(&"endpoint-1".to_string())
                    && seen.contains(&"endpoint-2".to_string()))
                .then_some(())
            })
            .await;

            let patch = json!({"endpoints": slice_endpoints(&[&two])});
            slices
                .patch("web-1", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("patch slice");
            wait_for("only endpoint-2 behind the ClusterIP", || async {
                pages(20)
                    .await?
                    .iter()
                    .all(|p| p == "endpoint-2")
                    .then_some(())
            })
            .await;

            services
                .delete("web", &DeleteParams::default())
                .await
                .expect("delete service");
            wait_for("the Service's chains gone", || async {
                let nat = tokio::task::spawn_blocking(|| net::sh(&["iptables-save", "-t", "nat"]))
                    .await
                    .ok()?;
                (!nat.contains(":SKIFF-SVC-") && !nat.contains(":SKIFF-SEP-")).then_some(())
            })
            .await;

            let _ = stop.send(());
            let result = proxier.await.expect("proxier task");
            assert!(result.is_ok(), "the proxier failed: {result:?}");
        });
        Proxier::cleanup().expect("cleanup");
        assert_eq!(net::skiff_chains(), Vec::<String>::new());
    });
}
