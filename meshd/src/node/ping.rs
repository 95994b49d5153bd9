//! Overlay pings (`meshctl ping`): a ticket per ping, a lookup if the address is not
//! known yet, the outcome (reply, unreachable, timeout) polled with [`Node::poll_ping`].

use super::Node;
use crate::identity::PublicKey;
use routing::address;
use serde::Serialize;
use std::net::Ipv6Addr;
use std::time::Instant;

/// The outcome of an overlay ping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum PingOutcome {
    /// Answered.
    Reply {
        /// Hops one way.
        hops: u8,
        /// Round trip in microseconds.
        rtt_us: u64,
        /// The link to the destination when it is a direct peer (`udp://203.0.113.7:7820`);
        /// `None`: relayed through other nodes.
        direct: Option<String>,
    },
    /// Nobody owns the address (as far as the lookup found).
    Unreachable,
    /// No answer in time.
    Timeout,
}

pub(super) struct PingWait {
    pub(super) ticket: u64,
    pub(super) addr: Ipv6Addr,
    pub(super) started: Instant,
    pub(super) nonce: Option<u64>,
}

impl Node {
    /// Starts an overlay ping of `addr`; its outcome comes from [`Node::poll_ping`].
    pub fn ping(&mut self, now: Instant, addr: Ipv6Addr) -> u64 {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let Some(owner) = address::owner_id(&addr) else {
            self.ping_results
                .push_back((ticket, PingOutcome::Unreachable));
            return ticket;
        };
        let nonce = match self.router.resolve(now, &owner) {
            Some(k) => {
                self.offer_endpoints(now, PublicKey(k));
                self.router.ping(now, &k)
            }
            None => None,
        };
        self.pings.push(PingWait {
            ticket,
            addr: owner,
            started: now,
            nonce,
        });
        self.pump(now);
        ticket
    }

    /// A finished ping: `(ticket, outcome)`.
    pub fn poll_ping(&mut self) -> Option<(u64, PingOutcome)> {
        self.ping_results.pop_front()
    }
}
