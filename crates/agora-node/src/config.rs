//! Node configuration: one serde tree with defaults, loaded file → environment → flags.
//!
//! - the file is `HOME/config.toml` (written by `agora init` from [`EXAMPLE`], the annotated
//!   example committed as `crates/agora-node/config.example.toml`);
//! - environment variables `AGORA__SECTION__KEY` override it (`AGORA__API__LISTEN=127.0.0.1:0`);
//! - command-line flags override both.
//!
//! Unknown keys are errors (a typo should not silently fall back to a default), and every error
//! names the key and where its value came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Provider};
use multiaddr::Multiaddr;
use serde::{Deserialize, Serialize};

/// The annotated example config. `agora init` writes it with the chosen roles filled in; a test
/// checks that it parses to exactly [`Config::default`], so the annotations cannot drift.
pub const EXAMPLE: &str = include_str!("../config.example.toml");

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "AGORA__";

/// The line of [`EXAMPLE`] that `agora init` replaces with the chosen roles.
const ROLES_LINE: &str = "roles = []";

/// A role a node can hold (design §1). A node with none is a full node.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Operator,
    Coprocessor,
    Client,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Coprocessor => "coprocessor",
            Role::Client => "client",
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The whole configuration tree.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node: NodeSection,
    pub consensus: ConsensusSection,
    pub network: NetworkSection,
    pub api: ApiSection,
    pub log: LogSection,
    pub store: StoreSection,
    pub blobs: BlobsSection,
    pub coprocessor: CoprocessorSection,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Roles this node holds; empty = full node.
    pub roles: Vec<Role>,
    /// The node key file, relative to the home unless absolute.
    pub key_file: PathBuf,
    /// The genesis file, relative to the home unless absolute.
    pub genesis_file: PathBuf,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            roles: Vec::new(),
            key_file: PathBuf::from("node.key"),
            genesis_file: PathBuf::from("genesis.json"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusSection {
    /// Least time between two empty blocks, in milliseconds.
    pub empty_block_interval_ms: u64,
    /// Timeouts follow the decision latency this node observes (bounded by the fixed ones:
    /// propose 3 s, prevote and precommit 1 s); `false` uses the fixed timeouts.
    pub adaptive_timeouts: bool,
    /// Pass over, as proposer, operators missing from the last 3 blocks' commits; `false`
    /// draws every proposer by stake alone. Every operator must use the same setting.
    pub pass_over_absent: bool,
    /// Most consensus messages handled with one durable flush (group commit); 1 flushes after
    /// every message.
    pub batch_max: usize,
    /// Testing only: `double_vote`, `equivocate` or `silent` (see [`OperatorFault`]).
    pub fault: String,
}

/// What a byzantine operator (`[consensus] fault`, testing only) does to its broadcasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorFault {
    /// Each vote goes out together with a conflicting one (evidence: double vote).
    DoubleVote,
    /// Each proposal goes out together with a second one for another block (double proposal).
    Equivocate,
    /// Votes and proposals are withheld; transactions still go out.
    Silent,
}

impl ConsensusSection {
    /// The operator fault the config asks for (`None`: honest; unknown values are refused by
    /// validation).
    pub fn operator_fault(&self) -> Option<OperatorFault> {
        match self.fault.as_str() {
            "double_vote" => Some(OperatorFault::DoubleVote),
            "equivocate" => Some(OperatorFault::Equivocate),
            "silent" => Some(OperatorFault::Silent),
            _ => None,
        }
    }
}

impl Default for ConsensusSection {
    fn default() -> Self {
        ConsensusSection {
            empty_block_interval_ms: 1000,
            adaptive_timeouts: true,
            pass_over_absent: true,
            batch_max: 256,
            fault: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSection {
    /// libp2p listen address.
    pub listen: Multiaddr,
    /// Peers to dial at start.
    pub bootstrap: Vec<Multiaddr>,
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            listen: "/ip4/0.0.0.0/tcp/7301"
                .parse()
                .expect("valid default multiaddr"),
            bootstrap: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// Where the JSON/HTTP API and `/metrics` listen. Loopback by default: the API is meant
    /// for the local CLI and scripts. Any other address needs `token`.
    pub listen: SocketAddr,
    /// Bearer token that state-changing (POST) routes require when set; required to listen
    /// beyond loopback. Better given by `AGORA__API__TOKEN` than written here.
    pub token: String,
    /// Connections served at once; one more is accepted and closed at once.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers (also how long an idle
    /// keep-alive connection stays open), in ms.
    pub header_timeout_ms: u64,
    /// How long one request may take, body upload included, in ms; then it is answered 408.
    pub request_timeout_ms: u64,
}

impl Default for ApiSection {
    fn default() -> Self {
        ApiSection {
            listen: SocketAddr::from(([127, 0, 0, 1], 7300)),
            token: String::new(),
            max_connections: 256,
            header_timeout_ms: 10_000,
            request_timeout_ms: 60_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSection {
    /// Filter in `RUST_LOG` syntax; the `RUST_LOG` variable, when set, wins.
    pub filter: String,
    pub format: LogFormat,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            filter: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// Store directory, relative to the home unless absolute.
    pub path: PathBuf,
    /// Bound of the store's in-memory page cache, in MiB (at least 1).
    pub cache_mib: u64,
    /// Recent heights whose blocks, certificates and results stay in the store; older ones
    /// move to the freezer (below 64 counts as 64; 0 keeps every height in the store).
    pub hot_heights: u64,
    /// Directory of the freezer, relative to the home unless absolute.
    pub freezer_path: PathBuf,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            path: PathBuf::from("data"),
            cache_mib: agora_store::DEFAULT_CACHE_BYTES >> 20,
            hot_heights: 10_000,
            freezer_path: PathBuf::from("freezer"),
        }
    }
}

impl StoreSection {
    /// The cache bound in bytes.
    pub fn cache_bytes(&self) -> u64 {
        self.cache_mib.saturating_mul(1 << 20)
    }
}

/// The blob store under `HOME/blobs`: its disk budget, upload rate and garbage collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlobsSection {
    /// Most disk all blobs together may take, in MiB; puts past it are refused (507 at the API)
    /// until garbage collection frees room.
    pub max_total_mib: u64,
    /// Sustained `POST /v1/blobs` rate of one caller (by IP address), in MiB per second.
    pub upload_mib_per_s: u32,
    /// Burst of one caller, in MiB: at least the API's largest request body (4 MiB), or such
    /// an upload could never pass.
    pub upload_burst_mib: u32,
    /// How often blobs no open job needs and older than the job retention are removed, in s.
    pub gc_interval_s: u64,
}

impl Default for BlobsSection {
    fn default() -> Self {
        BlobsSection {
            max_total_mib: 4096,
            upload_mib_per_s: 16,
            upload_burst_mib: 64,
            gc_interval_s: 600,
        }
    }
}

impl BlobsSection {
    /// The blob store's limits.
    pub fn store_config(&self) -> agora_blobs::BlobConfig {
        agora_blobs::BlobConfig {
            max_total_bytes: self.max_total_mib.saturating_mul(1 << 20),
            ..agora_blobs::BlobConfig::default()
        }
    }
}

/// The coprocessor agent: what it stakes, how much it runs at once, and its cost model.
/// Read only by nodes with the `coprocessor` role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoprocessorSection {
    /// Collateral the node stakes at start when its stake is below this (0: stake only with
    /// `agora coprocessor join`).
    pub stake: u64,
    /// Jobs run at once; the capacity `C` declared on chain.
    pub capacity: u32,
    /// Cost of any job, in base units.
    pub base_cost: u64,
    /// Fuel one base unit buys: a job costs `base_cost + fuel_limit / fuel_per_unit`.
    pub fuel_per_unit: u64,
    /// Largest fuel limit and module this coprocessor takes; larger jobs are declined.
    pub max_fuel: u64,
    pub max_module_bytes: u64,
    /// After a slash takes the stake below the market's minimum, stake again from the balance
    /// (up to `stake`), so a timeout does not leave the node unable to bid.
    pub restake: bool,
    /// Testing only: `wrong_output` commits corrupted results, `never_deliver` wins jobs and
    /// never runs them (to exercise verification, timeouts and slashing).
    pub fault: String,
}

impl Default for CoprocessorSection {
    fn default() -> Self {
        CoprocessorSection {
            stake: 100_000,
            capacity: 4,
            base_cost: 10,
            fuel_per_unit: 10_000_000,
            max_fuel: 10_000_000_000,
            max_module_bytes: 16 << 20,
            restake: true,
            fault: String::new(),
        }
    }
}

/// Values given on the command line; `None` leaves the lower layers alone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkOverrides>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api: Option<ApiOverrides>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<LogOverrides>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct NetworkOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ApiOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct LogOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<crate::config::LogFormat>,
}

/// Name the flag layer carries in error messages.
const FLAGS_NAME: &str = "command-line flags";

/// The flag layer as a figment provider with its own name, so errors can say "from flags".
struct FlagsProvider(Overrides);

impl Provider for FlagsProvider {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(FLAGS_NAME)
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Serialized::defaults(&self.0).data()
    }
}

/// Configuration errors. Each names the key (dotted path) and the source of the bad value.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid config value for `{key}` {origin}: {reason}")]
    Invalid {
        key: String,
        origin: String,
        reason: String,
    },
    #[error("cannot load config {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("invalid --bootstrap value {value:?}: {reason}")]
    Bootstrap { value: String, reason: String },
}

impl Config {
    /// The layered sources: defaults, then `file`, then `AGORA__*` variables, then `flags`.
    pub fn figment(file: &Path, flags: &Overrides) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        // A missing file means "all defaults"; any other read failure is reported by figment.
        if file.exists() {
            figment = figment.merge(Toml::file_exact(file));
        }
        figment
            .merge(Env::prefixed(ENV_PREFIX).split("__"))
            .merge(FlagsProvider(flags.clone()))
    }

    /// Load and check the configuration. `bootstrap` flags are appended to the configured list.
    pub fn load(
        file: &Path,
        flags: &Overrides,
        bootstrap: &[String],
    ) -> Result<Config, ConfigError> {
        Config::from_figment(Config::figment(file, flags), bootstrap)
    }

    pub fn from_figment(figment: Figment, bootstrap: &[String]) -> Result<Config, ConfigError> {
        let mut config: Config = figment.extract().map_err(describe)?;
        for value in bootstrap {
            let addr: Multiaddr =
                value
                    .parse()
                    .map_err(|e: multiaddr::Error| ConfigError::Bootstrap {
                        value: value.clone(),
                        reason: e.to_string(),
                    })?;
            if !config.network.bootstrap.contains(&addr) {
                config.network.bootstrap.push(addr);
            }
        }
        config.node.roles.sort();
        config.node.roles.dedup();
        config.check()?;
        Ok(config)
    }

    /// Checks serde cannot express.
    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| ConfigError::Invalid {
            key: key.into(),
            origin: String::new(),
            reason: reason.into(),
        };
        if self.coprocessor.capacity == 0 {
            return Err(invalid("coprocessor.capacity", "must be at least 1"));
        }
        if self.coprocessor.fuel_per_unit == 0 {
            return Err(invalid("coprocessor.fuel_per_unit", "must be at least 1"));
        }
        if self.store.cache_mib == 0 {
            return Err(invalid("store.cache_mib", "must be at least 1"));
        }
        if !self.consensus.fault.is_empty() && self.consensus.operator_fault().is_none() {
            return Err(invalid(
                "consensus.fault",
                "must be empty, \"double_vote\", \"equivocate\" or \"silent\"",
            ));
        }
        if !matches!(
            self.coprocessor.fault.as_str(),
            "" | "wrong_output" | "never_deliver"
        ) {
            return Err(invalid(
                "coprocessor.fault",
                "must be empty, \"wrong_output\" or \"never_deliver\"",
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&self.log.filter) {
            return Err(ConfigError::Invalid {
                key: "log.filter".into(),
                origin: String::new(),
                reason: e.to_string(),
            });
        }
        Ok(())
    }

    /// Role names for display: the configured ones, or `full` when there are none.
    pub fn role_names(&self) -> Vec<String> {
        if self.node.roles.is_empty() {
            vec!["full".to_owned()]
        } else {
            self.node
                .roles
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect()
        }
    }
}

/// The annotated config file `agora init` writes: [`EXAMPLE`] with `roles` filled in.
pub fn annotated_config(roles: &[Role]) -> String {
    let list: Vec<String> = roles.iter().map(|r| format!("{:?}", r.as_str())).collect();
    EXAMPLE.replacen(ROLES_LINE, &format!("roles = [{}]", list.join(", ")), 1)
}

/// Turn figment's error into one line naming the key and where the value came from.
fn describe(error: figment::Error) -> ConfigError {
    let mut key = error.path.join(".");
    if let figment::error::Kind::UnknownField(field, _) = &error.kind {
        if error.path.last() != Some(field) {
            key = if key.is_empty() {
                field.clone()
            } else {
                format!("{key}.{field}")
            };
        }
    }
    let origin = match &error.metadata {
        Some(md) => match &md.source {
            Some(figment::Source::File(path)) => {
                if key.is_empty() {
                    return ConfigError::File {
                        path: path.clone(),
                        reason: error.kind.to_string(),
                    };
                }
                format!("in {}", path.display())
            }
            _ if md.name.contains("environment") => {
                let var: Vec<String> = error.path.iter().map(|k| k.to_ascii_uppercase()).collect();
                format!("from environment variable {ENV_PREFIX}{}", var.join("__"))
            }
            _ if md.name.contains(FLAGS_NAME) => format!("from {FLAGS_NAME}"),
            _ => format!("from {}", md.name),
        },
        None => String::new(),
    };
    ConfigError::Invalid {
        key,
        origin,
        reason: error.kind.to_string(),
    }
}

#[cfg(test)]
// figment's `Jail` fixes the closures' error type; its size is not ours to choose.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;
    use figment::Jail;

    fn flags(api: Option<&str>, filter: Option<&str>) -> Overrides {
        Overrides {
            api: api.map(|a| ApiOverrides {
                listen: Some(a.into()),
            }),
            log: filter.map(|f| LogOverrides {
                filter: Some(f.into()),
                format: None,
            }),
            ..Overrides::default()
        }
    }

    #[test]
    fn example_config_parses_to_the_defaults() {
        let parsed: Config = toml::from_str(EXAMPLE).expect("config.example.toml parses");
        assert_eq!(parsed, Config::default());
        // And through the real loader, too.
        Jail::expect_with(|jail| {
            jail.create_file("config.toml", EXAMPLE)?;
            let c = Config::load(Path::new("config.toml"), &Overrides::default(), &[]).unwrap();
            assert_eq!(c, Config::default());
            Ok(())
        });
    }

    #[test]
    fn annotated_config_carries_the_roles() {
        let text = annotated_config(&[Role::Operator, Role::Coprocessor]);
        let parsed: Config = toml::from_str(&text).unwrap();
        assert_eq!(parsed.node.roles, vec![Role::Operator, Role::Coprocessor]);
        assert!(
            text.contains("# "),
            "the written config keeps its annotations"
        );
    }

    #[test]
    fn layers_apply_file_then_env_then_flags() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "config.toml",
                r#"
                [api]
                listen = "127.0.0.1:1000"
                [log]
                filter = "debug"
                format = "json"
                [node]
                roles = ["operator"]
                "#,
            )?;
            let file = Path::new("config.toml");
            let c = Config::load(file, &Overrides::default(), &[]).unwrap();
            assert_eq!(c.api.listen.port(), 1000);
            assert_eq!(c.log.filter, "debug");
            assert_eq!(c.log.format, LogFormat::Json);
            assert_eq!(c.role_names(), vec!["operator"]);
            // untouched keys keep their defaults
            assert_eq!(c.store, StoreSection::default());

            jail.set_env("AGORA__API__LISTEN", "127.0.0.1:2000");
            jail.set_env("AGORA__LOG__FILTER", "warn");
            let c = Config::load(file, &Overrides::default(), &[]).unwrap();
            assert_eq!(c.api.listen.port(), 2000);
            assert_eq!(c.log.filter, "warn");
            assert_eq!(
                c.log.format,
                LogFormat::Json,
                "env overrides only what it names"
            );

            let c = Config::load(file, &flags(Some("127.0.0.1:3000"), None), &[]).unwrap();
            assert_eq!(c.api.listen.port(), 3000, "flags beat env");
            assert_eq!(c.log.filter, "warn");
            Ok(())
        });
    }

    #[test]
    fn missing_file_means_defaults_but_env_still_applies() {
        Jail::expect_with(|jail| {
            jail.set_env("AGORA__STORE__PATH", "/var/lib/agora");
            let c = Config::load(Path::new("absent.toml"), &Overrides::default(), &[]).unwrap();
            assert_eq!(c.store.path, PathBuf::from("/var/lib/agora"));
            assert_eq!(c.api, ApiSection::default());
            Ok(())
        });
    }

    #[test]
    fn bootstrap_flags_extend_the_file_list() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "config.toml",
                "[network]\nbootstrap = [\"/ip4/127.0.0.1/tcp/1\"]\n",
            )?;
            let extra = vec![
                "/ip4/127.0.0.1/tcp/2".to_owned(),
                "/ip4/127.0.0.1/tcp/1".to_owned(),
            ];
            let c = Config::load(Path::new("config.toml"), &Overrides::default(), &extra).unwrap();
            let got: Vec<String> = c.network.bootstrap.iter().map(|a| a.to_string()).collect();
            assert_eq!(got, vec!["/ip4/127.0.0.1/tcp/1", "/ip4/127.0.0.1/tcp/2"]);

            let err = Config::load(
                Path::new("config.toml"),
                &Overrides::default(),
                &["nope".into()],
            )
            .unwrap_err();
            assert!(err.to_string().contains("--bootstrap"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_key_and_the_source() {
        Jail::expect_with(|jail| {
            jail.create_file("config.toml", "[api]\nlisten = \"not an address\"\n")?;
            let err =
                Config::load(Path::new("config.toml"), &Overrides::default(), &[]).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("`api.listen`"), "{msg}");
            assert!(msg.contains("config.toml"), "{msg}");

            jail.create_file("config.toml", "[log]\nformat = \"xml\"\n")?;
            let msg = Config::load(Path::new("config.toml"), &Overrides::default(), &[])
                .unwrap_err()
                .to_string();
            assert!(msg.contains("`log.format`") && msg.contains("xml"), "{msg}");

            jail.create_file("config.toml", "[api]\nlistn = \"127.0.0.1:1\"\n")?;
            let msg = Config::load(Path::new("config.toml"), &Overrides::default(), &[])
                .unwrap_err()
                .to_string();
            assert!(msg.contains("`api.listn`"), "{msg}");

            jail.create_file("config.toml", "")?;
            jail.set_env("AGORA__NETWORK__LISTEN", "garbage");
            let msg = Config::load(Path::new("config.toml"), &Overrides::default(), &[])
                .unwrap_err()
                .to_string();
            assert!(msg.contains("`network.listen`"), "{msg}");
            assert!(msg.contains("AGORA__NETWORK__LISTEN"), "{msg}");
            jail.set_env("AGORA__NETWORK__LISTEN", "/ip4/127.0.0.1/tcp/0");

            let msg = Config::load(Path::new("config.toml"), &flags(Some("nope"), None), &[])
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("`api.listen`") && msg.contains(FLAGS_NAME),
                "{msg}"
            );

            let msg = Config::load(Path::new("config.toml"), &flags(None, Some("a=b=c")), &[])
                .unwrap_err()
                .to_string();
            assert!(msg.contains("`log.filter`"), "{msg}");

            jail.create_file("config.toml", "[store]\ncache_mib = 0\n")?;
            let msg = Config::load(Path::new("config.toml"), &Overrides::default(), &[])
                .unwrap_err()
                .to_string();
            assert!(
                msg.contains("`store.cache_mib`") && msg.contains("at least 1"),
                "{msg}"
            );

            jail.create_file("config.toml", "[api\n")?;
            let msg = Config::load(Path::new("config.toml"), &Overrides::default(), &[])
                .unwrap_err()
                .to_string();
            assert!(msg.contains("config.toml"), "{msg}");
            Ok(())
        });
    }
}
