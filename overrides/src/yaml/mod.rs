//! YAML text ↔ JSON values for the field overrider, written back in the layout of Karmada's `JSONToYAML`.

mod emit;
mod order;

use serde_json::{Map, Number, Value};
use serde_yaml::Value as Yaml;

/// Why YAML text could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlError {
    #[error("invalid YAML: {0}")]
    Parse(String),
    #[error("YAML mapping keys must be scalars, found {0}")]
    ComplexKey(&'static str),
    #[error("YAML number {0} cannot be represented in JSON")]
    NonFinite(String),
}

/// Parses one YAML document into a JSON value.
///
/// Reading follows `sigs.k8s.io/yaml.YAMLToJSON` where it matters: merge keys (`<<`) are applied, scalar
/// mapping keys become strings (`1: a` → `"1"`), tags are dropped. Parsing is YAML 1.2 (serde_yaml), so
/// unquoted `yes`/`on` are strings here where go-yaml v2 reads booleans. Writing ([`emit`]) follows go-yaml
/// v2's `Marshal` layout with keys in its order ([`order`]); comments and the original layout are lost
/// (they are in Karmada too).
pub fn from_str(text: &str) -> Result<Value, YamlError> {
    let mut doc: Yaml = serde_yaml::from_str(text).map_err(|e| YamlError::Parse(e.to_string()))?;
    doc.apply_merge().map_err(|e| YamlError::Parse(e.to_string()))?;
    to_json(doc)
}

fn to_json(v: Yaml) -> Result<Value, YamlError> {
    Ok(match v {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => number_to_json(&n)?,
        Yaml::String(s) => Value::String(s),
        Yaml::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?),
        Yaml::Mapping(m) => {
            let mut out = Map::with_capacity(m.len());
            for (k, v) in m {
                out.insert(key_to_string(k)?, to_json(v)?);
            }
            Value::Object(out)
        }
        Yaml::Tagged(t) => to_json(t.value)?,
    })
}

fn number_to_json(n: &serde_yaml::Number) -> Result<Value, YamlError> {
    if let Some(u) = n.as_u64() {
        return Ok(Value::Number(u.into()));
    }
    if let Some(i) = n.as_i64() {
        return Ok(Value::Number(i.into()));
    }
    n.as_f64()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| YamlError::NonFinite(n.to_string()))
}

fn key_to_string(k: Yaml) -> Result<String, YamlError> {
    match k {
        Yaml::String(s) => Ok(s),
        Yaml::Null => Ok(String::from("null")),
        Yaml::Bool(b) => Ok(b.to_string()),
        Yaml::Number(n) => Ok(n.to_string()),
        Yaml::Tagged(t) => key_to_string(t.value),
        Yaml::Sequence(_) => Err(YamlError::ComplexKey("a sequence")),
        Yaml::Mapping(_) => Err(YamlError::ComplexKey("a mapping")),
    }
}

/// Writes a JSON value as YAML (see [`emit`]).
pub fn to_string(v: &Value) -> String {
    emit::to_string(v)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_merge_keys_and_scalar_keys() {
        let v = from_str("base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n1: one\ntrue: t\n").unwrap();
        assert_eq!(v["derived"], json!({"x": 1, "y": 2}));
        assert_eq!(v["1"], "one");
        assert_eq!(v["true"], "t");
        assert!(matches!(from_str("? [a]\n: 1\n"), Err(YamlError::ComplexKey(_))));
        assert!(matches!(from_str("a: .inf\n"), Err(YamlError::NonFinite(_))));
        assert!(matches!(from_str("a: [\n"), Err(YamlError::Parse(_))));
        assert!(matches!(from_str("a: 1\n---\nb: 2\n"), Err(YamlError::Parse(_))));
        assert_eq!(from_str("x: !custom 3\n").unwrap(), json!({"x": 3}));
    }

    #[test]
    fn round_trip() {
        let v = json!({"n": -3, "f": 1.5, "s": "multi\nline", "e": "", "q": "yes", "l": [], "o": {}});
        assert_eq!(from_str(&to_string(&v)).unwrap(), v);
    }
}
