//! Loading the network's genesis file and deriving what consensus needs from it.

use std::path::Path;

use agora_crypto::Keypair;
use agora_market::{Genesis, GenesisAccount, GenesisOperator, Params};
use agora_types::{Address, Amount, Timestamp};
use anyhow::Context;

/// Stake of the single operator of a development genesis.
pub const DEV_OPERATOR_STAKE: u128 = 1_000_000;
/// Starting balance of the development genesis' account.
pub const DEV_BALANCE: u128 = 1_000_000_000;

/// Read and validate a genesis file.
pub fn load(path: &Path) -> anyhow::Result<Genesis> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read genesis file {} (node.genesis_file); `agora init` writes one, `agora testnet up` writes the testnet's",
            path.display()
        )
    })?;
    Genesis::from_json(&text).with_context(|| format!("genesis file {} is invalid", path.display()))
}

/// Parse a genesis file for verification: valid, and exactly in the form the genesis
/// serialises to (every value written as it reads back, every field present). The chain id
/// is a hash of the genesis' meaning, and a lenient reader maps several texts to one meaning
/// (a fixed-point decimal is rounded to its nearest value); a verifier refuses all but one of
/// them, so a changed genesis file never still verifies.
pub fn parse_exact(text: &str) -> anyhow::Result<Genesis> {
    let g = Genesis::from_json(text)?;
    let given: serde_json::Value = serde_json::from_str(text)?;
    let exact = serde_json::to_value(&g)?;
    if let Some(path) = first_difference(&given, &exact, String::new()) {
        anyhow::bail!(
            "the genesis is not in its exact form at {path} (a value that reads back differently, or a missing field): use the genesis file the network was started with"
        );
    }
    Ok(g)
}

/// The JSON path of the first difference between `a` and `b`.
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, at: String) -> Option<String> {
    use serde_json::Value::{Array, Object};
    match (a, b) {
        (Object(x), Object(y)) => {
            for (k, v) in y {
                match x.get(k) {
                    Some(u) => {
                        if let Some(p) = first_difference(u, v, format!("{at}.{k}")) {
                            return Some(p);
                        }
                    }
                    None => return Some(format!("{at}.{k}")),
                }
            }
            x.keys()
                .find(|k| !y.contains_key(*k))
                .map(|k| format!("{at}.{k}"))
        }
        (Array(x), Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| first_difference(u, v, format!("{at}[{i}]"))),
        _ if a == b => None,
        _ => Some(if at.is_empty() { ".".into() } else { at }),
    }
}

/// A genesis with default market parameters, the given operators (each staking
/// `operator_stake`) and funded accounts (each holding `balance`), starting now.
pub fn build(
    chain_name: String,
    operators: &[Address],
    operator_stake: u128,
    accounts: &[Address],
    balance: u128,
) -> Genesis {
    Genesis {
        chain_name,
        genesis_time: Timestamp(crate::chain::now_ms()),
        operators: operators
            .iter()
            .map(|&address| GenesisOperator {
                address,
                stake: Amount(operator_stake),
            })
            .collect(),
        accounts: accounts
            .iter()
            .map(|&address| GenesisAccount {
                address,
                balance: Amount(balance),
            })
            .collect(),
        params: Params::default(),
    }
}

/// A one-node development chain: `key` is the only operator and holds a starting balance.
pub fn dev_genesis(key: &Keypair) -> Genesis {
    build(
        format!("agora-dev-{}", key.address().short()),
        &[key.address()],
        DEV_OPERATOR_STAKE,
        &[key.address()],
        DEV_BALANCE,
    )
}

/// The consensus view of a genesis: chain id, time and the stake-weighted validator set.
pub fn consensus_genesis(g: &Genesis) -> anyhow::Result<agora_consensus::Genesis> {
    let stakes: Vec<(agora_types::Address, u128)> =
        g.operators.iter().map(|o| (o.address, o.stake.0)).collect();
    let validators = agora_consensus::ValidatorSet::from_stakes(&stakes)
        .map_err(|e| anyhow::anyhow!("genesis operators do not form a validator set: {e}"))?;
    Ok(agora_consensus::Genesis {
        chain_id: g.hash(),
        time: g.genesis_time.0,
        validators,
    })
}
