//! Per-peer budgets: a token bucket per linked peer and [`MessageClass`],
//! and the tolerance for frames over budget. A peer over budget has the
//! frame dropped and counted; one that keeps exceeding is disconnected and
//! refused for an escalating time (the ban itself is kept in `links`).
//!
//! # Implementation notes
//! Tokens are kept in thousandths so that rates of a few frames a second
//! refill smoothly at millisecond resolution; refill is computed on use
//! from the time handed in, so the core still reads no clock. A bucket is
//! 8 bytes (u32 tokens, u32 milliseconds since the link came up), since
//! every link of a simulated million nodes carries eight. A peer that
//! declared itself a supernode gets [`BudgetConfig::supernode_factor`]
//! times the budget, since a supernode link carries the traffic of many
//! clients; the declaration is the peer's own, so the factor bounds what a
//! liar gains rather than trusting it.
//! - What a supernode neighbor originates (a routed packet whose source is
//!   the neighbor itself) first meets buckets of a client's size
//!   ([`PeerBudget::charge_originated`]) for the classes in which a
//!   supernode speaks for itself no more than a busy client does (chats,
//!   acks and not-found answers; location queries and replies; traces),
//!   then, like everything it relays, the supernode budget. The excess is
//!   dropped and counted (`over_budget{class="originated_chat"}` and so
//!   on), but it never spends the tolerance: a supernode link is never
//!   dropped or banned for its own traffic, since its honest clients would
//!   be stranded behind a supernode that none of its neighbors will relay
//!   for (they keep it as their primary while it answers them). So a
//!   supernode flooding in its own name reaches no further than its first
//!   hop. Mailbox hand-overs and withdrawals for lost clients are bulk work
//!   a supernode does in its own name, so they are not counted as its own.
//!   A supernode that floods under other sources' names stays bounded by
//!   the supernode budget only (a relay cannot tell a forged source from a
//!   relayed one).
//! - The extra buckets are allocated only on links whose peer said it is
//!   a supernode (a few dozen per supernode), not on the millions of
//!   client links.

use serde::{Deserialize, Serialize};
use skyhop_protocol::envelope::BodyKind;
use skyhop_protocol::Message;

use super::{SimTime, SECS};

/// Tokens are counted in thousandths.
const MILLI: u64 = 1_000;

/// What a frame is, for budgeting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MessageClass {
    /// Chats, their acks and not-found answers.
    Chat,
    /// Hello, heartbeats, neighbor lookups, redirects, leaves, stale
    /// notices: link upkeep.
    Control,
    /// `Join`.
    Join,
    /// Chats and receipts offered to, answered or handed over by a mailbox.
    Mailbox,
    /// Location queries and replies.
    LocationQuery,
    /// Location records published or withdrawn, and datagrams.
    Publish,
    /// Trace probes and replies.
    Trace,
}

impl MessageClass {
    /// Every class, in name order.
    pub const ALL: [MessageClass; 7] = [
        MessageClass::Chat,
        MessageClass::Control,
        MessageClass::Join,
        MessageClass::Mailbox,
        MessageClass::LocationQuery,
        MessageClass::Publish,
        MessageClass::Trace,
    ];

    /// The snake_case name, as counters print it.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageClass::Chat => "chat",
            MessageClass::Control => "control",
            MessageClass::Join => "join",
            MessageClass::Mailbox => "mailbox",
            MessageClass::LocationQuery => "location_query",
            MessageClass::Publish => "publish",
            MessageClass::Trace => "trace",
        }
    }

    /// The class of `msg`.
    pub fn of(msg: &Message) -> MessageClass {
        match msg {
            Message::Join(_) => MessageClass::Join,
            Message::Publish(_) => MessageClass::Publish,
            Message::Routed(p) => MessageClass::of_routed(BodyKind::of(&p.body)),
            Message::Hello(_)
            | Message::Accept(_)
            | Message::Redirect(_)
            | Message::Leave(_)
            | Message::Heartbeat(_)
            | Message::HeartbeatAck(_)
            | Message::FindNeighbors(_)
            | Message::Neighbors(_)
            | Message::StaleLocation(_)
            | Message::DialBack(_)
            | Message::DialBackResult(_)
            | Message::Listed(_)
            | Message::WhoQuery(_)
            | Message::Listing(_) => MessageClass::Control,
        }
    }

    /// The class of a routed packet whose body is of `kind`: one function
    /// for decoded packets and for frames a relay forwards undecoded.
    pub fn of_routed(kind: BodyKind) -> MessageClass {
        match kind {
            BodyKind::Chat | BodyKind::ChatAck | BodyKind::NotFound => MessageClass::Chat,
            BodyKind::TraceProbe | BodyKind::TraceReply => MessageClass::Trace,
            BodyKind::LocationQuery
            | BodyKind::LocationReply
            | BodyKind::NameQuery
            | BodyKind::NameReply => MessageClass::LocationQuery,
            BodyKind::Publish | BodyKind::Withdraw | BodyKind::Datagram | BodyKind::NameClaim => {
                MessageClass::Publish
            }
            BodyKind::MailboxStore
            | BodyKind::MailboxStored
            | BodyKind::MailboxHandOver
            | BodyKind::MailboxTaken
            | BodyKind::ReceiptStore
            | BodyKind::ReceiptHandOver => MessageClass::Mailbox,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The bucket a supernode's own packets of this class are charged to,
    /// if they are: see the module's implementation notes.
    fn originated_index(self) -> Option<usize> {
        ORIGINATED_CLASSES.iter().position(|c| *c == self)
    }

    /// The counter name of frames a supernode originated over its own
    /// budget of this class.
    pub fn originated_str(self) -> &'static str {
        match self {
            MessageClass::Chat => "originated_chat",
            MessageClass::LocationQuery => "originated_location_query",
            MessageClass::Trace => "originated_trace",
            other => other.as_str(),
        }
    }
}

/// Classes with an own-traffic bucket on a supernode link.
const ORIGINATED_CLASSES: [MessageClass; 3] = [
    MessageClass::Chat,
    MessageClass::LocationQuery,
    MessageClass::Trace,
];

/// A sustained rate and a burst, in frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Frames a second, sustained.
    pub per_s: u32,
    /// Frames accepted at once after a quiet spell.
    pub burst: u32,
}

impl Rate {
    const fn new(per_s: u32, burst: u32) -> Rate {
        Rate { per_s, burst }
    }
}

/// What each linked peer may send. The defaults are far above what an
/// honest node sends (a person chats a few times a second at most; a
/// client sends a heartbeat every couple of seconds) and far below what a
/// flooder sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// Chats, acks and not-found answers.
    pub chat: Rate,
    /// Link upkeep (hello, heartbeats, neighbor lookups).
    pub control: Rate,
    /// `Join` requests.
    pub join: Rate,
    /// Chats offered to a mailbox, its answers and hand-overs.
    pub mailbox: Rate,
    /// Location queries and replies.
    pub location_query: Rate,
    /// Records published or withdrawn, datagrams.
    pub publish: Rate,
    /// Trace probes and replies.
    pub trace: Rate,
    /// How many times the budget a peer that said it is a supernode gets.
    pub supernode_factor: u32,
    /// Frames over budget a peer may send (refilled at one a second)
    /// before it is disconnected and refused.
    pub tolerance: u32,
    /// The share of each class's burst, in percent, that a newly linked
    /// peer starts with; the rest it earns at the class's rate. An
    /// identity costs nothing to make, so a fresh one gets little before
    /// a flood from it is cut, while a peer linked for a while (burst /
    /// rate seconds: 5 s for chats) has its whole burst. A `Hello` saying
    /// supernode gives what the peer relays the supernode burst at once;
    /// what it says in its own name starts at this share like a client's.
    /// An ordinary node paces what it sends to stay within a first burst
    /// (`crate::pacer`).
    pub first_burst_percent: u32,
}

impl Default for BudgetConfig {
    fn default() -> BudgetConfig {
        BudgetConfig {
            chat: Rate::new(100, 500),
            control: Rate::new(50, 200),
            join: Rate::new(5, 20),
            mailbox: Rate::new(20, 100),
            location_query: Rate::new(100, 500),
            publish: Rate::new(50, 250),
            trace: Rate::new(20, 100),
            supernode_factor: 32,
            tolerance: 100,
            first_burst_percent: 10,
        }
    }
}

impl BudgetConfig {
    /// The largest budget the configuration accepts, for every class: for
    /// benchmarks that measure what a relay hop costs, which one client
    /// streaming at full speed would otherwise measure the budget of.
    pub fn benchmark() -> BudgetConfig {
        let max = Rate::new(1_000_000, 1_000_000);
        BudgetConfig {
            chat: max,
            control: max,
            join: max,
            mailbox: max,
            location_query: max,
            publish: max,
            trace: max,
            supernode_factor: 1024,
            tolerance: 1_000_000,
            first_burst_percent: 100,
        }
    }

    /// What a newly linked peer may send of `class` at once: its share
    /// of the burst, at least one frame.
    pub(crate) fn first_burst(&self, class: MessageClass) -> u64 {
        let burst = u64::from(self.rate(class).burst);
        (burst * u64::from(self.first_burst_percent) / 100).max(1)
    }

    /// The rate of `class`.
    pub fn rate(&self, class: MessageClass) -> Rate {
        match class {
            MessageClass::Chat => self.chat,
            MessageClass::Control => self.control,
            MessageClass::Join => self.join,
            MessageClass::Mailbox => self.mailbox,
            MessageClass::LocationQuery => self.location_query,
            MessageClass::Publish => self.publish,
            MessageClass::Trace => self.trace,
        }
    }
}

/// One token bucket: thousandths of a token, and when it was last
/// refilled, in milliseconds since its peer linked (8 bytes: there is one
/// per class on every link, and a simulated world has millions of links).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    tokens: u32,
    refilled_ms: u32,
}

impl Bucket {
    /// A bucket holding `tokens`, as of the link's start.
    pub(crate) fn holding(tokens: u64) -> Bucket {
        Bucket {
            tokens: milli(tokens),
            refilled_ms: 0,
        }
    }

    /// Refills at `per_s` up to `burst` as of `now_ms`, then takes one
    /// token if there is one.
    pub(crate) fn take(&mut self, per_s: u64, burst: u64, now_ms: u32) -> bool {
        let elapsed = u64::from(now_ms.saturating_sub(self.refilled_ms));
        // per_s tokens a second = per_s thousandths a millisecond.
        let earned = elapsed.saturating_mul(per_s);
        let tokens = u64::from(self.tokens).saturating_add(earned);
        self.tokens = milli(burst).min(u32::try_from(tokens).unwrap_or(u32::MAX));
        self.refilled_ms = now_ms;
        if self.tokens >= MILLI_U32 {
            self.tokens -= MILLI_U32;
            true
        } else {
            false
        }
    }
}

impl Bucket {
    /// When, in milliseconds since its peer linked, refilling at `per_s`
    /// gives the bucket its next whole token (now, if it has one).
    pub(crate) fn next_token_ms(&self, per_s: u64) -> u64 {
        let missing = u64::from(MILLI_U32.saturating_sub(self.tokens));
        u64::from(self.refilled_ms) + missing.div_ceil(per_s.max(1))
    }
}

/// [`MILLI`] as the bucket stores it.
const MILLI_U32: u32 = MILLI as u32;

/// `tokens` in thousandths, saturated to what a bucket holds (4.29
/// million tokens, far above any burst that validation accepts for one
/// class of one peer unless scaled by the supernode factor).
fn milli(tokens: u64) -> u32 {
    u32::try_from(tokens.saturating_mul(MILLI)).unwrap_or(u32::MAX)
}

/// What a frame did to its sender's budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within budget.
    Within,
    /// Over budget: drop the frame.
    Over,
    /// Over budget once too often: drop the peer.
    Exhausted,
}

/// One peer's buckets.
#[derive(Clone, Debug)]
pub(crate) struct PeerBudget {
    /// When the peer linked: bucket times count from here.
    since: SimTime,
    buckets: [Bucket; MessageClass::ALL.len()],
    tolerance: Bucket,
    /// What a supernode peer sends in its own name, at a client's rates
    /// (indexed by [`MessageClass::originated_index`]); None on a link
    /// to a client, which speaks only for itself anyway.
    originated: Option<Box<[Bucket; ORIGINATED_CLASSES.len()]>>,
}

impl PeerBudget {
    /// Buckets for a peer linked at `now`, each holding the class's first
    /// burst ([`BudgetConfig::first_burst_percent`]).
    pub fn new(cfg: &BudgetConfig, now: SimTime) -> PeerBudget {
        PeerBudget {
            since: now,
            // Supernode links too start with a client's first burst: the
            // role is not known until the `Hello`.
            buckets: MessageClass::ALL.map(|c| Bucket::holding(cfg.first_burst(c))),
            tolerance: Bucket::holding(u64::from(cfg.tolerance)),
            originated: None,
        }
    }

    /// Fills every bucket to the supernode burst: called once, when the
    /// peer's `Hello` says it is a supernode, so that a supernode's first
    /// burst (records handed over to a newcomer) is not cut at a client's.
    pub fn promote_to_supernode(&mut self, cfg: &BudgetConfig) {
        let factor = u64::from(cfg.supernode_factor);
        for (bucket, class) in self.buckets.iter_mut().zip(MessageClass::ALL) {
            bucket.tokens = milli(u64::from(cfg.rate(class).burst) * factor);
        }
        // What it says in its own name starts at a client's first burst,
        // refilled from the link's start: a `Hello` costs nothing to send.
        self.originated = Some(Box::new(
            ORIGINATED_CLASSES.map(|c| Bucket::holding(cfg.first_burst(c))),
        ));
    }

    /// Charges one routed frame of `class` that a supernode peer sent in
    /// its own name at `now` to its own-traffic bucket, at a client's
    /// rate; call before [`PeerBudget::charge`], which charges the frame
    /// to the link's supernode budget as well. False if the frame is over
    /// that budget: drop it, but the tolerance is not spent (a supernode
    /// link is never dropped for its own traffic; see the module's notes).
    /// True when the class has no such bucket or the peer is not a
    /// supernode.
    pub fn charge_originated(
        &mut self,
        cfg: &BudgetConfig,
        class: MessageClass,
        now: SimTime,
    ) -> bool {
        let (Some(own), Some(i)) = (self.originated.as_mut(), class.originated_index()) else {
            return true;
        };
        let rate = cfg.rate(class);
        let now_ms = ms_since(self.since, now);
        own[i].take(u64::from(rate.per_s), u64::from(rate.burst), now_ms)
    }

    /// Charges one frame of `class` at `now`; `supernode` scales the budget.
    pub fn charge(
        &mut self,
        cfg: &BudgetConfig,
        class: MessageClass,
        supernode: bool,
        now: SimTime,
    ) -> Verdict {
        let factor = if supernode {
            u64::from(cfg.supernode_factor)
        } else {
            1
        };
        let rate = cfg.rate(class);
        let per_s = u64::from(rate.per_s) * factor;
        let burst = u64::from(rate.burst) * factor;
        let now_ms = ms_since(self.since, now);
        if self.buckets[class.index()].take(per_s, burst, now_ms) {
            return Verdict::Within;
        }
        let tolerance = u64::from(cfg.tolerance);
        if self.tolerance.take(1, tolerance, now_ms) {
            Verdict::Over
        } else {
            Verdict::Exhausted
        }
    }
}

/// Milliseconds from `since` to `now`, as buckets count them. Links
/// outlive 49 days of milliseconds only in theory; after that the buckets
/// stop refilling, which errs on the side of the node.
fn ms_since(since: SimTime, now: SimTime) -> u32 {
    u32::try_from(now.saturating_sub(since) / (SECS / MILLI)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use skyhop_protocol::{Heartbeat, Join};

    fn join() -> Message {
        Message::Join(Join { request_id: 1 })
    }

    #[test]
    fn a_burst_passes_then_the_rate_holds_then_the_peer_is_exhausted() {
        let cfg = BudgetConfig {
            join: Rate::new(2, 3),
            tolerance: 2,
            first_burst_percent: 100,
            ..BudgetConfig::default()
        };
        let class = MessageClass::of(&join());
        assert_eq!(class, MessageClass::Join);
        let mut b = PeerBudget::new(&cfg, 0);
        for _ in 0..3 {
            assert_eq!(b.charge(&cfg, class, false, 0), Verdict::Within);
        }
        assert_eq!(b.charge(&cfg, class, false, 0), Verdict::Over);
        // Half a second later one more token has come (2/s).
        assert_eq!(b.charge(&cfg, class, false, SECS / 2), Verdict::Within);
        assert_eq!(b.charge(&cfg, class, false, SECS / 2), Verdict::Over);
        assert_eq!(b.charge(&cfg, class, false, SECS / 2), Verdict::Exhausted);
    }

    #[test]
    fn a_new_peer_starts_with_a_tenth_of_the_burst_and_earns_the_rest_even_one_saying_supernode() {
        let cfg = BudgetConfig {
            chat: Rate::new(100, 500),
            tolerance: 1_000,
            ..BudgetConfig::default()
        };
        let at = 7 * SECS;
        let mut b = PeerBudget::new(&cfg, at);
        let within = |b: &mut PeerBudget, now| {
            (0..1_000)
                .filter(|_| b.charge(&cfg, MessageClass::Chat, false, now) == Verdict::Within)
                .count()
        };
        assert_eq!(within(&mut b, at), 50);
        // One second on, the rate has added 100.
        assert_eq!(within(&mut b, at + SECS), 100);
        // Quiet for ten seconds, it holds the whole burst.
        assert_eq!(within(&mut b, at + 11 * SECS), 500);
        // A peer whose hello says supernode: what it relays gets the
        // supernode burst at once, what it says in its own name starts
        // small too.
        let mut sn = PeerBudget::new(&cfg, at);
        sn.promote_to_supernode(&cfg);
        let own = (0..1_000)
            .filter(|_| sn.charge_originated(&cfg, MessageClass::Chat, at))
            .count();
        assert_eq!(own, 50);
        let relayed = (0..20_000)
            .filter(|_| sn.charge(&cfg, MessageClass::Chat, true, at) == Verdict::Within)
            .count();
        assert_eq!(relayed, 500 * 32);
    }

    #[test]
    fn a_links_budget_stays_small() {
        // Seven buckets on every link of a simulated million nodes, and
        // a pointer to a supernode's own-traffic buckets.
        assert!(std::mem::size_of::<PeerBudget>() <= 80);
    }

    #[test]
    fn classes_have_separate_buckets_and_supernodes_a_larger_one() {
        let cfg = BudgetConfig {
            join: Rate::new(1, 1),
            control: Rate::new(1, 1),
            supernode_factor: 10,
            ..BudgetConfig::default()
        };
        let hb = Message::Heartbeat(Heartbeat { nonce: 1 });
        let mut b = PeerBudget::new(&cfg, 0);
        assert_eq!(
            b.charge(&cfg, MessageClass::of(&join()), false, 0),
            Verdict::Within
        );
        assert_eq!(
            b.charge(&cfg, MessageClass::of(&hb), false, 0),
            Verdict::Within
        );
        assert_eq!(b.charge(&cfg, MessageClass::Join, false, 0), Verdict::Over);
        // A supernode refills ten times as fast.
        let mut sn = PeerBudget::new(&cfg, 0);
        sn.charge(&cfg, MessageClass::Join, true, 0);
        for _ in 0..10 {
            assert_eq!(
                sn.charge(&cfg, MessageClass::Join, true, SECS),
                Verdict::Within
            );
        }
    }

    #[test]
    fn a_supernodes_own_chats_meet_a_clients_budget_and_its_relayed_ones_do_not() {
        let cfg = BudgetConfig {
            chat: Rate::new(10, 10),
            supernode_factor: 100,
            tolerance: 1,
            first_burst_percent: 100,
            ..BudgetConfig::default()
        };
        let mut sn = PeerBudget::new(&cfg, 0);
        // Before the hello says it is a supernode, nothing is its own.
        assert!(sn.charge_originated(&cfg, MessageClass::Chat, 0));
        sn.promote_to_supernode(&cfg);
        for _ in 0..500 {
            assert_eq!(
                sn.charge(&cfg, MessageClass::Chat, true, 0),
                Verdict::Within
            );
        }
        for _ in 0..10 {
            assert!(sn.charge_originated(&cfg, MessageClass::Chat, 0));
        }
        // Over its own budget, again and again, without spending the
        // tolerance: what it relays is still within, and only going over
        // the supernode budget spends the tolerance.
        for _ in 0..1_000 {
            assert!(!sn.charge_originated(&cfg, MessageClass::Chat, 0));
        }
        for _ in 0..500 {
            assert_eq!(
                sn.charge(&cfg, MessageClass::Chat, true, 0),
                Verdict::Within
            );
        }
        assert_eq!(sn.charge(&cfg, MessageClass::Chat, true, 0), Verdict::Over);
        // A tenth of a second later one more of its own passes (10/s).
        assert!(sn.charge_originated(&cfg, MessageClass::Chat, SECS / 10));
        assert!(!sn.charge_originated(&cfg, MessageClass::Chat, SECS / 10));
        // Bulk work in its own name (mailbox hand-overs) is not capped so.
        assert!(sn.charge_originated(&cfg, MessageClass::Mailbox, 0));
    }
}
