//! The sans-IO link core: Noise handshakes, sessions, timers and the per-packet data path for
//! every direct peer of this node.
//!
//! It owns no socket and no clock. The shell ([`crate::daemon`]) feeds it what happened and
//! does what it returns, following quinn-proto's contract:
//!
//! ```text
//!   UDP datagram ──► handle_datagram(now, from, bytes, out) ──► Recv::Frame ──► router
//!   router frame ──► encapsulate(now, link, frame, out)     ──► Send::Transmit ──► UDP
//!   timer        ──► handle_timeout(now)        poll_timeout() ──► when to call it next
//!   control      ──► poll_transmit() (handshakes, keepalives)  ──► UDP
//!                    poll_event()    (links up and down, host names to resolve)
//! ```
//!
//! A link is one authenticated peer key; its [`LinkId`] names it to the router for as long as
//! it is up. The link layer does not look inside frames: addresses and who may send what are
//! the end-to-end layer's business ([`crate::e2e`]).
//!
//! Data-path calls write into buffers the caller owns and return a result enum (as boringtun's
//! `Tunn` does); only handshakes and keepalives allocate. Randomness (session indexes, jitter)
//! comes from a seed given to [`Links::new`]; the Noise ephemeral keys come from the operating
//! system through snow.

mod cookie;
mod data;
mod direct;
mod discovered;
mod handshake;
mod liveness;
pub mod paths;
mod peer;
mod ratelimit;
mod stats;
mod timers;

pub use discovered::{DISCOVERED_EXPIRY, Discovered, MAX_DISCOVERED, MAX_PUNCHED, PUNCH_EXPIRY};
pub use peer::{Dialer, Origin, Peer, PeerCounters};
pub use ratelimit::Limits;
pub use stats::{Counters, DropCounters, DropReason};

use crate::identity::{Identity, PublicKey};
use crate::toolkit::fastmap::FastMap;
use crate::toolkit::timer::TimerTable;
use crate::uri::Endpoint;
use crate::uri::PeerUri;
use crate::wire::{self, Message, Suite};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Timers and limits of the link layer. The defaults follow WireGuard's where one exists.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// Send a keepalive when nothing was sent for this long.
    pub keepalive_interval: Duration,
    /// A peer that sent nothing (not even a keepalive) for this long is down.
    pub peer_timeout: Duration,
    /// Start a new handshake when the newest session is this old (WireGuard: 120 s).
    pub rekey_after: Duration,
    /// Never use a session older than this (WireGuard: 180 s).
    pub reject_after: Duration,
    /// How long to wait for a handshake response before trying again.
    pub handshake_timeout: Duration,
    /// Longest pause between two dial attempts.
    pub max_backoff: Duration,
    /// The AEAD this node asks for when it initiates.
    pub suite: Suite,
    /// Most half-open inbound handshakes kept at once (the oldest is dropped beyond).
    pub max_pending_inbound: usize,
    /// How often handshake inits are answered (see [`Limits`]).
    pub init_limits: Limits,
    /// Most links at once. Beyond it, inbound links from peers that are not configured are
    /// refused (configured peers always link).
    pub max_peers: usize,
}

impl LinkConfig {
    /// The rekey and expiry ages of sessions.
    pub fn lifetime(&self) -> crate::toolkit::lifetime::Lifetime {
        crate::toolkit::lifetime::Lifetime {
            rekey_after: self.rekey_after,
            reject_after: self.reject_after,
        }
    }
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            // Short, so that routing notices a dead link (and goes around it) within two
            // seconds: an idle link costs two 29-byte datagrams a second each way.
            keepalive_interval: Duration::from_millis(500),
            peer_timeout: Duration::from_secs(2),
            rekey_after: Duration::from_secs(120),
            reject_after: Duration::from_secs(180),
            handshake_timeout: Duration::from_secs(1),
            max_backoff: Duration::from_secs(16),
            suite: crate::noise::preferred_suite(),
            max_pending_inbound: 1024,
            init_limits: Limits::default(),
            max_peers: 1024,
        }
    }
}

/// A control datagram to send (handshake message or keepalive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub to: Endpoint,
    /// The datagram.
    pub data: Vec<u8>,
}

/// What a deadline in [`Links`]' timer table belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// A link's keepalives, timeout, rekey, session expiry and path probes.
    Peer(PublicKey),
    /// Our handshake in flight with this local index: its answer is overdue.
    Handshake(u32),
}

/// Names one link (one authenticated peer) for as long as it is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId(pub u64);

/// What became of a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recv {
    /// A frame from the peer on `link` is at `out[..len]`: `out[0]` is its kind
    /// ([`wire::frame`]), the rest its body.
    Frame {
        /// The link it came over.
        link: LinkId,
        /// Length of the frame, kind byte included.
        len: usize,
    },
    /// Handled (handshake or keepalive); nothing to deliver. Check [`Links::poll_transmit`].
    Consumed,
    /// Dropped and counted.
    Dropped(DropReason),
}

/// What became of a frame to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Send {
    /// Send `out[..len]` to `to`.
    Transmit {
        /// Where to.
        to: Endpoint,
        /// Datagram length.
        len: usize,
    },
    /// Dropped and counted.
    Dropped(DropReason),
}

/// Something the shell must do that is not a datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Resolve this peer URI's host name and call [`Links::resolved`].
    Resolve(PeerUri),
    /// A link came up.
    LinkUp {
        /// Its id.
        link: LinkId,
        /// The peer's key.
        key: PublicKey,
        /// The handshake's round trip, when we initiated it.
        rtt: Option<Duration>,
    },
    /// The peer's network changed (it sent `MOVED`): tell it where it is seen now.
    PeerMoved {
        /// The peer's key.
        key: PublicKey,
    },
    /// A link went down.
    LinkDown {
        /// Its id.
        link: LinkId,
        /// The peer's key.
        key: PublicKey,
    },
}

/// [`Links::set_cookie_share`] of 1.
pub(crate) const COOKIE_SHARE_ALL: u32 = 1 << 16;

/// The link layer of one node.
pub struct Links {
    pub(crate) public: PublicKey,
    /// Wiped from memory when dropped.
    pub(crate) noise_private: zeroize::Zeroizing<[u8; 32]>,
    pub(crate) cfg: LinkConfig,
    rng: crate::toolkit::rng::SplitMix64,
    pub(crate) peers: FastMap<PublicKey, Peer>,
    /// Link id to peer key.
    pub(crate) links: FastMap<LinkId, PublicKey>,
    next_link: u64,
    /// Local session index to peer.
    sessions: FastMap<u32, PublicKey>,
    pub(crate) initiating: HashMap<u32, handshake::Initiating>,
    pub(crate) responding: HashMap<u32, handshake::Responding>,
    pub(crate) responding_order: VecDeque<u32>,
    pub(crate) dialers: Vec<Dialer>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    pub(crate) counters: Counters,
    /// When each peer and each handshake of ours next has work ([`timers`]).
    pub(crate) timers: TimerTable<Timer>,
    pub(crate) init_limiter: ratelimit::InitLimiter,
    /// The secrets our cookie replies are made with ([`cookie`]).
    pub(crate) cookie_secrets: cookie::Secrets,
    /// Cookies other nodes gave us, by the endpoint we dial.
    pub(crate) cookie_jar: cookie::Jar,
    /// The circle policy (`peer` rules); `None`: everyone may link.
    pub(crate) policy: Option<std::sync::Arc<acl::Policy>>,
    /// Endpoints whose transport authenticated the remote node itself (a QUIC connection's
    /// TLS key): a link over one must be with that very key.
    pub(crate) bound_keys: HashMap<Endpoint, PublicKey>,
    /// Drawn at start, sent in every handshake: a peer that sees it change knows this node
    /// restarted ([`liveness`]).
    pub(crate) incarnation: u32,
    /// Stale-index hints this node sends ([`liveness`]).
    pub(crate) stale_tokens: crate::toolkit::bucket::Bucket,
    /// The share of unproven inits answered with a cookie reply when no budget serves them,
    /// in 2^-16 units (see [`Links::set_cookie_share`]).
    pub(crate) cookie_share: u32,
}

impl Links {
    /// A link layer for `identity`. `seed` drives session indexes and jitter.
    pub fn new(identity: &Identity, cfg: LinkConfig, seed: u64, now: Instant) -> Self {
        let public = identity.public_key();
        let noise_private = identity.noise_private();
        let mut rng = crate::toolkit::rng::SplitMix64::new(seed, 0x6a09_e667_f3bc_c909);
        let fresh = [rng.next_u64(), rng.next_u64()];
        let incarnation = rng.next_u64() as u32;
        Links {
            public,
            cookie_secrets: cookie::Secrets::new(&noise_private, fresh, now),
            cookie_jar: cookie::Jar::default(),
            noise_private,
            init_limiter: ratelimit::InitLimiter::new(cfg.init_limits, now),
            cfg,
            rng,
            cookie_share: COOKIE_SHARE_ALL,
            peers: FastMap::default(),
            links: FastMap::default(),
            next_link: 1,
            sessions: FastMap::default(),
            initiating: HashMap::new(),
            responding: HashMap::new(),
            responding_order: VecDeque::new(),
            dialers: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
            timers: TimerTable::default(),
            policy: None,
            bound_keys: HashMap::new(),
            incarnation,
            stale_tokens: crate::toolkit::bucket::Bucket::full(liveness::STALE_RATE.burst, now),
        }
    }

    /// Puts a circle policy in force for new links, and closes the links of peers it denies.
    /// Returns how many links were closed.
    pub fn set_policy(&mut self, policy: Option<std::sync::Arc<acl::Policy>>, now: Instant) -> u64 {
        self.policy = policy.filter(|p| !p.is_open());
        let Some(p) = self.policy.clone() else {
            return 0;
        };
        let denied: Vec<PublicKey> = self
            .peers
            .keys()
            .filter(|k| !p.classify(&k.0).peer().allows())
            .copied()
            .collect();
        for k in &denied {
            self.send_control_frame(k, &[wire::frame::CLOSE], now);
            self.remove_link(k, "the circle policy no longer allows this peer");
        }
        denied.len() as u64
    }

    /// Why the circle policy refuses a link with `key`, if it does.
    pub(crate) fn policy_refusal(&self, key: &PublicKey) -> Option<String> {
        let p = self.policy.as_ref()?;
        if p.classify(&key.0).peer().allows() {
            return None;
        }
        let e = p.explain(&acl::Who::Key(key.0), acl::Action::Peer, None);
        Some(format!("the circle policy denies it: {}", e.reason))
    }

    /// The transport of `endpoint` authenticated the remote as `key` (a QUIC connection's
    /// TLS key): handshakes over it must authenticate that same key, and no other peer's
    /// link moves onto it.
    pub fn bind_endpoint(&mut self, endpoint: Endpoint, key: PublicKey) {
        self.bound_keys.insert(endpoint, key);
    }

    /// The transport could not connect to `endpoint` (TCP refused, QUIC handshake failed):
    /// the configured peers there say so (`meshctl peers`) when their handshake times out.
    pub fn transport_failed(&mut self, endpoint: &Endpoint, why: String) {
        for d in self
            .dialers
            .iter_mut()
            .filter(|d| d.addr == Some(*endpoint))
        {
            d.transport_error = Some(why.clone());
        }
    }

    /// The connection behind `endpoint` is gone.
    pub fn unbind_endpoint(&mut self, endpoint: &Endpoint) {
        self.bound_keys.remove(endpoint);
    }

    /// The key of the peer on `link`, while it is up.
    pub fn key_of(&self, link: LinkId) -> Option<PublicKey> {
        self.links.get(&link).copied()
    }

    /// This node's public key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// Counters of the whole node.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Established links, by key.
    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    /// Configured peer URIs and their dial state.
    pub fn dialers(&self) -> &[Dialer] {
        &self.dialers
    }

    /// Answer only `share` (0 to 1) of the unproven inits that no budget serves with a cookie
    /// reply; the others are dropped. The shell lowers it when it cannot keep up with a flood
    /// of them: answering a random share of all is fairer to a real initiator than leaving the
    /// kernel to drop whatever arrives while its queue is full (the same ones every time, if
    /// they come when the reader is busy). Inits that proved their address, or come from a
    /// known source within its budget, are always served.
    pub fn set_cookie_share(&mut self, share: f64) {
        self.cookie_share = (share.clamp(0.0, 1.0) * f64::from(COOKIE_SHARE_ALL)) as u32;
    }

    pub(crate) fn next_random(&mut self) -> u64 {
        self.rng.next_u64()
    }

    pub(crate) fn fresh_index(&mut self) -> u32 {
        let (sessions, initiating, responding) =
            (&self.sessions, &self.initiating, &self.responding);
        crate::toolkit::index::fresh(&mut self.rng, |i| {
            sessions.contains_key(&i) || initiating.contains_key(&i) || responding.contains_key(&i)
        })
    }

    pub(crate) fn queue(&mut self, to: Endpoint, data: Vec<u8>) {
        self.counters.tx_datagrams += 1;
        self.transmits.push_back(Transmit { to, data });
    }

    pub(crate) fn emit(&mut self, e: Event) {
        self.events.push_back(e);
    }

    /// The next control datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the shell, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Adds a configured peer; the first dial happens on the next [`Links::handle_timeout`].
    /// Returns false if the same endpoint is already configured.
    pub fn add_peer(&mut self, uri: PeerUri, now: Instant) -> bool {
        if let Some(d) = self
            .dialers
            .iter_mut()
            .find(|d| d.uri.endpoint() == uri.endpoint())
        {
            // A neighbour found on the LAN that is now configured: keep it for good.
            if d.origin != Origin::Configured {
                d.origin = Origin::Configured;
                d.uri = uri;
                return true;
            }
            return false;
        }
        self.dialers.push(Dialer::new(uri, now));
        true
    }

    /// Removes a configured peer by endpoint (`udp://HOST:PORT`, with or without `?key=`) and
    /// closes its link. Returns false if no such peer is configured.
    pub fn remove_peer(&mut self, uri: &PeerUri) -> bool {
        let Some(i) = self
            .dialers
            .iter()
            .position(|d| d.uri.endpoint() == uri.endpoint())
        else {
            return false;
        };
        let d = self.dialers.remove(i);
        if let Some(idx) = d.in_flight {
            self.initiating.remove(&idx);
        }
        if let Some(key) = d.linked {
            self.remove_link(&key, "peer removed");
        }
        true
    }

    /// The shell resolved (or failed to resolve) a host name asked for by [`Event::Resolve`].
    pub fn resolved(
        &mut self,
        uri: &PeerUri,
        result: Result<std::net::SocketAddr, String>,
        now: Instant,
    ) {
        let max = self.cfg.max_backoff;
        let Some(d) = self
            .dialers
            .iter_mut()
            .find(|d| d.uri.endpoint() == uri.endpoint())
        else {
            return;
        };
        d.resolving = false;
        match result {
            Ok(addr) => {
                d.addr = Some(Endpoint::new(d.uri.scheme, addr));
                d.next_attempt = now;
            }
            Err(e) => {
                tracing::warn!(peer = %d.uri, "cannot resolve peer host name: {e}");
                d.last_error = Some(format!("cannot resolve: {e}"));
                d.failures += 1;
                d.next_attempt = now + Dialer::backoff(d.failures, max).max(Duration::from_secs(1));
            }
        }
    }

    /// Handles one received UDP datagram. A frame for the layer above is decrypted into `out`
    /// (see [`Recv::Frame`]); `out` must hold at least `datagram.len()` bytes.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        from: Endpoint,
        datagram: &[u8],
        out: &mut [u8],
    ) -> Recv {
        self.counters.rx_datagrams += 1;
        let result = match wire::parse(datagram) {
            Err(_) => Recv::Dropped(DropReason::Malformed),
            Ok(Message::Transport {
                receiver,
                counter,
                ciphertext,
            }) => {
                let text = data::Text::Into { ciphertext, out };
                let r = self.handle_transport(now, from, receiver, counter, text, datagram.len());
                return self.transport_handled(r, now, from, receiver);
            }
            Ok(Message::Stale { receiver }) => self.handle_stale(now, from, receiver),
            Ok(Message::Init {
                suite,
                sender,
                noise,
                head,
                mac,
            }) => self.handle_init(now, from, suite, sender, noise, (head, mac)),
            Ok(Message::Cookie {
                receiver,
                echo,
                cookie,
            }) => self.handle_cookie(now, receiver, echo, cookie),
            Ok(Message::Response {
                sender,
                receiver,
                noise,
            }) => self.handle_response(now, from, sender, receiver, noise, datagram.len()),
            Ok(Message::Final { receiver, noise }) => {
                self.handle_final(now, from, receiver, noise, datagram.len())
            }
        };
        if let Recv::Dropped(reason) = result {
            self.counters.dropped.add(reason);
        }
        result
    }

    /// Installs a finished session for `key`, creating the link if it is new.
    pub(crate) fn install_session(
        &mut self,
        key: PublicKey,
        session: crate::session::Session,
        from: Endpoint,
        now: Instant,
        rtt: Option<Duration>,
        incarnation: Option<u32>,
    ) {
        self.counters.handshakes_completed += 1;
        let local = session.local_index;
        let confirmed = session.confirmed;
        let restarted = self
            .peers
            .get(&key)
            .is_some_and(|p| matches!((p.incarnation, incarnation), (Some(a), Some(b)) if a != b));
        if restarted {
            // A new instance of the peer is a new link: routing starts over with it, and
            // nothing of the old one (sessions, tree position) lingers.
            self.remove_link(&key, "the peer restarted");
        }
        if !self.peers.contains_key(&key) {
            tracing::info!(peer = %key, address = %key.address(), endpoint = %from, "link up");
            let link = LinkId(self.next_link);
            self.next_link += 1;
            self.links.insert(link, key);
            self.peers.insert(key, Peer::new(key, link, from, now));
            self.events.push_back(Event::LinkUp { link, key, rtt });
        }
        self.path_heard(&key, from, now);
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        peer.last_rx = now;
        peer.last_handshake = now;
        if incarnation.is_some() {
            peer.incarnation = incarnation;
        }
        if rtt.is_some() {
            peer.rtt = rtt;
        }
        peer.sessions.push(session);
        if peer.sessions.len() > peer::MAX_SESSIONS {
            let old = peer.sessions.remove(0);
            self.sessions.remove(&old.local_index);
        }
        self.sessions.insert(local, key);
        for d in self.dialers.iter_mut() {
            // A configured peer at this address is this link, unless it pins another key.
            if d.linked.is_none() && d.addr == Some(from) && d.uri.key.is_none_or(|k| k == key) {
                d.linked = Some(key);
                // As responder the link is confirmed now; as initiator, once the peer answers
                // on it (it may still refuse the link).
                if confirmed {
                    d.failures = 0;
                    d.last_error = None;
                }
            }
        }
        if confirmed {
            // We are the responder: tell the initiator at once that we hold the keys.
            self.send_keepalive(&key, now);
        }
        self.refile_peer(&key);
    }

    /// Tears down the link to `key`, keeping configured dialers.
    pub(crate) fn remove_link(&mut self, key: &PublicKey, why: &str) {
        let Some(mut peer) = self.peers.remove(key) else {
            return;
        };
        self.timers.set(Timer::Peer(*key), &mut peer.timer, None);
        tracing::info!(peer = %key, address = %key.address(), "link down: {why}");
        for s in &peer.sessions {
            self.sessions.remove(&s.local_index);
        }
        if let Some(idx) = peer.rekey_in_flight {
            self.initiating.remove(&idx);
        }
        self.links.remove(&peer.link);
        self.events.push_back(Event::LinkDown {
            link: peer.link,
            key: *key,
        });
    }

    /// The pinned key of a configured peer at `addr`, if any.
    pub(crate) fn pin_for(&self, addr: Endpoint) -> Option<(PublicKey, &PeerUri)> {
        self.dialers
            .iter()
            .filter(|d| d.addr == Some(addr))
            .find_map(|d| d.uri.key.map(|k| (k, &d.uri)))
    }
}

#[cfg(test)]
mod tests;
