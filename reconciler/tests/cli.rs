//! End-to-end tests of the `flotilla` binary's offline commands against real files and real Git
//! repositories (made with the `git` CLI in temporary directories).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Repo {
    dir: tempfile::TempDir,
}

impl Repo {
    fn new() -> Repo {
        Repo {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, rel: &str, content: impl AsRef<[u8]>) -> &Self {
        let p = self.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    /// A minimal valid fleet: two clusters, one ConfigMap propagated everywhere.
    fn basic() -> Repo {
        let r = Repo::new();
        r.write("clusters.yaml", CLUSTERS)
            .write("apps/cm.yaml", CONFIGMAP)
            .write("policies/pp.yaml", PP);
        r
    }

    fn git(&self, args: &[&str]) {
        let out = Command::new("git")
            .args(args)
            .current_dir(self.path())
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .output()
            .expect("git is installed");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn commit(&self, msg: &str) {
        if !self.path().join(".git").exists() {
            self.git(&["init", "-q", "-b", "main"]);
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", msg]);
    }
}

const CLUSTERS: &str = "apiVersion: flotilla.dev/v1alpha1
kind: Cluster
metadata: {name: member1}
spec: {region: eu}
---
apiVersion: flotilla.dev/v1alpha1
kind: Cluster
metadata: {name: member2}
spec: {region: us}
";

const CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: app
data:
  greeting: hello
";

const PP: &str = "apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata: {name: all}
spec:
  resourceSelectors:
  - {apiVersion: v1, kind: ConfigMap}
  - {apiVersion: v1, kind: Secret}
";

fn flotilla(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .output()
        .unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn validate_json(repo: &Path) -> (i32, Vec<Value>) {
    let o = flotilla(&["validate", "--repo", repo.to_str().unwrap(), "--format", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", stderr(&o)));
    (code(&o), v["diagnostics"].as_array().unwrap().clone())
}

/// Asserts that `validate` exits 1 and reports `code` at `file:line` in both forms.
fn assert_bad(repo: &Repo, file: &str, line: u32, diag_code: &str) {
    let p = repo.path().to_str().unwrap();
    let text = flotilla(&["validate", "--repo", p]);
    assert_eq!(code(&text), 1, "{}", stderr(&text));
    let prefix = format!("{file}:{line}:");
    let err = stderr(&text);
    assert!(
        err.lines()
            .any(|l| l.starts_with(&prefix) && l.contains(&format!("error[{diag_code}]"))),
        "expected `{prefix}...error[{diag_code}]` in:\n{err}"
    );
    let (c, diags) = validate_json(repo.path());
    assert_eq!(c, 1);
    assert!(
        diags
            .iter()
            .any(|d| d["file"] == file && d["line"] == line && d["code"] == diag_code && d["severity"] == "error"),
        "JSON form lacks {file}:{line} {diag_code}: {diags:?}"
    );
    // The good files still render: one bad file does not hide the others.
    let o = flotilla(&["render", "--repo", p, "--format", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["clusters"]["member1"].as_array().map(Vec::len), Some(1), "{v}");
}

#[test]
fn valid_repo_validates_clean() {
    let r = Repo::basic();
    let (c, diags) = validate_json(r.path());
    assert_eq!(c, 0, "{diags:?}");
    assert!(diags.iter().all(|d| d["severity"] != "error"));
}

#[test]
fn yaml_syntax_error() {
    let r = Repo::basic();
    r.write(
        "apps/broken.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\n",
    );
    assert_bad(&r, "apps/broken.yaml", 5, "E002");
}

#[test]
fn wrong_types() {
    let r = Repo::basic();
    r.write(
        "apps/typed.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: 42\n",
    );
    assert_bad(&r, "apps/typed.yaml", 4, "E010");
    let r = Repo::basic();
    r.write(
        "policies/bad.yaml",
        "apiVersion: policy.karmada.io/v1alpha1\nkind: PropagationPolicy\nmetadata: {name: x}\nspec:\n  resourceSelectors: {apiVersion: v1}\n",
    );
    assert_bad(&r, "policies/bad.yaml", 5, "E020");
}

#[test]
fn alias_bomb() {
    let r = Repo::basic();
    let mut s = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\ndata:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n",
    );
    for i in 1..10 {
        let p = i - 1;
        s.push_str(&format!(
            "  a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    r.write("apps/bomb.yaml", s);
    let p = r.path().to_str().unwrap();
    let o = flotilla(&["validate", "--repo", p]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("apps/bomb.yaml:") && stderr(&o).contains("error[E003]"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn symlink_outside_the_repository() {
    let r = Repo::basic();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.yaml"), CONFIGMAP.replace("app", "stolen")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.yaml"), r.path().join("apps/link.yaml")).unwrap();
    assert_bad(&r, "apps/link.yaml", 1, "E001");
    let o = flotilla(&["render", "--repo", r.path().to_str().unwrap()]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("stolen"));
}

#[test]
fn oversized_file() {
    let r = Repo::basic();
    r.write(
        "flotilla.yaml",
        "apiVersion: flotilla.dev/v1alpha1\nkind: RepoConfig\nmetadata: {name: config}\nspec:\n  maxFileSize: 1000\n",
    );
    r.write(
        "apps/big.yaml",
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata:\n  x: \"{}\"\n",
            "a".repeat(5000)
        ),
    );
    assert_bad(&r, "apps/big.yaml", 1, "E001");
}

#[test]
fn non_utf8_bytes() {
    let r = Repo::basic();
    r.write(
        "apps/latin1.yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {k: \"caf\xe9\"}\n",
    );
    assert_bad(&r, "apps/latin1.yaml", 4, "E005");
}

#[test]
fn duplicate_keys() {
    let r = Repo::basic();
    r.write(
        "apps/dup.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: dup\n  name: again\n",
    );
    assert_bad(&r, "apps/dup.yaml", 5, "E004");
}

#[test]
fn empty_documents_are_skipped() {
    let r = Repo::basic();
    r.write("apps/empty.yaml", "---\n# nothing here\n---\n---\n");
    r.write("apps/blank.yaml", "");
    let (c, diags) = validate_json(r.path());
    assert_eq!(c, 0, "{diags:?}");
}

#[test]
fn policy_with_unknown_fields() {
    let r = Repo::basic();
    r.write(
        "policies/spread.yaml",
        "apiVersion: policy.karmada.io/v1alpha1
kind: PropagationPolicy
metadata: {name: spread}
spec:
  resourceSelectors:
  - {apiVersion: apps/v1, kind: Deployment}
  placement:
    spreadConstraints:
    - spreadByField: cluster
      maximum: 3
",
    );
    assert_bad(&r, "policies/spread.yaml", 10, "E021");
    let o = flotilla(&["validate", "--repo", r.path().to_str().unwrap()]);
    assert!(stderr(&o).contains("did you mean `maxGroups`"), "{}", stderr(&o));
}

#[test]
fn duplicate_templates_name_both_places() {
    let r = Repo::basic();
    r.write("apps/zz-again.yaml", CONFIGMAP);
    let o = flotilla(&["validate", "--repo", r.path().to_str().unwrap()]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(
        err.contains("apps/zz-again.yaml:1:1: error[E012]") && err.contains("apps/cm.yaml:1"),
        "{err}"
    );
}

#[test]
fn rev_reads_the_object_database_not_the_worktree() {
    let r = Repo::basic();
    r.commit("first");
    // Change the working tree without committing.
    r.write("apps/cm.yaml", CONFIGMAP.replace("hello", "uncommitted"));
    let p = r.path().to_str().unwrap();
    let at_head = flotilla(&["render", "--repo", p, "--rev", "HEAD", "--format", "json"]);
    assert_eq!(code(&at_head), 0, "{}", stderr(&at_head));
    let v: Value = serde_json::from_slice(&at_head.stdout).unwrap();
    assert_eq!(v["clusters"]["member1"][0]["data"]["greeting"], "hello");
    let wt = flotilla(&["render", "--repo", p, "--format", "json"]);
    let v: Value = serde_json::from_slice(&wt.stdout).unwrap();
    assert_eq!(v["clusters"]["member2"][0]["data"]["greeting"], "uncommitted");
}

#[test]
fn rev_of_a_subdirectory_reads_that_subtree() {
    let r = Repo::new();
    r.write("README.md", "outer project\n");
    r.write("fleet/clusters.yaml", CLUSTERS)
        .write("fleet/cm.yaml", CONFIGMAP)
        .write("fleet/pp.yaml", PP);
    r.commit("nested");
    let o = flotilla(&[
        "render",
        "--repo",
        r.path().join("fleet").to_str().unwrap(),
        "--rev",
        "HEAD",
        "--format",
        "json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["clusters"]["member1"][0]["metadata"]["name"], "app");
}

#[test]
fn git_symlink_outside_is_refused() {
    let r = Repo::basic();
    std::os::unix::fs::symlink("../../etc/passwd.yaml", r.path().join("apps/escape.yaml")).unwrap();
    r.commit("escape");
    let o = flotilla(&["validate", "--repo", r.path().to_str().unwrap(), "--rev", "HEAD"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("apps/escape.yaml:1: error[E001]"), "{}", stderr(&o));
}

#[test]
fn rendering_the_same_commit_twice_is_byte_identical() {
    let r = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples-repo");
    let p = r.to_str().unwrap();
    let a = flotilla(&["render", "--repo", p, "--format", "json"]);
    let b = flotilla(&["render", "--repo", p, "--format", "json"]);
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    assert!(!a.stdout.is_empty());
    assert_eq!(a.stdout, b.stdout);
    let ya = flotilla(&["render", "--repo", p]);
    let yb = flotilla(&["render", "--repo", p]);
    assert_eq!(ya.stdout, yb.stdout);
    // And from a commit: same bytes as from the working tree it was made of.
    let g = Repo::new();
    copy_dir(&r, g.path());
    g.commit("examples");
    let c = flotilla(&[
        "render",
        "--repo",
        g.path().to_str().unwrap(),
        "--rev",
        "HEAD",
        "--format",
        "json",
    ]);
    assert_eq!(a.stdout, c.stdout);
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            std::fs::create_dir_all(&dst).unwrap();
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

#[test]
fn render_json_contract() {
    let r = Repo::basic();
    let o = flotilla(&["render", "--repo", r.path().to_str().unwrap(), "--format", "json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let obj = v.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["clusters", "diagnostics"]);
    assert_eq!(
        v["clusters"].as_object().unwrap().len(),
        2,
        "every inventory cluster appears"
    );
    assert_eq!(
        v["clusters"]["member1"][0]["metadata"]["namespace"], "default",
        "effective namespace is written"
    );
}

#[test]
fn render_out_writes_one_file_per_object() {
    let r = Repo::basic();
    let out = tempfile::tempdir().unwrap();
    let o = flotilla(&[
        "render",
        "--repo",
        r.path().to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let f = out.path().join("member2/0000-configmap-default-app.yaml");
    assert!(std::fs::read_to_string(f).unwrap().contains("greeting: hello"));
}

#[test]
fn unknown_cluster_is_a_usage_error() {
    let r = Repo::basic();
    let o = flotilla(&["render", "--repo", r.path().to_str().unwrap(), "--cluster", "nope"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("unknown cluster `nope`"));
}

#[test]
fn diff_between_commits_and_worktree() {
    let r = Repo::basic();
    r.commit("first");
    let p = r.path().to_str().unwrap();
    let same = flotilla(&["diff", "--repo", p]);
    assert_eq!(code(&same), 0, "{}", stderr(&same));
    r.write("apps/cm.yaml", CONFIGMAP.replace("hello", "bonjour"));
    r.write(
        "apps/secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\ndata: {password: c2VjcmV0}\n",
    );
    let o = flotilla(&["diff", "--repo", p]);
    assert_eq!(code(&o), 1);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("-  greeting: hello") && text.contains("+  greeting: bonjour"),
        "{text}"
    );
    assert!(text.contains("member1: +1 created ~1 changed -0 deleted"), "{text}");
    assert!(!text.contains("c2VjcmV0"), "secret values are never printed: {text}");
    assert!(
        text.contains("password: '<redacted: new value>'") || text.contains("password: <redacted: new value>"),
        "{text}"
    );
    r.commit("second");
    let o = flotilla(&[
        "diff", "--repo", p, "--from", "HEAD~1", "--to", "HEAD", "--format", "json",
    ]);
    assert_eq!(code(&o), 1);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["clusters"][0]["changed"], 1);
}

#[test]
fn explain_names_policy_clusters_and_overrides() {
    let r = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples-repo");
    let o = flotilla(&[
        "explain",
        "Deployment/nginx",
        "-n",
        "web",
        "--repo",
        r.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["policies"].as_array().unwrap().iter().any(|p| p["chosen"] == true));
    assert_eq!(v["clusters"].as_array().unwrap().len(), 3);
}

/// `flotilla reconcile` as a process: clusters that cannot be reached are reported per cluster (in
/// JSON logs) and retried while the daemon keeps running; SIGTERM stops it cleanly (exit 0).
#[test]
fn reconcile_reports_unreachable_clusters_and_stops_on_sigterm() {
    use std::io::BufRead;
    let r = Repo::basic();
    r.commit("one");
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = r.path().join("kubeconfig");
    let contexts: String = ["member1", "member2"]
        .iter()
        .map(|c| format!("- name: {c}\n  context: {{cluster: {c}, user: u}}\n"))
        .collect();
    let clusters: String = ["member1", "member2"]
        .iter()
        .map(|c| {
            format!("- name: {c}\n  cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}\n")
        })
        .collect();
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters:\n{clusters}contexts:\n{contexts}users:\n- name: u\n  user: {{token: t}}\ncurrent-context: member1\n"),
    )
    .unwrap();
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["--log-format", "json", "reconcile", "--source"])
        .arg(r.path())
        .args(["--interval", "100ms", "--listen", &listen.to_string(), "--kubeconfig"])
        .arg(&kubeconfig)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut failed = std::collections::BTreeSet::new();
    let mut seen = Vec::new();
    let mut lines = stderr.lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        if v["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("sync failed"))
        {
            assert!(
                v["fields"]["message"].as_str().unwrap().contains("unreachable"),
                "{line}"
            );
            failed.insert(v["fields"]["cluster"].as_str().unwrap().to_string());
            // Retried: the second failure of a cluster shows the backoff grew.
            if failed.len() == 2 && v["fields"]["retry_millis"].as_u64() >= Some(2000) {
                break;
            }
        }
        assert!(seen.len() < 200, "no retries seen:\n{}", seen.join("\n"));
    }
    assert_eq!(failed.into_iter().collect::<Vec<_>>(), ["member1", "member2"]);
    // `flotilla status` shows both clusters failed, with the reason; exit 1 (not in sync).
    let server = format!("http://{listen}");
    let out = flotilla(&["status", "--server", &server]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(code(&out), 1, "{text}");
    for c in ["member1", "member2"] {
        let row = text
            .lines()
            .find(|l| l.starts_with(c))
            .unwrap_or_else(|| panic!("no row for {c}:\n{text}"));
        assert!(row.contains("failed") && row.contains("unreachable"), "{row}");
    }
    let json = flotilla(&["status", "--server", &server, "--format", "json"]);
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["clusters"]["member1"]["state"], "failed");
    assert_eq!(code(&flotilla(&["status", "--server", "http://127.0.0.1:1"])), 2);
    // Keep draining the log (a closed pipe is not what is being tested).
    let rest = std::thread::spawn(move || stderr_rest(lines));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            let rest = rest.join().unwrap();
            assert!(s.success(), "exit status after SIGTERM: {s}; log:\n{rest}");
            assert!(rest.contains("shutting down"), "{rest}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still running 30 s after SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn stderr_rest(lines: std::io::Lines<std::io::BufReader<std::process::ChildStderr>>) -> String {
    lines.map_while(Result::ok).collect::<Vec<_>>().join("\n")
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples-repo")
}

#[test]
fn endpoints_prints_every_clusters_document_deterministically() {
    let p = examples();
    let p = p.to_str().unwrap();
    let a = flotilla(&["endpoints", "--repo", p]);
    assert_eq!(code(&a), 0, "{}", stderr(&a));
    let b = flotilla(&["endpoints", "--repo", p]);
    assert_eq!(a.stdout, b.stdout, "byte-identical");
    let v: Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(
        v.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["clusters", "diagnostics"]
    );
    let clusters = v["clusters"].as_object().unwrap();
    assert_eq!(
        clusters.keys().collect::<Vec<_>>(),
        ["cluster-1", "cluster-2", "cluster-3"]
    );
    for (name, doc) in clusters {
        let doc: ebpf::EndpointMapConfig = serde_json::from_value(doc.clone()).unwrap();
        doc.verify().unwrap();
        assert_eq!(&doc.cluster, name);
        assert_eq!(doc.version, 0, "a working tree has version 0");
        assert_eq!(doc.frontends[0].vip.to_string(), "127.200.207.238");
    }
    // One cluster: exactly its canonical document, the same bytes as inside the combined output.
    let one = flotilla(&["endpoints", "--repo", p, "--cluster", "cluster-2"]);
    assert_eq!(code(&one), 0, "{}", stderr(&one));
    let text = String::from_utf8(one.stdout).unwrap();
    assert!(text.ends_with('\n') && !text.trim_end().contains('\n'));
    let combined = String::from_utf8(a.stdout).unwrap();
    assert!(combined.contains(&format!("\"cluster-2\":{}", text.trim_end())));
    let yaml = flotilla(&["endpoints", "--repo", p, "--format", "yaml"]);
    let y = String::from_utf8_lossy(&yaml.stdout);
    assert_eq!(y.matches("kind: EndpointMapConfig").count(), 3, "{y}");
    // The guide shows this very document.
    let guide =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/guides/routing.md")).unwrap();
    let shown = guide
        .split_once("cluster-2 of the example repository, offline:\n\n```json\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(json, _)| json)
        .expect("the guide's example document");
    let shown: Value = serde_json::from_str(shown).unwrap();
    assert_eq!(
        shown,
        serde_json::from_str::<Value>(&text).unwrap(),
        "docs/guides/routing.md is out of date"
    );
}

#[test]
fn endpoints_of_a_commit_carry_its_revision_and_time() {
    let r = Repo::new();
    copy_dir(&examples(), r.path());
    r.commit("fleet");
    let head = Command::new("git")
        .args(["log", "-1", "--format=%H %ct"])
        .current_dir(r.path())
        .output()
        .unwrap();
    let out = String::from_utf8(head.stdout).unwrap();
    let (sha, time) = out.trim().split_once(' ').unwrap();
    let o = flotilla(&[
        "endpoints",
        "--repo",
        r.path().to_str().unwrap(),
        "--rev",
        "HEAD",
        "--cluster",
        "cluster-1",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let doc: ebpf::EndpointMapConfig = serde_json::from_slice(&o.stdout).unwrap();
    doc.verify().unwrap();
    assert_eq!(doc.version.to_string(), time);
    assert_eq!(doc.source.git_revision.as_deref(), Some(sha));
}

#[test]
fn endpoints_usage_errors_and_findings() {
    let p = examples();
    let p = p.to_str().unwrap();
    // --live reads the default kubeconfig ($KUBECONFIG): none there is a usage failure, not a fallback to
    // offline documents. --kubeconfig alone is refused. (Live reads: tests/endpoints_live.rs.)
    let live = Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(["endpoints", "--repo", p, "--live"])
        .env("KUBECONFIG", "/nonexistent/flotilla-kubeconfig")
        .output()
        .unwrap();
    assert_eq!(code(&live), 2);
    assert!(stderr(&live).contains("kubeconfig"), "{}", stderr(&live));
    let alone = flotilla(&["endpoints", "--repo", p, "--kubeconfig", "/nonexistent"]);
    assert_eq!(code(&alone), 2);
    assert!(stderr(&alone).contains("--live"), "{}", stderr(&alone));
    let unknown = flotilla(&["endpoints", "--repo", p, "--cluster", "nope"]);
    assert_eq!(code(&unknown), 2);
    assert!(stderr(&unknown).contains("unknown cluster `nope`"));
    // A GlobalTrafficPolicy naming an unknown cluster: exit 1, the finding at its line, the
    // documents still printed; validate and render report it too.
    let r = Repo::basic();
    r.write(
        "svc.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: api}\nspec: {ports: [{port: 80}]}\n---\n\
         apiVersion: multicluster.x-k8s.io/v1alpha1\nkind: ServiceExport\nmetadata: {name: api}\n---\n\
         apiVersion: policy.karmada.io/v1alpha1\nkind: PropagationPolicy\nmetadata: {name: api}\nspec:\n  \
         resourceSelectors:\n  - {apiVersion: v1, kind: Service}\n  - {apiVersion: multicluster.x-k8s.io/v1alpha1, kind: ServiceExport}\n",
    );
    r.write(
        "gtp.yaml",
        "apiVersion: flotilla.dev/v1alpha1\nkind: GlobalTrafficPolicy\nmetadata: {name: api}\nspec:\n  mode: FailOver\n  targets:\n  - cluster: member9\n",
    );
    let rp = r.path().to_str().unwrap();
    let o = flotilla(&["endpoints", "--repo", rp, "--format", "json"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["clusters"].as_object().unwrap().len(), 2);
    let d = &v["diagnostics"].as_array().unwrap()[0];
    assert_eq!(
        (d["code"].as_str(), d["file"].as_str(), d["line"].as_u64()),
        (Some("E065"), Some("gtp.yaml"), Some(7))
    );
    let text = flotilla(&["validate", "--repo", rp]);
    assert_eq!(code(&text), 1);
    assert!(stderr(&text).contains("gtp.yaml:7:5: error[E065]"), "{}", stderr(&text));
}

#[test]
fn render_and_diff_include_the_generated_eastwest_services() {
    let p = examples();
    let o = flotilla(&["render", "--repo", p.to_str().unwrap(), "--format", "json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let names = |c: &str| -> Vec<String> {
        v["clusters"][c]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    for c in ["cluster-1", "cluster-3"] {
        let n = names(c);
        let at = n
            .iter()
            .position(|x| x == "Service/orders-api-eastwest")
            .expect("generated Service");
        assert_eq!(
            n[at - 1],
            "Service/orders-api",
            "apply order: orders-api < orders-api-eastwest < nginx"
        );
        assert_eq!(n[at + 1], "Service/nginx");
    }
    assert!(!names("cluster-2").iter().any(|x| x.contains("eastwest")));
    // --cluster filters the output, not the routing: the generated Service is still there.
    let one = flotilla(&["render", "--repo", p.to_str().unwrap(), "--cluster", "cluster-3"]);
    assert!(String::from_utf8_lossy(&one.stdout).contains("name: orders-api-eastwest"));
    // A repository change that moves the gateway port shows up in the offline diff.
    let r = Repo::new();
    copy_dir(&p, r.path());
    r.commit("fleet");
    let c3 = r.path().join("clusters/cluster-3.yaml");
    let text = std::fs::read_to_string(&c3)
        .unwrap()
        .replace("portRange: 31000-31999", "portRange: 40000-40000");
    std::fs::write(&c3, text).unwrap();
    let d = flotilla(&["diff", "--repo", r.path().to_str().unwrap(), "--cluster", "cluster-3"]);
    assert_eq!(code(&d), 1, "{}", stderr(&d));
    let out = String::from_utf8_lossy(&d.stdout);
    assert!(
        out.contains("-    port: 31912") && out.contains("+    port: 40000"),
        "{out}"
    );
}
