//! What the garbage collector watches: upstream's `GetDeletableResources` (every resource whose
//! preferred version can be listed, watched and deleted, found through discovery, less the
//! ignored ones), its RESTMapper (an owner reference's apiVersion and kind → the resource to
//! ask for it) and the GraphBuilder's *monitors* (one metadata-only watch per resource,
//! feeding the graph).

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::mpsc::UnboundedSender;

use super::graph::{EventKind, ObjectEvent, ObjectReference, Uid};
use super::{GraphChange, NAME};

/// Upstream's `DefaultIgnoredResources`: Events are never owners worth tracking, and there are
/// many of them.
const IGNORED_RESOURCES: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

/// A served resource: how to reach it and whether it is namespaced.
#[derive(Debug, Clone)]
pub(crate) struct Mapping {
    pub resource: ApiResource,
    pub namespaced: bool,
}

/// apiVersion + kind → resource, for every served version (an owner reference may name any).
#[derive(Debug, Default, Clone)]
pub(crate) struct RestMapper {
    by_kind: HashMap<(String, String), Mapping>,
}

impl RestMapper {
    pub(crate) fn mapping(&self, api_version: &str, kind: &str) -> Option<&Mapping> {
        self.by_kind
            .get(&(api_version.to_string(), kind.to_string()))
    }
}

/// One discovery's result.
pub(crate) struct Discovered {
    pub mapper: RestMapper,
    /// The resources to monitor, by `group/version/plural`.
    pub deletable: BTreeMap<String, ApiResource>,
}

/// The key a monitor is known by (upstream keys monitors by GroupVersionResource).
pub(crate) fn resource_key(resource: &ApiResource) -> String {
    format!("{}/{}", resource.api_version, resource.plural)
}

/// Runs discovery (aggregated when the server has it: two requests instead of one per group).
pub(crate) async fn discover(client: &Client) -> Result<Discovered, kube::Error> {
    let discovery = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(controller = NAME, error = %e,
                "aggregated discovery failed; asking group by group");
            Discovery::new(client.clone()).run().await?
        }
    };
    let mut mapper = RestMapper::default();
    let mut deletable = BTreeMap::new();
    for group in discovery.groups() {
        for version in group.versions() {
            for (resource, caps) in group.versioned_resources(version) {
                let namespaced = matches!(caps.scope, Scope::Namespaced);
                mapper
                    .by_kind
                    .entry((resource.api_version.clone(), resource.kind.clone()))
                    .or_insert(Mapping {
                        resource,
                        namespaced,
                    });
            }
        }
        for (resource, caps) in group.recommended_resources() {
            let ignored = IGNORED_RESOURCES
                .iter()
                .any(|(g, r)| *g == resource.group && *r == resource.plural);
            let usable = [verbs::LIST, verbs::WATCH, verbs::DELETE]
                .iter()
                .all(|v| caps.supports_operation(v));
            if usable && !ignored {
                deletable.insert(resource_key(&resource), resource);
            }
        }
    }
    Ok(Discovered { mapper, deletable })
}

/// A monitor: watches `resource`'s metadata and turns what it sees into graph events. A
/// re-list (after the watch expired) reports the objects that disappeared meanwhile as
/// deleted, as an informer's `Replace` does. The first complete list sends
/// [`GraphChange::Synced`]. Runs until aborted or the graph is gone.
pub(crate) async fn monitor(
    client: Client,
    resource: ApiResource,
    changes: UnboundedSender<GraphChange>,
) {
    let key = resource_key(&resource);
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &resource);
    let events = watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(events);
    // Everything this monitor has reported as existing (its "store").
    let mut known: HashMap<Uid, ObjectReference> = HashMap::new();
    let mut relisted: HashSet<Uid> = HashSet::new();
    let mut synced = false;
    while let Some(event) = events.next().await {
        let mut out = Vec::new();
        match event {
            Ok(watcher::Event::Init) => relisted.clear(),
            Ok(watcher::Event::InitApply(obj)) => {
                if let Some(e) = object_event(&resource, &obj, EventKind::Upsert) {
                    relisted.insert(e.identity.uid.clone());
                    known.insert(e.identity.uid.clone(), e.identity.clone());
                    out.push(GraphChange::Object(e));
                }
            }
            Ok(watcher::Event::InitDone) => {
                let gone: Vec<Uid> = known
                    .keys()
                    .filter(|uid| !relisted.contains(*uid))
                    .cloned()
                    .collect();
                for uid in gone {
                    if let Some(identity) = known.remove(&uid) {
                        out.push(GraphChange::Object(ObjectEvent {
                            virtual_event: false,
                            ..ObjectEvent::virtual_delete(identity)
                        }));
                    }
                }
                relisted.clear();
                if !synced {
                    synced = true;
                    out.push(GraphChange::Synced(key.clone()));
                }
            }
            Ok(watcher::Event::Apply(obj)) => {
                if let Some(e) = object_event(&resource, &obj, EventKind::Upsert) {
                    known.insert(e.identity.uid.clone(), e.identity.clone());
                    out.push(GraphChange::Object(e));
                }
            }
            Ok(watcher::Event::Delete(obj)) => {
                if let Some(e) = object_event(&resource, &obj, EventKind::Delete) {
                    known.remove(&e.identity.uid);
                    out.push(GraphChange::Object(e));
                }
            }
            // The watcher retries with backoff itself.
            Err(e) => {
                tracing::warn!(controller = NAME, resource = %key, error = %e, "monitor watch failed");
            }
        }
        for change in out {
            if changes.send(change).is_err() {
                return;
            }
        }
    }
}

/// The graph's view of an object: identity, owners, deletion state. None without a uid (no
/// stored object lacks one).
fn object_event(
    resource: &ApiResource,
    obj: &PartialObjectMeta<DynamicObject>,
    kind: EventKind,
) -> Option<ObjectEvent> {
    let uid = obj.uid().filter(|u| !u.is_empty())?;
    Some(ObjectEvent {
        kind,
        identity: ObjectReference {
            kind: resource.kind.clone(),
            api_version: resource.api_version.clone(),
            namespace: obj.namespace().unwrap_or_default(),
            name: obj.name_any(),
            uid,
        },
        owners: obj.metadata.owner_references.clone().unwrap_or_default(),
        being_deleted: obj.metadata.deletion_timestamp.is_some(),
        finalizers: obj.metadata.finalizers.clone().unwrap_or_default(),
        virtual_event: false,
    })
}
