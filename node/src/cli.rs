//! The command-line tree of design §12. Names and meanings are a user-facing contract: flags may
//! grow, nothing here is renamed.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use agora_node::config::{LogFormat, Role};

#[derive(Debug, Parser)]
#[command(
    name = "agora",
    version,
    about = "Agora: an open peer-to-peer market for deterministic WebAssembly computation",
    propagate_version = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a node home: an ed25519 key file and an annotated config
    Init(InitArgs),
    /// Inspect the node key
    #[command(subcommand)]
    Key(KeyCommand),
    /// Write or inspect a genesis for a network formed across hosts
    #[command(subcommand)]
    Genesis(GenesisCommand),
    /// Run a node (operator, coprocessor or full node) until Ctrl-C or SIGTERM
    Node(NodeArgs),
    /// Run a local multi-process testnet
    #[command(subcommand)]
    Testnet(TestnetCommand),
    /// Submit jobs and follow them
    #[command(subcommand)]
    Job(JobCommand),
    /// Show an account's balance, stake and nonce
    Account(AccountArgs),
    /// Send funds to another account (e.g. a new coprocessor node's key)
    Transfer(TransferArgs),
    /// Join or leave the market as a coprocessor
    #[command(subcommand)]
    Coprocessor(CoprocessorCommand),
    /// Print the node's view of the chain
    Status(StatusArgs),
    /// Check a job proof (FILE) or a block's certificate (block H) against the genesis, offline
    Verify(VerifyArgs),
    /// Run the economic simulation
    Sim(SimArgs),
    /// Load generators for measuring a running network
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run jobs and transfers on a fresh testnet under a seeded schedule of faults, and report
    /// what was lost
    Chaos(crate::chaos::ChaosArgs),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Submit transfers at a steady rate and report throughput and commit latency
    Tx(crate::bench::BenchTxArgs),
    /// Submit tiny jobs at a steady rate and report settlement latency and throughput
    Jobs(crate::bench::BenchJobsArgs),
    /// Run a one-operator chain unpaced and report the node's resident memory by height
    Soak(crate::bench_soak::BenchSoakArgs),
    /// Start testnets, kill operators, and compare block rate and job latency to healthy
    Faults(crate::bench_faults::BenchFaultsArgs),
}

/// `--home DIR`, shared by every command that works on a node home.
#[derive(Debug, Clone, Args)]
pub struct HomeArg {
    /// Node home directory (key, config, store)
    #[arg(long, value_name = "DIR", env = "AGORA_HOME", default_value_os_t = default_home())]
    pub home: PathBuf,
}

/// `~/.agora`, or `./.agora` when there is no home directory.
pub fn default_home() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(h) if !h.is_empty() => PathBuf::from(h).join(".agora"),
        _ => PathBuf::from(".agora"),
    }
}

/// `--api URL`, shared by every command that talks to a node.
#[derive(Debug, Clone, Default, Args)]
pub struct ApiArg {
    /// Node API URL [default: $AGORA_API, else the first node of ./.agora/testnet/testnet.json]
    #[arg(long, value_name = "URL")]
    pub api: Option<String>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub home: HomeArg,
    /// Role(s) of this node; none means a full node. May be repeated.
    #[arg(long, value_enum)]
    pub role: Vec<Role>,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print the address and peer id of the node key
    Show {
        #[command(flatten)]
        home: HomeArg,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GenesisCommand {
    /// Write a genesis from the addresses each host's `agora init` printed
    New(GenesisNewArgs),
    /// Validate a genesis file and print its chain id, operators, accounts and supply
    Show {
        /// The genesis file
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct GenesisNewArgs {
    /// Name of the chain (part of the chain id, so two networks never share one)
    #[arg(long, value_name = "NAME")]
    pub chain_name: String,
    /// An operator, with its stake (default 1000000). Repeat for each operator.
    #[arg(long = "operator", value_name = "ADDRESS[=STAKE]", required = true)]
    pub operators: Vec<String>,
    /// A funded account (clients, coprocessors that will stake). May be repeated.
    #[arg(long = "account", value_name = "ADDRESS=BALANCE")]
    pub accounts: Vec<String>,
    /// Genesis time in ms since the Unix epoch [default: now]
    #[arg(long, value_name = "MS")]
    pub genesis_time_ms: Option<u64>,
    /// Where to write the genesis; an existing file is never overwritten
    #[arg(long, value_name = "FILE", default_value = "genesis.json")]
    pub out: PathBuf,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub home: HomeArg,
    /// libp2p listen address (overrides network.listen)
    #[arg(long, value_name = "MULTIADDR")]
    pub listen: Option<String>,
    /// API listen address, loopback by default (overrides api.listen)
    #[arg(long, value_name = "ADDR")]
    pub api: Option<String>,
    /// Bootstrap peer (adds to network.bootstrap). May be repeated.
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,
    /// Log format (overrides log.format)
    #[arg(long, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter in RUST_LOG syntax (overrides log.filter; RUST_LOG overrides both)
    #[arg(long, value_name = "FILTER")]
    pub log_filter: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TestnetCommand {
    /// Generate and start a local testnet; runs until Ctrl-C unless --detach
    Up {
        #[arg(long, default_value_t = 4)]
        operators: u32,
        #[arg(long, default_value_t = 3)]
        coprocessors: u32,
        #[command(flatten)]
        dir: TestnetDirArg,
        /// Return once the testnet is running (no demo job)
        #[arg(long)]
        detach: bool,
        /// Do not run the demo job once the network is ready
        #[arg(long)]
        no_demo: bool,
        /// Run each node in its own Linux network namespace, on its own address, joined by a
        /// bridge (as separate hosts; needs root and iproute2)
        #[arg(long)]
        netns: bool,
        /// Make a node byzantine, NODE=ROLE (e.g. cp2=wrong_output); testing only. May be
        /// repeated. Roles: double_vote, equivocate, silent (operators); wrong_output,
        /// never_deliver (coprocessors)
        #[arg(long = "byzantine", value_name = "NODE=ROLE")]
        byzantine: Vec<String>,
    },
    /// Show the nodes of a running testnet
    Status {
        #[command(flatten)]
        dir: TestnetDirArg,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Stop a detached testnet
    Down {
        #[command(flatten)]
        dir: TestnetDirArg,
        /// Print one JSON object
        #[arg(long)]
        json: bool,
    },
    /// Inject a fault into a node process of a running testnet
    #[command(subcommand)]
    Fault(FaultCommand),
}

#[derive(Debug, Subcommand)]
pub enum FaultCommand {
    /// Kill the node's process at once (SIGKILL), as in a crash
    Kill(FaultArgs),
    /// Freeze the node's process (SIGSTOP): its sockets stay open, nothing answers
    Pause(FaultArgs),
    /// Let a paused node run again (SIGCONT)
    Resume(FaultArgs),
    /// Stop the node if it runs, then start it again on its home (new ports, same store)
    Restart(FaultArgs),
    /// Split the network into groups that cannot reach each other (`op0,op1/op2,op3`)
    Partition(PartitionArgs),
    /// Undo every network fault (partition, delay, loss): every node may reach every other again
    Heal(HealArgs),
    /// Hold back every message a node receives (`delay op1 50ms`; `0ms` undoes it)
    Delay(DelayArgs),
    /// Drop a share of the gossip and consensus messages a node receives (`loss op1 2%`)
    Loss(LossArgs),
}

#[derive(Debug, Args)]
pub struct FaultArgs {
    /// Node name from testnet.json (`operator-2`, or short: `op2`, `cp0`)
    pub node: String,
    #[command(flatten)]
    pub dir: TestnetDirArg,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PartitionArgs {
    /// Groups of node names, `/` between groups and `,` within one (`op0,op1 / op2,op3,cp0`).
    /// A node named in no group keeps its links to all of them.
    #[arg(required = true, num_args = 1..)]
    pub groups: Vec<String>,
    #[command(flatten)]
    pub dir: TestnetDirArg,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HealArgs {
    #[command(flatten)]
    pub dir: TestnetDirArg,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DelayArgs {
    /// Node name from testnet.json (`op1`, `cp0`), or `all`
    pub node: String,
    /// How long: `50ms`, `2s` (at most 60s; `0ms` removes the delay)
    pub delay: String,
    #[command(flatten)]
    pub dir: TestnetDirArg,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LossArgs {
    /// Node name from testnet.json (`op1`, `cp0`), or `all`
    pub node: String,
    /// Share dropped: `2%`, `0.5%`, `100%` (`0%` removes the loss)
    pub loss: String,
    #[command(flatten)]
    pub dir: TestnetDirArg,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct TestnetDirArg {
    /// Testnet directory
    #[arg(long, value_name = "DIR", default_value = agora_client::DEFAULT_TESTNET_DIR)]
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuctionKind {
    Dutch,
    Sealed,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit a WASM (or .wat) program as a job
    Submit(Box<SubmitArgs>),
    /// Show a job's state
    Status(JobIdArgs),
    /// Follow a job's lifecycle live
    Watch(JobIdArgs),
    /// Write a job's output, verified against a proof of its settlement (checked offline against the genesis; --trust-node skips it)
    Result(ResultArgs),
    /// Write a settled job's proof: its events, their Merkle paths and the certified header that commits to them
    Proof(ProofArgs),
    /// Explain why no coprocessor took a job
    Why(JobIdArgs),
    /// List jobs
    List {
        #[command(flatten)]
        api: ApiArg,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The program: FILE.wasm or FILE.wat
    pub file: PathBuf,
    /// Input bytes (stdin of the program): a file, or - for standard input
    #[arg(long, value_name = "FILE|-")]
    pub input: Option<String>,
    /// Program argument. May be repeated.
    #[arg(long = "arg", value_name = "A", allow_hyphen_values = true)]
    pub args: Vec<String>,
    #[arg(long, value_name = "N")]
    pub max_price: Option<u128>,
    #[arg(long, value_name = "K")]
    pub replicas: Option<u8>,
    #[arg(long, value_enum)]
    pub auction: Option<AuctionKind>,
    #[arg(long, value_name = "N")]
    pub fuel: Option<u64>,
    /// Auction duration in milliseconds of market time (sealed: commit + reveal)
    #[arg(long, value_name = "MS")]
    pub auction_ms: Option<u64>,
    /// Execution window after award, in milliseconds of market time
    #[arg(long, value_name = "MS")]
    pub deadline_ms: Option<u64>,
    /// Audit probability for k = 1, in basis points [default: the network's]
    #[arg(long, value_name = "BPS")]
    pub audit_bps: Option<u32>,
    /// Wait until the job is settled, refunded or failed
    #[arg(long)]
    pub wait: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub api: ApiArg,
    /// Client key file [default: the testnet's client key]
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct JobIdArgs {
    /// Job id (hex)
    pub id: String,
    #[command(flatten)]
    pub api: ApiArg,
    #[arg(long)]
    pub json: bool,
    /// Write output here instead of standard output (job result)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `--genesis FILE`, shared by the commands that verify against the chain's genesis.
#[derive(Debug, Clone, Default, Args)]
pub struct GenesisArg {
    /// The network's genesis file [default: $AGORA_GENESIS, else ./.agora/testnet/genesis.json]
    #[arg(long, value_name = "FILE")]
    pub genesis: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ResultArgs {
    #[command(flatten)]
    pub job: JobIdArgs,
    #[command(flatten)]
    pub genesis: GenesisArg,
    /// Take the node's word for the result hash instead of verifying a proof of the settlement
    #[arg(long)]
    pub trust_node: bool,
}

#[derive(Debug, Args)]
pub struct ProofArgs {
    /// Job id (hex)
    pub id: String,
    #[command(flatten)]
    pub api: ApiArg,
    /// Where to write the proof [default: JOB_ID.proof]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// How long to wait for the block that certifies a just-settled job, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub wait: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// FILE (a job proof from `agora job proof`), or `block H` (fetches block H's certificate from the node)
    #[arg(value_name = "FILE | block H", num_args = 1..=2, required = true)]
    pub target: Vec<String>,
    #[command(flatten)]
    pub genesis: GenesisArg,
    /// The job's stdout (as `agora job result --out` writes it), to check against the proven result hash
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The program's exit code, part of the result hash with the output
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    pub exit_code: i32,
    #[command(flatten)]
    pub api: ApiArg,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct AccountArgs {
    /// Account address (hex) [default: the testnet's client key]
    pub address: Option<String>,
    #[command(flatten)]
    pub api: ApiArg,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Recipient address (hex; `agora key show` prints a node's)
    #[arg(long, value_name = "ADDRESS")]
    pub to: String,
    /// Amount in base units
    #[arg(long, value_name = "N")]
    pub amount: u128,
    #[command(flatten)]
    pub api: ApiArg,
    /// Sender key file [default: the testnet's client key]
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum CoprocessorCommand {
    /// Stake collateral and start bidding
    Join {
        /// Collateral to stake [default: 100000]
        #[arg(long, value_name = "N")]
        stake: Option<u128>,
        /// Jobs run at once [default: the current capacity, else 4]; a running coprocessor
        /// node declares its configured `coprocessor.capacity` again
        #[arg(long, value_name = "C")]
        capacity: Option<u32>,
        #[command(flatten)]
        api: ApiArg,
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
    /// Unstake and stop bidding
    Leave {
        #[command(flatten)]
        api: ApiArg,
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub api: ApiArg,
    /// Print one JSON object
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Simulation options
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

#[cfg(test)]
impl Command {
    /// The command's name as a user types it (the parser tests check every command maps to it).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Init(_) => "init",
            Command::Bench(BenchCommand::Tx(_)) => "bench tx",
            Command::Bench(BenchCommand::Jobs(_)) => "bench jobs",
            Command::Bench(BenchCommand::Soak(_)) => "bench soak",
            Command::Bench(BenchCommand::Faults(_)) => "bench faults",
            Command::Key(KeyCommand::Show { .. }) => "key show",
            Command::Genesis(GenesisCommand::New(_)) => "genesis new",
            Command::Genesis(GenesisCommand::Show { .. }) => "genesis show",
            Command::Chaos(_) => "chaos",
            Command::Node(_) => "node",
            Command::Testnet(TestnetCommand::Up { .. }) => "testnet up",
            Command::Testnet(TestnetCommand::Status { .. }) => "testnet status",
            Command::Testnet(TestnetCommand::Down { .. }) => "testnet down",
            Command::Testnet(TestnetCommand::Fault(f)) => match f {
                FaultCommand::Kill(_) => "testnet fault kill",
                FaultCommand::Pause(_) => "testnet fault pause",
                FaultCommand::Resume(_) => "testnet fault resume",
                FaultCommand::Restart(_) => "testnet fault restart",
                FaultCommand::Partition(_) => "testnet fault partition",
                FaultCommand::Heal(_) => "testnet fault heal",
                FaultCommand::Delay(_) => "testnet fault delay",
                FaultCommand::Loss(_) => "testnet fault loss",
            },
            Command::Job(JobCommand::Submit(_)) => "job submit",
            Command::Job(JobCommand::Status(_)) => "job status",
            Command::Job(JobCommand::Watch(_)) => "job watch",
            Command::Job(JobCommand::Result(_)) => "job result",
            Command::Job(JobCommand::Proof(_)) => "job proof",
            Command::Verify(_) => "verify",
            Command::Job(JobCommand::Why(_)) => "job why",
            Command::Job(JobCommand::List { .. }) => "job list",
            Command::Account(_) => "account",
            Command::Transfer(_) => "transfer",
            Command::Coprocessor(CoprocessorCommand::Join { .. }) => "coprocessor join",
            Command::Coprocessor(CoprocessorCommand::Leave { .. }) => "coprocessor leave",
            Command::Status(_) => "status",
            Command::Sim(_) => "sim",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn contract_commands_parse() {
        let cases: &[&[&str]] = &[
            &["agora", "init", "--home", "h", "--role", "coprocessor"],
            &[
                "agora",
                "node",
                "--home",
                "h",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--api",
                "127.0.0.1:0",
                "--bootstrap",
                "/ip4/127.0.0.1/tcp/1",
                "--bootstrap",
                "/ip4/127.0.0.1/tcp/2",
            ],
            &[
                "agora",
                "testnet",
                "up",
                "--operators",
                "4",
                "--coprocessors",
                "3",
                "--dir",
                "d",
                "--detach",
            ],
            &["agora", "testnet", "status", "--dir", "d"],
            &["agora", "testnet", "status", "--json"],
            &["agora", "testnet", "down"],
            &["agora", "testnet", "down", "--dir", "d", "--json"],
            &[
                "agora", "testnet", "fault", "kill", "op2", "--dir", "d", "--json",
            ],
            &["agora", "testnet", "fault", "pause", "operator-1"],
            &["agora", "testnet", "fault", "resume", "operator-1"],
            &["agora", "testnet", "fault", "restart", "cp0", "--dir", "d"],
            &[
                "agora",
                "testnet",
                "fault",
                "partition",
                "op0,op1",
                "/",
                "op2,op3",
            ],
            &["agora", "testnet", "fault", "heal"],
            &["agora", "testnet", "fault", "delay", "op1", "200ms"],
            &["agora", "testnet", "fault", "loss", "all", "2.5%", "--json"],
            &["agora", "bench", "tx", "--count", "10"],
            &["agora", "bench", "jobs", "--jobs", "10"],
            &[
                "agora", "bench", "faults", "--jobs", "5", "--secs", "5", "--rate", "20", "--json",
            ],
            &[
                "agora",
                "job",
                "submit",
                "a.wat",
                "--input",
                "-",
                "--arg",
                "-x",
                "--arg",
                "y",
                "--max-price",
                "100",
                "--replicas",
                "3",
                "--auction",
                "sealed",
                "--fuel",
                "1000",
                "--wait",
                "--json",
                "--api",
                "http://127.0.0.1:1",
                "--key",
                "k",
            ],
            &["agora", "job", "status", "abcd"],
            &["agora", "job", "watch", "abcd"],
            &["agora", "job", "result", "abcd"],
            &[
                "agora",
                "job",
                "result",
                "abcd",
                "--genesis",
                "g.json",
                "--out",
                "o",
            ],
            &["agora", "job", "result", "abcd", "--trust-node"],
            &["agora", "job", "proof", "abcd", "--out", "p", "--wait", "3"],
            &[
                "agora",
                "verify",
                "p.proof",
                "--genesis",
                "g.json",
                "--output",
                "o",
                "--exit-code",
                "-1",
            ],
            &[
                "agora",
                "verify",
                "block",
                "7",
                "--api",
                "http://127.0.0.1:1",
                "--json",
            ],
            &["agora", "job", "why", "abcd"],
            &["agora", "job", "list"],
            &["agora", "account"],
            &["agora", "account", "00ff"],
            &["agora", "transfer", "--to", "00ff", "--amount", "5"],
            &["agora", "coprocessor", "join"],
            &["agora", "coprocessor", "leave"],
            &["agora", "status", "--api", "http://127.0.0.1:1"],
            &["agora", "sim", "--steps", "10"],
            &["agora", "key", "show", "--home", "h"],
            &[
                "agora",
                "genesis",
                "new",
                "--chain-name",
                "lab",
                "--operator",
                "00ff=5",
                "--account",
                "00ee=7",
                "--out",
                "g.json",
            ],
            &["agora", "genesis", "show", "g.json", "--json"],
            &["agora", "chaos", "--duration", "90s", "--seed", "7"],
            &[
                "agora",
                "testnet",
                "up",
                "--byzantine",
                "cp2=wrong_output",
                "--no-demo",
            ],
            &[
                "agora",
                "bench",
                "soak",
                "--heights",
                "2000",
                "--report-at",
                "1000,2000",
                "--cache-mib",
                "8",
            ],
        ];
        for args in cases {
            let cli = Cli::try_parse_from(*args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let name = cli.command.name();
            assert!(
                args[1..].join(" ").starts_with(name),
                "{args:?} parsed as {name}"
            );
        }
    }

    #[test]
    fn home_defaults_when_not_given() {
        let cli = Cli::try_parse_from(["agora", "key", "show"]).unwrap();
        match cli.command {
            Command::Key(KeyCommand::Show { home, .. }) => {
                assert!(home.home.ends_with(".agora"), "{:?}", home.home)
            }
            other => panic!("parsed as {}", other.name()),
        }
    }

    #[test]
    fn bad_role_is_rejected() {
        let err =
            Cli::try_parse_from(["agora", "init", "--home", "h", "--role", "king"]).unwrap_err();
        assert!(err.to_string().contains("king"), "{err}");
    }
}
