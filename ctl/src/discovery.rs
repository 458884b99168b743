//! What the server serves, from its aggregated discovery (as kubectl asks for it): each
//! resource's kind, scope, verbs, short names and categories, and how a user's type argument
//! (`po`, `pods`, `Pod`, `deploy`, `deployments.apps`) maps onto one.

use kube::Client;
use kube::core::discovery::v2::{APIGroupDiscoveryList, APIResourceDiscovery};
use kube::core::{ApiResource, GroupVersionKind};

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct ResourceInfo {
    pub api: ApiResource,
    pub namespaced: bool,
    pub singular: String,
    pub short_names: Vec<String>,
    pub verbs: Vec<String>,
    pub categories: Vec<String>,
}

impl ResourceInfo {
    /// kubectl's `kind.group` (`deployment.apps`, `pod`): the prefix of `TYPE/NAME` output.
    pub fn kind_group(&self) -> String {
        let kind = self.api.kind.to_lowercase();
        if self.api.group.is_empty() {
            kind
        } else {
            format!("{kind}.{}", self.api.group)
        }
    }

    /// `deployments.apps`, `pods`: how kubectl names the resource in messages.
    pub fn plural_group(&self) -> String {
        if self.api.group.is_empty() {
            self.api.plural.clone()
        } else {
            format!("{}.{}", self.api.plural, self.api.group)
        }
    }

    pub fn supports(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == verb)
    }
}

/// Every resource the server serves, preferred versions first, subresources left out.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub resources: Vec<ResourceInfo>,
    /// `group/resource/subresource` for each subresource served (e.g. `/pods/eviction`).
    pub subresources: Vec<String>,
}

impl Catalog {
    pub async fn discover(client: &Client) -> Result<Catalog> {
        let mut catalog = Catalog::default();
        let core = client.list_core_api_versions_aggregated().await?;
        catalog.add(core);
        let groups = client.list_api_groups_aggregated().await?;
        catalog.add(groups);
        Ok(catalog)
    }

    fn add(&mut self, list: APIGroupDiscoveryList) {
        for group in list.items {
            let group_name = group
                .metadata
                .as_ref()
                .and_then(|m| m.name.clone())
                .unwrap_or_default();
            for version in &group.versions {
                let Some(version_name) = version.version.as_deref() else {
                    continue;
                };
                for resource in &version.resources {
                    self.add_resource(&group_name, version_name, resource);
                }
            }
        }
    }

    fn add_resource(&mut self, group: &str, version: &str, resource: &APIResourceDiscovery) {
        let Some(plural) = resource.resource.as_deref() else {
            return;
        };
        for sub in &resource.subresources {
            if let Some(name) = &sub.subresource {
                self.subresources.push(format!("{group}/{plural}/{name}"));
            }
        }
        if self
            .resources
            .iter()
            .any(|r| r.api.group == group && r.api.plural == plural)
        {
            return;
        }
        let kind = resource
            .response_kind
            .as_ref()
            .and_then(|k| k.kind.clone())
            .unwrap_or_default();
        let gvk = GroupVersionKind::gvk(group, version, &kind);
        self.resources.push(ResourceInfo {
            api: ApiResource::from_gvk_with_plural(&gvk, plural),
            namespaced: resource.scope.as_deref() == Some("Namespaced"),
            singular: resource
                .singular_resource
                .clone()
                .unwrap_or_else(|| kind.to_lowercase()),
            short_names: resource.short_names.clone(),
            verbs: resource.verbs.clone(),
            categories: resource.categories.clone(),
        });
    }

    /// The resource a type argument names: plural, singular, short name or kind, any case,
    /// optionally `.group` (or `.version.group`) after it. Core and earlier groups win ties,
    /// as in kubectl's priority RESTMapper.
    pub fn resolve(&self, arg: &str) -> Result<&ResourceInfo> {
        let wanted = arg.to_lowercase();
        let matches = |r: &ResourceInfo, name: &str| {
            r.api.plural == name
                || r.singular == name
                || r.api.kind.to_lowercase() == name
                || r.short_names.iter().any(|s| s == name)
        };
        let found = self
            .resources
            .iter()
            .find(|r| matches(r, &wanted))
            .or_else(|| {
                let (name, qualifier) = wanted.split_once('.')?;
                self.resources.iter().find(|r| {
                    matches(r, name)
                        && (qualifier == r.api.group
                            || qualifier == format!("{}.{}", r.api.version, r.api.group))
                })
            });
        found.ok_or_else(|| {
            Error::Other(format!("the server doesn't have a resource type \"{arg}\""))
        })
    }

    /// The resource serving `apiVersion` + `kind`, as a manifest names it.
    pub fn resolve_kind(&self, api_version: &str, kind: &str) -> Result<&ResourceInfo> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.resources
            .iter()
            .find(|r| r.api.group == group && r.api.kind == kind && r.api.version == version)
            .or_else(|| {
                self.resources
                    .iter()
                    .find(|r| r.api.group == group && r.api.kind == kind)
            })
            .ok_or_else(|| {
                Error::Other(format!(
                    "no matches for kind \"{kind}\" in version \"{api_version}\""
                ))
            })
    }

    /// The resources of a category (`all`), in discovery order.
    pub fn category(&self, name: &str) -> Vec<&ResourceInfo> {
        self.resources
            .iter()
            .filter(|r| r.categories.iter().any(|c| c == name))
            .collect()
    }

    pub fn has_subresource(&self, group: &str, plural: &str, sub: &str) -> bool {
        let wanted = format!("{group}/{plural}/{sub}");
        self.subresources.contains(&wanted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(group: &str, kind: &str, plural: &str, short: &[&str]) -> ResourceInfo {
        ResourceInfo {
            api: ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk(group, "v1", kind),
                plural,
            ),
            namespaced: true,
            singular: kind.to_lowercase(),
            short_names: short.iter().map(|s| s.to_string()).collect(),
            verbs: vec!["get".into()],
            categories: vec![],
        }
    }

    #[test]
    fn resolves_every_spelling_kubectl_accepts() {
        let catalog = Catalog {
            resources: vec![
                info("", "Pod", "pods", &["po"]),
                info("", "Event", "events", &["ev"]),
                info("apps", "Deployment", "deployments", &["deploy"]),
                info("events.k8s.io", "Event", "events", &["ev"]),
            ],
            subresources: vec![],
        };
        for arg in ["po", "pod", "pods", "Pod", "PODS"] {
            assert_eq!(catalog.resolve(arg).unwrap().api.plural, "pods", "{arg}");
        }
        for arg in ["deploy", "deployment.apps", "deployments.v1.apps"] {
            assert_eq!(
                catalog.resolve(arg).unwrap().api.kind,
                "Deployment",
                "{arg}"
            );
        }
        assert_eq!(catalog.resolve("ev").unwrap().api.group, "");
        assert_eq!(
            catalog.resolve("events.events.k8s.io").unwrap().api.group,
            "events.k8s.io"
        );
        assert_eq!(
            catalog.resolve("gizmo").unwrap_err().to_string(),
            "the server doesn't have a resource type \"gizmo\""
        );
        assert_eq!(
            catalog
                .resolve_kind("apps/v1", "Deployment")
                .unwrap()
                .kind_group(),
            "deployment.apps"
        );
    }
}
