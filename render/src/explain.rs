//! `explain`: why one template lands where it lands, from a traced render.

use crate::choose::PolicyRef;
use crate::pipeline::{self, RenderOptions};
use crate::placement::Verdict;
use crate::repo::{self, Repo};
use crate::{Diagnostic, Snapshot};
use serde::Serialize;
use std::fmt::Write as _;

#[derive(Debug, Clone, Serialize)]
pub struct PolicyLine {
    pub policy: String,
    pub at: String,
    pub priority: i32,
    pub score: u8,
    pub chosen: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterLine {
    pub cluster: String,
    pub selected: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverrideLine {
    pub policy: String,
    pub at: String,
    pub rule: usize,
    pub overrider: String,
    pub operation: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterOverrides {
    pub cluster: String,
    pub operations: Vec<OverrideLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The explanation of one template.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub object: String,
    pub at: String,
    pub policies: Vec<PolicyLine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity_term: Option<String>,
    pub fallbacks: Vec<String>,
    pub required_by: Vec<String>,
    pub clusters: Vec<ClusterLine>,
    pub overrides: Vec<ClusterOverrides>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Finds the template `KIND/NAME` (kind case-insensitive, optionally `Kind.group`) in `namespace`
/// (default: `default`, or cluster-scoped).
fn find(repo: &Repo<'_>, kind: &str, name: &str, namespace: Option<&str>) -> Result<usize, String> {
    let (k, group) = match kind.split_once('.') {
        Some((k, g)) => (k, Some(g)),
        None => (kind, None),
    };
    let matches: Vec<usize> = repo
        .templates
        .iter()
        .enumerate()
        .filter(|(_, t)| {
            t.kind.eq_ignore_ascii_case(k)
                && group.is_none_or(|g| t.group == g)
                && t.name == name
                && match namespace {
                    Some(ns) => t.namespace == ns,
                    None => t.namespace == "default" || t.namespace.is_empty(),
                }
        })
        .map(|(i, _)| i)
        .collect();
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(format!(
            "no template {kind}/{name}{} in the repository",
            namespace.map(|n| format!(" in namespace {n}")).unwrap_or_default()
        )),
        _ => Err(format!("{kind}/{name} is ambiguous: give the kind as Kind.group")),
    }
}

/// Explains one template.
pub fn explain(snapshot: &Snapshot, kind: &str, name: &str, namespace: Option<&str>) -> Result<Explanation, String> {
    let repo = repo::load(snapshot);
    let ti = find(&repo, kind, name, namespace)?;
    let t = &repo.templates[ti];
    let oref = t.object_ref();
    let opts = RenderOptions {
        trace: vec![oref.clone()],
        ..RenderOptions::default()
    };
    let (out, traces) = pipeline::run(&repo, &opts);
    let trace = traces
        .into_iter()
        .find(|tr| tr.template == ti)
        .ok_or_else(|| "internal error: no trace for the template".to_string())?;
    let policy_of = |r: PolicyRef| match r {
        PolicyRef::Namespaced(i) => &repo.propagation[i],
        PolicyRef::Cluster(i) => &repo.cluster_propagation[i],
    };
    let policies = trace
        .placed
        .candidates
        .iter()
        .map(|c| {
            let p = policy_of(c.policy);
            PolicyLine {
                policy: p.display(),
                at: p.origin.at(),
                priority: c.priority,
                score: c.score.as_u8(),
                chosen: Some(c.policy) == trace.placed.policy,
            }
        })
        .collect();
    let decision = trace.placed.decision.as_ref();
    let mut clusters = Vec::new();
    for (ci, c) in repo.clusters.iter().enumerate() {
        let target = trace.placed.targets.iter().find(|(x, _)| *x == ci);
        let (selected, replicas, reason) = match (target, decision.and_then(|d| d.verdicts.get(ci))) {
            (Some((_, r)), Some(Verdict::Selected(_))) => (true, *r, "selected".to_string()),
            (Some((_, r)), _) => (true, *r, "selected: required by a propagateDeps parent".to_string()),
            (None, Some(Verdict::Excluded(why))) => (false, None, why.clone()),
            (None, Some(Verdict::Selected(_))) => (false, None, "selected".to_string()),
            (None, None) => (false, None, "no propagation policy selects the template".to_string()),
        };
        clusters.push(ClusterLine {
            cluster: c.name.clone(),
            selected,
            replicas,
            reason,
        });
    }
    let overrides = trace
        .overrides
        .iter()
        .map(|(ci, steps, err)| ClusterOverrides {
            cluster: repo.clusters[*ci].name.clone(),
            operations: steps
                .iter()
                .map(|s| OverrideLine {
                    policy: s.policy.clone(),
                    at: s.at.clone(),
                    rule: s.rule,
                    overrider: s.overrider.clone(),
                    operation: s.operation.clone(),
                })
                .collect(),
            error: err.clone(),
        })
        .collect();
    let oref_s = oref.to_string();
    Ok(Explanation {
        object: oref_s.clone(),
        at: t.origin.at(),
        policies,
        strategy: decision.map(|d| d.strategy.describe().to_string()),
        affinity_term: decision
            .and_then(|d| d.term.as_ref())
            .map(|(i, n)| format!("clusterAffinities[{i}] ({n})")),
        fallbacks: decision.map(|d| d.fallbacks.clone()).unwrap_or_default(),
        required_by: trace
            .placed
            .required_by
            .iter()
            .map(|&p| repo.templates[p].object_ref().to_string())
            .collect(),
        clusters,
        overrides,
        diagnostics: out
            .diagnostics
            .into_iter()
            .filter(|d| d.object.as_deref() == Some(oref_s.as_str()))
            .collect(),
    })
}

impl Explanation {
    /// The human form.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{} ({})", self.object, self.at);
        let _ = writeln!(s, "\npropagation policy:");
        if self.policies.is_empty() {
            let _ = writeln!(
                s,
                "  none matches: the template is not propagated by a policy of its own"
            );
        }
        for p in &self.policies {
            let _ = writeln!(
                s,
                "  {} {} (priority {}, score {}) at {}",
                if p.chosen { "chosen:" } else { "beaten:" },
                p.policy,
                p.priority,
                p.score,
                p.at
            );
        }
        if !self.required_by.is_empty() {
            let _ = writeln!(s, "  also required by (propagateDeps): {}", self.required_by.join(", "));
        }
        if let Some(st) = &self.strategy {
            let _ = writeln!(s, "\nreplica scheduling: {st}");
        }
        if let Some(t) = &self.affinity_term {
            let _ = writeln!(s, "affinity term used: {t}");
        }
        for f in &self.fallbacks {
            let _ = writeln!(s, "  earlier term failed: {f}");
        }
        let _ = writeln!(s, "\nclusters:");
        for c in &self.clusters {
            let rep = c.replicas.map(|r| format!(" replicas={r}")).unwrap_or_default();
            let _ = writeln!(
                s,
                "  {:<24} {}{} ({})",
                c.cluster,
                if c.selected { "selected" } else { "excluded" },
                rep,
                c.reason
            );
        }
        if !self.overrides.is_empty() {
            let _ = writeln!(s, "\noverrides:");
        }
        for o in &self.overrides {
            let _ = writeln!(s, "  {}:", o.cluster);
            if o.operations.is_empty() && o.error.is_none() {
                let _ = writeln!(s, "    (none)");
            }
            for op in &o.operations {
                let _ = writeln!(
                    s,
                    "    {} rule {} {}: {} ({})",
                    op.policy, op.rule, op.overrider, op.operation, op.at
                );
            }
            if let Some(e) = &o.error {
                let _ = writeln!(s, "    error: {e} (the object is not rendered for this cluster)");
            }
        }
        if !self.diagnostics.is_empty() {
            let _ = writeln!(s, "\ndiagnostics:");
            for d in &self.diagnostics {
                let _ = writeln!(s, "  {d}");
            }
        }
        s
    }
}
