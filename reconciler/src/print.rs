//! Printing: diagnostics (text or JSON), objects as YAML, file names for `render --out`.

use crate::Format;
use anyhow::{Context, Result};
use render::Diagnostic;
use serde_json::Value;
use std::io::Write;

/// Prints diagnostics to stderr in compiler form, with a summary line when there are any.
pub fn diagnostics_text(diags: &[Diagnostic]) {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{d}");
    }
    let (e, w) = counts(diags);
    if e + w > 0 {
        let _ = writeln!(err, "{e} error(s), {w} warning(s)");
    }
}

pub fn counts(diags: &[Diagnostic]) -> (usize, usize) {
    let e = diags.iter().filter(|d| d.is_error()).count();
    let w = diags.iter().filter(|d| d.severity == render::Severity::Warning).count();
    (e, w)
}

/// Prints `{"diagnostics": [...]}` (validate's JSON form) to stdout.
pub fn diagnostics_json(diags: &[Diagnostic]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "diagnostics": diags }))?;
    writeln!(out)?;
    Ok(())
}

pub fn diagnostics(diags: &[Diagnostic], format: Format) -> Result<()> {
    match format {
        Format::Text => {
            diagnostics_text(diags);
            Ok(())
        }
        Format::Json => diagnostics_json(diags),
    }
}

/// One object as a YAML document (without the leading `---`).
pub fn yaml(obj: &Value) -> Result<String> {
    serde_yaml::to_string(obj).context("serialising an object as YAML")
}

/// `kind[.group]` in lower case, for file names.
pub fn kind_slug(obj: &Value) -> String {
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("object")
        .to_ascii_lowercase();
    let api = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    match api.rsplit_once('/') {
        Some((g, _)) => format!("{kind}.{g}"),
        None => kind,
    }
}

/// `NNNN-kind[.group]-[namespace-]name.yaml`; the prefix keeps the apply order in a listing.
pub fn file_name(i: usize, obj: &Value) -> String {
    let meta = obj.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("unnamed");
    let ns = meta.and_then(|m| m.get("namespace")).and_then(Value::as_str);
    let base = match ns {
        Some(ns) => format!("{i:04}-{}-{ns}-{name}.yaml", kind_slug(obj)),
        None => format!("{i:04}-{}-{name}.yaml", kind_slug(obj)),
    };
    base.replace(['/', ':', '\\'], "_")
}
