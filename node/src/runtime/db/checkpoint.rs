//! Copying the history's write-ahead log back into the database, in a
//! thread of its own, so that no commit of the node task waits for it.
//!
//! # Implementation notes
//! - SQLite checkpoints on the commit that takes the log past 1,000 pages
//!   by default: that commit writes ~4 MB back and syncs the database
//!   file, and the node task, which waits for its commits, waits with it.
//!   Nodes that chat alike reach the mark together.
//! - What it changed, in the flood test (20 clients on one disk, 8 runs
//!   each): with the writer checkpointing, one run stalled every chat for
//!   184 ms, seven clients' wake-ups over 50 ms at once; with this thread,
//!   one run still stalled for 110 ms, one client's wake-up over 50 ms;
//!   with the history files on tmpfs, no run stalled. Most of what is left
//!   is the disk's sync of each commit itself (`synchronous=FULL`).
//! - Here the writer's own checkpoint is moved to [`WRITER_CHECKPOINT_PAGES`]
//!   (the bound on the log if this thread falls behind), and this thread
//!   runs a passive checkpoint (it never waits for the writer, nor the
//!   writer for it) every [`EVERY`], with `synchronous=FULL` like the
//!   writer, so a checkpointed page has reached the disk.
//! - The thread owns a second connection to the file; it stops when the
//!   [`Checkpointer`] is dropped, as soon as a checkpoint under way ends.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

/// How often the thread checkpoints.
pub const EVERY: Duration = Duration::from_secs(1);

/// Log pages past which the writer checkpoints on its own (64 MB of 4 KB
/// pages): only if this thread falls that far behind.
pub const WRITER_CHECKPOINT_PAGES: u32 = 16_384;

/// The checkpoint thread of one history file; dropping it stops the thread.
#[derive(Debug)]
pub struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing `path` (already opened in WAL mode).
    pub fn start(path: &Path, busy_timeout: Duration) -> Result<Checkpointer, rusqlite::Error> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(busy_timeout)?;
        conn.execute_batch("PRAGMA synchronous = FULL;")?;
        let (stop, stopped) = mpsc::channel();
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("history-checkpoint".into())
            .spawn(move || run(conn, path, stopped))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Checkpointer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Checkpoints every [`EVERY`] until told to stop (or its sender is gone).
fn run(conn: Connection, path: PathBuf, stopped: mpsc::Receiver<()>) {
    let mut warned = false;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EVERY) {
        let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0));
        match done {
            Ok(_) => warned = false,
            Err(e) if !warned => {
                // The writer checkpoints on its own past its bound, so
                // nothing is lost; say so once until it works again.
                warned = true;
                tracing::warn!(
                    "cannot checkpoint {}: {e}; the node's own commits will, past {} pages",
                    path.display(),
                    WRITER_CHECKPOINT_PAGES
                );
            }
            Err(_) => {}
        }
    }
}
