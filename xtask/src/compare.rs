//! "Same output": per cluster, the multiset of (kind, namespace, name) and each object's canonical JSON
//! (keys sorted at every level, compact), compared between two renderings.

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// (kind, namespace, name)
pub type ObjectKey = (String, String, String);
/// cluster -> object key -> canonical JSON of every object with that key (a multiset)
pub type ObjectSets = BTreeMap<String, BTreeMap<ObjectKey, Vec<String>>>;

/// Writes `v` as compact JSON with object keys sorted byte-wise at every level.
pub fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                if let Some(child) = map.get(*k) {
                    canonical(child, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn key_of(v: &Value) -> ObjectKey {
    let s = |x: &Value| x.as_str().unwrap_or("").to_string();
    (s(&v["kind"]), s(&v["metadata"]["namespace"]), s(&v["metadata"]["name"]))
}

/// Adds one cluster's objects to `sets`.
pub fn add_objects(sets: &mut ObjectSets, cluster: &str, objects: impl IntoIterator<Item = Value>) {
    let entry = sets.entry(cluster.to_string()).or_default();
    for object in objects {
        let mut text = String::new();
        canonical(&object, &mut text);
        entry.entry(key_of(&object)).or_default().push(text);
    }
    for texts in entry.values_mut() {
        texts.sort_unstable();
    }
}

#[derive(Deserialize)]
struct RenderOutput {
    clusters: BTreeMap<String, Vec<Value>>,
    #[serde(default)]
    diagnostics: Vec<Value>,
}

/// Diagnostics of a `flotilla render --format json`, counted by severity.
#[derive(Default, Debug)]
pub struct DiagnosticCounts {
    pub errors: usize,
    pub warnings: usize,
    pub infos: usize,
    /// The first few error messages, for the report.
    pub first_errors: Vec<String>,
}

/// Reads `flotilla render --format json` output.
pub fn read_flotilla(path: &Path) -> Result<(ObjectSets, DiagnosticCounts)> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let out: RenderOutput =
        serde_json::from_slice(&text).with_context(|| format!("parsing {} as flotilla render JSON", path.display()))?;
    let mut counts = DiagnosticCounts::default();
    for d in &out.diagnostics {
        match d["severity"].as_str() {
            Some("error") => {
                counts.errors += 1;
                if counts.first_errors.len() < 5 {
                    counts.first_errors.push(d.to_string());
                }
            }
            Some("warning") => counts.warnings += 1,
            _ => counts.infos += 1,
        }
    }
    let mut sets = ObjectSets::new();
    for (cluster, objects) in out.clusters {
        add_objects(&mut sets, &cluster, objects);
    }
    Ok((sets, counts))
}

/// Reads one `kustomize build` output (multi-document YAML) as `cluster`'s objects.
pub fn read_kustomize(sets: &mut ObjectSets, cluster: &str, path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut objects = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).with_context(|| format!("parsing {}", path.display()))?;
        if !v.is_null() {
            objects.push(v);
        }
    }
    add_objects(sets, cluster, objects);
    Ok(())
}

/// The outcome of comparing two renderings.
#[derive(Default)]
pub struct Comparison {
    pub clusters: usize,
    pub objects: usize,
    pub mismatches: usize,
    /// The first few mismatches, human-readable.
    pub examples: Vec<String>,
}

/// The first JSON pointer at which two values differ.
fn first_difference(a: &Value, b: &Value, path: String) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort_unstable();
            keys.dedup();
            for k in keys {
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) if va == vb => {}
                    (Some(va), Some(vb)) => return first_difference(va, vb, format!("{path}/{k}")),
                    (va, vb) => {
                        return format!(
                            "{path}/{k}: {} vs {}",
                            va.map_or("absent".into(), Value::to_string),
                            vb.map_or("absent".into(), Value::to_string)
                        )
                    }
                }
            }
            format!("{path}: equal")
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                if va != vb {
                    return first_difference(va, vb, format!("{path}/{i}"));
                }
            }
            format!("{path}: equal")
        }
        _ => format!("{path}: {a} vs {b}"),
    }
}

/// Compares two renderings cluster by cluster.
pub fn compare(a_name: &str, a: &ObjectSets, b_name: &str, b: &ObjectSets) -> Comparison {
    let mut c = Comparison::default();
    let note = |c: &mut Comparison, msg: String| {
        c.mismatches += 1;
        if c.examples.len() < 10 {
            c.examples.push(msg);
        }
    };
    let empty = BTreeMap::new();
    let mut clusters: Vec<&String> = a.keys().chain(b.keys()).collect();
    clusters.sort_unstable();
    clusters.dedup();
    for cluster in clusters {
        c.clusters += 1;
        let (xa, xb) = match (a.get(cluster), b.get(cluster)) {
            (Some(xa), Some(xb)) => (xa, xb),
            (xa, xb) => {
                note(
                    &mut c,
                    format!(
                        "cluster {cluster}: present only in {}",
                        if xa.is_some() { a_name } else { b_name }
                    ),
                );
                (xa.unwrap_or(&empty), xb.unwrap_or(&empty))
            }
        };
        let mut keys: Vec<&ObjectKey> = xa.keys().chain(xb.keys()).collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            let (kind, ns, name) = key;
            let id = format!("{cluster}: {kind} {ns}/{name}");
            let va = xa.get(key).map_or(&[][..], Vec::as_slice);
            let vb = xb.get(key).map_or(&[][..], Vec::as_slice);
            c.objects += va.len().max(vb.len());
            if va == vb {
                continue;
            }
            if va.len() != vb.len() {
                note(
                    &mut c,
                    format!("{id}: {} in {a_name}, {} in {b_name}", va.len(), vb.len()),
                );
                continue;
            }
            for (ta, tb) in va.iter().zip(vb) {
                if ta != tb {
                    let pa: Value = serde_json::from_str(ta).unwrap_or(Value::Null);
                    let pb: Value = serde_json::from_str(tb).unwrap_or(Value::Null);
                    note(
                        &mut c,
                        format!(
                            "{id}: differs at {} ({a_name} vs {b_name})",
                            first_difference(&pa, &pb, String::new())
                        ),
                    );
                }
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_sorts_keys() {
        let mut s = String::new();
        canonical(&json!({"b": 1, "a": {"d": [1, "x"], "c": null}}), &mut s);
        assert_eq!(s, r#"{"a":{"c":null,"d":[1,"x"]},"b":1}"#);
    }

    #[test]
    fn compare_finds_difference() {
        let mut a = ObjectSets::new();
        let mut b = ObjectSets::new();
        let o = json!({"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "n"}, "data": {"k": "1"}});
        let mut o2 = o.clone();
        o2["data"]["k"] = json!("2");
        add_objects(&mut a, "c1", [o.clone()]);
        add_objects(&mut b, "c1", [o2]);
        let c = compare("a", &a, "b", &b);
        assert_eq!(c.mismatches, 1);
        assert!(c.examples[0].contains("/data/k"), "{}", c.examples[0]);
        let same = compare("a", &a, "a", &a);
        assert_eq!(same.mismatches, 0);
        assert_eq!(same.objects, 1);
    }
}
