//! Applying a whole commit to the fleet: refuse a commit with errors, then every cluster concurrently.

use super::apply::{apply_cluster, ApplyOptions, Desired};
use super::changeset::ChangeSet;
use super::{client_for, Member};
use anyhow::{bail, Result};
use kube::config::Kubeconfig;
use render::{Diagnostic, RenderOptions, Snapshot};
use serde_json::Value;

/// What to apply where.
#[derive(Debug, Clone, Default)]
pub struct FleetArgs {
    pub prune: bool,
    pub dry_run: bool,
    pub allow_mass_prune: bool,
    /// Only these clusters (all when empty).
    pub clusters: Vec<String>,
    /// ApplySet parent name (default `flotilla-applyset`).
    pub applyset: Option<String>,
}

/// The outcome of one apply of one commit.
#[derive(Debug, Clone)]
pub enum FleetOutcome {
    /// The commit has error diagnostics: nothing was applied anywhere.
    Refused(Vec<Diagnostic>),
    /// Applied: one change set per cluster (inventory order), plus the render's non-error diagnostics.
    Applied {
        sets: Vec<ChangeSet>,
        diagnostics: Vec<Diagnostic>,
    },
}

fn object_ref(o: &Value) -> render::ObjectRef {
    let s = |p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    let api = s("/apiVersion");
    render::ObjectRef {
        group: api.rsplit_once('/').map_or(String::new(), |(g, _)| g.to_string()),
        kind: s("/kind"),
        namespace: s("/metadata/namespace"),
        name: s("/metadata/name"),
    }
}

/// Renders `snapshot` and applies it to the clusters of its inventory through `kubeconfig`.
pub async fn apply_fleet(snapshot: &Snapshot, kubeconfig: &Kubeconfig, args: &FleetArgs) -> Result<FleetOutcome> {
    let repo = render::repo::load(snapshot);
    for c in &args.clusters {
        if repo.cluster(c).is_none() {
            bail!("unknown cluster `{c}`");
        }
    }
    let (output, _) = crate::routing::render(&repo, &RenderOptions::default());
    if output.has_errors() {
        return Ok(FleetOutcome::Refused(output.diagnostics));
    }
    let mut opts = ApplyOptions {
        prune: args.prune,
        dry_run: args.dry_run,
        prune_guard: repo.config.spec.prune_guard.unwrap_or(50),
        allow_mass_prune: args.allow_mass_prune,
        commit: snapshot.revision.clone(),
        ..ApplyOptions::default()
    };
    if let Some(a) = &args.applyset {
        opts.applyset = a.clone();
    }
    let targets: Vec<(String, String, Vec<Desired>)> = repo
        .clusters
        .iter()
        .filter(|c| args.clusters.is_empty() || args.clusters.contains(&c.name))
        .map(|c| {
            let want = output
                .clusters
                .get(&c.name)
                .into_iter()
                .flatten()
                .map(|o| Desired {
                    overwrite: output.overwrite.contains(&object_ref(o)),
                    obj: Value::clone(o),
                })
                .collect();
            (c.name.clone(), c.context().to_string(), want)
        })
        .collect();
    let opts = &opts;
    let jobs = targets.iter().map(|(name, context, want)| async move {
        match client_for(kubeconfig, context).await {
            Ok(client) => {
                let member = Member {
                    name: name.clone(),
                    context: context.clone(),
                    client,
                };
                apply_cluster(&member, want, opts).await
            }
            Err(e) => {
                let mut cs = ChangeSet::new(name);
                cs.error = Some(format!("{e:#}"));
                cs
            }
        }
    });
    let sets = futures::future::join_all(jobs).await;
    Ok(FleetOutcome::Applied {
        sets,
        diagnostics: output.diagnostics,
    })
}
