//! The inbound side of the connection manager: who gets one of the inbound slots, which
//! connection makes room when they are full, and when a connection counts as authenticated
//! (see "Inbound slots" in [`super`]). The bounds themselves are counted in
//! [`super::limits::InboundSlots`]. No clock, no socket: the caller gives `now`.

use super::limits::{Refusal, VALIDATE_ABOVE, prefix_of};
use super::{CONNECT_TIMEOUT, CloseReason, Conn, ConnId, Conns, State};
use crate::uri::Endpoint;
use std::net::IpAddr;
use std::time::Instant;

impl Conns {
    /// A connection from `from` was accepted (TCP) or is being (QUIC): `Some(id)` to set it
    /// up under, `None` to refuse it (counted). When its address, its network or the whole
    /// table is at its bound, the oldest connection within that bound not yet carrying an
    /// authenticated link is closed to make room ([`CloseReason::Evicted`]); it is refused
    /// only when every connection there is authenticated.
    pub fn handle_inbound(&mut self, now: Instant, from: Endpoint) -> Option<ConnId> {
        let ip = from.addr.ip().to_canonical();
        // Each round frees one slot within the bound met; three bounds, three rounds at most.
        for _ in 0..3 {
            let Err(bound) = self.inbound.check(ip) else {
                break;
            };
            match self.oldest_unauthenticated(bound, ip) {
                Some(victim) => {
                    tracing::debug!(endpoint = %from, ?bound, "inbound slots full; the oldest unauthenticated connection makes room");
                    self.counters.evicted += 1;
                    self.close(victim, CloseReason::Evicted);
                }
                None => break,
            }
        }
        match self.inbound.take(ip) {
            Err(Refusal::PerAddress) => {
                self.counters.refused_per_address += 1;
                return None;
            }
            Err(Refusal::PerPrefix) => {
                self.counters.refused_per_prefix += 1;
                return None;
            }
            Err(Refusal::Total) => {
                self.counters.refused_total += 1;
                return None;
            }
            Ok(()) => {}
        }
        let id = self.fresh_id();
        self.conns.insert(
            id,
            Conn {
                endpoint: from,
                inbound: true,
                opened: now,
                since: now,
                state: State::Opening { pending: vec![] },
            },
        );
        self.unauthenticated.insert(id);
        self.arm(now + CONNECT_TIMEOUT);
        Some(id)
    }

    /// Whether a QUIC connection attempt from an address not yet proven is to be asked to
    /// prove it (a Retry) before it is given a slot: when more than [`VALIDATE_ABOVE`] are
    /// taken, so that spoofed sources cannot fill the table. Counted when true.
    pub fn must_validate(&mut self) -> bool {
        let busy = self.inbound.total() >= VALIDATE_ABOVE;
        if busy {
            self.counters.validations_asked += 1;
        }
        busy
    }

    /// The link core sent a datagram of an established session on connection `id`: it
    /// carries an authenticated link, and keeps its slot (never evicted, no
    /// [`AUTH_TIMEOUT`](super::AUTH_TIMEOUT)). Returns whether the core knows it up (the
    /// shell then lets the connection's reader use its larger buffer).
    pub fn handle_authenticated(&mut self, id: ConnId) -> bool {
        let up = matches!(
            self.conns.get(&id),
            Some(Conn {
                state: State::Up { .. },
                ..
            })
        );
        if up {
            self.unauthenticated.remove(&id);
        }
        up
    }

    /// The oldest inbound connection not carrying an authenticated link within `bound` of
    /// `ip` (its address, its network, or anywhere).
    fn oldest_unauthenticated(&self, bound: Refusal, ip: IpAddr) -> Option<ConnId> {
        let prefix = prefix_of(ip);
        self.unauthenticated.iter().copied().find(|id| {
            let Some(c) = self.conns.get(id) else {
                return false;
            };
            let theirs = c.endpoint.addr.ip().to_canonical();
            match bound {
                Refusal::PerAddress => theirs == ip,
                Refusal::PerPrefix => prefix_of(theirs) == prefix,
                Refusal::Total => true,
            }
        })
    }
}
