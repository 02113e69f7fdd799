//! The offline commands: `render`, `explain`, `validate`, and `apply`.

use crate::{print, source, Format, RenderFormat, RepoArgs};
use anyhow::{bail, Context, Result};
use render::RenderOptions;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

fn exit(has_errors: bool) -> ExitCode {
    if has_errors {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `flotilla render`.
pub fn render(args: &RepoArgs, clusters: &[String], out: Option<&Path>, format: RenderFormat) -> Result<ExitCode> {
    let t0 = Instant::now();
    let snapshot = source::read(&args.repo, args.rev.as_deref())?;
    let t1 = Instant::now();
    let repo = render::repo::load(&snapshot);
    let t2 = Instant::now();
    for c in clusters {
        if repo.cluster(c).is_none() {
            let known: Vec<&str> = repo.clusters.iter().map(|c| c.name.as_str()).collect();
            bail!("unknown cluster `{c}` (the inventory has: {})", known.join(", "));
        }
    }
    let opts = RenderOptions {
        clusters: clusters.to_vec(),
        emit: if out.is_none() && format == RenderFormat::Json {
            render::Emit::Json
        } else {
            render::Emit::Values
        },
        ..RenderOptions::default()
    };
    let (output, _) = crate::routing::render(&repo, &opts);
    let t3 = Instant::now();
    tracing::debug!(
        read_ms = ms(t1 - t0),
        load_ms = ms(t2 - t1),
        render_ms = ms(t3 - t2),
        files = snapshot.files.len(),
        templates = repo.templates.len(),
        "rendered"
    );
    if let Some(dir) = out {
        for (cluster, objs) in &output.clusters {
            let cdir = dir.join(cluster);
            if cdir.exists() {
                std::fs::remove_dir_all(&cdir).with_context(|| format!("clearing {}", cdir.display()))?;
            }
            std::fs::create_dir_all(&cdir).with_context(|| format!("creating {}", cdir.display()))?;
            for (i, obj) in objs.iter().enumerate() {
                let path = cdir.join(print::file_name(i, obj));
                std::fs::write(&path, print::yaml(obj)?).with_context(|| format!("writing {}", path.display()))?;
            }
        }
        print::diagnostics_text(&output.diagnostics);
        return Ok(exit(output.has_errors()));
    }
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    match format {
        RenderFormat::Json => output.write_json(&mut w).context("writing JSON")?,
        RenderFormat::Yaml => {
            for (cluster, objs) in &output.clusters {
                writeln!(w, "# cluster: {cluster} ({} objects)", objs.len())?;
                for obj in objs {
                    writeln!(w, "---")?;
                    w.write_all(print::yaml(obj)?.as_bytes())?;
                }
            }
        }
    }
    w.flush()?;
    drop(w);
    tracing::debug!(write_ms = ms(t3.elapsed()), "written");
    if format == RenderFormat::Yaml {
        print::diagnostics_text(&output.diagnostics);
    }
    let code = exit(output.has_errors());
    // The process ends right after this; freeing millions of small allocations one by one would cost
    // about as much as building them. The OS reclaims the memory at exit.
    std::mem::forget(output);
    std::mem::forget(repo);
    std::mem::forget(snapshot);
    Ok(code)
}

/// `flotilla explain`.
pub fn explain(args: &RepoArgs, object: &str, namespace: Option<&str>, format: Format) -> Result<ExitCode> {
    let Some((kind, name)) = object.split_once('/') else {
        bail!("expected KIND/NAME, got `{object}`");
    };
    let snapshot = source::read(&args.repo, args.rev.as_deref())?;
    let e = render::explain::explain(&snapshot, kind, name, namespace).map_err(anyhow::Error::msg)?;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Text => out.write_all(e.to_text().as_bytes())?,
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &e)?;
            writeln!(out)?;
        }
    }
    Ok(exit(e.diagnostics.iter().any(|d| d.is_error())))
}

/// `flotilla validate`.
pub fn validate(args: &RepoArgs, format: Format) -> Result<ExitCode> {
    let snapshot = source::read(&args.repo, args.rev.as_deref())?;
    let opts = RenderOptions {
        emit: render::Emit::Nothing,
        ..RenderOptions::default()
    };
    let output = crate::routing::render_snapshot(&snapshot, &opts);
    print::diagnostics(&output.diagnostics, format)?;
    if format == Format::Text && output.diagnostics.is_empty() {
        eprintln!("ok: no findings");
    }
    let code = exit(output.has_errors());
    std::mem::forget(output); // see `render`: the OS frees it faster at exit
    std::mem::forget(snapshot);
    Ok(code)
}

/// Options of `flotilla apply` beyond the repository.
#[derive(Debug, Clone, Default)]
pub struct ApplyArgs {
    pub kubeconfig: Option<std::path::PathBuf>,
    pub fleet: crate::cluster::fleet::FleetArgs,
}

/// `flotilla apply`: render, refuse a commit with errors, apply every cluster concurrently.
pub fn apply(args: &RepoArgs, a: &ApplyArgs, format: Format) -> Result<ExitCode> {
    use crate::cluster::{changeset, fleet, read_kubeconfig};
    let snapshot = source::read(&args.repo, args.rev.as_deref())?;
    let kubeconfig = read_kubeconfig(a.kubeconfig.as_deref())?;
    let runtime = crate::runtime()?;
    let outcome = runtime.block_on(fleet::apply_fleet(&snapshot, &kubeconfig, &a.fleet))?;
    let (sets, diagnostics) = match outcome {
        fleet::FleetOutcome::Refused(diags) => {
            print::diagnostics_text(&diags);
            eprintln!("the commit has error diagnostics: nothing was applied to any cluster");
            return Ok(ExitCode::from(1));
        }
        fleet::FleetOutcome::Applied { sets, diagnostics } => (sets, diagnostics),
    };
    let failed = sets.iter().any(changeset::ChangeSet::failed);
    match format {
        Format::Text => print!("{}", changeset::table(&sets, false)),
        Format::Json => {
            let mut out = std::io::stdout().lock();
            serde_json::to_writer_pretty(&mut out, &serde_json::json!({ "clusters": sets }))?;
            writeln!(out)?;
        }
    }
    print::diagnostics_text(&diagnostics);
    Ok(exit(failed))
}

/// `flotilla reconcile`: runs the daemon until SIGINT or SIGTERM.
pub fn reconcile(opts: crate::daemon::Options) -> Result<ExitCode> {
    // libgit2's first use probes OpenSSL's CA locations and may set SSL_CERT_FILE/SSL_CERT_DIR in the
    // environment: do it now, while this is the only thread (a no-op call that initialises git2).
    git2::opts::enable_caching(true);
    let runtime = crate::runtime()?;
    runtime.block_on(async {
        let daemon = crate::daemon::Daemon::new();
        daemon.run(opts, shutdown_signal()).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

/// `flotilla status --server URL`: the daemon's `/status`, as a table or as its JSON.
pub fn status(server: &str, format: Format) -> Result<ExitCode> {
    let body = http_get(server, "/status")?;
    let status: crate::daemon::Status =
        serde_json::from_str(&body).with_context(|| format!("{server}/status did not return a daemon status"))?;
    match format {
        Format::Json => println!("{body}"),
        Format::Text => print!("{}", status_table(&status)),
    }
    let healthy = status.refused.is_none()
        && status
            .clusters
            .values()
            .all(|c| c.state == crate::daemon::SyncState::Synced && c.commit == status.desired);
    Ok(exit(!healthy))
}

fn short(commit: Option<&str>) -> String {
    commit.map_or_else(|| "-".to_string(), |c| c.chars().take(12).collect())
}

/// The status as text: the commits, then one row per cluster.
pub fn status_table(s: &crate::daemon::Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "branch head {}   desired {}",
        short(s.head.as_deref()),
        short(s.desired.as_deref())
    );
    if let Some(r) = &s.refused {
        let _ = writeln!(
            out,
            "refused {}: {} error(s), the last good commit stays applied",
            short(Some(&r.commit)),
            r.diagnostics.len()
        );
        for d in r.diagnostics.iter().take(10) {
            let _ = writeln!(out, "  {d}");
        }
    }
    if let Some(e) = &s.source_error {
        let _ = writeln!(out, "source error: {e}");
    }
    let width = s.clusters.keys().map(String::len).max().unwrap_or(7).max(7);
    let width = if s.endpoint_maps.is_empty() {
        width
    } else {
        width.max(12)
    };
    let _ = writeln!(
        out,
        "{:<width$}  {:<9}  {:<12}  {:>7}  {:>11}  LAST ERROR",
        "CLUSTER", "STATE", "COMMIT", "DRIFTED", "CORRECTIONS"
    );
    for (name, c) in &s.clusters {
        let state = serde_json::to_value(c.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{name:<width$}  {state:<9}  {:<12}  {:>7}  {:>11}  {}",
            short(c.commit.as_deref()),
            c.drifted.len(),
            c.drift_corrections,
            c.last_error.as_deref().unwrap_or("-")
        );
        if c.tainted {
            let _ = writeln!(
                out,
                "{:width$}    tainted cluster.karmada.io/unreachable:NoSchedule: placements that can fall back run elsewhere",
                ""
            );
        } else if c.unreachable_since.is_some() {
            let _ = writeln!(out, "{:width$}    unreachable: failover after the grace period", "");
        }
        if !c.held.is_empty() {
            let _ = writeln!(
                out,
                "{:width$}    holding {} object(s) moving to other clusters until they hold them",
                "",
                c.held.len()
            );
        }
        for f in c.failures.iter().take(10) {
            let _ = writeln!(out, "{:width$}    failed {}: {}", "", f.object, f.message);
        }
        for (object, fields) in &c.drifted {
            let _ = writeln!(out, "{:width$}    drifted {object}: {}", "", fields.join(", "));
        }
    }
    if !s.endpoint_maps.is_empty() {
        let _ = writeln!(
            out,
            "{:<width$}  {:>10}  {:<12}  {:>9}  {:>8}  LAST ERROR",
            "ENDPOINT MAP", "VERSION", "COMMIT", "FRONTENDS", "BACKENDS"
        );
        for (name, e) in &s.endpoint_maps {
            let version = e.version.map_or_else(|| "-".to_string(), |v| v.to_string());
            let _ = writeln!(
                out,
                "{name:<width$}  {version:>10}  {:<12}  {:>9}  {:>8}  {}",
                short(e.commit.as_deref()),
                e.frontends,
                e.backends,
                e.last_error.as_deref().unwrap_or("-")
            );
        }
    }
    out
}

/// A plain HTTP/1.1 GET (the daemon serves plain HTTP on a local or cluster-internal address).
fn http_get(server: &str, path: &str) -> Result<String> {
    use std::io::Read as _;
    let rest = server
        .strip_prefix("http://")
        .with_context(|| format!("--server {server}: give http://HOST:PORT"))?;
    let authority = rest.trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(authority).with_context(|| format!("connecting to {server}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nAccept: application/json\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer of {server}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .with_context(|| format!("{server} did not answer HTTP"))?;
    let code = head.split_whitespace().nth(1).unwrap_or("");
    if code != "200" {
        bail!("{server}{path} answered {}", head.lines().next().unwrap_or(""));
    }
    Ok(body.to_string())
}
