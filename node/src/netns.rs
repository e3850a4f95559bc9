//! `agora testnet up --netns`: each node on its own Linux network namespace, as if on its own
//! machine. The runner creates a bridge on the host with the first address of a private /24,
//! and per node a namespace holding one end of a veth pair (`eth0`, the next address); the
//! other end joins the bridge. Nodes then talk over a real, non-loopback IP stack, and the host
//! (the CLI, the tests) reaches their APIs over the bridge. Every name and address is derived
//! from the testnet directory, recorded in `testnet.json`, and removed by `testnet down`.
//!
//! Creating namespaces needs root (CAP_NET_ADMIN) and iproute2's `ip`; without them `--netns`
//! says so and nothing is created.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use agora_client::NetnsLayout;
use anyhow::{bail, Context};

/// Most nodes one /24 holds (the bridge takes `.1`, nodes `.2` up).
pub const MAX_NODES: usize = 250;

/// Why `--netns` cannot be used here, if it cannot.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some(
            "--netns creates network namespaces and a bridge, which needs root (CAP_NET_ADMIN); run as root, or drop --netns to run every node on loopback".into(),
        );
    }
    match Command::new("ip").arg("-V").output() {
        Ok(out) if out.status.success() => None,
        _ => {
            Some("--netns needs iproute2's `ip` command on the PATH (apt install iproute2)".into())
        }
    }
}

/// Run `ip ARGS`, with its error output in the error.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("cannot run `ip`")?;
    if !out.status.success() {
        bail!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The IPv4 networks already on this host's interfaces, as (address, prefix length).
fn host_networks() -> Vec<(Ipv4Addr, u8)> {
    let Ok(out) = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
    else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let cidr = line
                .split_whitespace()
                .skip_while(|w| *w != "inet")
                .nth(1)?;
            let (addr, len) = cidr.split_once('/')?;
            Some((addr.parse().ok()?, len.parse().ok()?))
        })
        .collect()
}

fn overlaps(a: Ipv4Addr, a_len: u8, b: Ipv4Addr, b_len: u8) -> bool {
    let len = a_len.min(b_len).min(32);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    (u32::from(a) & mask) == (u32::from(b) & mask)
}

/// Choose the layout for the testnet in `dir`: names from a hash of its path, and the first
/// /24 in 10.200.0.0–10.249.255.0 (starting from the same hash) that no interface here uses.
pub fn plan(dir: &Path) -> anyhow::Result<NetnsLayout> {
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let hash = agora_types::Hash::of(canonical.as_os_str().as_encoded_bytes());
    let tag = hash.to_hex()[..6].to_string();
    let used = host_networks();
    let start = u32::from(u16::from_le_bytes([hash.0[6], hash.0[7]]));
    for k in 0..(50 * 256) {
        let slot = (start + k) % (50 * 256);
        let (b, c) = (200 + slot / 256, slot % 256);
        let net = Ipv4Addr::new(10, b as u8, c as u8, 0);
        if used.iter().all(|(a, len)| !overlaps(*a, *len, net, 24)) {
            return Ok(NetnsLayout {
                bridge: format!("agb-{tag}"),
                subnet: format!("10.{b}.{c}.0/24"),
                host_ip: format!("10.{b}.{c}.1"),
                prefix: format!("agora-{tag}"),
            });
        }
    }
    bail!("no free /24 in 10.200.0.0/10 for the testnet bridge")
}

/// The namespace of node `i`.
pub fn namespace(layout: &NetnsLayout, i: usize) -> String {
    format!("{}-{i}", layout.prefix)
}

/// The address of node `i` on the bridge.
pub fn node_ip(layout: &NetnsLayout, i: usize) -> anyhow::Result<Ipv4Addr> {
    if i >= MAX_NODES {
        bail!("--netns holds at most {MAX_NODES} nodes");
    }
    let host: Ipv4Addr = layout.host_ip.parse().context("bad host address")?;
    let [a, b, c, _] = host.octets();
    Ok(Ipv4Addr::new(a, b, c, 2 + i as u8))
}

/// The host end of node `i`'s veth pair (at most 15 bytes, the kernel's limit).
fn host_veth(layout: &NetnsLayout, i: usize) -> String {
    format!("agv{}{i}", &layout.bridge[4..])
}

/// Create the bridge and `nodes` namespaces, removing leftovers of an earlier run first.
pub fn create(layout: &NetnsLayout, nodes: usize) -> anyhow::Result<()> {
    if nodes > MAX_NODES {
        bail!("--netns holds at most {MAX_NODES} nodes, not {nodes}");
    }
    destroy(layout, nodes);
    let cidr = |addr: String| format!("{addr}/24");
    ip(&["link", "add", &layout.bridge, "type", "bridge"])?;
    ip(&[
        "addr",
        "add",
        &cidr(layout.host_ip.clone()),
        "dev",
        &layout.bridge,
    ])?;
    ip(&["link", "set", &layout.bridge, "up"])?;
    for i in 0..nodes {
        let ns = namespace(layout, i);
        let host = host_veth(layout, i);
        let peer = format!("{host}p");
        ip(&["netns", "add", &ns])?;
        ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer])?;
        ip(&["link", "set", &host, "master", &layout.bridge])?;
        ip(&["link", "set", &host, "up"])?;
        ip(&["link", "set", &peer, "netns", &ns])?;
        ip(&["-n", &ns, "link", "set", &peer, "name", "eth0"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &cidr(node_ip(layout, i)?.to_string()),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
    }
    Ok(())
}

/// Remove the namespaces (which takes their veth pairs with them) and the bridge; whatever is
/// already gone is skipped. Returns how many namespaces were removed.
pub fn destroy(layout: &NetnsLayout, nodes: usize) -> usize {
    let mut removed = 0;
    // A few beyond `nodes`, in case an earlier run of this dir had more.
    for i in 0..(nodes + 8).min(MAX_NODES) {
        let ns = namespace(layout, i);
        if Path::new("/run/netns").join(&ns).exists() && ip(&["netns", "del", &ns]).is_ok() {
            removed += 1;
        }
        let veth = host_veth(layout, i);
        if Path::new("/sys/class/net").join(&veth).exists() {
            let _ = ip(&["link", "del", &veth]);
        }
    }
    if exists(layout) {
        let _ = ip(&["link", "del", &layout.bridge]);
    }
    removed
}

/// Whether the bridge of `layout` exists on this host.
pub fn exists(layout: &NetnsLayout) -> bool {
    Path::new("/sys/class/net").join(&layout.bridge).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_stable_short_and_avoid_networks_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let a = plan(dir.path()).unwrap();
        assert_eq!(
            a,
            plan(dir.path()).unwrap(),
            "the same dir, the same layout"
        );
        assert!(a.bridge.len() <= 15, "{}", a.bridge);
        // The namespace end is named with one more character; both fit IFNAMSIZ (15).
        assert!(host_veth(&a, MAX_NODES - 1).len() < 15);
        assert!(a.subnet.starts_with("10.") && a.subnet.ends_with(".0/24"));
        let host: Ipv4Addr = a.host_ip.parse().unwrap();
        for (used, len) in host_networks() {
            assert!(
                !overlaps(used, len, host, 24),
                "{used}/{len} overlaps {host}"
            );
        }
        assert_eq!(node_ip(&a, 0).unwrap().octets()[3], 2);
        assert_eq!(node_ip(&a, 249).unwrap().octets()[3], 251);
        assert!(node_ip(&a, 250).is_err());
        let other = tempfile::tempdir().unwrap();
        assert_ne!(plan(other.path()).unwrap().bridge, a.bridge);
    }

    #[test]
    fn overlap_is_by_prefix() {
        let n = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert!(overlaps(n("10.200.3.7"), 24, n("10.200.3.0"), 24));
        assert!(!overlaps(n("10.200.4.7"), 24, n("10.200.3.0"), 24));
        assert!(overlaps(n("10.0.0.1"), 8, n("10.200.3.0"), 24));
        assert!(overlaps(n("1.2.3.4"), 0, n("10.200.3.0"), 24));
    }
}
