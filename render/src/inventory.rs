//! The member-cluster inventory and Karmada's cluster-affinity and toleration matching.

use crate::model::{ClusterAffinity, ClusterSpec, Taint, Toleration};
use crate::selector::{requirement_matches, selector_matches, Labels};
use crate::Pos;

/// A member cluster as flotilla sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub name: String,
    pub labels: Labels,
    pub spec: ClusterSpec,
    pub file: String,
    pub pos: Pos,
}

impl Cluster {
    /// Which kubeconfig context reaches it (default: the cluster's name).
    pub fn context(&self) -> &str {
        self.spec.kubeconfig_context.as_deref().unwrap_or(&self.name)
    }

    /// The network it is on (default `default`).
    pub fn network(&self) -> &str {
        self.spec.network.as_deref().unwrap_or("default")
    }

    /// The value of a spread grouping for this cluster; `None` when the cluster lacks it.
    /// A cluster with several zones belongs to the group of its first zone.
    pub fn group_value(&self, grouping: &Grouping) -> Option<&str> {
        let v = match grouping {
            Grouping::Region => self.spec.region.as_str(),
            Grouping::Provider => self.spec.provider.as_str(),
            Grouping::Zone => self.spec.zones.first().map_or("", String::as_str),
            Grouping::Label(key) => self.labels.get(key).map_or("", String::as_str),
        };
        (!v.is_empty()).then_some(v)
    }

    /// Known capacity (`spec.capacity.availableReplicas`), if any.
    pub fn available_replicas(&self) -> Option<i64> {
        self.spec.capacity.as_ref().and_then(|c| c.available_replicas)
    }
}

/// A spread grouping other than `cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Grouping {
    Region,
    Zone,
    Provider,
    Label(String),
}

impl std::fmt::Display for Grouping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Grouping::Region => f.write_str("region"),
            Grouping::Zone => f.write_str("zone"),
            Grouping::Provider => f.write_str("provider"),
            Grouping::Label(k) => write!(f, "label {k}"),
        }
    }
}

/// Why an affinity does not match a cluster (for `explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AffinityMiss {
    Excluded,
    Labels,
    Field(String),
    NotInClusterNames,
}

impl std::fmt::Display for AffinityMiss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AffinityMiss::Excluded => f.write_str("listed in exclude"),
            AffinityMiss::Labels => f.write_str("labels do not match labelSelector"),
            AffinityMiss::Field(k) => write!(f, "fieldSelector on {k} does not match"),
            AffinityMiss::NotInClusterNames => f.write_str("not in clusterNames"),
        }
    }
}

/// `ClusterMatches`: exclude first, then labelSelector, fieldSelector, clusterNames, all ANDed.
pub fn affinity_matches(a: &ClusterAffinity, c: &Cluster) -> Result<(), AffinityMiss> {
    if a.exclude.contains(&c.name) {
        return Err(AffinityMiss::Excluded);
    }
    if let Some(ls) = &a.label_selector {
        if !selector_matches(ls, &c.labels) {
            return Err(AffinityMiss::Labels);
        }
    }
    if let Some(fs) = &a.field_selector {
        for r in &fs.match_expressions {
            let ok = match r.key.as_str() {
                "zone" => {
                    let values = r.values.as_deref().unwrap_or(&[]);
                    let zones = &c.spec.zones;
                    match r.operator.as_str() {
                        "In" => zones.iter().any(|z| values.contains(z)),
                        "NotIn" => !zones.iter().any(|z| values.contains(z)),
                        "Exists" => !zones.is_empty(),
                        "DoesNotExist" => zones.is_empty(),
                        _ => false,
                    }
                }
                "provider" | "region" => {
                    let v = if r.key == "provider" {
                        &c.spec.provider
                    } else {
                        &c.spec.region
                    };
                    requirement_matches(r, (!v.is_empty()).then_some(v.as_str()))
                }
                _ => false,
            };
            if !ok {
                return Err(AffinityMiss::Field(r.key.clone()));
            }
        }
    }
    if !a.cluster_names.is_empty() && !a.cluster_names.contains(&c.name) {
        return Err(AffinityMiss::NotInClusterNames);
    }
    Ok(())
}

/// Kubernetes toleration matching (Lt/Gt never match).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if !t.effect.is_empty() && t.effect != taint.effect {
        return false;
    }
    if !t.key.is_empty() && t.key != taint.key {
        return false;
    }
    match t.operator.as_str() {
        "Exists" => true,
        "" | "Equal" => t.value == taint.value,
        _ => false,
    }
}

/// The first `NoSchedule`/`NoExecute` taint of the cluster that no toleration tolerates.
pub fn untolerated<'a>(c: &'a Cluster, tolerations: &[Toleration]) -> Option<&'a Taint> {
    c.spec
        .taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FieldSelector, LabelSelectorRequirement};

    fn cluster(name: &str, region: &str, zones: &[&str]) -> Cluster {
        Cluster {
            name: name.into(),
            labels: Labels::new(),
            spec: ClusterSpec {
                region: region.into(),
                zones: zones.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            file: String::new(),
            pos: Pos::default(),
        }
    }

    fn field(key: &str, op: &str, values: &[&str]) -> ClusterAffinity {
        ClusterAffinity {
            field_selector: Some(FieldSelector {
                match_expressions: vec![LabelSelectorRequirement {
                    key: key.into(),
                    operator: op.into(),
                    values: Some(values.iter().map(|s| s.to_string()).collect()),
                }],
            }),
            ..Default::default()
        }
    }

    #[test]
    fn exclude_wins_over_cluster_names() {
        let a = ClusterAffinity {
            cluster_names: vec!["a".into()],
            exclude: vec!["a".into()],
            ..Default::default()
        };
        assert_eq!(
            affinity_matches(&a, &cluster("a", "", &[])),
            Err(AffinityMiss::Excluded)
        );
    }

    #[test]
    fn absent_region_fails_in_and_passes_notin() {
        let c = cluster("a", "", &[]);
        assert!(affinity_matches(&field("region", "In", &["eu"]), &c).is_err());
        assert!(affinity_matches(&field("region", "NotIn", &["eu"]), &c).is_ok());
    }

    #[test]
    fn zone_in_means_any_overlap() {
        let c = cluster("a", "eu", &["z1", "z2"]);
        assert!(affinity_matches(&field("zone", "In", &["z2"]), &c).is_ok());
        assert!(affinity_matches(&field("zone", "NotIn", &["z2"]), &c).is_err());
    }

    #[test]
    fn toleration_matching() {
        let taint = Taint {
            key: "k".into(),
            value: "v".into(),
            effect: "NoSchedule".into(),
        };
        let exists_all = Toleration {
            operator: "Exists".into(),
            ..Default::default()
        };
        assert!(tolerates(&exists_all, &taint));
        let wrong_value = Toleration {
            key: "k".into(),
            value: "w".into(),
            ..Default::default()
        };
        assert!(!tolerates(&wrong_value, &taint));
        let wrong_effect = Toleration {
            key: "k".into(),
            operator: "Exists".into(),
            effect: "NoExecute".into(),
            ..Default::default()
        };
        assert!(!tolerates(&wrong_effect, &taint));
    }
}
