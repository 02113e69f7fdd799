//! Policy choice for one template (SPEC §4): own-namespace PropagationPolicies first, then
//! ClusterPropagationPolicies; best `(priority, score)`, ties to the byte-wise smaller name.

use crate::repo::{PropagationPolicy, Repo, Template};
use crate::selector::{best_score, Score};
use std::collections::HashMap;

/// Which policy list a choice refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PolicyRef {
    Namespaced(usize),
    Cluster(usize),
}

/// A considered policy with its ranking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub policy: PolicyRef,
    pub priority: i32,
    pub score: Score,
}

/// Policy lookup structures, built once per render.
pub struct Chooser<'r> {
    repo: &'r Repo<'r>,
    by_namespace: HashMap<&'r str, Vec<usize>>,
    /// Policies excluded from choice because Karmada would reject them.
    invalid_pp: Vec<bool>,
    invalid_cpp: Vec<bool>,
}

impl<'r> Chooser<'r> {
    pub fn new(repo: &'r Repo<'r>, invalid_pp: Vec<bool>, invalid_cpp: Vec<bool>) -> Self {
        let mut by_namespace: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, p) in repo.propagation.iter().enumerate() {
            by_namespace.entry(p.namespace.as_str()).or_default().push(i);
        }
        Chooser {
            repo,
            by_namespace,
            invalid_pp,
            invalid_cpp,
        }
    }

    pub fn policy(&self, r: PolicyRef) -> &'r PropagationPolicy {
        match r {
            PolicyRef::Namespaced(i) => &self.repo.propagation[i],
            PolicyRef::Cluster(i) => &self.repo.cluster_propagation[i],
        }
    }

    /// Every matching policy of the tier that decides, best first. Empty when none matches.
    pub fn candidates(&self, t: &Template) -> Vec<Candidate> {
        let view = t.view();
        let mut out = Vec::new();
        if t.namespaced {
            for &i in self
                .by_namespace
                .get(t.namespace.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                if self.invalid_pp[i] {
                    continue;
                }
                let p = &self.repo.propagation[i];
                // A PP selector's namespace defaults to the policy's.
                let score = p
                    .spec
                    .resource_selectors
                    .iter()
                    .map(|s| crate::selector::score_in(s, &p.namespace, &view))
                    .max()
                    .unwrap_or(Score::MisMatch);
                if score > Score::MisMatch {
                    out.push(Candidate {
                        policy: PolicyRef::Namespaced(i),
                        priority: p.spec.priority.unwrap_or(0),
                        score,
                    });
                }
            }
        }
        if out.is_empty() {
            for (i, p) in self.repo.cluster_propagation.iter().enumerate() {
                if self.invalid_cpp[i] {
                    continue;
                }
                let score = best_score(&p.spec.resource_selectors, &view);
                if score > Score::MisMatch {
                    out.push(Candidate {
                        policy: PolicyRef::Cluster(i),
                        priority: p.spec.priority.unwrap_or(0),
                        score,
                    });
                }
            }
        }
        out.sort_by(|a, b| {
            (b.priority, b.score).cmp(&(a.priority, a.score)).then_with(|| {
                self.policy(a.policy)
                    .name
                    .as_bytes()
                    .cmp(self.policy(b.policy).name.as_bytes())
            })
        });
        out
    }
}
