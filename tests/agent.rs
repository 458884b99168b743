//! The node agent (`skiff agent`) as a kubelet: real pods run in real containers on a node
//! that a real `skiff server` (scheduler and controllers included) schedules to.
//!
//! Every test's node is the test's own thread in a fresh network namespace (see
//! `nodeagent/tests/support/net.rs`), so the server, the agent and everything they make
//! live and die there; the node's address sits on a bridge of that namespace. The agent
//! gets its own directories and cgroup root; on drop it is killed, `skiff agent --cleanup`
//! removes its pods' containers, and the cgroup root is removed. Root only.

#[path = "support/agent_cluster.rs"]
mod cluster;
#[path = "../nodeagent/tests/support/net.rs"]
mod net;
/// The runtime's test registry (docker-registry with htpasswd auth, skopeo pushes).
#[path = "../runtime/tests/support/mod.rs"]
mod registry;
mod support;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use base64::Engine;
use cluster::{COUNTER, Cluster, NODE, NODE_IP, SKIFF, busybox_layout, remove_cgroup_tree};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use skiff_runtime::container::{ContainerStatus, Runtime, RuntimeConfig};
use support::{Backend, Server};

/// (reason, message, "component/host") of the Events about pod `name` in `default`.
async fn pod_events(client: &Client, name: &str) -> Vec<(String, String, String)> {
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&Default::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(name))
        .map(|e| {
            let source = e.source.unwrap_or_default();
            (
                e.reason.unwrap_or_default(),
                e.message.unwrap_or_default(),
                format!(
                    "{}/{}",
                    source.component.unwrap_or_default(),
                    source.host.unwrap_or_default()
                ),
            )
        })
        .collect()
}

fn pod(name: &str, spec: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))
    .expect("pod")
}

fn busybox(name: &str, script: &str) -> Value {
    json!({"name": name, "image": "busybox", "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script]})
}

async fn wait_pod(
    api: &Api<Pod>,
    name: &str,
    what: &str,
    timeout: Duration,
    f: impl Fn(&Pod) -> bool,
) -> Pod {
    let deadline = Instant::now() + timeout;
    loop {
        let got = api.get(name).await;
        if let Ok(p) = &got
            && f(p)
        {
            return p.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {name}: {what}; last seen: {}",
            got.ok()
                .and_then(|p| serde_json::to_string_pretty(&p).ok())
                .unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn condition(p: &Pod, kind: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
}

fn container_status(p: &Pod, name: &str) -> Option<k8s_openapi::api::core::v1::ContainerStatus> {
    p.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
        .cloned()
}

/// Waits until the pod's container `container` waits with `reason`; returns the pod and the
/// waiting message.
async fn wait_waiting(
    api: &Api<Pod>,
    name: &str,
    container: &str,
    reason: &str,
    timeout: Duration,
) -> (Pod, String) {
    let waiting = |p: &Pod| container_status(p, container).and_then(|c| c.state?.waiting);
    let p = wait_pod(api, name, reason, timeout, |p| {
        waiting(p).and_then(|w| w.reason).as_deref() == Some(reason)
    })
    .await;
    let message = waiting(&p).and_then(|w| w.message).unwrap_or_default();
    (p, message)
}

fn run(test: impl FnOnce(&mut Cluster, Client, tokio::runtime::Runtime) + Send + 'static) {
    run_with(&[], test)
}

fn run_with(
    agent_flags: &'static [&'static str],
    test: impl FnOnce(&mut Cluster, Client, tokio::runtime::Runtime) + Send + 'static,
) {
    if !net::require() {
        return;
    }
    net::in_netns(move || {
        let mut cluster = Cluster::start_with(agent_flags);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = rt.block_on(cluster.server.client());
        test(&mut cluster, client, rt);
    });
}

#[test]
fn a_pod_runs_reports_its_status_and_is_deleted_gracefully() {
    run_with(
        &["--system-reserved=cpu=100m,memory=64Mi"],
        |cluster, client, rt| {
            rt.block_on(async {
            let nodes: Api<Node> = Api::all(client.clone());
            let node = support::wait_for("the node Ready", || async {
                let n = nodes.get(NODE).await.ok()?;
                let ready = n
                    .status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True");
                ready.then_some(n)
            })
            .await;
            let status = node.status.clone().expect("status");
            let capacity = status.capacity.expect("capacity");
            assert_eq!(capacity["pods"].0, "110");
            assert!(
                capacity.contains_key("cpu")
                    && capacity.contains_key("memory")
                    && capacity.contains_key("ephemeral-storage")
            );
            // Allocatable: capacity less --system-reserved (and the eviction thresholds).
            let allocatable = status.allocatable.expect("allocatable");
            let cpus: u64 = capacity["cpu"].0.parse().expect("whole cpus");
            assert_eq!(allocatable["cpu"].0, format!("{}m", cpus * 1000 - 100));
            let kib = |q: &str| q.trim_end_matches("Ki").parse::<u64>().expect("Ki");
            // 64Mi reserved and the 100Mi eviction threshold.
            assert_eq!(kib(&capacity["memory"].0) - kib(&allocatable["memory"].0), 164 * 1024);
            let addresses = status.addresses.expect("addresses");
            assert!(
                addresses
                    .iter()
                    .any(|a| a.type_ == "InternalIP" && a.address == NODE_IP.to_string())
            );
            assert!(
                addresses
                    .iter()
                    .any(|a| a.type_ == "Hostname" && a.address == NODE)
            );
            let info = status.node_info.expect("nodeInfo");
            assert!(info.container_runtime_version.starts_with("skiff://"));
            assert!(!info.kernel_version.is_empty());
            assert_eq!(info.operating_system, "linux");
            let labels = node.labels();
            assert_eq!(
                labels.get("kubernetes.io/hostname").map(String::as_str),
                Some(NODE)
            );
            assert_eq!(
                labels.get("kubernetes.io/os").map(String::as_str),
                Some("linux")
            );
            assert!(labels.contains_key("kubernetes.io/arch"));
            assert_eq!(
                status
                    .daemon_endpoints
                    .and_then(|d| d.kubelet_endpoint)
                    .map(|e| e.port),
                Some(i32::from(cluster.port))
            );
            let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
            let lease = leases.get(NODE).await.expect("the node's Lease");
            assert_eq!(
                lease.spec.and_then(|s| s.holder_identity).as_deref(),
                Some(NODE)
            );

            let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
            let script = "trap 'cat /tmp/pre-stop; echo bye; exit 0' TERM; echo hello; while true; do sleep 0.1; done";
            let mut c = busybox("c", script);
            c["lifecycle"] = json!({"preStop": {"exec": {"command": ["sh", "-c", "echo pre-stop ran > /tmp/pre-stop"]}}});
            pods.create(
                &PostParams::default(),
                &pod("web", json!({"containers": [c]})),
            )
            .await
            .expect("create pod");
            let p = wait_pod(
                &pods,
                "web",
                "Running and Ready",
                Duration::from_secs(30),
                |p| phase(p) == "Running" && condition(p, "Ready").as_deref() == Some("True"),
            )
            .await;
            for kind in [
                "PodScheduled",
                "Initialized",
                "ContainersReady",
                "PodReadyToStartContainers",
            ] {
                assert_eq!(condition(&p, kind).as_deref(), Some("True"), "{kind}");
            }
            let st = p.status.clone().expect("status");
            assert_eq!(st.host_ip.as_deref(), Some("192.168.200.2"));
            assert!(st.start_time.is_some());
            assert_eq!(st.qos_class.as_deref(), Some("BestEffort"));
            let cs = container_status(&p, "c").expect("container status");
            assert!(cs.ready);
            assert_eq!(cs.started, Some(true));
            assert_eq!(cs.restart_count, 0);
            assert!(cs.state.as_ref().and_then(|s| s.running.as_ref()).is_some());
            assert!(
                cs.container_id
                    .as_deref()
                    .is_some_and(|id| id.starts_with("skiff://"))
            );
            assert!(cs.image_id.contains("@sha256:"), "{}", cs.image_id);
            support::wait_for("the greeting in the log", || async {
                cluster
                    .log(&p, "c", 0)
                    .iter()
                    .any(|l| l == "hello")
                    .then_some(())
            })
            .await;

            // The kubelet's Events, as `kubectl describe` lists them.
            let events = support::wait_for("the kubelet's events", || async {
                let reasons = pod_events(&client, "web").await;
                ["Pulled", "Created", "Started"]
                    .iter()
                    .all(|r| reasons.iter().any(|(reason, _, _)| reason == r))
                    .then_some(reasons)
            })
            .await;
            // (The scheduler's own, e.g. a FailedScheduling while the node was still tainted
            // not-ready, are not the kubelet's business.)
            for (reason, message, source) in &events {
                if ["Scheduled", "FailedScheduling"].contains(&reason.as_str()) {
                    continue;
                }
                assert_eq!(source, "kubelet/agent-node", "{reason}");
                if reason == "Created" {
                    assert_eq!(message, "Created container: c");
                }
                if reason == "Pulled" {
                    assert_eq!(message, "Container image \"busybox\" already present on machine");
                }
            }
            let follower = Command::new(support::kubectl_path())
                .args(["--kubeconfig", &cluster.server.kubeconfig.display().to_string(), "logs", "-f", "web"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("kubectl logs -f");
            // A real kubectl delete (30 s grace): the container's TERM trap ends it at once.
            let started = Instant::now();
            let out = Command::new(support::kubectl_path())
                .args([
                    "--kubeconfig",
                    &cluster.server.kubeconfig.display().to_string(),
                    "delete",
                    "pod",
                    "web",
                ])
                .output()
                .expect("kubectl delete");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("pod \"web\" deleted"));
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "delete took {:?}",
                started.elapsed()
            );
            assert!(pods.get_opt("web").await.expect("get").is_none());
            // The preStop hook ran before the TERM: the trap printed what it wrote, seen by a
            // `kubectl logs -f` that ended with the container.
            let followed = follower.wait_with_output().expect("kubectl logs -f");
            let text = String::from_utf8_lossy(&followed.stdout).into_owned();
            assert_eq!(text, "hello\npre-stop ran\nbye\n");
            // The container ran its trap; its records and pod directory go.
            let runtime = cluster.runtime();
            support::wait_for("the pod's containers removed", || async {
                let left = runtime
                    .list()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|c| c.stored.labels.get("io.kubernetes.pod.uid") == p.uid().as_ref())
                    .count();
                (left == 0 && !cluster.pod_dir(&p).exists()).then_some(())
            })
            .await;
        });
        },
    );
}

/// The agent's cache of the ConfigMaps its pods use (kubelet's watch-based manager), against a
/// real API server: many syncs asking for an object nobody watched yet all get it as soon as
/// the watch's first listing is in (a waiter that missed the wake-up slept until the 10 s
/// listing timeout), a change arrives through the watch, and a missing object is `None`.
#[test]
fn the_object_cache_answers_concurrent_first_askers_and_follows_changes() {
    use skiff_nodeagent::kubelet::object_cache::ObjectCache;
    let server = Server::start(Backend::Embedded);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = server.client().await;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        cms.create(
            &PostParams::default(),
            &serde_json::from_value(json!({
            "metadata": {"name": "shared"}, "data": {"value": "first"}}))
            .expect("cm"),
        )
        .await
        .expect("configmap");
        let cache = std::sync::Arc::new(ObjectCache::<ConfigMap>::new(client.clone()));
        let started = Instant::now();
        let askers: Vec<_> = (0..50)
            .map(|i| {
                let cache = cache.clone();
                tokio::spawn(
                    async move { cache.get("default", "shared", &format!("pod-{i}")).await },
                )
            })
            .collect();
        for asker in askers {
            let got = asker.await.expect("join").expect("get");
            let value = got.and_then(|cm| cm.data.clone()?.get("value").cloned());
            assert_eq!(value.as_deref(), Some("first"));
        }
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "50 first askers took {took:?}"
        );

        cms.patch(
            "shared",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"value": "second"}})),
        )
        .await
        .expect("patch");
        support::wait_for("the change in the cache", || async {
            let got = cache.get("default", "shared", "pod-0").await.ok()??;
            (got.data.clone()?.get("value")?.as_str() == "second").then_some(())
        })
        .await;
        assert!(
            cache
                .get("default", "absent", "pod-0")
                .await
                .expect("listed")
                .is_none()
        );
        for i in 0..50 {
            cache.release(&format!("pod-{i}"));
        }
    });
}

#[test]
fn a_crashing_container_backs_off_and_an_oom_kill_is_reported() {
    run(|_cluster, client, rt| {
        rt.block_on(async {
            let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
            pods.create(&PostParams::default(), &pod("crash", json!({"containers": [busybox("c", "echo crashing; exit 3")]})))
                .await
                .expect("create");
            let memory_hog = json!({"name": "hog", "image": "busybox", "imagePullPolicy": "IfNotPresent",
                "command": ["tail", "/dev/zero"],
                "resources": {"limits": {"memory": "16Mi"}}});
            pods.create(&PostParams::default(), &pod("oom", json!({"restartPolicy": "Never", "containers": [memory_hog]})))
                .await
                .expect("create");
            let (p, _) = wait_waiting(&pods, "crash", "c", "CrashLoopBackOff", Duration::from_secs(40)).await;
            let cs = container_status(&p, "c").expect("status");
            assert!(cs.restart_count >= 1, "restartCount {}", cs.restart_count);
            let last = cs.last_state.and_then(|s| s.terminated).expect("lastState.terminated");
            assert_eq!(last.exit_code, 3);
            assert_eq!(last.reason.as_deref(), Some("Error"));
            let message = cs.state.and_then(|s| s.waiting).and_then(|w| w.message).unwrap_or_default();
            assert!(message.starts_with("back-off 10s restarting failed container=c pod=crash_default("), "{message}");
            assert_eq!(phase(&p), "Running");
            assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
            let reasons = support::wait_for("a BackOff event", || async {
                let events = pod_events(&client, "crash").await;
                events.iter().any(|(r, _, _)| r == "BackOff").then_some(events)
            })
            .await;
            let back_off = reasons.iter().find(|(r, _, _)| r == "BackOff").expect("BackOff");
            assert!(back_off.1.starts_with("Back-off restarting failed container c in pod crash_default("), "{}", back_off.1);
            // After the back-off the container runs again: the count goes up.
            wait_pod(&pods, "crash", "a restart after the back-off", Duration::from_secs(30), |p| {
                container_status(p, "c").is_some_and(|c| c.restart_count >= 2)
            })
            .await;

            let p = wait_pod(&pods, "oom", "OOMKilled", Duration::from_secs(40), |p| phase(p) == "Failed").await;
            let cs = container_status(&p, "hog").expect("status");
            let t = cs.state.and_then(|s| s.terminated).expect("terminated");
            assert_eq!(t.reason.as_deref(), Some("OOMKilled"));
            assert_eq!(t.exit_code, 137);
            assert_eq!(cs.restart_count, 0);
        });
    });
}

#[test]
fn volumes_env_and_init_containers_are_set_up_in_order() {
    run(|cluster, client, rt| {
        rt.block_on(async {
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
            cms.create(&PostParams::default(), &serde_json::from_value(json!({
                "metadata": {"name": "settings"}, "data": {"greeting": "hello from a configmap", "color": "blue"}})).expect("cm"))
                .await
                .expect("configmap");
            let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
            secrets.create(&PostParams::default(), &serde_json::from_value(json!({
                "metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}})).expect("secret"))
                .await
                .expect("secret");
            let mut app = busybox("app", "cat /work/order; cat /config/greeting; echo; cat /creds/password; echo; \
                echo env=$COLOR/$POD_NAME/$NODE/$MEM_LIMIT/$COLOR_EXPANDED; cat /downward/labels; echo; \
                cat /var/run/secrets/kubernetes.io/serviceaccount/namespace; echo; echo done; sleep 3600");
            app["env"] = json!([
                {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "color"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "MEM_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
                {"name": "COLOR_EXPANDED", "value": "dark-$(COLOR)"},
            ]);
            app["envFrom"] = json!([{"prefix": "CM_", "configMapRef": {"name": "settings"}}]);
            app["resources"] = json!({"limits": {"memory": "64Mi"}});
            app["volumeMounts"] = json!([
                {"name": "work", "mountPath": "/work"},
                {"name": "config", "mountPath": "/config"},
                {"name": "creds", "mountPath": "/creds", "readOnly": true},
                {"name": "downward", "mountPath": "/downward"},
                {"name": "scratch", "mountPath": "/scratch"},
            ]);
            let mut first = busybox("first", "echo -n 1 > /work/order");
            first["volumeMounts"] = json!([{"name": "work", "mountPath": "/work"}]);
            let mut second = busybox("second", "sleep 1; echo -n 2 >> /work/order");
            second["volumeMounts"] = json!([{"name": "work", "mountPath": "/work"}]);
            let spec = json!({
                "initContainers": [first, second],
                "containers": [app],
                "volumes": [
                    {"name": "work", "emptyDir": {}},
                    {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
                    {"name": "config", "configMap": {"name": "settings"}},
                    {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 256}},
                    {"name": "downward", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
                ],
            });
            let mut p = pod("volumes", spec);
            p.metadata.labels = Some([("tier".to_string(), "web".to_string())].into_iter().collect());
            let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
            pods.create(&PostParams::default(), &p).await.expect("create");
            let p = wait_pod(&pods, "volumes", "Running", Duration::from_secs(40), |p| phase(p) == "Running").await;
            let init = p.status.as_ref().and_then(|s| s.init_container_statuses.clone()).expect("init statuses");
            assert_eq!(init.len(), 2);
            for s in &init {
                let t = s.state.as_ref().and_then(|st| st.terminated.as_ref()).expect("init terminated");
                assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")), "{}", s.name);
            }
            let lines = support::wait_for("the app's report", || async {
                let lines = cluster.log(&p, "app", 0);
                lines.iter().any(|l| l == "done").then_some(lines)
            })
            .await;
            let expected = [
                "12hello from a configmap",
                "s3cret",
                "env=blue/volumes/agent-node/64/dark-blue",
                "tier=\"web\"",
                "default",
                "done",
            ];
            assert_eq!(lines, expected, "{lines:?}");
            // The secret's mode and the configMap's update reach the volume.
            let pod_dir = cluster.pod_dir(&p);
            let secret_file = pod_dir.join("volumes/kubernetes.io~secret/creds/password");
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&secret_file).expect("secret file").permissions().mode() & 0o777;
            assert_eq!(mode, 0o400);
            cms.patch("settings", &PatchParams::default(), &Patch::Merge(json!({"data": {"greeting": "updated"}})))
                .await
                .expect("patch configmap");
            let greeting = pod_dir.join("volumes/kubernetes.io~configmap/config/greeting");
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::fs::read_to_string(&greeting).unwrap_or_default() != "updated" {
                assert!(Instant::now() < deadline, "the configmap update never reached the volume");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            // A memory-medium emptyDir is a tmpfs of its size limit.
            let scratch = pod_dir.join("volumes/kubernetes.io~empty-dir/scratch");
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
            let line = mounts
                .lines()
                .find(|l| l.split(' ').nth(4) == Some(scratch.to_str().expect("path")))
                .expect("scratch is a mount");
            assert!(line.contains(" - tmpfs ") && line.contains("size=8192k"), "{line}");
            // Secret and projected volumes (the service-account directory is one) are tmpfs
            // mounts of their own, as kubelet makes them.
            let in_memory = [
                pod_dir.join("volumes/kubernetes.io~secret/creds"),
                pod_dir.join("volumes/kubernetes.io~projected/skiff-service-account"),
            ];
            for dir in &in_memory {
                let line = mounts
                    .lines()
                    .find(|l| l.split(' ').nth(4) == dir.to_str())
                    .unwrap_or_else(|| panic!("{} is not a mount", dir.display()));
                assert!(line.contains(" - tmpfs "), "{line}");
            }
            pods.delete("volumes", &DeleteParams { grace_period_seconds: Some(1), ..Default::default() })
                .await
                .expect("delete");
            support::wait_for("the pod gone with its tmpfs mounts", || async {
                let gone = pods.get_opt("volumes").await.ok()?.is_none();
                let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
                let mounted = [&scratch, &in_memory[0], &in_memory[1]]
                    .iter()
                    .any(|dir| dir.to_str().is_some_and(|d| mountinfo.contains(d)));
                (gone && !mounted).then_some(())
            })
            .await;

            // A source that does not exist yet: the container waits for it, and starts once it
            // is created (the agent's watch of the object sees it come).
            let mut late = busybox("app", "echo $LATE; sleep 3600");
            late["env"] = json!([{"name": "LATE", "valueFrom": {"configMapKeyRef": {"name": "late-settings", "key": "value"}}}]);
            pods.create(&PostParams::default(), &pod("late", json!({"containers": [late]}))).await.expect("create late");
            let (_, message) = wait_waiting(&pods, "late", "app", "CreateContainerConfigError", Duration::from_secs(30)).await;
            assert!(message.contains("configmap \"late-settings\" not found"), "{message}");
            cms.create(&PostParams::default(), &serde_json::from_value(json!({
                "metadata": {"name": "late-settings"}, "data": {"value": "here at last"}})).expect("cm"))
                .await
                .expect("late configmap");
            let p = wait_pod(&pods, "late", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
            support::wait_for("the late pod's output", || async {
                cluster.log(&p, "app", 0).iter().any(|l| l == "here at last").then_some(())
            })
            .await;
            pods.delete("late", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() })
                .await
                .expect("delete late");
        });
    });
}

#[test]
fn an_agent_restart_keeps_containers_running_and_cleans_up_pods_deleted_meanwhile() {
    run(|cluster, client, rt| {
        rt.block_on(async {
            let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
            for name in ["stays", "goes"] {
                pods.create(
                    &PostParams::default(),
                    &pod(name, json!({"containers": [busybox("c", "sleep 3600")]})),
                )
                .await
                .expect("create");
            }
            let mut before = Vec::new();
            for name in ["stays", "goes"] {
                before.push(
                    wait_pod(&pods, name, "Running", Duration::from_secs(30), |p| {
                        phase(p) == "Running"
                    })
                    .await,
                );
            }
            let runtime = cluster.runtime();
            let container_of = |p: &Pod| {
                let id = container_status(p, "c")
                    .and_then(|c| c.container_id)
                    .expect("container id");
                id.trim_start_matches("skiff://").to_string()
            };
            let stays_id = container_of(&before[0]);
            let goes_id = container_of(&before[1]);
            let pid = runtime.state(&stays_id).expect("state").pid();

            cluster.kill_agent();
            assert!(
                Path::new(&format!("/proc/{pid}")).exists(),
                "the container died with the agent"
            );
            assert_eq!(
                runtime.state(&stays_id).expect("state").status,
                ContainerStatus::Running
            );
            // Deleted while the agent is away (no kubelet to wait for: grace 0).
            pods.delete(
                "goes",
                &DeleteParams {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
            .await
            .expect("force delete");
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(
                runtime.state(&stays_id).expect("state").status,
                ContainerStatus::Running
            );

            cluster.start_agent();
            support::wait_for("the deleted pod's containers removed", || async {
                runtime.state(&goes_id).is_err().then_some(())
            })
            .await;
            // The survivor: same container, same process, no restart, still reported.
            pods.patch_status(
                "stays",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"conditions": []}})),
            )
            .await
            .expect("clear conditions");
            let p = wait_pod(
                &pods,
                "stays",
                "reported again",
                Duration::from_secs(30),
                |p| condition(p, "Ready").as_deref() == Some("True"),
            )
            .await;
            let cs = container_status(&p, "c").expect("status");
            assert_eq!(container_of(&p), stays_id);
            assert_eq!(cs.restart_count, 0);
            assert_eq!(runtime.state(&stays_id).expect("state").pid(), pid);
        });
    });
}

#[test]
fn run_to_completion_pods_end_succeeded_or_failed() {
    run(|_cluster, client, rt| {
        rt.block_on(async {
            let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
            pods.create(&PostParams::default(), &pod("ok", json!({"restartPolicy": "Never", "containers": [busybox("c", "exit 0")]})))
                .await
                .expect("create");
            pods.create(&PostParams::default(), &pod("retry", json!({"restartPolicy": "OnFailure",
                "containers": [busybox("c", "if [ -f /tmp/once ]; then exit 0; fi; exit 1")]})))
                .await
                .expect("create");
            pods.create(&PostParams::default(), &pod("bad", json!({"restartPolicy": "Never", "containers": [busybox("c", "exit 7")]})))
                .await
                .expect("create");
            pods.create(&PostParams::default(), &pod("missing", json!({"containers": [
                {"name": "c", "image": "registry.invalid/nothing:1", "imagePullPolicy": "Never"}]})))
                .await
                .expect("create");
            // A sandbox that cannot be made (the kernel refuses the sysctl's value): the pod
            // stays Pending and says why, as kubelet's FailedCreatePodSandBox.
            pods.create(&PostParams::default(), &pod("no-sandbox", json!({
                "securityContext": {"sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "bogus"}]},
                "containers": [busybox("c", "sleep 60")]})))
                .await
                .expect("create");
            // A program that is not there: the create fails on every retry, and each failure
            // must give back the container's rootfs mount.
            let no_program = pods.create(&PostParams::default(), &pod("no-program", json!({"containers": [
                {"name": "c", "image": "busybox", "imagePullPolicy": "IfNotPresent", "command": ["no-such-program"]}]})))
                .await
                .expect("create");
            let p = wait_pod(&pods, "ok", "Succeeded", Duration::from_secs(30), |p| phase(p) == "Succeeded").await;
            assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
            let p = wait_pod(&pods, "bad", "Failed", Duration::from_secs(30), |p| phase(p) == "Failed").await;
            let t = container_status(&p, "c").and_then(|c| c.state?.terminated).expect("terminated");
            assert_eq!(t.exit_code, 7);
            // OnFailure restarts a failing container (each attempt has a fresh filesystem, so
            // this one keeps failing and backs off).
            wait_pod(&pods, "retry", "restarted", Duration::from_secs(30), |p| {
                container_status(p, "c").is_some_and(|c| c.restart_count >= 1)
            })
            .await;
            let (p, message) =
                wait_waiting(&pods, "missing", "c", "ErrImageNeverPull", Duration::from_secs(30)).await;
            assert_eq!(message, "Container image \"registry.invalid/nothing:1\" is not present with pull policy of Never");
            assert_eq!(phase(&p), "Pending");
            let failed = tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    let events = pod_events(&client, "no-sandbox").await;
                    if let Some(e) = events.into_iter().find(|e| e.0 == "FailedCreatePodSandBox") {
                        break e;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
            .await
            .expect("a FailedCreatePodSandBox event about the pod");
            assert!(
                failed.1.starts_with("Failed to create pod sandbox: ") && failed.1.contains("net.ipv4.ip_local_port_range"),
                "{failed:?}"
            );
            assert_eq!(phase(&pods.get("no-sandbox").await.expect("get")), "Pending");
            let (_, message) =
                wait_waiting(&pods, "no-program", "c", "RunContainerError", Duration::from_secs(30)).await;
            assert!(message.contains("executable file not found"), "{message}");
            tokio::time::sleep(Duration::from_secs(5)).await;
            let rootfs = format!("{}.c.", no_program.uid().expect("uid"));
            let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
            let stacked = mounts.lines().filter(|l| l.contains(&rootfs)).count();
            assert!(stacked <= 1, "{stacked} rootfs mounts of the failing container:\n{mounts}");
        });
    });
}

fn kubectl(cluster: &Cluster, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(support::kubectl_path())
        .arg("--kubeconfig")
        .arg(&cluster.server.kubeconfig)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    let out = child.wait_with_output().expect("kubectl output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pod_ip(p: &Pod) -> Ipv4Addr {
    p.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse().ok())
        .expect("podIP")
}

#[test]
fn pods_reach_each_other_and_services_and_kubectl_logs_and_exec_work() {
    run(|cluster, client, rt| {
        rt.block_on(async {
            let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
            for name in ["web-1", "web-2"] {
                let script = "mkdir -p /www; hostname > /www/index.html; echo serving; exec httpd -f -p 80 -h /www";
                let mut httpd = busybox("httpd", script);
                if name == "web-1" {
                    httpd["ports"] = json!([{"containerPort": 80, "hostPort": 18081}]);
                }
                let mut p = pod(name, json!({"containers": [httpd]}));
                p.metadata.labels = Some([("app".to_string(), "web".to_string())].into_iter().collect());
                pods.create(&PostParams::default(), &p).await.expect("create");
            }
            pods.create(&PostParams::default(), &pod("client", json!({"containers": [busybox("c", "sleep 3600")]})))
                .await
                .expect("create");
            let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "default");
            let svc = services
                .create(&PostParams::default(), &serde_json::from_value(json!({
                    "metadata": {"name": "web"},
                    "spec": {"type": "NodePort", "selector": {"app": "web"},
                        "ports": [{"port": 80, "targetPort": 80}]}})).expect("service"))
                .await
                .expect("create service");
            let cluster_ip: Ipv4Addr = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()).expect("clusterIP").parse().expect("ip");
            let node_port = svc.spec.as_ref().and_then(|s| s.ports.as_ref()).and_then(|p| p[0].node_port).expect("nodePort");

            let mut ips = std::collections::BTreeMap::new();
            for name in ["web-1", "web-2", "client"] {
                let p = wait_pod(&pods, name, "Running and Ready", Duration::from_secs(40), |p| {
                    condition(p, "Ready").as_deref() == Some("True")
                })
                .await;
                ips.insert(name, pod_ip(&p));
            }
            let nodes: Api<Node> = Api::all(client.clone());
            let pod_cidr = nodes.get(NODE).await.expect("node").spec.and_then(|s| s.pod_cidr).expect("podCIDR");
            let prefix = pod_cidr.trim_end_matches("0/24");
            for (name, ip) in &ips {
                assert!(ip.to_string().starts_with(prefix), "{name}'s IP {ip} is outside {pod_cidr}");
            }
            let distinct: std::collections::BTreeSet<_> = ips.values().collect();
            assert_eq!(distinct.len(), 3, "{ips:?}");

            // kubectl logs through the API server and the agent.
            let (ok, out, err) = kubectl(cluster, &["logs", "web-1"], None);
            assert!(ok, "{err}");
            assert_eq!(out, "serving\n");
            // kubectl exec: pod → pod.
            let url = format!("http://{}/", ips["web-2"]);
            let (ok, out, err) = kubectl(cluster, &["exec", "client", "--", "wget", "-qO-", &url], None);
            assert!(ok, "{err}");
            assert_eq!(out.trim(), "web-2");
            // Exit codes and stdin come through.
            let (ok, _, err) = kubectl(cluster, &["exec", "client", "--", "sh", "-c", "exit 3"], None);
            assert!(!ok);
            assert!(err.contains("command terminated with exit code 3"), "{err}");
            let (ok, out, err) = kubectl(cluster, &["exec", "-i", "client", "--", "cat"], Some("through stdin\n"));
            assert!(ok, "{err}");
            assert_eq!(out, "through stdin\n");
            // exec -it: a terminal inside (script(1) gives kubectl one to forward).
            let command = format!(
                "{} --kubeconfig {} exec -it client -- sh -c 'test -t 0 && test -t 1 && echo on-a-terminal'",
                support::kubectl_path().display(),
                cluster.server.kubeconfig.display()
            );
            // script(1) itself can lose a race with a fast command (its stdin is /dev/null):
            // one of three tries must show the terminal.
            let mut tries = Vec::new();
            for _ in 0..3 {
                let out = Command::new("script")
                    .args(["-qec", &command, "/dev/null"])
                    .stdin(Stdio::null())
                    .output()
                    .expect("script");
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                if out.status.success() && text.contains("on-a-terminal") {
                    tries.clear();
                    break;
                }
                tries.push(format!("{}: {text}{}", out.status, String::from_utf8_lossy(&out.stderr)));
            }
            assert!(tries.is_empty(), "kubectl exec -it: {tries:?}");

            // pod → ClusterIP, balanced over both pods once the endpoints are in.
            let url = format!("http://{cluster_ip}/");
            let mut seen = std::collections::BTreeSet::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while seen.len() < 2 {
                assert!(Instant::now() < deadline, "ClusterIP from a pod reached only {seen:?}");
                let (ok, out, _) = kubectl(cluster, &["exec", "client", "--", "wget", "-qO-", &url], None);
                if ok {
                    seen.insert(out.trim().to_string());
                }
            }
            assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["web-1", "web-2"]);
            // Hairpin: a pod reaches itself through its own Service.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                assert!(Instant::now() < deadline, "web-1 never reached itself through the ClusterIP");
                let (ok, out, _) = kubectl(cluster, &["exec", "web-1", "--", "wget", "-qO-", &url], None);
                if ok && out.trim() == "web-1" {
                    break;
                }
            }
            // web-1's hostPort: from another pod, from the node, and from the node's loopback.
            let url = format!("http://{NODE_IP}:18081/");
            let (ok, out, err) = kubectl(cluster, &["exec", "client", "--", "wget", "-qO-", &url], None);
            assert!(ok, "{err}");
            assert_eq!(out.trim(), "web-1");
            let pages = tokio::task::spawn_blocking(|| {
                [NODE_IP, Ipv4Addr::LOCALHOST].map(|ip| net::get(std::net::SocketAddr::from((ip, 18081))).map_err(|e| e.to_string()))
            })
            .await
            .expect("hostPort requests");
            for page in pages {
                assert_eq!(page.expect("the hostPort from the node").trim(), "web-1");
            }
            // The pod's own /etc/hosts names it; resolv.conf is the node's (no cluster DNS here).
            let (ok, hosts, err) = kubectl(cluster, &["exec", "client", "--", "cat", "/etc/hosts"], None);
            assert!(ok, "{err}");
            assert!(hosts.starts_with("# Kubernetes-managed hosts file."), "{hosts}");
            assert!(hosts.lines().any(|l| l == format!("{}\tclient", ips["client"])), "{hosts}");
            let (ok, hostname, _) = kubectl(cluster, &["exec", "client", "--", "hostname"], None);
            assert!(ok);
            assert_eq!(hostname.trim(), "client");
            // node → ClusterIP and node → NodePort (the test thread is the node).
            let from_node = tokio::task::spawn_blocking(move || {
                let via_cluster_ip = net::get(std::net::SocketAddr::from((cluster_ip, 80)));
                let via_node_port = net::get(std::net::SocketAddr::from((NODE_IP, node_port as u16)));
                (via_cluster_ip.map_err(|e| e.to_string()), via_node_port.map_err(|e| e.to_string()))
            })
            .await
            .expect("node requests");
            for body in [from_node.0, from_node.1] {
                let body = body.expect("a page from the node");
                assert!(body.trim() == "web-1" || body.trim() == "web-2", "{body}");
            }

            // kubectl logs -f follows until the container ends.
            let script = "for i in 1 2 3; do echo line $i; sleep 0.3; done";
            pods.create(&PostParams::default(), &pod("counter", json!({"restartPolicy": "Never", "containers": [busybox("c", script)]})))
                .await
                .expect("create");
            wait_pod(&pods, "counter", "started", Duration::from_secs(30), |p| phase(p) != "Pending").await;
            let (ok, out, err) = kubectl(cluster, &["logs", "-f", "counter"], None);
            assert!(ok, "{err}");
            assert_eq!(out, "line 1\nline 2\nline 3\n");
        });
    });
}

#[test]
fn probes_restart_unhealthy_containers_and_readiness_gates_endpoints() {
    run(|cluster, client, rt| {
        rt.block_on(async {
            let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
            // Liveness: healthy for a moment, then not; startup: passes after a second.
            let mut sick = busybox(
                "sick",
                "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 3600",
            );
            sick["livenessProbe"] = json!({"exec": {"command": ["cat", "/tmp/healthy"]},
                "periodSeconds": 1, "failureThreshold": 1});
            let mut slow = busybox("slow", "sleep 1; touch /tmp/started; sleep 3600");
            slow["startupProbe"] = json!({"exec": {"command": ["test", "-f", "/tmp/started"]},
                "periodSeconds": 1, "failureThreshold": 30});
            pods.create(
                &PostParams::default(),
                &pod(
                    "probed",
                    json!({
                "terminationGracePeriodSeconds": 1, "containers": [sick, slow]}),
                ),
            )
            .await
            .expect("create");
            let p = wait_pod(
                &pods,
                "probed",
                "both running",
                Duration::from_secs(30),
                |p| {
                    ["sick", "slow"].iter().all(|c| {
                        container_status(p, c)
                            .and_then(|s| s.state?.running)
                            .is_some()
                    })
                },
            )
            .await;
            // Right after start the startup probe has not passed yet.
            let slow_status = container_status(&p, "slow").expect("status");
            if slow_status.started == Some(false) {
                assert!(!slow_status.ready);
            }
            wait_pod(
                &pods,
                "probed",
                "slow started and ready",
                Duration::from_secs(30),
                |p| container_status(p, "slow").is_some_and(|s| s.started == Some(true) && s.ready),
            )
            .await;
            let p = wait_pod(
                &pods,
                "probed",
                "sick restarted",
                Duration::from_secs(40),
                |p| container_status(p, "sick").is_some_and(|s| s.restart_count >= 1),
            )
            .await;
            let last = container_status(&p, "sick")
                .and_then(|s| s.last_state?.terminated)
                .expect("lastState");
            assert_ne!(last.exit_code, 0);
            assert_eq!(container_status(&p, "slow").expect("slow").restart_count, 0);

            // Readiness: the Service's endpoint is not ready until /ready is served.
            let mut web = busybox(
                "httpd",
                "mkdir -p /www; echo ok > /www/index.html; exec httpd -f -p 80 -h /www",
            );
            web["readinessProbe"] =
                json!({"httpGet": {"path": "/ready", "port": 80}, "periodSeconds": 1});
            let mut p = pod("gated", json!({"containers": [web]}));
            p.metadata.labels = Some(
                [("app".to_string(), "gated".to_string())]
                    .into_iter()
                    .collect(),
            );
            pods.create(&PostParams::default(), &p)
                .await
                .expect("create");
            let services: Api<k8s_openapi::api::core::v1::Service> =
                Api::namespaced(client.clone(), "default");
            services
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({
                    "metadata": {"name": "gated"},
                    "spec": {"selector": {"app": "gated"}, "ports": [{"port": 80}]}}))
                    .expect("service"),
                )
                .await
                .expect("create service");
            let endpoints: Api<k8s_openapi::api::core::v1::Endpoints> =
                Api::namespaced(client.clone(), "default");
            let subset_counts = |e: &k8s_openapi::api::core::v1::Endpoints| {
                let subsets = e.subsets.clone().unwrap_or_default();
                let ready: usize = subsets
                    .iter()
                    .map(|s| s.addresses.as_ref().map_or(0, Vec::len))
                    .sum();
                let not_ready: usize = subsets
                    .iter()
                    .map(|s| s.not_ready_addresses.as_ref().map_or(0, Vec::len))
                    .sum();
                (ready, not_ready)
            };
            support::wait_for("a not-ready endpoint", || async {
                let e = endpoints.get_opt("gated").await.ok()??;
                (subset_counts(&e) == (0, 1)).then_some(())
            })
            .await;
            let p = pods.get("gated").await.expect("pod");
            assert_eq!(phase(&p), "Running");
            assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
            let (ok, _, err) = kubectl(
                cluster,
                &["exec", "gated", "--", "sh", "-c", "echo yes > /www/ready"],
                None,
            );
            assert!(ok, "{err}");
            wait_pod(&pods, "gated", "Ready", Duration::from_secs(20), |p| {
                condition(p, "Ready").as_deref() == Some("True")
            })
            .await;
            support::wait_for("a ready endpoint", || async {
                let e = endpoints.get_opt("gated").await.ok()??;
                (subset_counts(&e) == (1, 0)).then_some(())
            })
            .await;
        });
    });
}

#[test]
fn security_context_and_resources_reach_the_container_and_cleanup_leaves_nothing() {
    run(|cluster, client, rt| {
        rt.block_on(async {
            let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
            let script = "id -u; id -g; touch /file-in-root 2>/dev/null && echo writable || echo read-only; \
                grep CapEff /proc/self/status; grep ^Seccomp: /proc/self/status; echo done; sleep 3600";
            let mut c = busybox("c", script);
            c["securityContext"] = json!({"runAsUser": 1000, "runAsGroup": 3000,
                "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}});
            c["resources"] = json!({"requests": {"cpu": "250m", "memory": "32Mi"},
                "limits": {"cpu": "500m", "memory": "64Mi"}});
            pods.create(&PostParams::default(), &pod("secure", json!({"containers": [c]})))
                .await
                .expect("create");
            let p = wait_pod(&pods, "secure", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
            assert_eq!(p.status.as_ref().and_then(|s| s.qos_class.as_deref()), Some("Burstable"));
            let lines = support::wait_for("the container's report", || async {
                let lines = cluster.log(&p, "c", 0);
                lines.iter().any(|l| l == "done").then_some(lines)
            })
            .await;
            // No seccomp profile named: none, as kubelet without --seccomp-default.
            assert_eq!(
                lines,
                ["1000", "3000", "read-only", "CapEff:\t0000000000000000", "Seccomp:\t0", "done"]
            );
            // requests → cpu.shares, limits → CFS quota and the memory limit (cgroup v1 here,
            // v2 files when the host is v2).
            let id = container_status(&p, "c").and_then(|c| c.container_id).expect("id");
            let state = cluster.runtime().state(id.trim_start_matches("skiff://")).expect("state");
            let cg = &state.stored.cgroup_path;
            let read = |path: String| std::fs::read_to_string(path).map(|s| s.trim().to_string());
            if let Ok(quota) = read(format!("/sys/fs/cgroup/cpu/{cg}/cpu.cfs_quota_us")) {
                assert_eq!(quota, "50000");
                assert_eq!(read(format!("/sys/fs/cgroup/cpu/{cg}/cpu.shares")).expect("shares"), "256");
                assert_eq!(
                    read(format!("/sys/fs/cgroup/memory/{cg}/memory.limit_in_bytes")).expect("memory"),
                    "67108864"
                );
            } else {
                assert_eq!(read(format!("/sys/fs/cgroup/{cg}/cpu.max")).expect("cpu.max"), "50000 100000");
                assert_eq!(read(format!("/sys/fs/cgroup/{cg}/memory.max")).expect("memory.max"), "67108864");
            }

            // seccompProfile: the pod's RuntimeDefault, a container's Unconfined over it, and a
            // Localhost profile from <root-dir>/seccomp that refuses mkdir.
            let profiles = cluster.dir.path().join("agent/seccomp");
            std::fs::create_dir_all(&profiles).expect("seccomp dir");
            std::fs::write(
                profiles.join("deny-mkdir.json"),
                r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
                    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
            )
            .expect("profile");
            let status_line = "grep ^Seccomp: /proc/self/status; echo done; sleep 3600";
            let mut unconfined = busybox("unconfined", status_line);
            unconfined["securityContext"] = json!({"seccompProfile": {"type": "Unconfined"}});
            let mut local = busybox("local", "mkdir /tmp/made 2>&1; echo done; sleep 3600");
            local["securityContext"] = json!({"seccompProfile":
                {"type": "Localhost", "localhostProfile": "deny-mkdir.json"}});
            let spec = json!({"securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [busybox("default", status_line), unconfined, local]});
            pods.create(&PostParams::default(), &pod("seccomp", spec)).await.expect("create");
            let p = wait_pod(&pods, "seccomp", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
            for (container, expected) in [
                ("default", vec!["Seccomp:\t2", "done"]),
                ("unconfined", vec!["Seccomp:\t0", "done"]),
                ("local", vec!["mkdir: can't create directory '/tmp/made': Operation not permitted", "done"]),
            ] {
                let lines = support::wait_for("the container's report", || async {
                    let lines = cluster.log(&p, container, 0);
                    lines.iter().any(|l| l == "done").then_some(lines)
                })
                .await;
                assert_eq!(lines, expected, "{container}");
            }
            // A profile that is not there: the container is not created, and says why.
            let mut missing = busybox("c", "sleep 3600");
            missing["securityContext"] = json!({"seccompProfile":
                {"type": "Localhost", "localhostProfile": "not-there.json"}});
            pods.create(&PostParams::default(), &pod("no-profile", json!({"containers": [missing]})))
                .await
                .expect("create");
            let (_, message) =
                wait_waiting(&pods, "no-profile", "c", "CreateContainerConfigError", Duration::from_secs(30)).await;
            assert!(message.contains("not-there.json"), "{message}");
        });
        // `skiff agent --cleanup` removes the pods, the network and the rules.
        cluster.kill_agent();
        let status = Command::new(SKIFF)
            .args(cluster.agent_args())
            .arg("--cleanup")
            .status()
            .expect("cleanup");
        assert!(status.success());
        let links = net::sh(&["ip", "-o", "link"]);
        assert!(
            !links.contains("skiff0") && !links.contains("skv"),
            "{links}"
        );
        assert!(net::skiff_chains().is_empty(), "{:?}", net::skiff_chains());
        let routes = net::sh(&["ip", "route"]);
        assert!(
            !routes.contains("10.96.0.0/12") && !routes.contains("10.244."),
            "{routes}"
        );
        assert!(cluster.runtime().list().expect("list").is_empty());
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(
            !mounts.contains(cluster.dir.path().to_str().expect("path")),
            "mounts left"
        );
    });
}

/// A node of its own: a network namespace held by an `unshare -n sleep` process, wired to
/// the test's LAN bridge by a veth (eth0 inside), with an agent started in it by nsenter.
struct RemoteNode {
    name: String,
    ip: Ipv4Addr,
    holder: Child,
    agent: Option<Child>,
    dir: tempfile::TempDir,
    cgroup_root: String,
}

const LAN: &str = "lan0";
const LAN_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);

impl RemoteNode {
    fn new(name: &str, index: u8) -> RemoteNode {
        let ip = Ipv4Addr::new(192, 168, 50, 10 + index);
        let holder = Command::new("unshare")
            .args(["-n", "sleep", "infinity"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let pid = holder.id();
        let ours = std::fs::read_link("/proc/thread-self/ns/net").expect("our netns");
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_link(format!("/proc/{pid}/ns/net"))
            .ok()
            .as_ref()
            == Some(&ours)
        {
            assert!(Instant::now() < deadline, "unshare never made its netns");
            std::thread::sleep(Duration::from_millis(10));
        }
        let lan_end = format!("lan-{index}");
        net::sh(&[
            "ip",
            "link",
            "add",
            &lan_end,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &pid.to_string(),
        ]);
        net::sh(&["ip", "link", "set", &lan_end, "master", LAN, "up"]);
        let netns = format!("--net=/proc/{pid}/ns/net");
        for args in [
            vec!["ip", "link", "set", "lo", "up"],
            vec!["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
            vec!["ip", "link", "set", "eth0", "up"],
        ] {
            let mut full = vec!["nsenter", netns.as_str()];
            full.extend(args);
            net::sh(&full);
        }
        let dir = tempfile::Builder::new()
            .prefix("skiff-agent-test-")
            .tempdir_in("/tmp")
            .expect("tempdir");
        Runtime::new(RuntimeConfig {
            state_dir: dir.path().join("state"),
            data_dir: dir.path().join("data"),
            helper_binary: PathBuf::from(SKIFF),
        })
        .images()
        .expect("image store")
        .import(&busybox_layout())
        .expect("import busybox");
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        RemoteNode {
            name: name.to_string(),
            ip,
            holder,
            agent: None,
            dir,
            cgroup_root: format!("skiff-test-agent-{}-{n}", std::process::id()),
        }
    }

    fn netns(&self) -> String {
        format!("--net=/proc/{}/ns/net", self.holder.id())
    }

    fn agent_args(&self) -> Vec<String> {
        let d = self.dir.path();
        [
            "agent",
            "--node-name",
            &self.name,
            "--node-ip",
            &self.ip.to_string(),
            "--root-dir",
            &d.join("agent").display().to_string(),
            "--runtime-state-dir",
            &d.join("state").display().to_string(),
            "--runtime-data-dir",
            &d.join("data").display().to_string(),
            "--cgroup-root",
            &self.cgroup_root,
            "--eviction-hard=nodefs.available<0%",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn start_agent(&mut self, kubeconfig: &Path) {
        let log = std::fs::File::create(self.dir.path().join("agent.log")).expect("log");
        let child = Command::new("nsenter")
            .arg(self.netns())
            .arg(SKIFF)
            .args(self.agent_args())
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn the agent");
        self.agent = Some(child);
    }

    fn kill_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn routes(&self) -> String {
        net::sh(&["nsenter", &self.netns(), "ip", "route"])
    }
}

impl Drop for RemoteNode {
    fn drop(&mut self) {
        self.kill_agent();
        let _ = Command::new("nsenter")
            .arg(self.netns())
            .arg(SKIFF)
            .args(self.agent_args())
            .arg("--cleanup")
            .env("SKIFF_LOG", "warn")
            .stdin(Stdio::null())
            .status();
        for root in ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] {
            let Ok(entries) = std::fs::read_dir(root) else {
                continue;
            };
            for d in entries
                .flatten()
                .map(|e| e.path().join(&self.cgroup_root))
                .chain([Path::new(root).join(&self.cgroup_root)])
            {
                if d.is_dir() {
                    remove_cgroup_tree(&d);
                }
            }
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- agent log of {} ---\n{}",
                self.name,
                std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
            );
        }
    }
}

#[test]
fn pods_on_two_nodes_reach_each_other_through_host_gw_routes() {
    if !net::require() {
        return;
    }
    net::in_netns(|| {
        net::sh(&["ip", "link", "add", LAN, "type", "bridge"]);
        net::sh(&["ip", "addr", "add", &format!("{LAN_IP}/24"), "dev", LAN]);
        net::sh(&["ip", "link", "set", LAN, "up"]);
        let server = Server::start_at(Backend::Embedded, LAN_IP, &[]);
        let mut nodes = [RemoteNode::new("node-1", 1), RemoteNode::new("node-2", 2)];
        for n in nodes.iter_mut() {
            n.start_agent(&server.kubeconfig);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let client = server.client().await;
            let node_api: Api<Node> = Api::all(client.clone());
            let mut cidrs = Vec::new();
            for n in &nodes {
                let cidr = support::wait_for("the node Ready with a podCIDR", || async {
                    let node = node_api.get(&n.name).await.ok()?;
                    let ready = node
                        .status
                        .as_ref()?
                        .conditions
                        .as_ref()?
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True");
                    if !ready {
                        return None;
                    }
                    node.spec?.pod_cidr
                })
                .await;
                cidrs.push(cidr);
            }
            // Each node routes the other's podCIDR via the other's address.
            let want = [
                format!("{} via {}", cidrs[1], nodes[1].ip),
                format!("{} via {}", cidrs[0], nodes[0].ip),
            ];
            for (n, want) in nodes.iter().zip(&want) {
                let deadline = Instant::now() + Duration::from_secs(20);
                while !n.routes().contains(want.as_str()) {
                    assert!(
                        Instant::now() < deadline,
                        "{}: no route {want}:\n{}",
                        n.name,
                        n.routes()
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }

            let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
            for (name, node) in [("web-a", "node-1"), ("web-b", "node-2")] {
                let script =
                    "mkdir -p /www; hostname > /www/index.html; exec httpd -f -p 80 -h /www";
                let mut p = pod(
                    name,
                    json!({"nodeName": node, "containers": [busybox("httpd", script)]}),
                );
                p.metadata.labels = Some(
                    [("app".to_string(), "web".to_string())]
                        .into_iter()
                        .collect(),
                );
                pods.create(&PostParams::default(), &p)
                    .await
                    .expect("create");
            }
            pods.create(
                &PostParams::default(),
                &pod(
                    "client",
                    json!({"nodeName": "node-1", "containers": [busybox("c", "sleep 3600")]}),
                ),
            )
            .await
            .expect("create");
            let services: Api<k8s_openapi::api::core::v1::Service> =
                Api::namespaced(client.clone(), "default");
            let svc = services
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({
                    "metadata": {"name": "web"},
                    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}))
                    .expect("service"),
                )
                .await
                .expect("create service");
            let cluster_ip = svc.spec.and_then(|s| s.cluster_ip).expect("clusterIP");
            let mut ips = std::collections::BTreeMap::new();
            for name in ["web-a", "web-b", "client"] {
                let p = wait_pod(&pods, name, "Ready", Duration::from_secs(40), |p| {
                    condition(p, "Ready").as_deref() == Some("True")
                })
                .await;
                ips.insert(name, pod_ip(&p));
            }
            assert!(
                ips["web-b"]
                    .to_string()
                    .starts_with(cidrs[1].trim_end_matches("0/24"))
            );

            let kubectl = |args: &[&str]| {
                let out = Command::new(support::kubectl_path())
                    .arg("--kubeconfig")
                    .arg(&server.kubeconfig)
                    .args(args)
                    .output()
                    .expect("kubectl");
                (
                    out.status.success(),
                    String::from_utf8_lossy(&out.stdout).trim().to_string(),
                )
            };
            // Across nodes, pod to pod, and to the ClusterIP balanced over both nodes' pods.
            let (ok, page) = kubectl(&[
                "exec",
                "client",
                "--",
                "wget",
                "-qO-",
                &format!("http://{}/", ips["web-b"]),
            ]);
            assert!(ok && page == "web-b", "{page}");
            let mut seen = std::collections::BTreeSet::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while seen.len() < 2 {
                assert!(
                    Instant::now() < deadline,
                    "the ClusterIP reached only {seen:?}"
                );
                let (ok, page) = kubectl(&[
                    "exec",
                    "client",
                    "--",
                    "wget",
                    "-qO-",
                    &format!("http://{cluster_ip}/"),
                ]);
                if ok {
                    seen.insert(page);
                }
            }
            assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["web-a", "web-b"]);

            // A node that leaves takes its route with it: its range becomes unreachable.
            nodes[1].kill_agent();
            node_api
                .delete("node-2", &DeleteParams::default())
                .await
                .expect("delete node");
            let gone = format!("unreachable {}", cidrs[1]);
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let routes = nodes[0].routes();
                if routes.contains(&gone) && !routes.contains(&want[0]) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node-1 still routes to node-2:\n{routes}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        drop(nodes);
        drop(server);
    });
}

#[test]
fn host_network_pods_share_the_nodes_network_and_hostname() {
    run(|cluster, client, rt| {
        rt.block_on(async {
            let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
            let script = "mkdir -p /www; hostname > /www/index.html; hostname; exec httpd -f -p 18080 -h /www";
            pods.create(&PostParams::default(), &pod("on-host", json!({
                "hostNetwork": true, "containers": [busybox("httpd", script)]})))
                .await
                .expect("create");
            let p = wait_pod(&pods, "on-host", "Running", Duration::from_secs(30), |p| phase(p) == "Running").await;
            assert_eq!(pod_ip(&p), NODE_IP);
            let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
            let lines = support::wait_for("the container's hostname", || async {
                let lines = cluster.log(&p, "httpd", 0);
                (!lines.is_empty()).then_some(lines)
            })
            .await;
            assert_eq!(lines[0], host_name.trim());
            // Its port is the node's.
            let page = support::wait_for("the page on the node's address", || async {
                tokio::task::spawn_blocking(|| net::get(std::net::SocketAddr::from((NODE_IP, 18080))).ok())
                    .await
                    .ok()
                    .flatten()
            })
            .await;
            assert_eq!(page.trim(), host_name.trim());
        });
    });
}

#[test]
fn images_are_pulled_with_the_pods_pull_secrets() {
    if !registry::require(&["docker-registry", "skopeo", "python3"]) {
        return;
    }
    if !net::require() {
        return;
    }
    net::in_netns(|| {
        // The registry lives in the node's network namespace, on its loopback.
        let reg = registry::Registry::start_with_auth("puller", "pull-pass");
        reg.push(
            &busybox_layout(),
            "busybox",
            "private/busybox:1",
            registry::Format::Oci,
            false,
        );
        let host = reg.host();
        let flag: &'static str = Box::leak(format!("--insecure-registry={host}").into_boxed_str());
        let flags: &'static [&'static str] = Box::leak(vec![flag].into_boxed_slice());
        let cluster = Cluster::start_with(flags);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = rt.block_on(cluster.server.client());
        rt.block_on(async {
            let image = format!("{host}/private/busybox:1");
            let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
            let auth = base64::engine::general_purpose::STANDARD.encode("puller:pull-pass");
            let config = json!({"auths": {host.clone(): {"auth": auth}}}).to_string();
            secrets
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({
                    "metadata": {"name": "pull"}, "type": "kubernetes.io/dockerconfigjson",
                    "stringData": {".dockerconfigjson": config}}))
                    .expect("secret"),
                )
                .await
                .expect("create secret");
            let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
            let container = |name: &str| {
                json!({"name": name, "image": image, "imagePullPolicy": "Always",
                "command": ["sh", "-c", "echo pulled; sleep 3600"]})
            };
            pods.create(
                &PostParams::default(),
                &pod(
                    "with-secret",
                    json!({
                "imagePullSecrets": [{"name": "pull"}], "containers": [container("c")]}),
                ),
            )
            .await
            .expect("create");
            pods.create(
                &PostParams::default(),
                &pod("without", json!({"containers": [container("c")]})),
            )
            .await
            .expect("create");
            let p = wait_pod(
                &pods,
                "with-secret",
                "Running",
                Duration::from_secs(40),
                |p| phase(p) == "Running",
            )
            .await;
            let cs = container_status(&p, "c").expect("status");
            assert_eq!(cs.image, image);
            assert!(
                cs.image_id
                    .starts_with(&format!("{host}/private/busybox@sha256:")),
                "{}",
                cs.image_id
            );
            // Without the secret the registry says no: ErrImagePull, then the back-off.
            let (p, _) = wait_waiting(
                &pods,
                "without",
                "c",
                "ImagePullBackOff",
                Duration::from_secs(40),
            )
            .await;
            assert_eq!(phase(&p), "Pending");
        });
        drop(cluster);
        drop(reg);
    });
}
