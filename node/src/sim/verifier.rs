//! Signature verification on the second core: the signed statements of
//! frames in flight are verified by another thread, so that the receiving
//! node finds them in the signature memo it shares with that thread instead
//! of spending ~40 µs of the event loop's thread on each.
//!
//! Results never flow back into the world: a node verifies (or hits the
//! memo) exactly as without the thread, so the run stays a function of the
//! seed. The world hands frames in from `transmit`; nothing else uses it.

use std::sync::mpsc::SyncSender;
use std::sync::Arc;

use skyhop_protocol::{Message, SignatureMemo};

/// Batches queued for the verifier at most.
const PREVERIFY_QUEUE: usize = 256;
/// Frames per batch: one hand-off per frame cost a futex wake-up each.
const PREVERIFY_BATCH: usize = 32;

/// The hand-off to the verifier thread.
pub struct Verifier {
    /// Batches of frames with signed statements, for the thread; None on a
    /// one-core machine, or when no thread could be started.
    tx: Option<SyncSender<Vec<Message>>>,
    /// The batch being gathered.
    batch: Vec<Message>,
}

impl Verifier {
    /// Starts the thread, which fills `memo`.
    pub fn spawn(memo: Arc<SignatureMemo>) -> Verifier {
        Verifier {
            tx: spawn_thread(memo),
            batch: Vec::new(),
        }
    }

    /// A frame is in flight: queue it if it carries a signed statement.
    pub fn in_flight(&mut self, msg: &Message) {
        let Some(tx) = &self.tx else {
            return;
        };
        if skyhop_protocol::sign::carries_signature(msg) {
            self.batch.push(msg.clone());
            if self.batch.len() >= PREVERIFY_BATCH {
                // Full: the receivers verify for themselves, as they
                // would anyway.
                let _ = tx.try_send(std::mem::take(&mut self.batch));
            }
        }
    }
}

fn spawn_thread(memo: Arc<SignatureMemo>) -> Option<SyncSender<Vec<Message>>> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores < 2 {
        return None;
    }
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Message>>(PREVERIFY_QUEUE);
    std::thread::Builder::new()
        .name("sim-verifier".into())
        .spawn(move || {
            for batch in rx {
                for msg in &batch {
                    memo.preverify(msg);
                }
            }
        })
        .ok()?;
    Some(tx)
}
