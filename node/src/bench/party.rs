//! The relay processes of `skyhop bench relay`: the bench re-runs this
//! binary as `skyhop bench-party KIND`, which prints `READY <address>` on
//! stdout and relays until its stdin closes. Their CPU time is read from
//! /proc by the parent.
//!
//! - `forward --to ADDR`: a raw TCP forwarder that parses frames (4-byte
//!   length prefix) and coalesces: everything readable is gathered and the
//!   complete frames written with one write;
//! - `copy --to ADDR`: a blind byte copy (`tokio::io::copy_bidirectional`,
//!   with the forwarder's 256 KiB buffers);
//! - `supernode [--bootstrap ADDR]`: a real skyhop supernode (the runtime);
//! - `circuit-relay`: a libp2p circuit relay v2 server;
//!
//! and with `--quic`, the supernode and the circuit relay listen on QUIC
//! (UDP on loopback) instead of TCP + Noise + Yamux.

use std::process::Stdio;
use std::time::Duration;

use clap::Args;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

use super::BenchError;
use crate::runtime::{start, NodeOptions};
use skyhop_protocol::{Role, FRAME_HEADER_LEN, MAX_FRAME_BODY};

/// How long a party may take to report its address.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The forwarder's read buffer: many frames per read.
const FORWARD_BUFFER: usize = 256 * 1024;

/// `skyhop bench-party` (internal: started by `skyhop bench relay`).
#[derive(Args, Debug, Clone)]
pub struct PartyArgs {
    /// forward, copy, supernode or circuit-relay.
    pub kind: String,
    /// Where a forwarder or copier connects to (host:port).
    #[arg(long)]
    pub to: Option<String>,
    /// A supernode to join through (multiaddr ending in /p2p/...).
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// A supernode or circuit relay listens on QUIC instead of TCP.
    #[arg(long)]
    pub quic: bool,
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> BenchError + '_ {
    move |e| BenchError::Io(format!("{what}: {e}"))
}

fn ready(addr: &str) {
    // One line the parent waits for; stdout is a pipe, so flush it.
    println!("READY {addr}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
}

/// Resolves when stdin closes (the parent is done or gone).
async fn stdin_closed() {
    // A plain thread: the workspace's tokio has no stdin support.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    let _ = rx.await;
}

/// Runs one party until its stdin closes.
pub async fn run(args: PartyArgs) -> Result<(), BenchError> {
    match args.kind.as_str() {
        "forward" | "copy" => {
            let to = args
                .to
                .ok_or_else(|| BenchError::Setup("--to is required".into()))?;
            let listener = TcpListener::bind("127.0.0.1:0").await.map_err(io("bind"))?;
            ready(&listener.local_addr().map_err(io("local addr"))?.to_string());
            let copy = args.kind == "copy";
            tokio::select! {
                _ = stdin_closed() => Ok(()),
                r = relay_one(listener, to, copy) => r,
            }
        }
        "supernode" => {
            let mut opts = NodeOptions::loopback(Role::Supernode);
            if args.quic {
                opts.listen = vec![super::p2p::QUIC_LOOPBACK.parse().expect("valid multiaddr")];
            }
            // The hop is measured, not the per-peer budget.
            opts.config.budget = skyhop_core::BudgetConfig::benchmark();
            if let Some(b) = &args.bootstrap {
                opts.bootstrap = vec![b
                    .parse()
                    .map_err(|e| BenchError::Setup(format!("--bootstrap: {e}")))?];
            }
            let node = start(opts).await?;
            if args.bootstrap.is_some() {
                // Report ready once the supernode overlay has formed.
                for _ in 0..200 {
                    if !node.status().await?.status.neighbors.is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
            let addr = node
                .info()
                .listen_addrs
                .first()
                .cloned()
                .ok_or_else(|| BenchError::Setup("the supernode has no address".into()))?;
            ready(&addr);
            stdin_closed().await;
            let _ = node.shutdown().await;
            Ok(())
        }
        "circuit-relay" => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let server = tokio::spawn(super::p2p::circuit_relay_server(
                tx,
                args.quic,
                stdin_closed(),
            ));
            let addr = rx
                .await
                .map_err(|_| BenchError::Setup("the relay did not start".into()))?;
            ready(&addr.to_string());
            server
                .await
                .map_err(|e| BenchError::Setup(format!("relay task: {e}")))?
        }
        other => Err(BenchError::Setup(format!(
            "unknown party '{other}': forward, copy, supernode or circuit-relay"
        ))),
    }
}

/// Accepts one connection, connects onwards, relays both ways.
async fn relay_one(listener: TcpListener, to: String, copy: bool) -> Result<(), BenchError> {
    let (mut inbound, _) = listener.accept().await.map_err(io("accept"))?;
    let mut outbound = TcpStream::connect(&to).await.map_err(io("connect"))?;
    inbound.set_nodelay(true).map_err(io("nodelay"))?;
    outbound.set_nodelay(true).map_err(io("nodelay"))?;
    if copy {
        // The forwarder's buffer size, so that the copy is the bound it
        // claims to be (the default 8 KiB made it slower than the forwarder).
        let _ = tokio::io::copy_bidirectional_with_sizes(
            &mut inbound,
            &mut outbound,
            FORWARD_BUFFER,
            FORWARD_BUFFER,
        )
        .await;
        return Ok(());
    }
    let (ir, iw) = inbound.into_split();
    let (or, ow) = outbound.into_split();
    let forth = tokio::spawn(forward_frames(ir, ow));
    let back = forward_frames(or, iw).await;
    forth.abort();
    back
}

/// Forwards whole frames: reads everything available, writes the complete
/// frames in one write, keeps the partial tail for the next read.
pub async fn forward_frames<R, W>(mut r: R, mut w: W) -> Result<(), BenchError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; FORWARD_BUFFER];
    let mut filled = 0;
    loop {
        let n = r.read(&mut buf[filled..]).await.map_err(io("read"))?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
        let mut end = 0;
        while filled - end >= FRAME_HEADER_LEN {
            let header: [u8; 4] = buf[end..end + 4].try_into().expect("four bytes");
            let len = u32::from_be_bytes(header) as usize;
            if len > MAX_FRAME_BODY {
                return Err(BenchError::Io(format!("frame of {len} bytes")));
            }
            if filled - end < FRAME_HEADER_LEN + len {
                break;
            }
            end += FRAME_HEADER_LEN + len;
        }
        if end > 0 {
            w.write_all(&buf[..end]).await.map_err(io("write"))?;
            buf.copy_within(end..filled, 0);
            filled -= end;
        }
    }
}

/// A running party process.
pub struct Party {
    child: Child,
    /// What it printed after `READY`.
    pub addr: String,
    /// Its process id.
    pub pid: u32,
}

impl Party {
    /// Starts `skyhop bench-party KIND ARGS...` and waits for its address.
    pub async fn spawn(kind: &str, args: &[&str]) -> Result<Party, BenchError> {
        let exe = std::env::current_exe().map_err(io("current exe"))?;
        let mut child = Command::new(exe)
            .arg("bench-party")
            .arg(kind)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(io("spawn a party"))?;
        let pid = child
            .id()
            .ok_or_else(|| BenchError::Setup("party exited at once".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Setup("no party stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(READY_TIMEOUT, lines.next_line())
            .await
            .map_err(|_| BenchError::Setup(format!("{kind} did not start in time")))?
            .map_err(io("party stdout"))?
            .ok_or_else(|| BenchError::Setup(format!("{kind} exited before it was ready")))?;
        let addr = line
            .strip_prefix("READY ")
            .ok_or_else(|| BenchError::Setup(format!("{kind} said '{line}'")))?
            .to_string();
        Ok(Party { child, addr, pid })
    }

    /// CPU time the process has used so far, in nanoseconds: the sum over
    /// its threads of /proc's schedstat (nanosecond resolution), or
    /// utime + stime from /proc/PID/stat (clock ticks) where that is missing.
    pub fn cpu_ns(&self) -> u64 {
        cpu_ns(self.pid)
    }

    /// Closes its stdin and waits (bounded) for it to exit.
    pub async fn stop(mut self) {
        drop(self.child.stdin.take());
        if tokio::time::timeout(Duration::from_secs(3), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// CPU nanoseconds used by process `pid` (see [`Party::cpu_ns`]).
pub fn cpu_ns(pid: u32) -> u64 {
    let mut total = 0u64;
    let mut found = false;
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) {
                if let Some(ns) = s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    total += ns;
                    found = true;
                }
            }
        }
    }
    if found {
        return total;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| f.get(*i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    ticks * 10_000_000 // 100 ticks per second on Linux
}
