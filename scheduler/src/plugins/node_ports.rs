//! NodePorts: a pod asking for host ports fits only where none of them is taken. Two host ports
//! conflict when protocol and port are the same and the IPs are equal or either is `0.0.0.0`
//! (upstream's `HostPortInfo.CheckConflict`).

use crate::framework::{
    CycleState, FilterPlugin, HostPort, NodeInfo, Plugin, PodInfo, PreFilterPlugin, Snapshot,
    Status,
};
use crate::plugins::helpers::read_state;

pub struct NodePorts;

pub const NAME: &str = "NodePorts";
const PRE_FILTER_KEY: &str = "PreFilterNodePorts";

/// Upstream's reason.
pub const REASON: &str = "node(s) didn't have free ports for the requested pod ports";

const BIND_ALL: &str = "0.0.0.0";

/// Upstream's sanitized form: no IP is `0.0.0.0`, no protocol is TCP.
fn sanitized(p: &HostPort) -> (&str, &str) {
    let ip = if p.ip.is_empty() { BIND_ALL } else { &p.ip };
    let protocol = if p.protocol.is_empty() {
        "TCP"
    } else {
        &p.protocol
    };
    (ip, protocol)
}

/// Whether `wanted` conflicts with `used`.
pub fn conflicts(wanted: &HostPort, used: &HostPort) -> bool {
    if wanted.port <= 0 || wanted.port != used.port {
        return false;
    }
    let ((wip, wproto), (uip, uproto)) = (sanitized(wanted), sanitized(used));
    wproto == uproto && (wip == BIND_ALL || uip == BIND_ALL || wip == uip)
}

/// Whether all of `wanted` are free on `node`.
pub fn fits_ports(wanted: &[HostPort], node: &NodeInfo) -> bool {
    !wanted
        .iter()
        .any(|w| node.used_ports.iter().any(|u| conflicts(w, u)))
}

struct PreFilterState(Vec<HostPort>);

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilterPlugin for NodePorts {
    /// Skip (no Filter this cycle) for pods without host ports, as upstream.
    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, _snapshot: &Snapshot) -> Status {
        if pod.host_ports.is_empty() {
            return Status::skip();
        }
        state.write(PRE_FILTER_KEY, PreFilterState(pod.host_ports.clone()));
        Status::success()
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> Status {
        let PreFilterState(wanted) = match read_state(state, PRE_FILTER_KEY) {
            Ok(s) => s,
            Err(status) => return status,
        };
        if fits_ports(wanted, node) {
            Status::success()
        } else {
            Status::unschedulable(REASON)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{node, pod};

    fn with_ports(name: &str, ports: Value) -> PodInfo {
        pod(
            name,
            json!({}),
            json!({"containers": [{"name": "c", "image": "x", "ports": ports}]}),
        )
    }

    fn port(ip: &str, protocol: &str, port: i32) -> Value {
        let mut p = json!({"containerPort": 80, "hostPort": port, "protocol": protocol});
        if !ip.is_empty() {
            p["hostIP"] = json!(ip);
        }
        p
    }

    #[test]
    fn conflicts_as_upstream() {
        let cases = [
            (
                "same port, both any",
                port("", "TCP", 8080),
                port("", "TCP", 8080),
                false,
            ),
            (
                "other port",
                port("", "TCP", 8080),
                port("", "TCP", 8081),
                true,
            ),
            (
                "other protocol",
                port("", "UDP", 8080),
                port("", "TCP", 8080),
                true,
            ),
            (
                "same ip",
                port("127.0.0.1", "TCP", 8080),
                port("127.0.0.1", "TCP", 8080),
                false,
            ),
            (
                "other ip",
                port("127.0.0.1", "TCP", 8080),
                port("127.0.0.2", "TCP", 8080),
                true,
            ),
            (
                "used on all ips",
                port("", "TCP", 8080),
                port("127.0.0.1", "TCP", 8080),
                false,
            ),
            (
                "wanted on all ips",
                port("127.0.0.1", "TCP", 8080),
                port("0.0.0.0", "TCP", 8080),
                false,
            ),
            (
                "other ip, other protocol",
                port("127.0.0.1", "UDP", 8080),
                port("", "TCP", 8080),
                true,
            ),
            (
                "sctp",
                port("", "SCTP", 9000),
                port("", "SCTP", 9000),
                false,
            ),
        ];
        for (what, existing, wanted, fits) in cases {
            let mut n = node("n", json!({}), json!({}), json!({}));
            n.add_pod(Arc::new(with_ports("existing", json!([existing]))));
            let p = with_ports("p", json!([port("", "TCP", 1), wanted]));
            let mut state = CycleState::new();
            assert!(
                NodePorts
                    .pre_filter(&mut state, &p, &Snapshot::default())
                    .is_success()
            );
            let status = NodePorts.filter(&state, &p, &n);
            if fits {
                assert_eq!(status.code, Code::Success, "{what}");
            } else {
                assert_eq!(status.code, Code::Unschedulable, "{what}");
                assert_eq!(status.reasons, vec![REASON.to_string()], "{what}");
            }
        }
    }

    #[test]
    fn pods_without_host_ports_skip_the_filter() {
        let p = with_ports("p", json!([{"containerPort": 80}]));
        let status = NodePorts.pre_filter(&mut CycleState::new(), &p, &Snapshot::default());
        assert_eq!(status.code, Code::Skip);
    }

    #[test]
    fn unset_ip_and_protocol_are_any_and_tcp() {
        let any_tcp = HostPort {
            ip: String::new(),
            protocol: String::new(),
            port: 80,
        };
        let explicit = HostPort {
            ip: "10.0.0.1".into(),
            protocol: "TCP".into(),
            port: 80,
        };
        let zero = HostPort {
            port: 0,
            ..explicit.clone()
        };
        assert!(conflicts(&any_tcp, &explicit));
        assert!(conflicts(&explicit, &any_tcp));
        assert!(!conflicts(&zero, &zero));
    }
}
