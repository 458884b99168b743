//! Placeholder until the pod network lands (the API the kubelet calls).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl std::str::FromStr for Ipv4Cidr {
    type Err = NetworkError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| NetworkError(format!("invalid CIDR {s:?}")))?;
        Ok(Ipv4Cidr {
            addr: a
                .parse()
                .map_err(|_| NetworkError(format!("invalid CIDR {s:?}")))?,
            prefix_len: p
                .parse()
                .map_err(|_| NetworkError(format!("invalid CIDR {s:?}")))?,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NetworkError(String);

pub struct NetworkConfig {
    pub bridge: String,
    pub pod_cidr: Ipv4Cidr,
    pub cluster_cidr: Ipv4Cidr,
    pub service_cidr: Ipv4Cidr,
    pub state_dir: PathBuf,
}

pub struct PodInterface {
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub host_veth: String,
}

pub struct PodNetwork;

impl PodNetwork {
    pub fn new(_config: NetworkConfig) -> Result<PodNetwork, NetworkError> {
        Err(NetworkError("the pod network is not built yet".into()))
    }
    pub fn ensure_node(&self) -> Result<(), NetworkError> {
        Ok(())
    }
    pub fn attach(&self, _sandbox_id: &str, _netns: &Path) -> Result<PodInterface, NetworkError> {
        Err(NetworkError("the pod network is not built yet".into()))
    }
    pub fn detach(&self, _sandbox_id: &str) -> Result<(), NetworkError> {
        Ok(())
    }
    pub fn sync_peer_routes(&self, _peers: &[(Ipv4Cidr, Ipv4Addr)]) -> Result<(), NetworkError> {
        Ok(())
    }
}
