//! The Agora node as a library: everything a running node is, without the command line.
//!
//! - [`chain`]: the chain task, which owns the consensus replica (and through it the market)
//!   and moves bytes between it and the network;
//! - [`app`]: the market as the consensus application, persisted in the node's store;
//! - [`agent`]: the coprocessor and operator side of the market (stake, bid, execute, commit,
//!   audit);
//! - [`blobsvc`]: the blob store, the job-output index and blob transfer between peers;
//! - [`api`], [`api_market`], [`api_serve`], [`upload_limit`]: the node's HTTP API;
//! - [`daemon`] and [`supervise`]: `agora node` itself — open everything, start and supervise
//!   every task (fail-stop), stop cleanly;
//! - [`config`], [`home`], [`genesis`], [`logging`], [`metrics`], [`history`],
//!   [`timed_store`]: configuration, the node's home directory, the genesis file, tracing,
//!   Prometheus metrics and the store's hot/frozen history.
//!
//! The `agora` binary (`node/`) parses the command line, runs the client commands, the local
//! testnet and the benches, and calls [`daemon::run`] for `agora node`.

pub mod agent;
pub mod api;
pub mod api_market;
pub mod api_serve;
pub mod app;
pub mod blobsvc;
pub mod chain;
pub mod config;
pub mod daemon;
pub mod genesis;
pub mod history;
pub mod home;
pub mod logging;
pub mod metrics;
pub mod net_faults;
pub mod proof;
pub mod supervise;
pub mod timed_store;
pub mod upload_limit;
