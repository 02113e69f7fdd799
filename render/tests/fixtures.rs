//! Data-driven conformance tests: every `tests/fixtures/<case>/` holds a miniature repository
//! (`repo/`) and the hand-computed expected render (`expected.yaml`).
//!
//! `expected.yaml`:
//! - `clusters`: every inventory cluster with its objects in apply order (compared as JSON values);
//! - `diagnostics`: the exact multiset of error and warning diagnostics as
//!   `{severity, code, file, line, cluster?, message?}` (`message` is a substring); info
//!   diagnostics are checked only when listed.
//!
//! Run one case with `FIXTURE=<case> cargo test -p render --test fixtures`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use render::{RenderOptions, Severity, Snapshot};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn read_tree(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            read_tree(root, &p, out);
        } else {
            let rel = p.strip_prefix(root).unwrap();
            let rel = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, std::fs::read(&p).unwrap()));
        }
    }
}

#[derive(Debug)]
struct Want {
    severity: String,
    code: String,
    file: String,
    line: u64,
    cluster: Option<String>,
    message: Option<String>,
}

fn want(v: &Value) -> Want {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    Want {
        severity: s("severity").unwrap_or_default(),
        code: s("code").unwrap_or_default(),
        file: s("file").unwrap_or_default(),
        line: v.get("line").and_then(Value::as_u64).unwrap_or(0),
        cluster: s("cluster"),
        message: s("message"),
    }
}

fn check_case(dir: &Path) -> Result<(), String> {
    let mut files = Vec::new();
    read_tree(&dir.join("repo"), &dir.join("repo"), &mut files);
    let snapshot = Snapshot::from_texts(files);
    let expected_text =
        std::fs::read_to_string(dir.join("expected.yaml")).map_err(|e| format!("expected.yaml: {e}"))?;
    let expected: Value = serde_yaml::from_str(&expected_text).map_err(|e| format!("expected.yaml: {e}"))?;
    // `unreachable: [names]`: rendered as the daemon does while those clusters cannot be reached.
    let opts = RenderOptions {
        unreachable: expected
            .get("unreachable")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default(),
        ..RenderOptions::default()
    };
    let out = render::render(&snapshot, &opts);
    let mut problems = Vec::new();

    let actual = out.to_json();
    let want_clusters = expected
        .get("clusters")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let got_clusters = actual["clusters"].as_object().cloned().unwrap_or_default();
    let mut names: Vec<&String> = want_clusters.keys().chain(got_clusters.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let w = want_clusters
            .get(name)
            .cloned()
            .map(|v| if v.is_null() { Value::Array(vec![]) } else { v });
        let g = got_clusters.get(name).cloned();
        if w != g {
            problems.push(format!(
                "cluster {name}:\n  expected: {}\n  actual:   {}",
                serde_json::to_string(&w).unwrap(),
                serde_json::to_string(&g).unwrap()
            ));
        }
    }

    let wants: Vec<Want> = expected
        .get("diagnostics")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(want).collect())
        .unwrap_or_default();
    let mut remaining: Vec<&render::Diagnostic> = out.diagnostics.iter().collect();
    for w in &wants {
        let found = remaining.iter().position(|d| {
            d.severity.to_string() == w.severity
                && d.code == w.code
                && d.file == w.file
                && u64::from(d.line) == w.line
                && d.cluster == w.cluster
                && w.message.as_ref().is_none_or(|m| d.message.contains(m.as_str()))
        });
        match found {
            Some(i) => {
                remaining.remove(i);
            }
            None => problems.push(format!("missing diagnostic {w:?}")),
        }
    }
    for d in remaining {
        if d.severity != Severity::Info {
            problems.push(format!("unexpected diagnostic: {d}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn fixtures() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let filter = std::env::var("FIXTURE").ok();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/fixtures exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("expected.yaml").exists())
        .filter(|p| {
            filter
                .as_ref()
                .is_none_or(|f| p.file_name().is_some_and(|n| n.to_string_lossy() == *f))
        })
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no fixture cases found under {}", root.display());
    let mut failures = Vec::new();
    for c in &cases {
        if let Err(e) = check_case(c) {
            failures.push(format!("=== {}\n{e}", c.file_name().unwrap().to_string_lossy()));
        }
    }
    eprintln!("{} fixture case(s) checked, {} failed", cases.len(), failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
