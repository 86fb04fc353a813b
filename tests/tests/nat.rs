//! Auto role behind a NAT: `scripts/nat-netns.sh 3` builds a public LAN of
//! network namespaces (a bridge in 198.18.0.0/24) with a seed supernode of
//! 2 clients and one public `--role auto` host, and three `--role auto`
//! hosts behind a NAT router (nftables masquerade). The public host is
//! dialed back and promotes; the NATed hosts learn they are unreachable,
//! never promote, and still attach and chat with each other. Needs root,
//! `ip netns` and `nft` (`.ci/run` installs nftables); otherwise the test
//! says why it skipped. The script removes its namespaces and processes on
//! every exit path.

use std::process::Command;

fn skip_reason() -> Option<String> {
    if let Some(reason) = skyhop_tests::netns_skip_reason() {
        return Some(reason);
    }
    match Command::new("nft").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("`nft` (nftables) is not installed".into()),
    }
}

#[test]
fn hosts_behind_a_nat_never_promote_and_still_chat() {
    if let Some(reason) = skip_reason() {
        println!("skipped: the netns NAT test needs root, `ip netns` and `nft`: {reason}");
        return;
    }
    let stdout = skyhop_tests::run_netns_script("nat-netns.sh", 3);
    assert!(
        stdout.contains("public host promoted; no NATed host promoted"),
        "{stdout}"
    );
    assert!(stdout.contains("every NATed host chatted"), "{stdout}");
}
