//! `skiffctl scale TYPE NAME --replicas=N` (or `TYPE/NAME`): through the `scale`
//! subresource, optionally only if the current size is `--current-replicas`.

use clap::Args;
use kube::api::{Patch, PatchParams};

use crate::error::{Error, Result};
use crate::get::targets;
use crate::{Session, outln};

#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// TYPE NAME… or TYPE/NAME…
    #[arg(required = true)]
    pub args: Vec<String>,
    /// The new number of replicas.
    #[arg(long)]
    pub replicas: i32,
    /// Only scale if the current number of replicas is this.
    #[arg(long)]
    pub current_replicas: Option<i32>,
}

pub async fn run(session: &Session, args: ScaleArgs) -> Result<()> {
    if args.replicas < 0 {
        return Err(Error::usage(
            "The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0",
        ));
    }
    let catalog = session.catalog().await?;
    let targets = targets(catalog, &args.args)?;
    for target in targets {
        if !catalog.has_subresource(&target.info.api.group, &target.info.api.plural, "scale") {
            return Err(Error::Other(format!(
                "cannot scale {}: it has no scale subresource",
                target.info.plural_group()
            )));
        }
        if target.names.is_empty() {
            return Err(Error::usage(
                "resource(s) were provided, but no name was specified",
            ));
        }
        let api = session.api(&target.info, Some(&session.namespace));
        for name in &target.names {
            let current = api.get_scale(name).await?;
            if let Some(expected) = args.current_replicas {
                let actual = current.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
                if actual != expected {
                    return Err(Error::Other(format!(
                        "Expected replicas to be {expected}, was {actual}"
                    )));
                }
            }
            // The resourceVersion read above guards the write when --current-replicas is
            // given, so a concurrent scale between the check and the write is a conflict.
            let mut patch = serde_json::json!({"spec": {"replicas": args.replicas}});
            if args.current_replicas.is_some() {
                patch["metadata"] =
                    serde_json::json!({"resourceVersion": current.metadata.resource_version});
            }
            api.patch_scale(
                name,
                &PatchParams {
                    field_manager: Some("skiffctl-scale".into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(&patch),
            )
            .await?;
            outln(format!("{}/{name} scaled", target.info.kind_group()))?;
        }
    }
    Ok(())
}
