//! The Endpoints and EndpointSlice controller against a real API server (embedded store), with
//! pod IPs and readiness written by the test (no agent): addresses follow readiness, named
//! target ports resolve per pod, a pod whose labels change leaves, and a deleted Service's
//! Endpoints go.

mod support;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::{wait_for, with_controller_manager};

async fn create_pod(pods: &Api<Pod>, name: &str, app: &str, ip: &str, ready: bool) {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "ports": [{"name": "http", "containerPort": 8080}]}]},
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    set_status(pods, name, ip, ready).await;
}

async fn set_status(pods: &Api<Pod>, name: &str, ip: &str, ready: bool) {
    let status = json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("pod status");
}

/// (ready IPs, not-ready IPs, ports as name:port) of the Endpoints, once it exists.
async fn endpoints_of(
    client: &Client,
    name: &str,
) -> Option<(Vec<String>, Vec<String>, Vec<String>)> {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let ep = api.get_opt(name).await.ok()??;
    let (mut ready, mut not_ready, mut ports) = (Vec::new(), Vec::new(), Vec::new());
    for subset in ep.subsets.unwrap_or_default() {
        ready.extend(
            subset
                .addresses
                .unwrap_or_default()
                .into_iter()
                .map(|a| a.ip),
        );
        not_ready.extend(
            subset
                .not_ready_addresses
                .unwrap_or_default()
                .into_iter()
                .map(|a| a.ip),
        );
        for p in subset.ports.unwrap_or_default() {
            let port = format!("{}:{}", p.name.unwrap_or_default(), p.port);
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
    }
    ready.sort();
    not_ready.sort();
    ports.sort();
    Some((ready, not_ready, ports))
}

/// (address, ready) of every endpoint in the Service's slices.
async fn slice_endpoints(client: &Client, service: &str) -> Vec<(String, bool)> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slices = api
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .expect("list slices");
    let mut out: Vec<(String, bool)> = slices
        .items
        .iter()
        .flat_map(|s| s.endpoints.clone().unwrap_or_default())
        .map(|e| {
            let ready = e.conditions.and_then(|c| c.ready).unwrap_or(false);
            (e.addresses.join(","), ready)
        })
        .collect();
    out.sort();
    out
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn endpoints_and_slices_follow_the_selected_pods() {
    let (_server, client, _manager) = with_controller_manager(Default::default()).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    create_pod(&pods, "a", "web", "10.244.1.10", true).await;
    create_pod(&pods, "b", "web", "10.244.1.11", false).await;
    create_pod(&pods, "other", "db", "10.244.1.12", true).await;
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "labels": {"tier": "front"}},
        "spec": {"selector": {"app": "web"}, "ports": [
            {"name": "http", "port": 80, "targetPort": "http"},
            {"name": "admin", "port": 9000, "targetPort": 9001}]},
    }))
    .expect("service");
    services
        .create(&PostParams::default(), &service)
        .await
        .expect("create service");

    wait_for("Endpoints with a ready and a not-ready address", || async {
        let found = endpoints_of(&client, "web").await?;
        (found
            == (
                strings(&["10.244.1.10"]),
                strings(&["10.244.1.11"]),
                strings(&["admin:9001", "http:8080"]),
            ))
            .then_some(())
    })
    .await;
    let ep: Endpoints = Api::namespaced(client.clone(), "default")
        .get("web")
        .await
        .expect("get endpoints");
    assert_eq!(ep.labels().get("tier").map(String::as_str), Some("front"));
    wait_for("slices with both pods", || async {
        let found = slice_endpoints(&client, "web").await;
        (found == [("10.244.1.10".into(), true), ("10.244.1.11".into(), false)]).then_some(())
    })
    .await;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let slice = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .expect("list slices")
        .items
        .remove(0);
    assert_eq!(
        slice
            .labels()
            .get("endpointslice.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("endpointslice-controller.k8s.io")
    );
    assert_eq!(slice.address_type, "IPv4");
    let owner = &slice.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Service", "web")
    );

    // Readiness flips both ways.
    set_status(&pods, "b", "10.244.1.11", true).await;
    set_status(&pods, "a", "10.244.1.10", false).await;
    wait_for("the addresses to follow readiness", || async {
        let (ready, not_ready, _) = endpoints_of(&client, "web").await?;
        (ready == strings(&["10.244.1.11"]) && not_ready == strings(&["10.244.1.10"])).then_some(())
    })
    .await;

    // A pod relabelled out of the Service leaves it; a new one joins.
    pods.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "elsewhere"}}})),
    )
    .await
    .expect("relabel");
    create_pod(&pods, "c", "web", "10.244.1.13", true).await;
    wait_for("b to leave and c to join", || async {
        let (ready, not_ready, _) = endpoints_of(&client, "web").await?;
        (ready == strings(&["10.244.1.13"]) && not_ready == strings(&["10.244.1.10"])).then_some(())
    })
    .await;
    wait_for("the slices to follow", || async {
        let found = slice_endpoints(&client, "web").await;
        (found == [("10.244.1.10".into(), false), ("10.244.1.13".into(), true)]).then_some(())
    })
    .await;

    // A deleted pod leaves.
    pods.delete("c", &DeleteParams::default())
        .await
        .expect("delete pod");
    wait_for("c to leave", || async {
        let (ready, _, _) = endpoints_of(&client, "web").await?;
        ready.is_empty().then_some(())
    })
    .await;

    // The Service goes, and its Endpoints with it.
    services
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete service");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    wait_for("the Endpoints to be deleted", || async {
        matches!(endpoints.get_opt("web").await, Ok(None)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn services_without_a_selector_keep_the_users_endpoints() {
    let (_server, client, _manager) = with_controller_manager(Default::default()).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let service: Service = serde_json::from_value(json!({
        "metadata": {"name": "external"},
        "spec": {"ports": [{"port": 5432}]},
    }))
    .expect("service");
    services
        .create(&PostParams::default(), &service)
        .await
        .expect("create service");
    let mine: Endpoints = serde_json::from_value(json!({
        "metadata": {"name": "external"},
        "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 5432}]}],
    }))
    .expect("endpoints");
    endpoints
        .create(&PostParams::default(), &mine)
        .await
        .expect("create endpoints");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (ready, _, _) = endpoints_of(&client, "external").await.expect("endpoints");
    assert_eq!(ready, strings(&["192.0.2.10"]));
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let managed = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=external"))
        .await
        .expect("list slices");
    assert!(managed.items.is_empty(), "{:?}", managed.items);
}
