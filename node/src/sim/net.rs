//! The network model: links between node slots, their latency, loss and
//! ordering, and partitions between sites. A seeded sans-IO machine in the
//! manner of str0m's netem: the world tells it "a frame is sent at `now`
//! from `a` to `b`" (or "`a` dials `b`") and it answers when, or whether,
//! that arrives. It owns the network RNG stream and nothing else random.
//!
//! It knows slots by index only; whether a node is up is the population's
//! business, which the world passes in where a dial needs it.
//!
//! # Implementation notes
//! - A link is two ends, one per node, sharing an epoch. Frames carry the
//!   epoch and are delivered only while the receiver's end has it, so frames
//!   of a closed (or replaced) link never leak into a new one. A close is
//!   seen by the peer after the last frame sent before it, as with TCP's FIN.
//! - Frames on one link direction arrive in order (a TCP stream): the
//!   arrival time never goes below the previous frame's.
//! - Loss: skyhop links are TCP streams, so a lost segment shows up as
//!   latency, not as a missing frame. A frame is "lost" with probability
//!   `loss` per transmission and then waits an RTO (doubling) per loss.
//! - Partitions: frames across the cut are dropped (the stream stalls and,
//!   past the heartbeat timeout, the nodes close the link themselves);
//!   dials across the cut fail after the connect timeout.
//! - Latency is drawn once per dial, from the LAN or WAN distribution by
//!   whether the two slots share a site; a node's site is derived from the
//!   seed and its index, so it draws nothing.
//! - NAT: an ordinary node's slot is behind a NAT with probability
//!   `population.nat_fraction`, derived (like its site) from the seed and
//!   its index, so a restarted node is behind the same NAT and the setting
//!   draws nothing from any stream. A dial to it fails after the connect
//!   timeout, as an unanswered SYN does; its own dials go out as usual.

use std::collections::BTreeMap;

use rand::rngs::Xoshiro256PlusPlus;
use rand::RngExt;

use skyhop_core::SimTime;

use super::config;
use super::dist::{self, millis, secs};

/// One end of a link, held for the node at that end.
struct LinkEnd {
    /// The link's epoch, shared by both ends.
    epoch: u64,
    /// One-way latency, drawn when the link was dialed.
    latency: SimTime,
    /// Arrival time of the last frame sent from this end.
    last_arrival: SimTime,
}

/// A cut between `sites` and every other site during `[start, end)`.
struct Cut {
    /// When it starts.
    start: SimTime,
    /// When it heals.
    end: SimTime,
    /// The sites on one side.
    sites: Vec<u32>,
}

/// What becomes of a frame sent on a link.
pub enum Transit {
    /// Lost in a partition.
    Cut,
    /// It arrives at `at` on the link of `epoch`.
    Arrives {
        /// Arrival time.
        at: SimTime,
        /// The link's epoch, for the receiver to check.
        epoch: u64,
        /// Whether a transmission of it was lost (and it waited an RTO).
        retransmitted: bool,
    },
}

/// What becomes of a dial.
pub enum Dial {
    /// It fails at `at` (a partition, nobody listening, or a NAT).
    Fails {
        /// When the dialer learns it.
        at: SimTime,
        /// The dialed node is behind a NAT.
        nat: bool,
    },
    /// The link is up at both ends at `at`, with one-way `latency`.
    Connects {
        /// When the handshake completes.
        at: SimTime,
        /// The link's one-way latency.
        latency: SimTime,
    },
}

/// What the receiver's end makes of a frame arriving on a link.
pub enum Arrival {
    /// Lost in a partition that began while it was in flight.
    Cut,
    /// The link it was sent on is closed (or replaced) at the receiver.
    Closed,
    /// Deliver it.
    Open,
}

/// The connected components of the network at one moment: a label per
/// site; two slots can reach each other exactly when their sites' labels
/// are equal.
pub struct Components {
    /// Each site's component label.
    by_site: Vec<u32>,
}

/// The network between the slots; see the module notes.
pub struct Network {
    /// One-way latency within a site.
    lan_latency: config::Latency,
    /// One-way latency between sites.
    wan_latency: config::Latency,
    /// Probability that one transmission of a frame is lost.
    loss: f64,
    /// The first retransmission timeout.
    rto: SimTime,
    /// How long a dial into a partition or to nobody waits before failing.
    connect_timeout: SimTime,
    /// The scenario's partitions.
    cuts: Vec<Cut>,
    /// Sites in the scenario.
    site_count: u64,
    /// Share of ordinary nodes behind a NAT.
    nat_fraction: f64,
    /// Each slot: behind a NAT (refuses inbound dials).
    behind_nat: Vec<bool>,
    /// The world seed, from which sites are derived.
    seed: u64,
    /// The network RNG stream: latencies and losses.
    rng: Xoshiro256PlusPlus,
    /// Each slot's site.
    sites: Vec<u32>,
    /// Each slot's link ends, by peer slot.
    links: Vec<BTreeMap<u32, LinkEnd>>,
    /// The epoch of the next link.
    next_epoch: u64,
}

impl Network {
    /// The network of a scenario, seeded by the world seed, with
    /// `nat_fraction` of its ordinary nodes behind a NAT.
    pub fn new(cfg: &config::Network, nat_fraction: f64, seed: u64) -> Network {
        Network {
            lan_latency: cfg.lan_latency.clone(),
            wan_latency: cfg.wan_latency.clone(),
            loss: cfg.loss,
            rto: millis(cfg.rto_ms),
            connect_timeout: millis(cfg.connect_timeout_ms),
            cuts: cfg
                .partitions
                .iter()
                .map(|p| Cut {
                    start: secs(p.start_s),
                    end: secs(p.end_s),
                    sites: p.sites.clone(),
                })
                .collect(),
            site_count: u64::from(cfg.sites),
            nat_fraction,
            behind_nat: Vec::new(),
            seed,
            rng: dist::stream_rng(seed, dist::stream::NETWORK),
            sites: Vec::new(),
            links: Vec::new(),
            next_epoch: 1,
        }
    }

    /// Places the next slot (`slot` must be the number placed so far) at its
    /// site, and an `ordinary` one perhaps behind a NAT: whether it is.
    pub fn add_slot(&mut self, slot: u32, ordinary: bool) -> bool {
        debug_assert_eq!(slot as usize, self.sites.len(), "slots are added in order");
        let site = (dist::derive(self.seed, &[4, u64::from(slot)]) % self.site_count) as u32;
        self.sites.push(site);
        let nat = ordinary
            && self.nat_fraction > 0.0
            && dist::unit(dist::derive(self.seed, &[5, u64::from(slot)])) < self.nat_fraction;
        self.behind_nat.push(nat);
        self.links.push(BTreeMap::new());
        nat
    }

    /// The times at which a partition starts or heals, in scenario order.
    pub fn topology_changes(&self) -> Vec<SimTime> {
        self.cuts.iter().flat_map(|c| [c.start, c.end]).collect()
    }

    /// Whether a partition separates `a` and `b` at `now`.
    pub fn cut(&self, now: SimTime, a: u32, b: u32) -> bool {
        if self.cuts.is_empty() {
            return false;
        }
        let (sa, sb) = (self.sites[a as usize], self.sites[b as usize]);
        self.cuts.iter().any(|c| {
            c.start <= now && now < c.end && c.sites.contains(&sa) != c.sites.contains(&sb)
        })
    }

    /// The connected components at `now`. A cut separates its sites from
    /// the rest, so two sites are connected exactly when every cut in
    /// force puts them on the same side: the label of a site is the set of
    /// cuts in force that contain it, numbered in site order.
    pub fn components(&self, now: SimTime) -> Components {
        let active: Vec<&Cut> = self
            .cuts
            .iter()
            .filter(|c| c.start <= now && now < c.end)
            .collect();
        let mut labels: BTreeMap<Vec<bool>, u32> = BTreeMap::new();
        let by_site = (0..self.site_count as u32)
            .map(|site| {
                let sides: Vec<bool> = active.iter().map(|c| c.sites.contains(&site)).collect();
                let next = labels.len() as u32;
                *labels.entry(sides).or_insert(next)
            })
            .collect();
        Components { by_site }
    }

    /// The component of `slot` in `components`.
    pub fn component_of(&self, components: &Components, slot: u32) -> u32 {
        components.by_site[self.sites[slot as usize] as usize]
    }

    /// Whether the node of `slot` is behind a NAT (nobody can dial it).
    pub fn is_behind_nat(&self, slot: u32) -> bool {
        self.behind_nat[slot as usize]
    }

    /// Whether `a` holds an end of a link to `b`.
    pub fn has_link(&self, a: u32, b: u32) -> bool {
        self.links[a as usize].contains_key(&b)
    }

    /// `a` dials `b`, who is listening or not: when the link comes up or
    /// the dial fails. Draws the link's latency.
    pub fn dial(&mut self, now: SimTime, a: u32, b: u32, listening: bool) -> Dial {
        let latency = self.draw_latency(a, b);
        if self.cut(now, a, b) {
            Dial::Fails {
                at: self.unreachable(now),
                nat: false,
            }
        } else if self.behind_nat[b as usize] {
            // The NAT drops the unsolicited SYN: the dial times out.
            Dial::Fails {
                at: self.unreachable(now),
                nat: true,
            }
        } else if !listening {
            // Nobody listens: refused after a round trip.
            Dial::Fails {
                at: now + 2 * latency,
                nat: false,
            }
        } else {
            // TCP and Noise handshakes: about three one-way trips.
            Dial::Connects {
                at: now + 3 * latency,
                latency,
            }
        }
    }

    /// When a dial to no known address fails.
    pub fn unreachable(&self, now: SimTime) -> SimTime {
        now + self.connect_timeout
    }

    fn draw_latency(&mut self, a: u32, b: u32) -> SimTime {
        let l = if self.sites[a as usize] == self.sites[b as usize] {
            &self.lan_latency
        } else {
            &self.wan_latency
        };
        dist::latency(&mut self.rng, l)
    }

    /// A dialed link comes up at both ends: its epoch, or None when both
    /// sides dialed each other and the first link stands.
    pub fn open(&mut self, now: SimTime, a: u32, b: u32, latency: SimTime) -> Option<u64> {
        let existing = self.links[a as usize].get(&b).map(|e| e.epoch);
        if existing.is_some() && existing == self.links[b as usize].get(&a).map(|e| e.epoch) {
            return None;
        }
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        for (x, y) in [(a, b), (b, a)] {
            self.links[x as usize].insert(
                y,
                LinkEnd {
                    epoch,
                    latency,
                    last_arrival: now,
                },
            );
        }
        Some(epoch)
    }

    /// `a` closes its end of the link to `b`: when `b` learns it (after the
    /// last frame `a` sent), and the link's epoch; None without a link.
    pub fn close(&mut self, now: SimTime, a: u32, b: u32) -> Option<(SimTime, u64)> {
        let end = self.links[a as usize].remove(&b)?;
        Some(((now + end.latency).max(end.last_arrival) + 1, end.epoch))
    }

    /// `at` learns that `peer` closed the link of `epoch`: whether that link
    /// was still open at `at` (it is closed now).
    pub fn close_seen(&mut self, at: u32, peer: u32, epoch: u64) -> bool {
        let ends = &mut self.links[at as usize];
        if ends.get(&peer).is_some_and(|e| e.epoch == epoch) {
            ends.remove(&peer);
            true
        } else {
            false
        }
    }

    /// Forgets every link end of `slot` (it crashed or starts afresh).
    pub fn drop_links(&mut self, slot: u32) {
        self.links[slot as usize].clear();
    }

    /// A frame is sent at `now` from `from` on its link to `to` (which must
    /// exist): whether and when it arrives. Draws the losses.
    pub fn send(&mut self, now: SimTime, from: u32, to: u32) -> Transit {
        if self.cut(now, from, to) {
            return Transit::Cut;
        }
        let extra = self.loss_delay();
        let end = self.links[from as usize]
            .get_mut(&to)
            .expect("a frame is sent only on a link");
        let at = (now + end.latency + extra).max(end.last_arrival);
        end.last_arrival = at;
        Transit::Arrives {
            at,
            epoch: end.epoch,
            retransmitted: extra > 0,
        }
    }

    /// Extra delay of a frame from TCP retransmissions.
    fn loss_delay(&mut self) -> SimTime {
        if self.loss <= 0.0 {
            return 0;
        }
        let mut rto = self.rto;
        let mut extra = 0;
        for _ in 0..8 {
            if self.rng.random::<f64>() >= self.loss {
                break;
            }
            extra += rto;
            rto = rto.saturating_mul(2);
        }
        extra
    }

    /// A frame from `from` on the link of `epoch` reaches `to` at `now`.
    pub fn arrive(&self, now: SimTime, from: u32, to: u32, epoch: u64) -> Arrival {
        if self.cut(now, from, to) {
            Arrival::Cut
        } else if self.links[to as usize]
            .get(&from)
            .is_some_and(|e| e.epoch == epoch)
        {
            Arrival::Open
        } else {
            Arrival::Closed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Half the ordinary nodes are behind a NAT: a dial to one of them
    /// times out, while its own dials (and dials to supernodes) connect.
    #[test]
    fn a_node_behind_nat_can_dial_out_but_cannot_be_dialed() {
        let mut net = Network::new(&config::Network::default(), 0.5, 9);
        let supernode = 0;
        assert!(!net.add_slot(supernode, false), "supernodes are reachable");
        let natted: Vec<u32> = (1..200).filter(|s| net.add_slot(*s, true)).collect();
        assert!(
            (60..140).contains(&natted.len()),
            "about half of 199: {}",
            natted.len()
        );
        let behind = natted[0];
        let open = (1..200).find(|s| !natted.contains(s)).expect("one is open");
        let timeout = millis(config::Network::default().connect_timeout_ms);
        match net.dial(0, open, behind, true) {
            Dial::Fails { at, nat } => assert!(nat && at == timeout),
            Dial::Connects { .. } => panic!("a NAT let an inbound dial through"),
        }
        for (from, to) in [(behind, supernode), (behind, open), (open, supernode)] {
            assert!(
                matches!(net.dial(0, from, to, true), Dial::Connects { .. }),
                "{from} -> {to}"
            );
        }
    }

    /// With no NAT share nobody is behind one.
    #[test]
    fn no_nat_by_default() {
        let mut net = Network::new(&config::Network::default(), 0.0, 9);
        assert!((0..100).all(|s| !net.add_slot(s, true)));
    }
}
