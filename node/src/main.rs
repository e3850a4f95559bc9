//! The `agora` binary: the command-line interface of design §12, config loading, tracing setup,
//! the tokio runtime, and the wiring of the node daemon.
//!
//! Libraries hold the logic; this crate only parses input, assembles components and reports.
//! Errors are `anyhow` chains with context naming the path or key involved; `main` prints the
//! chain on one line (`error: a: b`) and maps it to an exit code, so a user mistake never shows
//! a panic or a backtrace.

mod bench;
mod bench_faults;
mod bench_soak;
mod chaos;
mod cli;
mod commands;
mod genesis_cmd;
mod jobs;
mod netns;
mod sim;
mod testnet;
mod verify;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::cli::{Cli, Command, KeyCommand, NodeArgs, TestnetCommand};
use agora_node::config::{ApiOverrides, Config, LogOverrides, NetworkOverrides, Overrides};
use agora_node::home::Home;
use agora_node::{daemon, logging};

/// Exit code for a runtime failure (bad input, unreachable node, I/O error).
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(
        cli.command,
        Command::Node(_)
            | Command::Testnet(_)
            | Command::Chaos(_)
            | Command::Bench(cli::BenchCommand::Faults(_))
    ) {
        restore_sigpipe();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// One-shot commands die quietly when their reader goes away (`agora job list | head -1`), as
/// command-line tools do, instead of failing to print. Long-running commands keep Rust's
/// default (SIGPIPE ignored), so a peer closing a socket is an error, never a signal.
fn restore_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: called first thing in `main`, before any thread exists; installing the default
    // disposition runs no handler code of ours.
    #[allow(unsafe_code)]
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

/// The error chain on one line, `a: b: c`. A cause whose text its parent already quotes (many
/// library errors print their source) is not repeated, and embedded newlines are flattened.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let msg = cause.to_string();
        let msg = msg.split_whitespace().collect::<Vec<_>>().join(" ");
        if msg.is_empty() || line.contains(&msg) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&msg);
    }
    line
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Node(args) => run_node(args),
        Command::Init(args) => {
            logging::init_cli();
            commands::init(&args)
        }
        Command::Key(KeyCommand::Show { home, json }) => {
            logging::init_cli();
            commands::key_show(&home.home, json)
        }
        Command::Genesis(cli::GenesisCommand::New(args)) => {
            logging::init_cli();
            genesis_cmd::new(&args)
        }
        Command::Genesis(cli::GenesisCommand::Show { file, json }) => {
            logging::init_cli();
            genesis_cmd::show(&file, json)
        }
        Command::Status(args) => {
            logging::init_cli();
            commands::status(&args.api, args.json)
        }
        Command::Job(cli::JobCommand::Submit(args)) => {
            logging::init_cli();
            jobs::submit(&args)
        }
        Command::Job(cli::JobCommand::Status(args)) => {
            logging::init_cli();
            jobs::status(&args)
        }
        Command::Job(cli::JobCommand::Watch(args)) => {
            logging::init_cli();
            jobs::watch(&args)
        }
        Command::Job(cli::JobCommand::Why(args)) => {
            logging::init_cli();
            jobs::why(&args)
        }
        Command::Job(cli::JobCommand::List { api, json }) => {
            logging::init_cli();
            jobs::list(&api, json)
        }
        Command::Account(args) => {
            logging::init_cli();
            commands::account(args.address.as_deref(), &args.api, args.json)
        }
        Command::Transfer(args) => {
            logging::init_cli();
            commands::transfer(&args)
        }
        Command::Bench(cli::BenchCommand::Tx(args)) => {
            logging::init_cli();
            bench::tx(&args)
        }
        Command::Bench(cli::BenchCommand::Jobs(args)) => {
            logging::init_cli();
            bench::jobs(&args)
        }
        Command::Bench(cli::BenchCommand::Soak(args)) => {
            logging::init_cli();
            bench_soak::soak(&args)
        }
        Command::Bench(cli::BenchCommand::Faults(args)) => {
            logging::init_cli();
            bench_faults::run(&args)
        }
        Command::Chaos(args) => {
            logging::init_cli();
            chaos::run(&args)
        }
        Command::Sim(args) => {
            logging::init_cli();
            sim::run(&args.rest)
        }
        Command::Testnet(cmd) => {
            logging::init_cli();
            run_testnet(cmd)
        }
        Command::Job(cli::JobCommand::Result(args)) => {
            logging::init_cli();
            jobs::result(&args)
        }
        Command::Job(cli::JobCommand::Proof(args)) => {
            logging::init_cli();
            verify::job_proof(&args)
        }
        Command::Verify(args) => {
            logging::init_cli();
            verify::run(&args)
        }
        Command::Coprocessor(cli::CoprocessorCommand::Join {
            stake,
            capacity,
            api,
            key,
        }) => {
            logging::init_cli();
            commands::coprocessor_join(stake, capacity, &api, &key)
        }
        Command::Coprocessor(cli::CoprocessorCommand::Leave { api, key }) => {
            logging::init_cli();
            commands::coprocessor_leave(&api, &key)
        }
    }
}

fn run_testnet(cmd: TestnetCommand) -> anyhow::Result<()> {
    match cmd {
        TestnetCommand::Up {
            operators,
            coprocessors,
            dir,
            detach,
            no_demo,
            netns,
            byzantine,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            runtime.block_on(testnet::up(
                operators,
                coprocessors,
                &dir.dir,
                detach,
                !no_demo,
                netns,
                &byzantine,
            ))
        }
        TestnetCommand::Status { dir, json } => testnet::status(&dir.dir, json),
        TestnetCommand::Down { dir, json } => testnet::down(&dir.dir, json),
        TestnetCommand::Fault(cmd) => {
            use cli::FaultCommand as F;
            use testnet::Fault;
            let (args, fault) = match cmd {
                F::Kill(a) => (a, Fault::Kill),
                F::Pause(a) => (a, Fault::Pause),
                F::Resume(a) => (a, Fault::Resume),
                F::Restart(a) => (a, Fault::Restart),
                F::Partition(a) => {
                    let groups = a.groups.join(" ");
                    return testnet::partition_command(&a.dir.dir, Some(&groups), a.json);
                }
                F::Heal(a) => return testnet::partition_command(&a.dir.dir, None, a.json),
                F::Delay(a) => {
                    let shape = testnet::Shape::Delay(testnet::parse_delay_ms(&a.delay)?);
                    return testnet::shape_command(&a.dir.dir, &a.node, shape, a.json);
                }
                F::Loss(a) => {
                    let shape = testnet::Shape::Loss(testnet::parse_loss_bps(&a.loss)?);
                    return testnet::shape_command(&a.dir.dir, &a.node, shape, a.json);
                }
            };
            testnet::fault(&args.dir.dir, &args.node, fault, args.json)
        }
    }
}

fn run_node(args: NodeArgs) -> anyhow::Result<()> {
    let home = Home::new(&args.home.home);
    home.check_exists()?;
    let overrides = Overrides {
        network: args.listen.map(|l| NetworkOverrides { listen: Some(l) }),
        api: args.api.map(|a| ApiOverrides { listen: Some(a) }),
        log: (args.log_filter.is_some() || args.log_format.is_some()).then_some(LogOverrides {
            filter: args.log_filter,
            format: args.log_format,
        }),
    };
    let config = Config::load(&home.config_file(), &overrides, &args.bootstrap)?;
    let key = home.load_key(&config)?;
    logging::init_node(&config.log)?;
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("agora-node")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(daemon::run(home, config, key))
}

/// Raise the soft limit on open files to the hard limit. Every peer connection, API client,
/// store file and blob read holds a descriptor, and the common soft default of 1,024 let about a
/// thousand idle API connections take a node down. The API and the network cap their
/// connections well below the raised limit.
fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                tracing::info!(target: "node.start", from = soft, to = hard, "raised the open-file limit")
            }
            Err(e) => {
                tracing::warn!(target: "node.start", soft, hard, error = %e, "cannot raise the open-file limit")
            }
        },
        Ok((soft, _)) => tracing::debug!(target: "node.start", limit = soft, "open-file limit"),
        Err(e) => {
            tracing::warn!(target: "node.start", error = %e, "cannot read the open-file limit")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chain_prints_on_one_line_without_repeats() {
        let io = std::io::Error::other("disk on fire");
        let err = anyhow::Error::new(io)
            .context("cannot open store at x: disk on fire")
            .context("starting");
        assert_eq!(
            one_line(&err),
            "starting: cannot open store at x: disk on fire"
        );
        let err = anyhow::anyhow!("bad toml\n  --> line 1\n").context("config");
        assert_eq!(one_line(&err), "config: bad toml --> line 1");
    }
}
