//! The data model: Karmada's `Overriders` as written in a policy, and the report or error of applying them.

use serde::Deserialize;
use serde_json::Value;
use std::fmt;

/// The overriders of one override rule, as written in Karmada's `OverrideSpec` (JSON field names).
/// Unknown fields are tolerated here: schema validation reports them before this is parsed.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Overriders {
    pub plaintext: Vec<PlaintextOverrider>,
    pub image_overrider: Vec<ImageOverrider>,
    pub command_overrider: Vec<CommandArgsOverrider>,
    pub args_overrider: Vec<CommandArgsOverrider>,
    pub labels_overrider: Vec<LabelAnnotationOverrider>,
    pub annotations_overrider: Vec<LabelAnnotationOverrider>,
    pub field_overrider: Vec<FieldOverrider>,
}

/// One `plaintext` entry: an RFC 6902 operation (`add`, `remove` or `replace`) at an RFC 6901 `path`.
/// A missing `value` on `add`/`replace` writes JSON `null` (as Karmada does); on `remove` it is ignored.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct PlaintextOverrider {
    pub path: String,
    pub operator: String,
    #[serde(default)]
    pub value: Option<Value>,
}

/// Where an `imageOverrider` finds its image when it does not use the workload default.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ImagePredicate {
    /// An RFC 6901 pointer to a string, e.g. `/spec/template/spec/initContainers/0/image`.
    pub path: String,
}

/// One `imageOverrider` entry: edit one `component` (`Registry`, `Repository` or `Tag`) of an image reference.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ImageOverrider {
    #[serde(default)]
    pub predicate: Option<ImagePredicate>,
    pub component: String,
    pub operator: String,
    /// Missing means the empty string.
    #[serde(default)]
    pub value: Option<String>,
}

/// One `commandOverrider` or `argsOverrider` entry: `add` appends `value`, `remove` deletes every equal element.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CommandArgsOverrider {
    pub container_name: String,
    pub operator: String,
    #[serde(default)]
    pub value: Vec<String>,
}

/// One `labelsOverrider` or `annotationsOverrider` entry: `add`, `replace` or `remove` each key of `value`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct LabelAnnotationOverrider {
    pub operator: String,
    /// Values must be strings; for `remove` only the keys matter.
    #[serde(default)]
    pub value: serde_json::Map<String, Value>,
}

/// One `fieldOverrider` entry: the string at `field_path` is parsed as JSON or YAML (exactly one of the two
/// lists is set), patched with the list's operations, and written back.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FieldOverrider {
    pub field_path: String,
    #[serde(default)]
    pub json: Option<Vec<FieldOp>>,
    #[serde(default)]
    pub yaml: Option<Vec<FieldOp>>,
}

/// One operation of a `fieldOverrider`, on the parsed document (`sub_path` is an RFC 6901 pointer into it).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FieldOp {
    pub sub_path: String,
    pub operator: String,
    #[serde(default)]
    pub value: Option<Value>,
}

/// Which overrider list an operation came from; `Display` gives Karmada's field name (`imageOverrider`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OverriderKind {
    Image,
    Command,
    Args,
    Labels,
    Annotations,
    Field,
    Plaintext,
}

impl OverriderKind {
    /// Karmada's field name of the overrider list (`imageOverrider`, ..., `plaintext`).
    pub fn field(self) -> &'static str {
        match self {
            OverriderKind::Image => "imageOverrider",
            OverriderKind::Command => "commandOverrider",
            OverriderKind::Args => "argsOverrider",
            OverriderKind::Labels => "labelsOverrider",
            OverriderKind::Annotations => "annotationsOverrider",
            OverriderKind::Field => "fieldOverrider",
            OverriderKind::Plaintext => "plaintext",
        }
    }
}

impl fmt::Display for OverriderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field())
    }
}

/// One operation that changed (or was applied to) the object, for `explain`.
#[derive(Debug, Clone, PartialEq)]
pub struct AppliedOp {
    pub overrider: OverriderKind,
    /// Index in that overrider's list.
    pub index: usize,
    /// Human description, e.g. `replace /spec/template/spec/containers/0/image "nginx" -> "dc-1.registry.io/nginx"`.
    pub operation: String,
}

/// A finding that is not an error (e.g. an image Tag value that is neither a tag nor a digest: no change).
#[derive(Debug, Clone, PartialEq)]
pub struct OverrideWarning {
    pub overrider: OverriderKind,
    pub index: usize,
    pub message: String,
}

/// What applying one rule did: the operations in the order they were applied, and the warnings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    pub applied: Vec<AppliedOp>,
    pub warnings: Vec<OverrideWarning>,
}

impl Report {
    pub(crate) fn applied(&mut self, overrider: OverriderKind, index: usize, operation: String) {
        self.applied.push(AppliedOp {
            overrider,
            index,
            operation,
        });
    }

    pub(crate) fn warn(&mut self, overrider: OverriderKind, index: usize, message: String) {
        self.warnings.push(OverrideWarning {
            overrider,
            index,
            message,
        });
    }
}

/// An override that cannot be applied. The caller drops the object for that cluster.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{overrider}[{index}] {operation}: {message}")]
pub struct OverrideError {
    pub overrider: OverriderKind,
    pub index: usize,
    /// The operation as written, e.g. `replace /spec/replicas`.
    pub operation: String,
    pub message: String,
}

impl OverrideError {
    pub(crate) fn new(
        overrider: OverriderKind,
        index: usize,
        operation: impl Into<String>,
        message: impl fmt::Display,
    ) -> Self {
        OverrideError {
            overrider,
            index,
            operation: operation.into(),
            message: message.to_string(),
        }
    }
}

/// Longest rendering of a value in a description before it is cut.
const SHORT_LIMIT: usize = 72;

/// Compact JSON of `v` for descriptions, cut to a readable length (`…` marks the cut).
pub(crate) fn short(v: &Value) -> String {
    let full = compact(v);
    if full.chars().count() <= SHORT_LIMIT {
        return full;
    }
    let mut cut: String = full.chars().take(SHORT_LIMIT - 1).collect();
    cut.push('…');
    cut
}

/// Compact JSON of `v` (serialising a `Value` cannot fail: its map keys are strings).
pub(crate) fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| String::from("<unprintable>"))
}

/// `"x"` with JSON escaping, for strings in operations and messages.
pub(crate) fn quoted(s: &str) -> String {
    compact(&Value::String(s.to_owned()))
}

/// A value's JSON type with its article, for messages: `a string`, `an object`, ...
pub(crate) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn overriders_deserialise_from_karmada_field_names() {
        let ov: Overriders = serde_json::from_value(json!({
            "imageOverrider": [{"component": "Registry", "operator": "replace", "value": "dc-1.registry.io"}],
            "commandOverrider": [{"containerName": "nginx", "operator": "add", "value": ["--v=2"]}],
            "labelsOverrider": [{"operator": "add", "value": {"team": "a"}}],
            "fieldOverrider": [{"fieldPath": "/data/app.yaml", "yaml": [{"subPath": "/a", "operator": "remove"}]}],
            "plaintext": [{"path": "/spec/replicas", "operator": "replace", "value": 3}],
            "somethingNew": true
        }))
        .unwrap();
        assert_eq!(ov.image_overrider[0].value.as_deref(), Some("dc-1.registry.io"));
        assert_eq!(ov.command_overrider[0].container_name, "nginx");
        assert_eq!(ov.field_overrider[0].yaml.as_ref().unwrap()[0].sub_path, "/a");
        assert_eq!(ov.plaintext[0].value, Some(json!(3)));
        assert!(ov.args_overrider.is_empty());
    }

    #[test]
    fn error_display_names_overrider_index_operation() {
        let e = OverrideError::new(OverriderKind::Plaintext, 2, "replace /spec/replicas", "missing");
        assert_eq!(e.to_string(), "plaintext[2] replace /spec/replicas: missing");
    }

    #[test]
    fn short_cuts_long_values() {
        assert_eq!(short(&json!("abc")), "\"abc\"");
        let long = short(&json!("x".repeat(200)));
        assert_eq!(long.chars().count(), SHORT_LIMIT);
        assert!(long.ends_with('…'));
    }
}
