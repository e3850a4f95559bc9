//! Tracing setup. Only the binary installs a subscriber; libraries just emit events.

use std::io::IsTerminal;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSection};

/// Install the node's subscriber: `RUST_LOG` if set, else `log.filter`; text or JSON lines on
/// standard error (standard output is kept for command output).
pub fn init_node(log: &LogSection) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => EnvFilter::builder()
            .parse(&env)
            .with_context(|| format!("invalid RUST_LOG value {env:?}"))?,
        _ => EnvFilter::builder()
            .parse(&log.filter)
            .with_context(|| format!("invalid config value for `log.filter`: {:?}", log.filter))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let result = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))
}

/// A quiet subscriber for one-shot CLI commands: warnings only unless `RUST_LOG` says more.
pub fn init_cli() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
