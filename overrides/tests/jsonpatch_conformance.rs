//! The public JSON Patch conformance suite (npm `json-patch-test-suite` 1.1.0, vendored in `tests/data/`)
//! run against `overrides::jsonpatch::apply_patch`.
//!
//! Every record without `disabled: true` runs: with `expected`, the result must equal it; with `error`, the
//! patch must fail (and leave the document unchanged); with neither, it must not panic, and since such
//! records are all `test` operations meant to pass, it must succeed too.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed unwrap is a failed test

use std::panic::{catch_unwind, AssertUnwindSafe};

use serde_json::Value;

#[derive(Default, Debug)]
struct Counts {
    records: usize,
    enabled: usize,
    run: usize,
    expected: usize,
    error: usize,
    neither: usize,
}

fn load(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    match serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}")) {
        Value::Array(records) => records,
        other => panic!("{path}: expected an array of records, found {other}"),
    }
}

fn label(file: &str, i: usize, record: &Value) -> String {
    let comment = record.get("comment").and_then(Value::as_str).unwrap_or("(no comment)");
    format!("{file}[{i}] {comment}")
}

/// Runs one file; returns the counts and the failure descriptions.
fn run_file(file: &str) -> (Counts, Vec<String>) {
    let records = load(file);
    let mut counts = Counts {
        records: records.len(),
        ..Counts::default()
    };
    let mut failures = Vec::new();
    for (i, record) in records.iter().enumerate() {
        if record.get("disabled") == Some(&Value::Bool(true)) {
            continue;
        }
        counts.enabled += 1;
        let name = label(file, i, record);
        let (Some(doc), Some(patch)) = (record.get("doc"), record.get("patch")) else {
            failures.push(format!("{name}: record has no doc or patch"));
            continue;
        };
        let mut out = doc.clone();
        let result = catch_unwind(AssertUnwindSafe(|| overrides::jsonpatch::apply_patch(&mut out, patch)));
        counts.run += 1;
        let result = match result {
            Ok(r) => r,
            Err(_) => {
                failures.push(format!("{name}: panicked"));
                continue;
            }
        };
        match (record.get("expected"), record.get("error")) {
            (Some(expected), _) => {
                counts.expected += 1;
                match result {
                    Ok(()) if &out == expected => {}
                    Ok(()) => failures.push(format!("{name}: got {out}, expected {expected}")),
                    Err(e) => failures.push(format!("{name}: unexpected error: {e}")),
                }
            }
            (None, Some(why)) => {
                counts.error += 1;
                match result {
                    Err(_) if &out == doc => {}
                    Err(e) => failures.push(format!("{name}: failed ({e}) but changed the document")),
                    Ok(()) => failures.push(format!("{name}: succeeded with {out}, expected error {why}")),
                }
            }
            (None, None) => {
                counts.neither += 1;
                if let Err(e) = result {
                    failures.push(format!("{name}: unexpected error: {e}"));
                }
            }
        }
    }
    (counts, failures)
}

#[test]
fn json_patch_test_suite() {
    let mut all_failures = Vec::new();
    let mut total_run = 0;
    for file in ["tests.json", "spec_tests.json"] {
        let (counts, failures) = run_file(file);
        println!(
            "json-patch conformance {file}: {} records, {} enabled, {} run \
             ({} expected, {} error, {} neither), {} failed",
            counts.records,
            counts.enabled,
            counts.run,
            counts.expected,
            counts.error,
            counts.neither,
            failures.len()
        );
        // The suite cannot pass vacuously: every enabled record ran, and there are records.
        assert!(counts.enabled > 0, "{file}: no enabled records");
        assert_eq!(counts.run, counts.enabled, "{file}: not every enabled record ran");
        assert_eq!(counts.expected + counts.error + counts.neither, counts.run);
        total_run += counts.run;
        all_failures.extend(failures);
    }
    println!(
        "json-patch conformance: {total_run} cases run, {} failed",
        all_failures.len()
    );
    assert!(all_failures.is_empty(), "failures:\n{}", all_failures.join("\n"));
}

/// The vendored files are the pinned release: 78 + 17 records, 3 + 1 disabled.
#[test]
fn vendored_suite_is_the_pinned_release() {
    let disabled = |records: &[Value]| {
        records
            .iter()
            .filter(|r| r.get("disabled") == Some(&Value::Bool(true)))
            .count()
    };
    let tests = load("tests.json");
    let spec = load("spec_tests.json");
    assert_eq!((tests.len(), disabled(&tests)), (78, 3));
    assert_eq!((spec.len(), disabled(&spec)), (17, 1));
}
