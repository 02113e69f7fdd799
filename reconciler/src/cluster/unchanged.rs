//! Members that provably hold what flotilla would apply, so applying them again is skipped.
//!
//! Every object flotilla applies carries the annotation [`ANNOTATION_APPLIED`]: the sha256 of the
//! object exactly as sent (ApplySet label included, this annotation excluded). A member is unchanged
//! when both hold, read from the metadata-only member listing the apply makes anyway:
//! 1. its annotation equals the hash of what flotilla would send now: the last body flotilla applied
//!    is the desired body (so no field has to be added, changed or removed);
//! 2. flotilla's field set (its `Apply` entry in `managedFields`) still covers every field of that
//!    body: nobody changed or removed a field flotilla set since, because the API server moves a field
//!    out of flotilla's set when another manager changes it (an update, a forced apply) or removes it.
//!
//! Together: the live values of every field flotilla manages are those of its last apply, which is the
//! desired body, so a new server-side apply would change nothing. Anything this check cannot prove
//! (an unknown list shape, a field the server dropped, a quantity written differently) only means
//! the object is applied as usual.
//!
//! One shape stays unprovable on purpose: an empty list or map in the body. The API server records no
//! field for an empty granular list (`x-kubernetes-list-type: set|map`), but it does record an atomic one,
//! and losing it to another manager leaves the same trace as never having it; without the schema the two
//! cannot be told apart, so such objects are applied every time (the custom resources with an empty
//! `tags` set in the apply benchmark: about 1% of its objects).
//!
//! Coverage is checked without a schema: a node of the field set with no children owns its whole
//! subtree (an atomic map, list or a scalar); associative list items are matched through their
//! `k:{...}` keys (a key field missing from the desired item was defaulted by the server, like a
//! port's `protocol`, and matches any value), scalar set items through `v:<json>`.
//!
//! This module is pure.

use kube::api::ObjectMeta;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The hash of the body flotilla last applied to an object.
pub const ANNOTATION_APPLIED: &str = "flotilla.dev/applied-hash";

/// `sha256:<hex>` of an object's JSON (deterministic: the render's key order is).
pub fn applied_hash(obj: &Value) -> String {
    let bytes = serde_json::to_vec(obj).unwrap_or_default();
    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
}

/// Adds [`ANNOTATION_APPLIED`] to an object about to be applied (any stale value is replaced first, so
/// the hash never covers itself).
pub fn annotate(obj: &mut Value) {
    if let Some(a) = obj.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        a.remove(ANNOTATION_APPLIED);
    }
    let hash = applied_hash(obj);
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = meta.entry("annotations").or_insert_with(|| Value::Object(Map::new()));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(ANNOTATION_APPLIED.into(), hash.into());
        }
    }
}

/// Whether the live member (its metadata) provably holds `applied` (the body as flotilla would send
/// it, annotated by [`annotate`]).
pub fn unchanged(meta: &ObjectMeta, applied: &Value) -> bool {
    let want = applied
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(ANNOTATION_APPLIED))
        .and_then(Value::as_str);
    let have = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_APPLIED))
        .map(String::as_str);
    if want.is_none() || want != have {
        return false;
    }
    let Some(fields) = flotilla_field_set(meta) else {
        return false;
    };
    covers_object(fields, applied)
}

fn flotilla_field_set(meta: &ObjectMeta) -> Option<&Value> {
    let entry = meta.managed_fields.as_ref()?.iter().find(|m| {
        m.manager.as_deref() == Some(super::applyset::FIELD_MANAGER)
            && m.operation.as_deref() == Some("Apply")
            && m.subresource.as_deref().unwrap_or("").is_empty()
    })?;
    entry.fields_v1.as_ref().map(|f| &f.0)
}

/// Whether field set `set` covers every field of the top-level object `obj` (its identity, which field
/// sets never list, aside: `apiVersion`, `kind`, `metadata.name`, `metadata.namespace`).
pub fn covers_object(set: &Value, obj: &Value) -> bool {
    let (Some(set), Some(obj)) = (set.as_object(), obj.as_object()) else {
        return false;
    };
    obj.iter().all(|(k, v)| match k.as_str() {
        "apiVersion" | "kind" => true,
        "metadata" => {
            let Some(meta) = v.as_object() else { return false };
            let rest: Map<String, Value> = meta
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "name" | "namespace"))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if rest.is_empty() {
                return true;
            }
            set.get("f:metadata").is_some_and(|s| covers(s, &Value::Object(rest)))
        }
        _ => set.get(&format!("f:{k}")).is_some_and(|s| covers(s, v)),
    })
}

/// Whether the field-set node `node` covers the value `v` at the same path.
fn covers(node: &Value, v: &Value) -> bool {
    let Some(node) = node.as_object() else {
        return false;
    };
    if node.is_empty() {
        // The path itself is owned: a scalar, or an atomic map or list (its whole subtree).
        return true;
    }
    if node.keys().all(|k| k == ".") {
        // A list item or map owned as such, none of its fields: covers only an empty one.
        return !matches!(v, Value::Object(m) if !m.is_empty());
    }
    match v {
        Value::Object(m) => m
            .iter()
            .all(|(k, v)| node.get(&format!("f:{k}")).is_some_and(|s| covers(s, v))),
        Value::Array(items) => items.iter().all(|item| match item_node(node, item) {
            Some(child) => !item.is_object() || covers(child, item),
            None => false,
        }),
        // A scalar whose node has children: not a shape this check knows.
        _ => false,
    }
}

/// The node of a list item: `v:<json>` for a scalar, the one `k:{...}` whose key fields match an
/// object (a key field the item lacks was defaulted by the server and matches anything).
fn item_node<'a>(node: &'a Map<String, Value>, item: &Value) -> Option<&'a Value> {
    if !item.is_object() {
        let key = format!("v:{}", serde_json::to_string(item).ok()?);
        return node.get(&key);
    }
    let fields = item.as_object()?;
    let mut found = None;
    for (k, child) in node {
        let Some(json) = k.strip_prefix("k:") else { continue };
        let Ok(Value::Object(keys)) = serde_json::from_str::<Value>(json) else {
            continue;
        };
        let matches = keys
            .iter()
            .all(|(name, want)| fields.get(name).is_none_or(|have| same_scalar(have, want)));
        let specific = keys.keys().any(|name| fields.contains_key(name));
        if matches && specific {
            if found.is_some() {
                return None; // ambiguous
            }
            found = Some(child);
        }
    }
    found
}

/// JSON equality, numbers by value (`80` and `80.0`).
fn same_scalar(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
                    "name": "c", "image": "nginx", "args": ["a", "b"],
                    "ports": [{"containerPort": 80}], "env": [{"name": "X", "value": "1"}]
                }]}}
            }
        })
    }

    /// What kube-apiserver v1.34 recorded for `deployment()` plus the annotation (copied from a real
    /// server's `managedFields`, with `f:flotilla.dev/applied-hash` added the way it records it).
    fn recorded() -> Value {
        json!({
            "f:metadata": {"f:annotations": {"f:a": {}, "f:flotilla.dev/applied-hash": {}}, "f:labels": {"f:app": {}}},
            "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {
                "f:metadata": {"f:labels": {"f:app": {}}},
                "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {
                    ".": {}, "f:args": {},
                    "f:env": {"k:{\"name\":\"X\"}": {".": {}, "f:name": {}, "f:value": {}}},
                    "f:image": {}, "f:name": {},
                    "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}
                }}}
            }}
        })
    }

    fn meta(obj: &Value, fields: Value) -> ObjectMeta {
        let mut meta: ObjectMeta = serde_json::from_value(obj["metadata"].clone()).unwrap();
        meta.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some("flotilla".into()),
            operation: Some("Apply".into()),
            fields_type: Some("FieldsV1".into()),
            fields_v1: Some(FieldsV1(fields)),
            ..ManagedFieldsEntry::default()
        }]);
        meta
    }

    /// Removes a path from a field set the way the API server does: a parent left without children
    /// (or with only its `.` entry) goes too, since it was only there for them.
    fn remove(set: &mut Value, path: &[&str]) {
        let m = set.as_object_mut().unwrap();
        if path.len() == 1 {
            m.remove(path[0]);
            return;
        }
        let child = m.get_mut(path[0]).unwrap();
        remove(child, &path[1..]);
        if child.as_object().unwrap().keys().all(|k| k == ".") {
            m.remove(path[0]);
        }
    }

    #[test]
    fn the_recorded_set_covers_the_applied_body() {
        let mut obj = deployment();
        annotate(&mut obj);
        assert!(unchanged(&meta(&obj, recorded()), &obj));
    }

    #[test]
    fn the_hash_ignores_its_own_annotation() {
        let mut a = deployment();
        annotate(&mut a);
        let mut b = a.clone();
        annotate(&mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn a_changed_desired_body_is_not_unchanged() {
        let mut live = deployment();
        annotate(&mut live);
        let m = meta(&live, recorded());
        let mut want = deployment();
        want["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        annotate(&mut want);
        assert!(!unchanged(&m, &want));
        // A field removed from the desired body too (the set still covers it, the hash tells).
        let mut want = deployment();
        want["metadata"]["annotations"].as_object_mut().unwrap().remove("a");
        annotate(&mut want);
        assert!(!unchanged(&m, &want));
    }

    #[test]
    fn a_field_taken_or_removed_by_someone_else_is_not_unchanged() {
        let mut obj = deployment();
        annotate(&mut obj);
        for path in [
            &["f:spec", "f:replicas"][..],
            &["f:metadata", "f:labels", "f:app"],
            &["f:metadata", "f:annotations", "f:flotilla.dev/applied-hash"],
            &[
                "f:spec",
                "f:template",
                "f:spec",
                "f:containers",
                "k:{\"name\":\"c\"}",
                "f:image",
            ],
            &[
                "f:spec",
                "f:template",
                "f:spec",
                "f:containers",
                "k:{\"name\":\"c\"}",
                "f:env",
                "k:{\"name\":\"X\"}",
            ],
            &["f:spec", "f:selector"],
        ] {
            let mut set = recorded();
            remove(&mut set, path);
            assert!(!unchanged(&meta(&obj, set), &obj), "{path:?}");
        }
        // No flotilla entry, or no annotation on the live object.
        let mut m = meta(&obj, recorded());
        m.managed_fields = None;
        assert!(!unchanged(&m, &obj));
        let mut m = meta(&obj, recorded());
        m.annotations = None;
        assert!(!unchanged(&m, &obj));
    }

    #[test]
    fn an_empty_list_without_a_field_is_not_provable() {
        // Granular and empty (nothing recorded) or atomic and lost to someone else: the same trace.
        let set = json!({"f:spec": {"f:size": {}}});
        let obj = json!({"kind": "X", "spec": {"size": 1, "tags": []}});
        assert!(!covers_object(&set, &obj));
        let atomic = json!({"f:spec": {"f:size": {}, "f:tags": {}}});
        assert!(covers_object(&atomic, &obj));
    }

    #[test]
    fn list_items_are_matched_by_their_keys_and_values() {
        let set = json!({"f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}},
                                    "f:finalizers": {"v:\"a\"": {}}}});
        let ok = json!({"kind": "X", "spec": {"ports": [{"port": 80}], "finalizers": ["a"]}});
        assert!(covers_object(&set, &ok));
        let other_port = json!({"kind": "X", "spec": {"ports": [{"port": 81}]}});
        assert!(!covers_object(&set, &other_port));
        let udp = json!({"kind": "X", "spec": {"ports": [{"port": 80, "protocol": "UDP"}]}});
        assert!(!covers_object(&set, &udp));
        let other_value = json!({"kind": "X", "spec": {"finalizers": ["b"]}});
        assert!(!covers_object(&set, &other_value));
        // A scalar where the set has children is a shape the check does not know: not covered.
        let odd = json!({"kind": "X", "spec": {"ports": 80}});
        assert!(!covers_object(&set, &odd));
    }
}
