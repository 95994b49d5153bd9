//! The counters of one snapshot in the OpenMetrics text format, with `prometheus-client`'s
//! encoder: every family named `meshd_…`, counters ending in `_total`, sizes in bytes, times
//! in seconds, and only bounded labels (reasons, states and transports from fixed lists; znets
//! at most [`MAX_ZNETS`], by name). No label names a peer, an address or a flow.

use super::{Snapshot, Sums};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use std::collections::BTreeMap;
use std::fmt::Error;

/// Most znets given their own series (the rest are counted in `meshd_znets` only).
pub const MAX_ZNETS: usize = 64;

/// The snapshot and its running totals as an OpenMetrics exposition (ending in `# EOF`).
pub fn render(snapshot: Snapshot, sums: Sums) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Page { snapshot, sums }));
    let mut out = String::new();
    // (Writing to a String cannot fail; an error would be an encoder bug: an empty page.)
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        out.clear();
    }
    out
}

/// The same page in the classic Prometheus text format (0.0.4), for clients that do not ask
/// for OpenMetrics (`curl`, `promtool check metrics`): a counter's `# HELP` and `# TYPE` name
/// its samples (`…_total`), an info family is a gauge named `…_info`, and there is no `# UNIT`
/// or `# EOF`.
pub fn classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // One family at a time: its help (which comes first), then its type, then its samples.
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest.split_once(' ').unwrap_or((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (sample, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                k => (name.to_string(), k),
            };
            if let Some((_, text)) = help.take().filter(|(n, _)| *n == name) {
                out.push_str(&format!("# HELP {sample} {text}\n"));
            }
            out.push_str(&format!("# TYPE {sample} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// One family at a time into the encoder.
struct Out<'a, 'b>(&'a mut DescriptorEncoder<'b>);

impl Out<'_, '_> {
    fn counter(&mut self, name: &str, help: &str, unit: Option<Unit>, v: u64) -> Result<(), Error> {
        let c = ConstCounter::new(v);
        c.encode(
            self.0
                .encode_descriptor(name, help, unit.as_ref(), c.metric_type())?,
        )
    }

    fn gauge(&mut self, name: &str, help: &str, unit: Option<Unit>, v: i64) -> Result<(), Error> {
        let g = ConstGauge::new(v);
        g.encode(
            self.0
                .encode_descriptor(name, help, unit.as_ref(), g.metric_type())?,
        )
    }

    /// A counter family with one label (`key`), one series per `(value, count)`.
    fn counters(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        key: &str,
        rows: &[(&str, u64)],
    ) -> Result<(), Error> {
        let mt = ConstCounter::new(0u64).metric_type();
        let mut m = self.0.encode_descriptor(name, help, unit.as_ref(), mt)?;
        for (label, v) in rows {
            let labels = [(key, *label)];
            ConstCounter::new(*v).encode(m.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// A gauge family with any labels.
    fn gauges(
        &mut self,
        name: &str,
        help: &str,
        rows: &[(Vec<(&str, &str)>, i64)],
    ) -> Result<(), Error> {
        let mt = ConstGauge::new(0i64).metric_type();
        let mut m = self.0.encode_descriptor(name, help, None, mt)?;
        for (labels, v) in rows {
            ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
        }
        Ok(())
    }
}

fn g(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

/// What one scrape encodes.
#[derive(Debug)]
struct Page {
    snapshot: Snapshot,
    sums: Sums,
}

impl Collector for Page {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), Error> {
        let (snap, sums) = (&self.snapshot, &self.sums);
        let s = &snap.status;
        let mut o = Out(&mut encoder);
        let info = Info::new(vec![("version", s.node.version.clone())]);
        info.encode(o.0.encode_descriptor(
            "meshd_build",
            "The daemon's version.",
            None,
            info.metric_type(),
        )?)?;
        o.gauge(
            "meshd_uptime",
            "Time since the daemon started.",
            Some(Unit::Seconds),
            g(s.uptime_secs),
        )?;

        // Links: by state and transport (fixed lists), configured peers, traffic.
        let mut links: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for st in ["up", "connecting", "down"] {
            for tr in ["udp", "tcp", "quic"] {
                links.insert((st, tr), 0);
            }
        }
        for p in &snap.peers {
            let st = match p.state.as_str() {
                "up" => "up",
                "connecting" => "connecting",
                _ => "down",
            };
            let tr = match p.transport.as_deref() {
                Some("tcp") => "tcp",
                Some("quic") => "quic",
                _ => "udp",
            };
            *links.entry((st, tr)).or_default() += 1;
        }
        let rows: Vec<_> = links
            .iter()
            .map(|((st, tr), n)| (vec![("state", *st), ("transport", *tr)], *n))
            .collect();
        o.gauges(
            "meshd_links",
            "Links (peers) by state and transport.",
            &rows,
        )?;
        o.gauge(
            "meshd_peers_configured",
            "Peers in the configuration and added at run time.",
            None,
            g(s.peers_configured),
        )?;
        o.counter(
            "meshd_link_received",
            "Bytes received from peers on their links.",
            Some(Unit::Bytes),
            sums.link_rx_bytes,
        )?;
        o.counter(
            "meshd_link_sent",
            "Bytes sent to peers on their links.",
            Some(Unit::Bytes),
            sums.link_tx_bytes,
        )?;
        o.counter(
            "meshd_link_received_packets",
            "IPv6 packets received from peers on their links.",
            None,
            sums.link_rx_packets,
        )?;
        o.counter(
            "meshd_link_sent_packets",
            "IPv6 packets sent to peers on their links.",
            None,
            sums.link_tx_packets,
        )?;
        let c = &s.counters;
        o.counter(
            "meshd_datagrams_received",
            "Datagrams received on the UDP sockets.",
            None,
            c.rx_datagrams,
        )?;
        o.counter(
            "meshd_datagrams_sent",
            "Datagrams sent.",
            None,
            c.tx_datagrams,
        )?;
        o.counter(
            "meshd_handshakes",
            "Link handshakes completed (as initiator or responder).",
            None,
            c.handshakes_completed,
        )?;
        o.counters(
            "meshd_link_dropped",
            "Datagrams the link layer dropped, by reason.",
            None,
            "reason",
            &c.dropped.entries(),
        )?;

        // Routing.
        let r = &s.routing;
        o.gauge(
            "meshd_routing_state_entries",
            "Entries of routing state held (peers, tree, lookups, caches).",
            None,
            g(r.state_entries),
        )?;
        o.gauge(
            "meshd_routing_state",
            "Approximate size of the routing state.",
            Some(Unit::Bytes),
            g(r.state_bytes),
        )?;
        o.gauge(
            "meshd_tree_depth",
            "This node's depth in the spanning tree (0: the root).",
            None,
            g(r.depth),
        )?;
        o.counter(
            "meshd_routing_forwarded",
            "Routed messages forwarded for other nodes.",
            None,
            r.forwarded,
        )?;
        o.counter(
            "meshd_routing_delivered",
            "Routed messages delivered to this node.",
            None,
            r.delivered,
        )?;
        o.counter("meshd_lookups", "Address lookups started.", None, r.lookups)?;
        o.counter(
            "meshd_lookup_requests",
            "Lookup requests sent.",
            None,
            r.lookup_requests,
        )?;
        o.counter(
            "meshd_control_messages_sent",
            "Routing control messages sent.",
            None,
            r.control_messages_sent,
        )?;
        o.counter(
            "meshd_control_sent",
            "Routing control bytes sent.",
            Some(Unit::Bytes),
            r.control_bytes_sent,
        )?;
        let dropped: Vec<(&str, u64)> = r.dropped.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        o.counters(
            "meshd_routing_dropped",
            "Routed messages dropped, by reason.",
            None,
            "reason",
            &dropped,
        )?;

        // End-to-end sessions: established, open now by path, drops.
        let e = &s.e2e;
        o.counter(
            "meshd_sessions_established",
            "End-to-end sessions established.",
            None,
            e.sessions_established,
        )?;
        let linked: std::collections::HashSet<&str> = snap
            .peers
            .iter()
            .filter(|p| p.state == "up")
            .filter_map(|p| p.public_key.as_deref())
            .collect();
        let mut open: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for st in ["up", "handshaking"] {
            for path in ["direct", "routed"] {
                open.insert((st, path), 0);
            }
        }
        for x in &snap.sessions {
            let st = if x.state == "up" { "up" } else { "handshaking" };
            let path = if linked.contains(x.public_key.as_str()) {
                "direct"
            } else {
                "routed"
            };
            *open.entry((st, path)).or_default() += 1;
        }
        let rows: Vec<_> = open
            .iter()
            .map(|((st, path), n)| (vec![("state", *st), ("path", *path)], *n))
            .collect();
        o.gauges(
            "meshd_sessions",
            "End-to-end sessions now, by state and path (direct: the remote is a linked peer; routed: through other nodes).",
            &rows,
        )?;
        o.counter(
            "meshd_session_received",
            "IPv6 bytes received on end-to-end sessions.",
            Some(Unit::Bytes),
            sums.session_rx_bytes,
        )?;
        o.counter(
            "meshd_session_sent",
            "IPv6 bytes sent on end-to-end sessions.",
            Some(Unit::Bytes),
            sums.session_tx_bytes,
        )?;
        o.counters(
            "meshd_session_dropped",
            "Packets or messages the end-to-end layer dropped, by reason.",
            None,
            "reason",
            &[
                ("decrypt_failed", e.decrypt_failed),
                ("handshake_failed", e.handshake_failed),
                ("malformed", e.malformed),
                ("not_for_us", e.not_for_us),
                ("queue_dropped", e.queue_dropped),
                ("rate_limited", e.rate_limited),
                ("replay", e.replay),
                ("spoofed_source", e.spoofed_source),
                ("unknown_session", e.unknown_session),
            ],
        )?;
        let l = &s.local;
        o.counters(
            "meshd_local_dropped",
            "Packets from this host's stack that were not sent, by reason.",
            None,
            "reason",
            &[
                ("bad_local_packet", l.bad_local_packet),
                ("multicast", l.multicast),
                ("no_path", l.no_path),
                ("outside_overlay", l.outside_overlay),
                ("too_big", l.too_big),
                ("unreachable", l.unreachable),
            ],
        )?;

        // The circle policy.
        let p = &s.policy.counters;
        o.counters(
            "meshd_policy_refused",
            "What the circle policy refused or closed, by what it was.",
            None,
            "what",
            &[
                ("link", p.links_refused),
                ("link_closed", p.links_closed),
                ("packet_in", p.dropped_in),
                ("packet_out", p.dropped_out),
                ("session", p.sessions_refused),
                ("session_closed", p.sessions_closed),
            ],
        )?;
        o.gauge(
            "meshd_policy_flows",
            "Flows the policy tracks for replies now.",
            None,
            g(p.flows),
        )?;
        o.counter(
            "meshd_policy_flows_full",
            "Flows not tracked because the table was full.",
            None,
            p.flows_full,
        )?;

        // NAT traversal, discovery, connections, names.
        let n = &s.nat;
        o.gauge(
            "meshd_nat_endpoints",
            "This node's endpoints as its peers report them.",
            None,
            g(n.endpoints.len()),
        )?;
        o.counter(
            "meshd_nat_endpoints_sent",
            "Endpoint reports sent to peers.",
            None,
            n.counters.endpoints_sent,
        )?;
        o.counter(
            "meshd_nat_endpoints_received",
            "Endpoint reports received from peers.",
            None,
            n.counters.endpoints_received,
        )?;
        o.counter(
            "meshd_nat_punches",
            "Hole-punching rounds started.",
            None,
            n.counters.punches,
        )?;
        o.counter(
            "meshd_stream_dropped",
            "Frames dropped because a TCP or QUIC connection's queue was full.",
            None,
            n.stream_dropped,
        )?;
        if let Some(d) = &s.discovery {
            let c = &d.counters;
            o.gauge(
                "meshd_discovery_interfaces",
                "Interfaces LAN discovery uses.",
                None,
                g(d.interfaces.len()),
            )?;
            o.counter(
                "meshd_discovery_sent",
                "LAN announcements sent.",
                None,
                c.sent,
            )?;
            o.counter(
                "meshd_discovery_accepted",
                "LAN announcements accepted.",
                None,
                c.accepted,
            )?;
            o.counter(
                "meshd_discovery_neighbours",
                "New LAN neighbours handed to the link layer.",
                None,
                c.new_neighbours,
            )?;
            o.counters(
                "meshd_discovery_dropped",
                "LAN announcements dropped or refused, by reason.",
                None,
                "reason",
                &[
                    ("bad_signature", c.bad_signature),
                    ("denied", c.denied),
                    ("malformed", c.malformed),
                    ("rate_limited", c.rate_limited),
                    ("stale", c.stale),
                    ("wrong_source", c.wrong_source),
                ],
            )?;
        }
        let k = &s.connections;
        o.counter(
            "meshd_connection_dials",
            "TCP and QUIC dials started.",
            None,
            k.dials,
        )?;
        o.counter(
            "meshd_connection_dial_failures",
            "TCP and QUIC dials that failed.",
            None,
            k.dial_failures,
        )?;
        o.counters(
            "meshd_connection_closed",
            "TCP and QUIC connections closed or refused, by reason.",
            None,
            "reason",
            &[
                ("crossing", k.crossing_closed),
                ("evicted", k.evicted),
                ("idle", k.idle_closed),
                ("per_address", k.refused_per_address),
                ("per_prefix", k.refused_per_prefix),
                ("replaced", k.replaced),
                ("total", k.refused_total),
                ("unauthenticated", k.unauthenticated_closed),
            ],
        )?;
        let m = &s.names;
        o.gauge(
            "meshd_names_stored",
            "Name records stored for other nodes.",
            None,
            g(m.stored),
        )?;
        o.gauge(
            "meshd_names_claimed",
            "Names this node claims.",
            None,
            g(m.claims),
        )?;
        o.counter(
            "meshd_name_lookups",
            "Name lookups started.",
            None,
            m.lookups,
        )?;
        o.counters(
            "meshd_names_dropped",
            "Name records refused or dropped, by reason.",
            None,
            "reason",
            &[
                ("bad_signature", m.bad_signature),
                ("expired", m.expired),
                ("full", m.full),
                ("old_sequence", m.old_sequence),
                ("taken", m.taken),
            ],
        )?;

        // Znets: one series set per znet (by name), at most MAX_ZNETS.
        o.gauge(
            "meshd_znets",
            "Znets this node is a member of.",
            None,
            g(snap.znets.len()),
        )?;
        let mut znets: Vec<_> = snap.znets.iter().collect();
        znets.sort_by(|a, b| a.name.cmp(&b.name));
        znets.truncate(MAX_ZNETS);
        let mt = ConstCounter::new(0u64).metric_type();
        let mut fam = o.0.encode_descriptor(
            "meshd_znet_packets",
            "Znet packets by znet and what happened to them.",
            None,
            mt,
        )?;
        for z in &znets {
            for (what, v) in z.counters.entries() {
                let labels = [("znet", z.name.as_str()), ("what", what)];
                ConstCounter::new(v).encode(fam.encode_family(&labels)?)?;
            }
        }
        let rows: Vec<_> = znets
            .iter()
            .map(|z| (vec![("znet", z.name.as_str())], g(z.attachments.len())))
            .collect();
        o.gauges(
            "meshd_znet_attachments",
            "Containers attached to each znet on this node.",
            &rows,
        )?;

        // The gateway, when this node is one.
        if let Some(gw) = snap.gateway.as_ref().filter(|g| g.enabled) {
            let c = &gw.counters;
            o.gauge(
                "meshd_gateway_connections_open",
                "Public connections open now.",
                None,
                g(gw.open),
            )?;
            o.gauge(
                "meshd_gateway_services",
                "Names published on this gateway.",
                None,
                g(gw.services.len()),
            )?;
            let connected = gw.services.iter().filter(|s| s.connected).count();
            o.gauge(
                "meshd_gateway_publishers_connected",
                "Published names whose publisher is connected.",
                None,
                g(connected),
            )?;
            o.counter(
                "meshd_gateway_received",
                "Bytes from public clients.",
                Some(Unit::Bytes),
                sums.gateway_in,
            )?;
            o.counter(
                "meshd_gateway_sent",
                "Bytes to public clients.",
                Some(Unit::Bytes),
                sums.gateway_out,
            )?;
            o.counter(
                "meshd_gateway_accepted",
                "Public connections accepted.",
                None,
                c.accepted,
            )?;
            o.counter(
                "meshd_gateway_publisher_connections",
                "Publisher connections accepted.",
                None,
                c.publishers,
            )?;
            o.counters(
                "meshd_gateway_refused",
                "Public or publisher connections refused or closed, by reason.",
                None,
                "reason",
                &[
                    ("garbage", c.garbage),
                    ("idle", c.idle_closed),
                    ("no_name", c.no_name),
                    ("over_client_limit", c.over_client_limit),
                    ("over_limit", c.over_limit),
                    ("over_service_limit", c.over_service_limit),
                    ("peek_timeout", c.peek_timeout),
                    ("publish_refused", c.publish_refused),
                    ("publisher_down", c.publisher_down),
                    ("unknown_name", c.unknown_name),
                ],
            )?;
        }
        Ok(())
    }
}
