//! The ConfigMaps and Secrets the node's pods use, kept by a watch of each: kubelet's
//! watch-based object manager (`configMapAndSecretChangeDetectionStrategy: Watch`, its
//! default). A pod's sync reads its volumes' and environment's sources from here instead of
//! asking the API server each time — a burst of pods in one namespace made a GET of the same
//! `kube-root-ca.crt` per pod and per sync — and a change to an object reaches the cache as it
//! happens, for the pods' next sync to apply.
//!
//! An object is watched (a watch of its namespace with `fieldSelector=metadata.name=NAME`) from
//! the first time a pod asks for it until no pod that asked is left on the node.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::Api;
use kube::core::NamespaceResourceScope;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

/// How long a sync waits for a new watch's first listing, as kubelet's manager waits for its
/// reflector to sync; past it the sync fails (and is retried) with a message that says so.
const FIRST_LISTING: Duration = Duration::from_secs(10);

pub struct ObjectCache<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    client: Client,
    watched: Mutex<HashMap<(String, String), Watched<K>>>,
}

struct Watched<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    /// The pods (by uid) that asked for the object.
    users: HashSet<String>,
    store: Store<K>,
    /// True once the store holds the watch's first listing. Not `Store::wait_until_ready`:
    /// of several tasks waiting on it at once, kube-runtime 5 wakes only the last to poll (a
    /// oneshot receiver keeps one waker), and the rest slept until something polled them again.
    listed: tokio::sync::watch::Receiver<bool>,
    watch: tokio::task::JoinHandle<()>,
}

impl<K> ObjectCache<K>
where
    K: Resource<Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    K::DynamicType: Default + Eq + Hash + Clone + Send + Sync,
{
    pub fn new(client: Client) -> ObjectCache<K> {
        ObjectCache {
            client,
            watched: Mutex::new(HashMap::new()),
        }
    }

    /// The object as the watch last saw it (`None`: it does not exist), on behalf of the pod
    /// `user`, which keeps it watched until [`ObjectCache::release`].
    pub async fn get(
        &self,
        namespace: &str,
        name: &str,
        user: &str,
    ) -> Result<Option<Arc<K>>, String> {
        let (store, mut listed) = {
            let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
            let entry = watched
                .entry((namespace.to_string(), name.to_string()))
                .or_insert_with(|| self.watch(namespace, name));
            entry.users.insert(user.to_string());
            (entry.store.clone(), entry.listed.clone())
        };
        match tokio::time::timeout(FIRST_LISTING, listed.wait_for(|listed| *listed)).await {
            Ok(Ok(_)) => Ok(store.get(&ObjectRef::new(name).within(namespace))),
            _ => Err(format!(
                "failed to sync {} cache: timed out listing {namespace}/{name}",
                K::kind(&K::DynamicType::default()).to_lowercase()
            )),
        }
    }

    /// The pod `user` is gone: objects no other pod asked for are no longer watched.
    pub fn release(&self, user: &str) {
        let mut watched = self.watched.lock().unwrap_or_else(|p| p.into_inner());
        watched.retain(|_, w| {
            w.users.remove(user);
            if w.users.is_empty() {
                w.watch.abort();
            }
            !w.users.is_empty()
        });
    }

    fn watch(&self, namespace: &str, name: &str) -> Watched<K> {
        let (store, writer) = reflector::store();
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let events = watcher(api, config).default_backoff().reflect(writer);
        let (namespace, name) = (namespace.to_string(), name.to_string());
        let (listed_tx, listed) = tokio::sync::watch::channel(false);
        let watch = tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            while let Some(event) = events.next().await {
                match event {
                    // The reflector has applied it to the store before passing it on.
                    Ok(watcher::Event::InitDone) => {
                        listed_tx.send_replace(true);
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(%namespace, %name, error = %e, "object watch"),
                }
            }
        });
        Watched {
            users: HashSet::new(),
            store,
            listed,
            watch,
        }
    }
}

impl<K> Drop for ObjectCache<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    fn drop(&mut self) {
        let watched = self.watched.get_mut().unwrap_or_else(|p| p.into_inner());
        for w in watched.values() {
            w.watch.abort();
        }
    }
}

/// The caches a pod's sync reads its ConfigMaps and Secrets from.
pub struct PodSources {
    pub config_maps: ObjectCache<k8s_openapi::api::core::v1::ConfigMap>,
    pub secrets: ObjectCache<k8s_openapi::api::core::v1::Secret>,
}

impl PodSources {
    pub fn new(client: Client) -> PodSources {
        PodSources {
            config_maps: ObjectCache::new(client.clone()),
            secrets: ObjectCache::new(client),
        }
    }

    /// The pod `uid` left the node.
    pub fn release(&self, uid: &str) {
        self.config_maps.release(uid);
        self.secrets.release(uid);
    }
}
