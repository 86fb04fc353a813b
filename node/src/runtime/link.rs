//! One long-lived `/skyhop/1` stream per neighbor: a reader task that
//! decodes frames and a writer task that coalesces queued frames into one
//! write per wake-up. The node task spawns both for each link and hears from
//! them through `LinkEvent`s.
//!
//! # Implementation notes
//! - Frames are encoded when queued ([`OutQueue::push`]), so that the queue
//!   is bounded in bytes ([`LINK_QUEUE_BYTES`]) as well as in frames. The
//!   writer gathers everything queued (up to [`MAX_BATCH_BYTES`]) into one
//!   buffer, then does one `write_all` and one `flush`: a write per frame
//!   costs a syscall and a Noise/Yamux flush each.
//! - A write that does not complete within [`WRITE_TIMEOUT`] ends the
//!   writer with an error, and the node task drops the peer: a peer that
//!   stops reading cannot keep its slot, nor the bytes queued for it.
//! - Each link has its own bounded channel to the node task, which serves
//!   the links in turn; the reader takes [`LINK_INBOUND_BYTES`] worth of
//!   permits per link for frames the node task has not handled yet, so a
//!   fast peer fills only its own queue and slows only its own reader (and
//!   itself) down, never the other links.
//! - A decode error cannot be resynchronised: the reader reports it and the
//!   node task drops the peer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::Stream;
use skyhop_protocol::{codec, DecodeError, FrameDecoder, Message, NodeId};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Frames queued for one neighbor at most; beyond, frames are dropped and
/// counted.
pub const LINK_QUEUE: usize = 1024;
/// Bytes queued for one neighbor at most (16 full frames); beyond, frames
/// are dropped and counted.
pub const LINK_QUEUE_BYTES: usize = 1 << 20;
/// Bytes of frames from one neighbor decoded and not yet handled by the
/// node task, at most (four full frames).
pub const LINK_INBOUND_BYTES: usize = 256 * 1024;
/// Events one link may have queued to the node task.
pub const LINK_EVENTS: usize = 64;
/// How long one write may take before the peer counts as not reading.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
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
        /// Its share of the link's inbound bytes, given back when dropped.
        permit: OwnedSemaphorePermit,
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
        /// Why the peer's bytes are not valid frames, when they are not
        /// (a peer of another protocol version among them).
        bad_input: Option<DecodeError>,
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

/// The queue of frames for one neighbor's writer, bounded in frames and
/// in bytes.
#[derive(Debug)]
pub(crate) struct OutQueue {
    /// Encoded frames for the writer.
    frames: mpsc::Sender<Vec<u8>>,
    /// Bytes in `frames`, taken off by the writer as it dequeues.
    queued: Arc<AtomicUsize>,
}

impl OutQueue {
    /// A queue and the receiving end for [`write_loop`].
    pub fn new() -> (OutQueue, mpsc::Receiver<Vec<u8>>, Arc<AtomicUsize>) {
        let (frames, rx) = mpsc::channel(LINK_QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        let q = OutQueue {
            frames,
            queued: queued.clone(),
        };
        (q, rx, queued)
    }

    /// Encodes `msg` and queues it; false if it was dropped (the queue is
    /// full in frames or bytes, or the writer is gone).
    pub fn push(&self, msg: &Message, node: NodeId) -> bool {
        let mut frame = Vec::new();
        if let Err(e) = codec::encode_into(msg, &mut frame) {
            // The core made a message the codec refuses: a core bug, not the peer's.
            tracing::error!(peer = %node.short(), kind = msg.kind(), "cannot encode frame, skipped: {e}");
            return false;
        }
        let len = frame.len();
        if self.queued.load(Ordering::Relaxed) + len > LINK_QUEUE_BYTES {
            return false;
        }
        self.queued.fetch_add(len, Ordering::Relaxed);
        if self.frames.try_send(frame).is_err() {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        true
    }
}

/// Runs the reader half until the stream ends or fails.
pub(crate) async fn read_loop(
    mut stream: ReadHalf<Stream>,
    node: NodeId,
    generation: u64,
    events: mpsc::Sender<LinkEvent>,
) {
    let inbound = Arc::new(Semaphore::new(LINK_INBOUND_BYTES));
    let mut decoder = FrameDecoder::new();
    let mut chunk = vec![0u8; READ_CHUNK];
    let (error, bad_input) = loop {
        let n = match stream.read(&mut chunk).await {
            Ok(0) => break (None, None),
            Ok(n) => n,
            Err(e) => break (Some(format!("read failed: {e}")), None),
        };
        decoder.push(&chunk[..n]);
        let mut failed = None;
        loop {
            let before = decoder.buffered();
            match decoder.next_message() {
                Ok(Some(msg)) => {
                    let size = (before - decoder.buffered()).clamp(1, LINK_INBOUND_BYTES);
                    let permits = u32::try_from(size).expect("at most LINK_INBOUND_BYTES");
                    let Ok(permit) = inbound.clone().acquire_many_owned(permits).await else {
                        return; // Never closed: the reader owns the semaphore.
                    };
                    let ev = LinkEvent::Frame {
                        node,
                        generation,
                        msg,
                        permit,
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
            break (Some(format!("bad frame: {e}")), Some(e));
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
/// stream), a write fails, or a write takes longer than [`WRITE_TIMEOUT`].
pub(crate) async fn write_loop(
    mut stream: WriteHalf<Stream>,
    mut queue: mpsc::Receiver<Vec<u8>>,
    queued: Arc<AtomicUsize>,
    node: NodeId,
    generation: u64,
    events: mpsc::Sender<LinkEvent>,
) {
    let mut buf = Vec::with_capacity(16 * 1024);
    let error = loop {
        let Some(first) = queue.recv().await else {
            let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.close()).await;
            break None;
        };
        buf.clear();
        buf.extend_from_slice(&first);
        while buf.len() < MAX_BATCH_BYTES {
            match queue.try_recv() {
                Ok(frame) => buf.extend_from_slice(&frame),
                Err(_) => break,
            }
        }
        queued.fetch_sub(buf.len(), Ordering::Relaxed);
        let write = async {
            stream.write_all(&buf).await?;
            stream.flush().await
        };
        match tokio::time::timeout(WRITE_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => break Some(format!("write failed: {e}")),
            Err(_) => {
                let secs = WRITE_TIMEOUT.as_secs();
                tracing::warn!(peer = %node.short(), "peer read nothing for {secs} s, dropping it");
                break Some(format!("peer read nothing for {secs} s"));
            }
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
