//! The daemon's Git transports against real Git servers on loopback (`flotilla_tests::gitserver`):
//! `git http-backend` behind HTTPS with a token, `sshd` with a key and known_hosts, `git daemon`.
//!
//! The first tests check a source alone (`reconciler::daemon::source`): what is accepted, and that
//! every refusal says why without showing a credential. The last ones run the whole daemon on three
//! real kube-apiservers (the shared harness): a push to the server and a signed webhook land on every
//! cluster, a forged webhook changes nothing, a broken commit is refused and visible in `/status`, a
//! force-push rolls back, and a refused token or a changed host key is a source error in `/status`
//! while the clusters keep the last good commit.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

mod util;

use flotilla_tests::cluster::{self, unique_name};
use flotilla_tests::gitserver::{bare_repo, daemon::GitDaemon, https::HttpsServer, ssh, ssh::Sshd};
use flotilla_tests::{git, git_env};
use reconciler::daemon::source::{GitAuth, Source, Token};
use reconciler::daemon::webhook::github_signature;
use reconciler::daemon::{DriftMode, Event};
use std::path::{Path, PathBuf};
use std::time::Duration;
use util::{commit_repo, new_repo, request, setting, start_with, ALL};

const TOKEN: &str = "t0ken-for-tests";
const USER: &str = "x-access-token";

/// `git` with extra leading arguments (`-c` options of a server).
fn git_with(dir: &Path, config: &[String], args: &[&str]) -> String {
    let mut all: Vec<&str> = config.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    git(dir, &all)
}

/// `git` talking to `server` (its CA and credentials).
fn git_https(dir: &Path, server: &HttpsServer, args: &[&str]) -> String {
    let config = server.git_config();
    let mut all: Vec<&str> = config.iter().map(String::as_str).collect();
    all.extend_from_slice(args);
    let env = server.git_env();
    let env: Vec<(&str, &std::ffi::OsStr)> = env.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
    git_env(dir, &all, &env)
}

/// A work repository with one commit of a file `f` holding `text`.
fn work_repo(text: &str) -> (tempfile::TempDir, String) {
    let work = new_repo();
    let commit = commit_file(work.path(), text);
    (work, commit)
}

fn commit_file(dir: &Path, text: &str) -> String {
    std::fs::write(dir.join("f"), text).unwrap();
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", text]);
    git(dir, &["rev-parse", "HEAD"])
}

fn head(url: &str, cache: &Path, auth: &GitAuth) -> anyhow::Result<String> {
    Source::parse(url, Some("main".into()), Some(cache.to_path_buf()), auth)?.head()
}

fn error_of(r: anyhow::Result<String>) -> String {
    format!("{:#}", r.expect_err("the fetch should have failed"))
}

#[test]
fn https_wants_the_token_and_trusts_only_the_given_ca() {
    let root = tempfile::tempdir().unwrap();
    bare_repo(root.path(), "fleet.git").unwrap();
    let server = HttpsServer::start(root.path(), USER, TOKEN).unwrap();
    let url = server.url("fleet.git");
    let (work, first) = work_repo("one");
    git_https(work.path(), &server, &["push", "-q", &url, "main"]);
    let second = commit_file(work.path(), "two");
    git_https(work.path(), &server, &["push", "-q", &url, "main"]);

    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let cache = tmp.path().join("cache");
    let auth = GitAuth {
        token: Some(Token::File(token_file.clone())),
        ca_file: Some(server.ca_file()),
        ..GitAuth::default()
    };
    assert_eq!(head(&url, &cache, &auth).unwrap(), second, "{:#?}", server.log());
    // The token went as basic auth after the server's challenge (libgit2 never sends it unasked).
    assert!(server.challenged() > 0 && server.served() > 0);

    // A force-push to the older commit is followed.
    git_https(
        work.path(),
        &server,
        &["push", "-q", "-f", &url, &format!("{first}:refs/heads/main")],
    );
    assert_eq!(head(&url, &cache, &auth).unwrap(), first);

    // A wrong token: the server saw it and said 401; the error says which token, not what it is.
    std::fs::write(&token_file, "n0t-the-t0ken").unwrap();
    let e = error_of(head(&url, &cache, &auth));
    assert!(
        e.contains(&format!(
            "the server refused the token in {} for user `{USER}` (HTTP 401)",
            token_file.display()
        )),
        "{e}"
    );
    assert!(!e.contains("n0t-the-t0ken") && !e.contains(TOKEN), "{e}");
    assert!(server.rejected() > 0, "the server never saw the wrong token");

    // No token at all.
    let no_token = GitAuth {
        ca_file: Some(server.ca_file()),
        ..GitAuth::default()
    };
    let e = error_of(head(&url, &cache, &no_token));
    assert!(
        e.contains("the server asks for credentials: give a token with --git-token-file"),
        "{e}"
    );

    // Without --git-ca-file the system's CAs decide (and do not know the test CA); a CA that did
    // not sign the server's certificate is no better.
    std::fs::write(&token_file, TOKEN).unwrap();
    let system = GitAuth {
        token: Some(Token::File(token_file.clone())),
        ..GitAuth::default()
    };
    let e = error_of(head(&url, &cache, &system));
    assert!(
        e.contains("the TLS certificate is not signed by a CA this system trusts") && e.contains("--git-ca-file"),
        "{e}"
    );
    let other_ca = tmp.path().join("other-ca.pem");
    std::fs::write(&other_ca, cluster::pki::Pki::generate().unwrap().ca_pem()).unwrap();
    let wrong_ca = GitAuth {
        ca_file: Some(other_ca.clone()),
        ..system.clone()
    };
    let e = error_of(head(&url, &cache, &wrong_ca));
    assert!(
        e.contains("the TLS certificate of 127.0.0.1 is not trusted: it is not signed by a CA of the file"),
        "{e}"
    );
    assert!(e.contains(&other_ca.display().to_string()), "{e}");
    // And with the right CA and token again, it works again.
    assert_eq!(head(&url, &cache, &auth).unwrap(), first);
}

#[test]
fn ssh_wants_the_key_and_a_known_host_key() {
    let Some(sshd) = Sshd::start().unwrap() else { return };
    let root = tempfile::tempdir().unwrap();
    let bare = bare_repo(root.path(), "fleet.git").unwrap();
    let url = sshd.url(&bare);
    let (work, first) = work_repo("one");
    let ssh_cli = vec![
        "-c".to_string(),
        format!("core.sshCommand={}", sshd.ssh_command().unwrap()),
    ];
    git_with(work.path(), &ssh_cli, &["push", "-q", &url, "main"]);

    let tmp = tempfile::tempdir().unwrap();
    let known_hosts = tmp.path().join("known_hosts");
    sshd.write_known_hosts(&known_hosts).unwrap();
    let cache = tmp.path().join("cache");
    let auth = GitAuth {
        ssh_key: Some(sshd.client_key()),
        known_hosts: Some(known_hosts.clone()),
        ..GitAuth::default()
    };
    let got = head(&url, &cache, &auth);
    assert_eq!(
        got.as_deref().ok(),
        Some(first.as_str()),
        "{got:?}; sshd log:\n{}",
        std::fs::read_to_string(sshd.log()).unwrap_or_default()
    );

    // Hashed names (`ssh-keygen -H`, what HashKnownHosts writes) work the same.
    let out = std::process::Command::new("ssh-keygen")
        .args(["-H", "-f"])
        .arg(&known_hosts)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hashed = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(hashed.starts_with("|1|") && !hashed.contains("127.0.0.1"), "{hashed}");
    let second = commit_file(work.path(), "two");
    git_with(work.path(), &ssh_cli, &["push", "-q", &url, "main"]);
    assert_eq!(head(&url, &cache, &auth).unwrap(), second);

    // An unknown host: refused before logging in, with the fingerprint and how to add the key.
    std::fs::write(&known_hosts, "# nothing here\n").unwrap();
    let e = error_of(head(&url, &cache, &auth));
    let port = sshd.port();
    assert!(
        e.contains(&format!(
            "unknown ssh host: [127.0.0.1]:{port} is not in {} (it offers ssh-ed25519 SHA256:",
            known_hosts.display()
        )),
        "{e}"
    );
    assert!(
        e.contains(&format!("ssh-keyscan -p {port} -t ssh-ed25519 127.0.0.1")),
        "{e}"
    );

    // Another key listed for the host: a mismatch, named as one.
    let impostor = tmp.path().join("impostor");
    ssh::keygen(&impostor).unwrap();
    let public = std::fs::read_to_string(impostor.with_extension("pub")).unwrap();
    let key = public.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {key}\n")).unwrap();
    let e = error_of(head(&url, &cache, &auth));
    assert!(
        e.contains(&format!(
            "ssh host key mismatch: [127.0.0.1]:{port} offers ssh-ed25519 SHA256:"
        )) && e.contains("(it has ssh-ed25519 on line 1)"),
        "{e}"
    );

    // The right host key but a key sshd does not know.
    sshd.write_known_hosts(&known_hosts).unwrap();
    let stranger = GitAuth {
        ssh_key: Some(impostor.clone()),
        ..auth.clone()
    };
    let e = error_of(head(&url, &cache, &stranger));
    assert!(
        e.contains(&format!("the ssh server refused the key {}", impostor.display())),
        "{e}"
    );
    assert_eq!(head(&url, &cache, &auth).unwrap(), second);
}

#[test]
fn git_daemon_urls_follow_pushes_and_force_pushes() {
    let root = tempfile::tempdir().unwrap();
    bare_repo(root.path(), "fleet.git").unwrap();
    let daemon = GitDaemon::start(root.path()).unwrap();
    let url = daemon.url("fleet.git");
    let (work, first) = work_repo("one");
    git(work.path(), &["push", "-q", &url, "main"]);
    let cache = tempfile::tempdir().unwrap();
    let cache = cache.path().join("cache");
    assert_eq!(head(&url, &cache, &GitAuth::default()).unwrap(), first);
    let second = commit_file(work.path(), "two");
    git(work.path(), &["push", "-q", &url, "main"]);
    assert_eq!(head(&url, &cache, &GitAuth::default()).unwrap(), second);
    git(
        work.path(),
        &["push", "-q", "-f", &url, &format!("{first}:refs/heads/main")],
    );
    assert_eq!(head(&url, &cache, &GitAuth::default()).unwrap(), first);
    git(work.path(), &["push", "-q", &url, ":main"]);
    let e = error_of(head(&url, &cache, &GitAuth::default()));
    assert!(e.contains("branch `main` does not exist on git://127.0.0.1:"), "{e}");
}

#[test]
fn a_server_that_stops_answering_is_abandoned_not_waited_for() {
    // Accepts connections and never says a word: a frozen server (libgit2 alone would wait forever).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    let url = format!("git://127.0.0.1:{port}/fleet.git");
    let cache = tempfile::tempdir().unwrap();
    let mut src = Source::parse(
        &url,
        Some("main".into()),
        Some(cache.path().join("c")),
        &GitAuth::default(),
    )
    .unwrap();
    let Source::Remote(remote) = &mut src else {
        panic!("{src:?}")
    };
    remote.stall_timeout = Duration::from_millis(300);
    let e = error_of(src.head());
    assert!(e.starts_with(&format!("no answer from {url} for ")), "{e}");
    assert!(e.contains("the fetch is abandoned"), "{e}");
    // The abandoned fetch still hangs on its connection: the next one does not pile up behind it.
    let e = error_of(src.head());
    assert!(
        e.contains(&format!(
            "the previous fetch from {url} is still waiting for the server"
        )),
        "{e}"
    );
}

/// `GET /status` of a daemon, as JSON.
async fn status_json(addr: std::net::SocketAddr) -> serde_json::Value {
    let (code, body) = tokio::task::spawn_blocking(move || request(addr, "GET", "/status", &[], b""))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// POSTs a GitHub push notification signed with `secret`; returns the status code.
async fn webhook(addr: std::net::SocketAddr, secret: &'static [u8]) -> u16 {
    tokio::task::spawn_blocking(move || {
        let payload = br#"{"ref":"refs/heads/main"}"#;
        let sig = github_signature(secret, payload);
        request(
            addr,
            "POST",
            "/hooks/git",
            &[("X-Hub-Signature-256", sig.as_str())],
            payload,
        )
        .0
    })
    .await
    .unwrap()
}

fn assert_clusters_on(status: &serde_json::Value, commit: &str) {
    for c in ["cluster-1", "cluster-2", "cluster-3"] {
        assert_eq!(status["clusters"][c]["commit"], commit, "{c}: {status:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_over_https_land_on_every_cluster_when_a_signed_webhook_says_so() {
    let Some(h) = cluster::shared(3).unwrap() else { return };
    let ns = unique_name("https");
    let root = tempfile::tempdir().unwrap();
    bare_repo(root.path(), "fleet.git").unwrap();
    let server = HttpsServer::start(root.path(), USER, TOKEN).unwrap();
    let url = server.url("fleet.git");
    let push = |dir: &Path, args: &[&str]| {
        let mut all = vec!["push", "-q"];
        all.extend_from_slice(args);
        git_https(dir, &server, &all)
    };
    let work = new_repo();
    let first = commit_repo(work.path(), &ns, "one", "nginx:1.27");
    push(work.path(), &[&url, "main"]);

    let tmp = tempfile::tempdir().unwrap();
    let token_file = tmp.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let secret_file = tmp.path().join("webhook-secret");
    std::fs::write(&secret_file, "s3cret").unwrap();
    let (source, ca, token, cache): (String, PathBuf, PathBuf, PathBuf) = (
        url.clone(),
        server.ca_file(),
        token_file.clone(),
        tmp.path().join("cache"),
    );
    // Polling once an hour: only a webhook makes the daemon fetch.
    let mut d = start_with(h, Path::new(&url), DriftMode::Heal, move |o| {
        o.source = source;
        o.cache_dir = Some(cache);
        o.git = GitAuth {
            token: Some(Token::File(token)),
            ca_file: Some(ca),
            ..GitAuth::default()
        };
        o.interval = Duration::from_secs(3600);
        o.listen = Some("127.0.0.1:0".parse().unwrap());
        o.webhook_secret = Some(secret_file);
    });
    d.synced(&first, ALL).await;
    let addr = d.daemon.http_addr().expect("the daemon listens");

    // A push, then a forged webhook: 401, and nothing is fetched or changed.
    let second = commit_repo(work.path(), &ns, "two", "nginx:1.27");
    push(work.path(), &[&url, "main"]);
    assert_eq!(webhook(addr, b"guessed").await, 401);
    let status = status_json(addr).await;
    assert_eq!(status["head"], first.as_str(), "a forged webhook made the daemon fetch");
    assert_clusters_on(&status, &first);
    for i in 0..3 {
        assert_eq!(setting(h, i, &ns).await.as_deref(), Some("one"));
    }

    // The signed webhook: the pushed commit lands on every cluster.
    assert_eq!(webhook(addr, b"s3cret").await, 202);
    d.synced(&second, ALL).await;
    for i in 0..3 {
        assert_eq!(setting(h, i, &ns).await.as_deref(), Some("two"));
    }

    // A broken commit is refused, and /status says so with the diagnostics.
    std::fs::write(work.path().join("app.yaml"), "data: [unclosed\n").unwrap();
    git(work.path(), &["commit", "-q", "-am", "broken"]);
    let broken = git(work.path(), &["rev-parse", "HEAD"]);
    push(work.path(), &[&url, "main"]);
    assert_eq!(webhook(addr, b"s3cret").await, 202);
    d.wait(
        "the refusal",
        |e| matches!(e, Event::Refused { commit, .. } if *commit == broken),
    )
    .await;
    let status = status_json(addr).await;
    assert_eq!(status["refused"]["commit"], broken.as_str(), "{status:#}");
    let diagnostics = status["refused"]["diagnostics"].as_array().unwrap();
    assert!(
        diagnostics.iter().any(|d| d.as_str().unwrap().starts_with("app.yaml:")),
        "{status:#}"
    );
    assert_clusters_on(&status, &second);

    // The next good commit lands and clears the refusal.
    let third = commit_repo(work.path(), &ns, "three", "nginx:1.27");
    push(work.path(), &[&url, "main"]);
    assert_eq!(webhook(addr, b"s3cret").await, 202);
    d.synced(&third, ALL).await;
    let status = status_json(addr).await;
    assert!(
        status.get("refused").is_none_or(serde_json::Value::is_null),
        "{status:#}"
    );
    for i in 0..3 {
        assert_eq!(setting(h, i, &ns).await.as_deref(), Some("three"));
    }

    // A force-push to the first commit rolls every cluster back.
    push(work.path(), &["-f", &url, &format!("{first}:refs/heads/main")]);
    assert_eq!(webhook(addr, b"s3cret").await, 202);
    d.synced(&first, ALL).await;
    for i in 0..3 {
        assert_eq!(setting(h, i, &ns).await.as_deref(), Some("one"));
    }

    // The token is revoked (the file now holds another): a source error in /status that names the
    // token's file, never its value; the clusters keep the last good commit.
    std::fs::write(&token_file, "revoked-t0ken").unwrap();
    let rejected_before = server.rejected();
    git(work.path(), &["reset", "-q", "--hard", &first]);
    let fourth = commit_repo(work.path(), &ns, "four", "nginx:1.27");
    push(work.path(), &["-f", &url, "main"]);
    assert_eq!(webhook(addr, b"s3cret").await, 202);
    d.wait(
        "the source error",
        |e| matches!(e, Event::SourceError { error } if error.contains("refused the token")),
    )
    .await;
    assert!(server.rejected() > rejected_before);
    let status = status_json(addr).await;
    let error = status["sourceError"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "the server refused the token in {} for user `x-access-token` (HTTP 401)",
            token_file.display()
        )),
        "{status:#}"
    );
    let text = status.to_string();
    assert!(!text.contains("revoked-t0ken") && !text.contains(TOKEN), "{text}");
    assert_eq!(status["head"], first.as_str());
    assert_clusters_on(&status, &first);
    for i in 0..3 {
        assert_eq!(setting(h, i, &ns).await.as_deref(), Some("one"));
    }

    // A new token in the file (rotation, no restart) and a webhook: the waiting commit lands.
    std::fs::write(&token_file, TOKEN).unwrap();
    assert_eq!(webhook(addr, b"s3cret").await, 202);
    d.synced(&fourth, ALL).await;
    let status = status_json(addr).await;
    assert!(
        status.get("sourceError").is_none_or(serde_json::Value::is_null),
        "{status:#}"
    );
    for i in 0..3 {
        assert_eq!(setting(h, i, &ns).await.as_deref(), Some("four"));
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssh_source_keeps_the_last_good_commit_when_the_host_key_changes() {
    let Some(h) = cluster::shared(3).unwrap() else { return };
    let Some(sshd) = Sshd::start().unwrap() else { return };
    let ns = unique_name("ssh");
    let root = tempfile::tempdir().unwrap();
    let bare = bare_repo(root.path(), "fleet.git").unwrap();
    let url = sshd.url(&bare);
    let ssh_cli = vec![
        "-c".to_string(),
        format!("core.sshCommand={}", sshd.ssh_command().unwrap()),
    ];
    let work = new_repo();
    let first = commit_repo(work.path(), &ns, "one", "nginx:1.27");
    git_with(work.path(), &ssh_cli, &["push", "-q", &url, "main"]);

    let tmp = tempfile::tempdir().unwrap();
    let known_hosts = tmp.path().join("known_hosts");
    sshd.write_known_hosts(&known_hosts).unwrap();
    let (source, key, kh, cache) = (
        url.clone(),
        sshd.client_key(),
        known_hosts.clone(),
        tmp.path().join("cache"),
    );
    let mut d = start_with(h, Path::new(&url), DriftMode::Heal, move |o| {
        o.source = source;
        o.cache_dir = Some(cache);
        o.git = GitAuth {
            ssh_key: Some(key),
            known_hosts: Some(kh),
            ..GitAuth::default()
        };
        o.listen = Some("127.0.0.1:0".parse().unwrap());
    });
    d.synced(&first, ALL).await;
    let addr = d.daemon.http_addr().expect("the daemon listens");

    // Pushed over ssh, found by polling.
    let second = commit_repo(work.path(), &ns, "two", "nginx:1.27");
    git_with(work.path(), &ssh_cli, &["push", "-q", &url, "main"]);
    d.synced(&second, ALL).await;

    // The server comes back with another host key: the daemon refuses to talk to it. Then a new
    // commit is in the repository (pushed locally: the CLI would refuse the new key too), and it is
    // not taken. (The commit goes in only after a refusal was seen: a connection the old sshd accepted
    // just before it was stopped is served to its end by its own session process, with the old key.)
    sshd.change_host_key().unwrap();
    let mismatch = |e: &Event| matches!(e, Event::SourceError { error } if error.contains("ssh host key mismatch"));
    d.wait("the host key error", mismatch).await;
    let third = commit_repo(work.path(), &ns, "three", "nginx:1.27");
    git(work.path(), &["push", "-q", &bare.display().to_string(), "main"]);
    d.wait("the host key error after the push", mismatch).await;
    let status = status_json(addr).await;
    let error = status["sourceError"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!(
            "ssh host key mismatch: [127.0.0.1]:{} offers ssh-ed25519 SHA256:",
            sshd.port()
        )),
        "{status:#}"
    );
    assert_eq!(status["head"], second.as_str());
    assert_clusters_on(&status, &second);
    for i in 0..3 {
        assert_eq!(setting(h, i, &ns).await.as_deref(), Some("two"));
    }

    // The host's line removed: now it is an unknown host, and still nothing moves.
    std::fs::write(&known_hosts, "").unwrap();
    d.wait(
        "the unknown host error",
        |e| matches!(e, Event::SourceError { error } if error.contains("unknown ssh host")),
    )
    .await;
    let status = status_json(addr).await;
    let error = status["sourceError"].as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("unknown ssh host: [127.0.0.1]:{} is not in", sshd.port())),
        "{status:#}"
    );
    assert_clusters_on(&status, &second);

    // The operator checks the new key and records it: the next poll fetches and the commit lands.
    sshd.write_known_hosts(&known_hosts).unwrap();
    d.synced(&third, ALL).await;
    for i in 0..3 {
        assert_eq!(setting(h, i, &ns).await.as_deref(), Some("three"));
    }
    d.stop().await;
}
