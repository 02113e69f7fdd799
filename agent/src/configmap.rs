//! The ConfigMap source: the document read from the API server (`--kubeconfig` / `--configmap`).
//!
//! A watch on the one ConfigMap (field selector `metadata.name`, so the agent's RBAC can be limited
//! to that name) runs on a thread of its own with a small tokio runtime; every time the ConfigMap is
//! seen (the initial list, each change, each re-list after a broken watch) the value of its key is
//! sent to the agent's loop, which judges identical content once. The watch retries with backoff
//! when the API server is unreachable; routing does not depend on it.

use anyhow::{anyhow, Context, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};

/// Where the document is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigMapSource {
    /// `None`: in-cluster configuration (the pod's service account), else `$KUBECONFIG` / `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub namespace: String,
    pub name: String,
    pub key: String,
}

impl ConfigMapSource {
    /// `namespace/name` as the `--configmap` flag spells it.
    pub fn parse_ref(s: &str) -> Option<(String, String)> {
        let (ns, name) = s.split_once('/')?;
        (!ns.is_empty() && !name.is_empty() && !name.contains('/')).then(|| (ns.to_string(), name.to_string()))
    }

    /// How the status names the source.
    pub fn describe(&self) -> String {
        format!("configmap {}/{} key {}", self.namespace, self.name, self.key)
    }
}

/// Starts the watch; returns once the client is configured (an error then is fatal: a bad
/// kubeconfig), with the receiving end of the contents.
pub fn spawn(source: ConfigMapSource) -> Result<Receiver<Vec<u8>>> {
    let (contents, rx) = channel();
    let (ready, started) = channel();
    std::thread::Builder::new()
        .name("flotilla-agent-configmap".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready.send(Err(anyhow!("starting the watch runtime: {e}")));
                    return;
                }
            };
            runtime.block_on(async move {
                match client(&source).await {
                    Ok(client) => {
                        let _ = ready.send(Ok(()));
                        watch(client, &source, contents).await;
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                    }
                }
            });
        })
        .context("starting the ConfigMap watch thread")?;
    started.recv().context("the ConfigMap watch thread ended")??;
    Ok(rx)
}

async fn client(source: &ConfigMapSource) -> Result<Client> {
    let config = match &source.kubeconfig {
        Some(path) => {
            let kubeconfig =
                Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
            let options = KubeConfigOptions {
                context: source.context.clone(),
                ..KubeConfigOptions::default()
            };
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .with_context(|| format!("kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no --kubeconfig, and neither an in-cluster service account nor a kubeconfig was found")?,
    };
    Client::try_from(config).context("creating the Kubernetes client")
}

async fn watch(client: Client, source: &ConfigMapSource, contents: Sender<Vec<u8>>) {
    let api: Api<ConfigMap> = Api::namespaced(client, &source.namespace);
    let selector = format!("metadata.name={}", source.name);
    let mut stream = watcher::watcher(api, watcher::Config::default().fields(&selector))
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(cm) => match value(&cm, &source.key) {
                Some(bytes) => {
                    if contents.send(bytes).is_err() {
                        return;
                    }
                }
                None => tracing::warn!(
                    configmap = %format!("{}/{}", source.namespace, source.name),
                    key = %source.key,
                    "the ConfigMap has no such key"
                ),
            },
            Err(e) => tracing::warn!(error = %e, "watching the ConfigMap (retrying)"),
        }
    }
}

/// The key's value from `data` (text) or `binaryData`.
fn value(cm: &ConfigMap, key: &str) -> Option<Vec<u8>> {
    if let Some(text) = cm.data.as_ref().and_then(|d| d.get(key)) {
        return Some(text.as_bytes().to_vec());
    }
    cm.binary_data.as_ref().and_then(|d| d.get(key)).map(|b| b.0.clone())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn configmap_references_and_values() {
        assert_eq!(
            ConfigMapSource::parse_ref("flotilla-system/endpoint-map"),
            Some(("flotilla-system".into(), "endpoint-map".into()))
        );
        assert_eq!(ConfigMapSource::parse_ref("endpoint-map"), None);
        assert_eq!(ConfigMapSource::parse_ref("a/b/c"), None);
        assert_eq!(ConfigMapSource::parse_ref("/b"), None);
        let mut cm = ConfigMap::default();
        assert_eq!(value(&cm, "k"), None);
        cm.binary_data = Some([("k".to_string(), k8s_openapi::ByteString(b"bin".to_vec()))].into());
        assert_eq!(value(&cm, "k"), Some(b"bin".to_vec()));
        cm.data = Some([("k".to_string(), "text".to_string())].into());
        assert_eq!(value(&cm, "k"), Some(b"text".to_vec()));
    }
}
