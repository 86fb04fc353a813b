//! The discrete-event world: the event queue and the loop, which dispatches
//! each event to the parts that own its state, and the one function that
//! drains a node's outputs.
//!
//! The parts, each in its own file, never call one another: the workload,
//! the recorder and the invariants read the population, the recorder reads
//! the invariant tally at the end, and the world does the rest:
//! - [`Population`]: the node slots, who is up, and churn;
//! - [`Network`]: links, latency, loss, partitions;
//! - [`Workload`]: who chats with whom and when;
//! - [`Recorder`]: what the metrics count;
//! - [`Invariants`]: what a run must never do;
//! - [`Verifier`]: signature checks of frames in flight, on the second core.
//!
//! # Implementation notes
//! - One event queue ordered by (time, sequence number): two events at the
//!   same microsecond run in the order they were scheduled, so a run is a
//!   pure function of the seed and the scenario. It is a calendar queue
//!   (`queue.rs`), which pops in the same order as a binary heap. The order
//!   in which a handler schedules events is therefore part of the output:
//!   keep it when moving code.
//! - Each node's wake-up is scheduled once per distinct deadline: a wake
//!   event whose time no longer matches the node's deadline is stale and
//!   skipped, which keeps the queue proportional to the nodes and frames in
//!   flight.
//! - Every input to a node is followed by [`World::drain`], which takes the
//!   node's outputs through its one door (`poll_output`) until none is left
//!   and then schedules its next wake-up.

mod churn;
mod wire;
mod workload;

use std::sync::Arc;

use skyhop_protocol::{Identity, Role, SignatureMemo};

use skyhop_core::{Action, Event, Output, SimTime, SECS};

use super::adversary::Adversary;
use super::config::SimConfig;
use super::cut::CutWatch;
use super::demand::Demand;
use super::dist::secs;
use super::event::Ev;
use super::handover::Handovers;
use super::invariants::Invariants;
use super::metrics::{round3, FailedChat, Metrics, Violation};
use super::names::Names;
use super::net::{self, Arrival, Network};
use super::population::{identities, Departure, Population};
use super::queue::{Entry, EventQueue};
use super::recorder::{Recorder, RunEnd};
use super::verifier::Verifier;
use super::workload::Workload;

/// Progress reports to the driver (for a progress bar).
pub trait Progress {
    /// Simulated time reached, microseconds.
    fn at(&mut self, now: SimTime);
}

impl Progress for () {
    fn at(&mut self, _now: SimTime) {}
}

/// The world; see the module doc.
pub struct World {
    /// The scenario.
    cfg: SimConfig,
    /// The world seed.
    seed: u64,
    /// The simulated clock.
    now: SimTime,
    /// When the run ends.
    end: SimTime,
    /// Events to come.
    queue: EventQueue<Ev>,
    /// Sequence number of the last event scheduled (the tie-breaker).
    seq: u64,
    /// Events processed.
    processed: u64,
    /// Events processed, by [`Ev::index`].
    by_kind: [u64; Ev::NAMES.len()],
    /// The first invariant violation, which stops the run.
    violation: Option<Violation>,
    /// Each slot's scheduled wake-up, if any.
    wake_at: Vec<Option<SimTime>>,
    /// The nodes and churn.
    pop: Population,
    /// The network model.
    net: Network,
    /// The chat workload.
    work: Workload,
    /// The measurements.
    rec: Recorder,
    /// The invariant checks.
    inv: Invariants,
    /// Signature checks of frames in flight.
    verifier: Verifier,
    /// The hostile nodes, if the scenario has any.
    adv: Adversary,
    /// Chats across partitions and the recovery after them.
    cut: CutWatch,
    /// The names workload, if the scenario has one.
    names: Names,
    /// Flash crowds and the daily cycle.
    demand: Demand,
    /// Where the records of supernodes that hand over go.
    handovers: Handovers,
    /// The encoding buffer of `transmit`.
    scratch: Vec<u8>,
}

impl World {
    /// A world for `cfg` seeded by `seed`, with every initial node scheduled.
    pub fn new(cfg: SimConfig, seed: u64) -> World {
        let memo = Arc::new(SignatureMemo::default());
        let mut w = World {
            seed,
            now: 0,
            end: secs(cfg.duration_s),
            queue: EventQueue::default(),
            seq: 0,
            processed: 0,
            by_kind: [0; Ev::NAMES.len()],
            violation: None,
            wake_at: Vec::new(),
            pop: Population::new(&cfg, seed, Arc::clone(&memo)),
            net: Network::new(&cfg.network, cfg.population.nat_fraction, seed),
            work: Workload::new(&cfg, seed),
            rec: Recorder::new(secs(cfg.warmup_s)),
            inv: Invariants::new(&cfg, seed),
            verifier: Verifier::spawn(memo),
            adv: Adversary::new(&cfg, seed),
            cut: CutWatch::new(&cfg),
            names: Names::new(cfg.names.clone(), seed),
            demand: Demand::new(&cfg, seed),
            handovers: Handovers::new(&cfg),
            scratch: Vec::with_capacity(1024),
            cfg,
        };
        let p = w.cfg.population.clone();
        let total = u64::from(p.supernodes) + u64::from(p.ordinary);
        let mut made = identities(seed, total).into_iter();
        for (role, count) in [
            (Role::Supernode, p.supernodes),
            (Role::Ordinary, p.ordinary),
        ] {
            for _ in 0..count {
                let slot = w.new_slot(role, made.next());
                if role == Role::Ordinary {
                    if let Some(name) = w.names.name_for(slot) {
                        w.pop.set_name(slot, name);
                    }
                }
                let at = w.pop.first_start_at(role);
                w.push(at, Ev::Start { slot });
            }
        }
        for index in 0..w.cfg.churn.sn_kills.len() {
            let at = secs(w.cfg.churn.sn_kills[index].at_s);
            w.push(at, Ev::SnKill { index });
        }
        for index in 0..w.cfg.churn.restart_storms.len() {
            let at = secs(w.cfg.churn.restart_storms[index].at_s);
            w.push(at, Ev::Storm { index });
        }
        for at in w.net.topology_changes() {
            w.push(at, Ev::Topology);
        }
        if let Some(at) = w.work.start() {
            w.push(at, Ev::Chat);
        }
        if let Some(at) = w.names.first_lookup() {
            w.push(at, Ev::NameLookup);
        }
        let interval = secs(w.cfg.sample_interval_s);
        w.push(interval, Ev::Sample);
        let workload_start = w.work.start().unwrap_or(secs(w.cfg.warmup_s));
        if let Some(at) = w.adv.flood_start(workload_start) {
            w.push(at, Ev::Flood);
        }
        w.schedule_demand();
        w
    }

    /// A new node slot of `role`, with its identity if already made.
    fn new_slot(&mut self, role: Role, identity: Option<Identity>) -> u32 {
        let slot = self.pop.add(role, identity);
        if self.net.add_slot(slot, role == Role::Ordinary) {
            self.rec.behind_nat();
        }
        self.inv.add_slot();
        self.wake_at.push(None);
        slot
    }

    fn push(&mut self, at: SimTime, ev: Ev) {
        self.seq += 1;
        self.queue.push(at, self.seq, ev);
    }

    fn fail(&mut self, what: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                time_s: round3(self.now as f64 / SECS as f64),
                event: self.processed,
                what,
            });
        }
    }

    /// Runs to the end (or the first violation) and returns the metrics.
    pub fn run(mut self, progress: &mut dyn Progress) -> Metrics {
        while let Some(next) = self.queue.peek_time() {
            if next > self.end || self.violation.is_some() {
                break;
            }
            let Some(Entry { at, item: ev, .. }) = self.queue.pop() else {
                break;
            };
            self.now = at;
            self.processed += 1;
            if self.processed > self.cfg.max_events {
                self.fail(format!(
                    "event budget of {} exhausted: livelock?",
                    self.cfg.max_events
                ));
                break;
            }
            self.by_kind[ev.index()] += 1;
            if matches!(ev, Ev::Sample) {
                progress.at(at);
            }
            self.handle(ev);
        }
        if self.violation.is_none() {
            self.now = self.end;
        }
        self.finish()
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Start { slot } => self.start(slot),
            Ev::Wake { slot, inc } => {
                if self.pop.inc(slot) != inc || self.wake_at[slot as usize] != Some(now) {
                    // Counted as a wake by the loop; it is a stale one.
                    self.by_kind[Ev::WAKE] -= 1;
                    self.by_kind[Ev::WAKE_STALE] += 1;
                    return;
                }
                self.wake_at[slot as usize] = None;
                if let Some(node) = self.pop.node_mut(slot) {
                    if node.poll_timeout().is_some_and(|t| t <= now) {
                        node.handle_timeout(now);
                    }
                    self.drain(slot);
                }
            }
            Ev::Frame {
                from,
                to,
                epoch,
                msg,
            } => match self.net.arrive(now, from, to, epoch) {
                Arrival::Cut => self.rec.dropped_partition(),
                Arrival::Closed => self.rec.dropped_at_arrival(),
                Arrival::Open => {
                    let from_id = self.pop.id(from);
                    match self.pop.node_mut(to) {
                        Some(node) => {
                            node.handle_message(now, from_id, *msg);
                            self.drain(to);
                        }
                        None => self.rec.dropped_at_arrival(),
                    }
                }
            },
            Ev::LinkUp {
                a,
                a_inc,
                b,
                b_inc,
                latency,
            } => self.link_up(a, a_inc, b, b_inc, latency),
            Ev::LinkDown { at, peer, epoch } => {
                if self.net.close_seen(at, peer, epoch) {
                    let peer_id = self.pop.id(peer);
                    if let Some(node) = self.pop.node_mut(at) {
                        node.handle_link_down(now, peer_id);
                        self.drain(at);
                    }
                }
            }
            Ev::DialFailed { slot, inc, peer } => {
                if self.pop.inc(slot) == inc {
                    if let Some(node) = self.pop.node_mut(slot) {
                        node.handle_dial_failed(now, Some(peer), &[]);
                        self.drain(slot);
                    }
                }
            }
            Ev::SessionEnd { slot, inc } => {
                if !self.pop.is_up(slot, inc) {
                    return;
                }
                let graceful = self.pop.draw_graceful();
                self.depart(slot, graceful);
                // A newcomer keeps the population steady.
                let s = self.new_slot(Role::Ordinary, None);
                self.push(now, Ev::Start { slot: s });
            }
            Ev::SnKill { index } => self.kill_supernodes(index),
            Ev::Storm { index } => {
                let (restarts, downtime) = self.pop.pick_storm(index, now);
                for r in restarts {
                    let (slot, inc) = (r.slot, r.inc);
                    self.push(
                        r.at,
                        Ev::StormRestart {
                            slot,
                            inc,
                            downtime,
                        },
                    );
                }
                self.inv.topology_changed(now);
            }
            Ev::StormRestart {
                slot,
                inc,
                downtime,
            } => {
                if !self.pop.is_up(slot, inc) {
                    return;
                }
                self.inv.topology_changed(now);
                self.crash(slot, Departure::Restarting);
                self.push(now + downtime, Ev::Start { slot });
            }
            Ev::LeaveDone { slot, inc } => self.leave_done(slot, inc),
            Ev::DayTick => self.day_tick(),
            Ev::DayLeave { slot, inc } => self.day_leave(slot, inc),
            Ev::Topology => self.inv.topology_changed(now),
            Ev::Chat => self.chat(),
            Ev::Flood => self.flood(),
            Ev::NameLookup => self.name_lookup(),
            Ev::Sample => {
                self.rec.sample_attachment(now, &self.pop);
                if self.cfg.names.is_some() {
                    let held = self.claims_held();
                    self.names.sample_storage(held.into_iter());
                }
                if let Err(what) = self.inv.sample(now, &self.pop, &self.net) {
                    self.fail(what);
                }
                self.cut.sample(now, &self.pop);
                self.push(now + secs(self.cfg.sample_interval_s), Ev::Sample);
            }
        }
    }

    // Nodes come and go: the population decides, the world tells the rest.

    fn start(&mut self, slot: u32) {
        let now = self.now;
        let reachable = !self.net.is_behind_nat(slot);
        let started = match self.pop.start(slot, now, reachable) {
            Ok(Some(started)) => started,
            Ok(None) => return,
            Err(what) => {
                self.fail(what);
                return;
            }
        };
        self.wake_at[slot as usize] = None;
        self.net.drop_links(slot);
        self.inv.node_started(slot);
        if started.role == Role::Supernode {
            self.inv.topology_changed(now);
        }
        if let Some(at) = started.session_end {
            let inc = started.inc;
            self.push(at, Ev::SessionEnd { slot, inc });
        }
        self.rec.live_changed(now, 1);
        if started.role == Role::Ordinary {
            self.rec.ordinary_started();
        }
        self.drain(slot);
    }

    /// A node goes away: gracefully (a `Leave` first; a supernode hands
    /// over first) or by crashing.
    fn depart(&mut self, slot: u32, graceful: bool) {
        let supernode = self
            .pop
            .node(slot)
            .is_some_and(|n| n.role() == Role::Supernode);
        if supernode {
            // A promoted user that goes changes the supernode layer.
            self.inv.topology_changed(self.now);
        }
        if graceful && supernode {
            self.start_leaving(slot);
        } else if graceful {
            let now = self.now;
            if let Some(node) = self.pop.node_mut(slot) {
                node.leave(now);
            }
            self.drain(slot);
            self.crash(slot, Departure::Left);
        } else {
            self.crash(slot, Departure::Crashed);
        }
    }

    /// Removes a node at once; its peers notice by themselves.
    fn crash(&mut self, slot: u32, why: Departure) {
        let now = self.now;
        let Some(gone) = self.pop.stop(slot, now, why) else {
            return;
        };
        self.wake_at[slot as usize] = None;
        self.net.drop_links(slot);
        let counters = gone.node.counters();
        self.inv.node_gone(slot, counters);
        self.rec
            .node_gone(slot, gone.inc, counters, now, gone.never_attached);
    }

    fn link_up(&mut self, a: u32, a_inc: u32, b: u32, b_inc: u32, latency: SimTime) {
        let now = self.now;
        if !self.pop.is_up(a, a_inc) {
            return;
        }
        let b_id = self.pop.id(b);
        if !self.pop.is_up(b, b_inc) || self.net.cut(now, a, b) {
            let inc = a_inc;
            self.push(
                now,
                Ev::DialFailed {
                    slot: a,
                    inc,
                    peer: b_id,
                },
            );
            return;
        }
        if self.net.open(now, a, b, latency).is_none() {
            // Both sides dialed each other; the first link stands.
            return;
        }
        let a_id = self.pop.id(a);
        for (x, y_id) in [(a, b_id), (b, a_id)] {
            if let Some(node) = self.pop.node_mut(x) {
                node.handle_link_up(now, y_id);
            }
        }
        self.drain(a);
        self.drain(b);
    }

    // A node's outputs.

    /// Drains a node's outputs into the world and schedules its wake-up.
    fn drain(&mut self, slot: u32) {
        while let Some(out) = self.pop.node_mut(slot).and_then(|n| n.poll_output()) {
            match out {
                Output::Event(e) => self.on_event(slot, e),
                Output::Transmit(t) => self.transmit(slot, t.to, t.msg),
                Output::Action(a) => self.action(slot, a),
            }
        }
        let wake = self.pop.node(slot).and_then(|n| n.poll_timeout());
        if let Some(at) = wake {
            let at = at.max(self.now);
            let scheduled = &mut self.wake_at[slot as usize];
            if scheduled.is_none_or(|w| at < w) {
                *scheduled = Some(at);
                let inc = self.pop.inc(slot);
                self.push(at, Ev::Wake { slot, inc });
            }
        }
    }

    fn action(&mut self, slot: u32, action: Action) {
        let now = self.now;
        let inc = self.pop.inc(slot);
        match action {
            Action::Dial { id: Some(peer), .. } => {
                let Some(to) = self.pop.slot_of(&peer).filter(|t| *t != slot) else {
                    let at = self.net.unreachable(now);
                    self.push(at, Ev::DialFailed { slot, inc, peer });
                    return;
                };
                if self.net.has_link(slot, to) {
                    return;
                }
                let listening = self.pop.node(to).is_some();
                match self.net.dial(now, slot, to, listening) {
                    net::Dial::Fails { at, nat } => {
                        if nat {
                            self.rec.dial_refused_by_nat();
                        }
                        self.push(at, Ev::DialFailed { slot, inc, peer });
                    }
                    net::Dial::Connects { at, latency } => {
                        let b_inc = self.pop.inc(to);
                        self.push(
                            at,
                            Ev::LinkUp {
                                a: slot,
                                a_inc: inc,
                                b: to,
                                b_inc,
                                latency,
                            },
                        );
                    }
                }
            }
            Action::Dial { id: None, .. } => {
                // The simulator dials by id only; an address-only dial goes
                // nowhere and the core's own dial timeout forgets it.
                self.rec.dropped_no_link();
            }
            Action::Disconnect { peer, .. } => {
                let Some(to) = self.pop.slot_of(&peer) else {
                    return;
                };
                if let Some((at, epoch)) = self.net.close(now, slot, to) {
                    self.push(
                        at,
                        Ev::LinkDown {
                            at: to,
                            peer: slot,
                            epoch,
                        },
                    );
                }
            }
        }
    }

    fn on_event(&mut self, slot: u32, e: Event) {
        let now = self.now;
        match e {
            Event::Attached { .. } => {
                if let Some(join) = self.pop.attached(slot, now) {
                    self.rec.joined(join);
                }
                self.rec.attached(slot, self.pop.inc(slot), now);
            }
            Event::Detached { .. } => self.pop.detached(slot),
            Event::RoleChanged { role, .. } => {
                // A supernode counts as attached; a demoted node attaches
                // anew.
                match role {
                    Role::Supernode => {
                        if let Some(join) = self.pop.attached(slot, now) {
                            self.rec.joined(join);
                        }
                        self.rec.attached(slot, self.pop.inc(slot), now);
                    }
                    Role::Ordinary => {
                        self.handovers.drained(&self.pop, slot, true, now);
                        self.pop.detached(slot);
                    }
                }
                self.pop.role_changed(slot, role);
                self.inv.topology_changed(now);
            }
            Event::ChatDelivered {
                msg_id,
                hops,
                latency,
                ..
            } => {
                if let Err(what) = self.inv.hops(hops) {
                    self.fail(what);
                }
                self.adv.chat_delivered(self.pop.id(slot), msg_id);
                self.rec.chat_outcome(slot, msg_id, Ok((latency, hops)));
                self.cut.chat_outcome(slot, msg_id, Ok(()));
            }
            Event::ChatFailed {
                to,
                msg_id,
                reason,
                said_by,
            } => {
                self.rec.chat_failed(FailedChat {
                    time_s: round3(now as f64 / SECS as f64),
                    from: slot,
                    from_id: self.pop.id(slot),
                    to_id: to,
                    to: self.pop.slot_of(&to),
                    reason,
                    said_by,
                });
                self.rec.chat_outcome(slot, msg_id, Err(reason));
                self.cut.chat_outcome(slot, msg_id, Err(reason));
            }
            Event::ChatReceived {
                from, msg_id, hops, ..
            } => {
                if let Some(author) = self.pop.slot_of(&from) {
                    self.rec.chat_received(author, msg_id);
                }
                if let Err(what) = self.inv.hops(hops) {
                    self.fail(what);
                }
                self.adv.chat_received(from, msg_id);
            }
            Event::PeerMisbehaved { peer, .. } => {
                self.rec.misbehaved();
                if let Some(p) = self.pop.slot_of(&peer) {
                    let supernode = self
                        .pop
                        .node(p)
                        .is_some_and(|n| n.role() == Role::Supernode);
                    self.adv.peer_banned(p, supernode);
                }
            }
            Event::ChatStored { msg_id, .. } => self.rec.chat_stored(slot, msg_id),
            Event::NameClaimed { name } => self.names.claimed(self.pop.id(slot), name),
            Event::NameTaken { name, .. } => self.names.taken(slot, name),
            Event::NameResolved {
                request_id, holder, ..
            } => self.names.resolved(slot, request_id, holder, now),
            Event::TraceCompleted { .. }
            | Event::TraceFailed { .. }
            | Event::Listing { .. }
            | Event::Located { .. } => {}
        }
    }

    fn finish(self) -> Metrics {
        let held_at_end = self.claims_held();
        let World {
            cfg,
            seed,
            now,
            queue,
            processed,
            by_kind,
            violation,
            pop,
            net,
            rec,
            inv,
            adv,
            cut,
            names,
            handovers,
            ..
        } = self;
        let run = RunEnd {
            cfg,
            seed,
            now,
            events: processed,
            events_by_kind: Ev::NAMES
                .iter()
                .zip(by_kind)
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (*k, n))
                .collect(),
            violation,
        };
        let mut metrics = rec.finish(run, &pop, &inv, &adv);
        metrics.partition = cut.finish();
        metrics.names = names.finish(held_at_end);
        metrics.handovers = handovers.report();
        // Freeing 10^6 nodes one allocation at a time took seconds of the
        // run's wall time; nothing reads them any more, so another thread
        // does it (a process that exits first just skips the work).
        let _ = std::thread::Builder::new()
            .name("sim-free".into())
            .spawn(move || drop((pop, net, queue)));
        metrics
    }
}
