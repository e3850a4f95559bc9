//! `agora bench soak`: run a one-operator chain as fast as it commits and watch the node's
//! memory, to show that resident memory stops growing with height.
//!
//! The node is the real `agora node` process on a fresh home (a one-operator development
//! genesis, so it commits alone), with a tiny empty-block interval so nothing paces it but its
//! own work: consensus steps, the durable flushes that gate each vote, the market's block
//! application and persistence. The bench polls `/v1/status` and reads the process's resident
//! memory from `/proc` at every sample height, then prints one line per sample and the growth
//! between the report heights (bytes per height). Linux only: `/proc` is where RSS is read.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use agora_node::config::Role;
use agora_node::home::Home;

/// Options of `agora bench soak`.
#[derive(Debug, clap::Args)]
pub struct BenchSoakArgs {
    /// Heights to commit
    #[arg(long, default_value_t = 100_000)]
    pub heights: u64,
    /// Heights at which to report resident memory (comma-separated)
    #[arg(long, value_delimiter = ',', default_value = "10000,50000,100000")]
    pub report_at: Vec<u64>,
    /// Also sample every this many heights (0: only the report heights)
    #[arg(long, default_value_t = 10_000)]
    pub every: u64,
    /// Empty-block interval of the node, ms (tiny: the chain is unpaced)
    #[arg(long, default_value_t = 1)]
    pub heartbeat_ms: u64,
    /// Store page cache bound of the node, MiB [default: the node's default]
    #[arg(long)]
    pub cache_mib: Option<u64>,
    /// Recent heights the node keeps in its store before freezing them (0: never freeze)
    /// [default: the node's default]
    #[arg(long)]
    pub hot_heights: Option<u64>,
    /// Log filter of the node (its log is written to DIR/node.log)
    #[arg(long, default_value = "info")]
    pub log_filter: String,
    /// Working directory for the node's home [default: a new directory under the system temp dir]
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the working directory afterwards
    #[arg(long)]
    pub keep: bool,
    /// The agora binary whose node to soak, e.g. an older build to compare [default: this one]
    #[arg(long, value_name = "FILE")]
    pub node_bin: Option<PathBuf>,
}

/// One sample of the running node.
#[derive(Debug, Clone, Copy)]
struct Sample {
    height: u64,
    elapsed: Duration,
    rss: u64,
    store: u64,
    freezer: u64,
}

/// The node process; stopped (SIGTERM, then SIGKILL after 10 s) when dropped.
struct NodeProcess {
    child: Child,
}

impl NodeProcess {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run the soak and print the figures.
pub fn soak(args: &BenchSoakArgs) -> anyhow::Result<()> {
    if args.heights == 0 {
        bail!("--heights must be positive");
    }
    if agora_node::metrics::resident_bytes(None).is_none() {
        bail!("agora bench soak reads memory from /proc, which this system does not have");
    }
    let mut report: Vec<u64> = args
        .report_at
        .iter()
        .copied()
        .filter(|h| *h > 0 && *h <= args.heights)
        .collect();
    report.push(args.heights);
    report.sort_unstable();
    report.dedup();
    let mut marks = report.clone();
    if let Some(samples) = args.heights.checked_div(args.every) {
        marks.extend((1..=samples).map(|i| i * args.every));
    }
    marks.sort_unstable();
    marks.dedup();

    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("agora-soak-{}", std::process::id())));
    if dir.exists() {
        bail!(
            "{} already exists; give --dir a new directory",
            dir.display()
        );
    }
    let result = run(args, &dir, &marks);
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let samples = result?;
    summarise(&samples, &report);
    Ok(())
}

fn run(args: &BenchSoakArgs, dir: &std::path::Path, marks: &[u64]) -> anyhow::Result<Vec<Sample>> {
    let home = Home::new(dir.join("node"));
    let exe = match &args.node_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("cannot find the agora executable")?,
    };
    // The home is made by the binary under test, so its config is one that binary reads.
    let init = Command::new(&exe)
        .arg("init")
        .arg("--home")
        .arg(home.root())
        .args(["--role", Role::Operator.as_str()])
        .output()
        .with_context(|| format!("cannot run {}", exe.display()))?;
    if !init.status.success() {
        bail!(
            "{} init failed: {}",
            exe.display(),
            String::from_utf8_lossy(&init.stderr).trim()
        );
    }
    let log_path = dir.join("node.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("node")
        .arg("--home")
        .arg(home.root())
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--api", "127.0.0.1:0"])
        .args(["--log-filter", &args.log_filter])
        .env(
            "AGORA__CONSENSUS__EMPTY_BLOCK_INTERVAL_MS",
            args.heartbeat_ms.to_string(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(mib) = args.cache_mib {
        cmd.env("AGORA__STORE__CACHE_MIB", mib.to_string());
    }
    if let Some(hot) = args.hot_heights {
        cmd.env("AGORA__STORE__HOT_HEIGHTS", hot.to_string());
    }
    let mut node = NodeProcess {
        child: cmd.spawn().context("cannot start the node")?,
    };
    let api = wait_for_api(&home, &mut node, &log_path)?;
    let client = agora_client::Client::with_timeout(&api, Duration::from_secs(10))?;
    let store_dir = home.resolve(&agora_node::config::Config::default().store.path);
    let freezer_dir = home.resolve(&agora_node::config::Config::default().store.freezer_path);
    let cache = match (args.cache_mib, &args.node_bin) {
        (Some(mib), _) => format!("{mib} MiB"),
        (None, None) => format!(
            "{} MiB",
            agora_node::config::Config::default().store.cache_mib
        ),
        (None, Some(_)) => "the node's default".to_owned(),
    };
    println!(
        "soak: one-operator chain, empty-block interval {} ms, store cache {cache}, {} heights (node pid {})",
        args.heartbeat_ms,
        args.heights,
        node.pid()
    );
    println!(
        "{:>8} {:>9} {:>9} {:>9} {:>10} {:>11}",
        "height", "elapsed", "blocks/s", "RSS MiB", "store MiB", "freezer MiB"
    );
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut next = 0usize;
    let mut last_progress = (0u64, Instant::now());
    while next < marks.len() {
        if let Some(status) = node.exited() {
            bail!(
                "the node exited ({status}); its log is {}",
                log_path.display()
            );
        }
        let height = client.status()?.height;
        if height > last_progress.0 {
            last_progress = (height, Instant::now());
        } else if last_progress.1.elapsed() > Duration::from_secs(60) {
            bail!(
                "the chain stopped at height {height} for 60 s; the node's log is {}",
                log_path.display()
            );
        }
        if height >= marks[next] {
            let rss = agora_node::metrics::resident_bytes(Some(node.pid()))
                .context("cannot read the node's resident memory")?;
            let s = Sample {
                height,
                elapsed: started.elapsed(),
                rss,
                store: dir_bytes(&store_dir),
                freezer: dir_bytes(&freezer_dir),
            };
            println!(
                "{:>8} {:>8.1}s {:>9.0} {:>9.1} {:>10.1} {:>11.1}",
                s.height,
                s.elapsed.as_secs_f64(),
                s.height as f64 / s.elapsed.as_secs_f64().max(1e-3),
                mib(s.rss),
                mib(s.store),
                mib(s.freezer)
            );
            samples.push(s);
            while next < marks.len() && marks[next] <= height {
                next += 1;
            }
            continue;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(node);
    Ok(samples)
}

/// Growth of resident memory between consecutive report heights.
fn summarise(samples: &[Sample], report: &[u64]) {
    let at = |h: u64| samples.iter().find(|s| s.height >= h).copied();
    let points: Vec<Sample> = report.iter().filter_map(|h| at(*h)).collect();
    println!();
    for p in &points {
        println!("RSS at height {:>7}: {:>7.1} MiB", p.height, mib(p.rss));
    }
    for w in points.windows(2) {
        let (a, b) = (w[0], w[1]);
        let per_height = (b.rss as f64 - a.rss as f64) / (b.height - a.height).max(1) as f64;
        println!(
            "growth {:>7} → {:>7}: {:>+8.1} MiB ({:+.0} bytes per height)",
            a.height,
            b.height,
            (b.rss as f64 - a.rss as f64) / (1024.0 * 1024.0),
            per_height
        );
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Bytes of the regular files under `dir` (0 if it cannot be read).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

fn wait_for_api(
    home: &Home,
    node: &mut NodeProcess,
    log: &std::path::Path,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = std::fs::read_to_string(home.api_addr_file()) {
            if s.ends_with('\n') {
                return Ok(s.trim().to_owned());
            }
        }
        if let Some(status) = node.exited() {
            bail!(
                "the node exited during start ({status}); its log is {}",
                log.display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the node did not start within 30 s; its log is {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_sizes_add_up_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub").join("b"), [0u8; 50]).unwrap();
        assert_eq!(dir_bytes(dir.path()), 150);
        assert_eq!(dir_bytes(&dir.path().join("absent")), 0);
    }
}
