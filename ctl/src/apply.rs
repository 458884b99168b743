//! `skiffctl apply -f`: server-side apply of every manifest with the field manager
//! `skiffctl` (conflicts forced only with `--force-conflicts`). Whether an object was
//! `created`, `configured` or left `unchanged` is read from the object before and after: no
//! object before; or whether the fields the manifest sets, or the set of fields skiffctl
//! owns, changed. Controllers write the same objects meanwhile (a Deployment's status and
//! revision annotation), and an apply that only records ownership (the server's
//! `before-first-apply` entry for a namespace applied with nothing but its name) changes
//! nothing the user wrote: neither makes an apply `configured`.

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
    pub fn decide(
        applied: &Value,
        manager: &str,
        before: Option<&Value>,
        after: &Value,
    ) -> Outcome {
        let Some(before) = before else {
            return Outcome::Created;
        };
        let version = |o: &Value| o["metadata"]["resourceVersion"].clone();
        if version(before) == version(after)
            || (!differs_where_set(applied, before, after)
                && owned_fields(before, manager) == owned_fields(after, manager))
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
    let namespace = if info.namespaced {
        session.manifest_namespace(manifest.namespace())?
    } else {
        &session.namespace
    };
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
    let outcome = Outcome::decide(
        &object,
        &args.field_manager,
        before.as_ref(),
        &as_value(after)?,
    );
    Ok(format!("{}/{name} {}", info.kind_group(), outcome.word()))
}

/// Whether `before` and `after` differ at any field the manifest sets (lists and scalars
/// compared whole; the server's defaults inside them are the same both times).
fn differs_where_set(applied: &Value, before: &Value, after: &Value) -> bool {
    match applied {
        Value::Object(fields) => fields.iter().any(|(key, value)| {
            let skip = matches!(key.as_str(), "resourceVersion" | "managedFields");
            !skip
                && differs_where_set(
                    value,
                    before.get(key).unwrap_or(&Value::Null),
                    after.get(key).unwrap_or(&Value::Null),
                )
        }),
        _ => before != after,
    }
}

/// The field sets `manager` owns through apply (without their timestamps).
fn owned_fields(object: &Value, manager: &str) -> Vec<Value> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|entry| entry["manager"] == manager && entry["operation"] == "Apply")
        .map(|entry| entry["fieldsV1"].clone())
        .collect()
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
        let applied = json!({"metadata": {"name": "a"}, "data": {"k": "one"}});
        let object = |rv: &str, data: &str, fields: &str, status: &str| {
            json!({"metadata": {"name": "a", "resourceVersion": rv, "managedFields": [
                {"manager": "skiffctl", "operation": "Apply", "time": rv, "fieldsV1": {"f:data": {fields: {}}}},
                {"manager": "before-first-apply", "operation": "Update", "fieldsV1": {}},
            ]}, "data": {"k": data}, "status": {"seen": status}})
        };
        let decide = |before: &Value, after: &Value| {
            Outcome::decide(&applied, "skiffctl", Some(before), after)
        };
        let before = object("5", "one", "f:k", "x");
        assert_eq!(
            Outcome::decide(&applied, "skiffctl", None, &before),
            Outcome::Created
        );
        assert_eq!(decide(&before, &before), Outcome::Unchanged);
        // A controller's write in between, or a new timestamp: nothing the manifest sets.
        assert_eq!(
            decide(&before, &object("7", "one", "f:k", "y")),
            Outcome::Unchanged
        );
        assert_eq!(
            decide(&before, &object("7", "two", "f:k", "x")),
            Outcome::Configured
        );
        // A field the manifest no longer sets was removed: the owned set changed.
        assert_eq!(
            decide(&before, &object("7", "one", "f:j", "x")),
            Outcome::Configured
        );
    }
}
