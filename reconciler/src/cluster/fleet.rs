//! Applying a whole commit to the fleet: refuse a commit with errors, then every cluster concurrently.

use super::apply::{apply_cluster_observed, ApplyOptions, Desired};
use super::changeset::ChangeSet;
use super::{client_with_timeout, Member, REQUEST_TIMEOUT};
use anyhow::{bail, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use kube::config::Kubeconfig;
use render::{Diagnostic, RenderOptions, Snapshot};
use serde_json::Value;
use std::sync::Arc;

/// What to apply where.
#[derive(Debug, Clone, Default)]
pub struct FleetArgs {
    pub prune: bool,
    pub dry_run: bool,
    pub allow_mass_prune: bool,
    /// Apply also members that provably hold their desired body (see [`super::unchanged`]).
    pub reapply_all: bool,
    /// Only these clusters (all when empty).
    pub clusters: Vec<String>,
    /// ApplySet parent name (default `flotilla-applyset`).
    pub applyset: Option<String>,
    /// How long a request may wait for an answer (default [`REQUEST_TIMEOUT`]).
    pub request_timeout: Option<std::time::Duration>,
    /// Show a progress bar per cluster on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
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

pub(crate) fn object_ref(o: &Value) -> render::ObjectRef {
    let s = |p: &str| o.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    let api = s("/apiVersion");
    render::ObjectRef {
        group: api.rsplit_once('/').map_or(String::new(), |(g, _)| g.to_string()),
        kind: s("/kind"),
        namespace: s("/metadata/namespace"),
        name: s("/metadata/name"),
    }
}

/// One cluster's part of a plan.
#[derive(Debug, Clone)]
pub struct PlannedCluster {
    pub name: String,
    /// The kubeconfig context reaching it.
    pub context: String,
    /// Its objects in apply order.
    pub desired: Vec<Desired>,
}

/// A rendered commit ready to apply.
#[derive(Debug, Clone)]
pub struct Plan {
    pub commit: Option<String>,
    /// `pruneGuard` of the repository's config (percent, default 50).
    pub prune_guard: u32,
    /// Inventory order.
    pub clusters: Vec<PlannedCluster>,
    /// The render's non-error diagnostics.
    pub diagnostics: Vec<Diagnostic>,
    /// The commit's routing plan (every inventory cluster, whatever `only` says): what the daemon
    /// builds the endpoint map configs from.
    pub routing: Arc<ebpf::plan::Plan>,
}

/// Renders `snapshot` for the clusters `only` (all when empty): `Err` with the diagnostics when the
/// commit has errors (nothing of it may be applied anywhere).
pub fn plan(snapshot: &Snapshot, only: &[String]) -> Result<Result<Plan, Vec<Diagnostic>>> {
    plan_with(snapshot, only, &[])
}

/// [`plan`], with the clusters `unreachable` scheduled as tainted (the daemon's failover, see
/// [`RenderOptions::unreachable`]).
pub fn plan_with(
    snapshot: &Snapshot,
    only: &[String],
    unreachable: &[String],
) -> Result<Result<Plan, Vec<Diagnostic>>> {
    let repo = render::repo::load(snapshot);
    for c in only {
        if repo.cluster(c).is_none() {
            bail!("unknown cluster `{c}`");
        }
    }
    let opts = RenderOptions {
        unreachable: unreachable.to_vec(),
        ..RenderOptions::default()
    };
    let (output, routing) = crate::routing::render(&repo, &opts);
    if output.has_errors() {
        return Ok(Err(output.diagnostics));
    }
    let clusters = repo
        .clusters
        .iter()
        .filter(|c| only.is_empty() || only.contains(&c.name))
        .map(|c| PlannedCluster {
            name: c.name.clone(),
            context: c.context().to_string(),
            desired: output
                .clusters
                .get(&c.name)
                .into_iter()
                .flatten()
                .map(|o| Desired {
                    overwrite: output.overwrite.contains(&object_ref(o)),
                    obj: Arc::clone(o),
                })
                .collect(),
        })
        .collect();
    Ok(Ok(Plan {
        commit: snapshot.revision.clone(),
        prune_guard: repo.config.spec.prune_guard.unwrap_or(50),
        clusters,
        diagnostics: output.diagnostics,
        routing: Arc::new(routing),
    }))
}

/// Renders `snapshot` and applies it to the clusters of its inventory through `kubeconfig`.
pub async fn apply_fleet(snapshot: &Snapshot, kubeconfig: &Kubeconfig, args: &FleetArgs) -> Result<FleetOutcome> {
    let plan = match plan(snapshot, &args.clusters)? {
        Ok(p) => p,
        Err(diagnostics) => return Ok(FleetOutcome::Refused(diagnostics)),
    };
    let mut opts = ApplyOptions {
        prune: args.prune,
        dry_run: args.dry_run,
        prune_guard: plan.prune_guard,
        allow_mass_prune: args.allow_mass_prune,
        reapply_all: args.reapply_all,
        commit: plan.commit.clone(),
        ..ApplyOptions::default()
    };
    if let Some(a) = &args.applyset {
        opts.applyset = a.clone();
    }
    let opts = &opts;
    let bars = progress_bars(args.progress, &plan.clusters);
    let jobs = plan.clusters.iter().zip(&bars).map(|(c, bar)| async move {
        match client_with_timeout(kubeconfig, &c.context, args.request_timeout.unwrap_or(REQUEST_TIMEOUT)).await {
            Ok(client) => {
                let member = Member {
                    name: c.name.clone(),
                    context: c.context.clone(),
                    client,
                };
                let cs = apply_observed(&member, &c.desired, opts, bar).await;
                bar.finish_with_message(if cs.error.is_some() { "failed" } else { "done" });
                cs
            }
            Err(e) => {
                bar.abandon_with_message("unreachable");
                let mut cs = ChangeSet::new(&c.name);
                cs.error = Some(format!("{e:#}"));
                cs
            }
        }
    });
    let sets = futures::future::join_all(jobs).await;
    Ok(FleetOutcome::Applied {
        sets,
        diagnostics: plan.diagnostics,
    })
}

async fn apply_observed(member: &Member, desired: &[Desired], opts: &ApplyOptions, bar: &ProgressBar) -> ChangeSet {
    apply_cluster_observed(member, desired, opts, bar).await.0
}

/// One bar per cluster, drawn on stderr only when asked and stderr is a terminal (quiet in pipes and CI).
fn progress_bars(show: bool, clusters: &[PlannedCluster]) -> Vec<ProgressBar> {
    let draw = show && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let multi = MultiProgress::with_draw_target(if draw {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let width = clusters.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let style = ProgressStyle::with_template(&format!("{{prefix:>{width}}} [{{bar:30}}] {{pos}}/{{len}} {{msg}}"))
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    clusters
        .iter()
        .map(|c| {
            let bar = multi.add(ProgressBar::new(c.desired.len() as u64));
            bar.set_style(style.clone());
            bar.set_prefix(c.name.clone());
            bar
        })
        .collect()
}
