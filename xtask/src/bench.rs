//! `cargo xtask bench-render`: generates a synthetic repository and its kustomize twin, times
//! `flotilla render`/`flotilla validate` against `kustomize build` of every overlay, measures peak RSS
//! with `/usr/bin/time`, and checks that all three renderings (the generator's own expectation,
//! flotilla, kustomize) hold the same objects per cluster.

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

/// One measured process: wall time, peak RSS in KiB (when `/usr/bin/time` is there), exit code.
struct Sample {
    wall: Duration,
    rss_kib: Option<u64>,
    code: Option<i32>,
}

/// Runs `program args` with stdout to `stdout` (a file, or /dev/null), measuring it.
fn measure(program: &Path, args: &[&str], stdout: Option<&Path>, scratch: &Path) -> Result<Sample> {
    let use_time = Path::new(TIME).is_file();
    let rss_file = scratch.with_extension(format!("rss{}", std::process::id()));
    let mut cmd = if use_time {
        let mut c = Command::new(TIME);
        c.arg("-f").arg("%M").arg("-o").arg(&rss_file).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).stdin(Stdio::null()).stderr(Stdio::piped());
    match stdout {
        Some(path) => {
            cmd.stdout(File::create(path).with_context(|| format!("creating {}", path.display()))?)
        }
        None => cmd.stdout(Stdio::null()),
    };
    let start = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    let wall = start.elapsed();
    let rss_kib = if use_time {
        let text = std::fs::read_to_string(&rss_file)
            .with_context(|| format!("reading {}", rss_file.display()))?;
        let _ = std::fs::remove_file(&rss_file);
        text.lines().last().and_then(|l| l.trim().parse().ok())
    } else {
        None
    };
    let code = out.status.code();
    if code != Some(0) {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.starts_with("Command exited"))
            .take(5)
            .collect();
        eprintln!(
            "  {} {} exited with {:?}: {}",
            program.display(),
            args.join(" "),
            code,
            tail.join(" | ")
        );
    }
    Ok(Sample {
        wall,
        rss_kib,
        code,
    })
}

fn min_median(samples: &[Duration]) -> (Duration, Duration) {
    let mut s = samples.to_vec();
    s.sort_unstable();
    let min = s.first().copied().unwrap_or_default();
    let median = s.get(s.len() / 2).copied().unwrap_or_default();
    (min, median)
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("n/a".into(), |k| format!("{:.0} MiB", k as f64 / 1024.0))
}

/// Timings of one flotilla command over several runs.
struct Series {
    walls: Vec<Duration>,
    rss_kib: Option<u64>,
    codes: Vec<Option<i32>>,
}

fn series(program: &Path, args: &[&str], runs: usize, scratch: &Path) -> Result<Series> {
    let mut s = Series {
        walls: Vec::new(),
        rss_kib: None,
        codes: Vec::new(),
    };
    for _ in 0..runs {
        let sample = measure(program, args, None, scratch)?;
        s.walls.push(sample.wall);
        s.rss_kib = s.rss_kib.max(sample.rss_kib);
        s.codes.push(sample.code);
    }
    Ok(s)
}

/// `kustomize build` of every overlay with `jobs` workers; returns (wall total, max RSS, failures).
fn kustomize_all(
    bin: &Path,
    overlays: &[(String, PathBuf)],
    out_dir: &Path,
    jobs: usize,
) -> Result<(Duration, Option<u64>, usize)> {
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
    let mut rss = None;
    let mut failures = 0;
    for r in results {
        let s = r?;
        rss = rss.max(s.rss_kib);
        if s.code != Some(0) {
            failures += 1;
        }
    }
    Ok((wall, rss, failures))
}

fn report_comparison(label: &str, c: &Comparison) {
    println!(
        "same output, {label}: {} clusters, {} objects, {} mismatches{}",
        c.clusters,
        c.objects,
        c.mismatches,
        if c.mismatches == 0 {
            " (identical)"
        } else {
            ""
        }
    );
    for e in &c.examples {
        println!("    {e}");
    }
}

fn machine() -> String {
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
    format!("{cpus} cores, {model}")
}

pub fn run(opts: &Options) -> Result<()> {
    let p = &opts.params;
    let work = &opts.work_dir;
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let repo = work.join("repo");
    let ktree = work.join("kustomize");
    let kout = work.join("kustomize-out");
    let flotilla_json = work.join("flotilla-render.json");
    let scratch = work.join("measure");

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

    let repo_s = repo.to_string_lossy().to_string();
    let mut rows: Vec<(String, usize, String, String, String)> = Vec::new();
    let mut render_median = None;
    let mut validate_median = None;
    let mut flotilla_sets = None;
    let mut flotilla_peak = None;

    if opts.flotilla.is_file() {
        let bin = &opts.flotilla;
        println!("flotilla: {}", bin.display());
        // untimed warm-up that keeps the output for the comparison
        let render_args = ["render", "--repo", &repo_s, "--format", "json"];
        let first = measure(bin, &render_args, Some(&flotilla_json), &scratch)?;
        match compare::read_flotilla(&flotilla_json) {
            Ok((sets, diags)) => {
                println!(
                    "  render exit code {:?}; diagnostics: {} errors, {} warnings, {} infos",
                    first.code, diags.errors, diags.warnings, diags.infos
                );
                for e in &diags.first_errors {
                    println!("    {e}");
                }
                flotilla_sets = Some(sets);
            }
            Err(e) => println!("  cannot read flotilla's render output: {e:#}"),
        }
        let render = series(bin, &render_args, opts.runs, &scratch)?;
        let (min, med) = min_median(&render.walls);
        render_median = Some(med);
        flotilla_peak = flotilla_peak.max(render.rss_kib);
        rows.push((
            "flotilla render --format json".into(),
            opts.runs,
            secs(min),
            secs(med),
            mib(render.rss_kib),
        ));
        let validate = series(bin, &["validate", "--repo", &repo_s], opts.runs, &scratch)?;
        let (min, med) = min_median(&validate.walls);
        validate_median = Some(med);
        flotilla_peak = flotilla_peak.max(validate.rss_kib);
        rows.push((
            "flotilla validate".into(),
            opts.runs,
            secs(min),
            secs(med),
            mib(validate.rss_kib),
        ));
        let bad: Vec<_> = validate.codes.iter().filter(|c| **c != Some(0)).collect();
        if !bad.is_empty() {
            println!("  validate exit codes: {:?} (expected 0)", validate.codes);
        }
    } else {
        println!(
            "flotilla: {} not found (build it with `cargo build --release -p reconciler`, or pass \
             --flotilla PATH); timing kustomize only",
            opts.flotilla.display()
        );
    }

    let mut kustomize_seq = None;
    let mut kustomize_par = None;
    let mut kustomize_sets = None;
    if !opts.skip_kustomize {
        let bin = peers::ensure_kustomize(None)?;
        println!(
            "kustomize: {} ({})",
            bin.display(),
            peers::kustomize_version(&bin)?
        );
        std::fs::create_dir_all(&kout).with_context(|| format!("creating {}", kout.display()))?;
        let overlays_dir = ktree.join("overlays");
        let mut overlays: Vec<(String, PathBuf)> = std::fs::read_dir(&overlays_dir)
            .with_context(|| format!("reading {}", overlays_dir.display()))?
            .map(|e| {
                let e = e.with_context(|| format!("reading {}", overlays_dir.display()))?;
                Ok((e.file_name().to_string_lossy().to_string(), e.path()))
            })
            .collect::<Result<_>>()?;
        overlays.sort();
        for (label, jobs) in [("sequential", 1usize), ("parallel, 2 jobs", 2)] {
            let mut walls = Vec::new();
            let mut rss = None;
            for _ in 0..opts.kustomize_runs.max(1) {
                let (wall, r, failures) = kustomize_all(&bin, &overlays, &kout, jobs)?;
                if failures > 0 {
                    bail!("{failures} kustomize builds failed (see above)");
                }
                walls.push(wall);
                rss = rss.max(r);
            }
            let (min, med) = min_median(&walls);
            if jobs == 1 {
                kustomize_seq = Some(med);
            } else {
                kustomize_par = Some(med);
            }
            rows.push((
                format!("kustomize build, {} overlays, {label}", overlays.len()),
                walls.len(),
                secs(min),
                secs(med),
                format!("{} (per process)", mib(rss)),
            ));
        }
        let mut sets = ObjectSets::new();
        for (name, _) in &overlays {
            compare::read_kustomize(&mut sets, name, &kout.join(format!("{name}.yaml")))?;
        }
        kustomize_sets = Some(sets);
    }

    println!();
    println!("| command | runs | min | median | peak RSS |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (what, runs, min, med, rss) in &rows {
        println!("| {what} | {runs} | {min} | {med} | {rss} |");
    }
    println!();
    if let (Some(k), Some(r)) = (kustomize_seq, render_median) {
        println!(
            "ratio kustomize (sequential) / flotilla render: {:.1}x",
            k.as_secs_f64() / r.as_secs_f64()
        );
    }
    if let (Some(k), Some(r)) = (kustomize_par, render_median) {
        println!(
            "ratio kustomize (parallel, 2 jobs) / flotilla render: {:.1}x",
            k.as_secs_f64() / r.as_secs_f64()
        );
    }
    if let Some(sets) = &kustomize_sets {
        report_comparison(
            "generator vs kustomize",
            &compare::compare("generator", &expected, "kustomize", sets),
        );
    }
    if let Some(sets) = &flotilla_sets {
        report_comparison(
            "generator vs flotilla",
            &compare::compare("generator", &expected, "flotilla", sets),
        );
        if let Some(k) = &kustomize_sets {
            report_comparison(
                "flotilla vs kustomize",
                &compare::compare("flotilla", sets, "kustomize", k),
            );
        }
    }
    if let (Some(r), Some(v)) = (render_median, validate_median) {
        let one_s = Duration::from_secs(1);
        let gib = 1024 * 1024;
        let ratio = kustomize_seq.map(|k| k.as_secs_f64() / r.as_secs_f64());
        println!(
            "goals: render < 1 s: {}; validate < 1 s: {}; peak RSS < 1 GiB: {}; >= 20x kustomize: {}",
            verdict(r < one_s),
            verdict(v < one_s),
            flotilla_peak.map_or("n/a", |k| verdict(k < gib)),
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
