//! Strict RFC 6901 JSON Pointers: syntax, array indices and existence, with errors that say which part failed.

use crate::model::type_name;
use serde_json::Value;

/// Why a pointer cannot be used on a document. `pointer` fields hold the prefix that failed, as written.
///
/// Every location an override touches is checked by this module (also through [`get`]/[`get_mut`]) first, so the
/// strictness does not depend on the JSON Patch library: an array index is `0` or a number without a leading
/// zero (`01`, `-1`, `+1`, `1e0` are errors), `-` (the end of an array) is only a valid last token of an `add`,
/// parents must exist, and `~` must be followed by `0` or `1`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointerError {
    #[error("{pointer:?} is not a JSON pointer: {reason}")]
    Syntax { pointer: String, reason: &'static str },
    #[error("{pointer} does not exist")]
    Missing { pointer: String },
    #[error("parent {parent} of {pointer} does not exist")]
    MissingParent { parent: String, pointer: String },
    #[error("{} is {found}, not an object or array", show(.pointer))]
    NotContainer { pointer: String, found: &'static str },
    #[error("{token:?} in {pointer} is not an array index (0 or a number without leading zeros)")]
    BadIndex { pointer: String, token: String },
    #[error("\"-\" in {pointer} names the end of an array, which only add accepts as the last token")]
    EndOfArray { pointer: String },
    #[error("index {index} in {pointer} is out of bounds (array length {len})")]
    OutOfBounds { pointer: String, index: String, len: usize },
    #[error("the document root cannot be removed")]
    RemoveRoot,
}

fn show(pointer: &str) -> String {
    if pointer.is_empty() {
        String::from("the document root")
    } else {
        pointer.to_owned()
    }
}

/// What an operation needs from the location a pointer names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// The location must exist (`replace`, `test`, `from` of `copy`).
    Read,
    /// The parent must exist; the last token may name a new member, an index up to the length, or `-`.
    Add,
    /// The location must exist and must not be the root (`remove`, `from` of `move`).
    Remove,
}

/// A pointer split into tokens: `decoded` for lookups, `ends[i]` = byte length of the prefix through token `i`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed<'a> {
    raw: &'a str,
    pub(crate) tokens: Vec<String>,
    ends: Vec<usize>,
}

impl Parsed<'_> {
    /// The pointer as written up to and including token `i`.
    pub(crate) fn prefix(&self, i: usize) -> &str {
        let end = self.ends.get(i).copied().unwrap_or(self.raw.len());
        self.raw.get(..end).unwrap_or(self.raw)
    }

    /// The pointer up to but excluding the last token (`""` for the root and its children).
    fn parent(&self) -> &str {
        match self.tokens.len() {
            0 | 1 => "",
            n => self.prefix(n - 2),
        }
    }
}

/// Splits `pointer` into decoded tokens, rejecting what RFC 6901 forbids.
pub(crate) fn parse(pointer: &str) -> Result<Parsed<'_>, PointerError> {
    let syntax = |reason| PointerError::Syntax {
        pointer: pointer.to_owned(),
        reason,
    };
    let mut parsed = Parsed {
        raw: pointer,
        tokens: Vec::new(),
        ends: Vec::new(),
    };
    if pointer.is_empty() {
        return Ok(parsed);
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(syntax("it must be empty or start with \"/\""));
    };
    let mut end = 0;
    for raw in rest.split('/') {
        end += 1 + raw.len();
        let mut token = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c != '~' {
                token.push(c);
                continue;
            }
            match chars.next() {
                Some('0') => token.push('~'),
                Some('1') => token.push('/'),
                _ => return Err(syntax("\"~\" must be followed by \"0\" or \"1\"")),
            }
        }
        parsed.tokens.push(token);
        parsed.ends.push(end);
    }
    Ok(parsed)
}

/// Checks `pointer` against RFC 6901 syntax only.
pub fn validate(pointer: &str) -> Result<(), PointerError> {
    parse(pointer).map(|_| ())
}

/// Encodes one token for use in a pointer (`~` → `~0`, `/` → `~1`).
pub fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Parses an array index token: `0` or `[1-9][0-9]*` that fits in `usize`.
fn index(token: &str) -> Option<usize> {
    let digits = token.bytes().all(|b| b.is_ascii_digit());
    let leading_zero = token.len() > 1 && token.starts_with('0');
    if token.is_empty() || !digits || leading_zero {
        return None;
    }
    token.parse().ok()
}

/// Resolves one array step: the element index, or the error for `token` at `at`.
fn array_step(len: usize, token: &str, at: &str, allow_end: bool) -> Result<usize, PointerError> {
    if token == "-" {
        return if allow_end {
            Ok(len)
        } else {
            Err(PointerError::EndOfArray { pointer: at.to_owned() })
        };
    }
    let out_of_bounds = || PointerError::OutOfBounds {
        pointer: at.to_owned(),
        index: token.to_owned(),
        len,
    };
    let all_digits = !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit());
    match index(token) {
        Some(i) if i < len || (allow_end && i == len) => Ok(i),
        Some(_) => Err(out_of_bounds()),
        // A well-formed number too large for usize is out of bounds, not malformed.
        None if all_digits && !token.starts_with('0') => Err(out_of_bounds()),
        None => Err(PointerError::BadIndex {
            pointer: at.to_owned(),
            token: token.to_owned(),
        }),
    }
}

/// Checks that `pointer` can be used on `doc` for `access`, without changing anything.
pub(crate) fn check(doc: &Value, pointer: &str, access: Access) -> Result<(), PointerError> {
    let parsed = parse(pointer)?;
    let n = parsed.tokens.len();
    if n == 0 {
        return if access == Access::Remove {
            Err(PointerError::RemoveRoot)
        } else {
            Ok(())
        };
    }
    let mut cur = doc;
    for (i, token) in parsed.tokens.iter().enumerate() {
        let last = i + 1 == n;
        let here = parsed.prefix(i);
        let adding_here = last && access == Access::Add;
        match cur {
            Value::Object(map) => match map.get(token) {
                Some(next) => cur = next,
                None if adding_here => return Ok(()),
                None if last => {
                    return Err(PointerError::Missing {
                        pointer: here.to_owned(),
                    })
                }
                None => {
                    return Err(PointerError::MissingParent {
                        parent: here.to_owned(),
                        pointer: pointer.to_owned(),
                    })
                }
            },
            Value::Array(items) => {
                let idx = array_step(items.len(), token, here, adding_here)?;
                if adding_here {
                    return Ok(());
                }
                match items.get(idx) {
                    Some(next) => cur = next,
                    None => {
                        return Err(PointerError::OutOfBounds {
                            pointer: here.to_owned(),
                            index: token.clone(),
                            len: items.len(),
                        })
                    }
                }
            }
            other => {
                let at = if i == 0 { "" } else { parsed.prefix(i - 1) };
                return Err(PointerError::NotContainer {
                    pointer: at.to_owned(),
                    found: type_name(other),
                });
            }
        }
    }
    Ok(())
}

/// The value at `pointer`, which must exist.
pub fn get<'a>(doc: &'a Value, pointer: &str) -> Result<&'a Value, PointerError> {
    check(doc, pointer, Access::Read)?;
    let parsed = parse(pointer)?;
    let mut cur = doc;
    for (i, token) in parsed.tokens.iter().enumerate() {
        let here = parsed.prefix(i);
        cur = match cur {
            Value::Object(map) => map.get(token),
            Value::Array(items) => items.get(array_step(items.len(), token, here, false)?),
            _ => None,
        }
        .ok_or_else(|| PointerError::Missing {
            pointer: here.to_owned(),
        })?;
    }
    Ok(cur)
}

/// The value at `pointer`, mutably, which must exist.
pub fn get_mut<'a>(doc: &'a mut Value, pointer: &str) -> Result<&'a mut Value, PointerError> {
    check(doc, pointer, Access::Read)?;
    let parsed = parse(pointer)?;
    let mut cur = doc;
    for (i, token) in parsed.tokens.iter().enumerate() {
        let here = parsed.prefix(i);
        cur = match cur {
            Value::Object(map) => map.get_mut(token),
            Value::Array(items) => {
                let idx = array_step(items.len(), token, here, false)?;
                items.get_mut(idx)
            }
            _ => None,
        }
        .ok_or_else(|| PointerError::Missing {
            pointer: here.to_owned(),
        })?;
    }
    Ok(cur)
}

/// The object that holds the last token of `pointer` and that token, when the parent is an object.
/// Used to keep key order on removal (the JSON Patch library's removal reorders keys).
pub(crate) fn parent_object_mut<'a>(
    doc: &'a mut Value,
    pointer: &str,
) -> Option<(&'a mut serde_json::Map<String, Value>, String)> {
    let parsed = parse(pointer).ok()?;
    let last = parsed.tokens.last()?.clone();
    let parent = get_mut(doc, parsed.parent()).ok()?;
    parent.as_object_mut().map(|map| (map, last))
}

/// The member an `add` at `pointer` would overwrite: the root, or an existing key of an object
/// (adding into an array inserts, so nothing is overwritten).
pub(crate) fn overwritten_by_add(doc: &Value, pointer: &str) -> Option<Value> {
    let parsed = parse(pointer).ok()?;
    let Some(last) = parsed.tokens.last() else {
        return Some(doc.clone());
    };
    get(doc, parsed.parent()).ok()?.as_object()?.get(last).cloned()
}

/// Whether `child` lies strictly inside `parent` (token-wise proper prefix).
pub(crate) fn is_proper_prefix(parent: &str, child: &str) -> bool {
    match (parse(parent), parse(child)) {
        (Ok(p), Ok(c)) => c.tokens.len() > p.tokens.len() && c.tokens.starts_with(&p.tokens),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({"a": {"b": [10, 20, 30]}, "s": "x", "": 1, "m~n": 2, "c/d": 3})
    }

    #[test]
    fn parse_decodes_escapes_in_order() {
        assert_eq!(parse("/a~1b/m~0n/~01").unwrap().tokens, ["a/b", "m~n", "~1"]);
        assert_eq!(parse("/").unwrap().tokens, [""]);
        assert!(parse("").unwrap().tokens.is_empty());
    }

    #[test]
    fn parse_rejects_bad_syntax() {
        for bad in ["a", "a/b", "/a~", "/a~2", "/~a"] {
            assert!(matches!(parse(bad), Err(PointerError::Syntax { .. })), "{bad}");
        }
    }

    #[test]
    fn array_indices_are_strict() {
        let d = doc();
        for bad in ["01", "00", "-1", "+1", "1e0", " 1", "1 ", ""] {
            let p = format!("/a/b/{bad}");
            assert!(
                matches!(check(&d, &p, Access::Read), Err(PointerError::BadIndex { .. })),
                "{bad}"
            );
            assert!(check(&d, &p, Access::Add).is_err(), "{bad}");
        }
        assert!(check(&d, "/a/b/0", Access::Read).is_ok());
        assert!(check(&d, "/a/b/2", Access::Read).is_ok());
        assert!(matches!(
            check(&d, "/a/b/3", Access::Read),
            Err(PointerError::OutOfBounds { .. })
        ));
        assert!(check(&d, "/a/b/3", Access::Add).is_ok());
        assert!(check(&d, "/a/b/4", Access::Add).is_err());
        assert!(matches!(
            check(&d, "/a/b/99999999999999999999999", Access::Read),
            Err(PointerError::OutOfBounds { .. })
        ));
    }

    #[test]
    fn end_of_array_only_for_add() {
        let d = doc();
        assert!(check(&d, "/a/b/-", Access::Add).is_ok());
        for access in [Access::Read, Access::Remove] {
            assert!(matches!(
                check(&d, "/a/b/-", access),
                Err(PointerError::EndOfArray { .. })
            ));
        }
        assert!(matches!(
            check(&d, "/a/b/-/x", Access::Add),
            Err(PointerError::EndOfArray { .. })
        ));
    }

    #[test]
    fn missing_parent_and_member() {
        let d = doc();
        let e = check(&d, "/metadata/labels/x", Access::Add).unwrap_err();
        assert_eq!(e.to_string(), "parent /metadata of /metadata/labels/x does not exist");
        let e = check(&d, "/a/x", Access::Read).unwrap_err();
        assert_eq!(e.to_string(), "/a/x does not exist");
        assert!(check(&d, "/a/x", Access::Add).is_ok());
        let e = check(&d, "/s/x", Access::Add).unwrap_err();
        assert_eq!(e.to_string(), "/s is a string, not an object or array");
        let e = check(&json!(3), "/x", Access::Add).unwrap_err();
        assert_eq!(e.to_string(), "the document root is a number, not an object or array");
    }

    #[test]
    fn root_and_special_keys() {
        let d = doc();
        assert_eq!(get(&d, "").unwrap(), &d);
        assert_eq!(get(&d, "/").unwrap(), &json!(1));
        assert_eq!(get(&d, "/m~0n").unwrap(), &json!(2));
        assert_eq!(get(&d, "/c~1d").unwrap(), &json!(3));
        assert_eq!(check(&d, "", Access::Remove), Err(PointerError::RemoveRoot));
    }

    #[test]
    fn get_mut_writes_through() {
        let mut d = doc();
        *get_mut(&mut d, "/a/b/1").unwrap() = json!(21);
        assert_eq!(d["a"]["b"], json!([10, 21, 30]));
        assert!(get_mut(&mut d, "/a/b/01").is_err());
    }

    #[test]
    fn helpers() {
        assert_eq!(escape("a/b~c"), "a~1b~0c");
        assert!(is_proper_prefix("/a", "/a/b"));
        assert!(!is_proper_prefix("/a", "/a"));
        assert!(!is_proper_prefix("/a", "/ab"));
        assert!(is_proper_prefix("", "/a"));
        let d = doc();
        assert_eq!(overwritten_by_add(&d, "/s"), Some(json!("x")));
        assert_eq!(overwritten_by_add(&d, "/a/b/0"), None);
        assert_eq!(overwritten_by_add(&d, ""), Some(d.clone()));
    }
}
