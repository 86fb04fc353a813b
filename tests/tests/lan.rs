//! A virtual LAN of four hosts (network namespaces joined by a bridge, in
//! 198.18.0.0/24) where nodes find each other by mDNS alone and chat across
//! hosts: `scripts/lan-netns.sh 4`. Needs root and `ip netns`; otherwise the
//! test says why it skipped. The script removes its namespaces and processes
//! on every exit path.

#[test]
fn four_hosts_on_a_virtual_lan_find_each_other_by_mdns_and_chat() {
    if let Some(reason) = skyhop_tests::netns_skip_reason() {
        println!("skipped: the netns LAN test needs root and `ip netns`: {reason}");
        return;
    }
    let stdout = skyhop_tests::run_netns_script("lan-netns.sh", 4);
    assert!(
        stdout.contains("attached through mDNS discovery"),
        "{stdout}"
    );
    assert!(stdout.contains("delivered"), "{stdout}");
}
