//! Karmada's and flotilla's policy and inventory types, as read from documents (JSON field names).
//!
//! Parsing is tolerant of unknown fields: the schema check (`schema.rs`) reports them with a
//! did-you-mean hint, and a wrongly typed field fails here with serde's message.

use overrides::Overriders;
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct LabelSelector {
    pub match_labels: Option<BTreeMap<String, String>>,
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    pub values: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ResourceSelector {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub label_selector: Option<LabelSelector>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct FieldSelector {
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterAffinity {
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
    pub cluster_names: Vec<String>,
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterAffinityTerm {
    pub affinity_name: String,
    pub label_selector: Option<LabelSelector>,
    pub field_selector: Option<FieldSelector>,
    pub cluster_names: Vec<String>,
    pub exclude: Vec<String>,
}

impl ClusterAffinityTerm {
    pub fn affinity(&self) -> ClusterAffinity {
        ClusterAffinity {
            label_selector: self.label_selector.clone(),
            field_selector: self.field_selector.clone(),
            cluster_names: self.cluster_names.clone(),
            exclude: self.exclude.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Toleration {
    pub key: String,
    pub operator: String,
    pub value: String,
    pub effect: String,
    pub toleration_seconds: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct SpreadConstraint {
    pub spread_by_field: Option<String>,
    pub spread_by_label: Option<String>,
    pub max_groups: Option<i64>,
    pub min_groups: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct StaticClusterWeight {
    pub target_cluster: ClusterAffinity,
    pub weight: i64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterPreferences {
    pub static_weight_list: Vec<StaticClusterWeight>,
    pub dynamic_weight: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ReplicaSchedulingStrategy {
    pub replica_scheduling_type: Option<String>,
    pub replica_division_preference: Option<String>,
    pub weight_preference: Option<ClusterPreferences>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Placement {
    pub cluster_affinity: Option<ClusterAffinity>,
    pub cluster_affinities: Option<Vec<ClusterAffinityTerm>>,
    pub cluster_tolerations: Vec<Toleration>,
    pub spread_constraints: Vec<SpreadConstraint>,
    pub replica_scheduling: Option<ReplicaSchedulingStrategy>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct PropagationSpec {
    pub resource_selectors: Vec<ResourceSelector>,
    pub propagate_deps: bool,
    pub association: bool,
    pub placement: Placement,
    pub priority: Option<i32>,
    pub conflict_resolution: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct RuleWithCluster {
    pub target_cluster: Option<ClusterAffinity>,
    pub overriders: Overriders,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct OverrideSpec {
    pub resource_selectors: Option<Vec<ResourceSelector>>,
    pub override_rules: Vec<RuleWithCluster>,
    pub target_cluster: Option<ClusterAffinity>,
    pub overriders: Option<Overriders>,
}

impl OverrideSpec {
    /// The rules to apply: `overrideRules`, or the deprecated single-rule form as one rule.
    /// Returns the rules with the JSON pointer (relative to the document) of each rule's overriders.
    pub fn rules(&self) -> Vec<(RuleWithCluster, String)> {
        if !self.override_rules.is_empty() {
            return self
                .override_rules
                .iter()
                .enumerate()
                .map(|(i, r)| (r.clone(), format!("/spec/overrideRules/{i}/overriders")))
                .collect();
        }
        match (&self.target_cluster, &self.overriders) {
            (None, None) => Vec::new(),
            (tc, ov) => vec![(
                RuleWithCluster {
                    target_cluster: tc.clone(),
                    overriders: ov.clone().unwrap_or_default(),
                },
                "/spec/overriders".to_string(),
            )],
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct EastWestGateway {
    pub address: String,
    pub port_range: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Capacity {
    pub available_replicas: Option<i64>,
}

/// The spec of a `Cluster` (Karmada's or flotilla's; flotilla's adds the last four fields).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct ClusterSpec {
    pub provider: String,
    pub region: String,
    pub zones: Vec<String>,
    pub taints: Vec<Taint>,
    pub kubeconfig_context: Option<String>,
    pub network: Option<String>,
    pub east_west_gateway: Option<EastWestGateway>,
    pub capacity: Option<Capacity>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct GlobalTrafficTarget {
    pub cluster: String,
    pub weight: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct GlobalTrafficPolicySpec {
    pub mode: Option<String>,
    pub targets: Vec<GlobalTrafficTarget>,
}
