//! Webhook authentication (pure): GitHub's `X-Hub-Signature-256` (`sha256=` + hex HMAC-SHA256 of the body),
//! Gitea's (and Gogs') `X-Gitea-Signature` (hex HMAC-SHA256 of the body), GitLab's `X-Gitlab-Token` (the
//! secret itself). Comparisons are constant-time. A webhook is only a hint to fetch now: its body is never
//! trusted for anything else, so authenticating it is all there is to check.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The outcome of checking one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated; the provider whose scheme matched.
    Accepted(&'static str),
    /// Refused (401), with the reason (logged, and returned in the response body).
    Rejected(String),
}

/// Checks a request's signature headers (`header(name)` gives a header's value) against `secret`.
pub fn verify<'h>(secret: &[u8], header: impl Fn(&str) -> Option<&'h str>, body: &[u8]) -> Verdict {
    if secret.is_empty() {
        return Verdict::Rejected("no webhook secret is configured (--webhook-secret-file)".into());
    }
    if let Some(sig) = header("x-hub-signature-256") {
        return match sig.strip_prefix("sha256=") {
            Some(hex) if hmac_matches(secret, body, hex) => Verdict::Accepted("github"),
            Some(_) => Verdict::Rejected("X-Hub-Signature-256 does not match the body".into()),
            None => Verdict::Rejected("X-Hub-Signature-256 is not `sha256=<hex>`".into()),
        };
    }
    for (name, provider) in [("x-gitea-signature", "gitea"), ("x-gogs-signature", "gogs")] {
        if let Some(sig) = header(name) {
            return if hmac_matches(secret, body, sig) {
                Verdict::Accepted(provider)
            } else {
                Verdict::Rejected(format!("{name} does not match the body"))
            };
        }
    }
    if let Some(token) = header("x-gitlab-token") {
        return if constant_time_eq(token.as_bytes(), secret) {
            Verdict::Accepted("gitlab")
        } else {
            Verdict::Rejected("X-Gitlab-Token is wrong".into())
        };
    }
    Verdict::Rejected(
        "unsigned: expected X-Hub-Signature-256 (GitHub), X-Gitea-Signature (Gitea) or X-Gitlab-Token (GitLab)".into(),
    )
}

fn hmac_matches(secret: &[u8], body: &[u8], hex_sig: &str) -> bool {
    let Ok(sig) = hex::decode(hex_sig.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The secret from a file: its content with surrounding whitespace (a trailing newline) removed.
pub fn read_secret(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    let raw = std::fs::read(path).with_context(|| format!("reading the webhook secret {}", path.display()))?;
    let text = String::from_utf8_lossy(&raw);
    let secret = text.trim().as_bytes().to_vec();
    if secret.is_empty() {
        anyhow::bail!("the webhook secret file {} is empty", path.display());
    }
    Ok(secret)
}

/// `sha256=<hex>` of `body` under `secret` (what GitHub sends; for tests and tools).
pub fn github_signature(secret: &[u8], body: &[u8]) -> String {
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(body);
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";

    fn headers<'a>(h: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| h.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }

    #[test]
    fn github_documented_example() {
        // The example in GitHub's "Validating webhook deliveries" documentation.
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(github_signature(SECRET, BODY), sig);
        assert_eq!(
            verify(SECRET, headers(&[("X-Hub-Signature-256", sig)]), BODY),
            Verdict::Accepted("github")
        );
    }

    #[test]
    fn a_wrong_or_malformed_signature_is_rejected() {
        let sig = github_signature(b"another secret", BODY);
        assert!(matches!(
            verify(SECRET, headers(&[("X-Hub-Signature-256", &sig)]), BODY),
            Verdict::Rejected(_)
        ));
        let good = github_signature(SECRET, BODY);
        assert!(matches!(
            verify(SECRET, headers(&[("X-Hub-Signature-256", &good)]), b"Hello, World?"),
            Verdict::Rejected(_)
        ));
        assert!(matches!(
            verify(SECRET, headers(&[("X-Hub-Signature-256", "sha1=00")]), BODY),
            Verdict::Rejected(_)
        ));
        assert!(matches!(
            verify(SECRET, headers(&[("X-Hub-Signature-256", "sha256=zz")]), BODY),
            Verdict::Rejected(_)
        ));
    }

    #[test]
    fn gitea_and_gitlab() {
        let hex = github_signature(SECRET, BODY).trim_start_matches("sha256=").to_string();
        assert_eq!(
            verify(SECRET, headers(&[("X-Gitea-Signature", &hex)]), BODY),
            Verdict::Accepted("gitea")
        );
        let secret = std::str::from_utf8(SECRET).unwrap_or_default();
        assert_eq!(
            verify(SECRET, headers(&[("X-Gitlab-Token", secret)]), BODY),
            Verdict::Accepted("gitlab")
        );
        assert!(matches!(
            verify(SECRET, headers(&[("X-Gitlab-Token", "guess")]), BODY),
            Verdict::Rejected(_)
        ));
    }

    #[test]
    fn unsigned_or_unconfigured_is_rejected() {
        assert!(matches!(verify(SECRET, headers(&[]), BODY), Verdict::Rejected(_)));
        let sig = github_signature(b"", BODY);
        assert!(matches!(
            verify(b"", headers(&[("X-Hub-Signature-256", &sig)]), BODY),
            Verdict::Rejected(_)
        ));
    }
}
