//! Turning a request path and method into what is asked of which resource, as upstream's
//! `RequestInfoFactory` does.

use std::collections::HashMap;

use axum::http::Method;

use crate::error::{ApiError, ApiResult};
use crate::registry::{self, Resource, Subresource};

/// A request for discovery documents.
#[derive(Debug, PartialEq, Eq)]
pub enum DiscoveryPath {
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`
    Resources { group: String, version: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// A request for a resource.
pub struct ResourceRequest {
    pub resource: &'static Resource,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<Subresource>,
    pub verb: Verb,
}

pub enum Target {
    Discovery(DiscoveryPath),
    Resource(ResourceRequest),
}

fn not_found_path(path: &str) -> ApiError {
    ApiError::new(
        404,
        "NotFound",
        format!("the server could not find the requested resource ({path})"),
    )
}

/// Parse `/api/...` and `/apis/...` paths.
pub fn parse(method: &Method, path: &str, query: &HashMap<String, String>) -> ApiResult<Target> {
    let parts: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api"] => return Ok(Target::Discovery(DiscoveryPath::CoreVersions)),
        ["apis"] => return Ok(Target::Discovery(DiscoveryPath::Groups)),
        ["apis", g] => {
            if registry::groups().contains(g) {
                return Ok(Target::Discovery(DiscoveryPath::Group(g.to_string())));
            }
            return Err(not_found_path(path));
        }
        ["api", v] | ["apis", _, v] if parts.len() <= 3 => {
            let group = if parts[0] == "api" { "" } else { parts[1] };
            if registry::versions_of(group).contains(v) {
                return Ok(Target::Discovery(DiscoveryPath::Resources {
                    group: group.to_string(),
                    version: v.to_string(),
                }));
            }
            return Err(not_found_path(path));
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found_path(path)),
    };

    // namespaces/<ns>/<resource>[/<name>[/<sub>]] unless it is the namespace object itself.
    let (namespace, resource_parts): (Option<&str>, &[&str]) = match rest {
        ["namespaces", ns, tail @ ..]
            if !(tail.is_empty()
                || group.is_empty() && matches!(tail, ["status" | "finalize"])) =>
        {
            (Some(*ns), tail)
        }
        other => (None, other),
    };
    let (plural, name, sub) = match resource_parts {
        [res] => (*res, None, None),
        [res, name] => (*res, Some(*name), None),
        [res, name, sub] => (*res, Some(*name), Some(*sub)),
        _ => return Err(not_found_path(path)),
    };
    let resource = registry::lookup(group, version, plural).ok_or_else(|| not_found_path(path))?;
    if namespace.is_some() && !resource.namespaced {
        return Err(not_found_path(path));
    }
    let subresource = match sub {
        None => None,
        Some(s) => {
            let found = resource
                .subresources
                .iter()
                .copied()
                .find(|r| r.name() == s);
            match found {
                Some(f) => Some(f),
                None => return Err(not_found_path(path)),
            }
        }
    };
    let is_watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (method.as_str(), name.is_some()) {
        // Running a process is creating something, over a WebSocket (GET) or SPDY (POST)
        // alike: authorized as `create`, as upstream does since 1.30.
        ("GET" | "POST", true) if subresource == Some(Subresource::Exec) => Verb::Create,
        ("GET", true) if subresource == Some(Subresource::Log) => Verb::Get,
        ("GET", true) if is_watch => Verb::Watch,
        ("GET", true) => Verb::Get,
        ("GET", false) if is_watch => Verb::Watch,
        ("GET", false) => Verb::List,
        ("POST", false) => Verb::Create,
        ("POST", true) if subresource == Some(Subresource::Binding) => Verb::Create,
        ("PUT", true) => Verb::Update,
        ("PATCH", true) => Verb::Patch,
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        (m, _) => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({m} {path})"
            )));
        }
    };
    if subresource.is_some()
        && !matches!(verb, Verb::Get | Verb::Update | Verb::Patch | Verb::Create)
    {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {path})",
            method.as_str()
        )));
    }
    if (subresource == Some(Subresource::Binding) && verb != Verb::Create)
        || (subresource == Some(Subresource::Finalize) && verb != Verb::Update)
        || (subresource == Some(Subresource::Log) && verb != Verb::Get)
        || (subresource == Some(Subresource::Exec) && verb != Verb::Create)
    {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({} {path})",
            method.as_str()
        )));
    }
    Ok(Target::Resource(ResourceRequest {
        resource,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        subresource,
        verb,
    }))
}
