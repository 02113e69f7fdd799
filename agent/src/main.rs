//! `flotilla-agent`: argument parsing and logging only; the work is in the `agent` library.

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// flotilla's node agent: redirects connections to multi-cluster service VIPs in the kernel
/// (cgroup/connect4, sendmsg4, recvmsg4, getpeername4) from the endpoint map config it is given.
#[derive(Debug, Parser)]
#[command(name = "flotilla-agent", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Detach the programs and remove the pinned maps under --pin-dir (uninstall).
    Detach {
        #[arg(long, default_value = "/sys/fs/bpf/flotilla")]
        pin_dir: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The endpoint map config (JSON, as `flotilla endpoints --cluster NAME` prints it); watched.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["configmap", "kubeconfig"])]
    config: Option<PathBuf>,
    /// Read the document from this ConfigMap (NAMESPACE/NAME) through the API server instead
    /// [default with --kubeconfig: flotilla-system/endpoint-map].
    #[arg(long, value_name = "NAMESPACE/NAME")]
    configmap: Option<String>,
    /// The ConfigMap key holding the document.
    #[arg(long, value_name = "KEY", default_value = "endpoint-map.json")]
    configmap_key: String,
    /// Kubeconfig for the ConfigMap source [default: the in-cluster service account, else
    /// $KUBECONFIG or ~/.kube/config].
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context [default: its current context].
    #[arg(long, value_name = "NAME", requires = "kubeconfig")]
    context: Option<String>,
    /// cgroup v2 directory to attach to [default: /sys/fs/cgroup, or the cgroup v2 mount when
    /// /sys/fs/cgroup is not one].
    #[arg(long, value_name = "DIR")]
    cgroup: Option<PathBuf>,
    /// Directory on a BPF filesystem for the pinned maps and links.
    #[arg(long, value_name = "DIR", default_value = "/sys/fs/bpf/flotilla")]
    pin_dir: PathBuf,
    /// Refuse documents for any other cluster.
    #[arg(long, value_name = "NAME")]
    cluster: Option<String>,
    /// Write the status (JSON) to this file after every change.
    #[arg(long, value_name = "FILE")]
    status_file: Option<PathBuf>,
    /// Serve GET /status, /metrics and /healthz on this address (e.g. 127.0.0.1:9477).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Re-read the config this often even without a file event (seconds).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    poll_interval: f64,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.run.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "flotilla-agent failed");
            eprintln!("flotilla-agent: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Some(Command::Detach { pin_dir }) = cli.command {
        let n = agent::datapath::detach(&pin_dir)?;
        println!(
            "removed {n} pins under {}; the programs are detached",
            pin_dir.display()
        );
        return Ok(());
    }
    let args = cli.run;
    let source = match (args.config, args.configmap, args.kubeconfig) {
        (Some(path), None, None) => agent::Source::File(path),
        (None, None, None) => {
            anyhow::bail!("say where documents come from: --config FILE, or --configmap NAMESPACE/NAME")
        }
        (_, configmap, kubeconfig) => {
            let reference = configmap.unwrap_or_else(|| "flotilla-system/endpoint-map".to_string());
            let Some((namespace, name)) = agent::configmap::ConfigMapSource::parse_ref(&reference) else {
                anyhow::bail!("--configmap takes NAMESPACE/NAME, not `{reference}`");
            };
            agent::Source::ConfigMap(agent::configmap::ConfigMapSource {
                kubeconfig,
                context: args.context,
                namespace,
                name,
                key: args.configmap_key,
            })
        }
    };
    if !(args.poll_interval.is_finite() && args.poll_interval > 0.0) {
        anyhow::bail!("--poll-interval must be a positive number of seconds");
    }
    agent::run(&agent::RunOptions {
        source,
        cgroup: args.cgroup,
        pin_dir: args.pin_dir,
        cluster: args.cluster,
        status_file: args.status_file,
        listen: args.listen,
        poll: Duration::from_secs_f64(args.poll_interval),
    })
}
