//! Agora's peer-to-peer network layer: one libp2p swarm that carries opaque, size-capped byte
//! payloads between nodes, and knows nothing about auctions or consensus internals.
//!
//! Why it is shaped this way (measurements in `shared/notes/libp2p-small-network.md`):
//! - **Consensus messages** take the fastest path, a long-lived `libp2p-stream` to every known
//!   validator (about half the latency of a gossipsub hop), and are also published on the
//!   consensus gossip topic as a redundant relay for partitions and non-validators. Receivers
//!   deduplicate by content hash, so the application sees each payload once, whichever path won.
//! - **Transactions, bids, attestations/declines** use gossipsub, anonymous at the libp2p level
//!   (every payload carries its own ed25519 signature), with the blake3 of the payload as message
//!   id, small-network heartbeats, and 127.0.0.1 whitelisted from IP-colocation scoring.
//! - **Blob chunks and block sync** use request-response with a capped bytes codec.
//! - **Identity**: the libp2p key is the node's account key, so a peer id maps to an [`Address`].
//! - **Genesis check**: identify carries the genesis hash; a peer on another chain is refused,
//!   logged with both hashes, and kept out for the ban period. Nothing from a peer reaches the
//!   application before its genesis is confirmed, and [`NetEvent::PeerConnected`] means exactly that.
//! - **Bounded everywhere**: every channel is bounded, every payload is capped before it reaches
//!   the application (oversize input is dropped and the sender penalised), repeated offenders
//!   reported through [`NetworkHandle::report`] are disconnected and banned for a while.
//!
//! Drive it with [`Network::start`], which returns a cloneable [`NetworkHandle`] and the bounded
//! receiver of [`NetEvent`]s.

mod codec;
mod fanout;
mod identity;
mod scoring;
mod service;
mod stats;

use std::time::Duration;

use agora_types::{Address, Hash};
use bytes::Bytes;
use tokio::sync::oneshot;

pub use identity::{address_of, libp2p_keypair, peer_id_for};
pub use libp2p::{multiaddr, Multiaddr, PeerId};
pub use scoring::{Penalty, ScoreConfig};
pub use service::{Network, NetworkHandle};
pub use stats::{NetStats, TopicStats};

/// A gossip topic. The wire name includes the genesis hash, so two chains never share a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Topic {
    Transactions,
    /// Redundant relay of consensus messages (delivered as [`NetEvent::Consensus`]).
    Consensus,
    Bids,
    /// Operators' attestations and coprocessors' signed declines.
    Attestations,
}

impl Topic {
    pub const ALL: [Topic; 4] = [
        Topic::Transactions,
        Topic::Consensus,
        Topic::Bids,
        Topic::Attestations,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Topic::Transactions => "tx",
            Topic::Consensus => "consensus",
            Topic::Bids => "bids",
            Topic::Attestations => "attestations",
        }
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            Topic::Transactions => 0,
            Topic::Consensus => 1,
            Topic::Bids => 2,
            Topic::Attestations => 3,
        }
    }

    pub(crate) fn wire_name(self, genesis: &Hash) -> String {
        format!("/agora/{}/{}", genesis.short(), self.name())
    }
}

/// A request-response protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// Content-addressed blob chunks.
    Blob,
    /// Blocks and certificates for catching up.
    Sync,
}

/// Size caps and connection limits. Every number bounds memory a peer can make us spend.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest gossip payload delivered to the application.
    pub max_gossip_bytes: usize,
    /// Largest consensus payload (stream frame or consensus-topic gossip).
    pub max_consensus_bytes: usize,
    /// Largest request body.
    pub max_request_bytes: usize,
    /// Largest response body.
    pub max_response_bytes: usize,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// Capacity of the event channel to the application.
    pub event_queue: usize,
    /// Per-validator queue of outgoing consensus frames; a full queue drops the newest frame.
    pub consensus_queue: usize,
    /// Established connections, in and out, in total.
    pub max_connections: u32,
    /// Established connections to one peer.
    pub max_connections_per_peer: u32,
    /// Connections still negotiating.
    pub max_pending: u32,
    /// A peer whose genesis is not confirmed within this time is disconnected.
    pub handshake_timeout: Duration,
    /// A connection with no traffic is closed after this long.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_gossip_bytes: 1 << 20,
            max_consensus_bytes: 4 << 20,
            max_request_bytes: 64 << 10,
            max_response_bytes: 4 << 20,
            request_timeout: Duration::from_secs(10),
            event_queue: 4096,
            consensus_queue: 1024,
            max_connections: 128,
            max_connections_per_peer: 2,
            max_pending: 64,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Everything [`Network::start`] needs.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The node's ed25519 seed (`agora_crypto::Keypair::seed()`); the peer id derives from it.
    pub seed: [u8; 32],
    /// Addresses to listen on, e.g. `/ip4/127.0.0.1/tcp/0` or `/ip4/127.0.0.1/udp/0/quic-v1`.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start and whenever we are cut off. A `/p2p/<peer id>` suffix is
    /// recommended: it lets the dial check the key.
    pub bootstrap: Vec<Multiaddr>,
    /// The hash of the genesis file; peers with another one are refused.
    pub genesis_hash: Hash,
    /// The validator set: consensus messages are streamed to these peers directly.
    pub validators: Vec<Address>,
    pub limits: Limits,
    pub scoring: ScoreConfig,
    /// Run Kademlia (server mode) for discovery beyond the bootstrap list.
    pub kademlia: bool,
    /// Run mDNS. Useless on loopback (mDNS skips loopback interfaces); for LAN deployments.
    pub mdns: bool,
}

impl NetConfig {
    /// A config with default limits, Kademlia on and mDNS off.
    pub fn new(seed: [u8; 32], genesis_hash: Hash) -> NetConfig {
        NetConfig {
            seed,
            listen: Vec::new(),
            bootstrap: Vec::new(),
            genesis_hash,
            validators: Vec::new(),
            limits: Limits::default(),
            scoring: ScoreConfig::default(),
            kademlia: true,
            mdns: false,
        }
    }
}

/// What the network tells the application. `from` is the peer that delivered the payload,
/// which for gossip may be a relay rather than the author: authorship is the payload's own
/// signature.
#[derive(Debug)]
pub enum NetEvent {
    /// A gossip message on a non-consensus topic.
    Message {
        topic: Topic,
        from: PeerId,
        data: Bytes,
    },
    /// A consensus payload, from a validator stream or the consensus topic, delivered once.
    Consensus { from: PeerId, data: Bytes },
    /// A request; answer through `reply` (dropping it refuses the request).
    Request {
        protocol: Protocol,
        from: PeerId,
        data: Bytes,
        reply: oneshot::Sender<Bytes>,
    },
    /// A peer connected and confirmed our genesis.
    PeerConnected {
        peer: PeerId,
        address: Option<Address>,
    },
    /// The last connection to a confirmed peer closed.
    PeerDisconnected { peer: PeerId },
    /// A peer was refused at connect time (e.g. another genesis).
    PeerRefused { peer: PeerId, reason: String },
    /// A peer crossed the penalty threshold and is banned for the configured period.
    PeerBanned { peer: PeerId, points: u32 },
}

/// A connected peer as seen by [`NetworkHandle::peers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub peer: PeerId,
    pub address: Option<Address>,
    /// The remote address of one of our connections to it.
    pub remote: Option<Multiaddr>,
    /// Whether its genesis hash is confirmed equal to ours.
    pub confirmed: bool,
    pub validator: bool,
    /// Current penalty points.
    pub penalty_points: u32,
}

/// Errors of the network layer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("invalid node key: {0}")]
    Key(String),
    #[error("transport setup failed: {0}")]
    Transport(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: Multiaddr, reason: String },
    #[error("payload of {len} bytes over the cap of {cap}")]
    TooLarge { len: usize, cap: usize },
    #[error("publish failed: {0}")]
    Publish(String),
    #[error("peer {0} is not connected")]
    NotConnected(PeerId),
    #[error("request failed: {0}")]
    Request(String),
    #[error("request timed out")]
    Timeout,
    #[error("network is shut down")]
    Shutdown,
}

pub type Result<T, E = NetError> = std::result::Result<T, E>;
