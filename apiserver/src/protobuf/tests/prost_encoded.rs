//! Objects encoded by an independent encoder — prost, through the k8s-pb bindings — decoded
//! and compared with the JSON Go would write for them. The expected JSON is written out by
//! hand from upstream's struct tags (pointer zeros kept, `omitempty` zeros dropped, inline
//! structs flattened).

use prost::Message as _;
use serde_json::{Value, json};

use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::coordination::v1 as coordination;
use k8s_pb::api::core::v1 as core;
use k8s_pb::api::discovery::v1 as discovery;
use k8s_pb::api::policy::v1 as policy;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::Unknown;
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;

use super::super::decode_body;
use super::frame;

fn decode<M: prost::Message>(api_version: &str, kind: &str, m: &M) -> Value {
    decode_body(&frame(api_version, kind, &m.encode_to_vec()))
        .unwrap_or_else(|e| panic!("{kind}: {e}"))
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn quantity(v: &str) -> Quantity {
    Quantity { string: s(v) }
}

fn int_or_string_int(v: i32) -> IntOrString {
    IntOrString {
        r#type: Some(0),
        int_val: Some(v),
        str_val: None,
    }
}

fn int_or_string_str(v: &str) -> IntOrString {
    IntOrString {
        r#type: Some(1),
        int_val: None,
        str_val: s(v),
    }
}

fn meta(name: &str) -> Option<meta::ObjectMeta> {
    Some(meta::ObjectMeta {
        name: s(name),
        ..Default::default()
    })
}

#[test]
fn pod_with_inline_structs_quantities_and_pointer_zeros() {
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: s("p"),
            namespace: s("default"),
            labels: [("x".to_string(), "y".to_string())].into(),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_700_000_000),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            volumes: vec![
                core::Volume {
                    name: s("scratch"),
                    volume_source: Some(core::VolumeSource {
                        empty_dir: Some(core::EmptyDirVolumeSource {
                            medium: None,
                            size_limit: Some(quantity("1Gi")),
                        }),
                        ..Default::default()
                    }),
                },
                core::Volume {
                    name: s("cfg"),
                    volume_source: Some(core::VolumeSource {
                        config_map: Some(core::ConfigMapVolumeSource {
                            local_object_reference: Some(core::LocalObjectReference {
                                name: s("cm"),
                            }),
                            default_mode: Some(0o644),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                },
            ],
            containers: vec![core::Container {
                name: s("c"),
                image: s("busybox"),
                args: vec!["sleep".into(), "10".into()],
                ports: vec![core::ContainerPort {
                    name: s("http"),
                    container_port: Some(8080),
                    protocol: s("TCP"),
                    ..Default::default()
                }],
                env: vec![
                    core::EnvVar {
                        name: s("A"),
                        value: s("B"),
                        value_from: None,
                    },
                    core::EnvVar {
                        name: s("K"),
                        value: None,
                        value_from: Some(core::EnvVarSource {
                            config_map_key_ref: Some(core::ConfigMapKeySelector {
                                local_object_reference: Some(core::LocalObjectReference {
                                    name: s("cm"),
                                }),
                                key: s("k"),
                                optional: Some(false),
                            }),
                            ..Default::default()
                        }),
                    },
                ],
                resources: Some(core::ResourceRequirements {
                    limits: [("cpu".to_string(), quantity("500m"))].into(),
                    requests: [("memory".to_string(), quantity("64Mi"))].into(),
                    ..Default::default()
                }),
                liveness_probe: Some(core::Probe {
                    handler: Some(core::ProbeHandler {
                        http_get: Some(core::HttpGetAction {
                            path: s("/healthz"),
                            port: Some(int_or_string_str("http")),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    // Plain omitempty int32: a zero is dropped.
                    period_seconds: Some(0),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            restart_policy: s("Never"),
            // *int64 and *bool: zeros are values and stay.
            termination_grace_period_seconds: Some(0),
            automount_service_account_token: Some(false),
            // Plain omitempty bool and string: zeros are dropped.
            host_network: Some(false),
            node_name: s(""),
            ..Default::default()
        }),
        status: None,
    };
    assert_eq!(
        decode("v1", "Pod", &pod),
        json!({
            "kind": "Pod",
            "apiVersion": "v1",
            "metadata": {
                "name": "p",
                "namespace": "default",
                "creationTimestamp": "2023-11-14T22:13:20Z",
                "labels": {"x": "y"}
            },
            "spec": {
                "volumes": [
                    {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
                    {"name": "cfg", "configMap": {"name": "cm", "defaultMode": 420}}
                ],
                "containers": [{
                    "name": "c",
                    "image": "busybox",
                    "args": ["sleep", "10"],
                    "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                    "env": [
                        {"name": "A", "value": "B"},
                        {"name": "K", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k", "optional": false}}}
                    ],
                    "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}}
                }],
                "restartPolicy": "Never",
                "terminationGracePeriodSeconds": 0,
                "automountServiceAccountToken": false
            }
        })
    );
}

#[test]
fn deployment_with_zero_replicas_and_rolling_update() {
    let d = apps::Deployment {
        metadata: meta("web"),
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            revision_history_limit: Some(0),
            min_ready_seconds: Some(0),
            paused: Some(false),
            selector: Some(meta::LabelSelector {
                match_labels: [("app".to_string(), "web".to_string())].into(),
                match_expressions: vec![meta::LabelSelectorRequirement {
                    key: s("tier"),
                    operator: s("In"),
                    values: vec!["a".into(), "b".into()],
                }],
            }),
            strategy: Some(apps::DeploymentStrategy {
                r#type: s("RollingUpdate"),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: Some(int_or_string_str("25%")),
                    max_surge: Some(int_or_string_int(1)),
                }),
            }),
            ..Default::default()
        }),
        status: Some(apps::DeploymentStatus::default()),
    };
    assert_eq!(
        decode("apps/v1", "Deployment", &d),
        json!({
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 0,
                "selector": {
                    "matchLabels": {"app": "web"},
                    "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]
                },
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}},
                "revisionHistoryLimit": 0
            },
            "status": {}
        })
    );
}

#[test]
fn lease_with_micro_times() {
    let lease = coordination::Lease {
        metadata: meta("leader"),
        spec: Some(coordination::LeaseSpec {
            holder_identity: s("node-1"),
            lease_duration_seconds: Some(15),
            acquire_time: Some(meta::MicroTime {
                seconds: Some(1_700_000_000),
                nanos: Some(123_456_789),
            }),
            renew_time: Some(meta::MicroTime {
                seconds: Some(1_700_000_010),
                nanos: Some(0),
            }),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode("coordination.k8s.io/v1", "Lease", &lease),
        json!({
            "kind": "Lease",
            "apiVersion": "coordination.k8s.io/v1",
            "metadata": {"name": "leader"},
            "spec": {
                "holderIdentity": "node-1",
                "leaseDurationSeconds": 15,
                "acquireTime": "2023-11-14T22:13:20.123456Z",
                "renewTime": "2023-11-14T22:13:30.000000Z",
                "leaseTransitions": 0
            }
        })
    );
}

#[test]
fn endpoint_slice_with_pointer_strings_and_bools() {
    let es = discovery::EndpointSlice {
        metadata: meta("web-abc"),
        address_type: s("IPv4"),
        endpoints: vec![discovery::Endpoint {
            addresses: vec!["10.0.0.1".into()],
            conditions: Some(discovery::EndpointConditions {
                ready: Some(true),
                serving: Some(false),
                terminating: None,
            }),
            target_ref: Some(core::ObjectReference {
                kind: s("Pod"),
                name: s("web-1"),
                ..Default::default()
            }),
            node_name: s("n1"),
            ..Default::default()
        }],
        ports: vec![discovery::EndpointPort {
            // *string: an empty name is a value.
            name: s(""),
            port: Some(80),
            protocol: s("TCP"),
            app_protocol: None,
        }],
    };
    assert_eq!(
        decode("discovery.k8s.io/v1", "EndpointSlice", &es),
        json!({
            "kind": "EndpointSlice",
            "apiVersion": "discovery.k8s.io/v1",
            "metadata": {"name": "web-abc"},
            "addressType": "IPv4",
            "endpoints": [{
                "addresses": ["10.0.0.1"],
                "conditions": {"ready": true, "serving": false},
                "targetRef": {"kind": "Pod", "name": "web-1"},
                "nodeName": "n1"
            }],
            "ports": [{"name": "", "protocol": "TCP", "port": 80}]
        })
    );
}

#[test]
fn secret_bytes_and_string_data() {
    let secret = core::Secret {
        metadata: meta("s"),
        immutable: Some(false),
        data: [("bin".to_string(), vec![0u8, 1, 0xfe, 0xff])].into(),
        string_data: [("plain".to_string(), "text".to_string())].into(),
        r#type: s("Opaque"),
    };
    assert_eq!(
        decode("v1", "Secret", &secret),
        json!({
            "kind": "Secret",
            "apiVersion": "v1",
            "metadata": {"name": "s"},
            "immutable": false,
            "data": {"bin": "AAH+/w=="},
            "stringData": {"plain": "text"},
            "type": "Opaque"
        })
    );
}

#[test]
fn delete_options_and_eviction() {
    let opts = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        preconditions: Some(meta::Preconditions {
            uid: s("u-1"),
            resource_version: None,
        }),
        propagation_policy: s("Foreground"),
        dry_run: vec!["All".into()],
        ..Default::default()
    };
    // DeleteOptions is accepted in any group-version.
    for av in ["v1", "apps/v1", "meta.k8s.io/v1"] {
        assert_eq!(
            decode(av, "DeleteOptions", &opts),
            json!({
                "kind": "DeleteOptions",
                "apiVersion": av,
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": "u-1"},
                "propagationPolicy": "Foreground",
                "dryRun": ["All"]
            })
        );
    }
    let ev = policy::Eviction {
        metadata: Some(meta::ObjectMeta {
            name: s("p"),
            namespace: s("ns"),
            ..Default::default()
        }),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(30),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode("policy/v1", "Eviction", &ev),
        json!({
            "kind": "Eviction",
            "apiVersion": "policy/v1",
            "metadata": {"name": "p", "namespace": "ns"},
            "deleteOptions": {"gracePeriodSeconds": 30}
        })
    );
}

#[test]
fn node_capacity_and_taints() {
    let node = core::Node {
        metadata: meta("n1"),
        spec: Some(core::NodeSpec {
            taints: vec![core::Taint {
                key: s("k"),
                value: s(""),
                effect: s("NoSchedule"),
                time_added: Some(meta::Time {
                    seconds: Some(0),
                    nanos: None,
                }),
            }],
            unschedulable: Some(true),
            ..Default::default()
        }),
        status: Some(core::NodeStatus {
            capacity: [
                ("cpu".to_string(), quantity("4")),
                ("pods".to_string(), Quantity { string: None }),
            ]
            .into(),
            ..Default::default()
        }),
    };
    assert_eq!(
        decode("v1", "Node", &node),
        json!({
            "kind": "Node",
            "apiVersion": "v1",
            "metadata": {"name": "n1"},
            "spec": {
                "unschedulable": true,
                "taints": [{"key": "k", "effect": "NoSchedule", "timeAdded": "1970-01-01T00:00:00Z"}]
            },
            // A Quantity with no string is the zero quantity, "0" in Go's JSON.
            "status": {"capacity": {"cpu": "4", "pods": "0"}}
        })
    );
}

#[test]
fn real_helm_update_agrees_with_prost() {
    // The captured helm PUT decoded by prost into k8s-pb's Secret: an independent reading of
    // the same real bytes, field by field.
    let body = include_bytes!("../testdata/helm-release-secret-update.pb");
    let unknown = Unknown::decode(&body[4..]).expect("prost reads the envelope");
    let secret = core::Secret::decode(unknown.raw()).expect("prost reads the Secret");
    let v = decode_body(body).unwrap();

    let m = secret.metadata.as_ref().unwrap();
    // Absent means empty: gogo sent "" for these plain omitempty strings.
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    assert_eq!(text(&v["metadata"]["name"]), m.name());
    assert_eq!(text(&v["metadata"]["namespace"]), m.namespace());
    assert_eq!(text(&v["metadata"]["uid"]), m.uid());
    assert_eq!(
        text(&v["metadata"]["resourceVersion"]),
        m.resource_version()
    );
    // gogo sent an empty Time; prost reads no seconds, Go's JSON (`omitzero`) writes nothing.
    assert_eq!(m.creation_timestamp.unwrap_or_default().seconds(), 0);
    assert!(v["metadata"].get("creationTimestamp").is_none());
    let labels: serde_json::Map<String, Value> = m
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    assert_eq!(v["metadata"]["labels"], Value::Object(labels));
    assert_eq!(v["metadata"]["labels"]["status"], "deployed");
    assert_eq!(v["type"], secret.r#type());
    use base64::Engine as _;
    let data: serde_json::Map<String, Value> = secret
        .data
        .iter()
        .map(|(k, b)| {
            (
                k.clone(),
                json!(base64::engine::general_purpose::STANDARD.encode(b)),
            )
        })
        .collect();
    assert_eq!(v["data"], Value::Object(data));
}
