//! The web page in a real browser: Debian's headless Chromium, driven by
//! playwright-core (tests/web/chat.mjs), against two real `skyhop run`
//! processes serving their page on loopback TCP with the cookie. Skips,
//! saying why, where Chromium, node or tests/web/node_modules is missing
//! (`.ci/run` installs them).

use std::path::Path;
use std::process::Command;

use skyhop_tests::{wait_until, NodeProc, Scratch, ATTACH_TIMEOUT};

/// What the browser test needs, or why it cannot run here.
fn browser_ready(web: &Path) -> Result<(), String> {
    if !Path::new("/usr/bin/chromium").exists() {
        return Err("no /usr/bin/chromium (apt-get install chromium)".into());
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Err("no node on PATH".into());
    }
    if !web.join("node_modules/playwright-core").exists() {
        return Err(format!(
            "no {}/node_modules/playwright-core (npm ci in {})",
            web.display(),
            web.display()
        ));
    }
    Ok(())
}

/// The `/login?token=...` URL of a node started with `--control`.
fn login_url(node: &NodeProc) -> String {
    let addr = std::fs::read_to_string(node.dir.join("control")).expect("TCP address");
    let cookie = std::fs::read_to_string(node.dir.join("control.cookie")).expect("cookie");
    format!("http://{}/login?token={}", addr.trim(), cookie.trim())
}

/// A's page lists B, which chose to be listed, by its checked name. A
/// person on A's page sends B a chat: A's page marks it delivered with
/// hops and milliseconds, and it appears on B's page; after a reload both
/// pages show it again from their node's history (A's still delivered,
/// said by the recipient). The screenshot of both pages is what README.md
/// shows.
#[test]
fn a_chat_sent_from_as_page_is_marked_delivered_appears_on_bs_page_and_stays_after_a_reload() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
    if let Err(why) = browser_ready(&web) {
        eprintln!("skipping the browser test: {why}");
        return;
    }
    let scratch = Scratch::new("web");
    let tcp = ["--control", "127.0.0.1:0"];
    let sn = NodeProc::start(&scratch.path.join("sn"), "supernode", &[]);
    let boot = [sn.addr.clone()];
    let a = NodeProc::start_with(&scratch.path.join("a"), "ordinary", &boot, &tcp);
    let named = ["--control", "127.0.0.1:0", "--name", "bob", "--listed"];
    let b = NodeProc::start_with(&scratch.path.join("b"), "ordinary", &boot, &named);
    assert!(
        wait_until(ATTACH_TIMEOUT, || a.primary().is_some()
            && b.primary().is_some()
            && b.log().contains("name 'bob' is yours")),
        "A and B did not attach, or B did not claim its name"
    );
    let text = "hello from A's page <b>not bold</b>";
    let out = Command::new("node")
        .arg(web.join("chat.mjs"))
        .env("SKYHOP_A_URL", login_url(&a))
        .env("SKYHOP_B_URL", login_url(&b))
        .env("SKYHOP_A_ID", &a.id)
        .env("SKYHOP_B_ID", &b.id)
        .env("SKYHOP_B_NAME", "bob")
        .env("SKYHOP_TEXT", text)
        .env("SKYHOP_PROFILE", scratch.path.join("chromium-profile"))
        .env("SKYHOP_SHOT", web.join("screenshot.png"))
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser run failed:\n{stdout}\n{stderr}\nA's log:\n{}",
        a.log()
    );
    assert!(stdout.contains("A: delivered ("), "{stdout}");
    assert!(
        stdout.contains(&format!("B received {}", serde_json::json!(text))),
        "{stdout}"
    );
    assert!(
        stdout.lines().any(|l| l.contains("A's history: ")
            && l.contains("· delivered (")
            && l.contains("hops, said by the recipient)")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("B's history: {}", serde_json::json!(text))),
        "{stdout}"
    );
    // A is not listed (no --listed): only B is on A's page.
    assert!(
        stdout.contains(&format!("A's listing: bob ({})", &b.id[..8]))
            && !stdout.contains(&a.id[..8]),
        "{stdout}"
    );
    let status = a.status();
    assert_eq!(status["pending_chats"], 0, "A's chat was acknowledged");
}
