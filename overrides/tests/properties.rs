//! Property tests: no input panics, failed patches change nothing, add-then-remove round-trips (key order
//! included), image references round-trip, and field documents survive being rewritten.
//!
//! The case count follows `PROPTEST_CASES` (default 256), e.g. `PROPTEST_CASES=20000 cargo test -p overrides
//! --test properties --release`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use overrides::image::ImageRef;
use overrides::{apply_overriders, jsonpatch, Overriders};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

/// Keys and tokens chosen to hit the edge cases: escapes, numbers, the end marker, the empty key.
const TOKENS: &[&str] = &[
    "a", "b", "c", "", "0", "1", "2", "01", "00", "-", "-1", "+1", "1e0", "~0", "~1", "~", "~2", "x/y", "m~n",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(TOKENS).prop_map(String::from),
        1 => "[a-z/~]{0,3}",
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..1000).prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(|f| json!(f)),
        "[ -~]{0,8}".prop_map(Value::String),
        "\\PC{0,6}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kvs| Value::Object(kvs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::vec(("[a-z]{1,6}", json_value()), 0..6)
        .prop_map(|kvs| Value::Object(kvs.into_iter().collect::<Map<_, _>>()))
}

fn pointer() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::collection::vec(key(), 0..4).prop_map(|ts| ts.iter().map(|t| format!("/{t}")).collect()),
        1 => "[a-z/~0-9-]{0,6}",
    ]
}

fn operation() -> impl Strategy<Value = Value> {
    let op = prop::sample::select(&["add", "remove", "replace", "move", "copy", "test", "spam"][..]);
    (
        op,
        pointer(),
        prop::option::of(pointer()),
        prop::option::of(json_value()),
        any::<bool>(),
    )
        .prop_map(|(op, path, from, value, drop_path)| {
            let mut m = Map::new();
            m.insert("op".into(), json!(op));
            if !drop_path {
                m.insert("path".into(), json!(path));
            }
            if let Some(f) = from {
                m.insert("from".into(), json!(f));
            }
            if let Some(v) = value {
                m.insert("value".into(), v);
            }
            Value::Object(m)
        })
}

/// Pointers to every object inside `v`, so a test can add a key somewhere real.
fn object_pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            out.push(at.clone());
            for (k, child) in m {
                object_pointers(child, format!("{at}/{}", overrides::pointer::escape(k)), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                object_pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// A valid docker reference and what it displays as (a digest after a tag is dropped).
fn image_reference() -> impl Strategy<Value = (String, String)> {
    let component = "[a-z0-9]{1,4}(([._]|__|-{1,2})[a-z0-9]{1,4}){0,2}";
    let registry = prop_oneof![
        Just(String::new()),
        Just(String::from("localhost")),
        "[a-z0-9]{1,5}(\\.[a-z0-9]{1,5}){1,2}",
        "[a-zA-Z0-9]{1,5}(\\.[a-zA-Z0-9]{1,4}){0,2}:[0-9]{1,5}",
        "\\[[a-f0-9:]{2,8}\\]:[0-9]{2,4}",
    ];
    let path = prop::collection::vec(component, 1..4).prop_map(|c| c.join("/"));
    let tag = prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}");
    let digest = prop::option::of(prop_oneof!["sha256:[a-f0-9]{64}", "sha512:[a-f0-9]{128}",]);
    (registry, path, tag, digest).prop_map(|(registry, path, tag, digest)| {
        let name = if registry.is_empty() {
            path
        } else {
            format!("{registry}/{path}")
        };
        let tag_part = tag.as_ref().map(|t| format!(":{t}")).unwrap_or_default();
        let digest_part = digest.as_ref().map(|d| format!("@{d}")).unwrap_or_default();
        let shown = if tag.is_some() {
            format!("{name}{tag_part}")
        } else {
            format!("{name}{digest_part}")
        };
        (format!("{name}{tag_part}{digest_part}"), shown)
    })
}

fn workload() -> impl Strategy<Value = Value> {
    let kind = prop::sample::select(&["Deployment", "Pod", "Job", "CronJob", "ConfigMap", "StatefulSet"][..]);
    let image = prop_oneof![
        image_reference().prop_map(|(s, _)| Value::String(s)),
        "[ -~]{0,12}".prop_map(Value::String),
        leaf(),
    ];
    let container = (
        prop::sample::select(&["a", "b", "c"][..]),
        image,
        prop::option::of(json_value()),
    )
        .prop_map(|(name, image, args)| {
            let mut c = json!({"name": name, "image": image});
            if let Some(a) = args {
                c["args"] = a;
            }
            c
        });
    (
        kind,
        prop::collection::vec(container, 0..3),
        json_object(),
        prop::option::of(json_object()),
    )
        .prop_map(|(kind, containers, data, labels)| {
            let spec = json!({"containers": containers.clone(), "template": {"spec": {"containers": containers}}});
            let mut obj = json!({"kind": kind, "metadata": {"name": "x"}, "spec": spec, "data": {
                "y": "a: 1\nb: [1, 2]\n", "j": "{\"a\":1}", "d": data.to_string()
            }});
            if let Some(l) = labels {
                obj["metadata"]["labels"] = l;
            }
            obj
        })
}

fn overriders() -> impl Strategy<Value = Value> {
    let operator = || prop::sample::select(&["add", "remove", "replace", "bogus"][..]);
    let image = (
        prop::sample::select(&["Registry", "Repository", "Tag", "Other"][..]),
        operator(),
        prop::option::of("[a-z0-9.:@/_-]{0,12}"),
        prop::option::of(pointer()),
    )
        .prop_map(|(c, o, v, p)| {
            let mut e = json!({"component": c, "operator": o});
            if let Some(v) = v {
                e["value"] = json!(v);
            }
            if let Some(p) = p {
                e["predicate"] = json!({"path": p});
            }
            e
        });
    let cmd = || {
        (
            prop::sample::select(&["a", "b", "z"][..]),
            operator(),
            prop::collection::vec("[a-z-]{0,4}", 0..3),
        )
            .prop_map(|(n, o, v)| json!({"containerName": n, "operator": o, "value": v}))
    };
    let meta = || {
        (operator(), prop::collection::vec((key(), leaf()), 0..3))
            .prop_map(|(o, kvs)| json!({"operator": o, "value": Value::Object(kvs.into_iter().collect::<Map<_, _>>())}))
    };
    let field_op = (pointer(), operator(), prop::option::of(json_value()))
        .prop_map(|(p, o, v)| json!({"subPath": p, "operator": o, "value": v}));
    let field = (
        prop::sample::select(&["/data/y", "/data/j", "/data/d", "/data/none", "/metadata"][..]),
        prop::collection::vec(field_op, 0..3),
        any::<bool>(),
    )
        .prop_map(|(p, ops, yaml)| {
            let mut e = json!({"fieldPath": p});
            e[if yaml { "yaml" } else { "json" }] = Value::Array(ops);
            e
        });
    let plain = (pointer(), operator(), prop::option::of(json_value()))
        .prop_map(|(p, o, v)| json!({"path": p, "operator": o, "value": v}));
    (
        prop::collection::vec(image, 0..3),
        prop::collection::vec(cmd(), 0..2),
        prop::collection::vec(cmd(), 0..2),
        prop::collection::vec(meta(), 0..2),
        prop::collection::vec(meta(), 0..2),
        prop::collection::vec(field, 0..2),
        prop::collection::vec(plain, 0..4),
    )
        .prop_map(|(i, c, a, l, an, f, p)| {
            json!({"imageOverrider": i, "commandOverrider": c, "argsOverrider": a, "labelsOverrider": l,
                   "annotationsOverrider": an, "fieldOverrider": f, "plaintext": p})
        })
}

proptest! {
    /// Any document and any patch: no panic; a failed patch leaves the document exactly as it was.
    #[test]
    fn random_patches_never_panic_and_fail_atomically(
        doc in json_value(),
        patch in prop::collection::vec(operation(), 0..5),
    ) {
        let mut out = doc.clone();
        if jsonpatch::apply_patch(&mut out, &Value::Array(patch)).is_err() {
            prop_assert_eq!(serde_json::to_string(&out).unwrap(), serde_json::to_string(&doc).unwrap());
        }
    }

    /// Adding a new key anywhere and removing it again gives back the same document, key order included.
    #[test]
    fn add_then_remove_round_trips(
        doc in json_object(),
        pick in any::<prop::sample::Index>(),
        new_key in key(),
        value in json_value(),
    ) {
        let mut targets = Vec::new();
        object_pointers(&doc, String::new(), &mut targets);
        let at = pick.get(&targets).clone();
        let parent = overrides::pointer::get(&doc, &at).unwrap().as_object().unwrap();
        // A key the object does not have yet (no rejections, so large case counts stay cheap).
        let mut new_key = new_key;
        while parent.contains_key(&new_key) {
            new_key.push('+');
        }
        let path = format!("{at}/{}", overrides::pointer::escape(&new_key));
        let mut out = doc.clone();
        jsonpatch::apply_patch(&mut out, &json!([
            {"op": "add", "path": path, "value": value},
            {"op": "test", "path": path, "value": value},
            {"op": "remove", "path": path}
        ])).unwrap();
        prop_assert_eq!(serde_json::to_string(&out).unwrap(), serde_json::to_string(&doc).unwrap());
    }

    /// Valid references parse, display as written (minus a digest after a tag), and re-parse identically.
    #[test]
    fn image_parse_display_round_trips((text, shown) in image_reference()) {
        let img = ImageRef::parse(&text).unwrap();
        prop_assert_eq!(img.to_string(), shown.clone());
        prop_assert_eq!(ImageRef::parse(&shown).unwrap(), img);
    }

    /// Any string: parsing does not panic, and whatever parses displays as something that parses the same.
    #[test]
    fn image_parse_is_total_and_idempotent(text in prop_oneof!["[a-zA-Z0-9._:/@\\[\\]-]{0,40}", "\\PC{0,20}"]) {
        if let Ok(img) = ImageRef::parse(&text) {
            prop_assert_eq!(ImageRef::parse(&img.to_string()).unwrap(), img);
        }
    }

    /// Random objects and random rules (valid and invalid): never a panic.
    #[test]
    fn random_overriders_never_panic(mut obj in workload(), rule in overriders()) {
        let rule: Overriders = serde_json::from_value(rule).unwrap();
        let _ = apply_overriders(&mut obj, &rule);
    }

    /// A YAML or JSON document stored in a field survives the rewrite: re-reading it gives the patched value.
    #[test]
    fn field_documents_round_trip(doc in json_object(), yaml in any::<bool>()) {
        let text = if yaml { serde_yaml::to_string(&doc).unwrap() } else { serde_json::to_string(&doc).unwrap() };
        prop_assume!(!text.is_empty());
        let mut obj = json!({"kind": "ConfigMap", "data": {"f": text}});
        let ops = json!([{"subPath": "/zz-added", "operator": "add", "value": [1, "<&>"]}]);
        let mut entry = json!({"fieldPath": "/data/f"});
        entry[if yaml { "yaml" } else { "json" }] = ops;
        let rule: Overriders = serde_json::from_value(json!({"fieldOverrider": [entry]})).unwrap();
        apply_overriders(&mut obj, &rule).unwrap();
        let written = obj["data"]["f"].as_str().unwrap();
        let back: Value = if yaml {
            serde_yaml::from_str(written).unwrap()
        } else {
            serde_json::from_str(written).unwrap()
        };
        let mut expected = doc.clone();
        expected["zz-added"] = json!([1, "<&>"]);
        prop_assert!(jsonpatch::json_eq(&back, &expected), "{} became {}", doc, back);
        if yaml {
            prop_assert!(written.ends_with('\n'));
        } else {
            prop_assert!(!written.contains('<') && !written.contains('&'));
        }
    }
}
