//! The Deployment controller (with the ReplicaSet controller under it) against a real API
//! server, pod readiness written by the test (no agent, no scheduler): ReplicaSets named by
//! pod-template-hash, rolling updates that keep within maxSurge/maxUnavailable at every pod
//! event, Recreate, revisions and their cleanup, pause/resume, the progress deadline,
//! `/scale` with proportional scaling mid-rollout, and real kubectl's `rollout` commands.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::{Server, kubectl_path, wait_for, with_controller_manager};

const HASH: &str = "pod-template-hash";
const REVISION: &str = "deployment.kubernetes.io/revision";

async fn start() -> (Server, Client, tokio::task::JoinHandle<()>) {
    with_controller_manager(Default::default()).await
}

fn deployment(name: &str, replicas: i32, strategy: Value, extra: Value) -> Deployment {
    let mut d = json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1"}]},
            },
        },
    });
    if !strategy.is_null() {
        d["spec"]["strategy"] = strategy;
    }
    if let Value::Object(m) = extra {
        for (k, v) in m {
            d["spec"][k] = v;
        }
    }
    serde_json::from_value(d).expect("deployment")
}

struct Env {
    deployments: Api<Deployment>,
    rss: Api<ReplicaSet>,
    pods: Api<Pod>,
}

impl Env {
    fn new(client: &Client) -> Env {
        Env {
            deployments: Api::namespaced(client.clone(), "default"),
            rss: Api::namespaced(client.clone(), "default"),
            pods: Api::namespaced(client.clone(), "default"),
        }
    }

    async fn create(&self, d: &Deployment) -> Deployment {
        self.deployments
            .create(&PostParams::default(), d)
            .await
            .expect("create deployment")
    }

    async fn get(&self, name: &str) -> Deployment {
        self.deployments.get(name).await.expect("get deployment")
    }

    /// The deployment's ReplicaSets (controlled by it), oldest first.
    async fn replica_sets(&self, name: &str) -> Vec<ReplicaSet> {
        let uid = self.get(name).await.uid();
        let mut list: Vec<ReplicaSet> = self
            .rss
            .list(&ListParams::default().labels(&format!("app={name}")))
            .await
            .expect("list replicasets")
            .items
            .into_iter()
            .filter(|rs| {
                rs.owner_references()
                    .iter()
                    .any(|r| r.controller == Some(true) && Some(&r.uid) == uid.as_ref())
            })
            .collect();
        list.sort_by_key(|rs| rs.metadata.creation_timestamp.clone().map(|t| t.0));
        list
    }

    /// Pods of `app` that are not being deleted.
    async fn active_pods(&self, app: &str) -> Vec<Pod> {
        self.pods
            .list(&ListParams::default().labels(&format!("app={app}")))
            .await
            .expect("list pods")
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    async fn mark_ready(&self, name: &str) {
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        );
        self.pods
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": now}]}})),
            )
            .await
            .expect("mark ready");
    }

    /// Marks every active pod of `app` ready, as they come, until the deployment reports
    /// its rollout complete (as kubectl's rollout status judges it).
    async fn roll_out(&self, name: &str) {
        loop {
            let next = wait_for(
                &format!("{name}: an unready pod or a finished rollout"),
                || async {
                    if complete(&self.get(name).await) {
                        return Some(None);
                    }
                    self.active_pods(name)
                        .await
                        .into_iter()
                        .find(|p| !is_ready(p))
                        .map(|p| Some(p.name_any()))
                },
            )
            .await;
            match next {
                Some(pod) => self.mark_ready(&pod).await,
                None => return,
            }
        }
    }

    async fn patch(&self, name: &str, patch: Value) {
        self.deployments
            .patch(name, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .expect("patch deployment");
    }

    async fn set_image(&self, name: &str, image: &str) {
        self.patch(
            name,
            json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}}),
        )
        .await;
    }
}

fn is_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn status(d: &Deployment) -> Value {
    serde_json::to_value(d.status.clone().unwrap_or_default()).expect("status")
}

fn count(s: &Value, key: &str) -> i64 {
    s[key].as_i64().unwrap_or(0)
}

/// kubectl's `DeploymentStatusViewer` verdict "successfully rolled out".
fn complete(d: &Deployment) -> bool {
    let s = status(d);
    let want = i64::from(d.spec.replicas.unwrap_or(1));
    d.metadata.generation.unwrap_or(0) <= count(&s, "observedGeneration")
        && count(&s, "updatedReplicas") >= want
        && count(&s, "replicas") <= count(&s, "updatedReplicas")
        && count(&s, "availableReplicas") >= count(&s, "updatedReplicas")
}

fn condition(d: &Deployment, type_: &str) -> Option<(String, String)> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find_map(|c| {
            (c.type_.as_deref() == Some(type_)).then(|| {
                (
                    c.status.clone().unwrap_or_default(),
                    c.reason.clone().unwrap_or_default(),
                )
            })
        })
}

fn annotation(meta: &kube::api::ObjectMeta, key: &str) -> Option<String> {
    meta.annotations.as_ref()?.get(key).cloned()
}

fn image_of(rs: &ReplicaSet) -> String {
    rs.spec
        .template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers[0].image.clone())
        .unwrap_or_default()
}

/// The ReplicaSet with `image` (creation times have whole seconds: two ReplicaSets made in
/// one second have no order).
fn with_image<'a>(rss: &'a [ReplicaSet], image: &str) -> Option<&'a ReplicaSet> {
    rss.iter().find(|rs| image_of(rs) == image)
}

/// Sizes of the `busybox:1` and `busybox:2` ReplicaSets.
fn sizes(rss: &[ReplicaSet]) -> (Option<i32>, Option<i32>) {
    (
        with_image(rss, "busybox:1").map(rs_replicas),
        with_image(rss, "busybox:2").map(rs_replicas),
    )
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.replicas.unwrap_or(1)
}

#[tokio::test]
async fn a_deployment_makes_a_hashed_replica_set_and_its_pods() {
    let (_server, client, _manager) = start().await;
    let env = Env::new(&client);
    let created = env
        .create(&deployment("web", 3, Value::Null, Value::Null))
        .await;
    // Upstream's defaults.
    let spec = serde_json::to_value(&created.spec).expect("spec");
    assert_eq!(spec["strategy"]["type"], "RollingUpdate");
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], "25%");
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);

    let rss = wait_for("one replica set", || async {
        let rss = env.replica_sets("web").await;
        (rss.len() == 1).then_some(rss)
    })
    .await;
    let rs = &rss[0];
    let hash = rs
        .labels()
        .get(HASH)
        .cloned()
        .expect("pod-template-hash label");
    assert!(!hash.is_empty() && hash.len() <= 10, "{hash}");
    assert!(
        hash.bytes()
            .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)),
        "{hash}"
    );
    assert_eq!(rs.name_any(), format!("web-{hash}"));
    let selector = rs.spec.selector.match_labels.clone().unwrap_or_default();
    assert_eq!(selector.get(HASH), Some(&hash), "the selector has the hash");
    assert_eq!(selector.get("app").map(String::as_str), Some("web"));
    let template_labels = rs
        .spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    assert_eq!(template_labels.get(HASH), Some(&hash));
    let owner = &rs.owner_references()[0];
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        ("Deployment", "web", Some(true), Some(true))
    );
    assert_eq!(annotation(&rs.metadata, REVISION).as_deref(), Some("1"));
    assert_eq!(
        annotation(&rs.metadata, "deployment.kubernetes.io/desired-replicas").as_deref(),
        Some("3")
    );
    // 3 + 25% rounded up.
    assert_eq!(
        annotation(&rs.metadata, "deployment.kubernetes.io/max-replicas").as_deref(),
        Some("4")
    );

    let pods = wait_for("three pods", || async {
        let pods = env.active_pods("web").await;
        (pods.len() == 3).then_some(pods)
    })
    .await;
    for p in &pods {
        assert_eq!(p.labels().get(HASH), Some(&hash), "{}", p.name_any());
    }
    wait_for("Available=False before the pods are ready", || async {
        let d = env.get("web").await;
        (condition(&d, "Available") == Some(("False".into(), "MinimumReplicasUnavailable".into())))
            .then_some(())
    })
    .await;

    env.roll_out("web").await;
    let d = wait_for("the rollout reported finished", || async {
        let d = env.get("web").await;
        (condition(&d, "Progressing").is_some_and(|c| c.1 == "NewReplicaSetAvailable")).then_some(d)
    })
    .await;
    let s = status(&d);
    assert_eq!(
        (
            count(&s, "replicas"),
            count(&s, "updatedReplicas"),
            count(&s, "readyReplicas")
        ),
        (3, 3, 3)
    );
    assert_eq!(
        (
            count(&s, "availableReplicas"),
            count(&s, "unavailableReplicas")
        ),
        (3, 0)
    );
    assert_eq!(count(&s, "observedGeneration"), 1);
    assert_eq!(
        condition(&d, "Available"),
        Some(("True".into(), "MinimumReplicasAvailable".into()))
    );
    assert_eq!(
        condition(&d, "Progressing"),
        Some(("True".into(), "NewReplicaSetAvailable".into()))
    );
    assert_eq!(annotation(&d.metadata, REVISION).as_deref(), Some("1"));
    assert_eq!(env.replica_sets("web").await.len(), 1, "still one");
}

/// What the pod watch has seen breaking the rollout's bounds.
#[derive(Default)]
struct Violations(Mutex<Vec<String>>);

/// Follows the pods of `app` event by event and records every moment with more than
/// `max_total` active pods or fewer than `min_ready` ready ones.
fn watch_bounds(
    pods: Api<Pod>,
    app: &str,
    max_total: usize,
    min_ready: usize,
) -> (Arc<Violations>, tokio::task::JoinHandle<usize>) {
    let violations = Arc::new(Violations::default());
    let seen = violations.clone();
    let config = watcher::Config::default().labels(&format!("app={app}"));
    let handle = tokio::spawn(async move {
        let mut live: HashMap<String, Pod> = HashMap::new();
        let mut initial: HashMap<String, Pod> = HashMap::new();
        let mut events = 0;
        let mut stream = watcher(pods, config).boxed();
        while let Some(event) = stream.next().await {
            let Ok(event) = event else { continue };
            match event {
                // A (re)list: judge the state once it is complete.
                watcher::Event::Init => {
                    initial.clear();
                    continue;
                }
                watcher::Event::InitApply(p) => {
                    initial.insert(p.name_any(), p);
                    continue;
                }
                watcher::Event::InitDone => live = std::mem::take(&mut initial),
                watcher::Event::Apply(p) => {
                    live.insert(p.name_any(), p);
                }
                watcher::Event::Delete(p) => {
                    live.remove(&p.name_any());
                }
            }
            events += 1;
            let active: Vec<&Pod> = live
                .values()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .collect();
            let ready = active.iter().filter(|p| is_ready(p)).count();
            if active.len() > max_total || ready < min_ready {
                seen.0.lock().expect("lock").push(format!(
                    "{} active (max {max_total}), {ready} ready (min {min_ready})",
                    active.len()
                ));
            }
        }
        events
    });
    (violations, handle)
}

/// A rolling update driven pod by pod: at every pod event there are at most
/// replicas + maxSurge pods and at least replicas - maxUnavailable ready ones.
async fn rolling_update_within_bounds(
    replicas: i32,
    surge: Value,
    unavailable: Value,
    max_total: usize,
    min_ready: usize,
) {
    let (_server, client, _manager) = start().await;
    let env = Env::new(&client);
    let strategy = json!({"type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}});
    env.create(&deployment("roll", replicas, strategy, Value::Null))
        .await;
    env.roll_out("roll").await;
    let first = env.replica_sets("roll").await;
    assert_eq!(first.len(), 1);

    let (violations, watch) = watch_bounds(env.pods.clone(), "roll", max_total, min_ready);
    // Let the watch list the pods before anything moves.
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.set_image("roll", "busybox:2").await;

    // Pod by pod: one new pod becomes ready, the controller takes its next step.
    let mut steps = 0;
    loop {
        let next = wait_for("an unready new pod or the end of the rollout", || async {
            let rss = env.replica_sets("roll").await;
            let spec_total: i32 = rss.iter().map(rs_replicas).sum();
            assert!(
                spec_total as usize <= max_total,
                "ReplicaSets want {spec_total} pods, max {max_total}"
            );
            let d = env.get("roll").await;
            if complete(&d) && rss.iter().filter(|rs| rs_replicas(rs) > 0).count() == 1 {
                return Some(None);
            }
            let new_hash = rss
                .iter()
                .find(|rs| image_of(rs) == "busybox:2")
                .and_then(|rs| rs.labels().get(HASH).cloned())?;
            env.active_pods("roll")
                .await
                .into_iter()
                .find(|p| !is_ready(p) && p.labels().get(HASH) == Some(&new_hash))
                .map(|p| Some(p.name_any()))
        })
        .await;
        match next {
            Some(pod) => {
                env.mark_ready(&pod).await;
                steps += 1;
            }
            None => break,
        }
    }
    assert_eq!(steps, replicas, "every new pod was made ready once");
    let rss = env.replica_sets("roll").await;
    assert_eq!(rss.len(), 2);
    assert_eq!(sizes(&rss), (Some(0), Some(replicas)));
    let new = with_image(&rss, "busybox:2").expect("new");
    assert_eq!(annotation(&new.metadata, REVISION).as_deref(), Some("2"));
    wait_for("the old pods gone", || async {
        (env.active_pods("roll").await.len() == replicas as usize).then_some(())
    })
    .await;
    // Give the watch the last events, then stop it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    watch.abort();
    let seen = violations.0.lock().expect("lock").clone();
    assert!(seen.is_empty(), "bounds broken: {seen:?}");
    let d = env.get("roll").await;
    assert_eq!(annotation(&d.metadata, REVISION).as_deref(), Some("2"));
    assert_eq!(
        condition(&d, "Progressing"),
        Some(("True".into(), "NewReplicaSetAvailable".into()))
    );
}

#[tokio::test]
async fn rolling_update_with_numbers_keeps_within_surge_and_unavailability() {
    // 4 replicas, maxSurge 1, maxUnavailable 1: 5 pods at most, 3 ready at least.
    rolling_update_within_bounds(4, json!(1), json!(1), 5, 3).await;
}

#[tokio::test]
async fn rolling_update_with_percentages_rounds_as_upstream() {
    // 5 replicas, 30%/30%: maxSurge rounds up to 2, maxUnavailable down to 1.
    rolling_update_within_bounds(5, json!("30%"), json!("30%"), 7, 4).await;
}

#[tokio::test]
async fn rolling_update_with_zero_surge_replaces_pods_one_by_one() {
    // maxSurge 0 and 10% of 3 rounds to 0 unavailable: upstream makes it 1.
    rolling_update_within_bounds(3, json!(0), json!("10%"), 3, 2).await;
}

#[tokio::test]
async fn recreate_removes_every_old_pod_before_making_new_ones() {
    let (_server, client, _manager) = start().await;
    let env = Env::new(&client);
    env.create(&deployment(
        "re",
        3,
        json!({"type": "Recreate"}),
        Value::Null,
    ))
    .await;
    env.roll_out("re").await;
    let old_hash = env.replica_sets("re").await[0]
        .labels()
        .get(HASH)
        .cloned()
        .expect("hash");

    // Every pod event, in order: no new pod may appear while an old one exists.
    let pods = env.pods.clone();
    let watch = tokio::spawn(async move {
        let mut old_alive: BTreeMap<String, ()> = BTreeMap::new();
        let mut new_created = 0;
        let mut initial = true;
        let mut stream = watcher(pods, watcher::Config::default().labels("app=re")).boxed();
        while let Some(Ok(event)) = stream.next().await {
            match event {
                watcher::Event::InitApply(p) | watcher::Event::Apply(p) => {
                    let is_old = p.labels().get(HASH) == Some(&old_hash);
                    if is_old {
                        old_alive.insert(p.name_any(), ());
                    } else if !old_alive.is_empty() {
                        return Err(format!(
                            "new pod {} while old ones exist: {:?}",
                            p.name_any(),
                            old_alive.keys()
                        ));
                    } else {
                        new_created += 1;
                    }
                }
                watcher::Event::Delete(p) => {
                    old_alive.remove(&p.name_any());
                }
                watcher::Event::InitDone => initial = false,
                watcher::Event::Init => {}
            }
            if !initial && new_created == 3 {
                return Ok(());
            }
        }
        Err("the watch ended".to_string())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    env.set_image("re", "busybox:2").await;
    env.roll_out("re").await;
    tokio::time::timeout(Duration::from_secs(10), watch)
        .await
        .expect("the watch saw three new pods")
        .expect("watch task")
        .expect("old pods gone before new ones");
    let rss = env.replica_sets("re").await;
    assert_eq!(rss.len(), 2);
    assert_eq!(sizes(&rss), (Some(0), Some(3)));
    // Recreate has no surge: the new ReplicaSet was made for exactly the replicas.
    let new = with_image(&rss, "busybox:2").expect("new");
    assert_eq!(
        annotation(&new.metadata, "deployment.kubernetes.io/max-replicas").as_deref(),
        Some("3")
    );
}

#[tokio::test]
async fn revisions_count_up_and_old_replica_sets_past_the_limit_go() {
    let (_server, client, _manager) = start().await;
    let env = Env::new(&client);
    env.create(&deployment(
        "hist",
        1,
        Value::Null,
        json!({"revisionHistoryLimit": 2}),
    ))
    .await;
    env.roll_out("hist").await;
    for v in 2..=5 {
        env.set_image("hist", &format!("busybox:{v}")).await;
        env.roll_out("hist").await;
    }
    let rss = wait_for("two old ReplicaSets kept", || async {
        let rss = env.replica_sets("hist").await;
        (rss.len() == 3).then_some(rss)
    })
    .await;
    let mut revisions: Vec<(String, String)> = rss
        .iter()
        .map(|rs| {
            (
                annotation(&rs.metadata, REVISION).unwrap_or_default(),
                image_of(rs),
            )
        })
        .collect();
    revisions.sort();
    assert_eq!(
        revisions,
        vec![
            ("3".to_string(), "busybox:3".to_string()),
            ("4".into(), "busybox:4".into()),
            ("5".into(), "busybox:5".into()),
        ]
    );
    let d = env.get("hist").await;
    assert_eq!(annotation(&d.metadata, REVISION).as_deref(), Some("5"));

    // The rollback annotation (extensions/v1beta1's rollbackTo) takes revision 3 back: its
    // ReplicaSet becomes revision 6 and remembers 3.
    env.patch(
        "hist",
        json!({"metadata": {"annotations": {"deprecated.deployment.rollback.to": "3"}}}),
    )
    .await;
    env.roll_out("hist").await;
    let rs = wait_for("revision 3 rolled back to", || async {
        env.replica_sets("hist")
            .await
            .into_iter()
            .find(|rs| annotation(&rs.metadata, REVISION).as_deref() == Some("6"))
    })
    .await;
    assert_eq!(image_of(&rs), "busybox:3");
    assert_eq!(
        annotation(&rs.metadata, "deployment.kubernetes.io/revision-history").as_deref(),
        Some("3")
    );
    let d = env.get("hist").await;
    assert!(
        annotation(&d.metadata, "deprecated.deployment.rollback.to").is_none(),
        "the request is cleared"
    );
}

#[tokio::test]
async fn a_paused_deployment_does_not_roll_out_until_resumed() {
    let (_server, client, _manager) = start().await;
    let env = Env::new(&client);
    env.create(&deployment("p", 2, Value::Null, Value::Null))
        .await;
    env.roll_out("p").await;
    env.patch("p", json!({"spec": {"paused": true}})).await;
    wait_for("Progressing Unknown DeploymentPaused", || async {
        let d = env.get("p").await;
        (condition(&d, "Progressing") == Some(("Unknown".into(), "DeploymentPaused".into())))
            .then_some(())
    })
    .await;
    env.set_image("p", "busybox:2").await;
    // Scaling still works while paused.
    env.deployments
        .patch_scale(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .expect("scale");
    let d = wait_for("the new generation observed", || async {
        let d = env.get("p").await;
        (count(&status(&d), "observedGeneration") == d.metadata.generation.unwrap_or(0))
            .then_some(d)
    })
    .await;
    // Created, paused, new image, scaled.
    assert_eq!(d.metadata.generation, Some(4));
    wait_for("the paused deployment scaled", || async {
        let rss = env.replica_sets("p").await;
        (rss.len() == 1 && rs_replicas(&rss[0]) == 3).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = env.replica_sets("p").await;
    assert_eq!(rss.len(), 1, "no new ReplicaSet while paused");
    assert_eq!(image_of(&rss[0]), "busybox:1");

    env.patch("p", json!({"spec": {"paused": false}})).await;
    wait_for("a new ReplicaSet after resuming", || async {
        (env.replica_sets("p").await.len() == 2).then_some(())
    })
    .await;
    env.roll_out("p").await;
    let rss = env.replica_sets("p").await;
    assert_eq!(sizes(&rss), (Some(0), Some(3)));
}

#[tokio::test]
async fn scale_resizes_and_mid_rollout_scaling_is_proportional() {
    let (_server, client, _manager) = start().await;
    let env = Env::new(&client);
    let strategy = json!({"type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}});
    env.create(&deployment("sc", 2, strategy, Value::Null))
        .await;
    env.roll_out("sc").await;

    // /scale reads and writes spec.replicas; the ReplicaSet follows.
    let scale = env.deployments.get_scale("sc").await.expect("get scale");
    assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
    assert_eq!(
        scale.status.and_then(|s| s.selector).as_deref(),
        Some("app=sc")
    );
    env.deployments
        .patch_scale(
            "sc",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 10}})),
        )
        .await
        .expect("scale up");
    env.roll_out("sc").await;
    let rss = env.replica_sets("sc").await;
    assert_eq!(rss.len(), 1);
    assert_eq!(rs_replicas(&rss[0]), 10);
    assert_eq!(
        annotation(
            &rss[0].metadata,
            "deployment.kubernetes.io/desired-replicas"
        )
        .as_deref(),
        Some("10")
    );
    let scale = env.deployments.get_scale("sc").await.expect("get scale");
    assert_eq!(scale.status.map(|s| s.replicas), Some(10));

    // A new template whose pods never become ready: 10 old, surge 3, 2 unavailable settle
    // at 8 old and 5 new.
    env.set_image("sc", "busybox:2").await;
    wait_for("8 old and 5 new", || async {
        let rss = env.replica_sets("sc").await;
        (sizes(&rss) == (Some(8), Some(5))).then_some(())
    })
    .await;
    // Scaled to 20 mid-rollout: 23 allowed, the 10 added spread as 8:5 of the 13 made for,
    // the rounding leftover to the largest — upstream's arithmetic gives 14 and 9.
    env.deployments
        .patch_scale(
            "sc",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 20}})),
        )
        .await
        .expect("scale mid-rollout");
    wait_for("14 old and 9 new", || async {
        let rss = env.replica_sets("sc").await;
        (sizes(&rss) == (Some(14), Some(9))).then_some(())
    })
    .await;
    let rss = env.replica_sets("sc").await;
    for rs in &rss {
        assert_eq!(
            annotation(&rs.metadata, "deployment.kubernetes.io/max-replicas").as_deref(),
            Some("23"),
            "{}",
            rs.name_any()
        );
    }
}

/// Real kubectl against the server's kubeconfig.
fn kubectl(server: &Server, args: &[&str]) -> Output {
    Command::new(kubectl_path())
        .arg("--kubeconfig")
        .arg(&server.kubeconfig)
        .args(args)
        .env("HOME", server.data_dir())
        .env("KUBECACHEDIR", server.data_dir().join("kube-cache"))
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl")
}

async fn kubectl_async(server: &Server, args: &[&str]) -> Output {
    let kubeconfig = server.kubeconfig.clone();
    let home = server.data_dir().to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(kubectl_path())
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(&args)
            .env("HOME", &home)
            .env("KUBECACHEDIR", home.join("kube-cache"))
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl")
    })
    .await
    .expect("kubectl thread")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn kubectl_rollout_status_history_undo_and_restart() {
    let (server, client, _manager) = start().await;
    let env = Env::new(&client);
    env.create(&deployment("k", 2, Value::Null, Value::Null))
        .await;

    // `rollout status` waits while the test makes the pods ready.
    let status = {
        let server_status = kubectl_async(
            &server,
            &["rollout", "status", "deployment/k", "--timeout=60s"],
        );
        let drive = env.roll_out("k");
        let (out, ()) = tokio::join!(server_status, drive);
        out
    };
    let (stdout, stderr) = text(&status);
    assert!(
        status.status.success(),
        "rollout status failed: {stderr}\n{stdout}"
    );
    assert!(
        stdout.contains("deployment \"k\" successfully rolled out"),
        "{stdout}"
    );

    env.set_image("k", "busybox:2").await;
    env.roll_out("k").await;
    let out = kubectl(&server, &["rollout", "history", "deployment/k"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("REVISION"), "{stdout}");
    let revisions: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{stdout}");

    // `rollout undo` copies revision 1's template back (client-side); its ReplicaSet is
    // reused and becomes revision 3.
    let out = kubectl(&server, &["rollout", "undo", "deployment/k"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "undo failed: {stderr}");
    assert!(stdout.contains("rolled back"), "{stdout}");
    let d = env.get("k").await;
    assert_eq!(
        d.spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.containers[0].image.clone())
            .as_deref(),
        Some("busybox:1")
    );
    env.roll_out("k").await;
    let rss = env.replica_sets("k").await;
    assert_eq!(rss.len(), 2, "the old ReplicaSet is reused");
    let first = with_image(&rss, "busybox:1").expect("the first ReplicaSet");
    assert_eq!(annotation(&first.metadata, REVISION).as_deref(), Some("3"));
    assert_eq!(
        annotation(&first.metadata, "deployment.kubernetes.io/revision-history").as_deref(),
        Some("1")
    );
    assert_eq!(sizes(&rss), (Some(2), Some(0)));

    // `rollout restart` stamps the template: a new ReplicaSet.
    let out = kubectl(&server, &["rollout", "restart", "deployment/k"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "restart failed: {stderr}");
    assert!(stdout.contains("restarted"), "{stdout}");
    wait_for("a third ReplicaSet", || async {
        (env.replica_sets("k").await.len() == 3).then_some(())
    })
    .await;
    env.roll_out("k").await;
    let out = kubectl(
        &server,
        &["rollout", "status", "deployment/k", "--timeout=30s"],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("successfully rolled out"), "{stdout}");
    let out = kubectl(&server, &["rollout", "history", "deployment/k"]);
    let (stdout, _) = text(&out);
    let revisions: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.parse::<u32>().is_ok())
        .collect();
    assert_eq!(revisions, ["2", "3", "4"], "{stdout}");
}

#[tokio::test]
async fn an_exceeded_progress_deadline_is_reported_and_fails_rollout_status() {
    let (server, client, _manager) = start().await;
    let env = Env::new(&client);
    env.create(&deployment(
        "slow",
        1,
        Value::Null,
        json!({"progressDeadlineSeconds": 2}),
    ))
    .await;
    // Nobody makes the pod ready.
    let d = wait_for("ProgressDeadlineExceeded", || async {
        let d = env.get("slow").await;
        (condition(&d, "Progressing").is_some_and(|c| c.1 == "ProgressDeadlineExceeded"))
            .then_some(d)
    })
    .await;
    assert_eq!(
        condition(&d, "Progressing"),
        Some(("False".into(), "ProgressDeadlineExceeded".into()))
    );
    let rs = &env.replica_sets("slow").await[0];
    let message = d
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.type_.as_deref() == Some("Progressing"))
        })
        .and_then(|c| c.message.clone())
        .unwrap_or_default();
    assert_eq!(
        message,
        format!(
            "ReplicaSet \"{}\" has timed out progressing.",
            rs.name_any()
        )
    );
    let out = kubectl_async(
        &server,
        &["rollout", "status", "deployment/slow", "--timeout=20s"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(
        !out.status.success(),
        "rollout status should fail: {stdout}"
    );
    assert!(
        stderr.contains("deployment \"slow\" exceeded its progress deadline"),
        "{stderr}"
    );

    // Progress after the deadline: the pod becomes ready, the rollout completes.
    env.roll_out("slow").await;
    wait_for("NewReplicaSetAvailable", || async {
        let d = env.get("slow").await;
        (condition(&d, "Progressing") == Some(("True".into(), "NewReplicaSetAvailable".into())))
            .then_some(())
    })
    .await;
}
