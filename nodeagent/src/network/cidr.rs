//! IPv4 CIDR blocks: the podCIDR, cluster CIDR and service CIDR the network is built from.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 block in CIDR notation, always held in canonical form (host bits zero), so two
/// blocks compare equal exactly when they cover the same addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Cidr {
    network: Ipv4Addr,
    prefix_len: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("invalid CIDR {0:?}: expected ADDRESS/PREFIX, e.g. 10.244.1.0/24")]
    Syntax(String),
    #[error("invalid CIDR {0:?}: the prefix length must be 0 to 32")]
    PrefixLength(String),
    #[error("invalid CIDR {0:?}: host bits are set (did you mean {1}?)")]
    HostBits(String, Ipv4Cidr),
}

impl Ipv4Cidr {
    /// The block of `prefix_len` bits holding `address` (host bits are cleared).
    pub fn new(address: Ipv4Addr, prefix_len: u8) -> Result<Ipv4Cidr, CidrError> {
        if prefix_len > 32 {
            return Err(CidrError::PrefixLength(format!("{address}/{prefix_len}")));
        }
        Ok(Ipv4Cidr {
            network: Ipv4Addr::from(u32::from(address) & mask(prefix_len)),
            prefix_len,
        })
    }

    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The last address of the block (the broadcast address of a subnet).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !mask(self.prefix_len))
    }

    /// How many addresses the block covers.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix_len))
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & mask(self.prefix_len) == u32::from(self.network)
    }

    /// Whether every address of `other` is in this block.
    pub fn covers(&self, other: &Ipv4Cidr) -> bool {
        self.prefix_len <= other.prefix_len && self.contains(other.network)
    }

    /// Whether the two blocks share an address (CIDR blocks either nest or are disjoint).
    pub fn overlaps(&self, other: &Ipv4Cidr) -> bool {
        self.covers(other) || other.covers(self)
    }

    /// The `n`th address of the block counting from its network address (0), or `None` past
    /// its end. `nth(1)` of 10.244.1.0/24 is 10.244.1.1, the pod network's gateway.
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        if n >= self.size() {
            return None;
        }
        // In range, so the sum stays within the block and below 2^32.
        Some(Ipv4Addr::from(u32::from(self.network) + n as u32))
    }

    /// The position of `address` in the block (inverse of [`Ipv4Cidr::nth`]).
    pub fn offset_of(&self, address: Ipv4Addr) -> Option<u64> {
        self.contains(address)
            .then(|| u64::from(u32::from(address) - u32::from(self.network)))
    }

    /// The two halves of the block, or `None` for a single address.
    pub fn halves(&self) -> Option<(Ipv4Cidr, Ipv4Cidr)> {
        if self.prefix_len == 32 {
            return None;
        }
        let prefix_len = self.prefix_len + 1;
        let upper = u32::from(self.network) | (1u32 << (32 - u32::from(prefix_len)));
        Some((
            Ipv4Cidr {
                network: self.network,
                prefix_len,
            },
            Ipv4Cidr {
                network: Ipv4Addr::from(upper),
                prefix_len,
            },
        ))
    }

    /// The smallest set of blocks covering this block minus `holes`, in address order.
    pub fn subtract(&self, holes: &[Ipv4Cidr]) -> Vec<Ipv4Cidr> {
        let mut out = Vec::new();
        self.subtract_into(holes, &mut out);
        out
    }

    fn subtract_into(&self, holes: &[Ipv4Cidr], out: &mut Vec<Ipv4Cidr>) {
        if holes.iter().any(|hole| hole.covers(self)) {
            return;
        }
        if !holes.iter().any(|hole| self.covers(hole)) {
            out.push(*self);
            return;
        }
        // A hole lies strictly inside: a block this size has two halves.
        if let Some((lower, upper)) = self.halves() {
            lower.subtract_into(holes, out);
            upper.subtract_into(holes, out);
        }
    }
}

fn mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len))
    }
}

impl FromStr for Ipv4Cidr {
    type Err = CidrError;

    /// Parses `a.b.c.d/n`; host bits must be zero (as Kubernetes' podCIDR validation requires).
    fn from_str(s: &str) -> Result<Ipv4Cidr, CidrError> {
        let (address, prefix) = s
            .split_once('/')
            .ok_or_else(|| CidrError::Syntax(s.to_string()))?;
        let address: Ipv4Addr = address
            .parse()
            .map_err(|_| CidrError::Syntax(s.to_string()))?;
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.len() > 2 {
            return Err(CidrError::Syntax(s.to_string()));
        }
        let prefix_len: u8 = prefix
            .parse()
            .map_err(|_| CidrError::Syntax(s.to_string()))?;
        let cidr = Ipv4Cidr::new(address, prefix_len)
            .map_err(|_| CidrError::PrefixLength(s.to_string()))?;
        if cidr.network != address {
            return Err(CidrError::HostBits(s.to_string(), cidr));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Ipv4Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_canonical_blocks() {
        assert_eq!(cidr("10.244.1.0/24").to_string(), "10.244.1.0/24");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("10.1.2.3/32").to_string(), "10.1.2.3/32");
        assert_eq!(
            "10.244.1.5/24".parse::<Ipv4Cidr>(),
            Err(CidrError::HostBits(
                "10.244.1.5/24".into(),
                cidr("10.244.1.0/24")
            ))
        );
        for bad in [
            "10.244.1.0",
            "10.244.1.0/",
            "10.244.1.0/33",
            "10.244.1/24",
            "x/8",
            "1.2.3.4/+8",
        ] {
            assert!(bad.parse::<Ipv4Cidr>().is_err(), "{bad} parsed");
        }
        assert_eq!(
            Ipv4Cidr::new("10.244.1.7".parse().unwrap(), 24).unwrap(),
            cidr("10.244.1.0/24")
        );
    }

    #[test]
    fn membership_and_addresses() {
        let pods = cidr("10.244.1.0/24");
        assert!(pods.contains("10.244.1.0".parse().unwrap()));
        assert!(pods.contains("10.244.1.255".parse().unwrap()));
        assert!(!pods.contains("10.244.2.0".parse().unwrap()));
        assert_eq!(pods.nth(1), Some("10.244.1.1".parse().unwrap()));
        assert_eq!(pods.nth(255), Some("10.244.1.255".parse().unwrap()));
        assert_eq!(pods.nth(256), None);
        assert_eq!(
            pods.broadcast(),
            "10.244.1.255".parse::<Ipv4Addr>().unwrap()
        );
        assert_eq!(pods.offset_of("10.244.1.9".parse().unwrap()), Some(9));
        assert_eq!(pods.offset_of("10.244.2.9".parse().unwrap()), None);
        assert_eq!(cidr("0.0.0.0/0").size(), 1 << 32);
        assert!(cidr("0.0.0.0/0").contains("255.255.255.255".parse().unwrap()));
        let cluster = cidr("10.244.0.0/16");
        assert!(cluster.covers(&pods) && !pods.covers(&cluster));
        assert!(cluster.overlaps(&pods) && pods.overlaps(&cluster));
        assert!(!pods.overlaps(&cidr("10.244.2.0/24")));
    }

    #[test]
    fn subtraction_yields_the_fewest_blocks() {
        let cluster = cidr("10.244.0.0/16");
        let rest = cluster.subtract(&[cidr("10.244.1.0/24")]);
        let printed: Vec<String> = rest.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            printed,
            [
                "10.244.0.0/24",
                "10.244.2.0/23",
                "10.244.4.0/22",
                "10.244.8.0/21",
                "10.244.16.0/20",
                "10.244.32.0/19",
                "10.244.64.0/18",
                "10.244.128.0/17"
            ]
        );
        assert!(cluster.subtract(&[cluster]).is_empty());
        assert!(cluster.subtract(&[cidr("10.0.0.0/8")]).is_empty());
        assert_eq!(cluster.subtract(&[cidr("10.96.0.0/12")]), vec![cluster]);
        let two = cidr("10.244.0.0/23").subtract(&[cidr("10.244.0.0/24"), cidr("10.244.1.0/24")]);
        assert!(two.is_empty());
        // Every address is covered once: sizes add up.
        let holes = [cidr("10.244.7.0/24"), cidr("10.244.200.0/22")];
        let total: u64 = cluster.subtract(&holes).iter().map(Ipv4Cidr::size).sum();
        assert_eq!(total, cluster.size() - 256 - 1024);
    }
}
