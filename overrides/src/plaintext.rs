//! `plaintext`: all entries of a rule as one strict RFC 6902 patch, applied atomically.

use crate::jsonpatch::{self, pointer_buf, PatchError};
use crate::model::{quoted, short, OverrideError, OverriderKind, PlaintextOverrider, Report};
use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::Value;

const KIND: OverriderKind = OverriderKind::Plaintext;

fn written(p: &PlaintextOverrider) -> String {
    format!("{} {}", p.operator, p.path)
}

fn build_op(p: &PlaintextOverrider) -> Result<PatchOperation, String> {
    let path = pointer_buf(&p.path).map_err(|e| e.to_string())?;
    let value = || p.value.clone().unwrap_or(Value::Null);
    match p.operator.as_str() {
        "add" => Ok(PatchOperation::Add(AddOperation { path, value: value() })),
        "replace" => Ok(PatchOperation::Replace(ReplaceOperation { path, value: value() })),
        "remove" => Ok(PatchOperation::Remove(RemoveOperation { path })),
        other => Err(format!(
            "unknown operator {} (expected add, remove or replace)",
            quoted(other)
        )),
    }
}

/// Operators are Karmada's three: `add`, `remove`, `replace` (anything else is an error). `add`/`replace`
/// without a `value` write JSON `null` (Karmada does the same; its API does not validate plaintext values);
/// a `value` on `remove` is ignored. Strictness is [`crate::jsonpatch`]'s: `add` under a missing parent,
/// `remove`/`replace` of a missing member, malformed or out-of-range array indices are errors.
///
/// **Differs from Karmada:** Karmada's library accepts negative array indices and indices with leading
/// zeros or a `+` sign (Go's `strconv.Atoi`); flotilla follows RFC 6901 and rejects them.
pub(crate) fn apply(obj: &mut Value, list: &[PlaintextOverrider], report: &mut Report) -> Result<(), OverrideError> {
    if list.is_empty() {
        return Ok(());
    }
    let mut patch = Vec::with_capacity(list.len());
    for (index, p) in list.iter().enumerate() {
        patch.push(build_op(p).map_err(|m| OverrideError::new(KIND, index, written(p), m))?);
    }
    let before = jsonpatch::apply_ops_in_place(obj, &patch).map_err(|e| match e {
        PatchError::Operation { index, kind } => {
            let operation = list.get(index).map(written).unwrap_or_default();
            OverrideError::new(KIND, index, operation, kind)
        }
        other => OverrideError::new(KIND, 0, "", other),
    })?;
    for ((index, p), old) in list.iter().enumerate().zip(before) {
        let new = short(p.value.as_ref().unwrap_or(&Value::Null));
        let description = match (p.operator.as_str(), old) {
            ("remove", Some(old)) => format!("remove {} (was {})", p.path, short(&old)),
            (op, Some(old)) => format!("{op} {} {} -> {new}", p.path, short(&old)),
            (op, None) => format!("{op} {} {new}", p.path),
        };
        report.applied(KIND, index, description);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(operator: &str, path: &str, value: Option<Value>) -> PlaintextOverrider {
        PlaintextOverrider {
            path: path.into(),
            operator: operator.into(),
            value,
        }
    }

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "nginx", "labels": {"app": "nginx"}},
               "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "nginx"}]}}}})
    }

    fn run(obj: &mut Value, entries: &[PlaintextOverrider]) -> Result<Report, OverrideError> {
        let mut report = Report::default();
        apply(obj, entries, &mut report).map(|()| report)
    }

    #[test]
    fn applies_in_order_and_describes() {
        let mut obj = deployment();
        let report = run(
            &mut obj,
            &[
                entry("replace", "/spec/replicas", Some(json!(3))),
                entry("add", "/metadata/labels/tier", Some(json!("web"))),
                entry("add", "/metadata/annotations", Some(json!({}))),
                entry("add", "/metadata/annotations/a~1b", Some(json!("x"))),
                entry("remove", "/metadata/labels/app", Some(json!("ignored"))),
                entry("add", "/spec/template/spec/containers/-", Some(json!({"name": "side"}))),
            ],
        )
        .unwrap();
        assert_eq!(obj["spec"]["replicas"], 3);
        assert_eq!(obj["metadata"]["labels"], json!({"tier": "web"}));
        assert_eq!(obj["metadata"]["annotations"], json!({"a/b": "x"}));
        assert_eq!(obj["spec"]["template"]["spec"]["containers"][1]["name"], "side");
        let ops: Vec<_> = report.applied.iter().map(|a| a.operation.as_str()).collect();
        assert_eq!(
            ops,
            [
                "replace /spec/replicas 1 -> 3",
                "add /metadata/labels/tier \"web\"",
                "add /metadata/annotations {}",
                "add /metadata/annotations/a~1b \"x\"",
                "remove /metadata/labels/app (was \"nginx\")",
                "add /spec/template/spec/containers/- {\"name\":\"side\"}",
            ]
        );
    }

    #[test]
    fn missing_value_writes_null() {
        let mut obj = deployment();
        run(
            &mut obj,
            &[
                entry("replace", "/spec/replicas", None),
                entry("add", "/spec/paused", None),
            ],
        )
        .unwrap();
        assert_eq!(obj["spec"]["replicas"], Value::Null);
        assert_eq!(obj["spec"]["paused"], Value::Null);
    }

    #[test]
    fn names_the_failing_entry() {
        // Not atomic on purpose (the caller discards the object on error): only the message matters.
        let mut obj = deployment();
        let e = run(
            &mut obj,
            &[
                entry("replace", "/spec/replicas", Some(json!(3))),
                entry("add", "/metadata/annotations/x", Some(json!("y"))),
            ],
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "plaintext[1] add /metadata/annotations/x: \
             parent /metadata/annotations of /metadata/annotations/x does not exist"
        );
    }

    #[test]
    fn strict_errors() {
        let cases = [
            entry("remove", "/metadata/labels/none", None),
            entry("replace", "/spec/none", Some(json!(1))),
            entry("replace", "/spec/template/spec/containers/01/name", Some(json!("x"))),
            entry("replace", "/spec/template/spec/containers/-1/name", Some(json!("x"))),
            entry("add", "/spec/template/spec/containers/2", Some(json!({}))),
            entry("remove", "/spec/template/spec/containers/-", None),
            entry("add", "spec/replicas", Some(json!(1))),
            entry("test", "/spec/replicas", Some(json!(1))),
            entry("Add", "/spec/replicas", Some(json!(1))),
            entry("move", "/spec/replicas", None),
        ];
        for case in cases {
            let mut obj = deployment();
            assert!(run(&mut obj, std::slice::from_ref(&case)).is_err(), "{case:?}");
            assert_eq!(obj, deployment());
        }
        let mut obj = deployment();
        let e = run(&mut obj, &[entry("copy", "/a", None)]).unwrap_err();
        assert_eq!(e.message, "unknown operator \"copy\" (expected add, remove or replace)");
        let e = run(&mut obj, &[entry("add", "a", None)]).unwrap_err();
        assert_eq!(
            e.message,
            "\"a\" is not a JSON pointer: it must be empty or start with \"/\""
        );
    }

    #[test]
    fn empty_list_is_a_no_op() {
        let mut obj = deployment();
        assert_eq!(run(&mut obj, &[]).unwrap(), Report::default());
        assert_eq!(obj, deployment());
    }
}
