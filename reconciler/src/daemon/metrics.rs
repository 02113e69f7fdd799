//! The daemon's counters and their Prometheus text exposition (format 0.0.4), written by hand: a handful
//! of series does not need a metrics framework.

use super::{Status, SyncState};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Upper bounds (seconds) of the sync duration histogram.
const BUCKETS: [f64; 12] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Cumulative counts per bucket (`le`).
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        for (b, le) in self.buckets.iter_mut().zip(BUCKETS) {
            if v <= le {
                *b += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

/// Everything counted since the daemon started.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    sync_seconds: BTreeMap<String, Histogram>,
    /// (cluster, action) -> objects.
    objects: BTreeMap<(String, &'static str), u64>,
    sync_failures: BTreeMap<String, u64>,
    drift_detected: BTreeMap<String, u64>,
    drift_corrections: BTreeMap<String, u64>,
    refused_commits: u64,
    /// result (`accepted`, `rejected`) -> requests.
    webhooks: BTreeMap<&'static str, u64>,
    failovers: BTreeMap<String, u64>,
}

impl Metrics {
    pub(crate) fn synced(&mut self, cluster: &str, seconds: f64, counts: &[(&'static str, usize)], ok: bool) {
        self.sync_seconds
            .entry(cluster.to_string())
            .or_default()
            .observe(seconds);
        for (action, n) in counts {
            *self.objects.entry((cluster.to_string(), action)).or_default() += *n as u64;
        }
        if !ok {
            *self.sync_failures.entry(cluster.to_string()).or_default() += 1;
        }
    }

    pub(crate) fn drift(&mut self, cluster: &str, corrected: bool) {
        *self.drift_detected.entry(cluster.to_string()).or_default() += 1;
        if corrected {
            *self.drift_corrections.entry(cluster.to_string()).or_default() += 1;
        }
    }

    pub(crate) fn failover(&mut self, cluster: &str) {
        *self.failovers.entry(cluster.to_string()).or_default() += 1;
    }

    pub(crate) fn refused(&mut self) {
        self.refused_commits += 1;
    }

    pub(crate) fn webhook(&mut self, accepted: bool) {
        *self
            .webhooks
            .entry(if accepted { "accepted" } else { "rejected" })
            .or_default() += 1;
    }

    /// The exposition, with gauges taken from `status`.
    pub fn render(&self, status: &Status) -> String {
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut out,
            "flotilla_sync_duration_seconds",
            "histogram",
            "Time to apply one commit to one cluster (including failed attempts).",
        );
        for (cluster, h) in &self.sync_seconds {
            for (count, le) in h.buckets.iter().zip(BUCKETS) {
                let _ = writeln!(
                    out,
                    "flotilla_sync_duration_seconds_bucket{{cluster=\"{}\",le=\"{le}\"}} {count}",
                    escape(cluster)
                );
            }
            let c = escape(cluster);
            let _ = writeln!(
                out,
                "flotilla_sync_duration_seconds_bucket{{cluster=\"{c}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "flotilla_sync_duration_seconds_sum{{cluster=\"{c}\"}} {}", h.sum);
            let _ = writeln!(
                out,
                "flotilla_sync_duration_seconds_count{{cluster=\"{c}\"}} {}",
                h.count
            );
        }
        head(
            &mut out,
            "flotilla_objects_total",
            "counter",
            "Objects by outcome of their apply (created, configured, unchanged, pruned, conflict, failed).",
        );
        for ((cluster, action), n) in &self.objects {
            let _ = writeln!(
                out,
                "flotilla_objects_total{{cluster=\"{}\",action=\"{action}\"}} {n}",
                escape(cluster)
            );
        }
        let counters = [
            (
                "flotilla_sync_failures_total",
                "Syncs of a cluster that failed (retried with backoff).",
                &self.sync_failures,
            ),
            (
                "flotilla_drift_detected_total",
                "Changes to fields flotilla manages made by someone else, or deletions.",
                &self.drift_detected,
            ),
            (
                "flotilla_drift_corrections_total",
                "Drift corrected by re-applying the object.",
                &self.drift_corrections,
            ),
        ];
        for (name, help, series) in counters {
            head(&mut out, name, "counter", help);
            for (cluster, n) in series {
                let _ = writeln!(out, "{name}{{cluster=\"{}\"}} {n}", escape(cluster));
            }
        }
        head(
            &mut out,
            "flotilla_refused_commits_total",
            "counter",
            "Commits refused because they have error diagnostics.",
        );
        let _ = writeln!(out, "flotilla_refused_commits_total {}", self.refused_commits);
        head(
            &mut out,
            "flotilla_webhook_requests_total",
            "counter",
            "POST /hooks/git requests by result.",
        );
        for (result, n) in &self.webhooks {
            let _ = writeln!(out, "flotilla_webhook_requests_total{{result=\"{result}\"}} {n}");
        }
        head(
            &mut out,
            "flotilla_last_successful_sync_timestamp_seconds",
            "gauge",
            "Unix time of the last sync of a cluster without failures.",
        );
        for (cluster, c) in &status.clusters {
            if let Some(t) = c.last_synced {
                let _ = writeln!(
                    out,
                    "flotilla_last_successful_sync_timestamp_seconds{{cluster=\"{}\"}} {t}",
                    escape(cluster)
                );
            }
        }
        // Gauges from the status, one family after the other (the text format wants each family's
        // samples together).
        type Gauge = fn(&Status, &super::ClusterStatus) -> u64;
        let gauges: [(&str, &str, Gauge); 3] = [
            (
                "flotilla_cluster_synced",
                "1 when the cluster holds the desired commit with every object applied.",
                |s, c| u64::from(c.state == SyncState::Synced && c.commit.is_some() && c.commit == s.desired),
            ),
            (
                "flotilla_drifted_objects",
                "Objects drifted and not corrected (report mode).",
                |_, c| c.drifted.len() as u64,
            ),
            (
                "flotilla_cluster_tainted",
                "1 while the cluster counts as tainted cluster.karmada.io/unreachable:NoSchedule (failover).",
                |_, c| u64::from(c.tainted),
            ),
        ];
        for (name, help, value) in gauges {
            head(&mut out, name, "gauge", help);
            for (cluster, c) in &status.clusters {
                let _ = writeln!(out, "{name}{{cluster=\"{}\"}} {}", escape(cluster), value(status, c));
            }
        }
        head(
            &mut out,
            "flotilla_failovers_total",
            "counter",
            "Times a cluster was tainted unreachable after the grace period and its placements moved.",
        );
        for (cluster, n) in &self.failovers {
            let _ = writeln!(out, "flotilla_failovers_total{{cluster=\"{}\"}} {n}", escape(cluster));
        }
        head(
            &mut out,
            "flotilla_endpoint_map_version",
            "gauge",
            "Version of the endpoint map config in the cluster's ConfigMap flotilla-system/endpoint-map.",
        );
        for (cluster, e) in &status.endpoint_maps {
            if let Some(v) = e.version {
                let _ = writeln!(
                    out,
                    "flotilla_endpoint_map_version{{cluster=\"{}\"}} {v}",
                    escape(cluster)
                );
            }
        }
        out
    }
}

/// A label value escaped for the text format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::ClusterStatus;

    #[test]
    fn exposition_has_help_type_and_cumulative_buckets() {
        let mut m = Metrics::default();
        m.synced("c1", 0.2, &[("created", 3), ("failed", 0)], true);
        m.synced("c1", 7.0, &[("unchanged", 3)], false);
        m.drift("c1", true);
        m.drift("c1", false);
        m.refused();
        m.webhook(false);
        m.failover("c1");
        let mut status = Status {
            desired: Some("abc".into()),
            ..Status::default()
        };
        status.clusters.insert(
            "c1".into(),
            ClusterStatus {
                commit: Some("abc".into()),
                state: SyncState::Synced,
                last_synced: Some(1.5),
                ..ClusterStatus::default()
            },
        );
        let text = m.render(&status);
        for line in [
            "# TYPE flotilla_sync_duration_seconds histogram",
            "flotilla_sync_duration_seconds_bucket{cluster=\"c1\",le=\"0.1\"} 0",
            "flotilla_sync_duration_seconds_bucket{cluster=\"c1\",le=\"0.25\"} 1",
            "flotilla_sync_duration_seconds_bucket{cluster=\"c1\",le=\"10\"} 2",
            "flotilla_sync_duration_seconds_bucket{cluster=\"c1\",le=\"+Inf\"} 2",
            "flotilla_sync_duration_seconds_count{cluster=\"c1\"} 2",
            "flotilla_objects_total{cluster=\"c1\",action=\"created\"} 3",
            "flotilla_objects_total{cluster=\"c1\",action=\"unchanged\"} 3",
            "flotilla_sync_failures_total{cluster=\"c1\"} 1",
            "flotilla_drift_detected_total{cluster=\"c1\"} 2",
            "flotilla_drift_corrections_total{cluster=\"c1\"} 1",
            "flotilla_refused_commits_total 1",
            "flotilla_webhook_requests_total{result=\"rejected\"} 1",
            "flotilla_last_successful_sync_timestamp_seconds{cluster=\"c1\"} 1.5",
            "flotilla_cluster_synced{cluster=\"c1\"} 1",
            "flotilla_drifted_objects{cluster=\"c1\"} 0",
            "flotilla_cluster_tainted{cluster=\"c1\"} 0",
            "flotilla_failovers_total{cluster=\"c1\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
        // Each family's samples follow its TYPE line, uninterrupted by another family.
        let mut seen: Vec<&str> = Vec::new();
        let mut current = "";
        for l in text.lines() {
            let family = if let Some(rest) = l.strip_prefix("# TYPE ") {
                rest.split(' ').next().unwrap_or("")
            } else if l.starts_with('#') {
                continue;
            } else {
                let name = l.split(['{', ' ']).next().unwrap_or("");
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|base| *base == current)
                    .unwrap_or(name)
            };
            if family != current {
                assert!(!seen.contains(&family), "{family} is split in\n{text}");
                seen.push(family);
                current = family;
            }
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
