//! `kubectl logs` and `kubectl exec` end to end: real kubectl v1.35 → `skiff server`
//! (`pods/log`, `pods/exec`) → the node agent's server (started in this process) → a real
//! busybox container started through `skiff_runtime` with the agent's naming conventions.
//!
//! The Node object points at the agent (InternalIP 127.0.0.1, kubeletEndpoint = its port); the
//! Pod is bound to it and its container is the one this test starts, with the pod's UID in its
//! labels and log path, as the agent's pod workers will. Needs root, umoci and busybox (the
//! busybox image fixture); skipped without them unless `CI=true`.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use skiff_nodeagent::naming;
use skiff_nodeagent::server::{self as agent_server, ServerContext};
use skiff_runtime::container::{CreateOptions, Runtime, RuntimeConfig, StdioConfig};
use skiff_runtime::spec;
use support::{Backend, Server, http_get, kubectl_path};

const SKIFF: &str = env!("CARGO_BIN_EXE_skiff");
const WAIT: Duration = Duration::from_secs(20);
const NODE: &str = "node-1";

fn which(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|d| d.join(tool).is_file())
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        .unwrap_or(false)
}

/// Root and the fixture tools; skipped with a message without them, unless `CI=true`.
fn require() -> bool {
    let mut missing: Vec<&str> = ["umoci", "busybox"]
        .into_iter()
        .filter(|t| !which(t))
        .collect();
    if !is_root() {
        missing.push("root privileges");
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!(
        "missing {} (scripts/install-test-deps.sh installs the tools)",
        missing.join(", ")
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

fn busybox_layout() -> PathBuf {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox-oci");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fixtures/busybox-image.sh");
    let status = Command::new("bash")
        .arg(script)
        .arg(&out)
        .stdout(Stdio::null())
        .status()
        .expect("run busybox-image.sh");
    assert!(status.success(), "busybox-image.sh failed: {status}");
    out
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect()
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// The node: a runtime over a temp dir, the agent's server, and cleanup of both on drop.
struct NodeEnv {
    tag: String,
    runtime: Arc<Runtime>,
    rt: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    port: u16,
    tmp: tempfile::TempDir,
}

impl NodeEnv {
    fn start() -> NodeEnv {
        static N: AtomicUsize = AtomicUsize::new(0);
        let tag = format!(
            "logs-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let tmp = tempfile::Builder::new()
            .prefix(&format!("skiff-{tag}-"))
            .tempdir_in("/tmp")
            .expect("tempdir");
        let runtime = Arc::new(Runtime::new(RuntimeConfig {
            state_dir: tmp.path().join("state"),
            data_dir: tmp.path().join("data"),
            helper_binary: PathBuf::from(SKIFF),
        }));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let ctx = ServerContext {
            runtime: Arc::clone(&runtime),
            log_root: tmp.path().join("pods"),
        };
        rt.spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = agent_server::serve(listener, ctx, shutdown).await {
                eprintln!("agent server: {e}");
            }
        });
        NodeEnv {
            tag,
            runtime,
            rt,
            stop: Some(stop),
            port,
            tmp,
        }
    }

    /// Starts attempt 0 of `pod`'s container `container` running `script` under `sh -c`, as
    /// the agent would; returns the root filesystem as the host sees it.
    fn run_container(&self, pod: &Pod, container: &str, script: &str) -> PathBuf {
        let meta = &pod.metadata;
        let (namespace, name, uid) = (
            meta.namespace.clone().expect("namespace"),
            meta.name.clone().expect("name"),
            meta.uid.clone().expect("uid"),
        );
        let id = naming::container_id(&uid, container, 0);
        let image = self
            .runtime
            .images()
            .expect("image store")
            .import(&busybox_layout())
            .expect("import busybox")
            .into_iter()
            .next()
            .expect("one image");
        let prepared = self
            .runtime
            .prepare_image_rootfs(&id, &image)
            .expect("prepare rootfs");
        let mut spec = spec::default_spec(
            &prepared.rootfs,
            vec!["sh".into(), "-c".into(), script.into()],
        );
        spec.linux_mut()
            .as_mut()
            .expect("linux")
            .set_cgroups_path(Some(PathBuf::from(format!("skiff-test-{}-{id}", self.tag))));
        let log = naming::container_log_path(
            &self.tmp.path().join("pods"),
            &namespace,
            &name,
            &uid,
            container,
            0,
        );
        fs::create_dir_all(log.parent().expect("log dir")).expect("log dir");
        let mut options = CreateOptions::new(spec, self.tmp.path());
        options.stdio = StdioConfig::Log {
            path: log,
            max_size_bytes: 1 << 20,
            max_files: 2,
        };
        options.managed_dir = Some(prepared.managed_dir);
        options.image_layers = prepared.image_layers;
        options.labels = BTreeMap::from([
            (naming::LABEL_POD_NAMESPACE.into(), namespace),
            (naming::LABEL_POD_NAME.into(), name),
            (naming::LABEL_POD_UID.into(), uid),
            (naming::LABEL_CONTAINER_NAME.into(), container.into()),
            (naming::LABEL_CONTAINER_ATTEMPT.into(), "0".into()),
            (naming::LABEL_CONTAINER_KIND.into(), "app".into()),
        ]);
        self.runtime
            .create_and_start(&id, options)
            .unwrap_or_else(|e| panic!("start {id}: {e}"));
        prepared.rootfs
    }
}

impl Drop for NodeEnv {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Ok(containers) = self.runtime.list() {
            for c in containers {
                if let Err(e) = self.runtime.delete(c.id(), true) {
                    eprintln!("cleanup: deleting {}: {e}", c.id());
                }
            }
        }
        let mut mounts = mounts_under(self.tmp.path());
        mounts.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
        for m in mounts {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        let prefix = format!("skiff-test-{}-", self.tag);
        for root in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            for dir in fs::read_dir(root.path()).into_iter().flatten().flatten() {
                if dir.file_name().to_string_lossy().starts_with(&prefix) {
                    remove_cgroup_tree(&dir.path());
                }
            }
        }
    }
}

fn kubectl(server: &Server, args: &[&str], stdin: Option<&str>) -> Output {
    run_cli(&kubectl_path(), server, args, stdin)
}

fn skiffctl(server: &Server, args: &[&str], stdin: Option<&str>) -> Output {
    run_cli(
        Path::new(env!("CARGO_BIN_EXE_skiffctl")),
        server,
        args,
        stdin,
    )
}

/// skiffctl exits and prints (stdout and stderr) as kubectl does.
fn same_as_kubectl(server: &Server, args: &[&str], stdin: Option<&str>) {
    let (ours, theirs) = (skiffctl(server, args, stdin), kubectl(server, args, stdin));
    assert_eq!(
        (ours.status.code(), text(&ours.stdout), text(&ours.stderr)),
        (
            theirs.status.code(),
            text(&theirs.stdout),
            text(&theirs.stderr)
        ),
        "skiffctl (left) and kubectl (right) differ for {args:?}"
    );
}

fn run_cli(bin: &Path, server: &Server, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(bin)
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(args)
        .env("HOME", server.data_dir())
        .env("KUBECACHEDIR", server.data_dir().join("kube-cache"))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the CLI");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("CLI output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs kubectl and requires success; its stdout.
fn ok(server: &Server, args: &[&str]) -> String {
    let out = kubectl(server, args, None);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs kubectl and requires failure; its stderr.
fn fails(server: &Server, args: &[&str]) -> String {
    let out = kubectl(server, args, None);
    assert!(
        !out.status.success(),
        "kubectl {args:?} should fail but printed {}",
        text(&out.stdout)
    );
    text(&out.stderr)
}

fn pod_manifest(name: &str, containers: &[&str], node: Option<&str>) -> Pod {
    let containers: Vec<_> = containers
        .iter()
        .map(|c| json!({"name": c, "image": "busybox"}))
        .collect();
    let mut pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": containers},
    });
    if let Some(node) = node {
        pod["spec"]["nodeName"] = json!(node);
    }
    serde_json::from_value(pod).expect("pod")
}

#[test]
fn kubectl_logs_and_exec_reach_the_container_through_the_agent() {
    if !require() {
        return;
    }
    let node = NodeEnv::start();
    let server = Server::start(Backend::Embedded);
    let (web, multi) = node.rt.block_on(async {
        let client = server.client().await;
        let nodes: Api<Node> = Api::all(client.clone());
        let created = nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": NODE}})).expect("node"),
            )
            .await
            .expect("create node");
        assert_eq!(created.metadata.name.as_deref(), Some(NODE));
        let status = json!({"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": node.port}},
        }});
        nodes
            .patch_status(NODE, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("node status");
        let pods: Api<Pod> = Api::namespaced(client, "default");
        let post = PostParams::default();
        let web = pods
            .create(&post, &pod_manifest("web", &["app"], Some(NODE)))
            .await
            .expect("create web");
        let multi = pods
            .create(&post, &pod_manifest("multi", &["a", "b"], Some(NODE)))
            .await
            .expect("create multi");
        pods.create(&post, &pod_manifest("pending", &["app"], None))
            .await
            .expect("create pending");
        (web, multi)
    });
    let rootfs = node.run_container(
        &web,
        "app",
        "echo one; echo two; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo three",
    );
    let deadline = Instant::now() + WAIT;
    while ok(&server, &["logs", "web"]) != "one\ntwo\n" {
        assert!(Instant::now() < deadline, "the container never logged");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Logs.
    assert_eq!(ok(&server, &["logs", "web", "--tail=1"]), "two\n");
    assert_eq!(ok(&server, &["logs", "web", "-c", "app"]), "one\ntwo\n");
    let stamped = ok(&server, &["logs", "web", "--timestamps"]);
    assert!(
        stamped.lines().count() == 2
            && stamped.lines().all(|l| l
                .split_once(' ')
                .is_some_and(|(ts, _)| { ts.len() == 30 && ts.ends_with('Z') })),
        "{stamped}"
    );
    assert_eq!(ok(&server, &["logs", "web", "--since=1h"]), "one\ntwo\n");
    let err = fails(&server, &["logs", "web", "--previous"]);
    assert!(
        err.contains("previous terminated container \"app\" in pod \"web\" not found"),
        "{err}"
    );
    let err = fails(&server, &["logs", "web", "-c", "nosuch"]);
    assert!(
        err.contains("container nosuch is not valid for pod web"),
        "{err}"
    );
    // kubectl picks a container itself; the server's own default is seen over plain HTTP.
    let (code, body) = http_get(server.port, "/api/v1/namespaces/default/pods/multi/log")
        .expect("GET pods/multi/log");
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("a container name must be specified for pod multi, choose one of: [a b]"),
        "{body}"
    );
    assert_eq!(multi.spec.map(|s| s.containers.len()), Some(2));
    // An unbound pod has no logs yet, which is no error (as upstream).
    assert_eq!(ok(&server, &["logs", "pending"]), "");

    // Exec: streams, exit codes, stdin.
    let out = kubectl(
        &server,
        &[
            "exec",
            "web",
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(
        text(&out.stderr).starts_with("err\n"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        ok(&server, &["exec", "web", "--", "cat", "/proc/1/cmdline"])
            .split('\0')
            .next(),
        Some("sh")
    );
    let out = kubectl(
        &server,
        &["exec", "-i", "web", "--", "cat"],
        Some("piped\nlines\n"),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "piped\nlines\n");
    let err = fails(&server, &["exec", "web", "-c", "nosuch", "--", "true"]);
    assert!(
        err.contains("container nosuch is not valid for pod web"),
        "{err}"
    );
    let err = fails(&server, &["exec", "pending", "--", "true"]);
    assert!(
        err.contains("pod pending does not have a host assigned"),
        "{err}"
    );

    // skiffctl: the same logs, errors, streams and exit codes.
    for (args, stdin) in [
        (&["logs", "web"][..], None),
        (&["logs", "pod/web", "--tail=1"], None),
        (&["logs", "web", "-c", "app", "--timestamps"], None),
        (&["logs", "web", "--since=1h"], None),
        (&["logs", "web", "--previous"], None),
        (&["logs", "web", "-c", "nosuch"], None),
        (&["logs", "multi"], None),
        (&["logs", "pending"], None),
        (&["logs", "nope"], None),
        (
            &[
                "exec",
                "web",
                "--",
                "sh",
                "-c",
                "echo out; echo err >&2; exit 3",
            ],
            None,
        ),
        (&["exec", "-i", "web", "--", "cat"], Some("piped\nlines\n")),
        (&["exec", "web", "-c", "nosuch", "--", "true"], None),
        (&["exec", "pending", "--", "true"], None),
    ] {
        same_as_kubectl(&server, args, stdin);
    }
    // `-t` without a terminal: kubectl's warning, then the command without one.
    same_as_kubectl(
        &server,
        &["exec", "-it", "web", "--", "echo", "hi"],
        Some(""),
    );

    // Follow: what is there, then the next line, and the end when the container exits
    // (skiffctl follows alongside kubectl).
    let mut skiffctl_follow = Command::new(env!("CARGO_BIN_EXE_skiffctl"))
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(["logs", "-f", "web"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run skiffctl logs -f");
    let mut follow = Command::new(kubectl_path())
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(["logs", "-f", "web"])
        .env("HOME", server.data_dir())
        .env("KUBECACHEDIR", server.data_dir().join("kube-cache"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl logs -f");
    let mut stdout = follow.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        let mut signalled = false;
        loop {
            match stdout.read(&mut buf) {
                Ok(0) | Err(_) => return text(&seen),
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
            if !signalled && seen.ends_with(b"two\n") {
                signalled = true;
                fs::write(rootfs.join("tmp/go"), "").expect("signal the container");
            }
        }
    });
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = follow.try_wait().expect("kubectl logs -f") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = follow.kill();
            let _ = follow.wait();
            panic!("kubectl logs -f did not end when the container exited");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "kubectl logs -f: {status}");
    assert_eq!(reader.join().expect("reader"), "one\ntwo\nthree\n");
    let deadline = Instant::now() + WAIT;
    while skiffctl_follow
        .try_wait()
        .expect("skiffctl logs -f")
        .is_none()
    {
        if Instant::now() > deadline {
            let _ = skiffctl_follow.kill();
            let _ = skiffctl_follow.wait();
            panic!("skiffctl logs -f did not end when the container exited");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let followed = skiffctl_follow
        .wait_with_output()
        .expect("skiffctl logs -f");
    assert!(followed.status.success(), "{}", text(&followed.stderr));
    assert_eq!(text(&followed.stdout), "one\ntwo\nthree\n");
}
