//! The HTTP server: configuration, start-up (system namespaces, the `kubernetes` Service),
//! the request front (body limits, health, OpenAPI, discovery, authn/authz) and the
//! kubeconfig it writes for clients.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use skiff_storage::Storage;

use crate::admission::AdmissionChain;
use crate::allocator::{Cidr, ServiceAllocator};
use crate::auth::{AlwaysAllow, AnonymousAdmin, Attributes, Authenticator, Authorizer};
use crate::discovery;
use crate::error::{ApiError, ApiResult};
use crate::objects::ObjectStore;
use crate::openapi::OpenApi;
use crate::registry::{RESOURCES, Subresource};
use crate::request::{self, Target};
use crate::watch::WatchCache;

/// Request bodies larger than this are refused with 413, as upstream (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub service_cidr: String,
    /// How often watchers that allow bookmarks get one.
    pub bookmark_interval: Duration,
    /// Events kept in memory for watchers resuming from a recent resourceVersion.
    pub watch_cache_capacity: usize,
    /// How often the store's history is compacted, as upstream's --etcd-compaction-interval.
    pub compaction_interval: Duration,
    /// Revisions of history kept by each compaction; older ones answer 410 Gone.
    pub compaction_retain: i64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 6443)),
            service_cidr: "10.96.0.0/12".to_string(),
            bookmark_interval: Duration::from_secs(30),
            watch_cache_capacity: 10_000,
            compaction_interval: Duration::from_secs(300),
            compaction_retain: 10_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Cidr(#[from] crate::allocator::CidrError),
    #[error("storage: {0}")]
    Storage(#[from] skiff_storage::StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bootstrapping the cluster failed: {0}")]
    Bootstrap(String),
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

pub struct ApiServer {
    pub(crate) store: ObjectStore,
    pub(crate) cache: Arc<WatchCache>,
    pub(crate) openapi: OpenApi,
    pub(crate) allocator: ServiceAllocator,
    pub(crate) admission: AdmissionChain,
    authn: Box<dyn Authenticator>,
    authz: Box<dyn Authorizer>,
    pub(crate) config: ServerConfig,
}

impl ApiServer {
    /// Build the server over a store and bootstrap the cluster's built-in objects.
    pub async fn new(
        storage: Arc<dyn Storage>,
        config: ServerConfig,
    ) -> Result<Arc<ApiServer>, ServerError> {
        let cidr = Cidr::parse(&config.service_cidr)?;
        let store = ObjectStore::new(storage);
        let cache = WatchCache::start(store.clone(), config.watch_cache_capacity).await?;
        let started = std::time::Instant::now();
        let resources: Vec<_> = RESOURCES.iter().map(|r| r.openapi()).collect();
        let openapi = OpenApi::build(&resources);
        tracing::debug!(elapsed = ?started.elapsed(), "built OpenAPI documents");
        let server = Arc::new(ApiServer {
            admission: AdmissionChain::new(store.clone(), &cache),
            store,
            cache,
            openapi,
            allocator: ServiceAllocator::new(cidr),
            authn: Box::new(AnonymousAdmin),
            authz: Box::new(AlwaysAllow),
            config,
        });
        server.bootstrap().await?;
        tokio::spawn(compactor(
            Arc::clone(server.store.raw()),
            server.config.compaction_interval,
            server.config.compaction_retain,
        ));
        Ok(server)
    }

    /// The system namespaces and the `kubernetes` Service, created if missing.
    async fn bootstrap(&self) -> Result<(), ServerError> {
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            self.ensure("namespaces", None, obj).await?;
        }
        let svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                          "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {
                "clusterIP": self.allocator.cidr.first().to_string(),
                "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                           "targetPort": self.config.listen.port()}],
                "sessionAffinity": "None", "type": "ClusterIP",
            }
        });
        self.ensure("services", Some("default"), svc).await?;
        Ok(())
    }

    async fn ensure(&self, plural: &str, ns: Option<&str>, obj: Value) -> Result<(), ServerError> {
        let res = crate::registry::lookup("", "v1", plural)
            .ok_or_else(|| ServerError::Bootstrap(format!("no resource {plural}")))?;
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if self.store.get(&res.key(ns, &name)).await?.is_some() {
            return Ok(());
        }
        let ctx = crate::handlers::WriteContext::system();
        match self.create_object(res, ns, obj, &ctx).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 => Ok(()),
            Err(e) => Err(ServerError::Bootstrap(e.to_string())),
        }
    }

    fn authorize(&self, headers: &HeaderMap, req: &request::ResourceRequest) -> ApiResult<()> {
        let user = self.authn.authenticate(headers)?;
        self.authz.authorize(&Attributes {
            user: &user,
            verb: req.verb,
            group: req.resource.group,
            resource: req.resource.plural,
            subresource: req.subresource.map(|s| s.name()),
            namespace: req.namespace.as_deref(),
            name: req.name.as_deref(),
        })
    }

    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .fallback(dispatch)
            .with_state(Arc::clone(self))
            .layer(axum::extract::DefaultBodyLimit::disable())
    }

    /// Serve until the process ends.
    pub async fn serve(self: Arc<Self>) -> Result<(), ServerError> {
        let addr = self.config.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Listen { addr, source })?;
        self.serve_on(listener).await
    }

    /// [`ApiServer::serve`] on a listener bound beforehand (to fail early when the port is
    /// taken, before anything else starts).
    pub async fn serve_on(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
    ) -> Result<(), ServerError> {
        let addr = listener.local_addr().unwrap_or(self.config.listen);
        tracing::info!(%addr, "skiff apiserver listening");
        axum::serve(listener, self.router())
            .await
            .map_err(ServerError::Serve)
    }
}

/// Compact history older than `retain` revisions every `interval`, for both backends.
async fn compactor(store: Arc<dyn Storage>, interval: Duration, retain: i64) {
    let mut ticker = tokio::time::interval(interval);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let (current, compacted) = match (
            store.current_revision().await,
            store.compacted_revision().await,
        ) {
            (Ok(c), Ok(k)) => (c, k),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "compaction skipped");
                continue;
            }
        };
        let target = current - retain;
        if target > compacted {
            match store.compact(target).await {
                Ok(()) => tracing::debug!(revision = target, "compacted"),
                Err(e) => tracing::warn!(error = %e, "compaction failed"),
            }
        }
    }
}

/// Write an admin kubeconfig pointing at `server_url`.
pub fn write_kubeconfig(path: &Path, server_url: &str) -> Result<(), ServerError> {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server_url}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: admin\n    namespace: default\ncurrent-context: skiff\nusers:\n- name: admin\n  user: {{}}\n"
    );
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ServerError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| ServerError::Write {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    // Straight into bytes: `to_string` goes through `fmt::Write`, a call per token.
    json_bytes_response(status, serde_json::to_vec(body).unwrap_or_default())
}

/// A response whose body is already encoded JSON.
pub(crate) fn json_bytes_response(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut resp = (status, bytes::Bytes::from(bytes)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn parse_query(uri: &axum::http::Uri) -> HashMap<String, String> {
    uri.query()
        .map(|q| {
            url_decode_pairs(q)
                .into_iter()
                .collect::<HashMap<String, String>>()
        })
        .unwrap_or_default()
}

fn url_decode_pairs(q: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(q).unwrap_or_default()
}

async fn dispatch(State(server): State<Arc<ApiServer>>, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let method = parts.method.clone();
    let uri = parts.uri.clone();
    let path = uri.path().to_string();
    let query = parse_query(&uri);
    let headers = parts.headers.clone();
    // Present when the connection can switch protocols (pods/exec); `None` in process.
    let upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let incoming = Incoming {
        method: &method,
        path: &path,
        raw_query: uri.query(),
        query: &query,
        headers: &headers,
        upgrade,
    };
    let result = route(&server, incoming, body).await;
    match result {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, %path, code = e.code, message = %e.message, "request failed");
            e.into_response()
        }
    }
}

/// A request's head, as routing reads it.
struct Incoming<'a> {
    method: &'a Method,
    path: &'a str,
    raw_query: Option<&'a str>,
    query: &'a HashMap<String, String>,
    headers: &'a HeaderMap,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
}

async fn route(server: &Arc<ApiServer>, incoming: Incoming<'_>, body: Body) -> ApiResult<Response> {
    let Incoming {
        method,
        path,
        raw_query,
        query,
        headers,
        upgrade,
    } = incoming;
    match path {
        "/healthz" | "/livez" => return Ok((StatusCode::OK, "ok").into_response()),
        "/readyz" => {
            return Ok(if server.store.raw().ready().await {
                (StatusCode::OK, "ok").into_response()
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "[-]storage failed: not ready\nreadyz check failed",
                )
                    .into_response()
            });
        }
        "/version" => return Ok(json_response(StatusCode::OK, &version_info())),
        "/openapi/v2" => {
            // client-go asks for (and only reads) the protobuf form; browsers get JSON.
            let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
            let (content_type, body) = server.openapi.v2_for_accept(accept);
            let mut resp = bytes_response(body, content_type);
            resp.headers_mut()
                .insert(header::VARY, HeaderValue::from_static("Accept"));
            return Ok(resp);
        }
        "/openapi/v3" | "/openapi/v3/" => {
            return Ok(bytes_response(
                server.openapi.v3_index(),
                "application/json",
            ));
        }
        "/" => {
            let paths = json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2", "/openapi/v3", "/readyz", "/version"]});
            return Ok(json_response(StatusCode::OK, &paths));
        }
        _ => {}
    }
    if let Some(doc) = path.strip_prefix("/openapi/v3/") {
        return match server.openapi.v3_document(doc) {
            Some(b) => Ok(bytes_response(b, "application/json")),
            None => Err(ApiError::new(
                404,
                "NotFound",
                format!("the server could not find the requested resource ({path})"),
            )),
        };
    }
    if !(path == "/api"
        || path.starts_with("/api/")
        || path == "/apis"
        || path.starts_with("/apis/"))
    {
        return Err(ApiError::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        ));
    }
    let target = request::parse(method, path, query)?;
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    match target {
        Target::Discovery(d) => Ok(discovery_response(server, d, &accept, method)?),
        Target::Resource(req) => {
            server.authorize(headers, &req)?;
            match req.subresource {
                Some(Subresource::Log) => return server.pod_log(&req, query).await,
                Some(Subresource::Exec) => {
                    return server
                        .pod_exec(&req, method, raw_query, query, headers, upgrade)
                        .await;
                }
                _ => {}
            }
            let bytes = read_body(body).await?;
            server.handle(req, query, headers, &accept, bytes).await
        }
    }
}

async fn read_body(body: Body) -> ApiResult<bytes::Bytes> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            let too_big = std::error::Error::source(&e)
                .map(|s| s.to_string().contains("length limit"))
                .unwrap_or(false)
                || e.to_string().contains("length limit");
            if too_big {
                ApiError::new(
                    413,
                    "RequestEntityTooLarge",
                    format!("Request entity too large: limit is {MAX_BODY_BYTES}"),
                )
            } else {
                ApiError::bad_request(format!("reading the request body failed: {e}"))
            }
        })
}

fn bytes_response(bytes: bytes::Bytes, content_type: &'static str) -> Response {
    let mut resp = (StatusCode::OK, bytes).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn discovery_response(
    server: &ApiServer,
    d: request::DiscoveryPath,
    accept: &str,
    method: &Method,
) -> ApiResult<Response> {
    if method != Method::GET {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        )));
    }
    use request::DiscoveryPath::*;
    let aggregated = discovery::wants_aggregated(accept);
    if let (Some(version), CoreVersions | Groups) = (aggregated, &d) {
        let body = discovery::aggregated(matches!(d, CoreVersions), version);
        let ct = if version == "v2" {
            discovery::AGGREGATED_V2
        } else {
            discovery::AGGREGATED_V2BETA1
        };
        let mut resp = (StatusCode::OK, body.to_string()).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        return Ok(resp);
    }
    let body = match d {
        CoreVersions => discovery::core_versions(&server.config.listen.to_string()),
        Groups => discovery::groups(),
        Group(g) => discovery::group(&g),
        Resources { group, version } => discovery::resources(&group, &version),
    };
    Ok(json_response(StatusCode::OK, &body))
}

fn version_info() -> Value {
    json!({
        "major": "1",
        "minor": "35",
        "gitVersion": concat!("v1.35.0-skiff.", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if std::env::consts::ARCH == "x86_64" { "amd64" } else { std::env::consts::ARCH }),
    })
}
