//! Bad input over raw HTTP: the exact status codes, a `Status` body, and nothing stored
//! changed.

mod support;

use serde_json::{Value, json};
use support::{Backend, Server};

struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        ct: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let resp = self
            .client
            .request(method, format!("{}{path}", self.base))
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .expect("request");
        let code = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (code, v)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, "application/json", Vec::new())
            .await
    }
}

fn assert_status(got: &(u16, Value), code: u16, reason: &str) {
    assert_eq!(got.0, code, "{}", got.1);
    assert_eq!(got.1["kind"], "Status", "{}", got.1);
    assert_eq!(got.1["code"], code);
    assert_eq!(got.1["reason"], reason, "{}", got.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_and_changes_nothing() {
    let server = Server::start(Backend::Embedded);
    let http = Http {
        base: server.url.clone(),
        // A new connection per request: the server answers an oversize body with 413 without
        // reading it and closes that connection, which a pooled client might reuse (EPIPE).
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("http client"),
    };
    let cms = "/api/v1/namespaces/default/configmaps";
    let good = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "keep"}, "data": {"a": "1"}});
    let created = http
        .send(
            reqwest::Method::POST,
            cms,
            "application/json",
            good.to_string().into_bytes(),
        )
        .await;
    assert_eq!(created.0, 201, "{}", created.1);
    let before = http.get(&format!("{cms}/keep")).await.1;

    // Malformed JSON and YAML.
    let r = http
        .send(
            reqwest::Method::POST,
            cms,
            "application/json",
            b"{\"apiVersion\": ".to_vec(),
        )
        .await;
    assert_status(&r, 400, "BadRequest");
    let r = http
        .send(
            reqwest::Method::POST,
            cms,
            "application/yaml",
            b"metadata:\n  name: [unclosed\n".to_vec(),
        )
        .await;
    assert_status(&r, 400, "BadRequest");

    // Malformed protobuf (the encoding client-go's typed clients send).
    let r = http
        .send(
            reqwest::Method::POST,
            cms,
            "application/vnd.kubernetes.protobuf",
            b"k8s\x00\x0a\xff\xff".to_vec(),
        )
        .await;
    assert_status(&r, 400, "BadRequest");

    // Invalid names, with the field path in the causes.
    let bad = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Not_Valid"}});
    let r = http
        .send(
            reqwest::Method::POST,
            cms,
            "application/json",
            bad.to_string().into_bytes(),
        )
        .await;
    assert_status(&r, 422, "Invalid");
    assert_eq!(
        r.1["details"]["causes"][0]["field"], "metadata.name",
        "{}",
        r.1
    );

    // A stale resourceVersion.
    let mut stale = before.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    stale["data"]["a"] = json!("changed");
    let r = http
        .send(
            reqwest::Method::PUT,
            &format!("{cms}/keep"),
            "application/json",
            stale.to_string().into_bytes(),
        )
        .await;
    assert_status(&r, 409, "Conflict");

    // Unknown fields under Strict name the field; under Warn they are dropped with a warning.
    let unknown = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "strict"}, "spec": {"x": 1}});
    let r = http
        .send(
            reqwest::Method::POST,
            &format!("{cms}?fieldValidation=Strict"),
            "application/json",
            unknown.to_string().into_bytes(),
        )
        .await;
    assert_status(&r, 400, "BadRequest");
    assert!(
        r.1["message"]
            .as_str()
            .unwrap_or("")
            .contains("unknown field \"spec\""),
        "{}",
        r.1
    );
    let resp = http
        .client
        .post(format!("{}{cms}?fieldValidation=Warn", server.url))
        .header("content-type", "application/json")
        .body(unknown.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let warning = resp
        .headers()
        .get("warning")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(warning.contains("unknown field"), "{warning}");

    // An oversize body.
    let huge = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "huge"},
                      "data": {"a": "x".repeat(4 * 1024 * 1024)}});
    let r = http
        .send(
            reqwest::Method::POST,
            cms,
            "application/json",
            huge.to_string().into_bytes(),
        )
        .await;
    assert_status(&r, 413, "RequestEntityTooLarge");

    // A missing namespace.
    let r = http
        .send(
            reqwest::Method::POST,
            "/api/v1/namespaces/absent/configmaps",
            "application/json",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_status(&r, 404, "NotFound");

    // Unknown resources and wrong verbs.
    assert_status(
        &http.get("/api/v1/namespaces/default/widgets").await,
        404,
        "NotFound",
    );
    let r = http
        .send(
            reqwest::Method::PUT,
            cms,
            "application/json",
            b"{}".to_vec(),
        )
        .await;
    assert_status(&r, 405, "MethodNotAllowed");
    // A body of the wrong kind.
    let r = http
        .send(
            reqwest::Method::POST,
            cms,
            "application/json",
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}})
                .to_string()
                .into_bytes(),
        )
        .await;
    assert_status(&r, 400, "BadRequest");
    // A body of the wrong type for a field.
    let r = http
        .send(
            reqwest::Method::POST,
            cms,
            "application/json",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": "text"}).to_string().into_bytes(),
        )
        .await;
    assert_status(&r, 400, "BadRequest");

    // Nothing stored changed.
    let after = http.get(&format!("{cms}/keep")).await.1;
    assert_eq!(before, after);
    let list = http.get(cms).await.1;
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert!(
        !names.contains(&"huge") && !names.contains(&"Not_Valid") && !names.contains(&"x"),
        "{names:?}"
    );

    // Health endpoints.
    assert_eq!(http.get("/healthz").await.0, 200);
    assert_eq!(http.get("/readyz").await.0, 200);
    let v = http.get("/version").await.1;
    assert_eq!(v["major"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_etcd_is_down() {
    let mut server = Server::start(Backend::Etcd);
    let http = Http {
        base: server.url.clone(),
        client: reqwest::Client::new(),
    };
    assert_eq!(http.get("/readyz").await.0, 200);
    server.stop_etcd();
    let mut code = 200;
    for _ in 0..50 {
        code = http.get("/readyz").await.0;
        if code != 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(code, 503);
}
