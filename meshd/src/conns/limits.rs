//! The bounded tables of the connection manager that are not connections: inbound slots (per
//! remote address and in all) and what the manager remembers about endpoints between
//! connections (redial backoff after failures, endpoints that were only ever inbound).
//!
//! Everything here is driven by the `now` the caller gives; nothing reads a clock. Every table
//! has a named bound and forgets its oldest entries beyond it.

use crate::uri::Endpoint;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most inbound connections (TCP and QUIC together, set up or being set up) at once; beyond,
/// new ones are refused.
pub const MAX_INBOUND: usize = 256;
/// Most inbound connections from one remote IP address at once.
pub const MAX_PER_ADDRESS: usize = 8;
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

/// Inbound connection slots: [`MAX_INBOUND`] in all, [`MAX_PER_ADDRESS`] per remote address.
#[derive(Debug, Default)]
pub(crate) struct InboundSlots {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// Why an inbound connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address holds [`MAX_PER_ADDRESS`] connections already.
    PerAddress,
    /// [`MAX_INBOUND`] inbound connections exist already.
    Total,
}

impl InboundSlots {
    /// Takes a slot for a connection from `ip`, if one is free.
    pub(crate) fn take(&mut self, ip: IpAddr) -> Result<(), Refusal> {
        if self.total >= MAX_INBOUND {
            return Err(Refusal::Total);
        }
        let n = self.per_address.get(&ip).copied().unwrap_or(0);
        if n >= MAX_PER_ADDRESS {
            return Err(Refusal::PerAddress);
        }
        self.per_address.insert(ip, n + 1);
        self.total += 1;
        Ok(())
    }

    /// Gives back the slot of a connection from `ip`.
    pub(crate) fn give_back(&mut self, ip: IpAddr) {
        if let Some(n) = self.per_address.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_address.remove(&ip);
            }
            self.total = self.total.saturating_sub(1);
        }
    }

    /// Inbound connections holding a slot.
    #[cfg(test)]
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
