//! Prometheus metrics of the node, served as OpenMetrics text at `GET /metrics`.
//!
//! One [`Registry`] per node process, prefixed `agora_`, in families by area:
//!
//! - chain: `agora_height`, `agora_last_block_age_seconds`, `agora_halted`, `agora_syncing`,
//!   `agora_peers`, `agora_store_bytes`, `agora_process_resident_bytes`;
//! - `agora_consensus_*`: round, proposal→decision latency, timeouts by kind, failed rounds,
//!   participation, mempool, flush latency of the consensus store;
//! - `agora_market_*`: jobs by state, open auctions, slashes, forfeited bonds, stall state;
//! - `agora_agent_*`: bids, declines by reason, executions by outcome, fuel, refused
//!   transactions;
//! - `agora_net_*`: bytes and messages in and out by channel, bans, penalties, drops.
//!
//! Who writes what: the chain task mirrors the replica's counters after every step and
//! observes each decision ([`Metrics::chain_step`], [`Metrics::committed`]); the store wrapper
//! observes flushes ([`Metrics::flush_histogram`]); the agent counts its own actions
//! ([`AgentMetrics`]); the rest (chain view, market state, network counters) is read at scrape
//! time. Counters that mirror a cumulative count kept elsewhere are set, not incremented, so a
//! scrape always shows the source's own total. Every labelled series the node can emit is
//! created up front, so a dashboard's queries find all of them on a fresh node.

use std::sync::atomic::{AtomicU64, Ordering};

use agora_market::{DeclineReason, JobState, Market, MarketEvent, Outcome};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::daemon::ChainView;

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Set a counter that mirrors a cumulative count kept elsewhere.
fn mirror(c: &Counter, v: u64) {
    c.inner().store(v, Ordering::Relaxed);
}

fn gauge_u64(g: &Gauge, v: u64) {
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
}

/// Buckets of the latency histograms, in seconds: 1 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

const JOB_STATES: [JobState; 8] = [
    JobState::Submitted,
    JobState::Auction,
    JobState::Awarded,
    JobState::Executing,
    JobState::Verifying,
    JobState::Settled,
    JobState::Refunded,
    JobState::Failed,
];

const DECLINE_REASONS: [DeclineReason; 6] = [
    DeclineReason::PriceBelowReserve,
    DeclineReason::FuelOverLimit,
    DeclineReason::AtCapacity,
    DeclineReason::ReputationBelowMinimum,
    DeclineReason::ModuleTooLarge,
    DeclineReason::Other,
];

/// The label of a decline reason. Exhaustive, so a new reason cannot go uncounted.
fn decline_label(r: DeclineReason) -> &'static str {
    match r {
        DeclineReason::PriceBelowReserve => "price_below_reserve",
        DeclineReason::FuelOverLimit => "fuel_over_limit",
        DeclineReason::AtCapacity => "at_capacity",
        DeclineReason::ReputationBelowMinimum => "reputation_below_minimum",
        DeclineReason::ModuleTooLarge => "module_too_large",
        DeclineReason::Other => "other",
    }
}

fn job_state_label(s: JobState) -> &'static str {
    match s {
        JobState::Submitted => "submitted",
        JobState::Auction => "auction",
        JobState::Awarded => "awarded",
        JobState::Executing => "executing",
        JobState::Verifying => "verifying",
        JobState::Settled => "settled",
        JobState::Refunded => "refunded",
        JobState::Failed => "failed",
    }
}

/// Kinds of bid the agent sends.
pub const BID_KINDS: [&str; 3] = ["dutch", "sealed_commit", "sealed_reveal"];
/// Reasons a slash names in the market's events; anything else is counted as `other`.
const SLASH_REASONS: [&str; 5] = [
    "timeout",
    "wrong_result",
    "wrong_audit",
    "equivocation",
    "other",
];
const TIMEOUT_KINDS: [&str; 3] = ["propose", "prevote", "precommit"];
/// How an execution ended: the committed outcomes, and `not_deterministic` for runs that are
/// never committed (wall-clock safety net, internal error).
pub const EXEC_OUTCOMES: [&str; 5] = [
    "success",
    "trap",
    "fuel_exhausted",
    "memory",
    "not_deterministic",
];

/// The label of an execution outcome (`None`: not deterministic, never committed).
pub fn outcome_label(o: Option<Outcome>) -> &'static str {
    match o {
        Some(Outcome::Success) => "success",
        Some(Outcome::Trap) => "trap",
        Some(Outcome::FuelExhausted) => "fuel_exhausted",
        Some(Outcome::Memory) => "memory",
        None => "not_deterministic",
    }
}

fn slash_label(reason: &str) -> &'static str {
    match reason {
        "timeout" => "timeout",
        "wrong result" => "wrong_result",
        "wrong audit" => "wrong_audit",
        "equivocation" => "equivocation",
        _ => "other",
    }
}

/// Gossip topics and the consensus stream, the channels of `agora_net_*{channel}`.
const STREAM_CHANNEL: &str = "consensus_stream";

/// The coprocessor and operator agent's counters.
#[derive(Debug, Clone, Default)]
pub struct AgentMetrics {
    bids: Family<Labels, Counter>,
    declines: Family<Labels, Counter>,
    executions: Family<Labels, Counter>,
    fuel: Counter,
    refused: Counter,
}

impl AgentMetrics {
    fn new() -> AgentMetrics {
        let m = AgentMetrics::default();
        for kind in BID_KINDS {
            let _ = m.bids.get_or_create(&labels(&[("kind", kind)]));
        }
        for r in DECLINE_REASONS {
            let _ = m
                .declines
                .get_or_create(&labels(&[("reason", decline_label(r))]));
        }
        for role in ["execute", "audit"] {
            for outcome in EXEC_OUTCOMES {
                let _ = m
                    .executions
                    .get_or_create(&labels(&[("role", role), ("outcome", outcome)]));
            }
        }
        m
    }

    /// A bid of `kind` (one of [`BID_KINDS`]) was accepted into the mempool.
    pub fn bid(&self, kind: &str) {
        self.bids.get_or_create(&labels(&[("kind", kind)])).inc();
    }

    /// A decline notice was accepted into the mempool.
    pub fn decline(&self, reason: DeclineReason) {
        self.declines
            .get_or_create(&labels(&[("reason", decline_label(reason))]))
            .inc();
    }

    /// An execution (or an audit's re-execution) ended.
    pub fn executed(&self, audit: bool, outcome: Option<Outcome>, fuel_used: u64) {
        let role = if audit { "audit" } else { "execute" };
        self.executions
            .get_or_create(&labels(&[
                ("role", role),
                ("outcome", outcome_label(outcome)),
            ]))
            .inc();
        self.fuel.inc_by(fuel_used);
    }

    /// The chain task refused one of the agent's transactions at admission.
    pub fn refused(&self) {
        self.refused.inc();
    }
}

/// The consensus family, written by the chain task.
#[derive(Debug, Default)]
struct ConsensusMetrics {
    round: Gauge,
    decision: Option<Histogram>,
    flush: Option<Histogram>,
    timeouts: Family<Labels, Counter>,
    rounds_failed: Counter,
    heights_committed: Counter,
    heights_synced: Counter,
    flushes: Counter,
    participation_bps: Gauge,
    mempool: Gauge,
}

/// The market family: gauges read at scrape time, slash counters fed by committed blocks.
#[derive(Debug, Default)]
struct MarketMetrics {
    jobs: Family<Labels, Gauge>,
    open_auctions: Gauge,
    active_coprocessors: Gauge,
    slashes: Family<Labels, Counter>,
    bonds_forfeited: Counter,
    stalled: Gauge,
    stalls: Counter,
    frozen_seconds: FloatGauge,
}

/// The network family, mirrored from `agora_net::NetStats` at scrape time.
#[derive(Debug, Default)]
struct NetMetrics {
    bytes: Family<Labels, Counter>,
    messages: Family<Labels, Counter>,
    requests: Family<Labels, Counter>,
    request_failures: Counter,
    dropped: Family<Labels, Counter>,
    penalties: Counter,
    bans: Counter,
    refused_genesis: Counter,
}

/// The node's metrics.
pub struct Metrics {
    registry: Registry,
    height: Gauge,
    last_block_age: FloatGauge,
    halted: Gauge,
    peers: Gauge,
    syncing: Gauge,
    store_bytes: Gauge,
    resident_bytes: Gauge,
    api_requests: Family<Labels, Counter>,
    consensus: ConsensusMetrics,
    market: MarketMetrics,
    net: NetMetrics,
    agent: AgentMetrics,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    pub fn new(version: &str, roles: &[String]) -> Metrics {
        let mut registry = Registry::with_prefix("agora");
        let mut m = Metrics {
            registry: Registry::default(),
            height: Gauge::default(),
            last_block_age: FloatGauge::default(),
            halted: Gauge::default(),
            peers: Gauge::default(),
            syncing: Gauge::default(),
            store_bytes: Gauge::default(),
            resident_bytes: Gauge::default(),
            api_requests: Family::default(),
            consensus: ConsensusMetrics {
                decision: Some(Histogram::new(LATENCY_BUCKETS)),
                flush: Some(Histogram::new(LATENCY_BUCKETS)),
                ..ConsensusMetrics::default()
            },
            market: MarketMetrics::default(),
            net: NetMetrics::default(),
            agent: AgentMetrics::new(),
        };
        registry.register(
            "build",
            "Software version and roles of this node",
            Info::new(vec![
                ("version".to_owned(), version.to_owned()),
                ("roles".to_owned(), roles.join(",")),
            ]),
        );
        registry.register(
            "height",
            "Height of the last committed block",
            m.height.clone(),
        );
        registry.register(
            "last_block_age_seconds",
            "This node's clock minus the time of the last committed block",
            m.last_block_age.clone(),
        );
        registry.register(
            "halted",
            "1 while no block has been committed for longer than the halt threshold",
            m.halted.clone(),
        );
        registry.register("peers", "Connected peers", m.peers.clone());
        registry.register(
            "syncing",
            "1 while catching up by block sync",
            m.syncing.clone(),
        );
        registry.register(
            "store_bytes",
            "Approximate store size on disk",
            m.store_bytes.clone(),
        );
        registry.register(
            "process_resident_bytes",
            "Resident memory of the node process (0 where unknown)",
            m.resident_bytes.clone(),
        );
        registry.register(
            "api_requests",
            "API requests served, by route and status class",
            m.api_requests.clone(),
        );
        m.register_consensus(registry.sub_registry_with_prefix("consensus"));
        m.register_market(registry.sub_registry_with_prefix("market"));
        m.register_agent(registry.sub_registry_with_prefix("agent"));
        m.register_net(registry.sub_registry_with_prefix("net"));
        m.registry = registry;
        m
    }

    fn register_consensus(&mut self, r: &mut Registry) {
        let c = &self.consensus;
        for kind in TIMEOUT_KINDS {
            let _ = c.timeouts.get_or_create(&labels(&[("kind", kind)]));
        }
        r.register(
            "round",
            "Round of the height being decided",
            c.round.clone(),
        );
        r.register(
            "decision_seconds",
            "Proposal received or built to decision, per height decided by this node",
            c.decision.clone().expect("built in new"),
        );
        r.register(
            "flush_seconds",
            "Durable flushes of the consensus store (each gates a vote)",
            c.flush.clone().expect("built in new"),
        );
        r.register(
            "timeouts",
            "Consensus timeouts that fired, by kind",
            c.timeouts.clone(),
        );
        r.register(
            "rounds_failed",
            "Rounds above 0 entered (each one a failed round)",
            c.rounds_failed.clone(),
        );
        r.register(
            "heights_committed",
            "Heights decided by this node",
            c.heights_committed.clone(),
        );
        r.register(
            "heights_synced",
            "Heights taken from block sync",
            c.heights_synced.clone(),
        );
        r.register(
            "flushes",
            "Durable flushes of the consensus store",
            c.flushes.clone(),
        );
        r.register(
            "participation_bps",
            "Voting power that signed the last block's commit, basis points of the total",
            c.participation_bps.clone(),
        );
        r.register(
            "mempool_txs",
            "Transactions waiting in the mempool",
            c.mempool.clone(),
        );
    }

    fn register_market(&mut self, r: &mut Registry) {
        let m = &self.market;
        for s in JOB_STATES {
            let _ = m
                .jobs
                .get_or_create(&labels(&[("state", job_state_label(s))]));
        }
        for reason in SLASH_REASONS {
            let _ = m.slashes.get_or_create(&labels(&[("reason", reason)]));
        }
        r.register(
            "jobs",
            "Jobs the market holds, by state (final jobs until their retention ends)",
            m.jobs.clone(),
        );
        r.register("open_auctions", "Jobs in auction", m.open_auctions.clone());
        r.register(
            "active_coprocessors",
            "Coprocessors with enough stake to bid",
            m.active_coprocessors.clone(),
        );
        r.register(
            "slashes",
            "Slashes in committed blocks since the node started, by reason",
            m.slashes.clone(),
        );
        r.register(
            "bonds_forfeited",
            "Sealed-bid bonds forfeited in committed blocks since the node started",
            m.bonds_forfeited.clone(),
        );
        r.register(
            "stalled",
            "1 while the market clock is frozen by a stall",
            m.stalled.clone(),
        );
        r.register(
            "stalls",
            "Stalls the market has detected since genesis",
            m.stalls.clone(),
        );
        r.register(
            "frozen_seconds",
            "Market-clock time frozen by stalls since genesis",
            m.frozen_seconds.clone(),
        );
    }

    fn register_agent(&mut self, r: &mut Registry) {
        let a = &self.agent;
        r.register(
            "bids",
            "Bids this node's agent sent, by kind",
            a.bids.clone(),
        );
        r.register(
            "declines",
            "Decline notices this node's agent sent, by reason",
            a.declines.clone(),
        );
        r.register(
            "executions",
            "Sandbox runs of this node's agent, by role and outcome",
            a.executions.clone(),
        );
        r.register(
            "fuel_used",
            "Fuel consumed by this node's sandbox runs",
            a.fuel.clone(),
        );
        r.register(
            "tx_refused",
            "Transactions of this node's agent refused at admission",
            a.refused.clone(),
        );
    }

    fn register_net(&mut self, r: &mut Registry) {
        let n = &self.net;
        for dir in ["in", "out"] {
            for t in agora_net::Topic::ALL {
                let l = labels(&[("direction", dir), ("channel", t.name())]);
                let _ = n.bytes.get_or_create(&l);
                let _ = n.messages.get_or_create(&l);
            }
            let l = labels(&[("direction", dir), ("channel", STREAM_CHANNEL)]);
            let _ = n.bytes.get_or_create(&l);
            let _ = n.messages.get_or_create(&l);
            let _ = n.requests.get_or_create(&labels(&[("direction", dir)]));
        }
        for reason in ["stream", "oversize", "queue_full", "duplicate"] {
            let _ = n.dropped.get_or_create(&labels(&[("reason", reason)]));
        }
        r.register(
            "bytes",
            "Network payload bytes, by direction and channel (gossip topic or consensus stream)",
            n.bytes.clone(),
        );
        r.register(
            "messages",
            "Network messages, by direction and channel",
            n.messages.clone(),
        );
        r.register(
            "requests",
            "Request-response requests (blobs, sync), by direction",
            n.requests.clone(),
        );
        r.register(
            "request_failures",
            "Outbound requests that failed",
            n.request_failures.clone(),
        );
        r.register(
            "dropped",
            "Inbound or outbound payloads dropped, by reason",
            n.dropped.clone(),
        );
        r.register(
            "penalties",
            "Penalties applied to peers",
            n.penalties.clone(),
        );
        r.register("bans", "Peers banned", n.bans.clone());
        r.register(
            "refused_genesis",
            "Peers refused for another genesis",
            n.refused_genesis.clone(),
        );
    }

    /// The agent's counters.
    pub fn agent(&self) -> &AgentMetrics {
        &self.agent
    }

    /// The histogram the consensus store's flushes are timed into.
    pub fn flush_histogram(&self) -> Histogram {
        self.consensus.flush.clone().expect("built in new")
    }

    /// Count one API request.
    pub fn api_request(&self, route: &str, status: u16) {
        let class = format!("{}xx", status / 100);
        self.api_requests
            .get_or_create(&labels(&[("route", route), ("status", &class)]))
            .inc();
    }

    /// After every step of the chain task: mirror the replica's counters.
    pub fn chain_step(&self, stats: &agora_consensus::Stats, round: u32, mempool: usize) {
        let c = &self.consensus;
        c.round.set(i64::from(round));
        for (kind, v) in TIMEOUT_KINDS.iter().zip([
            stats.timeouts_propose,
            stats.timeouts_prevote,
            stats.timeouts_precommit,
        ]) {
            mirror(&c.timeouts.get_or_create(&labels(&[("kind", kind)])), v);
        }
        mirror(&c.rounds_failed, stats.rounds_failed);
        mirror(&c.heights_committed, stats.heights_committed);
        mirror(&c.heights_synced, stats.heights_synced);
        mirror(&c.flushes, stats.flushes);
        c.participation_bps.set(i64::from(stats.participation_bps));
        gauge_u64(&c.mempool, mempool as u64);
    }

    /// After a step that committed the blocks above `from` up to the market's height: record
    /// the decision latency of the last one (when this node decided it) and count the slashes
    /// of every new block.
    pub fn committed(&self, from: u64, last_decision_ms: u64, market: &Market) {
        if last_decision_ms > 0 {
            if let Some(h) = &self.consensus.decision {
                h.observe(last_decision_ms as f64 / 1000.0);
            }
        }
        for e in events_above(market, from) {
            match &e.event {
                MarketEvent::Slashed { reason, .. }
                | MarketEvent::OperatorSlashed { reason, .. } => {
                    self.market
                        .slashes
                        .get_or_create(&labels(&[("reason", slash_label(reason))]))
                        .inc();
                }
                MarketEvent::BondForfeited { .. } => {
                    self.market.bonds_forfeited.inc();
                }
                _ => {}
            }
        }
    }

    /// Refresh the scrape-time gauges and encode everything.
    pub fn render(&self, scrape: &Scrape<'_>) -> String {
        let chain = scrape.chain;
        gauge_u64(&self.store_bytes, scrape.store_bytes);
        gauge_u64(&self.height, chain.height);
        self.peers.set(i64::from(chain.peers));
        self.syncing.set(i64::from(chain.syncing));
        let age = chain.last_block_age_ms(scrape.now_ms).unwrap_or(0);
        self.last_block_age.set(age as f64 / 1000.0);
        self.halted
            .set(i64::from(chain.halted(scrape.now_ms, scrape.halt_after_ms)));
        gauge_u64(&self.resident_bytes, resident_bytes(None).unwrap_or(0));
        if let Some(m) = scrape.market {
            self.set_market(m);
        }
        if let Some(n) = scrape.net {
            self.set_net(n);
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    fn set_market(&self, m: &Market) {
        let mk = &self.market;
        let mut by_state = [0u64; JOB_STATES.len()];
        for (_, job) in m.jobs() {
            if let Some(i) = JOB_STATES.iter().position(|s| *s == job.state) {
                by_state[i] += 1;
            }
        }
        for (s, n) in JOB_STATES.iter().zip(by_state) {
            gauge_u64(
                &mk.jobs
                    .get_or_create(&labels(&[("state", job_state_label(*s))])),
                n,
            );
        }
        let auctions = m
            .open_jobs()
            .filter(|id| m.job(id).is_some_and(|j| j.state == JobState::Auction))
            .count();
        gauge_u64(&mk.open_auctions, auctions as u64);
        let active = m.coprocessors().filter(|(_, c)| c.active).count();
        gauge_u64(&mk.active_coprocessors, active as u64);
        let health = m.health();
        mk.stalled.set(i64::from(health.stalled));
        mirror(&mk.stalls, health.stalls);
        mk.frozen_seconds.set(health.frozen_ms as f64 / 1000.0);
    }

    fn set_net(&self, s: &agora_net::NetStats) {
        let n = &self.net;
        let set = |f: &Family<Labels, Counter>, dir: &str, channel: &str, v: u64| {
            mirror(
                &f.get_or_create(&labels(&[("direction", dir), ("channel", channel)])),
                v,
            );
        };
        for (t, ts) in &s.topics {
            set(&n.bytes, "in", t.name(), ts.bytes_in);
            set(&n.bytes, "out", t.name(), ts.bytes_out);
            set(&n.messages, "in", t.name(), ts.msgs_in);
            set(&n.messages, "out", t.name(), ts.msgs_out);
        }
        set(&n.bytes, "in", STREAM_CHANNEL, s.stream_bytes_in);
        set(&n.bytes, "out", STREAM_CHANNEL, s.stream_bytes_out);
        set(&n.messages, "in", STREAM_CHANNEL, s.stream_msgs_in);
        set(&n.messages, "out", STREAM_CHANNEL, s.stream_msgs_out);
        for (dir, v) in [("in", s.requests_in), ("out", s.requests_out)] {
            mirror(&n.requests.get_or_create(&labels(&[("direction", dir)])), v);
        }
        mirror(&n.request_failures, s.request_failures);
        for (reason, v) in [
            ("stream", s.stream_dropped),
            ("oversize", s.oversize_dropped),
            ("queue_full", s.events_dropped),
            ("duplicate", s.consensus_duplicates),
        ] {
            mirror(&n.dropped.get_or_create(&labels(&[("reason", reason)])), v);
        }
        mirror(&n.penalties, s.penalties);
        mirror(&n.bans, s.bans);
        mirror(&n.refused_genesis, s.refused_genesis);
    }
}

/// What a scrape reads besides the node's own counters.
pub struct Scrape<'a> {
    pub chain: &'a ChainView,
    pub store_bytes: u64,
    pub now_ms: u64,
    pub halt_after_ms: u64,
    pub market: Option<&'a Market>,
    pub net: Option<&'a agora_net::NetStats>,
}

/// The market events of blocks above `height`, oldest first. The market keeps a bounded ring
/// of recent events; this reads only as much of it as the new blocks need.
fn events_above(m: &Market, height: u64) -> Vec<agora_market::EventRecord> {
    let mut limit = 16;
    loop {
        let events = m.recent_events(limit);
        let reaches_older = events.first().is_none_or(|e| e.height.0 <= height);
        if reaches_older || events.len() < limit {
            return events.into_iter().filter(|e| e.height.0 > height).collect();
        }
        limit *= 4;
    }
}

/// Resident memory of a process (this one when `pid` is `None`), from `/proc`; `None` where
/// `/proc` is not available.
pub fn resident_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scrape(view: &ChainView) -> Scrape<'_> {
        Scrape {
            chain: view,
            store_bytes: 4096,
            now_ms: view.last_block_time.unwrap_or(0) + 1500,
            halt_after_ms: 3000,
            market: None,
            net: None,
        }
    }

    #[test]
    fn render_reports_chain_gauges_and_requests() {
        let m = Metrics::new("0.1.0", &["operator".to_owned()]);
        m.api_request("/v1/status", 200);
        m.api_request("/v1/status", 204);
        let view = ChainView {
            height: 42,
            peers: 3,
            last_block_time: Some(1_000_000),
            ..ChainView::default()
        };
        let text = m.render(&scrape(&view));
        assert!(text.contains("agora_height 42\n"), "{text}");
        assert!(text.contains("agora_peers 3\n"), "{text}");
        assert!(text.contains("agora_syncing 0\n"), "{text}");
        assert!(text.contains("agora_store_bytes 4096\n"), "{text}");
        assert!(
            text.contains("agora_last_block_age_seconds 1.5\n"),
            "{text}"
        );
        assert!(text.contains("agora_halted 0\n"), "{text}");
        assert!(
            text.contains(r#"agora_api_requests_total{route="/v1/status",status="2xx"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"version="0.1.0""#), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");

        let mut s = scrape(&view);
        s.now_ms += 2000;
        let text = m.render(&s);
        assert!(text.contains("agora_halted 1\n"), "{text}");
    }

    #[test]
    fn every_labelled_series_exists_before_its_first_event() {
        let m = Metrics::new("0.1.0", &[]);
        let text = m.render(&scrape(&ChainView::default()));
        for s in JOB_STATES {
            let series = format!(r#"agora_market_jobs{{state="{}"}} 0"#, job_state_label(s));
            assert!(text.contains(&series), "{series} missing: {text}");
        }
        for r in DECLINE_REASONS {
            let series = format!(
                r#"agora_agent_declines_total{{reason="{}"}} 0"#,
                decline_label(r)
            );
            assert!(text.contains(&series), "{series} missing");
        }
        for kind in TIMEOUT_KINDS {
            let series = format!(r#"agora_consensus_timeouts_total{{kind="{kind}"}} 0"#);
            assert!(text.contains(&series), "{series} missing");
        }
        assert!(
            text.contains(r#"agora_net_bytes_total{direction="in",channel="consensus_stream"} 0"#)
        );
        assert!(text.contains(r#"agora_consensus_decision_seconds_bucket{le="0.01"} 0"#));
        assert!(text.contains("agora_consensus_flush_seconds_count 0"));
        // Labels are distinct, so no two variants share a series.
        let mut names: Vec<&str> = DECLINE_REASONS.iter().map(|r| decline_label(*r)).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), DECLINE_REASONS.len());
    }

    #[test]
    fn consensus_counters_mirror_the_replica_and_decisions_fill_the_histogram() {
        let m = Metrics::new("0.1.0", &[]);
        let stats = agora_consensus::Stats {
            timeouts_propose: 3,
            timeouts_precommit: 1,
            rounds_failed: 2,
            participation_bps: 7_500,
            ..agora_consensus::Stats::default()
        };
        m.chain_step(&stats, 2, 5);
        // Mirrored, not accumulated: the same stats twice give the same totals.
        m.chain_step(&stats, 2, 5);
        let market = Market::new(&crate::genesis::dev_genesis(
            &agora_crypto::Keypair::for_test(1),
        ))
        .unwrap();
        m.committed(6, 12, &market);
        m.committed(7, 0, &market);
        m.flush_histogram().observe(0.002);
        let text = m.render(&scrape(&ChainView::default()));
        for line in [
            r#"agora_consensus_timeouts_total{kind="propose"} 3"#,
            r#"agora_consensus_timeouts_total{kind="prevote"} 0"#,
            r#"agora_consensus_timeouts_total{kind="precommit"} 1"#,
            "agora_consensus_rounds_failed_total 2",
            "agora_consensus_round 2",
            "agora_consensus_participation_bps 7500",
            "agora_consensus_mempool_txs 5",
            "agora_consensus_decision_seconds_count 1",
            r#"agora_consensus_decision_seconds_bucket{le="0.025"} 1"#,
            r#"agora_consensus_decision_seconds_bucket{le="0.01"} 0"#,
            "agora_consensus_flush_seconds_count 1",
        ] {
            assert!(text.contains(line), "{line} missing: {text}");
        }
    }

    #[test]
    fn agent_counters_count_by_label() {
        let m = Metrics::new("0.1.0", &[]);
        let a = m.agent();
        a.bid("dutch");
        a.bid("dutch");
        a.decline(DeclineReason::AtCapacity);
        a.executed(false, Some(Outcome::Success), 1000);
        a.executed(true, None, 50);
        a.refused();
        let text = m.render(&scrape(&ChainView::default()));
        for line in [
            r#"agora_agent_bids_total{kind="dutch"} 2"#,
            r#"agora_agent_bids_total{kind="sealed_commit"} 0"#,
            r#"agora_agent_declines_total{reason="at_capacity"} 1"#,
            r#"agora_agent_executions_total{role="execute",outcome="success"} 1"#,
            r#"agora_agent_executions_total{role="audit",outcome="not_deterministic"} 1"#,
            "agora_agent_fuel_used_total 1050",
            "agora_agent_tx_refused_total 1",
        ] {
            assert!(text.contains(line), "{line} missing: {text}");
        }
    }

    #[test]
    fn events_of_new_blocks_are_found_in_the_market_ring() {
        let key = agora_crypto::Keypair::for_test(1);
        let genesis = crate::genesis::dev_genesis(&key);
        let mut market = Market::new(&genesis).unwrap();
        let builder = agora_market::TxBuilder::new(key.clone(), market.chain_id());
        let stake =
            agora_market::encode_envelope(&builder.stake(0, agora_types::Amount(100_000), 2));
        let block = |m: &mut Market, h: u64, txs: &[Vec<u8>]| {
            let ctx = agora_market::BlockContext {
                height: agora_types::Height(h),
                time: agora_types::Timestamp(genesis.genesis_time.0 + h * 1000),
                proposer: key.address(),
                commit_power_bps: 10_000,
                seed: agora_types::Hash([h as u8; 32]),
                absent: Vec::new(),
            };
            m.apply_block(&ctx, txs).unwrap()
        };
        let r = block(&mut market, 1, &[stake]);
        assert!(!r.events.is_empty(), "staking emits an event");
        block(&mut market, 2, &[]);
        let above0 = events_above(&market, 0);
        assert_eq!(above0.len(), r.events.len());
        assert!(above0.iter().all(|e| e.height.0 == 1));
        assert!(events_above(&market, 1).is_empty());
        assert!(events_above(&market, 2).is_empty());
    }

    #[test]
    fn slash_reasons_map_to_labels() {
        assert_eq!(slash_label("timeout"), "timeout");
        assert_eq!(slash_label("wrong result"), "wrong_result");
        assert_eq!(slash_label("wrong audit"), "wrong_audit");
        assert_eq!(slash_label("equivocation"), "equivocation");
        assert_eq!(slash_label("something new"), "other");
    }

    #[test]
    fn resident_memory_of_this_process_is_read_where_proc_exists() {
        if std::path::Path::new("/proc/self/status").exists() {
            let rss = resident_bytes(None).expect("VmRSS readable");
            assert!(rss > 1024 * 1024, "{rss}");
        } else {
            assert_eq!(resident_bytes(None), None);
        }
    }
}
