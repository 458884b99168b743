//! `skiff up` / `skiff down` end to end, driven by the real kubectl and by skiffctl: the demo
//! manifests run, are served through their Services, scale, roll out a new image and back, and
//! everything goes again; a taken port makes `skiff up` fail with the reason.
//!
//! The test's thread is the machine (a fresh network namespace, `nodeagent/tests/support/net.rs`)
//! with its address on a bridge `node0`; `skiff up` runs with a temporary data dir, runtime state
//! dir and cgroup root, and HOME pointing at a temporary home, so the kubeconfig it merges into is
//! the test's. On drop, `skiff down --purge` stops the cluster process (by the pid in its data
//! dir) and removes what it made. Root only.

#[path = "../nodeagent/tests/support/net.rs"]
mod net;
mod support;
#[path = "support/up_cluster.rs"]
mod up_cluster;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use up_cluster::{Ctl, NODE_IP, NODE_NAME, NODE_PORT, UpCluster, alive, demo_manifest, wait_until};

/// Pages from `n` requests to `addr`, once every one of them succeeds and `accept` holds for
/// all of them (the proxy's rules follow endpoint changes within about a second).
fn pages(addr: SocketAddr, n: usize, accept: impl Fn(&str) -> bool) -> Vec<String> {
    wait_until(
        &format!("{n} pages from {addr}"),
        Duration::from_secs(60),
        || {
            let got: Vec<String> = (0..n).map_while(|_| net::get(addr).ok()).collect();
            (got.len() == n && got.iter().all(|p| accept(p))).then_some(got)
        },
    )
}

/// `Served by pod NAME, …` → NAME.
fn serving_pod(page: &str) -> String {
    page.split("Served by pod ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_default()
        .to_string()
}

fn rollout_done(cluster: &UpCluster, ctl: Ctl) {
    cluster.ctl_ok(
        ctl,
        &[
            "-n",
            "demo",
            "rollout",
            "status",
            "deployment/web",
            "--timeout=120s",
        ],
    );
}

/// The demo, driven by `ctl` as a user would: three pods Ready, the page through the ClusterIP
/// and the NodePort, scale to 5, a new image tag and `rollout undo`, then the namespace deleted
/// and everything of it gone.
fn demo_path(cluster: &UpCluster, ctl: Ctl, demo: &str) {
    // The demo: three pods Ready, the page through the ClusterIP and the NodePort.
    let applied = cluster.ctl_ok(ctl, &["apply", "-f", demo]);
    assert!(applied.contains("deployment.apps/web created"), "{applied}");
    rollout_done(cluster, ctl);
    let ready = wait_until("3 web pods Ready", Duration::from_secs(60), || {
        let pods = cluster.ready_web_pods(ctl);
        (pods.len() == 3).then_some(pods)
    });
    assert!(ready.iter().all(|p| p["spec"]["nodeName"] == NODE_NAME));
    let cluster_ip: Ipv4Addr = cluster
        .ctl_ok(
            ctl,
            &[
                "-n",
                "demo",
                "get",
                "service",
                "web",
                "-o",
                "jsonpath={.spec.clusterIP}",
            ],
        )
        .trim()
        .parse()
        .expect("a ClusterIP");
    let via_cluster_ip = SocketAddr::from((cluster_ip, 80));
    let via_node_port = SocketAddr::from((NODE_IP, NODE_PORT));
    let v1 = |p: &str| p.contains("Hello from Skiff") && p.contains("image version v1.");
    let pod_names: std::collections::BTreeSet<String> = ready
        .iter()
        .map(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    // Balanced over the pods once the proxy's rules hold every endpoint (they follow the
    // EndpointSlice within about a second, so the first requests may all reach one pod).
    wait_until(
        "pages from more than one pod",
        Duration::from_secs(30),
        || {
            let served: std::collections::BTreeSet<String> = pages(via_cluster_ip, 30, v1)
                .iter()
                .map(|p| serving_pod(p))
                .collect();
            assert!(served.is_subset(&pod_names), "{served:?} ⊄ {pod_names:?}");
            (served.len() > 1).then_some(())
        },
    );
    pages(via_node_port, 10, v1);

    // Scale to 5.
    cluster.ctl_ok(
        ctl,
        &["-n", "demo", "scale", "deployment/web", "--replicas=5"],
    );
    rollout_done(cluster, ctl);
    wait_until("5 web pods Ready", Duration::from_secs(60), || {
        (cluster.ready_web_pods(ctl).len() == 5).then_some(())
    });

    // A new image tag (kubectl's `set image`; with skiffctl, which has no `set`, the
    // manifest changed and applied again), then back.
    match ctl {
        Ctl::Kubectl => {
            cluster.ctl_ok(
                ctl,
                &[
                    "-n",
                    "demo",
                    "set",
                    "image",
                    "deployment/web",
                    "web=skiff.local/busybox:v2",
                ],
            );
        }
        Ctl::Skiffctl => {
            let manifest = std::fs::read_to_string(demo).expect("demo.yaml");
            assert!(manifest.contains("replicas: 3") && manifest.contains("busybox:v1"));
            let v2 = cluster.dir.path().join("demo-v2.yaml");
            std::fs::write(
                &v2,
                manifest
                    .replace("replicas: 3", "replicas: 5")
                    .replace("skiff.local/busybox:v1", "skiff.local/busybox:v2"),
            )
            .expect("write demo-v2.yaml");
            let applied = cluster.ctl_ok(ctl, &["apply", "-f", &v2.display().to_string()]);
            assert!(
                applied.contains("deployment.apps/web configured"),
                "{applied}"
            );
        }
    }
    rollout_done(cluster, ctl);
    pages(via_cluster_ip, 20, |p| p.contains("image version v2."));
    pages(via_node_port, 10, |p| p.contains("image version v2."));
    let history = cluster.ctl_ok(ctl, &["-n", "demo", "rollout", "history", "deployment/web"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");
    cluster.ctl_ok(ctl, &["-n", "demo", "rollout", "undo", "deployment/web"]);
    rollout_done(cluster, ctl);
    pages(via_cluster_ip, 20, v1);
    let images: Vec<String> = cluster
        .ready_web_pods(ctl)
        .iter()
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(images.len(), 5);
    assert!(
        images.iter().all(|i| i == "skiff.local/busybox:v1"),
        "{images:?}"
    );

    // The namespace goes, and with it every pod and container.
    cluster.ctl_ok(ctl, &["delete", "namespace", "demo", "--timeout=120s"]);
    let (found, _, _) = cluster.ctl(ctl, &["get", "namespace", "demo"]);
    assert!(!found, "namespace demo is still there");
    wait_until("the pods' containers gone", Duration::from_secs(60), || {
        cluster.pod_containers().is_empty().then_some(())
    });
    assert!(
        net::get(via_node_port).is_err(),
        "the NodePort still answers"
    );
}

/// One whole demo at a time: two clusters side by side on two cores would only slow both.
static ONE_DEMO_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `test` with a fresh cluster directory (nothing started yet) and the demo manifest, in a
/// network namespace of its own, one demo at a time; skipped where namespaces cannot be made.
fn with_demo_cluster(test: impl FnOnce(&UpCluster, &str) + Send + 'static) {
    if !net::require() {
        return;
    }
    let _one = ONE_DEMO_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let demo = demo_manifest();
    net::in_netns(move || test(&UpCluster::new(), &demo));
}

#[test]
fn up_runs_the_demo_through_its_services_and_down_leaves_nothing() {
    with_demo_cluster(|cluster, demo| {
        // A kubeconfig the user had before: `skiff up` adds to it and changes only the
        // current context.
        std::fs::write(
            cluster.home().join(".kube/config"),
            "apiVersion: v1\nkind: Config\nclusters:\n- name: elsewhere\n  cluster:\n    server: https://elsewhere.invalid:6443\ncontexts:\n- name: elsewhere\n  context:\n    cluster: elsewhere\n    user: someone\nusers:\n- name: someone\n  user:\n    token: kept\ncurrent-context: elsewhere\n",
        )
        .expect("an existing kubeconfig");

        let started = Instant::now();
        let out = cluster.up();
        let up_took = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "skiff up failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(&format!("Node {NODE_NAME} is Ready")),
            "{stdout}"
        );
        eprintln!("skiff up to node Ready: {:.2} s", up_took.as_secs_f64());
        let pid = cluster.pid().expect("the cluster's pid file");

        // Again: harmless, the same process.
        let again = cluster.up();
        let again_out = String::from_utf8_lossy(&again.stdout);
        assert!(again.status.success(), "second skiff up: {again_out}");
        assert!(again_out.contains("already running"), "{again_out}");
        assert_eq!(cluster.pid(), Some(pid));

        let contexts = cluster.kubectl_ok(&["config", "get-contexts", "-o", "name"]);
        assert_eq!(
            contexts.lines().collect::<Vec<_>>(),
            vec!["elsewhere", "skiff"]
        );
        assert_eq!(
            cluster.kubectl_ok(&["config", "current-context"]).trim(),
            "skiff"
        );

        // One schedulable control-plane node, as k3s leaves it.
        let node = cluster.kubectl_json(&["get", "node", NODE_NAME]);
        assert_eq!(
            node["metadata"]["labels"]["node-role.kubernetes.io/control-plane"],
            "true"
        );
        assert!(
            node["spec"]["taints"]
                .as_array()
                .is_none_or(|t| t.is_empty()),
            "{}",
            node["spec"]
        );
        assert_eq!(node["spec"]["podCIDR"], "10.244.0.0/24");

        demo_path(cluster, Ctl::Kubectl, demo);

        // Down: no process, interfaces, rules, mounts or cgroups left; the kubeconfig as it was.
        let out = cluster.down();
        assert!(
            out.status.success(),
            "skiff down failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!alive(pid), "the cluster process {pid} is still there");
        cluster.assert_nothing_left();
        assert!(cluster.runtime().list().unwrap_or_default().is_empty());
        assert_eq!(
            cluster
                .kubectl_ok(&["config", "get-contexts", "-o", "name"])
                .trim(),
            "elsewhere"
        );
        let kept =
            std::fs::read_to_string(cluster.home().join(".kube/config")).expect("kubeconfig");
        assert!(kept.contains("token: kept"), "{kept}");

        // Down again: nothing to stop, still fine.
        let again = cluster.down();
        assert!(
            again.status.success(),
            "{}",
            String::from_utf8_lossy(&again.stderr)
        );
    });
}

/// `skiff up` cannot listen (the API server's port is taken): it fails with the reason, as a
/// person can act on it, and leaves no cluster process, interface, rule, mount or cgroup.
#[test]
fn up_fails_clearly_when_its_port_is_taken() {
    if !net::require() {
        return;
    }
    net::in_netns(|| {
        let cluster = UpCluster::new();
        let taken = std::net::TcpListener::bind("127.0.0.1:6443").expect("take the port");
        let out = cluster.up();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "skiff up succeeded: {stderr}");
        assert!(
            stderr.contains("127.0.0.1:6443") && stderr.contains("in use"),
            "the reason is not given: {stderr}"
        );
        if let Some(pid) = cluster.pid() {
            wait_until("the cluster process gone", Duration::from_secs(10), || {
                (!alive(pid)).then_some(())
            });
        }
        cluster.assert_nothing_left();
        drop(taken);
    });
}

/// The same demo path driven by skiffctl instead of kubectl.
#[test]
fn skiffctl_drives_the_demo_the_same_way() {
    with_demo_cluster(|cluster, demo| {
        let out = cluster.up();
        assert!(
            out.status.success(),
            "skiff up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        demo_path(cluster, Ctl::Skiffctl, demo);
        let out = cluster.down();
        assert!(
            out.status.success(),
            "skiff down failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.assert_nothing_left();
        assert!(cluster.runtime().list().unwrap_or_default().is_empty());
    });
}
