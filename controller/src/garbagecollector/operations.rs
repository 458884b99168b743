//! The garbage collector's API calls (upstream's `operations.go` and `patch.go`): get, delete
//! and patch any object through the metadata API, guarded so that a race with another
//! writer fails instead of touching the wrong object — deletes carry `preconditions.uid`,
//! ownerReference patches carry the object's uid (the API server refuses to change it), and
//! finalizer patches its resourceVersion.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy,
};
use kube::core::PartialObjectMeta;
use serde_json::{Value, json};

use super::graph::ObjectReference;
use super::{GarbageCollector, GcError, NAME};

pub(crate) type Metadata = PartialObjectMeta<DynamicObject>;

/// client-go's `retry.DefaultBackoff` (10 ms × 5ⁿ, 4 steps) for finalizer removal conflicts.
const FINALIZER_RETRY_STEPS: u32 = 4;
const FINALIZER_RETRY_BASE: Duration = Duration::from_millis(10);

/// Which JSON merge patch stands in for a strategic merge patch the server cannot apply
/// (custom resources): upstream's `jsonMergePatchFunc`s.
#[derive(Debug, Clone)]
pub(crate) enum MergeFallback {
    /// `deleteOwnerRefJSONMergePatch`: the ownerReferences without these uids.
    DeleteOwnerRefs(Vec<String>),
    /// `unblockOwnerReferencesJSONMergePatch`: every ownerReference with
    /// `blockOwnerDeletion: false`.
    UnblockOwnerRefs,
}

pub(crate) fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl GarbageCollector {
    /// The metadata API for `kind` objects, in `namespace` when the kind is namespaced.
    pub(crate) fn api_for(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
    ) -> Result<Api<Metadata>, GcError> {
        let mapping = self
            .mapper()
            .mapping(api_version, kind)
            .cloned()
            .ok_or_else(|| GcError::RestMapping {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
            })?;
        Ok(if mapping.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &mapping.resource)
        } else {
            Api::all_with(self.client.clone(), &mapping.resource)
        })
    }

    fn api_of(&self, identity: &ObjectReference) -> Result<Api<Metadata>, GcError> {
        self.api_for(&identity.api_version, &identity.kind, &identity.namespace)
    }

    /// Upstream's `getObject`/`getMetadata`: the live object, None when it does not exist.
    pub(crate) async fn get_object(
        &self,
        identity: &ObjectReference,
    ) -> Result<Option<Metadata>, GcError> {
        self.api_of(identity)?
            .get_opt(&identity.name)
            .await
            .map_err(|source| GcError::api("getting", identity, source))
    }

    /// Upstream's `deleteObject`: deletes exactly this object (its uid as a precondition)
    /// with `policy`. Ok when it is already gone.
    pub(crate) async fn delete_object(
        &self,
        identity: &ObjectReference,
        policy: PropagationPolicy,
    ) -> Result<(), GcError> {
        let api = self.api_of(identity)?;
        let params = DeleteParams {
            propagation_policy: Some(policy.clone()),
            preconditions: Some(Preconditions {
                uid: Some(identity.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&identity.name, &params).await {
            Ok(_) => {
                tracing::info!(controller = NAME, object = %identity, ?policy, "deleting object");
                Ok(())
            }
            // Gone already: its monitor reports the deletion.
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(source) => Err(GcError::api("deleting", identity, source)),
        }
    }

    async fn patch_object(
        api: &Api<Metadata>,
        identity: &ObjectReference,
        patch: Patch<Value>,
    ) -> Result<(), kube::Error> {
        let params = PatchParams {
            field_manager: Some(NAME.into()),
            ..Default::default()
        };
        api.patch(&identity.name, &params, &patch).await.map(|_| ())
    }

    /// Upstream's `patch`: a strategic merge patch, or — where the server cannot apply one
    /// (415, custom resources) — the equivalent JSON merge patch built from the live object,
    /// guarded by its resourceVersion. A missing object is no error.
    pub(crate) async fn patch(
        &self,
        item: &ObjectReference,
        strategic: Value,
        fallback: MergeFallback,
    ) -> Result<(), GcError> {
        let api = self.api_of(item)?;
        match Self::patch_object(&api, item, Patch::Strategic(strategic)).await {
            Ok(()) => return Ok(()),
            Err(e) if is_status(&e, 404) => return Ok(()),
            Err(e) if is_status(&e, 415) => {}
            Err(source) => return Err(GcError::api("patching", item, source)),
        }
        let Some(live) = self.get_object(item).await? else {
            return Ok(());
        };
        if live.metadata.uid.as_deref() != Some(item.uid.as_str()) {
            return Ok(());
        }
        let refs = live.metadata.owner_references.unwrap_or_default();
        let refs: Vec<Value> = match &fallback {
            MergeFallback::DeleteOwnerRefs(uids) => refs
                .iter()
                .filter(|r| !uids.contains(&r.uid))
                .map(|r| json!(r))
                .collect(),
            MergeFallback::UnblockOwnerRefs => refs
                .iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.block_owner_deletion = Some(false);
                    json!(r)
                })
                .collect(),
        };
        let patch = json!({"metadata": {
            "resourceVersion": live.metadata.resource_version,
            "ownerReferences": refs,
        }});
        match Self::patch_object(&api, item, Patch::Merge(patch)).await {
            Ok(()) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(source) => Err(GcError::api("patching", item, source)),
        }
    }

    /// Upstream's `removeFinalizer`: takes `finalizer` off the live object (a merge patch of
    /// the remaining list, guarded by uid and resourceVersion), retrying conflicts briefly.
    pub(crate) async fn remove_finalizer(
        &self,
        owner: &ObjectReference,
        finalizer: &str,
    ) -> Result<(), GcError> {
        let api = self.api_of(owner)?;
        let mut attempt = 0;
        loop {
            let Some(live) = self.get_object(owner).await? else {
                return Ok(());
            };
            if live.metadata.uid.as_deref() != Some(owner.uid.as_str()) {
                // Another object of the same name: ours is gone.
                return Ok(());
            }
            let finalizers = live.metadata.finalizers.unwrap_or_default();
            if !finalizers.iter().any(|f| f == finalizer) {
                tracing::debug!(controller = NAME, object = %owner, finalizer,
                    "finalizer already removed");
                return Ok(());
            }
            let rest: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
            let patch = json!({"metadata": {
                "resourceVersion": live.metadata.resource_version,
                "uid": owner.uid,
                "finalizers": if rest.is_empty() { Value::Null } else { json!(rest) },
            }});
            match Self::patch_object(&api, owner, Patch::Merge(patch)).await {
                Ok(()) => {
                    tracing::info!(controller = NAME, object = %owner, finalizer, "removed finalizer");
                    return Ok(());
                }
                Err(e) if is_status(&e, 404) => return Ok(()),
                Err(e) if is_status(&e, 409) && attempt + 1 < FINALIZER_RETRY_STEPS => {
                    tokio::time::sleep(FINALIZER_RETRY_BASE * 5u32.pow(attempt)).await;
                    attempt += 1;
                }
                Err(source) => {
                    return Err(GcError::api("removing a finalizer from", owner, source));
                }
            }
        }
    }
}

/// Upstream's `GenerateDeleteOwnerRefStrategicMergeBytes`: drops the references to
/// `owner_uids`, failing if the object is no longer `dependent_uid`.
pub(crate) fn delete_owner_refs_patch(dependent_uid: &str, owner_uids: &[String]) -> Value {
    let refs: Vec<Value> = owner_uids
        .iter()
        .map(|uid| json!({"$patch": "delete", "uid": uid}))
        .collect();
    json!({"metadata": {"ownerReferences": refs, "uid": dependent_uid}})
}

/// Upstream's `unblockOwnerReferencesStrategicMergePatch`: the dependent's blocking references
/// with `blockOwnerDeletion: false`.
pub(crate) fn unblock_owner_refs_patch(dependent_uid: &str, owners: &[OwnerReference]) -> Value {
    let refs: Vec<Value> = owners
        .iter()
        .filter(|o| o.block_owner_deletion == Some(true))
        .map(|o| {
            let mut o = o.clone();
            o.block_owner_deletion = Some(false);
            json!(o)
        })
        .collect();
    json!({"metadata": {"ownerReferences": refs, "uid": dependent_uid}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_name_the_dependent_and_key_references_by_uid() {
        assert_eq!(
            delete_owner_refs_patch("d", &["a".into(), "b".into()]),
            json!({"metadata": {"ownerReferences": [
                {"$patch": "delete", "uid": "a"}, {"$patch": "delete", "uid": "b"}], "uid": "d"}})
        );
        let owner = |uid: &str, block: Option<bool>| OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: uid.into(),
            uid: uid.into(),
            controller: None,
            block_owner_deletion: block,
        };
        assert_eq!(
            unblock_owner_refs_patch("d", &[owner("a", Some(true)), owner("b", None)]),
            json!({"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap",
                "name": "a", "uid": "a", "blockOwnerDeletion": false}], "uid": "d"}})
        );
    }
}
