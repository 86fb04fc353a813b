//! A bounded ring of recent core events with sequence numbers, for the
//! control API's long-poll `GET /events?since=N`. The node task pushes every
//! core event; [`super::NodeHandle::events`] reads them.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use skyhop_core::Event;

/// Events kept at most; older ones are forgotten.
pub const EVENT_LOG_SIZE: usize = 1024;

/// The ring and a watch on its newest sequence number.
#[derive(Debug)]
pub struct EventLog {
    /// The events with their sequence numbers, oldest first.
    ring: Mutex<VecDeque<(u64, Event)>>,
    /// The newest sequence number; long-polls wait on it.
    newest: watch::Sender<u64>,
}

impl Default for EventLog {
    fn default() -> EventLog {
        EventLog {
            ring: Mutex::new(VecDeque::new()),
            newest: watch::Sender::new(0),
        }
    }
}

impl EventLog {
    /// Appends an event; sequence numbers start at 1.
    pub fn push(&self, event: Event) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let seq = *self.newest.borrow() + 1;
        if ring.len() >= EVENT_LOG_SIZE {
            ring.pop_front();
        }
        ring.push_back((seq, event));
        self.newest.send_replace(seq);
    }

    /// The newest sequence number (0 when empty).
    pub fn newest(&self) -> u64 {
        *self.newest.borrow()
    }

    /// Events with a sequence number above `since`, oldest first.
    pub fn since(&self, since: u64) -> Vec<(u64, Event)> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().filter(|(s, _)| *s > since).cloned().collect()
    }

    /// Like [`EventLog::since`], but waits up to `wait` for one to arrive.
    pub async fn wait_since(&self, since: u64, wait: Duration) -> Vec<(u64, Event)> {
        let mut rx = self.newest.subscribe();
        let _ = tokio::time::timeout(wait, rx.wait_for(|newest| *newest > since)).await;
        self.since(since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyhop_protocol::NodeId;

    #[tokio::test]
    async fn ring_is_bounded_and_long_poll_returns() {
        let log = EventLog::default();
        for _ in 0..EVENT_LOG_SIZE + 5 {
            log.push(Event::Attached {
                sn: NodeId([1; 32]),
            });
        }
        assert_eq!(log.since(0).len(), EVENT_LOG_SIZE);
        assert_eq!(log.since(0)[0].0, 6);
        let newest = log.newest();
        let got = log.wait_since(newest, Duration::from_millis(20)).await;
        assert!(got.is_empty());
    }
}
