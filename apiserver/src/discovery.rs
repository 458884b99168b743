//! Discovery documents: the unaggregated `/api`, `/apis`, group and group-version documents,
//! and aggregated discovery (apidiscovery.k8s.io/v2), which kubectl asks for first.

use serde_json::{Value, json};

use crate::registry::{self, RESOURCES, Resource, Subresource};

pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The media type of aggregated discovery responses; kubectl checks it to tell an
/// aggregated answer from a plain one.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
pub const AGGREGATED_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which aggregated discovery version, if any, an Accept header asks for.
pub fn wants_aggregated(accept: &str) -> Option<&'static str> {
    for part in accept.split(',') {
        let p = part.replace(' ', "");
        if p.contains("as=APIGroupDiscoveryList") && p.contains("g=apidiscovery.k8s.io") {
            if p.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if p.contains("v=v2") {
                return Some("v2");
            }
        }
    }
    None
}

fn scale_kind() -> Value {
    json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
}

fn sub_kind(r: &Resource, sub: Subresource) -> (Value, &'static [&'static str]) {
    match sub {
        Subresource::Status => (
            json!({"group": r.group, "version": r.version, "kind": r.kind}),
            &["get", "patch", "update"],
        ),
        Subresource::Scale => (scale_kind(), &["get", "patch", "update"]),
        Subresource::Binding => (
            json!({"group": "", "version": "v1", "kind": "Binding"}),
            &["create"],
        ),
        Subresource::Finalize => (
            json!({"group": "", "version": "v1", "kind": "Namespace"}),
            &["update"],
        ),
        Subresource::Log => (
            json!({"group": "", "version": "v1", "kind": "Pod"}),
            &["get"],
        ),
        Subresource::Exec => (
            json!({"group": "", "version": "v1", "kind": "PodExecOptions"}),
            &["create", "get"],
        ),
    }
}

/// `/api`
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_doc(group: &str) -> Value {
    let versions: Vec<Value> = registry::versions_of(group)
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

/// `/apis`
pub fn groups() -> Value {
    let groups: Vec<Value> = registry::groups().iter().map(|g| group_doc(g)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`
pub fn group(group: &str) -> Value {
    let mut doc = group_doc(group);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    doc
}

/// `/api/v1` and `/apis/<group>/<version>`
pub fn resources(group: &str, version: &str) -> Value {
    let mut list = Vec::new();
    for r in RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": VERBS,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        list.push(entry);
        for sub in r.subresources {
            let (kind, verbs) = sub_kind(r, *sub);
            let mut e = json!({
                "name": format!("{}/{}", r.plural, sub.name()),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind["kind"],
                "verbs": verbs,
            });
            if *sub == Subresource::Scale {
                e["group"] = json!("autoscaling");
                e["version"] = json!("v1");
            }
            list.push(e);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list})
}

fn aggregated_group(group: &str, api_version: &str) -> Value {
    let versions: Vec<Value> = registry::versions_of(group)
        .iter()
        .map(|version| {
            let resources: Vec<Value> = RESOURCES
                .iter()
                .filter(|r| r.group == group && r.version == *version)
                .map(|r| {
                    let mut e = json!({
                        "resource": r.plural,
                        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": r.singular,
                        "verbs": VERBS,
                    });
                    if !r.short_names.is_empty() {
                        e["shortNames"] = json!(r.short_names);
                    }
                    if !r.categories.is_empty() {
                        e["categories"] = json!(r.categories);
                    }
                    if !r.subresources.is_empty() {
                        e["subresources"] = r
                            .subresources
                            .iter()
                            .map(|s| {
                                let (kind, verbs) = sub_kind(r, *s);
                                json!({"subresource": s.name(), "responseKind": kind, "verbs": verbs})
                            })
                            .collect();
                    }
                    e
                })
                .collect();
            json!({"version": version, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let _ = api_version;
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

/// Aggregated discovery for `/api` (core only) or `/apis` (every named group).
pub fn aggregated(core: bool, version: &str) -> Value {
    let api_version = format!("apidiscovery.k8s.io/{version}");
    let items: Vec<Value> = if core {
        vec![aggregated_group("", &api_version)]
    } else {
        registry::groups()
            .iter()
            .map(|g| aggregated_group(g, &api_version))
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": api_version,
        "metadata": {},
        "items": items,
    })
}
