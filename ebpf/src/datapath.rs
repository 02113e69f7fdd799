//! What one document means for the BPF maps of `bpf/flotilla.bpf.c`: map entries as bytes, per generation.
//!
//! This is the pure half of the agent: it checks that a document fits the datapath (tiers, sizes,
//! unique frontends) and turns it into the entries of one generation of the service, slot and
//! backend maps. `flotilla-agent` writes them with aya; keeping the layout here (plain byte arrays,
//! no `unsafe`, no aya) lets it be tested without a kernel.
//!
//! # Layouts (little-endian host order unless marked; mirrored in the C source)
//! - service key, 8 bytes: VIP (4, network order), port (2, network order), protocol (1: 6 TCP,
//!   17 UDP), generation (1). Value, 16 bytes: frontend id (u32), slots per tier (4 × u16, 0 = empty
//!   tier), flags (u32, reserved, 0).
//! - slot key, 8 bytes: frontend id (u32), generation (u8), tier (u8), slot index (u16). Value: the
//!   backend id (u32).
//! - backend key, 8 bytes: backend id (u32), generation (u32). Value, 8 bytes: address (4, network
//!   order), port (2, network order), flags (u16, reserved, 0).
//! - state value, 40 bytes: the applied document's version (u64) and its SHA-256 (32 bytes).
//!
//! # Weighted slot tables
//! A tier is the backends of one priority that are `ready` with a weight above 0. Its table has one
//! entry per slot; the program draws a slot uniformly (TCP: `bpf_get_prandom_u32`, UDP: a hash of
//! the socket cookie), so a backend's share is its slot count over the tier's. Weights are first
//! divided by their greatest common divisor: when the reduced weights add up to at most
//! [`MAX_SLOTS_PER_TIER`] they *are* the slot counts (3:1 is a 4-slot table, exact). Otherwise the
//! table has exactly [`MAX_SLOTS_PER_TIER`] slots shared in proportion to weight by largest
//! remainder (ties to the earlier backend), so a share is within one slot in 1,024 of its exact
//! proportion; a backend whose share rounds to nothing still gets one slot, taken from the largest
//! share. A tier with more backends than slots is refused.

use crate::config::{EndpointMapConfig, Protocol, MAX_TIERS};
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Slots of one tier's table at most (the C program's slot index is a u16).
pub const MAX_SLOTS_PER_TIER: usize = 1024;
/// Frontends of one document at most (the service map holds two generations).
pub const MAX_FRONTENDS: usize = 65_536;
/// Distinct backends (address, port) of one document at most.
pub const MAX_BACKENDS: usize = 262_144;
/// Slots of one document at most, all tiers of all frontends.
pub const MAX_SLOTS: usize = 524_288;

/// Names of the maps in the object; the pinned files under the agent's pin directory.
pub mod names {
    pub const GEN: &str = "flotilla_gen";
    pub const SVC: &str = "flotilla_svc";
    pub const SLOT: &str = "flotilla_slot";
    pub const BE: &str = "flotilla_be";
    pub const REV: &str = "flotilla_rev";
    pub const STATE: &str = "flotilla_state";
    pub const STATS: &str = "flotilla_stats";
    pub const BARRIER: &str = "flotilla_barrier";
    /// Every pinned map (the barrier is the agent's own and never pinned).
    pub const PINNED: [&str; 7] = [GEN, SVC, SLOT, BE, REV, STATE, STATS];
}

/// Counters of `flotilla_stats`, by index.
pub const STATS: [&str; 4] = [
    "connect_redirected",
    "sendmsg_redirected",
    "no_backend_refused",
    "reverse_translated",
];

pub type SvcKey = [u8; 8];
pub type SvcVal = [u8; 16];
pub type SlotKey = [u8; 8];
pub type SlotVal = [u8; 4];
pub type BeKey = [u8; 8];
pub type BeVal = [u8; 8];
pub type StateVal = [u8; 40];

/// Why a document cannot be loaded into the datapath (after it passed [`EndpointMapConfig::verify`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatapathError {
    #[error("frontend {vip}:{port}/{protocol} has a backend of priority {priority}; the datapath has {MAX_TIERS} tiers (0-3)")]
    Priority {
        vip: Ipv4Addr,
        port: u16,
        protocol: &'static str,
        priority: u8,
    },
    #[error("frontend {vip}:{port}/{protocol} is listed twice")]
    DuplicateFrontend {
        vip: Ipv4Addr,
        port: u16,
        protocol: &'static str,
    },
    #[error("frontend id {0} is used twice")]
    DuplicateId(u32),
    #[error("frontend {vip}:{port}/{protocol} has an unusable address (unspecified VIP or port 0)")]
    Unusable {
        vip: Ipv4Addr,
        port: u16,
        protocol: &'static str,
    },
    #[error(
        "frontend {vip}:{port}/{protocol} tier {tier} has {count} backends; a tier holds at most {MAX_SLOTS_PER_TIER}"
    )]
    TierTooLarge {
        vip: Ipv4Addr,
        port: u16,
        protocol: &'static str,
        tier: u8,
        count: usize,
    },
    #[error("the document has {count} {what}; the datapath holds at most {limit}")]
    TooMany {
        what: &'static str,
        count: usize,
        limit: usize,
    },
}

/// One generation of the service, slot and backend maps for a document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tables {
    pub services: Vec<(SvcKey, SvcVal)>,
    pub slots: Vec<(SlotKey, SlotVal)>,
    pub backends: Vec<(BeKey, BeVal)>,
}

/// The entries of generation `gen` (0 or 1) for `doc`, or why the datapath cannot hold it.
pub fn tables(doc: &EndpointMapConfig, gen: u8) -> Result<Tables, DatapathError> {
    let gen = gen & 1;
    if doc.frontends.len() > MAX_FRONTENDS {
        return Err(DatapathError::TooMany {
            what: "frontends",
            count: doc.frontends.len(),
            limit: MAX_FRONTENDS,
        });
    }
    let mut out = Tables::default();
    let mut seen_frontends = HashMap::with_capacity(doc.frontends.len());
    let mut seen_ids = HashMap::with_capacity(doc.frontends.len());
    let mut backend_ids: HashMap<(Ipv4Addr, u16), u32> = HashMap::new();
    for f in &doc.frontends {
        let (vip, port, protocol) = (f.vip, f.port, f.protocol.as_str());
        if vip.is_unspecified() || port == 0 {
            return Err(DatapathError::Unusable { vip, port, protocol });
        }
        if seen_frontends.insert((vip, port, f.protocol), ()).is_some() {
            return Err(DatapathError::DuplicateFrontend { vip, port, protocol });
        }
        if seen_ids.insert(f.id, ()).is_some() {
            return Err(DatapathError::DuplicateId(f.id));
        }
        let mut tiers: [Vec<(u32, u64)>; MAX_TIERS] = Default::default();
        for b in &f.backends {
            let Some(tier) = tiers.get_mut(usize::from(b.priority)) else {
                return Err(DatapathError::Priority {
                    vip,
                    port,
                    protocol,
                    priority: b.priority,
                });
            };
            if !b.ready || b.weight == 0 {
                continue;
            }
            let next = u32::try_from(backend_ids.len()).unwrap_or(u32::MAX);
            let id = *backend_ids.entry((b.address, b.port)).or_insert_with(|| {
                out.backends
                    .push((backend_key(next, gen), backend_value(b.address, b.port)));
                next
            });
            tier.push((id, u64::from(b.weight)));
        }
        let mut nslots = [0u16; MAX_TIERS];
        for (t, members) in tiers.iter().enumerate() {
            if members.len() > MAX_SLOTS_PER_TIER {
                return Err(DatapathError::TierTooLarge {
                    vip,
                    port,
                    protocol,
                    tier: t as u8,
                    count: members.len(),
                });
            }
            let weights: Vec<u64> = members.iter().map(|m| m.1).collect();
            let counts = slot_counts(&weights);
            let mut slot: u16 = 0;
            for ((id, _), n) in members.iter().zip(counts) {
                for _ in 0..n {
                    out.slots.push((slot_key(f.id, gen, t as u8, slot), id.to_ne_bytes()));
                    slot += 1;
                }
            }
            nslots[t] = slot;
        }
        out.services
            .push((service_key(vip, port, f.protocol, gen), service_value(f.id, nslots)));
    }
    if out.backends.len() > MAX_BACKENDS {
        return Err(DatapathError::TooMany {
            what: "distinct backends",
            count: out.backends.len(),
            limit: MAX_BACKENDS,
        });
    }
    if out.slots.len() > MAX_SLOTS {
        return Err(DatapathError::TooMany {
            what: "slots",
            count: out.slots.len(),
            limit: MAX_SLOTS,
        });
    }
    Ok(out)
}

/// Slot counts for a tier's weights (module docs): reduced weights when they fit in
/// [`MAX_SLOTS_PER_TIER`], else exactly that many slots by largest remainder, at least one each. Weights must be above 0; at most [`MAX_SLOTS_PER_TIER`] of them.
pub fn slot_counts(weights: &[u64]) -> Vec<u16> {
    if weights.is_empty() {
        return Vec::new();
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let reduced: Vec<u64> = weights.iter().map(|w| w / g).collect();
    let total: u64 = reduced.iter().sum();
    if total <= MAX_SLOTS_PER_TIER as u64 {
        return reduced.iter().map(|&w| w as u16).collect();
    }
    let max = MAX_SLOTS_PER_TIER as u64;
    let mut counts: Vec<u64> = Vec::with_capacity(weights.len());
    let mut remainders: Vec<(u64, usize)> = Vec::with_capacity(weights.len());
    for (i, &w) in reduced.iter().enumerate() {
        let share = u128::from(max) * u128::from(w);
        counts.push((share / u128::from(total)) as u64);
        remainders.push(((share % u128::from(total)) as u64, i));
    }
    let given: u64 = counts.iter().sum();
    // Largest remainder first; equal remainders go to the earlier backend.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in remainders.iter().take(max.saturating_sub(given) as usize) {
        counts[i] += 1;
    }
    // Every backend gets a slot: each one with none takes it from the largest table share (the
    // earliest of equals), which stays within one slot of its proportion.
    for i in 0..counts.len() {
        if counts[i] == 0 {
            let mut donor = 0;
            for (j, &c) in counts.iter().enumerate() {
                if c > counts[donor] {
                    donor = j;
                }
            }
            counts[donor] -= 1;
            counts[i] = 1;
        }
    }
    counts.into_iter().map(|c| c as u16).collect()
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Protocol number of a frontend's protocol.
pub fn protocol_number(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
    }
}

pub fn service_key(vip: Ipv4Addr, port: u16, protocol: Protocol, gen: u8) -> SvcKey {
    let mut k = [0u8; 8];
    k[..4].copy_from_slice(&vip.octets());
    k[4..6].copy_from_slice(&port.to_be_bytes());
    k[6] = protocol_number(protocol);
    k[7] = gen & 1;
    k
}

pub fn service_value(id: u32, nslots: [u16; MAX_TIERS]) -> SvcVal {
    let mut v = [0u8; 16];
    v[..4].copy_from_slice(&id.to_ne_bytes());
    for (t, n) in nslots.iter().enumerate() {
        v[4 + 2 * t..6 + 2 * t].copy_from_slice(&n.to_ne_bytes());
    }
    v
}

pub fn slot_key(id: u32, gen: u8, tier: u8, slot: u16) -> SlotKey {
    let mut k = [0u8; 8];
    k[..4].copy_from_slice(&id.to_ne_bytes());
    k[4] = gen & 1;
    k[5] = tier;
    k[6..].copy_from_slice(&slot.to_ne_bytes());
    k
}

pub fn backend_key(id: u32, gen: u8) -> BeKey {
    let mut k = [0u8; 8];
    k[..4].copy_from_slice(&id.to_ne_bytes());
    k[4..].copy_from_slice(&u32::from(gen & 1).to_ne_bytes());
    k
}

pub fn backend_value(address: Ipv4Addr, port: u16) -> BeVal {
    let mut v = [0u8; 8];
    v[..4].copy_from_slice(&address.octets());
    v[4..6].copy_from_slice(&port.to_be_bytes());
    v
}

/// The generation a service key belongs to.
pub fn service_key_gen(k: &SvcKey) -> u8 {
    k[7]
}

/// The generation a slot key belongs to.
pub fn slot_key_gen(k: &SlotKey) -> u8 {
    k[4]
}

/// The generation a backend key belongs to.
pub fn backend_key_gen(k: &BeKey) -> u8 {
    k[4]
}

/// The state value recording an applied document: its version and the hex of its `sha256:` hash
/// (zeros when the hash is not one).
pub fn state_value(version: u64, hash: &str) -> StateVal {
    let mut v = [0u8; 40];
    v[..8].copy_from_slice(&version.to_ne_bytes());
    if let Some(digest) = hash.strip_prefix("sha256:").and_then(parse_hex32) {
        v[8..].copy_from_slice(&digest);
    }
    v
}

/// The version and `sha256:` hash recorded by [`state_value`]; `None` when nothing was applied.
pub fn parse_state(v: &StateVal) -> Option<(u64, String)> {
    let mut version = [0u8; 8];
    version.copy_from_slice(&v[..8]);
    let version = u64::from_ne_bytes(version);
    if version == 0 && v[8..].iter().all(|&b| b == 0) {
        return None;
    }
    Some((version, format!("sha256:{}", crate::config::hex(&v[8..]))))
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks(2).enumerate() {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::config::{Backend, Frontend, Mode, PolicyEntry, ServiceRef, Source, Via, API_VERSION, KIND};

    fn backend(address: [u8; 4], port: u16, weight: u16, priority: u8) -> Backend {
        Backend {
            address: Ipv4Addr::from(address),
            cluster: "c1".into(),
            port,
            priority,
            ready: true,
            via: Via::Direct,
            weight,
        }
    }

    fn frontend(id: u32, vip: [u8; 4], backends: Vec<Backend>) -> Frontend {
        Frontend {
            backends,
            id,
            policy: PolicyEntry { mode: Mode::FailOver },
            port: 80,
            protocol: Protocol::Tcp,
            service: ServiceRef {
                name: "s".into(),
                namespace: "n".into(),
                port: "http".into(),
            },
            vip: Ipv4Addr::from(vip),
        }
    }

    fn doc(frontends: Vec<Frontend>) -> EndpointMapConfig {
        EndpointMapConfig {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            cluster: "c1".into(),
            version: 1,
            hash: String::new(),
            source: Source::default(),
            clusters: vec![],
            frontends,
        }
    }

    #[test]
    fn reduced_weights_are_the_slot_counts_when_they_fit() {
        assert_eq!(slot_counts(&[3, 1]), vec![3, 1]);
        assert_eq!(slot_counts(&[300, 100]), vec![3, 1]);
        assert_eq!(slot_counts(&[5, 5, 5]), vec![1, 1, 1]);
        assert_eq!(slot_counts(&[1000, 24]), vec![125, 3]);
        assert_eq!(slot_counts(&[]), Vec::<u16>::new());
    }

    #[test]
    fn large_weights_share_exactly_the_maximum_with_at_least_one_slot_each() {
        let counts = slot_counts(&[65535, 1, 65534]);
        assert_eq!(
            counts.iter().map(|&c| usize::from(c)).sum::<usize>(),
            MAX_SLOTS_PER_TIER
        );
        assert_eq!(counts[1], 1);
        assert!((i32::from(counts[0]) - i32::from(counts[2])).abs() <= 1, "{counts:?}");
        let many: Vec<u64> = (1..=1024).collect();
        let counts = slot_counts(&many);
        assert!(counts.iter().all(|&c| c == 1));
        // Shares within one slot of the exact proportion.
        let weights = [7919u64, 104_729, 1_299_709];
        let counts = slot_counts(&weights);
        let total: u64 = weights.iter().sum();
        for (w, c) in weights.iter().zip(&counts) {
            let exact = (MAX_SLOTS_PER_TIER as f64) * (*w as f64) / (total as f64);
            assert!((f64::from(*c) - exact).abs() <= 1.0, "{counts:?}");
        }
    }

    #[test]
    fn tiers_slots_and_backends_of_one_generation() {
        let d = doc(vec![frontend(
            7,
            [127, 200, 0, 1],
            vec![
                backend([127, 0, 0, 2], 8080, 300, 0),
                backend([127, 0, 0, 3], 8080, 100, 0),
                backend([127, 0, 0, 4], 8080, 0, 0),
                backend([127, 0, 0, 5], 9090, 1, 2),
            ],
        )]);
        let t = tables(&d, 1).unwrap();
        assert_eq!(t.services.len(), 1);
        let (k, v) = t.services[0];
        assert_eq!(k, [127, 200, 0, 1, 0, 80, 6, 1]);
        assert_eq!(service_key_gen(&k), 1);
        assert_eq!(v, service_value(7, [4, 0, 1, 0]));
        assert_eq!(t.backends.len(), 3, "the drained backend is left out");
        assert_eq!(t.backends[0], (backend_key(0, 1), [127, 0, 0, 2, 0x1f, 0x90, 0, 0]));
        assert_eq!(t.slots.len(), 5);
        let to_backend: Vec<u32> = t.slots.iter().map(|(_, v)| u32::from_ne_bytes(*v)).collect();
        assert_eq!(to_backend, vec![0, 0, 0, 1, 2]);
        assert_eq!(t.slots[4].0, slot_key(7, 1, 2, 0));
        assert!(t.slots.iter().all(|(k, _)| slot_key_gen(k) == 1));
        assert!(t.backends.iter().all(|(k, _)| backend_key_gen(k) == 1));
    }

    #[test]
    fn backends_shared_by_frontends_are_written_once() {
        let b = || vec![backend([127, 0, 0, 2], 8080, 1, 0)];
        let mut second = frontend(8, [127, 200, 0, 1], b());
        second.protocol = Protocol::Udp;
        let t = tables(&doc(vec![frontend(7, [127, 200, 0, 1], b()), second]), 0).unwrap();
        assert_eq!(t.backends.len(), 1);
        assert_eq!(t.services.len(), 2);
        assert_eq!(t.services[1].0[6], 17);
    }

    #[test]
    fn what_the_datapath_cannot_hold_is_refused() {
        let d = doc(vec![frontend(
            7,
            [127, 200, 0, 1],
            vec![backend([127, 0, 0, 2], 1, 1, 4)],
        )]);
        assert!(matches!(
            tables(&d, 0),
            Err(DatapathError::Priority { priority: 4, .. })
        ));
        let d = doc(vec![
            frontend(7, [127, 200, 0, 1], vec![]),
            frontend(8, [127, 200, 0, 1], vec![]),
        ]);
        assert!(matches!(tables(&d, 0), Err(DatapathError::DuplicateFrontend { .. })));
        let d = doc(vec![
            frontend(7, [127, 200, 0, 1], vec![]),
            frontend(7, [127, 200, 0, 2], vec![]),
        ]);
        assert_eq!(tables(&d, 0), Err(DatapathError::DuplicateId(7)));
        let d = doc(vec![frontend(7, [0, 0, 0, 0], vec![])]);
        assert!(matches!(tables(&d, 0), Err(DatapathError::Unusable { .. })));
        let many = (0..1025u32)
            .map(|i| backend([10, 0, (i >> 8) as u8, i as u8], 80, 1, 0))
            .collect();
        let d = doc(vec![frontend(7, [127, 200, 0, 1], many)]);
        assert!(matches!(
            tables(&d, 0),
            Err(DatapathError::TierTooLarge { count: 1025, .. })
        ));
    }

    #[test]
    fn the_state_value_round_trips() {
        let hash = format!("sha256:{}", "ab".repeat(32));
        let v = state_value(42, &hash);
        assert_eq!(parse_state(&v), Some((42, hash)));
        assert_eq!(parse_state(&[0u8; 40]), None);
    }
}
