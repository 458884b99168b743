//! `skiff`: one binary for every Skiff component. `skiff server` runs the API server (with the
//! scheduler and the controller manager in process).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use skiff_apiserver::server::ServerConfig;

#[cfg(not(feature = "system-allocator"))]
#[path = "../allocator.rs"]
mod allocator;
#[path = "../cluster.rs"]
mod cluster;
#[path = "../up.rs"]
mod up;

use cluster::ControlPlaneConfig;

#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: allocator::PerProcessAllocator = allocator::PerProcessAllocator::new();

#[derive(Parser)]
#[command(
    name = "skiff",
    version,
    about = "A small Kubernetes: one binary, the real Kubernetes API"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Kubernetes API server.
    Server(ServerArgs),
    /// Skiff's container runtime: images and runc-compatible container verbs.
    Runtime(skiff_runtime::cli::RuntimeArgs),
    /// Run the scheduler against an API server.
    Scheduler(SchedulerArgs),
    /// Run the controller manager against an API server.
    ControllerManager(ControllerManagerArgs),
    /// Run the node agent (kubelet, pod network, service proxy) for this machine.
    Agent(AgentArgs),
    /// Start a single-node cluster on this machine in the background (API server, scheduler,
    /// controllers and node agent in one process) and point kubectl at it.
    Up(up::UpArgs),
    /// Stop the cluster `skiff up` started and remove its pods, network, mounts and cgroups.
    Down(up::DownArgs),
}

#[derive(clap::Args)]
struct AgentArgs {
    /// The kubeconfig to reach the API server with.
    #[arg(long, required_unless_present = "cleanup")]
    kubeconfig: Option<PathBuf>,
    /// The Node's name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// The node's InternalIP (default: the source address of the default route).
    #[arg(long)]
    node_ip: Option<std::net::Ipv4Addr>,
    /// Pod directories, logs and the pod network's records.
    #[arg(long, default_value = "/var/lib/skiff/agent")]
    root_dir: PathBuf,
    /// The runtime's container state (tmpfs: gone at reboot like the containers).
    #[arg(long, default_value = "/run/skiff/runtime")]
    runtime_state_dir: PathBuf,
    /// The runtime's images and writable layers.
    #[arg(long, default_value = "/var/lib/skiff/runtime")]
    runtime_data_dir: PathBuf,
    /// The cgroup all pods go under.
    #[arg(long, default_value = "skiff")]
    cgroup_root: String,
    /// The port of the agent's logs/exec server.
    #[arg(long, default_value_t = 10250)]
    port: u16,
    /// The cluster's pod range (each node's podCIDR is part of it).
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: String,
    /// The cluster's Service range.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: String,
    /// Cluster DNS server addresses for ClusterFirst pods.
    #[arg(long, value_delimiter = ',')]
    cluster_dns: Vec<std::net::IpAddr>,
    /// `HOST:PORT` registries pulled from over plain HTTP.
    #[arg(long, value_delimiter = ',')]
    insecure_registry: Vec<String>,
    /// Labels for the Node (`key=value`, comma-separated).
    #[arg(long, value_delimiter = ',')]
    node_labels: Vec<String>,
    /// Resources kept for the system, out of allocatable (`cpu=250m,memory=256Mi`).
    #[arg(long, default_value = "")]
    system_reserved: String,
    /// Hard eviction thresholds: the node reports pressure below them (and keeps them out of
    /// allocatable).
    #[arg(long, default_value = "memory.available<100Mi,nodefs.available<10%")]
    eviction_hard: String,
    /// Run pods without the pod network (loopback only): for testing the kubelet alone.
    #[arg(long)]
    no_pod_network: bool,
    /// Give containers that name no seccomp profile the runtime's default one (Docker's)
    /// instead of none, as kubelet's flag of the same name.
    #[arg(long)]
    seccomp_default: bool,
    /// Remove every rule, route, interface and mount Skiff made on this node, then exit.
    #[arg(long)]
    cleanup: bool,
}

#[derive(clap::Args)]
struct ControllerManagerArgs {
    /// The kubeconfig to reach the API server with.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Hold the kube-system/kube-controller-manager Lease while reconciling (set false for a
    /// lone controller manager).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    #[command(flatten)]
    node_ipam: NodeIpamArgs,
    #[command(flatten)]
    node_lifecycle: NodeLifecycleArgs,
}

/// kube-controller-manager's node lifecycle and pod GC flags (durations as Go writes them:
/// `40s`, `5m`, `1m30s`, `500ms`).
#[derive(clap::Args, Clone)]
struct NodeLifecycleArgs {
    /// How often node health is checked.
    #[arg(long, default_value = "5s", value_parser = parse_go_duration)]
    node_monitor_period: std::time::Duration,
    /// How long a node may go without posting status or renewing its Lease before it is
    /// marked Unknown (and, through taints, its pods evicted).
    #[arg(long, default_value = "40s", value_parser = parse_go_duration)]
    node_monitor_grace_period: std::time::Duration,
    /// The same for a node that never posted a Ready condition.
    #[arg(long, default_value = "1m", value_parser = parse_go_duration)]
    node_startup_grace_period: std::time::Duration,
    /// Nodes per second that get the NoExecute taint in a healthy zone.
    #[arg(long, default_value_t = 0.1)]
    node_eviction_rate: f64,
    /// The same in a large zone where most nodes are unhealthy.
    #[arg(long, default_value_t = 0.01)]
    secondary_node_eviction_rate: f64,
    /// Terminated pods kept before the oldest are deleted (0: keep all).
    #[arg(long, default_value_t = 12_500)]
    terminated_pod_gc_threshold: usize,
}

/// The controller manager's configuration from its flags.
fn controller_manager_config(
    ipam: &NodeIpamArgs,
    lifecycle: &NodeLifecycleArgs,
) -> skiff_controller::ControllerManagerConfig {
    skiff_controller::ControllerManagerConfig {
        node_ipam: ipam.config(),
        node_lifecycle: skiff_controller::NodeLifecycleConfig {
            node_monitor_period: lifecycle.node_monitor_period,
            node_monitor_grace_period: lifecycle.node_monitor_grace_period,
            node_startup_grace_period: lifecycle.node_startup_grace_period,
            node_eviction_rate: lifecycle.node_eviction_rate,
            secondary_node_eviction_rate: lifecycle.secondary_node_eviction_rate,
            ..Default::default()
        },
        pod_gc: skiff_controller::PodGcConfig {
            terminated_pod_gc_threshold: lifecycle.terminated_pod_gc_threshold,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A duration as Go's `time.ParseDuration` reads it (the units kube-controller-manager's
/// flags use: `ms`, `s`, `m`, `h`), e.g. `40s` or `1m30s`.
fn parse_go_duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{text:?} is not a duration such as 40s, 5m or 1m30s");
    let mut total = std::time::Duration::ZERO;
    let mut rest = text.trim();
    if rest == "0" {
        return Ok(total);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += std::time::Duration::try_from_secs_f64(number * seconds).map_err(|_| bad())?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// kube-controller-manager's node IPAM flags.
#[derive(clap::Args, Clone)]
struct NodeIpamArgs {
    /// Give every node a pod CIDR (spec.podCIDR) from --cluster-cidr.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    allocate_node_cidrs: bool,
    /// The pods' IPv4 range, cut into one block per node.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: skiff_controller::Ipv4Cidr,
    /// The prefix length of each node's block.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
}

impl NodeIpamArgs {
    fn config(&self) -> Option<skiff_controller::NodeIpamConfig> {
        self.allocate_node_cidrs
            .then_some(skiff_controller::NodeIpamConfig {
                cluster_cidr: self.cluster_cidr,
                node_mask_size: self.node_cidr_mask_size,
            })
    }
}

#[derive(clap::Args)]
struct SchedulerArgs {
    /// The kubeconfig to reach the API server with.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// Schedule the pods whose spec.schedulerName is this.
    #[arg(long, default_value = "default-scheduler")]
    scheduler_name: String,
    /// Hold the kube-system/kube-scheduler Lease while scheduling (set false for a lone scheduler).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Where the embedded store and the admin kubeconfig live.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// Address to serve the API on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// Use etcd at these URLs (comma-separated) instead of the embedded store.
    #[arg(long, value_delimiter = ',')]
    etcd_servers: Vec<String>,
    /// The range Service ClusterIPs are allocated from.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cluster_ip_range: String,
    /// Seconds between watch bookmarks.
    #[arg(long, default_value_t = 30)]
    bookmark_interval_seconds: u64,
    /// Seconds between compactions of the store's history.
    #[arg(long, default_value_t = 300)]
    compaction_interval_seconds: u64,
    /// Revisions of history each compaction keeps (older watches get 410 Gone).
    #[arg(long, default_value_t = 10_000)]
    compaction_retain_revisions: i64,
    /// Events the watch cache keeps in memory.
    #[arg(long, default_value_t = 10_000)]
    watch_cache_size: usize,
    /// Run the scheduler in this process (as `skiff scheduler`, through the API).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    scheduler: bool,
    /// Run the controller manager in this process (as `skiff controller-manager`, through the
    /// API).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    controllers: bool,
    #[command(flatten)]
    node_ipam: NodeIpamArgs,
    #[command(flatten)]
    node_lifecycle: NodeLifecycleArgs,
}

fn main() -> anyhow::Result<()> {
    // The runtime's own processes (container monitors, exec helpers, pause) re-execute this
    // binary: serve them before anything else starts a thread.
    if let Some(code) = skiff_runtime::reexec::dispatch() {
        std::process::exit(code);
    }
    // No transparent huge pages for Skiff's own processes: mimalloc asks for them, and each
    // thread's fresh 2 MiB of heap then counts whole (80 MB idle for `skiff up` with them,
    // 56 MB without; BENCHMARKS.md). Containers get the host's setting back before their exec.
    skiff_runtime::reexec::set_huge_pages(false);
    let cli = Cli::parse();
    // `skiff up` and `skiff down` talk to a person: their progress is what they print, and the
    // client's connection errors while `up` polls the starting server are expected.
    let default_filter = match &cli.command {
        Command::Up(args) if !args.is_foreground() => "warn,kube_client=off",
        Command::Down(_) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        // Synchronous and single-threaded: container monitors are forked from this process.
        Command::Runtime(args) => std::process::exit(skiff_runtime::cli::run(args)),
        Command::Server(args) => tokio::runtime::Runtime::new()
            .context("starting the async runtime")?
            .block_on(server(args)),
        Command::Scheduler(args) => tokio::runtime::Runtime::new()
            .context("starting the async runtime")?
            .block_on(scheduler(args)),
        Command::ControllerManager(args) => tokio::runtime::Runtime::new()
            .context("starting the async runtime")?
            .block_on(controller_manager(args)),
        Command::Agent(args) => cluster::agent_runtime()
            .context("starting the async runtime")?
            .block_on(agent(args)),
        Command::Up(args) => up::up(args),
        Command::Down(args) => up::down(args),
    }
}

async fn server(args: ServerArgs) -> anyhow::Result<()> {
    let config = ControlPlaneConfig {
        data_dir: args.data_dir.clone(),
        etcd_servers: args.etcd_servers.clone(),
        server: ServerConfig {
            listen: args.listen,
            service_cidr: args.service_cluster_ip_range,
            bookmark_interval: std::time::Duration::from_secs(
                args.bookmark_interval_seconds.max(1),
            ),
            compaction_interval: std::time::Duration::from_secs(
                args.compaction_interval_seconds.max(1),
            ),
            compaction_retain: args.compaction_retain_revisions.max(1),
            watch_cache_capacity: args.watch_cache_size.max(1),
        },
        scheduler: args.scheduler,
        controllers: args
            .controllers
            .then(|| controller_manager_config(&args.node_ipam, &args.node_lifecycle)),
        leader_elect: true,
    };
    let server = cluster::start_control_plane(config).await?;
    server.serve().await.context("serving the API")
}

async fn scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    let client = cluster::kube_client(&args.kubeconfig).await?;
    let mut scheduler_config = skiff_scheduler::SchedulerConfig {
        scheduler_name: args.scheduler_name,
        ..Default::default()
    };
    if !args.leader_elect {
        scheduler_config.leader_election = None;
    }
    skiff_scheduler::run(client, scheduler_config)
        .await
        .context("scheduler stopped")
}

async fn controller_manager(args: ControllerManagerArgs) -> anyhow::Result<()> {
    let client = cluster::kube_client(&args.kubeconfig).await?;
    let mut config = controller_manager_config(&args.node_ipam, &args.node_lifecycle);
    if !args.leader_elect {
        config.leader_election = None;
    }
    skiff_controller::run(client, config)
        .await
        .context("controller manager stopped")
}

async fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let node_name = match &args.node_name {
        Some(n) => n.clone(),
        None => cluster::hostname()?,
    };
    let mut config = skiff_nodeagent::kubelet::KubeletConfig::new(&node_name);
    config.node_ip = args.node_ip;
    config.root_dir = args.root_dir.clone();
    config.runtime.state_dir = args.runtime_state_dir.clone();
    config.runtime.data_dir = args.runtime_data_dir.clone();
    config.cgroup_root = args.cgroup_root.clone();
    config.port = args.port;
    config.cluster_cidr = args.cluster_cidr.clone();
    config.service_cidr = args.service_cidr.clone();
    config.cluster_dns = args.cluster_dns.clone();
    config.insecure_registries = args.insecure_registry.clone();
    config.disable_pod_network = args.no_pod_network;
    config.seccomp_default = args.seccomp_default;
    config.eviction_hard =
        skiff_nodeagent::kubelet::machine::EvictionThresholds::parse(&args.eviction_hard)
            .map_err(|e| anyhow::anyhow!("--eviction-hard: {e}"))?;
    for item in args
        .system_reserved
        .split(',')
        .filter(|i| !i.trim().is_empty())
    {
        let (name, value) = item
            .split_once('=')
            .with_context(|| format!("--system-reserved: {item:?} is not name=quantity"))?;
        let bad = || anyhow::anyhow!("--system-reserved: {value:?} is not a quantity");
        match name.trim() {
            "cpu" => {
                config.reserved_cpu_millis = skiff_nodeagent::kubelet::containers::milli_cpu(value)
                    .and_then(|m| u64::try_from(m).ok())
                    .ok_or_else(bad)?;
            }
            "memory" => {
                config.reserved_memory_bytes = skiff_nodeagent::kubelet::containers::bytes(value)
                    .and_then(|b| u64::try_from(b).ok())
                    .ok_or_else(bad)?;
            }
            other => anyhow::bail!("--system-reserved: unsupported resource {other:?}"),
        }
    }
    for label in &args.node_labels {
        let (k, v) = label
            .split_once('=')
            .with_context(|| format!("--node-labels: {label:?} is not key=value"))?;
        config.node_labels.insert(k.to_string(), v.to_string());
    }
    if args.cleanup {
        return skiff_nodeagent::cleanup(&config).context("cleaning up the node");
    }
    let kubeconfig = args
        .kubeconfig
        .as_ref()
        .context("--kubeconfig is required")?;
    let client = cluster::kube_client(kubeconfig).await?;
    cluster::run_agent(client, config, cluster::shutdown_signal()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_go_duration("40s"), Ok(Duration::from_secs(40)));
        assert_eq!(parse_go_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "40", "s", "5x", "-1s", "1m30"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?}");
        }
    }
}
