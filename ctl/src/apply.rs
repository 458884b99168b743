//! `skiffctl apply -f`: server-side apply of every manifest with the field manager
//! `skiffctl` (conflicts forced only with `--force-conflicts`). Whether an object was
//! `created`, `configured` or left `unchanged` is read from the object before and after: no
//! object before, or whether anything but its resourceVersion and managedFields changed (an
//! apply that only records field ownership, e.g. the server's `before-first-apply` entry
//! for a namespace applied with nothing but its name, changes nothing the user wrote).

use clap::Args;
use kube::api::{Patch, PatchParams};
use serde_json::Value;

use crate::Session;
use crate::error::{Error, Result, with_source};
use crate::manifest::{self, Manifest};
use crate::progress::Progress;

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Files, directories or `-` (stdin) holding the manifests.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Descend into subdirectories of directories given with -f.
    #[arg(short = 'R', long)]
    pub recursive: bool,
    /// Take over fields another manager owns instead of failing with a conflict.
    #[arg(long)]
    pub force_conflicts: bool,
    /// The field manager the applied fields are recorded under.
    #[arg(long, default_value = "skiffctl")]
    pub field_manager: String,
}

/// What applying did to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
}

impl Outcome {
    pub fn decide(before: Option<&Value>, after: &Value) -> Outcome {
        let Some(before) = before else {
            return Outcome::Created;
        };
        let version = |o: &Value| o["metadata"]["resourceVersion"].clone();
        if version(before) == version(after)
            || without_bookkeeping(before) == without_bookkeeping(after)
        {
            Outcome::Unchanged
        } else {
            Outcome::Configured
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
        }
    }
}

pub async fn run(session: &Session, args: ApplyArgs) -> Result<()> {
    let manifests = manifest::load(&args.files, args.recursive)?;
    if manifests.is_empty() {
        return Err(Error::usage("no objects passed to apply"));
    }
    let progress = Progress::new((manifests.len() > 1).then_some(manifests.len() as u64));
    let mut errors = Vec::new();
    for manifest in &manifests {
        progress.message(&format!("{}/{}", manifest.kind(), manifest.name()));
        match apply_one(session, manifest, &args).await {
            Ok(line) => progress.line(&line)?,
            Err(err) => errors.push(err),
        }
        progress.step();
    }
    progress.finish();
    Error::from_many(errors).map_or(Ok(()), Err)
}

async fn apply_one(session: &Session, manifest: &Manifest, args: &ApplyArgs) -> Result<String> {
    let info = resolve(session, manifest).await?;
    let name = manifest.name();
    if name.is_empty() {
        return Err(Error::Other(format!(
            "error when retrieving current configuration of resource {} from {:?}: resource name may not be empty",
            info.plural_group(),
            manifest.source
        )));
    }
    let namespace = manifest.namespace().unwrap_or(&session.namespace);
    let mut object = manifest.object.clone();
    if info.namespaced {
        object["metadata"]["namespace"] = Value::String(namespace.to_string());
    }
    let api = session.api(&info, Some(namespace));
    let before = api.get_opt(name).await.map_err(|e| {
        with_source(
            e.into(),
            "retrieving current configuration of",
            &manifest.source,
        )
    })?;
    let mut params = PatchParams::apply(&args.field_manager);
    if args.force_conflicts {
        params = params.force();
    }
    let after = api
        .patch(name, &params, &Patch::Apply(&object))
        .await
        .map_err(|e| with_source(e.into(), "applying", &manifest.source))?;
    let as_value = |o| serde_json::to_value(o).map_err(|e| Error::Other(e.to_string()));
    let before = before.map(as_value).transpose()?;
    let outcome = Outcome::decide(before.as_ref(), &as_value(after)?);
    Ok(format!("{}/{name} {}", info.kind_group(), outcome.word()))
}

/// An object without the metadata every write changes.
fn without_bookkeeping(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
    }
    object
}

/// The resource a manifest's `apiVersion`/`kind` names, or kubectl's mapping error.
pub async fn resolve(
    session: &Session,
    manifest: &Manifest,
) -> Result<crate::discovery::ResourceInfo> {
    let catalog = session.catalog().await?;
    catalog
        .resolve_kind(manifest.api_version(), manifest.kind())
        .cloned()
        .map_err(|err| {
            Error::Other(format!(
                "resource mapping not found for name: {:?} namespace: {:?} from {:?}: {err}\nensure CRDs are installed first",
                manifest.name(),
                manifest.namespace().unwrap_or_default(),
                manifest.source
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outcome_from_the_object_before_and_after() {
        let object = |rv: &str, data: &str, manager: &str| json!({"metadata": {"name": "a", "resourceVersion": rv, "managedFields": [{"manager": manager}]}, "data": {"k": data}});
        let before = object("5", "one", "skiffctl");
        assert_eq!(Outcome::decide(None, &before), Outcome::Created);
        assert_eq!(Outcome::decide(Some(&before), &before), Outcome::Unchanged);
        assert_eq!(
            Outcome::decide(Some(&before), &object("6", "one", "before-first-apply")),
            Outcome::Unchanged
        );
        assert_eq!(
            Outcome::decide(Some(&before), &object("6", "two", "skiffctl")),
            Outcome::Configured
        );
    }
}
