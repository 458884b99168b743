//! ClusterIP and NodePort allocation for Services, done at create as upstream does.
//!
//! What is allocated is derived from the stored Services themselves, under one lock held
//! from reading them until the new Service is stored: nothing to leak or to repair after a
//! crash, and a deleted Service releases its addresses by being gone.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::Value;
use skiff_storage::{ListOptions, StorageError};
use tokio::sync::{Mutex, MutexGuard};

use crate::objects::ObjectStore;

pub const NODE_PORT_RANGE: std::ops::RangeInclusive<u16> = 30000..=32767;

#[derive(Debug, thiserror::Error)]
pub enum CidrError {
    #[error("invalid CIDR {0:?}: expected IPv4 address/prefix such as 10.96.0.0/12")]
    Invalid(String),
}

/// An IPv4 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    base: u32,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, CidrError> {
        let bad = || CidrError::Invalid(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(bad)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if !(8..=30).contains(&prefix) {
            return Err(bad());
        }
        let mask = u32::MAX << (32 - prefix);
        Ok(Cidr {
            base: u32::from(addr) & mask,
            prefix,
        })
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::MAX << (32 - self.prefix);
        u32::from(ip) & mask == self.base
    }

    /// The first usable address (the network address + 1), given to the `kubernetes` Service.
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.base + 1)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

pub struct ServiceAllocator {
    pub cidr: Cidr,
    lock: Mutex<()>,
}

/// What stored Services use now. Hold it until the new Service is written.
pub struct InUse<'a> {
    pub ips: HashSet<Ipv4Addr>,
    pub node_ports: HashSet<u16>,
    _guard: MutexGuard<'a, ()>,
}

impl ServiceAllocator {
    pub fn new(cidr: Cidr) -> Self {
        ServiceAllocator {
            cidr,
            lock: Mutex::new(()),
        }
    }

    /// Lock allocation and read what every stored Service (other than `except_key`) uses.
    pub async fn in_use(
        &self,
        store: &ObjectStore,
        except_key: Option<&str>,
    ) -> Result<InUse<'_>, StorageError> {
        let guard = self.lock.lock().await;
        let page = store
            .list(ListOptions {
                prefix: "/registry/services/".to_string(),
                ..Default::default()
            })
            .await?;
        let mut ips = HashSet::new();
        let mut node_ports = HashSet::new();
        for svc in page
            .items
            .iter()
            .filter(|s| Some(s.key.as_str()) != except_key)
        {
            let spec = &svc.object["spec"];
            if let Some(list) = spec["clusterIPs"].as_array() {
                ips.extend(
                    list.iter()
                        .filter_map(|v| v.as_str()?.parse::<Ipv4Addr>().ok()),
                );
            }
            if let Some(ip) = spec["clusterIP"].as_str().and_then(|s| s.parse().ok()) {
                ips.insert(ip);
            }
            for p in spec["ports"].as_array().into_iter().flatten() {
                if let Some(n) = p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok()) {
                    node_ports.insert(n);
                }
            }
        }
        Ok(InUse {
            ips,
            node_ports,
            _guard: guard,
        })
    }

    /// The lowest free address, skipping the network and broadcast addresses.
    pub fn next_ip(&self, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        (1..self.cidr.size() - 1)
            .map(|off| Ipv4Addr::from(self.cidr.base + off))
            .find(|ip| !used.contains(ip))
    }

    pub fn next_node_port(&self, used: &HashSet<u16>) -> Option<u16> {
        NODE_PORT_RANGE.clone().find(|p| !used.contains(p))
    }
}

/// Allocation failures, answered as 422 with the field that could not be satisfied.
#[derive(Debug)]
pub struct AllocationError {
    pub field: String,
    pub value: String,
    pub detail: String,
}

/// Fill `spec.clusterIP(s)` and node ports of a Service being created or updated, keeping
/// what `old` already had.
pub fn allocate(
    alloc: &ServiceAllocator,
    used: &mut InUse<'_>,
    svc: &mut Value,
    old: Option<&Value>,
) -> Result<(), AllocationError> {
    let svc_type = svc["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_string();
    if svc_type != "ExternalName" {
        let requested = svc["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
        let old_ip = old
            .and_then(|o| o["spec"]["clusterIP"].as_str())
            .unwrap_or("");
        let ip = if requested == "None" {
            "None".to_string()
        } else if !requested.is_empty() {
            if old_ip != requested {
                let parsed: Ipv4Addr = requested.parse().map_err(|_| AllocationError {
                    field: "spec.clusterIPs[0]".into(),
                    value: requested.clone(),
                    detail: "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into(),
                })?;
                if !alloc.cidr.contains(parsed) {
                    return Err(AllocationError {
                        field: "spec.clusterIPs".into(),
                        value: format!("[\"{requested}\"]"),
                        detail: format!(
                            "failed to allocate IP {requested}: the provided IP ({requested}) is not in the valid range. The range of valid IPs is {}",
                            alloc.cidr
                        ),
                    });
                }
                if used.ips.contains(&parsed) {
                    return Err(AllocationError {
                        field: "spec.clusterIPs".into(),
                        value: format!("[\"{requested}\"]"),
                        detail: format!(
                            "failed to allocate IP {requested}: provided IP is already allocated"
                        ),
                    });
                }
            }
            requested
        } else if !old_ip.is_empty() {
            old_ip.to_string()
        } else {
            let ip = alloc.next_ip(&used.ips).ok_or_else(|| AllocationError {
                field: "spec.clusterIPs".into(),
                value: "[]".into(),
                detail: "failed to allocate a serviceIP: range is full".into(),
            })?;
            ip.to_string()
        };
        if let Ok(parsed) = ip.parse::<Ipv4Addr>() {
            used.ips.insert(parsed);
        }
        svc["spec"]["clusterIP"] = Value::String(ip.clone());
        svc["spec"]["clusterIPs"] = serde_json::json!([ip]);
    }
    if svc_type == "NodePort" || svc_type == "LoadBalancer" {
        let old_ports: Vec<(i64, u64)> = old
            .and_then(|o| o["spec"]["ports"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p["port"].as_i64()?, p["nodePort"].as_u64()?)))
            .collect();
        if let Some(ports) = svc["spec"]["ports"].as_array_mut() {
            for (i, p) in ports.iter_mut().enumerate() {
                match p["nodePort"].as_u64() {
                    Some(n) => {
                        let kept = old_ports.iter().any(|(_, o)| *o == n);
                        let n16 = u16::try_from(n)
                            .ok()
                            .filter(|n| NODE_PORT_RANGE.contains(n));
                        match n16 {
                            None => {
                                return Err(AllocationError {
                                    field: format!("spec.ports[{i}].nodePort"),
                                    value: n.to_string(),
                                    detail: format!(
                                        "provided port is not in the valid range. The range of valid ports is {}-{}",
                                        NODE_PORT_RANGE.start(),
                                        NODE_PORT_RANGE.end()
                                    ),
                                });
                            }
                            Some(n16) if !kept && used.node_ports.contains(&n16) => {
                                return Err(AllocationError {
                                    field: format!("spec.ports[{i}].nodePort"),
                                    value: n.to_string(),
                                    detail: "provided port is already allocated".into(),
                                });
                            }
                            Some(n16) => {
                                used.node_ports.insert(n16);
                            }
                        }
                    }
                    None => {
                        let port = p["port"].as_i64();
                        let reuse = old_ports
                            .iter()
                            .find(|(op, _)| Some(*op) == port)
                            .map(|(_, n)| *n);
                        let n = match reuse {
                            Some(n) => n,
                            None => {
                                let n =
                                    alloc.next_node_port(&used.node_ports).ok_or_else(|| {
                                        AllocationError {
                                            field: format!("spec.ports[{i}].nodePort"),
                                            value: String::new(),
                                            detail: "failed to allocate a nodePort: range is full"
                                                .into(),
                                        }
                                    })?;
                                used.node_ports.insert(n);
                                u64::from(n)
                            }
                        };
                        p["nodePort"] = Value::from(n);
                    }
                }
            }
        }
    } else if let Some(ports) = svc["spec"]["ports"].as_array_mut() {
        // ClusterIP services carry no node ports (a type change releases them).
        for p in ports {
            if let Some(m) = p.as_object_mut() {
                m.remove("nodePort");
            }
        }
    }
    Ok(())
}
