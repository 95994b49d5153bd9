//! The bounded tables of the connection manager that are not connections: inbound slots (per
//! remote address, per remote network and in all) and what the manager remembers about endpoints between
//! connections (redial backoff after failures, endpoints that were only ever inbound).
//!
//! Everything here is driven by the `now` the caller gives; nothing reads a clock. Every table
//! has a named bound and forgets its oldest entries beyond it.

use crate::uri::Endpoint;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Most inbound connections (TCP and QUIC together, set up or being set up) at once; beyond,
/// the oldest connection not yet carrying an authenticated link makes room (see
/// [`super::Conns::handle_inbound`]).
pub const MAX_INBOUND: usize = 256;
/// Most inbound connections from one remote IP address at once.
pub const MAX_PER_ADDRESS: usize = 8;
/// Most inbound connections from one network at once: an IPv4 /24 or an IPv6 /64 (see
/// [`prefix_of`]), so that one network cannot take the whole table.
pub const MAX_PER_PREFIX: usize = MAX_INBOUND / 4;
/// Beyond this many inbound connections, a QUIC connection attempt from an address not yet
/// proven is asked to prove it first (a QUIC Retry), so that spoofed sources hold no slot.
pub const VALIDATE_ABOVE: usize = MAX_INBOUND / 2;
/// The first redial of an endpoint whose connection attempt failed waits this long.
pub const REDIAL_MIN: Duration = Duration::from_secs(1);
/// Each further failure doubles the wait, up to this (the link core's own dial schedule,
/// at most 16 s between attempts, stays the slower of the two).
pub const REDIAL_MAX: Duration = Duration::from_secs(8);
/// Most endpoints remembered with a redial backoff.
pub const MAX_BACKOFFS: usize = 1024;
/// Most endpoints remembered as inbound-only (a TCP connection's ephemeral source port).
pub const MAX_INBOUND_ONLY: usize = 4 * MAX_INBOUND;
/// An inbound-only endpoint is forgotten this long after its connection came up.
pub const INBOUND_ONLY_EXPIRY: Duration = Duration::from_secs(600);

/// The network `ip` is counted in for [`MAX_PER_PREFIX`]: its /24 (IPv4, or an IPv4-mapped
/// IPv6 address) or its /64 (IPv6), as an address with the host bits cleared.
pub fn prefix_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(v4.to_bits() & !0xff)),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
    }
}

/// Inbound connection slots: [`MAX_INBOUND`] in all, [`MAX_PER_ADDRESS`] per remote address,
/// [`MAX_PER_PREFIX`] per remote network. Addresses are counted canonical (an IPv4-mapped
/// IPv6 address as the IPv4 one).
#[derive(Debug, Default)]
pub(crate) struct InboundSlots {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
    per_prefix: HashMap<IpAddr, usize>,
}

/// Why an inbound connection was refused (or which bound made room first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address holds [`MAX_PER_ADDRESS`] connections already.
    PerAddress,
    /// Its network holds [`MAX_PER_PREFIX`] connections already.
    PerPrefix,
    /// [`MAX_INBOUND`] inbound connections exist already.
    Total,
}

impl InboundSlots {
    /// Which bound, if any, a new connection from `ip` would exceed, the narrowest first.
    pub(crate) fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let ip = ip.to_canonical();
        if self.per_address.get(&ip).copied().unwrap_or(0) >= MAX_PER_ADDRESS {
            return Err(Refusal::PerAddress);
        }
        if self.per_prefix.get(&prefix_of(ip)).copied().unwrap_or(0) >= MAX_PER_PREFIX {
            return Err(Refusal::PerPrefix);
        }
        if self.total >= MAX_INBOUND {
            return Err(Refusal::Total);
        }
        Ok(())
    }

    /// Takes a slot for a connection from `ip`, if one is free.
    pub(crate) fn take(&mut self, ip: IpAddr) -> Result<(), Refusal> {
        self.check(ip)?;
        let ip = ip.to_canonical();
        *self.per_address.entry(ip).or_insert(0) += 1;
        *self.per_prefix.entry(prefix_of(ip)).or_insert(0) += 1;
        self.total += 1;
        Ok(())
    }

    /// Gives back the slot of a connection from `ip`.
    pub(crate) fn give_back(&mut self, ip: IpAddr) {
        let ip = ip.to_canonical();
        let Some(n) = self.per_address.get_mut(&ip) else {
            return;
        };
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.per_address.remove(&ip);
        }
        let prefix = prefix_of(ip);
        if let Some(n) = self.per_prefix.get_mut(&prefix) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_prefix.remove(&prefix);
            }
        }
        self.total = self.total.saturating_sub(1);
    }

    /// Inbound connections holding a slot.
    pub(crate) fn total(&self) -> usize {
        self.total
    }
}

/// A failed endpoint's backoff.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    until: Instant,
}

/// What is remembered about endpoints with no connection.
#[derive(Debug, Default)]
pub(crate) struct Redial {
    backoff: HashMap<Endpoint, Backoff>,
    /// Endpoints that were the far end of an inbound TCP connection, and when: never dialed
    /// (their port is ephemeral; nothing listens there).
    inbound_only: HashMap<Endpoint, Instant>,
}

impl Redial {
    /// Whether `to` may be dialed at `now`; `Err` says why not.
    pub(crate) fn may_dial(&self, to: &Endpoint, now: Instant) -> Result<(), NoDial> {
        if self
            .inbound_only
            .get(to)
            .is_some_and(|t| now < *t + INBOUND_ONLY_EXPIRY)
        {
            return Err(NoDial::InboundOnly);
        }
        if self.backoff.get(to).is_some_and(|b| now < b.until) {
            return Err(NoDial::Backoff);
        }
        Ok(())
    }

    /// An attempt to connect to `to` failed at `now`: the next waits [`REDIAL_MIN`], doubled
    /// for each failure in a row, at most [`REDIAL_MAX`]. Returns the wait.
    pub(crate) fn failed(&mut self, to: Endpoint, now: Instant) -> Duration {
        if self.backoff.len() >= MAX_BACKOFFS && !self.backoff.contains_key(&to) {
            self.backoff.retain(|_, b| now < b.until);
            if self.backoff.len() >= MAX_BACKOFFS
                && let Some(oldest) = self.backoff.iter().min_by_key(|(_, b)| b.until)
            {
                let oldest = *oldest.0;
                self.backoff.remove(&oldest);
            }
        }
        let failures = self.backoff.get(&to).map_or(0, |b| b.failures) + 1;
        let wait = REDIAL_MIN
            .saturating_mul(1 << (failures - 1).min(16))
            .min(REDIAL_MAX);
        self.backoff.insert(
            to,
            Backoff {
                failures,
                until: now + wait,
            },
        );
        wait
    }

    /// A connection to `to` came up: its next failure starts from [`REDIAL_MIN`] again.
    pub(crate) fn succeeded(&mut self, to: &Endpoint) {
        self.backoff.remove(to);
    }

    /// `from` is the far end of an inbound TCP connection that came up at `now`.
    pub(crate) fn inbound_only(&mut self, from: Endpoint, now: Instant) {
        if self.inbound_only.len() >= MAX_INBOUND_ONLY && !self.inbound_only.contains_key(&from) {
            self.inbound_only
                .retain(|_, t| now < *t + INBOUND_ONLY_EXPIRY);
            if self.inbound_only.len() >= MAX_INBOUND_ONLY
                && let Some(oldest) = self.inbound_only.iter().min_by_key(|(_, t)| **t)
            {
                let oldest = *oldest.0;
                self.inbound_only.remove(&oldest);
            }
        }
        self.inbound_only.insert(from, now);
    }

    /// Entries held (for the bound checks of the tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> (usize, usize) {
        (self.backoff.len(), self.inbound_only.len())
    }
}

/// Why an endpoint is not dialed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoDial {
    /// It failed lately; its backoff has not run out.
    Backoff,
    /// It is the ephemeral far end of an inbound TCP connection.
    InboundOnly,
}
