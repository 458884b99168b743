//! `skiffctl get`: the server's Tables (`Accept: …;as=Table;g=meta.k8s.io;v=v1`) printed as
//! kubectl prints them, or the objects as YAML, JSON, names or a JSONPath template; `-w`
//! prints rows as they change.

use clap::Args;
use futures::{StreamExt, TryStreamExt};
use http::header::ACCEPT;
use kube::api::{ListParams, WatchEvent, WatchParams};
use kube::core::Request;
use serde_json::Value;

use crate::discovery::{Catalog, ResourceInfo};
use crate::error::{Error, Result};
use crate::output::{self, OutputFormat};
use crate::printer::{self, PrintOptions, Table};
use crate::{Session, errln, out, outln};

/// What kubectl sends to get a Table (falling back to the object for servers without).
pub const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

#[derive(Debug, Args)]
pub struct GetArgs {
    /// TYPE[,TYPE…] [NAME…] or TYPE/NAME… (types by plural, singular, short name or kind).
    #[arg(required = true)]
    pub args: Vec<String>,
    /// Output format: wide, yaml, json, name, jsonpath=TEMPLATE.
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Label selector to filter on (e.g. `-l app=web,tier!=db`).
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    /// Field selector to filter on (e.g. `--field-selector status.phase=Running`).
    #[arg(long)]
    pub field_selector: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// After listing, watch for changes and print them.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Watch for changes without listing first.
    #[arg(long)]
    pub watch_only: bool,
    /// Leave out the header line.
    #[arg(long)]
    pub no_headers: bool,
    /// Print names as `kind/name` even for a single type.
    #[arg(long)]
    pub show_kind: bool,
    /// Keep metadata.managedFields in yaml, json and jsonpath output.
    #[arg(long)]
    pub show_managed_fields: bool,
}

/// One resource type and the names asked for (none: list them).
#[derive(Debug, Clone)]
pub struct Target {
    pub info: ResourceInfo,
    pub names: Vec<String>,
}

/// `TYPE[,TYPE] NAME…` or `TYPE/NAME…` into the resources they name, categories (`all`)
/// expanded.
pub fn targets(catalog: &Catalog, args: &[String]) -> Result<Vec<Target>> {
    let Some(first) = args.first() else {
        return Err(Error::usage(
            "You must specify the type of resource to get.",
        ));
    };
    let mut targets: Vec<Target> = Vec::new();
    if first.contains('/') {
        for arg in args {
            let Some((kind, name)) = arg.split_once('/') else {
                return Err(Error::usage(format!(
                    "there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'skiffctl get resource/<resource_name>' instead of 'skiffctl get resource resource/<resource_name>'): {arg}"
                )));
            };
            let info = catalog.resolve(kind)?;
            match targets.last_mut() {
                Some(last) if last.info.api == info.api => last.names.push(name.to_string()),
                _ => targets.push(Target {
                    info: info.clone(),
                    names: vec![name.to_string()],
                }),
            }
        }
        return Ok(targets);
    }
    let names: Vec<String> = args[1..].to_vec();
    for kind in first.split(',').filter(|k| !k.is_empty()) {
        let category = catalog.category(kind);
        let infos: Vec<&ResourceInfo> = if category.is_empty() || catalog.resolve(kind).is_ok() {
            vec![catalog.resolve(kind)?]
        } else {
            category
        };
        for info in infos {
            targets.push(Target {
                info: info.clone(),
                names: names.clone(),
            });
        }
    }
    Ok(targets)
}

pub async fn run(session: &Session, args: GetArgs) -> Result<()> {
    let catalog = session.catalog().await?;
    let targets = targets(catalog, &args.args)?;
    let format = OutputFormat::parse(args.output.as_deref())?;
    let namespace = (!args.all_namespaces).then_some(session.namespace.as_str());
    let list_params = list_params(&args);
    if (args.watch || args.watch_only) && targets.len() != 1 {
        return Err(Error::usage(
            "you may only specify a single resource type when watching",
        ));
    }
    let mut errors = Vec::new();
    match &format {
        OutputFormat::Table { wide } => {
            let several = targets.len() > 1 || args.show_kind;
            let mut printed_any = false;
            let mut last_table = Table::default();
            // kubectl's tab writer remembers column widths, so watched rows line up with the
            // table printed first.
            let mut widths = Vec::new();
            for target in &targets {
                let (table, missing) =
                    fetch_table(session, target, namespace, &list_params).await?;
                errors.extend(missing);
                if !table.rows.is_empty() && !args.watch_only {
                    let options = PrintOptions {
                        wide: *wide,
                        with_namespace: args.all_namespaces && target.info.namespaced,
                        kind_prefix: several.then(|| target.info.kind_group()),
                        no_headers: args.no_headers,
                    };
                    if printed_any {
                        outln("")?;
                    }
                    // Each type's table is laid out on its own.
                    widths.clear();
                    out(printer::tabwrite_remembering(
                        &printer::table_lines(&table, &options),
                        &mut widths,
                    ))?;
                    printed_any = true;
                }
                last_table = table;
            }
            if !printed_any && errors.is_empty() && !args.watch_only {
                errln(no_resources_message(namespace, &targets));
            }
            if let (true, Some(target)) = (args.watch || args.watch_only, targets.first()) {
                let options = PrintOptions {
                    wide: *wide,
                    with_namespace: args.all_namespaces && target.info.namespaced,
                    kind_prefix: args.show_kind.then(|| target.info.kind_group()),
                    no_headers: !args.watch_only || args.no_headers,
                };
                let since = Some(last_table.resource_version);
                watch_rows(session, target, namespace, &args, since, options, widths).await?;
            }
        }
        other => {
            let mut objects = Vec::new();
            for target in &targets {
                let (found, missing) =
                    fetch_objects(session, target, namespace, &list_params).await?;
                errors.extend(missing);
                objects.extend(found.into_iter().map(|mut object| {
                    if !args.show_managed_fields
                        && let Some(meta) = object["metadata"].as_object_mut()
                    {
                        meta.remove("managedFields");
                    }
                    (target.info.clone(), object)
                }));
            }
            let single = targets.len() == 1 && targets[0].names.len() == 1;
            print_objects(other, &objects, single)?;
        }
    }
    Error::from_many(errors).map_or(Ok(()), Err)
}

pub fn no_resources_message(namespace: Option<&str>, targets: &[Target]) -> String {
    match namespace {
        Some(ns) if targets.iter().any(|t| t.info.namespaced) => {
            format!("No resources found in {ns} namespace.")
        }
        _ => "No resources found".to_string(),
    }
}

fn list_params(args: &GetArgs) -> ListParams {
    let mut params = ListParams::default();
    if let Some(labels) = &args.selector {
        params = params.labels(labels);
    }
    if let Some(fields) = &args.field_selector {
        params = params.fields(fields);
    }
    params
}

fn request_error(err: kube::core::request::Error) -> Error {
    Error::Other(err.to_string())
}

fn with_table_accept(mut request: http::Request<Vec<u8>>) -> http::Request<Vec<u8>> {
    request
        .headers_mut()
        .insert(ACCEPT, http::HeaderValue::from_static(TABLE_ACCEPT));
    request
}

/// The rows for a target (names not found are errors returned beside the rest).
pub async fn fetch_table(
    session: &Session,
    target: &Target,
    namespace: Option<&str>,
    params: &ListParams,
) -> Result<(Table, Vec<Error>)> {
    let api = session.api(&target.info, namespace);
    let request = Request::new(api.resource_url());
    if target.names.is_empty() {
        let http_request = with_table_accept(request.list(params).map_err(request_error)?);
        let table: Value = session.client.request(http_request).await?;
        return Ok((Table::from_json(&table), Vec::new()));
    }
    let mut merged = Table::default();
    let mut errors = Vec::new();
    for name in &target.names {
        let http_request = with_table_accept(
            request
                .get(name, &kube::api::GetParams::default())
                .map_err(request_error)?,
        );
        match session.client.request::<Value>(http_request).await {
            Ok(table) => {
                let table = Table::from_json(&table);
                merged.columns = table.columns;
                merged.rows.extend(table.rows);
                merged.resource_version = table.resource_version;
            }
            Err(err) => errors.push(Error::from(err)),
        }
    }
    Ok((merged, errors))
}

/// The objects for a target, `apiVersion` and `kind` filled in as kubectl shows them.
pub async fn fetch_objects(
    session: &Session,
    target: &Target,
    namespace: Option<&str>,
    params: &ListParams,
) -> Result<(Vec<Value>, Vec<Error>)> {
    let api = session.api(&target.info, namespace);
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    if target.names.is_empty() {
        for item in api.list(params).await?.items {
            objects.push(typed(&target.info, item)?);
        }
    } else {
        for name in &target.names {
            match api.get(name).await {
                Ok(item) => objects.push(typed(&target.info, item)?),
                Err(err) => errors.push(Error::from(err)),
            }
        }
    }
    Ok((objects, errors))
}

fn typed(info: &ResourceInfo, object: kube::api::DynamicObject) -> Result<Value> {
    let mut value = serde_json::to_value(object).map_err(|e| Error::Other(e.to_string()))?;
    if let Value::Object(map) = &mut value {
        map.insert(
            "apiVersion".into(),
            Value::String(info.api.api_version.clone()),
        );
        map.insert("kind".into(), Value::String(info.api.kind.clone()));
    }
    Ok(value)
}

/// Objects in a non-table format: one object alone when exactly one was named, else a List.
pub fn print_objects(
    format: &OutputFormat,
    objects: &[(ResourceInfo, Value)],
    single: bool,
) -> Result<()> {
    let root = || match (single, objects.first()) {
        (true, Some((_, object))) => object.clone(),
        _ => output::list_of(objects.iter().map(|(_, o)| o.clone()).collect()),
    };
    match format {
        OutputFormat::Yaml => out(output::to_yaml(&root())?),
        OutputFormat::Json => out(output::to_json(&root())?),
        OutputFormat::JsonPath(template) => out(crate::jsonpath::render(template, &root())?),
        OutputFormat::Name | OutputFormat::Table { .. } => {
            for (info, object) in objects {
                let name = object["metadata"]["name"].as_str().unwrap_or_default();
                outln(format!("{}/{name}", info.kind_group()))?;
            }
            Ok(())
        }
    }
}

/// `-w`: each change's row, laid out on its own as kubectl's watch printer does.
async fn watch_rows(
    session: &Session,
    target: &Target,
    namespace: Option<&str>,
    args: &GetArgs,
    since: Option<String>,
    mut options: PrintOptions,
    mut widths: Vec<usize>,
) -> Result<()> {
    let api = session.api(&target.info, namespace);
    let mut params = WatchParams::default();
    if let Some(labels) = &args.selector {
        params = params.labels(labels);
    }
    if let Some(fields) = &args.field_selector {
        params = params.fields(fields);
    }
    if let [name] = target.names.as_slice() {
        params = params.fields(&format!("metadata.name={name}"));
    }
    let version = since.unwrap_or_else(|| "0".to_string());
    let request = with_table_accept(
        Request::new(api.resource_url())
            .watch(&params, &version)
            .map_err(request_error)?,
    );
    let events = session.client.request_events::<Value>(request).await?;
    let mut events = events.boxed();
    while let Some(event) = events.try_next().await? {
        let table = match event {
            WatchEvent::Added(t) | WatchEvent::Modified(t) | WatchEvent::Deleted(t) => t,
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Error(status) => {
                return Err(Error::Other(status.message));
            }
        };
        let table = Table::from_json(&table);
        out(printer::tabwrite_remembering(
            &printer::table_lines(&table, &options),
            &mut widths,
        ))?;
        // The header, if any, comes once, with the first row.
        options.no_headers = true;
    }
    Ok(())
}
