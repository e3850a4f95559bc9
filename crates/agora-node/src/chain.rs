//! The chain task: one tokio task that owns the consensus replica (and through it the market)
//! and moves bytes between it and the network. Everything else talks to it by message.

use std::time::Duration;

use agora_consensus::{ConsensusError, Effect, Replica};
use agora_net::{NetEvent, NetworkHandle, Penalty, Protocol, Topic};
use agora_types::Address;
use tokio::sync::{mpsc, oneshot, watch};

use crate::app::MarketApp;
use crate::daemon::ChainView;

/// Requests to the chain task.
pub enum ChainCommand {
    /// Admit a signed tx (encoded envelope) to the mempool and gossip it.
    SubmitTx {
        tx: Vec<u8>,
        reply: oneshot::Sender<Result<(), ConsensusError>>,
    },
    /// The nonce for `address`'s next transaction: past its txs in this node's mempool.
    PendingNonce {
        address: Address,
        reply: oneshot::Sender<u64>,
    },
    /// A committed block and its certificate.
    GetBlock {
        height: u64,
        reply: oneshot::Sender<BlockReply>,
    },
}

/// The answer to [`ChainCommand::GetBlock`].
pub type BlockReply =
    Result<Option<(agora_consensus::Block, agora_consensus::Certificate)>, String>;

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Evidence waiting to become transactions; more in one step is dropped (and logged).
const MAX_PENDING_EVIDENCE: usize = 64;

/// The chain summary the API reports, read off the replica.
pub fn view_of(replica: &R, peers: u32, syncing: bool) -> ChainView {
    ChainView {
        // `Replica::height` is already the last committed height.
        height: replica.height(),
        app_hash: replica.app_hash(),
        last_block_time: Some(replica.last_block_time()),
        chain_id: Some(replica.chain_id()),
        peers,
        syncing,
    }
}

/// The next network event: one set aside while batching, else the next from the queue.
async fn next_event(
    stash: &mut Option<NetEvent>,
    events: &mut mpsc::Receiver<NetEvent>,
) -> Option<NetEvent> {
    match stash.take() {
        Some(ev) => Some(ev),
        None => events.recv().await,
    }
}

/// Mirror the replica's counters into the metrics; after new commits, record the decision
/// latency and the market's slashes.
fn observe(metrics: &crate::metrics::Metrics, replica: &R, committed: &mut u64) {
    let stats = replica.stats();
    metrics.chain_step(stats, replica.round(), replica.mempool_len());
    if replica.height() != *committed {
        let from = std::mem::replace(committed, replica.height());
        let market = replica.app().shared();
        let m = market.read().expect("market lock");
        metrics.committed(from, stats.last_decision_ms, &m);
    }
}

/// A node committing blocks younger than this is not syncing.
const CAUGHT_UP_MS: u64 = 5_000;

pub type R = Replica<crate::timed_store::NodeStore, MarketApp>;

/// Run until `shutdown` fires. Returns the replica so the caller can flush and snapshot, or,
/// when the replica halted (a block the market cannot apply or store, a refusal to sign a
/// conflicting message), why: a halted node stops (fail-stop) instead of serving a chain that
/// no longer moves.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    mut replica: R,
    key: Option<agora_crypto::Keypair>,
    initial: Vec<Effect>,
    net: NetworkHandle,
    mut events: mpsc::Receiver<NetEvent>,
    mut commands: mpsc::Receiver<ChainCommand>,
    status: watch::Sender<ChainView>,
    blobs: std::sync::Arc<crate::blobsvc::BlobService>,
    batch_max: usize,
    fault: Option<crate::config::OperatorFault>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    mut shutdown: impl std::future::Future<Output = ()> + Unpin,
) -> Result<R, String> {
    // Responses to our own requests come back through this queue.
    let (resp_tx, mut resp_rx) = mpsc::channel::<(Address, Vec<u8>)>(256);
    let mut peers = 0usize;
    let byzantine = match (fault, key.as_ref()) {
        (Some(fault), Some(key)) => {
            tracing::warn!(target: "node.chain", ?fault, "fault injection: this operator is byzantine");
            Some(Byzantine {
                fault,
                key: key.clone(),
                chain: replica.chain_id(),
                sent: 0,
            })
        }
        _ => None,
    };
    let mut shell = Shell {
        net: net.clone(),
        evidence: Vec::new(),
        resp_tx: resp_tx.clone(),
        wakeup: now_ms() + 10,
        syncing: false,
        byzantine,
    };
    shell.apply(initial);
    // An event taken off the queue while batching consensus messages, handled next.
    let mut stash: Option<NetEvent> = None;
    let mut committed = replica.height();
    loop {
        let sleep = tokio::time::sleep(Duration::from_millis(
            shell.wakeup.saturating_sub(now_ms()).min(1000),
        ));
        tokio::select! {
            _ = &mut shutdown => break,
            _ = sleep => {
                let r = replica.tick(now_ms());
                shell.result(r, None);
            }
            Some(ev) = next_event(&mut stash, &mut events) => {
                match ev {
                    NetEvent::Consensus { from, data } => {
                        // Group commit: every consensus message already waiting goes in one
                        // batch with one durable flush (votes still leave only after it).
                        let mut batch = vec![(from, data)];
                        while batch.len() < batch_max {
                            match events.try_recv() {
                                Ok(NetEvent::Consensus { from, data }) => batch.push((from, data)),
                                Ok(other) => {
                                    stash = Some(other);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        let msgs: Vec<(Address, &[u8])> = batch
                            .iter()
                            .filter_map(|(p, d)| Some((agora_net::address_of(p)?, &d[..])))
                            .collect();
                        let peers_of: Vec<agora_net::PeerId> = batch
                            .iter()
                            .filter(|(p, _)| agora_net::address_of(p).is_some())
                            .map(|(p, _)| *p)
                            .collect();
                        match replica.handle_batch(&msgs, now_ms()) {
                            Ok((effects, rejected)) => {
                                shell.apply(effects);
                                for (i, e) in rejected {
                                    shell.reject(e, peers_of[i]);
                                }
                            }
                            Err(e) => shell.result(Err(e), None),
                        }
                    }
                    NetEvent::Request { protocol: Protocol::Sync, from, data, reply } => {
                        let Some(addr) = agora_net::address_of(&from) else { continue };
                        match replica.handle_message(addr, &data, now_ms()) {
                            Ok(effects) => {
                                let mut reply = Some(reply);
                                let mut rest = Vec::new();
                                for e in effects {
                                    match e {
                                        Effect::SendTo(to, bytes) if to == addr && reply.is_some() => {
                                            let _ = reply.take().expect("checked").send(bytes.into());
                                        }
                                        other => rest.push(other),
                                    }
                                }
                                if let Some(reply) = reply {
                                    let _ = reply.send(bytes::Bytes::new());
                                }
                                shell.apply(rest);
                            }
                            Err(e) => shell.reject(e, from),
                        }
                    }
                    NetEvent::Request { protocol: Protocol::Blob, from, data, reply } => {
                        // Served off this task: reading a chunk is disk work.
                        blobs.spawn_serve(net.clone(), from, data, reply);
                    }
                    NetEvent::Message { topic: Topic::Transactions, from, data } => {
                        if let Err(e) = replica.relay_tx(data.to_vec(), now_ms()).map(|eff| shell.apply(eff)) {
                            if matches!(e, ConsensusError::Wire(_)) {
                                let _ = net.report(from, Penalty::Malformed).await;
                            }
                        }
                    }
                    NetEvent::Message { .. } => {}
                    NetEvent::PeerConnected { .. } => peers += 1,
                    NetEvent::PeerDisconnected { .. } => peers = peers.saturating_sub(1),
                    NetEvent::PeerRefused { peer, reason } => {
                        tracing::warn!(target: "node.net", %peer, %reason, "peer refused");
                    }
                    NetEvent::PeerBanned { peer, points } => {
                        tracing::warn!(target: "node.net", %peer, points, "peer banned");
                    }
                }
            }
            Some((from, bytes)) = resp_rx.recv() => {
                if !bytes.is_empty() {
                    let r = replica.handle_message(from, &bytes, now_ms());
                    shell.result(r, agora_net::peer_id_for(&from));
                }
            }
            Some(cmd) = commands.recv() => match cmd {
                ChainCommand::GetBlock { height, reply } => {
                    let _ = reply.send(replica.block(height).map_err(|e| e.to_string()));
                }
                ChainCommand::SubmitTx { tx, reply } => {
                    let r = replica.submit_tx(tx, now_ms());
                    match r {
                        Ok(effects) => { shell.apply(effects); let _ = reply.send(Ok(())); }
                        Err(e) => { let _ = reply.send(Err(e)); }
                    }
                }
                ChainCommand::PendingNonce { address, reply } => {
                    let from = replica.app().shared().read().expect("market lock").nonce(&address);
                    let _ = reply.send(replica.pending_nonce(&address, from));
                }
            },
        }
        // Validators turn evidence into a slashing transaction.
        if let Some(key) = key.as_ref() {
            for ev in std::mem::take(&mut shell.evidence) {
                let tx = {
                    let market = replica.app().shared();
                    let m = market.read().expect("market lock");
                    crate::app::evidence_tx(key, &m, &ev)
                };
                if let Some(tx) = tx {
                    let r = replica.submit_tx(tx, now_ms());
                    match r {
                        Ok(effects) => shell.apply(effects),
                        Err(e) => {
                            tracing::warn!(target: "node.chain", error = %e, "evidence transaction refused")
                        }
                    }
                }
            }
        } else {
            shell.evidence.clear();
        }
        if let Some(why) = replica.halted() {
            return Err(format!(
                "the replica halted at height {}: {why}",
                replica.height()
            ));
        }
        observe(&metrics, &replica, &mut committed);
        let view = view_of(&replica, peers as u32, shell.syncing);
        status.send_if_modified(|v| {
            let changed = *v != view;
            *v = view;
            changed
        });
    }
    Ok(replica)
}

/// The side of the chain task that carries out effects: network sends, the next wakeup, the
/// syncing flag and evidence waiting to become transactions.
struct Shell {
    net: NetworkHandle,
    evidence: Vec<agora_consensus::Evidence>,
    resp_tx: mpsc::Sender<(Address, Vec<u8>)>,
    wakeup: u64,
    syncing: bool,
    /// A byzantine operator's forger (`[consensus] fault`, testing only).
    byzantine: Option<Byzantine>,
}

/// What a byzantine operator sends in place of one honest broadcast.
struct Byzantine {
    fault: crate::config::OperatorFault,
    key: agora_crypto::Keypair,
    chain: agora_types::Hash,
    /// Forgeries sent so far (the salt of conflicting nil votes).
    sent: u64,
}

impl Byzantine {
    fn sends(&mut self, bytes: Vec<u8>) -> Vec<Vec<u8>> {
        use crate::config::OperatorFault;
        use agora_consensus::forge;
        let extra = match self.fault {
            OperatorFault::Silent if forge::is_proposal_or_vote(&bytes) => return Vec::new(),
            OperatorFault::Silent => None,
            OperatorFault::DoubleVote => {
                let n = self.sent;
                forge::conflicting_vote(&self.key, &self.chain, &bytes, || n)
            }
            OperatorFault::Equivocate => {
                forge::equivocating_proposal(&self.key, &self.chain, &bytes)
            }
        };
        match extra {
            Some(alt) => {
                self.sent += 1;
                vec![bytes, alt]
            }
            None => vec![bytes],
        }
    }
}

impl Shell {
    fn result(&mut self, r: Result<Vec<Effect>, ConsensusError>, from: Option<agora_net::PeerId>) {
        match r {
            Ok(effects) => self.apply(effects),
            Err(e) => match from {
                Some(peer) => self.reject(e, peer),
                None => tracing::error!(target: "node.chain", error = %e, "consensus error"),
            },
        }
    }

    fn reject(&mut self, e: ConsensusError, peer: agora_net::PeerId) {
        tracing::debug!(target: "node.chain", %peer, error = %e, "rejected consensus message");
        let penalty = match e {
            ConsensusError::Wire(_) => Some(Penalty::Malformed),
            ConsensusError::BadSignature(_)
            | ConsensusError::InvalidSyncBlock(_)
            | ConsensusError::Cert(_)
            | ConsensusError::WrongProposer(_) => Some(Penalty::Invalid),
            ConsensusError::NotValidator(_) | ConsensusError::RoundTooFar(_) => {
                Some(Penalty::Minor)
            }
            _ => None,
        };
        if let Some(p) = penalty {
            let net = self.net.clone();
            tokio::spawn(async move {
                let _ = net.report(peer, p).await;
            });
        }
    }

    fn apply(&mut self, effects: Vec<Effect>) {
        for e in effects {
            let is_sync = matches!(e, Effect::RequestSync { .. });
            match e {
                Effect::Broadcast(bytes) => {
                    let sends = match self.byzantine.as_mut() {
                        Some(b) => b.sends(bytes),
                        None => vec![bytes],
                    };
                    for bytes in sends {
                        let net = self.net.clone();
                        tokio::spawn(async move {
                            if let Err(e) = net.send_consensus(bytes.into()).await {
                                tracing::debug!(target: "node.chain", error = %e, "broadcast failed");
                            }
                        });
                    }
                }
                Effect::SendTo(to, bytes)
                | Effect::RequestSync {
                    peer: to, bytes, ..
                } => {
                    if is_sync {
                        self.syncing = true;
                    }
                    let Some(peer) = agora_net::peer_id_for(&to) else {
                        continue;
                    };
                    let net = self.net.clone();
                    let back = self.resp_tx.clone();
                    tokio::spawn(async move {
                        match net.request(peer, Protocol::Sync, bytes.into()).await {
                            Ok(resp) => {
                                let _ = back.send((to, resp.to_vec())).await;
                            }
                            Err(e) => {
                                tracing::debug!(target: "node.chain", %peer, error = %e, "sync request failed")
                            }
                        }
                    });
                }
                Effect::Committed { block, .. } => {
                    // Caught up once the blocks we commit are recent.
                    if now_ms().saturating_sub(block.header.time) < CAUGHT_UP_MS {
                        self.syncing = false;
                    }
                    tracing::info!(target: "node.chain", height = block.header.height, txs = block.txs.len(), hash = %block.hash().short(), "committed");
                }
                Effect::Evidence(ev) => {
                    tracing::warn!(target: "node.chain", offender = %ev.offender(), height = ev.height(), "equivocation evidence");
                    if self.evidence.len() < MAX_PENDING_EVIDENCE {
                        self.evidence.push(ev);
                    }
                }
                Effect::NextWakeup(at) => self.wakeup = at,
            }
        }
    }
}
