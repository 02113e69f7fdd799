//! The outcome of applying one cluster's set: one entry per object, plus the cluster's own error.

use serde::Serialize;
use std::fmt::Write as _;

/// What happened to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Configured,
    Unchanged,
    Pruned,
    /// Left alone: it exists, flotilla does not own it, and conflict resolution is Abort.
    Conflict,
    Failed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
            Action::Pruned => "pruned",
            Action::Conflict => "conflict",
            Action::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// `Kind[.group] [namespace/]name`
    pub object: String,
    pub action: Action,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One cluster's change set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangeSet {
    pub cluster: String,
    pub entries: Vec<Entry>,
    /// A failure of the cluster as a whole (unreachable, refused by the prune guard, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error is the prune guard's refusal: retrying the same commit cannot help.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub guarded: bool,
    /// The cluster did not answer (connection refused or broken, timeout): the daemon's failover counts
    /// from the first such apply.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unreachable: bool,
}

impl ChangeSet {
    pub fn new(cluster: &str) -> Self {
        ChangeSet {
            cluster: cluster.to_string(),
            entries: Vec::new(),
            error: None,
            guarded: false,
            unreachable: false,
        }
    }

    pub fn push(&mut self, object: String, action: Action, message: Option<String>) {
        self.entries.push(Entry {
            object,
            action,
            message,
        });
    }

    pub fn count(&self, a: Action) -> usize {
        self.entries.iter().filter(|e| e.action == a).count()
    }

    /// Whether anything failed (an object, a conflict, or the cluster).
    pub fn failed(&self) -> bool {
        self.error.is_some()
            || self
                .entries
                .iter()
                .any(|e| matches!(e.action, Action::Failed | Action::Conflict))
    }
}

/// The human table: one line per changed object, then a summary line per cluster.
pub fn table(sets: &[ChangeSet], verbose: bool) -> String {
    let mut s = String::new();
    for cs in sets {
        for e in &cs.entries {
            if e.action == Action::Unchanged && !verbose {
                continue;
            }
            let _ = write!(s, "{:<14} {:<11} {}", cs.cluster, e.action.as_str(), e.object);
            if let Some(m) = &e.message {
                let _ = write!(s, ": {m}");
            }
            s.push('\n');
        }
        if let Some(err) = &cs.error {
            let _ = writeln!(s, "{:<14} {:<11} {err}", cs.cluster, "error");
        }
    }
    for cs in sets {
        let _ = writeln!(
            s,
            "{}: {} created, {} configured, {} unchanged, {} pruned, {} conflict, {} failed{}",
            cs.cluster,
            cs.count(Action::Created),
            cs.count(Action::Configured),
            cs.count(Action::Unchanged),
            cs.count(Action::Pruned),
            cs.count(Action::Conflict),
            cs.count(Action::Failed),
            if cs.error.is_some() { " (cluster error)" } else { "" }
        );
    }
    s
}
