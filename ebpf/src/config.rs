//! The `EndpointMapConfig` document (SPEC §7): its types, canonical JSON and content hash.
//!
//! # Canonical JSON
//!
//! The hash, and what `flotilla endpoints --format json` prints, is the *canonical* serialisation:
//! UTF-8 JSON with
//! - object keys sorted by their bytes (all keys of this document are ASCII), at every level;
//! - no insignificant whitespace (no space, no newline, not even at the end);
//! - strings escaped as `serde_json` does: only `"`, `\` and control characters (`\b \f \n \r \t`,
//!   others as lowercase `\u00XX`); everything else, non-ASCII included, is written as raw UTF-8;
//! - numbers are integers only, in plain decimal (the document has no fractional field);
//! - absent optional fields are omitted, never written as `null`;
//! - arrays in the documented orders: `clusters` by name, `frontends` by (VIP as a number, port,
//!   protocol), each frontend's `backends` by (priority, cluster, address as a number, port).
//!
//! For this document that coincides with RFC 8785 (JSON Canonicalization Scheme). The `hash` field
//! is `sha256:` and the lowercase hex SHA-256 of the canonical JSON of the document *without* the
//! `hash` field.
//!
//! [`canonical_json`] writes any JSON value that way. The documents themselves are written straight
//! from their types (no intermediate value: 100,000 backends are 13 MB of JSON), which is why the
//! nested types declare their fields in canonical order; a test holds the two writers together.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::net::Ipv4Addr;

/// The only `apiVersion` of the document.
pub const API_VERSION: &str = "flotilla.dev/v1alpha1";
/// The document's `kind`.
pub const KIND: &str = "EndpointMapConfig";
/// At most this many priority tiers per frontend (the BPF program's compiled limit).
pub const MAX_TIERS: usize = 4;

/// Errors of serialising or checking a document.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot serialise the endpoint map config: {0}")]
    Serialise(#[from] serde_json::Error),
    #[error("unknown apiVersion `{0}` (expected {API_VERSION})")]
    ApiVersion(String),
    #[error("unknown kind `{0}` (expected {KIND})")]
    Kind(String),
    #[error("hash mismatch: the document says {stated}, its content hashes to {actual}")]
    Hash { stated: String, actual: String },
}

/// One cluster's endpoint map: every exported service's frontend and the backends this cluster's
/// nodes route it to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointMapConfig {
    pub api_version: String,
    pub kind: String,
    /// The consuming cluster: priorities are relative to it.
    pub cluster: String,
    /// Strictly increasing per cluster (see [`crate::next_version`]).
    pub version: u64,
    /// `sha256:<hex>` of the canonical JSON of everything else; empty until [`Self::seal`].
    #[serde(default)]
    pub hash: String,
    pub source: Source,
    /// Every inventory cluster, by name.
    pub clusters: Vec<ClusterEntry>,
    /// Sorted by (VIP, port, protocol).
    pub frontends: Vec<Frontend>,
}

/// Where the document came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// The commit; absent for a working tree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_revision: Option<String>,
}

/// A member cluster as the datapath sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterEntry {
    /// How other networks reach this cluster's exported services; absent when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayEntry>,
    /// 0-based position in the inventory's name order (the same in every document of a commit).
    pub index: u32,
    pub locality: Locality,
    pub name: String,
    pub network: String,
}

/// Region and zone (the cluster's first zone); empty strings when the inventory does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locality {
    pub region: String,
    pub zone: String,
}

/// A cluster's east-west gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayEntry {
    pub address: Ipv4Addr,
}

/// One VIP:port/protocol of one exported service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frontend {
    /// Sorted by (priority, cluster, address, port).
    pub backends: Vec<Backend>,
    /// Deterministic from the service and port (see [`crate::alloc`]); unique in the document.
    pub id: u32,
    pub policy: PolicyEntry,
    pub port: u16,
    pub protocol: Protocol,
    pub service: ServiceRef,
    pub vip: Ipv4Addr,
}

/// The Service and port a frontend stands for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRef {
    pub name: String,
    pub namespace: String,
    /// The Service port's name (empty for the unnamed port of a single-port Service).
    pub port: String,
}

/// The routing mode of a frontend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyEntry {
    pub mode: Mode,
}

/// Cross-cluster routing mode (`GlobalTrafficPolicy.spec.mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mode {
    /// Only the consuming cluster's own backends.
    #[default]
    Locality,
    /// The consuming cluster first, then the targets in order, one tier each.
    FailOver,
    /// Every target in one tier, weighted.
    ActiveActive,
}

impl Mode {
    /// Parses `spec.mode` (already checked by the schema).
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "Locality" => Some(Mode::Locality),
            "FailOver" => Some(Mode::FailOver),
            "ActiveActive" => Some(Mode::ActiveActive),
            _ => None,
        }
    }
}

/// L4 protocol of a frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
}

impl Protocol {
    /// A Service port's `protocol` (default TCP); `None` for what socket load balancing cannot
    /// redirect (SCTP).
    pub fn parse(s: Option<&str>) -> Option<Protocol> {
        match s {
            None | Some("TCP") => Some(Protocol::Tcp),
            Some("UDP") => Some(Protocol::Udp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

/// How a backend is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Via {
    /// The address is reachable from the consuming cluster as is (own ClusterIP, or a pod IP on a
    /// flat network).
    Direct,
    /// The address and port are a remote cluster's east-west gateway (island network).
    Gateway,
}

/// One destination of a frontend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    pub address: Ipv4Addr,
    pub cluster: String,
    pub port: u16,
    /// 0 = most preferred; the datapath uses the first tier that has a ready backend.
    pub priority: u8,
    pub ready: bool,
    pub via: Via,
    /// Relative weight inside its tier; 0 = drained (listed, never chosen).
    pub weight: u16,
}

impl EndpointMapConfig {
    /// The document as a JSON value (struct field order; see [`canonical_json`] for the hashed form).
    pub fn to_value(&self) -> Result<Value, ConfigError> {
        Ok(serde_json::to_value(self)?)
    }

    /// The canonical JSON of the whole document, `hash` included: what `flotilla endpoints` prints.
    pub fn to_canonical_json(&self) -> Result<Vec<u8>, ConfigError> {
        self.write_canonical(true)
    }

    /// Canonical JSON written straight from the types, without building a [`Value`]: the top level by
    /// hand, the nested types by `serde_json`, whose fields are declared in canonical (byte) order.
    /// Equal to [`canonical_json`] of [`Self::to_value`] (a test holds the two together).
    fn write_canonical(&self, with_hash: bool) -> Result<Vec<u8>, ConfigError> {
        let backends: usize = self.frontends.iter().map(|f| f.backends.len()).sum();
        let mut out = Vec::with_capacity(512 + 200 * self.frontends.len() + 128 * backends);
        out.extend_from_slice(b"{\"apiVersion\":");
        write_string(&self.api_version, &mut out);
        out.extend_from_slice(b",\"cluster\":");
        write_string(&self.cluster, &mut out);
        out.extend_from_slice(b",\"clusters\":");
        serde_json::to_writer(&mut out, &self.clusters)?;
        out.extend_from_slice(b",\"frontends\":");
        serde_json::to_writer(&mut out, &self.frontends)?;
        if with_hash {
            out.extend_from_slice(b",\"hash\":");
            write_string(&self.hash, &mut out);
        }
        out.extend_from_slice(b",\"kind\":");
        write_string(&self.kind, &mut out);
        out.extend_from_slice(b",\"source\":");
        serde_json::to_writer(&mut out, &self.source)?;
        out.extend_from_slice(b",\"version\":");
        out.extend_from_slice(self.version.to_string().as_bytes());
        out.push(b'}');
        Ok(out)
    }

    /// `sha256:<hex>` of the canonical JSON of everything but `hash`.
    pub fn compute_hash(&self) -> Result<String, ConfigError> {
        let bytes = self.write_canonical(false)?;
        Ok(format!("sha256:{}", hex(&Sha256::digest(&bytes))))
    }

    /// Writes the hash.
    pub fn seal(&mut self) -> Result<(), ConfigError> {
        self.hash = self.compute_hash()?;
        Ok(())
    }

    /// Checks apiVersion, kind and hash (what an agent does before loading a document).
    pub fn verify(&self) -> Result<(), ConfigError> {
        if self.api_version != API_VERSION {
            return Err(ConfigError::ApiVersion(self.api_version.clone()));
        }
        if self.kind != KIND {
            return Err(ConfigError::Kind(self.kind.clone()));
        }
        let actual = self.compute_hash()?;
        if actual != self.hash {
            return Err(ConfigError::Hash {
                stated: self.hash.clone(),
                actual,
            });
        }
        Ok(())
    }
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Writes `v` as canonical JSON (module docs): keys sorted at every level, no whitespace.
pub fn canonical_json(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        Value::Object(m) => {
            let mut entries: Vec<(&String, &Value)> = m.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out);
                out.push(b':');
                canonical_json(val, out);
            }
            out.push(b'}');
        }
    }
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    // Writing a string into memory cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn canon(v: &Value) -> String {
        let mut out = Vec::new();
        canonical_json(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn keys_sorted_at_every_level_without_whitespace() {
        let v = json!({"b": [ {"z": 1, "a": "x"} ], "a": {"d": true, "c": null}});
        assert_eq!(canon(&v), r#"{"a":{"c":null,"d":true},"b":[{"a":"x","z":1}]}"#);
    }

    #[test]
    fn strings_escape_only_what_json_requires() {
        let v = json!({"k": "é\"\\\n\u{1}/"});
        assert_eq!(canon(&v), "{\"k\":\"é\\\"\\\\\\n\\u0001/\"}");
    }

    fn doc() -> EndpointMapConfig {
        EndpointMapConfig {
            api_version: API_VERSION.into(),
            kind: KIND.into(),
            cluster: "c1".into(),
            version: 7,
            hash: String::new(),
            source: Source::default(),
            clusters: vec![],
            frontends: vec![Frontend {
                id: 1,
                service: ServiceRef {
                    namespace: "ns".into(),
                    name: "svc".into(),
                    port: "http".into(),
                },
                vip: Ipv4Addr::new(127, 200, 0, 1),
                port: 80,
                protocol: Protocol::Tcp,
                policy: PolicyEntry { mode: Mode::FailOver },
                backends: vec![],
            }],
        }
    }

    #[test]
    fn the_hash_covers_everything_but_itself() {
        let mut d = doc();
        d.seal().unwrap();
        assert!(d.hash.starts_with("sha256:") && d.hash.len() == 7 + 64, "{}", d.hash);
        d.verify().unwrap();
        let sealed = d.hash.clone();
        d.seal().unwrap();
        assert_eq!(d.hash, sealed, "sealing twice gives the same hash");
        d.version = 8;
        assert!(matches!(d.verify(), Err(ConfigError::Hash { .. })));
        d.seal().unwrap();
        assert_ne!(d.hash, sealed);
    }

    #[test]
    fn canonical_form_round_trips_and_names_fields_in_camel_case() {
        let mut d = doc();
        d.source.git_revision = Some("abc".into());
        d.seal().unwrap();
        let text = String::from_utf8(d.to_canonical_json().unwrap()).unwrap();
        assert!(
            text.starts_with(r#"{"apiVersion":"flotilla.dev/v1alpha1","cluster":"c1","clusters":[],"frontends":[{"backends":[],"id":1,"#),
            "{text}"
        );
        assert!(text.contains(r#""source":{"gitRevision":"abc"}"#), "{text}");
        assert!(
            text.contains(r#""protocol":"TCP""#) && text.contains(r#""mode":"FailOver""#),
            "{text}"
        );
        let back: EndpointMapConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, d);
        back.verify().unwrap();
    }

    #[test]
    fn the_direct_writer_equals_the_generic_canonical_form() {
        let mut d = doc();
        d.source.git_revision = Some("abc".into());
        d.clusters.push(ClusterEntry {
            gateway: Some(GatewayEntry {
                address: Ipv4Addr::new(192, 0, 2, 1),
            }),
            index: 0,
            locality: Locality {
                region: "eu".into(),
                zone: "eu-1a".into(),
            },
            name: "c1".into(),
            network: "n\u{e9}t \"1\"".into(),
        });
        d.clusters.push(ClusterEntry {
            gateway: None,
            ..d.clusters[0].clone()
        });
        d.frontends[0].backends.push(Backend {
            address: Ipv4Addr::new(10, 0, 0, 1),
            cluster: "c1".into(),
            port: 8080,
            priority: 1,
            ready: false,
            via: Via::Gateway,
            weight: 0,
        });
        d.seal().unwrap();
        let mut generic = Vec::new();
        canonical_json(&d.to_value().unwrap(), &mut generic);
        assert_eq!(
            String::from_utf8(d.to_canonical_json().unwrap()).unwrap(),
            String::from_utf8(generic).unwrap()
        );
        let mut without = d.to_value().unwrap();
        without.as_object_mut().unwrap().remove("hash");
        let mut generic = Vec::new();
        canonical_json(&without, &mut generic);
        assert_eq!(d.hash, format!("sha256:{}", hex(&Sha256::digest(&generic))));
    }

    #[test]
    fn wrong_api_version_or_kind_is_refused() {
        let mut d = doc();
        d.seal().unwrap();
        d.api_version = "flotilla.dev/v2".into();
        assert!(matches!(d.verify(), Err(ConfigError::ApiVersion(_))));
    }
}
