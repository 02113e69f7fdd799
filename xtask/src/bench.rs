//! `cargo xtask bench-render`: generates a synthetic repository and its kustomize twin, times
//! `flotilla render`/`flotilla validate` against `kustomize build` of every overlay, measures peak RSS
//! and CPU time with `/usr/bin/time`, and checks that all three renderings (the generator's own
//! expectation, flotilla, kustomize) hold the same objects per cluster.

use crate::compare::{self, Comparison, ObjectSets};
use crate::gen::{self, Params};
use crate::peers;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Options {
    pub params: Params,
    pub runs: usize,
    pub kustomize_runs: usize,
    pub flotilla: PathBuf,
    pub work_dir: PathBuf,
    pub skip_kustomize: bool,
}

const TIME: &str = "/usr/bin/time";

/// One measured process: wall time, and (when `/usr/bin/time` is there) peak RSS in KiB and CPU
/// time (user + system, which other load on the machine disturbs less than wall time); exit code.
pub(crate) struct Sample {
    pub(crate) wall: Duration,
    pub(crate) rss_kib: Option<u64>,
    pub(crate) cpu: Option<Duration>,
    pub(crate) code: Option<i32>,
    /// What the program wrote to stderr.
    pub(crate) stderr: String,
}

/// Parses the last line of `/usr/bin/time -f "%M %U %S"`: (peak RSS in KiB, user + system).
fn parse_time(text: &str) -> (Option<u64>, Option<Duration>) {
    let Some(line) = text.lines().last() else {
        return (None, None);
    };
    let mut fields = line.split_whitespace();
    let rss = fields.next().and_then(|f| f.parse().ok());
    let user: Option<f64> = fields.next().and_then(|f| f.parse().ok());
    let sys: Option<f64> = fields.next().and_then(|f| f.parse().ok());
    let cpu = user.zip(sys).and_then(|(u, s)| Duration::try_from_secs_f64(u + s).ok());
    (rss, cpu)
}

/// Runs `program args` with stdout to `stdout` (a file) or /dev/null, measuring it; `scratch` names
/// the file `/usr/bin/time` reports into.
pub(crate) fn measure(program: &Path, args: &[&str], stdout: Option<&Path>, scratch: &Path) -> Result<Sample> {
    measure_env(program, args, &[], stdout, scratch)
}

/// [`measure`] with extra environment variables for the measured program.
pub(crate) fn measure_env(
    program: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    stdout: Option<&Path>,
    scratch: &Path,
) -> Result<Sample> {
    let use_time = Path::new(TIME).is_file();
    let report = scratch.with_extension(format!("time{}", std::process::id()));
    let mut cmd = if use_time {
        let mut c = Command::new(TIME);
        c.args(["-f", "%M %U %S", "-o"]).arg(&report).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    match stdout {
        Some(path) => cmd.stdout(File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => cmd.stdout(Stdio::null()),
    };
    let start = Instant::now();
    let out = cmd.output().with_context(|| format!("running {}", program.display()))?;
    let wall = start.elapsed();
    let (rss_kib, cpu) = if use_time {
        let text = std::fs::read_to_string(&report).with_context(|| format!("reading {}", report.display()))?;
        let _ = std::fs::remove_file(&report);
        parse_time(&text)
    } else {
        (None, None)
    };
    let code = out.status.code();
    if code != Some(0) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let head: Vec<&str> = stderr.lines().take(5).collect();
        eprintln!(
            "  {} {} exited with {:?}: {}",
            program.display(),
            args.join(" "),
            code,
            head.join(" | ")
        );
    }
    Ok(Sample {
        wall,
        rss_kib,
        cpu,
        code,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

pub(crate) fn min_median(samples: &[Duration]) -> (Duration, Duration) {
    let mut s = samples.to_vec();
    s.sort_unstable();
    let min = s.first().copied().unwrap_or_default();
    let median = s.get(s.len() / 2).copied().unwrap_or_default();
    (min, median)
}

pub(crate) fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

pub(crate) fn mib(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0))
}

/// One line of the results table.
struct Row {
    what: String,
    runs: usize,
    min: Duration,
    median: Duration,
    /// median CPU time (user + system) of a run
    cpu: Option<Duration>,
    rss: String,
}

impl Row {
    fn new(what: String, walls: &[Duration], cpus: &[Duration], rss: String) -> Row {
        let (min, median) = min_median(walls);
        let cpu = (!cpus.is_empty()).then(|| min_median(cpus).1);
        Row {
            what,
            runs: walls.len(),
            min,
            median,
            cpu,
            rss,
        }
    }
}

/// A flotilla command run `runs` times: (row, peak RSS, exit codes).
fn series(
    what: &str,
    program: &Path,
    args: &[&str],
    runs: usize,
    scratch: &Path,
) -> Result<(Row, Option<u64>, Vec<Option<i32>>)> {
    let (mut walls, mut cpus, mut rss, mut codes) = (Vec::new(), Vec::new(), None, Vec::new());
    for _ in 0..runs {
        let sample = measure(program, args, None, scratch)?;
        walls.push(sample.wall);
        cpus.extend(sample.cpu);
        rss = rss.max(sample.rss_kib);
        codes.push(sample.code);
    }
    Ok((Row::new(what.into(), &walls, &cpus, mib(rss)), rss, codes))
}

/// The outcome of building every overlay once.
struct KustomizeRun {
    wall: Duration,
    /// user + system summed over the processes
    cpu: Option<Duration>,
    /// the largest peak RSS of one process
    rss_kib: Option<u64>,
    failures: usize,
}

/// `kustomize build` of every overlay, one process per overlay, `jobs` at a time, each writing its
/// output to `out_dir/<overlay>.yaml`.
fn kustomize_all(bin: &Path, overlays: &[(String, PathBuf)], out_dir: &Path, jobs: usize) -> Result<KustomizeRun> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Result<Sample>>> = Mutex::new(Vec::new());
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((name, dir)) = overlays.get(i) else {
                    break;
                };
                let out = out_dir.join(format!("{name}.yaml"));
                let scratch = out_dir.join(format!(".{name}"));
                let dir = dir.to_string_lossy();
                let r = measure(bin, &["build", &dir], Some(&out), &scratch);
                if let Ok(mut v) = results.lock() {
                    v.push(r);
                }
            });
        }
    });
    let wall = start.elapsed();
    let results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a kustomize worker panicked"))?;
    let mut run = KustomizeRun {
        wall,
        cpu: Some(Duration::ZERO),
        rss_kib: None,
        failures: 0,
    };
    for r in results {
        let s = r?;
        run.rss_kib = run.rss_kib.max(s.rss_kib);
        run.cpu = run.cpu.zip(s.cpu).map(|(a, b)| a + b);
        if s.code != Some(0) {
            run.failures += 1;
        }
    }
    Ok(run)
}

fn report_comparison(label: &str, c: &Comparison) {
    println!(
        "same output, {label}: {} clusters, {} objects, {} mismatches{}",
        c.clusters,
        c.objects,
        c.mismatches,
        if c.mismatches == 0 { " (identical)" } else { "" }
    );
    for e in &c.examples {
        println!("    {e}");
    }
}

pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cpus} cores, {model}; {}", load())
}

/// `/proc/loadavg`'s 1/5/15-minute averages: other work on the machine skews every number.
pub(crate) fn load() -> String {
    let avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let three: Vec<&str> = avg.split_whitespace().take(3).collect();
    format!("load average {}", three.join(" "))
}

/// Results of the flotilla side.
struct FlotillaResults {
    render: Row,
    validate: Row,
    peak_kib: Option<u64>,
    sets: Option<ObjectSets>,
}

fn bench_flotilla(opts: &Options, repo: &str, work: &Path) -> Result<FlotillaResults> {
    let bin = &opts.flotilla;
    let scratch = work.join("measure");
    let output = work.join("flotilla-render.json");
    println!("flotilla: {}", bin.display());
    // an untimed warm-up that keeps the output for the comparison
    let render_args = ["render", "--repo", repo, "--format", "json"];
    let first = measure(bin, &render_args, Some(&output), &scratch)?;
    let sets = match compare::read_flotilla(&output) {
        Ok((sets, diags)) => {
            println!(
                "  render exit code {:?}; diagnostics: {} errors, {} warnings, {} infos",
                first.code, diags.errors, diags.warnings, diags.infos
            );
            for e in &diags.first_errors {
                println!("    {e}");
            }
            Some(sets)
        }
        Err(e) => {
            println!("  cannot read flotilla's render output: {e:#}");
            None
        }
    };
    let (render, render_rss, _) = series("flotilla render --format json", bin, &render_args, opts.runs, &scratch)?;
    let (validate, validate_rss, codes) = series(
        "flotilla validate",
        bin,
        &["validate", "--repo", repo],
        opts.runs,
        &scratch,
    )?;
    if codes.iter().any(|c| *c != Some(0)) {
        println!("  validate exit codes: {codes:?} (expected 0)");
    }
    Ok(FlotillaResults {
        render,
        validate,
        peak_kib: render_rss.max(validate_rss),
        sets,
    })
}

/// Results of the kustomize side: (sequential row, parallel row, objects).
fn bench_kustomize(opts: &Options, ktree: &Path, kout: &Path) -> Result<(Row, Row, ObjectSets)> {
    let bin = peers::ensure_kustomize(None)?;
    println!("kustomize: {} ({})", bin.display(), peers::kustomize_version(&bin)?);
    std::fs::create_dir_all(kout).with_context(|| format!("creating {}", kout.display()))?;
    let overlays_dir = ktree.join("overlays");
    let mut overlays: Vec<(String, PathBuf)> = std::fs::read_dir(&overlays_dir)
        .with_context(|| format!("reading {}", overlays_dir.display()))?
        .map(|e| {
            let e = e.with_context(|| format!("reading {}", overlays_dir.display()))?;
            Ok((e.file_name().to_string_lossy().to_string(), e.path()))
        })
        .collect::<Result<_>>()?;
    overlays.sort();
    let mut rows = Vec::new();
    for (label, jobs) in [("sequential", 1usize), ("parallel, 2 jobs", 2)] {
        let (mut walls, mut cpus, mut rss) = (Vec::new(), Vec::new(), None);
        for run in 1..=opts.kustomize_runs.max(1) {
            eprintln!(
                "  kustomize build of {} overlays, {label}, run {run}...",
                overlays.len()
            );
            let r = kustomize_all(&bin, &overlays, kout, jobs)?;
            eprintln!("    {}", secs(r.wall));
            if r.failures > 0 {
                bail!("{} kustomize builds failed (see above)", r.failures);
            }
            walls.push(r.wall);
            cpus.extend(r.cpu);
            rss = rss.max(r.rss_kib);
        }
        rows.push(Row::new(
            format!("kustomize build, {} overlays, {label}", overlays.len()),
            &walls,
            &cpus,
            format!("{} (largest process)", mib(rss)),
        ));
    }
    let mut sets = ObjectSets::new();
    for (name, _) in &overlays {
        compare::read_kustomize(&mut sets, name, &kout.join(format!("{name}.yaml")))?;
    }
    let parallel = rows.pop().context("no parallel row")?;
    let sequential = rows.pop().context("no sequential row")?;
    Ok((sequential, parallel, sets))
}

pub fn run(opts: &Options) -> Result<()> {
    let p = &opts.params;
    let work = &opts.work_dir;
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let repo = work.join("repo");
    let ktree = work.join("kustomize");

    println!("machine: {}", machine());
    let start = Instant::now();
    let model = gen::generate(p, &repo, (!opts.skip_kustomize).then_some(ktree.as_path()))?;
    println!(
        "generated in {} (seed {}): {}",
        secs(start.elapsed()),
        p.seed,
        gen::summary(&model)
    );
    println!("  repository: {}", repo.display());
    let mut expected = ObjectSets::new();
    for (cluster, objects) in gen::expected(&model) {
        compare::add_objects(&mut expected, &cluster, objects);
    }
    drop(model);

    let flotilla = if opts.flotilla.is_file() {
        Some(bench_flotilla(opts, &repo.to_string_lossy(), work)?)
    } else {
        println!(
            "flotilla: {} not found (build it with `cargo build --release -p reconciler`, or pass \
             --flotilla PATH); timing kustomize only",
            opts.flotilla.display()
        );
        None
    };
    let kustomize = if opts.skip_kustomize {
        None
    } else {
        Some(bench_kustomize(opts, &ktree, &work.join("kustomize-out"))?)
    };

    println!();
    println!("after the runs: {}", load());
    println!("| command | runs | min wall | median wall | median CPU (user+sys) | peak RSS |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let rows = flotilla
        .iter()
        .flat_map(|f| [&f.render, &f.validate])
        .chain(kustomize.iter().flat_map(|(s, par, _)| [s, par]));
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.what,
            r.runs,
            secs(r.min),
            secs(r.median),
            r.cpu.map_or("n/a".into(), secs),
            r.rss
        );
    }
    println!();
    if let (Some(f), Some((seq, par, _))) = (&flotilla, &kustomize) {
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
        println!(
            "ratio kustomize (sequential) / flotilla render, wall: {:.1}x",
            ratio(seq.median, f.render.median)
        );
        println!(
            "ratio kustomize (parallel, 2 jobs) / flotilla render, wall: {:.1}x",
            ratio(par.median, f.render.median)
        );
        if let (Some(k), Some(r)) = (seq.cpu, f.render.cpu) {
            println!("ratio kustomize / flotilla render, CPU time: {:.1}x", ratio(k, r));
        }
    }
    if let Some((_, _, sets)) = &kustomize {
        report_comparison(
            "generator vs kustomize",
            &compare::compare("generator", &expected, "kustomize", sets),
        );
    }
    if let Some(sets) = flotilla.as_ref().and_then(|f| f.sets.as_ref()) {
        report_comparison(
            "generator vs flotilla",
            &compare::compare("generator", &expected, "flotilla", sets),
        );
        if let Some((_, _, k)) = &kustomize {
            report_comparison(
                "flotilla vs kustomize",
                &compare::compare("flotilla", sets, "kustomize", k),
            );
        }
    }
    if let Some(f) = &flotilla {
        let one_s = Duration::from_secs(1);
        let ratio = kustomize
            .as_ref()
            .map(|(seq, _, _)| seq.median.as_secs_f64() / f.render.median.as_secs_f64());
        println!(
            "goals: render < 1 s: {}; validate < 1 s: {}; peak RSS < 1 GiB: {}; >= 20x kustomize: {}",
            verdict(f.render.median < one_s),
            verdict(f.validate.median < one_s),
            f.peak_kib.map_or("n/a", |k| verdict(k < 1024 * 1024)),
            ratio.map_or("n/a", |x| verdict(x >= 20.0)),
        );
    }
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_time_report() {
        let (rss, cpu) = parse_time("Command exited with non-zero status 1\n1034756 2.31 0.52\n");
        assert_eq!(rss, Some(1_034_756));
        assert_eq!(cpu.map(|d| d.as_millis()), Some(2830));
        assert_eq!(parse_time(""), (None, None));
    }
}
