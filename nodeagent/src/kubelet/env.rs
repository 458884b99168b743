//! A container's environment as kubelet builds it: `envFrom` sources in order, then `env`
//! (values with `$(VAR)` expansion; configMapKeyRef, secretKeyRef, fieldRef, resourceFieldRef),
//! later entries winning. A missing source or key is the container's
//! CreateContainerConfigError, with upstream's message.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};

use super::containers;
use super::object_cache::PodSources;

/// ConfigMaps and Secrets of one sync of one pod, each read once from the node's caches.
pub struct Sources {
    caches: Arc<PodSources>,
    namespace: String,
    pod_uid: String,
    config_maps: HashMap<String, Option<Arc<ConfigMap>>>,
    secrets: HashMap<String, Option<Arc<Secret>>>,
}

impl Sources {
    pub fn new(caches: Arc<PodSources>, namespace: &str, pod_uid: &str) -> Sources {
        Sources {
            caches,
            namespace: namespace.to_string(),
            pod_uid: pod_uid.to_string(),
            config_maps: HashMap::new(),
            secrets: HashMap::new(),
        }
    }

    pub async fn config_map(&mut self, name: &str) -> Result<Option<&ConfigMap>, String> {
        if !self.config_maps.contains_key(name) {
            let got = self
                .caches
                .config_maps
                .get(&self.namespace, name, &self.pod_uid)
                .await?;
            self.config_maps.insert(name.to_string(), got);
        }
        Ok(self.config_maps.get(name).and_then(|c| c.as_deref()))
    }

    pub async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, String> {
        if !self.secrets.contains_key(name) {
            let got = self
                .caches
                .secrets
                .get(&self.namespace, name, &self.pod_uid)
                .await?;
            self.secrets.insert(name.to_string(), got);
        }
        Ok(self.secrets.get(name).and_then(|c| c.as_deref()))
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The keys and values of a ConfigMap or Secret: `None` when it is missing and
    /// `optional`; a missing required one is upstream's `configmap "x" not found`.
    pub async fn entries(
        &mut self,
        kind: SourceKind,
        name: &str,
        optional: bool,
    ) -> Result<Option<Vec<(String, Vec<u8>)>>, String> {
        let found = match kind {
            SourceKind::ConfigMap => self.config_map(name).await?.map(config_map_entries),
            SourceKind::Secret => self.secret(name).await?.map(secret_entries),
        };
        match found {
            Some(entries) => Ok(Some(entries)),
            None if optional => Ok(None),
            None => Err(format!("{} {name:?} not found", kind.noun())),
        }
    }
}

/// Where env values and volume files come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    ConfigMap,
    Secret,
}

impl SourceKind {
    /// As upstream's messages spell it in lower case.
    pub fn noun(self) -> &'static str {
        match self {
            SourceKind::ConfigMap => "configmap",
            SourceKind::Secret => "secret",
        }
    }

    /// The kind.
    pub fn kind(self) -> &'static str {
        match self {
            SourceKind::ConfigMap => "ConfigMap",
            SourceKind::Secret => "Secret",
        }
    }
}

/// A ConfigMap's keys and values (binaryData as lossy UTF-8, for env).
pub fn config_map_entries(cm: &ConfigMap) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    out.extend(
        cm.binary_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.0.clone())),
    );
    out
}

/// A Secret's keys and values (stringData is folded into data by the API server).
pub fn secret_entries(s: &Secret) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    out.extend(
        s.string_data
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
    );
    out
}

/// Expands `$(NAME)` from `vars` (unknown references stay as written; `$$` is a literal `$`),
/// as upstream's `expansion.Expand`.
pub fn expand(input: &str, vars: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let bytes = input.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                    continue;
                }
                b'(' => {
                    if let Some(end) = input[i + 2..].find(')') {
                        let name = &input[i + 2..i + 2 + end];
                        match vars(name) {
                            Some(v) => out.push_str(&v),
                            None => out.push_str(&input[i..i + 3 + end]),
                        }
                        i += 3 + end;
                        continue;
                    }
                }
                _ => {}
            }
        }
        let ch = input[i..].chars().next().unwrap_or('\0');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

/// The value of a downward-API field path of `pod`.
pub fn field_value(pod: &Pod, path: &str) -> Result<String, String> {
    let m = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let map_key = |prefix: &str| -> Option<String> {
        path.strip_prefix(prefix)?
            .strip_prefix("['")?
            .strip_suffix("']")
            .map(str::to_string)
    };
    if let Some(k) = map_key("metadata.labels") {
        return Ok(m
            .labels
            .as_ref()
            .and_then(|l| l.get(&k).cloned())
            .unwrap_or_default());
    }
    if let Some(k) = map_key("metadata.annotations") {
        return Ok(m
            .annotations
            .as_ref()
            .and_then(|l| l.get(&k).cloned())
            .unwrap_or_default());
    }
    let map_text = |map: Option<&std::collections::BTreeMap<String, String>>| {
        let mut lines: Vec<String> = map
            .into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        lines.sort();
        lines.join("\n")
    };
    Ok(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => map_text(m.labels.as_ref()),
        "metadata.annotations" => map_text(m.annotations.as_ref()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" => status.and_then(|s| s.host_ip.clone()).unwrap_or_default(),
        "status.hostIPs" => status
            .and_then(|s| s.host_ips.as_ref())
            .map(|ips| {
                ips.iter()
                    .map(|i| i.ip.clone())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        "status.podIP" => status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        "status.podIPs" => status
            .and_then(|s| s.pod_ips.as_ref())
            .map(|ips| {
                ips.iter()
                    .map(|i| i.ip.clone())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default(),
        other => return Err(format!("unsupported fieldPath: {other}")),
    })
}

/// `limits.cpu`, `requests.memory`, … of container `c`, divided by `divisor` and rounded up,
/// as upstream's `ExtractContainerResourceValue`; a missing limit is the node's allocatable.
pub fn resource_value(
    c: &Container,
    resource: &str,
    divisor: Option<&str>,
    node_allocatable: &HashMap<String, String>,
) -> Result<String, String> {
    let (kind, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("unsupported container resource: {resource}"))?;
    let list = c.resources.as_ref().and_then(|r| match kind {
        "limits" => r.limits.as_ref(),
        "requests" => r.requests.as_ref(),
        _ => None,
    });
    let value = list
        .and_then(|l| l.get(name))
        .map(|q| q.0.clone())
        .or_else(|| {
            (kind == "limits")
                .then(|| node_allocatable.get(name).cloned())
                .flatten()
        })
        .unwrap_or_else(|| "0".into());
    match name {
        "cpu" => {
            let milli = containers::milli_cpu(&value).unwrap_or(0);
            let div = divisor
                .and_then(containers::milli_cpu)
                .filter(|d| *d > 0)
                .unwrap_or(1000);
            Ok(((milli + div - 1) / div).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let b = containers::bytes(&value).unwrap_or(0);
            let div = divisor
                .and_then(containers::bytes)
                .filter(|d| *d > 0)
                .unwrap_or(1);
            Ok(((b + div - 1) / div).to_string())
        }
        _ => Err(format!("unsupported container resource: {resource}")),
    }
}

/// The container's environment, `NAME=value` in order.
pub async fn container_env(
    pod: &Pod,
    c: &Container,
    sources: &mut Sources,
    node_allocatable: &HashMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| match env
        .iter_mut()
        .find(|(n, _)| *n == k)
    {
        Some(slot) => slot.1 = v,
        None => env.push((k, v)),
    };
    let ns = sources.namespace().to_string();
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let refs = [
            (
                SourceKind::ConfigMap,
                from.config_map_ref.as_ref().map(|r| (&r.name, r.optional)),
            ),
            (
                SourceKind::Secret,
                from.secret_ref.as_ref().map(|r| (&r.name, r.optional)),
            ),
        ];
        for (kind, reference) in refs {
            let Some((name, optional)) = reference else {
                continue;
            };
            for (k, v) in sources
                .entries(kind, name, optional.unwrap_or(false))
                .await?
                .unwrap_or_default()
            {
                set(
                    &mut env,
                    format!("{prefix}{k}"),
                    String::from_utf8_lossy(&v).into(),
                );
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            let snapshot = env.clone();
            expand(v, &|name| {
                snapshot
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            })
        } else if let Some(from) = &e.value_from {
            let key_ref = from
                .config_map_key_ref
                .as_ref()
                .map(|r| (SourceKind::ConfigMap, &r.name, &r.key, r.optional))
                .or_else(|| {
                    from.secret_key_ref
                        .as_ref()
                        .map(|r| (SourceKind::Secret, &r.name, &r.key, r.optional))
                });
            if let Some((kind, name, key, optional)) = key_ref {
                let optional = optional.unwrap_or(false);
                let Some(entries) = sources.entries(kind, name, optional).await? else {
                    continue;
                };
                match entries.into_iter().find(|(k, _)| k == key) {
                    Some((_, v)) => String::from_utf8_lossy(&v).into(),
                    None if optional => continue,
                    None => {
                        return Err(format!(
                            "couldn't find key {key} in {} {ns}/{name}",
                            kind.kind()
                        ));
                    }
                }
            } else if let Some(f) = &from.field_ref {
                field_value(pod, &f.field_path)?
            } else if let Some(r) = &from.resource_field_ref {
                let target = match r.container_name.as_deref().filter(|n| !n.is_empty()) {
                    Some(name) => pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.containers.iter().find(|x| x.name == name))
                        .unwrap_or(c),
                    None => c,
                };
                resource_value(
                    target,
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                    node_allocatable,
                )?
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        set(&mut env, e.name.clone(), value);
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expansion_follows_upstream() {
        let vars = |n: &str| match n {
            "A" => Some("1".to_string()),
            "B" => Some("two".to_string()),
            _ => None,
        };
        assert_eq!(expand("$(A)-$(B)", &vars), "1-two");
        assert_eq!(expand("$(C) stays", &vars), "$(C) stays");
        assert_eq!(expand("$$(A) escaped", &vars), "$(A) escaped");
        assert_eq!(expand("plain $ sign", &vars), "plain $ sign");
        assert_eq!(expand("unclosed $(A", &vars), "unclosed $(A");
        assert_eq!(expand("ünï $(A)", &vars), "ünï 1");
    }

    #[test]
    fn downward_fields_and_resources() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u",
                "labels": {"b": "2", "a": "1"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "resources": {
                "limits": {"cpu": "500m", "memory": "64Mi"}}}]},
            "status": {"podIP": "10.244.0.9"},
        }))
        .expect("pod");
        assert_eq!(field_value(&pod, "metadata.name").as_deref(), Ok("p"));
        assert_eq!(
            field_value(&pod, "metadata.labels['a']").as_deref(),
            Ok("1")
        );
        assert_eq!(
            field_value(&pod, "metadata.labels").as_deref(),
            Ok("a=\"1\"\nb=\"2\"")
        );
        assert_eq!(field_value(&pod, "spec.nodeName").as_deref(), Ok("n1"));
        assert_eq!(
            field_value(&pod, "status.podIP").as_deref(),
            Ok("10.244.0.9")
        );
        assert!(field_value(&pod, "spec.bogus").is_err());
        let c = &pod.spec.as_ref().expect("spec").containers[0];
        let alloc: HashMap<String, String> = [("memory".to_string(), "1Gi".to_string())]
            .into_iter()
            .collect();
        assert_eq!(
            resource_value(c, "limits.cpu", None, &alloc).as_deref(),
            Ok("1")
        );
        assert_eq!(
            resource_value(c, "limits.cpu", Some("1m"), &alloc).as_deref(),
            Ok("500")
        );
        assert_eq!(
            resource_value(c, "limits.memory", Some("1Mi"), &alloc).as_deref(),
            Ok("64")
        );
        assert_eq!(
            resource_value(c, "requests.memory", None, &alloc).as_deref(),
            Ok("0")
        );
    }
}
