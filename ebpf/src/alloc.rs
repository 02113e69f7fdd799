//! Stable, stateless allocation: service VIPs, east-west gateway ports and frontend ids.
//!
//! One rule serves all three. Every key (`namespace/name` for a VIP, `namespace/name/port` for a
//! gateway port, `namespace/name/port/protocol` for a frontend id) has a *preferred slot*: the first
//! 8 bytes of its SHA-256, big-endian, modulo the number of slots. Keys are placed in sorted order;
//! a key whose slot is already taken (by an explicit request or an earlier key) takes the next free
//! slot, wrapping around. The result depends only on the set of keys, never on file order, time or
//! a previous run, and a key keeps its slot unless a key that sorts before it collides with it.

use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt;
use std::net::Ipv4Addr;

/// Why a `vipRange` or `portRange` does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("`{0}` is not an IPv4 CIDR such as 127.200.0.0/16")]
    NotCidr(String),
    #[error("`{0}` has an invalid prefix length (0-32)")]
    Prefix(String),
    #[error("`{text}` has host bits set; the range would be {network}")]
    HostBits { text: String, network: String },
    #[error("`{0}` is not a port range `FIRST-LAST` with ports 1-65535")]
    NotPortRange(String),
    #[error("`{0}` is empty or starts at port 0: FIRST must be 1-65535 and at most LAST")]
    EmptyPortRange(String),
}

/// The default `vipRange` (RepoConfig) when `flotilla.yaml` sets none.
pub const DEFAULT_VIP_RANGE: &str = "127.200.0.0/16";

/// An IPv4 range the VIPs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipRange {
    network: u32,
    prefix: u8,
}

impl VipRange {
    /// Parses `a.b.c.d/p`. Host bits must be zero (`10.0.0.1/16` is refused: it is ambiguous).
    pub fn parse(s: &str) -> Result<VipRange, RangeError> {
        let not_cidr = || RangeError::NotCidr(s.to_string());
        let (addr, prefix) = s.split_once('/').ok_or_else(not_cidr)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| not_cidr())?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| RangeError::Prefix(s.to_string()))?;
        let network = u32::from(addr);
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) };
        if network & !mask != 0 {
            return Err(RangeError::HostBits {
                text: s.to_string(),
                network: format!("{}/{prefix}", Ipv4Addr::from(network & mask)),
            });
        }
        Ok(VipRange { network, prefix })
    }

    /// The first usable address: the range without its network and broadcast address, except for
    /// /31 and /32 where every address is usable.
    fn first(&self) -> u64 {
        u64::from(self.network) + u64::from(self.prefix <= 30)
    }

    /// The number of usable addresses (at least 1).
    pub fn len(&self) -> u64 {
        let size = 1u64 << (32 - u32::from(self.prefix));
        if self.prefix <= 30 {
            size - 2
        } else {
            size
        }
    }

    /// Never empty: a /32 still holds one address.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The slot of a usable address, if it is one.
    pub fn slot_of(&self, ip: Ipv4Addr) -> Option<u64> {
        let v = u64::from(u32::from(ip));
        (v >= self.first() && v < self.first() + self.len()).then(|| v - self.first())
    }

    /// The address of a slot (`slot < len()`).
    pub fn address(&self, slot: u64) -> Ipv4Addr {
        // first() + slot < 2^32 for every slot below len().
        Ipv4Addr::from(u32::try_from(self.first() + slot).unwrap_or(u32::MAX))
    }
}

impl fmt::Display for VipRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix)
    }
}

/// A gateway's `portRange`, `FIRST-LAST` inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn parse(s: &str) -> Result<PortRange, RangeError> {
        let bad = || RangeError::NotPortRange(s.to_string());
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || last < first {
            return Err(RangeError::EmptyPortRange(s.to_string()));
        }
        Ok(PortRange { first, last })
    }

    pub fn len(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    /// Never empty once parsed.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The port of a slot (`slot < len()`).
    pub fn port(&self, slot: u64) -> u16 {
        u16::try_from(u64::from(self.first) + slot).unwrap_or(self.last)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// The preferred slot of `key` among `len` slots (`len > 0`).
pub fn preferred_slot(key: &str, len: u64) -> u64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first) % len.max(1)
}

/// Places `keys`, in the order given (callers pass them sorted), into `len` slots of which `taken`
/// are already used; returns each key's slot, `None` once every slot is used. `taken` grows.
pub fn place<'a>(keys: impl IntoIterator<Item = &'a str>, len: u64, taken: &mut HashSet<u64>) -> Vec<Option<u64>> {
    keys.into_iter()
        .map(|key| {
            if len == 0 || taken.len() as u64 >= len {
                return None;
            }
            let mut slot = preferred_slot(key, len);
            while taken.contains(&slot) {
                slot = (slot + 1) % len;
            }
            taken.insert(slot);
            Some(slot)
        })
        .collect()
}

/// Frontend ids live in 1..=2^31-1 (0 is never used; 31 bits keep them positive in every language).
pub const FRONTEND_ID_SLOTS: u64 = (1 << 31) - 1;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn vip_ranges() {
        let r = VipRange::parse("127.200.0.0/16").unwrap();
        assert_eq!(r.len(), 65534);
        assert_eq!(r.address(0), Ipv4Addr::new(127, 200, 0, 1));
        assert_eq!(r.address(65533), Ipv4Addr::new(127, 200, 255, 254));
        assert_eq!(r.slot_of(Ipv4Addr::new(127, 200, 0, 0)), None, "network address");
        assert_eq!(r.slot_of(Ipv4Addr::new(127, 200, 255, 255)), None, "broadcast");
        assert_eq!(r.slot_of(Ipv4Addr::new(127, 201, 0, 1)), None);
        assert_eq!(r.slot_of(Ipv4Addr::new(127, 200, 1, 0)), Some(255));
        let one = VipRange::parse("10.0.0.7/32").unwrap();
        assert_eq!((one.len(), one.address(0)), (1, Ipv4Addr::new(10, 0, 0, 7)));
        assert!(VipRange::parse("10.0.0.1/16")
            .unwrap_err()
            .to_string()
            .contains("10.0.0.0/16"));
        assert!(VipRange::parse("10.0.0.0").is_err());
        assert!(VipRange::parse("10.0.0.0/33").is_err());
        assert!(VipRange::parse("fd00::/64").is_err());
    }

    #[test]
    fn port_ranges() {
        let r = PortRange::parse("31000-31999").unwrap();
        assert_eq!((r.len(), r.port(0), r.port(999)), (1000, 31000, 31999));
        assert!(PortRange::parse("32000-31000").is_err());
        assert!(PortRange::parse("0-10").is_err());
        assert!(PortRange::parse("31000").is_err());
    }

    #[test]
    fn placement_is_deterministic_and_probes_in_order() {
        let mut taken = HashSet::new();
        let a = place(["a", "b", "c"], 10, &mut taken);
        let mut again = HashSet::new();
        assert_eq!(a, place(["a", "b", "c"], 10, &mut again));
        assert_eq!(a[0], Some(preferred_slot("a", 10)));
        // One slot: the first key gets it, the rest find none.
        let mut taken = HashSet::new();
        assert_eq!(place(["x", "y"], 1, &mut taken), [Some(0), None]);
        // A taken preferred slot moves the key to the next free one.
        let want = preferred_slot("k", 5);
        let mut taken = HashSet::from([want]);
        assert_eq!(place(["k"], 5, &mut taken), [Some((want + 1) % 5)]);
    }
}
