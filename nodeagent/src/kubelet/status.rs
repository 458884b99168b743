//! A pod's status from what the runtime shows: container statuses (state, lastState,
//! restartCount, ready, started), the phase by kubelet's `getPhase` rules, and the
//! conditions (PodReadyToStartContainers, Initialized, ContainersReady, Ready, PodScheduled).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use skiff_runtime::container::ExitStatus;

/// One run of one container, as the runtime has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub id: String,
    pub attempt: u32,
    pub state: AttemptState,
    pub image: String,
    pub image_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AttemptState {
    Running {
        started: DateTime<Utc>,
    },
    Exited {
        started: DateTime<Utc>,
        exit: ExitStatus,
        /// What the container wrote to its termination-message file.
        message: Option<String>,
    },
}

/// Everything the status is computed from.
#[derive(Debug, Default)]
pub struct Observed {
    /// Container name → its attempts, oldest first.
    pub attempts: HashMap<String, Vec<Attempt>>,
    /// Container name → why it is not running now (reason, message), when it is waiting.
    pub waiting: HashMap<String, (String, String)>,
    /// Container name → readiness (probe result; true when it has no readiness probe).
    pub ready: HashMap<String, bool>,
    /// Container name → whether its startup probe has passed (true without one).
    pub started: HashMap<String, bool>,
    pub sandbox_ready: bool,
    pub pod_ip: Option<Ipv4Addr>,
    pub host_ip: Option<Ipv4Addr>,
}

fn time(t: DateTime<Utc>) -> Time {
    Time(
        Timestamp::from_nanosecond(i128::from(t.timestamp_nanos_opt().unwrap_or(0)))
            .unwrap_or(Timestamp::UNIX_EPOCH),
    )
}

pub fn terminated(
    exit: &ExitStatus,
    started: DateTime<Utc>,
    id: &str,
    message: Option<&String>,
) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: exit.code,
        signal: exit.signal,
        reason: Some(exit.reason().to_string()),
        message: message.cloned().filter(|m| !m.is_empty()),
        started_at: Some(time(started)),
        finished_at: Some(time(exit.finished_at)),
        container_id: Some(runtime_container_id(id)),
    }
}

/// The containerID a status shows: `<runtime>://<id>`.
pub fn runtime_container_id(id: &str) -> String {
    format!("skiff://{id}")
}

fn container_status(
    name: &str,
    image: &str,
    attempts: Option<&Vec<Attempt>>,
    observed: &Observed,
    init: bool,
) -> ContainerStatus {
    let current = attempts.and_then(|a| a.last());
    let previous = attempts.and_then(|a| a.len().checked_sub(2).and_then(|i| a.get(i)));
    let waiting = observed.waiting.get(name);
    let mut status = ContainerStatus {
        name: name.to_string(),
        image: image.to_string(),
        image_id: current.map(|c| c.image_id.clone()).unwrap_or_default(),
        container_id: current.map(|c| runtime_container_id(&c.id)),
        restart_count: current.map_or(0, |c| c.attempt as i32),
        ready: false,
        started: Some(false),
        ..Default::default()
    };
    let last_exit = |a: &Attempt| match &a.state {
        AttemptState::Exited {
            started,
            exit,
            message,
        } => Some(ContainerState {
            terminated: Some(terminated(exit, *started, &a.id, message.as_ref())),
            ..Default::default()
        }),
        AttemptState::Running { .. } => None,
    };
    match (waiting, current) {
        // Waiting to start again (back-off, pulling, …): the last run is lastState.
        (Some((reason, message)), current) => {
            status.state = Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: Some(message.clone()).filter(|m| !m.is_empty()),
                }),
                ..Default::default()
            });
            status.last_state = current.and_then(last_exit);
        }
        (None, Some(c)) => {
            match &c.state {
                AttemptState::Running { started } => {
                    let started_ok = observed.started.get(name).copied().unwrap_or(true);
                    status.state = Some(ContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(time(*started)),
                        }),
                        ..Default::default()
                    });
                    status.started = Some(started_ok);
                    status.ready = started_ok && observed.ready.get(name).copied().unwrap_or(true);
                }
                AttemptState::Exited { .. } => {
                    status.state = last_exit(c);
                    // A completed init container counts as ready, as upstream shows it.
                    status.ready = init
                        && matches!(&c.state, AttemptState::Exited { exit, .. } if exit.code == 0);
                }
            }
            status.last_state = previous.and_then(last_exit);
        }
        (None, None) => {
            status.state = Some(ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(
                        if init {
                            "PodInitializing"
                        } else {
                            "ContainerCreating"
                        }
                        .into(),
                    ),
                    message: None,
                }),
                ..Default::default()
            });
        }
    }
    if status.last_state.is_none() {
        status.last_state = Some(ContainerState::default());
    }
    status
}

/// kubelet's `getPhase`.
pub fn phase(pod: &Pod, init: &[ContainerStatus], app: &[ContainerStatus]) -> &'static str {
    let policy = restart_policy(pod);
    let mut pending_init = 0;
    let mut failed_init = 0;
    for s in init {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            pending_init += 1;
        } else if let Some(t) = &state.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if state.waiting.is_some() {
            let last_failed = s
                .last_state
                .as_ref()
                .and_then(|l| l.terminated.as_ref())
                .is_some_and(|t| t.exit_code != 0);
            if last_failed {
                failed_init += 1;
            } else {
                pending_init += 1;
            }
        } else {
            pending_init += 1;
        }
    }
    let (mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for s in app {
        let state = s.state.clone().unwrap_or_default();
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            if s.last_state
                .as_ref()
                .and_then(|l| l.terminated.as_ref())
                .is_some()
            {
                stopped += 1;
            } else {
                waiting += 1;
            }
        }
    }
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 && (failed_init == 0 || policy != "Never") {
        return "Pending";
    }
    if failed_init > 0 {
        // Restarting a failed init container (OnFailure/Always).
        return "Pending";
    }
    if waiting > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn condition(
    kind: &str,
    ok: bool,
    reason: Option<&str>,
    previous: Option<&PodCondition>,
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let transition = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(now.clone()),
    };
    PodCondition {
        type_: kind.into(),
        status: status.into(),
        reason: reason.map(str::to_string),
        last_transition_time: transition,
        last_probe_time: None,
        message: None,
        observed_generation: None,
    }
}

/// The full status of `pod` from what was observed.
pub fn pod_status(pod: &Pod, observed: &Observed) -> PodStatus {
    let now = Time(Timestamp::now());
    let old = pod.status.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let init: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            container_status(
                &c.name,
                c.image.as_deref().unwrap_or_default(),
                observed.attempts.get(&c.name),
                observed,
                true,
            )
        })
        .collect();
    let app: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| {
            container_status(
                &c.name,
                c.image.as_deref().unwrap_or_default(),
                observed.attempts.get(&c.name),
                observed,
                false,
            )
        })
        .collect();
    let phase = phase(pod, &init, &app);
    let initialized = init.iter().all(|s| {
        s.state
            .as_ref()
            .and_then(|st| st.terminated.as_ref())
            .is_some_and(|t| t.exit_code == 0)
    });
    let terminal = phase == "Succeeded" || phase == "Failed";
    let containers_ready = !terminal && app.iter().all(|s| s.ready);
    let old_conds = old.conditions.clone().unwrap_or_default();
    let find = |t: &str| old_conds.iter().find(|c| c.type_ == t);
    let not_ready_reason = |ready: bool| {
        if ready {
            None
        } else if terminal {
            Some("PodCompleted")
        } else {
            Some("ContainersNotReady")
        }
    };
    let mut conditions = vec![
        condition(
            "PodReadyToStartContainers",
            observed.sandbox_ready,
            None,
            find("PodReadyToStartContainers"),
            &now,
        ),
        condition(
            "Initialized",
            initialized,
            if initialized {
                None
            } else {
                Some("ContainersNotInitialized")
            },
            find("Initialized"),
            &now,
        ),
        condition(
            "Ready",
            containers_ready,
            not_ready_reason(containers_ready),
            find("Ready"),
            &now,
        ),
        condition(
            "ContainersReady",
            containers_ready,
            not_ready_reason(containers_ready),
            find("ContainersReady"),
            &now,
        ),
    ];
    if initialized && terminal {
        conditions[1].reason = Some("PodCompleted".into());
    }
    if let Some(scheduled) = find("PodScheduled") {
        conditions.push(scheduled.clone());
    }
    let pod_ip = observed
        .pod_ip
        .map(|ip| ip.to_string())
        .or(old.pod_ip.clone());
    let host_ip = observed
        .host_ip
        .map(|ip| ip.to_string())
        .or(old.host_ip.clone());
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: host_ip.clone(),
        host_ips: host_ip.map(|ip| vec![HostIP { ip }]),
        pod_ip: pod_ip.clone(),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
        start_time: old.start_time.clone().or(Some(now)),
        qos_class: old.qos_class.clone(),
        init_container_statuses: if init.is_empty() { None } else { Some(init) },
        container_statuses: Some(app),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(policy: &str, init: &[&str], app: &[&str]) -> Pod {
        let c = |n: &&str| json!({"name": n, "image": "busybox"});
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {
                "restartPolicy": policy,
                "initContainers": init.iter().map(c).collect::<Vec<_>>(),
                "containers": app.iter().map(c).collect::<Vec<_>>(),
            },
            "status": {"qosClass": "BestEffort", "conditions": [
                {"type": "PodScheduled", "status": "True"}]},
        }))
        .expect("pod")
    }

    fn running(attempt: u32) -> Attempt {
        Attempt {
            id: format!("u.c.{attempt}"),
            attempt,
            state: AttemptState::Running {
                started: Utc::now(),
            },
            image: "busybox".into(),
            image_id: "docker.io/library/busybox@sha256:1".into(),
        }
    }

    fn exited(attempt: u32, code: i32) -> Attempt {
        Attempt {
            state: AttemptState::Exited {
                started: Utc::now(),
                exit: ExitStatus {
                    code,
                    signal: None,
                    oom_killed: false,
                    finished_at: Utc::now(),
                },
                message: None,
            },
            ..running(attempt)
        }
    }

    fn observe(entries: &[(&str, Vec<Attempt>)]) -> Observed {
        Observed {
            attempts: entries
                .iter()
                .map(|(n, a)| (n.to_string(), a.clone()))
                .collect(),
            sandbox_ready: true,
            pod_ip: Some(Ipv4Addr::new(10, 244, 0, 5)),
            host_ip: Some(Ipv4Addr::new(192, 168, 1, 2)),
            ..Default::default()
        }
    }

    fn cond(s: &PodStatus, t: &str) -> String {
        s.conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == t)
            .map(|c| c.status.clone())
            .unwrap_or_default()
    }

    #[test]
    fn running_pod_is_ready_with_ips() {
        let p = pod("Always", &[], &["c"]);
        let s = pod_status(&p, &observe(&[("c", vec![running(0)])]));
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Ready"), "True");
        assert_eq!(cond(&s, "ContainersReady"), "True");
        assert_eq!(cond(&s, "Initialized"), "True");
        assert_eq!(cond(&s, "PodScheduled"), "True");
        assert_eq!(s.pod_ip.as_deref(), Some("10.244.0.5"));
        assert_eq!(s.host_ip.as_deref(), Some("192.168.1.2"));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        let cs = &s.container_statuses.as_ref().expect("statuses")[0];
        assert!(cs.ready);
        assert_eq!(cs.started, Some(true));
        assert_eq!(cs.container_id.as_deref(), Some("skiff://u.c.0"));
    }

    #[test]
    fn a_crash_loop_shows_the_wait_and_the_last_run() {
        let p = pod("Always", &[], &["c"]);
        let mut o = observe(&[("c", vec![exited(0, 1), exited(1, 2)])]);
        o.waiting.insert(
            "c".into(),
            (
                "CrashLoopBackOff".into(),
                "back-off 10s restarting failed container".into(),
            ),
        );
        let s = pod_status(&p, &o);
        let cs = &s.container_statuses.as_ref().expect("statuses")[0];
        assert_eq!(
            cs.state
                .as_ref()
                .and_then(|st| st.waiting.as_ref())
                .and_then(|w| w.reason.as_deref()),
            Some("CrashLoopBackOff")
        );
        let last = cs
            .last_state
            .as_ref()
            .and_then(|l| l.terminated.as_ref())
            .expect("last");
        assert_eq!(last.exit_code, 2);
        assert_eq!(last.reason.as_deref(), Some("Error"));
        assert_eq!(cs.restart_count, 1);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Ready"), "False");
    }

    #[test]
    fn phases_follow_get_phase() {
        let never = pod("Never", &[], &["a", "b"]);
        let s = pod_status(
            &never,
            &observe(&[("a", vec![exited(0, 0)]), ("b", vec![exited(0, 0)])]),
        );
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        assert_eq!(cond(&s, "Ready"), "False");
        let s = pod_status(
            &never,
            &observe(&[("a", vec![exited(0, 0)]), ("b", vec![exited(0, 3)])]),
        );
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        let s = pod_status(
            &never,
            &observe(&[("a", vec![running(0)]), ("b", vec![exited(0, 3)])]),
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let s = pod_status(&never, &observe(&[]));
        assert_eq!(s.phase.as_deref(), Some("Pending"));

        let on_failure = pod("OnFailure", &[], &["a"]);
        let s = pod_status(&on_failure, &observe(&[("a", vec![exited(0, 0)])]));
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        let always = pod("Always", &[], &["a"]);
        let s = pod_status(&always, &observe(&[("a", vec![exited(0, 0)])]));
        assert_eq!(s.phase.as_deref(), Some("Running"));
    }

    #[test]
    fn init_containers_gate_initialization() {
        let p = pod("Always", &["i1", "i2"], &["c"]);
        let s = pod_status(
            &p,
            &observe(&[("i1", vec![exited(0, 0)]), ("i2", vec![running(0)])]),
        );
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(cond(&s, "Initialized"), "False");
        let app = &s.container_statuses.as_ref().expect("app")[0];
        assert_eq!(
            app.state
                .as_ref()
                .and_then(|st| st.waiting.as_ref())
                .and_then(|w| w.reason.as_deref()),
            Some("ContainerCreating")
        );
        let s = pod_status(
            &p,
            &observe(&[
                ("i1", vec![exited(0, 0)]),
                ("i2", vec![exited(0, 0)]),
                ("c", vec![running(0)]),
            ]),
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Initialized"), "True");
        let never = pod("Never", &["i1"], &["c"]);
        let s = pod_status(&never, &observe(&[("i1", vec![exited(0, 1)])]));
        assert_eq!(s.phase.as_deref(), Some("Failed"));
    }
}
