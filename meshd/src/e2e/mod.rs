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

mod data;
mod handshake;
mod info;
mod timers;
pub mod wire;

pub use info::{E2eCounters, SessionInfo};

use crate::identity::{Identity, PublicKey};
use crate::noise;
use crate::session::Session;
use crate::toolkit::bucket::{Bucket, Rate};
use crate::toolkit::fastmap::FastMap;
use crate::toolkit::index;
use crate::toolkit::lifetime::Lifetime;
use crate::toolkit::rng::SplitMix64;
use crate::toolkit::timer::TimerTable;
use crate::wire::Suite;
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
    /// Handled: a handshake message, or data for a session we do not hold, answered with a
    /// stale-index hint.
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

/// All end-to-end sessions of this node.
pub struct E2e {
    /// Wiped from memory when dropped.
    private: zeroize::Zeroizing<[u8; 32]>,
    public: PublicKey,
    address: Ipv6Addr,
    subnet: Ipv6Addr,
    cfg: E2eConfig,
    rng: SplitMix64,
    remotes: FastMap<PublicKey, Remote>,
    /// Local index (sessions and our handshakes in flight) to remote key.
    by_index: FastMap<u32, PublicKey>,
    /// Handshake inits answered: global bucket, per link they arrived over, and per sender.
    tokens: Bucket,
    /// Stale-index hints sent ([`STALE_RATE`]).
    stale_tokens: Bucket,
    per_via: HashMap<u64, Bucket>,
    per_key: BTreeMap<PublicKey, Bucket>,
    transmits: VecDeque<(PublicKey, Vec<u8>)>,
    counters: E2eCounters,
    /// When each remote next has work ([`timers`]).
    timers: TimerTable<PublicKey>,
}

/// Handshake inits answered, all senders together: they cost Diffie-Hellman work.
const INIT_RATE: Rate = Rate::new(128.0, 256.0);
/// Stale-index hints sent, all remotes together (each is 8 bytes, smaller than what it
/// answers).
const STALE_RATE: Rate = Rate::new(64.0, 128.0);
/// Handshake inits answered per link they arrived over (charged before [`INIT_RATE`]): the
/// sender key of an init is whatever the sender likes, but the link it came over is not, so
/// one peer flooding inits under made-up keys takes at most this share of the global budget
/// and sessions arriving over other links still get the rest.
const VIA_RATE: Rate = Rate::new(32.0, 64.0);
/// Most per-link buckets kept; beyond, the table starts over.
const MAX_VIA_BUCKETS: usize = 1024;
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
            remotes: FastMap::default(),
            by_index: FastMap::default(),
            tokens: Bucket::full(INIT_RATE.burst, now),
            stale_tokens: Bucket::full(STALE_RATE.burst, now),
            per_via: HashMap::new(),
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

    /// Handles a message routed to us; `src` is the key the routing header names (the
    /// handshake must prove it).
    pub fn handle(
        &mut self,
        now: Instant,
        src: &PublicKey,
        msg: &[u8],
        out: &mut [u8],
    ) -> Received {
        self.handle_via(now, None, src, msg, out)
    }

    /// As [`E2e::handle`], for a message that arrived over the link `via` (its id): handshake
    /// inits are then shared fairly between the links they arrive over.
    pub fn handle_via(
        &mut self,
        now: Instant,
        via: Option<u64>,
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
            }) => self.on_init(now, via, src, suite, sender, noise),
            Ok(Msg::Resp {
                sender,
                receiver,
                noise,
            }) => self.on_resp(now, receiver, sender, noise),
            Ok(Msg::Data {
                receiver,
                counter,
                ciphertext,
            }) => {
                let r = self.on_data(now, receiver, counter, ciphertext, out);
                // The sender holds a session we do not (we restarted): tell it.
                if r == Received::Dropped
                    && !self.by_index.contains_key(&receiver)
                    && self.stale_hint(now, *src, receiver)
                {
                    return Received::Consumed;
                }
                r
            }
            Ok(Msg::Stale { receiver }) => {
                self.on_stale(now, src, receiver);
                Received::Dropped
            }
        }
    }

    /// As [`E2e::handle_via`], decrypting a DATA message where it lies in `msg`: returns what
    /// came of it and where in `msg` what [`Received::Deliver`] or [`Received::Control`]
    /// announce starts.
    pub fn handle_via_in_place(
        &mut self,
        now: Instant,
        via: Option<u64>,
        src: &PublicKey,
        msg: &mut [u8],
    ) -> (Received, usize) {
        let (receiver, counter) = match wire::parse(msg) {
            Ok(Msg::Data {
                receiver, counter, ..
            }) => (receiver, counter),
            // Nothing else carries a payload.
            _ => return (self.handle_via(now, via, src, msg, &mut []), 0),
        };
        let at = wire::DATA_CIPHERTEXT_AT;
        let r = self.on_data_in_place(now, receiver, counter, &mut msg[at..]);
        // The sender holds a session we do not (we restarted): tell it.
        if r == Received::Dropped
            && !self.by_index.contains_key(&receiver)
            && self.stale_hint(now, *src, receiver)
        {
            return (Received::Consumed, at);
        }
        (r, at)
    }

    /// `src` says it does not know `receiver`. If that is its index of one of our sessions
    /// with it, it lost the session: handshake again now, keeping ours until the new one is up
    /// (the hint is not authenticated: believing it costs one handshake, never a session).
    fn on_stale(&mut self, now: Instant, src: &PublicKey, receiver: u32) {
        let Some(r) = self.remotes.get_mut(src) else {
            return;
        };
        if r.initiating.is_some() || !r.sessions.iter().any(|s| s.remote_index == receiver) {
            return;
        }
        tracing::debug!(peer = %src.short(), "the remote lost our session (it restarted?)");
        r.first_unanswered = None;
        self.start_handshake(now, src);
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
}
