//! [`OtherHost`]: a host of its own for a test peer that must not share
//! the machine's loopback address with everyone else — a network namespace
//! joined to this one by a veth pair in 198.18.0.0/24 (one /30: this side
//! `.4k+1`, the namespace's side `.4k+2`). Nothing touches the machine's
//! real interfaces; the namespace, the pair and every process started in
//! it are removed on drop, so on panic too, and a later test removes what
//! a killed test process left behind. Needs root and `ip netns`
//! ([`crate::netns_skip_reason`] says whether this machine has them).

use std::net::Ipv4Addr;
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

/// Namespaces made here are named `<PREFIX><pid>-<n>`.
const PREFIX: &str = "skyhop-host-";

/// A network namespace with its own address, reachable from this one.
pub struct OtherHost {
    /// The namespace's name.
    pub name: String,
    /// The address of the namespace's end of the pair (its host's IP).
    pub ip: Ipv4Addr,
    /// The address of this side's end, which the namespace can reach:
    /// listen here to be dialed from it.
    pub local_ip: Ipv4Addr,
    /// Processes started in the namespace, killed on drop.
    children: Vec<Child>,
}

fn ip(args: &[&str]) -> Result<Output, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("`ip` does not run: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Removes the namespaces an earlier test process made and could not
/// remove (it was killed): their pair goes with them.
fn remove_leftovers() {
    let Ok(out) = ip(&["netns", "list"]) else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !std::path::Path::new("/proc").join(pid).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// A /30 block of 198.18.0.0/24 that no address here is in yet; its
/// first address (this side's; the namespace's is the next one).
fn free_block() -> Result<Ipv4Addr, String> {
    let out = ip(&["-4", "-o", "addr", "show"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let taken: Vec<u8> = text
        .split_whitespace()
        .filter_map(|w| w.split('/').next()?.strip_prefix("198.18.0.")?.parse().ok())
        .collect();
    let start = std::process::id() as usize;
    (0..64)
        .map(|i| ((start + i) % 64) as u8)
        .map(|block| block * 4 + 1)
        .find(|first| !taken.iter().any(|t| t & !3 == first & !3))
        .map(|first| Ipv4Addr::new(198, 18, 0, first))
        .ok_or_else(|| "every /30 of 198.18.0.0/24 is in use here".into())
}

impl OtherHost {
    /// Makes a new namespace with its own address, joined to this one.
    pub fn new() -> Result<OtherHost, String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        remove_leftovers();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let name = format!("{PREFIX}{pid}-{n}");
        // Interface names have at most 15 bytes.
        let local_if = format!("sh{pid}-{n}");
        let local_ip = free_block()?;
        let [a, b, c, d] = local_ip.octets();
        let host = OtherHost {
            name,
            ip: Ipv4Addr::new(a, b, c, d + 1),
            local_ip,
            children: Vec::new(),
        };
        // From here on, drop removes what was made (the pair goes with
        // the namespace).
        let ns = host.name.as_str();
        let (local, remote) = (format!("{local_ip}/30"), format!("{}/30", host.ip));
        ip(&["netns", "add", ns])?;
        ip(&[
            "link", "add", &local_if, "type", "veth", "peer", "name", "eth0", "netns", ns,
        ])?;
        ip(&["addr", "add", &local, "dev", &local_if])?;
        ip(&["link", "set", &local_if, "up"])?;
        ip(&["-n", ns, "addr", "add", &remote, "dev", "eth0"])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok(host)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// Keeps `child` (started with [`OtherHost::command`]) to be killed
    /// before the namespace is removed; its index for [`OtherHost::child`].
    pub fn adopt(&mut self, child: Child) -> usize {
        self.children.push(child);
        self.children.len() - 1
    }

    /// A process kept by [`OtherHost::adopt`].
    pub fn child(&mut self, index: usize) -> &mut Child {
        &mut self.children[index]
    }
}

impl Drop for OtherHost {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = ip(&["netns", "del", &self.name]);
    }
}
