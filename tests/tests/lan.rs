//! A virtual LAN of four hosts (network namespaces joined by a bridge, in
//! 198.18.0.0/24) where nodes find each other by mDNS alone and chat across
//! hosts: `scripts/lan-netns.sh 4`. Needs root and `ip netns`; otherwise the
//! test says why it skipped. The script removes its namespaces and processes
//! on every exit path.

use std::process::Command;

fn skip_reason() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not running as root".into());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`ip netns` fails: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("`ip` is not installed: {e}")),
    }
}

#[test]
fn four_hosts_on_a_virtual_lan_find_each_other_by_mdns_and_chat() {
    if let Some(reason) = skip_reason() {
        println!("skipped: the netns LAN test needs root and `ip netns`: {reason}");
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let bin = skyhop_tests::skyhop_bin();
    let out = Command::new("timeout")
        .arg("180")
        .arg(root.join("scripts/lan-netns.sh"))
        .arg("4")
        .env("SKYHOP_BIN", bin)
        .output()
        .expect("the script runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "lan-netns.sh failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("attached through mDNS discovery"),
        "{stdout}"
    );
    assert!(stdout.contains("delivered"), "{stdout}");
}
