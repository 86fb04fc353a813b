//! `skyhop run`: what its flags and `--config` file resolve to
//! ([`plan_run`]), and running a node with its control API until SIGINT or
//! SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use libp2p::Multiaddr;
use skyhop_core::NodeConfig;
use skyhop_protocol::Role;

use super::process::{init_logging, tokio_runtime};
use super::FrontError;
use crate::runtime::control::{self, ControlListen};
use crate::runtime::db::{HistoryLimits, LimitsError};
use crate::runtime::{start, storage, MdnsMode, NodeOptions};

/// Default listen addresses: loopback, ports chosen by the OS, on TCP
/// (Noise + Yamux) and on QUIC.
pub const DEFAULT_LISTEN: [&str; 2] = ["/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"];

/// `skyhop run`: run a node.
#[derive(Args, Debug, Clone, Default)]
pub struct RunArgs {
    /// auto, supernode or ordinary [default: auto]: an auto node starts
    /// ordinary and becomes a supernode when it is reachable (a supernode
    /// dialed it back) and the supernodes it meets are short of room;
    /// supernode or ordinary force the role.
    #[arg(long)]
    pub role: Option<String>,
    /// Address to listen on (repeatable), TCP or QUIC (e.g.
    /// /ip4/0.0.0.0/udp/4001/quic-v1) [default: /ip4/127.0.0.1/tcp/0 and
    /// /ip4/127.0.0.1/udp/0/quic-v1].
    #[arg(long)]
    pub listen: Vec<String>,
    /// Address of a node to join through, e.g.
    /// /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo... (repeatable).
    #[arg(long)]
    pub bootstrap: Vec<String>,
    /// Directory (made mode 0700) for the key file, host cache and the
    /// control API's Unix socket `control.sock`.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Also serve the control API and the web page on this loopback TCP
    /// address (port 0 = any); clients must send the cookie written to
    /// `<data-dir>/control.cookie`. Needs --data-dir.
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
    /// Chats kept in `<data-dir>/history.db` at most, oldest deleted first
    /// [default: 100000].
    #[arg(long)]
    pub history_rows: Option<u64>,
    /// Days a chat is kept in the history at most [default: 365].
    #[arg(long)]
    pub history_days: Option<u64>,
    /// The user name to claim (2 to 32 of a-z, 0-9, '-', '_', starting
    /// with a letter); others can then write to it instead of the id.
    #[arg(long)]
    pub name: Option<String>,
    /// Days the name's claim lives at its home supernodes unless this node
    /// refreshes it (it does while it runs) [default: 7; fractions allowed,
    /// at least 60 s].
    #[arg(long)]
    pub name_days: Option<f64>,
    /// Ask this node's supernode to list it among the nodes attached
    /// there, by its name once the supernode has checked it (`/who`,
    /// `GET /who`, the web page). Off by default.
    #[arg(long)]
    pub listed: bool,
}

/// The settings of `skyhop run --config FILE.toml`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RunFile {
    /// As `--role`.
    role: Option<String>,
    /// As `--listen`.
    listen: Option<Vec<String>>,
    /// As `--bootstrap`.
    bootstrap: Option<Vec<String>>,
    /// As `--data-dir`.
    data_dir: Option<PathBuf>,
    /// As `--control`.
    control: Option<String>,
    /// As `--mdns`.
    mdns: Option<String>,
    /// As `--max-clients`.
    max_clients: Option<usize>,
    /// As `--history-rows`.
    history_rows: Option<u64>,
    /// As `--history-days`.
    history_days: Option<u64>,
    /// As `--name`.
    name: Option<String>,
    /// As `--name-days`.
    name_days: Option<f64>,
    /// As `--listed`.
    listed: Option<bool>,
    /// The `[node]` table: core tunables (a [`NodeConfig`]), kept as a
    /// table to see which keys it sets.
    node: Option<toml::Table>,
}

/// A resolved `skyhop run` configuration.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// What to start.
    pub options: NodeOptions,
    /// Where the control API also listens on loopback TCP, if asked.
    pub control: Option<SocketAddr>,
}

fn parse_multiaddr(flag: &'static str, text: &str) -> Result<Multiaddr, FrontError> {
    text.parse().map_err(|_| FrontError::BadFlag {
        flag,
        value: text.into(),
        problem: "not a multiaddr",
        fix: "expected e.g. /ip4/127.0.0.1/tcp/4001",
    })
}

/// Merges flags over the config file over the defaults, checking each value.
pub fn plan_run(args: &RunArgs) -> Result<RunPlan, FrontError> {
    let file: RunFile = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|source| FrontError::ConfigRead {
                path: path.clone(),
                source,
            })?;
            toml::from_str(&text).map_err(|source| FrontError::ConfigParse {
                path: path.clone(),
                source,
            })?
        }
        None => RunFile::default(),
    };
    let role_text = args.role.clone().or(file.role).unwrap_or("auto".into());
    let (role, auto) = match role_text.as_str() {
        "auto" => (Role::Ordinary, true),
        "supernode" | "sn" => (Role::Supernode, false),
        "ordinary" | "on" => (Role::Ordinary, false),
        other => {
            return Err(FrontError::BadFlag {
                flag: "--role",
                value: other.into(),
                problem: "not a role",
                fix: "expected auto, supernode or ordinary",
            })
        }
    };
    let listen_text = if args.listen.is_empty() {
        file.listen
            .unwrap_or_else(|| DEFAULT_LISTEN.iter().map(|a| a.to_string()).collect())
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
        Some(m) => m.parse().map_err(|_| FrontError::BadFlag {
            flag: "--mdns",
            value: m,
            problem: "not an mDNS mode",
            fix: "expected on, off or auto",
        })?,
        None => MdnsMode::Auto,
    };
    let data_dir = args.data_dir.clone().or(file.data_dir);
    let control = match args.control.clone().or(file.control) {
        None => None,
        Some(text) => {
            let Ok(addr) = text.parse::<SocketAddr>() else {
                return Err(FrontError::BadFlag {
                    flag: "--control",
                    value: text,
                    problem: "not an address",
                    fix: "expected e.g. 127.0.0.1:7000 (port 0 = any)",
                });
            };
            if !addr.ip().is_loopback() {
                return Err(FrontError::BadFlag {
                    flag: "--control",
                    value: text,
                    problem: "the control API only listens on loopback",
                    fix: "use e.g. 127.0.0.1:7000",
                });
            }
            if data_dir.is_none() {
                return Err(FrontError::ControlWithoutDataDir);
            }
            Some(addr)
        }
    };
    let node_table = file.node.unwrap_or_default();
    // A real node detects a dead neighbor by a missing ack unless the file
    // says otherwise (the core's default is off, for the simulator's sake).
    let suspect_set = node_table.contains_key("suspect_on_missing_ack");
    let mut config: NodeConfig =
        node_table
            .try_into()
            .map_err(|source| FrontError::ConfigParse {
                path: args.config.clone().unwrap_or_default(),
                source,
            })?;
    if !suspect_set {
        config.suspect_on_missing_ack = true;
    }
    config.role = role;
    config.auto_role.enabled = auto;
    if let Some(n) = args.max_clients.or(file.max_clients) {
        config.max_clients = n;
    }
    if let Some(name) = args.name.clone().or(file.name) {
        if let Err(e) = skyhop_protocol::check_name(&name) {
            let problem = match e {
                skyhop_protocol::NameError::Length { .. } => "not 2 to 32 characters long",
                skyhop_protocol::NameError::Charset { .. } => {
                    "has a character outside a-z, 0-9, '-' and '_'"
                }
                skyhop_protocol::NameError::FirstChar { .. } => "does not start with a letter",
            };
            return Err(FrontError::BadFlag {
                flag: "--name",
                value: name,
                problem,
                fix:
                    "a name is 2 to 32 of a-z, 0-9, '-' and '_', starting with a letter, e.g. alice",
            });
        }
        config.name = Some(name);
    }
    if let Some(days) = args.name_days.or(file.name_days) {
        let max = f64::from(skyhop_protocol::MAX_NAME_LIFETIME_S) / 86_400.0;
        let secs = days * 86_400.0;
        if !(secs >= 60.0 && days <= max) {
            return Err(FrontError::BadFlag {
                flag: "--name-days",
                value: days.to_string(),
                problem: "out of range",
                fix: "expected 0.0007 (60 s) to 90 days",
            });
        }
        config.name_lifetime_s = secs as u32;
    }
    config.listed = args.listed || file.listed.unwrap_or(false);
    config.validate().map_err(FrontError::NodeConfig)?;
    let defaults = HistoryLimits::default();
    let history = HistoryLimits {
        max_rows: args
            .history_rows
            .or(file.history_rows)
            .unwrap_or(defaults.max_rows),
        max_age_days: args
            .history_days
            .or(file.history_days)
            .unwrap_or(defaults.max_age_days),
    };
    history.validate().map_err(|e| match e {
        LimitsError::Rows(n) => FrontError::BadFlag {
            flag: "--history-rows",
            value: n.to_string(),
            problem: "out of range",
            fix: "expected 1 to 10000000 chats",
        },
        LimitsError::Days(n) => FrontError::BadFlag {
            flag: "--history-days",
            value: n.to_string(),
            problem: "out of range",
            fix: "expected 1 to 36500 days",
        },
    })?;
    Ok(RunPlan {
        options: NodeOptions {
            config,
            listen,
            bootstrap,
            data_dir,
            identity: None,
            mdns,
            seed: None,
            history,
        },
        control,
    })
}

/// `skyhop run`: runs a node until SIGINT or SIGTERM, then leaves
/// gracefully, saves the host cache and returns.
pub fn run(args: RunArgs) -> Result<(), FrontError> {
    init_logging("info,libp2p_mdns=warn,yamux=error");
    let plan = plan_run(&args)?;
    tokio_runtime()?.block_on(run_plan(plan))
}

async fn run_plan(plan: RunPlan) -> Result<(), FrontError> {
    let data_dir = plan.options.data_dir.clone();
    let auto = plan.options.config.auto_role.enabled;
    if let Some(dir) = &data_dir {
        storage::make_private_dir(dir)?;
    }
    let name = plan.options.config.name.clone();
    let listed = plan.options.config.listed;
    let handle = start(plan.options).await?;
    let mut control_lines = Vec::new();
    if let Some(dir) = &data_dir {
        if let Some(addr) = plan.control {
            let cookie = storage::write_cookie(dir)?;
            let (bound, _server) =
                control::serve(handle.clone(), ControlListen::Tcp { addr, cookie }).await?;
            if let control::ControlBound::Tcp(addr) = &bound {
                storage::write_atomic(
                    &dir.join(storage::CONTROL_FILE),
                    addr.to_string().as_bytes(),
                )?;
            }
            control_lines.push(format!(
                "control   {bound} (cookie in {})",
                dir.join(storage::COOKIE_FILE).display()
            ));
            control_lines.push(format!(
                "web page  {bound}{}?token=$(cat {})",
                crate::runtime::web::LOGIN_PATH,
                dir.join(storage::COOKIE_FILE).display()
            ));
        }
        // The socket last: clients wait for it, so once it exists the TCP
        // address and the cookie are already written.
        let socket = dir.join(storage::CONTROL_SOCKET);
        let (bound, _server) = control::serve(handle.clone(), ControlListen::Unix(socket)).await?;
        control_lines.insert(0, format!("control   {bound}"));
    } else {
        control_lines.push("control   off (give --data-dir for the control API)".into());
    }
    let info = handle.info();
    if let Some(name) = &name {
        println!("name      {name} (claiming it at its home supernodes)");
    }
    if listed {
        println!("listed    yes: others attached to the same supernode see this node in /who");
    }
    println!("node id   {}", info.node_id);
    println!("peer id   {}", info.peer_id);
    if auto {
        println!(
            "role      {:?} (auto: becomes a supernode when reachable and supernodes are short of room)",
            info.role
        );
    } else {
        println!("role      {:?}", info.role);
    }
    for a in &info.listen_addrs {
        println!("listening {a}");
    }
    for line in &control_lines {
        println!("{line}");
    }
    match &data_dir {
        Some(dir) => println!("data dir  {}", dir.display()),
        None => println!("data dir  (none: a fresh identity each run; give --data-dir to keep it)"),
    }
    let taken = tokio::select! {
        () = wait_for_signal() => None,
        taken = name_taken(&handle) => Some(taken),
    };
    tracing::info!("leaving the overlay");
    let result = handle.shutdown().await;
    if let Some(dir) = &data_dir {
        for file in [
            storage::CONTROL_FILE,
            storage::CONTROL_SOCKET,
            storage::COOKIE_FILE,
        ] {
            let _ = std::fs::remove_file(dir.join(file));
        }
    }
    if let Some((name, holder)) = taken {
        return Err(FrontError::NameTaken { name, holder });
    }
    Ok(result?)
}

/// Waits until the home supernodes say this node's name is held by
/// another key: the name and that key's node id.
async fn name_taken(handle: &crate::runtime::NodeHandle) -> (String, skyhop_protocol::NodeId) {
    let mut since = 0;
    loop {
        let events = handle
            .events()
            .wait_since(since, std::time::Duration::from_secs(60))
            .await;
        for (cursor, e) in events {
            since = since.max(cursor);
            if let skyhop_core::Event::NameTaken { name, holder } = e {
                return (name, holder);
            }
        }
    }
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
            data_dir: Some("/tmp/x".into()),
            ..RunArgs::default()
        };
        assert!(plan_run(&args).is_err());
        let args = RunArgs {
            control: Some("127.0.0.1:0".into()),
            ..RunArgs::default()
        };
        assert!(
            plan_run(&args)
                .expect_err("TCP without a data dir")
                .to_string()
                .contains("--data-dir"),
            "the cookie needs a data dir"
        );
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
        assert!(
            !plan.options.config.auto_role.enabled,
            "the file forced a role"
        );
        assert!(
            plan.options.config.suspect_on_missing_ack,
            "on unless the [node] table says otherwise"
        );
        assert_eq!(plan.options.mdns, MdnsMode::Off);
        std::fs::write(&file, "colour = \"red\"\n").expect("write config");
        let e = plan_run(&args).expect_err("unknown key").to_string();
        assert!(e.contains("--config") && e.contains("colour"), "{e}");
        std::fs::write(&file, "history_rows = 0\n").expect("write config");
        let e = plan_run(&RunArgs {
            config: Some(file.clone()),
            ..RunArgs::default()
        })
        .expect_err("no rows kept")
        .to_string();
        assert!(
            e.contains("--history-rows '0'") && e.contains("1 to"),
            "{e}"
        );
        std::fs::write(&file, "history_rows = 50\nhistory_days = 3\n").expect("write config");
        let plan = plan_run(&RunArgs {
            config: Some(file.clone()),
            history_days: Some(4),
            ..RunArgs::default()
        })
        .expect("history bounds from file and flag");
        assert_eq!(
            plan.options.history,
            HistoryLimits {
                max_rows: 50,
                max_age_days: 4
            }
        );
        let _ = std::fs::remove_dir_all(&dir);
        let ok = plan_run(&RunArgs::default()).expect("defaults work");
        assert_eq!(ok.options.mdns, MdnsMode::Auto);
        assert!(
            ok.options.config.auto_role.enabled && ok.options.config.role == Role::Ordinary,
            "auto role is the default: start ordinary, promote when needed"
        );
        assert!(ok.options.config.suspect_on_missing_ack);
        let forced = plan_run(&RunArgs {
            role: Some("ordinary".into()),
            ..RunArgs::default()
        })
        .expect("a forced role");
        assert!(!forced.options.config.auto_role.enabled);
        let listen: Vec<String> = ok.options.listen.iter().map(|a| a.to_string()).collect();
        assert_eq!(listen, DEFAULT_LISTEN);
    }
}
