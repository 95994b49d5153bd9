//! Direct messages: end-to-end DATA sent bare to the link peer that is its destination, so
//! that a packet between two linked nodes is sealed once (by the end-to-end session), not
//! twice. The link core never opens them; it lends the peer's endpoint and keeps its own
//! liveness bookkeeping (last heard, unanswered data, keepalives owed, counters) as if they
//! were its transport messages, so a link that carries only direct messages is neither taken
//! for dead nor kept alive by anything unauthenticated: the caller reports a direct message
//! only after the end-to-end session authenticated it.

use super::peer::Peer;
use super::{LinkConfig, Links, Timer};
use crate::identity::PublicKey;
use crate::toolkit::timer::TimerTable;
use crate::uri::Endpoint;
use std::time::Instant;

impl Links {
    /// Where to send a direct message to `key`: the endpoint in use, while a link with a
    /// session the peer is known to hold is up; `None` otherwise (route it instead).
    pub fn direct_endpoint(&self, key: &PublicKey) -> Option<Endpoint> {
        let peer = self.peers.get(key)?;
        peer.sessions
            .iter()
            .any(|s| s.confirmed)
            .then_some(peer.endpoint)
    }

    /// A direct message of `len` bytes went to `key`: what sending a transport message does
    /// to the link's liveness (the peer must answer within the silence bound).
    pub fn sent_direct(&mut self, key: &PublicKey, now: Instant, len: usize) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        self.counters.tx_datagrams += 1;
        peer.sent(key, now, len, &self.cfg, &mut self.timers);
    }

    /// An authenticated direct message of `len` bytes came from `key` at `from`: the peer
    /// is alive, and owed an answer. A direct message never adds a path nor moves the link
    /// to another endpoint (only the link's own messages do); it refreshes a path it came on.
    pub fn heard_direct(&mut self, key: &PublicKey, from: Endpoint, now: Instant, len: usize) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        peer.last_rx = now;
        peer.first_unanswered_tx = None;
        peer.counters.rx_bytes += len as u64;
        peer.counters.rx_packets += 1;
        if let Some(p) = peer.paths.iter_mut().find(|p| p.endpoint == from) {
            p.last_rx = now;
        }
        peer.owed_answer.get_or_insert(now);
        let passive = now + super::peer::PASSIVE_KEEPALIVE;
        if peer.timer.is_none_or(|t| t > passive) {
            self.timers
                .lower(Timer::Peer(*key), &mut peer.timer, passive);
        }
    }

    /// The linked peer whose endpoint in use is `from`, if any (to answer a direct message
    /// for a session we do not hold with a STALE hint).
    pub fn key_at(&self, from: &Endpoint) -> Option<PublicKey> {
        self.bound_keys.get(from).copied().or_else(|| {
            self.peers
                .values()
                .find(|p| p.endpoint == *from)
                .map(|p| p.key)
        })
    }
}

impl Peer {
    /// A datagram of `len` bytes (a transport or a direct message) went to this peer: it must
    /// answer within the silence bound, and owes no keepalive now.
    pub(super) fn sent(
        &mut self,
        key: &PublicKey,
        now: Instant,
        len: usize,
        cfg: &LinkConfig,
        timers: &mut TimerTable<Timer>,
    ) {
        self.last_tx = now;
        self.owed_answer = None;
        if self.first_unanswered_tx.is_none() {
            self.first_unanswered_tx = Some(now);
            // The link is dead if nothing comes back by then; usually filed earlier already
            // (the keepalive).
            let silent = now + self.silent_after(cfg);
            if self.timer.is_none_or(|t| t > silent) {
                timers.lower(Timer::Peer(*key), &mut self.timer, silent);
            }
        }
        self.counters.tx_bytes += len as u64;
        self.counters.tx_packets += 1;
    }
}
