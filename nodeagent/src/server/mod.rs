//! The agent's own HTTP port, with the kubelet's paths: container logs
//! (`/containerLogs/{namespace}/{pod}/{container}`) and exec (`/exec/{namespace}/{pod}/{container}`,
//! a WebSocket speaking the `v5.channel.k8s.io` / `v4.channel.k8s.io` stream protocols), which the
//! API server's `pods/log` and `pods/exec` proxy to, and `/healthz`.
//!
//! The server shares no memory with the pod workers: it finds containers by the CRI labels and
//! log files by the paths of [`crate::naming`]. Plain HTTP for now (the kubelet serves TLS and
//! authorizes the API server's client certificate; neither exists in Skiff yet).

mod exec;
mod logs;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use skiff_runtime::container::{ContainerState, Runtime};

use crate::naming;

pub use exec::{STREAM_PROTOCOL_V4, STREAM_PROTOCOL_V5};

/// What the server reads: the runtime's containers and the pods' log files.
#[derive(Clone)]
pub struct ServerContext {
    pub runtime: Arc<Runtime>,
    /// The root of the pods' log directories (`/var/log/pods` on a kubelet).
    pub log_root: PathBuf,
}

/// Errors of the server as a whole (a request's own errors are its HTTP answer).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("serving the agent's HTTP port failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// The routes, for [`serve`] or for serving inside another server.
pub fn router(ctx: ServerContext) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(logs::container_logs),
        )
        .route(
            "/exec/{namespace}/{pod}/{container}",
            get(exec::exec).post(exec::exec),
        )
        .with_state(Arc::new(ctx))
}

/// Serves on `listener` until `shutdown` completes (open log streams and exec sessions end
/// with the process, not with the listener).
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: ServerContext,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "node agent server listening");
    }
    axum::serve(listener, router(ctx))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServerError::Serve)
}

/// A failed request: its status and the plain-text message the kubelet would write.
#[derive(Debug)]
pub(crate) struct HttpError {
    status: StatusCode,
    message: String,
}

impl HttpError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        HttpError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        tracing::debug!(status = %self.status, message = %self.message, "request failed");
        (self.status, self.message).into_response()
    }
}

/// One runtime container of a pod's container, as its labels and id describe it.
#[derive(Debug, Clone)]
pub(crate) struct PodContainer {
    pub pod_uid: String,
    pub attempt: u32,
    pub state: ContainerState,
}

/// The runtime containers (not sandboxes) of `namespace/pod`'s container `container`, of
/// every pod UID that had that name, newest first.
pub(crate) async fn find_containers(
    runtime: &Arc<Runtime>,
    namespace: &str,
    pod: &str,
    container: &str,
) -> Result<Vec<PodContainer>, HttpError> {
    let runtime = Arc::clone(runtime);
    let all = tokio::task::spawn_blocking(move || runtime.list())
        .await
        .map_err(|e| HttpError::internal(format!("listing containers: {e}")))?
        .map_err(|e| HttpError::internal(format!("listing containers: {e}")))?;
    let mut found: Vec<PodContainer> = all
        .into_iter()
        .filter(|c| {
            let labels: &BTreeMap<String, String> = &c.stored.labels;
            let is = |key: &str, value: &str| labels.get(key).is_some_and(|v| v == value);
            is(naming::LABEL_POD_NAMESPACE, namespace)
                && is(naming::LABEL_POD_NAME, pod)
                && is(naming::LABEL_CONTAINER_NAME, container)
                && !is(naming::LABEL_CONTAINER_KIND, "sandbox")
        })
        .filter_map(|state| {
            let (uid, _, attempt) = naming::parse_container_id(state.id())?;
            Some(PodContainer {
                pod_uid: uid.to_string(),
                attempt,
                state,
            })
        })
        .collect();
    found.sort_by(|a, b| {
        (b.state.stored.created, b.attempt).cmp(&(a.state.stored.created, a.attempt))
    });
    Ok(found)
}
