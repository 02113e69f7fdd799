//! Applying one cluster's rendered set with server-side apply, then pruning (plan, then execute).
//!
//! Order: the ApplySet parent is read (and a cluster that cannot be reached fails here, alone); the
//! current members are listed by their `part-of` label; the prune plan and the prune guard are
//! decided before anything is written; the parent is widened to the union of old and new group-kinds
//! (KEP-3659: a superset before members change); CRDs and Namespaces are applied first, CRDs waited
//! for until established; the rest with bounded concurrency; then pruning in reverse apply order;
//! finally the parent records exactly the new group-kinds, namespaces and commit.
//!
//! A cluster that fails part way stops there and keeps the superset parent, which names no commit:
//! - a listing that fails (a kind's discovery included, unless the server says it does not serve
//!   the kind) fails the cluster before anything is written, so nothing is pruned on a partial view;
//! - if any object failed to apply, nothing is pruned (as `kubectl apply --prune` does);
//! - if any prune failed, the parent keeps the group-kinds of the members still there;
//! - the first request that gets no answer (connection refused or broken, timeout) marks the
//!   cluster unreachable: the remaining objects are not attempted, instead of each waiting for its
//!   own timeout.
//!
//! The next apply lists every member the interrupted one created and finishes the job.

use super::applyset::{self, group_kind, split_list, LABEL_PART_OF};
use super::changeset::{Action, ChangeSet};
use super::unchanged;
use super::Member;
use futures::stream::{self, StreamExt};
use indicatif::ProgressBar;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Scope};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Options of one apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    pub prune: bool,
    /// Server-side dry run: nothing is persisted; prune only reports.
    pub dry_run: bool,
    /// Percentage of a cluster's members one apply may prune (default 50).
    pub prune_guard: u32,
    /// Allow what the prune guard would refuse.
    pub allow_mass_prune: bool,
    /// Requests in flight per cluster.
    pub concurrency: usize,
    /// The commit being applied, recorded in the parent.
    pub commit: Option<String>,
    /// The ApplySet parent's name (ConfigMap in `flotilla-system`).
    pub applyset: String,
    /// Apply every object, also members that provably hold their desired body (normally skipped).
    pub reapply_all: bool,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            prune: false,
            dry_run: false,
            prune_guard: 50,
            allow_mass_prune: false,
            concurrency: 16,
            commit: None,
            applyset: applyset::PARENT_NAME.to_string(),
            reapply_all: false,
        }
    }
}

/// One object to apply. Shared: the render's objects are shared between clusters and commits.
#[derive(Debug, Clone)]
pub struct Desired {
    pub obj: Arc<Value>,
    /// Conflict resolution Overwrite: adopt an existing object flotilla does not own.
    pub overwrite: bool,
}

/// (group, kind, namespace, name)
pub(crate) type Key = (String, String, String, String);

pub(crate) fn key_of(obj: &Value) -> Key {
    let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    let api = s("/apiVersion");
    let group = api.rsplit_once('/').map_or(String::new(), |(g, _)| g.to_string());
    (group, s("/kind"), s("/metadata/namespace"), s("/metadata/name"))
}

pub(crate) fn display(k: &Key) -> String {
    let gk = group_kind(&k.0, &k.1);
    if k.2.is_empty() {
        format!("{gk} {}", k.3)
    } else {
        format!("{gk} {}/{}", k.2, k.3)
    }
}

/// A readable error: the API server's message (it names verb, resource and namespace for RBAC
/// refusals), or the transport problem.
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        other => format!("cluster unreachable or request failed: {other}"),
    }
}

/// Whether a request failed without an answer from the API server (connection refused, broken or
/// timed out), as opposed to an answer that refuses it.
pub(crate) fn is_unreachable(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Service(_) | kube::Error::HyperError(_))
}

/// Whether discovery's error means the server answered and does not serve the kind.
fn is_not_served(e: &kube::Error) -> bool {
    match e {
        kube::Error::Discovery(_) => true,
        kube::Error::Api(s) => s.code == 404,
        _ => false,
    }
}

/// Why a kind could not be resolved.
#[derive(Debug, Clone)]
pub(crate) struct Unresolved {
    pub(crate) message: String,
    /// The server answered that it does not serve the kind (as opposed to failing to answer).
    pub(crate) not_served: bool,
    pub(crate) unreachable: bool,
}

impl From<Unresolved> for String {
    fn from(u: Unresolved) -> String {
        u.message
    }
}

/// An API resource and its capabilities (scope), or why it could not be had.
type Resolved = Result<(ApiResource, ApiCapabilities), Unresolved>;

/// Resolves kinds to API resources, once per (group, version, kind).
pub(crate) struct Resolver {
    pub(crate) client: kube::Client,
    cache: HashMap<(String, String, String), Resolved>,
}

impl Resolver {
    pub(crate) fn new(client: kube::Client) -> Self {
        Resolver {
            client,
            cache: HashMap::new(),
        }
    }

    pub(crate) async fn resolve(&mut self, api_version: &str, kind: &str) -> Resolved {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let k = (group.to_string(), version.to_string(), kind.to_string());
        if let Some(r) = self.cache.get(&k) {
            return r.clone();
        }
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let r = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|e| Unresolved {
                message: if is_not_served(&e) {
                    format!(
                        "kind {kind} ({api_version}) is not served by the cluster: {}",
                        describe(&e)
                    )
                } else {
                    format!("discovering kind {kind} ({api_version}): {}", describe(&e))
                },
                not_served: is_not_served(&e),
                unreachable: is_unreachable(&e),
            });
        self.cache.insert(k, r.clone());
        r
    }

    pub(crate) fn forget(&mut self) {
        self.cache.retain(|_, v| v.is_ok());
    }
}

pub(crate) fn api_for(client: &kube::Client, ar: &ApiResource, caps: &ApiCapabilities, ns: &str) -> Api<DynamicObject> {
    match caps.scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), ns, ar),
        Scope::Cluster => Api::all_with(client.clone(), ar),
    }
}

/// The parent's current annotations: group-kinds and namespaces.
pub(crate) struct ParentState {
    pub(crate) group_kinds: Vec<String>,
    pub(crate) namespaces: Vec<String>,
}

pub(crate) async fn read_parent(client: &kube::Client, parent_name: &str) -> Result<ParentState, kube::Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        applyset::PARENT_NAMESPACE,
        &ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
    );
    let parent = api.get_opt(parent_name).await?;
    let ann = |k: &str| {
        parent
            .as_ref()
            .and_then(|p| p.metadata.annotations.as_ref())
            .and_then(|a| a.get(k))
            .map(String::as_str)
    };
    Ok(ParentState {
        group_kinds: split_list(ann(applyset::ANNOTATION_GROUP_KINDS)),
        namespaces: split_list(ann(applyset::ANNOTATION_NAMESPACES)),
    })
}

async fn write_parent(
    client: &kube::Client,
    parent_name: &str,
    group_kinds: &[String],
    namespaces: &[String],
    commit: Option<&str>,
    dry_run: bool,
) -> Result<(), kube::Error> {
    let pp = PatchParams {
        dry_run,
        ..PatchParams::apply(applyset::FIELD_MANAGER).force()
    };
    let ns_api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&()),
    );
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": applyset::PARENT_NAMESPACE}});
    ns_api
        .patch(applyset::PARENT_NAMESPACE, &pp, &Patch::Apply(&ns))
        .await?;
    let mut annotations = serde_json::Map::new();
    annotations.insert(applyset::ANNOTATION_TOOLING.into(), applyset::TOOLING.into());
    annotations.insert(applyset::ANNOTATION_GROUP_KINDS.into(), group_kinds.join(",").into());
    annotations.insert(applyset::ANNOTATION_NAMESPACES.into(), namespaces.join(",").into());
    if let Some(c) = commit {
        annotations.insert(applyset::ANNOTATION_COMMIT.into(), c.into());
    }
    let parent = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": parent_name,
            "namespace": applyset::PARENT_NAMESPACE,
            "labels": {applyset::LABEL_ID: applyset::applyset_id(parent_name)},
            "annotations": annotations,
        },
    });
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        applyset::PARENT_NAMESPACE,
        &ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
    );
    api.patch(parent_name, &pp, &Patch::Apply(&parent)).await?;
    Ok(())
}

/// (group, version, kind)
pub(crate) type Gvk = (String, String, String);

/// The group-versions-kinds to look at: those of the desired objects, plus the group-kinds the parent
/// says members had (at the version discovery prefers), so members of kinds that left are found too.
/// Fails if discovery does (a kind left out would hide its members from the listing and the prune).
pub(crate) async fn plan_gvks(
    client: &kube::Client,
    desired: &[Desired],
    parent: &ParentState,
) -> Result<BTreeSet<Gvk>, String> {
    let mut gvks: BTreeSet<Gvk> = BTreeSet::new();
    for d in desired {
        let api = d.obj["apiVersion"].as_str().unwrap_or("");
        let (g, v) = api.rsplit_once('/').unwrap_or(("", api));
        gvks.insert((
            g.to_string(),
            v.to_string(),
            d.obj["kind"].as_str().unwrap_or("").to_string(),
        ));
    }
    for gk in &parent.group_kinds {
        let (g, k) = applyset::parse_group_kind(gk);
        if !gvks.iter().any(|(gg, _, kk)| *gg == g && *kk == k) {
            if let Some(v) = preferred_version(client, &g, &k).await? {
                gvks.insert((g, v, k));
            }
        }
    }
    Ok(gvks)
}

/// The apiVersion a member of `key`'s group-kind is addressed with.
pub(crate) fn api_version_of(gvks: &BTreeSet<Gvk>, key: &Key) -> String {
    gvks.iter()
        .find(|(g, _, kind)| *g == key.0 && *kind == key.1)
        .map(|(g, v, _)| if g.is_empty() { v.clone() } else { format!("{g}/{v}") })
        .unwrap_or_default()
}

/// The object as flotilla applies it: with the ApplySet `part-of` label and the hash of itself
/// ([`unchanged::ANNOTATION_APPLIED`]).
pub(crate) fn as_applied(obj: &Value, id: &str) -> Value {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert(LABEL_PART_OF.into(), id.into());
        }
    }
    unchanged::annotate(&mut obj);
    obj
}

/// Members listed per request.
const LIST_PAGE: u32 = 500;

/// One current member, as the listing saw it.
#[derive(Debug, Clone)]
pub(crate) struct Listed {
    pub resource_version: String,
    /// Set when `unchanged` said the member provably holds the desired body: what it holds (applying
    /// it again is skipped).
    pub unchanged: Option<Observed>,
}

/// Current members, listed per group-kind by the `part-of` label, metadata only. `unchanged` decides
/// per member whether it provably holds what flotilla would apply (see [`unchanged`]).
pub(crate) async fn list_members(
    resolver: &mut Resolver,
    group_kinds: &BTreeSet<Gvk>,
    id: &str,
    unchanged: &(dyn Fn(&Key, &kube::api::ObjectMeta) -> bool + Sync),
) -> Result<BTreeMap<Key, Listed>, String> {
    let selector = format!("{LABEL_PART_OF}={id}");
    let mut out = BTreeMap::new();
    for (group, version, kind) in group_kinds {
        let api_version = if group.is_empty() {
            version.clone()
        } else {
            format!("{group}/{version}")
        };
        let ar = match resolver.resolve(&api_version, kind).await {
            Ok((ar, _)) => ar,
            // A kind the cluster does not serve has no members to prune.
            Err(e) if e.not_served => continue,
            Err(e) => return Err(format!("listing {kind} members: {}", e.message)),
        };
        // Metadata only, in pages: a cluster with tens of thousands of members is listed without ever
        // holding their bodies.
        let api: Api<DynamicObject> = Api::all_with(resolver.client.clone(), &ar);
        let mut params = ListParams::default().labels(&selector).limit(LIST_PAGE);
        loop {
            let page = api
                .list_metadata(&params)
                .await
                .map_err(|e| format!("listing {kind} members: {}", describe(&e)))?;
            for o in page.items {
                let meta = o.metadata;
                let k = (
                    group.clone(),
                    kind.clone(),
                    meta.namespace.clone().unwrap_or_default(),
                    meta.name.clone().unwrap_or_default(),
                );
                let listed = Listed {
                    resource_version: meta.resource_version.clone().unwrap_or_default(),
                    unchanged: unchanged(&k, &meta).then(|| Observed::of(&meta)),
                };
                out.insert(k, listed);
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
    }
    Ok(out)
}

/// The version discovery prefers for a group-kind; `None` if the cluster does not serve it, an
/// error if discovery fails.
pub(crate) async fn preferred_version(
    client: &kube::Client,
    group: &str,
    kind: &str,
) -> Result<Option<String>, String> {
    let discovery = kube::discovery::Discovery::new(client.clone())
        .filter(&[group])
        .run()
        .await
        .map_err(|e| format!("discovering {}: {}", group_kind(group, kind), describe(&e)))?;
    let version = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(ar, _)| ar.kind == kind)
        .map(|(ar, _)| ar.version);
    Ok(version)
}

/// Groups of at least this many non-members of one kind in one namespace are checked for existence with
/// one metadata LIST instead of one GET each.
const LIST_INSTEAD_OF_GETS: usize = 8;

/// The desired objects (indices into `desired`) that are not members and that a LIST shows do not exist:
/// they need no existence check before their apply. A LIST that fails leaves its objects to the GET.
async fn known_absent(
    client: &kube::Client,
    desired: &[Desired],
    keys: &[Key],
    members: &BTreeMap<Key, Listed>,
    targets: &[(usize, (ApiResource, ApiCapabilities))],
) -> BTreeSet<usize> {
    let mut groups: BTreeMap<(String, String, String), Vec<usize>> = BTreeMap::new();
    let mut resources: BTreeMap<(String, String, String), (ApiResource, ApiCapabilities)> = BTreeMap::new();
    for (i, t) in targets {
        let k = &keys[*i];
        if members.contains_key(k) || desired[*i].overwrite {
            continue;
        }
        let g = (k.0.clone(), k.1.clone(), k.2.clone());
        resources.entry(g.clone()).or_insert_with(|| t.clone());
        groups.entry(g).or_default().push(*i);
    }
    let mut out = BTreeSet::new();
    for (g, idx) in groups {
        if idx.len() < LIST_INSTEAD_OF_GETS {
            continue;
        }
        let Some((ar, caps)) = resources.get(&g) else { continue };
        let api = api_for(client, ar, caps, &g.2);
        let mut existing = BTreeSet::new();
        let mut params = ListParams::default().limit(LIST_PAGE);
        let listed = loop {
            match api.list_metadata(&params).await {
                Ok(page) => {
                    existing.extend(page.items.into_iter().filter_map(|o| o.metadata.name));
                    match page.metadata.continue_.filter(|c| !c.is_empty()) {
                        Some(token) => params = params.continue_token(&token),
                        None => break true,
                    }
                }
                Err(_) => break false,
            }
        };
        if listed {
            out.extend(idx.into_iter().filter(|i| !existing.contains(&keys[*i].3)));
        }
    }
    out
}

/// Whether a CRD of the set defines `k`'s kind.
fn defined_here(desired: &[Desired], k: &Key) -> bool {
    desired.iter().any(|d| {
        d.obj["kind"] == "CustomResourceDefinition"
            && d.obj.pointer("/spec/group").and_then(Value::as_str) == Some(k.0.as_str())
            && d.obj.pointer("/spec/names/kind").and_then(Value::as_str) == Some(k.1.as_str())
    })
}

fn is_crd(k: &Key) -> bool {
    k.0 == "apiextensions.k8s.io" && k.1 == "CustomResourceDefinition"
}

fn first_phase(k: &Key) -> bool {
    is_crd(k) || (k.0.is_empty() && k.1 == "Namespace")
}

async fn wait_established(client: &kube::Client, name: &str, unreachable: &AtomicBool) -> Result<(), String> {
    let api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::erase::<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        >(&()),
    );
    for _ in 0..300 {
        match api.get(name).await {
            Ok(crd) => {
                let established = crd.data["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Established" && c["status"] == "True");
                if established {
                    return Ok(());
                }
            }
            Err(e) if is_unreachable(&e) => {
                unreachable.store(true, Ordering::Relaxed);
                return Err(describe(&e));
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!(
        "CustomResourceDefinition {name} was not established within 30 s"
    ))
}

/// What the cluster answered to an apply: the state drift detection compares later events with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub resource_version: String,
    /// flotilla's field set (`managedFields` entry of manager `flotilla`, operation Apply), compact JSON.
    pub fields: Option<Box<str>>,
}

impl Observed {
    pub fn of(meta: &kube::api::ObjectMeta) -> Observed {
        Observed {
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            fields: crate::drift::flotilla_fields(meta),
        }
    }
}

/// The result of applying one object.
type Applied = (Action, Option<String>, Option<Observed>);

/// What an object that was not attempted because the cluster stopped answering reports.
const NOT_ATTEMPTED: &str = "not attempted: the cluster stopped answering";

/// Applies one object; returns its action and, when it was written, what the cluster holds now. Sets
/// `unreachable` when a request gets no answer, and does nothing once it is set.
#[allow(clippy::too_many_arguments)]
async fn apply_one(
    client: &kube::Client,
    id: &str,
    target: (ApiResource, ApiCapabilities),
    d: &Desired,
    key: &Key,
    current: Option<&String>,
    dry_run: bool,
    unreachable: &AtomicBool,
    known_absent: bool,
) -> Applied {
    if unreachable.load(Ordering::Relaxed) {
        return (Action::Failed, Some(NOT_ATTEMPTED.into()), None);
    }
    let failed = |e: kube::Error| {
        if is_unreachable(&e) {
            unreachable.store(true, Ordering::Relaxed);
        }
        (Action::Failed, Some(describe(&e)), None)
    };
    let (ar, caps) = target;
    let api = api_for(client, &ar, &caps, &key.2);
    let obj = as_applied(&d.obj, id);
    if current.is_none() && !d.overwrite && !known_absent {
        // Not a member: does it exist outside flotilla's ownership?
        match api.get_opt(&key.3).await {
            Ok(Some(_)) if !d.overwrite => {
                return (
                    Action::Conflict,
                    Some("exists and is not managed by flotilla; conflictResolution Abort leaves it untouched".into()),
                    None,
                )
            }
            Ok(_) => {}
            Err(e) => return failed(e),
        }
    }
    let pp = PatchParams {
        dry_run,
        ..PatchParams::apply(applyset::FIELD_MANAGER).force()
    };
    match api.patch(&key.3, &pp, &Patch::Apply(&obj)).await {
        Ok(res) => {
            let observed = Observed::of(&res.metadata);
            let action = match current {
                None => Action::Created,
                Some(old) if *old == observed.resource_version => Action::Unchanged,
                Some(_) => Action::Configured,
            };
            (action, None, Some(observed))
        }
        Err(e) => failed(e),
    }
}

/// Re-applies one member (drift correction): server-side apply with force, no ownership check (it is
/// flotilla's; if it was deleted, it is created again).
pub(crate) async fn reapply(
    client: &kube::Client,
    target: (ApiResource, ApiCapabilities),
    id: &str,
    d: &Desired,
    key: &Key,
) -> Result<Observed, String> {
    let current = String::new();
    match apply_one(
        client,
        id,
        target,
        d,
        key,
        Some(&current),
        false,
        &AtomicBool::new(false),
        false,
    )
    .await
    {
        (_, _, Some(o)) => Ok(o),
        (_, m, None) => Err(m.unwrap_or_else(|| "not applied".into())),
    }
}

/// Applies `desired` (in apply order) to one member cluster.
pub async fn apply_cluster(member: &Member, desired: &[Desired], opts: &ApplyOptions) -> ChangeSet {
    apply_cluster_observed(member, desired, opts, &ProgressBar::hidden())
        .await
        .0
}

/// [`apply_cluster`], also returning per desired object (same index) what the cluster answered.
/// `progress` counts applied objects (a hidden bar when nobody watches).
pub async fn apply_cluster_observed(
    member: &Member,
    desired: &[Desired],
    opts: &ApplyOptions,
    progress: &ProgressBar,
) -> (ChangeSet, Vec<Option<Observed>>) {
    progress.set_length(desired.len() as u64);
    progress.set_message("reading the ApplySet");
    let mut observed: Vec<Option<Observed>> = vec![None; desired.len()];
    let mut cs = ChangeSet::new(&member.name);
    let client = &member.client;
    let id = applyset::applyset_id(&opts.applyset);
    let parent = match read_parent(client, &opts.applyset).await {
        Ok(p) => p,
        Err(e) => {
            cs.unreachable = is_unreachable(&e);
            cs.error = Some(describe(&e));
            return (cs, observed);
        }
    };
    let mut resolver = Resolver::new(client.clone());

    // Plan: keys, group-kinds, namespaces of the new set; members of the old one.
    let keys: Vec<Key> = desired.iter().map(|d| key_of(&d.obj)).collect();
    let wanted: BTreeSet<&Key> = keys.iter().collect();
    let gvks = match plan_gvks(client, desired, &parent).await {
        Ok(g) => g,
        Err(e) => {
            cs.error = Some(e);
            return (cs, observed);
        }
    };
    let new_gks: BTreeSet<String> = desired
        .iter()
        .map(|d| {
            let k = key_of(&d.obj);
            group_kind(&k.0, &k.1)
        })
        .collect();
    // A member that provably holds its desired body is not applied again (see [`unchanged`]).
    let index: HashMap<&Key, usize> = keys.iter().enumerate().map(|(i, k)| (k, i)).collect();
    let provably_unchanged = |k: &Key, meta: &kube::api::ObjectMeta| {
        !opts.reapply_all
            && index
                .get(k)
                .is_some_and(|&i| unchanged::unchanged(meta, &as_applied(&desired[i].obj, &id)))
    };
    let members = match list_members(&mut resolver, &gvks, &id, &provably_unchanged).await {
        Ok(m) => m,
        Err(e) => {
            cs.error = Some(e);
            return (cs, observed);
        }
    };
    let to_prune: Vec<&Key> = members.keys().filter(|k| !wanted.contains(k)).collect();
    if opts.prune && !opts.allow_mass_prune && !members.is_empty() {
        if desired.is_empty() {
            cs.error = Some(format!(
                "prune guard: the commit renders nothing for this cluster, which holds {} flotilla objects; refused (use --allow-mass-prune)",
                members.len()
            ));
            cs.guarded = true;
            return (cs, observed);
        }
        if to_prune.len() * 100 > members.len() * opts.prune_guard as usize {
            cs.error = Some(format!(
                "prune guard: the commit would prune {} of {} objects, more than {}%; refused (use --allow-mass-prune)",
                to_prune.len(),
                members.len(),
                opts.prune_guard
            ));
            cs.guarded = true;
            return (cs, observed);
        }
    }
    let new_ns: BTreeSet<String> = keys
        .iter()
        .filter(|k| !k.2.is_empty() && k.2 != applyset::PARENT_NAMESPACE)
        .map(|k| k.2.clone())
        .collect();
    let union_gks: Vec<String> = new_gks
        .iter()
        .cloned()
        .chain(parent.group_kinds.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let union_ns: Vec<String> = new_ns
        .iter()
        .cloned()
        .chain(parent.namespaces.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if let Err(e) = write_parent(client, &opts.applyset, &union_gks, &union_ns, None, opts.dry_run).await {
        cs.error = Some(format!("updating the ApplySet parent: {}", describe(&e)));
        return (cs, observed);
    }

    // Execute: CRDs and Namespaces, then the rest.
    progress.set_message("applying");
    let unreachable = AtomicBool::new(false);
    let mut results: Vec<Option<Applied>> = vec![None; desired.len()];
    for phase in [true, false] {
        let idx: Vec<usize> = (0..desired.len()).filter(|&i| first_phase(&keys[i]) == phase).collect();
        let mut targets = Vec::new();
        for &i in &idx {
            if unreachable.load(Ordering::Relaxed) {
                break; // the rest: not attempted
            }
            if let Some(o) = members.get(&keys[i]).and_then(|m| m.unchanged.clone()) {
                results[i] = Some((Action::Unchanged, None, Some(o)));
                progress.inc(1);
                continue;
            }
            let api = desired[i].obj["apiVersion"].as_str().unwrap_or("");
            let mut resolved = resolver.resolve(api, &keys[i].1).await;
            if matches!(&resolved, Err(e) if e.not_served) && defined_here(desired, &keys[i]) {
                // Its CRD was just established; discovery can lag behind that for a moment.
                let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
                while matches!(&resolved, Err(e) if e.not_served) && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    resolver.forget();
                    resolved = resolver.resolve(api, &keys[i].1).await;
                }
            }
            match resolved {
                Ok(t) => targets.push((i, t)),
                Err(e) => {
                    if e.unreachable {
                        unreachable.store(true, Ordering::Relaxed);
                    }
                    results[i] = Some((Action::Failed, Some(e.message), None));
                }
            }
        }
        let absent = known_absent(client, desired, &keys, &members, &targets).await;
        let unreachable = &unreachable;
        let absent = &absent;
        let done: Vec<(usize, Applied)> = stream::iter(targets)
            .map(|(i, t)| {
                let (d, k) = (&desired[i], &keys[i]);
                let cur = members.get(&keys[i]).map(|m| &m.resource_version);
                let id = id.as_str();
                async move {
                    let known = absent.contains(&i);
                    let r = apply_one(client, id, t, d, k, cur, opts.dry_run, unreachable, known).await;
                    progress.inc(1);
                    (i, r)
                }
            })
            .buffer_unordered(opts.concurrency.max(1))
            .collect()
            .await;
        for (i, r) in done {
            results[i] = Some(r);
        }
        if phase && !opts.dry_run {
            for (i, k) in keys.iter().enumerate() {
                let ok = matches!(
                    results[i],
                    Some((Action::Created | Action::Configured | Action::Unchanged, _, _))
                );
                if is_crd(k) && ok && !unreachable.load(Ordering::Relaxed) {
                    if let Err(e) = wait_established(client, &k.3, unreachable).await {
                        results[i] = Some((Action::Failed, Some(e), None));
                    }
                }
            }
            resolver.forget(); // kinds of new CRDs are served now
        }
    }
    for (i, r) in results.into_iter().enumerate() {
        let (a, m, o) = r.unwrap_or((Action::Failed, Some(NOT_ATTEMPTED.into()), None));
        cs.push(display(&keys[i]), a, m);
        observed[i] = o;
    }
    // A failed object stops the cluster here: no prune, and the parent stays the superset written
    // above, naming no commit.
    let failed = cs.count(Action::Failed);
    if failed > 0 {
        cs.unreachable = unreachable.load(Ordering::Relaxed);
        cs.error = Some(if cs.unreachable {
            format!(
                "the cluster stopped answering during the apply ({failed} objects failed or not attempted); nothing pruned, the ApplySet parent names no commit"
            )
        } else {
            format!("{failed} objects failed to apply; nothing pruned, the ApplySet parent names no commit")
        });
        return (cs, observed);
    }

    // Prune in reverse apply order, then record the new set in the parent.
    progress.set_message("pruning");
    if opts.prune {
        let mut order: Vec<&Key> = to_prune.clone();
        order.sort_by_key(|k| std::cmp::Reverse((render::pipeline::apply_rank(&k.0, &k.1), (*k).clone())));
        for k in order {
            if unreachable.load(Ordering::Relaxed) {
                cs.push(display(k), Action::Failed, Some(NOT_ATTEMPTED.into()));
                continue;
            }
            let api_version = api_version_of(&gvks, k);
            let (action, msg) = match resolver.resolve(&api_version, &k.1).await {
                Err(e) => {
                    if e.unreachable {
                        unreachable.store(true, Ordering::Relaxed);
                    }
                    (Action::Failed, Some(e.message))
                }
                Ok((ar, caps)) => {
                    let api = api_for(client, &ar, &caps, &k.2);
                    let dp = DeleteParams {
                        dry_run: opts.dry_run,
                        ..DeleteParams::background()
                    };
                    match api.delete(&k.3, &dp).await {
                        Ok(_) => (Action::Pruned, None),
                        Err(kube::Error::Api(s)) if s.code == 404 => (Action::Pruned, Some("already gone".into())),
                        Err(e) => {
                            if is_unreachable(&e) {
                                unreachable.store(true, Ordering::Relaxed);
                            }
                            (Action::Failed, Some(format!("prune: {}", describe(&e))))
                        }
                    }
                }
            };
            cs.push(display(k), action, msg);
        }
        // Members left behind keep their group-kinds and namespaces in the parent, so the next
        // apply finds and prunes them.
        let failed = cs.count(Action::Failed);
        if failed > 0 {
            cs.unreachable = unreachable.load(Ordering::Relaxed);
            cs.error = Some(format!(
                "{failed} objects could not be pruned; the ApplySet parent keeps their group-kinds and names no commit"
            ));
            return (cs, observed);
        }
    }
    let final_gks: Vec<String> = if opts.prune {
        new_gks.into_iter().collect()
    } else {
        union_gks
    };
    let final_ns: Vec<String> = if opts.prune {
        new_ns.into_iter().collect()
    } else {
        union_ns
    };
    if let Err(e) = write_parent(
        client,
        &opts.applyset,
        &final_gks,
        &final_ns,
        opts.commit.as_deref(),
        opts.dry_run,
    )
    .await
    {
        cs.error = Some(format!("updating the ApplySet parent: {}", describe(&e)));
    }
    (cs, observed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status::failure("x", "NotFound").with_code(code)))
    }

    #[test]
    fn only_an_answer_that_lacks_the_kind_means_not_served() {
        let missing = kube::Error::Discovery(kube::error::DiscoveryError::MissingKind("Widget".into()));
        assert!(is_not_served(&missing));
        assert!(is_not_served(&status(404)));
        // Failures to answer, or other answers, may hide members: they must fail the listing.
        assert!(!is_not_served(&status(503)));
        assert!(!is_not_served(&status(403)));
        let refused = kube::Error::Service("connection refused".into());
        assert!(!is_not_served(&refused));
        assert!(is_unreachable(&refused));
        assert!(!is_unreachable(&status(500)));
    }
}
