//! Counters kept with relaxed atomics and read as a [`NetStats`] snapshot (for `/metrics`).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::Topic;

/// Traffic of one gossip topic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TopicStats {
    pub msgs_in: u64,
    pub bytes_in: u64,
    pub msgs_out: u64,
    pub bytes_out: u64,
}

/// A snapshot of the network counters since start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetStats {
    /// Per topic, in [`Topic::ALL`] order.
    pub topics: [(Topic, TopicStats); 4],
    /// Consensus frames written to / read from validator streams.
    pub stream_msgs_out: u64,
    pub stream_bytes_out: u64,
    pub stream_msgs_in: u64,
    pub stream_bytes_in: u64,
    /// Consensus frames not streamed (peer not connected, queue full, write failed).
    pub stream_dropped: u64,
    /// Consensus payloads dropped as already delivered through the other path.
    pub consensus_duplicates: u64,
    pub requests_out: u64,
    pub requests_in: u64,
    pub request_failures: u64,
    /// Inbound payloads over their cap.
    pub oversize_dropped: u64,
    /// Events dropped because the application's queue was full.
    pub events_dropped: u64,
    pub penalties: u64,
    pub bans: u64,
    pub refused_genesis: u64,
    /// Confirmed peers right now.
    pub peers: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub topic_in: [AtomicU64; 4],
    pub topic_bytes_in: [AtomicU64; 4],
    pub topic_out: [AtomicU64; 4],
    pub topic_bytes_out: [AtomicU64; 4],
    pub stream_out: AtomicU64,
    pub stream_bytes_out: AtomicU64,
    pub stream_in: AtomicU64,
    pub stream_bytes_in: AtomicU64,
    pub stream_dropped: AtomicU64,
    pub consensus_duplicates: AtomicU64,
    pub requests_out: AtomicU64,
    pub requests_in: AtomicU64,
    pub request_failures: AtomicU64,
    pub oversize: AtomicU64,
    pub events_dropped: AtomicU64,
    pub penalties: AtomicU64,
    pub bans: AtomicU64,
    pub refused_genesis: AtomicU64,
    pub peers: AtomicU64,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
}

impl Stats {
    pub fn topic_in(&self, t: Topic, bytes: usize) {
        inc(&self.topic_in[t.index()]);
        add(&self.topic_bytes_in[t.index()], bytes);
    }

    pub fn topic_out(&self, t: Topic, bytes: usize) {
        inc(&self.topic_out[t.index()]);
        add(&self.topic_bytes_out[t.index()], bytes);
    }

    pub fn snapshot(&self) -> NetStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let topic = |t: Topic| {
            let i = t.index();
            (
                t,
                TopicStats {
                    msgs_in: r(&self.topic_in[i]),
                    bytes_in: r(&self.topic_bytes_in[i]),
                    msgs_out: r(&self.topic_out[i]),
                    bytes_out: r(&self.topic_bytes_out[i]),
                },
            )
        };
        NetStats {
            topics: Topic::ALL.map(topic),
            stream_msgs_out: r(&self.stream_out),
            stream_bytes_out: r(&self.stream_bytes_out),
            stream_msgs_in: r(&self.stream_in),
            stream_bytes_in: r(&self.stream_bytes_in),
            stream_dropped: r(&self.stream_dropped),
            consensus_duplicates: r(&self.consensus_duplicates),
            requests_out: r(&self.requests_out),
            requests_in: r(&self.requests_in),
            request_failures: r(&self.request_failures),
            oversize_dropped: r(&self.oversize),
            events_dropped: r(&self.events_dropped),
            penalties: r(&self.penalties),
            bans: r(&self.bans),
            refused_genesis: r(&self.refused_genesis),
            peers: r(&self.peers),
        }
    }
}

impl NetStats {
    /// Counters of one topic.
    pub fn topic(&self, t: Topic) -> TopicStats {
        self.topics[t.index()].1
    }
}

impl NetStats {
    /// Append these counters in the Prometheus text format (`agora_net_*`), for a node's
    /// `/metrics` endpoint.
    pub fn write_prometheus(&self, out: &mut String) {
        use std::fmt::Write;
        let mut metric = |name: &str, kind: &str, help: &str, rows: &[(String, u64)]| {
            let _ = writeln!(out, "# HELP agora_net_{name} {help}");
            let _ = writeln!(out, "# TYPE agora_net_{name} {kind}");
            for (labels, v) in rows {
                let _ = writeln!(out, "agora_net_{name}{labels} {v}");
            }
        };
        let per_topic = |f: fn(&TopicStats) -> u64| -> Vec<(String, u64)> {
            self.topics
                .iter()
                .map(|(t, s)| (format!("{{topic=\"{}\"}}", t.name()), f(s)))
                .collect()
        };
        let one = |v: u64| vec![(String::new(), v)];
        metric(
            "gossip_messages_in_total",
            "counter",
            "Gossip messages delivered.",
            &per_topic(|s| s.msgs_in),
        );
        metric(
            "gossip_bytes_in_total",
            "counter",
            "Gossip payload bytes delivered.",
            &per_topic(|s| s.bytes_in),
        );
        metric(
            "gossip_messages_out_total",
            "counter",
            "Gossip messages published.",
            &per_topic(|s| s.msgs_out),
        );
        metric(
            "gossip_bytes_out_total",
            "counter",
            "Gossip payload bytes published.",
            &per_topic(|s| s.bytes_out),
        );
        metric(
            "stream_frames_out_total",
            "counter",
            "Consensus frames streamed to validators.",
            &one(self.stream_msgs_out),
        );
        metric(
            "stream_bytes_out_total",
            "counter",
            "Consensus bytes streamed to validators.",
            &one(self.stream_bytes_out),
        );
        metric(
            "stream_frames_in_total",
            "counter",
            "Consensus frames read from streams.",
            &one(self.stream_msgs_in),
        );
        metric(
            "stream_bytes_in_total",
            "counter",
            "Consensus bytes read from streams.",
            &one(self.stream_bytes_in),
        );
        metric(
            "stream_dropped_total",
            "counter",
            "Consensus frames not streamed.",
            &one(self.stream_dropped),
        );
        metric(
            "consensus_duplicates_total",
            "counter",
            "Consensus payloads already delivered.",
            &one(self.consensus_duplicates),
        );
        metric(
            "requests_out_total",
            "counter",
            "Requests sent.",
            &one(self.requests_out),
        );
        metric(
            "requests_in_total",
            "counter",
            "Requests received.",
            &one(self.requests_in),
        );
        metric(
            "request_failures_total",
            "counter",
            "Outbound requests that failed.",
            &one(self.request_failures),
        );
        metric(
            "oversize_dropped_total",
            "counter",
            "Inbound payloads over their cap.",
            &one(self.oversize_dropped),
        );
        metric(
            "events_dropped_total",
            "counter",
            "Events dropped on a full application queue.",
            &one(self.events_dropped),
        );
        metric(
            "penalties_total",
            "counter",
            "Penalties applied to peers.",
            &one(self.penalties),
        );
        metric("bans_total", "counter", "Peers banned.", &one(self.bans));
        metric(
            "refused_genesis_total",
            "counter",
            "Peers refused for another genesis.",
            &one(self.refused_genesis),
        );
        metric("peers", "gauge", "Confirmed peers.", &one(self.peers));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_carries_every_counter() {
        let s = Stats::default();
        s.topic_in(Topic::Bids, 10);
        s.topic_in(Topic::Bids, 5);
        inc(&s.penalties);
        let mut out = String::new();
        s.snapshot().write_prometheus(&mut out);
        assert!(
            out.contains("agora_net_gossip_messages_in_total{topic=\"bids\"} 2\n"),
            "{out}"
        );
        assert!(out.contains("agora_net_gossip_bytes_in_total{topic=\"bids\"} 15\n"));
        assert!(out.contains("agora_net_gossip_messages_in_total{topic=\"tx\"} 0\n"));
        assert!(out.contains("agora_net_penalties_total 1\n"));
        assert!(out.contains("# TYPE agora_net_peers gauge\n"));
        assert_eq!(out.matches("# TYPE").count(), 19);
    }
}
