//! The generated table against the k8s-openapi schemas the server validates with: the JSON
//! names (which the generator took from Go's struct tags), the types, the nesting (proto
//! `k8s.io.X` ↔ definition `io.k8s.X`), and completeness. This is what goes stale when
//! k8s-openapi or k8s-pb is bumped without rerunning scripts/gen_protobuf_schema.py.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::{apps, autoscaling, batch, coordination, core, discovery, policy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::generate::SchemaSettings;
use serde_json::Value;

use super::super::table::{self, Kind, Message, Shape};

/// Properties k8s-openapi (Kubernetes 1.37) has that k8s-pb 0.9 (1.35) does not: fields added
/// upstream after 1.35. A client of that era never sends them, and a newer one's are skipped
/// as unknown fields (as an older upstream server would). When k8s-pb catches up, regenerate
/// the table and this list empties; a property missing for any other reason fails the test.
const NEWER_THAN_K8S_PB: &[&str] = &[
    "io.k8s.api.batch.v1.JobSpec.scheduling",
    "io.k8s.api.core.v1.ClusterTrustBundleProjection.user",
    "io.k8s.api.core.v1.ConfigMapVolumeSource.defaultUser",
    "io.k8s.api.core.v1.DownwardAPIVolumeFile.user",
    "io.k8s.api.core.v1.DownwardAPIVolumeSource.defaultUser",
    "io.k8s.api.core.v1.EmptyDirVolumeSource.mode",
    "io.k8s.api.core.v1.GRPCAction.mode",
    "io.k8s.api.core.v1.HTTPGetAction.protocol",
    "io.k8s.api.core.v1.KeyToPath.user",
    "io.k8s.api.core.v1.NodeSpec.podPreemptionPolicy",
    "io.k8s.api.core.v1.NodeSystemInfo.runningInUserNamespace",
    "io.k8s.api.core.v1.PodCertificateProjection.user",
    "io.k8s.api.core.v1.PodSpec.evictionResponders",
    "io.k8s.api.core.v1.PodSpec.schedulingGroup",
    "io.k8s.api.core.v1.PodStatus.nodeAllocatableResourceClaimStatuses",
    "io.k8s.api.core.v1.PodStatus.volumeHealth",
    "io.k8s.api.core.v1.ProjectedVolumeSource.defaultUser",
    "io.k8s.api.core.v1.ResourceHealth.message",
    "io.k8s.api.core.v1.SecretVolumeSource.defaultUser",
    "io.k8s.api.core.v1.ServiceAccountTokenProjection.user",
    "io.k8s.api.core.v1.VolumeMount.bindMountOptions",
    "io.k8s.api.core.v1.VolumeMountStatus.volumeStatus",
];

/// Table fields k8s-openapi does not have: 1.35 alpha fields dropped upstream later. They are
/// decoded (a 1.35 client may send them) and the server treats them as it would in JSON.
const NOT_IN_K8S_OPENAPI: &[&str] = &["k8s.io.api.core.v1.PodSpec.workloadRef"];

struct Checker {
    defs: BTreeMap<String, Value>,
    errors: Vec<String>,
    missing: BTreeSet<String>,
    seen: BTreeSet<&'static str>,
}

fn def_name(proto: &str) -> String {
    format!("io.k8s.{}", proto.strip_prefix("k8s.io.").unwrap_or(proto))
}

fn ref_name(schema: &Value) -> Option<&str> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return r.strip_prefix("#/definitions/");
    }
    // A $ref with siblings (a description) may come wrapped in allOf.
    match schema
        .get("allOf")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
    {
        Some([one]) => ref_name(one),
        _ => None,
    }
}

impl Checker {
    fn message(&mut self, msg: &'static Message) {
        if !self.seen.insert(msg.name) || msg.special.is_some() {
            return;
        }
        let name = def_name(msg.name);
        let Some(def) = self.defs.get(&name).cloned() else {
            self.errors
                .push(format!("{}: no definition {name}", msg.name));
            return;
        };
        let props = def
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let mut covered = BTreeSet::new();
        self.fields(msg, &props, &mut covered);
        for p in props.keys() {
            if !covered.contains(p.as_str()) && !["kind", "apiVersion"].contains(&p.as_str()) {
                self.missing.insert(format!("{name}.{p}"));
            }
        }
    }

    /// Check `msg`'s fields against `props`; inline messages check against the same object.
    fn fields(
        &mut self,
        msg: &'static Message,
        props: &serde_json::Map<String, Value>,
        covered: &mut BTreeSet<&'static str>,
    ) {
        for f in msg.fields {
            if f.skip {
                continue;
            }
            if f.inline {
                let Kind::Message(i) = f.kind else {
                    self.errors
                        .push(format!("{}.{}: inline non-message", msg.name, f.json));
                    continue;
                };
                if let Some(sub) = table::message(i) {
                    self.fields(sub, props, covered);
                }
                continue;
            }
            covered.insert(f.json);
            let Some(prop) = props.get(f.json) else {
                if NOT_IN_K8S_OPENAPI.contains(&format!("{}.{}", msg.name, f.json).as_str()) {
                    continue;
                }
                self.errors.push(format!(
                    "{}.{} is not a property of {}",
                    msg.name,
                    f.json,
                    def_name(msg.name)
                ));
                continue;
            };
            let at = format!("{}.{}", msg.name, f.json);
            let ty = prop.get("type").and_then(Value::as_str);
            match f.shape {
                Shape::Single => self.kind(&at, f.kind, prop),
                Shape::Repeated => match (ty, prop.get("items")) {
                    (Some("array"), Some(items)) => self.kind(&at, f.kind, items),
                    _ => self
                        .errors
                        .push(format!("{at}: repeated but schema is {prop}")),
                },
                Shape::Map => match (ty, prop.get("additionalProperties")) {
                    (Some("object"), Some(values)) => self.kind(&at, f.kind, values),
                    _ => self.errors.push(format!("{at}: map but schema is {prop}")),
                },
            }
        }
    }

    fn kind(&mut self, at: &str, kind: Kind, schema: &Value) {
        let ty = schema.get("type").and_then(Value::as_str);
        let format = schema.get("format").and_then(Value::as_str);
        let ok = match kind {
            Kind::Bool => ty == Some("boolean"),
            Kind::Int32 => ty == Some("integer") && format == Some("int32"),
            Kind::Int64 => ty == Some("integer") && format == Some("int64"),
            Kind::Double => ty == Some("number"),
            Kind::String => ty == Some("string") && format != Some("byte"),
            Kind::Bytes => ty == Some("string") && format == Some("byte"),
            Kind::Message(i) => {
                let Some(sub) = table::message(i) else {
                    self.errors.push(format!("{at}: bad message index {i}"));
                    return;
                };
                let want = def_name(sub.name);
                if ref_name(schema) != Some(want.as_str()) {
                    self.errors
                        .push(format!("{at}: table says {want}, schema says {schema}"));
                    return;
                }
                self.message(sub);
                true
            }
        };
        if !ok {
            self.errors
                .push(format!("{at}: table kind {kind:?}, schema {schema}"));
        }
    }
}

#[test]
fn schema() {
    let settings = SchemaSettings::draft07().with(|s| {
        s.definitions_path = "/definitions".into();
        s.meta_schema = None;
        s.transforms.clear();
    });
    let mut generator = settings.into_generator();
    // The served kinds by their k8s-openapi types; each must be a root of the table.
    let kinds = [
        (
            "v1",
            "Namespace",
            generator.subschema_for::<core::v1::Namespace>(),
        ),
        ("v1", "Pod", generator.subschema_for::<core::v1::Pod>()),
        ("v1", "Node", generator.subschema_for::<core::v1::Node>()),
        (
            "v1",
            "Service",
            generator.subschema_for::<core::v1::Service>(),
        ),
        (
            "v1",
            "Endpoints",
            generator.subschema_for::<core::v1::Endpoints>(),
        ),
        (
            "v1",
            "ConfigMap",
            generator.subschema_for::<core::v1::ConfigMap>(),
        ),
        (
            "v1",
            "Secret",
            generator.subschema_for::<core::v1::Secret>(),
        ),
        (
            "v1",
            "ServiceAccount",
            generator.subschema_for::<core::v1::ServiceAccount>(),
        ),
        ("v1", "Event", generator.subschema_for::<core::v1::Event>()),
        (
            "v1",
            "Binding",
            generator.subschema_for::<core::v1::Binding>(),
        ),
        (
            "apps/v1",
            "Deployment",
            generator.subschema_for::<apps::v1::Deployment>(),
        ),
        (
            "apps/v1",
            "ReplicaSet",
            generator.subschema_for::<apps::v1::ReplicaSet>(),
        ),
        (
            "apps/v1",
            "DaemonSet",
            generator.subschema_for::<apps::v1::DaemonSet>(),
        ),
        (
            "batch/v1",
            "Job",
            generator.subschema_for::<batch::v1::Job>(),
        ),
        (
            "coordination.k8s.io/v1",
            "Lease",
            generator.subschema_for::<coordination::v1::Lease>(),
        ),
        (
            "discovery.k8s.io/v1",
            "EndpointSlice",
            generator.subschema_for::<discovery::v1::EndpointSlice>(),
        ),
        (
            "autoscaling/v1",
            "Scale",
            generator.subschema_for::<autoscaling::v1::Scale>(),
        ),
        (
            "policy/v1",
            "Eviction",
            generator.subschema_for::<policy::v1::Eviction>(),
        ),
        (
            "v1",
            "DeleteOptions",
            generator.subschema_for::<meta::DeleteOptions>(),
        ),
    ];
    let mut checker = Checker {
        defs: generator.take_definitions(false).into_iter().collect(),
        errors: Vec::new(),
        missing: BTreeSet::new(),
        seen: BTreeSet::new(),
    };
    for (av, kind, schema) in &kinds {
        let Some(msg) = table::root(av, kind) else {
            checker
                .errors
                .push(format!("{av} {kind} is not in the table"));
            continue;
        };
        let want = def_name(msg.name);
        if ref_name(schema.as_value()) != Some(want.as_str()) {
            checker.errors.push(format!(
                "{av} {kind}: table root {want}, k8s-openapi {schema:?}"
            ));
            continue;
        }
        checker.message(msg);
    }
    assert_eq!(
        kinds.len(),
        table::roots().len(),
        "every table root is checked here"
    );
    assert!(
        checker.errors.is_empty(),
        "the table disagrees with k8s-openapi:\n{}",
        checker.errors.join("\n")
    );
    let expected: BTreeSet<String> = NEWER_THAN_K8S_PB.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        checker.missing, expected,
        "properties the table cannot decode changed; regenerate the table \
         (scripts/gen_protobuf_schema.py) or update NEWER_THAN_K8S_PB"
    );
}
