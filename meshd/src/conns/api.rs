//! The connection manager's API types: what it asks of the shell ([`Action`]), what it tells
//! the link core ([`Event`]), what became of a frame to send ([`Send`], [`DropReason`]), and
//! its [`Counters`]. No logic beyond counting.

use crate::identity::PublicKey;
use crate::uri::Endpoint;

/// Names one connection (dialed or accepted) for as long as it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What the shell is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Connect to `to`; report with [`Conns::handle_up`](super::Conns::handle_up) or [`Conns::handle_dial_failed`](super::Conns::handle_dial_failed).
    Dial {
        /// The connection's id.
        id: ConnId,
        /// Where to.
        to: Endpoint,
    },
    /// Write `frame` on connection `id` (frames kept while it was set up).
    Write {
        /// The connection.
        id: ConnId,
        /// One link datagram.
        frame: Vec<u8>,
    },
    /// Close connection `id` (or stop setting it up), after what was queued is written. The
    /// core has forgotten it already: nothing more is to be reported about it.
    Close {
        /// The connection.
        id: ConnId,
        /// Why.
        why: CloseReason,
    },
}

/// Why the core closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// It received nothing for [`IDLE`](super::IDLE).
    Idle,
    /// It lost the tie-break with a crossing connection.
    Crossing,
    /// A newer connection to the same endpoint replaced it.
    Replaced,
    /// It was not set up within [`CONNECT_TIMEOUT`](super::CONNECT_TIMEOUT).
    TimedOut,
    /// The core does not know it (it timed out before the shell reported it up).
    Unknown,
    /// [`MAX_OUTBOUND`](super::MAX_OUTBOUND) outbound connections are up already.
    TooMany,
    /// An inbound connection carrying no authenticated link yet, the oldest such, made room
    /// for a new one (its address, network or the whole table was at its bound).
    Evicted,
    /// An inbound connection did not carry an authenticated link within
    /// [`AUTH_TIMEOUT`](super::AUTH_TIMEOUT) of its accept.
    Unauthenticated,
}

/// What the link core is to be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The connection carrying `endpoint` authenticated the remote as `key` (QUIC's TLS):
    /// `Links::bind_endpoint`.
    Bound {
        /// The endpoint.
        endpoint: Endpoint,
        /// The key its transport authenticated.
        key: PublicKey,
    },
    /// The connection carrying `endpoint` is gone: `Links::unbind_endpoint`.
    Unbound {
        /// The endpoint.
        endpoint: Endpoint,
    },
    /// Connecting to `endpoint` failed: `Links::transport_failed`.
    DialFailed {
        /// The endpoint.
        endpoint: Endpoint,
        /// What went wrong, for `meshctl peers`.
        why: String,
    },
}

/// What became of a frame to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Send {
    /// Write it on this connection.
    Write(ConnId),
    /// Kept until the connection being set up is up (then [`Action::Write`]).
    Queued,
    /// Dropped, and counted.
    Dropped(DropReason),
}

/// Why a frame to send was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Longer than [`MAX_FRAME`](super::MAX_FRAME) (a bug of the caller's).
    TooLong,
    /// Not a connection transport (`udp://`; a bug of the caller's).
    NotAStream,
    /// Its connection is being set up and [`MAX_PENDING_PER_ENDPOINT`](super::MAX_PENDING_PER_ENDPOINT) or
    /// [`MAX_PENDING_BYTES`](super::MAX_PENDING_BYTES) are reached.
    PendingFull,
    /// The endpoint failed lately and is not redialed before its backoff ends.
    Backoff,
    /// The endpoint is the ephemeral far end of an inbound TCP connection that is gone.
    InboundOnly,
    /// [`MAX_DIALING`](super::MAX_DIALING) dials or [`MAX_OUTBOUND`](super::MAX_OUTBOUND) connections exist already.
    TooManyConnections,
    /// Its connection ended or failed before it was up.
    ConnectionLost,
}

/// Counters of the connection manager.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Frames dropped, by reason (see [`DropReason`]).
    pub dropped_too_long: u64,
    /// Frames dropped: not a connection transport.
    pub dropped_not_a_stream: u64,
    /// Frames dropped: the connection being set up holds enough.
    pub dropped_pending_full: u64,
    /// Frames dropped: the endpoint is backing off.
    pub dropped_backoff: u64,
    /// Frames dropped: the endpoint is inbound-only.
    pub dropped_inbound_only: u64,
    /// Frames dropped: too many connections.
    pub dropped_too_many: u64,
    /// Frames dropped: kept for a connection that never came up.
    pub dropped_connection_lost: u64,
    /// Dials started.
    pub dials: u64,
    /// Dials that failed (timeouts included).
    pub dial_failures: u64,
    /// Connections closed for carrying nothing.
    pub idle_closed: u64,
    /// Connections closed by the crossing tie-break.
    pub crossing_closed: u64,
    /// Connections replaced by a newer one to the same endpoint.
    pub replaced: u64,
    /// Inbound connections refused: their address holds [`MAX_PER_ADDRESS`](super::MAX_PER_ADDRESS),
    /// all authenticated.
    pub refused_per_address: u64,
    /// Inbound connections refused: their network holds [`MAX_PER_PREFIX`](super::MAX_PER_PREFIX),
    /// all authenticated.
    pub refused_per_prefix: u64,
    /// Inbound connections refused: [`MAX_INBOUND`](super::MAX_INBOUND) exist, all authenticated.
    pub refused_total: u64,
    /// Inbound connections not yet authenticated closed to make room for a new one.
    pub evicted: u64,
    /// Inbound connections closed for not carrying an authenticated link within
    /// [`AUTH_TIMEOUT`](super::AUTH_TIMEOUT).
    pub unauthenticated_closed: u64,
    /// QUIC connection attempts asked to prove their address first (a Retry).
    pub validations_asked: u64,
    /// Frames received on a connection the core does not carry (closed meanwhile).
    pub stale_frames: u64,
}

impl Counters {
    /// Frames to send that were dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_too_long
            + self.dropped_not_a_stream
            + self.dropped_pending_full
            + self.dropped_backoff
            + self.dropped_inbound_only
            + self.dropped_too_many
            + self.dropped_connection_lost
    }

    pub(super) fn count(&mut self, why: DropReason, n: u64) {
        let c = match why {
            DropReason::TooLong => &mut self.dropped_too_long,
            DropReason::NotAStream => &mut self.dropped_not_a_stream,
            DropReason::PendingFull => &mut self.dropped_pending_full,
            DropReason::Backoff => &mut self.dropped_backoff,
            DropReason::InboundOnly => &mut self.dropped_inbound_only,
            DropReason::TooManyConnections => &mut self.dropped_too_many,
            DropReason::ConnectionLost => &mut self.dropped_connection_lost,
        };
        *c += n;
    }
}
