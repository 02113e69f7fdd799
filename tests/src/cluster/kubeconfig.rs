//! The harness's kubeconfig: one cluster, user and context per member cluster, certificates
//! embedded, so the file works on its own (`kubectl --kubeconfig`, `KUBECONFIG=`), and the
//! `kube::Config`s made from it.

use super::pki::Identity;
use anyhow::{Context, Result};
use base64::Engine as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{json, Value};
use std::path::Path;

/// The first line of every kubeconfig the harness writes; a file that starts with it may be
/// overwritten by the harness (anything else is refused, see [`write`]).
pub const MARKER: &str = "# written by flotilla's cluster harness (tests/src/cluster); safe to delete";

/// One entry of the kubeconfig.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// Cluster and context name.
    pub name: &'a str,
    /// `https://127.0.0.1:<port>`.
    pub server: &'a str,
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The kubeconfig document for `entries`, all authenticating as `user` with `identity`.
pub fn document(entries: &[Entry<'_>], ca_pem: &str, user: &str, identity: &Identity) -> Value {
    let clusters: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "name": e.name,
                "cluster": {"server": e.server, "certificate-authority-data": b64(ca_pem)},
            })
        })
        .collect();
    let contexts: Vec<Value> = entries
        .iter()
        .map(|e| json!({"name": e.name, "context": {"cluster": e.name, "user": user}}))
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": clusters,
        "users": [{
            "name": user,
            "user": {
                "client-certificate-data": b64(&identity.cert_pem),
                "client-key-data": b64(&identity.key_pem),
            },
        }],
        "contexts": contexts,
        "current-context": entries.first().map(|e| e.name).unwrap_or_default(),
    })
}

/// The kubeconfig as YAML text, starting with [`MARKER`].
pub fn to_yaml(doc: &Value) -> Result<String> {
    let yaml = serde_yaml::to_string(doc).context("serialising the kubeconfig")?;
    Ok(format!("{MARKER}\n{yaml}"))
}

/// Writes the kubeconfig to `path`, refusing to replace a file the harness did not write (such as
/// `~/.kube/config`).
pub fn write(path: &Path, yaml: &str) -> Result<()> {
    check_replaceable(path)?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, yaml).with_context(|| format!("writing {}", path.display()))
}

/// `Ok` if `path` is absent or holds a kubeconfig the harness wrote.
pub fn check_replaceable(path: &Path) -> Result<()> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        if !existing.starts_with(MARKER) {
            anyhow::bail!(
                "{} exists and was not written by the cluster harness; refusing to overwrite it",
                path.display()
            );
        }
    } else if path.exists() {
        anyhow::bail!("{} exists and cannot be read; refusing to overwrite it", path.display());
    }
    Ok(())
}

/// The `kube::Config` of context `context` of a kubeconfig document: the same path a user's
/// kubeconfig takes through kube-rs.
pub async fn config(doc: &Value, context: &str) -> Result<kube::Config> {
    let kubeconfig: Kubeconfig = Kubeconfig::from_yaml(&to_yaml(doc)?).context("parsing the harness kubeconfig")?;
    let options = KubeConfigOptions {
        context: Some(context.to_string()),
        ..KubeConfigOptions::default()
    };
    kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .with_context(|| format!("loading context {context} of the harness kubeconfig"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_kubeconfig_the_harness_wrote_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/kubeconfig");
        write(&path, &format!("{MARKER}\nfirst")).unwrap();
        write(&path, &format!("{MARKER}\nsecond")).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().ends_with("second"));
        std::fs::write(&path, "apiVersion: v1\n").unwrap();
        let refused = write(&path, &format!("{MARKER}\nthird")).unwrap_err();
        assert!(refused.to_string().contains("refusing"), "{refused}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "apiVersion: v1\n");
    }
}
