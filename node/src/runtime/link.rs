//! One long-lived `/skyhop/1` stream per neighbor: a reader task that
//! decodes frames and a writer task that coalesces queued frames into one
//! write per wake-up. The node task spawns both for each link and hears from
//! them through `LinkEvent`s.
//!
//! # Implementation notes
//! - The reader takes every whole frame of a read and hands them to the
//!   node task as one batch ([`LinkEvent::Frames`]): one permit, one
//!   channel send and one wake-up per read, not per frame. Routed frames
//!   are not decoded: the reader checks their envelope
//!   ([`envelope::read_header`]) and copies their bytes into the batch, and
//!   the node task offers them to the core undecoded first. Other messages
//!   are decoded here and boxed (a `Message` is about 400 bytes: moving it
//!   by value through the channel and the node task cost a memmove per
//!   step).
//! - Frames are encoded straight into the link's out buffer when queued
//!   ([`OutQueue::push`]), or, when a relay forwards a routed frame it did
//!   not decode, its received bytes are appended with ttl, hops and the
//!   location hop rewritten ([`OutQueue::push_rewritten`]). The buffer is
//!   bounded in bytes ([`LINK_QUEUE_BYTES`]). The writer swaps the whole
//!   buffer out and does one `write_all` and one `flush` per wake-up: a
//!   write per frame costs a syscall and a Noise/Yamux flush each, and
//!   only whole frames are ever in the buffer. The writer is woken when a
//!   frame lands in an empty buffer, not per frame, and no frame is
//!   allocated or sent through a channel on its own.
//! - A write that does not complete within [`WRITE_TIMEOUT`] ends the
//!   writer with an error, and the node task drops the peer: a peer that
//!   stops reading cannot keep its slot, nor the bytes queued for it.
//! - Each link has its own bounded channel to the node task, which serves
//!   the links in turn; the reader takes [`LINK_INBOUND_BYTES`] worth of
//!   permits per link for frames the node task has not handled yet, so a
//!   fast peer fills only its own queue and slows only its own reader (and
//!   itself) down, never the other links.
//! - A decode error cannot be resynchronised: the reader reports it and the
//!   node task drops the peer. A routed frame's body is checked only where
//!   it is decoded (see `node_task::link_events`).

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::io::{ReadHalf, WriteHalf};
use futures::{AsyncReadExt, AsyncWriteExt};
use libp2p::Stream;
use skyhop_protocol::envelope::{self, Rewrite};
use skyhop_protocol::{codec, DecodeError, FrameDecoder, Message, NodeId, FRAME_HEADER_LEN};
use tokio::sync::{mpsc, Notify, OwnedSemaphorePermit, Semaphore};

/// Bytes queued for one neighbor at most (16 full frames); beyond, frames
/// are dropped and counted.
pub const LINK_QUEUE_BYTES: usize = 1 << 20;
/// Bytes of frames from one neighbor decoded and not yet handled by the
/// node task, at most (four full frames).
pub const LINK_INBOUND_BYTES: usize = 256 * 1024;
/// Events one link may have queued to the node task.
pub const LINK_EVENTS: usize = 64;
/// Capacity each of a link's two out buffers keeps at most (a burst may
/// grow them to [`LINK_QUEUE_BYTES`]): more than a wake-up of the node task
/// queues at 128-byte bodies, so that they do not grow, copying, every time.
const KEEP_BUFFER: usize = 128 * 1024;
/// How long one write may take before the peer counts as not reading.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from the stream per read call.
const READ_CHUNK: usize = 16 * 1024;

/// What a link task tells the node task.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// The frames of one read of `node`'s stream, in order.
    Frames {
        /// The neighbor.
        node: NodeId,
        /// Its link's generation.
        generation: u64,
        /// The frames (at least one), in the order read.
        frames: Vec<InFrame>,
        /// The bodies of the routed frames among them, undecoded.
        routed: Vec<u8>,
        /// Their share of the link's inbound bytes, given back when dropped.
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

/// One frame of a read.
#[derive(Debug)]
pub(crate) enum InFrame {
    /// A routed frame: its body is these bytes of the batch's `routed`
    /// buffer. Its envelope was read ([`envelope::read_header`]); its body
    /// was not decoded, and may not decode.
    Routed(Range<usize>),
    /// Any other message, decoded (boxed: it is rare on a relay, and a
    /// `Message` is about 400 bytes).
    Msg(Box<Message>),
}

/// What [`OutQueue`] and its [`write_loop`] share.
#[derive(Debug, Default)]
pub(crate) struct OutShared {
    /// Whole encoded frames not yet taken by the writer.
    frames: Mutex<Vec<u8>>,
    /// Wakes the writer when frames land in an empty buffer, or on close.
    ready: Notify,
    /// The queue is dropped: the writer writes what is left and ends.
    closed: AtomicBool,
}

/// The queue of frames for one neighbor's writer, bounded in bytes; closed
/// when dropped.
#[derive(Debug)]
pub(crate) struct OutQueue {
    shared: Arc<OutShared>,
}

impl OutQueue {
    /// A queue and what its [`write_loop`] takes from.
    pub fn new() -> (OutQueue, Arc<OutShared>) {
        let shared = Arc::new(OutShared::default());
        (
            OutQueue {
                shared: shared.clone(),
            },
            shared,
        )
    }

    /// Encodes `msg` onto the queue; false if it was dropped (the queue is
    /// full in bytes).
    pub fn push(&self, msg: &Message, node: NodeId) -> bool {
        let was_empty = {
            let mut frames = self.shared.frames.lock().expect("not poisoned");
            let start = frames.len();
            if let Err(e) = codec::encode_into(msg, &mut frames) {
                // The core made a message the codec refuses: a core bug, not the peer's.
                tracing::error!(peer = %node.short(), kind = msg.kind(), "cannot encode frame, skipped: {e}");
                return false;
            }
            if frames.len() > LINK_QUEUE_BYTES {
                frames.truncate(start);
                return false;
            }
            start == 0
        };
        if was_empty {
            self.shared.ready.notify_one();
        }
        true
    }
}

impl OutQueue {
    /// Queues the routed frame body `frame_body` rewritten by `rw`, without
    /// decoding it; false if it was dropped (the queue is full in bytes).
    pub fn push_rewritten(&self, frame_body: &[u8], rw: &Rewrite) -> bool {
        let was_empty = {
            let mut frames = self.shared.frames.lock().expect("not poisoned");
            let start = frames.len();
            if start + FRAME_HEADER_LEN + envelope::rewritten_len(frame_body, rw) > LINK_QUEUE_BYTES
            {
                return false;
            }
            envelope::append_rewritten(frame_body, rw, &mut frames);
            start == 0
        };
        if was_empty {
            self.shared.ready.notify_one();
        }
        true
    }
}

impl Drop for OutQueue {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.ready.notify_one();
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
        let (frames, routed, size, failed) = split_frames(&mut decoder);
        if !frames.is_empty() {
            let permits = u32::try_from(size.clamp(1, LINK_INBOUND_BYTES))
                .expect("at most LINK_INBOUND_BYTES");
            let Ok(permit) = inbound.clone().acquire_many_owned(permits).await else {
                return; // Never closed: the reader owns the semaphore.
            };
            let ev = LinkEvent::Frames {
                node,
                generation,
                frames,
                routed,
                permit,
            };
            if events.send(ev).await.is_err() {
                return; // The node task is gone.
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

/// Takes every whole frame in `decoder`: the frames, the bodies of the
/// routed ones (copied out, undecoded), the bytes taken, and the
/// error that stopped it, if one did (the frames before it are still
/// good). A routed frame's envelope is read here, so that a peer whose
/// envelopes are bad is dropped as before; its body is left to whoever
/// needs it.
fn split_frames(decoder: &mut FrameDecoder) -> (Vec<InFrame>, Vec<u8>, usize, Option<DecodeError>) {
    let before = decoder.buffered();
    let mut frames = Vec::new();
    // Sized once: growing it by doubling showed in the profile.
    let mut routed = Vec::with_capacity(before);
    let failed = loop {
        let body = match decoder.next_frame() {
            Ok(Some(body)) => body,
            Ok(None) => break None,
            Err(e) => break Some(e),
        };
        if body.first() == Some(&envelope::ROUTED_TAG) {
            if let Err(e) = envelope::read_header(body) {
                break Some(e);
            }
            let start = routed.len();
            routed.extend_from_slice(body);
            frames.push(InFrame::Routed(start..routed.len()));
        } else {
            match codec::decode_body(body) {
                Ok(msg) => frames.push(InFrame::Msg(Box::new(msg))),
                Err(e) => break Some(e),
            }
        }
    };
    (frames, routed, before - decoder.buffered(), failed)
}

/// Runs the writer half until its queue closes (then flushes and closes the
/// stream), a write fails, or a write takes longer than [`WRITE_TIMEOUT`].
pub(crate) async fn write_loop(
    mut stream: WriteHalf<Stream>,
    queue: Arc<OutShared>,
    node: NodeId,
    generation: u64,
    events: mpsc::Sender<LinkEvent>,
) {
    let mut buf = Vec::with_capacity(16 * 1024);
    let error = loop {
        // Read before taking: every frame pushed before the close is then
        // in what is taken.
        let closed = queue.closed.load(Ordering::Acquire);
        buf.clear();
        buf.shrink_to(KEEP_BUFFER);
        std::mem::swap(&mut buf, &mut *queue.frames.lock().expect("not poisoned"));
        if buf.is_empty() {
            if closed {
                let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.close()).await;
                break None;
            }
            queue.ready.notified().await;
            continue;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use skyhop_protocol::{Body, Heartbeat, LocationHop, MsgId, Packet};

    fn routed(id: u64) -> Message {
        Message::Routed(Packet {
            dst: NodeId([1; 32]),
            src: NodeId([2; 32]),
            id: MsgId(id),
            ttl: 9,
            hops: 1,
            location: LocationHop::Unused,
            trace: None,
            body: Body::Datagram(vec![5; 40]),
        })
    }

    #[test]
    fn a_read_keeps_routed_frames_undecoded_and_stops_at_a_bad_envelope() {
        let heartbeat = Message::Heartbeat(Heartbeat { nonce: 3 });
        let mut bytes = codec::encode(&heartbeat).expect("encodes");
        let frame = codec::encode(&routed(7)).expect("encodes");
        bytes.extend_from_slice(&frame);
        let mut bad = codec::encode(&routed(8)).expect("encodes");
        bad[FRAME_HEADER_LEN + 75] |= 0x80; // A reserved flag bit.
        bytes.extend_from_slice(&bad);
        let mut decoder = FrameDecoder::new();
        decoder.push(&bytes);
        let (frames, routed_bytes, size, failed) = split_frames(&mut decoder);
        assert_eq!(frames.len(), 2);
        assert!(matches!(&frames[0], InFrame::Msg(m) if **m == heartbeat));
        let InFrame::Routed(r) = &frames[1] else {
            panic!("the routed frame is kept as bytes: {:?}", frames[1]);
        };
        assert_eq!(&routed_bytes[r.clone()], &frame[FRAME_HEADER_LEN..]);
        assert_eq!(size, bytes.len(), "the bad frame was taken too");
        assert!(
            matches!(failed, Some(DecodeError::Malformed(_))),
            "{failed:?}"
        );
    }

    #[test]
    fn a_rewritten_frame_is_queued_whole_or_not_at_all() {
        let (queue, shared) = OutQueue::new();
        let frame = codec::encode(&routed(1)).expect("encodes");
        let body = &frame[FRAME_HEADER_LEN..];
        let rw = Rewrite {
            ttl: 8,
            hops: 2,
            location: LocationHop::Toward(NodeId([4; 32])),
        };
        let mut queued = 0;
        while queue.push_rewritten(body, &rw) {
            queued += 1;
        }
        let frames = shared.frames.lock().expect("not poisoned").clone();
        assert!(frames.len() <= LINK_QUEUE_BYTES);
        assert_eq!(frames.len(), queued * (frame.len() + 32));
        let mut decoder = FrameDecoder::new();
        decoder.push(&frames);
        let Ok(Some(Message::Routed(p))) = decoder.next_message() else {
            panic!("the queue holds whole frames");
        };
        assert_eq!((p.ttl, p.hops, p.location), (8, 2, rw.location));
    }
}
