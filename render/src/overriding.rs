//! Override policies applied to one template on one cluster (SPEC §5): matching, order, errors.

use crate::checks::Rejected;
use crate::diagnostic::{code, Diagnostic};
use crate::inventory::affinity_matches;
use crate::model::{ResourceSelector, RuleWithCluster};
use crate::repo::{OverridePolicy, Repo, Template};
use crate::selector::{score_in, Score};
use overrides::{apply_overriders, OverriderKind};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};

/// A policy in one of the two lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpRef {
    Cluster(usize),
    Namespaced(usize),
}

/// One applied override operation, for `explain`.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub policy: String,
    /// `file:line` of the overrider entry.
    pub at: String,
    pub rule: usize,
    pub overrider: String,
    pub operation: String,
}

struct Prepared {
    rules: Vec<(RuleWithCluster, String)>,
    /// rules × clusters: whether the rule's targetCluster matches.
    targets: Vec<Vec<bool>>,
}

/// Override policies prepared for a render.
pub struct OverrideIndex<'r> {
    repo: &'r Repo<'r>,
    cops: Vec<Option<Prepared>>,
    ops: Vec<Option<Prepared>>,
    /// Whether a policy's rule ever targeted a rendered template (for W012); set from several threads.
    used_cop: Vec<AtomicBool>,
    used_op: Vec<AtomicBool>,
}

fn prepare(repo: &Repo<'_>, p: &OverridePolicy, rejected: bool) -> Option<Prepared> {
    if rejected {
        return None;
    }
    let rules = p.spec.rules();
    let targets = rules
        .iter()
        .map(|(r, _)| {
            repo.clusters
                .iter()
                .map(|c| {
                    r.target_cluster
                        .as_ref()
                        .is_none_or(|tc| affinity_matches(tc, c).is_ok())
                })
                .collect()
        })
        .collect();
    Some(Prepared { rules, targets })
}

impl<'r> OverrideIndex<'r> {
    pub fn new(repo: &'r Repo<'r>, rejected: &Rejected) -> Self {
        let cops = repo
            .cluster_overrides
            .iter()
            .zip(&rejected.cluster_overrides)
            .map(|(p, r)| prepare(repo, p, *r))
            .collect();
        let ops = repo
            .overrides
            .iter()
            .zip(&rejected.overrides)
            .map(|(p, r)| prepare(repo, p, *r))
            .collect();
        OverrideIndex {
            repo,
            cops,
            ops,
            used_cop: repo.cluster_overrides.iter().map(|_| AtomicBool::new(false)).collect(),
            used_op: repo.overrides.iter().map(|_| AtomicBool::new(false)).collect(),
        }
    }

    fn policy(&self, r: OpRef) -> &'r OverridePolicy {
        match r {
            OpRef::Cluster(i) => &self.repo.cluster_overrides[i],
            OpRef::Namespaced(i) => &self.repo.overrides[i],
        }
    }

    fn prepared(&self, r: OpRef) -> Option<&Prepared> {
        match r {
            OpRef::Cluster(i) => self.cops[i].as_ref(),
            OpRef::Namespaced(i) => self.ops[i].as_ref(),
        }
    }

    /// The matching policies in application order: ClusterOverridePolicies, then the
    /// OverridePolicies of the template's namespace; each group by ascending score, then name.
    pub fn policies_for(&self, t: &Template) -> Vec<OpRef> {
        let view = t.view();
        let best = |sels: &Option<Vec<ResourceSelector>>, default_ns: &str| -> Score {
            match sels.as_deref() {
                None | Some([]) => Score::MatchAll,
                Some(list) => list
                    .iter()
                    .map(|s| score_in(s, default_ns, &view))
                    .max()
                    .unwrap_or(Score::MisMatch),
            }
        };
        let mut cops: Vec<(Score, &str, OpRef)> = Vec::new();
        for (i, p) in self.repo.cluster_overrides.iter().enumerate() {
            if self.cops[i].is_none() {
                continue;
            }
            let s = best(&p.spec.resource_selectors, "");
            if s > Score::MisMatch {
                cops.push((s, &p.name, OpRef::Cluster(i)));
            }
        }
        let mut ops: Vec<(Score, &str, OpRef)> = Vec::new();
        if t.namespaced {
            for (i, p) in self.repo.overrides.iter().enumerate() {
                if self.ops[i].is_none() || p.namespace != t.namespace {
                    continue;
                }
                let s = best(&p.spec.resource_selectors, &p.namespace);
                if s > Score::MisMatch {
                    ops.push((s, &p.name, OpRef::Namespaced(i)));
                }
            }
        }
        let key =
            |a: &(Score, &str, OpRef), b: &(Score, &str, OpRef)| (a.0, a.1.as_bytes()).cmp(&(b.0, b.1.as_bytes()));
        cops.sort_by(key);
        ops.sort_by(key);
        cops.into_iter().chain(ops).map(|(_, _, r)| r).collect()
    }

    /// Whether any rule of these policies targets `cluster` (if none does, the object is unchanged).
    pub fn targets_any(&self, policies: &[OpRef], cluster: usize) -> bool {
        policies
            .iter()
            .filter_map(|&r| self.prepared(r))
            .any(|p| p.targets.iter().any(|t| t[cluster]))
    }

    /// Applies the policies' rules that target `cluster` to `obj`. Returns warning diagnostics,
    /// or the error diagnostic (file/line of the failing overrider entry) when one fails.
    pub fn apply(
        &self,
        policies: &[OpRef],
        cluster: usize,
        obj: &mut Value,
        mut steps: Option<&mut Vec<Step>>,
    ) -> Result<Vec<Diagnostic>, Diagnostic> {
        let mut warnings = Vec::new();
        for &r in policies {
            let policy = self.policy(r);
            let Some(prep) = self.prepared(r) else { continue };
            let mut touched = false;
            let mut failure = None;
            for (ri, ((rule, ptr), targets)) in prep.rules.iter().zip(&prep.targets).enumerate() {
                if !targets[cluster] {
                    continue;
                }
                touched = true;
                let entry_at = |kind: OverriderKind, index: usize| -> crate::Pos {
                    self.repo
                        .locate(&policy.origin, &format!("{ptr}/{}/{index}", kind.field()))
                };
                match apply_overriders(obj, &rule.overriders) {
                    Ok(report) => {
                        if let Some(steps) = steps.as_deref_mut() {
                            for a in &report.applied {
                                let pos = entry_at(a.overrider, a.index);
                                steps.push(Step {
                                    policy: policy.display(),
                                    at: format!("{}:{}", policy.origin.file, pos.line),
                                    rule: ri,
                                    overrider: format!("{}[{}]", a.overrider, a.index),
                                    operation: a.operation.clone(),
                                });
                            }
                        }
                        for w in report.warnings {
                            let pos = entry_at(w.overrider, w.index);
                            warnings.push(Diagnostic::warning(
                                code::OVERRIDE_NOOP,
                                &policy.origin.file,
                                pos,
                                format!(
                                    "{} rule {ri} {}[{}]: {}",
                                    policy.display(),
                                    w.overrider,
                                    w.index,
                                    w.message
                                ),
                            ));
                        }
                    }
                    Err(e) => {
                        let pos = entry_at(e.overrider, e.index);
                        failure = Some(Diagnostic::error(
                            code::OVERRIDE_FAILED,
                            &policy.origin.file,
                            pos,
                            format!(
                                "{} rule {ri} {}[{}] `{}`: {}",
                                policy.display(),
                                e.overrider,
                                e.index,
                                e.operation,
                                e.message
                            ),
                        ));
                        break;
                    }
                }
            }
            if touched {
                match r {
                    OpRef::Cluster(i) => self.used_cop[i].store(true, Ordering::Relaxed),
                    OpRef::Namespaced(i) => self.used_op[i].store(true, Ordering::Relaxed),
                }
            }
            if let Some(f) = failure {
                return Err(f);
            }
        }
        Ok(warnings)
    }

    /// W012 for every valid override policy that never applied a rule.
    pub fn unused_warnings(&self) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let lists = [
            (&self.repo.cluster_overrides, &self.used_cop, &self.cops),
            (&self.repo.overrides, &self.used_op, &self.ops),
        ];
        for (list, used, prepared) in lists {
            for ((p, u), prep) in list.iter().zip(used.iter()).zip(prepared.iter()) {
                if !u.load(Ordering::Relaxed) && prep.is_some() {
                    out.push(Diagnostic::warning(
                        code::OVERRIDE_MATCHES_NOTHING,
                        &p.origin.file,
                        p.origin.pos,
                        format!(
                            "{} changes nothing: no rendered template on a cluster its rules target matches it",
                            p.display()
                        ),
                    ));
                }
            }
        }
        out
    }
}
