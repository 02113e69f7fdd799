//! The objects `bench-apply` applies: a deterministic mix of realistic namespaced kinds spread over
//! a few namespaces, written as a flotilla repository (one-cluster inventory, a PropagationPolicy per
//! namespace placing everything on that cluster).
//!
//! The content depends only on the object count, the namespace count and the seed; the run id only
//! names the namespaces (`bench-<id>-NN`) and fills the run label, so every run of every tool applies
//! the same objects into namespaces of its own.

use crate::prng::SplitMix64;
use anyhow::{Context, Result};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The cluster of the inventory (and of the harness, and its kubeconfig context).
pub const CLUSTER: &str = "bench";

/// Label on every object and namespace: the run and tool that applied it (`r3-kubectl`).
pub const RUN_LABEL: &str = "bench.flotilla.dev/run";

/// The custom resource's group; its CRD is installed once before the runs (see [`crd`]).
const WIDGET_GROUP: &str = "bench.flotilla.dev";

/// One kind of the mix.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    ConfigMap,
    Secret,
    Service,
    ServiceAccount,
    Role,
    RoleBinding,
    Deployment,
    Widget,
}

impl Kind {
    /// The mix, with weights in percent.
    pub const MIX: [(Kind, usize); 8] = [
        (Kind::ConfigMap, 24),
        (Kind::Secret, 14),
        (Kind::Service, 10),
        (Kind::ServiceAccount, 10),
        (Kind::Role, 8),
        (Kind::RoleBinding, 8),
        (Kind::Deployment, 18),
        (Kind::Widget, 8),
    ];

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::ConfigMap | Kind::Secret | Kind::Service | Kind::ServiceAccount => "v1",
            Kind::Role | Kind::RoleBinding => "rbac.authorization.k8s.io/v1",
            Kind::Deployment => "apps/v1",
            Kind::Widget => "bench.flotilla.dev/v1",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::ConfigMap => "ConfigMap",
            Kind::Secret => "Secret",
            Kind::Service => "Service",
            Kind::ServiceAccount => "ServiceAccount",
            Kind::Role => "Role",
            Kind::RoleBinding => "RoleBinding",
            Kind::Deployment => "Deployment",
            Kind::Widget => "Widget",
        }
    }

    /// `resource[.group]`, as `kubectl get` takes it.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::ConfigMap => "configmaps",
            Kind::Secret => "secrets",
            Kind::Service => "services",
            Kind::ServiceAccount => "serviceaccounts",
            Kind::Role => "roles.rbac.authorization.k8s.io",
            Kind::RoleBinding => "rolebindings.rbac.authorization.k8s.io",
            Kind::Deployment => "deployments.apps",
            Kind::Widget => "widgets.bench.flotilla.dev",
        }
    }

    fn index(self) -> u64 {
        Kind::MIX.iter().position(|(k, _)| *k == self).unwrap_or(0) as u64
    }
}

/// How many objects of each kind make `total` (the weights, rounded down, the rest to the first kinds).
pub fn counts(total: usize) -> Vec<(Kind, usize)> {
    let mut out: Vec<(Kind, usize)> = Kind::MIX.iter().map(|&(k, w)| (k, total * w / 100)).collect();
    let mut rest = total - out.iter().map(|(_, n)| n).sum::<usize>();
    for (_, n) in out.iter_mut() {
        if rest == 0 {
            break;
        }
        *n += 1;
        rest -= 1;
    }
    out
}

/// One run's objects.
pub struct Fleet {
    /// The run id (`r1-flotilla`).
    pub id: String,
    /// The Namespace objects, in name order.
    pub namespaces: Vec<Value>,
    /// The namespaced objects, grouped by namespace then kind (the repository's file layout).
    pub objects: BTreeMap<(String, usize), Vec<Value>>,
}

impl Fleet {
    /// Every object the cluster must hold after the apply: the namespaces, then the rest.
    pub fn all(&self) -> impl Iterator<Item = &Value> {
        self.namespaces.iter().chain(self.objects.values().flatten())
    }

    pub fn len(&self) -> usize {
        self.namespaces.len() + self.objects.values().map(Vec::len).sum::<usize>()
    }
}

const APPS: [&str; 20] = [
    "api",
    "web",
    "checkout",
    "payments",
    "search",
    "catalog",
    "auth",
    "billing",
    "cart",
    "inventory",
    "orders",
    "shipping",
    "notify",
    "reports",
    "ledger",
    "gateway",
    "profile",
    "reviews",
    "media",
    "analytics",
];

/// The objects of run `id`: `total` namespaced objects over `namespaces` namespaces.
pub fn generate(id: &str, total: usize, namespaces: usize, seed: u64) -> Fleet {
    let namespaces = namespaces.max(1);
    let ns_names: Vec<String> = (0..namespaces).map(|i| format!("bench-{id}-{i:02}")).collect();
    let mut objects: BTreeMap<(String, usize), Vec<Value>> = BTreeMap::new();
    for (kind, count) in counts(total) {
        // One stream per kind, so the objects do not depend on the run or the other kinds' counts.
        let mut rng = SplitMix64::new(seed.wrapping_mul(0x100).wrapping_add(kind.index()));
        for j in 0..count {
            let ns = &ns_names[j % namespaces];
            let app = APPS[(j / namespaces) % APPS.len()];
            let base = format!("{app}-{j:04}");
            let mut obj = object(kind, &base, app, ns, &mut rng);
            add_common_metadata(&mut obj, app, id);
            objects
                .entry((ns.clone(), kind.index() as usize))
                .or_default()
                .push(obj);
        }
    }
    let namespaces = ns_names
        .iter()
        .map(|ns| {
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": ns,
                    "labels": {RUN_LABEL: id, "team": ns.rsplit('-').next().unwrap_or("00")},
                },
            })
        })
        .collect();
    Fleet {
        id: id.to_string(),
        namespaces,
        objects,
    }
}

fn add_common_metadata(obj: &mut Value, app: &str, id: &str) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert("app.kubernetes.io/name".into(), app.into());
            labels.insert("app.kubernetes.io/part-of".into(), "bench".into());
            labels.insert(RUN_LABEL.into(), id.into());
        }
    }
}

fn meta(name: &str, ns: &str) -> Value {
    json!({"name": name, "namespace": ns})
}

/// `n` pseudo-random bytes.
fn bytes(rng: &mut SplitMix64, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(n);
    out
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A hex word of 16 digits.
fn word(rng: &mut SplitMix64) -> String {
    format!("{:016x}", rng.next_u64())
}

/// A configuration file of about `size` bytes: `key = value` lines.
fn config_file(rng: &mut SplitMix64, size: usize) -> String {
    let mut text = String::with_capacity(size + 64);
    let mut i = 0;
    while text.len() < size {
        let value = word(rng);
        text.push_str(&format!("section{}.setting_{i} = {value}\n", i / 16));
        i += 1;
    }
    text
}

/// A PEM block of `n` bytes of pseudo-random content (the API server does not parse it).
fn pem(rng: &mut SplitMix64, label: &str, n: usize) -> String {
    let body = b64(&bytes(rng, n));
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

const COLORS: [&str; 4] = ["red", "green", "blue", "amber"];

fn object(kind: Kind, base: &str, app: &str, ns: &str, rng: &mut SplitMix64) -> Value {
    match kind {
        Kind::ConfigMap => config_map(base, ns, rng),
        Kind::Secret => secret(base, ns, rng),
        Kind::Service => service(base, app, ns, rng),
        Kind::ServiceAccount => {
            let mut sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(base, ns)});
            if rng.chance(50) {
                sa["automountServiceAccountToken"] = json!(false);
            }
            if rng.chance(30) {
                sa["metadata"]["annotations"] = json!({"example.com/owner": format!("team-{}", rng.below(40))});
            }
            sa
        }
        Kind::Role => role(base, ns, rng),
        Kind::RoleBinding => json!({
            "apiVersion": kind.api_version(),
            "kind": "RoleBinding",
            "metadata": meta(&format!("{base}-reader"), ns),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("{base}-reader")},
            "subjects": [
                {"kind": "ServiceAccount", "name": base, "namespace": ns},
                {"kind": "Group", "name": format!("team-{}", rng.below(40)), "apiGroup": "rbac.authorization.k8s.io"},
            ],
        }),
        Kind::Deployment => deployment(base, app, ns, rng),
        Kind::Widget => {
            let tags: Vec<String> = (0..rng.range(0, 4))
                .map(|i| format!("tag-{i}-{}", rng.below(100)))
                .collect();
            let mut config = Map::new();
            for i in 0..rng.range(1, 6) {
                config.insert(format!("key{i}"), word(rng).into());
            }
            let color = COLORS[rng.below(COLORS.len() as u64) as usize];
            json!({
                "apiVersion": kind.api_version(),
                "kind": "Widget",
                "metadata": meta(base, ns),
                "spec": {
                    "size": rng.range(1, 100),
                    "color": color,
                    "replicas": rng.range(1, 5),
                    "tags": tags,
                    "config": config,
                },
            })
        }
    }
}

/// 60% a few environment-style keys, 30% a 1–4 KB file, 10% a 16–64 KB file.
fn config_map(base: &str, ns: &str, rng: &mut SplitMix64) -> Value {
    let mut data = Map::new();
    let class = rng.below(10);
    if class < 6 {
        for key in [
            "LOG_LEVEL",
            "LISTEN_ADDR",
            "FEATURE_FLAGS",
            "UPSTREAM_URL",
            "CACHE_TTL",
            "REGION",
        ]
        .iter()
        .take(rng.range(2, 6) as usize)
        {
            data.insert((*key).into(), word(rng).into());
        }
    } else {
        let size = if class < 9 {
            rng.range(1024, 4096)
        } else {
            rng.range(16 * 1024, 64 * 1024)
        };
        data.insert("app.properties".into(), config_file(rng, size as usize).into());
    }
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(&format!("{base}-config"), ns), "data": data})
}

/// 70% Opaque with 1–3 keys of 16–48 bytes, 30% `kubernetes.io/tls` with a ~1.5 KB certificate and key.
fn secret(base: &str, ns: &str, rng: &mut SplitMix64) -> Value {
    if rng.chance(70) {
        let mut data = Map::new();
        for key in ["password", "token", "api-key"].iter().take(rng.range(1, 3) as usize) {
            let n = rng.range(16, 48) as usize;
            data.insert((*key).into(), b64(&bytes(rng, n)).into());
        }
        json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": meta(&format!("{base}-creds"), ns),
            "type": "Opaque", "data": data,
        })
    } else {
        let crt = pem(rng, "CERTIFICATE", 900);
        let key = pem(rng, "PRIVATE KEY", 1200);
        json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": meta(&format!("{base}-tls"), ns),
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64(crt.as_bytes()), "tls.key": b64(key.as_bytes())},
        })
    }
}

const PORTS: [(&str, u64, u64); 4] = [
    ("http", 80, 8080),
    ("https", 443, 8443),
    ("metrics", 9090, 9090),
    ("grpc", 50051, 50051),
];

fn service(base: &str, app: &str, ns: &str, rng: &mut SplitMix64) -> Value {
    let first = rng.below(PORTS.len() as u64) as usize;
    let ports: Vec<Value> = (0..rng.range(1, 3) as usize)
        .map(|i| {
            let (name, port, target) = PORTS[(first + i) % PORTS.len()];
            json!({"name": name, "port": port, "targetPort": target, "protocol": "TCP"})
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(base, ns),
        "spec": {"type": "ClusterIP", "selector": {"app": base, "app.kubernetes.io/name": app}, "ports": ports},
    })
}

fn role(base: &str, ns: &str, rng: &mut SplitMix64) -> Value {
    let all: [(&str, &[&str], &[&str]); 5] = [
        ("", &["configmaps", "secrets"], &["get", "list", "watch"]),
        ("", &["pods", "pods/log"], &["get", "list"]),
        ("apps", &["deployments", "replicasets"], &["get", "list", "watch"]),
        ("", &["services", "endpoints"], &["get", "list"]),
        (
            "bench.flotilla.dev",
            &["widgets"],
            &["get", "list", "watch", "update", "patch"],
        ),
    ];
    let first = rng.below(all.len() as u64) as usize;
    let rules: Vec<Value> = (0..rng.range(1, 4) as usize)
        .map(|i| {
            let (group, resources, verbs) = all[(first + i) % all.len()];
            json!({"apiGroups": [group], "resources": resources, "verbs": verbs})
        })
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": meta(&format!("{base}-reader"), ns),
        "rules": rules,
    })
}

const IMAGES: [&str; 6] = [
    "registry.example.com/platform/api:1.24.3",
    "registry.example.com/platform/web:3.2.0",
    "nginx:1.27.2-alpine",
    "registry.example.com/jobs/worker:0.9.14",
    "ghcr.io/example/sidecar-proxy:2.1.1",
    "redis:7.4.1",
];
const CPU: [&str; 4] = ["100m", "250m", "500m", "1"];
const MEMORY: [&str; 5] = ["64Mi", "128Mi", "256Mi", "512Mi", "1Gi"];

fn container(name: &str, base: &str, rng: &mut SplitMix64) -> Value {
    let env: Vec<Value> = (0..rng.range(2, 8))
        .map(|i| {
            if i % 3 == 2 {
                json!({"name": format!("FROM_CONFIG_{i}"), "valueFrom": {"configMapKeyRef": {"name": format!("{base}-config"), "key": "LOG_LEVEL", "optional": true}}})
            } else {
                json!({"name": format!("SETTING_{i}"), "value": word(rng)})
            }
        })
        .collect();
    let cpu = rng.below(CPU.len() as u64) as usize;
    let mem = rng.below(MEMORY.len() as u64) as usize;
    let port = PORTS[rng.below(PORTS.len() as u64) as usize].2;
    json!({
        "name": name,
        "image": IMAGES[rng.below(IMAGES.len() as u64) as usize],
        "ports": [{"name": "main", "containerPort": port, "protocol": "TCP"}],
        "env": env,
        "resources": {
            "requests": {"cpu": CPU[cpu], "memory": MEMORY[mem]},
            "limits": {"cpu": CPU[(cpu + 1).min(CPU.len() - 1)], "memory": MEMORY[(mem + 1).min(MEMORY.len() - 1)]},
        },
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": port}, "periodSeconds": 10},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": port}, "initialDelaySeconds": 15},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/app", "readOnly": true}],
    })
}

fn deployment(base: &str, app: &str, ns: &str, rng: &mut SplitMix64) -> Value {
    let mut containers = vec![container("main", base, rng)];
    if rng.chance(30) {
        containers.push(container("sidecar", base, rng));
    }
    let labels = json!({"app": base, "app.kubernetes.io/name": app});
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": base, "namespace": ns, "annotations": {"example.com/revision": word(rng)}},
        "spec": {
            "replicas": rng.range(1, 5),
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": base,
                    "containers": containers,
                    "volumes": [{"name": "config", "configMap": {"name": format!("{base}-config"), "optional": true}}],
                },
            },
        },
    })
}

/// The Widget CRD, installed once before the runs: `kubectl apply` cannot apply a CRD and its custom
/// resources in one invocation (it maps every object before applying the first), so the CRD is
/// part of the cluster, not of the benchmark's objects.
pub fn crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{WIDGET_GROUP}")},
        "spec": {
            "group": WIDGET_GROUP,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "properties": {
                                "size": {"type": "integer", "minimum": 0},
                                "color": {"type": "string", "enum": COLORS},
                                "replicas": {"type": "integer"},
                                "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                                "config": {"type": "object", "additionalProperties": {"type": "string"}},
                            },
                        },
                    },
                }},
            }],
        },
    })
}

/// Writes the run's repository: inventory, namespaces, policies, one file per namespace and kind.
pub fn write_repo(fleet: &Fleet, dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let cluster = json!({
        "apiVersion": "flotilla.dev/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": CLUSTER, "labels": {"region": "local"}},
        "spec": {"region": "local", "provider": "onprem", "kubeconfigContext": CLUSTER},
    });
    write(&dir.join(format!("clusters/{CLUSTER}.yaml")), [&cluster])?;
    write(&dir.join("namespaces.yaml"), &fleet.namespaces)?;
    let cpp = json!({
        "apiVersion": "policy.karmada.io/v1alpha1",
        "kind": "ClusterPropagationPolicy",
        "metadata": {"name": "namespaces"},
        "spec": {
            "resourceSelectors": [{"apiVersion": "v1", "kind": "Namespace", "labelSelector": {"matchLabels": {RUN_LABEL: fleet.id}}}],
            "placement": {"clusterAffinity": {"clusterNames": [CLUSTER]}},
        },
    });
    write(&dir.join("policies/namespaces.yaml"), [&cpp])?;
    let selectors: Vec<Value> = Kind::MIX
        .iter()
        .map(|(k, _)| json!({"apiVersion": k.api_version(), "kind": k.name()}))
        .collect();
    for ns in fleet.namespaces.iter().filter_map(|n| n["metadata"]["name"].as_str()) {
        let pp = json!({
            "apiVersion": "policy.karmada.io/v1alpha1",
            "kind": "PropagationPolicy",
            "metadata": {"name": "everything-here", "namespace": ns},
            "spec": {
                "resourceSelectors": selectors,
                "placement": {"clusterAffinity": {"clusterNames": [CLUSTER]}},
            },
        });
        write(&dir.join(format!("policies/{ns}.yaml")), [&pp])?;
    }
    for ((ns, kind), objects) in &fleet.objects {
        let name = Kind::MIX[*kind].0.name().to_ascii_lowercase();
        write(&dir.join(format!("templates/{ns}/{name}.yaml")), objects)?;
    }
    Ok(())
}

fn write<'a>(path: &Path, docs: impl IntoIterator<Item = &'a Value>) -> Result<()> {
    let text = crate::gen::yaml_docs(docs)?;
    crate::gen::write_file(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_and_follow_the_mix() {
        for total in [0, 1, 7, 100, 2000, 2003] {
            assert_eq!(counts(total).iter().map(|(_, n)| n).sum::<usize>(), total);
        }
        let c = counts(2000);
        assert_eq!(c[0], (Kind::ConfigMap, 480));
        assert_eq!(c[6], (Kind::Deployment, 360));
    }

    #[test]
    fn runs_differ_only_in_namespace_and_run_label() {
        let a = generate("r1-flotilla", 300, 4, 1);
        let b = generate("r1-kubectl", 300, 4, 1);
        assert_eq!(a.len(), 304);
        assert_eq!(a.len(), b.len());
        for (x, y) in a.all().zip(b.all()) {
            let x = serde_json::to_string(x)
                .unwrap_or_default()
                .replace("r1-flotilla", "r1-kubectl");
            assert_eq!(x, serde_json::to_string(y).unwrap_or_default());
        }
    }
}
