//! The connection every command shares: a kube client from the kubeconfig (`$KUBECONFIG`,
//! `~/.kube/config` or `--kubeconfig`; `--context`), the namespace to work in (`-n`, else
//! the context's) and the server's resources, discovered once on first use.

use std::path::PathBuf;

use clap::Args;
use kube::api::{Api, DynamicObject};
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};
use tokio::sync::OnceCell;

use crate::discovery::{Catalog, ResourceInfo};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Path to the kubeconfig file to use for CLI requests.
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The name of the kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// If present, the namespace scope for this CLI request.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

pub struct Session {
    pub client: Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
    /// Whether `-n` was given (then a manifest's own namespace must agree with it).
    pub namespace_explicit: bool,
    catalog: OnceCell<Catalog>,
}

impl Session {
    pub async fn connect(args: &GlobalArgs) -> Result<Session> {
        let options = KubeConfigOptions {
            context: args.context.clone(),
            cluster: None,
            user: None,
        };
        let config = match &args.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).map_err(|e| match e {
                    KubeconfigError::ReadConfig(io, _)
                        if io.kind() == std::io::ErrorKind::NotFound =>
                    {
                        Error::Config(format!(
                            "stat {}: no such file or directory",
                            path.display()
                        ))
                    }
                    other => Error::Config(other.to_string()),
                })?;
                Config::from_custom_kubeconfig(kubeconfig, &options).await
            }
            None => Config::from_kubeconfig(&options).await,
        }
        .map_err(|e| match e {
            // kubectl's wording for a context the kubeconfig does not have.
            KubeconfigError::LoadContext(name) => Error::Verbatim(format!(
                "Error in configuration: context was not found for specified context: {name}"
            )),
            other => Error::Config(other.to_string()),
        })?;
        let namespace = args
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config).map_err(Error::Client)?;
        Ok(Session {
            client,
            namespace,
            namespace_explicit: args.namespace.is_some(),
            catalog: OnceCell::new(),
        })
    }

    /// The namespace a manifest's object goes to: its own, else the session's; with `-n`,
    /// a different one of its own is kubectl's error.
    pub fn manifest_namespace<'a>(&'a self, own: Option<&'a str>) -> Result<&'a str> {
        match own {
            Some(own) if self.namespace_explicit && own != self.namespace => {
                Err(Error::Other(format!(
                    "the namespace from the provided object {own:?} does not match the namespace {:?}. You must pass '--namespace={own}' to perform this operation.",
                    self.namespace
                )))
            }
            Some(own) => Ok(own),
            None => Ok(&self.namespace),
        }
    }

    pub async fn catalog(&self) -> Result<&Catalog> {
        self.catalog
            .get_or_try_init(|| Catalog::discover(&self.client))
            .await
    }

    /// The API of a resource in `namespace` (ignored for cluster-scoped resources; `None`
    /// means across all namespaces).
    pub fn api(&self, info: &ResourceInfo, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) if info.namespaced => Api::namespaced_with(self.client.clone(), ns, &info.api),
            _ => Api::all_with(self.client.clone(), &info.api),
        }
    }
}
