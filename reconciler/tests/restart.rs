//! The `flotilla reconcile` process killed in the middle of a rollout, then started again, on three real
//! kube-apiservers (the shared harness of `flotilla-tests`): SIGKILL at random points (before, during and
//! after the applies of a commit) and SIGTERM during one. Each time the restarted daemon converges on the
//! branch head with nothing lost (every desired object there, with its desired content), nothing left
//! behind (no object the commit removed) and nothing duplicated, and SIGTERM exits 0 within the stop grace.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use flotilla_tests::cluster::{self, Harness};
use flotilla_tests::git;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CLUSTERS: [&str; 3] = ["cluster-1", "cluster-2", "cluster-3"];
/// ConfigMaps per cluster and commit: enough for a rollout to take a while.
const OBJECTS: usize = 240;

fn harness() -> Option<&'static Harness> {
    cluster::shared(3).unwrap()
}

/// Commit `version` of the repository: `OBJECTS` ConfigMaps on every cluster, named so that each version
/// drops 20 of the previous version's names and adds 20 new ones, every value naming the version.
fn commit(dir: &Path, ns: &str, version: usize) -> (String, BTreeMap<String, String>) {
    let mut files = vec![
        (
            "clusters.yaml".to_string(),
            CLUSTERS
                .iter()
                .map(|c| format!("apiVersion: flotilla.dev/v1alpha1\nkind: Cluster\nmetadata: {{name: {c}}}\n"))
                .collect::<Vec<_>>()
                .join("---\n"),
        ),
        (
            "policies.yaml".to_string(),
            format!(
                "apiVersion: policy.karmada.io/v1alpha1
kind: ClusterPropagationPolicy
metadata: {{name: {ns}}}
spec:
  resourceSelectors: [{{apiVersion: v1, kind: Namespace, name: {ns}}}]
  placement: {{clusterAffinity: {{clusterNames: [cluster-1, cluster-2, cluster-3]}}}}
---
apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata: {{name: all, namespace: {ns}}}
spec:
  resourceSelectors: [{{apiVersion: v1, kind: ConfigMap}}]
  placement: {{clusterAffinity: {{clusterNames: [cluster-1, cluster-2, cluster-3]}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: {ns}}}
"
            ),
        ),
    ];
    let mut want = BTreeMap::new();
    let mut cms = String::new();
    for i in (version * 20)..(version * 20 + OBJECTS) {
        let name = format!("cm-{i:04}");
        let value = format!("v{version}-{i}");
        cms.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {ns}}}\ndata: {{k: {value}}}\n"
        ));
        want.insert(name, value);
    }
    files.push(("configmaps.yaml".to_string(), cms));
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", &format!("version {version}")]);
    (git(dir, &["rev-parse", "HEAD"]), want)
}

struct Daemon {
    child: Child,
    server: String,
}

impl Daemon {
    fn start(h: &Harness, repo: &Path, applyset: &str) -> Daemon {
        let listen = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["--log-format", "json", "reconcile", "--source"])
            .arg(repo)
            .args(["--branch", "main", "--interval", "200ms", "--applyset", applyset])
            .args(["--listen", &listen.to_string(), "--kubeconfig"])
            .arg(h.kubeconfig())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Daemon {
            child,
            server: format!("http://{listen}"),
        }
    }

    /// The daemon's `/status` (via `flotilla status`), once it answers.
    fn status(&self) -> Option<Value> {
        let out = Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(["status", "--server", &self.server, "--format", "json"])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Waits until every cluster holds `commit` with every object applied.
    fn wait_synced(&self, commit: &str, why: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(s) = self.status() {
                let ok = CLUSTERS
                    .iter()
                    .all(|c| s["clusters"][c]["commit"] == commit && s["clusters"][c]["state"] == "synced");
                if ok {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{why}: not synced on {commit} within 120 s: {s:#}"
                );
            } else {
                assert!(Instant::now() < deadline, "{why}: the daemon never answered");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM; returns once it exited (panics unless it exits 0 within 20 s: 10 s stop grace + margin).
    fn terminate(mut self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                assert!(s.success(), "exit status after SIGTERM: {s}");
                return;
            }
            assert!(Instant::now() < deadline, "still running 20 s after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Every cluster holds exactly `want` in `ns`: each name with its value, nothing else.
async fn holds_exactly(h: &Harness, ns: &str, want: &BTreeMap<String, String>, why: &str) {
    for (i, c) in CLUSTERS.iter().enumerate() {
        let api: Api<ConfigMap> = Api::namespaced(h.client(i).unwrap(), ns);
        let got: BTreeMap<String, String> = api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|cm| cm.metadata.name.as_deref() != Some("kube-root-ca.crt"))
            .map(|cm| {
                let value = cm.data.and_then(|d| d.get("k").cloned()).unwrap_or_default();
                (cm.metadata.name.unwrap_or_default(), value)
            })
            .collect();
        let missing: Vec<&String> = want.keys().filter(|k| !got.contains_key(*k)).collect();
        let extra: Vec<&String> = got.keys().filter(|k| !want.contains_key(*k)).collect();
        let wrong: Vec<(&String, &String)> = want
            .iter()
            .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
            .collect();
        assert!(
            missing.is_empty() && extra.is_empty() && wrong.is_empty(),
            "{why}: {c}: missing {missing:?}, left behind {extra:?}, stale {:?}",
            &wrong[..wrong.len().min(5)]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_killed_mid_rollout_converges_after_a_restart() {
    let Some(h) = harness() else { return };
    let repo = tempfile::tempdir().unwrap();
    git(repo.path(), &["init", "-q", "-b", "main"]);
    let ns = cluster::unique_name("restart");
    let applyset = cluster::unique_name("restart");
    let (first, want) = commit(repo.path(), &ns, 0);
    let d = Daemon::start(h, repo.path(), &applyset);
    d.wait_synced(&first, "first start");
    holds_exactly(h, &ns, &want, "first start").await;

    // A seeded choice of kill points, reported with any failure.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut d = d;
    for version in 1..=3 {
        let (head, want) = commit(repo.path(), &ns, version);
        // 0 to 2.5 s after the commit: before the daemon saw it, during the applies or the prunes, or
        // after it finished.
        let after = Duration::from_millis(next() % 2500);
        std::thread::sleep(after);
        d.kill();
        let why = format!("SIGKILL {after:?} after commit {version} (seed {seed})");
        d = Daemon::start(h, repo.path(), &applyset);
        d.wait_synced(&head, &why);
        holds_exactly(h, &ns, &want, &why).await;
    }

    // SIGTERM during a rollout: a clean exit within the stop grace, then the same convergence.
    let (head, want) = commit(repo.path(), &ns, 4);
    std::thread::sleep(Duration::from_millis(400));
    d.terminate();
    let d = Daemon::start(h, repo.path(), &applyset);
    d.wait_synced(&head, "after SIGTERM");
    holds_exactly(h, &ns, &want, "after SIGTERM").await;
    d.kill();
}
