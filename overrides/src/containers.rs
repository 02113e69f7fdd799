//! `commandOverrider` and `argsOverrider`: append to or remove from a named container's `command`/`args`.

use crate::model::{compact, quoted, type_name, CommandArgsOverrider, OverrideError, OverriderKind, Report};
use crate::workload;
use serde_json::Value;

/// Which container field an overrider list edits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Command,
    Args,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Command => "command",
            Field::Args => "args",
        }
    }

    fn kind(self) -> OverriderKind {
        match self {
            Field::Command => OverriderKind::Command,
            Field::Args => OverriderKind::Args,
        }
    }
}

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().cloned().map(Value::String).collect())
}

/// The current list at `at`, which must be absent, `null`, or an array of strings.
fn current(field: Option<&Value>, at: &str) -> Result<Option<Vec<String>>, String> {
    match field {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("{at} holds {}, expected only strings", type_name(other))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(other) => Err(format!("{at} is {}, expected a list of strings", type_name(other))),
    }
}

/// Same kinds as the image overrider ([`crate::workload`]); only `containers`, matched by exact `name`
/// (several containers with the name are all edited; none is a no-op). `add` appends `value` (duplicates
/// allowed); `remove` deletes every element equal to one of `value`, keeping the order of the rest. A missing
/// (or `null`) field becomes `value` (`add`) or `[]` (`remove`).
///
/// **Stricter than Karmada:** an operator other than `add`/`remove` is an error (Karmada silently does
/// nothing), and an existing field that is not a list of strings is an error (Karmada formats each element
/// with `%s`, or crashes on a non-list).
pub(crate) fn apply(
    obj: &mut Value,
    list: &[CommandArgsOverrider],
    field: Field,
    report: &mut Report,
) -> Result<(), OverrideError> {
    for (index, ov) in list.iter().enumerate() {
        let operation = format!(
            "{} {} container {}",
            ov.operator,
            compact(&strings(&ov.value)),
            quoted(&ov.container_name)
        );
        let err = |message: String| OverrideError::new(field.kind(), index, &operation, message);
        let add = match ov.operator.as_str() {
            "add" => true,
            "remove" => false,
            other => {
                return Err(err(format!(
                    "unknown operator {} (expected add or remove)",
                    quoted(other)
                )))
            }
        };
        let Some((path, containers)) = workload::containers_mut(obj).map_err(err)? else {
            continue;
        };
        for (n, container) in containers.iter_mut().enumerate() {
            let at = format!("{path}/{n}");
            let found = type_name(container);
            let Value::Object(c) = container else {
                return Err(err(format!("{at} is {found}, expected a container object")));
            };
            if c.get("name").and_then(Value::as_str) != Some(ov.container_name.as_str()) {
                continue;
            }
            let at = format!("{at}/{}", field.name());
            let old = current(c.get(field.name()), &at).map_err(err)?;
            let new: Vec<String> = match (&old, add) {
                (None, true) => ov.value.clone(),
                (None, false) => Vec::new(),
                (Some(items), true) => items.iter().chain(&ov.value).cloned().collect(),
                (Some(items), false) => items.iter().filter(|item| !ov.value.contains(item)).cloned().collect(),
            };
            let description = match &old {
                None => format!("add {at} {}", compact(&strings(&new))),
                Some(items) => format!(
                    "replace {at} {} -> {}",
                    compact(&strings(items)),
                    compact(&strings(&new))
                ),
            };
            c.insert(field.name().to_owned(), strings(&new));
            report.applied(field.kind(), index, description);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(name: &str, operator: &str, value: &[&str]) -> CommandArgsOverrider {
        CommandArgsOverrider {
            container_name: name.into(),
            operator: operator.into(),
            value: value.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn deployment(container: Value) -> Value {
        json!({"kind": "Deployment", "spec": {"template": {"spec": {"containers": [
            {"name": "sidecar", "image": "s", "command": ["keep"]},
            container
        ]}}}})
    }

    fn run(obj: &mut Value, field: Field, entries: &[CommandArgsOverrider]) -> Report {
        let mut report = Report::default();
        apply(obj, entries, field, &mut report).unwrap();
        report
    }

    fn container(obj: &Value) -> &Value {
        &obj["spec"]["template"]["spec"]["containers"][1]
    }

    #[test]
    fn add_appends_and_creates() {
        let mut obj = deployment(json!({"name": "nginx", "command": ["nginx", "-g"]}));
        let report = run(
            &mut obj,
            Field::Command,
            &[entry("nginx", "add", &["-g", "daemon off;"])],
        );
        assert_eq!(container(&obj)["command"], json!(["nginx", "-g", "-g", "daemon off;"]));
        assert_eq!(
            report.applied[0].operation,
            r#"replace /spec/template/spec/containers/1/command ["nginx","-g"] -> ["nginx","-g","-g","daemon off;"]"#
        );
        // The other container is untouched.
        assert_eq!(
            obj["spec"]["template"]["spec"]["containers"][0]["command"],
            json!(["keep"])
        );

        let mut obj = deployment(json!({"name": "nginx"}));
        let report = run(&mut obj, Field::Args, &[entry("nginx", "add", &["--v=2"])]);
        assert_eq!(container(&obj)["args"], json!(["--v=2"]));
        assert_eq!(
            report.applied[0].operation,
            r#"add /spec/template/spec/containers/1/args ["--v=2"]"#
        );
    }

    #[test]
    fn remove_deletes_every_equal_element() {
        let mut obj = deployment(json!({"name": "nginx", "args": ["a", "b", "a", "c", "b"]}));
        run(&mut obj, Field::Args, &[entry("nginx", "remove", &["a", "b", "zzz"])]);
        assert_eq!(container(&obj)["args"], json!(["c"]));

        let mut obj = deployment(json!({"name": "nginx", "args": null}));
        run(&mut obj, Field::Args, &[entry("nginx", "remove", &["a"])]);
        assert_eq!(container(&obj)["args"], json!([]));
    }

    #[test]
    fn empty_value_rewrites_unchanged() {
        let mut obj = deployment(json!({"name": "nginx", "args": ["a"]}));
        let report = run(&mut obj, Field::Args, &[entry("nginx", "add", &[])]);
        assert_eq!(container(&obj)["args"], json!(["a"]));
        assert_eq!(report.applied.len(), 1);
    }

    #[test]
    fn entries_apply_in_order_and_names_match_exactly() {
        let mut obj = deployment(json!({"name": "nginx"}));
        run(
            &mut obj,
            Field::Command,
            &[
                entry("nginx", "add", &["a", "b"]),
                entry("nginx", "remove", &["a"]),
                entry("Nginx", "add", &["x"]),
                entry("nginx", "add", &["c"]),
            ],
        );
        assert_eq!(container(&obj)["command"], json!(["b", "c"]));
    }

    #[test]
    fn pod_and_other_kinds() {
        let mut pod =
            json!({"kind": "Pod", "spec": {"containers": [{"name": "a"}], "initContainers": [{"name": "a"}]}});
        run(&mut pod, Field::Command, &[entry("a", "add", &["x"])]);
        assert_eq!(pod["spec"]["containers"][0]["command"], json!(["x"]));
        assert!(pod["spec"]["initContainers"][0].get("command").is_none());

        let mut cm = json!({"kind": "ConfigMap", "data": {}});
        let before = cm.clone();
        assert!(run(&mut cm, Field::Args, &[entry("a", "add", &["x"])])
            .applied
            .is_empty());
        assert_eq!(cm, before);
    }

    #[test]
    fn errors() {
        let mut obj = deployment(json!({"name": "nginx", "args": ["a"]}));
        let e = apply(
            &mut obj,
            &[entry("nginx", "replace", &["b"])],
            Field::Args,
            &mut Report::default(),
        )
        .unwrap_err();
        assert_eq!(e.overrider, OverriderKind::Args);
        assert_eq!(e.operation, r#"replace ["b"] container "nginx""#);
        assert_eq!(e.message, r#"unknown operator "replace" (expected add or remove)"#);

        let mut obj = deployment(json!({"name": "nginx", "args": "a b"}));
        let e = apply(
            &mut obj,
            &[entry("nginx", "add", &["b"])],
            Field::Args,
            &mut Report::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "/spec/template/spec/containers/1/args is a string, expected a list of strings"
        );

        let mut obj = deployment(json!({"name": "nginx", "args": [1]}));
        assert!(apply(
            &mut obj,
            &[entry("nginx", "add", &["b"])],
            Field::Args,
            &mut Report::default()
        )
        .is_err());
    }
}
