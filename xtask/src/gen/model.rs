//! The synthetic fleet as data: clusters, namespaces, template groups, templates and policies.
//!
//! Everything is drawn from one [`SplitMix64`] stream in a fixed order, so the same parameters and seed
//! give the same model (and the same files) on every machine.

use crate::prng::SplitMix64;
use serde_json::{json, Map, Value};

/// What to generate.
#[derive(Clone, Debug)]
pub struct Params {
    pub templates: usize,
    pub propagation_policies: usize,
    pub override_policies: usize,
    pub clusters: usize,
    pub seed: u64,
}

/// Cluster labels and fields used by placement and override targeting.
pub struct Cluster {
    pub name: String,
    pub region: String,
    pub tier: &'static str,
    pub provider: &'static str,
    pub zones: Vec<String>,
}

/// The template kinds the generator writes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Deployment,
    StatefulSet,
    Service,
    ConfigMap,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Deployment, Kind::StatefulSet, Kind::Service, Kind::ConfigMap];

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Deployment | Kind::StatefulSet => "apps/v1",
            Kind::Service | Kind::ConfigMap => "v1",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Deployment => "Deployment",
            Kind::StatefulSet => "StatefulSet",
            Kind::Service => "Service",
            Kind::ConfigMap => "ConfigMap",
        }
    }

    /// Workloads carry `spec.replicas` and containers (replica division and image overrides apply).
    pub fn is_workload(self) -> bool {
        matches!(self, Kind::Deployment | Kind::StatefulSet)
    }
}

/// One resource template.
pub struct Template {
    pub kind: Kind,
    pub name: String,
    pub namespace: String,
    pub group: usize,
    /// Repository-relative file holding it (shared with up to [`TEMPLATES_PER_FILE`] others).
    pub file: String,
    pub object: Value,
}

/// One label group `app-group: gNNN`, selected by exactly one PropagationPolicy.
pub struct Group {
    pub name: String,
    pub namespace: String,
    pub policy_name: String,
    /// Cluster indices of `clusterAffinity.clusterNames`, ascending (= ascending by name).
    pub clusters: Vec<usize>,
    /// `Some(weights parallel to clusters)` for Divided with a static weight list.
    pub weights: Option<Vec<u64>>,
    /// Write `replicaScheduling: {replicaSchedulingType: Duplicated}` explicitly (else omitted).
    pub explicit_duplicated: bool,
    /// Indices into [`Model::templates`], in order.
    pub templates: Vec<usize>,
}

/// Which clusters an override rule targets.
pub enum Target {
    Names(Vec<usize>),
    Region(String),
}

/// The plaintext operation of a rule.
pub enum Plaintext {
    /// `replace /spec/replicas` (only in workload-only policies).
    Replicas(u64),
    /// `add /metadata/annotations/<key>` (every template has annotations).
    Annotation { key: String, value: String },
}

pub struct Rule {
    pub target: Target,
    /// `imageOverrider: [{component: Registry, operator: replace, value}]`
    pub registry: Option<String>,
    /// `labelsOverrider: [{operator: add, value: {key: value}}]`
    pub label: Option<(String, String)>,
    pub plaintext: Option<Plaintext>,
}

/// One OverridePolicy, selecting one label group.
pub struct OverridePolicy {
    pub name: String,
    pub namespace: String,
    pub group: usize,
    /// Selects only Deployments and StatefulSets (else all four kinds).
    pub workloads_only: bool,
    pub rules: Vec<Rule>,
}

impl OverridePolicy {
    pub fn selects(&self, kind: Kind) -> bool {
        !self.workloads_only || kind.is_workload()
    }
}

pub struct Model {
    pub clusters: Vec<Cluster>,
    pub namespaces: Vec<String>,
    pub groups: Vec<Group>,
    pub templates: Vec<Template>,
    pub overrides: Vec<OverridePolicy>,
}

pub const TEMPLATES_PER_FILE: usize = 8;
const TIERS: [&str; 3] = ["prod", "staging", "edge"];
const PROVIDERS: [&str; 4] = ["aws", "gcp", "azure", "onprem"];
const IMAGES: [&str; 8] = [
    "docker.io/library/nginx:1.27.3",
    "ghcr.io/acme/checkout-api:v2.14.1",
    "quay.io/acme/worker:3.4.0",
    "registry.k8s.io/pause:3.10",
    "docker.io/bitnami/redis:7.4.1",
    "ghcr.io/acme/payments:v1.9.0",
    "gcr.io/acme/search-indexer:2025.06.1",
    "docker.io/envoyproxy/envoy:v1.31.2",
];
const SIDECAR_IMAGE: &str = "ghcr.io/acme/log-shipper:0.9.4";
const TEAMS: [&str; 6] = ["payments", "search", "checkout", "identity", "platform", "data"];

fn width(n: usize, min: usize) -> usize {
    n.saturating_sub(1).to_string().len().max(min)
}

impl Model {
    pub fn generate(p: &Params) -> Model {
        let mut rng = SplitMix64::new(p.seed);
        let cw = width(p.clusters, 3);
        let regions = (p.clusters / 12).clamp(1, 99);
        let clusters: Vec<Cluster> = (0..p.clusters)
            .map(|i| {
                let region = format!("r{}", i % regions);
                let zones = (0..rng.range(1, 3))
                    .map(|z| format!("{region}-{}", (b'a' + z as u8) as char))
                    .collect();
                Cluster {
                    name: format!("cluster-{i:0cw$}"),
                    region,
                    tier: rng.pick(&TIERS),
                    provider: rng.pick(&PROVIDERS),
                    zones,
                }
            })
            .collect();

        let ns_count = p.propagation_policies.clamp(1, 20);
        let nw = width(ns_count, 2);
        let namespaces: Vec<String> = (0..ns_count).map(|i| format!("ns-{i:0nw$}")).collect();

        let gw = width(p.propagation_policies, 3);
        let mut groups: Vec<Group> = (0..p.propagation_policies)
            .map(|g| {
                let n = rng.range(3, 10) as usize;
                let chosen = rng.sample(p.clusters, n);
                let weights = rng.chance(20).then(|| chosen.iter().map(|_| rng.range(1, 4)).collect());
                let name = format!("g{g:0gw$}");
                Group {
                    policy_name: format!("place-{name}"),
                    namespace: namespaces[g % ns_count].clone(),
                    name,
                    clusters: chosen,
                    weights,
                    explicit_duplicated: rng.chance(50),
                    templates: Vec::new(),
                }
            })
            .collect();

        let tw = width(p.templates, 5);
        let mut templates = Vec::with_capacity(p.templates);
        if !groups.is_empty() {
            for i in 0..p.templates {
                let g = i % groups.len();
                let kind = match rng.below(10) {
                    0..=4 => Kind::Deployment,
                    5 => Kind::StatefulSet,
                    6 | 7 => Kind::Service,
                    _ => Kind::ConfigMap,
                };
                let group = &mut groups[g];
                let names: Vec<&str> = group.clusters.iter().map(|&c| clusters[c].name.as_str()).collect();
                let divided = group.weights.as_deref().map(|w| (w, names.as_slice()));
                let name = match kind {
                    Kind::Deployment => format!("app-{i:0tw$}"),
                    Kind::StatefulSet => format!("db-{i:0tw$}"),
                    Kind::Service => format!("svc-{i:0tw$}"),
                    Kind::ConfigMap => format!("cfg-{i:0tw$}"),
                };
                let object = template_object(&mut rng, kind, &name, group, divided);
                let chunk = group.templates.len() / TEMPLATES_PER_FILE;
                let file = format!("templates/{}/{}-{chunk}.yaml", group.namespace, group.name);
                group.templates.push(templates.len());
                templates.push(Template {
                    kind,
                    name,
                    namespace: group.namespace.clone(),
                    group: g,
                    file,
                    object,
                });
            }
        }

        let ow = width(p.override_policies, 3);
        let overrides = (0..p.override_policies)
            .filter(|_| !groups.is_empty())
            .map(|o| {
                let g = rng.below(groups.len() as u64) as usize;
                let group = &groups[g];
                let has_workload = group.templates.iter().any(|&t| templates[t].kind.is_workload());
                let workloads_only = has_workload && rng.chance(50);
                let rules = (0..rng.range(1, 3))
                    .map(|_| override_rule(&mut rng, &clusters, group, workloads_only))
                    .collect();
                OverridePolicy {
                    name: format!("override-{o:0ow$}"),
                    namespace: group.namespace.clone(),
                    group: g,
                    workloads_only,
                    rules,
                }
            })
            .collect();

        Model {
            clusters,
            namespaces,
            groups,
            templates,
            overrides,
        }
    }
}

fn override_rule(rng: &mut SplitMix64, clusters: &[Cluster], group: &Group, workloads_only: bool) -> Rule {
    let target = if rng.chance(30) {
        Target::Region(clusters[rng.pick(&group.clusters)].region.clone())
    } else {
        let k = rng.range(1, group.clusters.len() as u64) as usize;
        let mut names: Vec<usize> = rng
            .sample(group.clusters.len(), k)
            .into_iter()
            .map(|i| group.clusters[i])
            .collect();
        if rng.chance(20) {
            // a cluster outside the placement: matches nothing there, as in real fleets
            names.push(rng.below(clusters.len() as u64) as usize);
            names.sort_unstable();
            names.dedup();
        }
        Target::Names(names)
    };
    let mut rule = Rule {
        target,
        registry: rng.chance(60).then(|| {
            format!(
                "registry.{}.example.io",
                clusters[rng.below(clusters.len() as u64) as usize].region
            )
        }),
        label: rng
            .chance(50)
            .then(|| ("flotilla.dev/rollout-wave".to_string(), format!("w{}", rng.below(4)))),
        plaintext: None,
    };
    if rng.chance(50) || (rule.registry.is_none() && rule.label.is_none()) {
        rule.plaintext = Some(if workloads_only {
            Plaintext::Replicas(rng.range(1, 6))
        } else {
            Plaintext::Annotation {
                key: "flotilla.dev/override".to_string(),
                value: format!("rule-{}", rng.below(1000)),
            }
        });
    }
    rule
}

/// Replicas for a Divided workload over `weights.len()` clusters: from `n..=3n`, so a small-weight cluster
/// sometimes receives 0 replicas (and then no object; the kustomize tree deletes it there), raised until
/// at least 3 clusters (or all, when fewer) receive some, so every template lands on 3–10 clusters.
/// `2n` always suffices: with weights 1–4 no cluster takes a third seat while one still has none.
fn divided_replicas(rng: &mut SplitMix64, weights: &[u64], names: &[&str]) -> u64 {
    let n = weights.len() as u64;
    let want = weights.len().min(3);
    let mut replicas = rng.range(n, 3 * n);
    while replicas < 2 * n
        && super::simulate::webster(replicas, weights, names)
            .iter()
            .filter(|&&s| s > 0)
            .count()
            < want
    {
        replicas += 1;
    }
    replicas
}

fn labels(name: &str, group: &Group, team: &str) -> Value {
    json!({
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/part-of": format!("shop-{team}"),
        "app.kubernetes.io/managed-by": "flotilla",
        "app-group": group.name,
        "team": team,
    })
}

fn annotations(rng: &mut SplitMix64, team: &str) -> Value {
    json!({
        "flotilla.dev/owner": format!("{team}@example.com"),
        "flotilla.dev/runbook": format!("https://runbooks.example.com/{team}/{}", rng.below(10_000)),
        "description": "synthetic template generated by cargo xtask gen-repo",
    })
}

fn metadata(rng: &mut SplitMix64, name: &str, group: &Group, team: &str) -> Value {
    json!({
        "name": name,
        "namespace": group.namespace,
        "labels": labels(name, group, team),
        "annotations": annotations(rng, team),
    })
}

fn container(rng: &mut SplitMix64, name: &str, image: &str, group: &Group) -> Value {
    let cpu = rng.range(1, 8) * 50;
    let mem = rng.range(1, 8) * 64;
    json!({
        "name": name,
        "image": image,
        "ports": [{"name": "http", "containerPort": 8080 + rng.below(10), "protocol": "TCP"}],
        "env": [
            {"name": "LOG_LEVEL", "value": rng.pick(&["info", "debug", "warn"])},
            {"name": "APP_GROUP", "value": group.name},
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel-collector.observability:4317"},
        ],
        "resources": {
            "requests": {"cpu": format!("{cpu}m"), "memory": format!("{mem}Mi")},
            "limits": {"cpu": format!("{}m", cpu * 4), "memory": format!("{}Mi", mem * 2)},
        },
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
    })
}

fn template_object(
    rng: &mut SplitMix64,
    kind: Kind,
    name: &str,
    group: &Group,
    divided: Option<(&[u64], &[&str])>,
) -> Value {
    let team = rng.pick(&TEAMS);
    let meta = metadata(rng, name, group, team);
    let replicas = match (kind, divided) {
        (_, Some((weights, names))) => divided_replicas(rng, weights, names),
        (Kind::StatefulSet, None) => rng.range(1, 5),
        _ => rng.range(1, 10),
    };
    let select = json!({"app.kubernetes.io/name": name});
    match kind {
        Kind::Deployment => {
            let image = rng.pick(&IMAGES);
            let mut containers = vec![container(rng, "main", image, group)];
            if rng.chance(30) {
                containers.push(container(rng, "log-shipper", SIDECAR_IMAGE, group));
            }
            json!({
                "apiVersion": kind.api_version(),
                "kind": kind.name(),
                "metadata": meta,
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": select},
                    "template": {
                        "metadata": {"labels": {"app.kubernetes.io/name": name, "app-group": group.name}},
                        "spec": {"containers": containers},
                    },
                },
            })
        }
        Kind::StatefulSet => {
            let image = rng.pick(&IMAGES);
            let main = container(rng, "main", image, group);
            json!({
                "apiVersion": kind.api_version(),
                "kind": kind.name(),
                "metadata": meta,
                "spec": {
                    "replicas": replicas,
                    "serviceName": name,
                    "selector": {"matchLabels": select},
                    "template": {
                        "metadata": {"labels": {"app.kubernetes.io/name": name, "app-group": group.name}},
                        "spec": {
                            "initContainers": [{
                                "name": "init-schema",
                                "image": "docker.io/library/busybox:1.36",
                                "command": ["sh", "-c", "echo init"],
                            }],
                            "containers": [main],
                        },
                    },
                    "volumeClaimTemplates": [{
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": format!("{}Gi", rng.range(1, 50))}},
                        },
                    }],
                },
            })
        }
        Kind::Service => json!({
            "apiVersion": kind.api_version(),
            "kind": kind.name(),
            "metadata": meta,
            "spec": {
                "type": "ClusterIP",
                "selector": select,
                "ports": [
                    {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                    {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"},
                ],
            },
        }),
        Kind::ConfigMap => {
            let mut data = Map::new();
            for k in 0..rng.range(3, 6) {
                data.insert(
                    format!("setting-{k}.properties"),
                    Value::String(format!(
                        "feature.flag.{k}=enabled\nretry.max={}\ntimeout.ms={}\n",
                        rng.range(1, 9),
                        rng.range(100, 5000)
                    )),
                );
            }
            json!({
                "apiVersion": kind.api_version(),
                "kind": kind.name(),
                "metadata": meta,
                "data": data,
            })
        }
    }
}
