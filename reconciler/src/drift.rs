//! Drift: a change, made by anyone but flotilla, to a field flotilla manages.
//!
//! The API server already tracks who manages which field (`metadata.managedFields`, server-side
//! apply). When another manager changes a field flotilla applied, the server moves the field out of
//! flotilla's set; when someone removes it, it leaves flotilla's set too. So drift is exactly: flotilla's
//! field set on the live object lost entries compared with what the server answered to flotilla's own
//! apply. Fields flotilla does not set (a `replicas` owned by an autoscaler when the template omits it,
//! a label added by a controller) are never in flotilla's set, so they are never fought over; a value
//! written back unchanged by someone else only makes the field shared, which is not drift either.
//!
//! This module is pure: field sets in, paths out.

use kube::api::ObjectMeta;
use serde_json::{Map, Value};

use crate::cluster::applyset::FIELD_MANAGER;

/// flotilla's field set of an object (its `Apply` entry without subresource), as compact JSON.
pub fn flotilla_fields(meta: &ObjectMeta) -> Option<Box<str>> {
    let entry = meta.managed_fields.as_ref()?.iter().find(|m| {
        m.manager.as_deref() == Some(FIELD_MANAGER)
            && m.operation.as_deref() == Some("Apply")
            && m.subresource.as_deref().unwrap_or("").is_empty()
    })?;
    let fields = entry.fields_v1.as_ref()?;
    serde_json::to_string(&fields.0).ok().map(String::into_boxed_str)
}

/// The leaves of a field set: each a path of raw keys (`f:spec`, `k:{"name":"web"}`, ...).
fn leaves(set: &Value) -> Vec<Vec<String>> {
    fn walk(node: &Map<String, Value>, path: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        for (k, v) in node {
            if k == "." {
                out.push(path.clone());
                continue;
            }
            path.push(k.clone());
            match v.as_object() {
                Some(m) if !m.is_empty() => walk(m, path, out),
                _ => out.push(path.clone()),
            }
            path.pop();
        }
    }
    let mut out = Vec::new();
    if let Some(m) = set.as_object() {
        walk(m, &mut Vec::new(), &mut out);
    }
    out
}

fn contains(set: &Value, path: &[String]) -> bool {
    let mut node = set;
    for k in path {
        match node.get(k) {
            Some(n) => node = n,
            None => return false,
        }
    }
    true
}

/// Fields flotilla had after its apply (`recorded`) and no longer has (`live`, `None`: flotilla has no
/// entry any more), as raw paths. Empty: no drift (the set is the same or only grew).
pub fn lost(recorded: Option<&str>, live: Option<&str>) -> Vec<Vec<String>> {
    let parse = |s: Option<&str>| s.and_then(|s| serde_json::from_str::<Value>(s).ok());
    let Some(before) = parse(recorded) else {
        return Vec::new();
    };
    let after = parse(live).unwrap_or(Value::Null);
    leaves(&before).into_iter().filter(|p| !contains(&after, p)).collect()
}

/// A raw path made readable: `spec.template.spec.containers[name=web].image`.
pub fn readable(path: &[String]) -> String {
    let mut out = String::new();
    for k in path {
        if let Some(f) = k.strip_prefix("f:") {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(f);
        } else if let Some(key) = k.strip_prefix("k:") {
            let fields = serde_json::from_str::<Map<String, Value>>(key)
                .map(|m| {
                    m.iter()
                        .map(|(n, v)| match v {
                            Value::String(s) => format!("{n}={s}"),
                            other => format!("{n}={other}"),
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_else(|_| key.to_string());
            out.push_str(&format!("[{fields}]"));
        } else if let Some(v) = k.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        } else if let Some(i) = k.strip_prefix("i:") {
            out.push_str(&format!("[{i}]"));
        } else {
            out.push_str(&format!("[{k}]"));
        }
    }
    if out.is_empty() {
        out.push_str("(object)");
    }
    out
}

/// The managers (other than flotilla) that now hold any of `paths` (`manager (Operation)`), sorted.
pub fn holders(meta: &ObjectMeta, paths: &[Vec<String>]) -> Vec<String> {
    let mut out: Vec<String> = meta
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| m.manager.as_deref() != Some(FIELD_MANAGER))
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .is_some_and(|f| paths.iter().any(|p| contains(&f.0, p)))
        })
        .map(|m| {
            format!(
                "{} ({})",
                m.manager.as_deref().unwrap_or("unknown"),
                m.operation.as_deref().unwrap_or("?")
            )
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    use serde_json::json;

    const DEPLOY: &str = r#"{"f:metadata":{"f:labels":{"f:app":{},"f:applyset.kubernetes.io/part-of":{}}},"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"web\"}":{".":{},"f:image":{},"f:name":{}}}}}}}"#;

    fn entry(manager: &str, op: &str, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(op.into()),
            fields_v1: Some(FieldsV1(fields)),
            ..ManagedFieldsEntry::default()
        }
    }

    #[test]
    fn same_set_is_no_drift() {
        assert!(lost(Some(DEPLOY), Some(DEPLOY)).is_empty());
    }

    #[test]
    fn a_grown_set_is_no_drift() {
        let grown = DEPLOY.replace(r#""f:app":{}"#, r#""f:app":{},"f:tier":{}"#);
        assert!(lost(Some(DEPLOY), Some(&grown)).is_empty());
    }

    #[test]
    fn a_field_taken_by_someone_else_is_named() {
        let taken = DEPLOY.replace(r#""f:image":{},"#, "");
        let l = lost(Some(DEPLOY), Some(&taken));
        assert_eq!(l.len(), 1);
        assert_eq!(readable(&l[0]), "spec.template.spec.containers[name=web].image");
    }

    #[test]
    fn a_missing_entry_loses_everything() {
        let l = lost(Some(DEPLOY), None);
        let names: Vec<String> = l.iter().map(|p| readable(p)).collect();
        assert_eq!(
            names,
            [
                "metadata.labels.app",
                "metadata.labels.applyset.kubernetes.io/part-of",
                "spec.template.spec.containers[name=web]",
                "spec.template.spec.containers[name=web].image",
                "spec.template.spec.containers[name=web].name",
            ]
        );
    }

    #[test]
    fn nothing_recorded_is_no_drift() {
        assert!(lost(None, Some(DEPLOY)).is_empty());
    }

    #[test]
    fn holders_name_the_other_managers() {
        let meta = ObjectMeta {
            managed_fields: Some(vec![
                entry(FIELD_MANAGER, "Apply", serde_json::from_str(DEPLOY).unwrap()),
                entry("kubectl-edit", "Update", json!({"f:spec": {"f:replicas": {}}})),
                entry("hpa", "Update", json!({"f:status": {}})),
            ]),
            ..ObjectMeta::default()
        };
        let p = vec![vec!["f:spec".to_string(), "f:replicas".to_string()]];
        assert_eq!(holders(&meta, &p), ["kubectl-edit (Update)"]);
        assert_eq!(flotilla_fields(&meta).as_deref(), Some(DEPLOY));
    }

    #[test]
    fn only_the_apply_entry_without_subresource_counts() {
        let meta = ObjectMeta {
            managed_fields: Some(vec![
                ManagedFieldsEntry {
                    subresource: Some("status".into()),
                    ..entry(FIELD_MANAGER, "Apply", json!({"f:status": {}}))
                },
                entry(FIELD_MANAGER, "Update", json!({"f:data": {}})),
            ]),
            ..ObjectMeta::default()
        };
        assert_eq!(flotilla_fields(&meta), None);
    }

    #[test]
    fn readable_forms() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            readable(&p(&["f:spec", "f:ports", r#"k:{"port":80,"protocol":"TCP"}"#])),
            "spec.ports[port=80,protocol=TCP]"
        );
        assert_eq!(
            readable(&p(&["f:metadata", "f:finalizers", r#"v:"x""#])),
            r#"metadata.finalizers[="x"]"#
        );
        assert_eq!(readable(&[]), "(object)");
    }
}
