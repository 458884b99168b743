//! Strategic merge patch, JSON patch and merge patch on realistic objects: the patches
//! `kubectl apply` (client-side) and `kubectl patch` send.

use serde_json::{Value, json};
use skiff_apimachinery::patch::{Gvk, PatchError, json_patch, merge_patch, strategic_merge_patch};

const DEPLOYMENT: Gvk<'static> = Gvk::new("apps", "v1", "Deployment");
const POD: Gvk<'static> = Gvk::new("", "v1", "Pod");
const SERVICE: Gvk<'static> = Gvk::new("", "v1", "Service");
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

fn smp(doc: &Value, patch: Value, gvk: Gvk<'_>) -> Value {
    strategic_merge_patch(doc, &patch, &gvk).expect("patch applies")
}

/// A live Deployment as the API server stores it after `kubectl apply` of nginx:1.14.2.
fn live_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "nginx",
            "namespace": "default",
            "labels": {"app": "nginx", "tier": "web"},
            "annotations": {
                LAST_APPLIED: "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\"}\n",
                "deployment.kubernetes.io/revision": "1"
            }
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "nginx"}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}
            },
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {
                    "containers": [
                        {
                            "name": "nginx",
                            "image": "nginx:1.14.2",
                            "ports": [{"containerPort": 80, "protocol": "TCP"}],
                            "env": [
                                {"name": "MODE", "value": "prod"},
                                {"name": "DEBUG", "value": "false"},
                                {"name": "REGION", "value": "eu"}
                            ],
                            "imagePullPolicy": "IfNotPresent"
                        },
                        {
                            "name": "sidecar",
                            "image": "busybox:1.36",
                            "imagePullPolicy": "IfNotPresent"
                        }
                    ],
                    "restartPolicy": "Always",
                    "tolerations": [{"key": "a", "operator": "Exists"}]
                }
            }
        },
        "status": {"replicas": 3}
    })
}

#[test]
fn kubectl_apply_image_change_with_set_element_order() {
    // `kubectl apply` after changing nginx's image: the three-way patch carries the new
    // last-applied annotation and $setElementOrder for the merged container list.
    let patch = json!({
        "metadata": {"annotations": {LAST_APPLIED: "{\"new\":true}\n"}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
            "containers": [{"image": "nginx:1.16.1", "name": "nginx"}]
        }}}
    });
    let mut expected = live_deployment();
    expected["metadata"]["annotations"][LAST_APPLIED] = json!("{\"new\":true}\n");
    expected["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.16.1");
    assert_eq!(smp(&live_deployment(), patch, DEPLOYMENT), expected);
}

#[test]
fn kubectl_apply_removes_env_var_label_and_replicas() {
    // The config dropped env DEBUG, label tier and replicas.
    let patch = json!({
        "metadata": {
            "annotations": {LAST_APPLIED: "{}\n"},
            "labels": {"tier": null}
        },
        "spec": {
            "replicas": null,
            "template": {"spec": {
                "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
                "containers": [{
                    "$setElementOrder/env": [{"name": "MODE"}, {"name": "REGION"}],
                    "env": [{"$patch": "delete", "name": "DEBUG"}],
                    "name": "nginx"
                }]
            }}
        }
    });
    let mut expected = live_deployment();
    expected["metadata"]["annotations"][LAST_APPLIED] = json!("{}\n");
    expected["metadata"]["labels"] = json!({"app": "nginx"});
    expected["spec"].as_object_mut().unwrap().remove("replicas");
    expected["spec"]["template"]["spec"]["containers"][0]["env"] = json!([
        {"name": "MODE", "value": "prod"},
        {"name": "REGION", "value": "eu"}
    ]);
    assert_eq!(smp(&live_deployment(), patch, DEPLOYMENT), expected);
}

#[test]
fn set_element_order_reorders_and_adds() {
    // The config reordered the containers and added one between them.
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "log"}, {"name": "nginx"}],
        "containers": [{"name": "log", "image": "fluentbit:3"}]
    }}}});
    let result = smp(&live_deployment(), patch, DEPLOYMENT);
    let names: Vec<&str> = result["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sidecar", "log", "nginx"]);
    assert_eq!(
        result["spec"]["template"]["spec"]["containers"][1],
        json!({"name": "log", "image": "fluentbit:3"})
    );
}

#[test]
fn set_element_order_that_contradicts_the_patch_is_rejected() {
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "nginx"}, {"name": "sidecar"}],
        "containers": [{"name": "sidecar", "image": "x"}, {"name": "nginx", "image": "y"}]
    }}}});
    let err = strategic_merge_patch(&live_deployment(), &patch, &DEPLOYMENT).unwrap_err();
    assert!(matches!(err, PatchError::InvalidDirective { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "invalid strategic merge patch directive at spec.template.spec.containers: \
         item \"nginx\" of the patch list is missing from $setElementOrder, or out of its order"
    );
}

/// The Deployment of the "Update API Objects in Place Using kubectl patch" task.
fn patch_demo() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "patch-demo"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {
                    "containers": [{"name": "patch-demo-ctr", "image": "nginx"}],
                    "tolerations": [{"effect": "NoSchedule", "key": "dedicated", "value": "test-team"}]
                }
            }
        }
    })
}

#[test]
fn kubectl_patch_adds_a_container_in_front() {
    let patch = json!({"spec": {"template": {"spec": {
        "containers": [{"name": "patch-demo-ctr-2", "image": "redis"}]
    }}}});
    let mut expected = patch_demo();
    expected["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "patch-demo-ctr-2", "image": "redis"},
        {"name": "patch-demo-ctr", "image": "nginx"}
    ]);
    assert_eq!(smp(&patch_demo(), patch, DEPLOYMENT), expected);
}

#[test]
fn kubectl_patch_replaces_tolerations_which_have_no_merge_key() {
    let patch = json!({"spec": {"template": {"spec": {
        "tolerations": [{"effect": "NoSchedule", "key": "disktype", "value": "ssd"}]
    }}}});
    let mut expected = patch_demo();
    expected["spec"]["template"]["spec"]["tolerations"] =
        json!([{"effect": "NoSchedule", "key": "disktype", "value": "ssd"}]);
    assert_eq!(smp(&patch_demo(), patch, DEPLOYMENT), expected);
}

#[test]
fn kubectl_patch_retain_keys_clears_rolling_update() {
    // From the docs: switch the strategy to Recreate, clearing rollingUpdate.
    let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
    let result = smp(&live_deployment(), patch, DEPLOYMENT);
    assert_eq!(result["spec"]["strategy"], json!({"type": "Recreate"}));
    let mut expected = live_deployment();
    expected["spec"]["strategy"] = json!({"type": "Recreate"});
    assert_eq!(result, expected);
}

#[test]
fn retain_keys_must_list_every_field_the_patch_sets() {
    let patch = json!({"spec": {"strategy": {
        "$retainKeys": ["type"],
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1}
    }}});
    let err = strategic_merge_patch(&live_deployment(), &patch, &DEPLOYMENT).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid strategic merge patch directive at spec.strategy: \
         the patch sets \"rollingUpdate\", which is not listed in $retainKeys"
    );
}

#[test]
fn patch_delete_removes_a_list_item_by_merge_key() {
    let patch = json!({"spec": {"template": {"spec": {
        "containers": [{"name": "sidecar", "$patch": "delete"}]
    }}}});
    let mut expected = live_deployment();
    expected["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .remove(1);
    assert_eq!(smp(&live_deployment(), patch, DEPLOYMENT), expected);
}

#[test]
fn patch_replace_in_a_list_replaces_the_list() {
    let patch = json!({"spec": {"template": {"spec": {
        "containers": [{"name": "only", "image": "busybox"}, {"$patch": "replace"}]
    }}}});
    let result = smp(&live_deployment(), patch, DEPLOYMENT);
    assert_eq!(
        result["spec"]["template"]["spec"]["containers"],
        json!([{"name": "only", "image": "busybox"}])
    );
}

#[test]
fn patch_replace_in_a_map_replaces_the_map() {
    let patch = json!({"metadata": {"labels": {"$patch": "replace", "app": "web"}}});
    let result = smp(&live_deployment(), patch, DEPLOYMENT);
    assert_eq!(result["metadata"]["labels"], json!({"app": "web"}));
}

#[test]
fn patch_delete_in_a_map_empties_it() {
    let patch = json!({"spec": {"selector": {"$patch": "delete"}}});
    let result = smp(&live_deployment(), patch, DEPLOYMENT);
    assert_eq!(result["spec"]["selector"], json!({}));
}

#[test]
fn merge_by_key_recurses_into_nested_lists() {
    // Add a port and change an env var of one container; container ports merge by
    // containerPort, env by name.
    let patch = json!({"spec": {"template": {"spec": {"containers": [{
        "name": "nginx",
        "ports": [{"containerPort": 443, "protocol": "TCP"}],
        "env": [{"name": "MODE", "value": "dev"}, {"name": "REGION", "value": null}]
    }]}}}});
    let result = smp(&live_deployment(), patch, DEPLOYMENT);
    let nginx = &result["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        nginx["ports"],
        json!([
            {"containerPort": 443, "protocol": "TCP"},
            {"containerPort": 80, "protocol": "TCP"}
        ])
    );
    assert_eq!(
        nginx["env"],
        json!([
            {"name": "MODE", "value": "dev"},
            {"name": "DEBUG", "value": "false"},
            {"name": "REGION"}
        ])
    );
}

#[test]
fn service_ports_merge_by_port() {
    let service = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]
        }
    });
    let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}});
    let result = smp(&service, patch, SERVICE);
    assert_eq!(
        result["spec"]["ports"],
        json!([{"name": "http", "port": 80, "targetPort": 9090, "protocol": "TCP"}])
    );
}

#[test]
fn finalizers_merge_as_a_set_and_delete_from_primitive_list() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "finalizers": ["a.example.com/x", "b.example.com/y"]},
        "spec": {"containers": [{"name": "c", "image": "i"}]}
    });
    let added = smp(
        &pod,
        json!({"metadata": {"finalizers": ["b.example.com/y", "c.example.com/z"]}}),
        POD,
    );
    assert_eq!(
        added["metadata"]["finalizers"],
        json!(["a.example.com/x", "b.example.com/y", "c.example.com/z"])
    );
    let removed = smp(
        &added,
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a.example.com/x"]}}),
        POD,
    );
    assert_eq!(
        removed["metadata"]["finalizers"],
        json!(["b.example.com/y", "c.example.com/z"])
    );
}

#[test]
fn new_finalizer_goes_in_front_like_upstream() {
    let pod = json!({"metadata": {"name": "p", "finalizers": ["a", "b"]}});
    let result = smp(&pod, json!({"metadata": {"finalizers": ["c"]}}), POD);
    assert_eq!(result["metadata"]["finalizers"], json!(["c", "a", "b"]));
}

#[test]
fn owner_references_merge_by_uid() {
    let pod = json!({"metadata": {"name": "p", "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "1", "controller": true}
    ]}});
    let patch = json!({"metadata": {"ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "2"},
        {"uid": "1", "controller": false}
    ]}});
    let result = smp(&pod, patch, POD);
    assert_eq!(
        result["metadata"]["ownerReferences"],
        json!([
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm", "uid": "2"},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "1", "controller": false}
        ])
    );
}

#[test]
fn unknown_kinds_replace_lists() {
    let widget = Gvk::new("example.com", "v1", "Widget");
    let doc = json!({"spec": {"containers": [{"name": "a"}], "size": 1}});
    let result = smp(
        &doc,
        json!({"spec": {"containers": [{"name": "b"}]}}),
        widget,
    );
    assert_eq!(
        result,
        json!({"spec": {"containers": [{"name": "b"}], "size": 1}})
    );
}

#[test]
fn new_fields_are_stored_without_directives_or_nulls() {
    let doc = json!({"metadata": {"name": "p"}});
    let patch = json!({"spec": {
        "$setElementOrder/containers": [{"name": "a"}],
        "containers": [{"name": "a", "image": "x", "args": null}],
        "nodeSelector": {"$patch": "merge", "disk": "ssd", "zone": null}
    }});
    let result = smp(&doc, patch, POD);
    assert_eq!(
        result,
        json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "a", "image": "x"}],
            "nodeSelector": {"disk": "ssd"}
        }})
    );
}

#[test]
fn errors_name_the_field_and_the_fix() {
    let deploy = live_deployment();
    let cases = [
        (
            json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
            "an item of the list at spec.template.spec.containers has no \"name\" field, \
             which identifies items of this list",
        ),
        (
            json!({"spec": {"$patch": "remove"}}),
            "unknown strategic merge patch directive \"remove\" at spec",
        ),
        (
            json!({"spec": {"template": {"spec": {"containers": [{"name": "x", "$patch": "merge"}]}}}}),
            "invalid strategic merge patch directive at spec.template.spec.containers: \
             \"$patch: merge\" is not supported in a list; lists with a merge key already merge",
        ),
        (
            json!({"spec": {"template": {"spec": {"containers": ["nginx"]}}}}),
            "invalid list at spec.template.spec.containers: items merge by their \"name\" field, \
             but one of them is \"nginx\"",
        ),
        (
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": "a"}}),
            "invalid strategic merge patch directive at metadata.finalizers: \
             $deleteFromPrimitiveList/finalizers must be a list of values",
        ),
        (
            json!(["not", "a", "map"]),
            "the patch must be a JSON object",
        ),
    ];
    for (patch, message) in cases {
        let err = strategic_merge_patch(&deploy, &patch, &DEPLOYMENT).unwrap_err();
        assert_eq!(err.to_string(), message);
    }
}

#[test]
fn json_patch_applies_rfc6902_operations() {
    let doc = live_deployment();
    let patch = json!([
        {"op": "test", "path": "/spec/replicas", "value": 3},
        {"op": "replace", "path": "/spec/replicas", "value": 5},
        {"op": "add", "path": "/metadata/labels/track", "value": "stable"},
        {"op": "remove", "path": "/spec/template/spec/containers/1"}
    ]);
    let mut expected = live_deployment();
    expected["spec"]["replicas"] = json!(5);
    expected["metadata"]["labels"]["track"] = json!("stable");
    expected["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .remove(1);
    assert_eq!(json_patch(&doc, &patch).unwrap(), expected);
}

#[test]
fn json_patch_errors() {
    let doc = live_deployment();
    let failed = json_patch(
        &doc,
        &json!([{"op": "test", "path": "/spec/replicas", "value": 4}]),
    )
    .unwrap_err();
    assert!(matches!(failed, PatchError::JsonPatchFailed(_)));
    assert_eq!(
        failed.to_string(),
        "the JSON patch could not be applied: operation '/0' failed at path '/spec/replicas': value did not match"
    );
    let invalid = json_patch(&doc, &json!({"op": "add"})).unwrap_err();
    assert!(matches!(invalid, PatchError::InvalidJsonPatch(_)));
    assert!(invalid.to_string().starts_with("invalid JSON patch: "));
}

#[test]
fn merge_patch_replaces_lists_and_deletes_nulls() {
    let doc = live_deployment();
    let patch = json!({
        "metadata": {"labels": {"tier": null}},
        "spec": {"template": {"spec": {"containers": [{"name": "only", "image": "busybox"}]}}}
    });
    let mut expected = live_deployment();
    expected["metadata"]["labels"] = json!({"app": "nginx"});
    expected["spec"]["template"]["spec"]["containers"] =
        json!([{"name": "only", "image": "busybox"}]);
    assert_eq!(merge_patch(&doc, &patch).unwrap(), expected);
    assert!(matches!(
        merge_patch(&doc, &json!([1])),
        Err(PatchError::NotAnObject { what: "the patch" })
    ));
}

#[test]
fn kubectl_apply_switches_a_volume_source_with_retain_keys() {
    // Volumes have patchStrategy "merge,retainKeys": kubectl sends $retainKeys in the item
    // so that the old source (emptyDir) is cleared when the config switches to a configMap.
    let mut live = live_deployment();
    live["spec"]["template"]["spec"]["volumes"] = json!([
        {"name": "data", "emptyDir": {}},
        {"name": "cache", "emptyDir": {"medium": "Memory"}}
    ]);
    let patch = json!({"spec": {"template": {"spec": {
        "$setElementOrder/volumes": [{"name": "data"}, {"name": "cache"}],
        "volumes": [{
            "$retainKeys": ["configMap", "name"],
            "configMap": {"name": "settings"},
            "name": "data"
        }]
    }}}});
    let result = smp(&live, patch, DEPLOYMENT);
    assert_eq!(
        result["spec"]["template"]["spec"]["volumes"],
        json!([
            {"name": "data", "configMap": {"name": "settings"}},
            {"name": "cache", "emptyDir": {"medium": "Memory"}}
        ])
    );
}
