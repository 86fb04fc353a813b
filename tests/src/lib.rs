//! Helpers for skyhop's black-box tests: start real `skyhop run` processes on
//! 127.0.0.1, talk to them through their control API, and clean up — kill
//! every process and remove every data directory — even when a test fails.
//!
//! Every wait here is bounded; a bound that runs out fails the test with what
//! was seen, it never hangs.

// The clock rule (clippy.toml) guards the sans-IO core and the simulator;
// black-box tests bound their waits by wall-clock time, which is what it is for.
#![allow(clippy::disallowed_methods)]

pub mod flooder;
pub mod netns;
pub mod raw;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, Swarm};
use serde_json::Value;
use skyhop_protocol::Identity;

/// How long a node may take to start and serve its control API.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an overlay may take until every ordinary node is attached.
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);

/// The tokio runtime a test's own libp2p clients run on (two workers).
pub fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A bare client for tests that play a hostile peer: a swarm with only the
/// stream behaviour, as `identity`, dialing `target` (an address ending in
/// `/p2p/<peer id>`); the swarm and that peer. Call it inside a tokio
/// runtime.
pub fn dial_as(target: &str, identity: &Identity) -> (Swarm<libp2p_stream::Behaviour>, PeerId) {
    let (addr, peer) = addr_and_peer(target);
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(identity.libp2p_keypair())
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("transport")
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();
    swarm.dial(addr).expect("dial");
    (swarm, peer)
}

/// `target` (an address ending in `/p2p/<peer id>`) parsed, and its peer.
fn addr_and_peer(target: &str) -> (Multiaddr, PeerId) {
    let addr: Multiaddr = target.parse().expect("multiaddr");
    let peer = addr
        .iter()
        .find_map(|p| match p {
            libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
            _ => None,
        })
        .expect("address has /p2p/");
    (addr, peer)
}

/// An identity, from `seed` on, whose PeerId sorts below the peer that
/// `target` names (an address ending in `/p2p/<peer id>`): by the
/// protocol's rule (PROTOCOL.md, "Who opens the stream") such a client is
/// the one that opens `/skyhop/1`, and the node waits for its stream
/// instead of opening one of its own. A bare client that opens its stream
/// whatever its id races the node's own stream, which may then replace it.
pub fn opener_identity(target: &str, seed: u64) -> Identity {
    let (_, node) = addr_and_peer(target);
    // Half of all ids sort below any given one: a few tries at most.
    (0..10_000u64)
        .map(|n| {
            let mut secret = [0x0b; 32];
            secret[..8].copy_from_slice(&seed.wrapping_add(n).to_le_bytes());
            Identity::from_secret(secret)
        })
        .find(|id| id.libp2p_keypair().public().to_peer_id().to_bytes() < node.to_bytes())
        .expect("an id below the node's")
}

/// The `skyhop` binary, built once per test process if it is not there.
pub fn skyhop_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ sits in the workspace")
            .to_path_buf();
        // SKYHOP_TEST_RELEASE=1 runs the nodes from a release build: for
        // figures measured with a test (the flood's latencies), not for CI.
        let release = std::env::var_os("SKYHOP_TEST_RELEASE").is_some_and(|v| v == "1");
        let mut args = vec!["build", "-q", "-p", "skyhop-node", "--bin", "skyhop"];
        if release {
            args.push("--release");
        }
        let status = Command::new(env!("CARGO"))
            .args(&args)
            .current_dir(&root)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the skyhop binary failed");
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
        let profile = if release { "release" } else { "debug" };
        let bin = target.join(profile).join("skyhop");
        assert!(bin.exists(), "no binary at {}", bin.display());
        bin
    })
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct Scratch {
    /// Its path.
    pub path: PathBuf,
}

impl Scratch {
    /// Makes a new, unique scratch directory.
    pub fn new(label: &str) -> Scratch {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("skyhop-e2e-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("temp dir is writable");
        Scratch { path }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Writes `request` (a whole HTTP/1.1 request) to `stream` and reads the
/// answer until the server closes; the status code and the body as text.
pub fn exchange(mut stream: impl Read + Write, request: &str) -> Result<(u16, String), String> {
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    stream
        .take(1 << 20)
        .read_to_end(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end in {text:?}"))?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status code in {head:?}"))?;
    Ok((code, body.to_string()))
}

/// An HTTP/1.1 request with a JSON body (if any) and extra header lines
/// (each ending in `\r\n`).
pub fn request_text(
    method: &str,
    path: &str,
    host: &str,
    extra: &str,
    body: Option<&Value>,
) -> String {
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n{payload}",
        payload.len()
    )
}

/// One request to a control API's Unix socket; the status code and JSON body.
pub fn http(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<(u16, Value), String> {
    let stream =
        UnixStream::connect(socket).map_err(|e| format!("connect {}: {e}", socket.display()))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let (code, body) = exchange(stream, &request_text(method, path, "localhost", "", body))
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let json = serde_json::from_str(body.trim())
        .map_err(|e| format!("body of {method} {path} is not JSON ({e}): {body:?}"))?;
    Ok((code, json))
}

/// One raw request to a loopback TCP control API; the status code and body.
pub fn http_tcp(addr: SocketAddr, request: &str) -> Result<(u16, String), String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    exchange(stream, request)
}

/// A running `skyhop run` process, killed on drop.
pub struct NodeProc {
    child: Option<Child>,
    /// Its data directory.
    pub dir: PathBuf,
    /// Its control API's Unix socket.
    pub control: PathBuf,
    /// Its node id (hex).
    pub id: String,
    /// Its first loopback listen address (else its first), with `/p2p/`,
    /// for others to bootstrap from.
    pub addr: String,
    /// Its role as passed on the command line.
    pub role: String,
}

impl NodeProc {
    /// Starts `skyhop run` with `role` in `dir`, bootstrapping from `bootstrap`,
    /// and waits until its control API answers.
    pub fn start(dir: &Path, role: &str, bootstrap: &[String]) -> NodeProc {
        NodeProc::start_with(dir, role, bootstrap, &[])
    }

    /// As [`NodeProc::start`], with extra flags.
    pub fn start_with(dir: &Path, role: &str, bootstrap: &[String], extra: &[&str]) -> NodeProc {
        NodeProc::start_on(dir, role, &["/ip4/127.0.0.1/tcp/0"], bootstrap, extra)
    }

    /// As [`NodeProc::start_with`], listening on `listen` (TCP, QUIC).
    pub fn start_on(
        dir: &Path,
        role: &str,
        listen: &[&str],
        bootstrap: &[String],
        extra: &[&str],
    ) -> NodeProc {
        std::fs::create_dir_all(dir).expect("data dir");
        let _ = std::fs::remove_file(dir.join("control.sock"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("node.log"))
            .expect("log file");
        let mut cmd = Command::new(skyhop_bin());
        cmd.args(["run", "--role", role, "--mdns", "off"])
            .arg("--data-dir")
            .arg(dir);
        for l in listen {
            cmd.args(["--listen", l]);
        }
        for b in bootstrap {
            cmd.args(["--bootstrap", b]);
        }
        cmd.args(extra);
        cmd.env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        let child = cmd.spawn().expect("skyhop starts");
        let mut node = NodeProc {
            child: Some(child),
            dir: dir.to_path_buf(),
            control: dir.join("control.sock"),
            id: String::new(),
            addr: String::new(),
            role: role.to_string(),
        };
        let up = wait_until(START_TIMEOUT, || node.try_status().is_ok());
        assert!(
            up,
            "node in {} did not serve its control API in time; log:\n{}",
            dir.display(),
            node.log()
        );
        let status = node.status();
        node.id = status["id"].as_str().expect("status has an id").to_string();
        let addrs: Vec<&str> = status["listen_addrs"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        node.addr = addrs
            .iter()
            .find(|a| a.starts_with("/ip4/127."))
            .or(addrs.first())
            .expect("status has a listen address")
            .to_string();
        node
    }

    /// Its listen address on `ip` (with `/p2p/`), if it listens there.
    pub fn listen_addr_on(&self, ip: &str) -> Option<String> {
        let prefix = format!("/ip4/{ip}/");
        self.status()["listen_addrs"]
            .as_array()?
            .iter()
            .filter_map(Value::as_str)
            .find(|a| a.starts_with(&prefix))
            .map(str::to_string)
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
    }

    fn try_status(&self) -> Result<Value, String> {
        match http(
            &self.control,
            "GET",
            "/status",
            None,
            Duration::from_secs(5),
        )? {
            (200, v) => Ok(v),
            (code, v) => Err(format!("status {code}: {v}")),
        }
    }

    /// `GET /status`.
    pub fn status(&self) -> Value {
        self.try_status().unwrap_or_else(|e| {
            panic!(
                "status of {}: {e}; log:\n{}",
                self.dir.display(),
                self.log()
            )
        })
    }

    /// The primary supernode's id, if attached.
    pub fn primary(&self) -> Option<String> {
        self.try_status()
            .ok()
            .and_then(|s| s["primary"].as_str().map(str::to_string))
    }

    /// `POST /send`; the JSON outcome.
    pub fn send(&self, to: &str, text: &str) -> Value {
        let body = serde_json::json!({ "to": to, "text": text });
        match http(
            &self.control,
            "POST",
            "/send",
            Some(&body),
            Duration::from_secs(60),
        ) {
            Ok((_, v)) => v,
            Err(e) => panic!("send from {}: {e}", self.id),
        }
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Waits (at most `timeout`) for the process to exit by itself; its
    /// exit status, or `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits (at most 15 s) for the process to exit.
    pub fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A local overlay of real processes: supernodes first, then ordinary nodes
/// bootstrapped round-robin from them.
pub struct Overlay {
    /// The supernodes.
    pub supernodes: Vec<NodeProc>,
    /// The ordinary nodes.
    pub ordinary: Vec<NodeProc>,
    /// Where the data directories live; declared last so that it is removed
    /// after the processes are killed.
    pub scratch: Scratch,
}

impl Overlay {
    /// Starts `sns` supernodes and `ons` ordinary nodes and waits until every
    /// ordinary node is attached.
    pub fn start(label: &str, sns: usize, ons: usize) -> Overlay {
        Overlay::start_listening(label, sns, ons, &["/ip4/127.0.0.1/tcp/0"])
    }

    /// As [`Overlay::start`], the supernodes listening on `sn_listen` (the
    /// ordinary nodes bootstrap from their loopback address).
    pub fn start_listening(label: &str, sns: usize, ons: usize, sn_listen: &[&str]) -> Overlay {
        let scratch = Scratch::new(label);
        let mut supernodes: Vec<NodeProc> = Vec::new();
        for i in 0..sns {
            let boot: Vec<String> = supernodes
                .first()
                .map(|s| vec![s.addr.clone()])
                .unwrap_or_default();
            supernodes.push(NodeProc::start_on(
                &scratch.path.join(format!("sn{i}")),
                "supernode",
                sn_listen,
                &boot,
                &[],
            ));
        }
        let ordinary: Vec<NodeProc> = (0..ons)
            .map(|i| {
                let boot = vec![supernodes[i % sns].addr.clone()];
                NodeProc::start(&scratch.path.join(format!("on{i}")), "ordinary", &boot)
            })
            .collect();
        let overlay = Overlay {
            supernodes,
            ordinary,
            scratch,
        };
        let all = wait_until(ATTACH_TIMEOUT, || {
            overlay.ordinary.iter().all(|n| n.primary().is_some())
        });
        if !all {
            let missing: Vec<&str> = overlay
                .ordinary
                .iter()
                .filter(|n| n.primary().is_none())
                .map(|n| n.id.as_str())
                .collect();
            panic!("ordinary nodes not attached within {ATTACH_TIMEOUT:?}: {missing:?}");
        }
        overlay
    }
}

/// A tiny deterministic PRNG (splitmix64) for choosing test pairs.
pub struct SplitMix(pub skyhop_protocol::mix::SplitMix64);

impl SplitMix {
    /// A stream seeded by `seed`.
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(skyhop_protocol::mix::SplitMix64(seed))
    }

    /// The next number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0.below(n as u64) as usize
    }
}

/// Why a test that builds network namespaces cannot run here (it needs root
/// and `ip netns`), or `None`.
pub fn netns_skip_reason() -> Option<String> {
    let uid = match Command::new("id").arg("-u").output() {
        Ok(out) => out,
        Err(e) => return Some(format!("`id` does not run: {e}")),
    };
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

/// Runs `scripts/<script> <hosts>` against the built `skyhop` (bounded to
/// 180 s by `timeout`), and returns its stdout; panics with both outputs
/// if it fails. The scripts remove their namespaces and processes on every
/// exit path.
pub fn run_netns_script(script: &str, hosts: u32) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let out = Command::new("timeout")
        .arg("180")
        .arg(root.join("scripts").join(script))
        .arg(hosts.to_string())
        .env("SKYHOP_BIN", skyhop_bin())
        .output()
        .expect("the script runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{script} failed ({:?}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// What `skyhop chat --data-dir DIR` prints for the lines of `input`.
pub fn prompt_output(dir: &Path, input: &str) -> String {
    let mut prompt = Command::new(skyhop_bin())
        .args(["chat", "--data-dir"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("skyhop chat starts");
    let mut stdin = prompt.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("typed");
    // The end of input ends the prompt once its commands are answered.
    drop(stdin);
    let mut stdout = prompt.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let ended = wait_until(Duration::from_secs(30), || {
        matches!(prompt.try_wait(), Ok(Some(_)))
    });
    if !ended {
        let _ = prompt.kill();
        let _ = prompt.wait();
    }
    reader.join().expect("reader")
}
