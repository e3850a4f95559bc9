//! `agora genesis new|show`: the genesis of a network whose keys were made on several hosts.
//!
//! `agora testnet up` makes every key and the genesis on one machine. A real network is formed
//! the other way round: each host runs `agora init`, sends only its address, and one person
//! writes the genesis from those addresses and hands the same file to every host. `show` prints
//! the chain id, so every host can check it holds the very file the others hold.

use std::path::Path;

use agora_market::{Genesis, GenesisAccount, GenesisOperator, Params};
use agora_types::{Address, Amount, Timestamp};
use anyhow::{bail, Context};

use crate::cli::GenesisNewArgs;

/// Stake of an operator given without `=STAKE` (the testnet's).
pub const DEFAULT_STAKE: u128 = crate::testnet::OPERATOR_STAKE;

/// `agora genesis new`: build, validate and write a genesis; refuses to overwrite a file.
pub fn new(args: &GenesisNewArgs) -> anyhow::Result<()> {
    let genesis = build(args, agora_node::chain::now_ms())?;
    if args.out.exists() {
        bail!(
            "{} exists; refusing to overwrite a genesis (remove it or pass another --out)",
            args.out.display()
        );
    }
    std::fs::write(&args.out, genesis.to_json_pretty() + "\n")
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    print(&genesis, &args.out, args.json)
}

/// `agora genesis show FILE`: validate a genesis and print what it says.
pub fn show(file: &Path, json: bool) -> anyhow::Result<()> {
    let genesis = agora_node::genesis::load(file)?;
    print(&genesis, file, json)
}

/// The genesis `args` describe, starting at `--genesis-time-ms` or `now_ms`.
pub fn build(args: &GenesisNewArgs, now_ms: u64) -> anyhow::Result<Genesis> {
    if args.chain_name.trim().is_empty() {
        bail!("--chain-name must not be empty");
    }
    let mut operators = Vec::new();
    for spec in &args.operators {
        let (address, stake) = parse_entry(spec, "--operator", Some(DEFAULT_STAKE))?;
        if stake == 0 {
            bail!("--operator {spec}: an operator's stake must be above 0");
        }
        operators.push(GenesisOperator {
            address,
            stake: Amount(stake),
        });
    }
    let mut accounts = Vec::new();
    for spec in &args.accounts {
        let (address, balance) = parse_entry(spec, "--account", None)?;
        accounts.push(GenesisAccount {
            address,
            balance: Amount(balance),
        });
    }
    let genesis = Genesis {
        chain_name: args.chain_name.clone(),
        genesis_time: Timestamp(args.genesis_time_ms.unwrap_or(now_ms)),
        operators,
        accounts,
        params: Params::default(),
    };
    genesis.validate().context("the genesis is invalid")?;
    Ok(genesis)
}

/// `ADDRESS` or `ADDRESS=AMOUNT`; `default` is the amount when none is given (`None`: required).
fn parse_entry(spec: &str, flag: &str, default: Option<u128>) -> anyhow::Result<(Address, u128)> {
    let (addr, amount) = match spec.split_once('=') {
        Some((a, n)) => (a, Some(n)),
        None => (spec, None),
    };
    let address: Address = addr.parse().map_err(|e| {
        anyhow::anyhow!(
            "{flag} {spec}: {addr:?} is not an address (64 hex digits, as `agora key show` prints): {e}"
        )
    })?;
    let amount =
        match (amount, default) {
            (Some(n), _) => n.trim().replace('_', "").parse::<u128>().map_err(|_| {
                anyhow::anyhow!("{flag} {spec}: {n:?} is not a whole number of units")
            })?,
            (None, Some(d)) => d,
            (None, None) => bail!("{flag} {spec}: give the amount as ADDRESS=AMOUNT"),
        };
    Ok((address, amount))
}

fn print(genesis: &Genesis, path: &Path, json: bool) -> anyhow::Result<()> {
    let supply = genesis.supply().context("the genesis supply overflows")?;
    let chain_id = genesis.hash();
    if json {
        let doc = serde_json::json!({
            "file": path,
            "chain_id": chain_id.to_hex(),
            "chain_name": genesis.chain_name,
            "genesis_time_ms": genesis.genesis_time.0,
            "operators": genesis.operators.iter().map(|o| serde_json::json!({
                "address": o.address.to_hex(), "stake": o.stake.0.to_string(),
            })).collect::<Vec<_>>(),
            "accounts": genesis.accounts.iter().map(|a| serde_json::json!({
                "address": a.address.to_hex(), "balance": a.balance.0.to_string(),
            })).collect::<Vec<_>>(),
            "supply": supply.0.to_string(),
        });
        println!("{doc}");
        return Ok(());
    }
    println!("genesis    {}", path.display());
    println!("chain id   {chain_id}");
    println!("chain      {}", genesis.chain_name);
    println!("time (ms)  {}", genesis.genesis_time.0);
    println!("operators  {}", genesis.operators.len());
    for o in &genesis.operators {
        println!("  {}  stake {}", o.address, o.stake.0);
    }
    println!("accounts   {}", genesis.accounts.len());
    for a in &genesis.accounts {
        println!("  {}  balance {}", a.address, a.balance.0);
    }
    println!("supply     {}", supply.0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn args(operators: &[&str], accounts: &[&str]) -> GenesisNewArgs {
        GenesisNewArgs {
            chain_name: "agora-lab".into(),
            operators: operators.iter().map(|s| s.to_string()).collect(),
            accounts: accounts.iter().map(|s| s.to_string()).collect(),
            genesis_time_ms: None,
            out: PathBuf::from("genesis.json"),
            json: false,
        }
    }

    fn hex(b: u8) -> String {
        Address([b; 32]).to_hex()
    }

    #[test]
    fn a_genesis_is_built_from_addresses_and_amounts() {
        let a = format!("{}=5_000", hex(1));
        let b = hex(2);
        let c = format!("{}=1000000000", hex(3));
        let g = build(&args(&[&a, &b], &[&c]), 1_234).unwrap();
        assert_eq!(g.genesis_time, Timestamp(1_234));
        assert_eq!(g.operators.len(), 2);
        assert_eq!(g.operators[0].stake, Amount(5_000));
        assert_eq!(g.operators[1].stake, Amount(DEFAULT_STAKE));
        assert_eq!(g.accounts[0].balance, Amount(1_000_000_000));
        assert_eq!(g.operators[1].address, Address([2; 32]));
        // The same inputs make the same chain id on every host; another name makes another.
        assert_eq!(
            g.hash(),
            build(&args(&[&a, &b], &[&c]), 1_234).unwrap().hash()
        );
        let mut other = args(&[&a, &b], &[&c]);
        other.chain_name = "agora-lab-2".into();
        assert_ne!(g.hash(), build(&other, 1_234).unwrap().hash());
        // An explicit time wins over the clock.
        let mut fixed = args(&[&b], &[]);
        fixed.genesis_time_ms = Some(7);
        assert_eq!(build(&fixed, 99).unwrap().genesis_time, Timestamp(7));
    }

    #[test]
    fn mistakes_are_named() {
        let err = |a: GenesisNewArgs| format!("{:#}", build(&a, 0).unwrap_err());
        assert!(err(args(&["zz"], &[])).contains("is not an address"));
        assert!(err(args(&[&format!("{}=-1", hex(1))], &[])).contains("not a whole number"));
        assert!(err(args(&[&format!("{}=0", hex(1))], &[])).contains("above 0"));
        assert!(err(args(&[&hex(1)], &[&hex(2)])).contains("ADDRESS=AMOUNT"));
        assert!(err(args(&[&hex(1), &hex(1)], &[])).contains("invalid"));
        assert!(err(args(&[], &[])).contains("invalid"));
        let mut blank = args(&[&hex(1)], &[]);
        blank.chain_name = " ".into();
        assert!(err(blank).contains("--chain-name"));
    }
}
