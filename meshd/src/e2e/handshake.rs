//! Session set-up: the Noise IK handshake of both roles. Owns starting (and restarting) a
//! handshake, answering an INIT (rate limits, checking the key inside against the routing
//! header), completing on a RESP, installing the resulting session and sending what was
//! queued for it.
//!
//! It must not encrypt or decrypt data itself (that is [`super::data`]: queued packets go
//! out through [`E2e::encrypt`]) nor decide when to retry (that is [`super::timers`]).

use super::{
    E2e, Encrypt, INIT_RATE, KEY_RATE, MAX_KEY_BUCKETS, MAX_SESSIONS, MAX_VIA_BUCKETS, Pending,
    Received, VIA_RATE, wire,
};
use crate::identity::PublicKey;
use crate::noise;
use crate::session::Session;
use crate::toolkit::bucket::Bucket;
use crate::wire::{HandshakePayload, Suite};
use std::time::Instant;

impl E2e {
    pub(super) fn start_handshake(&mut self, now: Instant, dest: &PublicKey) {
        let Some(remote_static) = dest.noise_static() else {
            return;
        };
        let suite = self.cfg.suite;
        let Ok(mut hs) =
            noise::ik_initiator(&self.private, &remote_static, suite, self.cfg.bind.as_ref())
        else {
            return;
        };
        let index = self.fresh_index();
        let mut buf = vec![0u8; wire::INIT_LEN + 16];
        buf[0] = wire::TYPE_INIT;
        buf[1] = suite.to_byte();
        buf[4..8].copy_from_slice(&index.to_be_bytes());
        let payload = HandshakePayload {
            public_key: self.public.0,
        }
        .emit();
        let Ok(n) = hs.write_message(&payload, &mut buf[8..]) else {
            return;
        };
        buf.truncate(8 + n);
        let attempts = self
            .remotes
            .get(dest)
            .and_then(|r| r.initiating.as_ref())
            .map_or(0, |p| p.attempts);
        if let Some(old) = self.remotes.get_mut(dest).and_then(|r| r.initiating.take()) {
            self.by_index.remove(&old.index);
        }
        self.by_index.insert(index, *dest);
        let retry = now + self.cfg.handshake_timeout;
        if let Some(r) = self.remotes.get_mut(dest) {
            r.initiating = Some(Pending {
                index,
                hs,
                sent: now,
                attempts: attempts + 1,
            });
            self.timers.lower(*dest, &mut r.timer, retry);
        }
        self.transmits.push_back((*dest, buf));
    }

    /// Per-key limit on handshakes, charged only once the init proved its key (charged
    /// before, anyone could spend a key's allowance by naming it in junk inits).
    fn admit_key(&mut self, now: Instant, key: &PublicKey) -> bool {
        if self.per_key.len() > MAX_KEY_BUCKETS {
            self.per_key.clear();
        }
        self.per_key
            .entry(*key)
            .or_insert(Bucket::full(KEY_RATE.burst, now))
            .take(now, KEY_RATE)
    }

    /// Per-link limit on handshakes (see [`VIA_RATE`]); asked before the global bucket, so
    /// that a flood over one link does not drain it.
    fn admit_via(&mut self, now: Instant, via: Option<u64>) -> bool {
        let Some(via) = via else {
            return true;
        };
        if self.per_via.len() >= MAX_VIA_BUCKETS && !self.per_via.contains_key(&via) {
            self.per_via.clear();
        }
        self.per_via
            .entry(via)
            .or_insert(Bucket::full(VIA_RATE.burst, now))
            .take(now, VIA_RATE)
    }

    pub(super) fn on_init(
        &mut self,
        now: Instant,
        via: Option<u64>,
        src: &PublicKey,
        suite: Suite,
        sender: u32,
        noise_msg: &[u8],
    ) -> Received {
        // The global bucket bounds the Diffie-Hellman work strangers can cause; the per-link
        // one keeps one flooding neighbour from taking all of it.
        if !self.admit_via(now, via) || !self.tokens.take(now, INIT_RATE) {
            self.counters.rate_limited += 1;
            return Received::Dropped;
        }
        let Ok(mut hs) = noise::ik_responder(&self.private, suite, self.cfg.bind.as_ref()) else {
            self.counters.handshake_failed += 1;
            return Received::Dropped;
        };
        let mut payload = [0u8; 128];
        let key = match hs.read_message(noise_msg, &mut payload) {
            Ok(n) => noise::peer_identity(&hs, &payload[..n]),
            Err(_) => Err("init did not decrypt"),
        };
        let key = match key {
            Ok(k) if k == *src && k != self.public => k,
            _ => {
                self.counters.handshake_failed += 1;
                return Received::Dropped;
            }
        };
        if !self.admit_key(now, &key) {
            self.counters.rate_limited += 1;
            return Received::Dropped;
        }
        let index = self.fresh_index();
        let mut buf = vec![0u8; wire::RESP_LEN + 16];
        buf[0] = wire::TYPE_RESP;
        buf[4..8].copy_from_slice(&index.to_be_bytes());
        buf[8..12].copy_from_slice(&sender.to_be_bytes());
        let Ok(n) = hs.write_message(&[], &mut buf[12..]) else {
            return Received::Dropped;
        };
        buf.truncate(12 + n);
        let Some(mut session) = Session::from_handshake(hs, index, sender, suite, now) else {
            return Received::Dropped;
        };
        session.confirmed = false;
        self.transmits.push_back((key, buf));
        self.install(now, key, session);
        Received::Consumed
    }

    pub(super) fn on_resp(
        &mut self,
        now: Instant,
        receiver: u32,
        sender: u32,
        noise_msg: &[u8],
    ) -> Received {
        let Some(key) = self.by_index.get(&receiver).copied() else {
            self.counters.unknown_session += 1;
            return Received::Dropped;
        };
        let suite = self.cfg.suite;
        let Some(r) = self.remotes.get_mut(&key) else {
            return Received::Dropped;
        };
        let Some(p) = r.initiating.as_mut().filter(|p| p.index == receiver) else {
            self.counters.unknown_session += 1;
            return Received::Dropped;
        };
        let mut scratch = [0u8; 64];
        if p.hs.read_message(noise_msg, &mut scratch).is_err() {
            // Forged or corrupted: keep waiting for the real one (snow rolled back).
            self.counters.handshake_failed += 1;
            return Received::Dropped;
        }
        let Some(p) = r.initiating.take() else {
            return Received::Dropped;
        };
        let Some(mut session) = Session::from_handshake(p.hs, receiver, sender, suite, now) else {
            return Received::Dropped;
        };
        // The response proves the responder holds the keys.
        session.confirmed = true;
        let nothing_queued = self.remotes.get(&key).is_none_or(|r| r.queue.is_empty());
        self.install(now, key, session);
        if nothing_queued {
            // Confirm the session to the responder, which sends nothing on it until then.
            self.send_keepalive(now, &key);
        }
        Received::Consumed
    }

    fn send_keepalive(&mut self, now: Instant, key: &PublicKey) {
        let life = self.cfg.lifetime();
        let Some(s) = self
            .remotes
            .get_mut(key)
            .and_then(|r| r.send_session(now, life))
        else {
            return;
        };
        let mut out = vec![0u8; wire::DATA_OVERHEAD];
        if let Ok(n) = s.encrypt(&[], &mut out) {
            out.truncate(n);
            self.transmits.push_back((*key, out));
        }
    }

    /// Adds a session and sends whatever was waiting for it.
    fn install(&mut self, now: Instant, key: PublicKey, session: Session) {
        self.counters.sessions_established += 1;
        let local = session.local_index;
        let usable = session.confirmed;
        let life = self.cfg.lifetime();
        let Some(r) = self.remote(&key, now) else {
            return;
        };
        let mut gone = Vec::new();
        if !usable {
            // At most one responder session waits for confirmation: a newer init replaces
            // it, and can never push out a session in use.
            r.sessions.retain(|s| {
                if !s.confirmed {
                    gone.push(s.local_index);
                }
                s.confirmed
            });
        }
        r.sessions.push(session);
        if r.sessions.len() > MAX_SESSIONS {
            gone.push(r.sessions.remove(0).local_index);
        }
        let expiry = r.sessions.first().map(|s| life.expires_at(s));
        for g in gone {
            self.by_index.remove(&g);
        }
        self.by_index.insert(local, key);
        if let Some(t) = expiry {
            self.file(&key, t);
        }
        if usable {
            tracing::debug!(peer = %key.short(), "end-to-end session up");
            self.flush_queue(now, key);
        }
    }

    /// A session became usable: sends what waited for it.
    pub(super) fn flush_queue(&mut self, now: Instant, key: PublicKey) {
        let Some(r) = self.remotes.get_mut(&key) else {
            return;
        };
        r.last_rx = Some(now);
        r.first_unanswered = None;
        let queued: Vec<Vec<u8>> = r.queue.drain(..).collect();
        let mut out = Vec::new();
        for pkt in queued {
            if self.encrypt(now, &key, &pkt, &mut out) == Encrypt::Ready {
                self.transmits.push_back((key, std::mem::take(&mut out)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{E2eConfig, Encrypt};
    use super::*;
    use crate::identity::Identity;
    use std::time::Duration;

    /// An init from `sender` to `dest`, as its E2e core makes it.
    fn init_from(sender: &Identity, dest: &PublicKey, now: Instant) -> Vec<u8> {
        let mut e = E2e::new(sender, E2eConfig::default(), 7, now);
        let mut out = Vec::new();
        assert_eq!(e.encrypt(now, dest, &[0x60; 40], &mut out), Encrypt::Queued);
        e.poll_transmit().expect("an init").1
    }

    #[test]
    fn one_link_flooding_inits_does_not_starve_sessions_over_others() {
        let now = Instant::now();
        let me = Identity::from_seed(&[1; 32]);
        let mut r = E2e::new(&me, E2eConfig::default(), 1, now);
        let flooder = Identity::from_seed(&[2; 32]);
        let flood = init_from(&flooder, &me.public_key(), now);
        let mut out = vec![0u8; 2048];
        // Link 1 floods; the rest of the budget stays for the others.
        for t in 0..3u64 {
            let at = now + Duration::from_secs(t);
            let admitted = (0..5000)
                .filter(|_| {
                    let before = r.counters.rate_limited;
                    r.handle_via(at, Some(1), &flooder.public_key(), &flood, &mut out);
                    r.counters.rate_limited == before
                })
                .count();
            assert!(admitted <= 64, "link 1 got {admitted} inits past the limit");
            for n in 0..20u8 {
                let other = Identity::from_seed(&[10 + n + 20 * t as u8; 32]);
                let init = init_from(&other, &me.public_key(), at);
                assert_eq!(
                    r.handle_via(
                        at,
                        Some(2 + u64::from(n)),
                        &other.public_key(),
                        &init,
                        &mut out
                    ),
                    Received::Consumed,
                    "an init over another link was refused at {t} s"
                );
            }
        }
    }
}
