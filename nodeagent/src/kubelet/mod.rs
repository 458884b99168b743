//! Skiff's kubelet: registers the Node, renews its Lease, keeps its status current, and runs
//! the pods bound to it through [`skiff_runtime`], one worker per pod (kubelet's pod workers:
//! syncing → terminating → terminated), writing each pod's status through the API.
//!
//! Map:
//! - [`node`]: the Node object, its status and Lease; [`machine`]: what the node has.
//! - [`pods`]: the pod watch, the per-pod workers and what one sync does.
//! - [`containers`]: a container as an OCI spec; [`env`]: its environment;
//!   [`volumes`]: the pod's volumes on disk; [`status`]: the pod status from what runs.
//!
//! Restarting the agent never stops a container: the runtime keeps them (each has its own
//! monitor process), and the workers find them again by the names in [`crate::naming`].

pub mod containers;
pub mod env;
pub mod machine;
pub mod node;
pub mod object_cache;
pub mod pods;
pub mod prober;
pub mod status;
pub mod volumes;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Taint;
use kube::Client;
use skiff_runtime::container::{Runtime, RuntimeConfig};

use crate::network::PodNetwork;

/// Everything the kubelet is told.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub node_name: String,
    /// The node's InternalIP; found from the host's addresses when not given.
    pub node_ip: Option<Ipv4Addr>,
    /// Pod directories (volumes, managed files) under `root_dir/pods`, logs under
    /// `root_dir/logs`.
    pub root_dir: PathBuf,
    pub runtime: RuntimeConfig,
    /// The cgroup every pod's cgroup goes under.
    pub cgroup_root: String,
    /// The port of the agent's logs/exec server, reported as the kubelet endpoint.
    pub port: u16,
    pub max_pods: u32,
    pub reserved_cpu_millis: u64,
    pub reserved_memory_bytes: u64,
    pub eviction_hard: machine::EvictionThresholds,
    pub node_labels: BTreeMap<String, String>,
    pub register_taints: Vec<Taint>,
    pub lease_duration_seconds: i32,
    pub lease_renew_interval: Duration,
    pub status_update_interval: Duration,
    /// How often a pod worker re-checks its pod when nothing happens.
    pub sync_period: Duration,
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    /// `HOST:PORT` registries pulled from over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// The cluster's pod and service ranges, for the pod network.
    pub cluster_cidr: String,
    pub service_cidr: String,
    /// Run pods without the pod network (sandboxes get only loopback): for tests of the
    /// kubelet alone.
    pub disable_pod_network: bool,
    /// kubelet's `--seccomp-default`: a container whose pod and securityContext name no
    /// seccomp profile gets the runtime's default profile instead of none.
    pub seccomp_default: bool,
}

impl KubeletConfig {
    pub fn new(node_name: &str) -> KubeletConfig {
        KubeletConfig {
            node_name: node_name.to_string(),
            node_ip: None,
            root_dir: PathBuf::from("/var/lib/skiff/agent"),
            runtime: RuntimeConfig::default(),
            cgroup_root: "skiff".into(),
            port: 10250,
            max_pods: 110,
            reserved_cpu_millis: 0,
            reserved_memory_bytes: 0,
            eviction_hard: machine::EvictionThresholds::default(),
            node_labels: BTreeMap::new(),
            register_taints: Vec::new(),
            lease_duration_seconds: 40,
            lease_renew_interval: Duration::from_secs(10),
            status_update_interval: Duration::from_secs(10),
            sync_period: Duration::from_secs(10),
            cluster_dns: Vec::new(),
            cluster_domain: "cluster.local".into(),
            insecure_registries: Vec::new(),
            cluster_cidr: "10.244.0.0/16".into(),
            service_cidr: "10.96.0.0/12".into(),
            disable_pod_network: false,
            seccomp_default: false,
        }
    }

    pub fn pods_dir(&self) -> PathBuf {
        self.root_dir.join("pods")
    }

    pub fn log_root(&self) -> PathBuf {
        self.root_dir.join("logs")
    }

    /// Where `Localhost` seccomp profiles are looked up, as kubelet's `<root-dir>/seccomp`.
    pub fn seccomp_profile_root(&self) -> PathBuf {
        self.root_dir.join("seccomp")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("{context}: {source}")]
    Api {
        context: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Runtime(#[from] skiff_runtime::container::RuntimeError),
    #[error("{0}")]
    Other(String),
}

impl KubeletError {
    pub fn api(context: &'static str, source: kube::Error) -> KubeletError {
        KubeletError::Api { context, source }
    }
}

/// What the pod workers share.
pub struct Shared {
    pub client: Client,
    pub config: KubeletConfig,
    pub runtime: Arc<Runtime>,
    pub node_ip: Ipv4Addr,
    /// The node's allocatable resources (for resourceFieldRef without a limit).
    pub allocatable: std::collections::HashMap<String, String>,
    /// The pod network, once the node has a podCIDR.
    pub network: tokio::sync::RwLock<Option<Arc<PodNetwork>>>,
    /// Events as the kubelet records them (`source.component` kubelet, `host` the node).
    pub recorder: skiff_client::record::EventRecorder,
    /// The ConfigMaps and Secrets the pods here use.
    pub sources: Arc<object_cache::PodSources>,
}

/// The node's InternalIP: the source address of the default route, else the first global
/// IPv4 address, else loopback.
pub fn detect_node_ip() -> Ipv4Addr {
    // A UDP "connect" only looks the route up: nothing is sent.
    let via_route = std::net::UdpSocket::bind("0.0.0.0:0").ok().and_then(|s| {
        s.connect("192.0.2.1:9").ok()?;
        match s.local_addr().ok()?.ip() {
            IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
            _ => None,
        }
    });
    via_route.unwrap_or(Ipv4Addr::LOCALHOST)
}

/// Runs the kubelet until `shutdown` resolves. Containers keep running after it returns.
pub async fn run(
    client: Client,
    config: KubeletConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), KubeletError> {
    for dir in [config.pods_dir(), config.log_root()] {
        std::fs::create_dir_all(&dir).map_err(|source| KubeletError::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
    }
    let node_ip = config.node_ip.unwrap_or_else(detect_node_ip);
    let machine = machine::MachineInfo::read(&config.runtime.data_dir);
    let (_, allocatable) = node::resources(&machine, &config);
    let runtime = Arc::new(Runtime::new(config.runtime.clone()));
    let registered = node::register(&client, &config).await?;
    let shared = Arc::new(Shared {
        client: client.clone(),
        config: config.clone(),
        runtime,
        node_ip,
        allocatable: allocatable.into_iter().map(|(k, v)| (k, v.0)).collect(),
        network: tokio::sync::RwLock::new(None),
        recorder: skiff_client::record::EventRecorder::new(client.clone(), "kubelet")
            .on_host(&config.node_name),
        sources: Arc::new(object_cache::PodSources::new(client.clone())),
    });
    let heartbeat = tokio::spawn(node::heartbeat(shared.clone(), machine, registered));
    let pods = tokio::spawn(pods::run(shared.clone()));
    shutdown.await;
    heartbeat.abort();
    pods.abort();
    tracing::info!("kubelet stopped; its containers keep running");
    Ok(())
}
