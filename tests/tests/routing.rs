//! The daemon publishes endpoint map configs (SPEC §7) into real kube-apiservers: the ConfigMap
//! `flotilla-system/endpoint-map` in every member cluster, rebuilt when a commit or an EndpointSlice changes
//! it, with versions that only go up, also across a restart; nothing for a fleet without exported services.
//! Each test starts a harness of its own (two clusters): they all write the same ConfigMap.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use ebpf::{EndpointMapConfig, Via};
use flotilla_tests::cluster::{self, unique_name, Harness};
use flotilla_tests::daemon::Running;
use flotilla_tests::git;
use flotilla_tests::routing::{backends, endpoint, endpoint_slice, write_repo, ClusterSpec, ServiceSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::Api;
use reconciler::daemon::Event;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const BOTH: [&str; 2] = ["cluster-1", "cluster-2"];

const FLAT: [ClusterSpec<'static>; 2] = [
    ClusterSpec {
        name: "cluster-1",
        network: "flat",
        gateway: None,
    },
    ClusterSpec {
        name: "cluster-2",
        network: "flat",
        gateway: None,
    },
];

fn harness() -> Option<Harness> {
    if cluster::skip_requested() {
        eprintln!("skipped on purpose: {}=1", cluster::SKIP_ENV);
        return None;
    }
    Some(Harness::start(2).unwrap())
}

fn service(ns: &str, exported: bool) -> ServiceSpec<'_> {
    ServiceSpec {
        namespace: ns,
        name: "api",
        port: 80,
        target_port: 8080,
        cluster_ip: None,
        mode: "FailOver",
        exported,
    }
}

fn commit(dir: &Path, ns: &str, exported: bool, message: &str) -> String {
    write_repo(dir, &FLAT, &service(ns, exported)).unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "--allow-empty", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

/// The published document of a cluster (checked: hash, field manager), if there is one.
async fn published(client: &kube::Client) -> Option<EndpointMapConfig> {
    let cm = Api::<ConfigMap>::namespaced(client.clone(), "flotilla-system")
        .get_opt("endpoint-map")
        .await
        .unwrap()?;
    let managers: Vec<(String, String)> = cm
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(managers, [("flotilla".to_string(), "Apply".to_string())]);
    let text = &cm.data.as_ref().unwrap()["endpoint-map.json"];
    let doc: EndpointMapConfig = serde_json::from_str(text).unwrap();
    doc.verify().unwrap();
    assert_eq!(
        cm.metadata.annotations.as_ref().unwrap()["flotilla.dev/endpoint-map-version"],
        doc.version.to_string()
    );
    Some(doc)
}

async fn resource_version(client: &kube::Client) -> Option<String> {
    Api::<ConfigMap>::namespaced(client.clone(), "flotilla-system")
        .get("endpoint-map")
        .await
        .unwrap()
        .metadata
        .resource_version
}

/// Polls the cluster's document (up to 60 s) until `ok` holds; returns it.
async fn wait_doc(client: &kube::Client, what: &str, ok: impl Fn(&EndpointMapConfig) -> bool) -> EndpointMapConfig {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last = None;
    loop {
        if let Some(doc) = published(client).await {
            if ok(&doc) {
                return doc;
            }
            last = Some(doc);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waiting for the endpoint map: {what}; last seen: {last:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cluster_ip(client: &kube::Client, ns: &str) -> String {
    Api::<Service>::namespaced(client.clone(), ns)
        .get("api")
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_publishes_endpoint_maps_and_follows_endpointslices_and_restarts() {
    let Some(h) = harness() else { return };
    let (c1, c2) = (h.client(0).unwrap(), h.client(1).unwrap());
    let ns = unique_name("routing");
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    let first = commit(repo.path(), &ns, true, "export api");
    let commit_time: u64 = git(repo.path(), &["log", "-1", "--format=%ct"]).parse().unwrap();
    let applyset = unique_name("routing");
    let mut d = Running::start(&h, repo.path(), |o| o.applyset = applyset.clone());
    d.synced(&first, &BOTH).await;
    let ip1 = cluster_ip(&c1, &ns).await;

    // 1. Both clusters have their document; cluster-1's tier 0 is its Service's live ClusterIP, not ready
    //    while it has no endpoints; cluster-2 (tier 1, same network) has none yet.
    let doc = wait_doc(&c1, "cluster-1's ClusterIP", |d| {
        backends(d) == [(ip1.clone(), 80, 0, 0, false, Via::Direct)]
    })
    .await;
    assert_eq!(doc.cluster, "cluster-1");
    assert_eq!(doc.source.git_revision.as_deref(), Some(first.as_str()));
    assert!(
        doc.version >= commit_time,
        "{} < commit time {commit_time}",
        doc.version
    );
    let doc2 = wait_doc(&c2, "cluster-2's document", |d| d.frontends.len() == 1).await;
    assert_eq!(doc2.cluster, "cluster-2");
    assert_eq!(doc.frontends[0].vip, doc2.frontends[0].vip, "one VIP everywhere");
    let mut versions = vec![doc.version];

    // 2. Pods appear behind cluster-2's Service: cluster-1 routes to them in tier 1.
    endpoint_slice(&c2, &ns, "api-b", json!([endpoint("192.0.2.21", true)]))
        .await
        .unwrap();
    let doc = wait_doc(&c1, "cluster-2's pod in tier 1", |d| backends(d).len() == 2).await;
    assert_eq!(
        backends(&doc),
        [
            (ip1.clone(), 80, 0, 0, false, Via::Direct),
            ("192.0.2.21".into(), 8080, 1, 1, true, Via::Direct),
        ]
    );
    versions.push(doc.version);

    // 3. cluster-1's own pod becomes ready: its ClusterIP is ready, weighing one endpoint; cluster-2's
    //    document gets the pod in its tier 1.
    endpoint_slice(&c1, &ns, "api-a", json!([endpoint("192.0.2.11", true)]))
        .await
        .unwrap();
    let doc = wait_doc(&c1, "the local ClusterIP ready", |d| backends(d)[0].4).await;
    assert_eq!(backends(&doc)[0], (ip1.clone(), 80, 0, 1, true, Via::Direct));
    versions.push(doc.version);
    let ip2 = cluster_ip(&c2, &ns).await;
    wait_doc(&c2, "cluster-1's pod in cluster-2's tier 1", |d| {
        backends(d)
            == [
                (ip2.clone(), 80, 0, 1, true, Via::Direct),
                ("192.0.2.11".into(), 8080, 1, 1, true, Via::Direct),
            ]
    })
    .await;

    // 4. A burst of slice updates on cluster-2: the document ends in the last state.
    for i in 0..10 {
        let eps = if i % 2 == 0 {
            json!([endpoint("192.0.2.21", false), endpoint("192.0.2.22", true)])
        } else {
            json!([endpoint("192.0.2.21", true)])
        };
        endpoint_slice(&c2, &ns, "api-b", eps).await.unwrap();
    }
    endpoint_slice(
        &c2,
        &ns,
        "api-b",
        json!([endpoint("192.0.2.21", false), endpoint("192.0.2.23", true)]),
    )
    .await
    .unwrap();
    let doc = wait_doc(&c1, "the burst's last state", |d| {
        backends(d).get(1).map(|b| b.0.as_str()) == Some("192.0.2.23") && backends(d).len() == 2
    })
    .await;
    versions.push(doc.version);
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "versions go up: {versions:?}");
    let status = d.daemon.status();
    let em = &status.endpoint_maps["cluster-1"];
    assert_eq!(
        (em.version, em.frontends, em.backends),
        (Some(doc.version), 1, 2),
        "{status:#?}"
    );
    assert_eq!(em.last_error, None);
    let metrics = d.daemon.metrics();
    let gauge = format!("flotilla_endpoint_map_version{{cluster=\"cluster-1\"}} {}", doc.version);
    assert!(metrics.contains(&gauge), "{metrics}");
    let table = reconciler::commands::status_table(&status);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("cluster-1") && l.contains(&doc.version.to_string())),
        "{table}"
    );
    d.stop().await;

    // 5. A restarted daemon finds the documents in place and writes nothing (same content: the
    //    ConfigMap's resourceVersion stays) ...
    let before = published(&c1).await.unwrap();
    let rv = resource_version(&c1).await;
    let mut d = Running::start(&h, repo.path(), |o| o.applyset = applyset.clone());
    d.synced(&first, &BOTH).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while d.daemon.status().endpoint_maps.get("cluster-1").and_then(|e| e.version) != Some(before.version) {
        assert!(tokio::time::Instant::now() < deadline, "{:#?}", d.daemon.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        resource_version(&c1).await,
        rv,
        "an unchanged document was written again"
    );
    // ... and goes on from their version: the next one is higher, although the commit is the same.
    endpoint_slice(&c1, &ns, "api-a", json!([endpoint("192.0.2.11", false)]))
        .await
        .unwrap();
    let doc = wait_doc(&c1, "the local ClusterIP not ready", |d| !backends(d)[0].4).await;
    assert!(doc.version > before.version, "{} after {}", doc.version, before.version);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_fleet_with_exported_services_gets_documents_and_removing_the_last_export_empties_them() {
    let Some(h) = harness() else { return };
    let clients = h.clients().unwrap();
    let ns = unique_name("exports");
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    let plain = commit(repo.path(), &ns, false, "a plain Service");
    let mut d = Running::start(&h, repo.path(), |_| {});
    d.synced(&plain, &BOTH).await;
    // No routing inputs: nothing written, nothing published (checked again after the next commit: the
    // publisher handles commits in order, so a document for this one would come first).
    for c in &clients {
        assert!(published(c).await.is_none());
    }

    let exported = commit(repo.path(), &ns, true, "export it");
    let mut left: BTreeSet<String> = BOTH.map(String::from).into();
    while !left.is_empty() {
        let e = d
            .wait("documents published", |e| {
                matches!(e, Event::EndpointMapPublished { .. } | Event::EndpointMapFailed { .. })
            })
            .await;
        match &e {
            Event::EndpointMapPublished { cluster, commit, .. } => {
                assert_eq!(commit, &exported, "a document for the commit without exports: {e:?}");
                left.remove(cluster);
            }
            _ => panic!("{e:?}"),
        }
    }
    let mut versions = Vec::new();
    for c in &clients {
        let doc = wait_doc(c, "one frontend", |d| d.frontends.len() == 1).await;
        versions.push(doc.version);
    }

    // The last export goes: the documents stay, emptied, so that agents stop routing the VIP.
    let gone = commit(repo.path(), &ns, false, "unexport it");
    for (c, v) in clients.iter().zip(versions) {
        let doc = wait_doc(c, "no frontends", |d| d.frontends.is_empty()).await;
        assert!(doc.version > v);
        assert_eq!(doc.source.git_revision.as_deref(), Some(gone.as_str()));
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_is_down_holds_no_other_back_and_gets_its_document_when_it_is_back() {
    let Some(h) = harness() else { return };
    let (c1, c2) = (h.client(0).unwrap(), h.client(1).unwrap());
    let ns = unique_name("down");
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    let first = commit(repo.path(), &ns, true, "export api");
    let mut d = Running::start(&h, repo.path(), |_| {});
    d.synced(&first, &BOTH).await;
    endpoint_slice(&c2, &ns, "api-b", json!([endpoint("192.0.2.21", true)]))
        .await
        .unwrap();
    wait_doc(&c1, "cluster-2's pod", |d| backends(d).len() == 2).await;

    // cluster-2's API server dies. cluster-1's pod becomes ready: cluster-1's document follows at once
    // and keeps cluster-2's pod (the last state listed: a dead API server says nothing about pods);
    // cluster-2's own document cannot be written and is retried.
    h.stop_apiserver(1).unwrap();
    endpoint_slice(&c1, &ns, "api-a", json!([endpoint("192.0.2.11", true)]))
        .await
        .unwrap();
    let doc = wait_doc(&c1, "the local ClusterIP ready", |d| backends(d)[0].4).await;
    assert_eq!(backends(&doc)[1], ("192.0.2.21".into(), 8080, 1, 1, true, Via::Direct));
    d
        .wait("cluster-2's publish failing", |e| {
            matches!(e, Event::EndpointMapFailed { cluster, retry_millis, .. } if cluster == "cluster-2" && *retry_millis > 0)
        })
        .await;
    assert!(d.daemon.status().endpoint_maps["cluster-2"].last_error.is_some());

    // Back: the retry publishes cluster-2's document with cluster-1's pod in its tier 1.
    h.start_apiserver(1).unwrap();
    let c2 = h.client(1).unwrap();
    wait_doc(&c2, "cluster-1's pod in cluster-2's document", |d| {
        backends(d).iter().any(|b| b.0 == "192.0.2.11")
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while d.daemon.status().endpoint_maps["cluster-2"].last_error.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "{:#?}", d.daemon.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_takes_a_tainted_clusters_backends_out_of_the_documents_and_back() {
    let Some(h) = harness() else { return };
    let (c1, c2) = (h.client(0).unwrap(), h.client(1).unwrap());
    let ns = unique_name("failover");
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    let first = commit(repo.path(), &ns, true, "export api");
    let mut d = Running::start(&h, repo.path(), |o| o.failover_grace = Some(Duration::from_secs(3)));
    d.synced(&first, &BOTH).await;
    endpoint_slice(&c2, &ns, "api-b", json!([endpoint("192.0.2.21", true)]))
        .await
        .unwrap();
    let cluster_2_pod = |d: &EndpointMapConfig| backends(d).iter().any(|b| b.0 == "192.0.2.21");
    wait_doc(&c1, "cluster-2's pod", cluster_2_pod).await;

    // cluster-2 stops answering: once tainted, the commit is rendered without it, the Service is no longer
    // exported from it, and cluster-1's document loses that tier.
    h.stop_apiserver(1).unwrap();
    d.wait(
        "cluster-2 tainted",
        |e| matches!(e, Event::Tainted { cluster, .. } if cluster == "cluster-2"),
    )
    .await;
    let doc = wait_doc(&c1, "cluster-2's tier gone", |d| !cluster_2_pod(d)).await;
    assert!(backends(&doc).iter().all(|b| b.2 == 0), "{doc:#?}");

    // Back: untainted, exported again, and its pod (listed again) is back in cluster-1's document.
    h.start_apiserver(1).unwrap();
    d.wait(
        "cluster-2 untainted",
        |e| matches!(e, Event::Untainted { cluster } if cluster == "cluster-2"),
    )
    .await;
    wait_doc(&c1, "cluster-2's pod back", cluster_2_pod).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_working_tree_publishes_documents_that_name_no_revision() {
    let Some(h) = harness() else { return };
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ns = unique_name("worktree");
    let dir = tempfile::tempdir().unwrap(); // a plain directory: no Git at all
    write_repo(dir.path(), &FLAT, &service(&ns, true)).unwrap();
    let mut d = Running::start(&h, dir.path(), |o| o.watch = true);
    let mut left: BTreeSet<String> = BOTH.map(String::from).into();
    while !left.is_empty() {
        if let Event::EndpointMapPublished { cluster, .. } = d
            .wait("documents published", |e| {
                matches!(e, Event::EndpointMapPublished { .. })
            })
            .await
        {
            left.remove(&cluster);
        }
    }
    for c in h.clients().unwrap() {
        let doc = published(&c).await.unwrap();
        assert_eq!(doc.source.git_revision, None, "a working tree is not a Git revision");
        assert!(
            doc.version >= started,
            "{} < {started}: versions start from the current time",
            doc.version
        );
    }
    d.stop().await;
}
