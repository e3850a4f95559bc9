//! The node daemon (`agora node`): opens the store and the chain, starts the p2p network and
//! the chain task, serves the API, and stops cleanly.
//!
//! Shape:
//! - [`Identity`] is the node's key-derived identity, fixed for the process.
//! - The chain task (`crate::chain`) owns the consensus replica, which owns the market
//!   application; it is the only writer of chain state. It publishes a [`ChainView`] through a
//!   `tokio::sync::watch` channel after every step; API handlers read the receiver.
//! - [`AppState`] is what API handlers see: identity, chain view, store, metrics, a read
//!   handle on the market and the chain task's command queue.
//! - [`Shutdown`] is one broadcast signal; every task the daemon spawns takes a
//!   [`Shutdown::wait`] future, and [`run`] waits for the API server to drain before flushing the
//!   store, so accepted work is durable when the process exits.

use std::net::SocketAddr;
use std::sync::Arc;

use agora_consensus::Replica;
use agora_crypto::Keypair;
use agora_net::{Multiaddr, NetConfig, Network};
use agora_store::Store;
use agora_types::Hash;
use anyhow::Context;
use tokio::sync::{mpsc, watch};

use crate::app::{MarketApp, SharedMarket};
use crate::chain::{now_ms, ChainCommand};

use crate::config::Config;
use crate::history::{History, HistoryStore};
use crate::home::{peer_id, Home};
use crate::metrics::Metrics;
use crate::timed_store::TimedStore;

/// Store tree holding node-level chain facts.
pub mod chain_meta {
    pub const TREE: &str = "chain";
    /// Genesis hash (chain id), 32 bytes: a store serves one chain only.
    pub const CHAIN_ID: &[u8] = b"chain_id";
}

/// How long open API connections may take to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The node software version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Who this node is.
#[derive(Debug, Clone)]
pub struct Identity {
    pub address: agora_types::Address,
    pub peer_id: String,
    pub roles: Vec<String>,
}

impl Identity {
    pub fn new(key: &Keypair, config: &Config) -> Identity {
        Identity {
            address: key.address(),
            peer_id: peer_id(key),
            roles: config.role_names(),
        }
    }
}

/// The node's summary of the chain, as reported by `/v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainView {
    /// The last committed height (0: genesis only).
    pub height: u64,
    pub app_hash: Hash,
    /// Time of the last committed block (of the genesis before the first block).
    pub last_block_time: Option<u64>,
    pub chain_id: Option<Hash>,
    pub peers: u32,
    pub syncing: bool,
}

impl ChainView {
    /// `now` (this node's clock) minus the last block's time, never negative.
    pub fn last_block_age_ms(&self, now: u64) -> Option<u64> {
        self.last_block_time.map(|t| now.saturating_sub(t))
    }

    /// No block for longer than `halt_after_ms`. A node catching up is not judging the
    /// chain: the blocks it commits are old by design.
    pub fn halted(&self, now: u64, halt_after_ms: u64) -> bool {
        !self.syncing
            && self
                .last_block_age_ms(now)
                .is_some_and(|age| age > halt_after_ms)
    }
}

/// How long without a block before the node reports the chain halted: three empty-block
/// intervals, and never less than 3 s.
pub fn halt_after_ms(empty_block_interval_ms: u64) -> u64 {
    empty_block_interval_ms.saturating_mul(3).max(3_000)
}

/// What API handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub identity: Arc<Identity>,
    pub chain: watch::Receiver<ChainView>,
    pub store: Store,
    /// The store with the freezer: per-height history, wherever it is.
    pub history: crate::history::History,
    pub metrics: Arc<Metrics>,
    /// The replicated market, read by query routes.
    pub market: SharedMarket,
    /// Requests to the chain task (transaction submission).
    pub chain_commands: mpsc::Sender<ChainCommand>,
    /// Content-addressed modules, inputs and outputs under `HOME/blobs`, and their transfer.
    pub blobs: Arc<crate::blobsvc::BlobService>,
    /// The p2p network (job outputs are fetched from the coprocessors that computed them).
    pub net: agora_net::NetworkHandle,
    /// No block for this long and the node reports the chain halted ([`halt_after_ms`]).
    pub halt_after_ms: u64,
    /// Per-caller rate of `POST /v1/blobs`.
    pub uploads: Arc<crate::upload_limit::UploadLimit>,
    /// Hash of `api.token`, when set: POST routes require it.
    pub api_token: Option<agora_types::Hash>,
}

/// A broadcast shutdown signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
        }
    }
}

impl Shutdown {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Whether [`Shutdown::trigger`] has been called.
    pub fn triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once [`Shutdown::trigger`] has been called (immediately if it already was).
    pub fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            // An error means every sender is gone, which also means "stop".
            let _ = rx.wait_for(|stop| *stop).await;
        }
    }
}

/// The hash of the API token, checked against where the API listens: beyond loopback a token
/// is required, and the node says that its API is reachable from outside.
fn api_token(api: &crate::config::ApiSection) -> anyhow::Result<Option<agora_types::Hash>> {
    let token = api.token.trim();
    if api.listen.ip().is_loopback() {
        return Ok((!token.is_empty()).then(|| agora_types::Hash::of(token.as_bytes())));
    }
    if token.is_empty() {
        anyhow::bail!(
            "api.listen {} is reachable from other machines, and the API has no token: set api.token (or AGORA__API__TOKEN) so that state-changing routes need it, or listen on 127.0.0.1",
            api.listen
        );
    }
    tracing::warn!(
        target: "node.start",
        listen = %api.listen,
        "the API listens beyond loopback: reads are open to anyone who can reach it; transactions and uploads need the bearer token"
    );
    Ok(Some(agora_types::Hash::of(token.as_bytes())))
}

/// Run the node until Ctrl-C or SIGTERM. Returns once the API has drained and the store is
/// flushed.
pub async fn run(home: Home, config: Config, key: Keypair) -> anyhow::Result<()> {
    let identity = Arc::new(Identity::new(&key, &config));
    let api_token = api_token(&config.api)?;
    let store_path = home.resolve(&config.store.path);
    let store = Store::open_with_cache(&store_path, config.store.cache_bytes()).map_err(|e| {
        if e.to_string().contains("could not acquire lock") {
            anyhow::anyhow!(
                "store {} is locked: is another node already running on home {}?",
                store_path.display(),
                home.root().display()
            )
        } else {
            anyhow::Error::new(e)
        }
    })?;
    // Holding the store lock, this is the only node on this home: a leftover api.addr is from
    // a killed run and must not be mistaken for this one's.
    let _ = std::fs::remove_file(home.api_addr_file());
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen for the API on {} (api.listen)",
                config.api.listen
            )
        })?;
    let api_addr = listener
        .local_addr()
        .context("reading the API's bound address")?;
    let blobs_path = home.root().join("blobs");
    let blobs = agora_blobs::BlobStore::open(&blobs_path, config.blobs.store_config())
        .with_context(|| format!("cannot open the blob store at {}", blobs_path.display()))?;
    let genesis_path = home.resolve(&config.node.genesis_file);
    let genesis = crate::genesis::load(&genesis_path)?;
    let cgen = crate::genesis::consensus_genesis(&genesis)?;
    check_chain_id(&store, &cgen.chain_id, &genesis_path)?;
    let freezer_path = home.resolve(&config.store.freezer_path);
    let history = History::open(store.clone(), &freezer_path)?;
    let app = MarketApp::open(&genesis, store.clone())?;
    let market = app.shared();
    let is_validator = cgen.validators.contains(&key.address());
    let consensus_cfg = agora_consensus::Config {
        empty_block_interval_ms: config.consensus.empty_block_interval_ms,
        adaptive_timeouts: config.consensus.adaptive_timeouts,
        pass_over_after: if config.consensus.pass_over_absent {
            agora_consensus::Config::default().pass_over_after
        } else {
            0
        },
        ..agora_consensus::Config::default()
    };
    let metrics = Arc::new(Metrics::new(VERSION, &identity.roles));
    let (replica, initial) = Replica::open(
        cgen.clone(),
        consensus_cfg,
        is_validator.then(|| key.clone()),
        TimedStore::new(HistoryStore(history.clone()), metrics.flush_histogram()),
        app,
        now_ms(),
    )
    .with_context(|| format!("cannot open the chain in {}", store_path.display()))?;
    let view = crate::chain::view_of(&replica, 0, false);

    let mut net_cfg = NetConfig::new(key.seed(), cgen.chain_id);
    net_cfg.listen = vec![to_libp2p(&config.network.listen, "network.listen")?];
    net_cfg.bootstrap = config
        .network
        .bootstrap
        .iter()
        .map(|a| to_libp2p(a, "network.bootstrap"))
        .collect::<anyhow::Result<_>>()?;
    net_cfg.validators = cgen
        .validators
        .validators()
        .iter()
        .map(|v| v.public_key)
        .collect();
    let (net, net_events) = Network::start(net_cfg)
        .await
        .context("cannot start the p2p network (network.listen)")?;
    let p2p_addr = write_p2p_addr(&home, &net).await?;

    let blobs = Arc::new(crate::blobsvc::BlobService::open(Arc::new(blobs), &store)?);
    let (chain_tx, chain_rx) = watch::channel(view.clone());
    let (commands_tx, commands_rx) = mpsc::channel(1024);
    let state = AppState {
        identity: identity.clone(),
        chain: chain_rx,
        store: store.clone(),
        history: history.clone(),
        metrics,
        market,
        chain_commands: commands_tx.clone(),
        blobs: blobs.clone(),
        net: net.clone(),
        halt_after_ms: halt_after_ms(config.consensus.empty_block_interval_ms),
        uploads: Arc::new(crate::upload_limit::UploadLimit::new(
            config.blobs.upload_mib_per_s,
            config.blobs.upload_burst_mib,
        )),
        api_token,
    };

    write_api_addr(&home, api_addr)?;

    tracing::info!(
        target: "node.start",
        version = VERSION,
        address = %identity.address,
        peer_id = %identity.peer_id,
        roles = ?identity.roles,
        height = view.height,
        api = %format!("http://{api_addr}"),
        store = %store_path.display(),
        "node started"
    );

    tracing::info!(
        target: "node.start",
        p2p = %p2p_addr,
        validator = is_validator,
        chain_id = %cgen.chain_id,
        "p2p network started"
    );

    let shutdown = Shutdown::default();
    let tasks = crate::supervise::Supervisor::new(shutdown.clone());
    let signals = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            let name = wait_for_signal().await;
            tracing::info!(target: "node.stop", signal = name, "shutting down");
            shutdown.trigger();
        }
    });

    tasks.spawn_until_shutdown(
        "blob gc",
        blobs.clone().gc_loop(
            state.market.clone(),
            std::time::Duration::from_secs(config.blobs.gc_interval_s.max(1)),
        ),
    );
    let net_events = match crate::net_faults::configured() {
        None => net_events,
        Some(path) => {
            let (shaping_tx, shaping_rx) = watch::channel(crate::net_faults::Shaping::default());
            let (events_tx, events_rx) =
                mpsc::channel(agora_net::Limits::default().event_queue.max(1));
            let seed = u64::from_le_bytes(
                Hash::derive("agora/v1/testnet-loss", identity.peer_id.as_bytes()).0[..8]
                    .try_into()
                    .expect("8 bytes"),
            );
            tasks.spawn_until_shutdown(
                "net faults",
                crate::net_faults::watch(path, net.clone(), shaping_tx),
            );
            tasks.spawn_until_shutdown(
                "net shaping",
                crate::net_faults::shape(net_events, events_tx, shaping_rx, seed),
            );
            events_rx
        }
    };
    tasks.spawn_until_shutdown(
        "history",
        history
            .clone()
            .freezing_loop(config.store.hot_heights, std::time::Duration::from_secs(1)),
    );

    let chain_task = tasks.spawn_service(
        "chain",
        crate::chain::run(
            replica,
            is_validator.then(|| key.clone()),
            initial,
            net.clone(),
            net_events,
            commands_rx,
            chain_tx,
            blobs.clone(),
            config.consensus.batch_max.clamp(1, 4096),
            config.consensus.operator_fault(),
            state.metrics.clone(),
            Box::pin(shutdown.wait()),
        ),
    );

    let agent_cfg = crate::agent::AgentConfig {
        coprocessor: config
            .node
            .roles
            .contains(&crate::config::Role::Coprocessor),
        operator: is_validator,
        section: config.coprocessor.clone(),
    };
    let agent_task = if agent_cfg.coprocessor || agent_cfg.operator {
        let agent = crate::agent::Agent::new(
            agent_cfg,
            key.clone(),
            cgen.chain_id,
            state.market.clone(),
            commands_tx,
            net.clone(),
            blobs.clone(),
            state.metrics.clone(),
            tasks.clone(),
        )?;
        let (chain, stopping) = (state.chain.clone(), shutdown.wait());
        Some(tasks.spawn_service("agent", async move {
            agent.run(chain, stopping).await;
            Ok(())
        }))
    } else {
        None
    };

    let mut server = tokio::spawn(crate::api_serve::serve(
        listener,
        crate::api::router(state),
        config.api.clone(),
        shutdown.wait(),
    ));
    let served = tokio::select! {
        res = &mut server => res,
        () = shutdown.wait() => {
            // Let in-flight requests finish, but never hang on a client that will not go away.
            match tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await {
                Ok(res) => res,
                Err(_) => {
                    tracing::warn!(target: "node.stop", timeout = ?DRAIN_TIMEOUT, "API connections did not drain; closing them");
                    server.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    let served = match served {
        Ok(res) => res.context("API server failed"),
        Err(join) => Err(anyhow::anyhow!("API server task failed: {join}")),
    };
    // Whatever ended the server, stop everything else too.
    shutdown.trigger();
    signals.abort();
    if let Some(agent) = agent_task {
        let _ = agent.await;
    }
    match chain_task.await {
        Ok(Some(replica)) => {
            let (_, app) = replica.into_parts();
            if let Err(e) = app.snapshot_now() {
                tracing::error!(target: "node.stop", error = %e, "cannot write the market snapshot");
            }
        }
        // The chain task failed (the supervisor logged why): its market may be half-changed,
        // so no snapshot; the store holds every decided block, and a restart re-applies them
        // from the last durable snapshot.
        Ok(None) => {}
        Err(e) => tracing::error!(target: "node.stop", error = %e, "chain task failed"),
    }
    net.shutdown().await;
    let _ = std::fs::remove_file(home.p2p_addr_file());

    let _ = std::fs::remove_file(home.api_addr_file());
    store
        .flush()
        .with_context(|| format!("flushing the store at {}", store_path.display()))?;
    served?;
    if let Some(failure) = tasks.failure() {
        tracing::error!(target: "node.stop", reason = %failure, "stopped after a failure");
        anyhow::bail!(failure);
    }
    tracing::info!(target: "node.stop", "stopped cleanly");
    Ok(())
}

/// Refuse a store that belongs to another chain; remember the chain id in a fresh one.
fn check_chain_id(
    store: &Store,
    chain_id: &Hash,
    genesis_path: &std::path::Path,
) -> anyhow::Result<()> {
    let tree = store.tree(chain_meta::TREE)?;
    match tree.get(chain_meta::CHAIN_ID)? {
        Some(stored) if stored.as_ref() != chain_id.as_bytes() => anyhow::bail!(
            "the store at {} belongs to chain {}, but {} is chain {}; use another home or the matching genesis",
            store.path().display(),
            hex::encode(&stored),
            genesis_path.display(),
            chain_id
        ),
        Some(_) => Ok(()),
        None => {
            tree.insert(chain_meta::CHAIN_ID, chain_id.as_bytes())?;
            store.flush()?;
            Ok(())
        }
    }
}

fn to_libp2p(addr: &multiaddr::Multiaddr, key: &str) -> anyhow::Result<Multiaddr> {
    addr.to_string()
        .parse()
        .map_err(|e| anyhow::anyhow!("{key}: invalid multiaddr {addr}: {e}"))
}

/// Wait until libp2p reports a listen address and record it, with our peer id, in
/// `HOME/p2p.addr` so that testnets and scripts can bootstrap from it.
async fn write_p2p_addr(home: &Home, net: &agora_net::NetworkHandle) -> anyhow::Result<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let addr = loop {
        let addrs = net
            .listen_addrs()
            .await
            .context("reading the p2p listen addresses")?;
        if let Some(a) = addrs.first() {
            break a.clone();
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("the p2p network did not start listening within 10 s (network.listen)");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let full = format!("{addr}/p2p/{}", net.local_peer_id());
    let path = home.p2p_addr_file();
    let tmp = path.with_extension("addr.tmp");
    std::fs::write(&tmp, format!("{full}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(full)
}

/// Record the bound API URL in `HOME/api.addr` (atomically), so scripts and tests that asked
/// for port 0 can find the node.
fn write_api_addr(home: &Home, addr: SocketAddr) -> anyhow::Result<()> {
    let path = home.api_addr_file();
    let tmp = path.with_extension("addr.tmp");
    std::fs::write(&tmp, format!("http://{addr}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Wait for Ctrl-C or (on Unix) SIGTERM; returns the signal's name.
async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(e) => {
                tracing::warn!(target: "node.signal", error = %e, "cannot watch SIGTERM; Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_of_another_chain_is_refused() {
        let store = Store::temporary().unwrap();
        let genesis = std::path::Path::new("genesis.json");
        check_chain_id(&store, &Hash([1; 32]), genesis).unwrap();
        check_chain_id(&store, &Hash([1; 32]), genesis).unwrap();
        let err = check_chain_id(&store, &Hash([2; 32]), genesis)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("belongs to chain") && err.contains("genesis.json"),
            "{err}"
        );
    }

    #[test]
    fn the_chain_is_halted_only_past_the_threshold_and_not_while_syncing() {
        assert_eq!(halt_after_ms(1000), 3000);
        assert_eq!(halt_after_ms(5000), 15_000);
        assert_eq!(
            halt_after_ms(1),
            3000,
            "a tiny heartbeat keeps a sane floor"
        );
        let mut v = ChainView {
            last_block_time: Some(10_000),
            ..ChainView::default()
        };
        assert_eq!(v.last_block_age_ms(12_500), Some(2_500));
        assert_eq!(
            v.last_block_age_ms(9_000),
            Some(0),
            "a block from our future"
        );
        assert!(!v.halted(13_000, 3_000));
        assert!(v.halted(13_001, 3_000));
        v.syncing = true;
        assert!(!v.halted(60_000, 3_000));
    }

    #[tokio::test]
    async fn shutdown_wakes_every_waiter() {
        let s = Shutdown::default();
        let a = tokio::spawn(s.wait());
        let b = tokio::spawn(s.wait());
        s.trigger();
        a.await.unwrap();
        b.await.unwrap();
        // Waiting after the trigger resolves at once.
        tokio::time::timeout(std::time::Duration::from_secs(1), s.wait())
            .await
            .unwrap();
    }
}
