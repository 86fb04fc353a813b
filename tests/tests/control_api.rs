//! The control API of real `skyhop run` processes as a user, a script and a
//! hostile local program meet it: the private Unix socket, the cookie on
//! loopback TCP, DNS-rebinding and cross-site requests refused, long-polls
//! bounded, ids as strings, `/metrics`, and the `ping`, `peers`, `status`
//! and `trace` commands.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use skyhop_tests::{http, http_tcp, request_text, skyhop_bin, NodeProc, Overlay, Scratch};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn code_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("no code in {body:?}"))
}

/// The socket and the data dir are the owner's only; on TCP nothing works
/// without the cookie, a foreign Host or Origin is refused even with it, a
/// text/plain POST never reaches the node, and a flood of long-polls gets
/// 429 while the owner's requests still go through.
#[test]
fn only_the_owner_reaches_the_control_api_and_waiters_cannot_lock_it() {
    let scratch = Scratch::new("guard");
    let dir = scratch.path.join("sn");
    let node = NodeProc::start_with(&dir, "supernode", &[], &["--control", "127.0.0.1:0"]);
    assert_eq!(mode(&dir), 0o700, "data dir");
    assert_eq!(mode(&dir.join("control.sock")), 0o600, "control socket");
    assert_eq!(mode(&dir.join("control.cookie")), 0o600, "cookie");
    let cookie = std::fs::read_to_string(dir.join("control.cookie")).expect("cookie");
    let addr: std::net::SocketAddr = std::fs::read_to_string(dir.join("control"))
        .expect("TCP address file")
        .trim()
        .parse()
        .expect("an address");
    let host = addr.to_string();
    let bearer = format!("Authorization: Bearer {}\r\n", cookie.trim());

    let get = |host: &str, extra: &str| {
        http_tcp(addr, &request_text("GET", "/status", host, extra, None)).expect("answer")
    };
    let (status, body) = get(&host, "");
    assert_eq!(
        (status, code_of(&body).as_str()),
        (401, "unauthorized"),
        "{body}"
    );
    let (status, _) = get(&host, "Authorization: Bearer 00\r\n");
    assert_eq!(status, 401, "a wrong cookie");
    let (status, body) = get(&host, &bearer);
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["id"], node.id.as_str());
    // DNS rebinding: the attacker's name resolves to 127.0.0.1.
    let (status, body) = get(&format!("evil.example:{}", addr.port()), &bearer);
    assert_eq!((status, code_of(&body).as_str()), (403, "forbidden_origin"));
    let (status, _) = get(&host, &format!("{bearer}Origin: http://evil.example\r\n"));
    assert_eq!(status, 403, "a foreign page");
    // A cross-site "simple" POST (no preflight) is text/plain.
    let plain = format!(
        "POST /send HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{bearer}Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n{{}}"
    );
    let (status, body) = http_tcp(addr, &plain).expect("answer");
    assert_eq!(
        (status, code_of(&body).as_str()),
        (415, "unsupported_media_type")
    );
    // Bad input gets a JSON error with a code, whatever the endpoint.
    for (method, path, auth, status, code, mentions) in [
        (
            "GET",
            "/events?since=x",
            bearer.as_str(),
            400,
            "bad_request",
            "since=x",
        ),
        ("GET", "/login?token=zz", "", 401, "unauthorized", "token"),
        (
            "DELETE",
            "/status",
            bearer.as_str(),
            405,
            "method_not_allowed",
            "DELETE",
        ),
    ] {
        let (got, body) =
            http_tcp(addr, &request_text(method, path, &host, auth, None)).expect("answer");
        assert_eq!((got, code_of(&body).as_str()), (status, code), "{body}");
        assert!(body.contains(mentions), "{method} {path}: {body}");
    }
    // The status command finds the node without a data dir: address and cookie.
    let cookie_file = dir.join("control.cookie");
    let (ok, out, err) = run_cli(&[
        "status",
        "--control",
        &host,
        "--cookie",
        cookie_file.to_str().expect("utf-8 path"),
    ]);
    assert!(ok && out.contains(&node.id), "{out}{err}");
    let empty = scratch.path.join("nothing-runs-here");
    std::fs::create_dir_all(&empty).expect("dir");
    let (ok, _, err) = run_cli(&["status", "--data-dir", empty.to_str().expect("utf-8")]);
    assert!(!ok && err.contains("no control socket"), "{err}");

    // One process holds at most 4 long-polls on the socket, loopback TCP
    // clients at most 8 together: past that 429 at once, and the owner's
    // status request still answers. (The total of 16 is unit-tested.)
    let socket = node.control.clone();
    let poll = "/events?since=999999&wait=4";
    let unix_polls: Vec<_> = (0..4)
        .map(|_| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let (status, body) = http(&socket, "GET", poll, None, Duration::from_secs(20))?;
                Ok::<_, String>((status, body.to_string()))
            })
        })
        .collect();
    let poll_tcp = request_text("GET", poll, &host, &bearer, None);
    let tcp_polls: Vec<_> = (0..8)
        .map(|_| {
            let poll_tcp = poll_tcp.clone();
            std::thread::spawn(move || http_tcp(addr, &poll_tcp))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let (status, v) = http(&socket, "GET", poll, None, Duration::from_secs(10)).expect("answer");
    assert_eq!(
        (status, v["code"].as_str()),
        (429, Some("too_many_waiters")),
        "{v}"
    );
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("this client")),
        "{v}"
    );
    let (status, body) = http_tcp(addr, &poll_tcp).expect("answer");
    assert_eq!(
        (status, code_of(&body).as_str()),
        (429, "too_many_waiters"),
        "{body}"
    );
    let (status, _) =
        http(&socket, "GET", "/status", None, Duration::from_secs(5)).expect("answer");
    assert_eq!(status, 200, "the owner is not locked out");
    for p in unix_polls.into_iter().chain(tcp_polls) {
        let (status, body) = p.join().expect("poll thread").expect("answer");
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).expect("JSON");
        assert!(v["next"].is_string(), "the cursor is a string: {v}");
    }
}

fn run_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(skyhop_bin())
        .args(args)
        .output()
        .expect("skyhop runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `skyhop ping` reports round trips, loss and percentiles; `status`,
/// `peers` and `trace` print JSON with `--json`; a received chat's ids are
/// exact strings; `/metrics` counts the chat and carries libp2p's metrics.
#[test]
fn ping_json_output_string_ids_and_metrics_on_a_live_overlay() {
    let overlay = Overlay::start("pingjson", 1, 2);
    let (a, b) = (&overlay.ordinary[0], &overlay.ordinary[1]);
    let a_dir = a.dir.to_str().expect("utf-8 path");
    let sent = a.send(&b.id, "hello b");
    assert_eq!(sent["delivered"], json!(true), "{sent}");

    let (ok, out, err) = run_cli(&["ping", "--data-dir", a_dir, &b.id, "-c", "3", "-i", "100"]);
    assert!(ok, "ping failed: {out}{err}");
    assert!(out.contains("3 sent, 3 received, 0% loss, 2 hops"), "{out}");
    assert!(out.contains("rtt min") && out.contains("p90"), "{out}");
    let (ok, out, err) = run_cli(&[
        "ping",
        "--data-dir",
        a_dir,
        &b.id,
        "-c",
        "2",
        "-i",
        "100",
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).expect("ping --json is JSON");
    assert_eq!(
        (v["sent"].as_u64(), v["received"].as_u64()),
        (Some(2), Some(2)),
        "{v}"
    );
    assert!(v["stats"]["p50_ms"].as_f64().is_some(), "{v}");
    let (ok, out, _) = run_cli(&["ping", "--data-dir", a_dir, &b.id, "-c", "0"]);
    assert!(!ok && out.is_empty(), "a count of 0 is refused");

    for args in [
        vec!["status", "--data-dir", a_dir, "--json"],
        vec!["peers", "--data-dir", a_dir, "--json"],
        vec!["trace", "--data-dir", a_dir, b.id.as_str(), "--json"],
    ] {
        let (ok, out, err) = run_cli(&args);
        assert!(ok, "{args:?}: {err}");
        let v: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"));
        match args[0] {
            "status" => assert_eq!(v["id"], a.id.as_str()),
            "peers" => assert!(v["recent"]
                .as_array()
                .is_some_and(|r| r.contains(&json!(b.id)))),
            _ => assert_eq!(
                (v["ok"].as_bool(), v["hops"].as_u64()),
                (Some(true), Some(2)),
                "{v}"
            ),
        }
    }

    let (status, v) = http(
        &b.control,
        "GET",
        "/events?since=0&wait=0",
        None,
        Duration::from_secs(5),
    )
    .expect("events");
    assert_eq!(status, 200);
    let chat = v["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["event"] == "chat_received"))
        .unwrap_or_else(|| panic!("no chat among {v}"));
    assert!(
        chat["msg_id"]
            .as_str()
            .is_some_and(|s| s.parse::<u64>().is_ok()),
        "{chat}"
    );
    assert_eq!(chat["seq"], "1", "the chat's own seq, as a string");
    assert!(chat["cursor"].is_string(), "{chat}");

    let stream = std::os::unix::net::UnixStream::connect(&a.control).expect("connect");
    let (status, metrics) = skyhop_tests::exchange(
        stream,
        &request_text("GET", "/metrics", "localhost", "", None),
    )
    .expect("metrics");
    assert_eq!(status, 200);
    for line in [
        "skyhop_chats_sent_total 1",
        "skyhop_chats_delivered_total 1",
        "skyhop_chats_failed_total{reason=\"timed_out\"} 0",
        "skyhop_attached 1",
        "skyhop_links 1",
        "skyhop_frames_out_total{kind=\"chat\"}",
    ] {
        assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
    }
    for line in [
        "\nlibp2p_swarm_connections_established_total{",
        "\nlibp2p_bandwidth_bytes_total{",
        "\nlibp2p_ping_rtt_seconds_count ",
    ] {
        assert!(
            metrics.contains(line),
            "no {line:?} in libp2p's own metrics:\n{metrics}"
        );
    }
}
