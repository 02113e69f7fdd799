//! One render: choose → schedule → dependencies → replicas → overrides → per-cluster sets.

use crate::checks::{check_policies, Rejected};
use crate::choose::{Candidate, Chooser, PolicyRef};
use crate::deps::dependencies;
use crate::diagnostic::{code, Diagnostic};
use crate::overriding::{OverrideIndex, Step};
use crate::placement::{replicas::webster, schedule, Decision, Workload};
use crate::repo::{Repo, Template};
use crate::ObjectRef;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Where one template goes and why.
#[derive(Debug, Clone)]
pub struct Placed {
    pub candidates: Vec<Candidate>,
    /// `None` when no policy selected it (or it was skipped); then `decision` is `None` too.
    pub policy: Option<PolicyRef>,
    pub decision: Option<Decision>,
    /// Final targets: (cluster index, divided replicas). Includes clusters added by dependencies.
    pub targets: Vec<(usize, Option<i64>)>,
    /// Parents that pulled this template in through `propagateDeps`.
    pub required_by: Vec<usize>,
}

/// The outcome of rendering.
#[derive(Debug, Clone)]
pub struct Output {
    /// Every inventory cluster (or the requested ones), by name, objects in apply order. Objects a
    /// cluster gets unchanged are shared with the template (and with other clusters).
    pub clusters: BTreeMap<String, Vec<Arc<Value>>>,
    pub diagnostics: Vec<Diagnostic>,
    /// Templates whose conflict resolution is `Overwrite` (from the propagation policy, or the
    /// template annotation `work.karmada.io/conflict-resolution`): `apply` adopts an existing object
    /// flotilla does not own instead of reporting a conflict.
    pub overwrite: std::collections::BTreeSet<ObjectRef>,
    /// The inputs of cross-cluster routing (SPEC §7): every cluster's rendered `Service`s and
    /// `ServiceExport`s (`multicluster.x-k8s.io`), in apply order. Kept for every inventory cluster
    /// whatever [`RenderOptions::clusters`] and [`Emit`] say: routing needs the whole fleet even when
    /// one cluster is printed. Each entry is (index into [`Repo::templates`], rendered object); the
    /// objects are shared with those above (no copies).
    pub routing_inputs: BTreeMap<String, Vec<(usize, Arc<Value>)>>,
    /// With [`Emit::Json`]: per cluster, segments of the objects' compact JSON (each segment
    /// comma-separated inside, segments in apply order; joined with commas when written).
    pub(crate) json: Option<BTreeMap<String, Vec<Vec<u8>>>>,
}

/// Whether rendered copies of this template are kept in [`Output::routing_inputs`].
fn is_routing_input(t: &Template) -> bool {
    matches!(
        (t.group.as_str(), t.kind.as_str()),
        ("", "Service") | ("multicluster.x-k8s.io", "ServiceExport")
    )
}

/// A fully traced render of one template, for `explain`.
#[derive(Debug, Clone)]
pub struct Trace {
    pub template: usize,
    pub placed: Placed,
    /// Per target cluster: the override steps applied in order, or the error.
    pub overrides: Vec<(usize, Vec<Step>, Option<String>)>,
}

/// Options of one render.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    /// Only these clusters in the output (all when empty).
    pub clusters: Vec<String>,
    /// Trace these templates (for explain).
    pub trace: Vec<ObjectRef>,
    /// What to keep of the rendered objects.
    pub emit: Emit,
    /// Clusters that cannot be reached (the daemon's failover): scheduled as if tainted
    /// [`UNREACHABLE_TAINT`]`:NoSchedule`, so placements that can fall back (clusterAffinities, Divided
    /// replicas, several candidate clusters) leave them. A placement that has nowhere else to go keeps
    /// its clusters, with a warning: failover never makes a commit unschedulable.
    pub unreachable: Vec<String>,
}

/// The taint Karmada puts on a cluster it cannot reach.
pub const UNREACHABLE_TAINT: &str = "cluster.karmada.io/unreachable";

/// What a render keeps of the objects it produces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Emit {
    /// Objects as JSON values in [`Output::clusters`].
    #[default]
    Values,
    /// Compact JSON text only, serialised as soon as each object is produced (for `render --format
    /// json`): the memory of one serialised object instead of one parsed object per placement.
    /// [`Output::clusters`] stays empty; [`Output::write_json`] writes the text.
    Json,
    /// Nothing (`validate`): every check runs, no object is kept.
    Nothing,
}

/// The replica facts Karmada's interpreter derives from a template.
pub fn workload_of(t: &Template) -> Workload {
    let v = &t.value;
    let replicas = match (t.group.as_str(), t.kind.as_str()) {
        ("apps", "Deployment" | "ReplicaSet" | "StatefulSet") => {
            v.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0)
        }
        ("batch", "Job") => {
            let p = v.pointer("/spec/parallelism").and_then(Value::as_i64).unwrap_or(0);
            match v.pointer("/spec/completions").and_then(Value::as_i64) {
                Some(c) if c < p => c,
                _ => p,
            }
        }
        ("", "Pod") => 1,
        _ => 0,
    };
    Workload {
        replicas: replicas.max(0),
    }
}

fn write_replicas(t: &Template, obj: &mut Value, n: i64, parallelism_weights: Option<(i64, i64)>) {
    let ptr = match (t.group.as_str(), t.kind.as_str()) {
        ("apps", _) => "replicas",
        ("batch", "Job") => "parallelism",
        _ => return,
    };
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert(ptr.into(), Value::from(n));
        if let Some((_, completions)) = parallelism_weights {
            spec.insert("completions".into(), Value::from(completions));
        }
    }
}

/// Sort key of the apply order: CRDs, Namespaces, cluster-wide RBAC, the rest; then group, kind,
/// namespace, name.
pub fn apply_rank(group: &str, kind: &str) -> u8 {
    match (group, kind) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => 0,
        ("", "Namespace") => 1,
        ("rbac.authorization.k8s.io", "ClusterRole" | "ClusterRoleBinding") => 2,
        _ => 3,
    }
}

/// The full apply-order key of a template.
fn apply_key(t: &Template) -> (u8, &str, &str, &str, &str) {
    (apply_rank(&t.group, &t.kind), &t.group, &t.kind, &t.namespace, &t.name)
}

/// Renders a loaded repository.
pub fn run(repo: &Repo<'_>, opts: &RenderOptions) -> (Output, Vec<Trace>) {
    let mut diags: Vec<Diagnostic> = repo.diagnostics.clone();
    let rejected: Rejected = check_policies(repo, &mut diags);
    let chooser = Chooser::new(repo, rejected.propagation.clone(), rejected.cluster_propagation.clone());
    let clusters = &repo.clusters;
    let tainted: Option<Vec<crate::inventory::Cluster>> = (!opts.unreachable.is_empty()).then(|| {
        clusters
            .iter()
            .map(|c| {
                let mut c = c.clone();
                if opts.unreachable.contains(&c.name) {
                    c.spec.taints.push(crate::model::Taint {
                        key: UNREACHABLE_TAINT.into(),
                        value: String::new(),
                        effect: "NoSchedule".into(),
                    });
                }
                c
            })
            .collect()
    });

    // 1. Policy choice and scheduling, with a cache: the decision depends only on the policy and
    //    the replica count.
    let mut cache: HashMap<(PolicyRef, i64), Result<Decision, String>> = HashMap::new();
    // Failover: the placements kept on an unreachable cluster for want of another, and why.
    let mut no_fallback: HashMap<(PolicyRef, i64), String> = HashMap::new();
    let mut placed: Vec<Placed> = Vec::with_capacity(repo.templates.len());
    let mut pp_used = vec![false; repo.propagation.len()];
    let mut cpp_used = vec![false; repo.cluster_propagation.len()];
    for t in &repo.templates {
        let mut p = Placed {
            candidates: Vec::new(),
            policy: None,
            decision: None,
            targets: Vec::new(),
            required_by: Vec::new(),
        };
        if t.namespaced && repo.config.skips_namespace(&t.namespace) {
            diags.push(
                Diagnostic::warning(
                    code::SKIPPED_NAMESPACE,
                    &t.origin.file,
                    t.origin.pos,
                    format!(
                        "{} is in namespace `{}`, which flotilla never propagates (karmada-*, kube-* unless flotilla.yaml lists it in propagateNamespaces)",
                        t.object_ref(),
                        t.namespace
                    ),
                )
                .with_object(t.object_ref().to_string()),
            );
            placed.push(p);
            continue;
        }
        p.candidates = chooser.candidates(t);
        for c in &p.candidates {
            match c.policy {
                PolicyRef::Namespaced(i) => pp_used[i] = true,
                PolicyRef::Cluster(i) => cpp_used[i] = true,
            }
        }
        if let Some(best) = p.candidates.first() {
            let pref = best.policy;
            p.policy = Some(pref);
            let policy = chooser.policy(pref);
            let w = workload_of(t);
            let result = cache.entry((pref, w.replicas)).or_insert_with(|| {
                let placement = &policy.spec.placement;
                match &tainted {
                    None => schedule(placement, clusters, w).map_err(|(why, _)| why),
                    Some(tainted) => match schedule(placement, tainted, w) {
                        Ok(d) => Ok(d),
                        Err((why, _)) => {
                            let kept = schedule(placement, clusters, w).map_err(|(why, _)| why);
                            if kept.is_ok() {
                                no_fallback.insert((pref, w.replicas), why);
                            }
                            kept
                        }
                    },
                }
            });
            if let Some(why) = no_fallback.get(&(pref, w.replicas)) {
                diags.push(
                    Diagnostic::warning(
                        code::NO_FALLBACK,
                        &t.origin.file,
                        t.origin.pos,
                        format!(
                            "{} stays on its clusters although {} cannot be reached: {} has nowhere else to place it ({why})",
                            t.object_ref(),
                            opts.unreachable.join(", "),
                            policy.display()
                        ),
                    )
                    .with_object(t.object_ref().to_string()),
                );
            }
            match result {
                Ok(d) => {
                    p.targets = d.targets.clone();
                    p.decision = Some(d.clone());
                }
                Err(why) => {
                    diags.push(
                        Diagnostic::error(
                            code::UNSCHEDULABLE,
                            &t.origin.file,
                            t.origin.pos,
                            format!(
                                "{} cannot be placed by {} ({}): {why}",
                                t.object_ref(),
                                policy.display(),
                                policy.origin.at()
                            ),
                        )
                        .with_object(t.object_ref().to_string()),
                    );
                    if opts.trace.contains(&t.object_ref()) {
                        p.decision = schedule(&policy.spec.placement, clusters, w).err().map(|(_, d)| d);
                    }
                }
            }
        }
        placed.push(p);
    }

    // 2. propagateDeps: dependents go to the union of their parents' clusters (and their own).
    let by_ref: HashMap<ObjectRef, usize> = repo
        .templates
        .iter()
        .enumerate()
        .map(|(i, t)| (t.object_ref(), i))
        .collect();
    let mut extra: Vec<(usize, usize, Vec<usize>)> = Vec::new(); // (dependent, parent, clusters)
    for (i, t) in repo.templates.iter().enumerate() {
        let Some(pref) = placed[i].policy else { continue };
        let pol = chooser.policy(pref);
        if !(pol.spec.propagate_deps || pol.spec.association) || placed[i].targets.is_empty() {
            continue;
        }
        for (kind, name) in dependencies(&t.kind, &t.value) {
            let r = ObjectRef {
                group: String::new(),
                kind: kind.to_string(),
                namespace: t.namespace.clone(),
                name,
            };
            if let Some(&d) = by_ref.get(&r) {
                extra.push((d, i, placed[i].targets.iter().map(|(c, _)| *c).collect()));
            }
        }
    }
    for (d, parent, cs) in extra {
        let p = &mut placed[d];
        p.required_by.push(parent);
        for c in cs {
            if !p.targets.iter().any(|(x, _)| *x == c) {
                p.targets.push((c, None));
            }
        }
        p.targets.sort_unstable();
    }

    // 3. Warnings about what selects nothing / is selected by nothing.
    for (i, t) in repo.templates.iter().enumerate() {
        let p = &placed[i];
        let skipped = t.namespaced && repo.config.skips_namespace(&t.namespace);
        if p.policy.is_none() && p.required_by.is_empty() && !skipped {
            diags.push(
                Diagnostic::warning(
                    code::UNSELECTED_TEMPLATE,
                    &t.origin.file,
                    t.origin.pos,
                    format!(
                        "{} is selected by no propagation policy: it is not propagated",
                        t.object_ref()
                    ),
                )
                .with_object(t.object_ref().to_string()),
            );
        }
    }
    // A ClusterPropagationPolicy is only consulted when no PropagationPolicy matches; whether it
    // selects anything at all is asked separately.
    for (i, p) in repo.cluster_propagation.iter().enumerate() {
        if !cpp_used[i] && !rejected.cluster_propagation[i] {
            cpp_used[i] = repo.templates.iter().any(|t| {
                crate::selector::best_score(&p.spec.resource_selectors, &t.view()) > crate::selector::Score::MisMatch
            });
        }
    }
    let lists = [
        (&pp_used, &repo.propagation, &rejected.propagation),
        (&cpp_used, &repo.cluster_propagation, &rejected.cluster_propagation),
    ];
    for (used, list, rejected) in lists {
        for ((u, p), r) in used.iter().zip(list.iter()).zip(rejected.iter()) {
            if !u && !r {
                diags.push(Diagnostic::warning(
                    code::POLICY_SELECTS_NOTHING,
                    &p.origin.file,
                    p.origin.pos,
                    format!("{} selects no template", p.display()),
                ));
            }
        }
    }

    // 4. Per (template, cluster): replicas, overrides. Templates are independent: split them over the
    //    available cores; partial results are merged and sorted, so the output does not depend on it.
    let index = OverrideIndex::new(repo, &rejected);
    let wanted: Vec<bool> = clusters
        .iter()
        .map(|c| opts.clusters.is_empty() || opts.clusters.contains(&c.name))
        .collect();
    let ctx = Ctx {
        repo,
        placed: &placed,
        index: &index,
        wanted: &wanted,
        opts,
    };
    // Templates are visited in apply order, so each cluster's objects come out sorted and the
    // contiguous chunks of the threads concatenate in order.
    let mut order: Vec<usize> = (0..repo.templates.len()).collect();
    order.sort_by(|&a, &b| apply_key(&repo.templates[a]).cmp(&apply_key(&repo.templates[b])));
    let n = order.len();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let parts: Vec<Partial> = if n < 512 || threads < 2 {
        vec![ctx.render_range(&order)]
    } else {
        let chunk = n.div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = order
                .chunks(chunk)
                .map(|part| {
                    let ctx = &ctx;
                    s.spawn(move || ctx.render_range(part))
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        })
    };
    if parts.is_empty() && n > 0 {
        diags.push(Diagnostic::error(
            code::SYNTAX,
            "",
            crate::Pos::default(),
            "internal error: a render thread panicked",
        ));
    }
    let mut per_cluster: Vec<Vec<Arc<Value>>> = vec![Vec::new(); clusters.len()];
    let mut json: Vec<Vec<Vec<u8>>> = vec![Vec::new(); clusters.len()];
    let mut traces = Vec::new();
    let mut routing: Vec<Vec<(usize, Arc<Value>)>> = vec![Vec::new(); clusters.len()];
    let (mut shared, mut modified) = (0usize, 0usize);
    for part in parts {
        for (c, t, obj) in part.routing {
            routing[c].push((t, obj));
        }
        for (c, objs) in part.per_cluster.into_iter().enumerate() {
            per_cluster[c].extend(objs);
        }
        for (c, bytes) in part.json.into_iter().enumerate() {
            if !bytes.is_empty() {
                json[c].push(bytes);
            }
        }
        diags.extend(part.diags);
        traces.extend(part.traces);
        shared += part.shared;
        modified += part.modified;
    }
    diags.extend(index.unused_warnings());
    tracing::debug!(shared, modified, "placements rendered");

    // Conflict resolution per template: the annotation wins over the policy (Karmada's rule).
    let mut overwrite = std::collections::BTreeSet::new();
    for (i, t) in repo.templates.iter().enumerate() {
        let from_policy = placed[i]
            .policy
            .map(|r| chooser.policy(r).spec.conflict_resolution.as_deref() == Some("Overwrite"))
            .unwrap_or(false);
        let annotation = t
            .value
            .pointer("/metadata/annotations/work.karmada.io~1conflict-resolution")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase);
        let yes = match annotation.as_deref() {
            Some("overwrite") => true,
            Some("abort") => false,
            _ => from_policy,
        };
        if yes && !placed[i].targets.is_empty() {
            overwrite.insert(t.object_ref());
        }
    }

    // 5. Output (already in apply order).
    let mut out = BTreeMap::new();
    let mut json_out = BTreeMap::new();
    for (ci, (objs, bytes)) in per_cluster.into_iter().zip(json).enumerate() {
        if !wanted[ci] {
            continue;
        }
        match opts.emit {
            Emit::Json => {
                json_out.insert(clusters[ci].name.clone(), bytes);
            }
            Emit::Values | Emit::Nothing => {
                out.insert(clusters[ci].name.clone(), objs);
            }
        }
    }
    let routing_inputs = clusters
        .iter()
        .zip(routing)
        .map(|(c, objs)| (c.name.clone(), objs))
        .collect();
    crate::diagnostic::finish(&mut diags);
    (
        Output {
            clusters: out,
            routing_inputs,
            diagnostics: diags,
            json: (opts.emit == Emit::Json).then_some(json_out),
            overwrite,
        },
        traces,
    )
}

/// For a Divided Job with `completions`, the completions per target (same order as `targets`).
fn job_completions(
    t: &Template,
    targets: &[(usize, Option<i64>)],
    clusters: &[crate::inventory::Cluster],
) -> Option<Vec<i64>> {
    if !(t.group == "batch" && t.kind == "Job") {
        return None;
    }
    let total = t.value.pointer("/spec/completions").and_then(Value::as_i64)?;
    if targets.iter().any(|(_, r)| r.is_none()) {
        return None;
    }
    let entries: Vec<(&str, i64)> = targets
        .iter()
        .map(|(c, r)| (clusters[*c].name.as_str(), r.unwrap_or(0)))
        .collect();
    Some(webster(&entries, total))
}

/// What one thread of step 4 produces.
struct Partial {
    per_cluster: Vec<Vec<Arc<Value>>>,
    /// With [`Emit::Json`]: per cluster, comma-separated compact JSON.
    json: Vec<Vec<u8>>,
    diags: Vec<Diagnostic>,
    traces: Vec<Trace>,
    /// (cluster, template, object) of every rendered routing input, in apply order.
    routing: Vec<(usize, usize, Arc<Value>)>,
    shared: usize,
    modified: usize,
}

/// Shared, read-only inputs of step 4.
struct Ctx<'a, 'r> {
    repo: &'a Repo<'r>,
    placed: &'a [Placed],
    index: &'a OverrideIndex<'a>,
    wanted: &'a [bool],
    opts: &'a RenderOptions,
}

impl Ctx<'_, '_> {
    /// Keeps one rendered object per the emit mode. `bytes` caches the serialised form of a shared
    /// (unchanged) template across its clusters.
    fn keep(&self, out: &mut Partial, c: usize, obj: Arc<Value>, cache: Option<&mut Option<Vec<u8>>>) {
        if !self.wanted[c] {
            return;
        }
        match self.opts.emit {
            Emit::Nothing => {}
            Emit::Values => out.per_cluster[c].push(obj),
            Emit::Json => {
                let buf = &mut out.json[c];
                if !buf.is_empty() {
                    buf.push(b',');
                }
                match cache {
                    Some(slot) => {
                        let bytes = slot.get_or_insert_with(|| serde_json::to_vec(obj.as_ref()).unwrap_or_default());
                        buf.extend_from_slice(bytes);
                    }
                    // Serialising a `Value` into memory cannot fail (string keys, finite numbers).
                    None => {
                        let _ = serde_json::to_writer(&mut *buf, obj.as_ref());
                    }
                }
            }
        }
    }

    fn render_range(&self, templates: &[usize]) -> Partial {
        let clusters = &self.repo.clusters;
        let mut out = Partial {
            json: vec![Vec::new(); clusters.len()],
            per_cluster: vec![Vec::new(); clusters.len()],
            diags: Vec::new(),
            traces: Vec::new(),
            routing: Vec::new(),
            shared: 0,
            modified: 0,
        };
        for &i in templates {
            let t = &self.repo.templates[i];
            let mut cache: Option<Vec<u8>> = None;
            let p = &self.placed[i];
            let tracing = !self.opts.trace.is_empty() && self.opts.trace.contains(&t.object_ref());
            let mut trace = Trace {
                template: i,
                placed: p.clone(),
                overrides: Vec::new(),
            };
            if p.targets.is_empty() {
                if tracing {
                    out.traces.push(trace);
                }
                continue;
            }
            let routing_input = is_routing_input(t);
            let policies = self.index.policies_for(t);
            // A Divided Job's completions are split by the assigned parallelism.
            let completions = job_completions(t, &p.targets, clusters);
            for (k, (c, replicas)) in p.targets.iter().enumerate() {
                if replicas.is_none() && !tracing && !self.index.targets_any(&policies, *c) {
                    // Unchanged on this cluster: share the template.
                    out.shared += 1;
                    if routing_input {
                        out.routing.push((*c, i, Arc::clone(&t.value)));
                    }
                    self.keep(&mut out, *c, Arc::clone(&t.value), Some(&mut cache));
                    continue;
                }
                // Dry-run overrides for every targeted cluster even when it is filtered out of the
                // output: `validate` must see every broken patch.
                out.modified += 1;
                let mut obj = Value::clone(&t.value);
                if let Some(n) = replicas {
                    write_replicas(t, &mut obj, *n, completions.as_ref().map(|cs| (*n, cs[k])));
                }
                let mut steps = Vec::new();
                match self.index.apply(&policies, *c, &mut obj, tracing.then_some(&mut steps)) {
                    Ok(warnings) => {
                        for w in warnings {
                            out.diags.push(
                                w.with_cluster(&clusters[*c].name)
                                    .with_object(t.object_ref().to_string()),
                            );
                        }
                        if tracing {
                            trace.overrides.push((*c, steps, None));
                        }
                        let obj = Arc::new(obj);
                        if routing_input {
                            out.routing.push((*c, i, Arc::clone(&obj)));
                        }
                        self.keep(&mut out, *c, obj, None);
                    }
                    Err(d) => {
                        if tracing {
                            trace.overrides.push((*c, steps, Some(d.message.clone())));
                        }
                        let msg = format!(
                            "{} ({}) is not rendered for cluster {}: {}",
                            t.object_ref(),
                            t.origin.at(),
                            clusters[*c].name,
                            d.message
                        );
                        out.diags.push(
                            Diagnostic { message: msg, ..d }
                                .with_cluster(&clusters[*c].name)
                                .with_object(t.object_ref().to_string()),
                        );
                    }
                }
            }
            if tracing {
                out.traces.push(trace);
            }
        }
        out
    }
}
