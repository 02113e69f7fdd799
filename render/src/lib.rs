//! # render: from a repository snapshot to per-cluster object sets
//!
//! This crate is flotilla's pure core. It takes a [`Snapshot`] (the files of a Git commit or working
//! tree, already read into memory by the caller) and produces, for every member cluster of the
//! inventory, the exact list of Kubernetes objects that cluster must hold, together with
//! [`Diagnostic`]s about everything that is wrong or surprising in the repository.
//!
//! The semantics are Karmada v1.16's, reproduced offline: `PropagationPolicy` /
//! `ClusterPropagationPolicy` choice and placement (affinity, taints, spread constraints, replica
//! division), then `ClusterOverridePolicy` / `OverridePolicy` overrides (via the `overrides` crate).
//! The deliberate differences are documented in `docs/karmada-differences.md`.
//!
//! ## Main types
//! - [`Snapshot`]: the input files; [`RepoConfig`]: the parsed `flotilla.yaml`.
//! - [`repo::Repo`]: the classified repository (templates, policies, clusters) with positions.
//! - [`Output`]: per-cluster objects in apply order plus sorted diagnostics; [`Output::to_json`] is
//!   the `render --format json` contract.
//! - [`explain::Explanation`]: why one template lands where it lands.
//!
//! ## Key design decision
//! No IO, no clock, no randomness, no hash-map iteration order in any output: the same snapshot
//! renders byte-identical output on every run and machine. Diagnostics are data: one bad file never
//! hides the others, and nothing here panics on bad input.
//!
//! ## Example
//! ```
//! let snap = render::Snapshot::from_texts([
//!     ("clusters.yaml", "apiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {name: member1}\n"),
//!     ("app.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\ndata: {k: v}\n"),
//!     ("pp.yaml", "apiVersion: policy.karmada.io/v1alpha1\nkind: PropagationPolicy\nmetadata: {name: all}\n\
//!                  spec:\n  resourceSelectors: [{apiVersion: v1, kind: ConfigMap}]\n"),
//! ]);
//! let out = render::render(&snap, &render::RenderOptions::default());
//! assert_eq!(out.clusters["member1"].len(), 1);
//! assert!(out.diagnostics.iter().all(|d| !d.is_error()));
//! ```

// Diagnostics are returned by value as the error of a few hot but rarely failing functions; boxing
// them would add an allocation to the common path for no gain.
#![allow(clippy::result_large_err)]

pub mod checks;
pub mod choose;
pub mod deps;
pub mod diagnostic;
pub mod explain;
pub mod inventory;
pub mod model;
pub mod names;
pub mod overriding;
pub mod pipeline;
pub mod placement;
pub mod repo;
pub mod schema;
pub mod scope;
pub mod selector;
pub mod snapshot;
pub mod yaml;

pub use diagnostic::{Diagnostic, Severity};
pub use pipeline::{Emit, Output, RenderOptions};
pub use snapshot::{RepoConfig, Snapshot, SourceFile};

use serde::Serialize;
use std::fmt;

/// A 1-based position in a file (0 = unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

/// The identity of an object: API group, kind, namespace ("" when cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ObjectRef {
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    /// `Kind/name`, `Kind ns/name`, with the group when it is not core: `Deployment.apps ns/name`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.kind)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if self.namespace.is_empty() {
            write!(f, " {}", self.name)
        } else {
            write!(f, " {}/{}", self.namespace, self.name)
        }
    }
}

/// Renders a snapshot.
pub fn render(snapshot: &Snapshot, opts: &RenderOptions) -> Output {
    let repo = repo::load(snapshot);
    pipeline::run(&repo, opts).0
}

impl Output {
    /// Whether any error diagnostic exists (exit code 1, and `apply` refuses the commit).
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The `render --format json` document: `{"clusters": {...}, "diagnostics": [...]}`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "clusters": self.clusters,
            "diagnostics": self.diagnostics,
        })
    }

    /// Writes the JSON document compactly, with a trailing newline: byte-identical to serialising
    /// [`Output::to_json`] compactly. With [`Emit::Json`] the objects were serialised during the render.
    pub fn write_json<W: std::io::Write>(&self, mut w: W) -> std::io::Result<()> {
        w.write_all(b"{\"clusters\":{")?;
        let mut first = true;
        let mut entry = |w: &mut W, name: &str, segments: &[&[u8]]| -> std::io::Result<()> {
            if !std::mem::take(&mut first) {
                w.write_all(b",")?;
            }
            serde_json::to_writer(&mut *w, name)?;
            w.write_all(b":[")?;
            for (i, seg) in segments.iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                w.write_all(seg)?;
            }
            w.write_all(b"]")
        };
        match &self.json {
            Some(json) => {
                for (name, segments) in json {
                    let segs: Vec<&[u8]> = segments.iter().map(Vec::as_slice).collect();
                    entry(&mut w, name, &segs)?;
                }
            }
            None => {
                for (name, objs) in &self.clusters {
                    let mut body = Vec::new();
                    for (i, obj) in objs.iter().enumerate() {
                        if i > 0 {
                            body.push(b',');
                        }
                        serde_json::to_writer(&mut body, obj.as_ref())?;
                    }
                    entry(&mut w, name, &[&body])?;
                }
            }
        }
        w.write_all(b"},\"diagnostics\":")?;
        serde_json::to_writer(&mut w, &self.diagnostics)?;
        w.write_all(b"}\n")
    }
}
