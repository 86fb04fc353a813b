//! `skyhop send | status | trace`: one request to a running node's control
//! API through [`super::client`], its answer printed as
//! [`super::describe`] words it.

use clap::Args;

use super::client::{call, control_addr, Target, REQUEST_TIMEOUT, SEND_TIMEOUT};
use super::describe::{describe_send, describe_status, describe_trace};
use super::process::tokio_runtime;
use super::FrontError;
use crate::runtime::api::{SendRequest, StatusRequest, TraceRequest};
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

/// `skyhop send`: exits 0 only if the message was delivered.
pub fn send(args: SendArgs) -> Result<(), FrontError> {
    let addr = control_addr(&args.target)?;
    let request = SendRequest {
        to: args.to,
        text: args.text,
    };
    tokio_runtime()?.block_on(async {
        let reply = call(addr, &request, SEND_TIMEOUT).await?;
        match reply.outcome {
            SendOutcome::Delivered { .. } => {
                println!("{}", describe_send(&reply.outcome));
                Ok(())
            }
            SendOutcome::Failed(reason) => Err(FrontError::NotDelivered { reason }),
        }
    })
}

/// `skyhop status`.
pub fn status(args: StatusArgs) -> Result<(), FrontError> {
    let addr = control_addr(&args.target)?;
    tokio_runtime()?.block_on(async {
        let status = call(addr, &StatusRequest, REQUEST_TIMEOUT).await?;
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&status).unwrap_or_default()
            );
        } else {
            print!("{}", describe_status(&status));
        }
        Ok(())
    })
}

/// `skyhop trace`.
pub fn trace(args: TraceArgs) -> Result<(), FrontError> {
    let addr = control_addr(&args.target)?;
    let request = TraceRequest { to: args.id };
    tokio_runtime()?.block_on(async {
        let reply = call(addr, &request, SEND_TIMEOUT).await?;
        match reply.outcome {
            TraceOutcome::Completed { .. } => {
                println!("{}", describe_trace(&reply.outcome));
                Ok(())
            }
            TraceOutcome::Failed(reason) => Err(FrontError::TraceFailed { reason }),
        }
    })
}
