//! `cargo xtask gen-repo`: a deterministic synthetic GitOps repository (N templates, P propagation
//! policies, O override policies, C clusters) and, optionally, the equivalent kustomize tree (one
//! overlay per cluster implementing the same placement and overrides as JSON 6902 patches).
//!
//! Layout of the flotilla repository:
//! - `clusters/cluster-XXX.yaml`: the inventory (`flotilla.dev/v1alpha1` Cluster, labels `region`,
//!   `tier`, `provider`; spec `region`, `provider`, `zones`);
//! - `namespaces/namespaces.yaml` + `policies/namespaces.yaml`: Namespace templates sent everywhere by
//!   one ClusterPropagationPolicy;
//! - `templates/<ns>/<group>-<k>.yaml`: up to 8 templates per file, every template labelled
//!   `app-group: gNNN`;
//! - `policies/propagation/<ns>.yaml`: one PropagationPolicy per group, in the group's namespace, selecting
//!   it by label and placing it on 3–10 clusters (`clusterAffinity.clusterNames`); about 20% Divided with a
//!   static weight list, the rest Duplicated;
//! - `policies/overrides/<ns>.yaml`: OverridePolicies, each selecting one group (workloads only, or all
//!   kinds), with 1–3 rules (image registry replace, label add, plaintext replace of `/spec/replicas`
//!   or add of an annotation).

mod kustomize;
pub mod model;
pub mod simulate;

use anyhow::{bail, Context, Result};
pub use model::{Model, Params};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Hidden marker file: a directory holding it was written by this generator and may be replaced.
const MARKER: &str = ".flotilla-gen";

/// Label carried by the Namespace templates (selected by the ClusterPropagationPolicy).
const FLEET_WIDE: &str = "flotilla.dev/fleet-wide";

/// Generates the model, writes the repository to `out` and, when asked, the kustomize tree.
pub fn generate(params: &Params, out: &Path, kustomize_dir: Option<&Path>) -> Result<Model> {
    if params.clusters == 0 || params.propagation_policies == 0 {
        bail!("--clusters and --propagation-policies must be at least 1");
    }
    let model = Model::generate(params);
    let marker = json!({
        "templates": params.templates,
        "propagationPolicies": params.propagation_policies,
        "overridePolicies": params.override_policies,
        "clusters": params.clusters,
        "seed": params.seed,
    })
    .to_string();
    prepare_dir(out, &marker)?;
    let files = write_repo(&model, out)?;
    if let Some(dir) = kustomize_dir {
        prepare_dir(dir, &marker)?;
        kustomize::write(&model, &files, dir)?;
    }
    Ok(model)
}

/// Empties `dir` if this generator wrote it, refuses a non-empty foreign directory, leaves a marker.
fn prepare_dir(dir: &Path, marker: &str) -> Result<()> {
    if dir.exists() {
        if dir.join(MARKER).is_file() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        } else if std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
        {
            bail!(
                "{} exists, is not empty and was not written by gen-repo; refusing to overwrite it",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    write_file(&dir.join(MARKER), marker)
}

pub(crate) fn write_file(path: &Path, contents: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Renders documents as one multi-document YAML file.
pub(crate) fn yaml_docs<'a>(docs: impl IntoIterator<Item = &'a Value>) -> Result<String> {
    let mut out = String::new();
    for (i, doc) in docs.into_iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_yaml::to_string(doc).context("serialising YAML")?);
    }
    Ok(out)
}

/// The Namespace templates.
pub(crate) fn namespace_objects(model: &Model) -> Vec<Value> {
    model
        .namespaces
        .iter()
        .map(|ns| {
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {FLEET_WIDE: "true"}},
            })
        })
        .collect()
}

/// Template files: repository-relative path -> YAML text (the kustomize bases reuse the same bytes).
pub(crate) type TemplateFiles = BTreeMap<String, String>;

fn write_repo(model: &Model, out: &Path) -> Result<TemplateFiles> {
    for c in &model.clusters {
        let doc = json!({
            "apiVersion": "flotilla.dev/v1alpha1",
            "kind": "Cluster",
            "metadata": {
                "name": c.name,
                "labels": {"region": c.region, "tier": c.tier, "provider": c.provider},
            },
            "spec": {"provider": c.provider, "region": c.region, "zones": c.zones},
        });
        write_file(&out.join(format!("clusters/{}.yaml", c.name)), &yaml_docs([&doc])?)?;
    }

    write_file(
        &out.join("namespaces/namespaces.yaml"),
        &yaml_docs(&namespace_objects(model))?,
    )?;
    let cpp = json!({
        "apiVersion": "policy.karmada.io/v1alpha1",
        "kind": "ClusterPropagationPolicy",
        "metadata": {"name": "namespaces-everywhere"},
        "spec": {
            "resourceSelectors": [{
                "apiVersion": "v1",
                "kind": "Namespace",
                "labelSelector": {"matchLabels": {FLEET_WIDE: "true"}},
            }],
            "placement": {},
        },
    });
    write_file(&out.join("policies/namespaces.yaml"), &yaml_docs([&cpp])?)?;

    let mut files: TemplateFiles = BTreeMap::new();
    let mut docs_per_file: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for t in &model.templates {
        docs_per_file.entry(&t.file).or_default().push(&t.object);
    }
    for (file, docs) in docs_per_file {
        let text = yaml_docs(docs)?;
        write_file(&out.join(file), &text)?;
        files.insert(file.to_string(), text);
    }

    let mut pps: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for g in &model.groups {
        pps.entry(&g.namespace).or_default().push(propagation_policy(model, g));
    }
    for (ns, docs) in pps {
        write_file(&out.join(format!("policies/propagation/{ns}.yaml")), &yaml_docs(&docs)?)?;
    }

    let mut ops: BTreeMap<&str, Vec<Value>> = BTreeMap::new();
    for o in &model.overrides {
        ops.entry(&o.namespace).or_default().push(override_policy(model, o));
    }
    for (ns, docs) in ops {
        write_file(&out.join(format!("policies/overrides/{ns}.yaml")), &yaml_docs(&docs)?)?;
    }
    Ok(files)
}

fn group_selectors(group: &str, kinds: &[model::Kind]) -> Value {
    kinds
        .iter()
        .map(|k| {
            json!({
                "apiVersion": k.api_version(),
                "kind": k.name(),
                "labelSelector": {"matchLabels": {"app-group": group}},
            })
        })
        .collect()
}

fn propagation_policy(model: &Model, g: &model::Group) -> Value {
    let names: Vec<&str> = g.clusters.iter().map(|&c| model.clusters[c].name.as_str()).collect();
    let mut placement = json!({"clusterAffinity": {"clusterNames": names}});
    if let Some(weights) = &g.weights {
        let list: Vec<Value> = names
            .iter()
            .zip(weights)
            .map(|(n, w)| json!({"targetCluster": {"clusterNames": [n]}, "weight": w}))
            .collect();
        placement["replicaScheduling"] = json!({
            "replicaSchedulingType": "Divided",
            "replicaDivisionPreference": "Weighted",
            "weightPreference": {"staticWeightList": list},
        });
    } else if g.explicit_duplicated {
        placement["replicaScheduling"] = json!({"replicaSchedulingType": "Duplicated"});
    }
    json!({
        "apiVersion": "policy.karmada.io/v1alpha1",
        "kind": "PropagationPolicy",
        "metadata": {"name": g.policy_name, "namespace": g.namespace},
        "spec": {
            "resourceSelectors": group_selectors(&g.name, &model::Kind::ALL),
            "placement": placement,
        },
    })
}

fn override_policy(model: &Model, o: &model::OverridePolicy) -> Value {
    use model::{Kind, Plaintext, Target};
    let kinds: &[Kind] = if o.workloads_only {
        &[Kind::Deployment, Kind::StatefulSet]
    } else {
        &Kind::ALL
    };
    let rules: Vec<Value> = o
        .rules
        .iter()
        .map(|r| {
            let target = match &r.target {
                Target::Names(names) => {
                    let names: Vec<&str> = names.iter().map(|&c| model.clusters[c].name.as_str()).collect();
                    json!({"clusterNames": names})
                }
                Target::Region(region) => {
                    json!({"labelSelector": {"matchLabels": {"region": region}}})
                }
            };
            let mut overriders = serde_json::Map::new();
            if let Some(registry) = &r.registry {
                overriders.insert(
                    "imageOverrider".into(),
                    json!([{"component": "Registry", "operator": "replace", "value": registry}]),
                );
            }
            if let Some((k, v)) = &r.label {
                overriders.insert("labelsOverrider".into(), json!([{"operator": "add", "value": {k: v}}]));
            }
            match &r.plaintext {
                Some(Plaintext::Replicas(n)) => {
                    overriders.insert(
                        "plaintext".into(),
                        json!([{"path": "/spec/replicas", "operator": "replace", "value": n}]),
                    );
                }
                Some(Plaintext::Annotation { key, value }) => {
                    let path = format!("/metadata/annotations/{}", key.replace('~', "~0").replace('/', "~1"));
                    overriders.insert(
                        "plaintext".into(),
                        json!([{"path": path, "operator": "add", "value": value}]),
                    );
                }
                None => {}
            }
            json!({"targetCluster": target, "overriders": overriders})
        })
        .collect();
    json!({
        "apiVersion": "policy.karmada.io/v1alpha1",
        "kind": "OverridePolicy",
        "metadata": {"name": o.name, "namespace": o.namespace},
        "spec": {
            "resourceSelectors": group_selectors(&model.groups[o.group].name, kinds),
            "overrideRules": rules,
        },
    })
}

/// What `flotilla render` must produce: cluster name -> objects (any order).
pub fn expected(model: &Model) -> BTreeMap<String, Vec<Value>> {
    let namespaces = namespace_objects(model);
    let mut out: BTreeMap<String, Vec<Value>> = model
        .clusters
        .iter()
        .map(|c| (c.name.clone(), namespaces.clone()))
        .collect();
    for t in 0..model.templates.len() {
        let ops = simulate::overrides_for(model, t);
        for (c, replicas) in simulate::placement(model, t) {
            let object = simulate::rendered(model, t, c, replicas, &ops);
            if let Some(list) = out.get_mut(&model.clusters[c].name) {
                list.push(object);
            }
        }
    }
    out
}

/// Counts for the generator's summary line.
pub fn summary(model: &Model) -> String {
    let counts: Vec<usize> = (0..model.templates.len())
        .map(|t| simulate::placement(model, t).len())
        .collect();
    let placements: usize = counts.iter().sum();
    let min = counts.iter().min().copied().unwrap_or(0);
    let max = counts.iter().max().copied().unwrap_or(0);
    let divided = model.groups.iter().filter(|g| g.weights.is_some()).count();
    format!(
        "{} templates in {} groups ({} Divided), {} namespaces, {} override policies, {} clusters; \
         {} template placements ({:.1} clusters per template, {}–{})",
        model.templates.len(),
        model.groups.len(),
        divided,
        model.namespaces.len(),
        model.overrides.len(),
        model.clusters.len(),
        placements,
        placements as f64 / model.templates.len().max(1) as f64,
        min,
        max
    )
}
