//! hostPorts, as the CNI portmap plugin maps them: a connection to one of the node's own
//! addresses (or the given hostIP) on a hostPort is DNATed to the pod's IP and containerPort,
//! from outside (PREROUTING) and from the node itself (OUTPUT); connections from loopback and
//! a pod's connection to its own hostPort (hairpin) are masqueraded so the replies come back.
//!
//! Each sandbox's mappings are a JSON file under `<state dir>/hostports/`, written before the
//! chains are rebuilt from all of them, so a restarted agent keeps every pod's ports.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{NetworkError, PodNetwork, cmd};

/// nat chain holding the DNAT rules.
pub const HOSTPORT_CHAIN: &str = "SKIFF-HOSTPORTS";
/// nat chain holding the masquerade rules (from POSTROUTING).
pub const HOSTPORT_MASQ_CHAIN: &str = "SKIFF-HOSTPORTS-MASQ";
const JUMP_COMMENT: &str = "skiff hostports";

/// One container port published on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPortMapping {
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    /// Only connections to this node address (any of the node's when unset).
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub pod_ip: Ipv4Addr,
    pub container_port: u16,
}

fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("hostports")
}

fn io(path: &Path, source: std::io::Error) -> NetworkError {
    NetworkError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The nat table's chains for `mappings` (all sandboxes'), as `iptables-restore --noflush`
/// input.
pub fn ruleset(mappings: &BTreeMap<String, Vec<HostPortMapping>>) -> String {
    let mut out = format!("*nat\n:{HOSTPORT_CHAIN} - [0:0]\n:{HOSTPORT_MASQ_CHAIN} - [0:0]\n");
    for (sandbox, ports) in mappings {
        for m in ports {
            let proto = m.protocol.to_lowercase();
            let dst = m
                .host_ip
                .map(|ip| format!(" -d {ip}/32"))
                .unwrap_or_default();
            let comment = format!(
                "-m comment --comment \"{sandbox} hostPort {}\"",
                m.host_port
            );
            out.push_str(&format!(
                "-A {HOSTPORT_CHAIN} -p {proto}{dst} --dport {} {comment} -j DNAT --to-destination {}:{}\n",
                m.host_port, m.pod_ip, m.container_port
            ));
            // Hairpin: the pod to its own hostPort would otherwise answer itself directly.
            out.push_str(&format!(
                "-A {HOSTPORT_MASQ_CHAIN} -p {proto} -s {ip}/32 -d {ip}/32 --dport {} {comment} -j MASQUERADE\n",
                m.container_port,
                ip = m.pod_ip
            ));
        }
    }
    out.push_str(&format!(
        "-A {HOSTPORT_MASQ_CHAIN} -s 127.0.0.0/8 -m conntrack --ctstate DNAT -m comment --comment \"from loopback to a hostPort\" -j MASQUERADE\n"
    ));
    out.push_str("COMMIT\n");
    out
}

/// The jumps into the chains: (built-in nat chain, rule).
fn jumps() -> [(&'static str, Vec<&'static str>); 3] {
    let to_local = || {
        vec![
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            "-m",
            "comment",
            "--comment",
            JUMP_COMMENT,
            "-j",
            HOSTPORT_CHAIN,
        ]
    };
    [
        ("PREROUTING", to_local()),
        ("OUTPUT", to_local()),
        (
            "POSTROUTING",
            vec![
                "-m",
                "comment",
                "--comment",
                JUMP_COMMENT,
                "-j",
                HOSTPORT_MASQ_CHAIN,
            ],
        ),
    ]
}

/// `iptables -w -t nat OP CHAIN RULE…`.
fn jump_args<'a>(
    op: &'a str,
    (chain, rule): &'a (&'static str, Vec<&'static str>),
) -> Vec<&'a str> {
    let mut args = vec!["-w", "-t", "nat", op, chain];
    args.extend(rule.iter().copied());
    args
}

impl PodNetwork {
    /// Publishes the sandbox's hostPorts (replacing any it had; none removes them) and
    /// rebuilds the chains from every sandbox's.
    pub fn set_host_ports(
        &self,
        sandbox_id: &str,
        mappings: &[HostPortMapping],
    ) -> Result<(), NetworkError> {
        let dir = dir(&self.config.state_dir);
        let file = dir.join(format!("{sandbox_id}.json"));
        if mappings.is_empty() {
            if !file.exists() {
                return Ok(());
            }
            std::fs::remove_file(&file).map_err(|e| io(&file, e))?;
        } else {
            std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
            let body = serde_json::to_vec(mappings).map_err(|e| NetworkError::Output {
                command: "encoding hostPorts".into(),
                detail: e.to_string(),
            })?;
            let tmp = dir.join(format!(".{sandbox_id}.json.tmp"));
            std::fs::write(&tmp, body).map_err(|e| io(&tmp, e))?;
            std::fs::rename(&tmp, &file).map_err(|e| io(&file, e))?;
        }
        self.sync_host_ports()
    }

    /// Rebuilds the hostPort chains from the recorded mappings.
    pub fn sync_host_ports(&self) -> Result<(), NetworkError> {
        let dir = dir(&self.config.state_dir);
        let mut all = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(sandbox) = name.strip_suffix(".json").filter(|n| !n.starts_with('.'))
                else {
                    continue;
                };
                let body = std::fs::read(entry.path()).map_err(|e| io(&entry.path(), e))?;
                match serde_json::from_slice::<Vec<HostPortMapping>>(&body) {
                    Ok(m) => {
                        all.insert(sandbox.to_string(), m);
                    }
                    Err(e) => tracing::warn!(file = %entry.path().display(), error = %e,
                        "ignoring an unreadable hostPort record"),
                }
            }
        }
        cmd::run_with_input("iptables-restore", &["-w", "--noflush"], &ruleset(&all))?;
        for jump in &jumps() {
            if !cmd::succeeds("iptables", &jump_args("-C", jump))? {
                cmd::run("iptables", &jump_args("-A", jump))?;
            }
        }
        Ok(())
    }

    /// Forgets a sandbox's hostPorts (on detach).
    pub(super) fn remove_host_ports(&self, sandbox_id: &str) -> Result<(), NetworkError> {
        self.set_host_ports(sandbox_id, &[])
    }
}

/// Removes the chains, their jumps and the records.
pub(super) fn cleanup(state_dir: &Path) -> Result<(), NetworkError> {
    for jump in &jumps() {
        while cmd::succeeds("iptables", &jump_args("-C", jump))? {
            cmd::run("iptables", &jump_args("-D", jump))?;
        }
    }
    for chain in [HOSTPORT_CHAIN, HOSTPORT_MASQ_CHAIN] {
        if cmd::succeeds("iptables", &["-w", "-t", "nat", "-n", "-L", chain])? {
            cmd::run("iptables", &["-w", "-t", "nat", "-F", chain])?;
            cmd::run("iptables", &["-w", "-t", "nat", "-X", chain])?;
        }
    }
    let dir = dir(state_dir);
    match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&dir, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_become_dnat_and_masquerade_rules() {
        let mut all = BTreeMap::new();
        all.insert(
            "pod-a".to_string(),
            vec![HostPortMapping {
                protocol: "TCP".into(),
                host_ip: None,
                host_port: 8080,
                pod_ip: Ipv4Addr::new(10, 244, 0, 5),
                container_port: 80,
            }],
        );
        all.insert(
            "pod-b".to_string(),
            vec![HostPortMapping {
                protocol: "UDP".into(),
                host_ip: Some(Ipv4Addr::new(192, 168, 1, 2)),
                host_port: 53,
                pod_ip: Ipv4Addr::new(10, 244, 0, 6),
                container_port: 5353,
            }],
        );
        let rules = ruleset(&all);
        assert!(rules.contains(
            "-A SKIFF-HOSTPORTS -p tcp --dport 8080 -m comment --comment \"pod-a hostPort 8080\" -j DNAT --to-destination 10.244.0.5:80\n"
        ));
        assert!(rules.contains(
            "-A SKIFF-HOSTPORTS -p udp -d 192.168.1.2/32 --dport 53 -m comment --comment \"pod-b hostPort 53\" -j DNAT --to-destination 10.244.0.6:5353\n"
        ));
        assert!(rules.contains(
            "-A SKIFF-HOSTPORTS-MASQ -p tcp -s 10.244.0.5/32 -d 10.244.0.5/32 --dport 80"
        ));
        assert!(
            rules.starts_with("*nat\n:SKIFF-HOSTPORTS - [0:0]\n:SKIFF-HOSTPORTS-MASQ - [0:0]\n")
        );
        assert!(rules.ends_with("COMMIT\n"));
        let empty = ruleset(&BTreeMap::new());
        assert_eq!(
            empty
                .lines()
                .filter(|l| l.starts_with("-A SKIFF-HOSTPORTS "))
                .count(),
            0
        );
    }

    #[test]
    fn jumps_are_well_formed() {
        let j = jumps();
        assert_eq!(
            jump_args("-C", &j[0]),
            [
                "-w",
                "-t",
                "nat",
                "-C",
                "PREROUTING",
                "-m",
                "addrtype",
                "--dst-type",
                "LOCAL",
                "-m",
                "comment",
                "--comment",
                JUMP_COMMENT,
                "-j",
                HOSTPORT_CHAIN
            ]
        );
        assert_eq!(
            jump_args("-A", &j[2]),
            [
                "-w",
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-m",
                "comment",
                "--comment",
                JUMP_COMMENT,
                "-j",
                HOSTPORT_MASQ_CHAIN
            ]
        );
    }
}
