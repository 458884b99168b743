//! Collecting the schema definitions from schemars, naming them as upstream does and adding
//! the Kubernetes extensions that k8s-openapi's schemas lack.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::{autoscaling, core, policy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::OpenApiResource;

/// How `$ref`s point at definitions in the v2 document (and in our internal form).
pub(super) const V2_REF_PREFIX: &str = "#/definitions/";
/// How `$ref`s point at definitions in a v3 document.
pub(super) const V3_REF_PREFIX: &str = "#/components/schemas/";

pub(super) const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
pub(super) const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
pub(super) const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
pub(super) const API_RESOURCE_LIST: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.APIResourceList";
pub(super) const WATCH_EVENT: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent";
pub(super) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";
pub(super) const SCALE: &str = "io.k8s.api.autoscaling.v1.Scale";
pub(super) const BINDING: &str = "io.k8s.api.core.v1.Binding";
pub(super) const EVICTION: &str = "io.k8s.api.policy.v1.Eviction";

const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const LIST_METADATA_DESCRIPTION: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// Patch strategies of the list and struct fields of the served types, as upstream declares
/// them in Go struct tags (`patchStrategy`, `patchMergeKey`). k8s-openapi's schemas do not
/// carry them, but client-side `kubectl apply` reads them to compute strategic merge patches:
/// without them it would replace whole lists (every container) instead of merging by key.
const PATCH_STRATEGIES: &[(&str, &str, &str, Option<&str>)] = &[
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "finalizers",
        "merge",
        None,
    ),
    (
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "ownerReferences",
        "merge",
        Some("uid"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "containers",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "initContainers",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "ephemeralContainers",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "volumes",
        "merge,retainKeys",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "imagePullSecrets",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "hostAliases",
        "merge",
        Some("ip"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "schedulingGates",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.PodSpec",
        "resourceClaims",
        "merge,retainKeys",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "ports",
        "merge",
        Some("containerPort"),
    ),
    ("io.k8s.api.core.v1.Container", "env", "merge", Some("name")),
    (
        "io.k8s.api.core.v1.Container",
        "volumeMounts",
        "merge",
        Some("mountPath"),
    ),
    (
        "io.k8s.api.core.v1.Container",
        "volumeDevices",
        "merge",
        Some("devicePath"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "ports",
        "merge",
        Some("containerPort"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "env",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeMounts",
        "merge",
        Some("mountPath"),
    ),
    (
        "io.k8s.api.core.v1.EphemeralContainer",
        "volumeDevices",
        "merge",
        Some("devicePath"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "podIPs",
        "merge",
        Some("ip"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "hostIPs",
        "merge",
        Some("ip"),
    ),
    (
        "io.k8s.api.core.v1.PodStatus",
        "resourceClaimStatuses",
        "merge,retainKeys",
        Some("name"),
    ),
    (
        "io.k8s.api.core.v1.ServiceSpec",
        "ports",
        "merge",
        Some("port"),
    ),
    (
        "io.k8s.api.core.v1.ServiceStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", None),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.NodeStatus",
        "addresses",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.NamespaceStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.core.v1.ServiceAccount",
        "secrets",
        "merge",
        Some("name"),
    ),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        "strategy",
        "retainKeys",
        None,
    ),
    (
        "io.k8s.api.apps.v1.DeploymentStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.ReplicaSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.apps.v1.DaemonSetStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
    (
        "io.k8s.api.batch.v1.JobStatus",
        "conditions",
        "merge",
        Some("type"),
    ),
];

/// A group/version/kind as the `x-kubernetes-group-version-kind` extension spells it.
#[derive(Clone, PartialEq, Eq)]
pub(super) struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    pub fn new(group: &str, version: &str, kind: &str) -> Gvk {
        Gvk {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
        }
    }

    /// Exactly these three keys: kubectl's explain template finds a kind's schema by
    /// comparing this object for equality with the one on the resource's operations.
    pub fn to_json(&self) -> Value {
        json!({"group": self.group, "kind": self.kind, "version": self.version})
    }
}

/// Every definition, in v2 form (`$ref`s to `#/definitions/…`), with its extensions.
pub(super) struct SchemaSet {
    defs: BTreeMap<String, Value>,
    /// (group, version, kind) of each served resource → its definition name.
    kinds: BTreeMap<(String, String, String), String>,
}

impl SchemaSet {
    /// The definition name of a served resource's kind.
    pub fn kind_definition(&self, r: &OpenApiResource) -> String {
        self.kinds
            .get(&key(r))
            .cloned()
            .unwrap_or_else(|| fallback_name(r))
    }

    /// The definition name of a served resource's list kind.
    pub fn list_definition(&self, r: &OpenApiResource) -> String {
        format!("{}List", self.kind_definition(r))
    }

    /// All definitions for the v2 document.
    pub fn all_v2(&self) -> Map<String, Value> {
        self.defs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The given definitions and everything they reference, in v3 form.
    pub fn closure_v3(&self, roots: BTreeSet<String>) -> Map<String, Value> {
        let mut seen = BTreeSet::new();
        let mut queue: Vec<String> = roots.into_iter().collect();
        while let Some(name) = queue.pop() {
            if !seen.insert(name.clone()) {
                continue;
            }
            if let Some(def) = self.defs.get(&name) {
                let mut refs = BTreeSet::new();
                collect_refs(def, &mut refs);
                queue.extend(refs.into_iter().filter(|r| !seen.contains(r)));
            }
        }
        seen.into_iter()
            .filter_map(|name| {
                let def = self.defs.get(&name)?;
                Some((name, to_v3(def)))
            })
            .collect()
    }
}

fn key(r: &OpenApiResource) -> (String, String, String) {
    (
        r.group.to_string(),
        r.version.to_string(),
        r.kind.to_string(),
    )
}

/// Generates every definition the documents need.
pub(super) fn build(resources: &[OpenApiResource]) -> SchemaSet {
    // Refs are produced as `#/definitions/<name>` (the v2 form) and no transforms run: the
    // k8s-openapi schemas are already OpenAPI-shaped, and the v3 form is derived later.
    let settings = SchemaSettings::draft07().with(|s| {
        s.definitions_path = "/definitions".into();
        s.meta_schema = None;
        s.transforms.clear();
    });
    let mut generator = settings.into_generator();

    let mut kinds = BTreeMap::new();
    let mut inline = Vec::new();
    for r in resources {
        let schema = (r.schema)(&mut generator);
        let name = match ref_name(schema.as_value()) {
            Some(name) => name,
            None => {
                let name = fallback_name(r);
                inline.push((name.clone(), schema.to_value()));
                name
            }
        };
        kinds.insert(key(r), name);
    }

    // Types the operations refer to, whatever the resources are.
    generator.subschema_for::<meta::ListMeta>();
    generator.subschema_for::<meta::DeleteOptions>();
    generator.subschema_for::<meta::Status>();
    generator.subschema_for::<meta::Patch>();
    generator.subschema_for::<meta::APIResourceList>();
    generator.subschema_for::<meta::WatchEvent<core::v1::Pod>>();
    let has_sub = |name: &str| resources.iter().any(|r| r.subresources.contains(&name));
    if has_sub("scale") {
        generator.subschema_for::<autoscaling::v1::Scale>();
    }
    if has_sub("binding") {
        generator.subschema_for::<core::v1::Binding>();
    }
    if has_sub("eviction") {
        generator.subschema_for::<policy::v1::Eviction>();
    }

    let mut defs: BTreeMap<String, Value> = generator.take_definitions(false).into_iter().collect();
    for (name, schema) in inline {
        defs.entry(name).or_insert(schema);
    }

    let mut gvks: BTreeMap<String, Vec<Gvk>> = BTreeMap::new();
    let mut add_gvk = |def: &str, gvk: Gvk| {
        let list = gvks.entry(def.to_string()).or_default();
        if !list.contains(&gvk) {
            list.push(gvk);
        }
    };
    let mut resource_defs = BTreeSet::new();
    for r in resources {
        let Some(def) = kinds.get(&key(r)) else {
            continue;
        };
        let list_def = format!("{def}List");
        defs.entry(list_def.clone())
            .or_insert_with(|| list_schema(r.kind, r.plural, def));
        add_gvk(def, Gvk::new(r.group, r.version, r.kind));
        add_gvk(
            &list_def,
            Gvk::new(r.group, r.version, &format!("{}List", r.kind)),
        );
        resource_defs.insert(def.clone());
    }
    // Upstream registers these option/event kinds in every group-version it serves.
    let mut gvs: BTreeSet<(&str, &str)> = resources.iter().map(|r| (r.group, r.version)).collect();
    gvs.insert(("", "v1"));
    for (group, version) in &gvs {
        add_gvk(DELETE_OPTIONS, Gvk::new(group, version, "DeleteOptions"));
        add_gvk(WATCH_EVENT, Gvk::new(group, version, "WatchEvent"));
    }
    add_gvk(STATUS, Gvk::new("", "v1", "Status"));
    add_gvk(API_RESOURCE_LIST, Gvk::new("", "v1", "APIResourceList"));
    add_gvk(SCALE, Gvk::new("autoscaling", "v1", "Scale"));
    add_gvk(BINDING, Gvk::new("", "v1", "Binding"));
    add_gvk(EVICTION, Gvk::new("policy", "v1", "Eviction"));

    for (def, list) in gvks {
        if let Some(Value::Object(schema)) = defs.get_mut(&def) {
            let list: Vec<Value> = list.iter().map(Gvk::to_json).collect();
            schema.insert("x-kubernetes-group-version-kind".into(), Value::Array(list));
        }
    }

    // k8s-openapi marks `metadata` required on top-level kinds because its Rust field is not
    // an Option; upstream never does, and kubectl explain would print `-required-` for it.
    for def in &resource_defs {
        if let Some(Value::Object(schema)) = defs.get_mut(def) {
            drop_required(schema, "metadata");
        }
    }

    for (def, prop, strategy, merge_key) in PATCH_STRATEGIES {
        let Some(Value::Object(props)) = defs.get_mut(*def).and_then(|d| d.get_mut("properties"))
        else {
            continue;
        };
        if let Some(Value::Object(field)) = props.get_mut(*prop) {
            field.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
            if let Some(key) = merge_key {
                field.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            }
        }
    }

    SchemaSet { defs, kinds }
}

fn drop_required(schema: &mut Map<String, Value>, field: &str) {
    let empty = match schema.get_mut("required") {
        Some(Value::Array(required)) => {
            required.retain(|v| v.as_str() != Some(field));
            required.is_empty()
        }
        _ => false,
    };
    if empty {
        schema.remove("required");
    }
}

/// The list kind's schema, which k8s-openapi models as a generic `List<T>` without a schema.
fn list_schema(kind: &str, plural: &str, item_def: &str) -> Value {
    json!({
        "description": format!("{kind}List is a list of {kind} objects."),
        "type": "object",
        "properties": {
            "apiVersion": {"description": API_VERSION_DESCRIPTION, "type": "string"},
            "items": {
                "description": format!("List of {plural}."),
                "type": "array",
                "items": {"$ref": format!("{V2_REF_PREFIX}{item_def}")},
            },
            "kind": {"description": KIND_DESCRIPTION, "type": "string"},
            "metadata": {
                "$ref": format!("{V2_REF_PREFIX}{LIST_META}"),
                "description": LIST_METADATA_DESCRIPTION,
            },
        },
        "required": ["items"],
    })
}

/// Upstream-style name for a kind whose schema came back inline: Kubernetes groups map to
/// their Go package (`io.k8s.api.apps.v1`), other groups to reversed domain names as for
/// custom resources (`com.example.v1`).
fn fallback_name(r: &OpenApiResource) -> String {
    let package = if r.group.is_empty() {
        "io.k8s.api.core".to_string()
    } else if let Some(short) = r.group.strip_suffix(".k8s.io") {
        let first = short.split('.').next().unwrap_or(short);
        format!("io.k8s.api.{first}")
    } else if !r.group.contains('.') {
        format!("io.k8s.api.{}", r.group)
    } else {
        r.group.rsplit('.').collect::<Vec<_>>().join(".")
    };
    format!("{package}.{}.{}", r.version, r.kind)
}

/// The definition a `{"$ref": "#/definitions/<name>"}` schema points at.
fn ref_name(schema: &Value) -> Option<String> {
    let reference = schema.get("$ref")?.as_str()?;
    reference.strip_prefix(V2_REF_PREFIX).map(decode_pointer)
}

/// JSON-pointer unescaping of a ref's last segment.
fn decode_pointer(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// Adds the definition names `value` refers to.
pub(super) fn collect_refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref")
                && let Some(name) = r.strip_prefix(V2_REF_PREFIX)
            {
                out.insert(decode_pointer(name));
            }
            for v in map.values() {
                collect_refs(v, out);
            }
        }
        Value::Array(items) => {
            for v in items {
                collect_refs(v, out);
            }
        }
        _ => {}
    }
}

/// Converts a v2-form schema to v3: refs point into `components/schemas`, and a `$ref` with
/// sibling keywords (a field's own description) becomes `allOf: [{$ref}]` plus the siblings,
/// because OpenAPI 3.0 ignores siblings of `$ref`. kubectl explain then prints the field's
/// description followed by the referenced type's, as it does against upstream.
pub(super) fn to_v3(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                let target = Value::String(v2_ref_to_v3(r));
                if map.len() == 1 {
                    let mut only = Map::new();
                    only.insert("$ref".into(), target);
                    return Value::Object(only);
                }
                let mut out = Map::new();
                out.insert("allOf".into(), json!([{ "$ref": target }]));
                for (k, v) in map {
                    if k != "$ref" {
                        out.insert(k.clone(), to_v3(v));
                    }
                }
                return Value::Object(out);
            }
            Value::Object(map.iter().map(|(k, v)| (k.clone(), to_v3(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(to_v3).collect()),
        other => other.clone(),
    }
}

pub(super) fn v2_ref_to_v3(reference: &str) -> String {
    match reference.strip_prefix(V2_REF_PREFIX) {
        Some(name) => format!("{V3_REF_PREFIX}{name}"),
        None => reference.to_string(),
    }
}

/// `{"$ref": "#/definitions/<name>"}`.
pub(super) fn v2_ref(name: &str) -> Value {
    json!({ "$ref": format!("{V2_REF_PREFIX}{name}") })
}
