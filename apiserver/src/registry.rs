//! The one table of served resources. Routing, discovery, OpenAPI, tables and storage keys
//! are all driven from it, so a new resource is one entry here plus (maybe) a strategy.

use std::fmt::Write;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::openapi::OpenApiResource;
use crate::strategy::{self, Strategy};

/// Subresources a resource can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    Status,
    Scale,
    Binding,
    /// Namespaces only: the namespace controller clears `spec.finalizers` through it.
    Finalize,
    /// Pods only: a container's log, streamed from the agent of the pod's node.
    Log,
    /// Pods only: a process in a container, its streams proxied to the agent (an upgrade).
    Exec,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Finalize => "finalize",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
        }
    }
}

/// Decoding a request body into the resource's type, and back, so that the stored object
/// holds exactly the fields the type knows (as upstream's decoding into Go structs does).
pub struct Decoded {
    pub object: Value,
    /// Paths (`spec.foo`) present in the input that the type does not know.
    pub unknown_fields: Vec<String>,
}

pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// Whether metadata.generation is kept (bumped on spec changes).
    pub tracks_generation: bool,
    pub decode: fn(Value) -> Result<Decoded, String>,
    /// The fast path for a JSON body: straight into the type and back to JSON, or `None`
    /// whenever [`Resource::decode`] has something to say (see [`decode_json_as`]).
    pub decode_json: fn(&[u8]) -> Option<Value>,
    pub schema: fn(&mut schemars::SchemaGenerator) -> schemars::Schema,
    pub strategy: &'static (dyn Strategy + Sync),
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The storage key prefix of every object of this resource (ends in `/`).
    pub fn key_prefix(&self) -> String {
        if self.group.is_empty() {
            format!("/registry/{}/", self.plural)
        } else {
            format!("/registry/{}/{}/", self.group, self.plural)
        }
    }

    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.key_prefix()),
            _ => format!("{}{name}", self.key_prefix()),
        }
    }

    pub fn openapi(&self) -> OpenApiResource {
        OpenApiResource {
            group: self.group,
            version: self.version,
            kind: self.kind,
            plural: self.plural,
            namespaced: self.namespaced,
            subresources: self.subresources.iter().map(|s| s.name()).collect(),
            schema: self.schema,
        }
    }
}

/// Decode through the typed k8s-openapi struct and back, noting the fields it dropped.
fn decode_as<T: DeserializeOwned + Serialize>(input: Value) -> Result<Decoded, String> {
    // Tracking the path costs an allocation per key, so it is only done again to explain a
    // failure; the decoding is the same.
    let typed = match T::deserialize(&input) {
        Ok(typed) => typed,
        Err(plain) => {
            let e = match serde_path_to_error::deserialize::<_, T>(&input) {
                Err(e) => e,
                Ok(_) => return Err(plain.to_string()),
            };
            let path = e.path().to_string();
            return Err(if path == "." {
                e.inner().to_string()
            } else {
                format!("{}: {}", path, e.inner())
            });
        }
    };
    let object = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut unknown_fields = Vec::new();
    collect_unknown(&mut String::new(), &input, &object, &mut unknown_fields);
    Ok(Decoded {
        object,
        unknown_fields,
    })
}

/// A JSON body decoded straight into `T` and encoded back, without building the body's own
/// `Value` first (a pod create spent ~6% of its CPU on that and on comparing the two).
/// `None` for anything the slow path ([`decode_as`] after parsing) must report or tolerate:
/// unknown fields, type errors, a mismatched apiVersion or kind, trailing data — the caller
/// then takes that path, so errors and warnings read exactly as before.
fn decode_json_as<T: DeserializeOwned + Serialize>(input: &[u8]) -> Option<Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(input);
    let mut unknown = false;
    let typed: T = serde_ignored::deserialize(&mut deserializer, |_| unknown = true).ok()?;
    deserializer.end().ok()?;
    if unknown {
        return None;
    }
    serde_json::to_value(&typed).ok()
}

/// `path` is the dotted path of `input`; it is restored before returning, so that the paths of
/// the (usually no) unknown fields are the only strings built.
fn collect_unknown(path: &mut String, input: &Value, known: &Value, out: &mut Vec<String>) {
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, value) in i {
                let len = path.len();
                if len > 0 {
                    path.push('.');
                }
                path.push_str(key);
                match k.get(key) {
                    Some(kv) => collect_unknown(path, value, kv, out),
                    // A null is how clients say "unset"; it is not an unknown field.
                    None if value.is_null() => {}
                    None => out.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (n, (iv, kv)) in i.iter().zip(k.iter()).enumerate() {
                let len = path.len();
                // Writing to a String cannot fail.
                let _ = write!(path, "[{n}]");
                collect_unknown(path, iv, kv, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

macro_rules! schema_of {
    ($t:ty) => {{
        fn schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
            g.subschema_for::<$t>()
        }
        schema
    }};
}

use k8s_openapi::api::{apps, batch, coordination, core, discovery};

const ALL: &[&str] = &["all"];

/// Every resource Skiff serves.
pub static RESOURCES: &[Resource] = &[
    Resource {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        subresources: &[Subresource::Status, Subresource::Finalize],
        tracks_generation: false,
        decode: decode_as::<core::v1::Namespace>,
        decode_json: decode_json_as::<core::v1::Namespace>,
        schema: schema_of!(core::v1::Namespace),
        strategy: &strategy::namespace::NamespaceStrategy,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        namespaced: true,
        short_names: &["po"],
        categories: ALL,
        subresources: &[
            Subresource::Status,
            Subresource::Binding,
            Subresource::Exec,
            Subresource::Log,
        ],
        tracks_generation: true,
        decode: decode_as::<core::v1::Pod>,
        decode_json: decode_json_as::<core::v1::Pod>,
        schema: schema_of!(core::v1::Pod),
        strategy: &strategy::pod::PodStrategy,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        subresources: &[Subresource::Status],
        tracks_generation: false,
        decode: decode_as::<core::v1::Node>,
        decode_json: decode_json_as::<core::v1::Node>,
        schema: schema_of!(core::v1::Node),
        strategy: &strategy::node::NodeStrategy,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        singular: "service",
        namespaced: true,
        short_names: &["svc"],
        categories: ALL,
        subresources: &[Subresource::Status],
        tracks_generation: false,
        decode: decode_as::<core::v1::Service>,
        decode_json: decode_json_as::<core::v1::Service>,
        schema: schema_of!(core::v1::Service),
        strategy: &strategy::service::ServiceStrategy,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Endpoints",
        plural: "endpoints",
        singular: "endpoints",
        namespaced: true,
        short_names: &["ep"],
        categories: &[],
        subresources: &[],
        tracks_generation: false,
        decode: decode_as::<core::v1::Endpoints>,
        decode_json: decode_json_as::<core::v1::Endpoints>,
        schema: schema_of!(core::v1::Endpoints),
        strategy: &strategy::Plain,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        subresources: &[],
        tracks_generation: false,
        decode: decode_as::<core::v1::ConfigMap>,
        decode_json: decode_json_as::<core::v1::ConfigMap>,
        schema: schema_of!(core::v1::ConfigMap),
        strategy: &strategy::config::ConfigMapStrategy,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        tracks_generation: false,
        decode: decode_as::<core::v1::Secret>,
        decode_json: decode_json_as::<core::v1::Secret>,
        schema: schema_of!(core::v1::Secret),
        strategy: &strategy::config::SecretStrategy,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        subresources: &[],
        tracks_generation: false,
        decode: decode_as::<core::v1::ServiceAccount>,
        decode_json: decode_json_as::<core::v1::ServiceAccount>,
        schema: schema_of!(core::v1::ServiceAccount),
        strategy: &strategy::Plain,
    },
    Resource {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
        tracks_generation: false,
        decode: decode_as::<core::v1::Event>,
        decode_json: decode_json_as::<core::v1::Event>,
        schema: schema_of!(core::v1::Event),
        strategy: &strategy::event::EventStrategy,
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: ALL,
        subresources: &[Subresource::Status, Subresource::Scale],
        tracks_generation: true,
        decode: decode_as::<apps::v1::Deployment>,
        decode_json: decode_json_as::<apps::v1::Deployment>,
        schema: schema_of!(apps::v1::Deployment),
        strategy: &strategy::workload::DeploymentStrategy,
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        namespaced: true,
        short_names: &["rs"],
        categories: ALL,
        subresources: &[Subresource::Status, Subresource::Scale],
        tracks_generation: true,
        decode: decode_as::<apps::v1::ReplicaSet>,
        decode_json: decode_json_as::<apps::v1::ReplicaSet>,
        schema: schema_of!(apps::v1::ReplicaSet),
        strategy: &strategy::workload::ReplicaSetStrategy,
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        plural: "daemonsets",
        singular: "daemonset",
        namespaced: true,
        short_names: &["ds"],
        categories: ALL,
        subresources: &[Subresource::Status],
        tracks_generation: true,
        decode: decode_as::<apps::v1::DaemonSet>,
        decode_json: decode_json_as::<apps::v1::DaemonSet>,
        schema: schema_of!(apps::v1::DaemonSet),
        strategy: &strategy::workload::DaemonSetStrategy,
    },
    Resource {
        group: "apps",
        version: "v1",
        kind: "ControllerRevision",
        plural: "controllerrevisions",
        singular: "controllerrevision",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        tracks_generation: false,
        decode: decode_as::<apps::v1::ControllerRevision>,
        decode_json: decode_json_as::<apps::v1::ControllerRevision>,
        schema: schema_of!(apps::v1::ControllerRevision),
        strategy: &strategy::workload::ControllerRevisionStrategy,
    },
    Resource {
        group: "batch",
        version: "v1",
        kind: "Job",
        plural: "jobs",
        singular: "job",
        namespaced: true,
        short_names: &[],
        categories: ALL,
        subresources: &[Subresource::Status],
        tracks_generation: true,
        decode: decode_as::<batch::v1::Job>,
        decode_json: decode_json_as::<batch::v1::Job>,
        schema: schema_of!(batch::v1::Job),
        strategy: &strategy::workload::JobStrategy,
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        tracks_generation: false,
        decode: decode_as::<coordination::v1::Lease>,
        decode_json: decode_json_as::<coordination::v1::Lease>,
        schema: schema_of!(coordination::v1::Lease),
        strategy: &strategy::Plain,
    },
    Resource {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        tracks_generation: false,
        decode: decode_as::<discovery::v1::EndpointSlice>,
        decode_json: decode_json_as::<discovery::v1::EndpointSlice>,
        schema: schema_of!(discovery::v1::EndpointSlice),
        strategy: &strategy::Plain,
    },
];

/// Find a resource by group, version and plural (or singular/short name for CLI lookups).
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Find a resource by group and kind.
pub fn by_kind(group: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.kind == kind)
}

/// The groups served under `/apis`, in a stable order.
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

pub fn versions_of(group: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group) {
        if !out.contains(&r.version) {
            out.push(r.version);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    /// The slow path: parse, then decode through the type.
    fn slow(body: &Value) -> Decoded {
        decode_as::<Pod>(body.clone()).unwrap_or_else(|e| panic!("slow path failed: {e}"))
    }

    #[test]
    fn the_json_fast_path_gives_what_the_slow_path_gives() {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"a": "b"}, "annotations": {}},
            "spec": {"containers": [{"name": "c", "image": "i",
                "resources": {"requests": {"cpu": "100m"}},
                "ports": [{"containerPort": 80}]}],
                "nodeSelector": {}, "tolerations": null},
        });
        let bytes = serde_json::to_vec(&pod).unwrap_or_default();
        assert_eq!(decode_json_as::<Pod>(&bytes), Some(slow(&pod).object));
        // No apiVersion and kind: both fill them in.
        let bare = json!({"metadata": {"name": "p"}, "spec": {"containers": []}});
        let bytes = serde_json::to_vec(&bare).unwrap_or_default();
        assert_eq!(decode_json_as::<Pod>(&bytes), Some(slow(&bare).object));
        // A repeated key: the last one wins on both paths.
        let repeated = br#"{"metadata": {"name": "p"}, "metadata": {"name": "q"}}"#;
        let parsed: Value = serde_json::from_slice(repeated).unwrap_or_default();
        assert_eq!(decode_json_as::<Pod>(repeated), Some(slow(&parsed).object));
    }

    #[test]
    fn the_json_fast_path_leaves_anything_to_report_to_the_slow_path() {
        for body in [
            // Unknown fields (the slow path warns or refuses, by fieldValidation).
            r#"{"metadata": {"name": "p"}, "spec": {"containers": [], "bogus": 1}}"#,
            // A mismatched kind or apiVersion (the slow path's message names both).
            r#"{"kind": "Service", "metadata": {"name": "p"}}"#,
            r#"{"apiVersion": "v2", "metadata": {"name": "p"}}"#,
            // Type errors, trailing data, not an object.
            r#"{"metadata": {"name": 5}}"#,
            r#"{"metadata": {"name": "p"}} x"#,
            r#"[1]"#,
        ] {
            assert_eq!(decode_json_as::<Pod>(body.as_bytes()), None, "{body}");
        }
    }
}
