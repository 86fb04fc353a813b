//! One long-lived `/skyhop/1` stream per neighbor: a reader task that
//! decodes frames and a writer task that coalesces queued frames into one
//! write per wake-up. The node task spawns both for each link and hears from
//! them through `LinkEvent`s.
//!
//! # Implementation notes
//! - The writer gathers everything queued (up to [`MAX_BATCH_BYTES`]) into one
//!   buffer with `codec::encode_into`, then does one `write_all` and one
//!   `flush`: a write per frame costs a syscall and a Noise/Yamux flush each.
//! - The reader hands decoded messages to the node task through a bounded
//!   channel, so a slow node task slows the reader (and the peer) down
//!   instead of growing a queue.
//! - A decode error cannot be resynchronised: the reader reports it and the
//!   node task drops the peer.

use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::Stream;
use skyhop_protocol::{codec, FrameDecoder, Message, NodeId};
use tokio::sync::mpsc;

/// Frames queued for one neighbor at most; beyond, frames are dropped and
/// counted.
pub const LINK_QUEUE: usize = 1024;
/// Bytes gathered into one write at most.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Bytes read from the stream per read call.
const READ_CHUNK: usize = 16 * 1024;

/// What a link task tells the node task.
// Frames dominate this channel; boxing them would add an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// A decoded message from `node`.
    Frame {
        /// The neighbor.
        node: NodeId,
        /// Its link's generation.
        generation: u64,
        /// The message.
        msg: Message,
    },
    /// The reader stopped: end of stream (`error: None`) or a read or decode
    /// error.
    ReaderDone {
        /// The neighbor.
        node: NodeId,
        /// Its link's generation.
        generation: u64,
        /// The read or decode error, if any.
        error: Option<String>,
        /// The peer sent bytes that are not valid frames.
        bad_input: bool,
    },
    /// The writer stopped: its queue was closed and flushed, or a write failed.
    WriterDone {
        /// The neighbor.
        node: NodeId,
        /// Its link's generation.
        generation: u64,
        /// The write error, if any.
        error: Option<String>,
    },
}

/// Runs the reader half until the stream ends or fails.
pub(crate) async fn read_loop(
    mut stream: ReadHalf<Stream>,
    node: NodeId,
    generation: u64,
    events: mpsc::Sender<LinkEvent>,
) {
    let mut decoder = FrameDecoder::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    let (error, bad_input) = loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) => break (None, false),
            Ok(n) => n,
            Err(e) => break (Some(format!("read failed: {e}")), false),
        };
        decoder.push(&chunk[..n]);
        let mut failed = None;
        loop {
            match decoder.next_message() {
                Ok(Some(msg)) => {
                    let ev = LinkEvent::Frame {
                        node,
                        generation,
                        msg,
                    };
                    if events.send(ev).await.is_err() {
                        return; // The node task is gone.
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            tracing::warn!(peer = %node.short(), "bad frame on /skyhop/1, dropping the peer: {e}");
            break (Some(format!("bad frame: {e}")), true);
        }
    };
    let _ = events
        .send(LinkEvent::ReaderDone {
            node,
            generation,
            error,
            bad_input,
        })
        .await;
}

/// Runs the writer half until its queue closes (then flushes and closes the
/// stream) or a write fails.
pub(crate) async fn write_loop(
    mut stream: WriteHalf<Stream>,
    mut queue: mpsc::Receiver<Message>,
    node: NodeId,
    generation: u64,
    events: mpsc::Sender<LinkEvent>,
) {
    let mut buf = Vec::with_capacity(16 * 1024);
    let error = loop {
        let Some(first) = queue.recv().await else {
            let _ = stream.close().await;
            break None;
        };
        buf.clear();
        encode(&first, &mut buf, node);
        while buf.len() < MAX_BATCH_BYTES {
            match queue.try_recv() {
                Ok(msg) => encode(&msg, &mut buf, node),
                Err(_) => break,
            }
        }
        if buf.is_empty() {
            continue;
        }
        if let Err(e) = stream.write_all(&buf).await {
            break Some(format!("write failed: {e}"));
        }
        if let Err(e) = stream.flush().await {
            break Some(format!("flush failed: {e}"));
        }
    };
    let _ = events
        .send(LinkEvent::WriterDone {
            node,
            generation,
            error,
        })
        .await;
}

fn encode(msg: &Message, buf: &mut Vec<u8>, node: NodeId) {
    if let Err(e) = codec::encode_into(msg, buf) {
        // The core made a message the codec refuses: a core bug, not the peer's.
        tracing::error!(peer = %node.short(), kind = msg.kind(), "cannot encode frame, skipped: {e}");
    }
}
