//! A DaemonSet's template history in ControllerRevisions (upstream's `update.go`:
//! `constructHistory`, `snapshot`, `dedupCurHistories`, `cleanupHistory`).
//!
//! A revision's `data` is the strategic merge patch that would put its template back
//! (`{"spec": {"template": {…, "$patch": "replace"}}}`, upstream's `getPatch`); the current
//! revision is the one whose data equals the DaemonSet's. Revisions are named
//! `<ds>-<hash of the template and collisionCount>` and labelled with the hash, which pods
//! carry as `controller-revision-hash`; a name taken by a different template bumps the
//! DaemonSet's `status.collisionCount`, so the next sync hashes anew.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, Preconditions};
use serde_json::{Value, json};

use super::util::CONTROLLER_REVISION_HASH_LABEL;
use super::{NAME, SyncError, Syncer, controller_of, patch_params, post_params};
use crate::deployment::util::compute_hash;

/// Upstream's `getPatch`: the DaemonSet's template as a replacing strategic merge patch.
pub(super) fn revision_data(ds: &DaemonSet) -> Value {
    let mut template = serde_json::to_value(&ds.spec.template).unwrap_or(Value::Null);
    if let Some(obj) = template.as_object_mut() {
        obj.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// Upstream's `Match`: the revision holds the DaemonSet's template.
pub(super) fn matches(ds: &DaemonSet, rev: &ControllerRevision) -> bool {
    rev.data.0 == revision_data(ds)
}

fn hash_of(rev: &ControllerRevision) -> Option<&str> {
    rev.metadata
        .labels
        .as_ref()?
        .get(CONTROLLER_REVISION_HASH_LABEL)
        .map(String::as_str)
}

impl Syncer<'_> {
    fn revisions_api(&self) -> Api<ControllerRevision> {
        Api::namespaced(self.ctx.client.clone(), &self.namespace)
    }

    /// Upstream's `controlledHistories` (ControllerRefManager's `ClaimControllerRevisions`).
    async fn claim_revisions(&self) -> Result<Vec<ControllerRevision>, SyncError> {
        let uid = self.ds.uid().unwrap_or_default();
        let api = self.revisions_api();
        let mut owned = Vec::new();
        let mut may_adopt = None;
        for rev in self.ctx.revisions.state() {
            if rev.namespace().as_deref() != Some(self.namespace.as_str()) {
                continue;
            }
            let labels = rev.metadata.labels.clone().unwrap_or_default();
            let selected = self.selector.matches(&labels);
            let patch = match controller_of(&rev.metadata.owner_references) {
                Some(owner) if owner.uid != uid => continue,
                Some(_) if selected => {
                    owned.push((*rev).clone());
                    continue;
                }
                Some(_) => json!({"metadata": {
                    "ownerReferences": [{"$patch": "delete", "uid": uid}],
                    "uid": rev.uid(),
                }}),
                None => {
                    if !selected || rev.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    if may_adopt.is_none() {
                        may_adopt = Some(self.can_adopt().await?);
                    }
                    if may_adopt != Some(true) {
                        continue;
                    }
                    json!({"metadata": {
                        "ownerReferences": [self.controller_ref()],
                        "uid": rev.uid(),
                    }})
                }
            };
            let adopting = selected;
            match api
                .patch(&rev.name_any(), &patch_params(), &Patch::Strategic(patch))
                .await
            {
                Ok(patched) if adopting => owned.push(patched),
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(source) => {
                    let verb = if adopting { "adopting" } else { "releasing" };
                    return Err(self.write_error(
                        verb,
                        "ControllerRevision",
                        &rev.name_any(),
                        source,
                    ));
                }
            }
        }
        Ok(owned)
    }

    /// Upstream's `constructHistory`: the current revision (created, or renumbered to follow
    /// the newest old one) and the old ones.
    pub(super) async fn construct_history(
        &mut self,
    ) -> Result<(ControllerRevision, Vec<ControllerRevision>), SyncError> {
        let api = self.revisions_api();
        let mut current = Vec::new();
        let mut old = Vec::new();
        for mut rev in self.claim_revisions().await? {
            // Revisions of older controllers may lack the hash label: their name serves.
            if hash_of(&rev).is_none() {
                let name = rev.name_any();
                rev.metadata
                    .labels
                    .get_or_insert_with(Default::default)
                    .insert(CONTROLLER_REVISION_HASH_LABEL.into(), name.clone());
                rev = api
                    .replace(&name, &post_params(), &rev)
                    .await
                    .map_err(|e| self.write_error("labelling", "ControllerRevision", &name, e))?;
            }
            if matches(&self.ds, &rev) {
                current.push(rev);
            } else {
                old.push(rev);
            }
        }
        let next_revision = old.iter().filter_map(|r| r.revision).max().unwrap_or(0) + 1;
        let cur = if current.is_empty() {
            self.snapshot(next_revision).await?
        } else {
            let mut cur = self.dedup_current(current).await?;
            if cur.revision.unwrap_or(0) < next_revision {
                let name = cur.name_any();
                cur.revision = Some(next_revision);
                cur = api
                    .replace(&name, &post_params(), &cur)
                    .await
                    .map_err(|e| self.write_error("renumbering", "ControllerRevision", &name, e))?;
            }
            cur
        };
        Ok((cur, old))
    }

    /// Upstream's `snapshot`: a new revision holding the DaemonSet's template.
    async fn snapshot(&mut self, revision: i64) -> Result<ControllerRevision, SyncError> {
        let collision_count = self.ds.status.as_ref().and_then(|s| s.collision_count);
        let hash = compute_hash(&self.ds.spec.template, collision_count);
        let name = format!("{}-{hash}", self.ds.name_any());
        let mut labels = self
            .ds
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash);
        let rev = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(labels),
                annotations: self.ds.metadata.annotations.clone(),
                owner_references: Some(vec![self.controller_ref()]),
                ..Default::default()
            },
            data: RawExtension(revision_data(&self.ds)),
            revision: Some(revision),
        };
        let api = self.revisions_api();
        match api.create(&post_params(), &rev).await {
            Ok(created) => Ok(created),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let existing = api
                    .get(&name)
                    .await
                    .map_err(|e| self.write_error("reading", "ControllerRevision", &name, e))?;
                if matches(&self.ds, &existing) {
                    // Ours, from a sync whose cache had not shown it yet.
                    return Ok(existing);
                }
                // Another template has the name: bump collisionCount, unless the count this
                // sync hashed with is stale already.
                let ds_api: Api<DaemonSet> =
                    Api::namespaced(self.ctx.client.clone(), &self.namespace);
                let ds_name = self.ds.name_any();
                let mut fresh = ds_api
                    .get(&ds_name)
                    .await
                    .map_err(|e| self.write_error("reading", "DaemonSet", &ds_name, e))?;
                let fresh_count = fresh.status.as_ref().and_then(|s| s.collision_count);
                if fresh_count == collision_count {
                    let status = fresh.status.get_or_insert_with(Default::default);
                    status.collision_count = Some(collision_count.unwrap_or(0) + 1);
                    ds_api
                        .replace_status(&ds_name, &post_params(), &fresh)
                        .await
                        .map_err(|e| {
                            self.write_error("updating the status of", "DaemonSet", &ds_name, e)
                        })?;
                    tracing::info!(controller = NAME, daemonset = %self.key,
                        "found a hash collision; bumped collisionCount to resolve it");
                }
                Err(SyncError::HashCollision {
                    namespace: self.namespace.clone(),
                    name,
                })
            }
            Err(source) => Err(self.write_error("creating", "ControllerRevision", &name, source)),
        }
    }

    /// Upstream's `dedupCurHistories`: of several revisions holding the current template,
    /// the highest-numbered stays; pods of the others are relabelled to its hash, then the
    /// others go.
    async fn dedup_current(
        &self,
        mut current: Vec<ControllerRevision>,
    ) -> Result<ControllerRevision, SyncError> {
        current.sort_by_key(|r| r.revision);
        let Some(keep) = current.pop() else {
            unreachable!("dedup_current is called with at least one revision");
        };
        if current.is_empty() {
            return Ok(keep);
        }
        let keep_hash = hash_of(&keep).unwrap_or_default().to_string();
        let pods = self.claim_pods().await?;
        let pods_api = self.pods_api();
        let api = self.revisions_api();
        for dup in &current {
            let dup_hash = hash_of(dup).unwrap_or_default();
            for pod in pods.iter().filter(|p| {
                super::util::pod_labels(p)
                    .get(CONTROLLER_REVISION_HASH_LABEL)
                    .is_some_and(|h| h == dup_hash)
            }) {
                let patch = json!({"metadata": {
                    "labels": {CONTROLLER_REVISION_HASH_LABEL: keep_hash},
                    "uid": pod.uid(),
                }});
                self.patch_pod(&pods_api, pod, "relabelling", patch).await?;
            }
            self.delete_revision(&api, dup).await?;
        }
        Ok(keep)
    }

    async fn delete_revision(
        &self,
        api: &Api<ControllerRevision>,
        rev: &ControllerRevision,
    ) -> Result<(), SyncError> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: rev.uid(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&rev.name_any(), &params).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(source) => {
                Err(self.write_error("deleting", "ControllerRevision", &rev.name_any(), source))
            }
        }
    }

    /// Upstream's `cleanupHistory`: old revisions beyond `revisionHistoryLimit` go, oldest
    /// first, except those live pods were made from.
    pub(super) async fn cleanup_history(
        &self,
        old: &[ControllerRevision],
        pods: &[Arc<Pod>],
    ) -> Result<(), SyncError> {
        let limit = usize::try_from(self.ds.spec.revision_history_limit.unwrap_or(10)).unwrap_or(0);
        let mut to_kill = old.len().saturating_sub(limit);
        if to_kill == 0 {
            return Ok(());
        }
        let live: HashSet<String> = pods
            .iter()
            .filter(|p| !(super::util::is_terminal(p) && p.metadata.deletion_timestamp.is_some()))
            .filter_map(|p| {
                super::util::pod_labels(p)
                    .get(CONTROLLER_REVISION_HASH_LABEL)
                    .cloned()
            })
            .collect();
        let mut old: Vec<&ControllerRevision> = old.iter().collect();
        old.sort_by_key(|r| r.revision);
        let api = self.revisions_api();
        for rev in old {
            if to_kill == 0 {
                break;
            }
            if hash_of(rev).is_some_and(|h| live.contains(h)) {
                continue;
            }
            self.delete_revision(&api, rev).await?;
            to_kill -= 1;
        }
        Ok(())
    }
}
