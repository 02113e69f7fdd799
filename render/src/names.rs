//! Kubernetes name rules: DNS-1123 subdomains and labels, DNS-1035 labels, path segments.

fn is_label_char(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'
}

/// DNS-1123 label: at most 63 lowercase alphanumerics or '-', starting and ending alphanumeric.
pub fn dns1123_label(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 63 {
        return Err(format!("`{s}` must be 1-63 characters"));
    }
    if !b.iter().all(|c| is_label_char(*c)) || b[0] == b'-' || b[b.len() - 1] == b'-' {
        return Err(format!(
            "`{s}` is not a valid DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

/// DNS-1035 label: a DNS-1123 label starting with a letter (Service names).
pub fn dns1035_label(s: &str) -> Result<(), String> {
    dns1123_label(s)?;
    if !s.as_bytes()[0].is_ascii_lowercase() {
        return Err(format!(
            "`{s}` is not a valid DNS-1035 label (must start with a lowercase letter)"
        ));
    }
    Ok(())
}

/// DNS-1123 subdomain: at most 253 characters, dot-separated DNS-1123 labels.
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err(format!("`{s}` must be 1-253 characters"));
    }
    let ok = s.split('.').all(|p| {
        let b = p.as_bytes();
        !b.is_empty() && b.iter().all(|c| is_label_char(*c)) && b[0] != b'-' && b[b.len() - 1] != b'-'
    });
    if !ok {
        return Err(format!(
            "`{s}` is not a valid DNS-1123 subdomain (lowercase letters, digits, '-' and '.', each part starting and ending with a letter or digit)"
        ));
    }
    Ok(())
}

/// Path-segment names (RBAC kinds): anything but `.`, `..`, or containing `/` or `%`.
pub fn path_segment(s: &str) -> Result<(), String> {
    if s == "." || s == ".." || s.contains('/') || s.contains('%') {
        return Err(format!("`{s}` may not be '.', '..', or contain '/' or '%'"));
    }
    Ok(())
}

/// Checks an object's name and namespace by its kind's rules. Returns (pointer, message) pairs.
pub fn check_object_names(kind: &str, group: &str, name: &str, namespace: &str) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let rule = match (group, kind) {
        ("", "Namespace") => dns1123_label(name),
        ("", "Service") => dns1035_label(name),
        ("rbac.authorization.k8s.io", _) => path_segment(name),
        // Custom resources may have their own rules; apply only the API machinery's path rule.
        (g, _) if g.contains('.') && !g.ends_with(".k8s.io") => path_segment(name),
        _ => dns1123_subdomain(name),
    };
    if let Err(e) = rule {
        out.push(("/metadata/name", format!("invalid {kind} name: {e}")));
    }
    if !namespace.is_empty() {
        if let Err(e) = dns1123_label(namespace) {
            out.push(("/metadata/namespace", format!("invalid namespace: {e}")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(dns1123_subdomain("web.v1-a").is_ok());
        assert!(dns1123_subdomain("Web").is_err());
        assert!(dns1123_subdomain("a..b").is_err());
        assert!(dns1123_label("a.b").is_err());
        assert!(dns1035_label("1abc").is_err());
        assert!(path_segment("system:aggregate-to-admin").is_ok());
        assert_eq!(check_object_names("ConfigMap", "", "ok", "Bad_NS").len(), 1);
    }
}
