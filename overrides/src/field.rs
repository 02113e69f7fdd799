//! `fieldOverrider`: patch a JSON or YAML document stored as a string inside the object (e.g. a ConfigMap key).

use crate::jsonpatch::{self, pointer_buf, PatchError};
use crate::model::{compact, short, type_name, FieldOp, FieldOverrider, OverrideError, OverriderKind, Report};
use crate::{pointer, yaml};
use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Yaml,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Yaml => "yaml",
        }
    }
}

/// Why a field document could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error(transparent)]
    Yaml(#[from] yaml::YamlError),
}

fn parse(format: Format, text: &str) -> Result<Value, FieldError> {
    match format {
        Format::Json => serde_json::from_str(text).map_err(|e| FieldError::Json(e.to_string())),
        Format::Yaml => Ok(yaml::from_str(text)?),
    }
}

fn write(format: Format, doc: &Value) -> String {
    match format {
        Format::Json => go_json(doc),
        Format::Yaml => yaml::to_string(doc),
    }
}

/// Compact JSON escaped like Go's `json.Marshal` (HTML-safe).
pub(crate) fn go_json(doc: &Value) -> String {
    let plain = compact(doc);
    let mut out = String::with_capacity(plain.len());
    for c in plain.chars() {
        // These characters can only occur inside JSON strings, where the escape means the same.
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// One sub-operation as a library operation, checked the way Karmada's webhook checks it.
fn build_op(op: &FieldOp) -> Result<PatchOperation, String> {
    let path = pointer_buf(&op.sub_path).map_err(|e| format!("subPath: {e}"))?;
    match (op.operator.as_str(), &op.value) {
        ("add", Some(value)) => Ok(PatchOperation::Add(AddOperation {
            path,
            value: value.clone(),
        })),
        ("replace", Some(value)) => Ok(PatchOperation::Replace(ReplaceOperation {
            path,
            value: value.clone(),
        })),
        ("remove", None) => Ok(PatchOperation::Remove(RemoveOperation { path })),
        ("add" | "replace", None) => Err(format!("{} needs a value", op.operator)),
        ("remove", Some(_)) => Err(String::from("remove must not have a value")),
        (other, _) => Err(format!(
            "unknown operator {} (expected add, remove or replace)",
            compact(&Value::String(other.to_owned()))
        )),
    }
}

/// The value at `fieldPath` (RFC 6901) must exist and be a string. Exactly one of `json`/`yaml` is set; the
/// string is parsed accordingly, the operations are applied as one strict, atomic JSON patch (same rules
/// as `plaintext`, paths = `subPath`), and the document is written back:
///
/// * YAML: see [`crate::yaml`] (sorted keys, 2-space indent, sequences not indented, trailing newline);
/// * JSON: compact, key order kept, new keys appended, `<` `>` `&` U+2028 U+2029 escaped as `\u003c` etc.
///   (Go's `json.Marshal`, which Karmada uses).
///
/// An empty string is left unchanged (with a warning, since the operations were not applied). As in
/// Karmada's validation, `add`/`replace` need a `value` and `remove` must not have one.
pub(crate) fn apply(obj: &mut Value, list: &[FieldOverrider], report: &mut Report) -> Result<(), OverrideError> {
    const KIND: OverriderKind = OverriderKind::Field;
    for (index, f) in list.iter().enumerate() {
        let (format, ops) = match (&f.json, &f.yaml) {
            (Some(ops), None) => (Format::Json, ops),
            (None, Some(ops)) => (Format::Yaml, ops),
            (json, _) => {
                let message = if json.is_some() {
                    "set exactly one of json and yaml, not both"
                } else {
                    "set one of json or yaml"
                };
                return Err(OverrideError::new(KIND, index, &f.field_path, message));
            }
        };
        let whole = format!("{} {}", f.field_path, format.name());
        let written = |op: &FieldOp| format!("{whole} {} {}", op.operator, op.sub_path);
        let mut patch = Vec::with_capacity(ops.len());
        for op in ops {
            patch.push(build_op(op).map_err(|m| OverrideError::new(KIND, index, written(op), m))?);
        }

        let slot = pointer::get_mut(obj, &f.field_path)
            .map_err(|e| OverrideError::new(KIND, index, &whole, format!("fieldPath: {e}")))?;
        let Value::String(text) = slot else {
            let message = format!("{} is {}, not a string", f.field_path, type_name(slot));
            return Err(OverrideError::new(KIND, index, &whole, message));
        };
        if text.is_empty() {
            let message = format!("{} is empty: operations not applied", f.field_path);
            report.warn(KIND, index, message);
            continue;
        }
        let mut doc = parse(format, text)
            .map_err(|e| OverrideError::new(KIND, index, &whole, format!("{}: {e}", f.field_path)))?;
        let before = jsonpatch::apply_ops(&mut doc, &patch).map_err(|e| match e {
            PatchError::Operation { index: i, kind } => {
                let operation = ops.get(i).map_or_else(|| whole.clone(), &written);
                OverrideError::new(KIND, index, operation, kind)
            }
            other => OverrideError::new(KIND, index, &whole, other),
        })?;
        *slot = Value::String(write(format, &doc));
        for (op, old) in ops.iter().zip(before) {
            let new = op.value.as_ref().map(short);
            let change = match (old.map(|v| short(&v)), new) {
                (Some(o), Some(n)) => format!("{o} -> {n}"),
                (Some(o), None) => format!("(was {o})"),
                (None, Some(n)) => n,
                (None, None) => String::new(),
            };
            report.applied(KIND, index, format!("{} {change}", written(op)).trim_end().to_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn op(operator: &str, sub_path: &str, value: Option<Value>) -> FieldOp {
        FieldOp {
            sub_path: sub_path.into(),
            operator: operator.into(),
            value,
        }
    }

    fn yaml_entry(ops: Vec<FieldOp>) -> FieldOverrider {
        FieldOverrider {
            field_path: "/data/app.yaml".into(),
            json: None,
            yaml: Some(ops),
        }
    }

    fn json_entry(ops: Vec<FieldOp>) -> FieldOverrider {
        FieldOverrider {
            field_path: "/data/app.json".into(),
            json: Some(ops),
            yaml: None,
        }
    }

    fn cm(key: &str, text: &str) -> Value {
        json!({"kind": "ConfigMap", "data": {key: text}})
    }

    fn run(obj: &mut Value, entries: &[FieldOverrider]) -> Result<Report, OverrideError> {
        let mut report = Report::default();
        apply(obj, entries, &mut report).map(|()| report)
    }

    #[test]
    fn yaml_patch_and_rewrite() {
        let mut obj = cm(
            "app.yaml",
            "# comment\nserver:\n  port: 80\n  hosts: [a, b]\ndb:\n  name: x\n",
        );
        let report = run(
            &mut obj,
            &[yaml_entry(vec![
                op("replace", "/server/port", Some(json!(8080))),
                op("add", "/server/hosts/-", Some(json!("c"))),
                op("remove", "/db/name", None),
                op("add", "/aaa", Some(json!({"z": 1, "k": [true]}))),
            ])],
        )
        .unwrap();
        assert_eq!(
            obj["data"]["app.yaml"],
            "aaa:\n  k:\n  - true\n  z: 1\ndb: {}\nserver:\n  hosts:\n  - a\n  - b\n  - c\n  port: 8080\n"
        );
        let ops: Vec<_> = report.applied.iter().map(|a| a.operation.as_str()).collect();
        assert_eq!(
            ops,
            [
                "/data/app.yaml yaml replace /server/port 80 -> 8080",
                "/data/app.yaml yaml add /server/hosts/- \"c\"",
                "/data/app.yaml yaml remove /db/name (was \"x\")",
                "/data/app.yaml yaml add /aaa {\"z\":1,\"k\":[true]}",
            ]
        );
    }

    #[test]
    fn json_patch_keeps_order_and_escapes_like_go() {
        let mut obj = cm("app.json", r#"{ "z": 1, "a": {"b": 2, "c": 3}, "h": "x" }"#);
        run(
            &mut obj,
            &[json_entry(vec![
                op("remove", "/a/b", None),
                op("add", "/new", Some(json!("<a> & b\u{2028}"))),
                op("replace", "/z", Some(json!(2))),
            ])],
        )
        .unwrap();
        assert_eq!(
            obj["data"]["app.json"],
            r#"{"z":2,"a":{"c":3},"h":"x","new":"\u003ca\u003e \u0026 b\u2028"}"#
        );
    }

    #[test]
    fn empty_string_unchanged_with_warning() {
        let mut obj = cm("app.yaml", "");
        let report = run(&mut obj, &[yaml_entry(vec![op("add", "/a", Some(json!(1)))])]).unwrap();
        assert_eq!(obj["data"]["app.yaml"], "");
        assert!(report.applied.is_empty());
        assert_eq!(report.warnings.len(), 1);
    }

    #[test]
    fn strict_patch_errors_leave_field_unchanged() {
        let text = "a:\n  b: 1\n";
        let mut obj = cm("app.yaml", text);
        let e = run(
            &mut obj,
            &[yaml_entry(vec![
                op("replace", "/a/b", Some(json!(2))),
                op("add", "/x/y", Some(json!(1))),
            ])],
        )
        .unwrap_err();
        assert_eq!(e.index, 0);
        assert_eq!(e.operation, "/data/app.yaml yaml add /x/y");
        assert_eq!(e.message, "parent /x of /x/y does not exist");
        assert_eq!(obj["data"]["app.yaml"], text);
    }

    #[test]
    fn entry_validation() {
        let mut obj = cm("app.yaml", "a: 1\n");
        let both = FieldOverrider {
            field_path: "/data/app.yaml".into(),
            json: Some(vec![]),
            yaml: Some(vec![]),
        };
        assert!(run(&mut obj, &[both]).unwrap_err().message.contains("not both"));
        let neither = FieldOverrider {
            field_path: "/data/app.yaml".into(),
            json: None,
            yaml: None,
        };
        assert!(run(&mut obj, &[neither]).is_err());
        for (o, v, msg) in [
            ("add", None, "add needs a value"),
            ("replace", None, "replace needs a value"),
            ("remove", Some(json!(1)), "remove must not have a value"),
            (
                "move",
                None,
                "unknown operator \"move\" (expected add, remove or replace)",
            ),
        ] {
            let e = run(&mut obj, &[yaml_entry(vec![op(o, "/a", v)])]).unwrap_err();
            assert_eq!(e.message, msg);
        }
        let e = run(&mut obj, &[yaml_entry(vec![op("remove", "a", None)])]).unwrap_err();
        assert!(e.message.starts_with("subPath: "), "{}", e.message);
    }

    #[test]
    fn field_must_exist_and_be_a_string() {
        let mut obj = json!({"data": {"n": 1}});
        let mut e = yaml_entry(vec![]);
        e.field_path = "/data/missing".into();
        assert_eq!(
            run(&mut obj, std::slice::from_ref(&e)).unwrap_err().message,
            "fieldPath: /data/missing does not exist"
        );
        e.field_path = "/data/n".into();
        assert_eq!(
            run(&mut obj, &[e]).unwrap_err().message,
            "/data/n is a number, not a string"
        );
    }

    #[test]
    fn unparsable_documents() {
        let mut obj = cm("app.json", "{not json");
        let e = run(&mut obj, &[json_entry(vec![])]).unwrap_err();
        assert!(e.message.starts_with("/data/app.json: invalid JSON"), "{}", e.message);
        let mut obj = cm("app.yaml", "a: [");
        let e = run(&mut obj, &[yaml_entry(vec![])]).unwrap_err();
        assert!(e.message.starts_with("/data/app.yaml: invalid YAML"), "{}", e.message);
    }

    #[test]
    fn no_ops_still_normalises() {
        let mut obj = cm("app.yaml", "b: 1\na:   2\n");
        run(&mut obj, &[yaml_entry(vec![])]).unwrap();
        assert_eq!(obj["data"]["app.yaml"], "a: 2\nb: 1\n");
    }
}
