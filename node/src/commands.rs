//! The one-shot CLI commands: `init`, `key show`, `status`, and the refusals for commands that
//! are not available yet.

use std::io::Write;
use std::path::Path;

use agora_client::{resolve_api, ApiSource, Client, API_ENV, DEFAULT_TESTNET_DIR};
use anyhow::{bail, Context};

use crate::cli::{ApiArg, InitArgs};
use crate::config::{annotated_config, Config, Overrides, Role};
use crate::home::{peer_id, Home};

/// A command that is part of the contract but not implemented in this build.
#[derive(Debug, thiserror::Error)]
#[error("not yet available: agora {0}")]
pub struct NotYetAvailable(pub &'static str);

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
    let genesis = crate::genesis::dev_genesis(&key);
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
    println!("app hash    {}", s.app_hash);
    match s.last_block_time {
        Some(ms) => println!("last block  {ms} ms since epoch"),
        None => println!("last block  none"),
    }
    println!("peers       {}", s.peers);
    println!("syncing     {}", if s.syncing { "yes" } else { "no" });
    if let Some(chain) = &s.chain_id {
        println!("chain id    {chain}");
    }
    Ok(())
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
    if let Some(c) = v.get("coprocessor").filter(|c| !c.is_null()) {
        println!(
            "coprocessor stake {} (locked {}), reputation {}",
            c["stake"], c["locked"], c["reputation"]
        );
    }
    if let Some(o) = v.get("operator").filter(|o| !o.is_null()) {
        println!("operator stake {}", o["stake"]);
    }
    Ok(())
}
