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
