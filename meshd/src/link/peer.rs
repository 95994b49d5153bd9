//! Per-peer state (sessions, liveness, counters) and per-configured-URI dialers.

use super::LinkConfig;
use crate::identity::PublicKey;
use crate::session::Session;
use crate::uri::Endpoint;
use crate::uri::PeerUri;
use std::time::{Duration, Instant};

/// At most this many sessions per peer: the current one, the previous one (packets in flight
/// during a rekey), and one more for crossing handshakes.
pub const MAX_SESSIONS: usize = 3;
/// A peer that received data and sent nothing back for this long sends a keepalive, so the
/// sender knows the link is alive: well within [`super::liveness::SILENT_MIN`], after which a
/// sender that heard nothing takes the link for dead.
pub const PASSIVE_KEEPALIVE: Duration = Duration::from_millis(100);
/// A session we initiated that the peer has not used after this long is presumed lost
/// (message 3 dropped): handshake again.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(2);

/// Byte and packet counters of one link.
#[derive(Debug, Clone, Copy, Default)]
pub struct PeerCounters {
    /// Bytes received on the wire (datagrams, including handshakes and keepalives).
    pub rx_bytes: u64,
    /// Bytes sent on the wire.
    pub tx_bytes: u64,
    /// IPv6 packets delivered to the TUN device from this peer.
    pub rx_packets: u64,
    /// IPv6 packets sent to this peer.
    pub tx_packets: u64,
}

/// A peer with at least one session.
#[derive(Debug)]
pub struct Peer {
    pub(crate) key: PublicKey,
    /// Its id, for the router.
    pub(crate) link: super::LinkId,
    pub(crate) endpoint: Endpoint,
    /// Every endpoint the peer was heard from lately ([`super::paths`]); `endpoint` is the
    /// one in use.
    pub(crate) paths: Vec<super::paths::Path>,
    pub(crate) next_probe: Instant,
    /// When `endpoint` last changed.
    pub(crate) switched: Instant,
    /// When a `MOVED` frame last moved the link ([`super::paths::MOVED_AGAIN`]).
    pub(crate) moved: Option<Instant>,
    /// Oldest first.
    pub(crate) sessions: Vec<Session>,
    pub(crate) up_since: Instant,
    pub(crate) last_rx: Instant,
    pub(crate) last_tx: Instant,
    /// Data received since our last transmission (first at): the peer waits for an answer
    /// (a flag, not a comparison of instants, which a coarse clock can make equal).
    pub(crate) owed_answer: Option<Instant>,
    pub(crate) first_unanswered_tx: Option<Instant>,
    pub(crate) last_handshake: Instant,
    /// Local index of our handshake in flight to this peer (rekey or probe).
    pub(crate) rekey_in_flight: Option<u32>,
    pub(crate) next_rekey_attempt: Instant,
    pub(crate) counters: PeerCounters,
    /// Where it is filed in the timer table (never later than [`Peer::deadline`]).
    pub(crate) timer: Option<Instant>,
    /// The peer's incarnation (a number drawn at each of its starts), from its handshake.
    pub(crate) incarnation: Option<u32>,
    /// The round trip of the last handshake.
    pub(crate) rtt: Option<Duration>,
}

impl Peer {
    pub(crate) fn new(
        key: PublicKey,
        link: super::LinkId,
        endpoint: Endpoint,
        now: Instant,
    ) -> Self {
        Peer {
            key,
            link,
            endpoint,
            paths: vec![super::paths::Path::new(endpoint, now)],
            next_probe: now,
            switched: now,
            moved: None,
            sessions: Vec::new(),
            up_since: now,
            last_rx: now,
            last_tx: now,
            owed_answer: None,
            first_unanswered_tx: None,
            last_handshake: now,
            rekey_in_flight: None,
            next_rekey_attempt: now,
            counters: PeerCounters::default(),
            timer: None,
            incarnation: None,
            rtt: None,
        }
    }

    /// The endpoint in use.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// The paths it was heard on lately.
    pub fn paths(&self) -> &[super::paths::Path] {
        &self.paths
    }

    /// The session to send on: the newest one the peer is known to hold, else the newest.
    pub(crate) fn send_session(&mut self) -> Option<&mut Session> {
        let i = self
            .sessions
            .iter()
            .rposition(|s| s.confirmed)
            .or(self.sessions.len().checked_sub(1))?;
        self.sessions.get_mut(i)
    }

    pub(crate) fn session_mut(&mut self, local_index: u32) -> Option<&mut Session> {
        self.sessions
            .iter_mut()
            .find(|s| s.local_index == local_index)
    }

    fn newest(&self) -> Option<&Session> {
        self.sessions.last()
    }

    /// When the newest session should be replaced (rekey or lost message 3), if ever.
    pub(crate) fn rekey_due(&self, cfg: &LinkConfig) -> Option<Instant> {
        if self.rekey_in_flight.is_some() {
            return None;
        }
        let s = self.newest()?;
        let mut due = cfg.lifetime().rekey_at(s);
        if s.initiator && !s.confirmed {
            due = due.min(s.created + CONFIRM_TIMEOUT);
        }
        Some(due.max(self.next_rekey_attempt))
    }

    /// When a keepalive is due, if one is.
    pub(crate) fn keepalive_due(&self, cfg: &LinkConfig) -> Instant {
        let mut due = self.last_tx + cfg.keepalive_interval;
        if let Some(rx) = self.owed_answer {
            due = due.min(rx + PASSIVE_KEEPALIVE);
        }
        due
    }

    /// The earliest instant at which [`super::Links::handle_timeout`] has work for this peer.
    pub(crate) fn deadline(&self, cfg: &LinkConfig) -> Instant {
        let mut d = (self.last_rx + cfg.peer_timeout).min(self.keepalive_due(cfg));
        if let Some(r) = self.rekey_due(cfg) {
            d = d.min(r);
        }
        if let Some(oldest) = self.sessions.first() {
            d = d.min(cfg.lifetime().expires_at(oldest));
        }
        if self.paths.len() >= 2 {
            d = d.min(self.next_probe);
        }
        if let Some(t) = self.first_unanswered_tx {
            d = d.min(t + self.silent_after(cfg));
        }
        d
    }
}

/// Why this node dials a peer URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// In the config, or added with `meshctl peer add`.
    Configured,
    /// Announced on the LAN ([`crate::discovery`]). Forgotten once the announcements stop
    /// and the link is down.
    Discovered {
        /// When the last announcement was heard.
        last_seen: Instant,
    },
    /// An endpoint a remote node told us over the mesh, dialed to punch through NATs
    /// ([`crate::nat`]). Forgotten once the round is over and the link is down.
    Punched {
        /// When the last round started.
        last_seen: Instant,
    },
}

impl Origin {
    /// `configured` or `discovered`, for `meshctl peers`.
    pub fn name(&self) -> &'static str {
        match self {
            Origin::Configured => "configured",
            Origin::Discovered { .. } => "discovered",
            Origin::Punched { .. } => "punched",
        }
    }

    /// When a dialer of this origin is forgotten unless linked.
    pub fn expires(&self) -> Option<Instant> {
        match self {
            Origin::Configured => None,
            Origin::Discovered { last_seen } => Some(*last_seen + super::DISCOVERED_EXPIRY),
            Origin::Punched { last_seen } => Some(*last_seen + super::PUNCH_EXPIRY),
        }
    }
}

/// A peer URI that this node keeps a link to.
#[derive(Debug)]
pub struct Dialer {
    pub(crate) uri: PeerUri,
    /// Why it is dialed.
    pub(crate) origin: Origin,
    /// Resolved address (literal addresses are resolved at once).
    pub(crate) addr: Option<Endpoint>,
    /// The key of the link this URI leads to, once it is up.
    pub(crate) linked: Option<PublicKey>,
    pub(crate) failures: u32,
    pub(crate) next_attempt: Instant,
    /// Local index of our handshake in flight.
    pub(crate) in_flight: Option<u32>,
    /// Waiting for the shell to resolve the host name.
    pub(crate) resolving: bool,
    /// Why the last attempt failed, for `meshctl peers`.
    pub(crate) last_error: Option<String>,
    /// Until then, the link this URI led to was up a moment ago: dial every
    /// [`super::liveness::FAST_REDIAL`], without back-off ([`super::liveness`]).
    pub(crate) fast_until: Option<Instant>,
    /// Why the transport could not connect (TCP, QUIC), if it could not: said instead of
    /// "no answer" when the handshake then times out.
    pub(crate) transport_error: Option<String>,
}

impl Dialer {
    pub(crate) fn new(uri: PeerUri, now: Instant) -> Self {
        let addr = uri.link_endpoint();
        Dialer {
            uri,
            origin: Origin::Configured,
            addr,
            linked: None,
            failures: 0,
            next_attempt: now,
            in_flight: None,
            resolving: false,
            last_error: None,
            fast_until: None,
            transport_error: None,
        }
    }

    /// The URI.
    pub fn uri(&self) -> &PeerUri {
        &self.uri
    }

    /// Why it is dialed.
    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// For a peer given by host name, forgets the resolved address so that the next attempt
    /// resolves the name again (its address may have changed).
    pub(crate) fn forget_resolved(&mut self) {
        if self.uri.socket_addr().is_none() {
            self.addr = None;
        }
    }

    /// Delay before the next attempt after `failures` failed ones: the first failure is
    /// retried at once (the attempt itself waited a second for an answer), then 1, 2, 4, 8 s,
    /// then the configured maximum.
    pub(crate) fn backoff(failures: u32, max: Duration) -> Duration {
        match failures {
            0 | 1 => Duration::ZERO,
            n => Duration::from_secs(1u64 << (n - 2).min(10)).min(max),
        }
    }
}
