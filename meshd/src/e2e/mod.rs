//! End-to-end sessions: Noise IK between the source and the destination node, so that the
//! nodes forwarding a packet see only ciphertext.
//!
//! ```text
//!  TUN packet for key K ─► encrypt(now, K, packet) ─► Ready: DATA message ─► router ─► …
//!                                                  └► Queued: handshake started (INIT via
//!                                                     poll_transmit); packets wait, bounded
//!  routed payload from K ─► handle(now, K, msg) ─► Deliver: IPv6 packet (source checked
//!                                                  against K's addresses) ─► TUN
//! ```
//!
//! Sans-IO like the link core: time comes in, messages to route come out of
//! [`E2e::poll_transmit`] as `(destination key, bytes)`. The destination is named by key (the
//! router's lookup turned the address into it), so the initiator always knows the responder's
//! static key: IK takes one round trip and hides the initiator's identity from everyone but
//! the responder. The responder checks that the key inside the handshake is the one the
//! routing header claims, and every packet's source address is checked against the session's
//! key. Sessions rekey after 120 s, are never used after 180 s, and do not depend on the path:
//! a route change under a session changes nothing here.

mod timers;
pub mod wire;

use crate::codes;
use crate::identity::{Identity, PublicKey};
use crate::noise;
use crate::packet::Ipv6Header;
use crate::session::{Session, SessionError};
use crate::toolkit::bucket::{Bucket, Rate};
use crate::toolkit::index;
use crate::toolkit::lifetime::Lifetime;
use crate::toolkit::rng::SplitMix64;
use crate::toolkit::timer::TimerTable;
use crate::wire::{HandshakePayload, Suite};
use routing::address;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};
use wire::Msg;

/// Timers and limits of end-to-end sessions.
#[derive(Debug, Clone)]
pub struct E2eConfig {
    /// AEAD for sessions this node starts.
    pub suite: Suite,
    /// Rekey when the newest session is this old.
    pub rekey_after: Duration,
    /// Never use a session older than this.
    pub reject_after: Duration,
    /// Retry a handshake unanswered for this long ...
    pub handshake_timeout: Duration,
    /// ... this many times, then give up (queued packets are dropped).
    pub handshake_attempts: u32,
    /// Sent data and heard nothing for this long: handshake again (the other side may have
    /// restarted and lost the session).
    pub probe_after: Duration,
    /// Packets queued per destination while a session is set up.
    pub queue_per_remote: usize,
    /// Most destinations tracked at once.
    pub max_remotes: usize,
    /// Sessions of a znet (`None`: the overlay's own). A znet's sessions need its secret
    /// (Noise IKpsk1), and carry IPv4 or IPv6 packets of private addresses, which the znet
    /// layer checks instead of this one.
    pub bind: Option<noise::Bind>,
}

impl E2eConfig {
    /// The rekey and expiry ages of sessions.
    pub fn lifetime(&self) -> Lifetime {
        Lifetime {
            rekey_after: self.rekey_after,
            reject_after: self.reject_after,
        }
    }
}

impl Default for E2eConfig {
    fn default() -> Self {
        E2eConfig {
            suite: noise::preferred_suite(),
            rekey_after: Duration::from_secs(120),
            reject_after: Duration::from_secs(180),
            handshake_timeout: Duration::from_secs(1),
            handshake_attempts: 4,
            probe_after: Duration::from_secs(3),
            queue_per_remote: 64,
            max_remotes: 4096,
            bind: None,
        }
    }
}

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

/// What became of a packet handed to [`E2e::encrypt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encrypt {
    /// `out` holds a DATA message for the destination.
    Ready,
    /// Waiting for a session; the packet is queued and will come out of `poll_transmit`.
    Queued,
    /// Dropped (queue full), counted.
    Dropped,
}

/// First byte of a session payload that is a message for the node rather than an IP packet
/// (an IP packet starts with its version, 4 or 6, in the high nibble).
pub const CONTROL: u8 = crate::codes::session_payload::CONTROL;

/// What became of a message handed to [`E2e::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// An IPv6 packet from `from` is in `out[..len]`, its source checked.
    Deliver {
        /// Its length.
        len: usize,
        /// The authenticated sender.
        from: PublicKey,
    },
    /// A message for the node itself (first byte [`CONTROL`]) is in `out[..len]`; it came
    /// from `from` over the session, so it is authenticated and private.
    Control {
        /// Its length.
        len: usize,
        /// The authenticated sender.
        from: PublicKey,
    },
    /// A handshake message, handled.
    Consumed,
    /// Dropped and counted.
    Dropped,
}

/// Sessions kept per remote: the current one, the previous one (packets in flight during a
/// rekey), and one more for crossing handshakes.
const MAX_SESSIONS: usize = 3;

struct Pending {
    index: u32,
    hs: snow::HandshakeState,
    sent: Instant,
    attempts: u32,
}

struct Remote {
    address: Ipv6Addr,
    subnet: Ipv6Addr,
    /// Oldest first, at most [`MAX_SESSIONS`].
    sessions: Vec<Session>,
    initiating: Option<Pending>,
    queue: VecDeque<Vec<u8>>,
    first_unanswered: Option<Instant>,
    /// Where this remote is filed in [`E2e::timers`] (never later than [`Remote::deadline`]).
    timer: Option<Instant>,
    last_rx: Option<Instant>,
    last_used: Instant,
    rx_packets: u64,
    tx_packets: u64,
    rx_bytes: u64,
    tx_bytes: u64,
}

impl Remote {
    fn new(key: &PublicKey, now: Instant) -> Self {
        Remote {
            address: key.address(),
            subnet: key.subnet(),
            sessions: Vec::new(),
            initiating: None,
            queue: VecDeque::new(),
            first_unanswered: None,
            timer: None,
            last_rx: None,
            last_used: now,
            rx_packets: 0,
            tx_packets: 0,
            rx_bytes: 0,
            tx_bytes: 0,
        }
    }

    /// The newest session we may send on: not expired, and confirmed (a responder's session
    /// is confirmed by the first message the initiator sends on it, so that a replayed
    /// handshake init, which anyone on the path could send again, never takes the traffic).
    fn send_session(&mut self, now: Instant, life: Lifetime) -> Option<&mut Session> {
        self.sessions
            .iter_mut()
            .rev()
            .find(|s| s.confirmed && life.usable(s, now))
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

/// All end-to-end sessions of this node.
pub struct E2e {
    /// Wiped from memory when dropped.
    private: zeroize::Zeroizing<[u8; 32]>,
    public: PublicKey,
    address: Ipv6Addr,
    subnet: Ipv6Addr,
    cfg: E2eConfig,
    rng: SplitMix64,
    remotes: HashMap<PublicKey, Remote>,
    /// Local index (sessions and our handshakes in flight) to remote key.
    by_index: HashMap<u32, PublicKey>,
    /// Handshake inits answered: global bucket, and per sender.
    tokens: Bucket,
    per_key: BTreeMap<PublicKey, Bucket>,
    transmits: VecDeque<(PublicKey, Vec<u8>)>,
    counters: E2eCounters,
    /// When each remote next has work ([`timers`]).
    timers: TimerTable<PublicKey>,
}

/// Handshake inits answered, all senders together: they cost Diffie-Hellman work.
const INIT_RATE: Rate = Rate::new(128.0, 256.0);
/// Handshake inits answered per sender key (charged once the init proved its key).
const KEY_RATE: Rate = Rate::new(4.0, 8.0);
/// Most per-key buckets kept; beyond, the table starts over.
const MAX_KEY_BUCKETS: usize = 4096;
/// A remote with nothing queued and unused for this long may be forgotten to make room.
const IDLE_REMOTE: Duration = Duration::from_secs(300);

impl E2e {
    /// End-to-end sessions for `identity`; `seed` drives session indexes.
    pub fn new(identity: &Identity, cfg: E2eConfig, seed: u64, now: Instant) -> Self {
        let public = identity.public_key();
        E2e {
            private: identity.noise_private(),
            public,
            address: public.address(),
            subnet: public.subnet(),
            cfg,
            rng: SplitMix64::new(seed, 0x517c_c1b7_2722_0a95),
            remotes: HashMap::new(),
            by_index: HashMap::new(),
            tokens: Bucket::full(INIT_RATE.burst, now),
            per_key: BTreeMap::new(),
            transmits: VecDeque::new(),
            counters: E2eCounters::default(),
            timers: TimerTable::default(),
        }
    }

    /// Counters.
    pub fn counters(&self) -> &E2eCounters {
        &self.counters
    }

    fn fresh_index(&mut self) -> u32 {
        let by_index = &self.by_index;
        index::fresh(&mut self.rng, |i| by_index.contains_key(&i))
    }

    /// Files the remote `key` under `at` if that is earlier than where it is filed.
    fn file(&mut self, key: &PublicKey, at: Instant) {
        if let Some(r) = self.remotes.get_mut(key) {
            self.timers.lower(*key, &mut r.timer, at);
        }
    }

    fn remote(&mut self, key: &PublicKey, now: Instant) -> Option<&mut Remote> {
        if !self.remotes.contains_key(key) {
            if self.remotes.len() >= self.cfg.max_remotes {
                self.evict_idle(now);
            }
            if self.remotes.len() >= self.cfg.max_remotes {
                // Still full: the least recently used remote with nothing queued makes room
                // (so that strangers' handshakes cannot lock us out of new destinations).
                let lru = self
                    .remotes
                    .iter()
                    .filter(|(_, r)| r.queue.is_empty())
                    .min_by_key(|(_, r)| r.last_used)
                    .map(|(k, _)| *k);
                match lru {
                    Some(k) => self.forget(&k),
                    None => return None,
                }
            }
            self.remotes.insert(*key, Remote::new(key, now));
        }
        self.remotes.get_mut(key)
    }

    /// The next message to route: `(destination key, message)`.
    pub fn poll_transmit(&mut self) -> Option<(PublicKey, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// Encrypts an IPv6 packet for `dest` into `out` (a DATA message), or queues it while a
    /// session is set up.
    pub fn encrypt(
        &mut self,
        now: Instant,
        dest: &PublicKey,
        packet: &[u8],
        out: &mut Vec<u8>,
    ) -> Encrypt {
        let life = self.cfg.lifetime();
        let probe_after = self.cfg.probe_after;
        let Some(r) = self.remote(dest, now) else {
            self.counters.queue_dropped += 1;
            return Encrypt::Dropped;
        };
        r.last_used = now;
        if let Some(s) = r.send_session(now, life) {
            let due_rekey = now >= life.rekey_at(s);
            out.resize(packet.len() + wire::DATA_OVERHEAD, 0);
            if let Ok(n) = s.encrypt(packet, out) {
                out.truncate(n);
                r.tx_packets += 1;
                r.tx_bytes += packet.len() as u64;
                let mut file_probe = None;
                if r.first_unanswered.is_none() {
                    r.first_unanswered = Some(now);
                    // A probe is due if nothing comes back: file it unless an earlier
                    // deadline is filed already (the usual case: no work per packet).
                    let probe = now + probe_after;
                    if r.timer.is_none_or(|t| t > probe) {
                        file_probe = Some(probe);
                    }
                }
                if due_rekey && r.initiating.is_none() {
                    self.start_handshake(now, dest);
                }
                if let Some(probe) = file_probe {
                    self.file(dest, probe);
                }
                return Encrypt::Ready;
            }
        }
        let limit = self.cfg.queue_per_remote;
        let Some(r) = self.remotes.get_mut(dest) else {
            return Encrypt::Dropped;
        };
        if r.queue.len() >= limit {
            r.queue.pop_front();
            self.counters.queue_dropped += 1;
        }
        r.queue.push_back(packet.to_vec());
        if r.initiating.is_none() {
            self.start_handshake(now, dest);
        }
        Encrypt::Queued
    }

    fn start_handshake(&mut self, now: Instant, dest: &PublicKey) {
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

    /// Handles a message routed to us; `src` is the key the routing header names (the
    /// handshake must prove it).
    pub fn handle(
        &mut self,
        now: Instant,
        src: &PublicKey,
        msg: &[u8],
        out: &mut [u8],
    ) -> Received {
        match wire::parse(msg) {
            Err(_) => {
                self.counters.malformed += 1;
                Received::Dropped
            }
            Ok(Msg::Init {
                suite,
                sender,
                noise,
            }) => self.on_init(now, src, suite, sender, noise),
            Ok(Msg::Resp {
                sender,
                receiver,
                noise,
            }) => self.on_resp(now, receiver, sender, noise),
            Ok(Msg::Data {
                receiver,
                counter,
                ciphertext,
            }) => self.on_data(now, receiver, counter, ciphertext, out),
        }
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

    fn on_init(
        &mut self,
        now: Instant,
        src: &PublicKey,
        suite: Suite,
        sender: u32,
        noise_msg: &[u8],
    ) -> Received {
        // The global bucket bounds the Diffie-Hellman work strangers can cause.
        if !self.tokens.take(now, INIT_RATE) {
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
        let Ok(t) = hs.into_stateless_transport_mode() else {
            return Received::Dropped;
        };
        let mut session = Session::new(t, index, sender, false, suite, now);
        session.confirmed = false;
        self.transmits.push_back((key, buf));
        self.install(now, key, session);
        Received::Consumed
    }

    fn on_resp(&mut self, now: Instant, receiver: u32, sender: u32, noise_msg: &[u8]) -> Received {
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
        let Ok(t) = p.hs.into_stateless_transport_mode() else {
            return Received::Dropped;
        };
        let mut session = Session::new(t, receiver, sender, true, suite, now);
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
    fn flush_queue(&mut self, now: Instant, key: PublicKey) {
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

    fn on_data(
        &mut self,
        now: Instant,
        receiver: u32,
        counter: u64,
        ct: &[u8],
        out: &mut [u8],
    ) -> Received {
        let Some(key) = self.by_index.get(&receiver).copied() else {
            self.counters.unknown_session += 1;
            return Received::Dropped;
        };
        let (me, my_subnet) = (self.address, self.subnet);
        let Some(r) = self.remotes.get_mut(&key) else {
            return Received::Dropped;
        };
        let Some(s) = r.sessions.iter_mut().find(|s| s.local_index == receiver) else {
            self.counters.unknown_session += 1;
            return Received::Dropped;
        };
        let n = match s.decrypt(counter, ct, out) {
            Ok(n) => n,
            Err(SessionError::Replay) => {
                self.counters.replay += 1;
                return Received::Dropped;
            }
            Err(_) => {
                self.counters.decrypt_failed += 1;
                return Received::Dropped;
            }
        };
        r.last_rx = Some(now);
        r.first_unanswered = None;
        if !s.confirmed {
            s.confirmed = true;
            tracing::debug!(peer = %key.short(), "end-to-end session up");
            if !r.queue.is_empty() {
                self.flush_queue(now, key);
            }
        }
        if n == 0 {
            return Received::Consumed; // a keepalive that confirmed the session
        }
        let Some(r) = self.remotes.get_mut(&key) else {
            return Received::Dropped;
        };
        if self.cfg.bind.is_some() {
            // A znet packet: IPv4 or IPv6 of the znet's private ranges, checked by the znet.
            if !matches!(
                out[0] >> 4,
                codes::session_payload::IPV4_NIBBLE | codes::session_payload::IPV6_NIBBLE
            ) {
                self.counters.malformed += 1;
                return Received::Dropped;
            }
            r.rx_packets += 1;
            r.rx_bytes += n as u64;
            return Received::Deliver { len: n, from: key };
        }
        if out[0] == CONTROL {
            // Not a packet: a message between the two nodes themselves (NAT traversal).
            return Received::Control { len: n, from: key };
        }
        let Ok(h) = Ipv6Header::parse(&out[..n]) else {
            self.counters.malformed += 1;
            return Received::Dropped;
        };
        if !address::owner_id(&h.src).is_some_and(|o| o == r.address || o == r.subnet) {
            self.counters.spoofed_source += 1;
            return Received::Dropped;
        }
        if !address::owner_id(&h.dst).is_some_and(|o| o == me || o == my_subnet) {
            self.counters.not_for_us += 1;
            return Received::Dropped;
        }
        r.rx_packets += 1;
        r.rx_bytes += h.total_len as u64;
        Received::Deliver {
            len: h.total_len,
            from: key,
        }
    }

    fn evict_idle(&mut self, now: Instant) {
        let idle = IDLE_REMOTE;
        let gone: Vec<PublicKey> = self
            .remotes
            .iter()
            .filter(|(_, r)| r.queue.is_empty() && now >= r.last_used + idle)
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            self.forget(&k);
        }
    }

    fn forget(&mut self, key: &PublicKey) {
        if let Some(mut r) = self.remotes.remove(key) {
            self.timers.set(*key, &mut r.timer, None);
            for s in &r.sessions {
                self.by_index.remove(&s.local_index);
            }
            if let Some(p) = r.initiating {
                self.by_index.remove(&p.index);
            }
        }
    }

    /// The remotes we have sessions (or handshakes) with.
    pub fn remotes(&self) -> impl Iterator<Item = &PublicKey> {
        self.remotes.keys()
    }

    /// Forgets every session and queued packet with `key` (the circle policy no longer allows
    /// it). Returns whether there was anything.
    pub fn close(&mut self, key: &PublicKey) -> bool {
        let Some(mut r) = self.remotes.remove(key) else {
            return false;
        };
        self.timers.set(*key, &mut r.timer, None);
        self.counters.queue_dropped += r.queue.len() as u64;
        self.by_index.retain(|_, k| k != key);
        true
    }

    /// Keeps, of the packets queued for a session, those `keep` accepts (the circle policy
    /// changed since they were checked); counts the others as dropped.
    pub fn filter_queued(&mut self, mut keep: impl FnMut(&PublicKey, &[u8]) -> bool) {
        for (k, r) in self.remotes.iter_mut() {
            let before = r.queue.len();
            r.queue.retain(|p| keep(k, p));
            self.counters.queue_dropped += (before - r.queue.len()) as u64;
        }
    }

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
