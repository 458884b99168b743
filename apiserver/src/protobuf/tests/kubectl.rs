//! Bodies captured from real kubectl v1.35 and helm v4 (see testdata/README.md), each compared
//! with the JSON kubectl itself prints for the same object (`--dry-run=client -o json`), which
//! is Go's JSON encoding of the very struct that was sent as protobuf.

use base64::Engine as _;
use serde_json::{Value, json};

use super::super::decode_body;

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!("../testdata/", $name, ".pb")).to_vec(),
            Some(include_str!(concat!("../testdata/", $name, ".json"))),
        )
    };
    ($name:literal, no_json) => {
        (
            $name,
            include_bytes!(concat!("../testdata/", $name, ".pb")).to_vec(),
            None,
        )
    };
}

/// (name, protobuf body, kubectl's JSON for it).
pub(super) fn fixtures() -> Vec<(&'static str, Vec<u8>, Option<&'static str>)> {
    vec![
        fixture!("deployment"),
        fixture!("deployment-2"),
        fixture!("namespace"),
        fixture!("secret"),
        fixture!("secret-docker"),
        fixture!("configmap"),
        fixture!("configmap-binary"),
        fixture!("service-nodeport"),
        fixture!("service-clusterip"),
        fixture!("service-lb"),
        fixture!("serviceaccount"),
        fixture!("job"),
        fixture!("helm-release-secret", no_json),
        fixture!("helm-release-secret-update", no_json),
        fixture!("helm-uninstall-deleteoptions", no_json),
    ]
}

#[test]
fn kubectl_bodies_decode_to_kubectls_own_json() {
    for (name, body, want) in fixtures() {
        let got = decode_body(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let Some(want) = want else { continue };
        let want: Value = serde_json::from_str(want).unwrap();
        assert_eq!(
            got,
            want,
            "{name}: got {}",
            serde_json::to_string_pretty(&got).unwrap()
        );
        // Key order too: kind and apiVersion lead, as in Go's JSON.
        let keys: Vec<_> = got.as_object().unwrap().keys().take(2).collect();
        assert_eq!(keys, ["kind", "apiVersion"], "{name}");
    }
}

#[test]
fn the_deployment_in_detail() {
    // The brief's example, spelled out: what matters to the server downstream.
    let body = include_bytes!("../testdata/deployment.pb");
    let v = decode_body(body).unwrap();
    assert_eq!(v["spec"]["replicas"], json!(3));
    assert_eq!(
        v["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([{"containerPort": 80}])
    );
    assert_eq!(v["metadata"]["labels"], json!({"app": "web"}));
    // gogo sent an empty creationTimestamp; Go's JSON omits it (`omitzero`) rather than null.
    assert!(v["metadata"].get("creationTimestamp").is_none());
    // gogo also sent every plain field's zero (generateName "", minReadySeconds 0, paused
    // false, status counters 0); none of them survive, as in kubectl's JSON.
    assert!(v["metadata"].get("generateName").is_none());
    assert!(v["spec"].get("paused").is_none());
    assert_eq!(v["status"], json!({}));
}

#[test]
fn helm_release_secret() {
    let v = decode_body(include_bytes!("../testdata/helm-release-secret.pb")).unwrap();
    assert_eq!(v["kind"], "Secret");
    assert_eq!(v["apiVersion"], "v1");
    assert_eq!(v["type"], "helm.sh/release.v1");
    assert_eq!(v["metadata"]["name"], "sh.helm.release.v1.tiny.v1");
    let labels = v["metadata"]["labels"].as_object().unwrap();
    assert_eq!(labels["name"], "tiny");
    assert_eq!(labels["owner"], "helm");
    assert_eq!(labels["version"], "1");
    // data values are bytes, so JSON carries them base64-encoded; helm's release is itself
    // base64 text of a gzip stream.
    let b64 = base64::engine::general_purpose::STANDARD;
    let release = b64
        .decode(v["data"]["release"].as_str().unwrap())
        .expect("data.release is base64");
    let gz = b64.decode(&release).expect("helm's payload is base64 too");
    assert_eq!(&gz[..2], [0x1f, 0x8b], "gzip magic");
}

#[test]
fn helm_uninstall_delete_options() {
    // helm sends an empty DeleteOptions (raw is zero bytes) in the core group-version.
    let v = decode_body(include_bytes!(
        "../testdata/helm-uninstall-deleteoptions.pb"
    ))
    .unwrap();
    assert_eq!(v, json!({"kind": "DeleteOptions", "apiVersion": "v1"}));
}
