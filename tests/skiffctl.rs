//! skiffctl against a real `skiff server`: what it prints and its exit codes, compared
//! where practical with real kubectl v1.35 against the same server in the same test (so the
//! expected output is upstream's, not ours).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Backend, Server, kubectl_path};

const SHOP: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
  labels:
    app: web
data:
  greeting: hello
---
# A comment-only line before the object does not start a new document.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: busybox:1.36
        command: ["httpd", "-f"]
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
"#;

/// What a command printed and how it exited.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs skiffctl or kubectl against one server, with a kubeconfig of its own.
struct Cli {
    bin: PathBuf,
    kubeconfig: PathBuf,
    home: PathBuf,
}

impl Cli {
    fn skiffctl(server: &Server) -> Cli {
        Cli {
            bin: PathBuf::from(env!("CARGO_BIN_EXE_skiffctl")),
            kubeconfig: server.kubeconfig.clone(),
            home: server.data_dir().to_path_buf(),
        }
    }

    fn kubectl(server: &Server) -> Cli {
        Cli {
            bin: kubectl_path(),
            kubeconfig: server.kubeconfig.clone(),
            home: server.data_dir().to_path_buf(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_stdin(args, None)
    }

    fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env("HOME", &self.home)
            .env("KUBECACHEDIR", self.home.join("kube-cache"))
            .env_remove("KUBECONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd.spawn().expect("run the CLI");
        if let Some(input) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes()).expect("write stdin");
        }
        let out = child.wait_with_output().expect("CLI output");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs and requires success; stdout.
    fn ok(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(run.code, 0, "{:?} {args:?} failed: {run:?}", self.bin);
        run.stdout
    }

    /// Runs and requires exit code 1; stderr.
    fn fails(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert_eq!(run.code, 1, "{:?} {args:?} should fail: {run:?}", self.bin);
        run.stderr
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("manifest dir");
    }
    std::fs::write(&path, text).expect("write manifest");
    path.to_string_lossy().into_owned()
}

/// skiffctl and kubectl print the same for `args` (stdout, stderr and exit code). Ages can
/// tick between the two runs, so a difference is retried a few times before it counts.
fn same_as_kubectl(server: &Server, args: &[&str]) -> Run {
    let (ours, theirs) = (Cli::skiffctl(server), Cli::kubectl(server));
    let mut last = None;
    for _ in 0..4 {
        let (a, b) = (ours.run(args), theirs.run(args));
        if a.stdout == b.stdout && a.stderr == b.stderr && a.code == b.code {
            return a;
        }
        last = Some((a, b));
        std::thread::sleep(Duration::from_millis(300));
    }
    let (a, b) = last.expect("at least one run");
    assert_eq!(
        (a.code, a.stdout.as_str(), a.stderr.as_str()),
        (b.code, b.stdout.as_str(), b.stderr.as_str()),
        "skiffctl (left) and kubectl (right) differ for {args:?}"
    );
    a
}

/// Ages (`5s`, `2m3s`, `4h`) as `<age>`, for comparing with text checked in here.
fn without_ages(text: &str) -> String {
    let is_age = |w: &str| {
        !w.is_empty()
            && w.chars().next().is_some_and(|c| c.is_ascii_digit())
            && w.chars().all(|c| c.is_ascii_digit() || "smhdy".contains(c))
            && w.chars().last().is_some_and(|c| "smhdy".contains(c))
    };
    text.lines()
        .map(|line| {
            line.split_whitespace()
                .map(|w| if is_age(w) { "<age>" } else { w })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn apply_says_created_configured_unchanged() {
    let server = Server::start(Backend::Embedded);
    let ctl = Cli::skiffctl(&server);
    let manifest = write(server.data_dir(), "shop.yaml", SHOP);

    let out = ctl.ok(&["apply", "-f", &manifest]);
    assert_eq!(
        out,
        "namespace/shop created\nconfigmap/settings created\ndeployment.apps/web created\nservice/web created\n"
    );
    let out = ctl.ok(&["apply", "-f", &manifest]);
    assert_eq!(
        out,
        "namespace/shop unchanged\nconfigmap/settings unchanged\ndeployment.apps/web unchanged\nservice/web unchanged\n"
    );

    // One changed object among unchanged ones, read from stdin.
    let changed = SHOP.replace("greeting: hello", "greeting: bonjour");
    let run = ctl.run_stdin(&["apply", "-f", "-"], Some(&changed));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        "namespace/shop unchanged\nconfigmap/settings configured\ndeployment.apps/web unchanged\nservice/web unchanged\n"
    );
    let greeting = ctl.ok(&[
        "get",
        "cm",
        "settings",
        "-n",
        "shop",
        "-o",
        "jsonpath={.data.greeting}",
    ]);
    assert_eq!(greeting, "bonjour");

    // The fields are skiffctl's, applied server-side.
    let managers = ctl.ok(&[
        "get",
        "cm",
        "settings",
        "-n",
        "shop",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager} {.metadata.managedFields[*].operation}",
        "--show-managed-fields",
    ]);
    assert_eq!(managers, "skiffctl Apply");

    // A directory: its YAML/JSON files in name order, subdirectories only with -R.
    let dir = server.data_dir().join("tree");
    write(
        &dir,
        "a.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata: {k: v}\n",
    );
    write(
        &dir,
        "b.json",
        r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}"#,
    );
    write(&dir, "notes.txt", "not a manifest");
    write(
        &dir,
        "sub/c.yml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
    );
    let dir = dir.to_string_lossy().into_owned();
    assert_eq!(
        ctl.ok(&["apply", "-f", &dir]),
        "configmap/a created\nconfigmap/b created\n"
    );
    assert_eq!(
        ctl.ok(&["apply", "-R", "-f", &dir]),
        "configmap/a unchanged\nconfigmap/b unchanged\nconfigmap/c created\n"
    );
}

#[test]
fn apply_conflicts_are_forced_only_when_asked() {
    let server = Server::start(Backend::Embedded);
    let ctl = Cli::skiffctl(&server);
    let first = write(
        server.data_dir(),
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\ndata:\n  k: one\n",
    );
    ctl.ok(&["apply", "-f", &first, "--field-manager", "someone-else"]);
    let second = write(
        server.data_dir(),
        "cm2.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\ndata:\n  k: two\n",
    );
    let err = ctl.fails(&["apply", "-f", &second]);
    assert!(
        err.starts_with("Error from server (Conflict): error when applying \"")
            && err.contains("conflict"),
        "{err}"
    );
    assert_eq!(
        ctl.ok(&["apply", "-f", &second, "--force-conflicts"]),
        "configmap/owned configured\n"
    );
}

#[test]
fn bad_manifests_name_file_document_line_and_column() {
    let server = Server::start(Backend::Embedded);
    let ctl = Cli::skiffctl(&server);
    // Document 2 starts on line 6; its `labels` line (11) is indented under a scalar.
    let bad = write(
        server.data_dir(),
        "bad.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: fine\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: broken\n  namespace: default\n   labels: {a: b}\n",
    );
    let err = ctl.fails(&["apply", "-f", &bad]);
    let prefix = format!("error: error parsing {bad}: document 2, line 11, column ");
    assert!(err.starts_with(&prefix), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // Nothing of a file that does not parse is applied.
    let err = ctl.fails(&["get", "ns", "fine"]);
    assert_eq!(
        err,
        "Error from server (NotFound): namespaces \"fine\" not found\n"
    );

    let json = write(
        server.data_dir(),
        "bad.json",
        "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}}\n{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"ConfigMap\",,\n}\n",
    );
    let err = ctl.fails(&["create", "-f", &json]);
    assert_eq!(
        err,
        format!(
            "error: error parsing {json}: document 2, line 4, column 23: key must be a string\n"
        )
    );

    let kindless = write(
        server.data_dir(),
        "kindless.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n---\nmetadata:\n  name: y\n",
    );
    assert_eq!(
        ctl.fails(&["apply", "-f", &kindless]),
        format!(
            "error: error validating \"{kindless}\": document 2 (line 6): error validating data: [apiVersion not set, kind not set]\n"
        )
    );

    let unknown = write(
        server.data_dir(),
        "unknown.yaml",
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: g\n",
    );
    assert_eq!(
        ctl.fails(&["apply", "-f", &unknown]),
        format!(
            "error: resource mapping not found for name: \"g\" namespace: \"\" from \"{unknown}\": no matches for kind \"Gadget\" in version \"example.com/v1\"\nensure CRDs are installed first\n"
        )
    );
    assert_eq!(
        ctl.fails(&["apply", "-f", "/nonexistent/x.yaml"]),
        "error: the path \"/nonexistent/x.yaml\" does not exist\n"
    );
}

#[test]
fn server_errors_are_shown_as_kubectl_shows_them() {
    let server = Server::start(Backend::Embedded);
    let ctl = Cli::skiffctl(&server);
    let manifest = write(server.data_dir(), "shop.yaml", SHOP);
    ctl.ok(&["create", "-f", &manifest]);

    // Each already exists: every object's error, in kubectl's words, exit 1.
    let run = same_as_kubectl(&server, &["create", "-f", &manifest]);
    assert_eq!(run.code, 1);
    assert_eq!(
        run.stderr.lines().next(),
        Some(
            format!(
                "Error from server (AlreadyExists): error when creating \"{manifest}\": namespaces \"shop\" already exists"
            )
            .as_str()
        )
    );

    for args in [
        &["get", "pod", "nope"][..],
        &["get", "deploy", "web", "nope", "-n", "shop"],
        &["delete", "cm", "nope", "-n", "shop"],
        &["get", "gizmos"],
        &["get", "pods", "-n", "empty"],
        &["get", "cm", "-n", "shop", "-l", "app=none"],
    ] {
        same_as_kubectl(&server, args);
    }

    // -n that disagrees with the manifests' own namespace: kubectl's refusal per object,
    // among the server's errors for the others.
    let run = same_as_kubectl(&server, &["create", "-f", &manifest, "-n", "default"]);
    assert_eq!(run.stderr.lines().count(), 4, "{run:?}");

    // An invalid object: the server's validation message as it is.
    let invalid = write(
        server.data_dir(),
        "invalid.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_Valid\n",
    );
    let err = same_as_kubectl(&server, &["create", "-f", &invalid]).stderr;
    assert!(
        err.starts_with(
            "The ConfigMap \"Not_Valid\" is invalid: metadata.name: Invalid value: \"Not_Valid\": "
        ),
        "{err}"
    );
    // Among other errors, the same in its standard form.
    let two = write(
        server.data_dir(),
        "two.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Not_Valid\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: also_bad\n",
    );
    let err = same_as_kubectl(&server, &["create", "-f", &two]).stderr;
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(
        err.starts_with(&format!("Error from server (Invalid): error when creating \"{two}\": ConfigMap \"Not_Valid\" is invalid: ")),
        "{err}"
    );
}

#[test]
fn get_prints_what_kubectl_prints() {
    let server = Server::start(Backend::Embedded);
    let ctl = Cli::skiffctl(&server);
    let manifest = write(server.data_dir(), "shop.yaml", SHOP);
    ctl.ok(&["apply", "-f", &manifest]);

    for args in [
        &["get", "ns"][..],
        &["get", "cm", "-n", "shop"],
        &[
            "get",
            "configmaps",
            "settings",
            "-n",
            "shop",
            "--no-headers",
        ],
        &["get", "deploy", "-n", "shop"],
        &["get", "deployments.apps", "-n", "shop", "-o", "wide"],
        &["get", "svc", "-A"],
        &["get", "all", "-A"],
        &["api-resources"],
        &["api-resources", "-o", "wide"],
        &["api-resources", "-o", "name", "--namespaced=false"],
        &["api-resources", "--api-group=apps", "--no-headers"],
        &["get", "svc,cm", "-n", "shop"],
        &["get", "deploy/web", "svc/web", "-n", "shop"],
        &["get", "cm", "-A", "-l", "app=web"],
        &[
            "get",
            "cm",
            "-A",
            "--field-selector",
            "metadata.name=settings",
        ],
        &["get", "cm", "-n", "shop", "-o", "name"],
        &["get", "cm,svc", "-n", "shop", "-o", "name"],
        &["get", "ns", "-o", "jsonpath={.items[*].metadata.name}"],
        &[
            "get",
            "deploy",
            "-n",
            "shop",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}{\"\\t\"}{.spec.replicas}{\"\\n\"}{end}",
        ],
        &["get", "cm", "settings", "-n", "shop", "-o", "json"],
        &["get", "cm", "settings", "-n", "shop", "-o", "yaml"],
        &["get", "cm", "-n", "shop", "-o", "yaml"],
    ] {
        same_as_kubectl(&server, args);
    }

    // YAML quoting follows serde-saphyr's YAML 1.1-safe rules, which quote a few strings
    // go-yaml leaves plain (an IP address): the same document, not always the same bytes.
    let args = ["get", "svc", "web", "-n", "shop", "-o", "yaml"];
    let parse = |text: &str| -> serde_json::Value { serde_saphyr::from_str(text).expect("YAML") };
    assert_eq!(
        parse(&ctl.ok(&args)),
        parse(&Cli::kubectl(&server).ok(&args))
    );

    // And checked in, ages aside: the Deployment's wide row.
    let out = ctl.ok(&["get", "deploy", "-n", "shop", "-o", "wide"]);
    assert_eq!(
        without_ages(&out),
        "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR\n\
         web 0/2 2 0 <age> web busybox:1.36 app=web"
    );
}

#[test]
fn delete_by_name_selector_file_and_cascade() {
    let server = Server::start(Backend::Embedded);
    let ctl = Cli::skiffctl(&server);
    let manifest = write(server.data_dir(), "shop.yaml", SHOP);
    ctl.ok(&["apply", "-f", &manifest]);
    let rs_of_web = || {
        ctl.ok(&[
            "get",
            "rs",
            "-n",
            "shop",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].metadata.name}",
        ])
    };
    eventually("the Deployment's ReplicaSet", || !rs_of_web().is_empty());

    // Orphaning leaves the ReplicaSet behind.
    let out = ctl.ok(&["delete", "deploy", "web", "-n", "shop", "--cascade=orphan"]);
    assert_eq!(out, "deployment.apps \"web\" deleted from shop namespace\n");
    std::thread::sleep(Duration::from_millis(500));
    assert!(!rs_of_web().is_empty());

    // By label, waiting (the default) until they are gone.
    let run = ctl.run(&["delete", "cm", "-l", "app=web", "-n", "shop"]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "configmap \"settings\" deleted from shop namespace\n")
    );
    assert_eq!(
        ctl.run(&["delete", "cm", "-l", "app=web", "-n", "shop"])
            .stdout,
        "No resources found\n"
    );

    // By file: what is left of it is deleted, what is gone already is NotFound, exit 1.
    let leftovers = write(
        server.data_dir(),
        "leftovers.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: shop\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: shop\n",
    );
    let run = ctl.run(&["delete", "-f", &leftovers]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stdout, "service \"web\" deleted from shop namespace\n");
    assert_eq!(
        run.stderr,
        format!(
            "Error from server (NotFound): error when deleting \"{leftovers}\": configmaps \"settings\" not found\n"
        )
    );

    // Foreground: the Deployment goes only after its ReplicaSets and pods.
    ctl.ok(&["apply", "-f", &manifest]);
    eventually("a new ReplicaSet", || !rs_of_web().is_empty());
    let out = ctl.ok(&["delete", "rs", "--all", "-n", "shop"]);
    assert!(out.starts_with("replicaset.apps \""), "{out}");
    eventually("the ReplicaSet recreated", || !rs_of_web().is_empty());
    ctl.ok(&[
        "delete",
        "deploy",
        "web",
        "-n",
        "shop",
        "--cascade=foreground",
        "--timeout=20s",
    ]);
    assert_eq!(rs_of_web(), "");
    assert_eq!(ctl.ok(&["get", "pods", "-n", "shop", "-o", "name"]), "");

    // The namespace, waiting until the namespace controller has emptied and removed it.
    assert_eq!(
        ctl.ok(&["delete", "ns", "shop", "--timeout=30s"]),
        "namespace \"shop\" deleted\n"
    );
}

/// Polls `f` every 100 ms for up to 20 s.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn get_watch_prints_rows_as_they_change() {
    let server = Server::start(Backend::Embedded);
    let ctl = Cli::skiffctl(&server);
    ctl.ok(&["apply", "-f", &write(server.data_dir(), "shop.yaml", SHOP)]);
    let mut watcher = Command::new(env!("CARGO_BIN_EXE_skiffctl"))
        .args(["--kubeconfig"])
        .arg(&server.kubeconfig)
        .args(["get", "cm", "-n", "shop", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("skiffctl get -w");
    // The watch starts after the list; give it a moment before changing things.
    std::thread::sleep(Duration::from_millis(1500));
    let extra = write(
        server.data_dir(),
        "watched.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: watched-one\n  namespace: shop\n",
    );
    ctl.ok(&["apply", "-f", &extra]);
    ctl.ok(&["delete", "-f", &extra]);
    std::thread::sleep(Duration::from_millis(1000));
    watcher.kill().expect("stop the watch");
    let out = watcher.wait_with_output().expect("watch output");
    let text = String::from_utf8_lossy(&out.stdout);
    // The table, then the new object's rows (added, deleted), aligned under the header.
    assert_eq!(
        without_ages(&text),
        "NAME DATA AGE\nsettings 1 <age>\nwatched-one 0 <age>\nwatched-one 0 <age>",
        "{text}"
    );
    // Widths are remembered from the table and grow for a longer name, as kubectl's do.
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "NAME       DATA   AGE", "{text}");
    assert!(lines[2].starts_with("watched-one   0      "), "{text}");
}

/// Plays the kubelet for every pod of `namespace`: marks them Running and Ready, so
/// Deployments make progress without a node agent.
async fn mark_pods_ready(client: kube::Client, namespace: &str) {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, ListParams, Patch, PatchParams};
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let Ok(list) = pods.list(&ListParams::default()).await else {
        return;
    };
    for pod in list.items {
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let status = serde_json::json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
        ]}});
        let name = pod.metadata.name.unwrap_or_default();
        let _ = pods
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
            .await;
    }
}

#[test]
fn scale_and_rollout_status_history_undo_restart() {
    let server = Server::start(Backend::Embedded);
    let ctl = Cli::skiffctl(&server);
    ctl.ok(&["apply", "-f", &write(server.data_dir(), "shop.yaml", SHOP)]);
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let client = runtime.block_on(server.client());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let kubelet = {
        let stop = stop.clone();
        let handle = runtime.handle().clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                handle.block_on(mark_pods_ready(client.clone(), "shop"));
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    // Not rolled out yet: the same one-shot status as kubectl's.
    same_as_kubectl(
        &server,
        &[
            "rollout",
            "status",
            "deployment/web",
            "-n",
            "shop",
            "--watch=false",
        ],
    );
    let out = ctl.ok(&[
        "rollout",
        "status",
        "deploy/web",
        "-n",
        "shop",
        "--timeout=30s",
    ]);
    assert!(
        out.ends_with("deployment \"web\" successfully rolled out\n"),
        "{out}"
    );

    assert_eq!(
        ctl.ok(&["scale", "deploy", "web", "-n", "shop", "--replicas=3"]),
        "deployment.apps/web scaled\n"
    );
    let err = ctl.fails(&[
        "scale",
        "deploy/web",
        "-n",
        "shop",
        "--replicas=1",
        "--current-replicas=2",
    ]);
    assert_eq!(err, "error: Expected replicas to be 2, was 3\n");
    ctl.ok(&[
        "rollout",
        "status",
        "deploy/web",
        "-n",
        "shop",
        "--timeout=30s",
    ]);
    let replicas = || {
        ctl.ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ])
    };
    assert_eq!(replicas(), "3");

    // A new image, then back. `scale` owns spec.replicas now: applying the manifest's
    // replicas again is a conflict until forced (as with kubectl's server-side apply).
    let updated = SHOP.replace("busybox:1.36", "busybox:1.37");
    let run = ctl.run_stdin(&["apply", "-f", "-"], Some(&updated));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("conflict with \"skiffctl-scale\" using apps/v1: .spec.replicas"),
        "{run:?}"
    );
    let run = ctl.run_stdin(&["apply", "-f", "-", "--force-conflicts"], Some(&updated));
    assert!(
        run.stdout.contains("deployment.apps/web configured"),
        "{run:?}"
    );
    ctl.ok(&[
        "rollout",
        "status",
        "deploy/web",
        "-n",
        "shop",
        "--timeout=30s",
    ]);
    let history = same_as_kubectl(
        &server,
        &["rollout", "history", "deployment/web", "-n", "shop"],
    );
    assert_eq!(
        history.stdout,
        "deployment.apps/web \nREVISION  CHANGE-CAUSE\n1         <none>\n2         <none>\n\n"
    );
    assert_eq!(
        ctl.ok(&["rollout", "undo", "deploy/web", "-n", "shop"]),
        "deployment.apps/web rolled back\n"
    );
    let image = || {
        ctl.ok(&[
            "get",
            "deploy",
            "web",
            "-n",
            "shop",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ])
    };
    assert_eq!(image(), "busybox:1.36");
    ctl.ok(&[
        "rollout",
        "status",
        "deploy/web",
        "-n",
        "shop",
        "--timeout=30s",
    ]);
    // Revision 1 became 3; back to 2 by number; asking for the current one is a no-op.
    assert_eq!(
        ctl.ok(&[
            "rollout",
            "undo",
            "deploy/web",
            "-n",
            "shop",
            "--to-revision=2"
        ]),
        "deployment.apps/web rolled back\n"
    );
    assert_eq!(image(), "busybox:1.37");
    eventually("revision 4", || {
        ctl.ok(&["rollout", "history", "deploy/web", "-n", "shop"])
            .contains("\n4 ")
    });
    assert_eq!(
        ctl.ok(&[
            "rollout",
            "undo",
            "deploy/web",
            "-n",
            "shop",
            "--to-revision=4"
        ]),
        "deployment.apps/web skipped rollback (current template already matches revision 4)\n"
    );
    assert_eq!(
        ctl.fails(&[
            "rollout",
            "undo",
            "deploy/web",
            "-n",
            "shop",
            "--to-revision=9"
        ]),
        "error: unable to find specified revision 9 in history\n"
    );

    // Restart: a new ReplicaSet for the same template, stamped with the time.
    assert_eq!(
        ctl.ok(&["rollout", "restart", "deployment", "web", "-n", "shop"]),
        "deployment.apps/web restarted\n"
    );
    let stamp = ctl.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.template.metadata.annotations}",
    ]);
    assert!(
        stamp.contains("kubectl.kubernetes.io/restartedAt"),
        "{stamp}"
    );
    ctl.ok(&[
        "rollout",
        "status",
        "deploy/web",
        "-n",
        "shop",
        "--timeout=30s",
    ]);

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    kubelet.join().expect("the pretend kubelet");
}

#[test]
fn cordon_uncordon_and_drain() {
    let server = Server::start(Backend::Embedded);
    let ctl = Cli::skiffctl(&server);
    // A node without an agent, and pods bound to it by name: one from a ReplicaSet, one
    // bare, one of a DaemonSet (by its owner reference), one with emptyDir.
    let node = write(
        server.data_dir(),
        "node.yaml",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n",
    );
    ctl.ok(&["create", "-f", &node]);
    let pod = |name: &str, owner: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n{owner}spec:\n  nodeName: n1\n  containers:\n  - name: c\n    image: busybox\n{extra}---\n"
        )
    };
    let owner = |kind: &str| {
        format!(
            "  ownerReferences:\n  - apiVersion: apps/v1\n    kind: {kind}\n    name: x\n    uid: 00000000-0000-0000-0000-00000000000{}\n    controller: true\n",
            kind.len() % 10
        )
    };
    let pods = [
        pod("managed", &owner("ReplicaSet"), ""),
        pod("bare", "", ""),
        pod("daemon", &owner("DaemonSet"), ""),
        pod(
            "scratch",
            &owner("ReplicaSet"),
            "  volumes:\n  - name: tmp\n    emptyDir: {}\n",
        ),
    ]
    .concat();
    ctl.ok(&[
        "create",
        "-f",
        &write(server.data_dir(), "pods.yaml", &pods),
    ]);

    assert_eq!(ctl.ok(&["cordon", "n1"]), "node/n1 cordoned\n");
    let unschedulable = || ctl.ok(&["get", "node", "n1", "-o", "jsonpath={.spec.unschedulable}"]);
    assert_eq!(unschedulable(), "true");
    assert_eq!(ctl.ok(&["cordon", "n1"]), "node/n1 already cordoned\n");
    assert_eq!(ctl.ok(&["uncordon", "n1"]), "node/n1 uncordoned\n");
    assert_eq!(unschedulable(), "");

    // Refused, with every reason, and nothing evicted.
    let run = ctl.run(&["drain", "n1", "--grace-period=0"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stdout, "node/n1 cordoned\n");
    assert_eq!(
        run.stderr.lines().next(),
        Some(
            "error: unable to drain node \"n1\" due to error: cannot delete Pods that declare no controller (use --force to override): default/bare, cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore): default/daemon, cannot delete Pods with local storage (use --delete-emptydir-data to override): default/scratch, continuing command..."
        ),
        "{run:?}"
    );
    assert_eq!(
        ctl.ok(&["get", "pods", "-o", "name"]),
        "pod/bare\npod/daemon\npod/managed\npod/scratch\n"
    );

    let run = ctl.run(&[
        "drain",
        "n1",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--force",
        "--grace-period=0",
        "--timeout=20s",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stderr,
        "Warning: deleting Pods that declare no controller: default/bare; ignoring DaemonSet-managed Pods: default/daemon; deleting Pods with local storage: default/scratch\n"
    );
    assert_eq!(
        run.stdout,
        "node/n1 already cordoned\n\
         evicting pod default/bare\n\
         evicting pod default/managed\n\
         evicting pod default/scratch\n\
         pod/bare evicted\n\
         pod/managed evicted\n\
         pod/scratch evicted\n\
         node/n1 drained\n"
    );
    assert_eq!(ctl.ok(&["get", "pods", "-o", "name"]), "pod/daemon\n");
}

#[test]
fn describe_prints_what_kubectl_prints() {
    let server = Server::start(Backend::Embedded);
    let ctl = Cli::skiffctl(&server);
    ctl.ok(&["apply", "-f", &write(server.data_dir(), "shop.yaml", SHOP)]);
    // A node (no agent) with capacity, and a pod on it with requests and limits, an
    // emptyDir, env from a ConfigMap and a probe.
    let node = "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\n  labels:\n    node-role.kubernetes.io/control-plane: \"\"\nspec:\n  podCIDR: 10.244.1.0/24\n  podCIDRs: [10.244.1.0/24]\nstatus:\n  capacity: {cpu: \"4\", memory: 8Gi, pods: \"110\"}\n  allocatable: {cpu: \"4\", memory: 8Gi, pods: \"110\"}\n";
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: busy\n  namespace: shop\n  labels: {app: busy, tier: x}\n  annotations: {note: hello}\nspec:\n  nodeName: n1\n  containers:\n  - name: c\n    image: busybox:1.36\n    args: [sleep, \"3600\"]\n    ports: [{containerPort: 8080, name: http}]\n    env:\n    - {name: MODE, value: prod}\n    - name: GREETING\n      valueFrom: {configMapKeyRef: {name: settings, key: greeting}}\n    envFrom: [{configMapRef: {name: settings}}]\n    resources:\n      requests: {cpu: 250m, memory: 64Mi}\n      limits: {memory: 128Mi}\n    readinessProbe:\n      httpGet: {path: /healthz, port: 8080}\n    volumeMounts: [{name: scratch, mountPath: /scratch}]\n  volumes:\n  - name: scratch\n    emptyDir: {}\n";
    ctl.ok(&["create", "-f", &write(server.data_dir(), "node.yaml", node)]);
    ctl.ok(&["create", "-f", &write(server.data_dir(), "pod.yaml", pod)]);
    eventually("the Deployment's ReplicaSet", || {
        !ctl.ok(&["get", "rs", "-n", "shop", "-o", "name"])
            .is_empty()
    });
    let rs = ctl.ok(&["get", "rs", "-n", "shop", "-o", "name"]);
    let rs = rs.trim();
    // Let the controllers and the scheduler settle, so both CLIs see the same objects.
    std::thread::sleep(Duration::from_millis(1500));
    for args in [
        &["describe", "deployment", "web", "-n", "shop"][..],
        &["describe", rs, "-n", "shop"],
        &["describe", "svc", "web", "-n", "shop"],
        &["describe", "pod", "busy", "-n", "shop"],
        &["describe", "pods", "-n", "shop", "-l", "app=web"],
        &["describe", "node", "n1"],
        &["describe", "ns", "shop"],
        &["describe", "deploy", "we", "-n", "shop"],
        &["describe", "deploy,svc", "-n", "shop"],
        &["describe", "svc", "nope", "-n", "shop"],
        &["describe", "pods", "-n", "empty"],
    ] {
        same_as_kubectl(&server, args);
    }

    // And checked in, times and ages aside.
    let out = ctl.ok(&["describe", "svc", "web", "-n", "shop"]);
    let cluster_ip = ctl.ok(&[
        "get",
        "svc",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert_eq!(
        out.replace(&cluster_ip, "<ip>"),
        "Name:                     web\n\
         Namespace:                shop\n\
         Labels:                   <none>\n\
         Annotations:              <none>\n\
         Selector:                 app=web\n\
         Type:                     ClusterIP\n\
         IP Family Policy:         SingleStack\n\
         IP Families:              IPv4\n\
         IP:                       <ip>\n\
         IPs:                      <ip>\n\
         Port:                     <unset>  80/TCP\n\
         TargetPort:               8080/TCP\n\
         Endpoints:                \n\
         Session Affinity:         None\n\
         Internal Traffic Policy:  Cluster\n\
         Events:                   <none>\n"
    );
}

#[test]
fn long_operations_show_progress_on_a_terminal_and_plain_lines_otherwise() {
    let server = Server::start(Backend::Embedded);
    let dir = server.data_dir().join("many");
    for i in 0..12 {
        write(
            &dir,
            &format!("cm{i:02}.yaml"),
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: many-{i:02}\n"),
        );
    }
    let dir = dir.to_string_lossy().into_owned();
    // Piped: the result lines only.
    let plain = Cli::skiffctl(&server).ok(&["apply", "-f", &dir]);
    let expected: String = (0..12)
        .map(|i| format!("configmap/many-{i:02} created\n"))
        .collect();
    assert_eq!(plain, expected);
    // On a terminal (script(1) gives it one): the same lines among the bar's redraws.
    let command = format!(
        "{} --kubeconfig {} apply -f {dir}",
        env!("CARGO_BIN_EXE_skiffctl"),
        server.kubeconfig.display()
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("HOME", server.data_dir())
        .stdin(Stdio::null())
        .output()
        .expect("script(1)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("/12 ConfigMap/many-"),
        "no progress bar in {text:?}"
    );
    for i in 0..12 {
        assert!(
            text.contains(&format!("configmap/many-{i:02} unchanged")),
            "{text:?}"
        );
    }
}

#[test]
fn kubeconfig_context_and_namespace_are_honoured() {
    let server = Server::start(Backend::Embedded);
    let ctl = Cli::skiffctl(&server);
    ctl.ok(&["apply", "-f", &write(server.data_dir(), "shop.yaml", SHOP)]);
    // A second context on the same cluster and user whose namespace is `shop`.
    let text = std::fs::read_to_string(&server.kubeconfig).expect("kubeconfig");
    let mut config: serde_json::Value = serde_saphyr::from_str(&text).expect("kubeconfig YAML");
    let mut shop = config["contexts"][0].clone();
    shop["name"] = "shop-context".into();
    shop["context"]["namespace"] = "shop".into();
    config["contexts"]
        .as_array_mut()
        .expect("contexts")
        .push(shop);
    let two_contexts = server.data_dir().join("two-contexts.yaml");
    std::fs::write(
        &two_contexts,
        serde_json::to_string(&config).expect("kubeconfig JSON"),
    )
    .expect("write kubeconfig");
    let with = Cli {
        kubeconfig: two_contexts.clone(),
        ..Cli::skiffctl(&server)
    };
    let kubectl = Cli {
        bin: kubectl_path(),
        ..Cli::skiffctl(&server)
    };
    let kubectl = Cli {
        kubeconfig: two_contexts.clone(),
        ..kubectl
    };
    for args in [
        &["get", "cm", "-o", "name"][..],
        &["get", "cm", "-o", "name", "--context", "shop-context"],
        &["get", "cm", "--context", "shop-context", "-n", "default"],
        &[
            "get",
            "deploy",
            "--context",
            "shop-context",
            "-A",
            "-o",
            "name",
        ],
    ] {
        let (a, b) = (with.run(args), kubectl.run(args));
        assert_eq!(
            (a.code, a.stdout, a.stderr),
            (b.code, b.stdout, b.stderr),
            "{args:?}"
        );
    }
    // The context's namespace, as if -n shop were given.
    let in_shop = with.ok(&["get", "cm", "--context", "shop-context", "-o", "name"]);
    assert!(in_shop.contains("configmap/settings\n"), "{in_shop}");
    assert_eq!(in_shop, ctl.ok(&["get", "cm", "-n", "shop", "-o", "name"]));
    let (a, b) = (
        with.run(&["get", "cm", "--context", "nope"]),
        kubectl.run(&["get", "cm", "--context", "nope"]),
    );
    assert_eq!((a.code, a.stderr), (b.code, b.stderr));
    let missing = Cli {
        kubeconfig: server.data_dir().join("no-such-kubeconfig"),
        ..Cli::skiffctl(&server)
    };
    let kubectl_missing = Cli {
        bin: kubectl_path(),
        ..Cli {
            kubeconfig: missing.kubeconfig.clone(),
            ..Cli::skiffctl(&server)
        }
    };
    assert_eq!(
        missing.fails(&["get", "ns"]),
        kubectl_missing.fails(&["get", "ns"])
    );

    // $KUBECONFIG when no --kubeconfig is given.
    let out = Command::new(env!("CARGO_BIN_EXE_skiffctl"))
        .args(["get", "ns", "shop", "-o", "name"])
        .env("KUBECONFIG", &server.kubeconfig)
        .env("HOME", server.data_dir())
        .output()
        .expect("skiffctl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "namespace/shop\n");
}
