//! Several paths to one peer (UDP and TCP, a LAN address and a public one, a punched path and
//! a configured one): which one carries the traffic.
//!
//! A link is one peer key with its sessions; a *path* is an endpoint the peer's authenticated
//! datagrams arrived from. Sessions do not belong to a path, so moving traffic from one path to
//! another drops nothing: the next datagram simply goes elsewhere.
//!
//! With one path nothing extra happens (no probes). With two or more, every
//! [`PROBE_INTERVAL`] each path gets a `PROBE` frame; the peer answers on the path it came
//! from, which measures that path's round trip (smoothed) and loss (a moving average of
//! unanswered probes). The link uses the path with the lowest `rtt × (1 + 4 × loss)` plus a
//! small cost per transport (UDP before QUIC before TCP, which add head-of-line blocking),
//! and changes only for one at least 25 % and 0.5 ms better, and not within 5 s of the last
//! change, so that two similar paths do not flap. A
//! path that has been silent for [`PATH_SILENT`] is left at once (and forgotten after
//! the peer timeout); a datagram from a new endpoint while the current path is silent moves
//! the link there straight away, which is how a peer that roams (a new NAT mapping, a new
//! network) keeps its link.

use super::Links;
use crate::identity::PublicKey;
use crate::uri::{Endpoint, Scheme};
use crate::wire;
use std::time::{Duration, Instant};

/// Most paths remembered per peer.
pub const MAX_PATHS: usize = 4;
/// How often each path of a peer with several is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A path that carried nothing for this long is not used.
pub const PATH_SILENT: Duration = Duration::from_millis(1500);
/// A peer URI whose endpoint is not a path of its (live) link is dialed again after this
/// long: a path that died comes back when it heals, and a peer that answers from another
/// address than the one dialed is not dialed in a loop.
pub const REDIAL_PATH: Duration = Duration::from_secs(10);
/// A link stays on a path at least this long unless that path falls silent.
pub const MIN_DWELL: Duration = Duration::from_secs(5);
/// A `MOVED` frame moves a link no sooner than this after the last `MOVED` that moved it.
pub const MOVED_AGAIN: Duration = Duration::from_secs(2);
/// A better path must be better by this much as well as by a quarter (milliseconds).
const MIN_GAIN_MS: f64 = 0.5;

/// One path to a peer.
#[derive(Debug, Clone)]
pub struct Path {
    /// Where the peer's datagrams come from on it.
    pub endpoint: Endpoint,
    /// Last authenticated datagram on it.
    pub last_rx: Instant,
    /// Smoothed round trip of its probes.
    pub srtt: Option<Duration>,
    /// Moving average of unanswered probes, 0 to 1.
    pub loss: f64,
    /// The probe in flight: nonce and when it left.
    probe: Option<(u64, Instant)>,
}

impl Path {
    pub(crate) fn new(endpoint: Endpoint, now: Instant) -> Path {
        Path {
            endpoint,
            last_rx: now,
            srtt: None,
            loss: 0.0,
            probe: None,
        }
    }

    /// The lower the better; `None` until measured.
    pub fn score(&self) -> Option<f64> {
        let rtt = self.srtt?.as_secs_f64() * 1000.0;
        let transport = match self.endpoint.scheme {
            Scheme::Udp => 0.0,
            Scheme::Quic => 0.2,
            Scheme::Tcp => 0.5,
        };
        Some(rtt * (1.0 + 4.0 * self.loss) + transport)
    }

    fn alive(&self, now: Instant) -> bool {
        now < self.last_rx + PATH_SILENT
    }
}

impl Links {
    /// An authenticated datagram from the peer `key` arrived from `from`.
    pub(crate) fn path_heard(&mut self, key: &PublicKey, from: Endpoint, now: Instant) {
        let bound_elsewhere = self.bound_keys.get(&from).is_some_and(|k| k != key);
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        if let Some(p) = peer.paths.iter_mut().find(|p| p.endpoint == from) {
            p.last_rx = now;
            return;
        }
        if bound_elsewhere {
            // A connection authenticated as another node: never a path of this one.
            return;
        }
        if peer.paths.len() >= MAX_PATHS
            && let Some(i) = peer
                .paths
                .iter()
                .enumerate()
                .filter(|(_, p)| p.endpoint != peer.endpoint)
                .min_by_key(|(_, p)| p.last_rx)
                .map(|(i, _)| i)
        {
            peer.paths.remove(i);
        }
        peer.paths.push(Path::new(from, now));
        let current_silent = peer
            .paths
            .iter()
            .find(|p| p.endpoint == peer.endpoint)
            .is_none_or(|p| !p.alive(now));
        if current_silent {
            tracing::info!(peer = %key.short(), old = %peer.endpoint, new = %from, "peer moved");
            peer.endpoint = from;
            peer.switched = now;
            self.events.push_back(super::Event::PeerMoved { key: *key });
        }
        // With a second path, probes are due.
        self.refile_peer(key);
    }

    /// A `MOVED` frame from `key` over `from`: the peer's network changed and it says so. The
    /// frame is authenticated and the session's replay window lets it in once, so it moves
    /// the link no more than the peer's data could (which [`Links::follow_data_path`]
    /// follows): traffic goes to `from` at once, without waiting for the old path to fall
    /// silent, and the node tells the peer where it sees it ([`super::Event::PeerMoved`]).
    pub(crate) fn peer_moved(&mut self, key: &PublicKey, from: Endpoint, now: Instant) {
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        // `path_heard` made it a path, unless a connection of another node holds it. A link
        // that a `MOVED` moved lately does not move again on a word: the peer holds the session
        // keys and could otherwise point its link at an address it spoofs as often as it likes
        // (its data still moves it, once the path in use has been silent for `SILENT_MIN`).
        if peer.endpoint != from
            && peer.moved.is_none_or(|t| now >= t + MOVED_AGAIN)
            && peer.paths.iter().any(|p| p.endpoint == from)
        {
            tracing::info!(peer = %key.short(), old = %peer.endpoint, new = %from,
                "the peer's network changed: following it");
            peer.endpoint = from;
            peer.switched = now;
            peer.moved = Some(now);
        }
        self.events.push_back(super::Event::PeerMoved { key: *key });
    }

    /// This node's network changed: every linked peer is sent `MOVED` (from the sockets
    /// bound again, so from where this node is now) and every path of every peer is probed
    /// at once; configured peers not linked are dialed now, their back-off started over.
    /// Returns the number of peers told.
    pub fn network_changed(&mut self, now: Instant) -> usize {
        for d in self.dialers.iter_mut().filter(|d| d.linked.is_none()) {
            d.failures = 0;
            d.next_attempt = now;
        }
        let keys: Vec<PublicKey> = self.peers.keys().copied().collect();
        for key in &keys {
            self.send_control_frame(key, &[wire::frame::MOVED], now);
            self.probe_paths(key, now);
        }
        keys.len()
    }

    /// A `PROBE` or `PROBE_REPLY` frame (`kind | nonce`) from `key` over `from`.
    pub(crate) fn handle_probe(
        &mut self,
        key: &PublicKey,
        from: Endpoint,
        frame: &[u8],
        now: Instant,
    ) {
        let Some(nonce) = frame
            .get(1..9)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
        else {
            return;
        };
        if frame[0] == wire::frame::PROBE {
            let mut reply = [0u8; 9];
            reply[0] = wire::frame::PROBE_REPLY;
            reply[1..].copy_from_slice(&nonce.to_be_bytes());
            self.send_control_frame_to(key, from, &reply);
            return;
        }
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let Some(p) = peer.paths.iter_mut().find(|p| p.endpoint == from) else {
            return;
        };
        if let Some((n, sent)) = p.probe
            && n == nonce
        {
            let rtt = now.saturating_duration_since(sent);
            p.srtt = Some(match p.srtt {
                Some(s) => (s * 7 + rtt) / 8,
                None => rtt,
            });
            p.loss *= 0.75;
            p.probe = None;
        }
    }

    /// Probes the paths of peers that have several, forgets dead ones, and moves each link
    /// to its best path. Called from the timers.
    pub(crate) fn path_timers(&mut self, key: &PublicKey, now: Instant) {
        let forget = self.cfg.peer_timeout;
        let Some(peer) = self.peers.get_mut(key) else {
            return;
        };
        let current = peer.endpoint;
        peer.paths
            .retain(|p| p.endpoint == current || now < p.last_rx + forget);
        if peer.paths.len() < 2 || now < peer.next_probe {
            return;
        }
        peer.next_probe = now + PROBE_INTERVAL;
        // Judge the last round, then choose.
        for p in peer.paths.iter_mut() {
            if p.probe.take().is_some() {
                p.loss = p.loss * 0.75 + 0.25;
            }
        }
        let best = peer
            .paths
            .iter()
            .filter(|p| p.alive(now))
            .filter_map(|p| p.score().map(|s| (s, p.endpoint)))
            .min_by(|a, b| a.0.total_cmp(&b.0));
        let cur = peer.paths.iter().find(|p| p.endpoint == current);
        let cur_alive = cur.is_some_and(|p| p.alive(now));
        let cur_score = cur.filter(|p| p.alive(now)).and_then(Path::score);
        // The current path fell silent and nothing is measured yet: take the path heard last.
        let best = best.or_else(|| {
            (!cur_alive)
                .then(|| {
                    peer.paths
                        .iter()
                        .filter(|p| p.alive(now))
                        .max_by_key(|p| p.last_rx)
                })
                .flatten()
                .map(|p| (f64::INFINITY, p.endpoint))
        });
        if let Some((score, ep)) = best
            && ep != current
            && (!cur_alive
                || (now >= peer.switched + MIN_DWELL
                    && cur_score.is_none_or(|c| score < c * 0.75 && score < c - MIN_GAIN_MS)))
        {
            tracing::info!(peer = %key.short(), from = %current, to = %ep,
                score_ms = format!("{score:.2}"), "link moves to a better path");
            peer.endpoint = ep;
            peer.switched = now;
        }
        self.probe_paths(key, now);
    }

    /// Sends a `PROBE` on every path of a peer that has several.
    fn probe_paths(&mut self, key: &PublicKey, now: Instant) {
        let Some(peer) = self.peers.get(key) else {
            return;
        };
        if peer.paths.len() < 2 {
            return;
        }
        let endpoints: Vec<Endpoint> = peer.paths.iter().map(|p| p.endpoint).collect();
        for ep in endpoints {
            let nonce = self.next_random();
            let mut f = [0u8; 9];
            f[0] = wire::frame::PROBE;
            f[1..].copy_from_slice(&nonce.to_be_bytes());
            if let Some(p) = self
                .peers
                .get_mut(key)
                .and_then(|peer| peer.paths.iter_mut().find(|p| p.endpoint == ep))
            {
                p.probe = Some((nonce, now));
            }
            self.send_control_frame_to(key, ep, &f);
        }
    }
}
