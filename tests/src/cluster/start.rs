//! Starting a harness: directory, keys, etcd, the kube-apiservers, readiness, kubeconfig.

use super::bins::{self, Binaries};
use super::kubeconfig::{self, Entry};
use super::pki::{Pki, PkiFiles, ADMIN_USER};
use super::process::{self, free_port, lost_port_race, Supervisor};
use super::{Cluster, Harness, Options};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Attempts per process when another program takes its port between our probe and its bind.
const PORT_ATTEMPTS: usize = 3;

/// Temporary harness directories older than this are removed by the next harness.
const STALE_AFTER: Duration = Duration::from_secs(3 * 24 * 3600);

/// The prefix of temporary harness directories.
const TEMP_PREFIX: &str = "flotilla-clusters-";

/// The names of `options`' clusters, checked.
fn cluster_names(options: &Options) -> Result<Vec<String>> {
    if options.clusters > 200 {
        bail!(
            "at most 200 clusters (a /20 service range each, from 10.96.0.0), not {}",
            options.clusters
        );
    }
    if options.names.is_empty() {
        return Ok((1..=options.clusters).map(|i| format!("cluster-{i}")).collect());
    }
    if options.names.len() != options.clusters {
        bail!("{} names given for {} clusters", options.names.len(), options.clusters);
    }
    for (i, name) in options.names.iter().enumerate() {
        let label = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !label {
            bail!("cluster name {name:?} is not a DNS label");
        }
        if options.names[..i].contains(name) {
            bail!("cluster name {name} given twice");
        }
    }
    Ok(options.names.clone())
}

/// Starts a harness (see [`Harness::start_with`]).
pub fn start(options: Options) -> Result<Harness> {
    let names = cluster_names(&options)?;
    if let Some(path) = &options.kubeconfig {
        kubeconfig::check_replaceable(path)?;
    }
    let bins = bins::ensure(&[])?;
    let (dir, temporary) = match &options.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            (dir.clone(), false)
        }
        None => {
            remove_stale_dirs();
            let dir = tempfile::Builder::new()
                .prefix(TEMP_PREFIX)
                .tempdir()
                .context("creating the harness directory")?
                .keep();
            (dir, true)
        }
    };
    start_in(&options, &names, &bins, &dir, temporary)
        .with_context(|| format!("starting etcd and {} kube-apiservers in {}", names.len(), dir.display()))
}

fn start_in(options: &Options, names: &[String], bins: &Binaries, dir: &Path, temporary: bool) -> Result<Harness> {
    let pki = Pki::generate()?;
    let files = pki.write(&dir.join("pki"))?;
    // From here on, returning an error drops the supervisor, which kills what it started.
    let supervisor = Supervisor::new(dir, options.lifetime)?;
    let etcd_port = start_etcd(&supervisor, bins, dir)?;

    let mut members: Vec<Member> = names
        .iter()
        .enumerate()
        .map(|(i, name)| Member {
            index: i + 1,
            name: name.clone(),
            port: 0,
            attempts: 0,
        })
        .collect();
    for m in &mut members {
        m.launch(&supervisor, bins, &files, etcd_port)?;
    }
    let ca_pem = pki.ca_pem();
    let deadline = Instant::now() + options.ready_timeout;
    block_on(wait_ready(
        &supervisor,
        bins,
        &files,
        etcd_port,
        &pki,
        &mut members,
        deadline,
    ))?;

    let servers: Vec<String> = members
        .iter()
        .map(|m| format!("https://127.0.0.1:{}", m.port))
        .collect();
    let entries: Vec<Entry<'_>> = members
        .iter()
        .zip(&servers)
        .map(|(m, server)| Entry { name: &m.name, server })
        .collect();
    let doc = kubeconfig::document(&entries, &ca_pem, ADMIN_USER, pki.admin());
    let yaml = kubeconfig::to_yaml(&doc)?;
    let own = dir.join("kubeconfig");
    std::fs::write(&own, &yaml).with_context(|| format!("writing {}", own.display()))?;
    let kubeconfig_path = match &options.kubeconfig {
        Some(path) => {
            kubeconfig::write(path, &yaml)?;
            path.clone()
        }
        None => own,
    };
    let configs = block_on(async {
        let mut configs = Vec::new();
        for m in &members {
            configs.push(kubeconfig::config(&doc, &m.name).await?);
        }
        Ok(configs)
    })?;
    let clusters = members
        .iter()
        .zip(configs)
        .map(|(m, config)| Cluster {
            name: m.name.clone(),
            port: m.port,
            etcd_prefix: m.etcd_prefix(),
            service_cidr: m.service_cidr(),
            config,
        })
        .collect();
    Ok(Harness {
        dir: dir.to_path_buf(),
        temporary,
        kubeconfig: kubeconfig_path,
        kubeconfig_doc: doc,
        etcd_port,
        clusters,
        pki,
        supervisor: Some(supervisor),
        ready_timeout: options.ready_timeout,
        shared: false,
    })
}

/// Runs `future` to completion on a current-thread runtime of its own, on a thread of its own, so
/// that starting a harness works inside and outside async tests alike.
fn block_on<T: Send>(future: impl std::future::Future<Output = Result<T>> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("building a tokio runtime")?
                    .block_on(future)
            })
            .join()
            .map_err(|_| anyhow!("the harness's startup thread panicked"))?
    })
}

/// Starts etcd and waits until `/health` says so; returns its client port.
fn start_etcd(supervisor: &Supervisor, bins: &Binaries, dir: &Path) -> Result<u16> {
    let data = dir.join("etcd");
    let log = supervisor.log_path("etcd");
    for attempt in 1..=PORT_ATTEMPTS {
        let _ = std::fs::remove_dir_all(&data); // a fresh member each attempt
        let client = free_port()?;
        let peer = free_port()?;
        let args = vec![
            "--name=flotilla".to_string(),
            format!("--data-dir={}", data.display()),
            format!("--listen-client-urls=http://127.0.0.1:{client}"),
            format!("--advertise-client-urls=http://127.0.0.1:{client}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-cluster=flotilla=http://127.0.0.1:{peer}"),
            "--unsafe-no-fsync=true".to_string(),
        ];
        supervisor.spawn("etcd", &bins.etcd, &args)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Err(e) = supervisor.check_running("etcd") {
                if attempt < PORT_ATTEMPTS && lost_port_race(&log) {
                    break; // next attempt, other ports
                }
                return Err(e);
            }
            if let Ok((200, body)) = process::http_get(client, "/health") {
                if body.contains("\"health\":\"true\"") {
                    return Ok(client);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd did not become healthy within 60 s; the end of {}:\n{}",
                    log.display(),
                    process::log_tail(&log, 25)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    bail!("etcd lost the race for a free port {PORT_ATTEMPTS} times")
}

/// One kube-apiserver being started.
struct Member {
    index: usize,
    name: String,
    port: u16,
    attempts: usize,
}

impl Member {
    fn etcd_prefix(&self) -> String {
        format!("/cluster-{}", self.index)
    }

    fn service_cidr(&self) -> String {
        format!("10.{}.{}.0/20", 96 + self.index / 16, (self.index % 16) * 16)
    }

    /// Starts (or restarts, on a new port) this member's kube-apiserver.
    fn launch(&mut self, supervisor: &Supervisor, bins: &Binaries, files: &PkiFiles, etcd_port: u16) -> Result<()> {
        self.port = free_port()?;
        self.attempts += 1;
        let port = self.port;
        let cert_dir: PathBuf = files.ca.with_file_name(&self.name);
        let path = |p: &Path| p.display().to_string();
        let args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_port}"),
            format!("--etcd-prefix={}", self.etcd_prefix()),
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".to_string(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", path(&cert_dir)),
            format!("--tls-cert-file={}", path(&files.serving_cert)),
            format!("--tls-private-key-file={}", path(&files.serving_key)),
            format!("--client-ca-file={}", path(&files.ca)),
            format!("--service-account-issuer=https://127.0.0.1:{port}"),
            format!("--service-account-key-file={}", path(&files.sa_pub)),
            format!("--service-account-signing-key-file={}", path(&files.sa_key)),
            format!("--service-cluster-ip-range={}", self.service_cidr()),
            "--authorization-mode=RBAC".to_string(),
            // No controller-manager creates the `default` ServiceAccount of new namespaces.
            "--disable-admission-plugins=ServiceAccount".to_string(),
            // Without a garbage collector, GC finalizers would never be removed.
            "--enable-garbage-collector=false".to_string(),
            // Endpoints may not hold loopback addresses, so the `kubernetes` Service gets none.
            "--endpoint-reconciler-type=none".to_string(),
            "--allow-privileged=true".to_string(),
            "--profiling=false".to_string(),
        ];
        supervisor.spawn(&self.name, &bins.kube_apiserver, &args)
    }
}

/// Waits until every member's `/readyz` is `ok` and its `default` namespace exists, restarting a
/// member that lost its port to another program.
async fn wait_ready(
    supervisor: &Supervisor,
    bins: &Binaries,
    files: &PkiFiles,
    etcd_port: u16,
    pki: &Pki,
    members: &mut [Member],
    deadline: Instant,
) -> Result<()> {
    let ca_pem = pki.ca_pem();
    let mut ready = vec![false; members.len()];
    let mut last_error: Vec<String> = vec![String::new(); members.len()];
    while ready.iter().any(|r| !r) {
        supervisor.check_running("etcd")?;
        for (i, m) in members.iter_mut().enumerate() {
            if ready[i] {
                continue;
            }
            if let Err(e) = supervisor.check_running(&m.name) {
                if m.attempts < PORT_ATTEMPTS && lost_port_race(&supervisor.log_path(&m.name)) {
                    m.launch(supervisor, bins, files, etcd_port)?;
                    continue;
                }
                return Err(e);
            }
            let server = format!("https://127.0.0.1:{}", m.port);
            let doc = kubeconfig::document(
                &[Entry {
                    name: &m.name,
                    server: &server,
                }],
                &ca_pem,
                ADMIN_USER,
                pki.admin(),
            );
            match probe(&doc, &m.name).await {
                Ok(()) => ready[i] = true,
                Err(e) => last_error[i] = format!("{e:#}"),
            }
        }
        if Instant::now() > deadline {
            let waiting: Vec<String> = members
                .iter()
                .zip(&ready)
                .zip(&last_error)
                .filter(|((_, r), _)| !**r)
                .map(|((m, _), e)| {
                    let log = supervisor.log_path(&m.name);
                    format!(
                        "{} (https://127.0.0.1:{}): {e}; the end of {}:\n{}",
                        m.name,
                        m.port,
                        log.display(),
                        process::log_tail(&log, 15)
                    )
                })
                .collect();
            bail!("kube-apiservers not ready in time:\n{}", waiting.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// Waits until the restarted kube-apiserver of `cluster` is ready again (see
/// [`Harness::start_apiserver`]). It must come back on its port: the kubeconfig names it.
pub(super) fn wait_restarted(supervisor: &Supervisor, cluster: &Cluster, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let log = supervisor.log_path(&cluster.name);
    block_on(async {
        loop {
            if let Err(e) = supervisor.check_running(&cluster.name) {
                if lost_port_race(&log) {
                    return Err(e.context(format!(
                        "another program took port {} while {} was stopped",
                        cluster.port, cluster.name
                    )));
                }
                return Err(e);
            }
            let last_error = match probe_config(cluster.config.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!(
                    "the restarted kube-apiserver of {} ({}) was not ready within {timeout:?}: {last_error}; the end of {}:\n{}",
                    cluster.name,
                    cluster.server(),
                    log.display(),
                    process::log_tail(&log, 15)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// One readiness probe: `/readyz` answers `ok` and the `default` namespace exists.
async fn probe(doc: &serde_json::Value, name: &str) -> Result<()> {
    probe_config(kubeconfig::config(doc, name).await?).await
}

async fn probe_config(mut config: kube::Config) -> Result<()> {
    config.connect_timeout = Some(Duration::from_secs(2));
    config.read_timeout = Some(Duration::from_secs(5));
    let client = kube::Client::try_from(config)?;
    let get = |uri: &str| http::Request::get(uri).body(Vec::new());
    let readyz = client.request_text(get("/readyz")?).await?;
    if readyz.trim() != "ok" {
        bail!("/readyz says {readyz:?}");
    }
    client.request_text(get("/api/v1/namespaces/default")?).await?;
    Ok(())
}

/// Removes temporary harness directories of ended harnesses (no `etcd/` left, see the watchdog)
/// that are older than [`STALE_AFTER`]. Best effort.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX);
        if !ours || path.join("etcd").exists() {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > STALE_AFTER);
        if old {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}
