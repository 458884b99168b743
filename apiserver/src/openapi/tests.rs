use std::collections::BTreeSet;
use std::time::Instant;

use k8s_openapi::api::{apps, batch, coordination, core, discovery};
use serde_json::{Value, json};

use super::*;

macro_rules! schema_of {
    ($t:ty) => {{
        fn schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
            g.subschema_for::<$t>()
        }
        schema
    }};
}

macro_rules! res {
    ($group:expr, $kind:expr, $plural:expr, $namespaced:expr, $subs:expr, $t:ty) => {
        OpenApiResource {
            group: $group,
            version: "v1",
            kind: $kind,
            plural: $plural,
            namespaced: $namespaced,
            subresources: $subs.to_vec(),
            schema: schema_of!($t),
        }
    };
}

fn resources() -> Vec<OpenApiResource> {
    vec![
        res!(
            "",
            "Namespace",
            "namespaces",
            false,
            &["status"],
            core::v1::Namespace
        ),
        res!(
            "",
            "Pod",
            "pods",
            true,
            &["status", "binding", "exec", "log"],
            core::v1::Pod
        ),
        res!("", "Node", "nodes", false, &["status"], core::v1::Node),
        res!(
            "",
            "Service",
            "services",
            true,
            &["status"],
            core::v1::Service
        ),
        res!("", "Endpoints", "endpoints", true, &[], core::v1::Endpoints),
        res!(
            "",
            "ConfigMap",
            "configmaps",
            true,
            &[],
            core::v1::ConfigMap
        ),
        res!("", "Secret", "secrets", true, &[], core::v1::Secret),
        res!(
            "",
            "ServiceAccount",
            "serviceaccounts",
            true,
            &[],
            core::v1::ServiceAccount
        ),
        res!("", "Event", "events", true, &[], core::v1::Event),
        res!(
            "apps",
            "Deployment",
            "deployments",
            true,
            &["status", "scale"],
            apps::v1::Deployment
        ),
        res!(
            "apps",
            "ReplicaSet",
            "replicasets",
            true,
            &["status", "scale"],
            apps::v1::ReplicaSet
        ),
        res!(
            "apps",
            "DaemonSet",
            "daemonsets",
            true,
            &["status"],
            apps::v1::DaemonSet
        ),
        res!(
            "apps",
            "ControllerRevision",
            "controllerrevisions",
            true,
            &[],
            apps::v1::ControllerRevision
        ),
        res!("batch", "Job", "jobs", true, &["status"], batch::v1::Job),
        res!(
            "coordination.k8s.io",
            "Lease",
            "leases",
            true,
            &[],
            coordination::v1::Lease
        ),
        res!(
            "discovery.k8s.io",
            "EndpointSlice",
            "endpointslices",
            true,
            &[],
            discovery::v1::EndpointSlice
        ),
    ]
}

fn built() -> OpenApi {
    OpenApi::build(&resources())
}

fn parse(b: &[u8]) -> Value {
    serde_json::from_slice(b).expect("valid JSON")
}

fn refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.insert(r.clone());
            }
            m.values().for_each(|v| refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    serde_json::json!({"group": group, "kind": kind, "version": version})
}

fn has_gvk(schema: &Value, gvk: &Value) -> bool {
    schema["x-kubernetes-group-version-kind"]
        .as_array()
        .is_some_and(|l| l.contains(gvk))
}

#[test]
fn build_is_fast_enough_for_startup() {
    let start = Instant::now();
    let api = built();
    let elapsed = start.elapsed();
    eprintln!(
        "openapi build: {elapsed:?}; v2 {} bytes JSON, {} bytes protobuf; {} v3 documents",
        api.v2().len(),
        api.v2_protobuf().len(),
        api.v3_paths().count()
    );
}

#[test]
fn v2_definitions_are_named_as_upstream_and_refs_resolve() {
    let doc = parse(&built().v2());
    assert_eq!(doc["swagger"], "2.0");
    assert_eq!(doc["info"]["title"], "Kubernetes");
    let defs = doc["definitions"].as_object().unwrap();
    for name in [
        "io.k8s.api.core.v1.Pod",
        "io.k8s.api.core.v1.PodList",
        "io.k8s.api.core.v1.PodSpec",
        "io.k8s.api.core.v1.Container",
        "io.k8s.api.apps.v1.Deployment",
        "io.k8s.api.apps.v1.DeploymentStrategy",
        "io.k8s.api.coordination.v1.LeaseList",
        "io.k8s.api.discovery.v1.EndpointSliceList",
        "io.k8s.api.autoscaling.v1.Scale",
        "io.k8s.api.core.v1.Binding",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        "io.k8s.apimachinery.pkg.apis.meta.v1.Patch",
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
    ] {
        assert!(defs.contains_key(name), "missing definition {name}");
    }
    let mut all = BTreeSet::new();
    refs(&doc, &mut all);
    for r in &all {
        let name = r
            .strip_prefix("#/definitions/")
            .unwrap_or_else(|| panic!("v2 ref {r} does not point into definitions"));
        assert!(defs.contains_key(name), "dangling ref {r}");
    }

    let pod = &defs["io.k8s.api.core.v1.Pod"];
    assert!(has_gvk(pod, &gvk("", "v1", "Pod")));
    assert!(
        pod.get("required").is_none(),
        "metadata is not required upstream"
    );
    assert_eq!(
        pod["properties"]["spec"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.PodSpec"
    );
    assert!(pod["properties"]["spec"]["description"].is_string());
    let list = &defs["io.k8s.api.core.v1.PodList"];
    assert!(has_gvk(list, &gvk("", "v1", "PodList")));
    assert_eq!(
        list["properties"]["items"]["items"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.Pod"
    );
    assert!(has_gvk(
        &defs["io.k8s.api.apps.v1.Deployment"],
        &gvk("apps", "v1", "Deployment")
    ));
    assert!(has_gvk(
        &defs["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"],
        &gvk("apps", "v1", "DeleteOptions")
    ));
    let containers = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
}

#[test]
fn v2_paths_carry_gvk_and_field_validation() {
    let doc = parse(&built().v2());
    let paths = doc["paths"].as_object().unwrap();
    let pods = &paths["/api/v1/namespaces/{namespace}/pods"];
    assert_eq!(
        pods["get"]["x-kubernetes-group-version-kind"],
        gvk("", "v1", "Pod")
    );
    assert_eq!(pods["get"]["x-kubernetes-action"], "list");
    assert_eq!(pods["get"]["operationId"], "listCoreV1NamespacedPod");
    let patch = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
    let names: Vec<&str> = patch["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for p in ["body", "dryRun", "fieldManager", "fieldValidation", "force"] {
        assert!(names.contains(&p), "patch lacks {p}: {names:?}");
    }
    let scale = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["put"]["x-kubernetes-group-version-kind"],
        gvk("autoscaling", "v1", "Scale")
    );
    assert!(paths.contains_key("/api/v1/nodes/{name}/status"));
    assert!(paths.contains_key("/api/v1/pods"));
    assert!(paths.contains_key("/api/v1/namespaces/{namespace}/pods/{name}/binding"));
    // The streaming subresources, named and typed as upstream's.
    let log = &paths["/api/v1/namespaces/{namespace}/pods/{name}/log"];
    assert_eq!(log["get"]["operationId"], "readCoreV1NamespacedPodLog");
    assert_eq!(log["get"]["x-kubernetes-action"], "get");
    assert_eq!(
        log["get"]["responses"]["200"]["schema"],
        json!({"type": "string"})
    );
    assert_eq!(log["get"]["produces"][0], "text/plain");
    let exec = &paths["/api/v1/namespaces/{namespace}/pods/{name}/exec"];
    for (method, id) in [
        ("get", "connectCoreV1GetNamespacedPodExec"),
        ("post", "connectCoreV1PostNamespacedPodExec"),
    ] {
        assert_eq!(exec[method]["operationId"], id);
        assert_eq!(exec[method]["x-kubernetes-action"], "connect");
        assert_eq!(
            exec[method]["x-kubernetes-group-version-kind"],
            gvk("", "v1", "PodExecOptions")
        );
        let params: Vec<&str> = exec[method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(
            params,
            ["command", "container", "stderr", "stdin", "stdout", "tty"]
        );
    }
    assert!(paths.contains_key("/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"));
    assert_eq!(
        paths["/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"]["get"]["tags"][0],
        "coordination_v1"
    );
}

#[test]
fn v3_index_lists_every_group_version_with_its_hash() {
    let api = built();
    let index = parse(&api.v3_index());
    let paths = index["paths"].as_object().unwrap();
    let keys: Vec<&str> = paths.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "api/v1",
            "apis/apps/v1",
            "apis/batch/v1",
            "apis/coordination.k8s.io/v1",
            "apis/discovery.k8s.io/v1"
        ]
    );
    for (path, entry) in paths {
        let hash = api.v3_hash(path).unwrap();
        assert_eq!(
            entry["serverRelativeURL"],
            format!("/openapi/v3/{path}?hash={hash}")
        );
        assert!(api.v3_document(path).is_some());
    }
    assert!(api.v3_document("apis/policy/v1").is_none());
    assert_eq!(
        api.v3_document("/apis/apps/v1/"),
        api.v3_document("apis/apps/v1")
    );
}

#[test]
fn v3_documents_are_self_contained() {
    let api = built();
    for path in api.v3_paths() {
        let doc = parse(&api.v3_document(path).unwrap());
        assert_eq!(doc["openapi"], "3.0.0", "{path}");
        assert!(doc["info"]["title"].is_string());
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut all = BTreeSet::new();
        refs(&doc, &mut all);
        for r in &all {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{path}: ref {r} not into components"));
            assert!(schemas.contains_key(name), "{path}: dangling ref {r}");
        }
        // OpenAPI 3.0 ignores siblings of $ref; descriptions must travel through allOf.
        fn no_ref_siblings(v: &Value, path: &str) {
            match v {
                Value::Object(m) => {
                    if m.get("$ref").is_some_and(Value::is_string) {
                        assert_eq!(m.len(), 1, "{path}: $ref with siblings: {v}");
                    }
                    m.values().for_each(|v| no_ref_siblings(v, path));
                }
                Value::Array(a) => a.iter().for_each(|v| no_ref_siblings(v, path)),
                _ => {}
            }
        }
        no_ref_siblings(&doc, path);

        // kubectl decides on server-side field validation from the PATCH operations.
        for (p, item) in doc["paths"].as_object().unwrap() {
            if let Some(patch) = item.get("patch") {
                assert!(patch["x-kubernetes-group-version-kind"].is_object(), "{p}");
                let has = patch["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x["name"] == "fieldValidation");
                assert!(has, "{p}: PATCH without fieldValidation");
                assert!(
                    patch["requestBody"]["content"]["application/apply-patch+yaml"].is_object()
                );
            }
        }
    }
    let core = parse(&api.v3_document("api/v1").unwrap());
    let schemas = core["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("io.k8s.api.core.v1.Pod"));
    assert!(schemas.contains_key("io.k8s.api.core.v1.ServiceList"));
    assert!(!schemas.contains_key("io.k8s.api.apps.v1.Deployment"));
    let apps = parse(&api.v3_document("apis/apps/v1").unwrap());
    assert!(apps["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"].is_object());
}

/// Follows a dotted field path the way kubectl's explain template does (properties, through
/// `$ref`, `allOf` and array `items`) and returns the last field's schema.
fn explain<'a>(doc: &'a Value, group: &str, kind: &str, fields: &[&str]) -> &'a Value {
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    let want = gvk(group, "v1", kind);
    let mut schema = schemas
        .values()
        .find(|s| has_gvk(s, &want))
        .unwrap_or_else(|| panic!("no schema with GVK {want}"));
    let resolve = |s: &'a Value| -> &'a Value {
        let mut s = s;
        loop {
            if let Some(r) = s["$ref"].as_str() {
                s = &schemas[r.strip_prefix("#/components/schemas/").unwrap()];
            } else if s.get("properties").is_none()
                && let Some(first) = s["allOf"].get(0)
            {
                s = first;
            } else if let Some(items) = s.get("items") {
                s = items;
            } else {
                return s;
            }
        }
    };
    for f in fields {
        let resolved = resolve(schema);
        schema = resolved["properties"]
            .get(f)
            .unwrap_or_else(|| panic!("{kind} has no field {f}"));
    }
    schema
}

#[test]
fn v3_supports_kubectl_explain_paths() {
    let api = built();
    let core = parse(&api.v3_document("api/v1").unwrap());
    let apps = parse(&api.v3_document("apis/apps/v1").unwrap());

    // kubectl explain finds the kind through the resource's list operation.
    assert_eq!(
        core["paths"]["/api/v1/namespaces/{namespace}/pods"]["get"]["x-kubernetes-group-version-kind"],
        gvk("", "v1", "Pod")
    );
    assert_eq!(
        core["paths"]["/api/v1/namespaces/{namespace}/services"]["get"]["x-kubernetes-group-version-kind"],
        gvk("", "v1", "Service")
    );

    let containers = explain(&core, "", "Pod", &["spec", "containers"]);
    assert!(
        containers["description"]
            .as_str()
            .unwrap()
            .contains("containers")
    );
    assert_eq!(containers["type"], "array");
    let image = explain(&core, "", "Pod", &["spec", "containers", "image"]);
    assert_eq!(image["type"], "string");
    assert!(image["description"].as_str().unwrap().contains("image"));

    let spec = explain(&core, "", "Pod", &["spec"]);
    assert!(
        spec["description"]
            .as_str()
            .unwrap()
            .contains("desired behavior")
    );
    assert_eq!(
        spec["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.api.core.v1.PodSpec"
    );

    let strategy = explain(&apps, "apps", "Deployment", &["spec", "strategy"]);
    assert!(strategy["description"].is_string());
    let rolling = explain(
        &apps,
        "apps",
        "Deployment",
        &["spec", "strategy", "rollingUpdate", "maxSurge"],
    );
    assert!(rolling["description"].is_string());

    let svc_ports = explain(&core, "", "Service", &["spec", "ports", "nodePort"]);
    assert_eq!(svc_ports["format"], "int32");
}

/// Minimal protobuf reader: the fields of one message as (number, wire type, payload).
fn fields(mut b: &[u8]) -> Vec<(u64, u8, Vec<u8>)> {
    fn varint(b: &mut &[u8]) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = b[0];
            *b = &b[1..];
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return v;
            }
            shift += 7;
        }
    }
    let mut out = Vec::new();
    while !b.is_empty() {
        let key = varint(&mut b);
        let wire = (key & 7) as u8;
        let payload = match wire {
            0 => varint(&mut b).to_le_bytes().to_vec(),
            1 => {
                let (p, rest) = b.split_at(8);
                b = rest;
                p.to_vec()
            }
            2 => {
                let len = varint(&mut b) as usize;
                let (p, rest) = b.split_at(len);
                b = rest;
                p.to_vec()
            }
            w => panic!("unexpected wire type {w}"),
        };
        out.push((key >> 3, wire, payload));
    }
    out
}

#[test]
fn v2_protobuf_is_a_gnostic_document() {
    let api = built();
    let json = parse(&api.v2());
    let top = fields(&api.v2_protobuf());
    let swagger = top.iter().find(|f| f.0 == 1).unwrap();
    assert_eq!(swagger.2, b"2.0");
    let definitions = &top.iter().find(|f| f.0 == 9).unwrap().2;
    let named = fields(definitions);
    assert_eq!(named.len(), json["definitions"].as_object().unwrap().len());
    // Find the Pod definition and check its GVK vendor extension.
    let pod = named
        .iter()
        .map(|f| fields(&f.2))
        .find(|n| n[0].2 == b"io.k8s.api.core.v1.Pod")
        .unwrap();
    let schema = fields(&pod[1].2);
    let ext = schema
        .iter()
        .filter(|f| f.0 == 31)
        .map(|f| fields(&f.2))
        .find(|n| n[0].2 == b"x-kubernetes-group-version-kind")
        .unwrap();
    let any = fields(&ext[1].2);
    let yaml: Value = serde_json::from_slice(&any[0].2).unwrap();
    assert_eq!(yaml, serde_json::json!([gvk("", "v1", "Pod")]));
    let paths = fields(&top.iter().find(|f| f.0 == 8).unwrap().2);
    assert_eq!(
        paths.iter().filter(|f| f.0 == 2).count(),
        json["paths"].as_object().unwrap().len()
    );
}

#[test]
fn accept_header_picks_the_v2_encoding() {
    let api = built();
    // What client-go sends.
    let (ct, body) = api.v2_for_accept(Some(
        "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
    ));
    assert_eq!(
        ct,
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    );
    assert_eq!(body, api.v2_protobuf());
    let (ct, body) = api.v2_for_accept(Some(V2_PROTOBUF_CONTENT_TYPE));
    assert_eq!(ct, V2_PROTOBUF_CONTENT_TYPE);
    assert_eq!(body, api.v2_protobuf());
    let (ct, body) = api.v2_for_accept(Some("application/json"));
    assert_eq!(ct, "application/json");
    assert_eq!(body, api.v2());
    assert_eq!(api.v2_for_accept(None).0, "application/json");
}

#[test]
fn inline_schemas_are_named_after_their_kind() {
    fn inline(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <coordination::v1::Lease as schemars::JsonSchema>::json_schema(g)
    }
    let api = OpenApi::build(&[OpenApiResource {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        namespaced: true,
        subresources: Vec::new(),
        schema: inline,
    }]);
    let doc = parse(&api.v2());
    let lease = &doc["definitions"]["io.k8s.api.coordination.v1.Lease"];
    assert!(has_gvk(lease, &gvk("coordination.k8s.io", "v1", "Lease")));
    assert!(doc["definitions"]["io.k8s.api.coordination.v1.LeaseList"].is_object());
}

#[test]
fn content_hash_is_stable_and_sensitive() {
    assert_eq!(content_hash(b"abc"), content_hash(b"abc"));
    assert_ne!(content_hash(b"abc"), content_hash(b"abd"));
    assert_eq!(content_hash(b"").len(), 32);
}
