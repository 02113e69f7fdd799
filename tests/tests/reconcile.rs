//! The reconcile daemon end to end on three real kube-apiservers (the shared harness): it follows a
//! branch of a real local Git repository, applies each commit, refuses a broken one, and finds drift
//! through watches: heals it (or only reports it) without fighting fields it does not manage.
//! Each test runs its own daemon with its own ApplySet, namespace and repository.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod util;

use flotilla_tests::cluster::{self, unique_name};
use flotilla_tests::git;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use reconciler::daemon::{DriftAction, DriftMode, Event, SyncState};
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use util::{commit_repo, new_repo, request, setting, start, start_with, ALL};

fn by(manager: &str) -> PatchParams {
    PatchParams {
        field_manager: Some(manager.into()),
        ..PatchParams::default()
    }
}

fn drift_of<'e>(e: &'e Event, cluster: &str, object: &str) -> Option<(&'e [String], &'e [String], &'e DriftAction)> {
    match e {
        Event::Drift {
            cluster: c,
            object: o,
            fields,
            by,
            action,
        } if c == cluster && o == object => Some((fields, by, action)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_healed_without_fighting_fields_flotilla_does_not_manage() {
    let Some(h) = cluster::shared(3).unwrap() else { return };
    let ns = unique_name("heal");
    let repo = new_repo();
    let first = commit_repo(repo.path(), &ns, "one", "nginx:1.27");
    let mut d = start(h, repo.path(), DriftMode::Heal);
    d.synced(&first, ALL).await;
    let c1 = h.client(0).unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(c1.clone(), &ns);
    let deploys: Api<Deployment> = Api::namespaced(c1.clone(), &ns);
    let cm_name = format!("ConfigMap {ns}/settings");
    let deploy_name = format!("Deployment.apps {ns}/web");

    // 1. Someone edits a value flotilla manages: healed, and the event names the field and the editor.
    cms.patch(
        "settings",
        &by("kubectl-edit"),
        &Patch::Merge(json!({"data": {"k": "edited"}})),
    )
    .await
    .unwrap();
    let e = d
        .wait("ConfigMap drift", |e| drift_of(e, "cluster-1", &cm_name).is_some())
        .await;
    let (fields, who, action) = drift_of(&e, "cluster-1", &cm_name).unwrap();
    assert_eq!(fields, ["data.k"]);
    assert_eq!(who, ["kubectl-edit (Update)"]);
    assert!(matches!(action, DriftAction::Healed { .. }), "{action:?}");
    assert_eq!(setting(h, 0, &ns).await.as_deref(), Some("one"));

    // 2. An autoscaler sets replicas (the template has none): not drift. Then someone changes the
    //    image: healed; the correction names only the image and leaves the replicas alone.
    deploys
        .patch(
            "web",
            &by("horizontal-pod-autoscaler"),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    deploys
        .patch(
            "web",
            &by("kubectl-edit"),
            &Patch::Strategic(
                json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "evil:6.6.6"}]}}}}),
            ),
        )
        .await
        .unwrap();
    let e = d
        .wait("Deployment drift", |e| drift_of(e, "cluster-1", &deploy_name).is_some())
        .await;
    let (fields, who, action) = drift_of(&e, "cluster-1", &deploy_name).unwrap();
    assert_eq!(fields, ["spec.template.spec.containers[name=web].image"]);
    assert_eq!(who, ["kubectl-edit (Update)"]);
    assert!(matches!(action, DriftAction::Healed { .. }), "{action:?}");
    let live = deploys.get("web").await.unwrap();
    let spec = live.spec.unwrap();
    assert_eq!(spec.replicas, Some(5), "the autoscaler's replicas were fought over");
    assert_eq!(
        spec.template.spec.unwrap().containers[0].image.as_deref(),
        Some("nginx:1.27")
    );

    // 3. Someone deletes a managed object: it is created again.
    cms.delete("settings", &DeleteParams::default()).await.unwrap();
    let e = d
        .wait("deletion drift", |e| drift_of(e, "cluster-1", &cm_name).is_some())
        .await;
    let (fields, _, action) = drift_of(&e, "cluster-1", &cm_name).unwrap();
    assert_eq!(fields, ["(object deleted)"]);
    assert!(matches!(action, DriftAction::Healed { .. }), "{action:?}");
    assert_eq!(setting(h, 0, &ns).await.as_deref(), Some("one"));

    let status = d.daemon.status();
    let c1s = &status.clusters["cluster-1"];
    assert_eq!(c1s.drift_corrections, 3, "{status:#?}");
    assert_eq!(c1s.state, SyncState::Synced);
    for other in ["cluster-2", "cluster-3"] {
        assert_eq!(status.clusters[other].drift_corrections, 0, "{status:#?}");
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_in_report_mode_is_reported_and_left_until_the_next_commit() {
    let Some(h) = cluster::shared(3).unwrap() else { return };
    let ns = unique_name("report");
    let repo = new_repo();
    let first = commit_repo(repo.path(), &ns, "one", "nginx:1.27");
    let mut d = start(h, repo.path(), DriftMode::Report);
    d.synced(&first, ALL).await;
    let cm_name = format!("ConfigMap {ns}/settings");
    let cms: Api<ConfigMap> = Api::namespaced(h.client(1).unwrap(), &ns);
    cms.patch(
        "settings",
        &by("kubectl-edit"),
        &Patch::Merge(json!({"data": {"k": "edited"}})),
    )
    .await
    .unwrap();
    let e = d
        .wait("reported drift", |e| drift_of(e, "cluster-2", &cm_name).is_some())
        .await;
    let (fields, who, action) = drift_of(&e, "cluster-2", &cm_name).unwrap();
    assert_eq!(
        (fields, who, action),
        (
            &["data.k".to_string()][..],
            &["kubectl-edit (Update)".to_string()][..],
            &DriftAction::Reported
        )
    );
    assert_eq!(
        setting(h, 1, &ns).await.as_deref(),
        Some("edited"),
        "report mode changed the object"
    );
    let status = d.daemon.status();
    assert_eq!(
        status.clusters["cluster-2"].drifted.get(&cm_name),
        Some(&vec!["data.k".to_string()])
    );
    assert_eq!(status.clusters["cluster-2"].drift_corrections, 0);

    // The next commit re-applies flotilla's fields: Git wins again and the drift is gone.
    let second = commit_repo(repo.path(), &ns, "two", "nginx:1.27");
    d.synced(&second, ALL).await;
    for i in 0..3 {
        assert_eq!(setting(h, i, &ns).await.as_deref(), Some("two"), "cluster-{}", i + 1);
    }
    assert!(d.daemon.status().clusters["cluster-2"].drifted.is_empty());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_follows_the_branch_and_refuses_a_broken_commit() {
    let Some(h) = cluster::shared(3).unwrap() else { return };
    let ns = unique_name("follow");
    let repo = new_repo();
    let first = commit_repo(repo.path(), &ns, "one", "nginx:1.27");
    let mut d = start(h, repo.path(), DriftMode::Heal);
    d.synced(&first, ALL).await;

    // A new commit lands everywhere, changed in place.
    let second = commit_repo(repo.path(), &ns, "two", "nginx:1.27");
    d.synced(&second, ALL).await;
    for i in 0..3 {
        assert_eq!(setting(h, i, &ns).await.as_deref(), Some("two"));
    }

    // A broken commit is refused with its diagnostics, and nothing changes anywhere.
    std::fs::write(repo.path().join("app.yaml"), "data: [unclosed\n").unwrap();
    git(repo.path(), &["commit", "-q", "-am", "broken"]);
    let broken = git(repo.path(), &["rev-parse", "HEAD"]);
    let e = d
        .wait(
            "refusal",
            |e| matches!(e, Event::Refused { commit, .. } if *commit == broken),
        )
        .await;
    let Event::Refused { diagnostics, .. } = e else {
        unreachable!()
    };
    assert!(
        diagnostics.iter().any(|m| m.starts_with("app.yaml:")),
        "{diagnostics:?}"
    );
    let status = d.daemon.status();
    assert_eq!(
        status.refused.as_ref().map(|r| r.commit.as_str()),
        Some(broken.as_str())
    );
    assert_eq!(status.desired.as_deref(), Some(second.as_str()));
    for (name, c) in &status.clusters {
        assert_eq!(c.commit.as_deref(), Some(second.as_str()), "{name}");
    }
    for i in 0..3 {
        assert_eq!(setting(h, i, &ns).await.as_deref(), Some("two"));
    }

    // The next good commit lands and clears the refusal.
    let third = commit_repo(repo.path(), &ns, "three", "nginx:1.27");
    d.synced(&third, ALL).await;
    for i in 0..3 {
        assert_eq!(setting(h, i, &ns).await.as_deref(), Some("three"));
    }
    assert_eq!(d.daemon.status().refused, None);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_status_and_metrics_over_http() {
    use reconciler::daemon::webhook::github_signature;
    let Some(h) = cluster::shared(3).unwrap() else { return };
    let ns = unique_name("http");
    let repo = new_repo();
    let secret_dir = tempfile::tempdir().unwrap();
    let secret_file = secret_dir.path().join("webhook-secret");
    std::fs::write(&secret_file, "s3cret\n").unwrap();
    let first = commit_repo(repo.path(), &ns, "one", "nginx:1.27");
    // Polling once an hour: only a webhook can make the daemon look again.
    let secret_path = secret_file.clone();
    let mut d = start_with(h, repo.path(), DriftMode::Heal, move |o| {
        o.interval = Duration::from_secs(3600);
        o.listen = Some("127.0.0.1:0".parse().unwrap());
        o.webhook_secret = Some(secret_path);
    });
    d.synced(&first, ALL).await;
    let addr = d.daemon.http_addr().expect("the daemon listens");

    let get = |path: &'static str| tokio::task::spawn_blocking(move || request(addr, "GET", path, &[], b""));
    assert_eq!(get("/healthz").await.unwrap().0, 200);
    assert_eq!(get("/readyz").await.unwrap().0, 200);
    let (code, body) = get("/status").await.unwrap();
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    for c in ["cluster-1", "cluster-2", "cluster-3"] {
        assert_eq!(status["clusters"][c]["commit"], first.as_str(), "{body}");
        assert_eq!(status["clusters"][c]["state"], "synced", "{body}");
    }
    let (code, metrics) = get("/metrics").await.unwrap();
    assert_eq!(code, 200);
    for line in [
        "flotilla_cluster_synced{cluster=\"cluster-2\"} 1",
        "flotilla_objects_total{cluster=\"cluster-1\",action=\"created\"} 3",
        "flotilla_sync_duration_seconds_count{cluster=\"cluster-3\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "missing `{line}`:\n{metrics}");
    }

    // A new commit; forged, unsigned and oversized webhooks are refused and change nothing.
    let second = commit_repo(repo.path(), &ns, "two", "nginx:1.27");
    let payload = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let forged = github_signature(b"guess", &payload);
    let post = |headers: Vec<(&'static str, String)>, body: Vec<u8>| {
        tokio::task::spawn_blocking(move || {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            request(addr, "POST", "/hooks/git", &h, &body)
        })
    };
    assert_eq!(
        post(vec![("X-Hub-Signature-256", forged)], payload.clone())
            .await
            .unwrap()
            .0,
        401
    );
    assert_eq!(post(vec![], payload.clone()).await.unwrap().0, 401);
    assert_eq!(
        post(vec![("X-Gitlab-Token", "nope".into())], payload.clone())
            .await
            .unwrap()
            .0,
        401
    );
    let big = vec![b'x'; 2 * 1024 * 1024];
    let sig = github_signature(b"s3cret", &big);
    assert_eq!(post(vec![("X-Hub-Signature-256", sig)], big).await.unwrap().0, 413);
    let status = d.daemon.status();
    assert_eq!(
        status.head.as_deref(),
        Some(first.as_str()),
        "a refused webhook made the daemon fetch"
    );
    for i in 0..3 {
        assert_eq!(setting(h, i, &ns).await.as_deref(), Some("one"));
    }
    assert!(d
        .daemon
        .metrics()
        .lines()
        .any(|l| l == "flotilla_webhook_requests_total{result=\"rejected\"} 3"));

    // A correctly signed webhook makes it fetch at once: the new commit lands everywhere.
    let good = github_signature(b"s3cret", &payload);
    assert_eq!(
        post(vec![("X-Hub-Signature-256", good)], payload.clone())
            .await
            .unwrap()
            .0,
        202
    );
    d.synced(&second, ALL).await;
    for i in 0..3 {
        assert_eq!(setting(h, i, &ns).await.as_deref(), Some("two"));
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_branch_is_followed_through_force_pushes_and_deletion() {
    let Some(h) = cluster::shared(3).unwrap() else { return };
    let ns = unique_name("remote");
    let work = new_repo();
    let remote = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    git(remote.path(), &["init", "-q", "--bare", "-b", "main"]);
    git(remote.path(), &["config", "receive.denyDeleteCurrent", "ignore"]);
    let url = format!("file://{}", remote.path().display());
    git(work.path(), &["remote", "add", "origin", &url]);
    let first = commit_repo(work.path(), &ns, "one", "nginx:1.27");
    git(work.path(), &["push", "-q", "origin", "main"]);
    let cache_dir = cache.path().join("source");
    let source = url.clone();
    let mut d = start_with(h, Path::new(&url), DriftMode::Heal, move |o| {
        o.source = source;
        o.cache_dir = Some(cache_dir);
    });
    d.synced(&first, ALL).await;

    let second = commit_repo(work.path(), &ns, "two", "nginx:1.27");
    git(work.path(), &["push", "-q", "origin", "main"]);
    d.synced(&second, ALL).await;
    assert_eq!(setting(h, 0, &ns).await.as_deref(), Some("two"));

    // A force-push to an older commit rolls the fleet back.
    git(
        work.path(),
        &["push", "-q", "-f", "origin", &format!("{first}:refs/heads/main")],
    );
    d.synced(&first, ALL).await;
    for i in 0..3 {
        assert_eq!(setting(h, i, &ns).await.as_deref(), Some("one"));
    }

    // The branch deleted on the remote: an error, and the last good commit stays.
    git(work.path(), &["push", "-q", "origin", ":main"]);
    let e = d
        .wait(
            "source error",
            |e| matches!(e, Event::SourceError { error } if error.contains("does not exist")),
        )
        .await;
    assert!(matches!(e, Event::SourceError { .. }));
    let status = d.daemon.status();
    assert!(status.source_error.is_some());
    for (name, c) in &status.clusters {
        assert_eq!(c.commit.as_deref(), Some(first.as_str()), "{name}");
    }

    // Pushed again: followed again.
    git(work.path(), &["reset", "-q", "--hard", &second]);
    let third = commit_repo(work.path(), &ns, "three", "nginx:1.27");
    git(work.path(), &["push", "-q", "origin", "main"]);
    d.synced(&third, ALL).await;
    assert_eq!(setting(h, 2, &ns).await.as_deref(), Some("three"));
    assert_eq!(d.daemon.status().source_error, None);
    d.stop().await;
}
