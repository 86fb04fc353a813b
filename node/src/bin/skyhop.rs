//! The `skyhop` command line: parses arguments and calls the library.

use clap::{Parser, Subcommand};
use skyhop_node::front::{chat, commands, demo, process, run};

/// skyhop: a peer-to-peer overlay node (supernodes, ordinary nodes, hop-by-hop
/// routing, signed chat).
#[derive(Parser, Debug)]
#[command(name = "skyhop", version, about)]
struct Args {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node on libp2p (TCP + Noise + Yamux) with a local control API.
    Run(run::RunArgs),
    /// Send one chat message through a running node; exit 0 only if delivered.
    Send(commands::SendArgs),
    /// Show a running node's status.
    Status(commands::StatusArgs),
    /// List the node ids a running node knows.
    Peers(commands::PeersArgs),
    /// Trace the hop path from a running node to another node.
    Trace(commands::TraceArgs),
    /// Probe the round trip from a running node to an overlay id: loss and percentiles.
    Ping(commands::PingArgs),
    /// Show a running node's chat history, of one conversation or all.
    History(commands::HistoryArgs),
    /// List a running node's contacts and whether they are online.
    Contacts(commands::ContactsArgs),
    /// Trust the new key a pinned contact name now resolves to.
    Repin(commands::RepinArgs),
    /// Chat interactively through a running node.
    Chat(chat::ChatArgs),
    /// Start a small overlay on 127.0.0.1, relay chat messages, report.
    Demo(demo::DemoArgs),
    /// Run a deterministic simulation of many nodes from a scenario file.
    Sim(skyhop_node::sim::SimArgs),
    /// Benchmarks on loopback: relay cost per hop, join times, many nodes.
    Bench(skyhop_node::bench::BenchArgs),
    /// A relay process of `skyhop bench relay` (internal).
    #[command(hide = true)]
    BenchParty(skyhop_node::bench::party::PartyArgs),
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Run(a) => run::run(a),
        Command::Send(a) => commands::send(a),
        Command::Status(a) => commands::status(a),
        Command::Peers(a) => commands::peers(a),
        Command::Trace(a) => commands::trace(a),
        Command::Ping(a) => commands::ping(a),
        Command::History(a) => commands::history(a),
        Command::Contacts(a) => commands::contacts(a),
        Command::Repin(a) => commands::repin(a),
        Command::Chat(a) => chat::chat(a),
        Command::Demo(a) => demo::demo(a),
        Command::Sim(a) => return sim(&a),
        Command::Bench(a) => return skyhop_node::bench::exit_code(skyhop_node::bench::run(a)),
        Command::BenchParty(a) => {
            return skyhop_node::bench::exit_code(skyhop_node::bench::party(a))
        }
    };
    process::exit_code(result)
}

/// `skyhop sim`: exits non-zero when the run cannot start or an invariant fails.
fn sim(args: &skyhop_node::sim::SimArgs) -> std::process::ExitCode {
    match skyhop_node::sim::run(args) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("skyhop sim: {e}");
            std::process::ExitCode::from(2)
        }
    }
}
