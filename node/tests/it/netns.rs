//! `agora testnet up --netns`: as root, a 4+3 testnet with every node in its own network
//! namespace, on its own address over a bridge, runs the demo job in the foreground (the
//! output verified against a proof), answers the CLI over the bridge with the testnet's API
//! token, and leaves no namespace, bridge or process behind once stopped. Without root the flag
//! is a clear error and creates nothing.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use agora_client::TestnetFile;

use super::{agora, assert_clear_error};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn namespaces_with(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_netns_testnet_runs_the_demo_job_over_a_bridge_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let dir = t.join("net");
    let d = dir.to_str().unwrap();
    let up = [
        "testnet",
        "up",
        "--netns",
        "--operators",
        "4",
        "--coprocessors",
        "3",
        "--dir",
        d,
    ];
    let has_ip = std::process::Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !is_root() || !has_ip {
        let out = agora(t, &up).output().unwrap();
        assert_clear_error(&out, &["--netns"]);
        assert!(
            !dir.join("testnet.json").exists(),
            "a refused start wrote a testnet"
        );
        eprintln!("not root or no iproute2: checked that --netns is refused clearly");
        return;
    }

    let mut child = agora(t, &up)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Stop the foreground runner whatever happens below.
    struct Stop(Option<std::process::Child>);
    impl Drop for Stop {
        fn drop(&mut self) {
            if let Some(mut c) = self.0.take() {
                let _ = signal(c.id(), "INT");
                let deadline = Instant::now() + Duration::from_secs(30);
                while Instant::now() < deadline {
                    if matches!(c.try_wait(), Ok(Some(_))) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let stdout = child.stdout.take().unwrap();
    let stop = Stop(Some(child));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !lines.iter().any(|l: &String| l.contains("press Ctrl-C")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => panic!("no demo within 180 s; output so far:\n{}", lines.join("\n")),
        }
    }
    let all = lines.join("\n");
    assert!(all.contains("each node in its own namespace"), "{all}");
    assert!(all.contains("demo: settled"), "{all}");
    assert!(all.contains("verified here against a proof"), "{all}");
    assert!(!all.contains("demo job failed"), "{all}");

    // Every node has its own non-loopback address, in its own namespace.
    let file = TestnetFile::read(&dir.join("testnet.json")).unwrap();
    let layout = file
        .netns
        .clone()
        .expect("testnet.json records the namespaces");
    assert_eq!(file.nodes.len(), 7);
    let mut hosts = std::collections::BTreeSet::new();
    for n in &file.nodes {
        let host = n
            .api
            .trim_start_matches("http://")
            .split(':')
            .next()
            .unwrap()
            .to_owned();
        assert!(
            !host.starts_with("127."),
            "{} listens on loopback: {}",
            n.name,
            n.api
        );
        assert!(
            n.listen.contains(&format!("/ip4/{host}/")),
            "{}: {}",
            n.name,
            n.listen
        );
        assert!(n
            .netns
            .as_deref()
            .is_some_and(|ns| ns.starts_with(&layout.prefix)));
        hosts.insert(host);
    }
    assert_eq!(hosts.len(), 7, "addresses shared: {hosts:?}");
    assert_eq!(namespaces_with(&layout.prefix).len(), 7);

    // The CLI finds the testnet, reaches it over the bridge and sends its token: a transfer
    // (a state-changing route, which needs the token beyond loopback) goes through.
    let work = t.join("work");
    std::fs::create_dir_all(work.join(".agora")).unwrap();
    std::os::unix::fs::symlink(&dir, work.join(".agora/testnet")).unwrap();
    let to = &file.nodes[4].address;
    let out = agora(&work, &["transfer", "--to", to, "--amount", "5"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "transfer over the bridge: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Stopped, it leaves no namespace, bridge or node process.
    let pids: Vec<u32> = file.nodes.iter().filter_map(|n| n.pid).collect();
    drop(stop);
    assert!(
        namespaces_with(&layout.prefix).is_empty(),
        "namespaces left behind"
    );
    assert!(
        !std::path::Path::new("/sys/class/net")
            .join(&layout.bridge)
            .exists(),
        "bridge {} left behind",
        layout.bridge
    );
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z")),
            "node pid {pid} still running"
        );
    }
}

fn signal(pid: u32, sig: &str) -> std::io::Result<std::process::ExitStatus> {
    std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
}
