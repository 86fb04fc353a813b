//! The bench's frames and its two endpoints, the same for every path
//! (raw TCP, skyhop, circuit relay): a sender that streams real signed chat
//! frames with a window in flight or one at a time, and a receiver that
//! counts them and acknowledges each read.
//!
//! # Implementation notes
//! - Frames are real skyhop frames: `Message::Routed` packets carrying one
//!   signed `ChatMessage` sealed to the receiver, encoded by the protocol
//!   codec. They are encoded
//!   once, before timing, into a pool of [`POOL_FRAMES`] frames with distinct
//!   packet ids (all of one length: every id is a 9-byte varint), so that the
//!   sender costs a memcpy per frame and the relays' duplicate windows (8,192
//!   ids) never see an id again while it is remembered.
//! - The receiver reads the 4-byte length prefixes and the message tag only;
//!   it acks each read (not each frame) with one `ChatAck` frame carrying
//!   the running count in a receipt it signs, so a relay forwards one small frame back per batch.
//!   Frames other than routed packets (a supernode's heartbeats) are decoded
//!   and heartbeats answered.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use skyhop_protocol::{
    codec, Body, FrameDecoder, HeartbeatAck, Identity, LocationHop, Message, MsgId, NodeId, Packet,
    FRAME_HEADER_LEN, MAX_FRAME_BODY,
};
use tokio::sync::watch;

use super::BenchError;

/// Frames in the sender's pool (more than a relay's duplicate window).
pub const POOL_FRAMES: usize = 16_384;
/// Messages in flight at most in the throughput phase.
pub const WINDOW: u64 = 512;
/// Bytes the sender writes at most per write call.
const MAX_WRITE: usize = 64 * 1024;
/// Bytes read per read call by the endpoints.
const READ_CHUNK: usize = 64 * 1024;
/// How long the sender waits for the last acks (or a ping's answer).
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// First packet id: ids from 2^32 on all encode as 9-byte varints.
const FIRST_ID: u64 = 1 << 32;
/// The bincode tag of `Message::Routed` (its variant index), the first byte
/// of its frame body.
const ROUTED_TAG: u8 = 10;

/// A pool of pre-encoded chat frames from `a` to `b`, and the acks `b` sends.
#[derive(Debug)]
pub struct FramePool {
    bytes: Vec<u8>,
    frame_len: usize,
    a: NodeId,
    b: Identity,
}

impl FramePool {
    /// Chat frames from `sender` to `recipient` with bodies of `body_len`
    /// bytes.
    pub fn new(
        sender: &Identity,
        recipient: &Identity,
        body_len: usize,
    ) -> Result<FramePool, BenchError> {
        let to = recipient.id();
        let chat = sender
            .chat(to, MsgId(1), 1, 0, "x".repeat(body_len))
            .map_err(|e| BenchError::Setup(format!("chat body: {e}")))?;
        let sealed = skyhop_protocol::seal::seal(&chat, &recipient.chat_key(), [0x5e; 32])
            .map_err(|e| BenchError::Setup(format!("sealing the chat: {e}")))?;
        let mut bytes = Vec::new();
        let mut frame_len = 0;
        for i in 0..POOL_FRAMES as u64 {
            let msg = Message::Routed(Packet {
                dst: to,
                src: sender.id(),
                id: MsgId(FIRST_ID + i),
                ttl: skyhop_protocol::DEFAULT_TTL,
                hops: 0,
                location: LocationHop::Unused,
                trace: None,
                body: Body::Chat(sealed.clone()),
            });
            let n = codec::encode_into(&msg, &mut bytes)
                .map_err(|e| BenchError::Setup(format!("cannot encode a chat frame: {e}")))?;
            if frame_len != 0 && n != frame_len {
                return Err(BenchError::Setup("chat frames differ in length".into()));
            }
            frame_len = n;
        }
        Ok(FramePool {
            bytes,
            frame_len,
            a: sender.id(),
            b: recipient.clone(),
        })
    }

    /// Bytes per frame, header included.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Appends `count` frames starting at message number `from`.
    fn append(&self, from: u64, count: usize, out: &mut Vec<u8>) {
        for i in 0..count as u64 {
            let k = ((from + i) % POOL_FRAMES as u64) as usize;
            out.extend_from_slice(&self.bytes[k * self.frame_len..(k + 1) * self.frame_len]);
        }
    }

    /// What the receiver needs to answer.
    pub fn acker(&self) -> Acker {
        Acker {
            a: self.a,
            b: self.b.clone(),
        }
    }
}

/// Makes the receiver's ack frames.
#[derive(Clone, Debug)]
pub struct Acker {
    a: NodeId,
    b: Identity,
}

impl Acker {
    fn ack_into(&self, count: u64, out: &mut Vec<u8>) {
        let msg = Message::Routed(Packet {
            dst: self.a,
            src: self.b.id(),
            id: MsgId(count),
            ttl: skyhop_protocol::DEFAULT_TTL,
            hops: 0,
            location: LocationHop::Unused,
            trace: None,
            body: Body::ChatAck(self.b.receipt(self.a, MsgId(count), count, 0)),
        });
        codec::encode_into(&msg, out).expect("an ack frame is small and valid");
    }
}

/// What the sender measured.
#[derive(Clone, Debug, Default)]
pub struct SendStats {
    /// Messages sent and acknowledged in the throughput phase.
    pub messages: u64,
    /// Seconds from the first write to the last ack.
    pub seconds: f64,
    /// One-way latencies (half the ping-pong round trip), microseconds.
    pub one_way_us: Vec<f64>,
}

/// Adapts a tokio socket to the futures I/O traits that libp2p streams use,
/// so that one endpoint serves both.
#[derive(Debug)]
pub struct TokioIo<T>(pub T);

impl<T: tokio::io::AsyncRead + Unpin> AsyncRead for TokioIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut rb = tokio::io::ReadBuf::new(buf);
        match Pin::new(&mut self.0).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> AsyncWrite for TokioIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

fn io_err(what: &str, e: std::io::Error) -> BenchError {
    BenchError::Io(format!("{what}: {e}"))
}

/// Reads acks until the count reaches `want` or the stream ends; publishes
/// each count.
async fn read_acks<R: AsyncRead + Unpin>(
    mut r: R,
    decoder: &mut FrameDecoder,
    acked: &watch::Sender<u64>,
    want: Option<u64>,
) -> Result<(), BenchError> {
    let mut chunk = vec![0u8; READ_CHUNK];
    loop {
        while let Some(msg) = decoder
            .next_message()
            .map_err(|e| BenchError::Io(format!("bad frame from the path: {e}")))?
        {
            if let Message::Routed(Packet {
                body: Body::ChatAck(receipt),
                ..
            }) = msg
            {
                let seq = receipt.seq;
                acked.send_replace(seq);
                if want.is_some_and(|w| seq >= w) {
                    return Ok(());
                }
            }
        }
        let n = r.read(&mut chunk).await.map_err(|e| io_err("read", e))?;
        if n == 0 {
            return Ok(());
        }
        decoder.push(&chunk[..n]);
    }
}

/// The sender: streams for `duration` with [`WINDOW`] messages in flight,
/// calls `between`, then `pings` ping-pongs one message at a time.
/// `received_before` is the receiver's count before this call (the probes
/// it got).
#[allow(clippy::disallowed_methods)] // A benchmark reads the clock to measure.
pub async fn send<S>(
    stream: S,
    pool: Arc<FramePool>,
    duration: Duration,
    pings: usize,
    received_before: u64,
    between: impl FnOnce(),
) -> Result<SendStats, BenchError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (r, mut w) = stream.split();
    let (acked_tx, mut acked_rx) = watch::channel(received_before);
    let base = received_before;
    let reader = tokio::spawn(async move {
        let mut decoder = FrameDecoder::new();
        let res = read_acks(r, &mut decoder, &acked_tx, None).await;
        drop(acked_tx);
        res
    });
    let mut buf = Vec::with_capacity(MAX_WRITE + pool.frame_len());
    let per_write = (MAX_WRITE / pool.frame_len()).max(1) as u64;
    let mut sent = 0u64;
    let start = std::time::Instant::now();
    let mut stats = SendStats::default();
    // Throughput: keep the window full until the time is up.
    if !duration.is_zero() {
        while start.elapsed() < duration {
            let acked = *acked_rx.borrow_and_update();
            let room = (acked + WINDOW).saturating_sub(base + sent);
            if room == 0 {
                if tokio::time::timeout(ACK_TIMEOUT, acked_rx.changed())
                    .await
                    .map_or(true, |r| r.is_err())
                {
                    return Err(BenchError::Io(format!(
                        "no ack for {ACK_TIMEOUT:?} ({acked} of {sent} acked)"
                    )));
                }
                continue;
            }
            let k = room.min(per_write);
            buf.clear();
            pool.append(sent, k as usize, &mut buf);
            w.write_all(&buf).await.map_err(|e| io_err("write", e))?;
            w.flush().await.map_err(|e| io_err("flush", e))?;
            sent += k;
        }
        let done = tokio::time::timeout(ACK_TIMEOUT, acked_rx.wait_for(|a| *a >= base + sent))
            .await
            .is_ok_and(|r| r.is_ok());
        if !done {
            let acked = *acked_rx.borrow();
            return Err(BenchError::Io(format!(
                "only {acked} of {} messages acked",
                base + sent
            )));
        }
        stats.messages = sent;
        stats.seconds = start.elapsed().as_secs_f64();
    }
    between();
    // Latency: one message at a time.
    for _ in 0..pings {
        buf.clear();
        pool.append(sent, 1, &mut buf);
        let t = std::time::Instant::now();
        w.write_all(&buf).await.map_err(|e| io_err("write", e))?;
        w.flush().await.map_err(|e| io_err("flush", e))?;
        sent += 1;
        let done = tokio::time::timeout(ACK_TIMEOUT, acked_rx.wait_for(|a| *a >= base + sent))
            .await
            .is_ok_and(|r| r.is_ok());
        if !done {
            return Err(BenchError::Io("a ping got no answer".into()));
        }
        stats.one_way_us.push(t.elapsed().as_secs_f64() * 1e6 / 2.0);
    }
    let _ = w.close().await;
    reader.abort();
    Ok(stats)
}

/// Sends frame `index` of the pool and waits (bounded) for an ack: proves
/// a path works. Returns the receiver's count, or `None` without an ack.
pub async fn probe<S>(
    stream: &mut S,
    pool: &FramePool,
    index: u64,
    wait: Duration,
) -> Result<Option<u64>, BenchError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf = Vec::new();
    pool.append(index, 1, &mut buf);
    stream
        .write_all(&buf)
        .await
        .map_err(|e| io_err("write", e))?;
    stream.flush().await.map_err(|e| io_err("flush", e))?;
    let (tx, _rx) = watch::channel(0);
    let mut decoder = FrameDecoder::new();
    let r = tokio::time::timeout(wait, read_acks(&mut *stream, &mut decoder, &tx, Some(1))).await;
    let count = *tx.borrow();
    Ok((matches!(r, Ok(Ok(()))) && count >= 1).then_some(count))
}

/// The receiver: counts routed frames, acks every read with the running
/// count, answers heartbeats; returns the count when the stream ends.
/// With `check`, every routed frame is decoded and must be a chat.
pub async fn receive<S>(stream: S, acker: Acker, check: bool) -> Result<u64, BenchError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut r, mut w) = stream.split();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut filled = 0usize;
    let mut count = 0u64;
    let mut out = Vec::with_capacity(1024);
    loop {
        if filled == buf.len() {
            return Err(BenchError::Io("a frame larger than the read buffer".into()));
        }
        let n = match r.read(&mut buf[filled..]).await {
            Ok(0) | Err(_) => return Ok(count),
            Ok(n) => n,
        };
        filled += n;
        let mut at = 0;
        let before = count;
        out.clear();
        while filled - at >= FRAME_HEADER_LEN {
            let header: [u8; 4] = buf[at..at + 4].try_into().expect("four bytes");
            let len = u32::from_be_bytes(header) as usize;
            if len > MAX_FRAME_BODY || len == 0 {
                return Err(BenchError::Io(format!("bad frame length {len}")));
            }
            if filled - at < FRAME_HEADER_LEN + len {
                break;
            }
            let body = &buf[at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + len];
            if body[0] == ROUTED_TAG && !check {
                count += 1;
            } else {
                match codec::decode_body(body) {
                    Ok(Message::Routed(Packet {
                        body: Body::Chat(_),
                        ..
                    })) => count += 1,
                    Ok(Message::Heartbeat(h)) => {
                        let ack = Message::HeartbeatAck(HeartbeatAck {
                            nonce: h.nonce,
                            clients: 0,
                        });
                        codec::encode_into(&ack, &mut out).expect("a heartbeat ack is valid");
                    }
                    Ok(other) if check => {
                        return Err(BenchError::Io(format!(
                            "expected a chat frame, got {}",
                            other.kind()
                        )))
                    }
                    Ok(_) => {}
                    Err(e) => return Err(BenchError::Io(format!("bad frame: {e}"))),
                }
            }
            at += FRAME_HEADER_LEN + len;
        }
        buf.copy_within(at..filled, 0);
        filled -= at;
        if count > before {
            acker.ack_into(count, &mut out);
        }
        if !out.is_empty() && (w.write_all(&out).await.is_err() || w.flush().await.is_err()) {
            return Ok(count);
        }
    }
}
