//! Diagnostics: findings about repository content, collected as data, never thrown.
//!
//! Every diagnostic names a file and a line (and a column where one is known), like a compiler:
//! `path:line:col: error[E0xx]: message`. The codes are stable: tools and tests match on them.

use serde::Serialize;
use std::fmt;

/// How bad a finding is. `Error` blocks `apply` of the whole commit and makes `render`/`validate` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// The catalogue of diagnostic codes. The letter says the default severity (E error, W warning, I info).
pub mod code {
    // --- reading files (E00x) ---
    /// A file could not be read: symlink leaving the repository, oversized file, IO error.
    pub const UNREADABLE: &str = "E001";
    /// YAML or JSON syntax error.
    pub const SYNTAX: &str = "E002";
    /// YAML alias expansion beyond the limit (an "alias bomb"), or nesting too deep.
    pub const ALIAS_LIMIT: &str = "E003";
    /// The same key twice in one YAML/JSON mapping.
    pub const DUPLICATE_KEY: &str = "E004";
    /// The file is not UTF-8.
    pub const NOT_UTF8: &str = "E005";

    // --- Kubernetes object basics (E01x) ---
    /// A document is not a mapping, or lacks `apiVersion`/`kind`/`metadata.name`, or has the wrong type there.
    pub const OBJECT_BASICS: &str = "E010";
    /// A name or namespace that is not a valid DNS-1123 name/label.
    pub const INVALID_NAME: &str = "E011";
    /// Two templates (or two policies, or two clusters) with the same group/kind/namespace/name.
    pub const DUPLICATE_OBJECT: &str = "E012";
    /// A `List` whose `items` is not a list of objects.
    pub const BAD_LIST: &str = "E013";

    // --- schemas of flotilla's and Karmada's kinds (E02x) ---
    /// A policy, cluster or config document violates its JSON Schema.
    pub const SCHEMA: &str = "E020";
    /// A field the schema does not know (with a did-you-mean hint when one is close).
    pub const UNKNOWN_FIELD: &str = "E021";
    /// A `RepoConfig` outside `flotilla.yaml`, or a malformed glob in it.
    pub const REPO_CONFIG: &str = "E022";

    // --- policy semantics (E03x) ---
    /// A PropagationPolicy/OverridePolicy selector names another namespace than the policy's.
    pub const SELECTOR_NAMESPACE: &str = "E030";
    /// Both `clusterAffinity` and `clusterAffinities` are set, or another combination Karmada rejects.
    pub const INVALID_PLACEMENT: &str = "E031";
    /// An invalid label selector (bad operator, values with Exists, ...).
    pub const INVALID_SELECTOR: &str = "E032";

    // --- placement (E04x) ---
    /// No cluster is feasible for a template (every clusterAffinities term failed, spread unsatisfiable, ...).
    pub const UNSCHEDULABLE: &str = "E040";

    // --- overrides (E05x) ---
    /// An override failed on one cluster: the template is absent from that cluster's output.
    pub const OVERRIDE_FAILED: &str = "E050";

    // --- cross-cluster routing (E06x): found by the routing step (crate `flotilla-ebpf`), SPEC §7 ---
    /// `vipRange` in `flotilla.yaml` is not an IPv4 CIDR.
    pub const VIP_RANGE: &str = "E060";
    /// A `flotilla.dev/vip` annotation that is not an IPv4 address inside the VIP range.
    pub const VIP_INVALID: &str = "E061";
    /// Two exported Services ask for the same VIP with `flotilla.dev/vip`.
    pub const VIP_COLLISION: &str = "E062";
    /// The VIP range has no free address left for an exported Service.
    pub const VIP_EXHAUSTED: &str = "E063";
    /// A cluster's east-west gateway `portRange` is malformed, or has no free port left.
    pub const GATEWAY_PORTS: &str = "E064";
    /// A GlobalTrafficPolicy target names a cluster that is not in the inventory.
    pub const TRAFFIC_UNKNOWN_CLUSTER: &str = "E065";
    /// A FailOver GlobalTrafficPolicy gives a cluster more than 4 priority tiers.
    pub const TOO_MANY_TIERS: &str = "E066";
    /// The generated `<service>-eastwest` Service would get an invalid name, or a template has its name.
    pub const EASTWEST_NAME: &str = "E067";

    // --- warnings ---
    /// A namespaced-or-not-unknown kind without `metadata.namespace`: assumed cluster-scoped.
    pub const UNKNOWN_KIND: &str = "W001";
    /// A template that no propagation policy selects: it is not propagated.
    pub const UNSELECTED_TEMPLATE: &str = "W010";
    /// A propagation policy that selects no template.
    pub const POLICY_SELECTS_NOTHING: &str = "W011";
    /// An override policy (or one of its rules) that matches no template/cluster.
    pub const OVERRIDE_MATCHES_NOTHING: &str = "W012";
    /// A template in a namespace flotilla never propagates (karmada-system, kube-*, ...).
    pub const SKIPPED_NAMESPACE: &str = "W013";
    /// A spread constraint without `maxGroups`: flotilla reads it as "all groups"; Karmada would select nothing.
    pub const MAX_GROUPS_OMITTED: &str = "W020";
    /// An override that is a no-op by Karmada's rules (e.g. an invalid image tag value) or whose result is
    /// suspicious though valid (e.g. a registry value that reads back as part of the repository).
    pub const OVERRIDE_NOOP: &str = "W050";
    /// A placement that cannot fall back from an unreachable cluster (no other cluster is feasible): it
    /// keeps its clusters (render with [`crate::RenderOptions::unreachable`]).
    pub const NO_FALLBACK: &str = "W021";
    /// A ServiceExport without a Service of the same namespace and name: nothing is exported.
    pub const EXPORT_WITHOUT_SERVICE: &str = "W060";
    /// A GlobalTrafficPolicy without an exported Service of the same namespace and name.
    pub const TRAFFIC_WITHOUT_EXPORT: &str = "W061";
    /// An exported Service runs on a cluster without `eastWestGateway`: other networks cannot reach it there.
    pub const NO_GATEWAY: &str = "W062";
    /// A GlobalTrafficPolicy target without effect: listed twice, or the Service is not exported there.
    pub const TRAFFIC_TARGET_UNUSED: &str = "W063";
    /// An exported Service, or one of its ports, that cannot be routed (ExternalName, SCTP, no ports).
    pub const NOT_ROUTABLE: &str = "W064";
    /// An exported Service that no cluster exports: no cluster holds both the Service and its ServiceExport.
    pub const EXPORTED_NOWHERE: &str = "W065";
    /// A Karmada field that flotilla accepts but does not act on (runtime-only behaviour).
    pub const IGNORED_FIELD: &str = "I001";
}

/// One finding about repository content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    /// Repository-relative path with `/` separators.
    pub file: String,
    /// 1-based line; 0 when the finding is about the repository as a whole.
    pub line: u32,
    /// 1-based column; 0 when unknown.
    #[serde(skip_serializing_if = "is_zero")]
    pub column: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The object the finding is about, as `group/kind/namespace/name` (see [`crate::ObjectRef`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Diagnostic {
    pub fn new(
        severity: Severity,
        code: &'static str,
        file: &str,
        pos: crate::Pos,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity,
            code,
            message: message.into(),
            file: file.to_string(),
            line: pos.line,
            column: pos.column,
            cluster: None,
            object: None,
        }
    }
    pub fn error(code: &'static str, file: &str, pos: crate::Pos, message: impl Into<String>) -> Self {
        Self::new(Severity::Error, code, file, pos, message)
    }
    pub fn warning(code: &'static str, file: &str, pos: crate::Pos, message: impl Into<String>) -> Self {
        Self::new(Severity::Warning, code, file, pos, message)
    }
    pub fn info(code: &'static str, file: &str, pos: crate::Pos, message: impl Into<String>) -> Self {
        Self::new(Severity::Info, code, file, pos, message)
    }
    pub fn with_cluster(mut self, cluster: &str) -> Self {
        self.cluster = Some(cluster.to_string());
        self
    }
    pub fn with_object(mut self, object: impl Into<String>) -> Self {
        self.object = Some(object.into());
        self
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The total order used for output: file, line, column, code, cluster, message.
    pub fn sort_key(&self) -> (&str, u32, u32, &str, &str, &str) {
        (
            &self.file,
            self.line,
            self.column,
            self.code,
            self.cluster.as_deref().unwrap_or(""),
            &self.message,
        )
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)?;
        if self.column > 0 {
            write!(f, ":{}", self.column)?;
        }
        write!(f, ": {}[{}]: {}", self.severity, self.code, self.message)?;
        if let Some(c) = &self.cluster {
            write!(f, " (cluster {c})")?;
        }
        Ok(())
    }
}

/// Sorts and de-duplicates diagnostics into the deterministic output order.
pub fn finish(diags: &mut Vec<Diagnostic>) {
    diags.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    diags.dedup();
}
