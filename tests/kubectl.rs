//! Real kubectl v1.35 against `skiff server`, asserting on what it prints.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{Backend, Server, kubectl_path};

const MANIFEST: &str = r#"apiVersion: v1
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
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: shop
stringData:
  password: s3cret
---
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
        image: nginx:1.27
        ports:
        - containerPort: 80
        env:
        - name: MODE
          value: prod
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
    targetPort: 80
"#;

struct Kubectl<'a> {
    server: &'a Server,
    bin: std::path::PathBuf,
}

impl Kubectl<'_> {
    fn run(&self, args: &[&str]) -> Output {
        self.run_stdin(args, None)
    }

    fn run_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--kubeconfig")
            .arg(&self.server.kubeconfig)
            .args(args)
            .env("HOME", self.server.data_dir())
            .env("KUBECACHEDIR", self.server.data_dir().join("kube-cache"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = cmd.spawn().expect("run kubectl");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        child.wait_with_output().expect("kubectl output")
    }

    /// Run and require success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run and require failure; returns stderr.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} should fail but printed {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write manifest");
    p.to_string_lossy().into_owned()
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn kubectl_end_to_end() {
    let server = Server::start(Backend::Embedded);
    let k = Kubectl {
        server: &server,
        bin: kubectl_path(),
    };
    let version = k.ok(&["version", "-o", "json"]);
    assert!(version.contains("\"minor\": \"35\""), "{version}");

    let manifest = write(server.data_dir(), "shop.yaml", MANIFEST);
    let out = k.ok(&["apply", "-f", &manifest]);
    for expected in [
        "namespace/shop created",
        "configmap/settings created",
        "secret/creds created",
        "deployment.apps/web created",
        "service/web created",
    ] {
        assert!(
            out.contains(expected),
            "apply output lacks {expected:?}:\n{out}"
        );
    }

    // Table output as upstream prints it.
    let out = k.ok(&["get", "deployments", "-n", "shop"]);
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
        "{out}"
    );
    assert!(
        out.lines().nth(1).unwrap_or("").starts_with("web "),
        "{out}"
    );
    let out = k.ok(&["get", "deploy", "-n", "shop", "-o", "wide"]);
    assert!(
        out.contains("CONTAINERS") && out.contains("nginx:1.27") && out.contains("app=web"),
        "{out}"
    );
    let out = k.ok(&["get", "svc", "web", "-n", "shop"]);
    assert!(
        out.contains("CLUSTER-IP") && out.contains("80/TCP") && out.contains("10.96."),
        "{out}"
    );
    let out = k.ok(&[
        "get",
        "secret",
        "creds",
        "-n",
        "shop",
        "-o",
        "jsonpath={.data.password}",
    ]);
    assert_eq!(out.trim(), "czNjcmV0");
    let out = k.ok(&["get", "cm", "-n", "shop", "-o", "name"]);
    assert!(out.lines().any(|l| l == "configmap/settings"), "{out}");
    let out = k.ok(&["get", "deploy", "web", "-n", "shop", "-o", "yaml"]);
    assert!(
        out.contains("revisionHistoryLimit: 10") && out.contains("maxSurge: 25%"),
        "{out}"
    );
    let out = k.ok(&["get", "deploy", "web", "-n", "shop", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["spec"]["replicas"], 2);
    let out = k.ok(&["get", "cm", "-A", "-l", "app=web"]);
    assert!(out.contains("shop") && out.contains("settings"), "{out}");
    let out = k.ok(&["get", "ns", "--field-selector", "metadata.name=shop"]);
    assert_eq!(lines_with(&out, "shop").len(), 1, "{out}");
    assert!(out.contains("Active"), "{out}");

    // Applying the same file again changes nothing.
    let out = k.ok(&["apply", "-f", &manifest]);
    assert!(out.contains("deployment.apps/web unchanged"), "{out}");
    assert!(out.contains("configmap/settings unchanged"), "{out}");

    // A change, client-side.
    let changed = MANIFEST
        .replace("nginx:1.27", "nginx:1.28")
        .replace("greeting: hello", "greeting: hi");
    let changed_path = write(server.data_dir(), "shop2.yaml", &changed);
    let out = k.ok(&["apply", "-f", &changed_path]);
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let image = k.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    assert_eq!(image.trim(), "nginx:1.28");
    let generation = k.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.metadata.generation}",
    ]);
    assert_eq!(generation.trim(), "2");

    // And server-side.
    let ssa = changed.replace("greeting: hi", "greeting: server-side");
    let ssa_path = write(server.data_dir(), "shop3.yaml", &ssa);
    let out = k.ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        &ssa_path,
    ]);
    assert!(
        out.contains("configmap/settings serverside-applied"),
        "{out}"
    );
    let g = k.ok(&[
        "get",
        "cm",
        "settings",
        "-n",
        "shop",
        "-o",
        "jsonpath={.data.greeting}",
    ]);
    assert_eq!(g.trim(), "server-side");

    // Patches of all three kinds.
    k.ok(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "shop",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"merge":"1"}}"#,
    ]);
    k.ok(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "shop",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/data/json","value":"2"}]"#,
    ]);
    k.ok(&[
        "patch", "deploy", "web", "-n", "shop", "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox:1.36"}]}}}}"#,
    ]);
    let data = k.ok(&[
        "get",
        "cm",
        "settings",
        "-n",
        "shop",
        "-o",
        "jsonpath={.data.merge},{.data.json}",
    ]);
    assert_eq!(data.trim(), "1,2");
    let names = k.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.template.spec.containers[*].name}",
    ]);
    assert_eq!(names.trim(), "sidecar web");

    // replace with a stale object is a conflict.
    let stale = k.ok(&["get", "cm", "settings", "-n", "shop", "-o", "json"]);
    k.ok(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "shop",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"bump":"1"}}"#,
    ]);
    let stale_path = write(server.data_dir(), "stale.json", &stale);
    let err = k.fails(&["replace", "-f", &stale_path]);
    assert!(err.contains("the object has been modified"), "{err}");

    // scale
    let out = k.ok(&["scale", "deploy", "web", "-n", "shop", "--replicas", "5"]);
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    let r = k.ok(&[
        "get",
        "deploy",
        "web",
        "-n",
        "shop",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(r.trim(), "5");

    // get -w sees a change.
    let mut watch = Command::new(&k.bin)
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args([
            "get",
            "cm",
            "settings",
            "-n",
            "shop",
            "-w",
            "-o",
            "jsonpath={.data.watched}{\"\\n\"}",
        ])
        .env("HOME", server.data_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    std::thread::sleep(Duration::from_millis(1500));
    k.ok(&[
        "patch",
        "cm",
        "settings",
        "-n",
        "shop",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"watched":"yes"}}"#,
    ]);
    let stdout = watch.stdout.take().expect("watch stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = false;
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200))
            && line.trim() == "yes"
        {
            seen = true;
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(seen, "kubectl get -w did not print the change");

    // Discovery-driven commands.
    let out = k.ok(&["api-resources"]);
    for (name, short) in [
        ("pods", "po"),
        ("deployments", "deploy"),
        ("services", "svc"),
        ("namespaces", "ns"),
    ] {
        assert!(
            out.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.first() == Some(&name) && cols.get(1) == Some(&short)
            }),
            "api-resources lacks {name} ({short}):\n{out}"
        );
    }
    let out = k.ok(&["get", "all", "-n", "shop"]);
    assert!(
        out.contains("service/web") && out.contains("deployment.apps/web"),
        "{out}"
    );
    let out = k.ok(&["explain", "pod.spec.containers"]);
    assert!(
        out.contains("KIND:") && out.contains("Pod") && out.contains("image"),
        "{out}"
    );

    // delete -f removes everything; the namespace goes Terminating (its contents are the
    // namespace controller's to remove).
    let out = k.ok(&["delete", "-f", &manifest, "--wait=false"]);
    assert!(out.contains("deployment.apps \"web\" deleted"), "{out}");
    let err = k.fails(&["get", "deploy", "web", "-n", "shop"]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
    let phase = k.ok(&["get", "ns", "shop", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase.trim(), "Terminating");
}

/// kubectl's typed commands (and helm) send protobuf request bodies.
#[test]
fn kubectl_typed_commands_and_helm() {
    let server = Server::start(Backend::Embedded);
    let k = Kubectl {
        server: &server,
        bin: kubectl_path(),
    };
    k.ok(&["create", "namespace", "typed"]);
    k.ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        "typed",
        "--image=nginx:1.27",
        "--replicas=3",
        "--port=80",
    ]);
    let out = k.ok(&["get", "deploy", "web", "-n", "typed", "-o", "json"]);
    let d: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
        80
    );
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    k.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "-n",
        "typed",
        "--from-literal=password=pw",
    ]);
    let pw = k.ok(&[
        "get",
        "secret",
        "creds",
        "-n",
        "typed",
        "-o",
        "jsonpath={.data.password}",
    ]);
    assert_eq!(pw.trim(), "cHc=");
    k.ok(&[
        "create",
        "configmap",
        "cfg",
        "-n",
        "typed",
        "--from-literal=k=v",
    ]);
    k.ok(&[
        "create",
        "service",
        "nodeport",
        "web",
        "-n",
        "typed",
        "--tcp=80:8080",
    ]);
    let svc = k.ok(&[
        "get",
        "svc",
        "web",
        "-n",
        "typed",
        "-o",
        "jsonpath={.spec.type} {.spec.ports[0].targetPort} {.spec.ports[0].nodePort}",
    ]);
    let parts: Vec<&str> = svc.split_whitespace().collect();
    assert_eq!(parts[..2], ["NodePort", "8080"], "{svc}");
    assert!(
        parts[2]
            .parse::<u16>()
            .is_ok_and(|p| (30000..=32767).contains(&p)),
        "{svc}"
    );
    k.ok(&["create", "serviceaccount", "robot", "-n", "typed"]);
    k.ok(&["get", "sa", "robot", "-n", "typed"]);

    // helm stores releases as Secrets through the typed client.
    let helm = kubectl_path().with_file_name("helm");
    let chart = server.data_dir().join("chart");
    std::fs::create_dir_all(chart.join("templates")).expect("chart dir");
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: demo\nversion: 0.1.0\n",
    )
    .expect("Chart.yaml");
    std::fs::write(
        chart.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\ndata:\n  v: {{ .Values.v | default \"1\" | quote }}\n",
    )
    .expect("template");
    let helm_run = |args: &[&str]| {
        let out = Command::new(&helm)
            .args(args)
            .arg("--kubeconfig")
            .arg(&server.kubeconfig)
            .env("HOME", server.data_dir())
            .env("HELM_CACHE_HOME", server.data_dir().join("helm-cache"))
            .env("HELM_CONFIG_HOME", server.data_dir().join("helm-config"))
            .env("HELM_DATA_HOME", server.data_dir().join("helm-data"))
            .output()
            .expect("run helm");
        assert!(
            out.status.success(),
            "helm {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let chart_path = chart.to_string_lossy().into_owned();
    helm_run(&["install", "rel", &chart_path, "-n", "typed"]);
    helm_run(&["upgrade", "rel", &chart_path, "-n", "typed", "--set", "v=2"]);
    let v = k.ok(&[
        "get",
        "cm",
        "rel-cm",
        "-n",
        "typed",
        "-o",
        "jsonpath={.data.v}",
    ]);
    assert_eq!(v.trim(), "2");
    let list = helm_run(&["list", "-n", "typed"]);
    assert!(list.contains("rel") && list.contains("deployed"), "{list}");
    helm_run(&["uninstall", "rel", "-n", "typed"]);
    let err = k.fails(&["get", "cm", "rel-cm", "-n", "typed"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn kubectl_reports_bad_input() {
    let server = Server::start(Backend::Embedded);
    let k = Kubectl {
        server: &server,
        bin: kubectl_path(),
    };
    let bad_name = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n";
    let p = write(server.data_dir(), "bad.yaml", bad_name);
    let err = k.fails(&["create", "-f", &p]);
    assert!(err.contains("Invalid value: \"Bad_Name\""), "{err}");
    let unknown = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\nbogus: 1\n";
    let p = write(server.data_dir(), "unknown.yaml", unknown);
    let err = k.fails(&["apply", "-f", &p]);
    assert!(err.contains("bogus"), "{err}");
    let out = k.run(&["get", "cm", "ok"]);
    assert!(
        !out.status.success(),
        "nothing may be stored after a rejected apply"
    );
}
