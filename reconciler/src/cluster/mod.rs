//! Member clusters: connecting through a kubeconfig, applying rendered sets, pruning.
//!
//! One [`Member`] per inventory cluster, reached through the kubeconfig context its `Cluster` names
//! (`spec.kubeconfigContext`, default the cluster's name). A cluster that cannot be reached is a
//! per-cluster failure: the others proceed.

pub mod apply;
pub mod applyset;
pub mod changeset;
pub mod fleet;
pub mod live;
pub mod unchanged;

use anyhow::{Context, Result};
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::Path;
use std::time::Duration;

/// How long a request to a member cluster may wait for the API server's next bytes before it fails.
/// kube-apiserver ends ordinary requests itself after a minute (`--request-timeout`); without a
/// limit of our own, a server that stops answering without closing the connection (frozen, or its
/// host gone) would hold the apply of the whole fleet forever. Connecting (TLS included) is bounded
/// by the same value or kube's 30 s, whichever is shorter.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A member cluster with its client.
#[derive(Clone)]
pub struct Member {
    pub name: String,
    pub context: String,
    pub client: kube::Client,
}

/// Reads the kubeconfig (the given file, else `$KUBECONFIG`, else `~/.kube/config`).
pub fn read_kubeconfig(path: Option<&Path>) -> Result<Kubeconfig> {
    match path {
        Some(p) => Kubeconfig::read_from(p).with_context(|| format!("reading kubeconfig {}", p.display())),
        None => Kubeconfig::read().context("reading the kubeconfig ($KUBECONFIG or ~/.kube/config)"),
    }
}

/// Builds a client for one context, with [`REQUEST_TIMEOUT`]. Connection problems surface on first
/// use, per cluster.
pub async fn client_for(kubeconfig: &Kubeconfig, context: &str) -> Result<kube::Client> {
    client_with_timeout(kubeconfig, context, REQUEST_TIMEOUT).await
}

/// [`client_for`] with another request timeout (see [`REQUEST_TIMEOUT`]).
pub async fn client_with_timeout(kubeconfig: &Kubeconfig, context: &str, timeout: Duration) -> Result<kube::Client> {
    if !kubeconfig.contexts.iter().any(|c| c.name == context) {
        anyhow::bail!("the kubeconfig has no context `{context}`");
    }
    let opts = KubeConfigOptions {
        context: Some(context.to_string()),
        ..KubeConfigOptions::default()
    };
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig.clone(), &opts)
        .await
        .with_context(|| format!("kubeconfig context `{context}`"))?;
    config.read_timeout = Some(timeout);
    config.connect_timeout = Some(config.connect_timeout.map_or(timeout, |c| c.min(timeout)));
    kube::Client::try_from(config).with_context(|| format!("client for context `{context}`"))
}
