//! Copies meshd's own counter and info structs into the [`api`] types the admin socket sends.
//!
//! Each counter struct stays next to the code that counts (`link/stats.rs`, `e2e`, `node`,
//! `firewall`, `nat`, `znet`, `daemon/lan.rs`); what crosses the socket is the `api` type.
//! Every copy destructures its source exhaustively (no `..`), so a counter added or renamed
//! in meshd does not compile until the `api` struct (and so `meshctl`) has it too.
//!
//! It must not compute anything: one field in, the same field out.

use crate::daemon::lan::{LanCounters, LanInfo};
use crate::e2e::{E2eCounters, SessionInfo};
use crate::firewall::PolicyCounters;
use crate::link::{Counters, DropCounters};
use crate::nat::NatCounters;
use crate::node::{NodeCounters, PingOutcome};
use crate::znet::ZnetCounters;

/// The link layer's counters.
pub fn link_counters(c: &Counters) -> api::LinkCounters {
    let Counters {
        rx_datagrams,
        tx_datagrams,
        handshakes_completed,
        policy_refused,
        dropped,
    } = c;
    let DropCounters {
        malformed,
        unknown_session,
        replay,
        decrypt_failed,
        handshake_failed,
        refused,
        rate_limited,
        bad_frame,
        no_link,
    } = dropped;
    api::LinkCounters {
        rx_datagrams: *rx_datagrams,
        tx_datagrams: *tx_datagrams,
        handshakes_completed: *handshakes_completed,
        policy_refused: *policy_refused,
        dropped: api::DropCounters {
            malformed: *malformed,
            unknown_session: *unknown_session,
            replay: *replay,
            decrypt_failed: *decrypt_failed,
            handshake_failed: *handshake_failed,
            refused: *refused,
            rate_limited: *rate_limited,
            bad_frame: *bad_frame,
            no_link: *no_link,
        },
    }
}

/// The end-to-end layer's counters.
pub fn e2e_counters(c: &E2eCounters) -> api::E2eCounters {
    let E2eCounters {
        malformed,
        unknown_session,
        replay,
        decrypt_failed,
        handshake_failed,
        rate_limited,
        spoofed_source,
        not_for_us,
        queue_dropped,
        sessions_established,
    } = c;
    api::E2eCounters {
        malformed: *malformed,
        unknown_session: *unknown_session,
        replay: *replay,
        decrypt_failed: *decrypt_failed,
        handshake_failed: *handshake_failed,
        rate_limited: *rate_limited,
        spoofed_source: *spoofed_source,
        not_for_us: *not_for_us,
        queue_dropped: *queue_dropped,
        sessions_established: *sessions_established,
    }
}

/// The node's own drops.
pub fn node_counters(c: &NodeCounters) -> api::NodeCounters {
    let NodeCounters {
        bad_local_packet,
        multicast,
        outside_overlay,
        too_big,
        unreachable,
        no_path,
    } = c;
    api::NodeCounters {
        bad_local_packet: *bad_local_packet,
        multicast: *multicast,
        outside_overlay: *outside_overlay,
        too_big: *too_big,
        unreachable: *unreachable,
        no_path: *no_path,
    }
}

/// What the circle policy did.
pub fn policy_counters(c: &PolicyCounters) -> api::PolicyCounters {
    let PolicyCounters {
        links_refused,
        sessions_refused,
        dropped_in,
        dropped_out,
        links_closed,
        sessions_closed,
        flows,
        flows_full,
    } = c;
    api::PolicyCounters {
        links_refused: *links_refused,
        sessions_refused: *sessions_refused,
        dropped_in: *dropped_in,
        dropped_out: *dropped_out,
        links_closed: *links_closed,
        sessions_closed: *sessions_closed,
        flows: *flows,
        flows_full: *flows_full,
    }
}

/// LAN discovery's interfaces and counters.
pub fn discovery_info(i: &LanInfo) -> api::DiscoveryInfo {
    let LanInfo {
        interfaces,
        counters,
    } = i;
    let LanCounters {
        sent,
        accepted,
        new_neighbours,
        denied,
        rate_limited,
        malformed,
        bad_signature,
        stale,
        wrong_source,
    } = counters;
    api::DiscoveryInfo {
        interfaces: interfaces.clone(),
        counters: api::LanCounters {
            sent: *sent,
            accepted: *accepted,
            new_neighbours: *new_neighbours,
            denied: *denied,
            rate_limited: *rate_limited,
            malformed: *malformed,
            bad_signature: *bad_signature,
            stale: *stale,
            wrong_source: *wrong_source,
        },
    }
}

/// What NAT traversal did.
pub fn nat_counters(c: &NatCounters) -> api::NatCounters {
    let NatCounters {
        endpoints_sent,
        endpoints_received,
        punches,
    } = c;
    api::NatCounters {
        endpoints_sent: *endpoints_sent,
        endpoints_received: *endpoints_received,
        punches: *punches,
    }
}

/// The connection manager's counters (its frames dropped are in `NatInfo::stream_dropped`).
pub fn connection_counters(c: &crate::conns::Counters) -> api::ConnectionCounters {
    let crate::conns::Counters {
        dropped_too_long: _,
        dropped_not_a_stream: _,
        dropped_pending_full: _,
        dropped_backoff: _,
        dropped_inbound_only: _,
        dropped_too_many: _,
        dropped_connection_lost: _,
        dials,
        dial_failures,
        idle_closed,
        crossing_closed,
        replaced,
        refused_per_address,
        refused_per_prefix,
        refused_total,
        evicted,
        unauthenticated_closed,
        validations_asked,
        stale_frames,
    } = c;
    api::ConnectionCounters {
        dials: *dials,
        dial_failures: *dial_failures,
        idle_closed: *idle_closed,
        crossing_closed: *crossing_closed,
        replaced: *replaced,
        refused_per_address: *refused_per_address,
        refused_per_prefix: *refused_per_prefix,
        refused_total: *refused_total,
        evicted: *evicted,
        unauthenticated_closed: *unauthenticated_closed,
        validations_asked: *validations_asked,
        stale_frames: *stale_frames,
    }
}

/// One znet's counters.
pub fn znet_counters(c: &ZnetCounters) -> api::ZnetCounters {
    let ZnetCounters {
        sent,
        delivered,
        not_member,
        bad_source,
        not_for_us,
        no_member,
        spoofed,
        too_big,
        no_egress,
        not_exit,
        exit_out,
        exit_back,
    } = c;
    api::ZnetCounters {
        sent: *sent,
        delivered: *delivered,
        not_member: *not_member,
        bad_source: *bad_source,
        not_for_us: *not_for_us,
        no_member: *no_member,
        spoofed: *spoofed,
        too_big: *too_big,
        no_egress: *no_egress,
        not_exit: *not_exit,
        exit_out: *exit_out,
        exit_back: *exit_back,
    }
}

/// One end-to-end session.
pub fn session_info(s: SessionInfo) -> api::SessionInfo {
    let SessionInfo {
        public_key,
        address,
        state,
        age_secs,
        initiator,
        rx_packets,
        tx_packets,
        rx_bytes,
        tx_bytes,
        queued,
    } = s;
    api::SessionInfo {
        public_key,
        address,
        state,
        age_secs,
        initiator,
        rx_packets,
        tx_packets,
        rx_bytes,
        tx_bytes,
        queued,
    }
}

/// The outcome of an overlay ping.
pub fn ping_outcome(o: PingOutcome) -> api::PingOutcome {
    match o {
        PingOutcome::Reply {
            hops,
            rtt_us,
            direct,
        } => api::PingOutcome::Reply {
            hops,
            rtt_us,
            direct,
        },
        PingOutcome::Unreachable => api::PingOutcome::Unreachable,
        PingOutcome::Timeout => api::PingOutcome::Timeout,
    }
}
