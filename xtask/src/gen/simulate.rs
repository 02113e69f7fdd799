//! What flotilla must render for the generated model, computed directly from the model (the generator
//! knows what it generated), following SPEC §4 (placement, Webster division) and §5 (override order).
//!
//! This is deliberately independent of the `render` crate: it is the second opinion the benchmark
//! compares flotilla against (through the kustomize tree it produces).

use super::model::{Kind, Model, OverridePolicy, Plaintext, Rule, Target};
use serde_json::{json, Value};

/// Seats handed out one at a time to the largest `w/(2s+1)` (Webster/Sainte-Laguë); ties go to the
/// cluster holding fewer seats, then to the smaller name. `names` must be parallel to `weights`.
pub fn webster(total: u64, weights: &[u64], names: &[&str]) -> Vec<u64> {
    let mut seats = vec![0u64; weights.len()];
    for _ in 0..total {
        let mut best: Option<usize> = None;
        for i in 0..weights.len() {
            if weights[i] == 0 {
                continue;
            }
            best = Some(match best {
                None => i,
                Some(b) => {
                    // w_i/(2s_i+1) vs w_b/(2s_b+1), exactly
                    let lhs = u128::from(weights[i]) * u128::from(2 * seats[b] + 1);
                    let rhs = u128::from(weights[b]) * u128::from(2 * seats[i] + 1);
                    let better = lhs > rhs
                        || (lhs == rhs && (seats[i] < seats[b] || (seats[i] == seats[b] && names[i] < names[b])));
                    if better {
                        i
                    } else {
                        b
                    }
                }
            });
        }
        match best {
            Some(b) => seats[b] += 1,
            None => break,
        }
    }
    seats
}

/// The placement of one template: `(cluster index, replicas to write or None)`; clusters that receive
/// 0 replicas of a Divided workload are absent.
pub fn placement(model: &Model, t: usize) -> Vec<(usize, Option<u64>)> {
    let template = &model.templates[t];
    let group = &model.groups[template.group];
    match (&group.weights, template.kind.is_workload()) {
        (Some(weights), true) => {
            let total = template.object["spec"]["replicas"].as_u64().unwrap_or(0);
            let names: Vec<&str> = group
                .clusters
                .iter()
                .map(|&c| model.clusters[c].name.as_str())
                .collect();
            let seats = webster(total, weights, &names);
            group
                .clusters
                .iter()
                .zip(seats)
                .filter(|(_, s)| *s > 0)
                .map(|(&c, s)| (c, Some(s)))
                .collect()
        }
        _ => group.clusters.iter().map(|&c| (c, None)).collect(),
    }
}

fn rule_targets(model: &Model, rule: &Rule, cluster: usize) -> bool {
    match &rule.target {
        Target::Names(names) => names.contains(&cluster),
        Target::Region(region) => model.clusters[cluster].region == *region,
    }
}

/// Karmada's Registry replace on the images the generator writes (all carry an explicit registry
/// as first segment).
fn replace_registry(image: &str, registry: &str) -> String {
    match image.split_once('/') {
        Some((_, rest)) => format!("{registry}/{rest}"),
        None => format!("{registry}/{image}"),
    }
}

fn apply_rule(object: &mut Value, kind: Kind, rule: &Rule) {
    if let Some(registry) = &rule.registry {
        if kind.is_workload() {
            if let Some(containers) = object["spec"]["template"]["spec"]["containers"].as_array_mut() {
                for c in containers {
                    if let Some(image) = c["image"].as_str() {
                        c["image"] = Value::String(replace_registry(image, registry));
                    }
                }
            }
        }
    }
    if let Some((k, v)) = &rule.label {
        object["metadata"]["labels"][k] = json!(v);
    }
    match &rule.plaintext {
        Some(Plaintext::Replicas(n)) => object["spec"]["replicas"] = json!(n),
        Some(Plaintext::Annotation { key, value }) => object["metadata"]["annotations"][key] = json!(value),
        None => {}
    }
}

/// The OverridePolicies that apply to a template, in application order: the template's namespace,
/// all selectors label-scored (2), so ascending by name.
pub fn overrides_for(model: &Model, t: usize) -> Vec<&OverridePolicy> {
    let template = &model.templates[t];
    let mut ops: Vec<&OverridePolicy> = model
        .overrides
        .iter()
        .filter(|o| o.group == template.group && o.selects(template.kind))
        .collect();
    ops.sort_by(|a, b| a.name.cmp(&b.name));
    ops
}

/// The object flotilla must render for template `t` on `cluster`.
pub fn rendered(model: &Model, t: usize, cluster: usize, replicas: Option<u64>, ops: &[&OverridePolicy]) -> Value {
    let template = &model.templates[t];
    let mut object = template.object.clone();
    if let Some(r) = replicas {
        object["spec"]["replicas"] = json!(r);
    }
    for op in ops {
        for rule in &op.rules {
            if rule_targets(model, rule, cluster) {
                apply_rule(&mut object, template.kind, rule);
            }
        }
    }
    object
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A JSON Patch (RFC 6902) turning `from` into `to`: objects member-wise, equal-length arrays
/// element-wise, anything else replaced whole.
pub fn diff(from: &Value, to: &Value) -> Vec<Value> {
    let mut ops = Vec::new();
    diff_into(from, to, &mut String::new(), &mut ops);
    ops
}

fn diff_into(from: &Value, to: &Value, path: &mut String, ops: &mut Vec<Value>) {
    if from == to {
        return;
    }
    let len = path.len();
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                if !b.contains_key(k) {
                    path.push('/');
                    path.push_str(&escape(k));
                    ops.push(json!({"op": "remove", "path": path.as_str()}));
                    path.truncate(len);
                    let _ = va;
                }
            }
            for (k, vb) in b {
                path.push('/');
                path.push_str(&escape(k));
                match a.get(k) {
                    Some(va) => diff_into(va, vb, path, ops),
                    None => ops.push(json!({"op": "add", "path": path.as_str(), "value": vb})),
                }
                path.truncate(len);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                path.push('/');
                path.push_str(&i.to_string());
                diff_into(va, vb, path, ops);
                path.truncate(len);
            }
        }
        _ => ops.push(json!({"op": "replace", "path": path.as_str(), "value": to})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webster_three_two_one() {
        // 3:2:1 over 6 seats is exact; over 7 the remainder goes by w/(2s+1)
        assert_eq!(webster(6, &[3, 2, 1], &["a", "b", "c"]), vec![3, 2, 1]);
        assert_eq!(webster(7, &[3, 2, 1], &["a", "b", "c"]), vec![4, 2, 1]);
        // full ties: fewer seats, then smaller name
        assert_eq!(webster(1, &[1, 1], &["b", "a"]), vec![0, 1]);
        assert_eq!(webster(3, &[1, 1], &["a", "b"]), vec![2, 1]);
        // a small weight may receive nothing
        assert_eq!(webster(2, &[4, 1], &["a", "b"]), vec![2, 0]);
    }

    #[test]
    fn diff_produces_minimal_ops() {
        let a = json!({"metadata": {"labels": {"x": "1"}}, "spec": {"replicas": 3, "c": [{"image": "a/b"}]}});
        let b =
            json!({"metadata": {"labels": {"x": "1", "k/v": "2"}}, "spec": {"replicas": 2, "c": [{"image": "r/b"}]}});
        assert_eq!(
            diff(&a, &b),
            vec![
                json!({"op": "add", "path": "/metadata/labels/k~1v", "value": "2"}),
                json!({"op": "replace", "path": "/spec/replicas", "value": 2}),
                json!({"op": "replace", "path": "/spec/c/0/image", "value": "r/b"}),
            ]
        );
    }

    #[test]
    fn registry_replace_keeps_path_and_tag() {
        assert_eq!(
            replace_registry("docker.io/library/nginx:1.27.3", "registry.r1.example.io"),
            "registry.r1.example.io/library/nginx:1.27.3"
        );
    }
}
