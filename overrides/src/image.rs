//! Container image references: the docker reference grammar, split into Karmada's registry/repository/tag parts.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;

/// Longest name (registry and repository, without tag or digest) the grammar accepts.
pub const NAME_MAX_LEN: usize = 255;

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    #[error("image reference is empty")]
    Empty,
    #[error("image reference {0:?} has uppercase letters in its repository (repositories must be lowercase)")]
    Uppercase(String),
    #[error("image reference {0:?} is not valid (expected [registry/]repository[:tag][@digest])")]
    InvalidFormat(String),
    #[error("image reference {image:?} has a name of {len} characters (at most {NAME_MAX_LEN})")]
    NameTooLong { image: String, len: usize },
    #[error("image reference {image:?} has an invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        image: String,
        digest: String,
        reason: String,
    },
    #[error("image grammar failed to compile: {0}")]
    Grammar(String),
}

/// An image reference in Karmada's components. `Display` reassembles
/// `[registry "/"] repository [":" tag | "@" digest]` (the tag wins if both are set).
///
/// The grammar is `distribution/reference`'s (v0.6) *non-normalising* one, written out with `regex`:
///
/// ```text
/// reference        := name [ ":" tag ] [ "@" digest ]
/// name             := [ domain "/" ] path-component ( "/" path-component )*
/// domain           := host [ ":" port ]             host := domain-name | "[" ipv6 "]"
/// domain-name      := component ( "." component )*  component := [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
/// path-component   := [a-z0-9]+ ( ( [._] | "__" | "-"+ ) [a-z0-9]+ )*
/// tag              := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
/// digest           := algorithm ":" [0-9a-fA-F]{32,}
/// algorithm        := [A-Za-z][A-Za-z0-9]* ( [-_+.] [A-Za-z][A-Za-z0-9]* )*
/// ```
///
/// plus the checks around it: the name is at most 255 characters, and a digest must be valid for its
/// algorithm (`sha256`: 64 lowercase hex, `sha384`: 96, `sha512`: 128; other algorithms are unsupported).
/// Nothing is normalised: no `docker.io/`, no `library/`, no default `:latest`.
///
/// Karmada's split of the name (`imageparser.SplitHostname`): the part before the first `/` is the
/// *registry* only when it contains `.` or `:` or is `localhost`; otherwise the whole name is the
/// *repository*. A reference with both a tag and a digest keeps only the tag.
///
/// ```
/// use overrides::image::ImageRef;
/// let img = ImageRef::parse("fictional.registry.example:10443/subpath/imagename:v1").unwrap();
/// assert_eq!(img.registry, "fictional.registry.example:10443");
/// assert_eq!(img.repository, "subpath/imagename");
/// assert_eq!(img.tag.as_deref(), Some("v1"));
/// assert_eq!(img.to_string(), "fictional.registry.example:10443/subpath/imagename:v1");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host with optional port, or empty.
    pub registry: String,
    /// Path within the registry (may contain `/`).
    pub repository: String,
    pub tag: Option<String>,
    /// `algorithm:hex`, only kept when there is no tag.
    pub digest: Option<String>,
}

struct Grammar {
    reference: Regex,
    tag: Regex,
    digest: Regex,
}

fn compile() -> Result<Grammar, String> {
    let alnum = "[a-z0-9]+";
    let separator = "(?:[._]|__|[-]+)";
    let path_component = format!("{alnum}(?:{separator}{alnum})*");
    let domain_component = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    let domain_name = format!(r"{domain_component}(?:\.{domain_component})*");
    let ipv6 = r"\[(?:[a-fA-F0-9:]+)\]";
    let domain = format!("(?:{domain_name}|{ipv6})(?::[0-9]+)?");
    let remote_name = format!("{path_component}(?:/{path_component})*");
    let name = format!("(?:{domain}/)?{remote_name}");
    // `\w` spelled out: Go's is ASCII-only, the regex crate's is Unicode.
    let tag = "[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
    let digest = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
    let build = |p: &str| Regex::new(p).map_err(|e| e.to_string());
    Ok(Grammar {
        reference: build(&format!("^({name})(?::({tag}))?(?:@({digest}))?$"))?,
        tag: build(&format!("^{tag}$"))?,
        digest: build(&format!("^{digest}$"))?,
    })
}

static GRAMMAR: LazyLock<Result<Grammar, String>> = LazyLock::new(compile);

fn grammar() -> Result<&'static Grammar, ImageError> {
    GRAMMAR.as_ref().map_err(|e| ImageError::Grammar(e.clone()))
}

/// Whether `s` is a valid tag (`[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`).
pub fn is_tag(s: &str) -> bool {
    grammar().is_ok_and(|g| g.tag.is_match(s))
}

/// Whether `s` has the shape of a digest (`algorithm:hex`, at least 32 hex digits; the algorithm is not checked).
pub fn is_digest(s: &str) -> bool {
    grammar().is_ok_and(|g| g.digest.is_match(s))
}

/// go-digest's validation: known algorithm and exact lowercase-hex length.
fn check_digest(digest: &str) -> Result<(), String> {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(String::from("missing \":\""));
    };
    let len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        other => return Err(format!("unsupported digest algorithm {other:?}")),
    };
    if hex.len() != len {
        return Err(format!("{algorithm} needs {len} hex digits, found {}", hex.len()));
    }
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(String::from("digest hex must be lowercase 0-9a-f"));
    }
    Ok(())
}

impl ImageRef {
    /// Parses `image` per the grammar in the [`ImageRef`] docs and splits it as Karmada does.
    pub fn parse(image: &str) -> Result<ImageRef, ImageError> {
        let g = grammar()?;
        let Some(caps) = g.reference.captures(image) else {
            if image.is_empty() {
                return Err(ImageError::Empty);
            }
            if g.reference.is_match(&image.to_lowercase()) {
                return Err(ImageError::Uppercase(image.to_owned()));
            }
            return Err(ImageError::InvalidFormat(image.to_owned()));
        };
        let name = caps.get(1).map_or("", |m| m.as_str());
        if name.len() > NAME_MAX_LEN {
            return Err(ImageError::NameTooLong {
                image: image.to_owned(),
                len: name.len(),
            });
        }
        let tag = caps.get(2).map(|m| m.as_str().to_owned());
        let digest = caps.get(3).map(|m| m.as_str().to_owned());
        if let Some(d) = &digest {
            check_digest(d).map_err(|reason| ImageError::InvalidDigest {
                image: image.to_owned(),
                digest: d.clone(),
                reason,
            })?;
        }
        let (registry, repository) = split_registry(name);
        Ok(ImageRef {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            // Karmada keeps the tag and drops the digest when both are present.
            digest: if tag.is_some() { None } else { digest },
            tag,
        })
    }

    /// The tag if set, else the digest.
    pub fn tag_or_digest(&self) -> Option<&str> {
        self.tag.as_deref().or(self.digest.as_deref())
    }

    /// Karmada's `SetTagOrDigest`: a valid tag becomes the tag (digest cleared), else a digest-shaped value
    /// becomes the digest (tag cleared), else nothing changes and `false` is returned.
    pub fn set_tag_or_digest(&mut self, value: &str) -> bool {
        if is_tag(value) {
            self.tag = Some(value.to_owned());
            self.digest = None;
            true
        } else if is_digest(value) {
            self.digest = Some(value.to_owned());
            self.tag = None;
            true
        } else {
            false
        }
    }

    /// Karmada's `RemoveTagOrDigest`: clears the tag if set, else the digest.
    pub fn remove_tag_or_digest(&mut self) {
        if self.tag.take().is_none() {
            self.digest = None;
        }
    }

    /// `[registry "/"] repository`.
    pub fn full_name(&self) -> String {
        if self.registry.is_empty() {
            self.repository.clone()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }
}

/// Karmada's `SplitHostname` on a name without tag or digest.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => (first, rest),
        _ => ("", name),
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full_name())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")
        } else if let Some(digest) = &self.digest {
            write!(f, "@{digest}")
        } else {
            Ok(())
        }
    }
}

impl FromStr for ImageRef {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const SHA: &str = "sha256:7a8d2e39ef1d8a9bc9ec9ae6c0f4c4f3e1ec6bd4cdc0a1c9ee0d8a4a10ec1f41";

    fn parts(image: &str) -> (String, String, Option<String>, Option<String>) {
        let r = ImageRef::parse(image).unwrap();
        (r.registry, r.repository, r.tag, r.digest)
    }

    fn p(
        reg: &str,
        repo: &str,
        tag: Option<&str>,
        digest: Option<&str>,
    ) -> (String, String, Option<String>, Option<String>) {
        (reg.into(), repo.into(), tag.map(Into::into), digest.map(Into::into))
    }

    #[test]
    fn grammar_compiles() {
        assert!(grammar().is_ok());
    }

    #[test]
    fn karmada_examples_split() {
        assert_eq!(
            parts("fictional.registry.example:10443/subpath/imagename"),
            p("fictional.registry.example:10443", "subpath/imagename", None, None)
        );
        assert_eq!(
            parts("10.10.10.10:10443/a/b:v1"),
            p("10.10.10.10:10443", "a/b", Some("v1"), None)
        );
        assert_eq!(parts("library/nginx"), p("", "library/nginx", None, None));
        assert_eq!(parts("nginx"), p("", "nginx", None, None));
        assert_eq!(parts("localhost/nginx:1"), p("localhost", "nginx", Some("1"), None));
        assert_eq!(parts("localhost:5000/a"), p("localhost:5000", "a", None, None));
        assert_eq!(parts("[::1]:5000/a"), p("[::1]:5000", "a", None, None));
        assert_eq!(parts("registry/a"), p("", "registry/a", None, None));
        // No default tag and no normalisation.
        assert_eq!(ImageRef::parse("nginx").unwrap().to_string(), "nginx");
        assert_eq!(
            ImageRef::parse("docker.io/nginx").unwrap().to_string(),
            "docker.io/nginx"
        );
    }

    #[test]
    fn digest_only_and_tag_plus_digest() {
        assert_eq!(parts(&format!("nginx@{SHA}")), p("", "nginx", None, Some(SHA)));
        let both = format!("a.io/nginx:1.17@{SHA}");
        assert_eq!(parts(&both), p("a.io", "nginx", Some("1.17"), None));
        assert_eq!(ImageRef::parse(&both).unwrap().to_string(), "a.io/nginx:1.17");
    }

    #[test]
    fn invalid_references() {
        assert_eq!(ImageRef::parse(""), Err(ImageError::Empty));
        assert!(matches!(ImageRef::parse("Nginx"), Err(ImageError::Uppercase(_))));
        assert!(matches!(
            ImageRef::parse("a.io/Library/nginx"),
            Err(ImageError::Uppercase(_))
        ));
        // Uppercase in the registry is fine.
        assert_eq!(parts("A.IO/nginx"), p("A.IO", "nginx", None, None));
        for bad in [
            "host/:v1",
            "nginx:",
            ":v1",
            "nginx:tag with space",
            "a//b",
            "-a/b",
            "a/b/",
            "nginx@sha256:abc",
            "nginx:-bad",
            "nginx:1:2",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
        let long_tag = format!("nginx:{}", "a".repeat(129));
        assert!(ImageRef::parse(&long_tag).is_err());
        assert!(ImageRef::parse(&format!("nginx:{}", "a".repeat(128))).is_ok());
        let long_name = format!("a.io/{}", "a".repeat(251));
        assert!(matches!(
            ImageRef::parse(&long_name),
            Err(ImageError::NameTooLong { .. })
        ));
        assert!(ImageRef::parse(&format!("a.io/{}", "a".repeat(250))).is_ok());
    }

    #[test]
    fn digests_are_checked_for_their_algorithm() {
        let upper = format!("nginx@{}", SHA.to_uppercase().replace("SHA256", "sha256"));
        assert!(matches!(ImageRef::parse(&upper), Err(ImageError::InvalidDigest { .. })));
        let short = format!("nginx@sha256:{}", "a".repeat(63));
        assert!(matches!(ImageRef::parse(&short), Err(ImageError::InvalidDigest { .. })));
        let md5 = format!("nginx@md5:{}", "a".repeat(32));
        assert!(matches!(ImageRef::parse(&md5), Err(ImageError::InvalidDigest { .. })));
        assert!(ImageRef::parse(&format!("nginx@sha512:{}", "0".repeat(128))).is_ok());
        assert!(ImageRef::parse(&format!("nginx@sha384:{}", "0".repeat(96))).is_ok());
    }

    #[test]
    fn tag_or_digest_rules() {
        let mut r = ImageRef::parse("nginx:1.17").unwrap();
        assert!(r.set_tag_or_digest(SHA));
        assert_eq!(r.to_string(), format!("nginx@{SHA}"));
        assert!(r.set_tag_or_digest("v2"));
        assert_eq!(r.to_string(), "nginx:v2");
        assert!(!r.set_tag_or_digest(&format!("@{SHA}")));
        assert!(!r.set_tag_or_digest(&format!("v1.0.0{SHA}")));
        assert!(!r.set_tag_or_digest(""));
        assert_eq!(r.to_string(), "nginx:v2");
        r.remove_tag_or_digest();
        assert_eq!(r.to_string(), "nginx");
        let mut d = ImageRef::parse(&format!("nginx@{SHA}")).unwrap();
        assert_eq!(d.tag_or_digest(), Some(SHA));
        d.remove_tag_or_digest();
        assert_eq!(d.to_string(), "nginx");
        assert!(is_tag("_x") && !is_tag("é") && !is_tag(".x"));
    }

    #[test]
    fn display_reassembles() {
        let r = ImageRef {
            registry: "host".into(),
            repository: String::new(),
            tag: Some("v1".into()),
            digest: None,
        };
        assert_eq!(r.to_string(), "host/:v1");
        let r = ImageRef {
            registry: String::new(),
            repository: "a".into(),
            tag: Some("t".into()),
            digest: Some(SHA.into()),
        };
        assert_eq!(r.to_string(), "a:t");
        assert_eq!("a.io/x:1".parse::<ImageRef>().unwrap().full_name(), "a.io/x");
    }
}
