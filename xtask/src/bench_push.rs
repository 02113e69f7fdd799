//! `cargo xtask bench-push`: time from `git push` to "applied on all three clusters" for a one-object
//! change, with a signed webhook and with polling only. The release `flotilla reconcile` follows a
//! `file://` remote (a bare repository the benchmark pushes to with the git CLI) on three local
//! kube-apiservers; each push changes one ConfigMap, and the benchmark's own watches on the three clusters
//! see the new value arrive.

use crate::bench_reconcile::{
    check_binary, namespace, runtime, summary, tempfile_dir, wait_synced, write_repo, Daemon,
};
use anyhow::{anyhow, bail, Context, Result};
use flotilla_tests::cluster::Harness;
use flotilla_tests::git;
use futures::StreamExt;
use hmac::{Hmac, Mac};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::watcher;
use sha2::Sha256;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct PushOptions {
    pub flotilla: PathBuf,
    pub pushes: usize,
    /// The polling interval of the polling-only run.
    pub poll_interval: String,
    /// Which runs to make.
    pub mode: Mode,
}

/// Which of the two runs `bench-push` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// A signed webhook after each push (polling every 60 s, so it never explains a fast apply).
    Webhook,
    /// Polling only, every `--poll-interval`.
    Polling,
    /// The webhook run, then the polling run.
    Both,
}

const SECRET: &str = "bench-secret";
const OBJECTS: usize = 50;

fn signature(body: &[u8]) -> Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).map_err(|e| anyhow!("hmac: {e}"))?;
    mac.update(body);
    Ok(format!("sha256={}", hex::encode(mac.finalize().into_bytes())))
}

/// POSTs a signed GitHub-style push notification; returns the HTTP status.
fn webhook(addr: &str) -> Result<u16> {
    let body = br#"{"ref":"refs/heads/main"}"#;
    let mut s = std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    write!(
        s,
        "POST /hooks/git HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\nX-Hub-Signature-256: {}\r\nContent-Length: {}\r\n\r\n",
        signature(body)?,
        body.len()
    )?;
    s.write_all(body)?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    Ok(raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0))
}

/// One ConfigMap every push changes.
fn write_pushed(work: &Path, value: &str) -> Result<()> {
    let ns = namespace(0);
    std::fs::write(
        work.join("apps").join("pushed.yaml"),
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: pushed, namespace: {ns}}}\ndata: {{k: {value}}}\n"),
    )?;
    Ok(())
}

fn commit_and_push(work: &Path, msg: &str) -> String {
    git(work, &["add", "-A"]);
    git(work, &["commit", "-q", "-m", msg]);
    git(work, &["push", "-q", "origin", "main"]);
    git(work, &["rev-parse", "HEAD"])
}

/// Watches ConfigMap `pushed` on every cluster; yields (cluster index, value, when).
async fn watch_pushed(
    clients: &[kube::Client],
) -> Result<tokio::sync::mpsc::UnboundedReceiver<(usize, String, Instant)>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut ready = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace(0));
        let cfg = watcher::Config::default().fields("metadata.name=pushed");
        let tx = tx.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<()>();
        ready.push(ready_rx);
        tokio::spawn(async move {
            let stream = watcher::watcher(api, cfg);
            futures::pin_mut!(stream);
            let mut ready_tx = Some(ready_tx);
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) => {
                        let v = cm.data.and_then(|d| d.get("k").cloned()).unwrap_or_default();
                        if tx.send((i, v, Instant::now())).is_err() {
                            break;
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        if let Some(r) = ready_tx.take() {
                            let _ = r.send(());
                        }
                    }
                    _ => {}
                }
            }
        });
    }
    for r in ready {
        tokio::time::timeout(Duration::from_secs(60), r)
            .await
            .map_err(|_| anyhow!("a watch did not list within 60 s"))?
            .map_err(|_| anyhow!("a watch ended"))?;
    }
    Ok(rx)
}

/// `2s`, `500ms`, `1m`: the daemon's `--interval` syntax (the benchmark only needs these three).
fn parse_interval(text: &str) -> Result<Duration> {
    let number = |s: &str| s.parse::<u64>().with_context(|| format!("--poll-interval {text}"));
    if let Some(ms) = text.strip_suffix("ms") {
        Ok(Duration::from_millis(number(ms)?))
    } else if let Some(s) = text.strip_suffix('s') {
        Ok(Duration::from_secs(number(s)?))
    } else if let Some(m) = text.strip_suffix('m') {
        Ok(Duration::from_secs(60 * number(m)?))
    } else {
        bail!("--poll-interval {text}: give 2s, 500ms or 1m")
    }
}

/// Runs `pushes` pushes against a daemon started with `extra` flags; `after_push` runs right after each
/// push (the webhook). With `spread`, each push waits a uniformly random pause below it first, so that
/// pushes meet the polling cycle at a random phase, as a user's do (pushing right after the previous
/// commit landed would always meet the same phase, about one whole interval before the next poll).
/// Returns push -> applied everywhere, per push.
fn run(
    opts: &PushOptions,
    harness: &Harness,
    label: &str,
    extra: &[&str],
    spread: Option<Duration>,
    after_push: &dyn Fn() -> Result<()>,
) -> Result<Vec<Duration>> {
    let mut prng = crate::prng::SplitMix64::new(0x5eed_0f91);
    let work_dir = tempfile_dir()?.join(label);
    let work = work_dir.join("work");
    let remote = work_dir.join("remote.git");
    std::fs::create_dir_all(&work)?;
    std::fs::create_dir_all(&remote)?;
    let names: Vec<String> = harness.clusters().iter().map(|c| c.name().to_string()).collect();
    git(&remote, &["init", "-q", "--bare", "-b", "main"]);
    write_repo(&work, &names, OBJECTS, 1)?;
    write_pushed(&work, "start")?;
    let url = format!("file://{}", remote.display());
    git(&work, &["remote", "add", "origin", &url]);
    let first = commit_and_push(&work, "start");
    let cache = work_dir.join("cache");
    let cache_arg = cache.to_string_lossy().to_string();
    let mut args: Vec<&str> = vec!["--cache-dir", &cache_arg];
    args.extend_from_slice(extra);
    let mut daemon = Daemon::start_with(
        &opts.flotilla,
        &url,
        harness.kubeconfig(),
        &work_dir.join("daemon.log"),
        &args,
    )?;
    let rt = runtime()?;
    rt.block_on(async {
        let clients = harness.clients()?;
        wait_synced(&clients, &first, &mut daemon, Duration::from_secs(300)).await?;
        let mut seen = watch_pushed(&clients).await?;
        let mut out = Vec::new();
        for i in 0..opts.pushes {
            if let Some(spread) = spread {
                let pause = prng.below(u64::try_from(spread.as_millis()).unwrap_or(u64::MAX).max(1));
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            let value = format!("{label}-{i}");
            write_pushed(&work, &value)?;
            git(&work, &["add", "-A"]);
            git(&work, &["commit", "-q", "-m", &value]);
            let t0 = Instant::now();
            git(&work, &["push", "-q", "origin", "main"]);
            after_push()?;
            let mut landed = vec![false; clients.len()];
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            while landed.contains(&false) {
                let (c, v, _) = tokio::time::timeout_at(deadline, seen.recv())
                    .await
                    .map_err(|_| {
                        anyhow!(
                            "push {i} not applied everywhere within 120 s; see {}",
                            work_dir.display()
                        )
                    })?
                    .ok_or_else(|| anyhow!("the watches ended"))?;
                if v == value {
                    landed[c] = true;
                }
            }
            out.push(t0.elapsed());
        }
        daemon.check_running()?;
        Ok(out)
    })
}

pub fn push(opts: &PushOptions) -> Result<()> {
    check_binary(&opts.flotilla)?;
    parse_interval(&opts.poll_interval)?;
    println!("bench-push: {}", crate::bench::machine());
    let harness = Harness::start(3).context("starting local kube-apiservers")?;
    let secret_dir = tempfile_dir()?;
    let secret = secret_dir.join("webhook-secret");
    std::fs::write(&secret, SECRET)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let listen = format!("127.0.0.1:{port}");
    let secret_arg = secret.to_string_lossy().to_string();
    println!(
        "  {} objects on 3 clusters, one ConfigMap changed per push, {} pushes per run",
        OBJECTS + 1,
        opts.pushes
    );
    if opts.mode != Mode::Polling {
        let hooked = run(
            opts,
            &harness,
            "webhook",
            &[
                "--interval",
                "60s",
                "--listen",
                &listen,
                "--webhook-secret-file",
                &secret_arg,
            ],
            None,
            &|| match webhook(&listen)? {
                202 => Ok(()),
                code => bail!("the webhook was answered {code}"),
            },
        )?;
        println!("  {}", summary("push -> applied on 3 (webhook)", hooked));
        println!("  after the webhook run: {}", crate::bench::load());
    }
    if opts.mode != Mode::Webhook {
        let interval = parse_interval(&opts.poll_interval)?;
        let polled = run(
            opts,
            &harness,
            "polling",
            &["--interval", &opts.poll_interval],
            Some(interval),
            &|| Ok(()),
        )?;
        println!(
            "  {}",
            summary(&format!("push -> applied on 3 (poll {})", opts.poll_interval), polled)
        );
        println!("  after the polling run: {}", crate::bench::load());
    }
    Ok(())
}
