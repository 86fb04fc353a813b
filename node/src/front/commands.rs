//! `skyhop send | status | peers | trace | ping`: requests to a running
//! node's control API through [`super::client`], the answer printed as
//! [`super::describe`] words it, or as JSON with `--json`.

use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::client::{call, endpoint, Target, REQUEST_TIMEOUT, SEND_TIMEOUT};
use super::describe::{
    describe_peers, describe_ping, describe_send, describe_status, describe_trace,
};
use super::process::tokio_runtime;
use super::FrontError;
use crate::runtime::api::{
    PeersRequest, PingRequest, Request, SendRequest, StatusRequest, TraceRequest,
};
use crate::runtime::{SendOutcome, TraceOutcome};

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
    /// Print the JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// `skyhop peers`.
#[derive(Args, Debug, Clone)]
pub struct PeersArgs {
    /// The running node.
    #[command(flatten)]
    pub target: Target,
    /// Print the JSON answer.
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
    /// Print the JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// `skyhop ping`.
#[derive(Args, Debug, Clone)]
pub struct PingArgs {
    /// The running node.
    #[command(flatten)]
    pub target: Target,
    /// The node to probe: an id or a unique prefix of a known one.
    pub id: String,
    /// Probes to send (1 to 100).
    #[arg(short = 'c', long, default_value_t = 5)]
    pub count: u32,
    /// Milliseconds between probes (100 to 10000).
    #[arg(short = 'i', long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Print the JSON answer.
    #[arg(long)]
    pub json: bool,
}

/// Prints `value` as indented JSON.
fn print_json(value: &impl Serialize) {
    // The API replies are plain data.
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("control API replies serialize")
    );
}

/// `skyhop send`: exits 0 only if the message was delivered.
pub fn send(args: SendArgs) -> Result<(), FrontError> {
    let ep = endpoint(&args.target)?;
    let request = SendRequest {
        to: args.to,
        text: args.text,
    };
    tokio_runtime()?.block_on(async {
        let reply = call(&ep, &request, SEND_TIMEOUT).await?;
        match reply.outcome {
            SendOutcome::Delivered { .. } => {
                println!("{}", describe_send(&reply.outcome));
                Ok(())
            }
            SendOutcome::Failed(reason) => Err(FrontError::NotDelivered { reason }),
        }
    })
}

/// Asks `target` for `request` and prints the reply, as JSON or as
/// `describe` words it.
fn show<R: Request>(
    target: &Target,
    request: &R,
    json: bool,
    describe: impl Fn(&R::Reply) -> String,
) -> Result<(), FrontError> {
    let ep = endpoint(target)?;
    tokio_runtime()?.block_on(async {
        let reply = call(&ep, request, REQUEST_TIMEOUT).await?;
        if json {
            print_json(&reply);
        } else {
            print!("{}", describe(&reply));
        }
        Ok(())
    })
}

/// `skyhop status`.
pub fn status(args: StatusArgs) -> Result<(), FrontError> {
    show(&args.target, &StatusRequest, args.json, describe_status)
}

/// `skyhop peers`: the ids the node knows.
pub fn peers(args: PeersArgs) -> Result<(), FrontError> {
    show(&args.target, &PeersRequest, args.json, describe_peers)
}

/// `skyhop trace`: exits 0 only if a path came back.
pub fn trace(args: TraceArgs) -> Result<(), FrontError> {
    let ep = endpoint(&args.target)?;
    let request = TraceRequest { to: args.id };
    tokio_runtime()?.block_on(async {
        let reply = call(&ep, &request, SEND_TIMEOUT).await?;
        if args.json {
            print_json(&reply);
        }
        match reply.outcome {
            TraceOutcome::Completed { .. } => {
                if !args.json {
                    println!("{}", describe_trace(&reply.outcome));
                }
                Ok(())
            }
            TraceOutcome::Failed(reason) => Err(FrontError::TraceFailed { reason }),
        }
    })
}

/// `skyhop ping`: round trips to an overlay id; exits 0 only if some probe
/// came back.
pub fn ping(args: PingArgs) -> Result<(), FrontError> {
    let ep = endpoint(&args.target)?;
    let request = PingRequest {
        to: args.id,
        count: args.count,
        interval_ms: args.interval_ms,
    };
    // Every probe may take its interval or its own timeout, whichever is longer.
    let per_probe = Duration::from_millis(args.interval_ms).max(Duration::from_secs(5));
    let timeout = per_probe * args.count.max(1) + REQUEST_TIMEOUT;
    tokio_runtime()?.block_on(async {
        let reply = call(&ep, &request, timeout).await?;
        if args.json {
            print_json(&reply);
        } else {
            print!("{}", describe_ping(&reply));
        }
        if reply.received == 0 {
            return Err(FrontError::PingLost {
                sent: reply.sent,
                reason: reply.last_failure.unwrap_or_else(|| "no answer".into()),
            });
        }
        Ok(())
    })
}
