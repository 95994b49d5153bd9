//! The schedule of a session: when it is replaced (rekey) and when it must no longer be used
//! (expiry). WireGuard's numbers by default: rekey after 120 s, reject after 180 s; the
//! responder rekeys [`RESPONDER_REKEY_DELAY`] later than the initiator so that the two sides
//! do not start crossing handshakes.

use crate::session::Session;
use std::time::{Duration, Instant};

/// The responder of a session rekeys this much later than the initiator would.
pub const RESPONDER_REKEY_DELAY: Duration = Duration::from_secs(10);

/// Rekey and expiry ages of the sessions of one layer.
#[derive(Debug, Clone, Copy)]
pub struct Lifetime {
    /// Start a new handshake when the newest session is this old.
    pub rekey_after: Duration,
    /// Never use a session older than this.
    pub reject_after: Duration,
}

impl Lifetime {
    /// When a new handshake should replace `s`.
    pub fn rekey_at(&self, s: &Session) -> Instant {
        let delay = if s.initiator {
            Duration::ZERO
        } else {
            RESPONDER_REKEY_DELAY
        };
        s.created + self.rekey_after + delay
    }

    /// From when `s` must no longer be used.
    pub fn expires_at(&self, s: &Session) -> Instant {
        s.created + self.reject_after
    }

    /// Whether `s` may still be used at `now`.
    pub fn usable(&self, s: &Session, now: Instant) -> bool {
        now < self.expires_at(s)
    }

    /// Drops the sessions of `sessions` that expired at `now`, telling `gone` each one's local
    /// index (so that the caller forgets it in its index table).
    pub fn drop_expired(
        &self,
        sessions: &mut Vec<Session>,
        now: Instant,
        mut gone: impl FnMut(u32),
    ) {
        sessions.retain(|s| {
            let keep = self.usable(s, now);
            if !keep {
                gone(s.local_index);
            }
            keep
        });
    }
}
