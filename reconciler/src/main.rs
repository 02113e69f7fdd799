//! The `flotilla` binary: parses the command line and dispatches to the `reconciler` library.
//! Nothing else lives here.

use reconciler::{commands, diff, endpoints, Format, RenderFormat, RepoArgs};

use clap::{Parser, Subcommand, ValueEnum};

/// Rendering allocates millions of small JSON nodes; mimalloc is markedly faster at that than glibc's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "flotilla",
    version,
    about = "GitOps for fleets of Kubernetes clusters, with Karmada's policy semantics"
)]
struct Cli {
    /// Log format of the diagnostics log on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Render the per-cluster object sets.
    Render {
        #[command(flatten)]
        repo: RepoArgs,
        /// Only these clusters (repeatable).
        #[arg(long = "cluster")]
        clusters: Vec<String>,
        /// Write one YAML file per object under DIR/<cluster>/.
        #[arg(long, conflicts_with = "format")]
        out: Option<PathBuf>,
        #[arg(long, value_enum)]
        format: Option<RenderFormat>,
    },
    /// Explain why KIND/NAME lands where it lands.
    Explain {
        /// KIND/NAME, e.g. Deployment/nginx or deployment.apps/nginx.
        object: String,
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[command(flatten)]
        repo: RepoArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Check the repository: schemas, placements, overrides on every targeted cluster.
    Validate {
        #[command(flatten)]
        repo: RepoArgs,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Apply every cluster's set with server-side apply (field manager `flotilla`).
    Apply {
        #[command(flatten)]
        repo: RepoArgs,
        /// The kubeconfig holding one context per cluster (default: $KUBECONFIG, ~/.kube/config).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Delete flotilla's objects that left the desired set (ApplySet members only).
        #[arg(long)]
        prune: bool,
        /// Server-side dry run: nothing is persisted.
        #[arg(long)]
        dry_run: bool,
        /// Allow a prune the prune guard would refuse (more than pruneGuard% of a cluster, or everything).
        #[arg(long)]
        allow_mass_prune: bool,
        /// Apply every object, also the members that provably hold their desired body already (skipped
        /// otherwise: same hash annotation, and flotilla still owns every field it set).
        #[arg(long)]
        reapply_all: bool,
        /// Only these clusters (repeatable).
        #[arg(long = "cluster")]
        clusters: Vec<String>,
        /// Name of the ApplySet parent (ConfigMap in flotilla-system); several repositories may manage
        /// one cluster side by side under different names.
        #[arg(long)]
        applyset: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Follow a Git branch: apply each new commit to every cluster, watch every managed object, correct
    /// (or report) drift. Runs until SIGINT/SIGTERM.
    Reconcile {
        /// A local Git repository or a directory inside one (that subtree is the flotilla repository), or
        /// a file://, git://, http(s):// or ssh:// URL (fetched into --cache-dir). Commits are read from
        /// the object database, never checked out.
        #[arg(long)]
        source: String,
        /// https: a file holding the token sent as HTTP basic auth (read at every fetch, so it can be
        /// rotated); default: $FLOTILLA_GIT_TOKEN.
        #[arg(long, value_name = "FILE")]
        git_token_file: Option<PathBuf>,
        /// The user name sent with the token (https) or logged in as (ssh). Default: the URL's user, else
        /// x-access-token (https) or git (ssh).
        #[arg(long, value_name = "NAME")]
        git_user: Option<String>,
        /// https: trust only the CA certificates in this PEM file (default: the system's CAs).
        #[arg(long, value_name = "FILE")]
        git_ca_file: Option<PathBuf>,
        /// ssh: the private key to log in with (OpenSSH or PEM format, no passphrase).
        #[arg(long, value_name = "FILE")]
        ssh_key: Option<PathBuf>,
        /// ssh: the known_hosts file the server's host key must be in (default ~/.ssh/known_hosts).
        #[arg(long, value_name = "FILE")]
        known_hosts: Option<PathBuf>,
        /// The branch to follow (default: the branch HEAD points at; `main` for a URL).
        #[arg(long)]
        branch: Option<String>,
        /// Where a URL is fetched to (default ~/.cache/flotilla/sources/<hash of the URL>).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// How often to look for a new commit (jittered by ±10%): 60s, 500ms, 2m.
        #[arg(long, default_value = "60s", value_parser = reconciler::daemon::parse_duration)]
        interval: std::time::Duration,
        /// The kubeconfig holding one context per cluster (default: $KUBECONFIG, ~/.kube/config).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Correct drift at once (heal) or only report it.
        #[arg(long, value_enum, default_value_t = reconciler::daemon::DriftMode::Heal)]
        drift: reconciler::daemon::DriftMode,
        /// Name of the ApplySet parent (ConfigMap in flotilla-system).
        #[arg(long)]
        applyset: Option<String>,
        /// Delete flotilla's objects that left the desired set (`--prune false` to keep them).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        prune: bool,
        /// Allow a prune the prune guard would refuse.
        #[arg(long)]
        allow_mass_prune: bool,
        /// Serve POST /hooks/git, GET /status, /metrics, /healthz, /readyz on this address (e.g. 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// The shared secret of webhooks (GitHub/Gitea HMAC, GitLab token); without it webhooks get 401.
        #[arg(long, requires = "listen")]
        webhook_secret_file: Option<PathBuf>,
        /// How long a cluster may not answer before it counts as tainted
        /// cluster.karmada.io/unreachable:NoSchedule and placements that can fall back (clusterAffinities,
        /// Divided replicas) move to healthy clusters; `off` disables failover.
        #[arg(long, default_value = "60s", value_parser = reconciler::daemon::parse_grace)]
        failover_grace: reconciler::daemon::Grace,
        /// Local development: apply the working tree of --source (a directory), committed or not, again on
        /// every file change (and every --interval), instead of following a branch.
        #[arg(long, conflicts_with_all = ["branch", "cache_dir", "git_token_file", "git_user", "git_ca_file", "ssh_key", "known_hosts"])]
        watch: bool,
    },
    /// Print a running daemon's status (GET /status) as a table.
    Status {
        /// The daemon's --listen address, as http://HOST:PORT.
        #[arg(long)]
        server: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Show what would change per cluster between two revisions (default: HEAD against the working tree).
    Diff {
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Old revision (default HEAD).
        #[arg(long)]
        from: Option<String>,
        /// New revision (default: the working tree).
        #[arg(long)]
        to: Option<String>,
        /// Only these clusters (repeatable).
        #[arg(long = "cluster")]
        clusters: Vec<String>,
        /// Compare with what the clusters hold, via server-side dry-run apply (uses --to or the working tree).
        #[arg(long, conflicts_with = "from")]
        live: bool,
        /// With --live: the kubeconfig holding one context per cluster.
        #[arg(long, requires = "live")]
        kubeconfig: Option<PathBuf>,
        /// With --live: the ApplySet parent name whose members a prune would delete.
        #[arg(long, requires = "live")]
        applyset: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Print the endpoint map config (cross-cluster routing table) of every cluster, or of one.
    Endpoints {
        #[command(flatten)]
        repo: RepoArgs,
        /// Only this cluster's document (printed alone, ready for `flotilla-agent --config`).
        #[arg(long)]
        cluster: Option<String>,
        #[arg(long, value_enum, default_value_t = RenderFormat::Json)]
        format: RenderFormat,
        /// Fill in live ClusterIPs and endpoints read from the clusters (an unreachable cluster is
        /// named in a warning and follows the offline rules).
        #[arg(long)]
        live: bool,
        /// With --live: the kubeconfig holding each cluster's context [default: $KUBECONFIG, else
        /// ~/.kube/config].
        #[arg(long, requires = "live")]
        kubeconfig: Option<PathBuf>,
    },
}

fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLOTILLA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A closed stderr (a log pipe that went away) must not take the daemon down with a panic.
        .log_internal_errors(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon reports what it does (syncs, drift) at info; one-shot commands only warn. kube's own
    // per-request error line would repeat what flotilla reports per cluster.
    let default_level = match cli.command {
        Command::Reconcile { .. } => "warn,reconciler=info,kube_client::client::builder=off",
        _ => "warn,kube_client::client::builder=off",
    };
    init_logging(cli.log_format, default_level);
    let result = match cli.command {
        Command::Render {
            repo,
            clusters,
            out,
            format,
        } => commands::render(&repo, &clusters, out.as_deref(), format.unwrap_or(RenderFormat::Yaml)),
        Command::Explain {
            object,
            namespace,
            repo,
            format,
        } => commands::explain(&repo, &object, namespace.as_deref(), format),
        Command::Validate { repo, format } => commands::validate(&repo, format),
        Command::Apply {
            repo,
            kubeconfig,
            prune,
            dry_run,
            allow_mass_prune,
            reapply_all,
            clusters,
            applyset,
            format,
        } => commands::apply(
            &repo,
            &commands::ApplyArgs {
                kubeconfig,
                fleet: reconciler::cluster::fleet::FleetArgs {
                    prune,
                    dry_run,
                    allow_mass_prune,
                    reapply_all,
                    clusters,
                    applyset,
                    request_timeout: None,
                    progress: format == Format::Text,
                },
            },
            format,
        ),
        Command::Reconcile {
            source,
            branch,
            interval,
            kubeconfig,
            drift,
            applyset,
            prune,
            allow_mass_prune,
            listen,
            webhook_secret_file,
            cache_dir,
            git_token_file,
            git_user,
            git_ca_file,
            ssh_key,
            known_hosts,
            failover_grace,
            watch,
        } => {
            use reconciler::daemon::source::{GitAuth, Token, TOKEN_ENV};
            let mut opts = reconciler::daemon::Options::new(source);
            opts.git = GitAuth {
                user: git_user,
                token: git_token_file.map(Token::File).or_else(|| Token::from_env(TOKEN_ENV)),
                ca_file: git_ca_file,
                ssh_key,
                known_hosts,
            };
            opts.branch = branch;
            opts.cache_dir = cache_dir;
            opts.interval = interval;
            opts.kubeconfig = kubeconfig;
            opts.drift = drift;
            if let Some(a) = applyset {
                opts.applyset = a;
            }
            opts.prune = prune;
            opts.allow_mass_prune = allow_mass_prune;
            opts.listen = listen;
            opts.webhook_secret = webhook_secret_file;
            opts.failover_grace = failover_grace.0;
            opts.watch = watch;
            commands::reconcile(opts)
        }
        Command::Status { server, format } => commands::status(&server, format),
        Command::Diff {
            repo,
            from,
            to,
            clusters,
            live,
            kubeconfig,
            applyset,
            format,
        } => {
            if live {
                diff::run_live(
                    &repo,
                    to.as_deref(),
                    kubeconfig.as_deref(),
                    &clusters,
                    applyset.as_deref(),
                    format,
                )
            } else {
                diff::run(&repo, from.as_deref(), to.as_deref(), &clusters, format)
            }
        }
        Command::Endpoints {
            repo,
            cluster,
            format,
            live,
            kubeconfig,
        } => endpoints::run(
            &repo,
            &endpoints::EndpointsArgs {
                cluster,
                live,
                kubeconfig,
            },
            format,
        ),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
