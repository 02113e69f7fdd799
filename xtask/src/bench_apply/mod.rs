//! `cargo xtask bench-apply`: `flotilla apply` against `kubectl apply --server-side` (kubectl built
//! from the same Kubernetes module as the API server) on one real local kube-apiserver, applying the
//! same objects into fresh namespaces.
//!
//! Per run and per tool: a repository of N objects (see [`objects`]) in namespaces of their own
//! (`bench-r<run>-<tool>-NN`) is written and, for kubectl, rendered by `flotilla render --out` into
//! one file per object (Namespaces first); both inputs are checked against the generator's objects.
//! Then, timed: the cold apply (everything created), and the same command again (a no-op: nothing
//! changes). After each, the objects carrying the run's label are listed with kubectl and compared
//! with what was wanted (kind, namespace, name, field manager), and the no-op must leave every
//! resourceVersion as it was. The order of the two tools alternates between runs.

mod objects;

use crate::bench::{self, measure_env, min_median, secs, Sample};
use crate::compare::{self, ObjectSets};
use anyhow::{bail, Context, Result};
use flotilla_tests::cluster::{bins, Harness, Options as HarnessOptions};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Options {
    pub objects: usize,
    pub namespaces: usize,
    pub runs: usize,
    pub seed: u64,
    pub flotilla: PathBuf,
    pub work_dir: PathBuf,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tool {
    Flotilla,
    Kubectl,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Flotilla => "flotilla",
            Tool::Kubectl => "kubectl",
        }
    }

    /// The field manager its server-side applies use.
    fn manager(self) -> &'static str {
        self.name()
    }

    fn command(self) -> &'static str {
        match self {
            Tool::Flotilla => "flotilla apply",
            Tool::Kubectl => "kubectl apply --server-side",
        }
    }
}

/// Environment for kubectl: no user preferences (`~/.kube/kuberc`) may change its behaviour.
const KUBECTL_ENV: &[(&str, &str)] = &[("KUBERC", "off")];

/// What every run needs.
struct Bench {
    flotilla: PathBuf,
    kubectl: PathBuf,
    kubeconfig: PathBuf,
    /// kubectl's discovery and OpenAPI cache (warmed before the runs, as on a developer's machine).
    kubectl_cache: PathBuf,
    work: PathBuf,
    /// kube-apiserver and etcd, whose CPU time is read from /proc around each command.
    server_pids: Vec<(String, u32)>,
}

impl Bench {
    fn kubectl_args<'a>(&'a self, rest: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec![
            "--kubeconfig",
            path_str(&self.kubeconfig),
            "--cache-dir",
            path_str(&self.kubectl_cache),
        ];
        args.extend_from_slice(rest);
        args
    }

    /// Runs kubectl untimed; returns stdout, fails with stderr.
    fn kubectl(&self, rest: &[&str]) -> Result<String> {
        let out = std::process::Command::new(&self.kubectl)
            .args(self.kubectl_args(rest))
            .envs(KUBECTL_ENV.iter().copied())
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.kubectl.display()))?;
        if !out.status.success() {
            bail!(
                "kubectl {} failed ({}): {}",
                rest.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        String::from_utf8(out.stdout).context("kubectl printed non-UTF-8")
    }

    /// `apiserver_request_total` summed by verb (APPLY, GET, LIST, ...), from the API server's metrics.
    fn requests(&self) -> Result<BTreeMap<String, u64>> {
        let text = self.kubectl(&["get", "--raw", "/metrics"])?;
        Ok(request_counts(&text))
    }

    /// CPU time (user + system) the server processes have used so far.
    fn server_cpu(&self) -> Duration {
        self.server_pids.iter().map(|(_, pid)| process_cpu(*pid)).sum()
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// utime + stime of a process from `/proc/<pid>/stat`, in clock ticks of 1/100 s (`USER_HZ`, 100 on
/// every Linux architecture we run on); zero if the process is gone.
fn process_cpu(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let Some((_, rest)) = stat.rsplit_once(") ") else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Sums the `apiserver_request_total` samples of a Prometheus text exposition by their `verb` label.
fn request_counts(metrics: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let verb = labels
            .split(',')
            .find_map(|l| l.strip_prefix("verb=\""))
            .map(|v| v.trim_end_matches('"'))
            .unwrap_or("?");
        let n = value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        *out.entry(verb.to_string()).or_insert(0) += n;
    }
    out
}

/// One timed command.
struct Timed {
    sample: Sample,
    /// CPU time of kube-apiserver + etcd while it ran.
    server_cpu: Duration,
    /// Requests the API server counted while it ran, by verb. Resource requests only: the scrape of
    /// `/metrics` and per-group-version discovery (`/apis/<group>/<version>`) are not counted.
    requests: BTreeMap<String, u64>,
}

impl Timed {
    fn requests_text(&self) -> String {
        let parts: Vec<String> = self
            .requests
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(v, n)| format!("{v} {n}"))
            .collect();
        parts.join(", ")
    }
}

/// The measurements of one tool in one run.
struct ToolRun {
    cold: Timed,
    noop: Timed,
}

/// (kind, namespace, name) -> (resourceVersion, field managers)
type Live = BTreeMap<(String, String, String), (String, String)>;

pub fn run(opts: &Options) -> Result<()> {
    if !opts.flotilla.is_file() {
        bail!(
            "{} not found: build it with `cargo build --release -p reconciler` (or pass --flotilla PATH)",
            opts.flotilla.display()
        );
    }
    let work = &opts.work_dir;
    if work.exists() {
        std::fs::remove_dir_all(work).with_context(|| format!("removing {}", work.display()))?;
    }
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    println!("machine: {}", bench::machine());
    let kubectl = bins::kubectl()?;
    println!("flotilla: {}", opts.flotilla.display());
    println!("kubectl: {}", kubectl.display());

    let started = Instant::now();
    let harness = Harness::start_with(HarnessOptions {
        clusters: 1,
        names: vec![objects::CLUSTER.to_string()],
        ..HarnessOptions::default()
    })?;
    println!(
        "kube-apiserver {} ready in {} (logs in {})",
        harness.clusters().first().map(|c| c.server()).unwrap_or_default(),
        secs(started.elapsed()),
        harness.logs_dir().display()
    );
    let b = Bench {
        flotilla: opts.flotilla.clone(),
        kubectl,
        kubeconfig: harness.kubeconfig().to_path_buf(),
        kubectl_cache: work.join("kubectl-cache"),
        work: work.clone(),
        server_pids: harness.pids(),
    };
    setup(&b)?;

    let per_run = opts.objects + opts.namespaces.max(1);
    println!(
        "{} objects per run and tool ({} namespaced: {}; plus {} Namespaces), seed {}",
        per_run,
        opts.objects,
        objects::counts(opts.objects)
            .iter()
            .map(|(k, n)| format!("{n} {}", k.name()))
            .collect::<Vec<_>>()
            .join(", "),
        opts.namespaces.max(1),
        opts.seed
    );

    // An untimed warm-up round with a tenth of the objects: first requests of each kind, page cache,
    // kubectl's OpenAPI cache.
    let warm = Options {
        objects: (opts.objects / 10).max(1),
        ..opts.clone()
    };
    for tool in [Tool::Flotilla, Tool::Kubectl] {
        one(&b, &warm, 0, tool).with_context(|| format!("warm-up round of {}", tool.name()))?;
    }
    println!("warm-up round done ({} objects per tool)", warm.objects);

    let mut results: BTreeMap<&'static str, Vec<ToolRun>> = BTreeMap::new();
    let mut loads = vec![bench::load()];
    for run in 1..=opts.runs {
        let order = if run % 2 == 1 {
            [Tool::Flotilla, Tool::Kubectl]
        } else {
            [Tool::Kubectl, Tool::Flotilla]
        };
        for tool in order {
            let r = one(&b, opts, run, tool).with_context(|| format!("run {run} of {}", tool.name()))?;
            println!(
                "run {run} {:<8} cold {} (server CPU {}; {}), no-op {} (server CPU {}; {}); {}",
                tool.name(),
                secs(r.cold.sample.wall),
                secs(r.cold.server_cpu),
                r.cold.requests_text(),
                secs(r.noop.sample.wall),
                secs(r.noop.server_cpu),
                r.noop.requests_text(),
                bench::load()
            );
            results.entry(tool.name()).or_default().push(r);
        }
        loads.push(bench::load());
    }
    drop(harness);
    report(opts, per_run, &results, &loads);
    Ok(())
}

/// Before the runs: the Widget CRD (established), a second service IP range, kubectl's caches.
fn setup(b: &Bench) -> Result<()> {
    let dir = b.work.join("setup");
    // The harness's service range is a /24; every run creates hundreds of ClusterIP Services. A
    // ServiceCIDR adds a /16 (the API server's allocator takes it when the first range is full; without
    // kube-controller-manager it counts as ready).
    let cidr = serde_json::json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "ServiceCIDR",
        "metadata": {"name": "bench"},
        "spec": {"cidrs": ["10.112.0.0/16"]},
    });
    crate::gen::write_file(
        &dir.join("setup.yaml"),
        &crate::gen::yaml_docs([&objects::crd(), &cidr])?,
    )?;
    b.kubectl(&["apply", "--server-side", "-f", path_str(&dir)])?;
    b.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "customresourcedefinition/widgets.bench.flotilla.dev",
    ])?;
    b.kubectl(&["api-resources", "-o", "name"])?;
    Ok(())
}

/// One run of one tool: input, cold apply, check, no-op apply, check.
fn one(b: &Bench, opts: &Options, run: usize, tool: Tool) -> Result<ToolRun> {
    let id = format!("r{run}-{}", tool.name());
    let fleet = objects::generate(&id, opts.objects, opts.namespaces, opts.seed);
    let repo = b.work.join("repos").join(&id);
    objects::write_repo(&fleet, &repo)?;
    let mut expected = ObjectSets::new();
    compare::add_objects(&mut expected, objects::CLUSTER, fleet.all().cloned());

    let out_dir = b.work.join("out");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let (program, args, envs): (&Path, Vec<String>, &[(&str, &str)]) = match tool {
        Tool::Flotilla => {
            // What `apply` applies is what `render` renders: check it is the generator's set.
            let rendered = out_dir.join(format!("{id}-render.json"));
            let s = bench::measure(
                &b.flotilla,
                &["render", "--repo", path_str(&repo), "--format", "json"],
                Some(&rendered),
                &out_dir.join("measure"),
            )?;
            if s.code != Some(0) {
                bail!("flotilla render failed: {}", s.stderr.trim());
            }
            let (sets, _) = compare::read_flotilla(&rendered)?;
            same("flotilla render", &sets, &expected)?;
            let applyset = format!("bench-{id}");
            let args = [
                "apply",
                "--repo",
                path_str(&repo),
                "--kubeconfig",
                path_str(&b.kubeconfig),
                "--applyset",
                &applyset,
                "--format",
                "json",
            ];
            (&b.flotilla, args.map(String::from).to_vec(), &[])
        }
        Tool::Kubectl => {
            // kubectl gets the rendered objects, one file per object, named in flotilla's apply
            // order (Namespaces first); `-R` reads a directory in file-name order.
            let input = b.work.join("kubectl-input").join(&id);
            let s = bench::measure(
                &b.flotilla,
                &["render", "--repo", path_str(&repo), "--out", path_str(&input)],
                None,
                &out_dir.join("measure"),
            )?;
            if s.code != Some(0) {
                bail!("flotilla render --out failed: {}", s.stderr.trim());
            }
            let files = input.join(objects::CLUSTER);
            let sets = read_dir_objects(&files)?;
            same("kubectl's input", &sets, &expected)?;
            let mut args: Vec<String> = b
                .kubectl_args(&["apply", "--server-side", "-R", "-f"])
                .into_iter()
                .map(String::from)
                .collect();
            args.push(path_str(&files).to_string());
            (&b.kubectl, args, KUBECTL_ENV)
        }
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let cold = timed(b, program, &args, envs, &out_dir.join(format!("{id}-cold.out")))?;
    check_output(
        tool,
        "cold",
        &cold.sample,
        &out_dir.join(format!("{id}-cold.out")),
        fleet.len(),
    )?;
    let live = list(b, &id)?;
    check_live(tool, &live, &expected)?;

    let noop = timed(b, program, &args, envs, &out_dir.join(format!("{id}-noop.out")))?;
    check_output(
        tool,
        "no-op",
        &noop.sample,
        &out_dir.join(format!("{id}-noop.out")),
        fleet.len(),
    )?;
    let after = list(b, &id)?;
    if after != live {
        let changed = live.iter().filter(|(k, v)| after.get(*k) != Some(*v)).count();
        bail!("the no-op apply of {} changed {changed} objects", tool.name());
    }
    Ok(ToolRun { cold, noop })
}

fn timed(b: &Bench, program: &Path, args: &[&str], envs: &[(&str, &str)], stdout: &Path) -> Result<Timed> {
    let requests_before = b.requests()?;
    let before = b.server_cpu();
    let sample = measure_env(program, args, envs, Some(stdout), &b.work.join("out/measure"))?;
    let server_cpu = b.server_cpu().saturating_sub(before);
    let mut requests = b.requests()?;
    for (verb, n) in requests.iter_mut() {
        *n = n.saturating_sub(requests_before.get(verb).copied().unwrap_or(0));
    }
    Ok(Timed {
        sample,
        server_cpu,
        requests,
    })
}

/// Fails unless `a` and `b` hold the same objects.
fn same(what: &str, got: &ObjectSets, want: &ObjectSets) -> Result<()> {
    let c = compare::compare(what, got, "generator", want);
    if c.mismatches > 0 {
        bail!(
            "{what} differs from the generated objects in {} places, e.g. {}",
            c.mismatches,
            c.examples.join("; ")
        );
    }
    Ok(())
}

/// The objects of the YAML files in `dir`.
fn read_dir_objects(dir: &Path) -> Result<ObjectSets> {
    let mut objects = Vec::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = Value::deserialize(doc).with_context(|| format!("parsing {}", path.display()))?;
            if !v.is_null() {
                objects.push(v);
            }
        }
    }
    let mut sets = ObjectSets::new();
    compare::add_objects(&mut sets, objects::CLUSTER, objects);
    Ok(sets)
}

#[derive(Deserialize)]
struct FlotillaOutput {
    clusters: Vec<FlotillaChangeSet>,
}

#[derive(Deserialize)]
struct FlotillaChangeSet {
    entries: Vec<FlotillaEntry>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct FlotillaEntry {
    object: String,
    action: String,
    #[serde(default)]
    message: Option<String>,
}

/// The command succeeded and reported every object: flotilla's change set (all `created`, then all
/// `unchanged`), kubectl's `serverside-applied` lines.
fn check_output(tool: Tool, phase: &str, s: &Sample, stdout: &Path, want: usize) -> Result<()> {
    if s.code != Some(0) {
        bail!(
            "{} ({phase}) exited with {:?}: {}",
            tool.command(),
            s.code,
            s.stderr.lines().take(10).collect::<Vec<_>>().join(" | ")
        );
    }
    let text = std::fs::read_to_string(stdout).with_context(|| format!("reading {}", stdout.display()))?;
    match tool {
        Tool::Flotilla => {
            let out: FlotillaOutput =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", stdout.display()))?;
            let expected_action = if phase == "cold" { "created" } else { "unchanged" };
            let mut count = 0;
            for cs in &out.clusters {
                if let Some(e) = &cs.error {
                    bail!("flotilla apply ({phase}): cluster error: {e}");
                }
                for e in &cs.entries {
                    if e.action != expected_action {
                        bail!(
                            "flotilla apply ({phase}): {} was {} ({}), expected {expected_action}",
                            e.object,
                            e.action,
                            e.message.as_deref().unwrap_or("")
                        );
                    }
                    count += 1;
                }
            }
            if count != want {
                bail!("flotilla apply ({phase}) reported {count} objects, expected {want}");
            }
        }
        Tool::Kubectl => {
            let count = text.lines().filter(|l| l.ends_with(" serverside-applied")).count();
            if count != want {
                bail!("kubectl apply ({phase}) reported {count} objects serverside-applied, expected {want}");
            }
        }
    }
    Ok(())
}

/// The run's objects as the API server has them (by the run label), listed with kubectl.
fn list(b: &Bench, id: &str) -> Result<Live> {
    let mut resources = vec!["namespaces"];
    resources.extend(objects::Kind::MIX.iter().map(|(k, _)| k.resource()));
    let resources = resources.join(",");
    let selector = format!("{}={id}", objects::RUN_LABEL);
    let text = b.kubectl(&[
        "get",
        &resources,
        "--all-namespaces",
        "-l",
        &selector,
        "--no-headers",
        "-o",
        "custom-columns=KIND:.kind,NAMESPACE:.metadata.namespace,NAME:.metadata.name,\
         RV:.metadata.resourceVersion,MANAGERS:.metadata.managedFields[*].manager",
    ])?;
    let mut live = Live::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [kind, ns, name, rv, managers] = f[..] else {
            bail!("unexpected line from kubectl get: {line}");
        };
        let ns = if ns == "<none>" { "" } else { ns };
        live.insert(
            (kind.to_string(), ns.to_string(), name.to_string()),
            (rv.to_string(), managers.to_string()),
        );
    }
    Ok(live)
}

/// Every wanted object is there, nothing else carries the label, and the tool manages each.
fn check_live(tool: Tool, live: &Live, expected: &ObjectSets) -> Result<()> {
    let want: Vec<&(String, String, String)> = expected.values().flat_map(|m| m.keys()).collect();
    let missing: Vec<String> = want
        .iter()
        .filter(|k| !live.contains_key(**k))
        .map(|(k, ns, n)| format!("{k} {ns}/{n}"))
        .collect();
    if !missing.is_empty() || live.len() != want.len() {
        bail!(
            "after {}: {} objects listed, {} wanted; missing e.g. {}",
            tool.command(),
            live.len(),
            want.len(),
            missing.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let foreign: Vec<String> = live
        .iter()
        .filter(|(_, (_, managers))| !managers.split(',').any(|m| m == tool.manager()))
        .map(|((k, ns, n), (_, managers))| format!("{k} {ns}/{n} ({managers})"))
        .collect();
    if !foreign.is_empty() {
        bail!(
            "{} objects are not managed by {}: {}",
            foreign.len(),
            tool.manager(),
            foreign.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

/// Median of the CPU times that were measured, if any.
fn median_cpu(samples: &[&Timed]) -> Option<Duration> {
    let cpus: Vec<Duration> = samples.iter().filter_map(|t| t.sample.cpu).collect();
    (!cpus.is_empty()).then(|| min_median(&cpus).1)
}

fn report(opts: &Options, per_run: usize, results: &BTreeMap<&'static str, Vec<ToolRun>>, loads: &[String]) {
    println!();
    println!("{}", loads.join(" -> "));
    println!(
        "{} objects per apply ({} + {} Namespaces), {} runs, fresh namespaces per run and tool",
        per_run,
        opts.objects,
        opts.namespaces.max(1),
        opts.runs
    );
    println!(
        "| command | phase | runs | min wall | median wall | median client CPU | median server CPU | client peak RSS | API requests (run 1) |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    let mut medians: BTreeMap<(&str, &str), (Duration, Duration)> = BTreeMap::new();
    for tool in [Tool::Flotilla, Tool::Kubectl] {
        let Some(runs) = results.get(tool.name()) else {
            continue;
        };
        for phase in ["cold", "no-op"] {
            let timed: Vec<&Timed> = runs
                .iter()
                .map(|r| if phase == "cold" { &r.cold } else { &r.noop })
                .collect();
            let walls: Vec<Duration> = timed.iter().map(|t| t.sample.wall).collect();
            let servers: Vec<Duration> = timed.iter().map(|t| t.server_cpu).collect();
            let (min, median) = min_median(&walls);
            let rss = timed.iter().filter_map(|t| t.sample.rss_kib).max();
            medians.insert((tool.name(), phase), (min, median));
            println!(
                "| {} | {phase} | {} | {} | {} | {} | {} | {} | {} |",
                tool.command(),
                walls.len(),
                secs(min),
                secs(median),
                median_cpu(&timed).map_or("n/a".into(), secs),
                secs(min_median(&servers).1),
                bench::mib(rss),
                timed.first().map(|t| t.requests_text()).unwrap_or_default()
            );
        }
    }
    println!();
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
    for phase in ["cold", "no-op"] {
        if let (Some(f), Some(k)) = (medians.get(&("flotilla", phase)), medians.get(&("kubectl", phase))) {
            println!(
                "ratio kubectl / flotilla, {phase}: {:.1}x (medians), {:.1}x (minimums); goal >= 5x: {}",
                ratio(k.1, f.1),
                ratio(k.0, f.0),
                if ratio(k.1, f.1) >= 5.0 { "PASS" } else { "FAIL" }
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_requests_by_verb() {
        let text = "# HELP apiserver_request_total x\n\
            apiserver_request_total{code=\"201\",component=\"apiserver\",resource=\"configmaps\",verb=\"APPLY\",version=\"v1\"} 12\n\
            apiserver_request_total{code=\"200\",component=\"apiserver\",resource=\"configmaps\",verb=\"APPLY\",version=\"v1\"} 3\n\
            apiserver_request_total{code=\"404\",component=\"apiserver\",resource=\"secrets\",verb=\"GET\",version=\"v1\"} 7\n\
            apiserver_request_duration_seconds_count{verb=\"GET\"} 99\n";
        let c = request_counts(text);
        assert_eq!(c.get("APPLY"), Some(&15));
        assert_eq!(c.get("GET"), Some(&7));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn reads_process_cpu_of_this_process() {
        // Burn a little CPU so the counter is not zero at 10 ms resolution.
        let start = Instant::now();
        let mut x = 0u64;
        while start.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(1);
        }
        assert!(x > 0);
        assert!(process_cpu(std::process::id()) > Duration::ZERO);
        assert_eq!(process_cpu(u32::MAX), Duration::ZERO);
    }
}
