//! `flotilla reconcile --watch` on three real kube-apiservers: the working tree of a plain directory
//! (no Git at all) is applied, and a saved change to a file lands without any commit; a broken save is
//! refused and the previous tree stays.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use flotilla_tests::cluster::{self, Harness};
use flotilla_tests::daemon::Running;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use reconciler::daemon::Event;
use std::path::Path;
use std::time::Duration;

fn harness() -> Option<&'static Harness> {
    cluster::shared(3).unwrap()
}

fn write_tree(dir: &Path, ns: &str, value: &str) {
    std::fs::write(
        dir.join("clusters.yaml"),
        "apiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {name: cluster-1}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("app.yaml"),
        format!(
            "apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: {ns}}}
data: {{k: {value}}}
---
apiVersion: policy.karmada.io/v1alpha1
kind: ClusterPropagationPolicy
metadata: {{name: {ns}}}
spec:
  resourceSelectors: [{{apiVersion: v1, kind: Namespace, name: {ns}}}]
  placement: {{clusterAffinity: {{clusterNames: [cluster-1]}}}}
---
apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata: {{name: all, namespace: {ns}}}
spec:
  resourceSelectors: [{{apiVersion: v1, kind: ConfigMap}}]
  placement: {{clusterAffinity: {{clusterNames: [cluster-1]}}}}
"
        ),
    )
    .unwrap();
}

async fn value(h: &Harness, ns: &str) -> Option<String> {
    let api: Api<ConfigMap> = Api::namespaced(h.client(0).unwrap(), ns);
    api.get_opt("settings")
        .await
        .ok()
        .flatten()
        .and_then(|c| c.data)
        .and_then(|d| d.get("k").cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_applies_every_saved_change_of_the_working_tree() {
    let Some(h) = harness() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ns = cluster::unique_name("watch");
    write_tree(dir.path(), &ns, "one");
    // A long interval: only the file watcher can explain a change landing within the test's time.
    let mut d = Running::start(h, dir.path(), |o| {
        o.watch = true;
        o.branch = None;
        o.interval = Duration::from_secs(3600);
    });
    let first = match d
        .wait("the tree synced", |e| matches!(e, Event::Synced { failed: 0, .. }))
        .await
    {
        Event::Synced { commit, .. } => commit,
        _ => unreachable!(),
    };
    assert!(first.starts_with("worktree-"), "{first}");
    assert_eq!(value(h, &ns).await.as_deref(), Some("one"));

    write_tree(dir.path(), &ns, "two");
    let second = match d
        .wait(
            "the saved change synced",
            |e| matches!(e, Event::Synced { commit, failed: 0, .. } if *commit != first),
        )
        .await
    {
        Event::Synced { commit, .. } => commit,
        _ => unreachable!(),
    };
    assert_eq!(value(h, &ns).await.as_deref(), Some("two"));

    // A broken save is refused; the clusters keep the last good tree.
    std::fs::write(
        dir.path().join("broken.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: [\n",
    )
    .unwrap();
    d.wait("the broken tree refused", |e| matches!(e, Event::Refused { .. }))
        .await;
    assert_eq!(value(h, &ns).await.as_deref(), Some("two"));
    let status = d.daemon.status();
    assert_eq!(status.desired.as_deref(), Some(second.as_str()), "{status:#?}");
    assert!(status.refused.is_some());
    d.stop().await;
}
