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
mod support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster::{Cluster, NODE, NODE_IP};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use skiff_runtime::container::ContainerStatus;

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

fn run(test: impl FnOnce(&mut Cluster, Client, tokio::runtime::Runtime) + Send + 'static) {
    if !net::require() {
        return;
    }
    net::in_netns(|| {
        let mut cluster = Cluster::start();
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
    run(|cluster, client, rt| {
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
            assert!(
                status
                    .allocatable
                    .expect("allocatable")
                    .contains_key("memory")
            );
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
            let script = "trap 'echo bye; exit 0' TERM; echo hello; while true; do sleep 0.1; done";
            pods.create(
                &PostParams::default(),
                &pod("web", json!({"containers": [busybox("c", script)]})),
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
            let p = wait_pod(&pods, "crash", "CrashLoopBackOff", Duration::from_secs(40), |p| {
                container_status(p, "c")
                    .and_then(|c| c.state?.waiting?.reason)
                    .is_some_and(|r| r == "CrashLoopBackOff")
            })
            .await;
            let cs = container_status(&p, "c").expect("status");
            assert!(cs.restart_count >= 1, "restartCount {}", cs.restart_count);
            let last = cs.last_state.and_then(|s| s.terminated).expect("lastState.terminated");
            assert_eq!(last.exit_code, 3);
            assert_eq!(last.reason.as_deref(), Some("Error"));
            let message = cs.state.and_then(|s| s.waiting).and_then(|w| w.message).unwrap_or_default();
            assert!(message.starts_with("back-off 10s restarting failed container=c pod=crash_default("), "{message}");
            assert_eq!(phase(&p), "Running");
            assert_eq!(condition(&p, "Ready").as_deref(), Some("False"));
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
            pods.delete("volumes", &DeleteParams { grace_period_seconds: Some(1), ..Default::default() })
                .await
                .expect("delete");
            support::wait_for("the pod gone with its tmpfs", || async {
                let gone = pods.get_opt("volumes").await.ok()?.is_none();
                let mounted = std::fs::read_to_string("/proc/self/mountinfo").ok()?.contains(scratch.to_str()?);
                (gone && !mounted).then_some(())
            })
            .await;
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
            let p = wait_pod(&pods, "missing", "ErrImageNeverPull", Duration::from_secs(30), |p| {
                container_status(p, "c").and_then(|c| c.state?.waiting?.reason).as_deref() == Some("ErrImageNeverPull")
            })
            .await;
            let message = container_status(&p, "c").and_then(|c| c.state?.waiting?.message).unwrap_or_default();
            assert_eq!(message, "Container image \"registry.invalid/nothing:1\" is not present with pull policy of Never");
            assert_eq!(phase(&p), "Pending");
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
                let mut p = pod(name, json!({"containers": [busybox("httpd", script)]}));
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
