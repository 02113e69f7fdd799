//! Label selectors and resource selectors with Karmada's implicit priority scores.

use crate::model::{LabelSelector, LabelSelectorRequirement, ResourceSelector};
use std::collections::BTreeMap;

/// Labels of an object or cluster.
pub type Labels = BTreeMap<String, String>;

/// An invalid selector (bad operator, values where none are allowed, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("unknown label selector operator `{0}` (expected In, NotIn, Exists, DoesNotExist)")]
    Operator(String),
    #[error("operator `{op}` on key `{key}` needs at least one value")]
    NeedsValues { op: String, key: String },
    #[error("operator `{op}` on key `{key}` takes no values")]
    NoValues { op: String, key: String },
}

/// Checks a requirement's shape (Kubernetes' rules).
pub fn check_requirement(r: &LabelSelectorRequirement) -> Result<(), SelectorError> {
    let n = r.values.as_ref().map_or(0, Vec::len);
    match r.operator.as_str() {
        "In" | "NotIn" if n == 0 => Err(SelectorError::NeedsValues {
            op: r.operator.clone(),
            key: r.key.clone(),
        }),
        "Exists" | "DoesNotExist" if n > 0 => Err(SelectorError::NoValues {
            op: r.operator.clone(),
            key: r.key.clone(),
        }),
        "In" | "NotIn" | "Exists" | "DoesNotExist" => Ok(()),
        other => Err(SelectorError::Operator(other.to_string())),
    }
}

/// Checks a whole selector.
pub fn check_selector(s: &LabelSelector) -> Result<(), SelectorError> {
    for r in s.match_expressions.iter().flatten() {
        check_requirement(r)?;
    }
    Ok(())
}

/// Evaluates one requirement against a label lookup; an invalid requirement matches nothing.
pub fn requirement_matches(r: &LabelSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        _ => false,
    }
}

/// Standard Kubernetes label-selector semantics; an empty selector matches everything,
/// an invalid one nothing.
pub fn selector_matches(s: &LabelSelector, labels: &Labels) -> bool {
    if check_selector(s).is_err() {
        return false;
    }
    if let Some(ml) = &s.match_labels {
        if !ml.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    s.match_expressions
        .iter()
        .flatten()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
}

/// Karmada's implicit priority of a selector against an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Score {
    MisMatch = 0,
    MatchAll = 1,
    MatchLabelSelector = 2,
    MatchName = 3,
}

impl Score {
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// What a selector needs to know about a template.
#[derive(Debug, Clone, Copy)]
pub struct ObjectView<'a> {
    pub api_version: &'a str,
    pub kind: &'a str,
    /// "" for cluster-scoped objects.
    pub namespace: &'a str,
    pub name: &'a str,
    pub labels: &'a Labels,
}

/// `ResourceSelectorPriority`: exact apiVersion/kind, namespace if set, then name (3) or labels (2)
/// or kind-wide (1).
pub fn score(sel: &ResourceSelector, obj: &ObjectView<'_>) -> Score {
    score_in(sel, "", obj)
}

/// [`score`] with the namespace a selector without one defaults to (a namespaced policy's own).
pub fn score_in(sel: &ResourceSelector, default_namespace: &str, obj: &ObjectView<'_>) -> Score {
    if sel.api_version != obj.api_version || sel.kind != obj.kind {
        return Score::MisMatch;
    }
    let ns = if sel.namespace.is_empty() {
        default_namespace
    } else {
        sel.namespace.as_str()
    };
    if !ns.is_empty() && ns != obj.namespace {
        return Score::MisMatch;
    }
    if !sel.name.is_empty() {
        return if sel.name == obj.name {
            Score::MatchName
        } else {
            Score::MisMatch
        };
    }
    match &sel.label_selector {
        None => Score::MatchAll,
        Some(ls) if selector_matches(ls, obj.labels) => Score::MatchLabelSelector,
        Some(_) => Score::MisMatch,
    }
}

/// The best score over a list of selectors (`MisMatch` when none matches).
pub fn best_score(sels: &[ResourceSelector], obj: &ObjectView<'_>) -> Score {
    sels.iter().map(|s| score(s, obj)).max().unwrap_or(Score::MisMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: if values.is_empty() {
                None
            } else {
                Some(values.iter().map(|s| s.to_string()).collect())
            },
        }
    }

    #[test]
    fn notin_and_doesnotexist_match_absent_keys() {
        let l = labels(&[("a", "1")]);
        assert!(requirement_matches(&req("b", "NotIn", &["x"]), None));
        assert!(requirement_matches(
            &req("b", "DoesNotExist", &[]),
            l.get("b").map(String::as_str)
        ));
        assert!(!requirement_matches(&req("b", "In", &["x"]), None));
    }

    #[test]
    fn scores() {
        let l = labels(&[("app", "web")]);
        let obj = ObjectView {
            api_version: "apps/v1",
            kind: "Deployment",
            namespace: "default",
            name: "web",
            labels: &l,
        };
        let mut s = ResourceSelector {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            ..Default::default()
        };
        assert_eq!(score(&s, &obj), Score::MatchAll);
        s.label_selector = Some(LabelSelector::default());
        assert_eq!(score(&s, &obj), Score::MatchLabelSelector);
        s.name = "other".into();
        assert_eq!(
            score(&s, &obj),
            Score::MisMatch,
            "labelSelector is ignored when name is set"
        );
        s.name = "web".into();
        assert_eq!(score(&s, &obj), Score::MatchName);
        s.namespace = "prod".into();
        assert_eq!(score(&s, &obj), Score::MisMatch);
        s.namespace = String::new();
        s.api_version = "apps/v1beta1".into();
        assert_eq!(score(&s, &obj), Score::MisMatch);
    }
}
