//! Developer tasks for flotilla, run as `cargo xtask <command>` (an alias for a release build of this
//! crate, see `.cargo/config.toml`):
//!
//! - `gen-repo`: a deterministic synthetic GitOps repository (and its kustomize twin) of any size;
//! - `peers`: builds the peer tools used for side-by-side numbers (kustomize) into the cache;
//! - `bench-render`: times `flotilla render`/`validate` against `kustomize build` on the same input and
//!   checks that both produce the same objects;
//! - `bench-drift`, `bench-reconcile`, `bench-push`: the reconcile daemon on local kube-apiservers: drift
//!   heal latency, memory while holding many objects on several clusters, `git push` to applied;
//! - `bench-apply`: times `flotilla apply` against `kubectl apply --server-side` on a real local
//!   kube-apiserver (same objects, fresh namespaces, cold and no-op);
//! - `testbins`: builds kube-apiserver and etcd for the cluster tests, and kubectl for `bench-apply`
//!   (once per machine);
//! - `clusters up|down`: local clusters of the test harness (`flotilla-tests`), left running.
//!
//! This is a tool, not a library: errors are `anyhow` with context, and output goes to stdout.

mod bench;
mod bench_apply;
mod bench_push;
mod bench_reconcile;
mod clusters;
mod compare;
mod gen;
mod peers;
mod prng;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "xtask", about = "flotilla developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

/// The size of the synthetic fleet.
#[derive(Args)]
struct Size {
    /// number of resource templates
    #[arg(long, default_value_t = 10_000)]
    templates: usize,
    /// number of PropagationPolicies (= label groups; each template is selected by exactly one)
    #[arg(long, default_value_t = 200)]
    propagation_policies: usize,
    /// number of OverridePolicies
    #[arg(long, default_value_t = 200)]
    override_policies: usize,
    /// number of member clusters
    #[arg(long, default_value_t = 100)]
    clusters: usize,
    /// PRNG seed (same seed and sizes, same files)
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl Size {
    fn params(&self) -> gen::Params {
        gen::Params {
            templates: self.templates,
            propagation_policies: self.propagation_policies,
            override_policies: self.override_policies,
            clusters: self.clusters,
            seed: self.seed,
        }
    }
}

#[derive(Subcommand)]
enum ClustersCmd {
    /// Start etcd and N kube-apiservers on loopback and leave them running; prints the contexts and
    /// the kubeconfig.
    Up {
        /// number of clusters
        #[arg(long, default_value_t = 3)]
        count: usize,
        /// cluster and context names, comma-separated (default: cluster-1..cluster-N)
        #[arg(long, value_delimiter = ',')]
        names: Vec<String>,
        /// also write the kubeconfig here (never over a file the harness did not write)
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
    },
    /// Stop the clusters `clusters up` started and remove their files.
    Down,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write a synthetic GitOps repository (and optionally the equivalent kustomize tree).
    GenRepo {
        #[command(flatten)]
        size: Size,
        /// the repository directory (replaced if gen-repo wrote it before; refused if foreign and not empty)
        #[arg(long)]
        out: PathBuf,
        /// also write the equivalent kustomize tree (base/ and overlays/<cluster>/) here
        #[arg(long)]
        kustomize: Option<PathBuf>,
    },
    /// Build the peer tools (kustomize) from the Go module proxy into the cache and print their paths.
    Peers {
        /// kustomize release to build (default: the newest v5 the local Go toolchain can build)
        #[arg(long)]
        kustomize_version: Option<String>,
    },
    /// Build kube-apiserver and etcd for the cluster tests, and kubectl for bench-apply, into the cache
    /// (once per machine) and print the directory.
    Testbins {
        /// also build kube-controller-manager
        #[arg(long)]
        with_controller_manager: bool,
    },
    /// Local clusters of the test harness, for a developer.
    Clusters {
        #[command(subcommand)]
        action: ClustersCmd,
    },
    /// Drift heal latency of `flotilla reconcile` on a local kube-apiserver: out-of-band edits of
    /// managed objects, one at a time and all at once, p50/p99.
    BenchDrift {
        #[arg(long, default_value_t = 100)]
        edits: usize,
        /// Objects managed (ConfigMaps, Secrets, Services, ServiceAccounts, Deployments).
        #[arg(long, default_value_t = 400)]
        objects: usize,
        /// The flotilla binary (default: target/release/flotilla).
        #[arg(long)]
        flotilla: Option<PathBuf>,
    },
    /// Time from `git push` to applied on three local clusters, with a signed webhook and with polling.
    BenchPush {
        #[arg(long, default_value_t = 50)]
        pushes: usize,
        /// The polling interval of the polling-only run.
        #[arg(long, default_value = "2s")]
        poll_interval: String,
        /// Which runs: webhook, polling, or both (webhook first).
        #[arg(long, value_enum, default_value_t = bench_push::Mode::Both)]
        mode: bench_push::Mode,
        #[arg(long)]
        flotilla: Option<PathBuf>,
    },
    /// Memory of `flotilla reconcile` holding `--objects` objects on each of `--clusters` local clusters.
    BenchReconcile {
        #[arg(long, default_value_t = 10_000)]
        objects: usize,
        #[arg(long, default_value_t = 3)]
        clusters: usize,
        #[arg(long)]
        flotilla: Option<PathBuf>,
    },
    /// Benchmark `flotilla render`/`validate` against `kustomize build` on a generated repository.
    BenchRender {
        #[command(flatten)]
        size: Size,
        /// timed runs of each flotilla command (min and median are reported)
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// timed runs of each kustomize variant (sequential, 2 jobs)
        #[arg(long, default_value_t = 1)]
        kustomize_runs: usize,
        /// the flotilla binary (default: target/release/flotilla of the workspace)
        #[arg(long)]
        flotilla: Option<PathBuf>,
        /// where the repository, kustomize tree and outputs go (default: target/bench)
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// time flotilla only
        #[arg(long)]
        skip_kustomize: bool,
    },
    /// Benchmark `flotilla apply` against `kubectl apply --server-side` on a local kube-apiserver.
    BenchApply {
        /// namespaced objects per apply (a fixed mix of kinds; the Namespaces come on top)
        #[arg(long, default_value_t = 2000)]
        objects: usize,
        /// namespaces the objects are spread over
        #[arg(long, default_value_t = 10)]
        namespaces: usize,
        /// timed runs of each tool (min and median are reported)
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// PRNG seed of the object contents
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// the flotilla binary (default: target/release/flotilla of the workspace)
        #[arg(long)]
        flotilla: Option<PathBuf>,
        /// where repositories, kubectl's input and outputs go (default: target/bench-apply; replaced)
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
}

/// The workspace root (this crate's parent directory).
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `target/release/flotilla` of the workspace, or of `$CARGO_TARGET_DIR` when that holds one.
fn default_flotilla_in(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .filter(|d| d.join("release/flotilla").is_file())
        .unwrap_or_else(|| root.join("target"))
        .join("release/flotilla")
}

fn default_flotilla() -> PathBuf {
    default_flotilla_in(&workspace_root())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::GenRepo { size, out, kustomize } => {
            let model = gen::generate(&size.params(), &out, kustomize.as_deref())?;
            println!("{}", gen::summary(&model));
            println!("repository: {}", out.display());
            if let Some(k) = kustomize {
                println!("kustomize tree: {} (overlays/<cluster>)", k.display());
            }
        }
        Cmd::Peers { kustomize_version } => {
            let bin = peers::ensure_kustomize(kustomize_version.as_deref())?;
            eprintln!("kustomize: {}", peers::kustomize_version(&bin)?);
            println!("{}", bin.display());
        }
        Cmd::Testbins {
            with_controller_manager,
        } => clusters::testbins(with_controller_manager)?,
        Cmd::Clusters { action } => match action {
            ClustersCmd::Up {
                count,
                names,
                kubeconfig,
            } => clusters::up(count, names, kubeconfig)?,
            ClustersCmd::Down => clusters::down()?,
        },
        Cmd::BenchDrift {
            edits,
            objects,
            flotilla,
        } => bench_reconcile::drift(&bench_reconcile::DriftOptions {
            flotilla: flotilla.unwrap_or_else(default_flotilla),
            edits,
            objects,
        })?,
        Cmd::BenchPush {
            pushes,
            poll_interval,
            mode,
            flotilla,
        } => bench_push::push(&bench_push::PushOptions {
            flotilla: flotilla.unwrap_or_else(default_flotilla),
            pushes,
            poll_interval,
            mode,
        })?,
        Cmd::BenchReconcile {
            objects,
            clusters,
            flotilla,
        } => bench_reconcile::memory(&bench_reconcile::MemoryOptions {
            flotilla: flotilla.unwrap_or_else(default_flotilla),
            objects,
            clusters,
        })?,
        Cmd::BenchApply {
            objects,
            namespaces,
            runs,
            seed,
            flotilla,
            work_dir,
        } => {
            let root = workspace_root();
            bench_apply::run(&bench_apply::Options {
                objects,
                namespaces: namespaces.max(1),
                runs: runs.max(1),
                seed,
                flotilla: flotilla.unwrap_or_else(|| default_flotilla_in(&root)),
                work_dir: work_dir.unwrap_or_else(|| root.join("target/bench-apply")),
            })?;
        }
        Cmd::BenchRender {
            size,
            runs,
            kustomize_runs,
            flotilla,
            work_dir,
            skip_kustomize,
        } => {
            let root = workspace_root();
            bench::run(&bench::Options {
                params: size.params(),
                runs: runs.max(1),
                kustomize_runs,
                flotilla: flotilla.unwrap_or_else(|| default_flotilla_in(&root)),
                work_dir: work_dir.unwrap_or_else(|| root.join("target/bench")),
                skip_kustomize,
            })?;
        }
    }
    Ok(())
}
