//! Watching the config file (`notify`, inotify on Linux).
//!
//! The watch is on the file's directory, not the file: editors and Kubernetes replace files
//! (a ConfigMap volume swaps a `..data` symlink), which a watch on the old inode would miss. Any
//! event in the directory wakes the agent, which re-reads the file; identical content is ignored
//! further up. A periodic re-read covers filesystems without inotify events.

use anyhow::{Context, Result};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::path::Path;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Duration;

/// How long to keep collecting events after the first, so a burst (write, rename, chmod) is one
/// wake-up.
const SETTLE: Duration = Duration::from_millis(20);

/// A watch on the config file's directory.
pub struct Watch {
    _watcher: RecommendedWatcher,
    events: Receiver<()>,
}

impl Watch {
    pub fn new(config: &Path) -> Result<Watch> {
        let dir = match config.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => Path::new(".").to_path_buf(),
        };
        let (tx, events) = channel();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok() {
                let _ = tx.send(());
            }
        })
        .context("starting the file watcher")?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {}", dir.display()))?;
        Ok(Watch {
            _watcher: watcher,
            events,
        })
    }

    /// Blocks until something changed in the directory or `timeout` passed.
    pub fn wait(&self, timeout: Duration) {
        match self.events.recv_timeout(timeout) {
            Ok(()) => {
                std::thread::sleep(SETTLE);
                while self.events.try_recv().is_ok() {}
            }
            Err(RecvTimeoutError::Timeout) => {}
            // The watcher is gone (it never is while self lives): fall back to polling.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(timeout),
        }
    }
}
