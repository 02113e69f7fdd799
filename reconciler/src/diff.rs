//! `flotilla diff` (offline): render two revisions and print a unified diff per cluster and object.
//!
//! Pairing desired-before with desired-after is a pure step ([`pair`]); the printed diff is derived
//! from it. Secret values are never printed: keys are shown, values replaced by markers that say
//! whether they changed.

use crate::{print, source, Format};
use anyhow::Result;
use render::{Output, RenderOptions};
use serde::Serialize;
use serde_json::Value;
use similar::TextDiff;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// The identity of a rendered object inside one cluster's set.
type Key = (String, String, String, String);

fn key(obj: &Value) -> Key {
    let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    let group = s("/apiVersion")
        .rsplit_once('/')
        .map_or(String::new(), |(g, _)| g.to_string());
    (group, s("/kind"), s("/metadata/namespace"), s("/metadata/name"))
}

fn label(k: &Key) -> String {
    let kind = if k.0.is_empty() {
        k.1.clone()
    } else {
        format!("{}.{}", k.1, k.0)
    };
    if k.2.is_empty() {
        format!("{kind}/{}", k.3)
    } else {
        format!("{kind}/{}/{}", k.2, k.3)
    }
}

/// One object's change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub object: String,
    pub action: &'static str,
    /// Unified diff of the YAML forms (Secret values redacted).
    pub diff: String,
}

/// One cluster's changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClusterDiff {
    pub cluster: String,
    pub created: usize,
    pub changed: usize,
    pub deleted: usize,
    pub changes: Vec<Change>,
}

/// Replaces Secret values by markers; a value that differs from `other`'s is marked as changed.
fn redact(obj: &Value, other: Option<&Value>, side: &str) -> Value {
    let mut v = obj.clone();
    if obj.get("kind").and_then(Value::as_str) != Some("Secret") {
        return v;
    }
    for field in ["data", "stringData"] {
        if let Some(Value::Object(m)) = v.get_mut(field) {
            for (k, val) in m.iter_mut() {
                let same = other.and_then(|o| o.get(field)).and_then(|d| d.get(k)) == Some(&*val);
                *val = Value::String(if same {
                    "<redacted>".into()
                } else {
                    format!("<redacted: {side} value>")
                });
            }
        }
    }
    v
}

/// Pairs two renders and computes each cluster's changes (clusters of either side).
pub fn pair(old: &Output, new: &Output) -> Result<Vec<ClusterDiff>> {
    let conv = |o: &Output| -> BTreeMap<String, Vec<Value>> {
        o.clusters
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(|x| Value::clone(x)).collect()))
            .collect()
    };
    pair_sets(&conv(old), &conv(new))
}

/// Pairs two sets of per-cluster objects (two renders, or live and predicted objects) by group, kind,
/// namespace and name.
pub fn pair_sets(old: &BTreeMap<String, Vec<Value>>, new: &BTreeMap<String, Vec<Value>>) -> Result<Vec<ClusterDiff>> {
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    let empty = Vec::new();
    let mut out = Vec::new();
    for name in names {
        let a: BTreeMap<Key, &Value> = old.get(name).unwrap_or(&empty).iter().map(|o| (key(o), o)).collect();
        let b: BTreeMap<Key, &Value> = new.get(name).unwrap_or(&empty).iter().map(|o| (key(o), o)).collect();
        let mut cd = ClusterDiff {
            cluster: name.clone(),
            created: 0,
            changed: 0,
            deleted: 0,
            changes: Vec::new(),
        };
        let mut keys: Vec<&Key> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let (x, y) = (a.get(k).copied(), b.get(k).copied());
            let action = match (x, y) {
                (None, Some(_)) => "created",
                (Some(_), None) => "deleted",
                (Some(x), Some(y)) if x != y => "changed",
                _ => continue,
            };
            let ya = x
                .map(|x| print::yaml(&redact(x, y, "old")))
                .transpose()?
                .unwrap_or_default();
            let yb = y
                .map(|y| print::yaml(&redact(y, x, "new")))
                .transpose()?
                .unwrap_or_default();
            let l = format!("{name}/{}", label(k));
            let diff = TextDiff::from_lines(&ya, &yb)
                .unified_diff()
                .context_radius(3)
                .header(&format!("a/{l}"), &format!("b/{l}"))
                .to_string();
            match action {
                "created" => cd.created += 1,
                "deleted" => cd.deleted += 1,
                _ => cd.changed += 1,
            }
            cd.changes.push(Change {
                object: label(k),
                action,
                diff,
            });
        }
        out.push(cd);
    }
    Ok(out)
}

/// Prints diffs in text or JSON form; returns whether anything differs.
pub fn print_diffs(diffs: &[ClusterDiff], diagnostics: &[render::Diagnostic], format: Format) -> Result<bool> {
    let differs = diffs.iter().any(|d| !d.changes.is_empty());
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(
                &mut out,
                &serde_json::json!({"clusters": diffs, "diagnostics": diagnostics}),
            )?;
            writeln!(out)?;
        }
        Format::Text => {
            for d in diffs {
                for c in &d.changes {
                    out.write_all(c.diff.as_bytes())?;
                }
            }
            for d in diffs {
                writeln!(
                    out,
                    "{}: +{} created ~{} changed -{} deleted",
                    d.cluster, d.created, d.changed, d.deleted
                )?;
            }
            drop(out);
            print::diagnostics_text(diagnostics);
        }
    }
    Ok(differs)
}

/// `flotilla diff --live`: render (`--to REV` or the working tree), then per cluster a server-side dry
/// run against the live objects.
pub fn run_live(
    repo: &Path,
    to: Option<&str>,
    kubeconfig: Option<&Path>,
    clusters: &[String],
    applyset: Option<&str>,
    format: Format,
) -> Result<ExitCode> {
    use crate::cluster::{apply::Desired, client_for, live, read_kubeconfig, Member};
    let snap = source::read(repo, to)?;
    let repo_l = render::repo::load(&snap);
    let (out, _) = crate::routing::render(&repo_l, &RenderOptions::default());
    let kubeconfig = read_kubeconfig(kubeconfig)?;
    let parent = applyset.unwrap_or(crate::cluster::applyset::PARENT_NAME).to_string();
    let runtime = crate::runtime()?;
    let mut live_sets = BTreeMap::new();
    let mut predicted_sets = BTreeMap::new();
    let mut failed = false;
    for c in repo_l
        .clusters
        .iter()
        .filter(|c| clusters.is_empty() || clusters.contains(&c.name))
    {
        let desired: Vec<Desired> = out
            .clusters
            .get(&c.name)
            .into_iter()
            .flatten()
            .map(|o| Desired {
                obj: std::sync::Arc::clone(o),
                overwrite: out.overwrite.contains(&crate::cluster::fleet::object_ref(o)),
            })
            .collect();
        let result = runtime.block_on(async {
            let client = client_for(&kubeconfig, c.context())
                .await
                .map_err(|e| format!("{e:#}"))?;
            let member = Member {
                name: c.name.clone(),
                context: c.context().to_string(),
                client,
            };
            live::live_sides(&member, &desired, &parent).await
        });
        match result {
            Ok(sides) => {
                for conflict in &sides.conflicts {
                    eprintln!(
                        "{}: {conflict} exists and is not managed by flotilla (left alone under Abort)",
                        c.name
                    );
                }
                live_sets.insert(c.name.clone(), sides.live);
                predicted_sets.insert(c.name.clone(), sides.predicted);
            }
            Err(e) => {
                eprintln!("{}: {e}", c.name);
                failed = true;
            }
        }
    }
    let diffs = pair_sets(&live_sets, &predicted_sets)?;
    let differs = print_diffs(&diffs, &out.diagnostics, format)?;
    Ok(if failed {
        ExitCode::from(2)
    } else if differs || out.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `flotilla diff --from REV --to REV`.
pub fn run(repo: &Path, from: Option<&str>, to: Option<&str>, clusters: &[String], format: Format) -> Result<ExitCode> {
    let old_snap = source::read(repo, Some(from.unwrap_or("HEAD")))?;
    let new_snap = source::read(repo, to)?;
    let opts = RenderOptions {
        clusters: clusters.to_vec(),
        ..RenderOptions::default()
    };
    let old = crate::routing::render_snapshot(&old_snap, &opts);
    let new = crate::routing::render_snapshot(&new_snap, &opts);
    let diffs = pair(&old, &new)?;
    let differs = print_diffs(&diffs, &new.diagnostics, format)?;
    Ok(if differs || new.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_redacted_but_changes_are_visible() {
        let a = json!({"kind": "Secret", "data": {"same": "c2FtZQ==", "pw": "b2xk"}});
        let b = json!({"kind": "Secret", "data": {"same": "c2FtZQ==", "pw": "bmV3"}});
        let ra = redact(&a, Some(&b), "old");
        assert_eq!(ra["data"]["same"], "<redacted>");
        assert_eq!(ra["data"]["pw"], "<redacted: old value>");
        let text = serde_json::to_string(&ra).unwrap();
        assert!(!text.contains("b2xk"));
    }
}
