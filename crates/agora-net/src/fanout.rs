//! Direct consensus fan-out: one long-lived `libp2p-stream` per validator, length-prefixed
//! frames, a bounded queue per peer, and deduplication against the gossip relay path.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use libp2p::{PeerId, StreamProtocol};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::codec::{read_frame, write_frame, FrameError};
use crate::scoring::Penalty;
use crate::service::Command;
use crate::stats::{add, inc, Stats};
use crate::NetEvent;

pub(crate) const CONSENSUS_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/consensus/1");

/// How long an inbound stream from a not-yet-confirmed peer may wait for identify to finish.
const CONFIRM_WAIT: Duration = Duration::from_secs(5);
/// How long opening a stream may take before the frame is dropped (gossip still carries it).
const OPEN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an outgoing frame may wait for its peer's handshake to finish.
const UNCONFIRMED_WAIT: Duration = Duration::from_millis(500);
/// After such a wait failed, frames for that peer are dropped at once for this long.
const UNCONFIRMED_BACKOFF: Duration = Duration::from_secs(5);
/// How many inbound consensus streams may be open at once.
const MAX_INBOUND_STREAMS: usize = 256;

/// How long a delivered payload counts as a duplicate. Long enough to fold the stream and the
/// gossip relay copies of one send into one delivery, short enough that a deliberate
/// re-broadcast (the replica re-sends its own votes every few seconds, byte for byte) reaches a
/// peer that lost or discarded the first copy — e.g. one that was paused, or behind and
/// dropped the votes of a height it had not reached yet.
pub(crate) const DUPLICATE_WINDOW: Duration = Duration::from_secs(2);

/// A bounded set of recently delivered payload hashes, each remembered for a time window.
#[derive(Debug)]
pub(crate) struct Seen {
    cap: usize,
    window: Duration,
    order: VecDeque<(Instant, [u8; 32])>,
    set: BTreeMap<[u8; 32], Instant>,
}

impl Seen {
    pub fn new(cap: usize, window: Duration) -> Seen {
        Seen {
            cap: cap.max(1),
            window,
            order: VecDeque::new(),
            set: BTreeMap::new(),
        }
    }

    /// True if `id` was not delivered within the window (and remembers it as of `now`).
    pub fn insert_at(&mut self, id: [u8; 32], now: Instant) -> bool {
        while let Some((at, old)) = self.order.front().copied() {
            if now.saturating_duration_since(at) < self.window && self.order.len() < self.cap {
                break;
            }
            self.order.pop_front();
            if self.set.get(&old) == Some(&at) {
                self.set.remove(&old);
            }
        }
        if let Some(at) = self.set.get(&id) {
            if now.saturating_duration_since(*at) < self.window {
                return false;
            }
        }
        self.set.insert(id, now);
        self.order.push_back((now, id));
        true
    }

    /// Whether `id` was remembered within the window (without remembering it).
    pub fn contains(&self, id: &[u8; 32]) -> bool {
        self.set
            .get(id)
            .is_some_and(|at| at.elapsed() < self.window)
    }

    /// [`Seen::insert_at`] now.
    pub fn insert(&mut self, id: [u8; 32]) -> bool {
        self.insert_at(id, Instant::now())
    }
}

/// State shared by the stream tasks.
pub(crate) struct Shared {
    pub stats: Arc<Stats>,
    pub events: mpsc::Sender<NetEvent>,
    pub seen: Mutex<Seen>,
    pub confirmed: watch::Receiver<BTreeSet<PeerId>>,
    pub commands: mpsc::WeakSender<Command>,
    pub max_frame: usize,
}

impl Shared {
    /// Deliver a consensus payload once, whichever path brought it first.
    /// Returns false when the application's queue is closed.
    pub async fn deliver_consensus(&self, from: PeerId, data: Bytes) -> bool {
        let id = *blake3::hash(&data).as_bytes();
        let fresh = match self.seen.lock() {
            Ok(mut s) => s.insert(id),
            Err(_) => true,
        };
        if !fresh {
            inc(&self.stats.consensus_duplicates);
            return true;
        }
        self.events
            .send(NetEvent::Consensus { from, data })
            .await
            .is_ok()
    }

    /// Same as [`Shared::deliver_consensus`] without waiting: used by the swarm loop, which
    /// must never block on the application.
    pub fn try_deliver_consensus(&self, from: PeerId, data: Bytes) {
        let id = *blake3::hash(&data).as_bytes();
        let fresh = match self.seen.lock() {
            Ok(mut s) => s.insert(id),
            Err(_) => true,
        };
        if !fresh {
            inc(&self.stats.consensus_duplicates);
            return;
        }
        if self
            .events
            .try_send(NetEvent::Consensus { from, data })
            .is_err()
        {
            inc(&self.stats.events_dropped);
        }
    }

    fn is_confirmed(&self, peer: &PeerId) -> bool {
        self.confirmed.borrow().contains(peer)
    }
}

/// The writer task of one validator: opens the stream lazily once the peer is confirmed,
/// re-opens it after a failure (retrying the frame once), drops frames it cannot send.
pub(crate) async fn run_writer(
    peer: PeerId,
    mut control: libp2p_stream::Control,
    mut rx: mpsc::Receiver<Bytes>,
    shared: Arc<Shared>,
) {
    let mut stream: Option<libp2p::Stream> = None;
    let mut gave_up: Option<Instant> = None;
    while let Some(frame) = rx.recv().await {
        let mut sent = false;
        for _attempt in 0..2 {
            if stream.is_none() {
                if !shared.is_confirmed(&peer) {
                    // A peer in its handshake is confirmed within milliseconds: wait for it,
                    // unless it recently failed to show up (down peers must not hold frames).
                    if gave_up.is_some_and(|t| t.elapsed() < UNCONFIRMED_BACKOFF) {
                        break;
                    }
                    let mut rx = shared.confirmed.clone();
                    let confirmed = matches!(
                        tokio::time::timeout(UNCONFIRMED_WAIT, rx.wait_for(|s| s.contains(&peer)))
                            .await,
                        Ok(Ok(_))
                    );
                    if !confirmed {
                        gave_up = Some(Instant::now());
                        break;
                    }
                    gave_up = None;
                }
                match tokio::time::timeout(
                    OPEN_TIMEOUT,
                    control.open_stream(peer, CONSENSUS_PROTOCOL),
                )
                .await
                {
                    Ok(Ok(s)) => stream = Some(s),
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "net.consensus.open failed");
                        break;
                    }
                    Err(_) => {
                        debug!(%peer, "net.consensus.open timed out");
                        break;
                    }
                }
            }
            if let Some(s) = stream.as_mut() {
                match write_frame(s, &frame).await {
                    Ok(()) => {
                        sent = true;
                        break;
                    }
                    Err(e) => {
                        debug!(%peer, error = %e, "net.consensus.write failed; reopening");
                        stream = None;
                    }
                }
            }
        }
        if sent {
            inc(&shared.stats.stream_out);
            add(&shared.stats.stream_bytes_out, frame.len());
        } else {
            inc(&shared.stats.stream_dropped);
        }
    }
}

/// Accept inbound consensus streams and spawn one reader per stream.
pub(crate) async fn run_acceptor(
    mut incoming: libp2p_stream::IncomingStreams,
    shared: Arc<Shared>,
) {
    let readers = Arc::new(tokio::sync::Semaphore::new(MAX_INBOUND_STREAMS));
    let mut tasks = tokio::task::JoinSet::new();
    while let Some((peer, stream)) = incoming.next().await {
        while tasks.try_join_next().is_some() {}
        let Ok(permit) = readers.clone().try_acquire_owned() else {
            warn!(%peer, "net.consensus too many inbound streams; dropping one");
            continue;
        };
        let shared = shared.clone();
        tasks.spawn(async move {
            run_reader(peer, stream, shared).await;
            drop(permit);
        });
    }
    tasks.shutdown().await;
}

async fn run_reader(peer: PeerId, mut stream: libp2p::Stream, shared: Arc<Shared>) {
    if !shared.is_confirmed(&peer) {
        let mut rx = shared.confirmed.clone();
        // Evaluate to a bool at once: the watch guard must not be held across an await.
        let confirmed = matches!(
            tokio::time::timeout(CONFIRM_WAIT, rx.wait_for(|s| s.contains(&peer))).await,
            Ok(Ok(_))
        );
        if !confirmed {
            debug!(%peer, "net.consensus stream from unconfirmed peer closed");
            return;
        }
    }
    loop {
        match read_frame(&mut stream, shared.max_frame).await {
            Ok(Some(data)) => {
                inc(&shared.stats.stream_in);
                add(&shared.stats.stream_bytes_in, data.len());
                if !shared.is_confirmed(&peer) {
                    return;
                }
                if !shared.deliver_consensus(peer, data).await {
                    return;
                }
            }
            Ok(None) => return,
            Err(FrameError::Oversize { len, cap }) => {
                inc(&shared.stats.oversize);
                warn!(%peer, len, cap, "net.consensus oversize frame; closing stream");
                if let Some(c) = shared.commands.upgrade() {
                    let _ = c
                        .send(Command::Report {
                            peer,
                            penalty: Penalty::Oversize,
                        })
                        .await;
                }
                return;
            }
            Err(FrameError::Io(e)) => {
                debug!(%peer, error = %e, "net.consensus stream ended");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_is_bounded_and_dedups() {
        let t0 = Instant::now();
        let mut s = Seen::new(3, Duration::from_secs(60));
        assert!(s.insert_at([1; 32], t0));
        assert!(!s.insert_at([1; 32], t0));
        for i in 2..=4u8 {
            assert!(s.insert_at([i; 32], t0));
        }
        assert_eq!(s.set.len(), 3);
        // [1] was evicted, so it counts as new again.
        assert!(s.insert_at([1; 32], t0));
        assert!(!s.insert_at([4; 32], t0));
        assert!(s.order.len() <= 3 && s.set.len() <= 3);
    }

    #[test]
    fn a_rebroadcast_after_the_window_is_delivered_again() {
        let t0 = Instant::now();
        let mut s = Seen::new(16, DUPLICATE_WINDOW);
        assert!(s.insert_at([7; 32], t0));
        assert!(s.contains(&[7; 32]) && !s.contains(&[9; 32]));
        // The relay copy of the same send, a moment later: a duplicate.
        assert!(!s.insert_at([7; 32], t0 + Duration::from_millis(300)));
        // The replica's re-broadcast a few seconds later must get through: the peer may
        // have discarded the first copy.
        assert!(s.insert_at([7; 32], t0 + DUPLICATE_WINDOW + Duration::from_millis(1)));
        assert!(!s.insert_at([7; 32], t0 + DUPLICATE_WINDOW + Duration::from_millis(2)));
        // Expired entries are pruned, so the set stays small.
        assert!(s.insert_at([8; 32], t0 + 3 * DUPLICATE_WINDOW));
        assert!(s.set.len() <= 2, "{:?}", s.set.len());
    }
}
