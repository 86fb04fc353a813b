//! The chat workload: who writes to whom and when. Messages form a Poisson
//! process over the live users (ordinary nodes; every node in a flat
//! overlay); a pair is drawn uniformly among every live user, attached or
//! not, or from the sender's contacts. A user who cannot get into the
//! overlay still writes and is still written to: the recorder counts those
//! messages as failed (not attached), so that such users show in the
//! delivery figures. It owns the chat RNG stream and the contact lists.
//!
//! It only picks; the world hands the message to the sender's node and the
//! recorder tracks its outcome.

use rand::rngs::Xoshiro256PlusPlus;
use rand::RngExt;

use skyhop_core::{SimTime, SECS};

use super::config::SimConfig;
use super::dist::{self, secs};
use super::population::Population;

/// Tries at most this many draws to find a pair of distinct users.
const PAIR_TRIES: usize = 16;

/// The next message of the workload.
pub struct Chat {
    /// The sender's slot.
    pub from: u32,
    /// The recipient's slot.
    pub to: u32,
    /// The message body.
    pub text: String,
    /// The recipient is down for a restart: its homes keep the message.
    pub offline: bool,
}

/// The chat workload; see the module doc.
pub struct Workload {
    /// Messages per live user per minute.
    rate_per_node_per_min: f64,
    /// Contacts each sender keeps (0: uniform pairs).
    contacts: usize,
    /// Fraction of messages to users down for a restart.
    to_offline: f64,
    /// Body length, bytes.
    body_bytes: usize,
    /// A flat overlay: every node is a supernode, and every node chats.
    flat: bool,
    /// When the first message is sent, if any is.
    start: Option<SimTime>,
    /// No message is sent after this, so that every message has an outcome.
    stop: SimTime,
    /// Messages sent so far (numbers the bodies).
    sent: u64,
    /// The chat RNG stream: pairs, contacts and gaps.
    rng: Xoshiro256PlusPlus,
    /// Each slot's contacts, by slot (grown on demand).
    contact_lists: Vec<Vec<u32>>,
}

impl Workload {
    /// The workload of `cfg`, seeded by the world seed.
    pub fn new(cfg: &SimConfig, seed: u64) -> Workload {
        let end = secs(cfg.duration_s);
        let start = secs(cfg.workload.start_s.unwrap_or(cfg.warmup_s));
        let stop = end.saturating_sub(cfg.node.chat_deadline + 5 * SECS);
        let active = cfg.workload.rate_per_node_per_min > 0.0 && start < stop;
        Workload {
            rate_per_node_per_min: cfg.workload.rate_per_node_per_min,
            contacts: cfg.workload.contacts as usize,
            to_offline: cfg.workload.to_offline,
            body_bytes: cfg.workload.body_bytes,
            flat: cfg.population.ordinary == 0,
            start: active.then_some(start),
            stop,
            sent: 0,
            rng: dist::stream_rng(seed, dist::stream::CHAT),
            contact_lists: Vec::new(),
        }
    }

    /// When the first message is due, if the workload sends any.
    pub fn start(&self) -> Option<SimTime> {
        self.start
    }

    /// The message due at `now`, if any, and the gap to the next one; None
    /// once the workload has stopped.
    pub fn next(&mut self, now: SimTime, pop: &Population) -> Option<(Option<Chat>, SimTime)> {
        if now > self.stop {
            return None;
        }
        let pool_len = self.users(pop).len();
        let rate_per_s = self.rate_per_node_per_min / 60.0 * pool_len as f64;
        let offline = self.to_offline > 0.0
            && !pop.away().is_empty()
            && pool_len >= 1
            && self.rng.random::<f64>() < self.to_offline;
        let chat = if offline {
            let away = pop.away();
            let to = away[self.rng.random_range(0..away.len())];
            let from = self.pick_user(pop);
            Some(Chat {
                from,
                to,
                text: self.body(),
                offline: true,
            })
        } else if pool_len >= 2 {
            self.pair(pop).map(|(from, to)| Chat {
                from,
                to,
                text: self.body(),
                offline: false,
            })
        } else {
            None
        };
        let gap = if rate_per_s > 0.0 {
            let u = 1.0 - self.rng.random::<f64>();
            secs(-u.ln() / rate_per_s).max(1)
        } else {
            SECS
        };
        Some((chat, gap))
    }

    /// The live users: ordinary nodes, or every node in a flat overlay.
    fn users<'p>(&self, pop: &'p Population) -> &'p [u32] {
        if self.flat {
            pop.supernodes()
        } else {
            pop.users()
        }
    }

    fn pick_user(&mut self, pop: &Population) -> u32 {
        let users = self.users(pop);
        users[self.rng.random_range(0..users.len())]
    }

    /// Two distinct live users, attached or not (DESIGN: the workload runs
    /// over every live user).
    fn pair(&mut self, pop: &Population) -> Option<(u32, u32)> {
        for _ in 0..PAIR_TRIES {
            let (a, b) = if self.contacts == 0 {
                (self.pick_user(pop), self.pick_user(pop))
            } else {
                let a = self.pick_user(pop);
                (a, self.contact_of(a, pop))
            };
            if a != b {
                return Some((a, b));
            }
        }
        None
    }

    fn body(&mut self) -> String {
        self.sent += 1;
        let mut text = format!("m{} ", self.sent);
        while text.len() < self.body_bytes {
            text.push('x');
        }
        text.truncate(self.body_bytes);
        text
    }

    /// One of `a`'s contacts: those that went down are replaced by live
    /// users, up to `contacts` of them.
    fn contact_of(&mut self, a: u32, pop: &Population) -> u32 {
        let want = self.contacts;
        if self.contact_lists.len() <= a as usize {
            self.contact_lists.resize_with(a as usize + 1, Vec::new);
        }
        let mut list = std::mem::take(&mut self.contact_lists[a as usize]);
        // Contacts that are down are dropped; one that restarts may be
        // drawn again later.
        list.retain(|c| pop.node(*c).is_some());
        for _ in 0..want.saturating_sub(list.len()) * 2 {
            if list.len() >= want {
                break;
            }
            let c = self.pick_user(pop);
            if c != a && !list.contains(&c) {
                list.push(c);
            }
        }
        let b = if list.is_empty() {
            a
        } else {
            list[self.rng.random_range(0..list.len())]
        };
        self.contact_lists[a as usize] = list;
        b
    }
}
