//! Property tests of the loader and the whole render on hostile input: nothing panics, values
//! round-trip. Run longer with `PROPTEST_CASES=20000 cargo test --release -p render --test loader_properties`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use proptest::prelude::*;
use render::yaml::{load_json, load_yaml, locate, Limits};
use render::{RenderOptions, Snapshot};
use serde_json::{Map, Value};

/// Arbitrary JSON values with YAML-hostile strings (colons, dashes, quotes, `yes`, numbers as text...).
fn value() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
        "[a-z]{0,8}",
        Just("yes".to_string()),
        Just("no".to_string()),
        Just("null".to_string()),
        Just("~".to_string()),
        Just("1.0".to_string()),
        Just("0x1F".to_string()),
        Just("- item".to_string()),
        Just("key: value".to_string()),
        Just("#comment".to_string()),
        Just("'quoted'".to_string()),
        Just("\"dq\"".to_string()),
        Just("multi\nline\n".to_string()),
        Just("tab\there".to_string()),
        Just("ünïcødé ✓".to_string()),
        Just("&anchor".to_string()),
        Just("*alias".to_string()),
        Just("".to_string()),
        any::<String>(),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1.0e9f64..1.0e9).prop_map(Value::from),
        text.clone().prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<String, Value>>())),
        ]
    })
}

proptest! {
    // 512 cases by default; PROPTEST_CASES raises it for long runs.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(512),
        ..ProptestConfig::default()
    })]

    /// Any bytes: the loader answers with documents or an error, never a panic.
    #[test]
    fn arbitrary_text_never_panics(s in any::<String>()) {
        let _ = load_yaml(&s, Limits::default());
        let _ = load_json(&s, Limits::default());
        let _ = locate(&s, false, 0);
    }

    /// YAML-shaped noise: indentation, indicators, anchors, aliases, flow collections, tags.
    #[test]
    fn yaml_shaped_noise_never_panics(parts in prop::collection::vec(prop_oneof![
        Just("\n"), Just("  "), Just("- "), Just(": "), Just("? "), Just("{"), Just("}"), Just("["), Just("]"),
        Just(","), Just("&a "), Just("*a"), Just("!!str "), Just("!!int "), Just("<<: "), Just("|"), Just(">-"),
        Just("'"), Just("\""), Just("#"), Just("---\n"), Just("...\n"), Just("key"), Just("1"), Just("~"),
        Just("\t"), Just("%YAML 1.2\n"), Just("!tag "), Just("@"),
    ], 0..60)) {
        let s: String = parts.concat();
        let _ = load_yaml(&s, Limits::default());
        let _ = locate(&s, false, 0);
    }

    /// Values written as YAML by serde_yaml read back identical (strings stay strings, numbers numbers).
    ///
    /// Found by this test at 20,000 cases: libyaml's emitter (serde_yaml; go-yaml is the same family)
    /// treats U+2028, U+2029 and U+0085 as line breaks (YAML 1.1) and writes indentation after them inside
    /// quoted scalars; flotilla's loader follows YAML 1.2, where they are ordinary characters, so that
    /// indentation would become content. Documented in docs/reference.md; such strings are left out here.
    #[test]
    fn yaml_round_trip(v in value().prop_filter("YAML 1.1 line-break characters", |v| !has_11_breaks(v))) {
        let text = serde_yaml::to_string(&v).unwrap();
        let docs = load_yaml(&text, Limits::default()).unwrap_or_else(|e| panic!("{e}\n{text}"));
        if v.is_null() {
            prop_assert!(docs.is_empty());
        } else {
            prop_assert_eq!(docs.len(), 1, "{}", text);
            prop_assert_eq!(&docs[0].value, &v, "{}", text);
        }
    }

    /// Same for JSON text.
    #[test]
    fn json_round_trip(v in value()) {
        let text = serde_json::to_string_pretty(&v).unwrap();
        let docs = load_json(&text, Limits::default()).unwrap_or_else(|e| panic!("{e}\n{text}"));
        if !v.is_null() {
            prop_assert_eq!(&docs[0].value, &v);
        }
    }

    /// A valid repository with random byte-level damage renders without panicking, and when it
    /// still parses the output is deterministic.
    #[test]
    fn damaged_repository_never_panics(pos in 0usize..2000, byte in any::<u8>(), cut in any::<bool>()) {
        let mut policy = POLICY.as_bytes().to_vec();
        let p = pos % policy.len();
        if cut { policy.truncate(p); } else { policy[p] = byte; }
        let snap = Snapshot::from_texts([
            ("clusters.yaml", CLUSTERS.as_bytes().to_vec()),
            ("app.yaml", APP.as_bytes().to_vec()),
            ("policy.yaml", policy),
        ]);
        let a = render::render(&snap, &RenderOptions::default());
        let b = render::render(&snap, &RenderOptions::default());
        prop_assert_eq!(a.to_json(), b.to_json());
        for d in &a.diagnostics {
            prop_assert!(!d.file.is_empty());
        }
    }
}

fn has_11_breaks(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains(['\u{2028}', '\u{2029}', '\u{85}']),
        Value::Array(a) => a.iter().any(has_11_breaks),
        Value::Object(m) => m
            .iter()
            .any(|(k, v)| k.contains(['\u{2028}', '\u{2029}', '\u{85}']) || has_11_breaks(v)),
        _ => false,
    }
}

const CLUSTERS: &str = "apiVersion: flotilla.dev/v1alpha1
kind: Cluster
metadata: {name: a, labels: {region: eu}}
spec: {region: eu, zones: [z1]}
---
apiVersion: flotilla.dev/v1alpha1
kind: Cluster
metadata: {name: b, labels: {region: us}}
spec: {region: us, zones: [z2], taints: [{key: k, value: v, effect: NoSchedule}]}
";

const APP: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 7
  template:
    spec:
      containers:
      - {name: web, image: 'nginx:1.17', args: [--a]}
";

const POLICY: &str = "apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata: {name: web}
spec:
  resourceSelectors:
  - {apiVersion: apps/v1, kind: Deployment, labelSelector: {matchLabels: {app: web}}}
  placement:
    clusterTolerations: [{key: k, operator: Exists}]
    spreadConstraints:
    - {spreadByField: region, minGroups: 1, maxGroups: 2}
    - {spreadByField: cluster, minGroups: 1, maxGroups: 2}
    replicaScheduling:
      replicaSchedulingType: Divided
      weightPreference:
        staticWeightList:
        - {targetCluster: {clusterNames: [a]}, weight: 2}
        - {targetCluster: {clusterNames: [b]}, weight: 1}
---
apiVersion: policy.karmada.io/v1alpha1
kind: OverridePolicy
metadata: {name: web}
spec:
  overrideRules:
  - targetCluster: {labelSelector: {matchLabels: {region: eu}}}
    overriders:
      imageOverrider: [{component: Registry, operator: add, value: eu.io}]
      argsOverrider: [{containerName: web, operator: add, value: [--b]}]
      plaintext: [{path: /spec/replicas, operator: replace, value: 3}]
";
