//! What the `skyhop` subcommands do. The binary parses arguments into the
//! structs here and calls the matching function; each returns
//! `Ok(())` on success or an error whose text tells the user what to fix.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use libp2p::Multiaddr;
use serde_json::{json, Value};
use skyhop_protocol::Role;

use super::control;
use super::handle::{MdnsMode, NodeOptions};
use super::node_task;
use super::{http, storage, RuntimeError};
use skyhop_core::NodeConfig;

/// Default listen address: loopback, port chosen by the OS.
pub const DEFAULT_LISTEN: &str = "/ip4/127.0.0.1/tcp/0";
/// Default control API address.
pub const DEFAULT_CONTROL: &str = "127.0.0.1:0";
/// How long a plain control request may take.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a send or trace request may take (chat deadline plus margin).
pub(super) const SEND_TIMEOUT: Duration = Duration::from_secs(40);

/// `skyhop run`: run a node.
#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// supernode or ordinary [default: ordinary].
    #[arg(long)]
    pub role: Option<String>,
    /// Address to listen on (repeatable) [default: /ip4/127.0.0.1/tcp/0].
    #[arg(long)]
    pub listen: Vec<String>,
    /// Address of a node to join through, e.g.
    /// /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo... (repeatable).
    #[arg(long)]
    pub bootstrap: Vec<String>,
    /// Directory for the key file, host cache and control address.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Control API address (loopback only; port 0 = any) [default: 127.0.0.1:0].
    #[arg(long)]
    pub control: Option<String>,
    /// TOML file with the same settings (flags override it) and an optional
    /// `[node]` table of core tunables.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// mDNS discovery: on, off, or auto (on only for a non-loopback listen address).
    #[arg(long)]
    pub mdns: Option<String>,
    /// Ordinary nodes a supernode serves before redirecting.
    #[arg(long)]
    pub max_clients: Option<usize>,
}

/// Where to find a running node: its data directory or its control address.
#[derive(Args, Debug, Clone, Default)]
pub struct Target {
    /// Data directory of the running node (its control address is read from it).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Control API address of the running node, e.g. 127.0.0.1:7000.
    #[arg(long)]
    pub control: Option<String>,
}

/// `skyhop send`: send one message.
#[derive(Args, Debug, Clone)]
pub struct SendArgs {
    /// The running node.
    #[command(flatten)]
    pub target: Target,
    /// Recipient: a node id or a unique prefix of a known one.
    #[arg(long)]
    pub to: String,
    /// The message.
    pub text: String,
}

/// `skyhop status`.
#[derive(Args, Debug, Clone)]
pub struct StatusArgs {
    /// The running node.
    #[command(flatten)]
    pub target: Target,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

/// `skyhop trace`.
#[derive(Args, Debug, Clone)]
pub struct TraceArgs {
    /// The running node.
    #[command(flatten)]
    pub target: Target,
    /// The node to trace: an id or a unique prefix of a known one.
    pub id: String,
}

/// `skyhop chat`.
#[derive(Args, Debug, Clone)]
pub struct ChatArgs {
    /// The running node.
    #[command(flatten)]
    pub target: Target,
    /// Peer to talk to first (id or unique prefix).
    #[arg(long)]
    pub to: Option<String>,
}

/// `skyhop demo`.
#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Supernodes to start.
    #[arg(long, default_value_t = 3)]
    pub supernodes: usize,
    /// Ordinary nodes to start.
    #[arg(long, default_value_t = 12)]
    pub nodes: usize,
    /// Chat messages to relay.
    #[arg(long, default_value_t = 50)]
    pub messages: usize,
    /// Seed for identities and the choice of pairs.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// The process exit code for a subcommand's result, printing the error.
pub fn exit_code(result: Result<(), RuntimeError>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skyhop: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, RuntimeError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| RuntimeError::Config(format!("cannot start tokio: {e}")))
}

/// Logs to stderr, `RUST_LOG` overriding `default`.
pub fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The settings of `skyhop run --config FILE.toml`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RunFile {
    role: Option<String>,
    listen: Option<Vec<String>>,
    bootstrap: Option<Vec<String>>,
    data_dir: Option<PathBuf>,
    control: Option<String>,
    mdns: Option<String>,
    max_clients: Option<usize>,
    node: Option<NodeConfig>,
}

/// A resolved `skyhop run` configuration.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// What to start.
    pub options: NodeOptions,
    /// Where the control API listens.
    pub control: SocketAddr,
}

fn parse_multiaddr(flag: &str, text: &str) -> Result<Multiaddr, RuntimeError> {
    text.parse().map_err(|_| {
        RuntimeError::Config(format!(
            "{flag} '{text}': not a multiaddr; expected e.g. /ip4/127.0.0.1/tcp/4001"
        ))
    })
}

/// Merges flags over the config file over the defaults, checking each value.
pub fn plan_run(args: &RunArgs) -> Result<RunPlan, RuntimeError> {
    let file: RunFile = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                RuntimeError::Config(format!("--config {}: cannot read: {e}", path.display()))
            })?;
            toml::from_str(&text)
                .map_err(|e| RuntimeError::Config(format!("--config {}: {e}", path.display())))?
        }
        None => RunFile::default(),
    };
    let role_text = args.role.clone().or(file.role).unwrap_or("ordinary".into());
    let role = match role_text.as_str() {
        "supernode" | "sn" => Role::Supernode,
        "ordinary" | "on" => Role::Ordinary,
        other => {
            return Err(RuntimeError::Config(format!(
                "--role '{other}': expected supernode or ordinary"
            )))
        }
    };
    let listen_text = if args.listen.is_empty() {
        file.listen.unwrap_or_else(|| vec![DEFAULT_LISTEN.into()])
    } else {
        args.listen.clone()
    };
    let listen = listen_text
        .iter()
        .map(|a| parse_multiaddr("--listen", a))
        .collect::<Result<Vec<_>, _>>()?;
    let bootstrap_text = if args.bootstrap.is_empty() {
        file.bootstrap.unwrap_or_default()
    } else {
        args.bootstrap.clone()
    };
    let bootstrap = bootstrap_text
        .iter()
        .map(|a| parse_multiaddr("--bootstrap", a))
        .collect::<Result<Vec<_>, _>>()?;
    let mdns: MdnsMode = match args.mdns.clone().or(file.mdns) {
        Some(m) => m
            .parse()
            .map_err(|e| RuntimeError::Config(format!("--mdns {e}")))?,
        None => MdnsMode::Auto,
    };
    let control_text = args
        .control
        .clone()
        .or(file.control)
        .unwrap_or(DEFAULT_CONTROL.into());
    let control: SocketAddr = control_text.parse().map_err(|_| {
        RuntimeError::Config(format!(
            "--control '{control_text}': not an address; expected e.g. 127.0.0.1:7000 (port 0 = any)"
        ))
    })?;
    if !control.ip().is_loopback() {
        return Err(RuntimeError::Config(format!(
            "--control '{control_text}': the control API only listens on loopback; use e.g. 127.0.0.1:7000"
        )));
    }
    let mut config = file.node.unwrap_or_default();
    config.role = role;
    if let Some(n) = args.max_clients.or(file.max_clients) {
        config.max_clients = n;
    }
    config.validate().map_err(|e| {
        RuntimeError::Config(format!("{e} (check --max-clients and the [node] table)"))
    })?;
    Ok(RunPlan {
        options: NodeOptions {
            config,
            listen,
            bootstrap,
            data_dir: args.data_dir.clone().or(file.data_dir),
            identity: None,
            mdns,
            seed: None,
        },
        control,
    })
}

/// `skyhop run`: runs a node until SIGINT or SIGTERM, then leaves
/// gracefully, saves the host cache and returns.
pub fn run(args: RunArgs) -> Result<(), RuntimeError> {
    init_logging("info,libp2p_mdns=warn,yamux=error");
    let plan = plan_run(&args)?;
    runtime()?.block_on(run_plan(plan))
}

async fn run_plan(plan: RunPlan) -> Result<(), RuntimeError> {
    let data_dir = plan.options.data_dir.clone();
    let handle = node_task::start(plan.options).await?;
    let (control_addr, _server) = control::serve(handle.clone(), plan.control).await?;
    if let Some(dir) = &data_dir {
        storage::write_atomic(
            &dir.join(storage::CONTROL_FILE),
            control_addr.to_string().as_bytes(),
        )?;
    }
    let info = handle.info();
    println!("node id   {}", info.node_id);
    println!("peer id   {}", info.peer_id);
    println!("role      {:?}", info.role);
    for a in &info.listen_addrs {
        println!("listening {a}");
    }
    println!("control   {control_addr}");
    match &data_dir {
        Some(dir) => println!("data dir  {}", dir.display()),
        None => println!("data dir  (none: a fresh identity each run; give --data-dir to keep it)"),
    }
    wait_for_signal().await;
    tracing::info!("leaving the overlay");
    let result = handle.shutdown().await;
    if let Some(dir) = &data_dir {
        let _ = std::fs::remove_file(dir.join(storage::CONTROL_FILE));
    }
    result
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The control address of the node `target` names.
pub fn control_addr(target: &Target) -> Result<SocketAddr, RuntimeError> {
    match (&target.control, &target.data_dir) {
        (Some(c), _) => c.parse().map_err(|_| {
            RuntimeError::Config(format!(
                "--control '{c}': not an address; expected e.g. 127.0.0.1:7000"
            ))
        }),
        (None, Some(dir)) => storage::read_control_addr(dir),
        (None, None) => Err(RuntimeError::Config(
            "which node? give --data-dir DIR (of a running `skyhop run`) or --control 127.0.0.1:PORT"
                .into(),
        )),
    }
}

pub(super) async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
    timeout: Duration,
) -> Result<Value, RuntimeError> {
    let (status, value) = http::request(addr, method, path, body.as_ref(), timeout).await?;
    if status != 200 {
        let msg = value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        return Err(RuntimeError::Control(msg.to_string()));
    }
    Ok(value)
}

pub(super) fn short(hex: &str) -> &str {
    hex.get(..8).unwrap_or(hex)
}

/// A human line for a `/send` answer, and whether it was delivered.
pub(super) fn describe_send(v: &Value) -> (bool, String) {
    if v.get("delivered").and_then(Value::as_bool) == Some(true) {
        let hops = v.get("hops").and_then(Value::as_u64).unwrap_or(0);
        let ms = v.get("latency_ms").and_then(Value::as_f64).unwrap_or(0.0);
        (true, format!("delivered ({hops} hops, {ms:.1} ms)"))
    } else {
        let reason = v
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or("unknown reason");
        (false, format!("failed: {reason}"))
    }
}

/// `skyhop send`: exits 0 only if the message was delivered.
pub fn send(args: SendArgs) -> Result<(), RuntimeError> {
    let addr = control_addr(&args.target)?;
    runtime()?.block_on(async {
        let body = json!({ "to": args.to, "text": args.text });
        let v = call(addr, "POST", "/send", Some(body), SEND_TIMEOUT).await?;
        let (delivered, line) = describe_send(&v);
        if delivered {
            println!("{line}");
            Ok(())
        } else {
            Err(RuntimeError::Control(line))
        }
    })
}

/// `skyhop status`.
pub fn status(args: StatusArgs) -> Result<(), RuntimeError> {
    let addr = control_addr(&args.target)?;
    runtime()?.block_on(async {
        let v = call(addr, "GET", "/status", None, REQUEST_TIMEOUT).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            print!("{}", describe_status(&v));
        }
        Ok(())
    })
}

pub(super) fn describe_status(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    let n = |k: &str| v.get(k).and_then(Value::as_array).map_or(0, Vec::len);
    let mut out = String::new();
    out += &format!("node id    {}\n", s("id"));
    out += &format!("peer id    {}\n", s("peer_id"));
    out += &format!("role       {}\n", s("role"));
    if let Some(p) = v.get("primary").and_then(Value::as_str) {
        out += &format!("primary    {}\n", short(p));
    }
    out += &format!(
        "links {}  neighbors {}  clients {}  backups {}\n",
        n("links"),
        n("neighbors"),
        n("clients"),
        n("backups")
    );
    out += &format!(
        "records {}  cached locations {}  host cache {}  pending chats {}\n",
        v.get("records").and_then(Value::as_u64).unwrap_or(0),
        v.get("cached_locations")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        v.get("host_cache").and_then(Value::as_u64).unwrap_or(0),
        v.get("pending_chats").and_then(Value::as_u64).unwrap_or(0),
    );
    for a in v
        .get("listen_addrs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out += &format!("listening  {}\n", a.as_str().unwrap_or(""));
    }
    out
}

/// The short forms of the ids in the JSON array `v[key]` (none if absent).
pub(super) fn short_ids<'a>(v: &'a Value, key: &str) -> Vec<&'a str> {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(short)
        .collect()
}

pub(super) fn describe_trace(v: &Value) -> (bool, String) {
    if v.get("ok").and_then(Value::as_bool) == Some(true) {
        let path = short_ids(v, "path");
        let ms = v.get("rtt_ms").and_then(Value::as_f64).unwrap_or(0.0);
        (
            true,
            format!(
                "{} ({} hops, rtt {ms:.1} ms)",
                path.join(" > "),
                path.len().saturating_sub(1)
            ),
        )
    } else {
        let reason = v.get("reason").and_then(Value::as_str).unwrap_or("unknown");
        (false, format!("trace failed: {reason}"))
    }
}

/// `skyhop trace`.
pub fn trace(args: TraceArgs) -> Result<(), RuntimeError> {
    let addr = control_addr(&args.target)?;
    runtime()?.block_on(async {
        let v = call(
            addr,
            "POST",
            "/trace",
            Some(json!({ "to": args.id })),
            SEND_TIMEOUT,
        )
        .await?;
        let (ok, line) = describe_trace(&v);
        if ok {
            println!("{line}");
            Ok(())
        } else {
            Err(RuntimeError::Control(line))
        }
    })
}

/// `skyhop chat`: an interactive prompt against a running node.
pub fn chat(args: ChatArgs) -> Result<(), RuntimeError> {
    let addr = control_addr(&args.target)?;
    runtime()?.block_on(super::chat::chat_loop(addr, args.to))
}

/// `skyhop demo`.
pub fn demo(args: DemoArgs) -> Result<(), RuntimeError> {
    init_logging("warn,yamux=off");
    runtime()?.block_on(super::demo::run(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_flags_name_themselves_and_the_fix() {
        let args = RunArgs {
            listen: vec!["foo".into()],
            ..RunArgs::default()
        };
        let e = plan_run(&args).expect_err("bad listen").to_string();
        assert!(
            e.contains("--listen 'foo'") && e.contains("/ip4/127.0.0.1/tcp/4001"),
            "{e}"
        );
        let args = RunArgs {
            role: Some("boss".into()),
            ..RunArgs::default()
        };
        assert!(plan_run(&args)
            .expect_err("bad role")
            .to_string()
            .contains("--role 'boss'"));
        let args = RunArgs {
            control: Some("0.0.0.0:1".into()),
            ..RunArgs::default()
        };
        assert!(plan_run(&args).is_err());
        let dir = std::env::temp_dir().join(format!("skyhop-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("node.toml");
        std::fs::write(
            &file,
            "role = \"supernode\"\nmax_clients = 7\nmdns = \"off\"\n[node]\nttl = 9\n",
        )
        .expect("write config");
        let args = RunArgs {
            config: Some(file.clone()),
            max_clients: Some(5),
            ..RunArgs::default()
        };
        let plan = plan_run(&args).expect("file and flags merge");
        assert_eq!(plan.options.config.role, Role::Supernode);
        assert_eq!(
            plan.options.config.max_clients, 5,
            "the flag wins over the file"
        );
        assert_eq!(plan.options.config.ttl, 9);
        assert_eq!(plan.options.mdns, MdnsMode::Off);
        std::fs::write(&file, "colour = \"red\"\n").expect("write config");
        let e = plan_run(&args).expect_err("unknown key").to_string();
        assert!(e.contains("--config") && e.contains("colour"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
        let ok = plan_run(&RunArgs::default()).expect("defaults work");
        assert_eq!(ok.options.mdns, MdnsMode::Auto);
        assert_eq!(ok.options.listen[0].to_string(), DEFAULT_LISTEN);
    }
}
