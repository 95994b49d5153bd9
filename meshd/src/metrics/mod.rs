//! The Prometheus/OpenMetrics endpoint (`metrics_listen`, off unless set): `GET /metrics`
//! answers the daemon's counters in the OpenMetrics text format.
//!
//! A scrape asks the event loop for the same answers `meshctl status`, `peers`, `sessions`,
//! `znet list` and `gateway status` get (through the admin channel, so the loop does no more
//! than for `meshctl`), then [`render`] encodes them with `prometheus-client`. Byte and packet
//! totals that the daemon keeps per link, session or service are summed here into monotonic
//! counters ([`Monotonic`]): what a link carried stays counted after it goes down.
//!
//! [`server`] is the listener: bounded connections, a deadline on every read and write, one
//! request per connection, `GET` (and `HEAD`) of `/metrics` only.
//!
//! It must not: hold state of its own beyond the running totals, label a series by a peer,
//! an address or anything else without a fixed bound, or do any work on the event loop.

pub mod render;
pub mod server;

use api::{GatewayStatus, PeerInfo, SessionInfo, Status, ZnetInfo};
use std::collections::HashMap;

pub use render::render;

/// What one scrape reads from the daemon.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// `status`.
    pub status: Status,
    /// `peers`, with their byte and packet counts replaced by running totals (see
    /// [`Totals::fold`]).
    pub peers: Vec<PeerInfo>,
    /// `sessions`, likewise.
    pub sessions: Vec<SessionInfo>,
    /// `znet list`.
    pub znets: Vec<ZnetInfo>,
    /// `gateway status` (None: no gateway thread, as in an app's packet mode).
    pub gateway: Option<GatewayStatus>,
}

/// A total over items that come and go (links, sessions, services), each with a counter of its
/// own that starts again at zero when the item is new: the counts of items gone (or restarted)
/// are kept in `retired`, so the total never goes down. Holds one entry per item present at
/// the last fold (bounded like the items themselves).
#[derive(Debug, Default)]
pub struct Monotonic {
    retired: u64,
    last: HashMap<String, u64>,
}

impl Monotonic {
    /// Folds the items' current counts in; returns the total.
    pub fn fold<'a>(&mut self, items: impl Iterator<Item = (&'a str, u64)>) -> u64 {
        let mut now: HashMap<String, u64> = HashMap::with_capacity(self.last.len());
        for (key, v) in items {
            let e = now.entry(key.to_owned()).or_default();
            *e = e.saturating_add(v);
        }
        for (key, old) in &self.last {
            match now.get(key) {
                // Restarted (a new link or session under the same key): what it had counted
                // before is retired.
                Some(v) if v < old => self.retired = self.retired.saturating_add(*old),
                Some(_) => {}
                None => self.retired = self.retired.saturating_add(*old),
            }
        }
        self.last = now;
        self.last
            .values()
            .fold(self.retired, |a, v| a.saturating_add(*v))
    }
}

/// The running totals of one metrics endpoint.
#[derive(Debug, Default)]
pub struct Totals {
    link_rx_bytes: Monotonic,
    link_tx_bytes: Monotonic,
    link_rx_packets: Monotonic,
    link_tx_packets: Monotonic,
    session_rx_bytes: Monotonic,
    session_tx_bytes: Monotonic,
    gateway_in: Monotonic,
    gateway_out: Monotonic,
}

/// The sums a scrape reports, each monotonic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sums {
    /// Bytes received on links.
    pub link_rx_bytes: u64,
    /// Bytes sent on links.
    pub link_tx_bytes: u64,
    /// IPv6 packets received on links.
    pub link_rx_packets: u64,
    /// IPv6 packets sent on links.
    pub link_tx_packets: u64,
    /// IPv6 bytes received on end-to-end sessions.
    pub session_rx_bytes: u64,
    /// IPv6 bytes sent on end-to-end sessions.
    pub session_tx_bytes: u64,
    /// Bytes from a gateway's public clients.
    pub gateway_in: u64,
    /// Bytes to a gateway's public clients.
    pub gateway_out: u64,
}

impl Totals {
    /// The snapshot's per-item counts folded into the running totals.
    pub fn fold(&mut self, s: &Snapshot) -> Sums {
        // A peer not linked yet has no key: its URI names it (its counts are zero anyway).
        let peer_key = |p: &PeerInfo| -> String {
            p.public_key
                .clone()
                .or_else(|| p.uri.clone())
                .unwrap_or_default()
        };
        let keys: Vec<String> = s.peers.iter().map(peer_key).collect();
        let peers = || keys.iter().map(String::as_str).zip(s.peers.iter());
        let sessions = || s.sessions.iter().map(|x| (x.public_key.as_str(), x));
        let services = || {
            s.gateway
                .iter()
                .flat_map(|g| g.services.iter())
                .map(|x| (x.name.as_str(), x))
        };
        Sums {
            link_rx_bytes: self
                .link_rx_bytes
                .fold(peers().map(|(k, p)| (k, p.rx_bytes))),
            link_tx_bytes: self
                .link_tx_bytes
                .fold(peers().map(|(k, p)| (k, p.tx_bytes))),
            link_rx_packets: self
                .link_rx_packets
                .fold(peers().map(|(k, p)| (k, p.rx_packets))),
            link_tx_packets: self
                .link_tx_packets
                .fold(peers().map(|(k, p)| (k, p.tx_packets))),
            session_rx_bytes: self
                .session_rx_bytes
                .fold(sessions().map(|(k, x)| (k, x.rx_bytes))),
            session_tx_bytes: self
                .session_tx_bytes
                .fold(sessions().map(|(k, x)| (k, x.tx_bytes))),
            gateway_in: self
                .gateway_in
                .fold(services().map(|(k, x)| (k, x.bytes_in))),
            gateway_out: self
                .gateway_out
                .fold(services().map(|(k, x)| (k, x.bytes_out))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_total_never_goes_down_as_items_come_go_and_restart() {
        let mut m = Monotonic::default();
        assert_eq!(m.fold([("a", 10), ("b", 5)].into_iter()), 15);
        assert_eq!(m.fold([("a", 12), ("b", 5)].into_iter()), 17);
        // b went away: its 5 stay counted.
        assert_eq!(m.fold([("a", 12)].into_iter()), 17);
        // a restarted (a new link): its 12 are retired, its new 3 count on top.
        assert_eq!(m.fold([("a", 3)].into_iter()), 20);
        // b is back, new.
        assert_eq!(m.fold([("a", 3), ("b", 1)].into_iter()), 21);
        assert_eq!(m.fold(std::iter::empty()), 21);
        assert!(m.last.is_empty(), "nothing kept for items gone");
    }
}
