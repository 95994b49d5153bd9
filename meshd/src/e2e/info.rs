//! What the end-to-end layer reports: drop counters by reason and the rows of
//! `meshctl sessions`.
//!
//! Read-only views of the state in [`super`]; it must not change any session or remote.

use super::E2e;
use serde::Serialize;
use std::time::Instant;

/// Drops at the end-to-end layer, by reason.
#[derive(Debug, Clone, Default, Serialize)]
pub struct E2eCounters {
    /// Messages that could not be parsed.
    pub malformed: u64,
    /// Data for a session index we do not have.
    pub unknown_session: u64,
    /// Data replayed or too old.
    pub replay: u64,
    /// Data whose tag did not verify.
    pub decrypt_failed: u64,
    /// Handshakes that failed or named another key than their routing header.
    pub handshake_failed: u64,
    /// Handshake inits beyond the rate limit.
    pub rate_limited: u64,
    /// A packet whose source address does not belong to the session's key.
    pub spoofed_source: u64,
    /// A packet for an address that is not ours.
    pub not_for_us: u64,
    /// Packets dropped from a full queue or when a handshake gave up.
    pub queue_dropped: u64,
    /// Sessions established.
    pub sessions_established: u64,
}

impl E2eCounters {
    /// Drops of messages that came from the network.
    pub fn from_network(&self) -> u64 {
        self.malformed
            + self.unknown_session
            + self.replay
            + self.decrypt_failed
            + self.handshake_failed
            + self.rate_limited
            + self.spoofed_source
            + self.not_for_us
    }
}

/// One row of `meshctl sessions`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SessionInfo {
    /// The remote node's key.
    pub public_key: String,
    /// Its address.
    pub address: String,
    /// `up`, or `handshaking` (packets queued).
    pub state: String,
    /// Seconds since the newest session was set up.
    pub age_secs: Option<u64>,
    /// Whether we started the newest session.
    pub initiator: Option<bool>,
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes received (IPv6 packets).
    pub rx_bytes: u64,
    /// Bytes sent (IPv6 packets).
    pub tx_bytes: u64,
    /// Packets waiting for the session.
    pub queued: usize,
}

impl E2e {
    /// Sessions, for `meshctl sessions`.
    pub fn sessions(&self, now: Instant) -> Vec<SessionInfo> {
        let mut v: Vec<SessionInfo> = self
            .remotes
            .iter()
            .map(|(k, r)| {
                let newest = r.sessions.last();
                SessionInfo {
                    public_key: k.to_string(),
                    address: k.address().to_string(),
                    state: if newest.is_some() {
                        "up"
                    } else {
                        "handshaking"
                    }
                    .into(),
                    age_secs: newest.map(|s| now.saturating_duration_since(s.created).as_secs()),
                    initiator: newest.map(|s| s.initiator),
                    rx_packets: r.rx_packets,
                    tx_packets: r.tx_packets,
                    rx_bytes: r.rx_bytes,
                    tx_bytes: r.tx_bytes,
                    queued: r.queue.len(),
                }
            })
            .collect();
        v.sort_by(|a, b| a.address.cmp(&b.address));
        v
    }
}
