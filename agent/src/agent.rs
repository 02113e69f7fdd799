//! Deciding about documents: accept (verify, cluster, version, fits the datapath) and apply, or refuse
//! and keep the last good one.

use crate::datapath::Datapath;
use crate::status::{self, Applied, Status};
use ebpf::datapath::{tables, DatapathError};
use ebpf::{ConfigError, EndpointMapConfig};
use sha2::{Digest, Sha256};

/// Why a document was not applied.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("not an endpoint map config: {0}")]
    Parse(#[from] serde_json::Error),
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error("the document is for cluster `{got}`, this agent serves `{expected}`")]
    Cluster { expected: String, got: String },
    #[error("version {version} is not newer than the applied version {applied}")]
    OldVersion { version: u64, applied: u64 },
    #[error(transparent)]
    Datapath(#[from] DatapathError),
    #[error("writing the maps failed (the previous document stays): {0:#}")]
    Apply(anyhow::Error),
}

/// What happened to one offered document.
#[derive(Debug)]
pub enum Outcome {
    Applied {
        version: u64,
    },
    /// The same bytes as last time, or the document already in the maps.
    Unchanged,
    Rejected(Rejection),
}

/// The agent: the datapath plus what it reports.
pub struct Agent {
    datapath: Datapath,
    cluster: Option<String>,
    status: Status,
    last_bytes: Option<[u8; 32]>,
}

impl Agent {
    /// An agent over an opened datapath; `status` carries the descriptive fields (paths, object).
    /// What an earlier run applied is read back from the maps.
    pub fn new(datapath: Datapath, cluster: Option<String>, mut status: Status) -> anyhow::Result<Agent> {
        status.links = Some(datapath.links());
        status.generation = datapath.active()?;
        status.applied = datapath.applied()?.map(|(version, hash)| Applied {
            version,
            hash,
            ..Applied::default()
        });
        let mut agent = Agent {
            datapath,
            cluster,
            status,
            last_bytes: None,
        };
        agent.refresh_stats();
        Ok(agent)
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    /// Reads the program's counters into the status.
    pub fn refresh_stats(&mut self) {
        match self.datapath.stats() {
            Ok(stats) => self.status.datapath = stats.into_iter().map(|(n, v)| (n.to_string(), v)).collect(),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "reading the datapath counters"),
        }
    }

    /// Offers the bytes of a config file. The same bytes twice in a row are not looked at again (so a
    /// refused file is counted once, however often it is re-read), unless writing the maps failed.
    pub fn offer(&mut self, bytes: &[u8]) -> Outcome {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        if self.last_bytes == Some(digest) {
            return Outcome::Unchanged;
        }
        self.last_bytes = Some(digest);
        match self.accept_and_apply(bytes) {
            Ok(outcome) => outcome,
            Err(rejection) => {
                // A failed write may be transient (memory): the same bytes are tried again at the next
                // wake-up. Anything else is a property of the bytes and is judged once.
                if matches!(rejection, Rejection::Apply(_)) {
                    self.last_bytes = None;
                }
                self.status.rejected += 1;
                self.status.last_error = Some(rejection.to_string());
                self.status.last_error_at = Some(status::now());
                tracing::warn!(error = %rejection, "document refused; the applied one stays");
                Outcome::Rejected(rejection)
            }
        }
    }

    fn accept_and_apply(&mut self, bytes: &[u8]) -> Result<Outcome, Rejection> {
        let doc: EndpointMapConfig = serde_json::from_slice(bytes)?;
        doc.verify()?;
        if let Some(expected) = &self.cluster {
            if &doc.cluster != expected {
                return Err(Rejection::Cluster {
                    expected: expected.clone(),
                    got: doc.cluster.clone(),
                });
            }
        }
        if let Some(applied) = &self.status.applied {
            if doc.version == applied.version && doc.hash == applied.hash {
                tracing::debug!(version = doc.version, "document already applied");
                return Ok(Outcome::Unchanged);
            }
            if doc.version <= applied.version {
                return Err(Rejection::OldVersion {
                    version: doc.version,
                    applied: applied.version,
                });
            }
        }
        let inactive = self.datapath.inactive().map_err(Rejection::Apply)?;
        let tables = tables(&doc, inactive)?;
        let timings = self
            .datapath
            .apply(&tables, doc.version, &doc.hash)
            .map_err(Rejection::Apply)?;
        self.status.applies += 1;
        self.status.generation = inactive;
        self.status.applied = Some(Applied {
            version: doc.version,
            hash: doc.hash.clone(),
            cluster: Some(doc.cluster.clone()),
            frontends: tables.services.len(),
            backends: tables.backends.len(),
            slots: tables.slots.len(),
            applied_at: status::now(),
            timings: Some(timings),
        });
        self.refresh_stats();
        tracing::info!(
            version = doc.version,
            hash = %doc.hash,
            frontends = tables.services.len(),
            backends = tables.backends.len(),
            slots = tables.slots.len(),
            generation = inactive,
            write_ms = timings.write_ms,
            barrier_ms = timings.barrier_ms,
            clear_ms = timings.clear_ms,
            "document applied"
        );
        Ok(Outcome::Applied { version: doc.version })
    }
}
