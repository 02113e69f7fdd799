//! A block-style YAML writer in go-yaml v2's layout that quotes every string a YAML 1.1 or 1.2 reader could misread.

use super::order::sort_keys;
use serde_json::{Map, Value};

/// Keys longer than this are written as explicit `? key` entries (YAML caps implicit keys at 1024 chars).
const IMPLICIT_KEY_MAX: usize = 1000;

/// Writes `v` as a YAML document.
///
/// Layout: mappings with keys in go-yaml v2 order, 2-space indent, sequences at the same indent as their
/// key (`key:\n- item`), empty collections as `{}`/`[]`, multi-line strings as literal blocks, a trailing
/// newline. Quoting is deliberately conservative: a string is written plain only when no YAML 1.1 or 1.2
/// reader can take it for a null, boolean, number, timestamp, merge key or indicator (so `on`, `yes`,
/// `1_000`, `1:20`, `2001-12-14` and `1.17` stay strings for Go's yaml.v2 and PyYAML alike), otherwise it is
/// double-quoted with escapes. Strings are never folded or re-wrapped.
pub(crate) fn to_string(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => mapping(m, 0, false, &mut out),
        Value::Array(a) if !a.is_empty() => sequence(a, 0, false, &mut out),
        _ => {
            scalar(v, 2, &mut out);
            out.push('\n');
        }
    }
    out
}

fn pad(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// A mapping whose keys start at column `indent`; `inline_first` when the first key follows a `- `.
fn mapping(m: &Map<String, Value>, indent: usize, inline_first: bool, out: &mut String) {
    let mut keys: Vec<&String> = m.keys().collect();
    sort_keys(&mut keys);
    for (n, key) in keys.into_iter().enumerate() {
        let Some(value) = m.get(key) else { continue };
        if n > 0 || !inline_first {
            pad(indent, out);
        }
        let quoted_key = if plain_ok(key) { key.clone() } else { double_quoted(key) };
        if quoted_key.chars().count() > IMPLICIT_KEY_MAX {
            out.push_str("? ");
            out.push_str(&quoted_key);
            out.push('\n');
            pad(indent, out);
        } else {
            out.push_str(&quoted_key);
        }
        out.push(':');
        after_indicator(value, indent, out);
    }
}

/// A sequence whose dashes are at column `indent`; `inline_first` when the first dash follows a `- `.
fn sequence(items: &[Value], indent: usize, inline_first: bool, out: &mut String) {
    for (n, item) in items.iter().enumerate() {
        if n > 0 || !inline_first {
            pad(indent, out);
        }
        out.push_str("- ");
        match item {
            Value::Object(m) if !m.is_empty() => mapping(m, indent + 2, true, out),
            Value::Array(a) if !a.is_empty() => sequence(a, indent + 2, true, out),
            _ => {
                scalar(item, indent + 2, out);
                out.push('\n');
            }
        }
    }
}

/// The value of a mapping entry whose key is at column `indent`, after its `:`.
fn after_indicator(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            mapping(m, indent + 2, false, out);
        }
        // go-yaml v2 (and serde_yaml) do not indent a sequence under its key.
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            sequence(a, indent, false, out);
        }
        _ => {
            out.push(' ');
            scalar(value, indent + 2, out);
            out.push('\n');
        }
    }
}

/// A scalar (or empty collection) on the current line; literal block lines go at column `block_indent`.
fn scalar(v: &Value, block_indent: usize, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // JSON number syntax is YAML number syntax (serde_json writes finite numbers only).
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => string(s, block_indent, out),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

fn string(s: &str, block_indent: usize, out: &mut String) {
    if s.contains('\n') {
        if let Some(header) = literal_header(s) {
            out.push_str(header);
            for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
                out.push('\n');
                if !line.is_empty() {
                    pad(block_indent, out);
                    out.push_str(line);
                }
            }
            return;
        }
    } else if plain_ok(s) {
        out.push_str(s);
        return;
    }
    out.push_str(&double_quoted(s));
}

/// `|` or `|-` when `s` can be a literal block scalar without an indentation indicator or keep chomping.
fn literal_header(s: &str) -> Option<&'static str> {
    let body = s.strip_suffix('\n').unwrap_or(s);
    let first_content = body.split('\n').find(|l| !l.is_empty())?;
    let simple = !body.ends_with('\n')
        && !first_content.starts_with([' ', '\t'])
        && body.chars().all(|c| c == '\n' || c == '\t' || printable(c));
    match (simple, s.ends_with('\n')) {
        (false, _) => None,
        (true, true) => Some("|"),
        (true, false) => Some("|-"),
    }
}

/// Characters YAML allows unescaped (c-printable), minus the ones YAML 1.1 treats as line breaks
/// (U+0085, U+2028, U+2029) and the byte order mark.
fn printable(c: char) -> bool {
    match c {
        '\u{20}'..='\u{7e}' => true,
        '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..='\u{10ffff}' => {
            !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
        }
        _ => false,
    }
}

/// Whether `s` can be written as a plain scalar in block context and read back as the same string.
fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let last = s.chars().last().unwrap_or(first);
    s.chars().all(printable)
        && !"-?:,[]{}#&*!|>'\"%@`=<~".contains(first)
        && first != ' '
        && last != ' '
        && last != ':'
        && !s.contains(": ")
        && !s.contains(" #")
        && !reads_as_non_string(s)
}

/// Whether a YAML 1.1 or 1.2 reader could resolve the plain scalar `s` to something other than a string.
fn reads_as_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "null", "Null", "NULL", "~", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE",
        "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    // Numbers (decimal, 0x, 0o, 0b, with `_`, base 60), timestamps and .5-style floats start with a digit
    // or a dot and a digit; infinities and NaN are dot-words.
    let mut chars = unsigned.chars();
    match (chars.next(), chars.next()) {
        (Some(c), _) if c.is_ascii_digit() => true,
        (Some('.'), Some(c)) if c.is_ascii_digit() => true,
        _ => matches!(unsigned, ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN"),
    }
}

/// A double-quoted YAML scalar; escapes everything outside printable ASCII/Unicode.
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if printable(c) => out.push(c),
            c if u32::from(c) <= 0xffff => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push_str(&format!("\\U{:08x}", u32::from(c))),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layout() {
        let v = json!({
            "z": 1,
            "a": {"list": [1, "two", {"k": "v", "b": null}, [], [1, [2]]], "s": "x"},
            "m": true,
            "e": {}
        });
        assert_eq!(
            to_string(&v),
            "a:\n  list:\n  - 1\n  - two\n  - b: null\n    k: v\n  - []\n  - - 1\n    - - 2\n  s: x\n\
             e: {}\nm: true\nz: 1\n"
        );
        assert_eq!(to_string(&json!([{"a": 1, "b": [1]}])), "- a: 1\n  b:\n  - 1\n");
        assert_eq!(to_string(&json!({})), "{}\n");
        assert_eq!(to_string(&json!([])), "[]\n");
        assert_eq!(to_string(&json!("x")), "x\n");
        assert_eq!(to_string(&json!(null)), "null\n");
        assert_eq!(to_string(&json!(1.5)), "1.5\n");
    }

    #[test]
    fn strings_that_would_change_type_are_quoted() {
        for s in [
            "yes",
            "no",
            "on",
            "off",
            "y",
            "n",
            "Yes",
            "ON",
            "true",
            "False",
            "null",
            "~",
            "",
            "1",
            "1.0",
            "1.17",
            "-1",
            "+1",
            ".5",
            "1e3",
            "0x10",
            "0o17",
            "0b11",
            "012",
            "1_000",
            "1:20",
            "2001-12-14",
            ".inf",
            "-.inf",
            ".nan",
            "<<",
            "=",
            // Conservative: every string starting with a digit is quoted, numeric-looking or not.
            "1.17.0-alpine",
            "3d",
        ] {
            let out = to_string(&json!({ "k": s }));
            assert_eq!(out, format!("k: \"{s}\"\n"), "{s}");
        }
    }

    #[test]
    fn indicators_and_special_characters_are_quoted() {
        for (s, expected) in [
            ("a: b", r#""a: b""#),
            ("- x", r#""- x""#),
            ("#c", r##""#c""##),
            ("x #c", r##""x #c""##),
            (" x", r#"" x""#),
            ("x ", r#""x ""#),
            ("x:", r#""x:""#),
            ("tab\tx", r#""tab\tx""#),
            ("\"a", r#""\"a""#),
            ("nel\u{85}", r#""nel\u0085""#),
            ("ls\u{2028}", r#""ls\u2028""#),
            ("bell\u{7}", r#""bell\u0007""#),
            ("&a", r#""&a""#),
            ("*a", r#""*a""#),
            ("!x", r#""!x""#),
            ("%x", r#""%x""#),
            ("@x", r#""@x""#),
        ] {
            assert_eq!(to_string(&json!(s)), format!("{expected}\n"), "{s}");
        }
        for s in [
            "nginx",
            "v1.17.0-alpine",
            "dc-1.registry.io/nginx:1.17.0",
            "a b",
            "NaN",
            "http://x/y?a=b",
            "é",
            "a\"b\\c",
        ] {
            assert_eq!(to_string(&json!(s)), format!("{s}\n"), "{s}");
        }
        assert_eq!(
            to_string(&json!({"": 1, "a b": 2, "k:": 3})),
            "\"\": 1\na b: 2\n\"k:\": 3\n"
        );
    }

    #[test]
    fn multi_line_strings() {
        assert_eq!(to_string(&json!({"k": "a\nb"})), "k: |-\n  a\n  b\n");
        assert_eq!(to_string(&json!({"k": "a\n\nb\n"})), "k: |\n  a\n\n  b\n");
        assert_eq!(to_string(&json!([{"k": "a\nb"}])), "- k: |-\n    a\n    b\n");
        assert_eq!(to_string(&json!(["a\nb"])), "- |-\n  a\n  b\n");
        // Cases a plain literal block cannot express go double-quoted.
        assert_eq!(to_string(&json!({"k": " a\nb"})), "k: \" a\\nb\"\n");
        assert_eq!(to_string(&json!({"k": "a\n\n"})), "k: \"a\\n\\n\"\n");
        assert_eq!(to_string(&json!({"k": "\n"})), "k: \"\\n\"\n");
        assert_eq!(to_string(&json!({"k": "a\r\nb"})), "k: \"a\\r\\nb\"\n");
    }

    #[test]
    fn long_keys_are_explicit() {
        let key = "k".repeat(1200);
        let out = to_string(&json!({ key.clone(): 1 }));
        assert_eq!(out, format!("? {key}\n: 1\n"));
    }
}
