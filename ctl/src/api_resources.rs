//! `skiffctl api-resources`: the server's resources from discovery, sorted by group then
//! name as kubectl sorts them.

use clap::Args;

use crate::discovery::ResourceInfo;
use crate::error::{Error, Result};
use crate::printer::tabwrite;
use crate::{Session, out, outln};

#[derive(Debug, Args)]
pub struct ApiResourcesArgs {
    /// Only resources of this API group (`""` for the core group).
    #[arg(long)]
    pub api_group: Option<String>,
    /// Only namespaced (`true`) or cluster-scoped (`false`) resources.
    #[arg(long)]
    pub namespaced: Option<bool>,
    /// wide (adds VERBS and CATEGORIES) or name.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[arg(long)]
    pub no_headers: bool,
}

pub async fn run(session: &Session, args: ApiResourcesArgs) -> Result<()> {
    let catalog = session.catalog().await?;
    let mut resources: Vec<&ResourceInfo> = catalog
        .resources
        .iter()
        .filter(|r| args.api_group.as_deref().is_none_or(|g| r.api.group == g))
        .filter(|r| args.namespaced.is_none_or(|n| r.namespaced == n))
        .collect();
    resources.sort_by(|a, b| {
        (a.api.group.as_str(), a.api.plural.as_str())
            .cmp(&(b.api.group.as_str(), b.api.plural.as_str()))
    });
    let wide = match args.output.as_deref() {
        None => false,
        Some("wide") => true,
        Some("name") => {
            for r in resources {
                outln(r.plural_group())?;
            }
            return Ok(());
        }
        Some(other) => {
            return Err(Error::usage(format!("--output {other} is not available")));
        }
    };
    let mut lines = Vec::new();
    if !args.no_headers {
        let mut header = vec!["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"];
        if wide {
            header.extend(["VERBS", "CATEGORIES"]);
        }
        lines.push(header.into_iter().map(String::from).collect());
    }
    for r in resources {
        let mut line = vec![
            r.api.plural.clone(),
            r.short_names.join(","),
            r.api.api_version.clone(),
            r.namespaced.to_string(),
            r.api.kind.clone(),
        ];
        if wide {
            line.push(r.verbs.join(","));
            line.push(r.categories.join(","));
        }
        lines.push(line);
    }
    out(tabwrite(&lines))
}
