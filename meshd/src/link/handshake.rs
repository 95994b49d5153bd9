//! The three handshake messages of Noise XX, for both roles.
//!
//! ```text
//!   initiator                                   responder
//!   Init      (-> e)                  ────────►  pending slot (bounded, rate-limited)
//!             ◄────────  Response (<- e, ee, s, es; payload: ed25519 key)
//!   check key (pin, self) then
//!   Final     (-> s, se; payload: ed25519 key) ────────►  check key (pin, self)
//!   session (unconfirmed)                        session (confirmed) + keepalive
//! ```
//!
//! When the budget an init would be served from is spent (a flood), the responder answers
//! with a cookie reply instead of message 2 ([`super::cookie`]); the initiator sends the same
//! init again at once with the cookie's MAC, which proves its address and is served from the
//! budget of proven addresses.

use super::cookie::{self, MAX_COOKIE_RESENDS};
use super::{COOKIE_SHARE_ALL, DropReason, Event, Links, Recv, Timer};
use crate::identity::PublicKey;
use crate::noise::peer_identity;
use crate::session::Session;
use crate::uri::{Endpoint, Scheme};
use crate::wire::{self, COOKIE_ECHO_LEN, COOKIE_LEN, HandshakePayload, INIT_MAC_AT, Suite};
use snow::HandshakeState;
use std::time::{Duration, Instant};

/// Room for a handshake payload: a whole handshake datagram may be payload (extensions).
const MAX_PAYLOAD: usize = 1024;
/// Half-open inbound handshakes older than this are forgotten.
pub const RESPONDER_EXPIRY: Duration = Duration::from_secs(5);
/// An init not answered within this is sent again (the same bytes, with a cookie's MAC if one
/// came meanwhile), until the handshake times out. A lost init then costs a quarter of a
/// second, not the whole timeout; under a flood, where a responder answers only a share of
/// the inits it gets (`Links::set_cookie_share`), a real initiator gets several draws in the
/// time it would have had one. A responder that gets both answers both (the limits bound
/// that); the initiator takes the first answer and drops the other.
pub const INIT_RESEND: Duration = Duration::from_millis(250);

/// Why we are initiating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// To reach the configured peer(s) at this address.
    Dial(Endpoint),
    /// To replace or probe the sessions of an existing link.
    Rekey(PublicKey),
}

/// Our handshake in flight (we sent Init).
pub struct Initiating {
    pub(crate) hs: HandshakeState,
    pub(crate) suite: Suite,
    pub(crate) to: Endpoint,
    pub(crate) sent: Instant,
    pub(crate) purpose: Purpose,
    /// Where it is filed in [`Links::timers`]: when it is sent again ([`INIT_RESEND`]) or,
    /// at `sent + handshake_timeout`, given up.
    pub(crate) timer: Option<Instant>,
    /// The init's first bytes (header and ephemeral key), to send it again with a cookie.
    pub(crate) head: [u8; INIT_MAC_AT],
    /// How often it was sent again because of a cookie reply.
    pub(crate) resends: u8,
    /// Sent more than once (no answer in time, or a cookie reply): its answer is no round-trip
    /// sample (Karn's rule), since it may answer any of the copies.
    pub(crate) retransmitted: bool,
}

/// A peer's handshake in flight (we sent Response).
pub struct Responding {
    pub(crate) hs: HandshakeState,
    pub(crate) suite: Suite,
    pub(crate) created: Instant,
    pub(crate) remote_index: u32,
}

impl Links {
    fn our_payload(&self) -> [u8; wire::LINK_PAYLOAD_LEN] {
        wire::LinkPayload {
            base: HandshakePayload {
                public_key: self.public.0,
            },
            incarnation: Some(self.incarnation),
        }
        .emit()
    }

    /// Sends a handshake Init to `to`; returns our index for it.
    pub(crate) fn start_handshake(
        &mut self,
        to: Endpoint,
        purpose: Purpose,
        now: Instant,
    ) -> Option<u32> {
        let suite = self.cfg.suite;
        let mut hs = match crate::noise::initiator(&self.noise_private, suite) {
            Ok(hs) => hs,
            Err(e) => {
                tracing::error!("cannot set up a Noise handshake: {e}");
                return None;
            }
        };
        let index = self.fresh_index();
        let mut buf = vec![0u8; wire::INIT_LEN];
        wire::emit_init_header(&mut buf, suite, index);
        // snow wants room for a tag even when message 1 carries none (its payload is empty).
        match hs.write_message(&[], &mut buf[8..8 + wire::INIT_NOISE_LEN + wire::TAG_LEN]) {
            Ok(wire::INIT_NOISE_LEN) => {}
            other => {
                tracing::error!("unexpected Noise message 1: {other:?}");
                return None;
            }
        }
        let mut head = [0u8; INIT_MAC_AT];
        head.copy_from_slice(&buf[..INIT_MAC_AT]);
        self.add_cookie_mac(&mut buf, to, now);
        self.initiating.insert(
            index,
            Initiating {
                hs,
                suite,
                to,
                sent: now,
                purpose,
                timer: None,
                head,
                resends: 0,
                retransmitted: false,
            },
        );
        if let Some(i) = self.initiating.get_mut(&index) {
            let next = (now + INIT_RESEND).min(now + self.cfg.handshake_timeout);
            self.timers
                .set(Timer::Handshake(index), &mut i.timer, Some(next));
        }
        self.queue(to, buf);
        Some(index)
    }

    /// A cookie from `to` that is still fresh goes into the init `buf` (its MAC over the
    /// head): the init proves our address from the start.
    fn add_cookie_mac(&self, buf: &mut [u8], to: Endpoint, now: Instant) {
        if let Some(c) = self.cookie_jar.get(to, now) {
            let mac = cookie::init_mac(&c, &buf[..INIT_MAC_AT]);
            buf[INIT_MAC_AT..INIT_MAC_AT + COOKIE_LEN].copy_from_slice(&mac);
        }
    }

    /// Our init `index` is due again ([`INIT_RESEND`]): sends it and files the next time it
    /// is due (again, or to time out).
    pub(super) fn resend_init(&mut self, index: u32, now: Instant) {
        let Some(init) = self.initiating.get(&index) else {
            return;
        };
        let (to, deadline) = (init.to, init.sent + self.cfg.handshake_timeout);
        let mut buf = vec![0u8; wire::INIT_LEN];
        buf[..INIT_MAC_AT].copy_from_slice(&init.head);
        self.add_cookie_mac(&mut buf, to, now);
        if let Some(i) = self.initiating.get_mut(&index) {
            i.retransmitted = true;
            let next = (now + INIT_RESEND).min(deadline);
            self.timers
                .set(Timer::Handshake(index), &mut i.timer, Some(next));
        }
        self.queue(to, buf);
    }

    /// True if `from` is a configured peer's address or the endpoint of a link.
    pub(crate) fn is_known_source(&self, from: Endpoint) -> bool {
        // Only configured peers: endpoints learnt from the network (discovered, punched)
        // must not earn the larger budget or a way past max_peers.
        self.dialers
            .iter()
            .any(|d| d.addr == Some(from) && d.origin == super::Origin::Configured)
            || self
                .peers
                .values()
                .any(|p| p.paths.iter().any(|q| q.endpoint == from))
    }

    /// `cookie` is the init's head and cookie MAC.
    pub(super) fn handle_init(
        &mut self,
        now: Instant,
        from: Endpoint,
        suite: Suite,
        sender: u32,
        noise: &[u8],
        cookie: (&[u8], &[u8]),
    ) -> Recv {
        if !self.admit_init(now, from, sender, noise, cookie) {
            return Recv::Dropped(DropReason::RateLimited);
        }
        let Ok(mut hs) = crate::noise::responder(&self.noise_private, suite) else {
            return Recv::Dropped(DropReason::Handshake);
        };
        let mut scratch = [0u8; 64];
        if hs.read_message(noise, &mut scratch).is_err() {
            return Recv::Dropped(DropReason::Handshake);
        }
        let index = self.fresh_index();
        let mut buf = vec![0u8; 256];
        let h = wire::emit_response_header(&mut buf, index, sender);
        let payload = self.our_payload();
        let Ok(n) = hs.write_message(&payload, &mut buf[h..]) else {
            return Recv::Dropped(DropReason::Handshake);
        };
        buf.truncate(h + n);
        while self.responding.len() >= self.cfg.max_pending_inbound {
            match self.responding_order.pop_front() {
                Some(old) => {
                    self.responding.remove(&old);
                }
                None => break,
            }
        }
        self.responding.insert(
            index,
            Responding {
                hs,
                suite,
                created: now,
                remote_index: sender,
            },
        );
        self.responding_order.push_back(index);
        self.queue(from, buf);
        Recv::Consumed
    }

    /// Whether to answer an init with the handshake. When not, and its source has not proved
    /// its address, a cookie reply is queued for it (see [`super::cookie`]).
    fn admit_init(
        &mut self,
        now: Instant,
        from: Endpoint,
        sender: u32,
        noise: &[u8],
        (head, mac): (&[u8], &[u8]),
    ) -> bool {
        if self.cookie_secrets.due(now) {
            let fresh = [self.rng.next_u64(), self.rng.next_u64()];
            self.cookie_secrets.rotate(&self.noise_private, fresh, now);
        }
        // TCP and QUIC connections proved the address with their own handshake.
        let has_mac = mac.iter().any(|&b| b != 0);
        let proven = from.scheme != Scheme::Udp
            || (has_mac && self.cookie_secrets.verify(from.addr, head, mac));
        if proven {
            return self.init_limiter.admit_proven(from.addr, now);
        }
        let known = self.is_known_source(from);
        if self.init_limiter.admit(from.addr, known, now) {
            return true;
        }
        // A wrong MAC is made up (a spoofer's) or, seldom, from a cookie gone stale: a new
        // cookie within a small budget, so that making MACs up buys an attacker no answers.
        if has_mac && !self.init_limiter.answer_bad_mac(now) {
            return false;
        }
        if self.cookie_share < COOKIE_SHARE_ALL
            && (self.next_random() & u64::from(COOKIE_SHARE_ALL - 1))
                >= u64::from(self.cookie_share)
        {
            return false;
        }
        // Under load: ask for proof of the address instead of doing Diffie-Hellman. The
        // reply is smaller than the init and goes to the address the init claims.
        let mut echo = [0u8; COOKIE_ECHO_LEN];
        echo.copy_from_slice(&noise[..COOKIE_ECHO_LEN.min(noise.len())]);
        let c = self.cookie_secrets.cookie(from.addr);
        let mut buf = vec![0u8; wire::COOKIE_REPLY_LEN];
        wire::emit_cookie_reply(&mut buf, sender, &echo, &c);
        self.queue(from, buf);
        false
    }

    /// A cookie reply to our init `receiver`: keep the cookie and send the init again with it.
    pub(super) fn handle_cookie(
        &mut self,
        now: Instant,
        receiver: u32,
        echo: &[u8],
        cookie: &[u8],
    ) -> Recv {
        let Some(init) = self.initiating.get_mut(&receiver) else {
            return Recv::Dropped(DropReason::Handshake);
        };
        if init.head[8..8 + COOKIE_ECHO_LEN] != *echo {
            return Recv::Dropped(DropReason::Handshake);
        }
        let Ok(c) = <[u8; COOKIE_LEN]>::try_from(cookie) else {
            return Recv::Dropped(DropReason::Malformed);
        };
        let to = init.to;
        if init.resends >= MAX_COOKIE_RESENDS {
            self.cookie_jar.store(to, c, now);
            return Recv::Consumed;
        }
        init.resends += 1;
        init.retransmitted = true;
        let mut buf = vec![0u8; wire::INIT_LEN];
        buf[..INIT_MAC_AT].copy_from_slice(&init.head);
        buf[INIT_MAC_AT..INIT_MAC_AT + COOKIE_LEN]
            .copy_from_slice(&cookie::init_mac(&c, &init.head));
        self.cookie_jar.store(to, c, now);
        self.queue(to, buf);
        Recv::Consumed
    }

    pub(super) fn handle_response(
        &mut self,
        now: Instant,
        from: Endpoint,
        sender: u32,
        receiver: u32,
        noise: &[u8],
        wire_len: usize,
    ) -> Recv {
        // The state is taken out only once the message authenticated: a forged response (the
        // index travels in clear) must not kill the real handshake. snow rolls its state back
        // when a message fails.
        let mut payload = [0u8; MAX_PAYLOAD];
        let n = match self.initiating.get_mut(&receiver) {
            None => return Recv::Dropped(DropReason::Handshake),
            Some(init) => match init.hs.read_message(noise, &mut payload) {
                Ok(n) => n,
                Err(_) => return Recv::Dropped(DropReason::Handshake),
            },
        };
        let Some(mut init) = self.initiating.remove(&receiver) else {
            return Recv::Dropped(DropReason::Handshake);
        };
        self.clear_in_flight(receiver, init.purpose);
        let key = match peer_identity(&init.hs, &payload[..n]) {
            Ok(k) => k,
            Err(why) => {
                self.handshake_failed(init.purpose, why, now);
                return Recv::Dropped(DropReason::Handshake);
            }
        };
        if let Some(why) = self.refusal(key, init.purpose, from) {
            self.handshake_failed(init.purpose, &why, now);
            return Recv::Dropped(DropReason::Refused);
        }
        let mut buf = vec![0u8; MAX_PAYLOAD];
        let h = wire::emit_final_header(&mut buf, sender);
        let ours = self.our_payload();
        let Ok(n) = init.hs.write_message(&ours, &mut buf[h..]) else {
            return Recv::Dropped(DropReason::Handshake);
        };
        buf.truncate(h + n);
        let Some(session) = Session::from_handshake(init.hs, receiver, sender, init.suite, now)
        else {
            return Recv::Dropped(DropReason::Handshake);
        };
        self.queue(from, buf);
        // A handshake that had to be sent again measures the wait, not the path: a link
        // restored after an outage would otherwise start with a round trip of a second, and
        // take that long (twice) to notice its next failure.
        let rtt = (!init.retransmitted).then(|| now.saturating_duration_since(init.sent));
        let incarnation = incarnation_of(&payload[..n]);
        self.install_session(key, session, from, now, rtt, incarnation);
        if let Some(p) = self.peers.get_mut(&key) {
            p.counters.rx_bytes += wire_len as u64;
        }
        if let Purpose::Dial(addr) = init.purpose {
            // Failures are forgotten once the peer answers on the session (it may still
            // refuse the link at its end).
            for d in self.dialers.iter_mut().filter(|d| d.addr == Some(addr)) {
                d.linked = Some(key);
                // If the peer answered from another address than the one dialed, this
                // dialer's endpoint is no path of the link, and it would dial again at once:
                // not before this long (a path that died is dialed again the same way).
                d.next_attempt = now + super::paths::REDIAL_PATH;
            }
        }
        Recv::Consumed
    }

    pub(super) fn handle_final(
        &mut self,
        now: Instant,
        from: Endpoint,
        receiver: u32,
        noise: &[u8],
        wire_len: usize,
    ) -> Recv {
        // As for responses: only an authenticated final consumes the pending state.
        let mut payload = [0u8; MAX_PAYLOAD];
        let n = match self.responding.get_mut(&receiver) {
            None => return Recv::Dropped(DropReason::Handshake),
            Some(r) => match r.hs.read_message(noise, &mut payload) {
                Ok(n) => n,
                Err(_) => return Recv::Dropped(DropReason::Handshake),
            },
        };
        let Some(resp) = self.responding.remove(&receiver) else {
            return Recv::Dropped(DropReason::Handshake);
        };
        self.responding_order.retain(|i| *i != receiver);
        let key = match peer_identity(&resp.hs, &payload[..n]) {
            Ok(k) => k,
            Err(why) => {
                tracing::debug!(%from, "inbound handshake failed: {why}");
                return Recv::Dropped(DropReason::Handshake);
            }
        };
        let incarnation = incarnation_of(&payload[..n]);
        if let Some(why) = self.refusal(key, Purpose::Dial(from), from) {
            tracing::warn!(%from, peer = %key, "refused inbound link: {why}");
            // Tell the initiator, which already holds the keys: authenticated, so nobody else
            // can make a node drop its links this way.
            if let Some(mut s) =
                Session::from_handshake(resp.hs, receiver, resp.remote_index, resp.suite, now)
            {
                let mut data = vec![0u8; wire::TRANSPORT_OVERHEAD + 1];
                if let Ok(n) = s.encrypt(&[wire::frame::REFUSED], &mut data) {
                    data.truncate(n);
                    self.queue(from, data);
                }
            }
            return Recv::Dropped(DropReason::Refused);
        }
        if !self.peers.contains_key(&key)
            && self.peers.len() >= self.cfg.max_peers
            && !self.is_known_source(from)
        {
            tracing::warn!(
                %from, peer = %key,
                "refused inbound link: already {} links (max_peers)", self.peers.len()
            );
            return Recv::Dropped(DropReason::Refused);
        }
        let Some(session) =
            Session::from_handshake(resp.hs, receiver, resp.remote_index, resp.suite, now)
        else {
            return Recv::Dropped(DropReason::Handshake);
        };
        // Our response to their final: a round trip, as the initiator measures one.
        let rtt = now.saturating_duration_since(resp.created);
        self.install_session(key, session, from, now, Some(rtt), incarnation);
        if let Some(p) = self.peers.get_mut(&key) {
            p.counters.rx_bytes += wire_len as u64;
        }
        Recv::Consumed
    }

    /// Why a handshake with `key` at `from` must not complete, if it must not.
    fn refusal(&mut self, key: PublicKey, purpose: Purpose, from: Endpoint) -> Option<String> {
        if key == self.public {
            return Some(format!("{from} is this node itself"));
        }
        if let Purpose::Rekey(expected) = purpose
            && key != expected
        {
            return Some(format!(
                "peer at {from} presented key {key} but the link belongs to {expected}"
            ));
        }
        if let Some(bound) = self.bound_keys.get(&from)
            && *bound != key
        {
            return Some(format!(
                "the connection {from} authenticated key {bound}, but the link handshake over \
                 it presented key {key}"
            ));
        }
        let addr = match purpose {
            Purpose::Dial(addr) => addr,
            Purpose::Rekey(_) => from,
        };
        if let Some(why) = self.policy_refusal(&key) {
            self.counters.policy_refused += 1;
            return Some(why);
        }
        if let Some((pin, uri)) = self.pin_for(addr)
            && pin != key
        {
            return Some(format!(
                "peer {} presented key {key}, but it is pinned to key {pin}; \
                 if the peer's identity changed on purpose, update its ?key= \
                 (or remove it) in the config",
                uri.endpoint()
            ));
        }
        None
    }

    pub(crate) fn clear_in_flight(&mut self, index: u32, purpose: Purpose) {
        match purpose {
            Purpose::Dial(_) => {
                for d in self
                    .dialers
                    .iter_mut()
                    .filter(|d| d.in_flight == Some(index))
                {
                    d.in_flight = None;
                }
            }
            Purpose::Rekey(key) => {
                if let Some(p) = self
                    .peers
                    .get_mut(&key)
                    .filter(|p| p.rekey_in_flight == Some(index))
                {
                    // A rekey may be due again: file the peer for it.
                    p.rekey_in_flight = None;
                    self.refile_peer(&key);
                }
            }
        }
    }

    /// Records a failed attempt of ours and schedules the next one.
    pub(crate) fn handshake_failed(&mut self, purpose: Purpose, why: &str, now: Instant) {
        match purpose {
            Purpose::Dial(addr) => {
                let max = self.cfg.max_backoff;
                let jitter = self.next_random();
                for d in self.dialers.iter_mut().filter(|d| d.addr == Some(addr)) {
                    d.failures += 1;
                    let why = match d.transport_error.take() {
                        Some(t) if why == "no answer" => t,
                        _ => why.to_string(),
                    };
                    let why = why.as_str();
                    let mut delay = super::Dialer::backoff(d.failures, max);
                    // Up to 10% jitter so that many nodes do not redial in lockstep.
                    delay += delay.mul_f64((jitter % 1000) as f64 / 10_000.0);
                    if d.fast_until.is_some_and(|t| now < t) {
                        // Dialing fast: the next attempt is already filed.
                        delay = delay.min(super::liveness::FAST_REDIAL);
                        d.next_attempt = d.next_attempt.min(now + delay);
                    } else {
                        d.next_attempt = now + delay;
                    }
                    if d.failures == 2 || why != "no answer" {
                        tracing::warn!(peer = %d.uri, "cannot link: {why}; retrying in {delay:?}");
                    }
                    d.last_error = Some(why.to_string());
                    d.forget_resolved();
                }
            }
            Purpose::Rekey(key) => {
                if let Some(p) = self.peers.get_mut(&key) {
                    p.next_rekey_attempt = now + Duration::from_secs(1);
                }
                self.refile_peer(&key);
                if why != "no answer" {
                    tracing::warn!(peer = %key, "rekey failed: {why}");
                }
            }
        }
    }

    /// Asks the shell to resolve a configured host name.
    pub(crate) fn request_resolve(&mut self, i: usize) {
        let uri = self.dialers[i].uri.clone();
        self.dialers[i].resolving = true;
        self.emit(Event::Resolve(uri));
    }
}

/// The incarnation a peer's handshake payload carries, if any ([`wire::LinkPayload`]).
fn incarnation_of(payload: &[u8]) -> Option<u32> {
    wire::LinkPayload::parse(payload)
        .ok()
        .and_then(|p| p.incarnation)
}
