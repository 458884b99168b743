//! `skiffctl delete`: by manifests (`-f`), `TYPE NAME…`, `TYPE/NAME…`, `-l` or `--all`, with
//! `--grace-period`, `--cascade` and, as kubectl by default, waiting until the objects are
//! gone (`--wait=false` does not).

use std::time::Duration;

use clap::{Args, ValueEnum};
use kube::api::{DeleteParams, ListParams, PropagationPolicy};

use crate::discovery::ResourceInfo;
use crate::error::{Error, Result, with_source};
use crate::get::{Target, targets};
use crate::manifest;
use crate::{Session, errln, outln};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Cascade {
    Background,
    Foreground,
    Orphan,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// TYPE NAME…, TYPE/NAME…, or TYPE with -l / --all.
    pub args: Vec<String>,
    /// Files, directories or `-` (stdin) naming the objects to delete.
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<String>,
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Delete the objects matching this label selector.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Delete every object of the type in the namespace.
    #[arg(long)]
    pub all: bool,
    /// Seconds the objects get to terminate (-1: their own default).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub grace_period: i64,
    /// Garbage collection of dependents: background, foreground or orphan.
    #[arg(long, value_enum, default_value = "background")]
    pub cascade: Cascade,
    /// Wait until the objects are gone.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub wait: bool,
    /// How long to wait (e.g. 30s, 2m); 0 waits as long as it takes.
    #[arg(long, default_value = "0s")]
    pub timeout: String,
    /// Treat objects that are not there as deleted.
    #[arg(long)]
    pub ignore_not_found: bool,
    /// Delete immediately (grace period 0), skipping graceful termination.
    #[arg(long)]
    pub force: bool,
    /// Delete across all namespaces (with -l or --all).
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
}

/// One object to delete.
struct Victim {
    info: ResourceInfo,
    /// The manifest file it was named in, for kubectl's `error when deleting "FILE"`.
    source: Option<String>,
    namespace: Option<String>,
    name: String,
}

pub async fn run(session: &Session, args: DeleteArgs) -> Result<()> {
    let victims_or_errors = collect(session, &args).await?;
    let params = DeleteParams {
        grace_period_seconds: if args.force {
            Some(0)
        } else {
            u32::try_from(args.grace_period).ok()
        },
        propagation_policy: Some(match args.cascade {
            Cascade::Background => PropagationPolicy::Background,
            Cascade::Foreground => PropagationPolicy::Foreground,
            Cascade::Orphan => PropagationPolicy::Orphan,
        }),
        ..DeleteParams::default()
    };
    if args.force {
        errln(
            "Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.",
        );
    }
    let mut errors = Vec::new();
    let mut deleted = Vec::new();
    for victim in victims_or_errors {
        let victim = match victim {
            Ok(v) => v,
            Err(err) => {
                errors.push(err);
                continue;
            }
        };
        let api = session.api(&victim.info, victim.namespace.as_deref());
        match api.delete(&victim.name, &params).await {
            Ok(either) => {
                let uid = either.left().and_then(|o| o.metadata.uid);
                outln(deleted_line(&victim))?;
                deleted.push((victim, uid));
            }
            Err(err) => {
                let err = Error::from(err);
                if !(args.ignore_not_found && err.is_not_found()) {
                    errors.push(match &victim.source {
                        Some(source) => with_source(err, "deleting", source),
                        None => err,
                    });
                }
            }
        }
    }
    if args.wait && !deleted.is_empty() {
        wait_gone(session, &deleted, parse_duration(&args.timeout)?).await?;
    }
    Error::from_many(errors).map_or(Ok(()), Err)
}

/// kubectl's `pod "web" deleted from shop namespace` (cluster-scoped: without the namespace).
fn deleted_line(victim: &Victim) -> String {
    let kind = victim.info.kind_group();
    match (&victim.namespace, victim.info.namespaced) {
        (Some(ns), true) => format!("{kind} \"{}\" deleted from {ns} namespace", victim.name),
        _ => format!("{kind} \"{}\" deleted", victim.name),
    }
}

/// The objects the arguments name; a name that cannot be resolved is an error in its place.
async fn collect(session: &Session, args: &DeleteArgs) -> Result<Vec<Result<Victim>>> {
    let namespace_of = |info: &ResourceInfo, ns: Option<&str>| {
        info.namespaced
            .then(|| ns.unwrap_or(&session.namespace).to_string())
    };
    if !args.files.is_empty() {
        if !args.args.is_empty() {
            return Err(Error::usage(
                "cannot specify both resource names and files (-f)",
            ));
        }
        let mut victims = Vec::new();
        for manifest in manifest::load(&args.files, args.recursive)? {
            let victim: Result<Victim> = async {
                let info = crate::apply::resolve(session, &manifest).await?;
                let namespace = if info.namespaced {
                    Some(
                        session
                            .manifest_namespace(manifest.namespace())?
                            .to_string(),
                    )
                } else {
                    None
                };
                Ok(Victim {
                    source: Some(manifest.source.clone()),
                    namespace,
                    name: manifest.name().to_string(),
                    info,
                })
            }
            .await;
            victims.push(victim);
        }
        return Ok(victims);
    }
    if args.args.is_empty() {
        return Err(Error::usage(
            "You must provide one or more resources by argument or filename.",
        ));
    }
    let catalog = session.catalog().await?;
    let targets: Vec<Target> = targets(catalog, &args.args)?;
    let by_selection = args.selector.is_some() || args.all;
    let mut victims = Vec::new();
    let mut found_any = false;
    for target in targets {
        if !target.names.is_empty() {
            if by_selection {
                return Err(Error::usage(
                    "name cannot be provided when a selector or --all is specified",
                ));
            }
            for name in target.names {
                victims.push(Ok(Victim {
                    source: None,
                    namespace: namespace_of(&target.info, None),
                    name,
                    info: target.info.clone(),
                }));
            }
            continue;
        }
        if !by_selection {
            return Err(Error::usage(format!(
                "resource(s) were provided, but no name was specified (use -l or --all to delete every {})",
                target.info.plural_group()
            )));
        }
        let mut params = ListParams::default();
        if let Some(selector) = &args.selector {
            params = params.labels(selector);
        }
        let namespace = (!args.all_namespaces).then_some(session.namespace.as_str());
        let list = session.api(&target.info, namespace).list(&params).await?;
        for item in list.items {
            found_any = true;
            victims.push(Ok(Victim {
                source: None,
                namespace: item
                    .metadata
                    .namespace
                    .clone()
                    .filter(|_| target.info.namespaced),
                name: item.metadata.name.clone().unwrap_or_default(),
                info: target.info.clone(),
            }));
        }
    }
    if by_selection && !found_any {
        outln("No resources found")?;
    }
    Ok(victims)
}

/// Waits until each deleted object is gone (or replaced by a new one with another uid).
async fn wait_gone(
    session: &Session,
    deleted: &[(Victim, Option<String>)],
    timeout: Option<Duration>,
) -> Result<()> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    for (victim, uid) in deleted {
        let api = session.api(&victim.info, victim.namespace.as_deref());
        loop {
            match api.get_opt(&victim.name).await? {
                None => break,
                Some(object) if uid.is_some() && object.metadata.uid != *uid => break,
                Some(_) => {}
            }
            if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                return Err(Error::Other(format!(
                    "timed out waiting for the condition on {}/{}",
                    victim.info.plural_group(),
                    victim.name
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// kubectl's durations (`30s`, `2m`, `1h`, `1m30s`, a bare number of seconds); `0` is none.
pub fn parse_duration(text: &str) -> Result<Option<Duration>> {
    let invalid = || Error::usage(format!("invalid duration {text:?}"));
    let mut total = 0f64;
    let mut number = String::new();
    let mut chars = text.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                0.001
            }
            ('h', _) => 3600.0,
            ('m', _) => 60.0,
            ('s', _) => 1.0,
            _ => return Err(invalid()),
        };
        total += number.parse::<f64>().map_err(|_| invalid())? * unit;
        number.clear();
    }
    if !number.is_empty() {
        total += number.parse::<f64>().map_err(|_| invalid())?;
    }
    Ok((total > 0.0).then(|| Duration::from_secs_f64(total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0s").unwrap(), None);
        assert_eq!(
            parse_duration("30s").unwrap(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_duration("1m30s").unwrap(),
            Some(Duration::from_secs(90))
        );
        assert_eq!(parse_duration("45").unwrap(), Some(Duration::from_secs(45)));
        assert_eq!(
            parse_duration("500ms").unwrap(),
            Some(Duration::from_millis(500))
        );
        assert!(parse_duration("5 parsecs").is_err());
    }
}
