//! Loading a snapshot into a classified repository: templates, policies, clusters, config.

use crate::diagnostic::{code, Diagnostic};
use crate::inventory::Cluster;
use crate::model::{ClusterSpec, GlobalTrafficPolicySpec, OverrideSpec, PropagationSpec};
use crate::schema::{self, SchemaKind};
use crate::scope::{group_of, Scope, ScopeTable};
use crate::selector::Labels;
use crate::snapshot::{RepoConfig, Snapshot, CONFIG_FILE};
use crate::yaml::{self, Limits, LoadError, PosIndex};
use crate::{names, ObjectRef, Pos};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;

/// Where a document came from: file, document index, pointer prefix (for `List` items), position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: String,
    pub doc: usize,
    /// "" for a top-level document, `/items/N` for an item of a `List`.
    pub prefix: String,
    pub pos: Pos,
}

impl Origin {
    /// `file:line` for messages.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file, self.pos.line)
    }
}

/// A resource template: a Kubernetes object to propagate.
#[derive(Debug, Clone)]
pub struct Template {
    pub origin: Origin,
    pub api_version: String,
    pub kind: String,
    pub group: String,
    /// Effective namespace; "" for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub namespaced: bool,
    /// The object, with its effective `metadata.namespace` written in. Shared: clusters that get the
    /// template unchanged share this value instead of a copy.
    pub value: std::sync::Arc<Value>,
}

impl Template {
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            group: self.group.clone(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    pub fn view(&self) -> crate::selector::ObjectView<'_> {
        crate::selector::ObjectView {
            api_version: &self.api_version,
            kind: &self.kind,
            namespace: &self.namespace,
            name: &self.name,
            labels: &self.labels,
        }
    }
}

/// A policy document of any kind: name, namespace ("" for cluster-wide kinds), origin, spec.
#[derive(Debug, Clone)]
pub struct Policy<S> {
    pub kind: &'static str,
    /// The document has schema errors (unknown fields included): the policy takes no part in rendering,
    /// so a typo never silently changes placement (the error blocks `apply` anyway).
    pub schema_invalid: bool,
    pub name: String,
    pub namespace: String,
    pub origin: Origin,
    pub spec: S,
}

impl<S> Policy<S> {
    /// `Kind ns/name` or `Kind name`.
    pub fn display(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.kind, self.name)
        } else {
            format!("{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

pub type PropagationPolicy = Policy<PropagationSpec>;
pub type OverridePolicy = Policy<OverrideSpec>;
pub type GlobalTrafficPolicy = Policy<GlobalTrafficPolicySpec>;

/// A classified repository.
#[derive(Debug)]
pub struct Repo<'s> {
    pub snapshot: &'s Snapshot,
    pub config: RepoConfig,
    pub templates: Vec<Template>,
    pub propagation: Vec<PropagationPolicy>,
    pub cluster_propagation: Vec<PropagationPolicy>,
    pub overrides: Vec<OverridePolicy>,
    pub cluster_overrides: Vec<OverridePolicy>,
    /// Sorted by name.
    pub clusters: Vec<Cluster>,
    pub traffic: Vec<GlobalTrafficPolicy>,
    pub diagnostics: Vec<Diagnostic>,
    positions: Mutex<HashMap<(String, usize), Option<PosIndex>>>,
}

impl<'s> Repo<'s> {
    /// The position of `pointer` inside the document at `origin` (falls back to the nearest
    /// ancestor, then to the document itself). Re-parses the file once per document, on demand.
    pub fn locate(&self, origin: &Origin, pointer: &str) -> Pos {
        let key = (origin.file.clone(), origin.doc);
        let full = format!("{}{}", origin.prefix, pointer);
        let Ok(mut cache) = self.positions.lock() else {
            return origin.pos;
        };
        let entry = cache.entry(key).or_insert_with(|| {
            let file = self.snapshot.files.iter().find(|f| f.path == origin.file)?;
            let text = std::str::from_utf8(&file.bytes).ok()?;
            yaml::locate(text, origin.file.ends_with(".json"), origin.doc)
        });
        entry
            .as_ref()
            .and_then(|ix| yaml::lookup(ix, &full))
            .unwrap_or(origin.pos)
    }

    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters
            .binary_search_by(|c| c.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.clusters[i])
    }

    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }
}

/// One parsed document before classification.
struct RawDoc {
    origin: Origin,
    value: Value,
}

fn load_error_diag(file: &str, e: &LoadError) -> Diagnostic {
    let c = match e {
        LoadError::Syntax { .. } => code::SYNTAX,
        LoadError::DuplicateKey { .. } => code::DUPLICATE_KEY,
        LoadError::Limit { .. } => code::ALIAS_LIMIT,
        LoadError::NotUtf8 { .. } => code::NOT_UTF8,
    };
    Diagnostic::error(c, file, e.pos(), e.to_string())
}

/// Parses every wanted file of the snapshot into documents (files in parallel on large repos).
fn parse_files(snapshot: &Snapshot, config: &RepoConfig) -> (Vec<RawDoc>, Vec<Diagnostic>) {
    let files: Vec<_> = snapshot.files.iter().filter(|f| config.wants(&f.path)).collect();
    let parse_one = |f: &crate::snapshot::SourceFile| -> Result<Vec<RawDoc>, Diagnostic> {
        let text = yaml::utf8(&f.bytes).map_err(|e| load_error_diag(&f.path, &e))?;
        let docs = if f.path.ends_with(".json") {
            yaml::load_json(text, Limits::default())
        } else {
            yaml::load_yaml(text, Limits::default())
        }
        .map_err(|e| load_error_diag(&f.path, &e))?;
        Ok(docs
            .into_iter()
            .map(|d| RawDoc {
                origin: Origin {
                    file: f.path.clone(),
                    doc: d.index,
                    prefix: String::new(),
                    pos: d.pos,
                },
                value: d.value,
            })
            .collect())
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let results: Vec<Result<Vec<RawDoc>, Diagnostic>> = if files.len() < 64 || threads < 2 {
        files.iter().map(|f| parse_one(f)).collect()
    } else {
        let chunk = files.len().div_ceil(threads);
        std::thread::scope(|s| {
            let handles: Vec<_> = files
                .chunks(chunk)
                .map(|part| s.spawn(move || part.iter().map(|f| parse_one(f)).collect::<Vec<_>>()))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| {
                    h.join().unwrap_or_else(|_| {
                        vec![Err(Diagnostic::error(
                            code::SYNTAX,
                            "",
                            Pos::default(),
                            "internal error: a loader thread panicked",
                        ))]
                    })
                })
                .collect()
        })
    };
    let mut docs = Vec::new();
    let mut diags = Vec::new();
    for r in results {
        match r {
            Ok(d) => docs.extend(d),
            Err(d) => diags.push(d),
        }
    }
    (docs, diags)
}

/// Flattens `List` kinds into their items.
fn flatten(raw: Vec<RawDoc>, diags: &mut Vec<Diagnostic>) -> Vec<RawDoc> {
    let mut out = Vec::with_capacity(raw.len());
    for d in raw {
        let kind = d.value.get("kind").and_then(Value::as_str).unwrap_or("");
        let is_list = kind == "List" || (kind.ends_with("List") && d.value.get("items").is_some_and(Value::is_array));
        if !is_list {
            out.push(d);
            continue;
        }
        match d.value.get("items") {
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    out.push(RawDoc {
                        origin: Origin {
                            prefix: format!("/items/{i}"),
                            ..d.origin.clone()
                        },
                        value: item.clone(),
                    });
                }
            }
            Some(Value::Null) | None => {}
            Some(_) => diags.push(Diagnostic::error(
                code::BAD_LIST,
                &d.origin.file,
                d.origin.pos,
                format!("`{kind}` has `items` that is not a list"),
            )),
        }
    }
    out
}

/// The fields every object must have.
struct Basics {
    api_version: String,
    kind: String,
    name: String,
    namespace: String,
    labels: Labels,
}

/// Reads the basic fields, or returns the problem with its pointer.
fn basics(v: &Value) -> Result<Basics, (String, String)> {
    let Value::Object(m) = v else {
        return Err((String::new(), "document is not a mapping (a Kubernetes object)".into()));
    };
    let s = |k: &str| -> Result<String, (String, String)> {
        match m.get(k) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::String(_)) | None => Err((format!("/{k}"), format!("missing `{k}`"))),
            Some(_) => Err((format!("/{k}"), format!("`{k}` must be a string"))),
        }
    };
    let api_version = s("apiVersion")?;
    let kind = s("kind")?;
    let meta = match m.get("metadata") {
        Some(Value::Object(meta)) => meta,
        Some(_) => return Err(("/metadata".into(), "`metadata` must be a mapping".into())),
        None => return Err((String::new(), "missing `metadata`".into())),
    };
    let name = match meta.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) | None => {
            return Err(("/metadata".into(), "missing `metadata.name`".into()));
        }
        Some(_) => return Err(("/metadata/name".into(), "`metadata.name` must be a string".into())),
    };
    let namespace = match meta.get("namespace") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(_) => {
            return Err((
                "/metadata/namespace".into(),
                "`metadata.namespace` must be a string".into(),
            ))
        }
    };
    let mut labels = Labels::new();
    match meta.get("labels") {
        Some(Value::Object(l)) => {
            for (k, v) in l {
                match v {
                    Value::String(s) => {
                        labels.insert(k.clone(), s.clone());
                    }
                    _ => {
                        return Err((
                            format!("/metadata/labels/{}", yaml::escape(k)),
                            format!("label `{k}` must have a string value"),
                        ))
                    }
                }
            }
        }
        None | Some(Value::Null) => {}
        Some(_) => return Err(("/metadata/labels".into(), "`metadata.labels` must be a mapping".into())),
    }
    Ok(Basics {
        api_version,
        kind,
        name,
        namespace,
        labels,
    })
}

/// Groups whose kinds are flotilla's own input and never go to member clusters.
pub fn is_control_group(group: &str) -> bool {
    matches!(group, "policy.karmada.io" | "cluster.karmada.io" | "flotilla.dev")
}

struct Loader<'r, 's> {
    repo: &'r mut Repo<'s>,
}

impl Loader<'_, '_> {
    fn diag(&mut self, d: Diagnostic) {
        self.repo.diagnostics.push(d);
    }

    /// Runs the schema check and parses `spec`; `None` if the spec cannot be parsed at all.
    fn parse_spec<S: DeserializeOwned + Default>(
        &mut self,
        kind: SchemaKind,
        d: &RawDoc,
        label: &str,
    ) -> Option<(S, bool)> {
        let mut invalid = false;
        for f in schema::check(kind, &d.value) {
            invalid = true;
            let pos = self.repo.locate(&d.origin, &f.pointer);
            let c = if f.unknown_field {
                code::UNKNOWN_FIELD
            } else {
                code::SCHEMA
            };
            self.diag(Diagnostic::error(
                c,
                &d.origin.file,
                pos,
                format!("{label}: {}", f.message),
            ));
        }
        match d.value.get("spec") {
            None | Some(Value::Null) => Some((S::default(), invalid)),
            Some(spec) => match serde_json::from_value::<S>(spec.clone()) {
                Ok(s) => Some((s, invalid)),
                Err(e) => {
                    let pos = self.repo.locate(&d.origin, "/spec");
                    self.diag(Diagnostic::error(
                        code::SCHEMA,
                        &d.origin.file,
                        pos,
                        format!("{label}: invalid spec: {e}"),
                    ));
                    None
                }
            },
        }
    }

    fn policy<S: DeserializeOwned + Default>(
        &mut self,
        kind: &'static str,
        schema_kind: SchemaKind,
        d: &RawDoc,
        name: &str,
        namespace: &str,
    ) -> Option<Policy<S>> {
        let label = if namespace.is_empty() {
            format!("{kind} {name}")
        } else {
            format!("{kind} {namespace}/{name}")
        };
        let (spec, schema_invalid) = self.parse_spec::<S>(schema_kind, d, &label)?;
        Some(Policy {
            kind,
            schema_invalid,
            name: name.to_string(),
            namespace: namespace.to_string(),
            origin: d.origin.clone(),
            spec,
        })
    }
}

/// Loads and classifies a snapshot. Never fails: problems are diagnostics on the result.
pub fn load(snapshot: &Snapshot) -> Repo<'_> {
    let config_bytes = snapshot
        .files
        .iter()
        .find(|f| f.path == CONFIG_FILE)
        .map(|f| f.bytes.as_slice());
    let (config, config_diags) = config_bytes.map(RepoConfig::parse).unwrap_or_default();
    let mut repo = Repo {
        snapshot,
        config,
        templates: Vec::new(),
        propagation: Vec::new(),
        cluster_propagation: Vec::new(),
        overrides: Vec::new(),
        cluster_overrides: Vec::new(),
        clusters: Vec::new(),
        traffic: Vec::new(),
        diagnostics: snapshot.diagnostics.clone(),
        positions: Mutex::new(HashMap::new()),
    };
    repo.diagnostics.extend(config_diags);
    let (raw, diags) = parse_files(snapshot, &repo.config);
    repo.diagnostics.extend(diags);
    let docs = flatten(raw, &mut repo.diagnostics);

    // First pass: CRDs define scopes for the second.
    let mut scopes = ScopeTable::default();
    for d in &docs {
        let v = &d.value;
        if v.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition")
            && v.get("apiVersion")
                .and_then(Value::as_str)
                .is_some_and(|a| a.starts_with("apiextensions.k8s.io/"))
        {
            let spec = &v["spec"];
            if let (Some(g), Some(k)) = (spec["group"].as_str(), spec["names"]["kind"].as_str()) {
                let scope = if spec["scope"].as_str() == Some("Cluster") {
                    Scope::Cluster
                } else {
                    Scope::Namespaced
                };
                scopes.add_crd(g, k, scope);
            }
        }
    }

    let mut seen: HashMap<ObjectRef, Origin> = HashMap::new();
    let mut loader = Loader { repo: &mut repo };
    for d in docs {
        let Basics {
            api_version,
            kind,
            name,
            namespace,
            labels,
        } = match basics(&d.value) {
            Ok(b) => b,
            Err((ptr, msg)) => {
                let pos = loader.repo.locate(&d.origin, &ptr);
                loader.diag(Diagnostic::error(code::OBJECT_BASICS, &d.origin.file, pos, msg));
                continue;
            }
        };
        let group = group_of(&api_version).to_string();
        if is_control_group(&group) {
            classify_control(&mut loader, &d, &api_version, &kind, &name, &namespace, labels);
            continue;
        }
        // A resource template.
        let scope = scopes.scope(&group, &kind);
        let namespaced = match scope {
            Some(Scope::Namespaced) => true,
            Some(Scope::Cluster) => false,
            None => {
                if namespace.is_empty() {
                    loader.diag(Diagnostic::warning(
                        code::UNKNOWN_KIND,
                        &d.origin.file,
                        d.origin.pos,
                        format!(
                            "unknown kind {kind} ({api_version}) without metadata.namespace: treated as cluster-scoped; \
                             add its CustomResourceDefinition to the repository or set a namespace"
                        ),
                    ));
                }
                !namespace.is_empty()
            }
        };
        let namespace = match (namespaced, namespace.is_empty()) {
            (true, true) => "default".to_string(),
            (true, false) => namespace,
            (false, _) => String::new(),
        };
        let mut problems = names::check_object_names(&kind, &group, &name, &namespace);
        for (ptr, msg) in problems.drain(..) {
            let pos = loader.repo.locate(&d.origin, ptr);
            loader.diag(Diagnostic::error(code::INVALID_NAME, &d.origin.file, pos, msg));
        }
        let oref = ObjectRef {
            group: group.clone(),
            kind: kind.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
        };
        if let Some(first) = seen.get(&oref) {
            loader.diag(
                Diagnostic::error(
                    code::DUPLICATE_OBJECT,
                    &d.origin.file,
                    d.origin.pos,
                    format!("duplicate template {oref}: already defined at {}", first.at()),
                )
                .with_object(oref.to_string()),
            );
            continue;
        }
        seen.insert(oref, d.origin.clone());
        let mut value = d.value;
        if namespaced {
            if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
                if meta.get("namespace").and_then(Value::as_str) != Some(namespace.as_str()) {
                    meta.insert("namespace".into(), Value::String(namespace.clone()));
                }
            }
        }
        loader.repo.templates.push(Template {
            origin: d.origin,
            api_version,
            kind,
            group,
            namespace,
            name,
            labels,
            namespaced,
            value: std::sync::Arc::new(value),
        });
    }
    repo.clusters.sort_by(|a, b| a.name.cmp(&b.name));
    repo
}

fn classify_control(
    loader: &mut Loader<'_, '_>,
    d: &RawDoc,
    api_version: &str,
    kind: &str,
    name: &str,
    namespace: &str,
    labels: Labels,
) {
    let ns_or_default = if namespace.is_empty() { "default" } else { namespace };
    let version_ok = |want: &str| api_version == want;
    match kind {
        "PropagationPolicy" if version_ok("policy.karmada.io/v1alpha1") => {
            if let Some(p) = loader.policy(kind_name(kind), SchemaKind::PropagationPolicy, d, name, ns_or_default) {
                loader.repo.propagation.push(p);
            }
        }
        "ClusterPropagationPolicy" if version_ok("policy.karmada.io/v1alpha1") => {
            if let Some(p) = loader.policy(kind_name(kind), SchemaKind::ClusterPropagationPolicy, d, name, "") {
                loader.repo.cluster_propagation.push(p);
            }
        }
        "OverridePolicy" if version_ok("policy.karmada.io/v1alpha1") => {
            if let Some(p) = loader.policy(kind_name(kind), SchemaKind::OverridePolicy, d, name, ns_or_default) {
                loader.repo.overrides.push(p);
            }
        }
        "ClusterOverridePolicy" if version_ok("policy.karmada.io/v1alpha1") => {
            if let Some(p) = loader.policy(kind_name(kind), SchemaKind::ClusterOverridePolicy, d, name, "") {
                loader.repo.cluster_overrides.push(p);
            }
        }
        "Cluster" if version_ok("cluster.karmada.io/v1alpha1") || version_ok("flotilla.dev/v1alpha1") => {
            let sk = if api_version.starts_with("cluster.karmada.io") {
                SchemaKind::KarmadaCluster
            } else {
                SchemaKind::FlotillaCluster
            };
            let label = format!("Cluster {name}");
            let Some((spec, _)) = loader.parse_spec::<ClusterSpec>(sk, d, &label) else {
                return;
            };
            if let Some(other) = loader.repo.clusters.iter().find(|c| c.name == name) {
                let msg = format!("duplicate Cluster {name}: already defined at {}:{}", other.file, other.pos.line);
                loader.diag(Diagnostic::error(code::DUPLICATE_OBJECT, &d.origin.file, d.origin.pos, msg));
                return;
            }
            loader.repo.clusters.push(Cluster {
                name: name.to_string(),
                labels,
                spec,
                file: d.origin.file.clone(),
                pos: d.origin.pos,
            });
        }
        "GlobalTrafficPolicy" if version_ok("flotilla.dev/v1alpha1") => {
            if let Some(p) = loader.policy(kind_name(kind), SchemaKind::GlobalTrafficPolicy, d, name, ns_or_default) {
                loader.repo.traffic.push(p);
            }
        }
        "RepoConfig" if version_ok("flotilla.dev/v1alpha1") => {
            if d.origin.file != CONFIG_FILE {
                loader.diag(Diagnostic::error(
                    code::REPO_CONFIG,
                    &d.origin.file,
                    d.origin.pos,
                    format!("a RepoConfig is only read from {CONFIG_FILE} at the repository root; this one is ignored"),
                ));
                return;
            }
            let _ = loader.parse_spec::<crate::snapshot::RepoConfigSpec>(SchemaKind::RepoConfig, d, "RepoConfig");
        }
        _ => loader.diag(Diagnostic::warning(
            code::UNKNOWN_KIND,
            &d.origin.file,
            d.origin.pos,
            format!("{kind} ({api_version}) is not a kind flotilla reads; the document is ignored and never sent to clusters"),
        )),
    }
}

fn kind_name(kind: &str) -> &'static str {
    match kind {
        "PropagationPolicy" => "PropagationPolicy",
        "ClusterPropagationPolicy" => "ClusterPropagationPolicy",
        "OverridePolicy" => "OverridePolicy",
        "ClusterOverridePolicy" => "ClusterOverridePolicy",
        "GlobalTrafficPolicy" => "GlobalTrafficPolicy",
        _ => "Policy",
    }
}
