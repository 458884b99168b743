//! Server-side apply and managedFields tracking on realistic objects.

use serde_json::{Value, json};
use skiff_apimachinery::apply::{
    ApplyError, BEFORE_FIRST_APPLY, Conflict, apply, field_set, update_managed_fields,
    update_managed_fields_for_subresource,
};
use skiff_apimachinery::patch::Gvk;

const DEPLOYMENT: Gvk<'static> = Gvk::new("apps", "v1", "Deployment");
const CONFIG_MAP: Gvk<'static> = Gvk::new("", "v1", "ConfigMap");
const T1: &str = "2024-05-01T10:00:00Z";
const T2: &str = "2024-05-01T11:00:00Z";
const T3: &str = "2024-05-01T12:00:00Z";

/// What `kubectl apply --server-side` sends for the nginx Deployment of the docs.
fn nginx_config() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nginx", "labels": {"app": "nginx", "tier": "web"}},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{
                    "name": "nginx",
                    "image": "nginx:1.14.2",
                    "ports": [{"containerPort": 80}]
                }]}
            }
        }
    })
}

/// The field set of `nginx_config()`.
fn nginx_fields() -> Value {
    json!({
        "f:metadata": {"f:labels": {"f:app": {}, "f:tier": {}}},
        "f:spec": {
            "f:replicas": {},
            "f:selector": {},
            "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {
                    ".": {},
                    "f:image": {},
                    "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {
                        ".": {},
                        "f:containerPort": {}
                    }}
                }}}
            }
        }
    })
}

fn entry(manager: &str, operation: &str, time: &str, fields: Value) -> Value {
    json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": "apps/v1",
        "time": time,
        "fieldsType": "FieldsV1",
        "fieldsV1": fields
    })
}

fn with_managed_fields(mut object: Value, entries: Vec<Value>) -> Value {
    object["metadata"]["managedFields"] = Value::Array(entries);
    object
}

/// The nginx Deployment as stored after a first apply by "kubectl" at T1.
fn applied_once() -> Value {
    apply(None, &nginx_config(), "kubectl", false, &DEPLOYMENT, T1).expect("first apply")
}

fn conflicts(err: ApplyError) -> Vec<Conflict> {
    match err {
        ApplyError::Conflicts(c) => c,
        other => panic!("expected conflicts, got {other}"),
    }
}

#[test]
fn first_apply_sets_managed_fields() {
    let expected = with_managed_fields(
        nginx_config(),
        vec![entry("kubectl", "Apply", T1, nginx_fields())],
    );
    assert_eq!(applied_once(), expected);
}

#[test]
fn reapplying_the_same_config_changes_nothing() {
    let live = applied_once();
    let again = apply(
        Some(&live),
        &nginx_config(),
        "kubectl",
        false,
        &DEPLOYMENT,
        T2,
    )
    .unwrap();
    assert_eq!(again, live, "time is kept when nothing changed");
}

#[test]
fn reapply_without_a_label_removes_it() {
    let live = applied_once();
    let mut config = nginx_config();
    config["metadata"]["labels"] = json!({"app": "nginx"});
    let result = apply(Some(&live), &config, "kubectl", false, &DEPLOYMENT, T2).unwrap();

    let mut fields = nginx_fields();
    fields["f:metadata"]["f:labels"] = json!({"f:app": {}});
    let expected = with_managed_fields(config, vec![entry("kubectl", "Apply", T2, fields)]);
    assert_eq!(result, expected);
}

#[test]
fn reapply_without_any_label_removes_the_emptied_map() {
    let live = applied_once();
    let mut config = nginx_config();
    config["metadata"].as_object_mut().unwrap().remove("labels");
    let result = apply(Some(&live), &config, "kubectl", false, &DEPLOYMENT, T2).unwrap();
    let mut fields = nginx_fields();
    fields.as_object_mut().unwrap().remove("f:metadata");
    assert_eq!(
        result["metadata"],
        json!({"name": "nginx", "managedFields": [entry("kubectl", "Apply", T2, fields)]})
    );
}

#[test]
fn reapply_without_a_container_removes_it_but_keeps_unowned_ones() {
    // Two containers applied, plus one added by another writer (an Update).
    let mut config = nginx_config();
    config["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "sidecar", "image": "busybox"}));
    let live = apply(None, &config, "kubectl", false, &DEPLOYMENT, T1).unwrap();
    let mut injected = live.clone();
    injected["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "proxy", "image": "envoy"}));
    let live = update_managed_fields(Some(&live), injected.clone(), "injector", &DEPLOYMENT, T2);

    let result = apply(
        Some(&live),
        &nginx_config(),
        "kubectl",
        false,
        &DEPLOYMENT,
        T3,
    )
    .unwrap();
    let names: Vec<&str> = result["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["nginx", "proxy"]);
    assert_eq!(
        result["metadata"]["managedFields"],
        json!([
            entry("kubectl", "Apply", T3, nginx_fields()),
            entry(
                "injector",
                "Update",
                T2,
                json!({"f:spec": {"f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"proxy\"}": {".": {}, "f:image": {}, "f:name": {}}
                }}}}})
            )
        ])
    );
}

#[test]
fn two_appliers_conflict_on_the_fields_they_disagree_on() {
    let live = applied_once();
    let other = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nginx"},
        "spec": {
            "replicas": 5,
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.16.1"}]}}
        }
    });
    let err = apply(Some(&live), &other, "ci", false, &DEPLOYMENT, T2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"kubectl\":\n\
         - .spec.replicas\n\
         - .spec.template.spec.containers[name=\"nginx\"].image"
    );
    let found = conflicts(err);
    assert_eq!(
        found[1],
        Conflict {
            manager: "kubectl".into(),
            operation: "Apply".into(),
            api_version: "apps/v1".into(),
            subresource: String::new(),
            field_path: ".spec.template.spec.containers[name=\"nginx\"].image".into(),
        }
    );
    assert_eq!(found[0].manager_description(), "\"kubectl\"");
}

#[test]
fn force_takes_ownership() {
    let live = applied_once();
    let other = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nginx"},
        "spec": {"replicas": 5}
    });
    let result = apply(Some(&live), &other, "ci", true, &DEPLOYMENT, T2).unwrap();

    let mut expected = nginx_config();
    expected["spec"]["replicas"] = json!(5);
    let mut kubectl_fields = nginx_fields();
    kubectl_fields["f:spec"]
        .as_object_mut()
        .unwrap()
        .remove("f:replicas");
    let expected = with_managed_fields(
        expected,
        vec![
            entry("kubectl", "Apply", T1, kubectl_fields),
            entry("ci", "Apply", T2, json!({"f:spec": {"f:replicas": {}}})),
        ],
    );
    assert_eq!(result, expected);

    // kubectl re-applies its config: now it conflicts with "ci".
    let err = apply(
        Some(&result),
        &nginx_config(),
        "kubectl",
        false,
        &DEPLOYMENT,
        T3,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"ci\": .spec.replicas"
    );
}

#[test]
fn agreeing_appliers_share_ownership() {
    let live = applied_once();
    let same = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "nginx"},
        "spec": {"replicas": 3}
    });
    let shared = apply(Some(&live), &same, "ci", false, &DEPLOYMENT, T2).unwrap();
    assert_eq!(
        shared["metadata"]["managedFields"],
        json!([
            entry("kubectl", "Apply", T1, nginx_fields()),
            entry("ci", "Apply", T2, json!({"f:spec": {"f:replicas": {}}}))
        ])
    );

    // kubectl stops setting replicas: the field stays, since "ci" still owns it.
    let mut config = nginx_config();
    config["spec"].as_object_mut().unwrap().remove("replicas");
    let result = apply(Some(&shared), &config, "kubectl", false, &DEPLOYMENT, T3).unwrap();
    assert_eq!(result["spec"]["replicas"], json!(3));
    let mut kubectl_fields = nginx_fields();
    kubectl_fields["f:spec"]
        .as_object_mut()
        .unwrap()
        .remove("f:replicas");
    assert_eq!(
        result["metadata"]["managedFields"],
        json!([
            entry("kubectl", "Apply", T1, kubectl_fields),
            entry("ci", "Apply", T2, json!({"f:spec": {"f:replicas": {}}}))
        ]),
        "the object did not change, so kubectl's time stays"
    );
}

#[test]
fn scale_then_apply_conflicts_on_replicas() {
    let live = applied_once();
    // `kubectl scale --replicas=5` is an update by manager "kubectl".
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    let scaled = update_managed_fields(Some(&live), scaled.clone(), "kubectl", &DEPLOYMENT, T2);
    let mut kubectl_apply_fields = nginx_fields();
    kubectl_apply_fields["f:spec"]
        .as_object_mut()
        .unwrap()
        .remove("f:replicas");
    assert_eq!(
        scaled["metadata"]["managedFields"],
        json!([
            entry("kubectl", "Apply", T1, kubectl_apply_fields),
            entry(
                "kubectl",
                "Update",
                T2,
                json!({"f:spec": {"f:replicas": {}}})
            )
        ])
    );

    let err = apply(
        Some(&scaled),
        &nginx_config(),
        "kubectl",
        false,
        &DEPLOYMENT,
        T3,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl\" using apps/v1: .spec.replicas"
    );
    assert_eq!(
        conflicts(err),
        vec![Conflict {
            manager: "kubectl".into(),
            operation: "Update".into(),
            api_version: "apps/v1".into(),
            subresource: String::new(),
            field_path: ".spec.replicas".into(),
        }]
    );

    // Forced, the applier takes replicas back and the Update entry disappears.
    let forced = apply(
        Some(&scaled),
        &nginx_config(),
        "kubectl",
        true,
        &DEPLOYMENT,
        T3,
    )
    .unwrap();
    assert_eq!(
        forced,
        with_managed_fields(
            nginx_config(),
            vec![entry("kubectl", "Apply", T3, nginx_fields())]
        )
    );
}

#[test]
fn create_tracks_every_field_with_dot_markers_for_new_maps() {
    let config_map = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "settings",
            "namespace": "default",
            "uid": "0b6c7e9e",
            "resourceVersion": "1",
            "creationTimestamp": T1,
            "labels": {"app": "web"}
        },
        "data": {"mode": "fast", "level": "3"}
    });
    let created =
        update_managed_fields(None, config_map.clone(), "kubectl-create", &CONFIG_MAP, T1);
    let mut expected = config_map.clone();
    expected["metadata"]["managedFields"] = json!([{
        "manager": "kubectl-create",
        "operation": "Update",
        "apiVersion": "v1",
        "time": T1,
        "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:data": {".": {}, "f:level": {}, "f:mode": {}},
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}}
        }
    }]);
    assert_eq!(created, expected);

    // An edit by another manager moves the changed key and removes a deleted one.
    let mut edited = created.clone();
    edited["data"] = json!({"mode": "slow"});
    let edited = update_managed_fields(
        Some(&created),
        edited.clone(),
        "kubectl-edit",
        &CONFIG_MAP,
        T2,
    );
    assert_eq!(
        edited["metadata"]["managedFields"],
        json!([
            {
                "manager": "kubectl-create", "operation": "Update", "apiVersion": "v1",
                "time": T1, "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}}
            },
            {
                "manager": "kubectl-edit", "operation": "Update", "apiVersion": "v1",
                "time": T2, "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {"f:mode": {}}}
            }
        ])
    );
}

#[test]
fn status_is_neither_applied_nor_tracked_on_the_main_resource() {
    let mut config = nginx_config();
    config["status"] = json!({"replicas": 99});
    let created = apply(None, &config, "kubectl", false, &DEPLOYMENT, T1).unwrap();
    assert!(created.get("status").is_none());

    let mut with_status = created.clone();
    with_status["status"] = json!({"replicas": 3, "readyReplicas": 3});
    let updated = update_managed_fields(
        Some(&created),
        with_status.clone(),
        "kube-controller-manager",
        &DEPLOYMENT,
        T2,
    );
    assert_eq!(
        updated["metadata"]["managedFields"],
        created["metadata"]["managedFields"]
    );

    let via_status = update_managed_fields_for_subresource(
        Some(&created),
        with_status.clone(),
        "kube-controller-manager",
        "status",
        &DEPLOYMENT,
        T2,
    );
    assert_eq!(
        via_status["metadata"]["managedFields"][1],
        json!({
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "apps/v1",
            "time": T2,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:status": {"f:readyReplicas": {}, "f:replicas": {}}},
            "subresource": "status"
        })
    );

    // Applying again keeps the live status.
    let reapplied = apply(
        Some(&via_status),
        &config,
        "kubectl",
        false,
        &DEPLOYMENT,
        T3,
    )
    .unwrap();
    assert_eq!(
        reapplied["status"],
        json!({"replicas": 3, "readyReplicas": 3})
    );
}

#[test]
fn objects_without_managed_fields_are_owned_before_first_apply() {
    let mut live = nginx_config();
    live["spec"]["replicas"] = json!(1);
    let err = apply(
        Some(&live),
        &nginx_config(),
        "kubectl",
        false,
        &DEPLOYMENT,
        T1,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Apply failed with 1 conflict: conflict with \"{BEFORE_FIRST_APPLY}\" using apps/v1: .spec.replicas"
        )
    );

    let forced = apply(
        Some(&live),
        &nginx_config(),
        "kubectl",
        true,
        &DEPLOYMENT,
        T1,
    )
    .unwrap();
    let managed = forced["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(managed.len(), 2);
    assert_eq!(managed[0], entry("kubectl", "Apply", T1, nginx_fields()));
    assert_eq!(managed[1]["manager"], json!(BEFORE_FIRST_APPLY));
    assert!(managed[1]["fieldsV1"]["f:spec"].get("f:replicas").is_none());
    assert_eq!(
        managed[1]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]
            ["f:image"],
        json!({})
    );
}

#[test]
fn existing_objects_without_managed_fields_stay_untracked_on_update() {
    let live = nginx_config();
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(5);
    assert_eq!(
        update_managed_fields(Some(&live), scaled.clone(), "kubectl", &DEPLOYMENT, T1),
        scaled
    );
    // An empty list in the request resets tracking.
    let tracked = applied_once();
    let mut reset = tracked.clone();
    reset["metadata"]["managedFields"] = json!([]);
    assert_eq!(
        update_managed_fields(Some(&tracked), reset.clone(), "kubectl", &DEPLOYMENT, T2),
        nginx_config()
    );
}

#[test]
fn new_list_items_follow_their_predecessor_in_the_config() {
    let mut live_config = nginx_config();
    live_config["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "a", "image": "a"},
        {"name": "b", "image": "b"}
    ]);
    let live = apply(None, &live_config, "kubectl", false, &DEPLOYMENT, T1).unwrap();
    let other = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "nginx"},
        "spec": {"template": {"spec": {"containers": [
            {"name": "b", "image": "b"},
            {"name": "c", "image": "c"}
        ]}}}
    });
    let result = apply(Some(&live), &other, "ci", false, &DEPLOYMENT, T2).unwrap();
    assert_eq!(
        result["spec"]["template"]["spec"]["containers"],
        json!([
            {"name": "a", "image": "a"},
            {"name": "b", "image": "b"},
            {"name": "c", "image": "c"}
        ])
    );
}

#[test]
fn kubectl_keeps_the_last_applied_annotation_up_to_date() {
    let mut live = applied_once();
    live["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": "{\"old\":true}"
    });
    let mut config = nginx_config();
    config["spec"]["replicas"] = json!(4);
    let result = apply(Some(&live), &config, "kubectl", false, &DEPLOYMENT, T2).unwrap();
    let annotation =
        result["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .unwrap();
    assert_eq!(serde_json::from_str::<Value>(annotation).unwrap(), config);
}

#[test]
fn field_set_of_an_applied_object() {
    let set = field_set(&nginx_config(), &DEPLOYMENT).unwrap();
    assert_eq!(set.to_fields_v1(), nginx_fields());
    let paths: Vec<String> = set
        .paths()
        .iter()
        .map(|p| skiff_apimachinery::apply::path_string(p))
        .collect();
    assert_eq!(paths[0], ".metadata.labels.app");
    assert!(paths.contains(
        &".spec.template.spec.containers[name=\"nginx\"].ports[containerPort=80,protocol=\"TCP\"].containerPort"
            .to_string()
    ));
}

#[test]
fn invalid_configurations_are_rejected() {
    let mut wrong_kind = nginx_config();
    wrong_kind["kind"] = json!("StatefulSet");
    assert_eq!(
        apply(None, &wrong_kind, "kubectl", false, &DEPLOYMENT, T1)
            .unwrap_err()
            .to_string(),
        "the applied configuration has apiVersion \"apps/v1\" and kind \"StatefulSet\", \
         but this request is for apiVersion \"apps/v1\" and kind \"Deployment\""
    );

    let mut managed = nginx_config();
    managed["metadata"]["managedFields"] = json!([]);
    assert!(matches!(
        apply(None, &managed, "kubectl", false, &DEPLOYMENT, T1),
        Err(ApplyError::ManagedFieldsSet)
    ));

    let mut no_name = nginx_config();
    no_name["spec"]["template"]["spec"]["containers"][0]["env"] = json!([{"value": "x"}]);
    assert_eq!(
        apply(None, &no_name, "kubectl", false, &DEPLOYMENT, T1)
            .unwrap_err()
            .to_string(),
        "invalid value at .spec.template.spec.containers[name=\"nginx\"].env: \
         an item has no value for key field \"name\""
    );

    let mut duplicate = nginx_config();
    duplicate["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "nginx", "image": "a"},
        {"name": "nginx", "image": "b"}
    ]);
    assert_eq!(
        apply(None, &duplicate, "kubectl", false, &DEPLOYMENT, T1)
            .unwrap_err()
            .to_string(),
        "invalid value at .spec.template.spec.containers: duplicate entries for key [name=\"nginx\"]"
    );

    assert!(matches!(
        apply(None, &json!([1]), "kubectl", false, &DEPLOYMENT, T1),
        Err(ApplyError::NotAnObject)
    ));
}

/// kubectl's client-side → server-side apply migration hands the applier an entry that owns
/// `data` itself ("."); the next apply's config names only `data.greeting`, and the map must
/// stay.
#[test]
fn a_parent_owned_with_dot_stays_while_its_children_are_applied() {
    let live = with_managed_fields(
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "labels": {"app": "web"}},
            "data": {"greeting": "hi"}
        }),
        vec![{
            let mut e = entry(
                "kubectl",
                "Apply",
                T1,
                json!({"f:data": {".": {}, "f:greeting": {}},
                       "f:metadata": {"f:labels": {".": {}, "f:app": {}}}}),
            );
            e["apiVersion"] = json!("v1");
            e
        }],
    );
    let config = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "labels": {"app": "web"}},
        "data": {"greeting": "server-side"}
    });
    let out = apply(Some(&live), &config, "kubectl", true, &CONFIG_MAP, T2).expect("apply");
    assert_eq!(out["data"], json!({"greeting": "server-side"}));
    assert_eq!(out["metadata"]["labels"], json!({"app": "web"}));
}
