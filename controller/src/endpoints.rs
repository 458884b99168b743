//! kube-controller-manager's Endpoints and EndpointSlice controllers, run as one: both turn
//! the pods a Service selects into addresses, so one sync per Service writes both, from one
//! pod watch.
//!
//! * **Endpoints** (`endpoint-controller`): one object named as the Service. A pod with an IP
//!   that is not terminated (by its restart policy) is listed — in `addresses` when Ready (or
//!   the Service has `publishNotReadyAddresses`), else in `notReadyAddresses`; a terminating
//!   pod only with `publishNotReadyAddresses`. Each Service port's `targetPort` is resolved
//!   per pod (a name looks up the container port of that name and protocol; a pod without it
//!   is left out of that port), subsets group the addresses with identical ports. A headless
//!   Service without ports lists bare addresses. Endpoints whose Service is gone are deleted.
//! * **EndpointSlices** (`endpointslice-controller`): slices labelled
//!   `kubernetes.io/service-name` and managed by `endpointslice-controller.k8s.io`, owned by
//!   the Service (the garbage collector removes them with it), at most 100 endpoints each,
//!   one group per distinct port list. Terminating pods stay listed with `ready: false`,
//!   `terminating: true` and `serving` as their readiness. Existing slices are updated in
//!   place when they differ, extra ones deleted.
//!
//! Only Services with a selector are managed: the endpoints of a selector-less Service are
//! the user's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};

use crate::manager::ControllerError;

/// kube-controller-manager's names for the two (`--controllers`).
pub const NAME: &str = "endpoint-controller";
pub const SLICE_NAME: &str = "endpointslice-controller";

/// The `endpointslice.kubernetes.io/managed-by` value of this controller's slices.
const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Endpoints carrying this annotation are a leader-election record, not a Service's.
const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";
/// Upstream's `--max-endpoints-per-slice` default.
const MAX_ENDPOINTS_PER_SLICE: usize = 100;
/// Upstream's cap on addresses in one Endpoints object.
const MAX_ENDPOINTS: usize = 1000;

const RETRY: Duration = Duration::from_secs(5);

struct Context {
    client: Client,
    pods: Store<Pod>,
    /// Pod uid → the Services whose last sync listed it: a pod whose labels change must wake
    /// the Service it leaves as well as the ones it joins.
    listed_in: Mutex<HashMap<String, HashSet<ObjectRef<Service>>>>,
}

impl Context {
    fn listed(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<ObjectRef<Service>>>> {
        self.listed_in.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error("the pod cache stopped")]
    PodCacheGone,
    #[error("{verb} {what} {namespace}/{name}: {source}")]
    Write {
        verb: &'static str,
        what: &'static str,
        namespace: String,
        name: String,
        source: kube::Error,
    },
}

/// Runs the controller until its watches end.
pub async fn run(client: Client) -> Result<(), ControllerError> {
    let (pods, pod_writer) = reflector::store();
    let pod_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .modify(crate::informers::strip_managed_fields)
        .reflect(pod_writer)
        .touched_objects();
    let controller = Controller::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let services = controller.store();
    let ctx = Arc::new(Context {
        client: client.clone(),
        pods,
        listed_in: Mutex::new(HashMap::new()),
    });
    let mapper_ctx = ctx.clone();
    let results = controller
        .watches_stream(pod_events, move |pod| {
            services_of(&pod, &services, &mapper_ctx)
        })
        .watches(
            Api::<Endpoints>::all(client.clone()),
            watcher::Config::default(),
            |ep| Some(ObjectRef::new(&ep.name_any()).within(&ep.namespace()?)),
        )
        .watches(
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
            |slice| {
                let service = slice.labels().get(SERVICE_NAME_LABEL)?.clone();
                Some(ObjectRef::new(&service).within(&slice.namespace()?))
            },
        )
        .run(sync, error_policy, ctx);
    // A sync only runs for a Service still in the cache, so deletions are watched apart.
    let deletions = watcher(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .for_each(|event| {
        let client = client.clone();
        async move {
            if let Ok(watcher::Event::Delete(service)) = event
                && let Some(namespace) = service.namespace()
            {
                delete_leftover_endpoints(&client, &namespace, &service.name_any()).await;
            }
        }
    });
    let syncs = results.for_each(|result| {
        let client = client.clone();
        async move {
            use kube::runtime::controller::Error;
            match result {
                Ok(_) => {}
                // The Service is gone (or never was): its Endpoints go too.
                Err(Error::ObjectNotFound(service)) => {
                    if let Some(namespace) = service.namespace.as_deref() {
                        delete_leftover_endpoints(&client, namespace, &service.name).await;
                    }
                }
                Err(e) => tracing::warn!(controller = NAME, error = %e, "sync failed"),
            }
        }
    });
    tokio::select! {
        () = syncs => {}
        () = deletions => {}
    }
    Err(ControllerError::Stopped {
        controller: NAME,
        reason: "its watch stream ended".into(),
    })
}

fn error_policy(_service: Arc<Service>, error: &SyncError, _ctx: Arc<Context>) -> Action {
    tracing::debug!(controller = NAME, %error, "retrying");
    Action::requeue(RETRY)
}

/// The Services a pod event concerns: those of its namespace selecting it now, and those that
/// listed it.
fn services_of(pod: &Pod, services: &Store<Service>, ctx: &Context) -> Vec<ObjectRef<Service>> {
    let namespace = pod.namespace().unwrap_or_default();
    let mut out: HashSet<ObjectRef<Service>> = services
        .state()
        .iter()
        .filter(|s| s.namespace().as_deref() == Some(namespace.as_str()))
        .filter(|s| selector(s).is_some_and(|sel| selects(sel, pod)))
        .map(|s| ObjectRef::from_obj(&**s))
        .collect();
    if let Some(uid) = pod.uid()
        && let Some(listed) = ctx.listed().get(&uid)
    {
        out.extend(listed.iter().cloned());
    }
    out.into_iter().collect()
}

/// The Service's selector; `None` (unmanaged) when it has none.
fn selector(service: &Service) -> Option<&BTreeMap<String, String>> {
    service
        .spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    let labels = pod.labels();
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn is_headless(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn pod_ip(pod: &Pod) -> Option<&str> {
    let status = pod.status.as_ref()?;
    status
        .pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
        .or_else(|| status.pod_ips.as_ref()?.first().map(|p| p.ip.as_str()))
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Upstream's `ShouldPodBeInEndpoints`: it has an IP, it will not run again, and it is not
/// terminating unless those are wanted.
fn should_list(pod: &Pod, include_terminating: bool) -> bool {
    if pod_ip(pod).is_none() {
        return false;
    }
    if !include_terminating && pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
        Some("Never") => !matches!(phase, Some("Failed" | "Succeeded")),
        Some("OnFailure") => phase != Some("Succeeded"),
        _ => true,
    }
}

/// Upstream's `podutil.FindPort`: the pod's port for a Service port (`None` when a named
/// target port is not among the pod's container ports of that protocol).
fn find_port(pod: &Pod, port: &ServicePort) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match &port.target_port {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => pod
            .spec
            .as_ref()?
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| {
                p.name.as_deref() == Some(name.as_str())
                    && p.protocol.as_deref().unwrap_or("TCP") == protocol
            })
            .map(|p| p.container_port),
    }
}

/// The hostname a pod gets in its Service's records: its `spec.hostname` when its
/// `spec.subdomain` names the Service.
fn hostname(pod: &Pod, service: &Service) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    (spec.subdomain.as_deref() == Some(service.name_any().as_str())).then(|| host.to_string())
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.namespace(),
        name: Some(pod.name_any()),
        uid: pod.uid(),
        ..Default::default()
    }
}

/// The labels of a Service's Endpoints and slices: the Service's own, plus the headless mark.
fn service_labels(service: &Service) -> BTreeMap<String, String> {
    let mut labels = service.labels().clone();
    if is_headless(service) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    labels
}

/// The pods of `service`, in a stable order.
fn selected_pods(service: &Service, pods: &Store<Pod>) -> Vec<Arc<Pod>> {
    let Some(selector) = selector(service) else {
        return Vec::new();
    };
    let namespace = service.namespace();
    let mut out: Vec<Arc<Pod>> = pods
        .state()
        .into_iter()
        .filter(|p| p.namespace() == namespace && selects(selector, p))
        .collect();
    out.sort_by_key(|p| p.name_any());
    out
}

/// The Endpoints subsets for `pods` (upstream's `syncService` then `RepackSubsets`).
fn endpoint_subsets(service: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let spec = service.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let ports = spec.ports.unwrap_or_default();
    // Port list (as a key) → (ports, ready addresses, not-ready addresses).
    type Group = (
        Vec<EndpointPort>,
        Vec<EndpointAddress>,
        Vec<EndpointAddress>,
    );
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    let mut listed = 0;
    for pod in pods {
        if listed >= MAX_ENDPOINTS || !should_list(pod, publish_not_ready) {
            continue;
        }
        let Some(ip) = pod_ip(pod) else { continue };
        let address = EndpointAddress {
            ip: ip.to_string(),
            hostname: hostname(pod, service),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(pod)),
        };
        let mut resolved: Vec<EndpointPort> = ports
            .iter()
            .filter_map(|p| {
                Some(EndpointPort {
                    name: p.name.clone(),
                    port: find_port(pod, p)?,
                    protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: p.app_protocol.clone(),
                })
            })
            .collect();
        if resolved.is_empty() && !(ports.is_empty() && is_headless(service)) {
            continue;
        }
        resolved.sort_by(|a, b| (&a.name, a.port).cmp(&(&b.name, b.port)));
        let key = serde_json::to_string(&resolved).unwrap_or_default();
        let group = groups
            .entry(key)
            .or_insert_with(|| (resolved, Vec::new(), Vec::new()));
        if publish_not_ready || is_ready(pod) {
            group.1.push(address);
        } else {
            group.2.push(address);
        }
        listed += 1;
    }
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            let by_ip = |a: &EndpointAddress, b: &EndpointAddress| {
                (&a.ip, a.target_ref.as_ref().and_then(|r| r.uid.as_ref()))
                    .cmp(&(&b.ip, b.target_ref.as_ref().and_then(|r| r.uid.as_ref())))
            };
            ready.sort_by(by_ip);
            not_ready.sort_by(by_ip);
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

/// The desired EndpointSlices' contents: (ports, endpoints) per slice.
fn desired_slices(service: &Service, pods: &[Arc<Pod>]) -> Vec<(Vec<SlicePort>, Vec<Endpoint>)> {
    let spec = service.spec.clone().unwrap_or_default();
    let publish_not_ready = spec.publish_not_ready_addresses == Some(true);
    let ports = spec.ports.unwrap_or_default();
    let mut groups: BTreeMap<String, (Vec<SlicePort>, Vec<Endpoint>)> = BTreeMap::new();
    for pod in pods {
        if !should_list(pod, true) {
            continue;
        }
        let Some(ip) = pod_ip(pod) else { continue };
        let resolved: Vec<SlicePort> = ports
            .iter()
            .filter_map(|p| {
                Some(SlicePort {
                    name: Some(p.name.clone().unwrap_or_default()),
                    port: Some(find_port(pod, p)?),
                    protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: p.app_protocol.clone(),
                })
            })
            .collect();
        if resolved.is_empty() && !ports.is_empty() {
            continue;
        }
        let serving = publish_not_ready || is_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let endpoint = Endpoint {
            addresses: vec![ip.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(serving && !terminating),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname(pod, service),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            target_ref: Some(target_ref(pod)),
            ..Default::default()
        };
        let key = serde_json::to_string(&resolved).unwrap_or_default();
        groups
            .entry(key)
            .or_insert_with(|| (resolved, Vec::new()))
            .1
            .push(endpoint);
    }
    let mut out = Vec::new();
    for (ports, mut endpoints) in groups.into_values() {
        endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        for chunk in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.push((ports.clone(), chunk.to_vec()));
        }
    }
    // A Service selecting nothing still has one slice, without ports or endpoints (upstream's
    // placeholder), so that its consumers see it exists.
    if out.is_empty() {
        out.push((Vec::new(), Vec::new()));
    }
    out
}

async fn sync(service: Arc<Service>, ctx: Arc<Context>) -> Result<Action, SyncError> {
    ctx.pods
        .wait_until_ready()
        .await
        .map_err(|_| SyncError::PodCacheGone)?;
    let key = ObjectRef::from_obj(&*service);
    if selector(&service).is_none() || service.metadata.deletion_timestamp.is_some() {
        forget(&ctx, &key, &HashSet::new());
        return Ok(Action::await_change());
    }
    let pods = selected_pods(&service, &ctx.pods);
    let listed: HashSet<String> = pods.iter().filter_map(|p| p.uid()).collect();
    sync_endpoints(&ctx, &service, &pods).await?;
    sync_slices(&ctx, &service, &pods).await?;
    forget(&ctx, &key, &listed);
    Ok(Action::await_change())
}

/// Records that `service` now lists exactly the pods `listed`.
fn forget(ctx: &Context, service: &ObjectRef<Service>, listed: &HashSet<String>) {
    let mut index = ctx.listed();
    index.retain(|uid, services| {
        if !listed.contains(uid) {
            services.remove(service);
        }
        !services.is_empty()
    });
    for uid in listed {
        index
            .entry(uid.clone())
            .or_default()
            .insert(service.clone());
    }
}

fn write_error(
    verb: &'static str,
    what: &'static str,
    namespace: &str,
    name: &str,
) -> impl FnOnce(kube::Error) -> SyncError {
    let (namespace, name) = (namespace.to_string(), name.to_string());
    move |source| SyncError::Write {
        verb,
        what,
        namespace,
        name,
        source,
    }
}

async fn sync_endpoints(
    ctx: &Context,
    service: &Service,
    pods: &[Arc<Pod>],
) -> Result<(), SyncError> {
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let api: Api<Endpoints> = Api::namespaced(ctx.client.clone(), &namespace);
    let subsets = endpoint_subsets(service, pods);
    let labels = service_labels(service);
    let current =
        api.get_opt(&name)
            .await
            .map_err(write_error("reading", "Endpoints", &namespace, &name))?;
    match current {
        Some(mut current) => {
            let same_subsets = current.subsets.clone().unwrap_or_default() == subsets;
            let same_labels = *current.labels() == labels;
            if same_subsets && same_labels {
                return Ok(());
            }
            current.subsets = Some(subsets);
            current.metadata.labels = Some(labels);
            api.replace(&name, &PostParams::default(), &current)
                .await
                .map_err(write_error("updating", "Endpoints", &namespace, &name))?;
        }
        None => {
            let endpoints = Endpoints {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(namespace.clone()),
                    labels: Some(labels),
                    ..Default::default()
                },
                subsets: Some(subsets),
            };
            match api.create(&PostParams::default(), &endpoints).await {
                Ok(_) => {}
                // Created meanwhile (its event requeues us) or the namespace is going.
                Err(kube::Error::Api(s)) if s.code == 409 || s.code == 403 => {}
                Err(e) => return Err(write_error("creating", "Endpoints", &namespace, &name)(e)),
            }
        }
    }
    Ok(())
}

async fn sync_slices(ctx: &Context, service: &Service, pods: &[Arc<Pod>]) -> Result<(), SyncError> {
    let namespace = service.namespace().unwrap_or_default();
    let name = service.name_any();
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &namespace);
    let existing = api
        .list(&ListParams::default().labels(&format!(
            "{SERVICE_NAME_LABEL}={name},{MANAGED_BY_LABEL}={MANAGED_BY}"
        )))
        .await
        .map_err(write_error(
            "listing",
            "EndpointSlices of",
            &namespace,
            &name,
        ))?
        .items;
    let mut labels = service_labels(service);
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let owner = OwnerReference {
        api_version: Service::api_version(&()).into_owned(),
        kind: Service::kind(&()).into_owned(),
        name: name.clone(),
        uid: service.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    // Existing slices by their port list, to be reused in order.
    let mut unused: Vec<EndpointSlice> = existing;
    unused.sort_by_key(|s| s.name_any());
    for (ports, endpoints) in desired_slices(service, pods) {
        let position = unused
            .iter()
            .position(|s| s.ports.clone().unwrap_or_default() == ports);
        match position.map(|i| unused.remove(i)) {
            Some(mut slice) => {
                let same = slice.endpoints.clone().unwrap_or_default() == endpoints
                    && *slice.labels() == labels
                    && slice.address_type == "IPv4"
                    && slice.owner_references().contains(&owner);
                if same {
                    continue;
                }
                slice.endpoints = Some(endpoints);
                slice.metadata.labels = Some(labels.clone());
                slice.metadata.owner_references = Some(vec![owner.clone()]);
                let slice_name = slice.name_any();
                api.replace(&slice_name, &PostParams::default(), &slice)
                    .await
                    .map_err(write_error(
                        "updating",
                        "EndpointSlice",
                        &namespace,
                        &slice_name,
                    ))?;
            }
            None => {
                let slice = EndpointSlice {
                    metadata: ObjectMeta {
                        generate_name: Some(format!("{name}-")),
                        namespace: Some(namespace.clone()),
                        labels: Some(labels.clone()),
                        owner_references: Some(vec![owner.clone()]),
                        ..Default::default()
                    },
                    address_type: "IPv4".into(),
                    endpoints: Some(endpoints),
                    ports: (!ports.is_empty()).then_some(ports),
                };
                match api.create(&PostParams::default(), &slice).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 403 => {}
                    Err(e) => {
                        return Err(write_error(
                            "creating",
                            "EndpointSlice for",
                            &namespace,
                            &name,
                        )(e));
                    }
                }
            }
        }
    }
    for slice in unused {
        let slice_name = slice.name_any();
        match api.delete(&slice_name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(write_error(
                    "deleting",
                    "EndpointSlice",
                    &namespace,
                    &slice_name,
                )(e));
            }
        }
    }
    Ok(())
}

/// Upstream deletes the Endpoints of a deleted Service (and any left over without one).
async fn delete_leftover_endpoints(client: &Client, namespace: &str, name: &str) {
    let api: Api<Endpoints> = Api::namespaced(client.clone(), namespace);
    let Ok(Some(endpoints)) = api.get_opt(name).await else {
        return;
    };
    if endpoints.annotations().contains_key(LEADER_ANNOTATION) {
        return;
    }
    // Only if the Service is really gone (the cache may lag behind a re-created one).
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    if !matches!(services.get_opt(name).await, Ok(None)) {
        return;
    }
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => tracing::info!(controller = NAME, endpoints = %format!("{namespace}/{name}"),
            "deleted the Endpoints of a deleted Service"),
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => tracing::warn!(controller = NAME, error = %e, "deleting leftover Endpoints"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(spec: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns",
            "labels": {"app": "web"}}, "spec": spec}))
        .expect("service")
    }

    fn pod(name: &str, ip: Option<&str>, ready: bool, extra: serde_json::Value) -> Arc<Pod> {
        let mut p = json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i",
                "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        });
        if let Some(ip) = ip {
            p["status"]["podIP"] = json!(ip);
        }
        if let serde_json::Value::Object(extra) = extra {
            for (k, v) in extra {
                match (p.get_mut(&k), v) {
                    (Some(serde_json::Value::Object(dst)), serde_json::Value::Object(src)) => {
                        dst.extend(src);
                    }
                    (_, v) => p[k.as_str()] = v,
                }
            }
        }
        Arc::new(serde_json::from_value(p).expect("pod"))
    }

    #[test]
    fn endpoints_split_ready_and_resolve_named_ports() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [
            {"name": "web", "port": 80, "targetPort": "http"},
            {"name": "metrics", "port": 9090, "targetPort": 9090}]}));
        let pods = vec![
            pod("b", Some("10.0.0.2"), true, json!({})),
            pod("a", Some("10.0.0.1"), false, json!({})),
            pod("no-ip", None, true, json!({})),
            pod(
                "done",
                Some("10.0.0.9"),
                true,
                json!({"spec": {"restartPolicy": "Never"}, "status": {"phase": "Succeeded"}}),
            ),
        ];
        let subsets = endpoint_subsets(&svc, &pods);
        assert_eq!(subsets.len(), 1, "{subsets:?}");
        let subset = &subsets[0];
        let ips = |a: &Option<Vec<EndpointAddress>>| -> Vec<String> {
            a.iter().flatten().map(|x| x.ip.clone()).collect()
        };
        assert_eq!(ips(&subset.addresses), ["10.0.0.2"]);
        assert_eq!(ips(&subset.not_ready_addresses), ["10.0.0.1"]);
        let ports: Vec<(Option<String>, i32)> = subset
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.clone(), p.port))
            .collect();
        assert_eq!(
            ports,
            [(Some("metrics".into()), 9090), (Some("web".into()), 8080)]
        );
    }

    #[test]
    fn a_pod_without_the_named_port_gets_its_own_subset() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [
            {"name": "web", "port": 80, "targetPort": "http"},
            {"name": "raw", "port": 81, "targetPort": 81}]}));
        let other = pod(
            "other",
            Some("10.0.0.3"),
            true,
            json!({"spec": {"containers": [{"name": "c", "image": "i"}]}}),
        );
        let pods = vec![pod("a", Some("10.0.0.1"), true, json!({})), other];
        let subsets = endpoint_subsets(&svc, &pods);
        assert_eq!(subsets.len(), 2, "{subsets:?}");
    }

    #[test]
    fn terminating_pods_stay_in_slices_but_not_in_endpoints() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let pods = vec![
            pod("a", Some("10.0.0.1"), true, json!({})),
            pod(
                "t",
                Some("10.0.0.2"),
                true,
                json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
            ),
        ];
        let subsets = endpoint_subsets(&svc, &pods);
        assert_eq!(subsets[0].addresses.as_ref().map(Vec::len), Some(1));
        let slices = desired_slices(&svc, &pods);
        assert_eq!(slices.len(), 1);
        let conditions: Vec<(Option<bool>, Option<bool>, Option<bool>)> = slices[0]
            .1
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                (c.ready, c.serving, c.terminating)
            })
            .collect();
        assert_eq!(
            conditions,
            [
                (Some(true), Some(true), Some(false)),
                (Some(false), Some(true), Some(true))
            ]
        );
    }

    #[test]
    fn slices_hold_at_most_a_hundred_endpoints() {
        let svc = service(json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}));
        let pods: Vec<Arc<Pod>> = (0..250)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    Some(&format!("10.1.{}.{}", i / 200, i % 200)),
                    true,
                    json!({}),
                )
            })
            .collect();
        let sizes: Vec<usize> = desired_slices(&svc, &pods)
            .iter()
            .map(|(_, e)| e.len())
            .collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(
            desired_slices(&svc, &[]).len(),
            1,
            "an empty placeholder slice"
        );
    }

    #[test]
    fn headless_services_without_ports_list_bare_addresses_with_hostnames() {
        let svc = service(json!({"selector": {"app": "web"}, "clusterIP": "None"}));
        let named = pod(
            "a",
            Some("10.0.0.1"),
            true,
            json!({"spec": {"hostname": "a-host", "subdomain": "web"}}),
        );
        let subsets = endpoint_subsets(&svc, &[named]);
        assert_eq!(subsets.len(), 1);
        assert!(subsets[0].ports.is_none());
        let address = &subsets[0].addresses.as_ref().expect("addresses")[0];
        assert_eq!(address.hostname.as_deref(), Some("a-host"));
        assert_eq!(
            service_labels(&svc).get(HEADLESS_LABEL).map(String::as_str),
            Some("")
        );
    }
}
