//! OpenSSH `known_hosts` files: parsing, and the verdict on a host key an `ssh://` server offered.
//!
//! What is understood (sshd(8), "SSH_KNOWN_HOSTS FILE FORMAT"): comma-separated host patterns with
//! `*` and `?` wildcards and `!` negation; `[host]:port` names for servers on another port than 22;
//! hashed names (`|1|base64(salt)|base64(HMAC-SHA1(salt, name))`, what `HashKnownHosts yes` and
//! `ssh-keygen -H` write); the `@revoked` marker. `@cert-authority` lines are skipped: libssh2, which
//! does flotilla's SSH, does not verify host certificates, so a host known only through a CA is
//! unknown here. Comments, blank lines and lines that do not parse are skipped, like OpenSSH does.
//!
//! Keys are compared as the raw key blob (the base64 field decoded), which is what the server sends;
//! the blob names its own type, so the type column is only used in messages.

use base64::Engine as _;
use sha2::{Digest, Sha256};

/// One usable line of a `known_hosts` file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// 1-based line number, for messages.
    line: usize,
    revoked: bool,
    hosts: Hosts,
    key_type: String,
    key: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Hosts {
    /// Comma-separated patterns (`!` negates, `*`/`?` are wildcards).
    Patterns(Vec<String>),
    /// `|1|salt|hash`: HMAC-SHA1 of the name keyed with the salt.
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

/// A parsed `known_hosts` file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownHosts {
    entries: Vec<Entry>,
}

/// What the file says about the key a host offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The key is listed for the host (at this line).
    Known { line: usize },
    /// The key is listed as `@revoked` (for this host or any).
    Revoked { line: usize },
    /// The host is listed, but with other keys: (type, line) of each.
    Changed { known: Vec<(String, usize)> },
    /// The host is not in the file.
    Unknown,
}

/// The name a host is listed under: `host` on port 22, `[host]:port` otherwise.
pub fn host_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// The key's type, from its blob (the first SSH string), e.g. `ssh-ed25519`.
pub fn key_type(blob: &[u8]) -> Option<&str> {
    let len = u32::from_be_bytes(blob.get(..4)?.try_into().ok()?) as usize;
    std::str::from_utf8(blob.get(4..4 + len)?).ok()
}

/// OpenSSH's fingerprint of a key blob: `SHA256:` and the unpadded base64 of its SHA-256.
pub fn fingerprint(blob: &[u8]) -> String {
    let digest = Sha256::digest(blob);
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
    )
}

impl KnownHosts {
    /// Parses a file's text; lines that do not parse are skipped.
    pub fn parse(text: &str) -> KnownHosts {
        let entries = text
            .lines()
            .enumerate()
            .filter_map(|(i, line)| parse_line(i + 1, line))
            .collect();
        KnownHosts { entries }
    }

    /// How many usable lines the file has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The verdict on `key` (a raw key blob) offered by `host` on `port`.
    pub fn check(&self, host: &str, port: u16, key: &[u8]) -> Verdict {
        let name = host_name(host, port);
        // A revoked key is refused whichever host it is listed for (as OpenSSH does).
        if let Some(e) = self.entries.iter().find(|e| e.revoked && e.key == key) {
            return Verdict::Revoked { line: e.line };
        }
        let mut known = Vec::new();
        for e in self.entries.iter().filter(|e| !e.revoked && e.hosts.matches(&name)) {
            if e.key == key {
                return Verdict::Known { line: e.line };
            }
            known.push((e.key_type.clone(), e.line));
        }
        if known.is_empty() {
            Verdict::Unknown
        } else {
            Verdict::Changed { known }
        }
    }
}

fn parse_line(number: usize, line: &str) -> Option<Entry> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next()?;
    let mut revoked = false;
    if let Some(marker) = first.strip_prefix('@') {
        match marker {
            "revoked" => revoked = true,
            // Host certificates are not verified by libssh2: such a line cannot vouch for a key.
            _ => return None,
        }
        first = fields.next()?;
    }
    let hosts = parse_hosts(first)?;
    let key_type = fields.next()?.to_string();
    let key = base64::engine::general_purpose::STANDARD.decode(fields.next()?).ok()?;
    Some(Entry {
        line: number,
        revoked,
        hosts,
        key_type,
        key,
    })
}

fn parse_hosts(field: &str) -> Option<Hosts> {
    if let Some(rest) = field.strip_prefix("|1|") {
        let (salt, hash) = rest.split_once('|')?;
        let b64 = base64::engine::general_purpose::STANDARD;
        return Some(Hosts::Hashed {
            salt: b64.decode(salt).ok()?,
            hash: b64.decode(hash).ok()?,
        });
    }
    let patterns: Vec<String> = field
        .split(',')
        .filter(|p| !p.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    (!patterns.is_empty()).then_some(Hosts::Patterns(patterns))
}

impl Hosts {
    /// Whether the entry applies to `name` (already in `host`/`[host]:port` form, lowercase).
    fn matches(&self, name: &str) -> bool {
        match self {
            Hosts::Hashed { salt, hash } => {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
                ring::hmac::verify(&key, name.as_bytes(), hash).is_ok()
            }
            Hosts::Patterns(patterns) => {
                let mut matched = false;
                for p in patterns {
                    match p.strip_prefix('!') {
                        // A negated pattern that matches excludes the host, whatever else matches.
                        Some(negated) if wildcard(negated.as_bytes(), name.as_bytes()) => return false,
                        Some(_) => {}
                        None => matched |= wildcard(p.as_bytes(), name.as_bytes()),
                    }
                }
                matched
            }
        }
    }
}

/// `*` (any run, possibly empty) and `?` (one character) wildcards; everything else literal.
fn wildcard(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // The position after the last `*` and the text position it was tried at, for backtracking.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((after, tried)) => {
                    p = after;
                    t = tried + 1;
                    star = Some((after, tried + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake key blob of type `kind` (only its bytes matter here).
    fn blob(kind: &str, body: &[u8]) -> Vec<u8> {
        let mut b = (kind.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind.as_bytes());
        b.extend_from_slice(body);
        b
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn hashed(name: &str, salt: &[u8]) -> String {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
        let tag = ring::hmac::sign(&key, name.as_bytes());
        format!("|1|{}|{}", b64(salt), b64(tag.as_ref()))
    }

    #[test]
    fn names_patterns_ports_and_negation() {
        let a = blob("ssh-ed25519", b"a");
        let b = blob("ssh-ed25519", b"b");
        let text = format!(
            "# comment\n\
             git.example.com,10.0.0.1 ssh-ed25519 {a}\n\
             [git.example.com]:2222 ssh-ed25519 {b} port 2222\n\
             *.corp.example,!evil.corp.example ssh-ed25519 {b}\n\
             this line is broken\n",
            a = b64(&a),
            b = b64(&b)
        );
        let kh = KnownHosts::parse(&text);
        assert_eq!(kh.len(), 3);
        assert_eq!(kh.check("git.example.com", 22, &a), Verdict::Known { line: 2 });
        assert_eq!(kh.check("GIT.example.com", 22, &a), Verdict::Known { line: 2 });
        assert_eq!(kh.check("10.0.0.1", 22, &a), Verdict::Known { line: 2 });
        // Another port is another name: port 2222 has its own key, port 2200 is unknown.
        assert_eq!(kh.check("git.example.com", 2222, &b), Verdict::Known { line: 3 });
        assert_eq!(
            kh.check("git.example.com", 2222, &a),
            Verdict::Changed {
                known: vec![("ssh-ed25519".into(), 3)]
            }
        );
        assert_eq!(kh.check("git.example.com", 2200, &a), Verdict::Unknown);
        assert_eq!(kh.check("git.corp.example", 22, &b), Verdict::Known { line: 4 });
        assert_eq!(kh.check("evil.corp.example", 22, &b), Verdict::Unknown);
        assert_eq!(kh.check("corp.example", 22, &b), Verdict::Unknown);
        assert_eq!(kh.check("other.example.com", 22, &a), Verdict::Unknown);
    }

    #[test]
    fn hashed_names() {
        let k = blob("ecdsa-sha2-nistp256", b"k");
        let text = format!(
            "{} ecdsa-sha2-nistp256 {}\n{} ecdsa-sha2-nistp256 {}\n",
            hashed("127.0.0.1", b"salt-one-twenty-bytes"),
            b64(&k),
            hashed("[127.0.0.1]:2222", b"another-salt-of-20-b"),
            b64(&k)
        );
        let kh = KnownHosts::parse(&text);
        assert_eq!(kh.check("127.0.0.1", 22, &k), Verdict::Known { line: 1 });
        assert_eq!(kh.check("127.0.0.1", 2222, &k), Verdict::Known { line: 2 });
        assert_eq!(kh.check("127.0.0.2", 22, &k), Verdict::Unknown);
        assert_eq!(kh.check("127.0.0.1", 2223, &k), Verdict::Unknown);
    }

    #[test]
    fn a_changed_key_names_what_is_known_and_revoked_keys_are_refused() {
        let old = blob("ssh-rsa", b"old");
        let new = blob("ssh-ed25519", b"new");
        let text = format!(
            "host ssh-rsa {}\n@revoked * ssh-ed25519 {}\n@cert-authority *.example ssh-ed25519 {}\n",
            b64(&old),
            b64(&new),
            b64(&old)
        );
        let kh = KnownHosts::parse(&text);
        assert_eq!(kh.len(), 2, "the @cert-authority line is skipped");
        assert_eq!(kh.check("host", 22, &new), Verdict::Revoked { line: 2 });
        assert_eq!(
            kh.check("host", 22, &blob("ssh-ed25519", b"other")),
            Verdict::Changed {
                known: vec![("ssh-rsa".into(), 1)]
            }
        );
        assert_eq!(kh.check("a.example", 22, &old), Verdict::Unknown);
    }

    #[test]
    fn wildcards() {
        for (p, t, want) in [
            ("*", "", true),
            ("*", "abc", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*.x.*", "a.x.b", true),
            ("[h]:2*", "[h]:2222", true),
            ("*b*b", "abab", true),
            ("*b*b", "abba", false),
            ("abc", "ab", false),
        ] {
            assert_eq!(wildcard(p.as_bytes(), t.as_bytes()), want, "{p} vs {t}");
        }
    }

    #[test]
    fn key_types_and_fingerprints() {
        // A real public key and what `ssh-keygen -lf` prints for it.
        let k = base64::engine::general_purpose::STANDARD
            .decode("AAAAC3NzaC1lZDI1NTE5AAAAIPnpRYiYAeOmkRsNEKrbqtYdL+SGYM56/riJcg6GXmR0")
            .unwrap();
        assert_eq!(key_type(&k), Some("ssh-ed25519"));
        assert_eq!(fingerprint(&k), "SHA256:gigHC7zV9ffswrRlYnZjEIcrQ1sWH7Rv25yIrBLtgG4");
        assert_eq!(key_type(b"\0\0"), None);
        assert_eq!(key_type(b"\0\0\0\x09short"), None);
    }
}
