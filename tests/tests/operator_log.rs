//! What an operator reads at the default log level (`RUST_LOG=info`, as
//! the helpers start every node): a lost client, a redirect, each with the
//! peer's short id and the reason.

use std::time::Duration;

use skyhop_tests::{wait_until, NodeProc, Scratch, ATTACH_TIMEOUT};

/// The first 8 hex characters, as the logs show ids.
fn short(id: &str) -> &str {
    &id[..8]
}

/// A line of `log` at INFO or WARN that names `peer` and contains `what`.
fn logged(log: &str, peer: &str, what: &str) -> bool {
    log.lines()
        .any(|l| (l.contains("INFO") || l.contains("WARN")) && l.contains(peer) && l.contains(what))
}

/// A full supernode's redirect is logged on both ends, and a client killed
/// with SIGKILL is reported by its supernode as a closed link.
#[test]
fn redirects_and_lost_clients_are_logged_with_the_peer_and_the_reason() {
    let scratch = Scratch::new("oplog");
    let full = NodeProc::start_with(
        &scratch.path.join("full"),
        "supernode",
        &[],
        &["--max-clients", "1"],
    );
    let other = NodeProc::start(
        &scratch.path.join("other"),
        "supernode",
        std::slice::from_ref(&full.addr),
    );
    let boot = [full.addr.clone()];
    let mut first = NodeProc::start(&scratch.path.join("first"), "ordinary", &boot);
    assert!(wait_until(ATTACH_TIMEOUT, || first.primary().as_deref()
        == Some(full.id.as_str())));
    let second = NodeProc::start(&scratch.path.join("second"), "ordinary", &boot);
    assert!(
        wait_until(ATTACH_TIMEOUT, || second.primary().as_deref()
            == Some(other.id.as_str())),
        "the second client was not redirected to the other supernode"
    );
    assert!(
        wait_until(Duration::from_secs(10), || logged(
            &full.log(),
            short(&second.id),
            "redirecting"
        )),
        "the full supernode does not say whom it redirected:\n{}",
        full.log()
    );
    assert!(
        logged(&second.log(), short(&full.id), "redirected"),
        "the client does not say who redirected it:\n{}",
        second.log()
    );

    first.kill9();
    assert!(
        wait_until(Duration::from_secs(30), || logged(
            &full.log(),
            short(&first.id),
            "link closed"
        )),
        "the supernode does not report its lost client:\n{}",
        full.log()
    );
}
