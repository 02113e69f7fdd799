//! Placement: which clusters a template lands on and with how many replicas (SPEC §4).
//!
//! The pipeline per affinity term is Karmada's: filter (affinity, taints, grouping fields) →
//! select by spread constraints → assign replicas. `clusterAffinities` terms are tried in order,
//! always starting at the first (flotilla is stateless).

pub mod replicas;
pub mod spread;

use crate::inventory::{affinity_matches, untolerated, Cluster, Grouping};
use crate::model::{ClusterAffinity, Placement, StaticClusterWeight};
use spread::{Bounds, Demand};

/// A cluster that passed the filters, with the capacity used for ordering and division.
#[derive(Debug, Clone)]
pub struct Feasible<'a> {
    pub cluster: &'a Cluster,
    pub available: i64,
}

/// How replicas are scheduled (Karmada's strategy table, reference §1.6).
#[derive(Debug, Clone, PartialEq)]
pub enum Strategy {
    Duplicated,
    /// Static weights; `None` = every candidate weighs 1.
    StaticWeight(Option<Vec<StaticClusterWeight>>),
    DynamicWeight,
    Aggregated,
}

impl Strategy {
    pub fn of(p: &Placement) -> Strategy {
        let Some(rs) = &p.replica_scheduling else {
            return Strategy::Duplicated;
        };
        if rs.replica_scheduling_type.as_deref() == Some("Duplicated") {
            return Strategy::Duplicated;
        }
        if rs.replica_division_preference.as_deref() == Some("Aggregated") {
            return Strategy::Aggregated;
        }
        match &rs.weight_preference {
            None => Strategy::StaticWeight(None),
            Some(wp) if wp.dynamic_weight.is_some() => Strategy::DynamicWeight,
            Some(wp) if wp.static_weight_list.is_empty() => Strategy::StaticWeight(None),
            Some(wp) => Strategy::StaticWeight(Some(wp.static_weight_list.clone())),
        }
    }

    /// Karmada skips spread-constraint selection for static weights (`shouldIgnoreSpreadConstraint`).
    /// `weightPreference: {}` is not exempt (reference §1.5 edge case).
    fn ignores_spread(&self, p: &Placement) -> bool {
        match self {
            Strategy::StaticWeight(Some(_)) => true,
            Strategy::StaticWeight(None) => p
                .replica_scheduling
                .as_ref()
                .is_some_and(|rs| rs.weight_preference.is_none()),
            _ => false,
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Strategy::Duplicated => "Duplicated",
            Strategy::StaticWeight(_) => "Divided (static weights)",
            Strategy::DynamicWeight => "Divided (dynamic weight AvailableReplicas)",
            Strategy::Aggregated => "Divided (Aggregated)",
        }
    }
}

/// The verdict for one cluster, for `explain`.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Selected; `Some(n)` when replicas were divided.
    Selected(Option<i64>),
    Excluded(String),
}

/// Where a template lands.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// `(cluster index in the inventory, divided replicas)`; clusters with 0 replicas are absent.
    pub targets: Vec<(usize, Option<i64>)>,
    /// Index of the `clusterAffinities` term used, if any.
    pub term: Option<(usize, String)>,
    pub strategy: Strategy,
    /// One verdict per inventory cluster (same order as the inventory).
    pub verdicts: Vec<Verdict>,
    /// Failures of earlier `clusterAffinities` terms (for explain).
    pub fallbacks: Vec<String>,
}

/// Replica facts of a template, as Karmada's interpreter sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Workload {
    /// Desired replicas; 0 for non-workloads.
    pub replicas: i64,
}

/// Parsed spread constraints.
struct Spread {
    cluster: Option<Bounds>,
    /// The driving grouping and its bounds; further groupings act as filters.
    groups: Vec<(Grouping, Bounds)>,
}

fn bounds(min: Option<i64>, max: Option<i64>, available: i64) -> Bounds {
    let min = match min {
        None | Some(0) => 1,
        Some(m) => m,
    };
    Bounds {
        min,
        max: max.unwrap_or(available),
    }
}

fn parse_spread(p: &Placement, feasible: &[Feasible<'_>]) -> Spread {
    let mut out = Spread {
        cluster: None,
        groups: Vec::new(),
    };
    for sc in &p.spread_constraints {
        let grouping = match (sc.spread_by_field.as_deref(), sc.spread_by_label.as_deref()) {
            (_, Some(l)) if !l.is_empty() => Some(Grouping::Label(l.to_string())),
            (Some("region"), _) => Some(Grouping::Region),
            (Some("zone"), _) => Some(Grouping::Zone),
            (Some("provider"), _) => Some(Grouping::Provider),
            _ => None, // `cluster`, or nothing set: Karmada defaults to cluster
        };
        match grouping {
            None => out.cluster = Some(bounds(sc.min_groups, sc.max_groups, feasible.len() as i64)),
            Some(g) => {
                let mut seen: Vec<&str> = feasible.iter().filter_map(|f| f.cluster.group_value(&g)).collect();
                seen.sort_unstable();
                seen.dedup();
                out.groups
                    .push((g, bounds(sc.min_groups, sc.max_groups, seen.len() as i64)));
            }
        }
    }
    // Precedence of the driving grouping: region, zone, provider, label (documented).
    let rank = |g: &Grouping| match g {
        Grouping::Region => 0,
        Grouping::Zone => 1,
        Grouping::Provider => 2,
        Grouping::Label(_) => 3,
    };
    out.groups.sort_by_key(|(g, _)| rank(g));
    out
}

/// Runs the pipeline for one affinity. `Err` says why nothing could be scheduled.
fn run_term(
    p: &Placement,
    affinity: Option<&ClusterAffinity>,
    clusters: &[Cluster],
    workload: Workload,
    strategy: &Strategy,
    verdicts: &mut [Verdict],
) -> Result<Vec<(usize, Option<i64>)>, String> {
    // Grouping fields required by spread constraints.
    let required: Vec<Grouping> = parse_spread(p, &[]).groups.into_iter().map(|(g, _)| g).collect();
    let mut feasible: Vec<Feasible<'_>> = Vec::new();
    let mut index: Vec<usize> = Vec::new();
    for (i, c) in clusters.iter().enumerate() {
        if let Some(a) = affinity {
            if let Err(miss) = affinity_matches(a, c) {
                verdicts[i] = Verdict::Excluded(format!("affinity: {miss}"));
                continue;
            }
        }
        if let Some(t) = untolerated(c, &p.cluster_tolerations) {
            verdicts[i] = Verdict::Excluded(format!(
                "taint {}{}{}:{} not tolerated",
                t.key,
                if t.value.is_empty() { "" } else { "=" },
                t.value,
                t.effect
            ));
            continue;
        }
        if let Some(g) = required.iter().find(|g| c.group_value(g).is_none()) {
            verdicts[i] = Verdict::Excluded(format!("spread: cluster has no {g}"));
            continue;
        }
        let available = if workload.replicas > 0 {
            c.available_replicas().unwrap_or(workload.replicas)
        } else {
            i64::from(i32::MAX)
        };
        feasible.push(Feasible { cluster: c, available });
        index.push(i);
    }
    if feasible.is_empty() {
        return Err("no cluster passes affinity, taints and spread filters".into());
    }
    // "Sorted order": score (always 0) desc, available desc, name asc.
    let mut order: Vec<usize> = (0..feasible.len()).collect();
    order.sort_by(|&a, &b| {
        (std::cmp::Reverse(feasible[a].available), &feasible[a].cluster.name)
            .cmp(&(std::cmp::Reverse(feasible[b].available), &feasible[b].cluster.name))
    });
    let feasible: Vec<Feasible<'_>> = order.iter().map(|&i| feasible[i].clone()).collect();
    let index: Vec<usize> = order.iter().map(|&i| index[i]).collect();

    let demand = Demand {
        replicas: workload.replicas,
        duplicated: *strategy == Strategy::Duplicated,
        capacity_aware: matches!(strategy, Strategy::DynamicWeight | Strategy::Aggregated),
    };
    let selected: Vec<usize> = if p.spread_constraints.is_empty() || strategy.ignores_spread(p) {
        (0..feasible.len()).collect()
    } else {
        let spread = parse_spread(p, &feasible);
        let picked = match spread.groups.first() {
            Some((g, b)) => spread::by_group(&feasible, g, *b, spread.cluster, demand)?,
            None => match spread.cluster {
                Some(b) => spread::by_cluster(&feasible, b, demand)?,
                None => (0..feasible.len()).collect(),
            },
        };
        // Secondary groupings: their bounds must hold on the result.
        for (g, b) in spread.groups.iter().skip(1) {
            let mut vals: Vec<&str> = picked
                .iter()
                .filter_map(|&i| feasible[i].cluster.group_value(g))
                .collect();
            vals.sort_unstable();
            vals.dedup();
            let n = vals.len() as i64;
            if n < b.min || n > b.max {
                return Err(format!(
                    "the selected clusters span {n} {g} group(s), outside minGroups {} / maxGroups {}",
                    b.min, b.max
                ));
            }
        }
        for (k, f) in feasible.iter().enumerate() {
            if !picked.contains(&k) {
                if let Some(v) = verdicts.get_mut(index[k]) {
                    *v = Verdict::Excluded(format!("spread: not chosen (cluster {})", f.cluster.name));
                }
            }
        }
        picked
    };
    let chosen: Vec<(usize, &Feasible<'_>)> = selected.iter().map(|&k| (index[k], &feasible[k])).collect();
    assign(chosen, workload, strategy, verdicts)
}

/// Replica assignment over the selected clusters.
fn assign(
    chosen: Vec<(usize, &Feasible<'_>)>,
    workload: Workload,
    strategy: &Strategy,
    verdicts: &mut [Verdict],
) -> Result<Vec<(usize, Option<i64>)>, String> {
    if workload.replicas <= 0 || *strategy == Strategy::Duplicated {
        for (i, _) in &chosen {
            verdicts[*i] = Verdict::Selected(None);
        }
        let mut out: Vec<(usize, Option<i64>)> = chosen.iter().map(|(i, _)| (*i, None)).collect();
        out.sort_unstable();
        return Ok(out);
    }
    let weights: Vec<(usize, &Feasible<'_>, i64)> = match strategy {
        Strategy::StaticWeight(list) => {
            let mut ws: Vec<(usize, &Feasible<'_>, i64)> = chosen
                .iter()
                .map(|(i, f)| {
                    let w = list.as_ref().map_or(1, |l| {
                        l.iter()
                            .filter(|e| affinity_matches(&e.target_cluster, f.cluster).is_ok())
                            .map(|e| e.weight)
                            .max()
                            .unwrap_or(0)
                    });
                    (*i, *f, w)
                })
                .collect();
            if ws.iter().all(|(_, _, w)| *w == 0) {
                for w in &mut ws {
                    w.2 = 1;
                }
            }
            for (i, _, w) in &ws {
                if *w == 0 {
                    verdicts[*i] = Verdict::Excluded("weight 0: no staticWeightList entry matches".into());
                }
            }
            ws.retain(|(_, _, w)| *w > 0);
            ws
        }
        Strategy::DynamicWeight => chosen.iter().map(|(i, f)| (*i, *f, f.available)).collect(),
        Strategy::Aggregated => {
            let mut sorted = chosen.clone();
            sorted.sort_by(|a, b| {
                (std::cmp::Reverse(a.1.available), &a.1.cluster.name)
                    .cmp(&(std::cmp::Reverse(b.1.available), &b.1.cluster.name))
            });
            let mut acc = 0i64;
            let mut prefix = Vec::new();
            for (i, f) in sorted {
                if acc >= workload.replicas {
                    verdicts[i] = Verdict::Excluded("aggregated: earlier clusters hold every replica".into());
                    continue;
                }
                acc = acc.saturating_add(f.available);
                prefix.push((i, f, f.available));
            }
            prefix
        }
        Strategy::Duplicated => Vec::new(),
    };
    if matches!(strategy, Strategy::DynamicWeight | Strategy::Aggregated) {
        let total: i64 = weights.iter().map(|w| w.2).fold(0, i64::saturating_add);
        if total < workload.replicas {
            return Err(format!(
                "the selected clusters have capacity for {total} replicas, {} are desired",
                workload.replicas
            ));
        }
    }
    let entries: Vec<(&str, i64)> = weights.iter().map(|(_, f, w)| (f.cluster.name.as_str(), *w)).collect();
    let seats = replicas::webster(&entries, workload.replicas);
    let mut out = Vec::new();
    for ((i, _, _), s) in weights.iter().zip(seats) {
        if s > 0 {
            verdicts[*i] = Verdict::Selected(Some(s));
            out.push((*i, Some(s)));
        } else {
            verdicts[*i] = Verdict::Excluded("received 0 replicas".into());
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Schedules one template with one policy's placement over the inventory.
pub fn schedule(p: &Placement, clusters: &[Cluster], workload: Workload) -> Result<Decision, (String, Decision)> {
    let strategy = Strategy::of(p);
    let mut decision = Decision {
        targets: Vec::new(),
        term: None,
        strategy: strategy.clone(),
        verdicts: vec![Verdict::Excluded("not considered".into()); clusters.len()],
        fallbacks: Vec::new(),
    };
    if clusters.is_empty() {
        return Err(("the inventory has no clusters".into(), decision));
    }
    match &p.cluster_affinities {
        Some(terms) if !terms.is_empty() => {
            for (t, term) in terms.iter().enumerate() {
                let aff = term.affinity();
                let mut verdicts = vec![Verdict::Excluded("not considered".into()); clusters.len()];
                match run_term(p, Some(&aff), clusters, workload, &strategy, &mut verdicts) {
                    Ok(targets) => {
                        decision.targets = targets;
                        decision.term = Some((t, term.affinity_name.clone()));
                        decision.verdicts = verdicts;
                        return Ok(decision);
                    }
                    Err(why) => {
                        decision
                            .fallbacks
                            .push(format!("clusterAffinities[{t}] ({}): {why}", term.affinity_name));
                        decision.verdicts = verdicts;
                    }
                }
            }
            let why = decision.fallbacks.join("; ");
            Err((format!("every clusterAffinities term failed: {why}"), decision))
        }
        _ => {
            let mut verdicts = vec![Verdict::Excluded("not considered".into()); clusters.len()];
            let r = run_term(
                p,
                p.cluster_affinity.as_ref(),
                clusters,
                workload,
                &strategy,
                &mut verdicts,
            );
            decision.verdicts = verdicts;
            match r {
                Ok(targets) => {
                    decision.targets = targets;
                    Ok(decision)
                }
                Err(why) => Err((why, decision)),
            }
        }
    }
}
