//! `labelsOverrider` and `annotationsOverrider`: edit the object's own `metadata.labels`/`metadata.annotations`.

use crate::model::{compact, quoted, type_name, LabelAnnotationOverrider, OverrideError, OverriderKind, Report};
use crate::pointer::escape;
use serde_json::{Map, Value};

/// Which metadata map an overrider list edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Labels,
    Annotations,
}

impl Target {
    fn key(self) -> &'static str {
        match self {
            Target::Labels => "labels",
            Target::Annotations => "annotations",
        }
    }

    fn kind(self) -> OverriderKind {
        match self {
            Target::Labels => OverriderKind::Labels,
            Target::Annotations => OverriderKind::Annotations,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Add,
    Replace,
    Remove,
}

/// The map to edit: created when `create` (for `add`), `None` when absent otherwise.
fn map_mut<'a>(obj: &'a mut Value, key: &str, create: bool) -> Result<Option<&'a mut Map<String, Value>>, String> {
    let found = type_name(obj);
    let Value::Object(root) = obj else {
        return Err(format!("the object is {found}, expected an object"));
    };
    if create && !root.contains_key("metadata") {
        root.insert(String::from("metadata"), Value::Object(Map::new()));
    }
    let metadata = match root.get_mut("metadata") {
        None => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(other) => return Err(format!("/metadata is {}, expected an object", type_name(other))),
    };
    if create && matches!(metadata.get(key), None | Some(Value::Null)) {
        metadata.insert(key.to_owned(), Value::Object(Map::new()));
    }
    match metadata.get_mut(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(format!("/metadata/{key} is {}, expected an object", type_name(other))),
    }
}

/// For each key of `value`, in the order written: `add` sets it (creating `metadata` and the map if
/// missing, overwriting an existing key); `replace` sets it only if the key exists; `remove` deletes it only
/// if it exists. Missing keys are skipped silently, as in Karmada. Values must be strings for every operator
/// (Karmada's API type is `map[string]string`); `remove` ignores their content. Removal keeps the order of
/// the remaining keys; an emptied map stays as `{}` (Karmada does the same).
pub(crate) fn apply(
    obj: &mut Value,
    list: &[LabelAnnotationOverrider],
    target: Target,
    report: &mut Report,
) -> Result<(), OverrideError> {
    for (index, ov) in list.iter().enumerate() {
        let operation = format!("{} {}", ov.operator, compact(&Value::Object(ov.value.clone())));
        let err = |message: String| OverrideError::new(target.kind(), index, &operation, message);
        let operator = match ov.operator.as_str() {
            "add" => Operator::Add,
            "replace" => Operator::Replace,
            "remove" => Operator::Remove,
            other => {
                return Err(err(format!(
                    "unknown operator {} (expected add, replace or remove)",
                    quoted(other)
                )))
            }
        };
        for (k, v) in &ov.value {
            if !v.is_string() {
                return Err(err(format!(
                    "value of {} is {}, expected a string",
                    quoted(k),
                    type_name(v)
                )));
            }
        }
        let Some(map) = map_mut(obj, target.key(), operator == Operator::Add).map_err(err)? else {
            continue;
        };
        for (k, v) in &ov.value {
            let at = format!("/metadata/{}/{}", target.key(), escape(k));
            let description = match (operator, map.get(k)) {
                (Operator::Add, None) => {
                    let d = format!("add {at} {}", compact(v));
                    map.insert(k.clone(), v.clone());
                    d
                }
                (Operator::Add | Operator::Replace, Some(old)) => {
                    let d = format!("{} {at} {} -> {}", ov.operator, compact(old), compact(v));
                    map.insert(k.clone(), v.clone());
                    d
                }
                (Operator::Remove, Some(old)) => {
                    let d = format!("remove {at} (was {})", compact(old));
                    map.shift_remove(k);
                    d
                }
                (Operator::Replace | Operator::Remove, None) => continue,
            };
            report.applied(target.kind(), index, description);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(operator: &str, value: Value) -> LabelAnnotationOverrider {
        LabelAnnotationOverrider {
            operator: operator.into(),
            value: value.as_object().unwrap().clone(),
        }
    }

    fn run(obj: &mut Value, target: Target, entries: &[LabelAnnotationOverrider]) -> Report {
        let mut report = Report::default();
        apply(obj, entries, target, &mut report).unwrap();
        report
    }

    #[test]
    fn add_creates_map_and_overwrites() {
        let mut obj = json!({"metadata": {"name": "x"}, "spec": {"template": {"metadata": {"labels": {}}}}});
        let report = run(
            &mut obj,
            Target::Annotations,
            &[entry("add", json!({"dc": "dc-1", "a/b": "1"}))],
        );
        assert_eq!(obj["metadata"]["annotations"], json!({"dc": "dc-1", "a/b": "1"}));
        assert_eq!(report.applied[1].operation, r#"add /metadata/annotations/a~1b "1""#);
        // Pod-template metadata is not the object's own metadata.
        assert_eq!(obj["spec"]["template"]["metadata"]["labels"], json!({}));

        let report = run(&mut obj, Target::Annotations, &[entry("add", json!({"dc": "dc-2"}))]);
        assert_eq!(obj["metadata"]["annotations"]["dc"], "dc-2");
        assert_eq!(
            report.applied[0].operation,
            r#"add /metadata/annotations/dc "dc-1" -> "dc-2""#
        );

        let mut bare = json!({"kind": "ConfigMap"});
        run(&mut bare, Target::Labels, &[entry("add", json!({"a": "b"}))]);
        assert_eq!(bare["metadata"]["labels"], json!({"a": "b"}));
    }

    #[test]
    fn replace_only_existing_keys() {
        let mut obj = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let report = run(
            &mut obj,
            Target::Labels,
            &[entry("replace", json!({"a": "9", "c": "3"}))],
        );
        assert_eq!(obj["metadata"]["labels"], json!({"a": "9", "b": "2"}));
        assert_eq!(report.applied.len(), 1);
        assert_eq!(report.applied[0].operation, r#"replace /metadata/labels/a "1" -> "9""#);

        let mut none = json!({"metadata": {"name": "x"}});
        run(&mut none, Target::Labels, &[entry("replace", json!({"a": "9"}))]);
        assert_eq!(none, json!({"metadata": {"name": "x"}}));
    }

    #[test]
    fn remove_only_existing_keys_ignoring_value_and_keeping_order() {
        let mut obj = json!({"metadata": {"labels": {"a": "1", "b": "2", "c": "3"}}});
        let report = run(
            &mut obj,
            Target::Labels,
            &[entry("remove", json!({"a": "whatever", "zz": ""}))],
        );
        assert_eq!(compact(&obj["metadata"]["labels"]), r#"{"b":"2","c":"3"}"#);
        assert_eq!(report.applied[0].operation, r#"remove /metadata/labels/a (was "1")"#);
        run(&mut obj, Target::Labels, &[entry("remove", json!({"b": "", "c": ""}))]);
        assert_eq!(obj["metadata"]["labels"], json!({}));
    }

    #[test]
    fn errors() {
        let mut obj = json!({"metadata": {"labels": {"a": "1"}}});
        let e = apply(
            &mut obj,
            &[entry("add", json!({"n": 1}))],
            Target::Labels,
            &mut Report::default(),
        )
        .unwrap_err();
        assert_eq!(e.message, r#"value of "n" is a number, expected a string"#);
        assert_eq!(e.operation, r#"add {"n":1}"#);
        let e = apply(
            &mut obj,
            &[entry("set", json!({"n": "1"}))],
            Target::Labels,
            &mut Report::default(),
        )
        .unwrap_err();
        assert!(e.message.starts_with("unknown operator"));
        let mut bad = json!({"metadata": {"labels": ["a"]}});
        let e = apply(
            &mut bad,
            &[entry("remove", json!({"a": ""}))],
            Target::Labels,
            &mut Report::default(),
        )
        .unwrap_err();
        assert_eq!(e.message, "/metadata/labels is an array, expected an object");
    }
}
