//! `propagateDeps`: the ConfigMaps, Secrets, ServiceAccounts and PVCs a pod template refers to.

use serde_json::Value;
use std::collections::BTreeSet;

/// A dependency: (kind, name) in the template's namespace. Kinds are core-group kinds.
pub type Dep = (&'static str, String);

/// The pod spec of a workload kind (Karmada's built-in dependency interpreters).
fn pod_spec<'a>(kind: &str, v: &'a Value) -> Option<&'a Value> {
    match kind {
        "Pod" => v.get("spec"),
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => v.pointer("/spec/template/spec"),
        "CronJob" => v.pointer("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

fn name_at(v: &Value, ptr: &str) -> Option<String> {
    v.pointer(ptr)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["containers", "initContainers", "ephemeralContainers"]
        .into_iter()
        .filter_map(|k| spec.get(k).and_then(Value::as_array))
        .flatten()
}

/// Every dependency of a template; empty for kinds without a pod template.
pub fn dependencies(kind: &str, v: &Value) -> BTreeSet<Dep> {
    let mut out = BTreeSet::new();
    if kind == "Ingress" {
        for tls in v.pointer("/spec/tls").and_then(Value::as_array).into_iter().flatten() {
            if let Some(n) = name_at(tls, "/secretName") {
                out.insert(("Secret", n));
            }
        }
        return out;
    }
    let Some(spec) = pod_spec(kind, v) else {
        return out;
    };
    for c in containers(spec) {
        for env in c.get("env").and_then(Value::as_array).into_iter().flatten() {
            if let Some(n) = name_at(env, "/valueFrom/configMapKeyRef/name") {
                out.insert(("ConfigMap", n));
            }
            if let Some(n) = name_at(env, "/valueFrom/secretKeyRef/name") {
                out.insert(("Secret", n));
            }
        }
        for from in c.get("envFrom").and_then(Value::as_array).into_iter().flatten() {
            if let Some(n) = name_at(from, "/configMapRef/name") {
                out.insert(("ConfigMap", n));
            }
            if let Some(n) = name_at(from, "/secretRef/name") {
                out.insert(("Secret", n));
            }
        }
    }
    // StatefulSet volumeClaimTemplates create their own PVCs; those names are not dependencies.
    let claim_templates: BTreeSet<String> = v
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| name_at(t, "/metadata/name"))
        .collect();
    for vol in spec.get("volumes").and_then(Value::as_array).into_iter().flatten() {
        if let Some(n) = name_at(vol, "/configMap/name") {
            out.insert(("ConfigMap", n));
        }
        if let Some(n) = name_at(vol, "/secret/secretName") {
            out.insert(("Secret", n));
        }
        if let Some(n) = name_at(vol, "/persistentVolumeClaim/claimName") {
            if !(kind == "StatefulSet" && claim_templates.contains(&n)) {
                out.insert(("PersistentVolumeClaim", n));
            }
        }
        for src in vol
            .pointer("/projected/sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(n) = name_at(src, "/configMap/name") {
                out.insert(("ConfigMap", n));
            }
            if let Some(n) = name_at(src, "/secret/name") {
                out.insert(("Secret", n));
            }
        }
    }
    for s in spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(n) = name_at(s, "/name") {
            out.insert(("Secret", n));
        }
    }
    let sa = name_at(spec, "/serviceAccountName").or_else(|| name_at(spec, "/serviceAccount"));
    if let Some(sa) = sa.filter(|s| s != "default") {
        out.insert(("ServiceAccount", sa));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_every_reference() {
        let d = json!({"spec": {"template": {"spec": {
            "serviceAccountName": "app",
            "imagePullSecrets": [{"name": "pull"}],
            "containers": [{"name": "c",
                "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm1", "key": "k"}}},
                        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s1", "key": "k"}}}],
                "envFrom": [{"configMapRef": {"name": "cm2"}}, {"secretRef": {"name": "s2"}}]}],
            "volumes": [{"name": "v1", "configMap": {"name": "cm3"}},
                        {"name": "v2", "secret": {"secretName": "s3"}},
                        {"name": "v3", "persistentVolumeClaim": {"claimName": "data"}},
                        {"name": "v4", "projected": {"sources": [{"configMap": {"name": "cm4"}}, {"secret": {"name": "s4"}}]}}]
        }}}});
        let deps = dependencies("Deployment", &d);
        let names: Vec<String> = deps.iter().map(|(k, n)| format!("{k}/{n}")).collect();
        assert_eq!(
            names,
            [
                "ConfigMap/cm1",
                "ConfigMap/cm2",
                "ConfigMap/cm3",
                "ConfigMap/cm4",
                "PersistentVolumeClaim/data",
                "Secret/pull",
                "Secret/s1",
                "Secret/s2",
                "Secret/s3",
                "Secret/s4",
                "ServiceAccount/app"
            ]
        );
    }

    #[test]
    fn default_service_account_is_not_a_dependency() {
        let d = json!({"spec": {"serviceAccountName": "default", "containers": []}});
        assert!(dependencies("Pod", &d).is_empty());
    }
}
