//! Counters: what was dropped and why, so that an attack, a bug and a misconfiguration look
//! different in `meshctl status`.

use serde::Serialize;

/// Why a datagram or a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a valid link message (bad type, length, suite).
    Malformed,
    /// A transport message for a session index we do not have.
    UnknownSession,
    /// A transport message whose counter was seen before or is too old.
    Replay,
    /// A transport message whose tag did not verify.
    Decrypt,
    /// A handshake message that failed (bad Noise message, unknown index, bad payload).
    Handshake,
    /// A handshake refused on purpose (pinned key mismatch, our own key).
    Refused,
    /// Too many handshakes at once; the newest was not answered.
    RateLimited,
    /// A decrypted frame of an unknown kind.
    BadFrame,
    /// A frame for a link that is not up (any more).
    NoLink,
}

/// Counters of one node, serialised as-is into `meshctl status --json`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    /// Datagrams received on the UDP sockets.
    pub rx_datagrams: u64,
    /// Datagrams sent.
    pub tx_datagrams: u64,
    /// Handshakes completed (as initiator or responder).
    pub handshakes_completed: u64,
    /// Handshakes refused because the circle policy denies the peer (`peer` rules).
    pub policy_refused: u64,
    /// Drops by reason.
    pub dropped: DropCounters,
}

/// One counter per [`DropReason`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct DropCounters {
    /// See [`DropReason::Malformed`].
    pub malformed: u64,
    /// See [`DropReason::UnknownSession`].
    pub unknown_session: u64,
    /// See [`DropReason::Replay`].
    pub replay: u64,
    /// See [`DropReason::Decrypt`].
    pub decrypt_failed: u64,
    /// See [`DropReason::Handshake`].
    pub handshake_failed: u64,
    /// See [`DropReason::Refused`].
    pub refused: u64,
    /// See [`DropReason::RateLimited`].
    pub rate_limited: u64,
    /// See [`DropReason::BadFrame`].
    pub bad_frame: u64,
    /// See [`DropReason::NoLink`].
    pub no_link: u64,
}

impl DropCounters {
    /// Counts one drop.
    pub fn add(&mut self, reason: DropReason) {
        let c = match reason {
            DropReason::Malformed => &mut self.malformed,
            DropReason::UnknownSession => &mut self.unknown_session,
            DropReason::Replay => &mut self.replay,
            DropReason::Decrypt => &mut self.decrypt_failed,
            DropReason::Handshake => &mut self.handshake_failed,
            DropReason::Refused => &mut self.refused,
            DropReason::RateLimited => &mut self.rate_limited,
            DropReason::BadFrame => &mut self.bad_frame,
            DropReason::NoLink => &mut self.no_link,
        };
        *c += 1;
    }

    /// Drops of datagrams that came from the network.
    pub fn from_network(&self) -> u64 {
        self.malformed
            + self.unknown_session
            + self.replay
            + self.decrypt_failed
            + self.handshake_failed
            + self.refused
            + self.rate_limited
            + self.bad_frame
    }
}
