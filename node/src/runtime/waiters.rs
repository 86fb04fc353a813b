//! The bound on requests that wait — long-polls of `/events`, pings, the
//! web page's event stream — in all and per client, so that no client can
//! take every waiter's place and none can take the connection slots that
//! `/status` or `/send` need. A client on the Unix socket is its process
//! (the socket's peer credentials); loopback TCP clients, which all carry
//! the same cookie, count as one. Each listener has its own [`Waiters`].
//!
//! # Implementation notes
//! - A [`WaiterPermit`] is taken before waiting and given back on drop, so
//!   a client that hangs up frees its place.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Waiters open at once, in all.
pub const MAX_WAITERS: usize = 16;
/// Waiters one process on the Unix socket may hold.
pub const MAX_WAITERS_PER_PROCESS: usize = 4;
/// Waiters loopback TCP clients (the web page) may hold together.
pub const MAX_WAITERS_TCP: usize = 8;

/// Who is waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClientId {
    /// A process on the Unix socket, by its pid.
    Process(i32),
    /// A process on the Unix socket whose pid the kernel did not give.
    UnknownProcess,
    /// Any loopback TCP client.
    Tcp,
}

impl ClientId {
    /// How many waiters this client may hold.
    fn cap(self) -> usize {
        match self {
            ClientId::Process(_) | ClientId::UnknownProcess => MAX_WAITERS_PER_PROCESS,
            ClientId::Tcp => MAX_WAITERS_TCP,
        }
    }
}

/// Why a waiter was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WaitersFull {
    /// Every waiter's place is taken.
    #[error("{MAX_WAITERS} long-polls, pings or streams are open; close one and retry")]
    All,
    /// This client holds as many as it may.
    #[error(
        "this client has {0} long-polls, pings or streams open, its most; close one and retry"
    )]
    Client(usize),
}

/// The waiters open, in all and per client.
#[derive(Debug, Default)]
pub struct Waiters {
    /// Count per client; the total is their sum.
    open: Mutex<BTreeMap<ClientId, usize>>,
}

/// One waiter's place, given back on drop.
#[derive(Debug)]
pub struct WaiterPermit {
    /// Where it is counted.
    waiters: Arc<Waiters>,
    /// Whose it is.
    client: ClientId,
}

impl Waiters {
    /// A place for `client`, if it and the whole have room.
    pub fn try_acquire(self: &Arc<Self>, client: ClientId) -> Result<WaiterPermit, WaitersFull> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = open.values().sum();
        let mine = open.get(&client).copied().unwrap_or(0);
        if mine >= client.cap() {
            return Err(WaitersFull::Client(mine));
        }
        if total >= MAX_WAITERS {
            return Err(WaitersFull::All);
        }
        *open.entry(client).or_insert(0) += 1;
        Ok(WaiterPermit {
            waiters: self.clone(),
            client,
        })
    }

    /// Waiters open now.
    pub fn open(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }
}

impl Drop for WaiterPermit {
    fn drop(&mut self) {
        let mut open = self.waiters.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One process cannot hold more than its share, TCP clients together
    /// not more than theirs, nobody more than the total; a dropped permit
    /// frees its place.
    #[test]
    fn waiters_are_bounded_per_client_and_in_all() {
        let w = Arc::new(Waiters::default());
        let greedy: Vec<_> = (0..MAX_WAITERS_PER_PROCESS)
            .map(|_| w.try_acquire(ClientId::Process(7)).expect("room"))
            .collect();
        assert_eq!(
            w.try_acquire(ClientId::Process(7)).err(),
            Some(WaitersFull::Client(MAX_WAITERS_PER_PROCESS))
        );
        let web: Vec<_> = (0..MAX_WAITERS_TCP)
            .map(|_| w.try_acquire(ClientId::Tcp).expect("room"))
            .collect();
        assert!(w.try_acquire(ClientId::Tcp).is_err());
        let mut others = Vec::new();
        for pid in 100.. {
            match w.try_acquire(ClientId::Process(pid)) {
                Ok(p) => others.push(p),
                Err(e) => {
                    assert_eq!(e, WaitersFull::All);
                    break;
                }
            }
        }
        assert_eq!(w.open(), MAX_WAITERS);
        drop(greedy);
        assert_eq!(w.open(), MAX_WAITERS - MAX_WAITERS_PER_PROCESS);
        assert!(
            w.try_acquire(ClientId::Process(8)).is_ok(),
            "a freed place is reusable"
        );
        drop(web);
        drop(others);
        assert_eq!(w.open(), 0);
    }
}
