//! Strict, atomic RFC 6902 JSON Patch on top of the `json-patch` crate.

use crate::model::{compact, type_name};
use crate::pointer::{self, Access, PointerError};
use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation};
use serde_json::{Number, Value};

/// Why a patch could not be applied. The document is unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PatchError {
    #[error("a JSON patch must be an array of operations, found {found}")]
    NotAnArray { found: &'static str },
    #[error("operation {index}: {kind}")]
    Operation { index: usize, kind: OpError },
}

/// Why one operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OpError {
    #[error("malformed operation: {0}")]
    Malformed(String),
    #[error(transparent)]
    Path(#[from] PointerError),
    #[error("from: {0}")]
    From(PointerError),
    #[error("cannot move {from} into its own child {path}")]
    MoveIntoChild { from: String, path: String },
    #[error("test failed: {path} is {actual}, expected {expected}")]
    TestFailed {
        path: String,
        actual: String,
        expected: String,
    },
    #[error("json-patch rejected the operation: {0}")]
    Library(String),
}

/// Applies an RFC 6902 patch document (a JSON array of operations) to `doc`, strictly and atomically:
/// on error `doc` is left exactly as it was.
///
/// The `json-patch` crate (v5) parses the patch document (operation names, required members, RFC 6901
/// pointer syntax) and performs `add`, `replace` and array removals. Around it this function adds:
///
/// * **pointer checks first**: every `path`/`from` goes through [`crate::pointer`] before the library sees
///   it, so errors name the failing part (`parent /metadata/labels of ... does not exist`) and strictness
///   does not depend on the library version;
/// * **atomicity without panics**: operations run on a copy that replaces the document only when every
///   operation succeeded (the library's own rollback ends in `unreachable!` if an undo step ever fails);
/// * **key order**: removing an object member keeps the order of the other keys (the library removes with
///   `swap_remove` when `serde_json`'s `preserve_order` is on, which moves the last key into the hole);
/// * **`test` equality per RFC 6902 §4.6**: numbers compare by value (`1` equals `1.0`);
/// * **`move` and `copy`** as the RFC defines them (remove then add; add a copy), so the target is checked
///   against the document as it is after the removal.
///
/// ```
/// use serde_json::json;
/// let mut doc = json!({"spec": {"replicas": 1}});
/// overrides::jsonpatch::apply_patch(&mut doc, &json!([
///     {"op": "test", "path": "/spec/replicas", "value": 1.0},
///     {"op": "replace", "path": "/spec/replicas", "value": 3}
/// ])).unwrap();
/// assert_eq!(doc, json!({"spec": {"replicas": 3}}));
/// let err = overrides::jsonpatch::apply_patch(&mut doc, &json!([{"op": "add", "path": "/spec/x/01", "value": 1}]));
/// assert!(err.is_err());
/// ```
pub fn apply_patch(doc: &mut Value, patch: &Value) -> Result<(), PatchError> {
    let ops = parse_patch(patch)?;
    apply_ops(doc, &ops).map(|_| ())
}

/// Parses an RFC 6902 patch document into operations, reporting the first malformed one.
pub(crate) fn parse_patch(patch: &Value) -> Result<Vec<PatchOperation>, PatchError> {
    let Value::Array(items) = patch else {
        return Err(PatchError::NotAnArray {
            found: type_name(patch),
        });
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            serde_json::from_value::<PatchOperation>(item.clone()).map_err(|e| PatchError::Operation {
                index,
                kind: OpError::Malformed(e.to_string()),
            })
        })
        .collect()
}

/// Builds a library pointer from text, with this crate's error on bad syntax.
pub(crate) fn pointer_buf(path: &str) -> Result<PointerBuf, PointerError> {
    pointer::validate(path)?;
    PointerBuf::parse(path).map_err(|_| PointerError::Syntax {
        pointer: path.to_owned(),
        reason: "rejected by the JSON pointer parser",
    })
}

/// Applies `ops` atomically. On success returns, per operation, the value that was at its `path` before
/// (the removed or replaced value; for `add`/`copy`/`move` the overwritten object member, if any).
pub(crate) fn apply_ops(doc: &mut Value, ops: &[PatchOperation]) -> Result<Vec<Option<Value>>, PatchError> {
    let mut work = doc.clone();
    let before = apply_ops_in_place(&mut work, ops)?;
    *doc = work;
    Ok(before)
}

/// Like [`apply_ops`] but without the copy that makes it atomic: on error `doc` may hold the effect of
/// the operations before the failing one. For callers that discard the document on error (an override
/// rule: the object is then not rendered for that cluster), this saves a deep copy per patch.
pub(crate) fn apply_ops_in_place(doc: &mut Value, ops: &[PatchOperation]) -> Result<Vec<Option<Value>>, PatchError> {
    let mut before = Vec::with_capacity(ops.len());
    for (index, op) in ops.iter().enumerate() {
        let old = apply_one(doc, op).map_err(|kind| PatchError::Operation { index, kind })?;
        before.push(old);
    }
    Ok(before)
}

fn apply_one(doc: &mut Value, op: &PatchOperation) -> Result<Option<Value>, OpError> {
    match op {
        PatchOperation::Add(add) => add_value(doc, &add.path, add.value.clone()),
        PatchOperation::Remove(rm) => remove(doc, &rm.path).map(Some),
        PatchOperation::Replace(rep) => {
            pointer::check(doc, rep.path.as_str(), Access::Read)?;
            let old = pointer::get(doc, rep.path.as_str())?.clone();
            library(doc, PatchOperation::Replace(rep.clone()))?;
            Ok(Some(old))
        }
        PatchOperation::Move(mv) => {
            let (from, path) = (mv.from.as_str(), mv.path.as_str());
            pointer::check(doc, from, Access::Remove).map_err(OpError::From)?;
            if pointer::is_proper_prefix(from, path) {
                return Err(OpError::MoveIntoChild {
                    from: from.to_owned(),
                    path: path.to_owned(),
                });
            }
            if from == path {
                return Ok(None);
            }
            let value = remove(doc, &mv.from).map_err(|e| match e {
                OpError::Path(p) => OpError::From(p),
                other => other,
            })?;
            add_value(doc, &mv.path, value)
        }
        PatchOperation::Copy(cp) => {
            let value = pointer::get(doc, cp.from.as_str()).map_err(OpError::From)?.clone();
            add_value(doc, &cp.path, value)
        }
        PatchOperation::Test(test) => {
            let actual = pointer::get(doc, test.path.as_str())?;
            if json_eq(actual, &test.value) {
                Ok(None)
            } else {
                Err(OpError::TestFailed {
                    path: test.path.to_string(),
                    actual: compact(actual),
                    expected: compact(&test.value),
                })
            }
        }
    }
}

fn add_value(doc: &mut Value, path: &PointerBuf, value: Value) -> Result<Option<Value>, OpError> {
    pointer::check(doc, path.as_str(), Access::Add)?;
    let old = pointer::overwritten_by_add(doc, path.as_str());
    library(
        doc,
        PatchOperation::Add(AddOperation {
            path: path.clone(),
            value,
        }),
    )?;
    Ok(old)
}

fn remove(doc: &mut Value, path: &PointerBuf) -> Result<Value, OpError> {
    pointer::check(doc, path.as_str(), Access::Remove)?;
    if let Some((map, key)) = pointer::parent_object_mut(doc, path.as_str()) {
        // Keep the order of the remaining keys (see `apply_patch`).
        return map.shift_remove(&key).ok_or_else(|| {
            OpError::Path(PointerError::Missing {
                pointer: path.to_string(),
            })
        });
    }
    let old = pointer::get(doc, path.as_str())?.clone();
    library(doc, PatchOperation::Remove(RemoveOperation { path: path.clone() }))?;
    Ok(old)
}

/// Runs one operation through the `json-patch` crate, after the pointer checks passed.
fn library(doc: &mut Value, op: PatchOperation) -> Result<(), OpError> {
    json_patch::patch_unsafe(doc, &[op]).map_err(|e| OpError::Library(e.kind.to_string()))
}

/// JSON equality as RFC 6902 §4.6 defines it for `test`: numbers are equal when their values are.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => number_eq(x, y),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn number_eq(x: &Number, y: &Number) -> bool {
    if let (Some(p), Some(q)) = (x.as_i64(), y.as_i64()) {
        return p == q;
    }
    if let (Some(p), Some(q)) = (x.as_u64(), y.as_u64()) {
        return p == q;
    }
    if x.is_f64() || y.is_f64() {
        return matches!((x.as_f64(), y.as_f64()), (Some(p), Some(q)) if p == q);
    }
    // One is a negative i64, the other a u64 above i64::MAX.
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(doc: Value, ops: Value) -> Result<Value, PatchError> {
        let mut d = doc;
        apply_patch(&mut d, &ops).map(|()| d)
    }

    fn err(doc: Value, ops: Value) -> String {
        match patch(doc.clone(), ops) {
            Ok(v) => panic!("expected an error, got {v}"),
            Err(PatchError::Operation { kind, .. }) => kind.to_string(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn add_under_missing_parent_fails() {
        let msg = err(
            json!({"metadata": {}}),
            json!([{"op": "add", "path": "/metadata/labels/x", "value": "y"}]),
        );
        assert_eq!(msg, "parent /metadata/labels of /metadata/labels/x does not exist");
    }

    #[test]
    fn remove_and_replace_of_missing_member_fail() {
        let d = json!({"a": {}});
        assert_eq!(
            err(d.clone(), json!([{"op": "remove", "path": "/a/b"}])),
            "/a/b does not exist"
        );
        assert_eq!(
            err(d, json!([{"op": "replace", "path": "/a/b", "value": 1}])),
            "/a/b does not exist"
        );
    }

    #[test]
    fn indices_are_strict_everywhere() {
        let d = json!({"a": [1, 2]});
        for p in ["/a/01", "/a/-1", "/a/+1", "/a/1e0", "/a/3"] {
            for op in [
                json!({"op": "add", "path": p, "value": 0}),
                json!({"op": "replace", "path": p, "value": 0}),
                json!({"op": "remove", "path": p}),
                json!({"op": "test", "path": p, "value": 0}),
                json!({"op": "copy", "from": p, "path": "/b"}),
                json!({"op": "move", "from": p, "path": "/b"}),
            ] {
                assert!(patch(d.clone(), json!([op.clone()])).is_err(), "{op}");
            }
        }
        assert!(patch(d.clone(), json!([{"op": "remove", "path": "/a/-"}])).is_err());
        assert!(patch(d.clone(), json!([{"op": "replace", "path": "/a/-", "value": 0}])).is_err());
        assert_eq!(
            patch(d.clone(), json!([{"op": "add", "path": "/a/-", "value": 3}])).unwrap(),
            json!({"a": [1, 2, 3]})
        );
        assert_eq!(
            patch(d, json!([{"op": "add", "path": "/a/2", "value": 3}])).unwrap(),
            json!({"a": [1, 2, 3]})
        );
    }

    #[test]
    fn atomic_on_failure() {
        let d = json!({"a": 1});
        let mut work = d.clone();
        let e = apply_patch(
            &mut work,
            &json!([
                {"op": "replace", "path": "/a", "value": 2},
                {"op": "add", "path": "/b", "value": 3},
                {"op": "remove", "path": "/nope"}
            ]),
        )
        .unwrap_err();
        assert!(matches!(e, PatchError::Operation { index: 2, .. }));
        assert_eq!(work, d);
    }

    #[test]
    fn remove_keeps_key_order() {
        let out = patch(
            json!({"a": 1, "b": 2, "c": 3, "d": 4}),
            json!([{"op": "remove", "path": "/b"}]),
        )
        .unwrap();
        assert_eq!(compact(&out), r#"{"a":1,"c":3,"d":4}"#);
    }

    #[test]
    fn add_appends_new_keys_and_keeps_position_of_existing() {
        let out = patch(
            json!({"a": 1, "b": 2}),
            json!([{"op": "add", "path": "/z", "value": 0}, {"op": "add", "path": "/a", "value": 9}]),
        )
        .unwrap();
        assert_eq!(compact(&out), r#"{"a":9,"b":2,"z":0}"#);
    }

    #[test]
    fn test_compares_numbers_by_value() {
        let d = json!({"n": 1, "f": 2.5, "o": {"x": [1, {"y": 2}]}});
        assert!(patch(d.clone(), json!([{"op": "test", "path": "/n", "value": 1.0}])).is_ok());
        assert!(patch(
            d.clone(),
            json!([{"op": "test", "path": "/o", "value": {"x": [1.0, {"y": 2}]}}])
        )
        .is_ok());
        assert!(patch(d.clone(), json!([{"op": "test", "path": "/n", "value": "1"}])).is_err());
        assert_eq!(
            err(d, json!([{"op": "test", "path": "/f", "value": 2}])),
            "test failed: /f is 2.5, expected 2"
        );
    }

    #[test]
    fn move_and_copy() {
        let d = json!({"a": {"b": 1}, "l": [1, 2, 3]});
        assert_eq!(
            patch(d.clone(), json!([{"op": "move", "from": "/a/b", "path": "/c"}])).unwrap(),
            json!({"a": {}, "l": [1, 2, 3], "c": 1})
        );
        assert_eq!(
            patch(d.clone(), json!([{"op": "move", "from": "/l/0", "path": "/l/2"}])).unwrap(),
            json!({"a": {"b": 1}, "l": [2, 3, 1]})
        );
        // After removing /l/0 the array has 2 elements: index 3 is beyond its end.
        assert!(patch(d.clone(), json!([{"op": "move", "from": "/l/0", "path": "/l/3"}])).is_err());
        assert_eq!(
            err(d.clone(), json!([{"op": "move", "from": "/a", "path": "/a/b/c"}])),
            "cannot move /a into its own child /a/b/c"
        );
        assert_eq!(
            patch(d.clone(), json!([{"op": "move", "from": "/a", "path": "/a"}])).unwrap(),
            d
        );
        assert_eq!(
            patch(d.clone(), json!([{"op": "copy", "from": "/l", "path": "/a/l"}])).unwrap(),
            json!({"a": {"b": 1, "l": [1, 2, 3]}, "l": [1, 2, 3]})
        );
        assert_eq!(
            err(d, json!([{"op": "copy", "from": "/x", "path": "/y"}])),
            "from: /x does not exist"
        );
    }

    #[test]
    fn root_operations() {
        assert_eq!(
            patch(json!({"a": 1}), json!([{"op": "replace", "path": "", "value": [1]}])).unwrap(),
            json!([1])
        );
        assert_eq!(
            patch(json!({"a": 1}), json!([{"op": "add", "path": "", "value": "x"}])).unwrap(),
            json!("x")
        );
        assert!(patch(json!({"a": 1}), json!([{"op": "remove", "path": ""}])).is_err());
    }

    #[test]
    fn malformed_documents() {
        assert!(matches!(
            patch(json!({}), json!({"op": "add"})),
            Err(PatchError::NotAnArray { .. })
        ));
        for bad in [
            json!({"op": "spam", "path": "/a"}),
            json!({"op": "add", "path": "/a"}),
            json!({"op": "add", "value": 1}),
            json!({"op": "move", "path": "/a"}),
            json!({"op": "add", "path": "a", "value": 1}),
            json!({"op": "add", "path": "/a~2", "value": 1}),
            json!("add"),
        ] {
            assert!(
                matches!(
                    patch(json!({}), json!([bad.clone()])),
                    Err(PatchError::Operation {
                        index: 0,
                        kind: OpError::Malformed(_)
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn apply_ops_reports_previous_values() {
        let mut d = json!({"a": 1, "l": [1]});
        let ops = parse_patch(&json!([
            {"op": "replace", "path": "/a", "value": 2},
            {"op": "add", "path": "/a", "value": 3},
            {"op": "add", "path": "/l/0", "value": 0},
            {"op": "remove", "path": "/l/1"}
        ]))
        .unwrap();
        let before = apply_ops(&mut d, &ops).unwrap();
        assert_eq!(before, [Some(json!(1)), Some(json!(2)), None, Some(json!(1))]);
        assert_eq!(d, json!({"a": 3, "l": [0]}));
    }

    #[test]
    fn number_equality_edges() {
        let big = json!(u64::MAX);
        assert!(json_eq(&big, &big));
        assert!(!json_eq(&json!(-1), &big));
        assert!(json_eq(&json!(-1), &json!(-1.0)));
        assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
    }
}
