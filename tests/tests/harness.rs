//! The real-cluster harness itself: two kube-apiservers on one etcd, isolated by prefix, reachable
//! through the kubeconfig, doing server-side apply; and its processes die with it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use anyhow::{ensure, Context, Result};
use flotilla_tests::cluster::{self, Harness, Options};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

#[tokio::test]
async fn both_clusters_serve_kubernetes_1_34() -> Result<()> {
    let Some(harness) = cluster::shared(2)? else {
        return Ok(());
    };
    assert_eq!(harness.clusters().len(), 2);
    for (cluster, client) in harness.clusters().iter().zip(harness.clients()?) {
        let version = client.apiserver_version().await?;
        assert!(
            version.git_version.starts_with("v1.34.") && version.minor == "34",
            "{}: {version:?}",
            cluster.name()
        );
    }
    Ok(())
}

#[tokio::test]
async fn clusters_are_isolated_by_etcd_prefix() -> Result<()> {
    let Some(harness) = cluster::shared(2)? else {
        return Ok(());
    };
    let [one, two] = &harness.clients()?[..] else {
        panic!("two clusters")
    };
    assert_eq!(harness.clusters()[0].etcd_prefix(), "/cluster-1");
    assert_eq!(harness.clusters()[1].etcd_prefix(), "/cluster-2");
    let name = cluster::create_namespace(one, "isolation").await?;
    assert!(Api::<Namespace>::all(one.clone()).get_opt(&name).await?.is_some());
    assert!(
        Api::<Namespace>::all(two.clone()).get_opt(&name).await?.is_none(),
        "namespace {name} of cluster-1 is visible in cluster-2"
    );
    Ok(())
}

#[tokio::test]
async fn server_side_apply_with_the_flotilla_field_manager() -> Result<()> {
    let Some(harness) = cluster::shared(2)? else {
        return Ok(());
    };
    let client = harness.client(0)?;
    let ns = cluster::create_namespace(&client, "ssa").await?;
    let api: Api<ConfigMap> = Api::namespaced(client, &ns);
    let desired = |value: &str| {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "labels": {"app.kubernetes.io/managed-by": "flotilla"}},
            "data": {"greeting": value},
        })
    };
    let flotilla = PatchParams::apply("flotilla");

    let created = api
        .patch("settings", &flotilla, &Patch::Apply(desired("hello")))
        .await?;
    assert_eq!(created.data.unwrap()["greeting"], "hello");
    let managers = created.metadata.managed_fields.unwrap_or_default();
    assert!(
        managers
            .iter()
            .any(|m| m.manager.as_deref() == Some("flotilla") && m.operation.as_deref() == Some("Apply")),
        "{managers:?}"
    );

    let updated = api
        .patch("settings", &flotilla, &Patch::Apply(desired("bonjour")))
        .await?;
    assert_eq!(updated.data.unwrap()["greeting"], "bonjour");

    // Another manager may not take a field flotilla owns without forcing: a real 409 Conflict.
    let other = api
        .patch(
            "settings",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(desired("hi")),
        )
        .await;
    match other {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 409, "{status:?}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn the_kubeconfig_has_a_context_per_cluster() -> Result<()> {
    let Some(harness) = cluster::shared(2)? else {
        return Ok(());
    };
    let text = std::fs::read_to_string(harness.kubeconfig())?;
    assert!(text.starts_with(cluster::KUBECONFIG_MARKER));
    let kubeconfig = Kubeconfig::read_from(harness.kubeconfig())?;
    let contexts: Vec<&str> = kubeconfig.contexts.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(contexts, ["cluster-1", "cluster-2"]);
    assert_eq!(kubeconfig.current_context.as_deref(), Some("cluster-1"));
    let options = KubeConfigOptions {
        context: Some("cluster-2".into()),
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?;
    assert_eq!(
        config.cluster_url.to_string(),
        format!("{}/", harness.clusters()[1].server())
    );
    let client = kube::Client::try_from(config)?;
    Api::<Namespace>::all(client).get("default").await?;
    Ok(())
}

#[tokio::test]
async fn rbac_is_enforced_for_other_identities() -> Result<()> {
    let Some(harness) = cluster::shared(2)? else {
        return Ok(());
    };
    let config = harness.config_as("cluster-1", "nobody", &["flotilla:tests"]).await?;
    let client = kube::Client::try_from(config)?;
    match Api::<Namespace>::all(client).list(&Default::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
    Ok(())
}

/// Whether a process with this PID runs (a zombie, killed but not yet reaped by init, does not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => !matches!(
            stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next()),
            Some('Z' | 'X')
        ),
        Err(_) => false,
    }
}

fn wait_gone(pids: &[(String, u32)], within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while pids.iter().any(|(_, pid)| alive(*pid)) {
        ensure!(Instant::now() < deadline, "still running after {within:?}: {pids:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[test]
fn dropping_the_harness_kills_its_processes_and_removes_its_directory() -> Result<()> {
    if cluster::skip_requested() {
        return Ok(());
    }
    // etcd only: the kill path is the same for every process, and etcd starts in a second.
    let harness = Harness::start_with(Options::clusters(0))?;
    let pids = harness.pids();
    let dir = harness.dir().to_path_buf();
    assert_eq!(pids.len(), 1, "{pids:?}");
    assert!(alive(pids[0].1));
    drop(harness);
    wait_gone(&pids, Duration::from_secs(1))?;
    assert!(!dir.exists(), "{} left behind", dir.display());
    Ok(())
}

#[test]
fn a_panicking_test_still_kills_its_processes_and_keeps_the_logs() -> Result<()> {
    if cluster::skip_requested() {
        return Ok(());
    }
    let mut seen = None;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let harness = Harness::start_with(Options::clusters(0)).unwrap();
        seen = Some((harness.pids(), harness.dir().to_path_buf()));
        panic!("a failing test");
    }));
    assert!(outcome.is_err());
    let (pids, dir) = seen.unwrap();
    wait_gone(&pids, Duration::from_secs(1))?;
    assert!(dir.join("logs/etcd.log").exists());
    assert!(!dir.join("etcd").exists() && !dir.join("pki").exists());
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

/// Set in the child process of `processes_die_with_the_test_binary`.
const CHILD_ENV: &str = "FLOTILLA_HARNESS_TEST_CHILD";

/// The child's part: start a harness, print its PIDs and leave without dropping it, as a test
/// binary ends with a shared harness.
fn child_starts_a_harness_and_exits() {
    let harness = Harness::start_with(Options::clusters(0)).unwrap();
    for (_, pid) in harness.pids() {
        println!("pid {pid}");
    }
    println!("dir {}", harness.dir().display());
    std::process::exit(0);
}

#[test]
fn processes_die_with_the_test_binary() -> Result<()> {
    if std::env::var_os(CHILD_ENV).is_some() {
        child_starts_a_harness_and_exits();
    }
    if cluster::skip_requested() {
        return Ok(());
    }
    // Re-run this very test in a child process, which takes the child's part.
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(["--exact", "processes_die_with_the_test_binary", "--nocapture"])
        .env(CHILD_ENV, "1")
        .output()
        .context("running the child test")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pids: Vec<(String, u32)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("pid "))
        .map(|p| ("etcd".to_string(), p.trim().parse().unwrap()))
        .collect();
    ensure!(!pids.is_empty(), "the child printed no PIDs: {stdout}");
    wait_gone(&pids, Duration::from_secs(10))?;
    let dir = stdout.lines().find_map(|l| l.strip_prefix("dir ")).unwrap().trim();
    // The watchdog removes the data and keys, and keeps the logs.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(dir).join("etcd").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!Path::new(dir).join("etcd").exists());
    assert!(Path::new(dir).join("logs/etcd.log").exists());
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_apiserver_comes_back_on_its_port_with_its_objects() -> Result<()> {
    if cluster::skip_requested() {
        return Ok(());
    }
    let harness = Harness::start(1)?;
    let client = harness.client(0)?; // made before the restart, used after it
    let ns = cluster::create_namespace(&client, "restart").await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}, "data": {"k": "v"}});
    api.patch("kept", &PatchParams::apply("flotilla"), &Patch::Apply(cm))
        .await?;
    let before = harness.pids();

    harness.stop_apiserver(0)?;
    let (_, old) = before.iter().find(|(n, _)| n == "cluster-1").unwrap();
    assert!(!alive(*old), "the stopped kube-apiserver still runs");
    assert!(
        !harness.pids().iter().any(|(n, _)| n == "cluster-1"),
        "{:?}",
        harness.pids()
    );
    assert!(api.get_opt("kept").await.is_err(), "a stopped kube-apiserver answered");
    assert!(
        harness.stop_apiserver(0).is_err(),
        "stopping a stopped cluster is an error"
    );

    harness.start_apiserver(0)?;
    let after = harness.pids();
    let (_, new) = after.iter().find(|(n, _)| n == "cluster-1").unwrap();
    assert_ne!(old, new);
    assert!(alive(*new));
    // The same client (same port, certificates, CA) reaches it; its objects are still in etcd.
    let kept = api.get("kept").await?;
    assert_eq!(kept.data.unwrap()["k"], "v");
    assert!(
        harness.start_apiserver(0).is_err(),
        "starting a running cluster is an error"
    );
    // The log holds both runs.
    let log = std::fs::read_to_string(harness.logs_dir().join("cluster-1.log"))?;
    assert_eq!(log.matches("Serving securely on").count(), 2, "{log}");
    Ok(())
}

#[tokio::test]
async fn the_shared_harness_refuses_to_stop_a_cluster() -> Result<()> {
    let Some(harness) = cluster::shared(2)? else {
        return Ok(());
    };
    let err = harness.stop_apiserver(1).unwrap_err();
    assert!(format!("{err:#}").contains("shared"), "{err:#}");
    Api::<Namespace>::all(harness.client(1)?).get("default").await?;
    Ok(())
}

/// Set in the child process of `a_restarted_apiserver_dies_with_a_killed_test_binary`.
const RESTART_CHILD_ENV: &str = "FLOTILLA_HARNESS_RESTART_CHILD";

/// The child's part: start a harness, stop and restart its kube-apiserver, print the PIDs, then
/// die by `SIGKILL` (no destructor, no exit handler runs).
fn child_restarts_an_apiserver_and_is_killed() {
    let harness = Harness::start(1).unwrap();
    harness.stop_apiserver(0).unwrap();
    harness.start_apiserver(0).unwrap();
    for (name, pid) in harness.pids() {
        println!("pid {name} {pid}");
    }
    println!("dir {}", harness.dir().display());
    let status = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    panic!("still alive after kill -KILL: {status:?}");
}

#[test]
fn a_restarted_apiserver_dies_with_a_killed_test_binary() -> Result<()> {
    if std::env::var_os(RESTART_CHILD_ENV).is_some() {
        child_restarts_an_apiserver_and_is_killed();
    }
    if cluster::skip_requested() {
        return Ok(());
    }
    let out = std::process::Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "a_restarted_apiserver_dies_with_a_killed_test_binary",
            "--nocapture",
        ])
        .env(RESTART_CHILD_ENV, "1")
        .output()
        .context("running the child test")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    use std::os::unix::process::ExitStatusExt;
    ensure!(
        out.status.signal() == Some(9),
        "the child was to die by SIGKILL: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let pids: Vec<(String, u32)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("pid "))
        .map(|l| {
            let (name, pid) = l.trim().split_once(' ').unwrap();
            (name.to_string(), pid.parse().unwrap())
        })
        .collect();
    let names: Vec<&str> = pids.iter().map(|(n, _)| n.as_str()).collect();
    ensure!(names == ["etcd", "cluster-1"], "the child printed {stdout}");
    wait_gone(&pids, Duration::from_secs(10))?;
    let dir = stdout.lines().find_map(|l| l.strip_prefix("dir ")).unwrap().trim();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(dir).join("etcd").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!Path::new(dir).join("etcd").exists());
    std::fs::remove_dir_all(dir)?;
    Ok(())
}
