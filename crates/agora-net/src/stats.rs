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
