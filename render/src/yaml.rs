//! The YAML/JSON loader: bytes to JSON values, with positions, limits and strictness.
//!
//! We drive `yaml-rust2`'s event parser ourselves instead of going through `serde_yaml` because
//! diagnostics must point at lines and columns of individual fields, and because we want to refuse
//! duplicate keys and alias bombs instead of silently accepting them. Scalars resolve with the YAML
//! 1.2 core schema (the one `serde_yaml` uses), keys become strings the way `sigs.k8s.io/yaml` does.
//!
//! Positions are not kept for every node of every document (that would cost time and memory on
//! 10,000-template repositories): the loader records each document's root position, and
//! [`locate`] re-parses one file on demand when a diagnostic needs the position of a field.

use crate::Pos;
use serde_json::{Map, Number, Value};
use std::collections::HashMap;
use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Limits that protect the loader from hostile input.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Nodes that alias expansion may add to one document.
    pub max_alias_nodes: usize,
    /// Maximum nesting depth of collections.
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_alias_nodes: 100_000,
            max_depth: 100,
        }
    }
}

/// What went wrong while loading one file. The loader stops at the first error of a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("{message}")]
    Syntax { pos: Pos, message: String },
    #[error("duplicate key `{key}` (first at line {first_line})")]
    DuplicateKey { pos: Pos, key: String, first_line: u32 },
    #[error("{message}")]
    Limit { pos: Pos, message: String },
    #[error("file is not valid UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { pos: Pos, offset: usize },
}

impl LoadError {
    pub fn pos(&self) -> Pos {
        match self {
            LoadError::Syntax { pos, .. }
            | LoadError::DuplicateKey { pos, .. }
            | LoadError::Limit { pos, .. }
            | LoadError::NotUtf8 { pos, .. } => *pos,
        }
    }
}

/// One YAML document (or the JSON file) of a source file.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedDoc {
    /// 0-based index of the document in its file.
    pub index: usize,
    /// Where the document's root node starts (its first key for a mapping).
    pub pos: Pos,
    pub value: Value,
}

/// Checks UTF-8 and returns the text, or the position of the first invalid byte.
pub fn utf8(bytes: &[u8]) -> Result<&str, LoadError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let offset = e.valid_up_to();
        let before = &bytes[..offset];
        let line = before.iter().filter(|b| **b == b'\n').count() as u32 + 1;
        let line_start = before.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&before[line_start..]).chars().count() as u32 + 1;
        LoadError::NotUtf8 {
            pos: Pos { line, column },
            offset,
        }
    })
}

/// Parses every document of a YAML stream. Empty documents (only comments, or `---` alone) are skipped.
pub fn load_yaml(text: &str, limits: Limits) -> Result<Vec<LoadedDoc>, LoadError> {
    let mut b = Builder::new(limits, None);
    b.run(text)?;
    Ok(b.docs)
}

/// Parses a JSON file. JSON is parsed by the YAML loader too (YAML 1.2 is a JSON superset), so the
/// same duplicate-key and position rules hold; a file with several top-level values is an error.
pub fn load_json(text: &str, limits: Limits) -> Result<Vec<LoadedDoc>, LoadError> {
    // serde_json gives the precise JSON grammar (no YAML-only syntax sneaks in) ...
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        return Err(LoadError::Syntax {
            pos: Pos {
                line: e.line() as u32,
                column: e.column() as u32,
            },
            message: format!("invalid JSON: {e}"),
        });
    }
    // ... and the YAML builder gives duplicate-key detection and the position index.
    load_yaml(text, limits)
}

/// Positions of every node of one document, keyed by RFC 6901 JSON pointer ("" is the root).
/// A mapping member's position is its key's.
pub type PosIndex = HashMap<String, Pos>;

/// Re-parses `text` and returns the position index of document `doc_index`. `None` if the text no
/// longer parses (it parsed once, so that only happens if the caller passes other text).
pub fn locate(text: &str, json: bool, doc_index: usize) -> Option<PosIndex> {
    let _ = json; // JSON and YAML share the builder
    let mut b = Builder::new(Limits::default(), Some(doc_index));
    b.run(text).ok()?;
    b.index.take()
}

/// Finds the position for `pointer` in an index, falling back to the nearest ancestor that has one.
pub fn lookup(index: &PosIndex, pointer: &str) -> Option<Pos> {
    let mut p = pointer;
    loop {
        if let Some(pos) = index.get(p) {
            return Some(*pos);
        }
        if p.is_empty() {
            return None;
        }
        p = match p.rfind('/') {
            Some(i) => &p[..i],
            None => "",
        };
    }
}

fn pos_of(m: &Marker) -> Pos {
    Pos {
        line: m.line() as u32,
        // yaml-rust2 reports 0-based columns (its docs say otherwise); diagnostics are 1-based.
        column: m.col() as u32 + 1,
    }
}

enum Frame {
    Seq {
        items: Vec<Value>,
        anchor: usize,
    },
    Map {
        map: Map<String, Value>,
        anchor: usize,
        /// Where the mapping-start event was reported (after the first key for block mappings).
        start: Pos,
        /// The pending key and where it was.
        key: Option<(String, Pos)>,
        /// Key -> line of first occurrence, for duplicate detection.
        lines: HashMap<String, u32>,
        /// Keys that came from `<<` merges (may be overridden by explicit keys).
        merged: Vec<String>,
    },
}

struct Builder {
    limits: Limits,
    docs: Vec<LoadedDoc>,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Value, usize)>,
    alias_nodes: usize,
    doc_index: usize,
    doc_pos: Option<Pos>,
    /// Which document to index (positions), if any.
    want_index: Option<usize>,
    index: Option<PosIndex>,
    /// Current pointer segments while indexing.
    path: Vec<String>,
}

impl Builder {
    fn new(limits: Limits, want_index: Option<usize>) -> Self {
        Builder {
            limits,
            docs: Vec::new(),
            stack: Vec::new(),
            anchors: HashMap::new(),
            alias_nodes: 0,
            doc_index: 0,
            doc_pos: None,
            want_index,
            index: None,
            path: Vec::new(),
        }
    }

    fn indexing(&self) -> bool {
        self.want_index == Some(self.doc_index)
    }

    fn run(&mut self, text: &str) -> Result<(), LoadError> {
        let mut parser = Parser::new_from_str(text);
        loop {
            let (ev, mark) = parser.next_token().map_err(|e| LoadError::Syntax {
                pos: pos_of(e.marker()),
                message: format!("invalid YAML: {}", e.info()),
            })?;
            match ev {
                Event::StreamEnd => return Ok(()),
                Event::StreamStart | Event::Nothing => {}
                Event::DocumentStart => {
                    self.anchors.clear();
                    self.alias_nodes = 0;
                    self.doc_pos = None;
                    if self.indexing() {
                        self.index = Some(PosIndex::new());
                    }
                }
                Event::DocumentEnd => {
                    self.doc_index += 1;
                }
                Event::Alias(id) => {
                    let pos = pos_of(&mark);
                    let (value, size) = self.anchors.get(&id).cloned().ok_or(LoadError::Syntax {
                        pos,
                        message: "alias to an unknown anchor".into(),
                    })?;
                    self.alias_nodes += size;
                    if self.alias_nodes > self.limits.max_alias_nodes {
                        return Err(LoadError::Limit {
                            pos,
                            message: format!(
                                "YAML alias expansion exceeds {} nodes (alias bomb?)",
                                self.limits.max_alias_nodes
                            ),
                        });
                    }
                    self.record(pos);
                    self.push_value(value, pos, 0, size)?;
                }
                Event::Scalar(text, style, anchor, tag) => {
                    let pos = pos_of(&mark);
                    if self.key_expected() {
                        self.set_key(text, pos)?;
                    } else {
                        self.record(pos);
                        let v = resolve_scalar(&text, style, tag.as_ref());
                        self.push_value(v, pos, anchor, 1)?;
                    }
                }
                Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                    let is_map = matches!(ev, Event::MappingStart(..));
                    let pos = pos_of(&mark);
                    if self.key_expected() {
                        return Err(LoadError::Syntax {
                            pos,
                            message: "complex (non-scalar) mapping keys are not supported".into(),
                        });
                    }
                    if self.stack.len() >= self.limits.max_depth {
                        return Err(LoadError::Limit {
                            pos,
                            message: format!("nesting deeper than {} levels", self.limits.max_depth),
                        });
                    }
                    self.record(pos);
                    if self.stack.is_empty() {
                        self.doc_pos = Some(pos);
                    }
                    self.stack.push(if is_map {
                        Frame::Map {
                            map: Map::new(),
                            anchor,
                            start: pos,
                            key: None,
                            lines: HashMap::new(),
                            merged: Vec::new(),
                        }
                    } else {
                        Frame::Seq {
                            items: Vec::new(),
                            anchor,
                        }
                    });
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let pos = pos_of(&mark);
                    let (value, anchor) = match self.stack.pop() {
                        Some(Frame::Seq { items, anchor }) => (Value::Array(items), anchor),
                        Some(Frame::Map { map, anchor, .. }) => (Value::Object(map), anchor),
                        None => {
                            return Err(LoadError::Syntax {
                                pos,
                                message: "unbalanced collection end".into(),
                            })
                        }
                    };
                    let size = if anchor > 0 { count_nodes(&value) } else { 0 };
                    self.push_value(value, pos, anchor, size)?;
                }
            }
        }
    }

    fn key_expected(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn set_key(&mut self, key: String, pos: Pos) -> Result<(), LoadError> {
        let indexing = self.indexing();
        // A block mapping's start event comes after its first key: move its position to that key.
        let depth = self.stack.len();
        let in_seq_or_root = depth == 1 || matches!(self.stack.get(depth.wrapping_sub(2)), Some(Frame::Seq { .. }));
        if let Some(Frame::Map { start, lines, map, .. }) = self.stack.last_mut() {
            if lines.is_empty() && map.is_empty() && *start > pos {
                *start = pos;
                if depth == 1 {
                    self.doc_pos = Some(pos);
                }
                if indexing && in_seq_or_root {
                    let segs = self.open_segments();
                    let mut ptr = String::new();
                    for s in segs {
                        ptr.push('/');
                        ptr.push_str(&s);
                    }
                    if let Some(ix) = self.index.as_mut() {
                        ix.insert(ptr, pos);
                    }
                }
            }
        }
        if let Some(Frame::Map {
            key: slot,
            lines,
            map,
            merged,
            ..
        }) = self.stack.last_mut()
        {
            if key != "<<" {
                if let Some(first) = lines.get(&key) {
                    return Err(LoadError::DuplicateKey {
                        pos,
                        key,
                        first_line: *first,
                    });
                }
                lines.insert(key.clone(), pos.line);
                // An explicit key wins over a merged one, wherever it appears.
                if let Some(i) = merged.iter().position(|k| *k == key) {
                    merged.swap_remove(i);
                    map.shift_remove(&key);
                }
            }
            *slot = Some((key.clone(), pos));
        }
        if indexing {
            self.path.push(escape(&key));
            let ptr = self.pointer();
            if let Some(ix) = self.index.as_mut() {
                ix.insert(ptr, pos);
            }
            self.path.pop();
        }
        Ok(())
    }

    /// Records the position of the node about to be created (sequence items and the root; mapping
    /// members are recorded at their key).
    fn record(&mut self, pos: Pos) {
        if !self.indexing() {
            return;
        }
        let ptr = match self.stack.last() {
            None => String::new(),
            Some(Frame::Seq { items, .. }) => {
                let mut p = self.pointer();
                p.push('/');
                p.push_str(&items.len().to_string());
                p
            }
            Some(Frame::Map { .. }) => return,
        };
        if let Some(ix) = self.index.as_mut() {
            ix.entry(ptr).or_insert(pos);
        }
        // Descend: the new node's own pointer becomes the current path while it is open.
        // (Collections push their segment here; scalars are leaves and need nothing.)
    }

    fn pointer(&self) -> String {
        // Segments of open collections: derived from the stack state.
        let mut out = String::new();
        for seg in self.open_segments() {
            out.push('/');
            out.push_str(&seg);
        }
        for seg in &self.path {
            out.push('/');
            out.push_str(seg);
        }
        out
    }

    /// The pointer segments leading to the innermost open collection.
    fn open_segments(&self) -> Vec<String> {
        let mut segs = Vec::new();
        // Each frame except the root contributes the segment under which it sits in its parent.
        for parent in self.stack.iter().take(self.stack.len().saturating_sub(1)) {
            match parent {
                Frame::Seq { items, .. } => segs.push(items.len().to_string()),
                Frame::Map { key, .. } => segs.push(key.as_ref().map(|(k, _)| escape(k)).unwrap_or_default()),
            }
        }
        segs
    }

    fn push_value(&mut self, value: Value, pos: Pos, anchor: usize, size: usize) -> Result<(), LoadError> {
        if anchor > 0 {
            self.anchors.insert(anchor, (value.clone(), size.max(1)));
        }
        match self.stack.last_mut() {
            None => {
                let root_pos = self.doc_pos.unwrap_or(pos);
                if !value.is_null() {
                    self.docs.push(LoadedDoc {
                        index: self.doc_index,
                        pos: root_pos,
                        value,
                    });
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map {
                map,
                key,
                merged,
                lines,
                ..
            }) => {
                let Some((k, kpos)) = key.take() else {
                    return Err(LoadError::Syntax {
                        pos,
                        message: "mapping value without a key".into(),
                    });
                };
                if k == "<<" {
                    merge_into(map, merged, lines, value, kpos)?;
                } else {
                    map.insert(k, value);
                }
            }
        }
        Ok(())
    }
}

/// YAML merge keys (`<<: *base` or `<<: [*a, *b]`): keys not already present are added.
fn merge_into(
    map: &mut Map<String, Value>,
    merged: &mut Vec<String>,
    lines: &HashMap<String, u32>,
    value: Value,
    pos: Pos,
) -> Result<(), LoadError> {
    let sources = match value {
        Value::Object(m) => vec![m],
        Value::Array(items) => {
            let mut v = Vec::new();
            for it in items {
                match it {
                    Value::Object(m) => v.push(m),
                    _ => {
                        return Err(LoadError::Syntax {
                            pos,
                            message: "merge key `<<` expects a mapping or a list of mappings".into(),
                        })
                    }
                }
            }
            v
        }
        _ => {
            return Err(LoadError::Syntax {
                pos,
                message: "merge key `<<` expects a mapping or a list of mappings".into(),
            })
        }
    };
    for src in sources {
        for (k, v) in src {
            if !map.contains_key(&k) && !lines.contains_key(&k) {
                merged.push(k.clone());
                map.insert(k, v);
            }
        }
    }
    Ok(())
}

fn count_nodes(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(count_nodes).sum::<usize>(),
        Value::Object(m) => 1 + m.values().map(count_nodes).sum::<usize>(),
        _ => 1,
    }
}

/// RFC 6901 escaping of one pointer segment.
pub fn escape(seg: &str) -> String {
    if seg.contains(['~', '/']) {
        seg.replace('~', "~0").replace('/', "~1")
    } else {
        seg.to_string()
    }
}

fn resolve_scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Value {
    if let Some(tag) = tag {
        if tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!" {
            match tag.suffix.as_str() {
                "str" | "binary" | "timestamp" => return Value::String(text.to_string()),
                "null" => return Value::Null,
                "bool" | "int" | "float" => {
                    return resolve_plain(text).unwrap_or_else(|| Value::String(text.to_string()))
                }
                _ => {}
            }
        }
    }
    if style != TScalarStyle::Plain {
        return Value::String(text.to_string());
    }
    resolve_plain(text).unwrap_or_else(|| Value::String(text.to_string()))
}

/// YAML 1.2 core schema resolution of a plain scalar; `None` means "a string".
fn resolve_plain(t: &str) -> Option<Value> {
    match t {
        "" | "~" | "null" | "Null" | "NULL" => return Some(Value::Null),
        "true" | "True" | "TRUE" => return Some(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Some(Value::Bool(false)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF" | ".nan" | ".NaN"
        | ".NAN" => {
            // JSON cannot hold these; Kubernetes would reject them anyway. Keep the text.
            return None;
        }
        _ => {}
    }
    let first = t.as_bytes()[0];
    if !(first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.') {
        return None;
    }
    if let Some(hex) = t.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(|n| Value::Number(n.into()));
    }
    if let Some(oct) = t.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok().map(|n| Value::Number(n.into()));
    }
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = t.parse::<i64>() {
            return Some(Value::Number(n.into()));
        }
        if let Ok(n) = t.trim_start_matches('+').parse::<u64>() {
            return Some(Value::Number(n.into()));
        }
        return t.parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number);
    }
    // Core-schema float: [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
    if is_core_float(digits) {
        return t.parse::<f64>().ok().and_then(Number::from_f64).map(Value::Number);
    }
    None
}

fn is_core_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let s2 = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - s2;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let s3 = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == s3 {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Value {
        let docs = load_yaml(text, Limits::default()).unwrap();
        assert_eq!(docs.len(), 1);
        docs.into_iter().next().unwrap().value
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let v = one("a: 1\nb: -2\nc: 1.5\nd: true\ne: yes\nf: ~\ng: '1'\nh: 0x10\ni: 1e3\nj: 01\nk: .5\nl: 1.2.3\n");
        assert_eq!(
            v,
            json!({"a": 1, "b": -2, "c": 1.5, "d": true, "e": "yes", "f": null, "g": "1", "h": 16,
                   "i": 1000.0, "j": 1, "k": 0.5, "l": "1.2.3"})
        );
    }

    #[test]
    fn documents_keep_their_root_position() {
        let docs = load_yaml(
            "# c\napiVersion: v1\nkind: A\n---\n\n---\n  # x\nkind: B\n",
            Limits::default(),
        )
        .unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].pos, Pos { line: 2, column: 1 });
        assert_eq!(docs[1].pos.line, 8);
        assert_eq!(docs[1].index, 2);
    }

    #[test]
    fn duplicate_keys_are_refused() {
        let e = load_yaml("a: 1\nb:\n  c: 1\n  c: 2\n", Limits::default()).unwrap_err();
        assert!(matches!(e, LoadError::DuplicateKey { first_line: 3, .. }), "{e:?}");
        assert_eq!(e.pos().line, 4);
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let p = i - 1;
            s.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let e = load_yaml(&s, Limits::default()).unwrap_err();
        assert!(matches!(e, LoadError::Limit { .. }), "{e:?}");
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow() {
        let s = "[".repeat(5000);
        assert!(load_yaml(&s, Limits::default()).is_err());
    }

    #[test]
    fn merge_keys_and_aliases_work() {
        let v = one("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  y: 3\n");
        assert_eq!(v["d"], json!({"x": 1, "y": 3}));
    }

    #[test]
    fn positions_point_at_keys_and_items() {
        let text = "apiVersion: v1\nspec:\n  rules:\n  - path: /a\n    op: x\n  - path: /b\n";
        let ix = locate(text, false, 0).unwrap();
        assert_eq!(ix.get("/spec").unwrap().line, 2);
        assert_eq!(ix.get("/spec/rules/1").unwrap().line, 6);
        assert_eq!(ix.get("/spec/rules/0/op").unwrap().line, 5);
        assert_eq!(lookup(&ix, "/spec/rules/1/nope/deeper").unwrap().line, 6);
    }

    #[test]
    fn non_utf8_names_the_line() {
        let e = utf8(b"a: 1\nb: \xff\n").unwrap_err();
        assert_eq!(e.pos(), Pos { line: 2, column: 4 });
    }

    #[test]
    fn json_is_strict() {
        assert!(load_json("{\"a\": 1,}", Limits::default()).is_err());
        assert!(load_json("{\"a\": 1, \"a\": 2}", Limits::default()).is_err());
        assert_eq!(
            load_json("{\"a\": [1]}", Limits::default()).unwrap()[0].value,
            json!({"a": [1]})
        );
    }
}
