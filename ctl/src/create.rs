//! `skiffctl create -f`: POST each manifest; an existing object is the server's
//! AlreadyExists error, as with kubectl.

use clap::Args;
use kube::api::{DynamicObject, PostParams};

use crate::error::{Error, Result, with_source};
use crate::manifest::{self, Manifest};
use crate::{Session, outln};

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Files, directories or `-` (stdin) holding the manifests.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<String>,
    /// Descend into subdirectories of directories given with -f.
    #[arg(short = 'R', long)]
    pub recursive: bool,
}

pub async fn run(session: &Session, args: CreateArgs) -> Result<()> {
    let manifests = manifest::load(&args.files, args.recursive)?;
    if manifests.is_empty() {
        return Err(Error::usage("no objects passed to create"));
    }
    let mut errors = Vec::new();
    for manifest in &manifests {
        match create_one(session, manifest).await {
            Ok(line) => outln(line)?,
            Err(err) => errors.push(err),
        }
    }
    Error::from_many(errors).map_or(Ok(()), Err)
}

async fn create_one(session: &Session, manifest: &Manifest) -> Result<String> {
    let info = crate::apply::resolve(session, manifest).await?;
    let namespace = if info.namespaced {
        session.manifest_namespace(manifest.namespace())?
    } else {
        &session.namespace
    };
    let object: DynamicObject = serde_json::from_value(manifest.object.clone())
        .map_err(|e| Error::Other(format!("{}: {e}", manifest.source)))?;
    let created = session
        .api(&info, Some(namespace))
        .create(&PostParams::default(), &object)
        .await
        .map_err(|e| with_source(e.into(), "creating", &manifest.source))?;
    Ok(format!(
        "{}/{} created",
        info.kind_group(),
        created.metadata.name.unwrap_or_default()
    ))
}
