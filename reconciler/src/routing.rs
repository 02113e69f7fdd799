//! The routing step that follows every render in `reconciler`: plan cross-cluster routing (crate
//! `flotilla-ebpf`) and add the generated `<service>-eastwest` Services to the per-cluster sets.
//!
//! `render` is pure and knows nothing of routing; the objects routing adds are derived from a
//! rendered commit, so they are merged here, after the render, by every command that shows or
//! applies per-cluster sets (`render`, `diff`, `diff --live`, `apply`) or checks a commit
//! (`validate`). Generated objects are not templates: override policies do not apply to them.

use ebpf::plan::Plan;
use render::pipeline::apply_rank;
use render::repo::Repo;
use render::{Emit, Output, RenderOptions};
use serde_json::Value;
use std::sync::Arc;

/// The apply-order key of a rendered object (see `render::pipeline::apply_rank`).
fn apply_key(obj: &Value) -> (u8, String, String, String, String) {
    let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    let group = s("/apiVersion")
        .rsplit_once('/')
        .map_or(String::new(), |(g, _)| g.to_string());
    let kind = s("/kind");
    (
        apply_rank(&group, &kind),
        group,
        kind,
        s("/metadata/namespace"),
        s("/metadata/name"),
    )
}

/// Renders a loaded repository, then plans routing and merges the generated objects in apply order.
///
/// With [`Emit::Json`] objects are serialised while rendering and cannot be merged afterwards; when
/// the repository exports a Service the render keeps values instead (the printed bytes are the
/// same, see `Output::write_json`).
pub fn render(repo: &Repo<'_>, opts: &RenderOptions) -> (Output, Plan) {
    let mut opts = opts.clone();
    if opts.emit == Emit::Json && ebpf::exports_any(repo) {
        opts.emit = Emit::Values;
    }
    let (mut output, _) = render::pipeline::run(repo, &opts);
    let plan = ebpf::plan::plan(repo, &output);
    if opts.emit == Emit::Values {
        for (cluster, objs) in ebpf::eastwest_services(&plan) {
            let Some(list) = output.clusters.get_mut(&cluster) else {
                continue; // filtered out by --cluster
            };
            for obj in objs {
                let key = apply_key(&obj);
                let at = list.partition_point(|o| apply_key(o) < key);
                list.insert(at, Arc::new(obj));
            }
        }
    }
    if !plan.diagnostics.is_empty() {
        output.diagnostics.extend(plan.diagnostics.iter().cloned());
        render::diagnostic::finish(&mut output.diagnostics);
    }
    (output, plan)
}

/// [`render`] of a snapshot.
pub fn render_snapshot(snapshot: &render::Snapshot, opts: &RenderOptions) -> Output {
    let repo = render::repo::load(snapshot);
    render(&repo, opts).0
}
