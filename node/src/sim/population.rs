//! The population: every node slot of the world, who is up, in which role
//! and incarnation, and the churn that starts and stops them (first starts,
//! session ends, supernode kills, restart storms). It owns the core
//! [`Node`]s and the churn RNG stream.
//!
//! It decides who starts, stops or restarts and when; the world schedules
//! those times, tells the network and the recorder, and drains the nodes.
//!
//! # Implementation notes
//! - Nodes live in a `Vec` indexed by node index (a "slot"); a restarted node
//!   keeps its slot and identity and gets a new incarnation number, which
//!   invalidates the events scheduled for the old one. The id-to-slot map is
//!   a `HashMap` only ever queried, never iterated.
//! - Live supernodes and ordinary nodes are kept in two pools for uniform
//!   picks in O(1); a pool's order depends on the history of removals, so
//!   whatever picks a subset sorts it first.
//! - Every churn draw comes from one stream, in event order: initial start
//!   times, bootstrap picks, session lengths, graceful-or-crash, kill and
//!   storm picks.

use std::collections::HashMap;
use std::sync::Arc;

use rand::rngs::Xoshiro256PlusPlus;
use rand::RngExt;
use skyhop_protocol::{Identity, NodeId, Role, SignatureMemo};

use skyhop_core::{partial_shuffle, BootstrapPeer, HostCacheEntry, Node, NodeConfig, SimTime};

use super::config::{self, SimConfig};
use super::dist::{self, secs};
use super::metrics::NodeCounts;

/// A node index's state across incarnations.
struct Slot {
    /// The node's id (the same in every incarnation).
    id: NodeId,
    /// The role it starts in (an auto-role node may change it; see
    /// `promoted`).
    role: Role,
    /// Whether an ordinary node has promoted itself to supernode.
    promoted: bool,
    /// Incarnation: 0 before the first start, then one more per start.
    inc: u32,
    /// The running node, if up.
    node: Option<Box<Node>>,
    /// The key pair made with the slot, until its first start takes it
    /// (a restart derives it again: key generation is costly at 10^6 nodes).
    identity: Option<Identity>,
    /// When the current incarnation started.
    started_at: SimTime,
    /// Since when the node is attached (a routable ordinary node, or a
    /// supernode), if it is.
    attached_at: Option<SimTime>,
    /// Whether the current incarnation has attached once.
    joined: bool,
    /// The supernodes given at the first start, kept for restarts.
    bootstrap: Vec<BootstrapPeer>,
    /// The host cache of the last incarnation, for the next.
    saved_host_cache: Vec<HostCacheEntry>,
    /// When each incarnation went away.
    departures: Vec<SimTime>,
    /// Position in its current role's pool, or [`NOT_IN_POOL`].
    pool_pos: u32,
    /// Position in the users' pool, or [`NOT_IN_POOL`].
    user_pos: u32,
}

impl Slot {
    /// The role it has now.
    fn current_role(&self) -> Role {
        if self.promoted {
            Role::Supernode
        } else {
            self.role
        }
    }
}

/// Where a pool keeps a slot's position.
type PosOf = fn(&mut Slot) -> &mut u32;

fn role_pos(sl: &mut Slot) -> &mut u32 {
    &mut sl.pool_pos
}

fn user_pos(sl: &mut Slot) -> &mut u32 {
    &mut sl.user_pos
}

/// Live nodes of one role, for uniform picks: a vector with positions.
#[derive(Default)]
struct Pool {
    /// The live slots, in no meaningful order.
    members: Vec<u32>,
}

const NOT_IN_POOL: u32 = u32::MAX;

impl Pool {
    fn insert(&mut self, slots: &mut [Slot], s: u32, pos_of: PosOf) {
        *pos_of(&mut slots[s as usize]) = self.members.len() as u32;
        self.members.push(s);
    }

    fn remove(&mut self, slots: &mut [Slot], s: u32, pos_of: PosOf) {
        let pos = *pos_of(&mut slots[s as usize]);
        if pos == NOT_IN_POOL {
            return;
        }
        let last = self.members.pop().expect("a member is in the pool");
        if last != s {
            self.members[pos as usize] = last;
            *pos_of(&mut slots[last as usize]) = pos;
        }
        *pos_of(&mut slots[s as usize]) = NOT_IN_POOL;
    }
}

/// A node that has just started.
pub struct Started {
    /// Its role.
    pub role: Role,
    /// Its new incarnation.
    pub inc: u32,
    /// When its session ends (ordinary nodes under churn).
    pub session_end: Option<SimTime>,
}

/// Why a node goes away, as the node counts tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Departure {
    /// An ordinary node's session ended with a `Leave`.
    Left,
    /// An ordinary node's session ended in a crash.
    Crashed,
    /// A supernode kill crashed it.
    Killed,
    /// A supernode handed over and left.
    SupernodeLeft,
    /// A restart storm takes it down for a while.
    Restarting,
}

/// A node that has just gone away.
pub struct Gone {
    /// The node as it was, for its counters.
    pub node: Box<Node>,
    /// The incarnation that ended.
    pub inc: u32,
    /// An ordinary node that never attached in that incarnation.
    pub never_attached: bool,
}

/// One restart of a storm.
pub struct Restart {
    /// When the node goes down.
    pub at: SimTime,
    /// The node.
    pub slot: u32,
    /// Its incarnation when the storm picked it.
    pub inc: u32,
}

/// Every slot of the world; see the module notes.
pub struct Population {
    /// The world seed, from which identities and node RNG seeds derive.
    seed: u64,
    /// The scenario's node tunables; role, bootstrap and addresses are set
    /// per node.
    node_cfg: NodeConfig,
    /// The scenario's population settings.
    cfg: config::Population,
    /// The scenario's churn settings.
    churn: config::Churn,
    /// The churn RNG stream.
    rng: Xoshiro256PlusPlus,
    /// Every slot, by index.
    slots: Vec<Slot>,
    /// Slot by node id (queried, never iterated).
    by_id: HashMap<NodeId, u32>,
    /// Live supernodes.
    sns: Pool,
    /// Live ordinary nodes.
    ons: Pool,
    /// Live nodes that started as ordinary nodes (the users), whatever
    /// their role now; the same as `ons` without auto role.
    users: Pool,
    /// Signed statements verified so far, shared by every node and the
    /// verifier thread.
    memo: Arc<SignatureMemo>,
    /// Starts, leaves, crashes, kills and restarts.
    counts: NodeCounts,
    /// Users down for a restart, to come back (a restart storm's
    /// downtime): who offline messages are written to.
    away: Vec<u32>,
    /// The name each named slot claims (the names workload).
    names: std::collections::BTreeMap<u32, String>,
}

/// The identities of node indices `0..count`, made on every core: key
/// generation is ~20 µs a node, 20 s of one core at 10^6 nodes.
pub fn identities(seed: u64, count: u64) -> Vec<Identity> {
    let make = |range: std::ops::Range<u64>| -> Vec<Identity> {
        range.map(|i| dist::node_identity(seed, i)).collect()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let chunk = count.div_ceil(threads.max(1)).max(1);
    std::thread::scope(|scope| {
        let parts: Vec<_> = (0..count)
            .step_by(chunk as usize)
            .map(|start| scope.spawn(move || make(start..(start + chunk).min(count))))
            .collect();
        parts
            .into_iter()
            .flat_map(|h| h.join().expect("key generation does not panic"))
            .collect()
    })
}

impl Population {
    /// An empty population for `cfg`, its nodes sharing `memo`.
    pub fn new(cfg: &SimConfig, seed: u64, memo: Arc<SignatureMemo>) -> Population {
        Population {
            seed,
            node_cfg: cfg.node.clone(),
            cfg: cfg.population.clone(),
            churn: cfg.churn.clone(),
            rng: dist::stream_rng(seed, dist::stream::CHURN),
            slots: Vec::new(),
            by_id: HashMap::new(),
            sns: Pool::default(),
            ons: Pool::default(),
            users: Pool::default(),
            away: Vec::new(),
            names: std::collections::BTreeMap::new(),
            memo,
            counts: NodeCounts::default(),
        }
    }

    /// A new slot of `role`, with its identity if already made.
    pub fn add(&mut self, role: Role, identity: Option<Identity>) -> u32 {
        let index = self.slots.len() as u64;
        let identity = identity.unwrap_or_else(|| dist::node_identity(self.seed, index));
        let id = identity.id();
        let s = u32::try_from(index).expect("fewer than 2^32 nodes");
        self.by_id.insert(id, s);
        self.slots.push(Slot {
            id,
            role,
            promoted: false,
            inc: 0,
            node: None,
            identity: Some(identity),
            started_at: 0,
            attached_at: None,
            joined: false,
            bootstrap: Vec::new(),
            saved_host_cache: Vec::new(),
            departures: Vec::new(),
            pool_pos: NOT_IN_POOL,
            user_pos: NOT_IN_POOL,
        });
        match role {
            Role::Supernode => self.counts.supernodes += 1,
            Role::Ordinary => self.counts.ordinary += 1,
        }
        s
    }

    /// When an initial node of `role` first starts: supernodes spread over
    /// the start, ordinary nodes over their arrival window.
    pub fn first_start_at(&mut self, role: Role) -> SimTime {
        let p = &self.cfg;
        match role {
            Role::Supernode => {
                (secs(p.sn_start_spread_s) as f64 * self.rng.random::<f64>()) as SimTime
            }
            Role::Ordinary => {
                secs(p.on_start_at_s)
                    + (secs(p.on_start_spread_s) as f64 * self.rng.random::<f64>()) as SimTime
            }
        }
    }

    /// Starts the node of `slot` at `now` (a first start or a restart),
    /// `reachable` or behind a NAT; None if it is already up, an error if
    /// the core refuses its configuration. A node always starts in the role
    /// it was made with; only ordinary nodes pick their role themselves
    /// (the initial supernodes are the operator's seeds).
    pub fn start(
        &mut self,
        slot: u32,
        now: SimTime,
        reachable: bool,
    ) -> Result<Option<Started>, String> {
        if self.slots[slot as usize].node.is_some() {
            return Ok(None);
        }
        let role = self.slots[slot as usize].role;
        if self.slots[slot as usize].inc == 0 {
            self.slots[slot as usize].bootstrap = self.pick_bootstrap(slot);
        }
        if let Some(i) = self.away.iter().position(|s| *s == slot) {
            self.away.swap_remove(i);
        }
        let sl = &mut self.slots[slot as usize];
        sl.inc += 1;
        let mut cfg = self.node_cfg.clone();
        cfg.role = role;
        cfg.auto_role.enabled &= role == Role::Ordinary;
        cfg.bootstrap = sl.bootstrap.clone();
        cfg.listen_addrs = vec![format!("sim:{slot}")];
        cfg.name = self.names.get(&slot).cloned();
        let identity = sl
            .identity
            .take()
            .unwrap_or_else(|| dist::node_identity(self.seed, u64::from(slot)));
        let rng_seed = dist::node_rng_seed(self.seed, u64::from(slot), u64::from(sl.inc));
        let mut node = Node::new(cfg, identity, rng_seed, now, Arc::clone(&self.memo))
            .map_err(|e| format!("node configuration refused: {e}"))?;
        node.restore_host_cache(std::mem::take(&mut sl.saved_host_cache));
        node.set_reachable(reachable);
        sl.node = Some(Box::new(node));
        sl.started_at = now;
        sl.attached_at = None;
        sl.joined = false;
        let inc = sl.inc;
        let mut session_end = None;
        match role {
            Role::Supernode => self.sns.insert(&mut self.slots, slot, role_pos),
            Role::Ordinary => {
                self.ons.insert(&mut self.slots, slot, role_pos);
                self.users.insert(&mut self.slots, slot, user_pos);
                if let Some(session) = &self.churn.session {
                    let from = now.max(secs(self.churn.start_s));
                    let len = dist::session(&mut self.rng, session);
                    session_end = Some(from.saturating_add(len));
                }
            }
        }
        Ok(Some(Started {
            role,
            inc,
            session_end,
        }))
    }

    /// First start: bootstrap from live supernodes, kept for restarts.
    fn pick_bootstrap(&mut self, slot: u32) -> Vec<BootstrapPeer> {
        let want = self.cfg.bootstrap_peers as usize;
        let mut boot = Vec::new();
        let live = self.sns.members.len();
        for _ in 0..want.min(live) * 2 {
            let pick = self.sns.members[self.rng.random_range(0..live)];
            let id = self.slots[pick as usize].id;
            if pick != slot && !boot.iter().any(|b: &BootstrapPeer| b.id == Some(id)) {
                boot.push(BootstrapPeer {
                    id: Some(id),
                    addrs: vec![format!("sim:{pick}")],
                });
            }
            if boot.len() >= want {
                break;
            }
        }
        boot
    }

    /// Removes the node of `slot` at once (None if it is down); its host
    /// cache is kept for a restart.
    pub fn stop(&mut self, slot: u32, now: SimTime, why: Departure) -> Option<Gone> {
        let sl = &mut self.slots[slot as usize];
        let node = sl.node.take()?;
        let c = &mut self.counts;
        match why {
            Departure::Left => c.left += 1,
            Departure::Crashed => c.crashed += 1,
            Departure::Killed => c.supernodes_killed += 1,
            Departure::SupernodeLeft => c.supernodes_left += 1,
            Departure::Restarting => {
                c.restarts += 1;
                self.away.push(slot);
            }
        }
        sl.saved_host_cache = node.host_cache();
        sl.attached_at = None;
        sl.departures.push(now);
        let inc = sl.inc;
        let never_attached = sl.role == Role::Ordinary && !sl.joined;
        let current = sl.current_role();
        sl.promoted = false;
        match current {
            Role::Supernode => self.sns.remove(&mut self.slots, slot, role_pos),
            Role::Ordinary => self.ons.remove(&mut self.slots, slot, role_pos),
        }
        self.users.remove(&mut self.slots, slot, user_pos);
        Some(Gone {
            node,
            inc,
            never_attached,
        })
    }

    /// Whether a departing ordinary node leaves gracefully (else it crashes).
    pub fn draw_graceful(&mut self) -> bool {
        self.rng.random::<f64>() < self.churn.graceful_fraction
    }

    /// The live supernodes that kill number `index` crashes.
    pub fn pick_kill(&mut self, index: usize) -> Vec<u32> {
        let fraction = self.churn.sn_kills[index].fraction;
        let live = self.sns.members.len();
        let k = ((live as f64) * fraction).round() as usize;
        let mut pick = self.sns.members.clone();
        pick.sort_unstable();
        partial_shuffle(&mut pick, k, &mut self.rng);
        pick.truncate(k);
        pick
    }

    /// The restarts of storm number `index`, beginning at `now`, in the
    /// order they were drawn; and the storm's downtime.
    pub fn pick_storm(&mut self, index: usize, now: SimTime) -> (Vec<Restart>, SimTime) {
        let storm = &self.churn.restart_storms[index];
        let mut pick = self.ons.members.clone();
        pick.sort_unstable();
        let k = ((pick.len() as f64) * storm.fraction).round() as usize;
        partial_shuffle(&mut pick, k, &mut self.rng);
        pick.truncate(k);
        let window = secs(storm.window_s);
        let downtime = secs(storm.downtime_s);
        let restarts = pick
            .into_iter()
            .map(|slot| Restart {
                at: now + (window as f64 * self.rng.random::<f64>()) as SimTime,
                slot,
                inc: self.slots[slot as usize].inc,
            })
            .collect();
        (restarts, downtime)
    }

    /// Node counts, with the live nodes at the end.
    pub fn final_counts(&self) -> NodeCounts {
        let mut counts = self.counts.clone();
        for (_, role, _) in self.running() {
            match role {
                Role::Supernode => counts.live_supernodes_end += 1,
                Role::Ordinary => counts.live_ordinary_end += 1,
            }
        }
        counts
    }

    /// Records that the node of `slot` attached at `now`; the time since its
    /// start if this is its incarnation's first attachment.
    pub fn attached(&mut self, slot: u32, now: SimTime) -> Option<SimTime> {
        let sl = &mut self.slots[slot as usize];
        sl.attached_at = Some(now);
        if sl.joined {
            return None;
        }
        sl.joined = true;
        Some(now - sl.started_at)
    }

    /// Records that the node of `slot` changed its role to `role` at `now`
    /// (auto role): it moves to the other pool.
    pub fn role_changed(&mut self, slot: u32, role: Role) {
        let sl = &mut self.slots[slot as usize];
        if sl.node.is_none() || sl.current_role() == role {
            return;
        }
        sl.promoted = role == Role::Supernode && sl.role == Role::Ordinary;
        match role {
            Role::Supernode => {
                self.counts.promotions += 1;
                self.ons.remove(&mut self.slots, slot, role_pos);
                self.sns.insert(&mut self.slots, slot, role_pos);
            }
            Role::Ordinary => {
                self.counts.demotions += 1;
                self.sns.remove(&mut self.slots, slot, role_pos);
                self.ons.insert(&mut self.slots, slot, role_pos);
            }
        }
    }

    /// Records that the node of `slot` lost its supernode.
    pub fn detached(&mut self, slot: u32) {
        self.slots[slot as usize].attached_at = None;
    }

    /// Since when the node of `slot` is attached.
    pub fn attached_at(&self, slot: u32) -> Option<SimTime> {
        self.slots[slot as usize].attached_at
    }

    /// Users down for a restart, who will come back.
    pub fn away(&self) -> &[u32] {
        &self.away
    }

    /// Whether any incarnation of `slot` went away within `[from, to]`.
    pub fn departed_within(&self, slot: u32, from: SimTime, to: SimTime) -> bool {
        self.slots[slot as usize]
            .departures
            .iter()
            .any(|t| *t >= from && *t <= to)
    }

    /// The node id of `slot`.
    pub fn id(&self, slot: u32) -> NodeId {
        self.slots[slot as usize].id
    }

    /// The slot of node `id`.
    pub fn slot_of(&self, id: &NodeId) -> Option<u32> {
        self.by_id.get(id).copied()
    }

    /// The current incarnation of `slot`.
    pub fn inc(&self, slot: u32) -> u32 {
        self.slots[slot as usize].inc
    }

    /// Whether incarnation `inc` of `slot` is up.
    pub fn is_up(&self, slot: u32, inc: u32) -> bool {
        let sl = &self.slots[slot as usize];
        sl.inc == inc && sl.node.is_some()
    }

    /// The node of `slot`, if up.
    pub fn node(&self, slot: u32) -> Option<&Node> {
        self.slots[slot as usize].node.as_deref()
    }

    /// The node of `slot`, if up.
    pub fn node_mut(&mut self, slot: u32) -> Option<&mut Node> {
        self.slots[slot as usize].node.as_deref_mut()
    }

    /// Whether the node of `slot` is up and attached (shown online).
    pub fn online(&self, slot: u32) -> bool {
        self.node(slot).is_some_and(|n| n.is_routable())
    }

    /// Live supernodes, in no meaningful order.
    pub fn supernodes(&self) -> &[u32] {
        &self.sns.members
    }

    /// Makes `slot` claim `name` from its next start on.
    pub fn set_name(&mut self, slot: u32, name: String) {
        self.names.insert(slot, name);
    }

    /// Live ordinary nodes, in no meaningful order.
    pub fn ordinary(&self) -> &[u32] {
        &self.ons.members
    }

    /// Live users: nodes started as ordinary nodes, promoted or not, in no
    /// meaningful order.
    pub fn users(&self) -> &[u32] {
        &self.users.members
    }

    /// The running nodes, in slot order.
    pub fn running(&self) -> impl Iterator<Item = (u32, Role, &Node)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, sl)| Some((i as u32, sl.current_role(), sl.node.as_deref()?)))
    }
}
