//! Running the reconcile daemon inside a test: [`Daemon::run`] on the test's runtime, its events
//! subscribed before it starts, a stop handle.

use crate::cluster::{unique_name, Harness};
use reconciler::daemon::{Daemon, Event, Options};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};

/// A daemon running in the test.
pub struct Running {
    pub daemon: Arc<Daemon>,
    pub events: broadcast::Receiver<Event>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// How long [`Running::wait`] waits.
pub const WAIT: Duration = Duration::from_secs(60);

impl Running {
    /// Starts a daemon following branch `main` of `repo` on the harness's clusters, polling every
    /// 200 ms, with an ApplySet of its own; `tune` changes any option.
    pub fn start(h: &Harness, repo: &Path, tune: impl FnOnce(&mut Options)) -> Running {
        let daemon = Arc::new(Daemon::new());
        let events = daemon.subscribe();
        let mut opts = Options::new(repo.to_string_lossy());
        opts.branch = Some("main".into());
        opts.interval = Duration::from_millis(200);
        opts.kubeconfig = Some(h.kubeconfig().to_path_buf());
        opts.applyset = unique_name("daemon");
        tune(&mut opts);
        let (stop, stopped) = oneshot::channel::<()>();
        let d = Arc::clone(&daemon);
        let task = tokio::spawn(async move {
            d.run(opts, async {
                let _ = stopped.await;
            })
            .await
        });
        Running {
            daemon,
            events,
            stop: Some(stop),
            task,
        }
    }

    /// Waits (up to [`WAIT`]) for an event matching `pred`; earlier events are skipped. Panics with the
    /// daemon's status when none comes.
    pub async fn wait(&mut self, what: &str, mut pred: impl FnMut(&Event) -> bool) -> Event {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Ok(e)) if pred(&e) => return e,
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(e)) => panic!("waiting for {what}: event channel closed: {e}"),
                Err(_) => panic!(
                    "waiting for {what}: nothing within {WAIT:?}; status: {:#?}",
                    self.daemon.status()
                ),
            }
        }
    }

    /// Waits until each of `clusters` reports `commit` synced without failures.
    pub async fn synced(&mut self, commit: &str, clusters: &[&str]) {
        let mut left: BTreeSet<String> = clusters.iter().map(|c| c.to_string()).collect();
        while !left.is_empty() {
            let e = self
                .wait(
                    &format!("{commit} synced on {left:?}"),
                    |e| matches!(e, Event::Synced { commit: c, failed: 0, .. } if c == commit),
                )
                .await;
            if let Event::Synced { cluster, .. } = e {
                left.remove(&cluster);
            }
        }
    }

    /// Stops the daemon (as SIGTERM does) and waits for it; panics if it failed.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("the daemon failed: {e:#}"),
            Err(e) => panic!("the daemon's task: {e}"),
        }
    }
}
