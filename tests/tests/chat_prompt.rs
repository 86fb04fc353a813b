//! `skyhop chat` as a person sees it in a terminal: a received body that
//! holds a newline, a fake `[id]` prefix and an escape sequence is shown on
//! one line with the controls escaped, never interpreted.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use skyhop_tests::{skyhop_bin, wait_until, Overlay};

#[test]
fn a_received_body_cannot_fake_a_line_or_drive_the_terminal() {
    let overlay = Overlay::start("prompt", 1, 2);
    let (a, b) = (&overlay.ordinary[0], &overlay.ordinary[1]);
    let out_path = overlay.scratch.path.join("chat.out");
    let out = std::fs::File::create(&out_path).expect("output file");
    let mut prompt = Command::new(skyhop_bin())
        .args(["chat", "--data-dir"])
        .arg(&b.dir)
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("skyhop chat starts");
    let read = || {
        let mut text = String::new();
        let _ = std::fs::File::open(&out_path).and_then(|mut f| f.read_to_string(&mut text));
        text
    };
    assert!(
        wait_until(Duration::from_secs(20), || read().contains("chatting as")),
        "the prompt did not start: {}",
        read()
    );
    let evil = "hi\n[00000000] fake line\u{1b}[2J\u{1b}[31mred";
    let sent = a.send(&b.id, evil);
    assert_eq!(sent["delivered"], true, "{sent}");
    let expected = format!(
        "[{}] hi\\n[00000000] fake line\\u{{1b}}[2J\\u{{1b}}[31mred\n",
        &a.id[..8]
    );
    let shown = wait_until(Duration::from_secs(20), || read().contains(&expected));
    let _ = prompt.kill();
    let _ = prompt.wait();
    let text = read();
    assert!(shown, "expected {expected:?} in {text:?}");
    assert!(!text.contains('\u{1b}'), "an escape reached the terminal");
    assert!(
        !text.lines().any(|l| l.starts_with("[00000000]")),
        "a faked line: {text:?}"
    );
}
