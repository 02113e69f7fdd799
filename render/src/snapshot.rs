//! A repository snapshot: the files the reader found, in memory, plus the reader's own findings.
//!
//! `render` never touches the filesystem or Git: the caller (the `reconciler` crate) reads a working
//! tree or a commit into a [`Snapshot`], honouring [`RepoConfig`]'s include/exclude globs and limits,
//! and hands it over.

use crate::diagnostic::{code, Diagnostic};
use crate::yaml;
use crate::Pos;
use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::Deserialize;

/// One file of the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Repository-relative path, `/`-separated, no leading `./`.
    pub path: String,
    pub bytes: Vec<u8>,
}

/// Everything `render` needs from a repository.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Sorted by path (the reader sorts; [`Snapshot::new`] sorts again to be safe).
    pub files: Vec<SourceFile>,
    /// Findings of the reader (symlinks leaving the repository, oversized files, unreadable files).
    pub diagnostics: Vec<Diagnostic>,
    /// The commit this snapshot was read from, if any.
    pub revision: Option<String>,
}

impl Snapshot {
    pub fn new(mut files: Vec<SourceFile>, diagnostics: Vec<Diagnostic>, revision: Option<String>) -> Self {
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Snapshot {
            files,
            diagnostics,
            revision,
        }
    }

    /// A snapshot from in-memory `(path, text)` pairs; for tests and tools.
    pub fn from_texts<P: Into<String>, T: Into<Vec<u8>>>(files: impl IntoIterator<Item = (P, T)>) -> Self {
        Self::new(
            files
                .into_iter()
                .map(|(p, t)| SourceFile {
                    path: p.into(),
                    bytes: t.into(),
                })
                .collect(),
            Vec::new(),
            None,
        )
    }
}

/// The name of the repository's optional configuration file, at the root.
pub const CONFIG_FILE: &str = "flotilla.yaml";

/// Default limit on the size of one file.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 8 * 1024 * 1024;

/// `flotilla.dev/v1alpha1` `RepoConfig` (only in `flotilla.yaml`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct RepoConfigSpec {
    /// Globs of files to read; default every `*.yaml`, `*.yml`, `*.json`.
    pub include: Vec<String>,
    /// Globs of files to skip (in addition to hidden paths).
    pub exclude: Vec<String>,
    /// Namespace names or globs never propagated; replaces the default `["kube-*"]` when set.
    pub skipped_namespaces: Vec<String>,
    /// Namespace names or globs propagated even though `skippedNamespaces` matches them.
    pub propagate_namespaces: Vec<String>,
    /// CIDR the multi-cluster service VIPs come from.
    pub vip_range: Option<String>,
    /// Percentage of a cluster's objects one commit may prune.
    pub prune_guard: Option<u32>,
    pub max_file_size: Option<u64>,
    pub drift: Option<serde_json::Value>,
}

/// The parsed `flotilla.yaml`, with compiled globs.
#[derive(Debug, Clone)]
pub struct RepoConfig {
    pub spec: RepoConfigSpec,
    include: GlobSet,
    exclude: GlobSet,
    skipped: GlobSet,
    propagated: GlobSet,
}

impl Default for RepoConfig {
    fn default() -> Self {
        RepoConfig::from_spec(RepoConfigSpec::default(), &mut Vec::new())
    }
}

fn build_globs(globs: &[String], field: &str, diags: &mut Vec<Diagnostic>) -> GlobSet {
    let mut b = GlobSetBuilder::new();
    for g in globs {
        match Glob::new(g) {
            Ok(g) => {
                b.add(g);
            }
            Err(e) => diags.push(Diagnostic::error(
                code::REPO_CONFIG,
                CONFIG_FILE,
                Pos::default(),
                format!("invalid glob `{g}` in spec.{field}: {e}"),
            )),
        }
    }
    b.build().unwrap_or_else(|_| GlobSet::empty())
}

impl RepoConfig {
    fn from_spec(spec: RepoConfigSpec, diags: &mut Vec<Diagnostic>) -> Self {
        let include = if spec.include.is_empty() {
            build_globs(
                &["**/*.yaml".into(), "**/*.yml".into(), "**/*.json".into()],
                "include",
                diags,
            )
        } else {
            build_globs(&spec.include, "include", diags)
        };
        let exclude = build_globs(&spec.exclude, "exclude", diags);
        let skipped = if spec.skipped_namespaces.is_empty() {
            build_globs(&["kube-*".into()], "skippedNamespaces", diags)
        } else {
            build_globs(&spec.skipped_namespaces, "skippedNamespaces", diags)
        };
        let propagated = build_globs(&spec.propagate_namespaces, "propagateNamespaces", diags);
        RepoConfig {
            spec,
            include,
            exclude,
            skipped,
            propagated,
        }
    }

    /// Parses `flotilla.yaml`. Problems become diagnostics and the defaults apply.
    /// Schema checks of the document happen with the others in `validate`.
    pub fn parse(bytes: &[u8]) -> (RepoConfig, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let text = match yaml::utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                diags.push(Diagnostic::error(code::NOT_UTF8, CONFIG_FILE, e.pos(), e.to_string()));
                return (RepoConfig::default(), diags);
            }
        };
        let docs = match yaml::load_yaml(text, yaml::Limits::default()) {
            Ok(d) => d,
            Err(_) => return (RepoConfig::default(), diags), // reported again when the file is loaded
        };
        let mut spec = RepoConfigSpec::default();
        for d in docs {
            let is_config = d.value.get("kind").and_then(|k| k.as_str()) == Some("RepoConfig");
            if !is_config {
                continue;
            }
            match d
                .value
                .get("spec")
                .cloned()
                .map(serde_json::from_value::<RepoConfigSpec>)
            {
                Some(Ok(s)) => spec = s,
                Some(Err(e)) => diags.push(Diagnostic::error(
                    code::SCHEMA,
                    CONFIG_FILE,
                    d.pos,
                    format!("invalid RepoConfig spec: {e}"),
                )),
                None => {}
            }
        }
        (RepoConfig::from_spec(spec, &mut diags), diags)
    }

    /// Whether the reader should read this repository-relative path.
    pub fn wants(&self, path: &str) -> bool {
        if path.split('/').any(|seg| seg.starts_with('.')) {
            return false;
        }
        self.include.is_match(path) && !self.exclude.is_match(path)
    }

    pub fn max_file_size(&self) -> u64 {
        self.spec.max_file_size.unwrap_or(DEFAULT_MAX_FILE_SIZE)
    }

    /// Whether templates of this namespace are never propagated (SPEC §4).
    pub fn skips_namespace(&self, ns: &str) -> bool {
        if ns == "karmada-system" || ns == "karmada-cluster" || ns.starts_with("karmada-es-") {
            return true;
        }
        self.skipped.is_match(ns) && !self.propagated.is_match(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_paths_and_globs() {
        let (c, d) = RepoConfig::parse(
            b"apiVersion: flotilla.dev/v1alpha1\nkind: RepoConfig\nspec:\n  exclude: ['charts/**']\n",
        );
        assert!(d.is_empty());
        assert!(c.wants("apps/web.yaml"));
        assert!(c.wants("a.json"));
        assert!(!c.wants("charts/x/values.yaml"));
        assert!(!c.wants(".github/workflows/ci.yaml"));
        assert!(!c.wants("apps/.hidden/x.yaml"));
        assert!(!c.wants("README.md"));
    }

    #[test]
    fn skipped_namespaces() {
        let c = RepoConfig::default();
        assert!(c.skips_namespace("kube-system"));
        assert!(c.skips_namespace("karmada-es-member1"));
        assert!(!c.skips_namespace("default"));
        let (c, _) = RepoConfig::parse(
            b"kind: RepoConfig\nspec:\n  skippedNamespaces: [legacy-*]\n  propagateNamespaces: [legacy-keep]\n",
        );
        assert!(c.skips_namespace("legacy-billing"));
        assert!(!c.skips_namespace("legacy-keep"));
        assert!(
            !c.skips_namespace("kube-system"),
            "setting the list replaces the default"
        );
        assert!(
            c.skips_namespace("karmada-system"),
            "karmada namespaces are always skipped"
        );
    }
}
