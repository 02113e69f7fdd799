//! The equivalent kustomize tree: `base/<group>/` (the same template files), `base/namespaces/`, and
//! `overlays/<cluster>/kustomization.yaml` with the groups placed there and one JSON 6902 patch per
//! template whose rendered object differs from the template (divided replicas, image, labels,
//! plaintext), plus a `$patch: delete` for a Divided workload that receives 0 replicas there.

use super::model::Model;
use super::{simulate, write_file, yaml_docs, TemplateFiles};
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;

pub fn write(model: &Model, files: &TemplateFiles, dir: &Path) -> Result<()> {
    // bases: one per group, holding that group's template files (the same bytes as in the repository)
    for g in &model.groups {
        if g.templates.is_empty() {
            continue;
        }
        let base = dir.join("base").join(&g.name);
        let mut resources: Vec<&str> = Vec::new();
        for &t in &g.templates {
            let path = model.templates[t].file.as_str();
            let name = path.rsplit('/').next().unwrap_or(path);
            if resources.contains(&name) {
                continue;
            }
            let text = files
                .get(path)
                .with_context(|| format!("template file {path} was not written"))?;
            write_file(&base.join(name), text)?;
            resources.push(name);
        }
        write_kustomization(&base.join("kustomization.yaml"), &resources, &[])?;
    }
    let ns_dir = dir.join("base/namespaces");
    write_file(
        &ns_dir.join("namespaces.yaml"),
        &yaml_docs(&super::namespace_objects(model))?,
    )?;
    write_kustomization(&ns_dir.join("kustomization.yaml"), &["namespaces.yaml"], &[])?;

    // overlays: per cluster, the groups placed there and the patches
    let mut groups_on: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); model.clusters.len()];
    for g in &model.groups {
        if g.templates.is_empty() {
            continue;
        }
        for &c in &g.clusters {
            groups_on[c].insert(&g.name);
        }
    }
    let mut patches: Vec<Vec<Value>> = vec![Vec::new(); model.clusters.len()];
    for (t, template) in model.templates.iter().enumerate() {
        let ops = simulate::overrides_for(model, t);
        let placed = simulate::placement(model, t);
        let group = &model.groups[template.group];
        for &c in &group.clusters {
            let target = target(template);
            match placed.iter().find(|(pc, _)| *pc == c) {
                Some(&(_, replicas)) => {
                    let object = simulate::rendered(model, t, c, replicas, &ops);
                    let diff = simulate::diff(&template.object, &object);
                    if !diff.is_empty() {
                        let patch = serde_json::to_string(&diff).context("serialising patch")?;
                        patches[c].push(json!({"target": target, "patch": patch}));
                    }
                }
                None => {
                    let id = json!({
                        "$patch": "delete",
                        "apiVersion": template.kind.api_version(),
                        "kind": template.kind.name(),
                        "metadata": {"name": template.name, "namespace": template.namespace},
                    });
                    patches[c].push(json!({"patch": yaml_docs([&id])?}));
                }
            }
        }
    }
    for (c, cluster) in model.clusters.iter().enumerate() {
        let mut resources = vec!["../../base/namespaces".to_string()];
        resources.extend(groups_on[c].iter().map(|g| format!("../../base/{g}")));
        let resources: Vec<&str> = resources.iter().map(String::as_str).collect();
        write_kustomization(
            &dir.join("overlays").join(&cluster.name).join("kustomization.yaml"),
            &resources,
            &patches[c],
        )?;
    }
    Ok(())
}

fn target(template: &super::model::Template) -> Value {
    let api = template.kind.api_version();
    let mut t = serde_json::Map::new();
    if let Some((group, version)) = api.split_once('/') {
        t.insert("group".into(), json!(group));
        t.insert("version".into(), json!(version));
    } else {
        t.insert("version".into(), json!(api));
    }
    t.insert("kind".into(), json!(template.kind.name()));
    t.insert("name".into(), json!(template.name));
    t.insert("namespace".into(), json!(template.namespace));
    Value::Object(t)
}

fn write_kustomization(path: &Path, resources: &[&str], patches: &[Value]) -> Result<()> {
    let mut k = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    });
    if !patches.is_empty() {
        k["patches"] = Value::Array(patches.to_vec());
    }
    write_file(path, &yaml_docs([&k])?)
}
