//! Policy checks Karmada's validating webhooks would make; a rejected policy takes no part in choice.

use crate::diagnostic::{code, Diagnostic};
use crate::model::{LabelSelector, Placement};
use crate::repo::{OverridePolicy, Policy, PropagationPolicy, Repo};
use crate::selector::check_selector;

/// Which policies are rejected (by index), per list.
#[derive(Debug, Default)]
pub struct Rejected {
    pub propagation: Vec<bool>,
    pub cluster_propagation: Vec<bool>,
    pub overrides: Vec<bool>,
    pub cluster_overrides: Vec<bool>,
}

fn selector_check<S>(
    repo: &Repo<'_>,
    p: &Policy<S>,
    ls: Option<&LabelSelector>,
    ptr: &str,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    if let Some(ls) = ls {
        if let Err(e) = check_selector(ls) {
            let pos = repo.locate(&p.origin, ptr);
            diags.push(Diagnostic::error(
                code::INVALID_SELECTOR,
                &p.origin.file,
                pos,
                format!("{}: invalid label selector: {e}", p.display()),
            ));
            return false;
        }
    }
    true
}

fn check_placement(repo: &Repo<'_>, p: &PropagationPolicy, pl: &Placement, diags: &mut Vec<Diagnostic>) -> bool {
    let mut ok = true;
    let mut err = |ptr: &str, msg: String, diags: &mut Vec<Diagnostic>| {
        let pos = repo.locate(&p.origin, ptr);
        diags.push(Diagnostic::error(
            code::INVALID_PLACEMENT,
            &p.origin.file,
            pos,
            format!("{}: {msg}", p.display()),
        ));
        ok = false;
    };
    if pl.cluster_affinity.is_some() && pl.cluster_affinities.is_some() {
        err(
            "/spec/placement/clusterAffinities",
            "clusterAffinity and clusterAffinities cannot both be set (Karmada rejects this too)".into(),
            diags,
        );
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, t) in pl.cluster_affinities.iter().flatten().enumerate() {
        if names.contains(&t.affinity_name.as_str()) {
            err(
                &format!("/spec/placement/clusterAffinities/{i}/affinityName"),
                format!("affinityName `{}` is used twice", t.affinity_name),
                diags,
            );
        }
        names.push(&t.affinity_name);
    }
    let mut fields: Vec<&str> = Vec::new();
    for (i, sc) in pl.spread_constraints.iter().enumerate() {
        let ptr = format!("/spec/placement/spreadConstraints/{i}");
        let field = sc.spread_by_field.as_deref().unwrap_or("");
        let label = sc.spread_by_label.as_deref().unwrap_or("");
        if !field.is_empty() && !label.is_empty() {
            err(
                &ptr,
                "spreadByField and spreadByLabel are mutually exclusive".into(),
                diags,
            );
        }
        let key = if label.is_empty() {
            if field.is_empty() {
                "cluster"
            } else {
                field
            }
        } else {
            label
        };
        if fields.contains(&key) {
            err(&ptr, format!("spread constraint on `{key}` appears twice"), diags);
        }
        fields.push(key);
        if let (Some(max), Some(min)) = (sc.max_groups, sc.min_groups) {
            if max > 0 && max < min {
                err(&ptr, format!("maxGroups {max} is lower than minGroups {min}"), diags);
            }
        }
        if sc.max_groups.is_none() && !p.schema_invalid {
            let pos = repo.locate(&p.origin, &ptr);
            diags.push(Diagnostic::warning(
                code::MAX_GROUPS_OMITTED,
                &p.origin.file,
                pos,
                format!(
                    "{}: spread constraint on `{key}` has no maxGroups: flotilla reads it as every available group; \
                     Karmada would select nothing",
                    p.display()
                ),
            ));
        }
    }
    if let Some(a) = &pl.cluster_affinity {
        ok &= selector_check(
            repo,
            p,
            a.label_selector.as_ref(),
            "/spec/placement/clusterAffinity/labelSelector",
            diags,
        );
    }
    for (i, t) in pl.cluster_affinities.iter().flatten().enumerate() {
        let ptr = format!("/spec/placement/clusterAffinities/{i}/labelSelector");
        ok &= selector_check(repo, p, t.label_selector.as_ref(), &ptr, diags);
    }
    ok
}

fn check_selectors_namespace<S>(
    repo: &Repo<'_>,
    p: &Policy<S>,
    sels: &[crate::model::ResourceSelector],
    namespaced: bool,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let mut ok = true;
    for (i, s) in sels.iter().enumerate() {
        if namespaced && !s.namespace.is_empty() && s.namespace != p.namespace {
            let pos = repo.locate(&p.origin, &format!("/spec/resourceSelectors/{i}/namespace"));
            diags.push(Diagnostic::error(
                code::SELECTOR_NAMESPACE,
                &p.origin.file,
                pos,
                format!(
                    "{}: resourceSelectors[{i}] names namespace `{}`, but a {} only selects in its own namespace `{}`",
                    p.display(),
                    s.namespace,
                    p.kind,
                    p.namespace
                ),
            ));
            ok = false;
        }
        let ptr = format!("/spec/resourceSelectors/{i}/labelSelector");
        ok &= selector_check(repo, p, s.label_selector.as_ref(), &ptr, diags);
    }
    ok
}

fn check_override(repo: &Repo<'_>, p: &OverridePolicy, namespaced: bool, diags: &mut Vec<Diagnostic>) -> bool {
    let mut ok = check_selectors_namespace(
        repo,
        p,
        p.spec.resource_selectors.as_deref().unwrap_or(&[]),
        namespaced,
        diags,
    );
    let legacy =
        p.spec.target_cluster.is_some() || p.spec.overriders.as_ref().is_some_and(|o| *o != Default::default());
    if !p.spec.override_rules.is_empty() && legacy {
        let pos = repo.locate(&p.origin, "/spec/overrideRules");
        diags.push(Diagnostic::error(
            code::SCHEMA,
            &p.origin.file,
            pos,
            format!(
                "{}: overrideRules cannot be combined with the deprecated targetCluster/overriders fields",
                p.display()
            ),
        ));
        ok = false;
    }
    for (i, r) in p.spec.override_rules.iter().enumerate() {
        if let Some(tc) = &r.target_cluster {
            let ptr = format!("/spec/overrideRules/{i}/targetCluster/labelSelector");
            ok &= selector_check(repo, p, tc.label_selector.as_ref(), &ptr, diags);
        }
    }
    ok
}

/// Runs every check; returns which policies are rejected.
pub fn check_policies(repo: &Repo<'_>, diags: &mut Vec<Diagnostic>) -> Rejected {
    let pp = repo
        .propagation
        .iter()
        .map(|p| {
            let a = check_selectors_namespace(repo, p, &p.spec.resource_selectors, true, diags);
            let b = check_placement(repo, p, &p.spec.placement, diags);
            !(a && b) || p.schema_invalid
        })
        .collect();
    let cpp = repo
        .cluster_propagation
        .iter()
        .map(|p| {
            let a = check_selectors_namespace(repo, p, &p.spec.resource_selectors, false, diags);
            let b = check_placement(repo, p, &p.spec.placement, diags);
            !(a && b) || p.schema_invalid
        })
        .collect();
    let op = repo
        .overrides
        .iter()
        .map(|p| !check_override(repo, p, true, diags) || p.schema_invalid)
        .collect();
    let cop = repo
        .cluster_overrides
        .iter()
        .map(|p| !check_override(repo, p, false, diags) || p.schema_invalid)
        .collect();
    Rejected {
        propagation: pp,
        cluster_propagation: cpp,
        overrides: op,
        cluster_overrides: cop,
    }
}
