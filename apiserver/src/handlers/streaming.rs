//! `pods/log` and `pods/exec`: the pod's node found through its Node object, and the request
//! passed on to that node's agent (the kubelet's paths) as upstream's `LogLocation`,
//! `ExecLocation` and `UpgradeAwareHandler` do. Logs are streamed through; an exec is an
//! upgrade: the agent's `101 Switching Protocols` is answered to the client and the two
//! connections are spliced.
//!
//! The agent is reached over plain HTTP for now: neither a serving certificate on the agent
//! nor a client certificate for the API server exists yet (upstream speaks TLS to port 10250).

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::error::{ApiError, ApiResult};
use crate::registry;
use crate::request::ResourceRequest;
use crate::server::ApiServer;

/// The annotation naming the container kubectl (and, here, the server) picks by default.
const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";
/// The kubelet's port when a Node does not publish one.
const DEFAULT_KUBELET_PORT: u16 = 10250;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an agent's error answer is read into the Status message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The query parameters of a log request the agent takes (the container is in its path).
const LOG_PARAMS: &[&str] = &[
    "follow",
    "previous",
    "timestamps",
    "tailLines",
    "sinceSeconds",
    "sinceTime",
    "limitBytes",
    "stream",
];

/// Headers an upgrade needs to reach the agent (WebSocket, and SPDY's protocol version).
const UPGRADE_HEADERS: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "x-stream-protocol-version",
];

/// Where a pod's container is served: the agent's address and the path parts.
struct Location {
    /// `None` while the pod is bound to no node.
    agent: Option<String>,
    namespace: String,
    pod: String,
    container: String,
}

fn names_of(list: Option<&Value>) -> Vec<&str> {
    list.and_then(Value::as_array)
        .map(|containers| {
            containers
                .iter()
                .filter_map(|c| c["name"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// The container a request is about: the one asked for, else the default-container annotation,
/// else the pod's only container; upstream's messages when none fits.
fn choose_container(pod: &Value, name: &str, asked: Option<&str>) -> ApiResult<String> {
    let spec = &pod["spec"];
    let containers = names_of(spec.get("containers"));
    let init = names_of(spec.get("initContainers"));
    let ephemeral = names_of(spec.get("ephemeralContainers"));
    let valid = |c: &str| containers.contains(&c) || init.contains(&c) || ephemeral.contains(&c);
    let annotated = pod["metadata"]["annotations"][DEFAULT_CONTAINER_ANNOTATION]
        .as_str()
        .filter(|c| valid(c));
    let container = match asked.filter(|c| !c.is_empty()) {
        Some(c) => c.to_string(),
        None => match (annotated, containers.as_slice()) {
            (Some(c), _) => c.to_string(),
            (None, [only]) => only.to_string(),
            (None, []) => {
                return Err(ApiError::bad_request(format!(
                    "a container name must be specified for pod {name}"
                )));
            }
            (None, many) => {
                let mut message = format!(
                    "a container name must be specified for pod {name}, choose one of: [{}]",
                    many.join(" ")
                );
                if !init.is_empty() {
                    message.push_str(&format!(
                        " or one of the init containers: [{}]",
                        init.join(" ")
                    ));
                }
                return Err(ApiError::bad_request(message));
            }
        },
    };
    if !valid(&container) {
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    Ok(container)
}

/// A Node's agent address: its InternalIP (else Hostname) and the kubelet endpoint's port.
fn agent_address(node: &Value) -> Option<String> {
    let addresses = node["status"]["addresses"].as_array()?;
    let find = |kind: &str| {
        addresses
            .iter()
            .find(|a| a["type"] == kind)
            .and_then(|a| a["address"].as_str())
            .filter(|a| !a.is_empty())
    };
    let host = find("InternalIP").or_else(|| find("Hostname"))?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Some(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

impl ApiServer {
    /// The pod, its container and its node's agent; `None` for the agent when the pod is not
    /// bound to a node yet.
    async fn locate(
        &self,
        req: &ResourceRequest,
        query: &HashMap<String, String>,
    ) -> ApiResult<Location> {
        let namespace = req.namespace.clone().unwrap_or_default();
        let name = req.name.clone().unwrap_or_default();
        let pod = self
            .get_stored(req.resource, Some(&namespace), &name)
            .await?;
        let container = choose_container(
            &pod.object,
            &name,
            query.get("container").map(String::as_str),
        )?;
        let node_name = pod.object["spec"]["nodeName"]
            .as_str()
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        let agent = match node_name {
            None => None,
            Some(node_name) => {
                let nodes = registry::lookup("", "v1", "nodes")
                    .ok_or_else(|| ApiError::internal("nodes are not served"))?;
                let node = self.get_stored(nodes, None, &node_name).await?;
                Some(agent_address(&node.object).ok_or_else(|| {
                    ApiError::internal(format!(
                        "no preferred addresses found; known addresses: {}",
                        node.object["status"]["addresses"]
                    ))
                })?)
            }
        };
        Ok(Location {
            agent,
            namespace,
            pod: name,
            container,
        })
    }

    /// `GET pods/{name}/log`: the agent's answer streamed through as text/plain.
    pub(crate) async fn pod_log(
        &self,
        req: &ResourceRequest,
        query: &HashMap<String, String>,
    ) -> ApiResult<Response> {
        let location = self.locate(req, query).await?;
        let Some(agent) = location.agent.as_deref() else {
            // As upstream: a pod no node runs yet has no logs, which is no error.
            return Ok(text_response(StatusCode::OK, Body::empty()));
        };
        let params: Vec<(&str, &str)> = LOG_PARAMS
            .iter()
            .filter_map(|key| {
                let value = query.get(*key)?;
                (!value.is_empty()).then_some((*key, value.as_str()))
            })
            .collect();
        let encoded = serde_urlencoded::to_string(&params).unwrap_or_default();
        let path = format!(
            "/containerLogs/{}/{}/{}?{encoded}",
            location.namespace, location.pod, location.container
        );
        let request = hyper::Request::get(&path)
            .header(header::HOST, agent)
            .body(Body::empty())
            .map_err(|e| ApiError::internal(format!("building the agent request: {e}")))?;
        let response = send(agent, request, false).await?;
        if !response.status().is_success() {
            return Err(agent_error(response).await);
        }
        Ok(text_response(
            StatusCode::OK,
            Body::new(response.into_body()),
        ))
    }

    /// `GET|POST pods/{name}/exec`: the upgrade passed on to the agent and, once it switches
    /// protocols, the client's connection spliced to the agent's.
    pub(crate) async fn pod_exec(
        &self,
        req: &ResourceRequest,
        method: &Method,
        raw_query: Option<&str>,
        query: &HashMap<String, String>,
        headers: &HeaderMap,
        client_upgrade: Option<OnUpgrade>,
    ) -> ApiResult<Response> {
        let location = self.locate(req, query).await?;
        let Some(agent) = location.agent.as_deref() else {
            return Err(ApiError::bad_request(format!(
                "pod {} does not have a host assigned",
                location.pod
            )));
        };
        let (Some(client_upgrade), true) = (client_upgrade, headers.contains_key(header::UPGRADE))
        else {
            return Err(ApiError::bad_request("Upgrade request required"));
        };
        let path = format!(
            "/exec/{}/{}/{}?{}",
            location.namespace,
            location.pod,
            location.container,
            raw_query.unwrap_or_default()
        );
        let mut request = hyper::Request::builder()
            .method(method.clone())
            .uri(&path)
            .header(header::HOST, agent);
        for (name, value) in headers {
            if UPGRADE_HEADERS.contains(&name.as_str()) {
                request = request.header(name, value);
            }
        }
        let request = request
            .body(Body::empty())
            .map_err(|e| ApiError::internal(format!("building the agent request: {e}")))?;
        let mut response = send(agent, request, true).await?;
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            // As upstream's proxy: the agent's refusal goes to the client as it is.
            let (parts, body) = response.into_parts();
            let mut answer = Response::new(Body::new(body));
            *answer.status_mut() = parts.status;
            if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
                answer
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, ct.clone());
            }
            return Ok(answer);
        }
        let agent_upgrade = hyper::upgrade::on(&mut response);
        let mut answer = Response::new(Body::empty());
        *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *answer.headers_mut() = response.headers().clone();
        let target = format!("{}/{}", location.namespace, location.pod);
        tokio::spawn(async move {
            let (client, agent) = match tokio::try_join!(client_upgrade, agent_upgrade) {
                Ok(both) => both,
                Err(e) => {
                    tracing::debug!(pod = %target, error = %e, "exec upgrade failed");
                    return;
                }
            };
            let mut client = TokioIo::new(client);
            let mut agent = TokioIo::new(agent);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut agent).await {
                tracing::debug!(pod = %target, error = %e, "exec stream ended");
            }
        });
        Ok(answer)
    }
}

fn text_response(status: StatusCode, body: Body) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// Sends one request to an agent over a new connection (kept for upgrades when asked).
async fn send(
    agent: &str,
    request: hyper::Request<Body>,
    upgrades: bool,
) -> ApiResult<hyper::Response<hyper::body::Incoming>> {
    let url = format!("http://{agent}{}", request.uri());
    let method = request.method().to_string();
    let failed = |e: &dyn std::fmt::Display| {
        let method = method.chars().next().map_or(String::new(), |first| {
            first.to_string() + &method[first.len_utf8()..].to_ascii_lowercase()
        });
        ApiError::internal(format!("{method} \"{url}\": {e}"))
    };
    let stream =
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(agent)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(failed(&format!("dial tcp {agent}: {e}"))),
            Err(_) => return Err(failed(&format!("dial tcp {agent}: i/o timeout"))),
        };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(&e))?;
    if upgrades {
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "agent connection failed");
            }
        });
    } else {
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "agent connection failed");
            }
        });
    }
    sender.send_request(request).await.map_err(|e| failed(&e))
}

/// An agent's error answer as the Status upstream's response checker makes of it.
async fn agent_error(response: hyper::Response<hyper::body::Incoming>) -> ApiError {
    let status = response.status();
    let body = axum::body::to_bytes(Body::new(response.into_body()), MAX_ERROR_BODY)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim_end().to_string())
        .unwrap_or_default();
    match status.as_u16() {
        400 => ApiError::bad_request(body),
        500 => ApiError::internal(format!("Internal error occurred: {body}")),
        404 => ApiError::new(404, "NotFound", body),
        code => ApiError::new(code, "Unknown", body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: &[&str], init: &[&str], default: Option<&str>) -> Value {
        let list = |names: &[&str]| names.iter().map(|n| json!({"name": n})).collect::<Vec<_>>();
        let mut pod = json!({
            "metadata": {"name": "p"},
            "spec": {"containers": list(containers), "initContainers": list(init)},
        });
        if let Some(d) = default {
            pod["metadata"]["annotations"] = json!({DEFAULT_CONTAINER_ANNOTATION: d});
        }
        pod
    }

    fn message(r: ApiResult<String>) -> Result<String, String> {
        r.map_err(|e| format!("{} {}", e.code, e.message))
    }

    #[test]
    fn containers_are_chosen_as_upstream_does() {
        assert_eq!(
            message(choose_container(&pod(&["a"], &[], None), "p", None)),
            Ok("a".into())
        );
        assert_eq!(
            message(choose_container(
                &pod(&["a", "b"], &[], None),
                "p",
                Some("b")
            )),
            Ok("b".into())
        );
        assert_eq!(
            message(choose_container(
                &pod(&["a", "b"], &["i"], None),
                "p",
                Some("i")
            )),
            Ok("i".into())
        );
        assert_eq!(
            message(choose_container(
                &pod(&["a", "b"], &[], Some("b")),
                "p",
                None
            )),
            Ok("b".into())
        );
        assert_eq!(
            message(choose_container(&pod(&["a", "b"], &["i"], None), "p", None)),
            Err("400 a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]".into())
        );
        assert_eq!(
            message(choose_container(&pod(&["a"], &[], None), "p", Some("c"))),
            Err("400 container c is not valid for pod p".into())
        );
    }

    #[test]
    fn agents_are_found_by_internal_ip_then_hostname() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10555}},
        }});
        assert_eq!(agent_address(&node), Some("10.0.0.5:10555".into()));
        let node = json!({"status": {"addresses": [{"type": "Hostname", "address": "n1"}]}});
        assert_eq!(agent_address(&node), Some("n1:10250".into()));
        assert_eq!(agent_address(&json!({"status": {}})), None);
    }
}
