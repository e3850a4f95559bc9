//! The one-shot CLI commands: `init`, `key show`, `status`, `account`, `transfer`, and
//! `coprocessor join|leave`.

use std::io::Write;
use std::path::Path;

use agora_client::{resolve_api, ApiSource, Client, TestnetFile, API_ENV, DEFAULT_TESTNET_DIR};
use anyhow::{bail, Context};

use crate::cli::{ApiArg, InitArgs};
use agora_node::config::{annotated_config, Config, Overrides, Role};
use agora_node::home::{peer_id, Home};

/// `agora init`: create the home, a fresh key (0600), the annotated config and a one-node
/// development genesis.
pub fn init(args: &InitArgs) -> anyhow::Result<()> {
    let home = Home::new(&args.home.home);
    let key = init_home(&home, &args.role)?;
    let config = Config::default();
    let mut roles = args.role.clone();
    roles.sort();
    roles.dedup();
    let role_names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    println!("initialised {}", home.root().display());
    println!("  address  {}", key.address());
    println!("  peer id  {}", peer_id(&key));
    println!(
        "  roles    {}",
        if role_names.is_empty() {
            "full".into()
        } else {
            role_names.join(", ")
        }
    );
    println!(
        "  key      {}",
        home.resolve(&config.node.key_file).display()
    );
    println!("  config   {}", home.config_file().display());
    println!(
        "  genesis  {} (one-node development chain)",
        home.resolve(&config.node.genesis_file).display()
    );
    Ok(())
}

/// Create a node home: key file (0600), annotated config with `roles`, and a development
/// genesis in which this key is the only operator and holds a starting balance. Refuses to
/// touch a home that is already initialised. Returns the new key.
pub fn init_home(home: &Home, roles: &[Role]) -> anyhow::Result<agora_crypto::Keypair> {
    let root = home.root().display().to_string();
    let config_path = home.config_file();
    let config = Config::default();
    let key_path = home.resolve(&config.node.key_file);
    let genesis_path = home.resolve(&config.node.genesis_file);
    for existing in [&config_path, &key_path, &genesis_path] {
        if existing.exists() {
            bail!(
                "home {root} is already initialised ({} exists); refusing to overwrite",
                existing.display()
            );
        }
    }
    if home.root().exists() && !home.root().is_dir() {
        bail!("home {root} exists and is not a directory");
    }
    create_private_dir(home.root()).with_context(|| format!("cannot create home {root}"))?;

    let key = agora_crypto::Keypair::generate();
    agora_crypto::save_key(&key_path, &key)?;
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&config_path)
        .with_context(|| format!("cannot create {}", config_path.display()))?;
    file.write_all(annotated_config(&roles).as_bytes())
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let genesis = agora_node::genesis::dev_genesis(&key);
    std::fs::write(&genesis_path, genesis.to_json_pretty())
        .with_context(|| format!("cannot write {}", genesis_path.display()))?;
    Ok(key)
}

fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

/// `agora key show`.
pub fn key_show(home: &Path, json: bool) -> anyhow::Result<()> {
    let home = Home::new(home);
    home.check_exists()?;
    let config = Config::load(&home.config_file(), &Overrides::default(), &[])?;
    let key = home.load_key(&config)?;
    let key_file = home.resolve(&config.node.key_file);
    if json {
        let doc = serde_json::json!({
            "address": key.address().to_hex(),
            "peer_id": peer_id(&key),
            "key_file": key_file,
        });
        println!("{doc}");
    } else {
        println!("address  {}", key.address());
        println!("peer id  {}", peer_id(&key));
        println!("key      {}", key_file.display());
    }
    Ok(())
}

/// Find and connect to the node per design §12: `--api`, then `AGORA_API`, then the testnet in
/// the default directory.
pub fn connect(api: &ApiArg) -> anyhow::Result<Client> {
    let env = std::env::var(API_ENV).ok();
    let (url, source) = resolve_api(
        api.api.as_deref(),
        env.as_deref(),
        Path::new(DEFAULT_TESTNET_DIR),
    )?;
    if let ApiSource::Testnet(path) = &source {
        tracing::debug!(target: "cli.api", testnet = %path.display(), url, "using the local testnet");
        // A testnet whose APIs need a token (`--netns`) names its file; AGORA_API_TOKEN wins.
        let env_token = std::env::var(agora_client::TOKEN_ENV).is_ok_and(|t| !t.is_empty());
        if !env_token {
            if let Some(token) = TestnetFile::read(path).ok().and_then(|f| f.api_token()) {
                return Ok(Client::new(&url)?.with_token(Some(token)));
            }
        }
    }
    Ok(Client::new(&url)?)
}

/// `agora status`.
pub fn status(api: &ApiArg, json: bool) -> anyhow::Result<()> {
    let client = connect(api)?;
    let s = client.status()?;
    if json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(());
    }
    println!("node        {}", client.base_url());
    println!("version     {}", s.version);
    println!("peer id     {}", s.peer_id);
    println!("address     {}", s.address);
    println!("roles       {}", s.roles.join(", "));
    println!("height      {}", s.height);
    println!("chain       {}", chain_state(&s));
    println!("app hash    {}", s.app_hash);
    match (s.last_block_time, s.last_block_age_ms) {
        (Some(ms), Some(age)) => {
            println!("last block  {ms} ms since epoch ({} ago)", format_age(age))
        }
        (Some(ms), None) => println!("last block  {ms} ms since epoch"),
        (None, _) => println!("last block  none"),
    }
    println!("peers       {}", s.peers);
    println!("syncing     {}", if s.syncing { "yes" } else { "no" });
    if let Some(chain) = &s.chain_id {
        println!("chain id    {chain}");
    }
    Ok(())
}

/// One word (or three) for the chain as a node sees it: `up`, `syncing`, or `halted for N s`
/// when no block has been committed for longer than the node's halt threshold.
pub fn chain_state(s: &agora_client::api::Status) -> String {
    if s.syncing {
        "syncing".to_owned()
    } else if s.halted {
        format!("halted for {} s", s.last_block_age_ms.unwrap_or(0) / 1000)
    } else {
        "up".to_owned()
    }
}

/// A duration in ms for people: `850 ms`, `4.2 s`, `3 min 20 s`.
fn format_age(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{}.{} s", ms / 1000, ms % 1000 / 100),
        _ => format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000),
    }
}

/// `agora account [ADDRESS]`.
pub fn account(address: Option<&str>, api: &ApiArg, json: bool) -> anyhow::Result<()> {
    let client = connect(api)?;
    let address: agora_types::Address = match address {
        Some(a) => a
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid address {a:?}: {e}"))?,
        None => crate::jobs::client_key(&None)?.address(),
    };
    let v: serde_json::Value = client.get_json(&format!("/v1/accounts/{address}"))?;
    if json {
        println!("{v}");
        return Ok(());
    }
    println!("address  {address}");
    println!("balance  {}", v["balance"]);
    println!("nonce    {}", v["nonce"]);
    if let Some(p) = v["pending_nonce"]
        .as_u64()
        .filter(|p| Some(*p) != v["nonce"].as_u64())
    {
        println!(
            "pending  {} transactions (next nonce {p})",
            p.saturating_sub(v["nonce"].as_u64().unwrap_or(0))
        );
    }
    if let Some(c) = v.get("coprocessor").filter(|c| !c.is_null()) {
        println!(
            "coprocessor stake {} (locked {}, unbonding {}), reputation {} bps, {}",
            c["stake"],
            c["locked"],
            c["unbonding"],
            c["reputation_bps"],
            if c["active"] == true {
                "active"
            } else {
                "inactive"
            }
        );
    }
    if let Some(o) = v.get("operator").filter(|o| !o.is_null()) {
        println!("operator stake {}", o["stake"]);
    }
    Ok(())
}

/// `agora transfer`: send `amount` from the key's account and wait until it is on chain.
pub fn transfer(args: &crate::cli::TransferArgs) -> anyhow::Result<()> {
    let to: agora_types::Address = args
        .to
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid address {:?}: {e}", args.to))?;
    if args.amount == 0 {
        bail!("--amount must be positive");
    }
    let client = connect(&args.api)?;
    let key = crate::jobs::client_key(&args.key)?;
    let from = key.address();
    let before: agora_market::AccountView = client.get_json(&format!("/v1/accounts/{to}"))?;
    let signer = crate::jobs::Signer::new(client.clone(), key)?;
    signer.send(|b, n| b.transfer(n, to, agora_types::Amount(args.amount)))?;
    let after = wait_for_account(&client, &to, |a| a.balance > before.balance)?;
    println!(
        "sent {} from {from} to {to}; its balance is {}",
        args.amount, after.balance
    );
    Ok(())
}

/// `agora coprocessor join`: stake collateral for `key` (declaring its capacity) and wait until
/// the stake is on chain. A node with the coprocessor role and this key bids once it is active.
pub fn coprocessor_join(
    stake: Option<u128>,
    capacity: Option<u32>,
    api: &ApiArg,
    key: &Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let client = connect(api)?;
    let key = crate::jobs::client_key(key)?;
    let address = key.address();
    let before: agora_market::AccountView = client.get_json(&format!("/v1/accounts/{address}"))?;
    let default = agora_node::config::CoprocessorSection::default();
    let amount = stake.unwrap_or(u128::from(default.stake));
    let capacity = capacity
        .or(before.coprocessor.as_ref().map(|c| c.capacity))
        .unwrap_or(default.capacity);
    if before.balance.0 < amount {
        bail!(
            "account {address} holds {}, less than the stake {amount}",
            before.balance
        );
    }
    let signer = crate::jobs::Signer::new(client.clone(), key)?;
    signer.send(|b, n| b.stake(n, agora_types::Amount(amount), capacity))?;
    let old = before
        .coprocessor
        .as_ref()
        .map(|c| c.stake)
        .unwrap_or_default();
    let after = wait_for_account(&client, &address, |a| {
        a.coprocessor
            .as_ref()
            .is_some_and(|c| c.stake > old || (amount == 0 && c.capacity == capacity))
    })?;
    let c = after.coprocessor.context("stake not recorded")?;
    println!(
        "coprocessor {address}: stake {} (locked {}), capacity {}, {}",
        c.stake,
        c.locked,
        c.capacity,
        if c.active {
            "active"
        } else {
            "inactive (stake below the minimum)"
        }
    );
    Ok(())
}

/// `agora coprocessor leave`: unstake all free collateral of `key`; it returns to the balance
/// after the unbonding delay. Collateral locked by running jobs stays until they settle.
pub fn coprocessor_leave(api: &ApiArg, key: &Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let client = connect(api)?;
    let key = crate::jobs::client_key(key)?;
    let address = key.address();
    let before: agora_market::AccountView = client.get_json(&format!("/v1/accounts/{address}"))?;
    let Some(c) = before.coprocessor.filter(|c| !c.stake.is_zero()) else {
        bail!("{address} has no coprocessor stake");
    };
    let free = c.stake.checked_sub(c.locked).unwrap_or_default();
    if free.is_zero() {
        bail!(
            "all of {address}'s stake ({}) is locked by running jobs; try again when they settle",
            c.stake
        );
    }
    let signer = crate::jobs::Signer::new(client.clone(), key)?;
    signer.send(|b, n| b.unstake(n, free))?;
    let after = wait_for_account(&client, &address, |a| {
        a.coprocessor.as_ref().is_some_and(|x| x.stake < c.stake)
    })?;
    let x = after.coprocessor.context("stake not recorded")?;
    println!(
        "coprocessor {address}: unbonding {}, stake left {} (locked {}), {}",
        x.unbonding,
        x.stake,
        x.locked,
        if x.active {
            "still active"
        } else {
            "no longer bidding"
        }
    );
    Ok(())
}

fn wait_for_account(
    client: &Client,
    address: &agora_types::Address,
    done: impl Fn(&agora_market::AccountView) -> bool,
) -> anyhow::Result<agora_market::AccountView> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let a: agora_market::AccountView = client.get_json(&format!("/v1/accounts/{address}"))?;
        if done(&a) {
            return Ok(a);
        }
        if std::time::Instant::now() > deadline {
            bail!("the transaction was not committed within 30 s (see `agora account {address}`)");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(syncing: bool, halted: bool, age: Option<u64>) -> agora_client::api::Status {
        agora_client::api::Status {
            version: String::new(),
            peer_id: String::new(),
            address: String::new(),
            roles: Vec::new(),
            height: 7,
            app_hash: String::new(),
            last_block_time: Some(1),
            peers: 0,
            syncing,
            chain_id: None,
            last_block_age_ms: age,
            halted,
            halt_after_ms: 3_000,
        }
    }

    #[test]
    fn the_chain_state_says_halted_and_for_how_long() {
        assert_eq!(chain_state(&status(false, false, Some(400))), "up");
        assert_eq!(
            chain_state(&status(false, true, Some(12_900))),
            "halted for 12 s"
        );
        assert_eq!(chain_state(&status(true, false, Some(90_000))), "syncing");
        assert_eq!(format_age(850), "850 ms");
        assert_eq!(format_age(4_250), "4.2 s");
        assert_eq!(format_age(200_000), "3 min 20 s");
    }
}
