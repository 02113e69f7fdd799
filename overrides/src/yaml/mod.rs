//! YAML text ↔ JSON values for the field overrider, written back the way Karmada's `JSONToYAML` does.
//!
//! Reading follows `sigs.k8s.io/yaml.YAMLToJSON` where it matters: merge keys (`<<`) are applied, scalar
//! mapping keys become strings (`1: a` → `"1"`), tags are dropped. Writing follows go-yaml v2's `Marshal`:
//! mapping keys sorted with go-yaml v2's key order (runs of digits compared as numbers, so `a2` < `a10`;
//! a non-letter before a letter except right after a digit), 2-space indent, sequences not indented under their key, a trailing
//! newline. Comments and the original layout are lost (they are in Karmada too).

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
    #[error("cannot write YAML: {0}")]
    Emit(String),
}

/// Parses one YAML document into a JSON value.
pub fn from_str(text: &str) -> Result<Value, YamlError> {
    let mut doc: Yaml = serde_yaml::from_str(text).map_err(|e| YamlError::Parse(e.to_string()))?;
    doc.apply_merge()
        .map_err(|e| YamlError::Parse(e.to_string()))?;
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

/// Writes a JSON value as YAML with sorted keys (see the module docs).
pub fn to_string(v: &Value) -> Result<String, YamlError> {
    serde_yaml::to_string(&to_yaml(v)).map_err(|e| YamlError::Emit(e.to_string()))
}

fn to_yaml(v: &Value) -> Yaml {
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Bool(*b),
        Value::Number(n) => Yaml::Number(if let Some(u) = n.as_u64() {
            u.into()
        } else if let Some(i) = n.as_i64() {
            i.into()
        } else {
            n.as_f64().unwrap_or(0.0).into()
        }),
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(items) => Yaml::Sequence(items.iter().map(to_yaml).collect()),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            sort_keys(&mut keys);
            let mut out = serde_yaml::Mapping::with_capacity(keys.len());
            for k in keys {
                if let Some(v) = map.get(k) {
                    out.insert(Yaml::String(k.clone()), to_yaml(v));
                }
            }
            Yaml::Mapping(out)
        }
    }
}

/// Sorts with [`go_key_less`] by insertion sort: go-yaml v2's order is not guaranteed to be a total order
/// for unusual keys, and `slice::sort_by` may panic on such comparators; insertion sort never does.
fn sort_keys(keys: &mut [&String]) {
    for i in 1..keys.len() {
        let mut j = i;
        while j > 0 && go_key_less(keys[j], keys[j - 1]) {
            keys.swap(j, j - 1);
            j -= 1;
        }
    }
}

fn is_digit(c: char) -> bool {
    c.is_numeric()
}

/// go-yaml v2's `keyList.Less` for two string keys.
pub(crate) fn go_key_less(a: &str, b: &str) -> bool {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut digits = false;
    let mut i = 0;
    while i < ar.len() && i < br.len() {
        let (ca, cb) = (ar[i], br[i]);
        if ca == cb {
            digits = is_digit(ca);
            i += 1;
            continue;
        }
        let (al, bl) = (ca.is_alphabetic(), cb.is_alphabetic());
        if al && bl {
            return ca < cb;
        }
        if al || bl {
            return if digits { al } else { bl };
        }
        let (mut an, mut bn): (i64, i64) = (0, 0);
        if ca == '0' || cb == '0' {
            let mut j = i;
            while j > 0 && is_digit(ar[j - 1]) {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && is_digit(ar[ai]) {
            an = an.wrapping_mul(10).wrapping_add(i64::from(u32::from(ar[ai])) - i64::from(u32::from('0')));
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && is_digit(br[bi]) {
            bn = bn.wrapping_mul(10).wrapping_add(i64::from(u32::from(br[bi])) - i64::from(u32::from('0')));
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ca < cb;
    }
    ar.len() < br.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sorted(keys: &[&str]) -> Vec<String> {
        let owned: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let mut refs: Vec<&String> = owned.iter().collect();
        sort_keys(&mut refs);
        refs.into_iter().cloned().collect()
    }

    #[test]
    fn go_yaml_v2_key_order() {
        assert_eq!(sorted(&["b", "a", "c"]), ["a", "b", "c"]);
        assert_eq!(sorted(&["a10", "a2", "a1"]), ["a1", "a2", "a10"]);
        assert_eq!(sorted(&["B", "a", "A"]), ["A", "B", "a"]);
        assert_eq!(sorted(&["ab", "a", "abc"]), ["a", "ab", "abc"]);
        // Non-letters sort before letters (unlike byte order), except right after a digit.
        assert_eq!(sorted(&["ab", "a~"]), ["a~", "ab"]);
        assert_eq!(sorted(&["1b", "1_"]), ["1b", "1_"]);
        assert_eq!(sorted(&["port", "host", "db", "name"]), ["db", "host", "name", "port"]);
    }

    #[test]
    fn writes_sorted_unindented_sequences_trailing_newline() {
        let v = json!({"z": 1, "a": {"list": [1, "two", {"k": "v", "b": null}], "s": "x"}, "m": true});
        let out = to_string(&v).unwrap();
        assert_eq!(
            out,
            "a:\n  list:\n  - 1\n  - two\n  - b: null\n    k: v\n  s: x\nm: true\nz: 1\n"
        );
    }

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
        assert_eq!(from_str(&to_string(&v).unwrap()).unwrap(), v);
    }
}
