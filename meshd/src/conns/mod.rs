//! The sans-IO connection manager of the `tcp://` and `quic://` link transports.
//!
//! The link core sends datagrams to [`Endpoint`]s whatever the transport; over TCP and QUIC
//! each endpoint needs a connection. This core decides which connections exist: it dials an
//! endpoint when the link core first sends to it (keeping a few frames for it meanwhile),
//! redials a failed one only after a backoff, keeps one of two crossing connections (the one
//! the lower key dialed, on both sides), closes a connection that stopped carrying anything,
//! and shares the inbound slots out (below). It owns no socket, no task and no clock,
//! following quinn-proto's contract:
//!
//! ```text
//!   link frame to send ──► handle_send(now, to, frame) ──► Send::Write(id) / Queued / Dropped
//!   accept from addr   ──► handle_inbound(now, from)    ──► Some(id): set it up, None: refuse
//!   (QUIC, unproven)   ──► must_validate()              ──► true: ask for a Retry first
//!   link session sent  ──► handle_authenticated(id)     (the link core sent a sealed datagram)
//!   connection set up  ──► handle_up(now, id, key)
//!   frame received     ──► handle_frame(now, id)        ──► the endpoint, for the link core
//!   ended / failed     ──► handle_down(now, id) / handle_dial_failed(now, id, why)
//!   timer              ──► handle_timeout(now)          poll_timeout() ──► when, next
//!   poll_action()  ──► Dial { id, to } / Write { id, frame } / Close { id, why }  (the shell)
//!   poll_event()   ──► Bound / Unbound / DialFailed                           (the link core)
//! ```
//!
//! **Inbound slots.** A stranger's connection costs a slot from accept until it carries an
//! authenticated link, which the shell reports with [`Conns::handle_authenticated`] when the
//! link core first sends a datagram of an established session on it (the responder sends a
//! keepalive the moment the handshake completes). Slots are bounded per remote address
//! ([`MAX_PER_ADDRESS`]), per /24 or /64 ([`MAX_PER_PREFIX`]) and in all ([`MAX_INBOUND`]);
//! a new connection that meets a bound takes the slot of the oldest connection within that
//! bound that is not authenticated ([`CloseReason::Evicted`]), and is refused only if every
//! connection there is authenticated: whoever holds slots without linking cannot keep a new
//! peer out, and authenticated links are never closed for strangers. An inbound connection
//! not authenticated within [`AUTH_TIMEOUT`] of its accept is closed, whatever it sends; the
//! shell bounds every read besides (a frame's body within [`FRAME_TIMEOUT`]).
//!
//! The shell (`daemon/streams/`) only moves bytes: it runs the dials, accepts, readers and
//! writers the actions ask for, and reports what happened with the `handle_*` calls. Every
//! connection is named by a [`ConnId`] this core hands out; a connection up is the one that
//! carries its endpoint ([`Conns::handle_send`] answers with its id), so the shell's lookup is
//! by id and never by address. The manager does not look inside frames; authentication is the
//! link core's (a QUIC connection's TLS key is passed on as [`Event::Bound`], so that no other
//! peer's link moves onto it).
//!
//! Everything is bounded by named constants: frames kept per endpoint being dialed and in all,
//! dials in flight, outbound and inbound connections, and the tables in [`limits`].

mod api;
mod inbound;
pub mod limits;
#[cfg(test)]
mod tests;

use crate::identity::PublicKey;
use crate::uri::{Endpoint, Scheme};
use limits::{InboundSlots, NoDial, Redial};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

pub use api::{Action, CloseReason, ConnId, Counters, DropReason, Event, Send};
pub use limits::{
    INBOUND_ONLY_EXPIRY, MAX_BACKOFFS, MAX_INBOUND, MAX_INBOUND_ONLY, MAX_PER_ADDRESS,
    MAX_PER_PREFIX, REDIAL_MAX, REDIAL_MIN, VALIDATE_ABOVE, prefix_of,
};

/// Longest frame a connection carries (frames are framed with a 2-byte length).
pub const MAX_FRAME: usize = u16::MAX as usize;
/// Frames kept for one endpoint while its connection is being set up.
pub const MAX_PENDING_PER_ENDPOINT: usize = 32;
/// Bytes of frames kept for all endpoints being set up together.
pub const MAX_PENDING_BYTES: usize = 256 * 1024;
/// Most dials in flight at once.
pub const MAX_DIALING: usize = 256;
/// Most outbound connections up at once.
pub const MAX_OUTBOUND: usize = 1024;
/// A dial or an accept not set up within this long is closed (a dial counts as failed).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection that received nothing for this long is closed (a live link hears a
/// keepalive every half second).
pub const IDLE: Duration = Duration::from_secs(10);
/// An inbound connection that does not carry an authenticated link this long after its
/// accept is closed (a handshake takes one round trip; a dialer whose inits are rate-limited
/// retries within a few seconds).
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// A frame whose first byte arrived must be complete within this long, or its connection is
/// closed (enforced by the shell's readers: a 2-byte length followed by nothing holds nothing).
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// Two connections between the same two sockets that came up within this long of each
/// other crossed (both sides dialed at once): both sides keep the one the lower key dialed.
/// An older one is from before (a restarted peer) and the newer replaces it.
pub const CROSSING_WINDOW: Duration = CONNECT_TIMEOUT;

/// One connection.
#[derive(Debug)]
struct Conn {
    endpoint: Endpoint,
    inbound: bool,
    /// When it was dialed or accepted.
    opened: Instant,
    /// When it was started (opening) or came up (up).
    since: Instant,
    state: State,
}

#[derive(Debug)]
enum State {
    /// Being dialed or accepted; frames kept for it (dials only).
    Opening { pending: Vec<Vec<u8>> },
    /// Up and carrying its endpoint.
    Up {
        key: Option<PublicKey>,
        last_rx: Instant,
    },
}

/// The TCP and QUIC connections of a node, without I/O.
#[derive(Debug)]
pub struct Conns {
    own: PublicKey,
    next_id: u64,
    conns: HashMap<ConnId, Conn>,
    /// The connection up that carries each endpoint.
    current: HashMap<Endpoint, ConnId>,
    /// The dial in flight to each endpoint.
    dialing: HashMap<Endpoint, ConnId>,
    outbound_up: usize,
    pending_bytes: usize,
    inbound: InboundSlots,
    /// Inbound connections not yet carrying an authenticated link, oldest (lowest id) first:
    /// the ones that make room when the slots are full.
    unauthenticated: BTreeSet<ConnId>,
    redial: Redial,
    /// No deadline of any connection is earlier (it may be earlier than the real next one:
    /// receiving moves idle deadlines later without recomputing it).
    next_timeout: Option<Instant>,
    actions: VecDeque<Action>,
    events: VecDeque<Event>,
    counters: Counters,
}

impl Conns {
    /// A connection manager for the node whose key is `own` (the crossing tie-break needs it).
    pub fn new(own: PublicKey) -> Conns {
        Conns {
            own,
            next_id: 1,
            conns: HashMap::new(),
            current: HashMap::new(),
            dialing: HashMap::new(),
            outbound_up: 0,
            pending_bytes: 0,
            inbound: InboundSlots::default(),
            unauthenticated: BTreeSet::new(),
            redial: Redial::default(),
            next_timeout: None,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    /// The link core sends `frame` to `to`: on the connection that carries it, or kept while
    /// one is dialed (the dial starts now if none is in flight and none failed lately).
    pub fn handle_send(&mut self, now: Instant, to: Endpoint, frame: &[u8]) -> Send {
        if let Some(id) = self.current.get(&to) {
            if frame.len() > MAX_FRAME {
                return self.drop_frame(DropReason::TooLong);
            }
            return Send::Write(*id);
        }
        if frame.len() > MAX_FRAME {
            return self.drop_frame(DropReason::TooLong);
        }
        if to.scheme == Scheme::Udp {
            return self.drop_frame(DropReason::NotAStream);
        }
        if let Some(id) = self.dialing.get(&to).copied() {
            return self.keep(id, frame);
        }
        match self.redial.may_dial(&to, now) {
            Err(NoDial::Backoff) => return self.drop_frame(DropReason::Backoff),
            Err(NoDial::InboundOnly) => return self.drop_frame(DropReason::InboundOnly),
            Ok(()) => {}
        }
        if self.dialing.len() >= MAX_DIALING || self.outbound_up >= MAX_OUTBOUND {
            return self.drop_frame(DropReason::TooManyConnections);
        }
        let id = self.fresh_id();
        self.conns.insert(
            id,
            Conn {
                endpoint: to,
                inbound: false,
                opened: now,
                since: now,
                state: State::Opening { pending: vec![] },
            },
        );
        self.dialing.insert(to, id);
        self.arm(now + CONNECT_TIMEOUT);
        self.counters.dials += 1;
        self.actions.push_back(Action::Dial { id, to });
        self.keep(id, frame)
    }

    /// Connection `id` is up; `key` is the key its transport authenticated (QUIC), if any.
    /// It carries its endpoint from now on, unless it lost the crossing tie-break.
    pub fn handle_up(&mut self, now: Instant, id: ConnId, key: Option<PublicKey>) {
        let Some(conn) = self.conns.get_mut(&id) else {
            self.actions.push_back(Action::Close {
                id,
                why: CloseReason::Unknown,
            });
            return;
        };
        let State::Opening { pending } = &mut conn.state else {
            return;
        };
        let pending = std::mem::take(pending);
        let (ep, inbound, opened) = (conn.endpoint, conn.inbound, conn.opened);
        if !inbound && self.outbound_up >= MAX_OUTBOUND {
            // Its frames are counted as lost when it is forgotten.
            conn.state = State::Opening { pending };
            self.close(id, CloseReason::TooMany);
            return;
        }
        conn.since = now;
        conn.state = State::Up { key, last_rx: now };
        self.pending_bytes -= pending.iter().map(Vec::len).sum::<usize>();
        if !inbound {
            self.outbound_up += 1;
        }
        self.arm(now + IDLE);
        if inbound {
            self.arm(opened + AUTH_TIMEOUT);
        }
        if self.dialing.get(&ep) == Some(&id) {
            self.dialing.remove(&ep);
        }
        self.redial.succeeded(&ep);
        if inbound && ep.scheme == Scheme::Tcp {
            // A TCP connection comes from an ephemeral port; a QUIC one from the remote's
            // listening socket, which may well be dialed later.
            self.redial.inbound_only(ep, now);
        }
        let carrier = match self.current.get(&ep).copied() {
            Some(old) if self.crossing(old, id, now) && self.dialer(old) <= self.dialer(id) => {
                self.counters.crossing_closed += 1;
                self.close(id, CloseReason::Crossing);
                old
            }
            Some(old) => {
                let why = if self.crossing(old, id, now) {
                    self.counters.crossing_closed += 1;
                    CloseReason::Crossing
                } else {
                    self.counters.replaced += 1;
                    CloseReason::Replaced
                };
                self.close(old, why);
                self.current.insert(ep, id);
                if let Some(key) = key {
                    self.events.push_back(Event::Bound { endpoint: ep, key });
                }
                id
            }
            None => {
                self.current.insert(ep, id);
                if let Some(key) = key {
                    self.events.push_back(Event::Bound { endpoint: ep, key });
                }
                id
            }
        };
        // What waited for this connection, and for a dial still in flight to the same
        // endpoint (the other side's connection came first), goes on the carrier.
        let mut frames = pending;
        if let Some(other) = self.dialing.get(&ep)
            && let Some(Conn {
                state: State::Opening { pending },
                ..
            }) = self.conns.get_mut(other)
        {
            let more = std::mem::take(pending);
            self.pending_bytes -= more.iter().map(Vec::len).sum::<usize>();
            frames.extend(more);
        }
        for frame in frames {
            self.actions.push_back(Action::Write { id: carrier, frame });
        }
    }

    /// A frame arrived on connection `id`. Returns the endpoint the link core hears it from,
    /// or `None` if the core closed that connection meanwhile (drop the frame).
    pub fn handle_frame(&mut self, now: Instant, id: ConnId) -> Option<Endpoint> {
        match self.conns.get_mut(&id) {
            Some(Conn {
                endpoint,
                state: State::Up { last_rx, .. },
                ..
            }) => {
                *last_rx = now;
                Some(*endpoint)
            }
            _ => {
                self.counters.stale_frames += 1;
                None
            }
        }
    }

    /// Connection `id` ended (or an inbound one failed to be set up).
    pub fn handle_down(&mut self, _now: Instant, id: ConnId) {
        self.forget(id);
    }

    /// Dialing `id` failed; `why` says how, for `meshctl peers`.
    pub fn handle_dial_failed(&mut self, now: Instant, id: ConnId, why: String) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        if conn.inbound || !matches!(conn.state, State::Opening { .. }) {
            self.forget(id);
            return;
        }
        let ep = conn.endpoint;
        self.forget(id);
        self.dial_failed(ep, now, why);
    }

    /// Closes what timed out: dials and accepts not set up within [`CONNECT_TIMEOUT`],
    /// connections idle for [`IDLE`], inbound connections not authenticated within
    /// [`AUTH_TIMEOUT`].
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_timeout.is_none_or(|t| now < t) {
            return;
        }
        let mut expired = Vec::new();
        let mut next: Option<Instant> = None;
        for (id, c) in &self.conns {
            let mut deadline = match c.state {
                State::Opening { .. } => c.since + CONNECT_TIMEOUT,
                State::Up { last_rx, .. } => last_rx + IDLE,
            };
            if self.unauthenticated.contains(id) {
                deadline = deadline.min(c.opened + AUTH_TIMEOUT);
            }
            if deadline <= now {
                expired.push(*id);
            } else {
                next = Some(next.map_or(deadline, |n| n.min(deadline)));
            }
        }
        self.next_timeout = next;
        expired.sort();
        for id in expired {
            let Some(c) = self.conns.get(&id) else {
                continue;
            };
            let (ep, dial) = (c.endpoint, !c.inbound);
            let stranger = self.unauthenticated.contains(&id) && c.opened + AUTH_TIMEOUT <= now;
            match c.state {
                State::Opening { .. } => {
                    self.close(id, CloseReason::TimedOut);
                    if dial {
                        let why = match ep.scheme {
                            Scheme::Quic => "QUIC connect: timed out",
                            _ => "TCP connect: timed out",
                        };
                        self.dial_failed(ep, now, why.into());
                    }
                }
                State::Up { .. } if stranger => {
                    tracing::debug!(endpoint = %ep, "inbound connection carries no authenticated link; closed");
                    self.counters.unauthenticated_closed += 1;
                    self.close(id, CloseReason::Unauthenticated);
                }
                State::Up { .. } => {
                    tracing::debug!(endpoint = %ep, "connection idle; closed");
                    self.counters.idle_closed += 1;
                    self.close(id, CloseReason::Idle);
                }
            }
        }
    }

    /// When [`Conns::handle_timeout`] is to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timeout
    }

    /// The next thing for the shell to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next thing to tell the link core.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Connections up, and being set up.
    pub fn len(&self) -> (usize, usize) {
        (self.current.len(), self.conns.len() - self.current.len())
    }

    /// Whether there is no connection at all.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Every connection, for the shell's shutdown; the core forgets them all.
    pub fn close_all(&mut self) -> Vec<ConnId> {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in &ids {
            self.forget(*id);
        }
        ids
    }

    fn fresh_id(&mut self) -> ConnId {
        let id = ConnId(self.next_id);
        self.next_id += 1;
        id
    }

    fn arm(&mut self, at: Instant) {
        self.next_timeout = Some(self.next_timeout.map_or(at, |t| t.min(at)));
    }

    fn drop_frame(&mut self, why: DropReason) -> Send {
        self.counters.count(why, 1);
        Send::Dropped(why)
    }

    /// Keeps `frame` for the connection `id` being dialed.
    fn keep(&mut self, id: ConnId, frame: &[u8]) -> Send {
        let Some(Conn {
            state: State::Opening { pending },
            ..
        }) = self.conns.get_mut(&id)
        else {
            return self.drop_frame(DropReason::ConnectionLost);
        };
        if pending.len() >= MAX_PENDING_PER_ENDPOINT
            || self.pending_bytes + frame.len() > MAX_PENDING_BYTES
        {
            return self.drop_frame(DropReason::PendingFull);
        }
        pending.push(frame.to_vec());
        self.pending_bytes += frame.len();
        Send::Queued
    }

    fn dial_failed(&mut self, ep: Endpoint, now: Instant, why: String) {
        self.counters.dial_failures += 1;
        if self.current.contains_key(&ep) {
            // The other side's connection came up meanwhile: nothing failed.
            return;
        }
        let wait = self.redial.failed(ep, now);
        tracing::debug!(endpoint = %ep, ?wait, "{why}");
        self.events
            .push_back(Event::DialFailed { endpoint: ep, why });
    }

    /// The tie-break's key: who dialed connection `id`.
    fn dialer(&self, id: ConnId) -> Option<PublicKey> {
        let c = self.conns.get(&id)?;
        match (c.inbound, &c.state) {
            (false, _) => Some(self.own),
            (true, State::Up { key, .. }) => *key,
            (true, State::Opening { .. }) => None,
        }
    }

    /// Whether `new` crossed `old` (see [`CROSSING_WINDOW`]): both authenticated the remote
    /// (QUIC), the same key, and came up close together, one dialed by each side.
    fn crossing(&self, old: ConnId, new: ConnId, now: Instant) -> bool {
        let (Some(o), Some(n)) = (self.conns.get(&old), self.conns.get(&new)) else {
            return false;
        };
        let key = |c: &Conn| match c.state {
            State::Up { key, .. } => key,
            State::Opening { .. } => None,
        };
        key(o).is_some()
            && key(o) == key(n)
            && o.inbound != n.inbound
            && now < o.since + CROSSING_WINDOW
    }

    /// Closes `id`: the shell is told, the core forgets it.
    fn close(&mut self, id: ConnId, why: CloseReason) {
        if self.forget(id) {
            self.actions.push_back(Action::Close { id, why });
        }
    }

    /// Forgets `id`: gives back its slot, drops what waited for it, and tells the link core
    /// if it carried its endpoint. Returns whether it was known.
    fn forget(&mut self, id: ConnId) -> bool {
        let Some(c) = self.conns.remove(&id) else {
            return false;
        };
        let ep = c.endpoint;
        if c.inbound {
            self.inbound.give_back(ep.addr.ip().to_canonical());
            self.unauthenticated.remove(&id);
        }
        if self.dialing.get(&ep) == Some(&id) {
            self.dialing.remove(&ep);
        }
        match c.state {
            State::Opening { pending } => {
                self.pending_bytes -= pending.iter().map(Vec::len).sum::<usize>();
                self.counters
                    .count(DropReason::ConnectionLost, pending.len() as u64);
            }
            State::Up { key, .. } => {
                if !c.inbound {
                    self.outbound_up -= 1;
                }
                if self.current.get(&ep) == Some(&id) {
                    self.current.remove(&ep);
                    if key.is_some() {
                        self.events.push_back(Event::Unbound { endpoint: ep });
                    }
                }
            }
        }
        true
    }

    /// Inbound connections holding a slot (for the tests' bound checks).
    #[cfg(test)]
    pub(crate) fn inbound_slots(&self) -> usize {
        self.inbound.total()
    }
}
