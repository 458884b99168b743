//! `skiff up` and `skiff down`: a single-node cluster on this machine in one background
//! process — the API server on the embedded store, the scheduler, the controller manager and
//! the node agent, all talking through the API (the components over the in-process loopback
//! client) — and its removal.
//!
//! `skiff up` re-executes itself as `skiff up --foreground` in a new session (log in
//! `DIR/skiff.log`, pid in `DIR/skiff.pid`, which that process holds locked while it runs),
//! waits until the Node is Ready, merges a `skiff` context into the user's kubeconfig (as kind
//! and k3s do) and says what to do next. The settings it ran with are kept in `DIR/up.json`,
//! so `skiff down` cleans up exactly what was made.
//!
//! The single node stays schedulable, as k3s leaves it: it is labelled
//! `node-role.kubernetes.io/control-plane=true` and carries no control-plane taint.

use std::fs;
use std::io::{Read, Seek, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Node;
use kube::config::{Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use skiff_apiserver::server::ServerConfig;

use crate::cluster::{self, ControlPlaneConfig};

/// The name of the cluster, user and context merged into the user's kubeconfig.
pub const CONTEXT: &str = "skiff";
/// The label that marks the node as running the control plane (k3s's, kubeadm's).
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";
/// The demo images `skiff up` builds from the host's busybox: two tags of the same busybox,
/// differing only in `SKIFF_DEMO_VERSION`, so a rollout to a new image can be shown offline.
pub const DEMO_IMAGES: [(&str, &str); 2] = [
    ("skiff.local/busybox:v1", "SKIFF_DEMO_VERSION=v1"),
    ("skiff.local/busybox:v2", "SKIFF_DEMO_VERSION=v2"),
];
const BUSYBOX: &str = "/bin/busybox";
const SETTINGS_FILE: &str = "up.json";
const PID_FILE: &str = "skiff.pid";
const LOG_FILE: &str = "skiff.log";

#[derive(clap::Args, Clone, Debug)]
pub struct UpArgs {
    /// The cluster's store, admin kubeconfig, log, the agent's files and the runtime's images.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// The node's InternalIP (default: the source address of the default route).
    #[arg(long)]
    node_ip: Option<Ipv4Addr>,
    /// Address to serve the API on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    listen: SocketAddr,
    /// The Node's name (default: the host name).
    #[arg(long)]
    node_name: Option<String>,
    /// The pods' range; each node gets a /24 of it.
    #[arg(long, default_value = "10.244.0.0/16")]
    cluster_cidr: skiff_controller::Ipv4Cidr,
    /// The Services' range.
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: String,
    /// Seconds to wait for the node to be Ready.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    // For running beside another Skiff on the same machine (tests, benchmarks).
    #[arg(long, hide = true, default_value = "/run/skiff/runtime")]
    runtime_state_dir: PathBuf,
    #[arg(long, hide = true)]
    runtime_data_dir: Option<PathBuf>,
    #[arg(long, hide = true, default_value = "skiff")]
    cgroup_root: String,
    #[arg(long, hide = true, default_value_t = 10250)]
    agent_port: u16,
    #[arg(
        long,
        hide = true,
        default_value = "memory.available<100Mi,nodefs.available<10%"
    )]
    eviction_hard: String,
    /// Run the cluster in this process instead of starting it in the background.
    #[arg(long)]
    foreground: bool,
}

#[derive(clap::Args, Clone, Debug)]
pub struct DownArgs {
    /// The data directory `skiff up` used.
    #[arg(long, default_value = "/var/lib/skiff")]
    data_dir: PathBuf,
    /// Also remove the data directory (the cluster's state) and the runtime's images.
    #[arg(long)]
    purge: bool,
}

/// What `skiff up` ran with: everything `skiff down` needs to find what it made.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct Settings {
    node_name: String,
    listen: SocketAddr,
    cluster_cidr: String,
    service_cidr: String,
    runtime_state_dir: PathBuf,
    runtime_data_dir: PathBuf,
    cgroup_root: String,
    /// The kubeconfig file the `skiff` context was merged into.
    merged_kubeconfig: Option<PathBuf>,
}

impl UpArgs {
    /// Whether this is the cluster process itself rather than the command that starts it.
    pub fn is_foreground(&self) -> bool {
        self.foreground
    }

    fn settings(&self) -> anyhow::Result<Settings> {
        Ok(Settings {
            node_name: match &self.node_name {
                Some(name) => name.clone(),
                None => cluster::hostname()?,
            },
            listen: self.listen,
            cluster_cidr: self.cluster_cidr.to_string(),
            service_cidr: self.service_cidr.clone(),
            runtime_state_dir: self.runtime_state_dir.clone(),
            runtime_data_dir: self
                .runtime_data_dir
                .clone()
                .unwrap_or_else(|| self.data_dir.join("runtime")),
            cgroup_root: self.cgroup_root.clone(),
            merged_kubeconfig: None,
        })
    }

    /// The flags the background process is started with: the same as ours.
    fn as_flags(&self) -> Vec<String> {
        let mut flags = vec![
            format!("--data-dir={}", self.data_dir.display()),
            format!("--listen={}", self.listen),
            format!("--cluster-cidr={}", self.cluster_cidr),
            format!("--service-cidr={}", self.service_cidr),
            format!("--runtime-state-dir={}", self.runtime_state_dir.display()),
            format!("--cgroup-root={}", self.cgroup_root),
            format!("--agent-port={}", self.agent_port),
            format!("--eviction-hard={}", self.eviction_hard),
        ];
        if let Some(ip) = self.node_ip {
            flags.push(format!("--node-ip={ip}"));
        }
        if let Some(name) = &self.node_name {
            flags.push(format!("--node-name={name}"));
        }
        if let Some(dir) = &self.runtime_data_dir {
            flags.push(format!("--runtime-data-dir={}", dir.display()));
        }
        flags
    }
}

impl Settings {
    fn kubelet_config(&self) -> skiff_nodeagent::kubelet::KubeletConfig {
        let mut config = skiff_nodeagent::kubelet::KubeletConfig::new(&self.node_name);
        config.root_dir = PathBuf::new(); // set by the caller, from the data dir
        config.runtime.state_dir = self.runtime_state_dir.clone();
        config.runtime.data_dir = self.runtime_data_dir.clone();
        config.cgroup_root = self.cgroup_root.clone();
        config.cluster_cidr = self.cluster_cidr.clone();
        config.service_cidr = self.service_cidr.clone();
        config
    }

    /// What `skiff up` uses without flags: for a `skiff down` with nothing recorded.
    fn defaults(data_dir: &Path) -> Settings {
        Settings {
            node_name: String::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 6443)),
            cluster_cidr: "10.244.0.0/16".into(),
            service_cidr: "10.96.0.0/12".into(),
            runtime_state_dir: PathBuf::from("/run/skiff/runtime"),
            runtime_data_dir: data_dir.join("runtime"),
            cgroup_root: "skiff".into(),
            merged_kubeconfig: None,
        }
    }

    fn read(data_dir: &Path) -> anyhow::Result<Option<Settings>> {
        let path = data_dir.join(SETTINGS_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn write(&self, data_dir: &Path) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(self).context("encoding the settings")?;
        write_atomically(&data_dir.join(SETTINGS_FILE), &bytes, 0o644)
    }
}

fn agent_root(data_dir: &Path) -> PathBuf {
    data_dir.join("agent")
}

/// `skiff up`: starts the cluster in the background unless it runs, waits for the node and
/// merges the kubeconfig.
pub fn up(mut args: UpArgs) -> anyhow::Result<()> {
    if args.foreground {
        return tokio::runtime::Runtime::new()
            .context("starting the async runtime")?
            .block_on(run_cluster(args));
    }
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "skiff up must run as root: it creates network interfaces, iptables rules, mounts and cgroups"
        );
    }
    let started = Instant::now();
    fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    // The cluster process works from `/` (it must not hold the caller's directory busy).
    args.data_dir = fs::canonicalize(&args.data_dir)
        .with_context(|| format!("resolving {}", args.data_dir.display()))?;
    if let Some(dir) = &args.runtime_data_dir {
        args.runtime_data_dir =
            Some(std::path::absolute(dir).context("resolving --runtime-data-dir")?);
    }
    args.runtime_state_dir =
        std::path::absolute(&args.runtime_state_dir).context("resolving --runtime-state-dir")?;
    let mut settings = args.settings()?;
    let log_path = args.data_dir.join(LOG_FILE);
    let mut child = match running_pid(&args.data_dir) {
        Some(pid) => {
            println!("Skiff is already running (pid {pid}).");
            // Whoever started it, the settings that count are those it runs with.
            if let Some(current) = Settings::read(&args.data_dir)? {
                settings = current;
            }
            None
        }
        None => {
            let log = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .with_context(|| format!("opening {}", log_path.display()))?;
            let exe = std::env::current_exe().context("finding the skiff binary")?;
            let child = Command::new(exe)
                .current_dir("/")
                .arg("up")
                .arg("--foreground")
                .args(args.as_flags())
                .stdin(Stdio::null())
                .stdout(log.try_clone().context("duplicating the log file")?)
                .stderr(log)
                .spawn()
                .context("starting the cluster process")?;
            println!(
                "Starting Skiff (pid {}, log {}).",
                child.id(),
                log_path.display()
            );
            Some(child)
        }
    };
    let kubeconfig = cluster::kubeconfig_path(&args.data_dir);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let deadline = started + Duration::from_secs(args.timeout);
    runtime.block_on(wait_node_ready(
        &kubeconfig,
        &settings.node_name,
        deadline,
        child.as_mut(),
        &log_path,
    ))?;
    let ready_after = started.elapsed();
    let merged = merge_kubeconfig(&user_kubeconfig(), &settings.listen)?;
    settings.merged_kubeconfig = Some(merged.clone());
    settings.write(&args.data_dir)?;
    println!(
        "Node {} is Ready ({:.2} s). The API is at http://{}.\n\
         \n\
         kubectl now uses the \"{CONTEXT}\" context of {} (the admin kubeconfig is also at {}):\n\
         \n  kubectl get nodes\
         \n  kubectl apply -f manifests/demo.yaml\
         \n  kubectl -n demo rollout status deployment/web\
         \n  skiffctl get pods -A\
         \n\
         \nThe demo images {} and {} are in the runtime's store (no registry needed).\
         \nStop the cluster with `skiff down` (`skiff down --purge` also removes {}).",
        settings.node_name,
        ready_after.as_secs_f64(),
        settings.listen,
        merged.display(),
        kubeconfig.display(),
        DEMO_IMAGES[0].0,
        DEMO_IMAGES[1].0,
        args.data_dir.display(),
    );
    Ok(())
}

/// Polls the Node until its Ready condition is True; fails early, with the log's tail, if the
/// cluster process exits.
async fn wait_node_ready(
    kubeconfig: &Path,
    node_name: &str,
    deadline: Instant,
    mut child: Option<&mut std::process::Child>,
    log_path: &Path,
) -> anyhow::Result<()> {
    loop {
        if let Some(child) = child.as_deref_mut()
            && let Some(status) = child.try_wait().context("watching the cluster process")?
        {
            bail!(
                "the cluster process exited ({status}); the end of {}:\n{}",
                log_path.display(),
                exit_reason(log_path)
            );
        }
        // Bounded: whatever holds the port may accept and never answer, and the cluster
        // process's exit must still be noticed.
        let last_error = match tokio::time::timeout(
            NODE_POLL_TIMEOUT,
            node_ready(kubeconfig, node_name),
        )
        .await
        {
            Ok(Ok(true)) => return Ok(()),
            Ok(Ok(false)) => format!("node {node_name} is not Ready yet"),
            Ok(Err(e)) => format!("{e:#}"),
            Err(_) => format!("the API server did not answer within {NODE_POLL_TIMEOUT:?}"),
        };
        if Instant::now() >= deadline {
            bail!(
                "timed out waiting for node {node_name} to be Ready ({last_error}); see {}",
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long one look at the Node may take while `skiff up` waits for it.
const NODE_POLL_TIMEOUT: Duration = Duration::from_secs(2);

async fn node_ready(kubeconfig: &Path, node_name: &str) -> anyhow::Result<bool> {
    let client = cluster::kube_client(kubeconfig).await?;
    let nodes: kube::Api<Node> = kube::Api::all(client);
    let Some(node) = nodes.get_opt(node_name).await? else {
        return Ok(false);
    };
    Ok(node
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// What the cluster process said when it failed: its last `Error:` report (anyhow's, from
/// `main`, with its causes but without a backtrace), or else the log's last lines.
fn exit_reason(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let Some(start) = lines.iter().rposition(|line| line.starts_with("Error: ")) else {
        return log_tail(path, 20);
    };
    lines[start..]
        .iter()
        .take_while(|line| !line.starts_with("Stack backtrace:"))
        .copied()
        .collect::<Vec<_>>()
        .join("\n")
        .trim_end()
        .to_string()
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The cluster itself: `skiff up --foreground`, normally started by `skiff up`.
async fn run_cluster(args: UpArgs) -> anyhow::Result<()> {
    // Out of the caller's session: closing its terminal must not take the cluster down. (Fails
    // only when already a session or group leader, which is just as good.)
    let _ = nix::unistd::setsid();
    fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let _pid_lock = lock_pid_file(&args.data_dir)?;
    // The API server's port first: when it is taken, fail before anything is made.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("the API server cannot listen on {}", args.listen))?;
    let settings = args.settings()?;
    // Kept before anything is made, so `skiff down` finds it even if start-up fails halfway;
    // the merged kubeconfig is recorded by `skiff up` once it has merged it.
    let mut recorded = settings.clone();
    recorded.merged_kubeconfig = Settings::read(&args.data_dir)?.and_then(|s| s.merged_kubeconfig);
    recorded.write(&args.data_dir)?;

    let runtime_config = skiff_runtime::container::RuntimeConfig {
        state_dir: settings.runtime_state_dir.clone(),
        data_dir: settings.runtime_data_dir.clone(),
        ..Default::default()
    };
    let images = tokio::task::spawn_blocking(move || ensure_demo_images(&runtime_config));

    let manager_config = skiff_controller::ControllerManagerConfig {
        node_ipam: Some(skiff_controller::NodeIpamConfig {
            cluster_cidr: args.cluster_cidr,
            node_mask_size: 24,
        }),
        ..Default::default()
    };
    let server = cluster::start_control_plane(ControlPlaneConfig {
        data_dir: args.data_dir.clone(),
        etcd_servers: Vec::new(),
        server: ServerConfig {
            listen: args.listen,
            service_cidr: args.service_cidr.clone(),
            ..ServerConfig::default()
        },
        scheduler: true,
        controllers: Some(manager_config),
        leader_elect: false,
    })
    .await?;

    let mut kubelet = settings.kubelet_config();
    kubelet.root_dir = agent_root(&args.data_dir);
    kubelet.node_ip = args.node_ip;
    kubelet.port = args.agent_port;
    kubelet.eviction_hard =
        skiff_nodeagent::kubelet::machine::EvictionThresholds::parse(&args.eviction_hard)
            .map_err(|e| anyhow::anyhow!("--eviction-hard: {e}"))?;
    kubelet
        .node_labels
        .insert(CONTROL_PLANE_LABEL.into(), "true".into());
    let agent_client = cluster::loopback_client(&server);
    let blocking = Some(cluster::AGENT_BLOCKING_THREADS);
    cluster::spawn_on_own_runtime("skiff-agent", 2, blocking, async move {
        if let Err(e) = cluster::run_agent(agent_client, kubelet, std::future::pending()).await {
            tracing::error!(error = %format!("{e:#}"), "the node agent stopped");
        }
    })?;

    match images.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "the demo images are missing"),
        Err(e) => tracing::warn!(error = %e, "building the demo images failed"),
    }
    tracing::info!(pid = std::process::id(), "skiff is up");
    tokio::select! {
        served = server.serve_on(listener) => served.context("serving the API"),
        () = cluster::shutdown_signal() => {
            tracing::info!("stopping; pods keep running until `skiff down`");
            Ok(())
        }
    }
}

/// Builds the demo images from the host's busybox into the runtime's store unless they are
/// there. Without busybox-static the cluster still runs (with images from registries).
fn ensure_demo_images(config: &skiff_runtime::container::RuntimeConfig) -> anyhow::Result<()> {
    let runtime = skiff_runtime::container::Runtime::new(config.clone());
    let store = runtime.images().context("opening the image store")?;
    if DEMO_IMAGES
        .iter()
        .all(|(reference, _)| store.get(reference).is_ok())
    {
        return Ok(());
    }
    let busybox = Path::new(BUSYBOX);
    if !busybox.is_file() {
        bail!("{BUSYBOX} not found (apt-get install busybox-static)");
    }
    let listed = Command::new(busybox)
        .arg("--list")
        .output()
        .context("listing busybox's applets")?;
    if !listed.status.success() {
        bail!("{BUSYBOX} --list failed");
    }
    let links: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    let cmd = vec!["/bin/sh".to_string()];
    let tags: Vec<(String, Vec<String>)> = DEMO_IMAGES
        .iter()
        .map(|(reference, env)| (reference.to_string(), vec![env.to_string()]))
        .collect();
    let started = Instant::now();
    store
        .import_static_binary(&skiff_runtime::image::StaticBinaryImage {
            binary: busybox,
            links: &links,
            cmd: &cmd,
            tags: &tags,
        })
        .context("building the demo images")?;
    tracing::info!(elapsed = ?started.elapsed(), images = ?DEMO_IMAGES.map(|(r, _)| r), "demo images built from the host's busybox");
    Ok(())
}

/// Takes `DIR/skiff.pid` for this process: locked for as long as it runs, so a second cluster
/// on the same data refuses to start.
fn lock_pid_file(data_dir: &Path) -> anyhow::Result<Flock<fs::File>> {
    let path = data_dir.join(PID_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o644)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut locked = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, _)| {
        anyhow::anyhow!(
            "another skiff is running on {} (pid file {})",
            data_dir.display(),
            path.display()
        )
    })?;
    locked.set_len(0).context("truncating the pid file")?;
    locked.rewind().context("rewinding the pid file")?;
    writeln!(locked, "{}", std::process::id()).context("writing the pid file")?;
    Ok(locked)
}

/// The pid of the cluster process running on `data_dir`, if one is: the pid file is locked by
/// its owner while it lives, so a stale file (or a reused pid) is not mistaken for it.
fn running_pid(data_dir: &Path) -> Option<i32> {
    let path = data_dir.join(PID_FILE);
    let mut file = fs::File::open(&path).ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        // Nobody holds it: whatever wrote it is gone.
        Ok(_unlocked) => None,
        Err(_) => Some(pid),
    }
}

/// The kubeconfig file kubectl reads: the first of `$KUBECONFIG`, else `~/.kube/config`.
fn user_kubeconfig() -> PathBuf {
    if let Some(first) = std::env::var_os("KUBECONFIG")
        .as_ref()
        .and_then(|v| std::env::split_paths(v).find(|p| !p.as_os_str().is_empty()))
    {
        return first;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".kube/config")
}

fn read_kubeconfig(path: &Path) -> anyhow::Result<Kubeconfig> {
    match fs::read_to_string(path) {
        Ok(text) if text.trim().is_empty() => Ok(Kubeconfig::default()),
        Ok(text) => {
            Kubeconfig::from_yaml(&text).with_context(|| format!("parsing {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Kubeconfig::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn write_kubeconfig_file(path: &Path, config: &Kubeconfig) -> anyhow::Result<()> {
    let text =
        serde_saphyr::to_string(config).with_context(|| format!("encoding {}", path.display()))?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_atomically(path, text.as_bytes(), 0o600)
}

/// Puts the `skiff` cluster, user and context into `path` (replacing earlier ones of that
/// name, keeping everything else) and makes the context current.
fn merge_kubeconfig(path: &Path, listen: &SocketAddr) -> anyhow::Result<PathBuf> {
    let mut config = read_kubeconfig(path)?;
    remove_entries(&mut config);
    config.api_version.get_or_insert_with(|| "v1".into());
    config.kind.get_or_insert_with(|| "Config".into());
    config.clusters.push(NamedCluster {
        name: CONTEXT.into(),
        cluster: Some(kube::config::Cluster {
            server: Some(format!("http://{listen}")),
            ..Default::default()
        }),
        ..Default::default()
    });
    config.auth_infos.push(NamedAuthInfo {
        name: CONTEXT.into(),
        auth_info: Some(Default::default()),
        ..Default::default()
    });
    config.contexts.push(NamedContext {
        name: CONTEXT.into(),
        context: Some(kube::config::Context {
            cluster: CONTEXT.into(),
            user: Some(CONTEXT.into()),
            ..Default::default()
        }),
        ..Default::default()
    });
    config.current_context = Some(CONTEXT.into());
    write_kubeconfig_file(path, &config)?;
    Ok(path.to_path_buf())
}

fn remove_entries(config: &mut Kubeconfig) {
    config.clusters.retain(|c| c.name != CONTEXT);
    config.auth_infos.retain(|u| u.name != CONTEXT);
    config.contexts.retain(|c| c.name != CONTEXT);
}

/// Takes the `skiff` entries out of `path` again; the current context goes with them when it
/// was ours.
fn unmerge_kubeconfig(path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    let mut config = read_kubeconfig(path)?;
    remove_entries(&mut config);
    if config.current_context.as_deref() == Some(CONTEXT) {
        config.current_context = None;
    }
    write_kubeconfig_file(path, &config)
}

fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

/// `skiff down`: stops the cluster process, then removes its pods, network, mounts, cgroups
/// and kubeconfig context.
pub fn down(args: DownArgs) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("skiff down must run as root");
    }
    if let Some(pid) = running_pid(&args.data_dir) {
        stop_process(pid, Duration::from_secs(20))?;
        println!("Stopped the cluster process (pid {pid}).");
    } else {
        println!(
            "No Skiff cluster process runs on {}.",
            args.data_dir.display()
        );
    }
    let settings = match Settings::read(&args.data_dir)? {
        Some(settings) => settings,
        // Never started (or already purged): the defaults are what it would have used.
        None => Settings::defaults(&args.data_dir),
    };
    let mut kubelet = settings.kubelet_config();
    kubelet.root_dir = agent_root(&args.data_dir);
    let mut failures = Vec::new();
    if let Err(e) = skiff_nodeagent::cleanup(&kubelet) {
        failures.push(format!("{e}"));
    }
    remove_cgroups(&settings.cgroup_root);
    if let Some(path) = &settings.merged_kubeconfig
        && let Err(e) = unmerge_kubeconfig(path)
    {
        failures.push(format!("{e:#}"));
    }
    let _ = fs::remove_file(args.data_dir.join(PID_FILE));
    if args.purge {
        for dir in [
            &settings.runtime_data_dir,
            &settings.runtime_state_dir,
            &args.data_dir,
        ] {
            match fs::remove_dir_all(dir) {
                Ok(()) => println!("Removed {}.", dir.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => failures.push(format!("removing {}: {e}", dir.display())),
            }
        }
    }
    if !failures.is_empty() {
        bail!("cleaning up: {}", failures.join("; "));
    }
    println!("Removed Skiff's pods, network rules, interfaces, mounts and cgroups.");
    Ok(())
}

/// SIGTERM, then SIGKILL if it is still there after `grace`.
fn stop_process(pid: i32, grace: Duration) -> anyhow::Result<()> {
    use nix::sys::signal::{Signal, kill};
    let pid = nix::unistd::Pid::from_raw(pid);
    let alive = || kill(pid, None).is_ok() && !is_zombie(pid.as_raw());
    if kill(pid, Signal::SIGTERM).is_err() {
        return Ok(());
    }
    let deadline = Instant::now() + grace;
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if alive() {
        tracing::warn!(pid = pid.as_raw(), "did not stop after SIGTERM; killing it");
        let _ = kill(pid, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if alive() {
            bail!("pid {pid} survived SIGKILL");
        }
    }
    Ok(())
}

fn is_zombie(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|s| s == "Z"))
        })
        .unwrap_or(false)
}

/// Removes the (by now empty) cgroup trees under `root` in every hierarchy: the runtime
/// removes each container's and pod's cgroup but not the parents it made for them.
fn remove_cgroups(root: &str) {
    if root.is_empty() || root.contains("..") {
        return;
    }
    let mut dirs = Vec::new();
    if let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") {
        for hierarchy in hierarchies.flatten() {
            dirs.push(hierarchy.path().join(root));
        }
    }
    dirs.push(Path::new("/sys/fs/cgroup").join(root));
    dirs.sort();
    dirs.dedup();
    for dir in dirs.into_iter().filter(|d| d.is_dir()) {
        remove_cgroup_tree(&dir);
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path());
            }
        }
    }
    if let Err(e) = fs::remove_dir(dir) {
        tracing::warn!(cgroup = %dir.display(), error = %e, "cgroup not removed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_other_entries_and_unmerging_removes_only_ours() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config");
        fs::write(
            &path,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: prod\n  cluster:\n    server: https://prod.example:6443\n    certificate-authority-data: Q0E=\ncontexts:\n- name: prod\n  context:\n    cluster: prod\n    user: alice\n    namespace: shop\ncurrent-context: prod\nusers:\n- name: alice\n  user:\n    token: secret-token\n",
        )
        .expect("existing config");
        let listen: SocketAddr = "127.0.0.1:6443".parse().expect("addr");
        merge_kubeconfig(&path, &listen).expect("merge");
        merge_kubeconfig(&path, &listen).expect("merge again");
        let merged = read_kubeconfig(&path).expect("read");
        assert_eq!(merged.current_context.as_deref(), Some(CONTEXT));
        let names = |c: &Kubeconfig| {
            (
                c.clusters
                    .iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>(),
                c.auth_infos
                    .iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>(),
                c.contexts
                    .iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>(),
            )
        };
        assert_eq!(
            names(&merged),
            (
                vec!["prod".to_string(), "skiff".into()],
                vec!["alice".to_string(), "skiff".into()],
                vec!["prod".to_string(), "skiff".into()]
            )
        );
        let text = fs::read_to_string(&path).expect("text");
        assert!(text.contains("secret-token"), "{text}");
        assert!(text.contains("https://prod.example:6443"), "{text}");
        assert!(text.contains("http://127.0.0.1:6443"), "{text}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );

        unmerge_kubeconfig(&path).expect("unmerge");
        let after = read_kubeconfig(&path).expect("read");
        assert_eq!(after.current_context, None);
        assert_eq!(
            names(&after),
            (
                vec!["prod".to_string()],
                vec!["alice".to_string()],
                vec!["prod".to_string()]
            )
        );
        let context = after.contexts[0].context.as_ref().expect("context");
        assert_eq!(context.namespace.as_deref(), Some("shop"));
    }

    #[test]
    fn a_pid_file_counts_only_while_its_owner_holds_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(running_pid(dir.path()), None);
        let held = lock_pid_file(dir.path()).expect("lock");
        assert_eq!(running_pid(dir.path()), Some(std::process::id() as i32));
        assert!(
            lock_pid_file(dir.path()).is_err(),
            "a second owner is refused"
        );
        drop(held);
        assert_eq!(
            running_pid(dir.path()),
            None,
            "a stale pid file is not a cluster"
        );
    }
}
