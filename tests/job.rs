//! The Job and TTL-after-finished controllers against a real API server (embedded store), with
//! pod outcomes written by the test (no agent, no scheduler): parallelism and completions,
//! retries up to the backoff limit, the active deadline, suspension, Indexed Jobs, the
//! tracking finalizer, deletion after `ttlSecondsAfterFinished`, and `kubectl wait`.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use skiff_controller::{ControllerManagerConfig, JobControllerConfig};
use support::{Server, wait_for, with_controller_manager};

const FINALIZER: &str = "batch.kubernetes.io/job-tracking";

/// A server without its own controllers or scheduler, and the controller manager in the test
/// with a short pod failure backoff.
async fn start() -> (Server, Client, tokio::task::JoinHandle<()>) {
    with_controller_manager(ControllerManagerConfig {
        job: JobControllerConfig {
            pod_failure_backoff: Duration::from_millis(200),
            max_pod_failure_backoff: Duration::from_secs(1),
        },
        ..Default::default()
    })
    .await
}

fn job(name: &str, spec: Value) -> Job {
    let mut spec = spec;
    spec["template"] = json!({
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]},
    });
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("job")
}

async fn pods_of(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .expect("list pods")
        .items
}

fn is_active(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    p.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

async fn active_pods(pods: &Api<Pod>, job: &str) -> Vec<Pod> {
    pods_of(pods, job)
        .await
        .into_iter()
        .filter(is_active)
        .collect()
}

/// Marks a pod finished as a kubelet would: the phase and a terminated container.
async fn finish(pods: &Api<Pod>, name: &str, succeeded: bool) {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let (phase, code) = if succeeded {
        ("Succeeded", 0)
    } else {
        ("Failed", 1)
    };
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": phase, "containerStatuses": [{
            "name": "c", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "finishedAt": now, "startedAt": now,
                "reason": if succeeded { "Completed" } else { "Error" }}},
        }]}})),
    )
    .await
    .expect("finish pod");
}

async fn status_of(jobs: &Api<Job>, name: &str) -> Value {
    let j = jobs.get(name).await.expect("get job");
    serde_json::to_value(j.status).expect("status")
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
}

async fn events_of(client: &Client, job: &str) -> Vec<(String, String)> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(job))
        .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn completions_with_parallelism_and_kubectl_wait() {
    let (server, client, _manager) = start().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("work", json!({"completions": 3, "parallelism": 2})),
    )
    .await
    .expect("create job");
    let stored = jobs.get("work").await.expect("get job");
    let uid = stored.uid().expect("uid");

    let mut done = BTreeSet::new();
    while done.len() < 3 {
        let want = (3 - done.len()).min(2);
        let active = wait_for(&format!("{want} active pods"), || async {
            let a = active_pods(&pods, "work").await;
            (a.len() == want).then_some(a)
        })
        .await;
        // Never more than parallelism, and every pod made as upstream makes them.
        for p in &active {
            let labels = p.labels();
            assert_eq!(labels["batch.kubernetes.io/job-name"], "work");
            assert_eq!(labels["job-name"], "work");
            assert_eq!(labels["batch.kubernetes.io/controller-uid"], uid);
            assert_eq!(labels["controller-uid"], uid);
            assert!(p.finalizers().iter().any(|f| f == FINALIZER));
            let owner = &p.owner_references()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
                ("Job", uid.as_str(), Some(true))
            );
            assert_eq!(owner.block_owner_deletion, Some(true));
        }
        let name = active[0].name_any();
        finish(&pods, &name, true).await;
        done.insert(name);
        let n = done.len();
        wait_for(&format!("succeeded {n}"), || async {
            let s = status_of(&jobs, "work").await;
            let a = active_pods(&pods, "work").await.len();
            assert!(a <= 2, "{a} active pods with parallelism 2");
            (s["succeeded"] == n).then_some(())
        })
        .await;
    }
    let status = wait_for("Complete", || async {
        let s = status_of(&jobs, "work").await;
        condition(&s, "Complete").is_some().then_some(s)
    })
    .await;
    assert_eq!(status["succeeded"], 3);
    assert_eq!(status["failed"], Value::Null);
    assert_eq!(status["active"], 0);
    assert!(status["completionTime"].is_string(), "{status}");
    assert!(status["startTime"].is_string(), "{status}");
    let complete = condition(&status, "Complete").expect("Complete");
    assert_eq!(complete["reason"], "CompletionsReached");
    assert_eq!(
        complete["message"],
        "Reached expected number of succeeded pods"
    );
    assert!(condition(&status, "SuccessCriteriaMet").is_some());
    // Every pod has let go of the tracking finalizer.
    wait_for("finalizers removed", || async {
        let all = pods_of(&pods, "work").await;
        (all.len() == 3 && all.iter().all(|p| p.finalizers().is_empty())).then_some(())
    })
    .await;
    let events = wait_for("events", || async {
        let e = events_of(&client, "work").await;
        (e.iter().any(|(r, _)| r == "Completed")).then_some(e)
    })
    .await;
    assert!(events.contains(&("Completed".into(), "Job completed".into())));
    for name in &done {
        assert!(
            events.contains(&("SuccessfulCreate".into(), format!("Created pod: {name}"))),
            "{events:?}"
        );
    }

    // kubectl wait sees it complete.
    let out = std::process::Command::new(support::kubectl_path())
        .arg("--kubeconfig")
        .arg(server.data_dir().join("kubeconfig"))
        .args([
            "wait",
            "--for=condition=complete",
            "job/work",
            "--timeout=10s",
        ])
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("job.batch/work condition met"));
}

#[tokio::test]
async fn failures_up_to_the_backoff_limit() {
    let (_server, client, _manager) = start().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("flaky", json!({"backoffLimit": 2})),
    )
    .await
    .expect("create job");
    // Three failures: the first two are retried (after the backoff), the third is one too
    // many.
    let mut failed = BTreeSet::new();
    for i in 1..=3 {
        let pod = wait_for(&format!("attempt {i}"), || async {
            let a = active_pods(&pods, "flaky").await;
            assert!(a.len() <= 1);
            a.into_iter().find(|p| !failed.contains(&p.name_any()))
        })
        .await;
        finish(&pods, &pod.name_any(), false).await;
        failed.insert(pod.name_any());
        wait_for(&format!("failed {i}"), || async {
            (status_of(&jobs, "flaky").await["failed"] == i).then_some(())
        })
        .await;
    }
    let status = wait_for("Failed", || async {
        let s = status_of(&jobs, "flaky").await;
        condition(&s, "Failed").is_some().then_some(s)
    })
    .await;
    let cond = condition(&status, "Failed").expect("Failed");
    assert_eq!(cond["reason"], "BackoffLimitExceeded");
    assert_eq!(
        cond["message"],
        "Job has reached the specified backoff limit"
    );
    assert!(condition(&status, "FailureTarget").is_some());
    assert_eq!(status["failed"], 3, "{status}");
    assert_eq!(status["succeeded"], Value::Null);
    assert_eq!(status["completionTime"], Value::Null);
    // No fourth pod, and no pod holds the finalizer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = pods_of(&pods, "flaky").await;
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|p| p.finalizers().is_empty()));
    assert_eq!(status_of(&jobs, "flaky").await["failed"], 3);
    let events = wait_for("event", || async {
        let e = events_of(&client, "flaky").await;
        e.iter()
            .any(|(r, _)| r == "BackoffLimitExceeded")
            .then_some(e)
    })
    .await;
    assert!(events.contains(&(
        "BackoffLimitExceeded".into(),
        "Job has reached the specified backoff limit".into()
    )));
}

#[tokio::test]
async fn a_deleted_pod_is_counted_as_failed_and_replaced() {
    let (_server, client, _manager) = start().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), &job("gone", json!({})))
        .await
        .expect("create job");
    let first = wait_for("a pod", || async {
        active_pods(&pods, "gone").await.into_iter().next()
    })
    .await;
    // The finalizer keeps the deleted pod until the Job has counted it.
    pods.delete(&first.name_any(), &Default::default())
        .await
        .expect("delete pod");
    wait_for("counted as failed", || async {
        (status_of(&jobs, "gone").await["failed"] == 1).then_some(())
    })
    .await;
    wait_for("the pod released and gone", || async {
        pods.get_opt(&first.name_any())
            .await
            .expect("get pod")
            .is_none()
            .then_some(())
    })
    .await;
    let second = wait_for("a replacement", || async {
        active_pods(&pods, "gone")
            .await
            .into_iter()
            .find(|p| p.name_any() != first.name_any())
    })
    .await;
    finish(&pods, &second.name_any(), true).await;
    let status = wait_for("Complete", || async {
        let s = status_of(&jobs, "gone").await;
        condition(&s, "Complete").is_some().then_some(s)
    })
    .await;
    assert_eq!(
        (status["succeeded"].clone(), status["failed"].clone()),
        (json!(1), json!(1))
    );
}

#[tokio::test]
async fn active_deadline_fails_the_job_and_deletes_its_pods() {
    let (_server, client, _manager) = start().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "slow",
            json!({"parallelism": 2, "completions": 4, "activeDeadlineSeconds": 2}),
        ),
    )
    .await
    .expect("create job");
    wait_for("2 active pods", || async {
        (active_pods(&pods, "slow").await.len() == 2).then_some(())
    })
    .await;
    let status = wait_for("Failed", || async {
        let s = status_of(&jobs, "slow").await;
        condition(&s, "Failed").is_some().then_some(s)
    })
    .await;
    let cond = condition(&status, "Failed").expect("Failed");
    assert_eq!(cond["reason"], "DeadlineExceeded");
    assert_eq!(
        cond["message"],
        "Job was active longer than specified deadline"
    );
    assert_eq!(status["active"], 0);
    // The active pods were deleted (and, counted, let go of their finalizers).
    wait_for("pods deleted", || async {
        pods_of(&pods, "slow").await.is_empty().then_some(())
    })
    .await;
    assert_eq!(status["failed"], 2, "{status}");
    let events = wait_for("event", || async {
        let e = events_of(&client, "slow").await;
        e.iter().any(|(r, _)| r == "DeadlineExceeded").then_some(e)
    })
    .await;
    assert!(events.contains(&(
        "DeadlineExceeded".into(),
        "Job was active longer than specified deadline".into()
    )));
}

#[tokio::test]
async fn suspend_and_resume() {
    let (_server, client, _manager) = start().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("pausable", json!({"parallelism": 2, "completions": 2})),
    )
    .await
    .expect("create job");
    wait_for("2 active pods", || async {
        (active_pods(&pods, "pausable").await.len() == 2).then_some(())
    })
    .await;
    let suspend = |on: bool| {
        let jobs = jobs.clone();
        async move {
            jobs.patch(
                "pausable",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"suspend": on}})),
            )
            .await
            .expect("patch suspend");
        }
    };
    suspend(true).await;
    let status = wait_for("Suspended", || async {
        let s = status_of(&jobs, "pausable").await;
        let gone = pods_of(&pods, "pausable").await.is_empty();
        (gone && condition(&s, "Suspended").is_some() && s["active"] == 0).then_some(s)
    })
    .await;
    let cond = condition(&status, "Suspended").expect("Suspended");
    assert_eq!(cond["reason"], "JobSuspended");
    assert_eq!(status["failed"], Value::Null, "suspension is no failure");

    suspend(false).await;
    let resumed = wait_for("resumed", || async {
        let s = status_of(&jobs, "pausable").await;
        let a = active_pods(&pods, "pausable").await;
        let c = s["conditions"]
            .as_array()
            .and_then(|l| l.iter().find(|c| c["type"] == "Suspended").cloned());
        (a.len() == 2 && c.is_some_and(|c| c["status"] == "False" && c["reason"] == "JobResumed"))
            .then_some(a)
    })
    .await;
    for p in &resumed {
        finish(&pods, &p.name_any(), true).await;
    }
    wait_for("Complete", || async {
        let s = status_of(&jobs, "pausable").await;
        (condition(&s, "Complete").is_some() && s["succeeded"] == 2).then_some(())
    })
    .await;
    let events = events_of(&client, "pausable").await;
    assert!(events.contains(&("Suspended".into(), "Job suspended".into())));
    assert!(events.contains(&("Resumed".into(), "Job resumed".into())));
}

#[tokio::test]
async fn indexed_jobs_run_each_index_once() {
    let (_server, client, _manager) = start().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "idx",
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed"}),
        ),
    )
    .await
    .expect("create job");
    let active = wait_for("3 pods", || async {
        let a = active_pods(&pods, "idx").await;
        (a.len() == 3).then_some(a)
    })
    .await;
    let index = |p: &Pod| p.annotations()["batch.kubernetes.io/job-completion-index"].clone();
    let mut indexes: Vec<String> = active.iter().map(index).collect();
    indexes.sort();
    assert_eq!(indexes, ["0", "1", "2"]);
    for p in &active {
        let ix = index(p);
        assert_eq!(p.labels()["batch.kubernetes.io/job-completion-index"], ix);
        assert!(
            p.name_any().starts_with(&format!("idx-{ix}-")),
            "{}",
            p.name_any()
        );
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some(format!("idx-{ix}").as_str()));
    }
    let by_index = |ix: &str| {
        active
            .iter()
            .find(|p| index(p) == ix)
            .map(|p| p.name_any())
            .expect("pod of index")
    };
    finish(&pods, &by_index("0"), true).await;
    finish(&pods, &by_index("2"), true).await;
    finish(&pods, &by_index("1"), false).await;
    // Index 1 runs again; 0 and 2 are done.
    let retry = wait_for("index 1 again", || async {
        let a = active_pods(&pods, "idx").await;
        (a.len() == 1 && index(&a[0]) == "1").then(|| a[0].name_any())
    })
    .await;
    // The replacement is created before the sync's last status write: wait for the counts.
    wait_for("completedIndexes 0,2", || async {
        let s = status_of(&jobs, "idx").await;
        (s["completedIndexes"] == "0,2" && s["succeeded"] == 2 && s["failed"] == 1).then_some(())
    })
    .await;
    finish(&pods, &retry, true).await;
    let s = wait_for("Complete", || async {
        let s = status_of(&jobs, "idx").await;
        condition(&s, "Complete").is_some().then_some(s)
    })
    .await;
    assert_eq!(s["completedIndexes"], "0-2");
    assert_eq!(s["succeeded"], 3);
}

#[tokio::test]
async fn finished_jobs_are_deleted_after_their_ttl() {
    let (_server, client, _manager) = start().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("brief", json!({"ttlSecondsAfterFinished": 2})),
    )
    .await
    .expect("create job");
    let pod = wait_for("a pod", || async {
        active_pods(&pods, "brief").await.into_iter().next()
    })
    .await;
    finish(&pods, &pod.name_any(), true).await;
    let finished = wait_for("Complete", || async {
        let s = status_of(&jobs, "brief").await;
        condition(&s, "Complete")
            .is_some()
            .then(std::time::Instant::now)
    })
    .await;
    // Still there within the TTL.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(jobs.get_opt("brief").await.expect("get").is_some());
    wait_for("the Job and its pod deleted", || async {
        let job = jobs.get_opt("brief").await.expect("get job");
        let left = pods_of(&pods, "brief").await;
        (job.is_none() && left.is_empty()).then_some(())
    })
    .await;
    assert!(finished.elapsed() >= Duration::from_millis(1000));
}
