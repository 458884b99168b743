//! Pods as the scheduler's watch decodes them: everything but `metadata.managedFields`, which
//! nothing here reads and which was the costliest part of decoding a pod (every entry's
//! `fieldsV1` becomes a JSON tree). Upstream's scheduler strips them too (its informers'
//! `TransformStripManagedFields`); here they are skipped while parsing instead of after.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use serde::{Deserialize, Deserializer};

/// A `Pod` decoded without its managed fields. Boxed: a `Pod` is a large struct, and the
/// watcher's layers pass events by value (copying whole pods was a tenth of the scheduler's
/// CPU time).
#[derive(Clone, Debug, Default)]
pub struct WatchedPod(pub Box<Pod>);

/// `ObjectMeta` less `managedFields` (unknown keys are skipped unparsed into values).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct MetaWithoutManagedFields {
    name: Option<String>,
    generate_name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    deletion_grace_period_seconds: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
    owner_references: Option<Vec<OwnerReference>>,
    finalizers: Option<Vec<String>>,
    self_link: Option<String>,
}

impl<'de> Deserialize<'de> for WatchedPod {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            metadata: MetaWithoutManagedFields,
            spec: Option<PodSpec>,
            status: Option<PodStatus>,
        }
        let raw = Raw::deserialize(d)?;
        let m = raw.metadata;
        Ok(WatchedPod(Box::new(Pod {
            metadata: ObjectMeta {
                name: m.name,
                generate_name: m.generate_name,
                namespace: m.namespace,
                uid: m.uid,
                resource_version: m.resource_version,
                generation: m.generation,
                creation_timestamp: m.creation_timestamp,
                deletion_timestamp: m.deletion_timestamp,
                deletion_grace_period_seconds: m.deletion_grace_period_seconds,
                labels: m.labels,
                annotations: m.annotations,
                owner_references: m.owner_references,
                finalizers: m.finalizers,
                self_link: m.self_link,
                managed_fields: None,
            },
            spec: raw.spec,
            status: raw.status,
        })))
    }
}

impl kube::Resource for WatchedPod {
    type DynamicType = ();
    type Scope = k8s_openapi::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Pod".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "pods".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.0.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.0.metadata
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn decodes_everything_but_managed_fields() {
        let full = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "p", "generateName": "p-", "namespace": "ns", "uid": "u",
                "resourceVersion": "7", "generation": 2,
                "creationTimestamp": "2026-01-02T03:04:05Z",
                "deletionTimestamp": "2026-01-02T03:05:05Z", "deletionGracePeriodSeconds": 30,
                "labels": {"app": "web"}, "annotations": {"a": "b"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "rs", "uid": "r", "controller": true}],
                "finalizers": ["f"], "selfLink": "/x",
                "managedFields": [{"manager": "m", "operation": "Update", "apiVersion": "v1",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:nodeName": {}}}}],
            },
            "spec": {"nodeName": "n1", "schedulerName": "default-scheduler",
                "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Pending"},
        });
        let watched: WatchedPod = serde_json::from_value(full.clone()).expect("watched");
        let mut expected: Pod = serde_json::from_value(full).expect("pod");
        expected.metadata.managed_fields = None;
        assert_eq!(*watched.0, expected, "only managedFields is left out");
    }
}
