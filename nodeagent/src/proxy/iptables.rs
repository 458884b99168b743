//! Running `iptables`, `iptables-save` and `iptables-restore`: applying a rule set, the jump
//! rules from the built-in chains into ours, and removing everything again.

use std::io::Write;
use std::process::{Command, Stdio};

use tracing::{debug, info};

use super::ProxyError;
use super::rules::{
    CHAIN_PREFIX, EXTERNAL_SERVICES_CHAIN, FIREWALL_CHAIN, FORWARD_CHAIN, POSTROUTING_CHAIN,
    SERVICES_CHAIN,
};

/// A rule in a built-in chain that sends packets into one of ours (upstream's
/// `iptablesJumpChains`), inserted first in its chain.
struct Jump {
    table: &'static str,
    from: &'static str,
    to: &'static str,
    comment: &'static str,
    matches: &'static [&'static str],
}

const NEW_CONNECTIONS: &[&str] = &["-m", "conntrack", "--ctstate", "NEW"];

const JUMPS: &[Jump] = &[
    Jump {
        table: "filter",
        from: "INPUT",
        to: EXTERNAL_SERVICES_CHAIN,
        comment: "skiff externally-visible service portals",
        matches: NEW_CONNECTIONS,
    },
    Jump {
        table: "filter",
        from: "FORWARD",
        to: EXTERNAL_SERVICES_CHAIN,
        comment: "skiff externally-visible service portals",
        matches: NEW_CONNECTIONS,
    },
    Jump {
        table: "filter",
        from: "FORWARD",
        to: SERVICES_CHAIN,
        comment: "skiff service portals",
        matches: NEW_CONNECTIONS,
    },
    Jump {
        table: "filter",
        from: "OUTPUT",
        to: SERVICES_CHAIN,
        comment: "skiff service portals",
        matches: NEW_CONNECTIONS,
    },
    Jump {
        table: "filter",
        from: "FORWARD",
        to: FORWARD_CHAIN,
        comment: "skiff forwarding rules",
        matches: &[],
    },
    Jump {
        table: "filter",
        from: "INPUT",
        to: FIREWALL_CHAIN,
        comment: "skiff localnet firewall",
        matches: &[],
    },
    Jump {
        table: "filter",
        from: "OUTPUT",
        to: FIREWALL_CHAIN,
        comment: "skiff localnet firewall",
        matches: &[],
    },
    Jump {
        table: "nat",
        from: "OUTPUT",
        to: SERVICES_CHAIN,
        comment: "skiff service portals",
        matches: &[],
    },
    Jump {
        table: "nat",
        from: "PREROUTING",
        to: SERVICES_CHAIN,
        comment: "skiff service portals",
        matches: &[],
    },
    Jump {
        table: "nat",
        from: "POSTROUTING",
        to: POSTROUTING_CHAIN,
        comment: "skiff postrouting rules",
        matches: &[],
    },
];

impl Jump {
    fn args(&self, op: &'static str) -> Vec<&'static str> {
        let mut args = vec!["-w", "-t", self.table, op, self.from];
        args.extend(self.matches);
        args.extend(["-m", "comment", "--comment", self.comment, "-j", self.to]);
        args
    }
}

fn describe(program: &str, args: &[&str]) -> String {
    format!("{program} {}", args.join(" "))
}

/// Runs a command to completion; `Ok(false)` when it exited non-zero and `check` is set
/// (`iptables -C` answers "no" that way), an error when it exited non-zero otherwise.
fn run(program: &str, args: &[&str], input: Option<&str>, check: bool) -> Result<bool, ProxyError> {
    let command = describe(program, args);
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ProxyError::Spawn {
            command: command.clone(),
            source,
        })?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input.as_bytes())
            .map_err(|source| ProxyError::Spawn {
                command: command.clone(),
                source,
            })?;
    }
    let output = child
        .wait_with_output()
        .map_err(|source| ProxyError::Spawn {
            command: command.clone(),
            source,
        })?;
    if output.status.success() {
        return Ok(true);
    }
    if check {
        return Ok(false);
    }
    Err(ProxyError::Failed {
        command,
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}

/// Applies an `iptables-restore` input without touching chains it does not declare.
pub fn restore(input: &str) -> Result<(), ProxyError> {
    run("iptables-restore", &["-w", "--noflush"], Some(input), false).map(|_| ())
}

/// The chains of one table now (`:NAME` lines of `iptables-save`).
pub fn chains(table: &str) -> Result<Vec<String>, ProxyError> {
    let args = ["-t", table];
    let command = describe("iptables-save", &args);
    let output = Command::new("iptables-save")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| ProxyError::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(ProxyError::Failed {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.strip_prefix(':'))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// Inserts each jump rule unless it is already there; run after a restore made the chains.
pub fn ensure_jumps() -> Result<(), ProxyError> {
    for jump in JUMPS {
        if !run("iptables", &jump.args("-C"), None, true)? {
            debug!(
                table = jump.table,
                chain = jump.from,
                target = jump.to,
                "inserting jump rule"
            );
            run("iptables", &jump.args("-I"), None, false)?;
        }
    }
    Ok(())
}

/// Removes the jump rules (every copy) and every `SKIFF-*` chain of the filter and nat tables.
pub fn cleanup() -> Result<(), ProxyError> {
    for jump in JUMPS {
        while run("iptables", &jump.args("-C"), None, true)? {
            run("iptables", &jump.args("-D"), None, false)?;
        }
    }
    for table in ["filter", "nat"] {
        let ours: Vec<String> = chains(table)?
            .into_iter()
            .filter(|c| c.starts_with(CHAIN_PREFIX))
            .collect();
        if ours.is_empty() {
            continue;
        }
        // Declaring flushes each chain, so none still jumps to another when they are deleted.
        let mut input = format!("*{table}\n");
        for chain in &ours {
            input.push_str(&format!(":{chain} - [0:0]\n"));
        }
        for chain in &ours {
            input.push_str(&format!("-X {chain}\n"));
        }
        input.push_str("COMMIT\n");
        restore(&input)?;
        info!(table, chains = ours.len(), "removed the proxy's chains");
    }
    Ok(())
}
