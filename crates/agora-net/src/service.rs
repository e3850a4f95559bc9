//! The swarm: one derived behaviour, the task that drives it, and the handle that talks to it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agora_types::{Address, Hash};
use bytes::Bytes;
use futures::StreamExt;
use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{
    self, IdentTopic, MessageAcceptance, MessageAuthenticity, TopicHash, ValidationMode,
};
use libp2p::multiaddr::Protocol as AddrProtocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    allow_block_list, connection_limits, identify, kad, mdns, noise, tcp, yamux, Multiaddr, PeerId,
    StreamProtocol, Swarm, SwarmBuilder,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::codec::BytesCodec;
use crate::fanout::{self, Seen, Shared, CONSENSUS_PROTOCOL};
use crate::identity::{address_of, libp2p_keypair, peer_id_for};
use crate::scoring::{Penalty, Scores, Verdict};
use crate::stats::{inc, Stats};
use crate::{Limits, NetConfig, NetError, NetEvent, NetStats, PeerInfo, Protocol, Result, Topic};

const BLOB_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/blob/1");
const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/sync/1");
const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/agora/kad/1");
const GENESIS_PREFIX: &str = "agora/1/genesis/";
const COMMAND_QUEUE: usize = 1024;
const TICK: Duration = Duration::from_millis(500);
const REDIAL_EVERY: Duration = Duration::from_secs(3);
const SEEN_CAPACITY: usize = 16 * 1024;
/// How long gossipsub remembers a published or received message id (it refuses to publish the
/// same payload again within it).
const GOSSIP_DUPLICATE_WINDOW: Duration = Duration::from_secs(60);
const REFUSE_GRACE: Duration = Duration::from_millis(250);

#[derive(NetworkBehaviour)]
struct Behaviour {
    // Listed first: denies connections before the other behaviours see them.
    limits: connection_limits::Behaviour,
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    identify: identify::Behaviour,
    gossipsub: gossipsub::Behaviour,
    blob_rr: request_response::Behaviour<BytesCodec>,
    sync_rr: request_response::Behaviour<BytesCodec>,
    kad: Toggle<kad::Behaviour<kad::store::MemoryStore>>,
    mdns: Toggle<mdns::tokio::Behaviour>,
    stream: libp2p_stream::Behaviour,
}

/// Instructions from the handle (and from helper tasks) to the swarm task.
pub(crate) enum Command {
    Publish {
        topic: Topic,
        data: Bytes,
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    Request {
        peer: PeerId,
        protocol: Protocol,
        data: Bytes,
        reply: oneshot::Sender<Result<Bytes>>,
    },
    Respond {
        protocol: Protocol,
        channel: ResponseChannel<Bytes>,
        data: Bytes,
    },
    Report {
        peer: PeerId,
        penalty: Penalty,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    TopicPeers {
        topic: Topic,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Validators {
        peers: BTreeSet<PeerId>,
    },
    Partition {
        peers: BTreeSet<PeerId>,
    },
    Shutdown,
}

/// Entry point: builds the swarm and spawns its task.
pub struct Network;

impl Network {
    /// Start the network: listen on `cfg.listen` (returns once every listener is bound, so
    /// [`NetworkHandle::listen_addrs`] reports real ports), dial the bootstrap peers and spawn
    /// the swarm task. Must be called inside a tokio runtime.
    pub async fn start(cfg: NetConfig) -> Result<(NetworkHandle, mpsc::Receiver<NetEvent>)> {
        let key = libp2p_keypair(cfg.seed).map_err(|e| NetError::Key(e.to_string()))?;
        let local = key.public().to_peer_id();
        let limits = cfg.limits.clone();
        let genesis = cfg.genesis_hash;

        let mut swarm = build_swarm(key, &cfg)?;
        let topics: [TopicHash; 4] =
            Topic::ALL.map(|t| IdentTopic::new(t.wire_name(&genesis)).hash());
        for t in &topics {
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&IdentTopic::new(t.as_str()))
                .map_err(|e| NetError::Transport(e.to_string()))?;
        }

        listen_all(&mut swarm, &cfg.listen).await?;

        let (events_tx, events_rx) = mpsc::channel(limits.event_queue.max(1));
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let (confirmed_tx, confirmed_rx) = watch::channel(BTreeSet::new());
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            stats: stats.clone(),
            events: events_tx.clone(),
            seen: Mutex::new(Seen::new(SEEN_CAPACITY, fanout::DUPLICATE_WINDOW)),
            confirmed: confirmed_rx,
            commands: commands_tx.downgrade(),
            max_frame: limits.max_consensus_bytes,
        });

        let mut control = swarm.behaviour().stream.new_control();
        let incoming = control
            .accept(CONSENSUS_PROTOCOL)
            .map_err(|e| NetError::Transport(e.to_string()))?;
        let acceptor = tokio::spawn(fanout::run_acceptor(incoming, shared.clone()));

        let bootstrap: Vec<(Option<PeerId>, Multiaddr)> = cfg
            .bootstrap
            .iter()
            .map(|a| (peer_of_addr(a), a.clone()))
            .filter(|(p, _)| *p != Some(local))
            .collect();
        if let Some(kad) = swarm.behaviour_mut().kad.as_mut() {
            for (p, a) in &bootstrap {
                if let Some(p) = p {
                    kad.add_address(p, a.clone());
                }
            }
        }

        let validators: BTreeSet<PeerId> = cfg.validators.iter().filter_map(peer_id_for).collect();
        let mut service = Service {
            swarm,
            local,
            genesis,
            limits: limits.clone(),
            events: events_tx,
            shared: shared.clone(),
            confirmed: confirmed_tx,
            stats: stats.clone(),
            scores: Scores::new(cfg.scoring),
            validators: validators.clone(),
            connected: BTreeMap::new(),
            topics,
            published: Seen::new(SEEN_CAPACITY, GOSSIP_DUPLICATE_WINDOW),
            bootstrap,
            pending_blob: HashMap::new(),
            pending_sync: HashMap::new(),
            responders: commands_tx.downgrade(),
            last_redial: None,
            refusing: BTreeMap::new(),
            partitioned: BTreeSet::new(),
        };
        service.redial(Instant::now());
        let task = tokio::spawn(service.run(commands_rx, acceptor));

        let handle = NetworkHandle {
            inner: Arc::new(HandleInner {
                local,
                commands: commands_tx,
                stats,
                limits,
                control: Mutex::new(control),
                shared,
                writers: Mutex::new(BTreeMap::new()),
                task: Mutex::new(Some(task)),
            }),
        };
        handle.install_writers(&validators);
        info!(peer = %local, genesis = %genesis.short(), "net.start");
        Ok((handle, events_rx))
    }
}

fn build_swarm(key: libp2p::identity::Keypair, cfg: &NetConfig) -> Result<Swarm<Behaviour>> {
    let idle = cfg.limits.idle_timeout;
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Transport(e.to_string()))?
        .with_quic()
        .with_behaviour(|key| {
            build_behaviour(key, cfg)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        })
        .map_err(|e| NetError::Transport(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}

/// Gossipsub tuned for 4–30 nodes, per the measurements: fast heartbeats (mesh repair and
/// IHAVE recovery within ~200 ms), anonymous messages with a content-hash id, a transmit limit
/// above our own caps (so an oversize payload reaches our check and its sender is penalised
/// rather than silently dropped by the codec), and loopback exempt from IP-colocation scoring.
fn gossipsub_behaviour(limits: &Limits) -> std::result::Result<gossipsub::Behaviour, String> {
    let cap = limits.max_gossip_bytes.max(limits.max_consensus_bytes);
    let transmit = cap.saturating_mul(2).saturating_add(4096);
    let cfg = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(200))
        .heartbeat_initial_delay(Duration::from_millis(100))
        .mesh_n(4)
        .mesh_n_low(3)
        .mesh_n_high(8)
        .mesh_outbound_min(1)
        .gossip_lazy(4)
        .flood_publish(true)
        .max_transmit_size(transmit)
        .validation_mode(ValidationMode::Anonymous)
        .message_id_fn(|m| gossipsub::MessageId::from(blake3::hash(&m.data).as_bytes().to_vec()))
        .duplicate_cache_time(GOSSIP_DUPLICATE_WINDOW)
        .validate_messages()
        .build()
        .map_err(|e| e.to_string())?;
    let mut gs = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, cfg)?;
    let mut params = gossipsub::PeerScoreParams::default();
    params
        .ip_colocation_factor_whitelist
        .insert(IpAddr::V4(Ipv4Addr::LOCALHOST));
    params
        .ip_colocation_factor_whitelist
        .insert(IpAddr::V6(Ipv6Addr::LOCALHOST));
    params.app_specific_weight = 1.0;
    gs.with_peer_score(params, gossipsub::PeerScoreThresholds::default())?;
    Ok(gs)
}

fn build_behaviour(key: &libp2p::identity::Keypair, cfg: &NetConfig) -> std::io::Result<Behaviour> {
    let l = &cfg.limits;
    let local = key.public().to_peer_id();
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(l.max_connections))
        .with_max_established_per_peer(Some(l.max_connections_per_peer))
        .with_max_pending_incoming(Some(l.max_pending))
        .with_max_pending_outgoing(Some(l.max_pending));
    let identify = identify::Behaviour::new(
        identify::Config::new(
            format!("{GENESIS_PREFIX}{}", cfg.genesis_hash.to_hex()),
            key.public(),
        )
        .with_agent_version(format!("agora-net/{}", env!("CARGO_PKG_VERSION"))),
    );
    let gossipsub = gossipsub_behaviour(l).map_err(std::io::Error::other)?;
    let codec = BytesCodec {
        max_request: l.max_request_bytes,
        max_response: l.max_response_bytes,
    };
    let rr_cfg = request_response::Config::default().with_request_timeout(l.request_timeout);
    let blob = request_response::Behaviour::with_codec(
        codec,
        [(BLOB_PROTOCOL, ProtocolSupport::Full)],
        rr_cfg.clone(),
    );
    let sync = request_response::Behaviour::with_codec(
        codec,
        [(SYNC_PROTOCOL, ProtocolSupport::Full)],
        rr_cfg,
    );
    let kad = cfg.kademlia.then(|| {
        let mut k = kad::Behaviour::with_config(
            local,
            kad::store::MemoryStore::new(local),
            kad::Config::new(KAD_PROTOCOL),
        );
        // On a loopback testnet no external address is ever confirmed, and in client mode
        // discovery never gets past the bootstrap node.
        k.set_mode(Some(kad::Mode::Server));
        k
    });
    let mdns = if cfg.mdns {
        Some(mdns::tokio::Behaviour::new(mdns::Config::default(), local)?)
    } else {
        None
    };
    Ok(Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        blocked: allow_block_list::Behaviour::default(),
        identify,
        gossipsub,
        blob_rr: blob,
        sync_rr: sync,
        kad: kad.into(),
        mdns: mdns.into(),
        stream: libp2p_stream::Behaviour::new(),
    })
}

async fn listen_all(swarm: &mut Swarm<Behaviour>, addrs: &[Multiaddr]) -> Result<()> {
    let mut waiting = HashMap::new();
    for a in addrs {
        let id = swarm.listen_on(a.clone()).map_err(|e| NetError::Listen {
            addr: a.clone(),
            reason: e.to_string(),
        })?;
        waiting.insert(id, a.clone());
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !waiting.is_empty() {
        let ev = tokio::time::timeout_at(deadline, swarm.select_next_some()).await;
        match ev {
            Ok(SwarmEvent::NewListenAddr {
                listener_id,
                address,
            }) => {
                debug!(%address, "net.listen");
                waiting.remove(&listener_id);
            }
            Ok(SwarmEvent::ListenerError { listener_id, error }) => {
                if let Some(addr) = waiting.remove(&listener_id) {
                    return Err(NetError::Listen {
                        addr,
                        reason: error.to_string(),
                    });
                }
            }
            Ok(SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            }) => {
                if let Some(addr) = waiting.remove(&listener_id) {
                    let reason = match reason {
                        Ok(()) => "closed".to_string(),
                        Err(e) => e.to_string(),
                    };
                    return Err(NetError::Listen { addr, reason });
                }
            }
            Ok(_) => {}
            Err(_) => {
                let addr = waiting
                    .into_values()
                    .next()
                    .unwrap_or_else(Multiaddr::empty);
                return Err(NetError::Listen {
                    addr,
                    reason: "timed out".into(),
                });
            }
        }
    }
    Ok(())
}

fn peer_of_addr(a: &Multiaddr) -> Option<PeerId> {
    a.iter().find_map(|p| match p {
        AddrProtocol::P2p(id) => Some(id),
        _ => None,
    })
}

struct Conn {
    since: Instant,
    remote: Multiaddr,
    confirmed: bool,
}

struct Service {
    swarm: Swarm<Behaviour>,
    local: PeerId,
    genesis: Hash,
    limits: Limits,
    events: mpsc::Sender<NetEvent>,
    shared: Arc<Shared>,
    confirmed: watch::Sender<BTreeSet<PeerId>>,
    stats: Arc<Stats>,
    scores: Scores,
    validators: BTreeSet<PeerId>,
    connected: BTreeMap<PeerId, Conn>,
    topics: [TopicHash; 4],
    /// Payloads published within gossipsub's duplicate window, which it would refuse (with a
    /// warning) to publish again: a re-send of one goes over the direct streams only.
    published: Seen,
    bootstrap: Vec<(Option<PeerId>, Multiaddr)>,
    pending_blob: HashMap<OutboundRequestId, oneshot::Sender<Result<Bytes>>>,
    pending_sync: HashMap<OutboundRequestId, oneshot::Sender<Result<Bytes>>>,
    responders: mpsc::WeakSender<Command>,
    last_redial: Option<Instant>,
    /// Peers refused for another genesis, disconnected (and blocked) at the given time.
    refusing: BTreeMap<PeerId, Instant>,
    /// Peers cut off by a testnet partition ([`NetworkHandle::set_partition`]): blocked until
    /// the partition is healed, whatever their score.
    partitioned: BTreeSet<PeerId>,
}

impl Service {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>, acceptor: JoinHandle<()>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                cmd = commands.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(cmd) => self.on_command(cmd),
                },
                _ = tick.tick() => self.on_tick(Instant::now()),
            }
        }
        acceptor.abort();
        let _ = acceptor.await;
        for (_, reply) in self.pending_blob.drain().chain(self.pending_sync.drain()) {
            let _ = reply.send(Err(NetError::Shutdown));
        }
        self.confirmed.send_replace(BTreeSet::new());
        info!(peer = %self.local, "net.stop");
    }

    fn emit(&self, ev: NetEvent) {
        if self.events.try_send(ev).is_err() {
            inc(&self.stats.events_dropped);
        }
    }

    fn is_confirmed(&self, peer: &PeerId) -> bool {
        self.connected.get(peer).is_some_and(|c| c.confirmed)
    }

    fn topic_of(&self, hash: &TopicHash) -> Option<Topic> {
        Topic::ALL
            .into_iter()
            .find(|t| self.topics[t.index()] == *hash)
    }

    fn cap_of(&self, topic: Topic) -> usize {
        match topic {
            Topic::Consensus => self.limits.max_consensus_bytes,
            _ => self.limits.max_gossip_bytes,
        }
    }

    fn set_confirmed(&mut self, peer: PeerId, on: bool) {
        self.confirmed
            .send_if_modified(|s| if on { s.insert(peer) } else { s.remove(&peer) });
        let n = self.confirmed.borrow().len();
        self.stats.peers.store(
            u64::try_from(n).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    fn penalise(&mut self, peer: PeerId, penalty: Penalty) {
        inc(&self.stats.penalties);
        let now = Instant::now();
        match self.scores.report(peer, penalty, now) {
            Verdict::Scored { points } => {
                debug!(%peer, ?penalty, points, "net.penalty");
                let score = -f64::from(points);
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .set_application_score(&peer, score);
            }
            Verdict::Banned { points } => {
                warn!(%peer, ?penalty, points, "net.ban: peer banned for repeated invalid messages");
                inc(&self.stats.bans);
                self.swarm.behaviour_mut().blocked.block_peer(peer);
                let _ = self.swarm.disconnect_peer_id(peer);
                self.emit(NetEvent::PeerBanned { peer, points });
            }
            Verdict::AlreadyBanned => {}
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish { topic, data, reply } => {
                let len = data.len();
                let id = *blake3::hash(&data).as_bytes();
                if self.published.contains(&id) {
                    // Gossipsub still remembers this payload and would refuse it; the relay
                    // copy already went out (a re-send reaches validators over the streams).
                    debug!(
                        ?topic,
                        "net.publish skipped: published within the duplicate window"
                    );
                    if let Some(r) = reply {
                        let _ = r.send(Ok(()));
                    }
                    return;
                }
                let res = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(self.topics[topic.index()].clone(), data.to_vec());
                let res = match res {
                    Ok(_) => {
                        self.published.insert(id);
                        self.stats.topic_out(topic, len);
                        Ok(())
                    }
                    Err(e) => {
                        debug!(?topic, error = %e, "net.publish failed");
                        Err(NetError::Publish(e.to_string()))
                    }
                };
                if let Some(r) = reply {
                    let _ = r.send(res);
                }
            }
            Command::Request {
                peer,
                protocol,
                data,
                reply,
            } => {
                if !self.is_confirmed(&peer) {
                    let _ = reply.send(Err(NetError::NotConnected(peer)));
                    return;
                }
                inc(&self.stats.requests_out);
                let b = self.swarm.behaviour_mut();
                match protocol {
                    Protocol::Blob => {
                        let id = b.blob_rr.send_request(&peer, data);
                        self.pending_blob.insert(id, reply);
                    }
                    Protocol::Sync => {
                        let id = b.sync_rr.send_request(&peer, data);
                        self.pending_sync.insert(id, reply);
                    }
                }
            }
            Command::Respond {
                protocol,
                channel,
                data,
            } => {
                let b = self.swarm.behaviour_mut();
                let sent = match protocol {
                    Protocol::Blob => b.blob_rr.send_response(channel, data),
                    Protocol::Sync => b.sync_rr.send_response(channel, data),
                };
                if sent.is_err() {
                    debug!(?protocol, "net.respond: requester gone");
                }
            }
            Command::Report { peer, penalty } => self.penalise(peer, penalty),
            Command::Peers { reply } => {
                let now = Instant::now();
                let mut out = Vec::with_capacity(self.connected.len());
                let peers: Vec<(PeerId, Multiaddr, bool)> = self
                    .connected
                    .iter()
                    .map(|(p, c)| (*p, c.remote.clone(), c.confirmed))
                    .collect();
                for (peer, remote, confirmed) in peers {
                    out.push(PeerInfo {
                        peer,
                        address: address_of(&peer),
                        remote: Some(remote),
                        confirmed,
                        validator: self.validators.contains(&peer),
                        penalty_points: self.scores.points(&peer, now),
                    });
                }
                let _ = reply.send(out);
            }
            Command::TopicPeers { topic, reply } => {
                let hash = &self.topics[topic.index()];
                let peers: Vec<PeerId> = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .filter(|(p, ts)| ts.contains(&hash) && self.is_confirmed(p))
                    .map(|(p, _)| *p)
                    .collect();
                let _ = reply.send(peers);
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::Validators { peers } => {
                self.validators = peers;
                self.last_redial = None;
            }
            Command::Partition { peers } => self.partition(peers),
            Command::Shutdown => {}
        }
    }

    fn on_tick(&mut self, now: Instant) {
        let due: Vec<PeerId> = self
            .refusing
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            self.refusing.remove(&peer);
            if self.scores.is_banned(&peer, now) {
                self.swarm.behaviour_mut().blocked.block_peer(peer);
            }
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        for peer in self.scores.tick(now) {
            debug!(%peer, "net.ban expired");
            if !self.partitioned.contains(&peer) {
                self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            }
            self.swarm
                .behaviour_mut()
                .gossipsub
                .set_application_score(&peer, 0.0);
        }
        let timeout = self.limits.handshake_timeout;
        let stale: Vec<PeerId> = self
            .connected
            .iter()
            .filter(|(_, c)| !c.confirmed && now.duration_since(c.since) > timeout)
            .map(|(p, _)| *p)
            .collect();
        for peer in stale {
            warn!(%peer, "net.handshake: peer did not confirm its genesis in time; disconnecting");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        if self
            .last_redial
            .is_none_or(|t| now.duration_since(t) >= REDIAL_EVERY)
        {
            self.redial(now);
        }
    }

    /// Cut this node off from exactly `peers` (testnet fault injection): connections to them
    /// close and new ones are denied both ways; peers no longer listed are let back unless they
    /// are banned or refused.
    fn partition(&mut self, peers: BTreeSet<PeerId>) {
        let now = Instant::now();
        let cut: Vec<PeerId> = peers.difference(&self.partitioned).copied().collect();
        let healed: Vec<PeerId> = self.partitioned.difference(&peers).copied().collect();
        for peer in &cut {
            self.swarm.behaviour_mut().blocked.block_peer(*peer);
            let _ = self.swarm.disconnect_peer_id(*peer);
        }
        for peer in &healed {
            if !self.scores.is_banned(peer, now) && !self.refusing.contains_key(peer) {
                self.swarm.behaviour_mut().blocked.unblock_peer(*peer);
            }
        }
        if !cut.is_empty() || !healed.is_empty() {
            info!(
                cut = cut.len(),
                healed = healed.len(),
                total = peers.len(),
                "net.partition"
            );
            self.last_redial = None;
        }
        self.partitioned = peers;
    }

    /// Dial bootstrap peers and validators we are not connected to (not banned ones).
    fn redial(&mut self, now: Instant) {
        self.last_redial = Some(now);
        let alone = self.connected.is_empty();
        let bootstrap = self.bootstrap.clone();
        for (peer, addr) in bootstrap {
            match peer {
                Some(p) => {
                    if self.connected.contains_key(&p)
                        || self.scores.is_banned(&p, now)
                        || self.partitioned.contains(&p)
                    {
                        continue;
                    }
                    let opts = DialOpts::peer_id(p).addresses(vec![addr.clone()]).build();
                    if let Err(e) = self.swarm.dial(opts) {
                        debug!(%addr, error = %e, "net.dial bootstrap");
                    }
                }
                None if alone => {
                    if let Err(e) = self.swarm.dial(addr.clone()) {
                        debug!(%addr, error = %e, "net.dial bootstrap");
                    }
                }
                None => {}
            }
        }
        let validators: Vec<PeerId> = self.validators.iter().copied().collect();
        for p in validators {
            if p == self.local
                || self.connected.contains_key(&p)
                || self.scores.is_banned(&p, now)
                || self.partitioned.contains(&p)
            {
                continue;
            }
            // Addresses come from kad / identify; without any this fails quietly.
            let _ = self.swarm.dial(p);
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        match ev {
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                let remote = match &endpoint {
                    ConnectedPoint::Dialer { address, .. } => address.clone(),
                    ConnectedPoint::Listener { send_back_addr, .. } => send_back_addr.clone(),
                };
                debug!(peer = %peer_id, %remote, "net.connection established");
                self.connected.entry(peer_id).or_insert(Conn {
                    since: Instant::now(),
                    remote,
                    confirmed: false,
                });
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                debug!(peer = %peer_id, ?cause, "net.connection closed");
                if let Some(c) = self.connected.remove(&peer_id) {
                    if c.confirmed {
                        self.set_confirmed(peer_id, false);
                        self.emit(NetEvent::PeerDisconnected { peer: peer_id });
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(peer = ?peer_id, error = ?error, "net.dial failed");
            }
            SwarmEvent::NewListenAddr { address, .. } => info!(%address, "net.listening"),
            SwarmEvent::Behaviour(ev) => self.on_behaviour_event(ev),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, ev: BehaviourEvent) {
        match ev {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                self.on_identify(peer_id, info)
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            }) => self.on_gossip(propagation_source, message_id, message),
            BehaviourEvent::Gossipsub(gossipsub::Event::SlowPeer {
                peer_id,
                failed_messages,
            }) => {
                debug!(peer = %peer_id, ?failed_messages, "net.gossip slow peer");
            }
            BehaviourEvent::BlobRr(ev) => self.on_rr(Protocol::Blob, ev),
            BehaviourEvent::SyncRr(ev) => self.on_rr(Protocol::Sync, ev),
            BehaviourEvent::Kad(kad::Event::RoutingUpdated { peer, .. }) => {
                // Small networks want a full mesh: dial every peer discovery finds.
                let now = Instant::now();
                if peer != self.local
                    && !self.connected.contains_key(&peer)
                    && !self.scores.is_banned(&peer, now)
                    && self.connected.len()
                        < usize::try_from(self.limits.max_connections).unwrap_or(usize::MAX)
                {
                    let _ = self.swarm.dial(peer);
                }
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(list)) => {
                let now = Instant::now();
                for (peer, addr) in list {
                    if peer != self.local
                        && !self.connected.contains_key(&peer)
                        && !self.scores.is_banned(&peer, now)
                    {
                        let _ = self
                            .swarm
                            .dial(DialOpts::peer_id(peer).addresses(vec![addr]).build());
                    }
                }
            }
            _ => {}
        }
    }

    fn on_identify(&mut self, peer: PeerId, info: identify::Info) {
        let ours = self.genesis.to_hex();
        let theirs = info
            .protocol_version
            .strip_prefix(GENESIS_PREFIX)
            .map(str::to_owned);
        if theirs.as_deref() != Some(ours.as_str()) {
            let reason = match &theirs {
                Some(t) => format!("peer {peer} has genesis {t}, we have {ours}"),
                None => format!(
                    "peer {peer} speaks {:?}, not an agora genesis; we have {ours}",
                    info.protocol_version
                ),
            };
            warn!(%peer, "net.refused: {reason}");
            if self.refusing.contains_key(&peer) {
                return;
            }
            inc(&self.stats.refused_genesis);
            // Banned at once (no redial, nothing delivered: the peer is never confirmed), but
            // disconnected a moment later so that our own identify reaches it and it can log
            // the mismatch too.
            let now = Instant::now();
            self.scores.ban(peer, now);
            self.refusing.insert(peer, now + REFUSE_GRACE);
            if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
                kad.remove_peer(&peer);
            }
            self.emit(NetEvent::PeerRefused { peer, reason });
            return;
        }
        if let Some(kad) = self.swarm.behaviour_mut().kad.as_mut() {
            for a in info.listen_addrs.iter().take(16) {
                kad.add_address(&peer, a.clone());
            }
        }
        let newly = match self.connected.get_mut(&peer) {
            Some(c) if !c.confirmed => {
                c.confirmed = true;
                true
            }
            _ => false,
        };
        if newly {
            self.set_confirmed(peer, true);
            info!(%peer, "net.peer confirmed");
            self.emit(NetEvent::PeerConnected {
                peer,
                address: address_of(&peer),
            });
        }
    }

    fn on_gossip(&mut self, source: PeerId, id: gossipsub::MessageId, msg: gossipsub::Message) {
        let verdict = match self.topic_of(&msg.topic) {
            None => MessageAcceptance::Ignore,
            Some(_) if !self.is_confirmed(&source) => MessageAcceptance::Ignore,
            Some(topic) => {
                let cap = self.cap_of(topic);
                if msg.data.len() > cap {
                    inc(&self.stats.oversize);
                    warn!(peer = %source, ?topic, len = msg.data.len(), cap, "net.gossip oversize message dropped");
                    self.penalise(source, Penalty::Oversize);
                    MessageAcceptance::Reject
                } else {
                    self.stats.topic_in(topic, msg.data.len());
                    let data = Bytes::from(msg.data);
                    if topic == Topic::Consensus {
                        self.shared.try_deliver_consensus(source, data);
                    } else {
                        self.emit(NetEvent::Message {
                            topic,
                            from: source,
                            data,
                        });
                    }
                    MessageAcceptance::Accept
                }
            }
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &source, verdict);
    }

    fn on_rr(&mut self, protocol: Protocol, ev: request_response::Event<Bytes, Bytes>) {
        match ev {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    if !self.is_confirmed(&peer) {
                        debug!(%peer, "net.request from unconfirmed peer dropped");
                        return;
                    }
                    inc(&self.stats.requests_in);
                    let (tx, rx) = oneshot::channel();
                    let ev = NetEvent::Request {
                        protocol,
                        from: peer,
                        data: request,
                        reply: tx,
                    };
                    if self.events.try_send(ev).is_err() {
                        inc(&self.stats.events_dropped);
                        return;
                    }
                    let commands = self.responders.clone();
                    let timeout = self.limits.request_timeout;
                    let cap = self.limits.max_response_bytes;
                    tokio::spawn(async move {
                        let Ok(Ok(data)) = tokio::time::timeout(timeout, rx).await else {
                            return;
                        };
                        if data.len() > cap {
                            warn!(
                                len = data.len(),
                                cap, "net.respond: response over the cap not sent"
                            );
                            return;
                        }
                        if let Some(c) = commands.upgrade() {
                            let _ = c
                                .send(Command::Respond {
                                    protocol,
                                    channel,
                                    data,
                                })
                                .await;
                        }
                    });
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(reply) = self.pending_mut(protocol).remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                inc(&self.stats.request_failures);
                debug!(%peer, ?protocol, %error, "net.request failed");
                if let Some(reply) = self.pending_mut(protocol).remove(&request_id) {
                    let e = match error {
                        request_response::OutboundFailure::Timeout => NetError::Timeout,
                        other => NetError::Request(other.to_string()),
                    };
                    let _ = reply.send(Err(e));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, ?protocol, %error, "net.inbound request failed");
                if let request_response::InboundFailure::Io(e) = &error {
                    if e.kind() == std::io::ErrorKind::InvalidData {
                        inc(&self.stats.oversize);
                        self.penalise(peer, Penalty::Oversize);
                    }
                }
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn pending_mut(
        &mut self,
        protocol: Protocol,
    ) -> &mut HashMap<OutboundRequestId, oneshot::Sender<Result<Bytes>>> {
        match protocol {
            Protocol::Blob => &mut self.pending_blob,
            Protocol::Sync => &mut self.pending_sync,
        }
    }
}

/// The queue and task of one validator's consensus stream.
type Writer = (mpsc::Sender<Bytes>, JoinHandle<()>);

struct HandleInner {
    local: PeerId,
    commands: mpsc::Sender<Command>,
    stats: Arc<Stats>,
    limits: Limits,
    control: Mutex<libp2p_stream::Control>,
    shared: Arc<Shared>,
    writers: Mutex<BTreeMap<PeerId, Writer>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// A cheap, cloneable handle to the running network.
#[derive(Clone)]
pub struct NetworkHandle {
    inner: Arc<HandleInner>,
}

impl std::fmt::Debug for NetworkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NetworkHandle({})", self.inner.local)
    }
}

impl NetworkHandle {
    /// Our peer id (derived from the node key).
    pub fn local_peer_id(&self) -> PeerId {
        self.inner.local
    }

    /// A snapshot of the traffic counters.
    pub fn stats(&self) -> NetStats {
        self.inner.stats.snapshot()
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .commands
            .send(make(tx))
            .await
            .map_err(|_| NetError::Shutdown)?;
        rx.await.map_err(|_| NetError::Shutdown)
    }

    /// Publish on a gossip topic. Fails when the payload is over its cap or when no peer is
    /// subscribed yet (gossipsub does not keep such a message for later).
    pub async fn publish(&self, topic: Topic, data: Bytes) -> Result<()> {
        let cap = match topic {
            Topic::Consensus => self.inner.limits.max_consensus_bytes,
            _ => self.inner.limits.max_gossip_bytes,
        };
        if data.len() > cap {
            return Err(NetError::TooLarge {
                len: data.len(),
                cap,
            });
        }
        self.call(|reply| Command::Publish {
            topic,
            data,
            reply: Some(reply),
        })
        .await?
    }

    /// Send a consensus payload to every validator over its direct stream, and publish it on
    /// the consensus topic as a relay. Returns once queued; a full per-peer queue drops the
    /// frame for that peer (the relay still carries it). Identical bytes sent twice within the
    /// duplicate window (2 s) are delivered once; a re-broadcast after it is delivered again.
    pub async fn send_consensus(&self, data: Bytes) -> Result<()> {
        let cap = self.inner.limits.max_consensus_bytes;
        if data.len() > cap {
            return Err(NetError::TooLarge {
                len: data.len(),
                cap,
            });
        }
        if let Ok(writers) = self.inner.writers.lock() {
            for (tx, _) in writers.values() {
                if tx.try_send(data.clone()).is_err() {
                    inc(&self.inner.stats.stream_dropped);
                }
            }
        }
        self.inner
            .commands
            .send(Command::Publish {
                topic: Topic::Consensus,
                data,
                reply: None,
            })
            .await
            .map_err(|_| NetError::Shutdown)
    }

    /// Ask `peer` and wait for its answer (bounded by the configured request timeout).
    pub async fn request(&self, peer: PeerId, protocol: Protocol, data: Bytes) -> Result<Bytes> {
        let limit = self.inner.limits.request_timeout + Duration::from_secs(1);
        self.request_within(peer, protocol, data, limit).await
    }

    /// [`NetworkHandle::request`], giving up with [`NetError::Timeout`] after `limit` (a caller
    /// that has other peers to ask wants a shorter wait than the transport's timeout).
    pub async fn request_within(
        &self,
        peer: PeerId,
        protocol: Protocol,
        data: Bytes,
        limit: Duration,
    ) -> Result<Bytes> {
        let cap = self.inner.limits.max_request_bytes;
        if data.len() > cap {
            return Err(NetError::TooLarge {
                len: data.len(),
                cap,
            });
        }
        let fut = self.call(|reply| Command::Request {
            peer,
            protocol,
            data,
            reply,
        });
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r?,
            Err(_) => Err(NetError::Timeout),
        }
    }

    /// Report a peer that sent something invalid. Repeated offenders are disconnected and
    /// banned for the configured period.
    pub async fn report(&self, peer: PeerId, penalty: Penalty) -> Result<()> {
        self.inner
            .commands
            .send(Command::Report { peer, penalty })
            .await
            .map_err(|_| NetError::Shutdown)
    }

    /// Connected peers (confirmed or still in their handshake).
    pub async fn peers(&self) -> Result<Vec<PeerInfo>> {
        self.call(|reply| Command::Peers { reply }).await
    }

    /// Confirmed peers subscribed to `topic`: a publish reaches these directly. Poll this to
    /// wait for readiness before the first publish.
    pub async fn topic_peers(&self, topic: Topic) -> Result<Vec<PeerId>> {
        self.call(|reply| Command::TopicPeers { topic, reply })
            .await
    }

    /// The addresses we listen on (real ports, even when configured with port 0).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>> {
        self.call(|reply| Command::ListenAddrs { reply }).await
    }

    /// Replace the validator set the consensus fan-out streams to.
    /// Testnet fault injection: cut this node off from exactly `peers`, replacing any earlier
    /// set (empty heals). Nodes call this only when their testnet fault file is configured.
    pub async fn set_partition(&self, peers: BTreeSet<PeerId>) -> Result<()> {
        self.inner
            .commands
            .send(Command::Partition { peers })
            .await
            .map_err(|_| NetError::Shutdown)
    }

    pub async fn set_validators(&self, validators: &[Address]) -> Result<()> {
        let peers: BTreeSet<PeerId> = validators.iter().filter_map(peer_id_for).collect();
        self.install_writers(&peers);
        self.inner
            .commands
            .send(Command::Validators { peers })
            .await
            .map_err(|_| NetError::Shutdown)
    }

    fn install_writers(&self, peers: &BTreeSet<PeerId>) {
        let Ok(mut writers) = self.inner.writers.lock() else {
            return;
        };
        writers.retain(|p, (_, task)| {
            let keep = peers.contains(p);
            if !keep {
                task.abort();
            }
            keep
        });
        for p in peers {
            if *p == self.inner.local || writers.contains_key(p) {
                continue;
            }
            let Ok(control) = self.inner.control.lock().map(|c| c.clone()) else {
                return;
            };
            let (tx, rx) = mpsc::channel(self.inner.limits.consensus_queue.max(1));
            let task = tokio::spawn(fanout::run_writer(
                *p,
                control,
                rx,
                self.inner.shared.clone(),
            ));
            writers.insert(*p, (tx, task));
        }
    }

    /// Stop the network: close every connection and wait for the swarm task to end. Later
    /// calls on any clone of this handle fail with [`NetError::Shutdown`].
    pub async fn shutdown(&self) {
        let writers = match self.inner.writers.lock() {
            Ok(mut w) => std::mem::take(&mut *w),
            Err(_) => BTreeMap::new(),
        };
        for (_, (_, task)) in writers {
            task.abort();
        }
        let _ = self.inner.commands.send(Command::Shutdown).await;
        let task = self.inner.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
