//! Spread constraints: Karmada's region algorithm, generalised to every grouping (SPEC §4, differs).
//!
//! Clusters arrive already filtered and in "sorted order" (score desc — always 0 here —,
//! available replicas desc, name asc). A grouping constraint (region, zone, provider, label) picks
//! groups by Karmada's DFS over group combinations; the `cluster` constraint then bounds how many
//! clusters of the chosen groups are taken.

use super::Feasible;
use crate::inventory::Grouping;

/// A normalised constraint: `min` ≥ 1 and `max` resolved (omitted = everything available).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: i64,
    pub max: i64,
}

/// What spread selection needs to know about the replica strategy.
#[derive(Debug, Clone, Copy)]
pub struct Demand {
    /// Desired replicas (0 for non-workloads).
    pub replicas: i64,
    /// Duplicated (or no replicaScheduling).
    pub duplicated: bool,
    /// Whether selection must respect available capacity (dynamic weight / aggregated).
    pub capacity_aware: bool,
}

const WEIGHT_UNIT: i64 = 1000;

/// One group of clusters.
struct Group<'a> {
    name: String,
    clusters: Vec<&'a Feasible<'a>>,
    /// Karmada's group score.
    weight: i64,
}

fn group_score(clusters: &[&Feasible<'_>], demand: Demand, min_groups: i64) -> i64 {
    if demand.duplicated {
        let valid = clusters.iter().filter(|c| c.available >= demand.replicas).count() as i64;
        return valid * WEIGHT_UNIT;
    }
    let min_groups = min_groups.max(1);
    let target = (demand.replicas - demand.replicas % min_groups) / min_groups + 1;
    let mut sum = 0i64;
    for c in clusters {
        sum = sum.saturating_add(c.available);
        if sum >= target {
            break;
        }
    }
    if sum < target {
        sum.saturating_mul(WEIGHT_UNIT)
    } else {
        target.saturating_mul(WEIGHT_UNIT)
    }
}

struct Path {
    id: usize,
    /// Group indices, sorted by weight desc, name asc.
    groups: Vec<usize>,
    weight: i64,
    value: i64,
}

/// Karmada's `selectGroups`: DFS over groups sorted by (value asc, weight desc, name asc), recording
/// a path as soon as it covers `target` clusters within [min, max] groups, then the best path by
/// (weight desc, value desc, discovery order), preferring a strict prefix of it when one exists.
fn select_groups(groups: &[Group<'_>], min: i64, max: i64, target: i64) -> Option<Vec<usize>> {
    let mut order: Vec<usize> = (0..groups.len()).collect();
    order.sort_by(|&a, &b| {
        let (ga, gb) = (&groups[a], &groups[b]);
        (ga.clusters.len(), std::cmp::Reverse(ga.weight), &ga.name).cmp(&(
            gb.clusters.len(),
            std::cmp::Reverse(gb.weight),
            &gb.name,
        ))
    });
    let mut paths: Vec<Path> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    // Iterative DFS would be longer; depth is bounded by `max` ≤ number of groups.
    #[allow(clippy::too_many_arguments)] // a local recursive helper; a struct would only rename them
    fn dfs(
        groups: &[Group<'_>],
        order: &[usize],
        current: &mut Vec<usize>,
        paths: &mut Vec<Path>,
        sum: i64,
        begin: usize,
        min: i64,
        max: i64,
        target: i64,
    ) {
        let len = current.len() as i64;
        if sum >= target && len >= min && len <= max {
            let mut gs = current.clone();
            gs.sort_by(|&a, &b| {
                (std::cmp::Reverse(groups[a].weight), &groups[a].name)
                    .cmp(&(std::cmp::Reverse(groups[b].weight), &groups[b].name))
            });
            paths.push(Path {
                id: paths.len(),
                weight: gs.iter().map(|&g| groups[g].weight).sum(),
                value: gs.iter().map(|&g| groups[g].clusters.len() as i64).sum(),
                groups: gs,
            });
            return;
        }
        if len >= max {
            return;
        }
        for i in begin..order.len() {
            let g = order[i];
            current.push(g);
            dfs(
                groups,
                order,
                current,
                paths,
                sum + groups[g].clusters.len() as i64,
                i + 1,
                min,
                max,
                target,
            );
            current.pop();
        }
    }
    dfs(groups, &order, &mut current, &mut paths, 0, 0, min, max, target);
    if paths.is_empty() {
        return None;
    }
    paths.sort_by(|a, b| {
        (std::cmp::Reverse(a.weight), std::cmp::Reverse(a.value), a.id).cmp(&(
            std::cmp::Reverse(b.weight),
            std::cmp::Reverse(b.value),
            b.id,
        ))
    });
    let mut best = 0;
    for i in 1..paths.len() {
        let (fin, sub) = (&paths[best], &paths[i]);
        if sub.groups.len() < fin.groups.len() && sub.groups.iter().zip(&fin.groups).all(|(a, b)| a == b) {
            best = i;
        }
    }
    Some(paths.swap_remove(best).groups)
}

/// Selection by a grouping constraint (with an optional `cluster` constraint).
/// Returns indices into `feasible`, or why no valid choice exists.
pub fn by_group(
    feasible: &[Feasible<'_>],
    grouping: &Grouping,
    group_bounds: Bounds,
    cluster_bounds: Option<Bounds>,
    demand: Demand,
) -> Result<Vec<usize>, String> {
    let mut groups: Vec<Group<'_>> = Vec::new();
    for f in feasible {
        let Some(v) = f.cluster.group_value(grouping) else {
            continue;
        };
        match groups.iter_mut().find(|g| g.name == v) {
            Some(g) => g.clusters.push(f),
            None => groups.push(Group {
                name: v.to_string(),
                clusters: vec![f],
                weight: 0,
            }),
        }
    }
    for g in &mut groups {
        g.weight = group_score(&g.clusters, demand, group_bounds.min);
    }
    let n = groups.len() as i64;
    if n < group_bounds.min {
        return Err(format!(
            "only {n} {grouping} group(s) among the feasible clusters, spreadConstraints needs minGroups {}",
            group_bounds.min
        ));
    }
    // Without a cluster constraint: one cluster from each chosen group.
    let (cluster_min, cluster_max) = match cluster_bounds {
        Some(b) => (b.min, b.max),
        None => (group_bounds.min, i64::MAX),
    };
    let chosen = select_groups(&groups, group_bounds.min, group_bounds.max, cluster_min).ok_or_else(|| {
        format!(
            "no combination of {}..{} {grouping} group(s) holds the {cluster_min} cluster(s) the cluster spread constraint needs",
            group_bounds.min, group_bounds.max
        )
    })?;
    let index_of = |f: &Feasible<'_>| feasible.iter().position(|x| x.cluster.name == f.cluster.name);
    let mut picked: Vec<usize> = Vec::new();
    let mut rest: Vec<&Feasible<'_>> = Vec::new();
    for &g in &chosen {
        let cs = &groups[g].clusters;
        if let Some(i) = cs.first().and_then(|f| index_of(f)) {
            picked.push(i);
        }
        rest.extend(cs.iter().skip(1).copied());
    }
    if cluster_bounds.is_some() {
        let total = (picked.len() + rest.len()) as i64;
        let need = total.min(cluster_max);
        rest.sort_by(|a, b| {
            (std::cmp::Reverse(a.available), &a.cluster.name).cmp(&(std::cmp::Reverse(b.available), &b.cluster.name))
        });
        let more = (need - picked.len() as i64).max(0) as usize;
        picked.extend(rest.iter().take(more).filter_map(|f| index_of(f)));
        if (picked.len() as i64) < cluster_min {
            return Err(format!(
                "the chosen {grouping} groups hold {} cluster(s), the cluster spread constraint needs minGroups {cluster_min}",
                picked.len()
            ));
        }
    }
    picked.sort_unstable();
    Ok(picked)
}

/// Selection by the `cluster` constraint alone.
pub fn by_cluster(feasible: &[Feasible<'_>], bounds: Bounds, demand: Demand) -> Result<Vec<usize>, String> {
    let total = feasible.len() as i64;
    if total < bounds.min {
        return Err(format!(
            "only {total} feasible cluster(s), spreadConstraints needs minGroups {}",
            bounds.min
        ));
    }
    let n = total.min(bounds.max).max(0) as usize;
    if n == 0 {
        return Err("spread constraint maxGroups 0 selects no cluster".into());
    }
    let mut selected: Vec<usize> = (0..n).collect();
    if demand.capacity_aware && demand.replicas > 0 {
        // Karmada's selectClustersByAvailableResource: replace from the back with the unselected
        // cluster holding the most available replicas while the selection lacks capacity.
        let mut rest: Vec<usize> = (n..feasible.len()).collect();
        rest.sort_by_key(|&i| std::cmp::Reverse(feasible[i].available));
        let sum = |sel: &[usize]| {
            sel.iter()
                .map(|&i| feasible[i].available)
                .fold(0i64, i64::saturating_add)
        };
        let mut pos = n;
        while sum(&selected) < demand.replicas && pos > 0 {
            pos -= 1;
            if let Some(&best) = rest.first() {
                if feasible[best].available > feasible[selected[pos]].available {
                    let old = selected[pos];
                    selected[pos] = best;
                    rest[0] = old;
                    rest.sort_by_key(|&i| std::cmp::Reverse(feasible[i].available));
                }
            }
        }
        if sum(&selected) < demand.replicas {
            return Err(format!(
                "the {n} selected cluster(s) lack capacity for {} replicas",
                demand.replicas
            ));
        }
        selected.sort_unstable();
    }
    Ok(selected)
}
