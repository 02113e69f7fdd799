//! `flotilla apply` end to end on three real kube-apiservers (the shared harness): server-side apply,
//! ApplySet ownership, prune and its guard, conflict resolution, refusal of a commit with errors.
//! Each test uses its own ApplySet and namespaces, so they run side by side on the same clusters.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use flotilla_tests::cluster::{self, unique_name};
use flotilla_tests::examples_repo;
use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, DeleteParams, PostParams};
use reconciler::cluster::changeset::{Action, ChangeSet};
use reconciler::cluster::fleet::{apply_fleet, FleetArgs, FleetOutcome};
use render::Snapshot;
use std::path::Path;

const CLUSTERS: &str = "apiVersion: flotilla.dev/v1alpha1
kind: Cluster
metadata: {name: cluster-1, labels: {region: eu}}
spec: {region: eu}
---
apiVersion: flotilla.dev/v1alpha1
kind: Cluster
metadata: {name: cluster-2, labels: {region: eu}}
spec: {region: eu}
---
apiVersion: flotilla.dev/v1alpha1
kind: Cluster
metadata: {name: cluster-3, labels: {region: us}}
spec: {region: us}
";

fn harness() -> Option<&'static cluster::Harness> {
    cluster::shared(3).unwrap()
}

fn kubeconfig(h: &cluster::Harness) -> kube::config::Kubeconfig {
    kube::config::Kubeconfig::read_from(h.kubeconfig()).unwrap()
}

/// A repository in memory: the three clusters plus `files`.
fn snapshot(files: &[(&str, String)]) -> Snapshot {
    let mut all = vec![("clusters.yaml".to_string(), CLUSTERS.to_string())];
    all.extend(files.iter().map(|(p, t)| (p.to_string(), t.clone())));
    Snapshot::from_texts(all)
}

fn policy(ns: &str, clusters: &[&str], conflict: &str) -> String {
    format!(
        "apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata: {{name: all, namespace: {ns}}}
spec:
  conflictResolution: {conflict}
  resourceSelectors:
  - {{apiVersion: v1, kind: ConfigMap}}
  placement:
    clusterAffinity: {{clusterNames: [{}]}}
",
        clusters.join(", ")
    )
}

fn configmap(ns: &str, name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {ns}}}\ndata: {{k: {value}}}\n")
}

async fn apply(h: &cluster::Harness, snap: &Snapshot, args: &FleetArgs) -> Vec<ChangeSet> {
    match apply_fleet(snap, &kubeconfig(h), args).await.unwrap() {
        FleetOutcome::Applied { sets, .. } => sets,
        FleetOutcome::Refused(d) => panic!("refused: {d:?}"),
    }
}

fn action(sets: &[ChangeSet], cluster: &str, object: &str) -> Option<Action> {
    sets.iter()
        .find(|c| c.cluster == cluster)
        .and_then(|c| c.entries.iter().find(|e| e.object == object))
        .map(|e| e.action)
}

async fn cm(h: &cluster::Harness, i: usize, ns: &str, name: &str) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(h.client(i).unwrap(), ns)
        .get_opt(name)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_scenario_lands_with_the_image_override_only_on_dc1() {
    let Some(h) = harness() else { return };
    let snap = reconciler::source::read(&examples_repo(), None).unwrap();
    let args = FleetArgs {
        applyset: Some(unique_name("seed")),
        ..FleetArgs::default()
    };
    let sets = apply(h, &snap, &args).await;
    for cs in &sets {
        assert!(!cs.failed(), "{cs:#?}");
    }
    let image = |d: Deployment| {
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    };
    for (i, want) in [
        (0, "dc-1.registry.io/nginx:1.17.0-alpine"),
        (1, "dc-1.registry.io/nginx:1.17.0-alpine"),
        (2, "nginx:1.17.0-alpine"),
    ] {
        let d = Api::<Deployment>::namespaced(h.client(i).unwrap(), "web")
            .get("nginx")
            .await
            .unwrap();
        assert_eq!(image(d), want, "cluster-{}", i + 1);
    }
    // Scenario 4 lands too: the ServiceExport CRD first, then the exported Service's generated
    // east-west LoadBalancer on the two exporters only.
    for (i, present) in [(0, true), (1, false), (2, true)] {
        let svc = Api::<Service>::namespaced(h.client(i).unwrap(), "orders")
            .get_opt("orders-api-eastwest")
            .await
            .unwrap();
        assert_eq!(svc.is_some(), present, "cluster-{}", i + 1);
        if let Some(spec) = svc.and_then(|s| s.spec) {
            assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
            assert_eq!(spec.ports.unwrap()[0].port, 31912);
        }
    }
    // Applying the same commit again changes nothing.
    let again = apply(h, &snap, &args).await;
    for cs in &again {
        assert!(cs.entries.iter().all(|e| e.action == Action::Unchanged), "{cs:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_commit_changes_in_place_and_prune_removes_only_what_left() {
    let Some(h) = harness() else { return };
    let ns = unique_name("change");
    let args = FleetArgs {
        applyset: Some(unique_name("change")),
        prune: true,
        ..FleetArgs::default()
    };
    let nsdoc = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n");
    let cns = "apiVersion: policy.karmada.io/v1alpha1\nkind: ClusterPropagationPolicy\nmetadata: {name: ns}\nspec:\n  resourceSelectors: [{apiVersion: v1, kind: Namespace}]\n".to_string();
    let one = snapshot(&[
        ("ns.yaml", nsdoc.clone()),
        ("cns.yaml", cns.clone()),
        ("pp.yaml", policy(&ns, &["cluster-1", "cluster-2"], "Abort")),
        ("a.yaml", configmap(&ns, "a", "one")),
        ("b.yaml", configmap(&ns, "b", "one")),
        ("c.yaml", configmap(&ns, "c", "one")),
    ]);
    let sets = apply(h, &one, &args).await;
    assert_eq!(
        action(&sets, "cluster-1", &format!("ConfigMap {ns}/a")),
        Some(Action::Created),
        "{sets:#?}"
    );
    assert!(cm(h, 1, &ns, "b").await.is_some());
    assert!(cm(h, 2, &ns, "a").await.is_none(), "cluster-3 is not targeted");
    // Someone else's object in the same namespace: never touched by prune.
    let foreign: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "foreign", "namespace": ns}, "data": {"k": "theirs"}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(h.client(0).unwrap(), &ns)
        .create(&PostParams::default(), &foreign)
        .await
        .unwrap();

    let two = snapshot(&[
        ("ns.yaml", nsdoc),
        ("cns.yaml", cns),
        ("pp.yaml", policy(&ns, &["cluster-1", "cluster-2"], "Abort")),
        ("a.yaml", configmap(&ns, "a", "two")),
        ("c.yaml", configmap(&ns, "c", "one")),
    ]);
    let sets = apply(h, &two, &args).await;
    assert_eq!(
        action(&sets, "cluster-1", &format!("ConfigMap {ns}/a")),
        Some(Action::Configured),
        "{sets:#?}"
    );
    assert_eq!(
        action(&sets, "cluster-1", &format!("ConfigMap {ns}/c")),
        Some(Action::Unchanged)
    );
    assert_eq!(
        action(&sets, "cluster-2", &format!("ConfigMap {ns}/b")),
        Some(Action::Pruned)
    );
    let a = cm(h, 0, &ns, "a").await.unwrap();
    assert_eq!(a.data.unwrap()["k"], "two");
    assert!(cm(h, 0, &ns, "b").await.is_none());
    assert!(cm(h, 1, &ns, "b").await.is_none());
    assert!(
        cm(h, 0, &ns, "foreign").await.is_some(),
        "prune never touches objects flotilla does not own"
    );
    assert!(
        action(&sets, "cluster-3", &format!("ConfigMap {ns}/b")).is_none(),
        "b was never on cluster-3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_prune_guard_refuses_a_commit_that_empties_a_cluster() {
    let Some(h) = harness() else { return };
    let ns = cluster::create_namespace(&h.client(0).unwrap(), "guard").await.unwrap();
    let args = FleetArgs {
        applyset: Some(unique_name("guard")),
        prune: true,
        clusters: vec!["cluster-1".into()],
        ..FleetArgs::default()
    };
    let files: Vec<(String, String)> = (0..4)
        .map(|i| (format!("cm{i}.yaml"), configmap(&ns, &format!("cm{i}"), "v")))
        .collect();
    let mut with: Vec<(&str, String)> = files.iter().map(|(p, t)| (p.as_str(), t.clone())).collect();
    with.push(("pp.yaml", policy(&ns, &["cluster-1"], "Abort")));
    let sets = apply(h, &snapshot(&with), &args).await;
    assert!(!sets[0].failed(), "{sets:#?}");
    // Nothing for cluster-1 any more: refused, nothing deleted.
    let empty = snapshot(&[("pp.yaml", policy(&ns, &["cluster-1"], "Abort"))]);
    let sets = apply(h, &empty, &args).await;
    assert!(
        sets[0].error.as_deref().unwrap_or("").contains("prune guard"),
        "{sets:#?}"
    );
    assert!(cm(h, 0, &ns, "cm0").await.is_some());
    // Three of four (75% > 50%): refused as well.
    let one = snapshot(&[
        ("pp.yaml", policy(&ns, &["cluster-1"], "Abort")),
        ("cm0.yaml", configmap(&ns, "cm0", "v")),
    ]);
    let sets = apply(h, &one, &args).await;
    assert!(sets[0].error.is_some(), "{sets:#?}");
    assert!(cm(h, 0, &ns, "cm3").await.is_some());
    // Explicitly allowed: goes through.
    let allowed = FleetArgs {
        allow_mass_prune: true,
        ..args.clone()
    };
    let sets = apply(h, &one, &allowed).await;
    assert_eq!(sets[0].count(Action::Pruned), 3, "{sets:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unowned_object_is_left_alone_under_abort_and_adopted_under_overwrite() {
    let Some(h) = harness() else { return };
    let ns = cluster::create_namespace(&h.client(0).unwrap(), "conflict")
        .await
        .unwrap();
    let existing: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "shared", "namespace": ns}, "data": {"k": "theirs"}
    }))
    .unwrap();
    Api::<ConfigMap>::namespaced(h.client(0).unwrap(), &ns)
        .create(&PostParams::default(), &existing)
        .await
        .unwrap();
    let args = FleetArgs {
        applyset: Some(unique_name("conflict")),
        clusters: vec!["cluster-1".into()],
        ..FleetArgs::default()
    };
    let abort = snapshot(&[
        ("pp.yaml", policy(&ns, &["cluster-1"], "Abort")),
        ("cm.yaml", configmap(&ns, "shared", "ours")),
    ]);
    let sets = apply(h, &abort, &args).await;
    assert_eq!(
        action(&sets, "cluster-1", &format!("ConfigMap {ns}/shared")),
        Some(Action::Conflict),
        "{sets:#?}"
    );
    assert_eq!(cm(h, 0, &ns, "shared").await.unwrap().data.unwrap()["k"], "theirs");

    let overwrite = snapshot(&[
        ("pp.yaml", policy(&ns, &["cluster-1"], "Overwrite")),
        ("cm.yaml", configmap(&ns, "shared", "ours")),
    ]);
    let sets = apply(h, &overwrite, &args).await;
    assert_eq!(
        action(&sets, "cluster-1", &format!("ConfigMap {ns}/shared")),
        Some(Action::Created),
        "{sets:#?}"
    );
    let adopted = cm(h, 0, &ns, "shared").await.unwrap();
    assert_eq!(adopted.data.unwrap()["k"], "ours");
    assert!(adopted
        .metadata
        .labels
        .unwrap()
        .contains_key("applyset.kubernetes.io/part-of"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_with_errors_applies_nothing_anywhere() {
    let Some(h) = harness() else { return };
    let ns = cluster::create_namespace(&h.client(0).unwrap(), "refused")
        .await
        .unwrap();
    let broken = snapshot(&[
        ("pp.yaml", policy(&ns, &["cluster-1"], "Abort")),
        ("good.yaml", configmap(&ns, "good", "v")),
        (
            "bad.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [oops\n".to_string(),
        ),
    ]);
    let out = apply_fleet(&broken, &kubeconfig(h), &FleetArgs::default())
        .await
        .unwrap();
    assert!(matches!(out, FleetOutcome::Refused(_)));
    assert!(cm(h, 0, &ns, "good").await.is_none());
}

#[test]
fn examples_repo_is_where_the_tests_expect_it() {
    assert!(Path::new(&examples_repo()).join("clusters").is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_diff_shows_out_of_band_edits_and_no_defaulting_noise() {
    use reconciler::cluster::{apply::Desired, live, Member};
    let Some(h) = harness() else { return };
    let ns = cluster::create_namespace(&h.client(0).unwrap(), "live").await.unwrap();
    let parent = unique_name("live");
    let args = FleetArgs {
        applyset: Some(parent.clone()),
        clusters: vec!["cluster-1".into()],
        ..FleetArgs::default()
    };
    let deploy = format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, namespace: {ns}}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers: [{{name: web, image: 'nginx:1.27'}}]\n"
    );
    let secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: creds, namespace: {ns}}}\ndata: {{password: c2VjcmV0}}\n"
    );
    let pp = format!(
        "apiVersion: policy.karmada.io/v1alpha1\nkind: PropagationPolicy\nmetadata: {{name: all, namespace: {ns}}}\nspec:\n  resourceSelectors: [{{apiVersion: apps/v1, kind: Deployment}}, {{apiVersion: v1, kind: Secret}}]\n  placement: {{clusterAffinity: {{clusterNames: [cluster-1]}}}}\n"
    );
    let snap = snapshot(&[("d.yaml", deploy), ("s.yaml", secret), ("pp.yaml", pp)]);
    let sets = apply(h, &snap, &args).await;
    assert!(!sets[0].failed(), "{sets:#?}");

    let out = render::render(&snap, &render::RenderOptions::default());
    let desired: Vec<Desired> = out.clusters["cluster-1"]
        .iter()
        .map(|o| Desired {
            obj: std::sync::Arc::clone(o),
            overwrite: false,
        })
        .collect();
    let member = Member {
        name: "cluster-1".into(),
        context: "cluster-1".into(),
        client: h.client(0).unwrap(),
    };
    let diff_now = || async {
        let sides = live::live_sides(&member, &desired, &parent).await.unwrap();
        let live = std::collections::BTreeMap::from([("cluster-1".to_string(), sides.live)]);
        let predicted = std::collections::BTreeMap::from([("cluster-1".to_string(), sides.predicted)]);
        reconciler::diff::pair_sets(&live, &predicted).unwrap()
    };
    let d = diff_now().await;
    assert!(d[0].changes.is_empty(), "no noise right after apply: {d:#?}");

    // Out-of-band edit by another manager.
    let api: Api<Deployment> = Api::namespaced(h.client(0).unwrap(), &ns);
    let patch = serde_json::json!({"spec": {"replicas": 5}});
    api.patch(
        "web",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .unwrap();
    let d = diff_now().await;
    assert_eq!(d[0].changed, 1, "{d:#?}");
    let text = &d[0].changes[0].diff;
    assert!(
        text.contains("-  replicas: 5") && text.contains("+  replicas: 2"),
        "{text}"
    );
    assert!(!format!("{d:?}").contains("c2VjcmV0"), "secret values never printed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_identity_gets_a_clear_rbac_error() {
    use reconciler::cluster::{apply, Member};
    let Some(h) = harness() else { return };
    let config = h.config_as("cluster-1", "restricted-user", &[]).await.unwrap();
    let member = Member {
        name: "cluster-1".into(),
        context: "cluster-1".into(),
        client: kube::Client::try_from(config).unwrap(),
    };
    let desired = vec![apply::Desired {
        obj: std::sync::Arc::new(
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "default"}}),
        ),
        overwrite: false,
    }];
    let cs = apply::apply_cluster(&member, &desired, &apply::ApplyOptions::default()).await;
    let err = cs.error.clone().unwrap_or_default();
    assert_eq!(cs.cluster, "cluster-1");
    assert!(
        err.contains("403") && err.contains("restricted-user") && err.contains("cannot get resource \"configmaps\""),
        "{cs:#?}"
    );
}

async fn parent_annotations(
    h: &cluster::Harness,
    i: usize,
    parent: &str,
) -> std::collections::BTreeMap<String, String> {
    Api::<ConfigMap>::namespaced(h.client(i).unwrap(), reconciler::cluster::applyset::PARENT_NAMESPACE)
        .get(parent)
        .await
        .unwrap()
        .metadata
        .annotations
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apply_that_partly_failed_prunes_nothing_and_claims_no_commit() {
    use reconciler::cluster::applyset::ANNOTATION_COMMIT;
    let Some(h) = harness() else { return };
    let ns = cluster::create_namespace(&h.client(0).unwrap(), "partial")
        .await
        .unwrap();
    // A namespace the commit uses but nobody created: applying into it fails (404).
    let absent = unique_name("partial-absent");
    let parent = unique_name("partial");
    let args = FleetArgs {
        applyset: Some(parent.clone()),
        prune: true,
        clusters: vec!["cluster-1".into()],
        ..FleetArgs::default()
    };
    let mut one = snapshot(&[
        ("pp.yaml", policy(&ns, &["cluster-1"], "Abort")),
        ("a.yaml", configmap(&ns, "a", "one")),
        ("b.yaml", configmap(&ns, "b", "one")),
        ("c.yaml", configmap(&ns, "c", "one")),
    ]);
    one.revision = Some("1111111111111111111111111111111111111111".into());
    let sets = apply(h, &one, &args).await;
    assert!(!sets[0].failed(), "{sets:#?}");
    assert_eq!(
        parent_annotations(h, 0, &parent).await.get(ANNOTATION_COMMIT),
        one.revision.as_ref()
    );

    // b leaves, d arrives in the absent namespace and fails: b must stay (kubectl does not prune
    // after a failed apply either), and the parent must not name the commit as applied.
    let two_files = [
        ("pp.yaml", policy(&ns, &["cluster-1"], "Abort")),
        ("pp-absent.yaml", policy(&absent, &["cluster-1"], "Abort")),
        ("a.yaml", configmap(&ns, "a", "two")),
        ("c.yaml", configmap(&ns, "c", "one")),
        ("d.yaml", configmap(&absent, "d", "two")),
    ];
    let mut two = snapshot(&two_files);
    two.revision = Some("2222222222222222222222222222222222222222".into());
    let sets = apply(h, &two, &args).await;
    assert_eq!(
        action(&sets, "cluster-1", &format!("ConfigMap {absent}/d")),
        Some(Action::Failed),
        "{sets:#?}"
    );
    assert_eq!(
        action(&sets, "cluster-1", &format!("ConfigMap {ns}/b")),
        None,
        "{sets:#?}"
    );
    assert!(sets[0].error.as_deref().unwrap_or("").contains("prune"), "{sets:#?}");
    assert!(cm(h, 0, &ns, "b").await.is_some(), "pruned after a failed apply");
    assert_eq!(cm(h, 0, &ns, "a").await.unwrap().data.unwrap()["k"], "two");
    let ann = parent_annotations(h, 0, &parent).await;
    assert_ne!(ann.get(ANNOTATION_COMMIT), two.revision.as_ref(), "{ann:?}");

    // Once the namespace exists the same commit goes through, prune included.
    let absent_ns: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": absent}})).unwrap();
    Api::all(h.client(0).unwrap())
        .create(&PostParams::default(), &absent_ns)
        .await
        .unwrap();
    let sets = apply(h, &two, &args).await;
    assert!(!sets[0].failed(), "{sets:#?}");
    assert_eq!(
        action(&sets, "cluster-1", &format!("ConfigMap {ns}/b")),
        Some(Action::Pruned)
    );
    assert!(cm(h, 0, &ns, "b").await.is_none());
    assert!(cm(h, 0, &absent, "d").await.is_some());
    assert_eq!(
        parent_annotations(h, 0, &parent).await.get(ANNOTATION_COMMIT),
        two.revision.as_ref()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_prune_keeps_its_kind_in_the_parent_so_a_later_apply_prunes_it() {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
    use reconciler::cluster::applyset::ANNOTATION_GROUP_KINDS;
    use reconciler::cluster::{apply, Member};
    let Some(h) = harness() else { return };
    let admin = h.client(0).unwrap();
    let ns = cluster::create_namespace(&admin, "keepkind").await.unwrap();
    let user = unique_name("no-delete");
    // Everything an apply needs, but no deleting Deployments.
    let role: ClusterRole = serde_json::from_value(serde_json::json!({
        "metadata": {"name": user},
        "rules": [
            {"apiGroups": [""], "resources": ["configmaps", "namespaces"], "verbs": ["get", "list", "create", "patch", "delete"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "create", "patch"]},
        ],
    }))
    .unwrap();
    let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": user},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": user},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))
    .unwrap();
    Api::<ClusterRole>::all(admin.clone())
        .create(&PostParams::default(), &role)
        .await
        .unwrap();
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let member = |client: kube::Client| Member {
        name: "cluster-1".into(),
        context: "cluster-1".into(),
        client,
    };
    let as_admin = member(admin.clone());
    let restricted = member(kube::Client::try_from(h.config_as("cluster-1", &user, &[]).await.unwrap()).unwrap());
    let cmj = |name: &str| serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": {"k": "v"}});
    let deployment = serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}},
    });
    let desired = |objs: Vec<serde_json::Value>| -> Vec<apply::Desired> {
        objs.into_iter()
            .map(|obj| apply::Desired {
                obj: obj.into(),
                overwrite: false,
            })
            .collect()
    };
    let opts = apply::ApplyOptions {
        prune: true,
        applyset: unique_name("keepkind"),
        ..apply::ApplyOptions::default()
    };
    let with_web = desired(vec![cmj("a"), cmj("b"), cmj("c"), deployment]);
    let without = desired(vec![cmj("a"), cmj("b"), cmj("c")]);
    let cs = apply::apply_cluster(&as_admin, &with_web, &opts).await;
    assert!(!cs.failed(), "{cs:#?}");

    // The Deployment leaves the commit; this identity may not delete it: the prune fails.
    let cs = apply::apply_cluster(&restricted, &without, &opts).await;
    let web = format!("Deployment.apps {ns}/web");
    assert!(
        cs.entries.iter().any(|e| e.object == web && e.action == Action::Failed),
        "{cs:#?}"
    );
    assert!(cs.error.is_some(), "{cs:#?}");
    let gks = parent_annotations(h, 0, &opts.applyset).await[ANNOTATION_GROUP_KINDS].clone();
    assert!(
        gks.split(',').any(|gk| gk == "Deployment.apps"),
        "the parent forgot a kind whose member is still there: {gks}"
    );

    // So the next apply, by someone allowed to, still finds the Deployment and prunes it.
    let cs = apply::apply_cluster(&as_admin, &without, &opts).await;
    assert!(!cs.failed(), "{cs:#?}");
    assert!(
        cs.entries.iter().any(|e| e.object == web && e.action == Action::Pruned),
        "{cs:#?}"
    );
    assert!(Api::<Deployment>::namespaced(admin, &ns)
        .get_opt("web")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        parent_annotations(h, 0, &opts.applyset).await[ANNOTATION_GROUP_KINDS],
        "ConfigMap"
    );
}

/// An admission rejection (a ValidatingAdmissionPolicy on one cluster, the in-process equivalent of a
/// validating webhook) fails that object on that cluster alone, with the policy's message; the other
/// objects and clusters proceed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admission_rejection_is_reported_per_object_and_the_rest_proceeds() {
    use k8s_openapi::api::core::v1::Namespace;
    let Some(h) = harness() else { return };
    let ns = unique_name("admission");
    for i in 0..3 {
        let doc: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).unwrap();
        Api::<Namespace>::all(h.client(i).unwrap())
            .create(&PostParams::default(), &doc)
            .await
            .unwrap();
    }
    let name = unique_name("no-forbidden-configmaps");
    let c2 = h.client(1).unwrap();
    let admission = Admission::install(
        &c2,
        &name,
        &ns,
        serde_json::json!([{
            "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["configmaps"]
        }]),
        "!object.metadata.name.startsWith('forbidden-')",
        "forbidden-* ConfigMaps are not allowed here",
    )
    .await;
    // The policy takes effect once the API server has loaded it: probe with dry-run creates.
    let probe: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "forbidden-probe"}})).unwrap();
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let cms: Api<ConfigMap> = Api::namespaced(c2.clone(), &ns);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while cms.create(&dry, &probe).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the admission policy never took effect"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let args = FleetArgs {
        applyset: Some(unique_name("admission")),
        ..FleetArgs::default()
    };
    let snap = snapshot(&[
        ("pp.yaml", policy_yaml(&ns)),
        ("ok.yaml", configmap(&ns, "allowed-1", "one")),
        ("bad.yaml", configmap(&ns, "forbidden-1", "one")),
    ]);
    let sets = apply(h, &snap, &args).await;
    for c in ["cluster-1", "cluster-3"] {
        assert_eq!(
            action(&sets, c, &format!("ConfigMap {ns}/allowed-1")),
            Some(Action::Created)
        );
        assert_eq!(
            action(&sets, c, &format!("ConfigMap {ns}/forbidden-1")),
            Some(Action::Created)
        );
    }
    let c2set = sets.iter().find(|s| s.cluster == "cluster-2").unwrap();
    assert_eq!(
        action(&sets, "cluster-2", &format!("ConfigMap {ns}/allowed-1")),
        Some(Action::Created)
    );
    let bad = c2set
        .entries
        .iter()
        .find(|e| e.object == format!("ConfigMap {ns}/forbidden-1"))
        .unwrap();
    assert_eq!(bad.action, Action::Failed);
    let msg = bad.message.clone().unwrap_or_default();
    assert!(msg.contains("forbidden-* ConfigMaps are not allowed here"), "{msg}");
    assert!(
        c2set.error.as_deref().unwrap_or("").contains("1 objects failed"),
        "{c2set:#?}"
    );
    assert!(cm(h, 1, &ns, "forbidden-1").await.is_none());
    assert!(cm(h, 1, &ns, "allowed-1").await.is_some());

    admission.remove().await;
}

fn policy_yaml(ns: &str) -> String {
    policy(ns, &["cluster-1", "cluster-2", "cluster-3"], "Abort")
}

/// Many new objects of one kind in one namespace are checked for existence with one LIST (not a GET
/// each): an unowned object among them is still found and left alone under Abort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_among_many_new_objects_is_still_found() {
    let Some(h) = harness() else { return };
    let ns = cluster::create_namespace(&h.client(0).unwrap(), "many").await.unwrap();
    let unowned: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "cm-7"}, "data": {"k": "theirs"}})).unwrap();
    Api::<ConfigMap>::namespaced(h.client(0).unwrap(), &ns)
        .create(&PostParams::default(), &unowned)
        .await
        .unwrap();
    let mut files = vec![("pp.yaml", policy(&ns, &["cluster-1"], "Abort"))];
    let names: Vec<String> = (0..20).map(|i| format!("cm{i}.yaml")).collect();
    for (i, f) in names.iter().enumerate() {
        files.push((f.as_str(), configmap(&ns, &format!("cm-{i}"), "ours")));
    }
    let args = FleetArgs {
        applyset: Some(unique_name("many")),
        clusters: vec!["cluster-1".into()],
        ..FleetArgs::default()
    };
    let sets = apply(h, &snapshot(&files), &args).await;
    for i in 0..20 {
        let want = if i == 7 { Action::Conflict } else { Action::Created };
        assert_eq!(
            action(&sets, "cluster-1", &format!("ConfigMap {ns}/cm-{i}")),
            Some(want),
            "cm-{i}"
        );
    }
    let kept = cm(h, 0, &ns, "cm-7").await.unwrap();
    assert_eq!(kept.data.unwrap()["k"], "theirs");
}

/// A member that provably holds its desired body (same applied-hash annotation, flotilla still owns
/// every field it set) is not written again; one edited out of band, or whose desired body changed,
/// is. A ValidatingAdmissionPolicy that denies every update in the namespace tells which objects the
/// apply attempted: it rejects even a server-side apply that would change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_that_provably_hold_their_body_are_not_applied_again() {
    use kube::api::{Patch, PatchParams};
    let Some(h) = harness() else { return };
    let c1 = h.client(0).unwrap();
    let ns = cluster::create_namespace(&c1, "skip").await.unwrap();
    let deployment = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}, labels: {{app: web}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: registry.invalid/web:1
        args: [--port, '8080']
        ports: [{{containerPort: 8080}}]
        env: [{{name: MODE, value: fast}}]
        resources: {{limits: {{cpu: 500m}}}}
"
    );
    let pp = format!(
        "apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata: {{name: all, namespace: {ns}}}
spec:
  resourceSelectors:
  - {{apiVersion: v1, kind: ConfigMap}}
  - {{apiVersion: apps/v1, kind: Deployment}}
  placement:
    clusterAffinity: {{clusterNames: [cluster-1]}}
"
    );
    let files = |c_value: &str| {
        vec![
            ("pp.yaml", pp.clone()),
            ("deploy.yaml", deployment.clone()),
            ("a.yaml", configmap(&ns, "a", "one")),
            ("b.yaml", configmap(&ns, "b", "one")),
            ("c.yaml", configmap(&ns, "c", c_value)),
        ]
    };
    let args = FleetArgs {
        applyset: Some(unique_name("skip")),
        clusters: vec!["cluster-1".into()],
        ..FleetArgs::default()
    };
    let objects = [
        format!("Deployment.apps {ns}/web"),
        format!("ConfigMap {ns}/a"),
        format!("ConfigMap {ns}/b"),
        format!("ConfigMap {ns}/c"),
    ];
    let sets = apply(h, &snapshot(&files("one")), &args).await;
    for o in &objects {
        assert_eq!(action(&sets, "cluster-1", o), Some(Action::Created), "{o}");
    }

    // Freeze the namespace: any update (an apply that changes nothing included) is denied.
    let name = unique_name("frozen");
    let admission = Admission::install(
        &c1,
        &name,
        &ns,
        serde_json::json!([
            {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["configmaps"]},
            {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["deployments"]}
        ]),
        "request.userInfo.username == 'nobody-at-all'",
        "frozen",
    )
    .await;
    // In effect once a no-op server-side apply of `a` is denied (also the proof that the policy
    // catches applies that change nothing).
    let reapply_all = FleetArgs {
        reapply_all: true,
        ..args.clone()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let sets = apply(h, &snapshot(&files("one")), &reapply_all).await;
        if objects
            .iter()
            .all(|o| action(&sets, "cluster-1", o) == Some(Action::Failed))
        {
            let cs = &sets[0];
            let msg = cs.entries[0].message.clone().unwrap_or_default();
            assert!(msg.contains("frozen"), "{msg}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the policy never took effect: {sets:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    // Nothing changed: nothing is attempted, so nothing is denied.
    let sets = apply(h, &snapshot(&files("one")), &args).await;
    for o in &objects {
        assert_eq!(action(&sets, "cluster-1", o), Some(Action::Unchanged), "{o}: {sets:#?}");
    }
    assert!(sets[0].error.is_none(), "{sets:#?}");

    // Whether the namespace is frozen now (a dry-run apply of `a` by someone else is denied).
    let cms: Api<ConfigMap> = Api::namespaced(c1.clone(), &ns);
    let frozen = || async {
        let probe = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}});
        let pp = PatchParams {
            dry_run: true,
            ..PatchParams::apply("probe")
        };
        cms.patch("a", &pp, &Patch::Apply(&probe)).await.is_err()
    };
    let wait_until = |want: bool| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while frozen().await != want {
            assert!(std::time::Instant::now() < deadline, "the policy never became {want}");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };

    // `b` edited out of band (flotilla loses the field) and `c` changed in Git: exactly those two are
    // attempted (and denied by the frozen namespace).
    admission.unbind().await;
    wait_until(false).await;
    let edit = serde_json::json!({"data": {"k": "theirs"}});
    cms.patch("b", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .unwrap();
    admission.bind().await;
    wait_until(true).await;
    let sets = apply(h, &snapshot(&files("two")), &args).await;
    let got: Vec<Option<Action>> = objects.iter().map(|o| action(&sets, "cluster-1", o)).collect();
    assert_eq!(
        got,
        vec![
            Some(Action::Unchanged),
            Some(Action::Unchanged),
            Some(Action::Failed),
            Some(Action::Failed)
        ],
        "{sets:#?}"
    );

    // Lifted: both are applied, the edit is undone, the rest stays skipped.
    admission.remove().await;
    wait_until(false).await;
    let sets = apply(h, &snapshot(&files("two")), &args).await;
    for (o, want) in objects.iter().zip([
        Action::Unchanged,
        Action::Unchanged,
        Action::Configured,
        Action::Configured,
    ]) {
        assert_eq!(action(&sets, "cluster-1", o), Some(want), "{o}: {sets:#?}");
    }
    assert_eq!(cm(h, 0, &ns, "b").await.unwrap().data.unwrap()["k"], "one");
    assert_eq!(cm(h, 0, &ns, "c").await.unwrap().data.unwrap()["k"], "two");
    let sets = apply(h, &snapshot(&files("two")), &args).await;
    for o in &objects {
        assert_eq!(action(&sets, "cluster-1", o), Some(Action::Unchanged), "{o}: {sets:#?}");
    }
}

/// A ValidatingAdmissionPolicy with its binding to one namespace: the in-process equivalent of a
/// validating webhook.
struct Admission {
    policies: Api<ValidatingAdmissionPolicy>,
    bindings: Api<ValidatingAdmissionPolicyBinding>,
    binding: ValidatingAdmissionPolicyBinding,
    name: String,
}

impl Admission {
    /// Denies requests matching `rules` in namespace `ns` unless `expression` holds, with `message`.
    async fn install(
        client: &kube::Client,
        name: &str,
        ns: &str,
        rules: serde_json::Value,
        expression: &str,
        message: &str,
    ) -> Admission {
        let policy: ValidatingAdmissionPolicy = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {"resourceRules": rules},
                "validations": [{"expression": expression, "message": message}]
            }
        }))
        .unwrap();
        let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}
            }
        }))
        .unwrap();
        let a = Admission {
            policies: Api::all(client.clone()),
            bindings: Api::all(client.clone()),
            binding,
            name: name.to_string(),
        };
        a.policies.create(&PostParams::default(), &policy).await.unwrap();
        a.bind().await;
        a
    }

    async fn bind(&self) {
        self.bindings
            .create(&PostParams::default(), &self.binding)
            .await
            .unwrap();
    }

    async fn unbind(&self) {
        self.bindings
            .delete(&self.name, &DeleteParams::default())
            .await
            .unwrap();
    }

    async fn remove(self) {
        self.unbind().await;
        self.policies
            .delete(&self.name, &DeleteParams::default())
            .await
            .unwrap();
    }
}
