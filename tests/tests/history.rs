//! The chat history in `<data-dir>/history.db`, with real `skyhop run`
//! processes: a chat acknowledged to its sender is on the recipient's disk
//! even if the recipient is killed right after (`kill -9`); a sender keeps
//! what became of its chats across a restart; the row bound holds and
//! counts what it deleted; a corrupt file stops the node with its name and
//! the fix; a full disk (a tmpfs the test mounts, as root) withholds the
//! receipt, so the sender hears "not delivered", and the log names the file.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use skyhop_tests::{
    http, prompt_output, skyhop_bin, wait_until, NodeProc, Scratch, ATTACH_TIMEOUT,
};

/// `GET path` on `node`'s control socket; the JSON answer of a 200.
fn get(node: &NodeProc, path: &str) -> Value {
    match http(&node.control, "GET", path, None, Duration::from_secs(10)) {
        Ok((200, v)) => v,
        other => panic!("GET {path} on {}: {other:?}", node.dir.display()),
    }
}

/// A supernode and two ordinary nodes attached to it; `extra_b` are more
/// flags for B.
fn overlay(scratch: &Scratch, extra_b: &[&str]) -> (NodeProc, NodeProc, NodeProc) {
    let sn = NodeProc::start(&scratch.path.join("sn"), "supernode", &[]);
    let boot = [sn.addr.clone()];
    let a = NodeProc::start(&scratch.path.join("a"), "ordinary", &boot);
    let b = NodeProc::start_with(&scratch.path.join("b"), "ordinary", &boot, extra_b);
    assert!(
        wait_until(ATTACH_TIMEOUT, || a.primary().is_some()
            && b.primary().is_some()),
        "A and B did not attach"
    );
    (sn, a, b)
}

/// The `messages` of a history answer.
fn messages(page: &Value) -> &Vec<Value> {
    page["messages"].as_array().expect("messages")
}

#[test]
fn a_chat_acknowledged_to_its_sender_is_in_the_recipients_history_after_kill_9_and_restart() {
    let scratch = Scratch::new("history-kill9");
    let (sn, a, mut b) = overlay(&scratch, &[]);
    let text = "kept through a crash";
    let sent = a.send(&b.id, text);
    assert_eq!(sent["delivered"], true, "{sent}");
    // The receipt is back at A: crash B at once, as a power cut would.
    b.kill9();
    let b_dir = b.dir.clone();
    let b = NodeProc::start(&b_dir, "ordinary", std::slice::from_ref(&sn.addr));
    let page = get(&b, &format!("/history?peer={}", a.id));
    let kept = messages(&page);
    assert_eq!(kept.len(), 1, "{page}");
    assert_eq!(kept[0]["body"], text);
    assert_eq!(kept[0]["direction"], "in");
    assert_eq!(kept[0]["state"], "received");
    assert_eq!(kept[0]["peer"], a.id.as_str());
    // A became B's contact at first contact, and the restart kept it.
    let contacts = get(&b, "/contacts");
    let ids: Vec<&str> = contacts["contacts"]
        .as_array()
        .expect("contacts")
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert_eq!(ids, [a.id.as_str()], "{contacts}");
    // A person at B's prompt sees it with /history, and A by a short prefix.
    let shown = prompt_output(&b.dir, &format!("/history {}\n", &a.id[..8]));
    let line = format!("<- {}  {text}  [received (", &a.id[..8]);
    assert!(shown.contains(&line), "expected {line:?} in:\n{shown}");
}

#[test]
fn a_sender_sees_what_became_of_its_chats_after_a_restart() {
    let scratch = Scratch::new("history-sent");
    let (sn, mut a, mut b) = overlay(&scratch, &[]);
    let first = a.send(&b.id, "first, while B is up");
    assert_eq!(first["delivered"], true, "{first}");
    // B leaves; its supernode answers for it from then on, and keeps the
    // chat for it (the one home supernode there is).
    b.terminate();
    let second = a.send(&b.id, "second, after B left");
    assert_eq!(second["delivered"], false, "{second}");
    assert_eq!(second["stored"], 1, "{second}");
    a.kill9();
    let a_dir = a.dir.clone();
    let a = NodeProc::start(&a_dir, "ordinary", std::slice::from_ref(&sn.addr));
    let page = get(&a, &format!("/history?peer={}", b.id));
    let kept = messages(&page);
    assert_eq!(kept.len(), 2, "{page}");
    assert_eq!(
        (&kept[0]["body"], &kept[0]["state"], &kept[0]["said_by"]),
        (
            &Value::from("first, while B is up"),
            &Value::from("delivered"),
            &Value::from("recipient")
        ),
        "{page}"
    );
    assert!(kept[0]["hops"].as_u64().is_some_and(|h| h >= 1), "{page}");
    assert_eq!(kept[1]["state"], "stored", "{page}");
    assert_eq!(kept[1]["direction"], "out", "{page}");
    let sn_short = &sn.id[..8];
    assert_eq!(
        kept[1]["reason"].as_str(),
        Some(
            format!("recipient offline: stored on 1 of 3 home supernodes (said by {sn_short})")
                .as_str()
        ),
        "{page}"
    );
    assert_eq!(kept[1]["said_by"], "home_supernode", "{page}");
    let contacts = get(&a, "/contacts");
    let b_contact = &contacts["contacts"][0];
    assert_eq!(b_contact["id"], b.id.as_str(), "{contacts}");
    assert_eq!(b_contact["presence"], "offline", "{contacts}");
}

#[test]
fn the_history_keeps_its_row_bound_and_counts_what_it_deleted() {
    let scratch = Scratch::new("history-bound");
    let (_sn, a, b) = overlay(&scratch, &["--history-rows", "5"]);
    for n in 0..8 {
        let sent = a.send(&b.id, &format!("chat {n}"));
        assert_eq!(sent["delivered"], true, "chat {n}: {sent}");
    }
    let page = get(&b, "/history?limit=100");
    let bodies: Vec<&str> = messages(&page)
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(
        bodies,
        ["chat 3", "chat 4", "chat 5", "chat 6", "chat 7"],
        "the newest five are kept: {page}"
    );
    assert_eq!(page["rows"], 5, "{page}");
    assert_eq!(page["evicted"], 3, "{page}");
    assert_eq!(page["limits"]["max_rows"], 5, "{page}");
    // A keeps its own eight: the bound is B's.
    assert_eq!(messages(&get(&a, "/history?limit=100")).len(), 8);
}

#[test]
fn a_corrupt_history_file_stops_the_node_naming_the_file_and_the_fix() {
    let scratch = Scratch::new("history-corrupt");
    let dir = scratch.path.join("n");
    std::fs::create_dir_all(&dir).expect("data dir");
    std::fs::write(dir.join("history.db"), vec![0x5au8; 16 * 1024]).expect("garbage");
    let mut run = Command::new(skyhop_bin())
        .args(["run", "--listen", "/ip4/127.0.0.1/tcp/0", "--mdns", "off"])
        .arg("--data-dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("skyhop starts");
    let exited = wait_until(Duration::from_secs(30), || {
        matches!(run.try_wait(), Ok(Some(_)))
    });
    if !exited {
        let _ = run.kill();
    }
    let status = run.wait().expect("exit status");
    let mut stderr = String::new();
    let _ = run
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr);
    assert!(exited && !status.success(), "the node ran on: {stderr}");
    let path = dir.join("history.db");
    assert!(
        stderr.contains(&path.display().to_string()) && stderr.contains("move it away"),
        "{stderr}"
    );
}

/// A small tmpfs mounted for one test (root only), unmounted on drop.
struct SmallDisk {
    /// Where it is mounted.
    path: std::path::PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (e.g. "8m") at `path`, or says why not.
    fn mount(path: &Path, size: &str) -> Result<SmallDisk, String> {
        let uid = Command::new("id")
            .arg("-u")
            .output()
            .map_err(|e| e.to_string())?;
        if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
            return Err("not running as root".into());
        }
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(SmallDisk {
            path: path.to_path_buf(),
        })
    }

    /// Writes a file until the disk is full.
    fn fill(&self) -> std::path::PathBuf {
        let filler = self.path.join("filler");
        let mut f = std::fs::File::create(&filler).expect("filler");
        let block = vec![0u8; 64 * 1024];
        // Bounded: the disk is a few megabytes.
        for _ in 0..10_000 {
            if f.write_all(&block).is_err() {
                break;
            }
        }
        let _ = f.write_all(&[0u8; 512]);
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn a_recipient_whose_disk_is_full_withholds_the_receipt_and_says_which_file() {
    let scratch = Scratch::new("history-full");
    let disk = match SmallDisk::mount(&scratch.path.join("b-disk"), "8m") {
        Ok(d) => d,
        Err(why) => {
            println!("skipped: the full-disk test mounts a tmpfs: {why}");
            return;
        }
    };
    let sn = NodeProc::start(&scratch.path.join("sn"), "supernode", &[]);
    let boot = [sn.addr.clone()];
    // A gives up on a chat after 5 s instead of 30.
    let a_config = scratch.path.join("a.toml");
    std::fs::write(&a_config, "[node]\nchat_deadline = 5000000\n").expect("config");
    let config_flag = ["--config", a_config.to_str().expect("utf-8 path")];
    let a = NodeProc::start_with(&scratch.path.join("a"), "ordinary", &boot, &config_flag);
    let b = NodeProc::start(&disk.path.join("b"), "ordinary", &boot);
    assert!(
        wait_until(ATTACH_TIMEOUT, || a.primary().is_some()
            && b.primary().is_some()),
        "A and B did not attach"
    );
    let before = a.send(&b.id, "before the disk filled");
    assert_eq!(before["delivered"], true, "{before}");
    let filler = disk.fill();
    let during = a.send(&b.id, "while the disk is full");
    assert_eq!(
        during["delivered"], false,
        "B could not store it, so it must not say delivered: {during}"
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            let log = b.log();
            log.contains("history.db") && log.contains("the disk is full; free space")
        }),
        "B's log does not name the file and the fix:\n{}",
        b.log()
    );
    std::fs::remove_file(&filler).expect("space freed");
    let after = a.send(&b.id, "after space was freed");
    assert_eq!(after["delivered"], true, "{after}");
    let page = get(&b, "/history");
    let bodies: Vec<&str> = messages(&page)
        .iter()
        .filter_map(|m| m["body"].as_str())
        .collect();
    assert_eq!(
        bodies,
        ["before the disk filled", "after space was freed"],
        "{page}"
    );
    drop(b);
    drop(disk);
}
