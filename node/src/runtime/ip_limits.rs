//! [`IpLimits`]: a libp2p behaviour that refuses inbound connections by
//! remote IP before the Noise handshake is paid for — from an IP that
//! already has [`MAX_INBOUND_PER_IP`] inbound connections here, or from an
//! IP refused because a peer on it flooded or misbehaved. It sits in the
//! node's `Behaviour` beside libp2p's connection limits (totals and per
//! peer), which cannot count by IP.
//!
//! # Implementation notes
//! - libp2p asks every behaviour about a pending inbound connection when
//!   the TCP connection is accepted, knowing only the addresses; a refusal
//!   there closes the socket before any cryptography runs. Every accepted
//!   connection is remembered by id until libp2p reports it closed or
//!   failed (a later behaviour's refusal is reported as a failure too).
//! - Node ids are free, so a refusal keyed by node id alone bans nothing:
//!   the core refuses the id and the runtime refuses its IP here, for the
//!   core's escalating time ([`skyhop_core::refusal_for`]).
//! - The behaviour reads no clock: the node task hands it `now` each
//!   wake-up. Both tables are bounded; the refusal table evicts the refusal
//!   that ends first, found in O(log n).

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};
use skyhop_core::SimTime;

/// Inbound connections (pending or established) from one IP at most: many
/// nodes may share a NAT's address, but one host cannot take every slot.
pub const MAX_INBOUND_PER_IP: usize = 64;
/// IPs refused at once at most.
const MAX_REFUSED_IPS: usize = 4096;
/// Inbound connections tracked at most (far above libp2p's own limits).
const MAX_TRACKED: usize = 1 << 16;

/// Why an inbound connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum IpRefusal {
    /// The IP already has its share of inbound connections.
    #[error("{ip} already has {limit} inbound connections")]
    TooMany {
        /// The remote IP.
        ip: IpAddr,
        /// [`MAX_INBOUND_PER_IP`].
        limit: usize,
    },
    /// A peer on this IP flooded or misbehaved.
    #[error("{ip} is refused for misbehaving")]
    Refused {
        /// The remote IP.
        ip: IpAddr,
    },
}

/// Offenses and refusal end of one IP.
#[derive(Clone, Copy, Debug)]
struct Refusal {
    offenses: u32,
    until: SimTime,
}

/// Counts inbound connections per IP and refuses offending IPs.
#[derive(Debug, Default)]
pub struct IpLimits {
    /// The IP of every inbound connection accepted and not yet closed.
    inbound: BTreeMap<ConnectionId, IpAddr>,
    /// Inbound connections per IP.
    per_ip: BTreeMap<IpAddr, usize>,
    /// Refused IPs.
    refused: BTreeMap<IpAddr, Refusal>,
    /// `(until, ip)` of every refusal, soonest first.
    refused_by_end: BTreeSet<(SimTime, IpAddr)>,
    /// The node task's clock, as of its last wake-up.
    now: SimTime,
}

/// The IP an address names, if any.
pub fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

impl IpLimits {
    /// Tells the behaviour the time of this wake-up.
    pub fn set_now(&mut self, now: SimTime) {
        self.now = now;
    }

    /// Refuses `ip` for the escalating time its offenses call for; returns
    /// how long.
    pub fn refuse(&mut self, ip: IpAddr) -> SimTime {
        let offenses = self.refused.get(&ip).map_or(0, |r| r.offenses) + 1;
        if let Some(old) = self.refused.get(&ip) {
            self.refused_by_end.remove(&(old.until, ip));
        } else if self.refused.len() >= MAX_REFUSED_IPS {
            if let Some((_, soonest)) = self.refused_by_end.pop_first() {
                self.refused.remove(&soonest);
            }
        }
        let refuse_for = skyhop_core::refusal_for(offenses);
        let until = self.now + refuse_for;
        self.refused.insert(ip, Refusal { offenses, until });
        self.refused_by_end.insert((until, ip));
        refuse_for
    }

    /// Whether `ip` is refused now.
    pub fn is_refused(&self, ip: &IpAddr) -> bool {
        self.refused.get(ip).is_some_and(|r| r.until > self.now)
    }

    /// Inbound connections from `ip` now.
    pub fn inbound_from(&self, ip: &IpAddr) -> usize {
        self.per_ip.get(ip).copied().unwrap_or(0)
    }

    fn admit(&mut self, connection: ConnectionId, remote: &Multiaddr) -> Result<(), IpRefusal> {
        let Some(ip) = ip_of(remote) else {
            return Ok(());
        };
        if self.is_refused(&ip) {
            return Err(IpRefusal::Refused { ip });
        }
        if self.inbound_from(&ip) >= MAX_INBOUND_PER_IP || self.inbound.len() >= MAX_TRACKED {
            return Err(IpRefusal::TooMany {
                ip,
                limit: MAX_INBOUND_PER_IP,
            });
        }
        self.inbound.insert(connection, ip);
        *self.per_ip.entry(ip).or_default() += 1;
        Ok(())
    }

    fn release(&mut self, connection: ConnectionId) {
        let Some(ip) = self.inbound.remove(&connection) else {
            return;
        };
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }
}

impl NetworkBehaviour for IpLimits {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        _local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.admit(connection_id, remote_addr).map_err(|e| {
            tracing::debug!("inbound connection refused: {e}");
            ConnectionDenied::new(e)
        })
    }

    fn handle_established_inbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _local_addr: &Multiaddr,
        _remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _connection_id: ConnectionId,
        _peer: PeerId,
        _addr: &Multiaddr,
        _role_override: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionClosed(c) => self.release(c.connection_id),
            FromSwarm::ListenFailure(f) => self.release(f.connection_id),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer_id: PeerId,
        _connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        _cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(ip: &str) -> Multiaddr {
        format!("/ip4/{ip}/tcp/4000").parse().expect("multiaddr")
    }

    #[test]
    fn one_ip_gets_its_share_and_the_slot_comes_back_when_a_connection_ends() {
        let mut l = IpLimits::default();
        let ids: Vec<ConnectionId> = (0..=MAX_INBOUND_PER_IP)
            .map(ConnectionId::new_unchecked)
            .collect();
        for id in &ids[..MAX_INBOUND_PER_IP] {
            assert!(l.admit(*id, &from("10.0.0.1")).is_ok());
        }
        let refused = l.admit(ids[MAX_INBOUND_PER_IP], &from("10.0.0.1"));
        assert!(matches!(refused, Err(IpRefusal::TooMany { .. })));
        assert!(
            l.admit(ids[MAX_INBOUND_PER_IP], &from("10.0.0.2")).is_ok(),
            "another IP is served"
        );
        l.release(ids[0]);
        assert!(l
            .admit(ConnectionId::new_unchecked(9999), &from("10.0.0.1"))
            .is_ok());
    }

    #[test]
    fn a_refused_ip_is_turned_away_for_longer_each_time_then_served_again() {
        let mut l = IpLimits::default();
        let ip: IpAddr = "10.0.0.9".parse().expect("ip");
        let first = l.refuse(ip);
        assert!(matches!(
            l.admit(ConnectionId::new_unchecked(1), &from("10.0.0.9")),
            Err(IpRefusal::Refused { .. })
        ));
        l.set_now(first);
        assert!(l
            .admit(ConnectionId::new_unchecked(2), &from("10.0.0.9"))
            .is_ok());
        assert_eq!(l.refuse(ip), 2 * first);
    }
}
