//! The pieces `skiff server`, `skiff agent` and `skiff up` are made of: the storage backend,
//! the API server with its admin kubeconfig, the scheduler and the controller manager as
//! clients of the server in the same process, and the node agent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use skiff_apiserver::server::{ApiServer, ServerConfig, write_kubeconfig};
use skiff_storage::Storage;

/// What the control plane of one process is: the API server and the components it hosts.
pub struct ControlPlaneConfig {
    /// The embedded store (unless `etcd_servers` is set) and the admin kubeconfig.
    pub data_dir: PathBuf,
    /// Use etcd at these URLs instead of the embedded store.
    pub etcd_servers: Vec<String>,
    pub server: ServerConfig,
    /// Run the scheduler in this process.
    pub scheduler: bool,
    /// Run the controller manager in this process, so configured.
    pub controllers: Option<skiff_controller::ControllerManagerConfig>,
    /// Hold the components' Leases. A lone process has no one to share them with, and after
    /// a restart it would wait out its own previous Lease (15 s) before scheduling.
    pub leader_elect: bool,
}

/// Opens the store, starts the API server (not serving yet: [`ApiServer::serve`]), writes
/// `DATA_DIR/kubeconfig` and starts the scheduler and the controller manager on their own
/// threads. Call inside the runtime that will serve the API.
pub async fn start_control_plane(config: ControlPlaneConfig) -> anyhow::Result<Arc<ApiServer>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let storage = open_storage(
        &config.data_dir,
        &config.etcd_servers,
        config.server.compaction_retain,
    )
    .await?;
    let listen = config.server.listen;
    let server = ApiServer::new(storage, config.server)
        .await
        .context("starting the API server")?;
    let kubeconfig = kubeconfig_path(&config.data_dir);
    write_kubeconfig(&kubeconfig, &format!("http://{listen}"))
        .context("writing the admin kubeconfig")?;
    tracing::info!(kubeconfig = %kubeconfig.display(), "admin kubeconfig written");
    if config.scheduler {
        let mut scheduler_config = skiff_scheduler::SchedulerConfig::default();
        if !config.leader_elect {
            scheduler_config.leader_election = None;
        }
        // Two workers, so that decoding the watches and finishing bindings overlap the
        // scheduling cycles.
        spawn_on_own_runtime(
            "skiff-scheduler",
            2,
            None,
            in_process_scheduler(loopback_client(&server), scheduler_config),
        )?;
    }
    if let Some(mut manager_config) = config.controllers {
        if !config.leader_elect {
            manager_config.leader_election = None;
        }
        spawn_on_own_runtime(
            "skiff-controller-manager",
            1,
            None,
            in_process_controller_manager(loopback_client(&server), manager_config),
        )?;
    }
    Ok(server)
}

/// Where the admin kubeconfig of the server with data in `data_dir` is.
pub fn kubeconfig_path(data_dir: &Path) -> PathBuf {
    data_dir.join("kubeconfig")
}

async fn open_storage(
    data_dir: &Path,
    etcd_servers: &[String],
    retain_revisions: i64,
) -> anyhow::Result<Arc<dyn Storage>> {
    if !etcd_servers.is_empty() {
        let store = skiff_storage::etcd::EtcdStore::connect(etcd_servers)
            .await
            .with_context(|| format!("connecting to etcd at {}", etcd_servers.join(",")))?;
        return Ok(Arc::new(store));
    }
    let dir = data_dir.join("store");
    // The embedded store keeps its history in memory, so it trims it to the retained revisions
    // itself every few seconds instead of waiting for the API server's compactor (every
    // --compaction-interval-seconds, as for etcd): at a few thousand writes/s five minutes of
    // history would be gigabytes.
    let store = skiff_storage::embedded::EmbeddedStore::open(
        &dir,
        skiff_storage::embedded::EmbeddedOptions {
            retain_revisions: u64::try_from(retain_revisions.max(1)).unwrap_or(10_000),
            compaction_interval: std::time::Duration::from_secs(5),
            ..Default::default()
        },
    )
    .with_context(|| format!("opening the embedded store in {}", dir.display()))?;
    Ok(Arc::new(store))
}

/// Runs an in-process component on its own threads with its own runtime. As one task among
/// the request handlers the scheduler was starved whenever requests queued up (binding lagged
/// seconds behind pod creates in the scheduler benchmark); as threads the kernel shares the
/// cores fairly.
pub fn spawn_on_own_runtime(
    name: &'static str,
    workers: usize,
    max_blocking_threads: Option<usize>,
    component: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(workers).thread_name(name);
            if let Some(threads) = max_blocking_threads {
                builder.max_blocking_threads(threads);
            }
            match builder.enable_all().build() {
                Ok(runtime) => runtime.block_on(component),
                Err(e) => tracing::error!(error = %e, component = name, "cannot start its runtime"),
            }
        })
        .with_context(|| format!("starting the {name} thread"))?;
    Ok(())
}

/// A client of this process's API whose requests go straight into the server's router: the
/// same REST API, authentication, authorization, admission and storage path as over the
/// network, without a TCP connection and HTTP/1 framing in between (for the scheduler that was
/// a fifth of its CPU time and as much of the server's again in the scheduler benchmark). The
/// components in `skiff server` and `skiff up` use it; `skiff scheduler` connects through its
/// kubeconfig.
///
/// Each request is handled as a task of the runtime this is called in (the server's), not in
/// the calling component's: the in-process scheduler runs on its own thread, and with its
/// binding requests handled there too that one thread fell seconds behind the pod creates in
/// the scheduler benchmark (paired runs: 730–735 → 819–863 pods/s with this, on a loaded
/// machine).
pub fn loopback_client(server: &Arc<ApiServer>) -> kube::Client {
    use tower::ServiceExt;
    let router = server.router();
    let runtime = tokio::runtime::Handle::current();
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let task = runtime.spawn(router.clone().oneshot(request));
        async move {
            match task.await {
                Ok(Ok(response)) => Ok(response),
                Ok(Err(never)) => match never {},
                Err(e) => Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
            }
        }
    });
    kube::Client::new(service, "default")
}

/// The scheduler as a client of this process's API, restarted if it stops (leadership lost,
/// say), as a supervisor would restart `skiff scheduler`.
async fn in_process_scheduler(client: kube::Client, config: skiff_scheduler::SchedulerConfig) {
    loop {
        if let Err(e) = skiff_scheduler::run(client.clone(), config.clone()).await {
            tracing::warn!(error = %format!("{e:#}"), "scheduler stopped; restarting");
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The controller manager as a client of this process's API, restarted if it stops, as a
/// supervisor would restart `skiff controller-manager`.
async fn in_process_controller_manager(
    client: kube::Client,
    config: skiff_controller::ControllerManagerConfig,
) {
    loop {
        if let Err(e) = skiff_controller::run(client.clone(), config.clone()).await {
            tracing::warn!(error = %format!("{e:#}"), "controller manager stopped; restarting");
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// A client of the API server a kubeconfig file points at.
pub async fn kube_client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    // kube's rustls needs a process-wide crypto provider (ring, as the workspace pins it).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let parsed = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config =
        kube::Config::from_custom_kubeconfig(parsed, &kube::config::KubeConfigOptions::default())
            .await
            .with_context(|| format!("using {}", kubeconfig.display()))?;
    kube::Client::try_from(config).context("building the API client")
}

/// How many threads the node agent's blocking work (runtime, network, files) may use. Its
/// pod workers block mostly on other processes (monitors, `ip`) doing CPU work, so more
/// threads than this only add scheduling and, through the allocator's per-thread heaps, fresh
/// memory to fault in: a burst of 100 pods spent a tenth of the agent's CPU zeroing new
/// huge pages with tokio's default of 512.
pub const AGENT_BLOCKING_THREADS: usize = 16;

/// The async runtime the node agent runs on, alone in its process (`skiff agent`).
pub fn agent_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(AGENT_BLOCKING_THREADS)
        .enable_all()
        .build()
}

/// The node agent for this machine until `shutdown` resolves.
pub async fn run_agent(
    client: kube::Client,
    config: skiff_nodeagent::kubelet::KubeletConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    skiff_nodeagent::run(client, config, shutdown)
        .await
        .context("node agent stopped")
}

/// This machine's name, as the Node is called by default (lower case, as kubelet does).
pub fn hostname() -> anyhow::Result<String> {
    let name =
        std::fs::read_to_string("/proc/sys/kernel/hostname").context("reading the host name")?;
    Ok(name.trim().to_lowercase())
}

/// SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
