//! `flotilla endpoints`: the endpoint map config of every cluster (or one), offline or with live data.
//!
//! Offline the documents hold what Git determines; with `--live` the Services and EndpointSlices of the
//! exported services are read from the clusters first ([`live`]), and a cluster that cannot be reached
//! is named in a warning and left unknown (the offline rules apply to it). [`watch`] is the daemon's
//! watched variant of the same inputs.
//!
//! Output: with `--cluster NAME`, exactly that cluster's document (canonical JSON, or YAML), ready to
//! hand to `flotilla-agent --config`; without it, `{"clusters": {"<name>": <document>, ...},
//! "diagnostics": [...]}` (JSON) or one YAML document per cluster. Diagnostics go to stderr unless
//! they are part of the JSON object. Exit 1 when the commit has error diagnostics (the documents
//! are still printed), 2 on usage errors.

pub mod live;
pub mod watch;

use crate::{print, source, RenderFormat, RepoArgs};
use anyhow::{bail, Context, Result};
use ebpf::{BuildOptions, EndpointMapConfig, Live};
use render::{Emit, RenderOptions};
use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

/// Options of `flotilla endpoints` beyond the repository.
#[derive(Debug, Clone, Default)]
pub struct EndpointsArgs {
    /// Only this cluster's document.
    pub cluster: Option<String>,
    /// Read ClusterIPs and endpoints from the clusters.
    pub live: bool,
    /// With `live`: the kubeconfig (default `$KUBECONFIG`, else `~/.kube/config`).
    pub kubeconfig: Option<std::path::PathBuf>,
}

/// Reads the live inputs of the wanted documents from every cluster that has some; warns about the
/// clusters that cannot be read (they stay unknown).
fn read_live(repo: &render::repo::Repo<'_>, plan: &ebpf::plan::Plan, e: &EndpointsArgs) -> Result<Live> {
    let kubeconfig = crate::cluster::read_kubeconfig(e.kubeconfig.as_deref())?;
    let contexts: BTreeMap<String, String> = repo
        .clusters
        .iter()
        .map(|c| (c.name.clone(), c.context().to_string()))
        .collect();
    let wanted = live::wanted(plan, e.cluster.as_deref());
    let runtime = crate::runtime()?;
    let (live, errors) = runtime.block_on(live::read_all(&kubeconfig, &contexts, &wanted, live::READ_TIMEOUT));
    for err in &errors {
        eprintln!(
            "warning: {}\nwarning: {} is left unknown: its backends follow the offline rules (as without --live)",
            err.chain(),
            err.cluster()
        );
    }
    Ok(live)
}

/// `flotilla endpoints`.
pub fn run(args: &RepoArgs, e: &EndpointsArgs, format: RenderFormat) -> Result<ExitCode> {
    if e.kubeconfig.is_some() && !e.live {
        bail!("--kubeconfig is only used with --live");
    }
    let snapshot = source::read(&args.repo, args.rev.as_deref())?;
    let repo = render::repo::load(&snapshot);
    if let Some(c) = &e.cluster {
        if repo.cluster(c).is_none() {
            let known: Vec<&str> = repo.clusters.iter().map(|c| c.name.as_str()).collect();
            bail!("unknown cluster `{c}` (the inventory has: {})", known.join(", "));
        }
    }
    let opts = RenderOptions {
        emit: Emit::Nothing,
        ..RenderOptions::default()
    };
    let (output, plan) = crate::routing::render(&repo, &opts);
    let version = match &args.rev {
        Some(rev) => ebpf::next_version(source::commit_time(&args.repo, rev)?, None),
        None => 0,
    };
    let build = BuildOptions {
        version,
        git_revision: snapshot.revision.clone(),
    };
    let live = if e.live {
        read_live(&repo, &plan, e)?
    } else {
        Live::default()
    };
    let docs: Vec<EndpointMapConfig> = match &e.cluster {
        Some(c) => match ebpf::build(&plan, c, &live, &build) {
            Some(doc) => vec![doc?],
            None => bail!("unknown cluster `{c}`"),
        },
        None => ebpf::build_all(&plan, &live, &build)?,
    };
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let mut diagnostics_printed = false;
    match (format, &e.cluster) {
        (RenderFormat::Json, Some(_)) => {
            for d in &docs {
                w.write_all(&d.to_canonical_json()?)?;
                writeln!(w)?;
            }
        }
        (RenderFormat::Json, None) => {
            w.write_all(b"{\"clusters\":{")?;
            for (i, d) in docs.iter().enumerate() {
                if i > 0 {
                    w.write_all(b",")?;
                }
                serde_json::to_writer(&mut w, &d.cluster)?;
                w.write_all(b":")?;
                w.write_all(&d.to_canonical_json()?)?;
            }
            w.write_all(b"},\"diagnostics\":")?;
            serde_json::to_writer(&mut w, &output.diagnostics)?;
            w.write_all(b"}\n")?;
            diagnostics_printed = true;
        }
        (RenderFormat::Yaml, _) => {
            for d in &docs {
                writeln!(w, "# cluster: {} ({} frontends)", d.cluster, d.frontends.len())?;
                writeln!(w, "---")?;
                w.write_all(
                    serde_yaml::to_string(d)
                        .context("serialising a document as YAML")?
                        .as_bytes(),
                )?;
            }
        }
    }
    w.flush().context("writing the documents")?;
    drop(w);
    if !diagnostics_printed {
        print::diagnostics_text(&output.diagnostics);
    }
    Ok(if output.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
