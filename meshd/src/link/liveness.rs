//! Noticing at once that a link died or that its peer restarted, and coming back at once when
//! it heals. Three mechanisms, each cheap and none trusting an unauthenticated datagram with
//! more than a handshake:
//!
//! * **Unanswered data.** A peer that receives data answers within [`PASSIVE_KEEPALIVE`] (with
//!   its own traffic or a keepalive). So data sent and not answered within
//!   [`Peer::silent_after`] (at least [`SILENT_MIN`], more on a long round trip) means the
//!   link is dead: it goes down then, not after the idle timeout, and routing goes around it.
//! * **Fast redial.** A configured peer whose link was up a moment ago is dialed every
//!   [`FAST_REDIAL`] for [`FAST_FOR`], without the back-off that protects against peers that
//!   are gone for good, so a link whose cable is plugged back is up within a fraction of a
//!   second.
//! * **Stale hints and incarnations.** A transport message for a receiver index this node
//!   does not know (it restarted, so it lost every session) is answered with a `STALE` hint
//!   ([`wire::emit_stale`]). The peer that used that index handshakes again at once instead of
//!   waiting for its timers; the hint is not authenticated, so that is all it does (the link
//!   keeps its session until the new one is up, and a forged hint costs one handshake). Every
//!   handshake carries the sender's *incarnation* (drawn at start): a handshake from a new
//!   incarnation of a linked peer replaces the link (down, then up), so the router starts
//!   over with the new instance instead of keeping what the old one said.
//!
//! * **Paths.** Data unanswered on the path in use moves the link to another path heard from
//!   lately instead of taking it down; the peer follows its data there
//!   ([`Links::follow_data_path`]).
//!
//! It must not tear a link down on anything unauthenticated.

use super::peer::PASSIVE_KEEPALIVE;
use super::{LinkConfig, Links, Peer, Recv, handshake::Purpose};
use crate::toolkit::bucket::Rate;
use crate::uri::Endpoint;
use crate::wire;
use std::time::{Duration, Instant};

/// Data unanswered for this long (at least) means the link is dead.
pub const SILENT_MIN: Duration = Duration::from_millis(500);
/// A link that was up a moment ago is dialed again this often...
pub const FAST_REDIAL: Duration = Duration::from_millis(250);
/// ...for this long after it went down; then the usual back-off.
pub const FAST_FOR: Duration = Duration::from_secs(10);
/// Stale hints this node sends, all sources together: enough for every peer that restarted
/// to be told at once, too few to be worth reflecting (and each is 8 bytes).
pub const STALE_RATE: Rate = Rate::new(64.0, 128.0);

impl Peer {
    /// How long data may go unanswered before the link is taken for dead: [`SILENT_MIN`],
    /// or twice the round trip plus the peer's [`PASSIVE_KEEPALIVE`] on a long path, and
    /// never more than the idle timeout.
    pub(crate) fn silent_after(&self, cfg: &LinkConfig) -> Duration {
        let rtt = self
            .paths
            .iter()
            .find(|p| p.endpoint == self.endpoint)
            .and_then(|p| p.srtt)
            .or(self.rtt)
            .unwrap_or_default();
        (rtt * 2 + PASSIVE_KEEPALIVE)
            .max(SILENT_MIN)
            .min(cfg.peer_timeout)
    }
}

impl Links {
    /// A transport message for `receiver`, an index we do not know, came from `from`: tell
    /// the sender (within [`STALE_RATE`]).
    pub(super) fn send_stale(&mut self, now: Instant, from: Endpoint, receiver: u32) {
        if self.sessions.contains_key(&receiver) || !self.stale_tokens.take(now, STALE_RATE) {
            return;
        }
        self.queue(from, wire::emit_stale(receiver).to_vec());
    }

    /// A stale hint: if `receiver` is the peer's index of a session of ours with the peer at
    /// `from`, that peer lost it (a restart): handshake again now, keeping the session until
    /// the new one is up.
    pub(super) fn handle_stale(&mut self, now: Instant, from: Endpoint, receiver: u32) -> Recv {
        let Some(key) = self
            .peers
            .values()
            .find(|p| {
                p.paths.iter().any(|q| q.endpoint == from)
                    && p.sessions.iter().any(|s| s.remote_index == receiver)
            })
            .map(|p| p.key)
        else {
            return Recv::Dropped(super::DropReason::UnknownSession);
        };
        let Some(p) = self.peers.get(&key) else {
            return Recv::Consumed;
        };
        if p.rekey_in_flight.is_some() {
            return Recv::Consumed;
        }
        tracing::debug!(peer = %key, "the peer lost our session (it restarted?): handshaking again");
        let idx = self.start_handshake(from, Purpose::Rekey(key), now);
        if let Some(p) = self.peers.get_mut(&key) {
            p.rekey_in_flight = idx;
            p.next_rekey_attempt = now + self.cfg.handshake_timeout;
        }
        self.refile_peer(&key);
        Recv::Consumed
    }

    /// Data from `key` arrived over `from`, not the path in use: if the path in use has been
    /// silent for [`SILENT_MIN`], the peer moved its traffic (its data went unanswered there):
    /// answer where its data comes from. One comparison when nothing moved.
    pub(super) fn follow_data_path(
        &mut self,
        key: &crate::identity::PublicKey,
        from: Endpoint,
        now: Instant,
    ) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        if peer.endpoint == from {
            return;
        }
        let current = peer.endpoint;
        let heard = peer.paths.iter().find(|p| p.endpoint == current);
        if heard.is_none_or(|p| now >= p.last_rx + SILENT_MIN) {
            tracing::info!(peer = %key.short(), from = %current, to = %from,
                "the peer's data moved to another path: following it");
            peer.endpoint = from;
            peer.switched = now;
            // It may not know where it is seen now (a new network, a new NAT mapping).
            self.events.push_back(super::Event::PeerMoved { key: *key });
        }
    }
}
