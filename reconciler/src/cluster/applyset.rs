//! The ApplySet convention (KEP-3659): one parent object per cluster, members labelled `part-of`.
//!
//! The parent is the ConfigMap `flotilla-system/flotilla-applyset`. Its label
//! `applyset.kubernetes.io/id` is derived from its identity as the KEP specifies; its annotations list
//! the group-kinds and namespaces the members live in (so pruning knows where to look) and the last
//! applied commit (so a restarted daemon resumes without local state).

use base64::Engine as _;
use sha2::{Digest, Sha256};

pub const PARENT_NAMESPACE: &str = "flotilla-system";
/// The default parent name; `--applyset NAME` lets several repositories manage one cluster side by side.
pub const PARENT_NAME: &str = "flotilla-applyset";
pub const FIELD_MANAGER: &str = "flotilla";
pub const TOOLING: &str = concat!("flotilla/v", env!("CARGO_PKG_VERSION"));

pub const LABEL_ID: &str = "applyset.kubernetes.io/id";
pub const LABEL_PART_OF: &str = "applyset.kubernetes.io/part-of";
pub const ANNOTATION_TOOLING: &str = "applyset.kubernetes.io/tooling";
pub const ANNOTATION_GROUP_KINDS: &str = "applyset.kubernetes.io/contains-group-kinds";
pub const ANNOTATION_NAMESPACES: &str = "applyset.kubernetes.io/additional-namespaces";
pub const ANNOTATION_COMMIT: &str = "flotilla.dev/last-applied-commit";

/// `applyset-<base64url(sha256("<name>.<namespace>.<kind>.<group>"))>-v1`, per KEP-3659, for the parent
/// ConfigMap `flotilla-system/<parent>`.
pub fn applyset_id(parent: &str) -> String {
    let digest = Sha256::digest(format!("{parent}.{PARENT_NAMESPACE}.ConfigMap.").as_bytes());
    format!(
        "applyset-{}-v1",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    )
}

/// A group-kind as the annotation writes it: `Kind` for the core group, `Kind.group` otherwise.
pub fn group_kind(group: &str, kind: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

/// Parses `Kind.group` back into (group, kind).
pub fn parse_group_kind(gk: &str) -> (String, String) {
    match gk.split_once('.') {
        Some((kind, group)) => (group.to_string(), kind.to_string()),
        None => (String::new(), gk.to_string()),
    }
}

/// Splits a comma-separated annotation value into a sorted, de-duplicated list.
pub fn split_list(v: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = v
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_stable_and_well_formed() {
        let id = applyset_id(PARENT_NAME);
        assert_ne!(id, applyset_id("other"));
        assert!(id.starts_with("applyset-") && id.ends_with("-v1"));
        assert_eq!(id.len(), "applyset-".len() + 43 + "-v1".len());
        assert!(id.len() <= 63, "must fit a label value");
    }

    #[test]
    fn group_kinds_round_trip() {
        assert_eq!(group_kind("", "ConfigMap"), "ConfigMap");
        assert_eq!(group_kind("apps", "Deployment"), "Deployment.apps");
        assert_eq!(
            parse_group_kind("Deployment.apps"),
            ("apps".into(), "Deployment".into())
        );
        assert_eq!(parse_group_kind("ConfigMap"), ("".into(), "ConfigMap".into()));
        assert_eq!(split_list(Some("b, a,,a")), ["a", "b"]);
    }
}
