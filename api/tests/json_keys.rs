//! Pins the JSON keys of everything `meshctl --json` prints (and the mobile library's JSON
//! calls return): scripts read these keys, so a rename or removal must fail here first.
//!
//! The lists were taken from `main` before the `api` crate existed, by serialising meshd's
//! own structs; they are literal on purpose. Keys of nested objects are listed as `a.b`, of
//! list elements as `a[].b` (a top-level list as `[].b`). Adding a field means adding its key
//! here; changing or removing one breaks scripts.

use api::*;
use serde::Serialize;
use serde_json::Value;

fn paths(v: &Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.push(p.clone());
                paths(x, &p, out);
            }
        }
        Value::Array(a) => {
            if let Some(x) = a.first() {
                paths(x, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

fn keys(v: &impl Serialize) -> Vec<String> {
    let mut out = Vec::new();
    paths(&serde_json::to_value(v).unwrap_or_default(), "", &mut out);
    out.sort();
    out
}

fn pin(what: &str, v: &impl Serialize, expected: &[&str]) {
    assert_eq!(keys(v), expected, "the JSON keys of `{what}` moved");
}

fn s() -> String {
    "x".into()
}

fn self_info() -> SelfInfo {
    SelfInfo {
        public_key: s(),
        address: s(),
        subnet: s(),
        listen: vec![s()],
        tun: s(),
        mtu: 1280,
        version: s(),
        key_name: Some(s()),
        names: vec![name_info()],
    }
}

fn name_info() -> NameInfo {
    NameInfo {
        name: s(),
        state: s(),
        storers: Some(1),
        taken_by: Some(s()),
        addr: Some(s()),
        delegated_by: Some(s()),
    }
}

fn peer() -> PeerInfo {
    PeerInfo {
        public_key: Some(s()),
        address: None,
        state: s(),
        uri: None,
        endpoint: None,
        rx_bytes: 0,
        tx_bytes: 0,
        rx_packets: 0,
        tx_packets: 0,
        up_secs: None,
        last_handshake_secs: None,
        cipher: None,
        last_error: None,
        origin: None,
        transport: None,
        paths: vec![s()],
    }
}

fn policy() -> PolicyInfo {
    PolicyInfo {
        file: None,
        loaded_unix: None,
        circles: 0,
        rules: 0,
        tests: 0,
        defaults: vec![(s(), s())],
        reloads: 0,
        reload_failures: 0,
        last_error: None,
        counters: PolicyCounters::default(),
    }
}

fn status() -> Status {
    Status {
        node: self_info(),
        uptime_secs: 0,
        peers_up: 0,
        peers_configured: 0,
        dropped_from_network: 0,
        counters: LinkCounters::default(),
        routing: RoutingInfo::default(),
        e2e: E2eCounters::default(),
        local: NodeCounters::default(),
        policy: policy(),
        discovery: Some(DiscoveryInfo {
            interfaces: vec![s()],
            counters: LanCounters::default(),
        }),
        nat: NatInfo {
            endpoints: vec![s()],
            ..NatInfo::default()
        },
        connections: ConnectionCounters::default(),
        names: NameCounters::default(),
    }
}

fn tree() -> TreeInfo {
    TreeInfo {
        root: s(),
        root_address: s(),
        is_root: false,
        parent: s(),
        coords: vec![1],
        depth: 1,
        peers: vec![TreePeer {
            public_key: s(),
            address: s(),
            coords: None,
            rtt_us: 0,
            parent: true,
        }],
    }
}

fn session() -> SessionInfo {
    SessionInfo {
        public_key: s(),
        address: s(),
        state: s(),
        age_secs: None,
        initiator: None,
        rx_packets: 0,
        tx_packets: 0,
        rx_bytes: 0,
        tx_bytes: 0,
        queued: 0,
    }
}

fn explain() -> ExplainRow {
    ExplainRow {
        action: s(),
        packet: None,
        verdict: s(),
        rule_line: None,
        reason: s(),
        circles: vec![],
    }
}

fn circle() -> CircleInfo {
    CircleInfo {
        name: s(),
        line: 1,
        members: vec![],
        resolved: vec![],
    }
}

fn attachment(ns_inode: Option<u64>, mac: Option<String>) -> Attachment {
    Attachment {
        znet: s(),
        netns: s(),
        ifname: s(),
        ipv4: s(),
        ipv6: None,
        gateway_v4: s(),
        gateway_v6: None,
        range_v4: s(),
        range_v6: None,
        container_id: None,
        default_route: mac.is_some(),
        ns_inode,
        mac,
    }
}

fn znet() -> ZnetInfo {
    ZnetInfo {
        name: s(),
        id: s(),
        ipv4: s(),
        ipv6: None,
        router_netns: s(),
        members: vec![ZnetMemberInfo {
            public_key: s(),
            subnet_v4: s(),
            subnet_v6: None,
            this_node: true,
        }],
        attachments: vec![attachment(None, None)],
        counters: ZnetCounters::default(),
        egress: Some(s()),
        exit: true,
    }
}

#[test]
fn json_keys_are_pinned() {
    pin(
        "self",
        &self_info(),
        &[
            "address",
            "key_name",
            "listen",
            "mtu",
            "names",
            "names[].addr",
            "names[].delegated_by",
            "names[].name",
            "names[].state",
            "names[].storers",
            "names[].taken_by",
            "public_key",
            "subnet",
            "tun",
            "version",
        ],
    );
    pin(
        "peers",
        &vec![peer()],
        &[
            "[].address",
            "[].cipher",
            "[].endpoint",
            "[].last_error",
            "[].last_handshake_secs",
            "[].origin",
            "[].paths",
            "[].public_key",
            "[].rx_bytes",
            "[].rx_packets",
            "[].state",
            "[].transport",
            "[].tx_bytes",
            "[].tx_packets",
            "[].up_secs",
            "[].uri",
        ],
    );
    pin(
        "status",
        &status(),
        &[
            "connections",
            "connections.crossing_closed",
            "connections.dial_failures",
            "connections.dials",
            "connections.evicted",
            "connections.idle_closed",
            "connections.refused_per_address",
            "connections.refused_per_prefix",
            "connections.refused_total",
            "connections.replaced",
            "connections.stale_frames",
            "connections.unauthenticated_closed",
            "connections.validations_asked",
            "counters",
            "counters.dropped",
            "counters.dropped.bad_frame",
            "counters.dropped.decrypt_failed",
            "counters.dropped.handshake_failed",
            "counters.dropped.malformed",
            "counters.dropped.no_link",
            "counters.dropped.rate_limited",
            "counters.dropped.refused",
            "counters.dropped.replay",
            "counters.dropped.unknown_session",
            "counters.handshakes_completed",
            "counters.policy_refused",
            "counters.rx_datagrams",
            "counters.tx_datagrams",
            "discovery",
            "discovery.counters",
            "discovery.counters.accepted",
            "discovery.counters.bad_signature",
            "discovery.counters.denied",
            "discovery.counters.malformed",
            "discovery.counters.new_neighbours",
            "discovery.counters.rate_limited",
            "discovery.counters.sent",
            "discovery.counters.stale",
            "discovery.counters.wrong_source",
            "discovery.interfaces",
            "dropped_from_network",
            "e2e",
            "e2e.decrypt_failed",
            "e2e.handshake_failed",
            "e2e.malformed",
            "e2e.not_for_us",
            "e2e.queue_dropped",
            "e2e.rate_limited",
            "e2e.replay",
            "e2e.sessions_established",
            "e2e.spoofed_source",
            "e2e.unknown_session",
            "local",
            "local.bad_local_packet",
            "local.multicast",
            "local.no_path",
            "local.outside_overlay",
            "local.too_big",
            "local.unreachable",
            "names",
            "names.bad_signature",
            "names.claims",
            "names.expired",
            "names.full",
            "names.lookups",
            "names.old_sequence",
            "names.stored",
            "names.taken",
            "nat",
            "nat.counters",
            "nat.counters.endpoints_received",
            "nat.counters.endpoints_sent",
            "nat.counters.punches",
            "nat.endpoints",
            "nat.stream_dropped",
            "peers_configured",
            "peers_up",
            "policy",
            "policy.circles",
            "policy.counters",
            "policy.counters.dropped_in",
            "policy.counters.dropped_out",
            "policy.counters.flows",
            "policy.counters.flows_full",
            "policy.counters.links_closed",
            "policy.counters.links_refused",
            "policy.counters.sessions_closed",
            "policy.counters.sessions_refused",
            "policy.defaults",
            "policy.file",
            "policy.last_error",
            "policy.loaded_unix",
            "policy.reload_failures",
            "policy.reloads",
            "policy.rules",
            "policy.tests",
            "routing",
            "routing.control_bytes_sent",
            "routing.control_messages_sent",
            "routing.delivered",
            "routing.depth",
            "routing.dropped",
            "routing.forwarded",
            "routing.lookup_requests",
            "routing.lookups",
            "routing.root",
            "routing.state_bytes",
            "routing.state_entries",
            "self",
            "self.address",
            "self.key_name",
            "self.listen",
            "self.mtu",
            "self.names",
            "self.names[].addr",
            "self.names[].delegated_by",
            "self.names[].name",
            "self.names[].state",
            "self.names[].storers",
            "self.names[].taken_by",
            "self.public_key",
            "self.subnet",
            "self.tun",
            "self.version",
            "uptime_secs",
        ],
    );
    pin(
        "policy_show",
        &policy(),
        &[
            "circles",
            "counters",
            "counters.dropped_in",
            "counters.dropped_out",
            "counters.flows",
            "counters.flows_full",
            "counters.links_closed",
            "counters.links_refused",
            "counters.sessions_closed",
            "counters.sessions_refused",
            "defaults",
            "file",
            "last_error",
            "loaded_unix",
            "reload_failures",
            "reloads",
            "rules",
            "tests",
        ],
    );
    pin(
        "peer_add",
        &PeerAdded {
            added: s(),
            persistent: true,
        },
        &["added", "persistent"],
    );
    pin(
        "peer_remove",
        &PeerRemoved {
            removed: s(),
            note: None,
        },
        &["note", "removed"],
    );
    pin(
        "tree",
        &tree(),
        &[
            "coords",
            "depth",
            "is_root",
            "parent",
            "peers",
            "peers[].address",
            "peers[].coords",
            "peers[].parent",
            "peers[].public_key",
            "peers[].rtt_us",
            "root",
            "root_address",
        ],
    );
    pin(
        "routes",
        &vec![RouteInfo {
            address: s(),
            public_key: s(),
            coords: vec![1],
            age_secs: 0,
        }],
        &["[].address", "[].age_secs", "[].coords", "[].public_key"],
    );
    pin(
        "sessions",
        &vec![session()],
        &[
            "[].address",
            "[].age_secs",
            "[].initiator",
            "[].public_key",
            "[].queued",
            "[].rx_bytes",
            "[].rx_packets",
            "[].state",
            "[].tx_bytes",
            "[].tx_packets",
        ],
    );
    pin(
        "ping_reply",
        &vec![PingOutcome::Reply {
            hops: 1,
            rtt_us: 2,
            direct: None,
        }],
        &[
            "[].Reply",
            "[].Reply.direct",
            "[].Reply.hops",
            "[].Reply.rtt_us",
        ],
    );
    pin("ping_unreachable", &PingOutcome::Unreachable, &[]);
    pin("ping_timeout", &PingOutcome::Timeout, &[]);
    pin(
        "policy_explain",
        &vec![explain()],
        &[
            "[].action",
            "[].circles",
            "[].packet",
            "[].reason",
            "[].rule_line",
            "[].verdict",
        ],
    );
    pin(
        "circle_list",
        &vec![circle()],
        &["[].line", "[].members", "[].name", "[].resolved"],
    );
    pin(
        "circle_edit_changed",
        &CircleEdited {
            done: s(),
            policy: Some(policy()),
        },
        &[
            "done",
            "policy",
            "policy.circles",
            "policy.counters",
            "policy.counters.dropped_in",
            "policy.counters.dropped_out",
            "policy.counters.flows",
            "policy.counters.flows_full",
            "policy.counters.links_closed",
            "policy.counters.links_refused",
            "policy.counters.sessions_closed",
            "policy.counters.sessions_refused",
            "policy.defaults",
            "policy.file",
            "policy.last_error",
            "policy.loaded_unix",
            "policy.reload_failures",
            "policy.reloads",
            "policy.rules",
            "policy.tests",
        ],
    );
    pin(
        "circle_edit_unchanged",
        &CircleEdited {
            done: s(),
            policy: None,
        },
        &["done"],
    );
    pin(
        "znet_attach",
        &attachment(None, None),
        &[
            "container_id",
            "gateway_v4",
            "gateway_v6",
            "ifname",
            "ipv4",
            "ipv6",
            "netns",
            "range_v4",
            "range_v6",
            "znet",
        ],
    );
    pin(
        "znet_attach_inode",
        &attachment(Some(7), Some(s())),
        &[
            "container_id",
            "default_route",
            "gateway_v4",
            "gateway_v6",
            "ifname",
            "ipv4",
            "ipv6",
            "mac",
            "netns",
            "ns_inode",
            "range_v4",
            "range_v6",
            "znet",
        ],
    );
    pin(
        "znet_show",
        &znet(),
        &[
            "attachments",
            "attachments[].container_id",
            "attachments[].gateway_v4",
            "attachments[].gateway_v6",
            "attachments[].ifname",
            "attachments[].ipv4",
            "attachments[].ipv6",
            "attachments[].netns",
            "attachments[].range_v4",
            "attachments[].range_v6",
            "attachments[].znet",
            "counters",
            "counters.bad_source",
            "counters.delivered",
            "counters.exit_back",
            "counters.exit_out",
            "counters.no_egress",
            "counters.no_member",
            "counters.not_exit",
            "counters.not_for_us",
            "counters.not_member",
            "counters.sent",
            "counters.spoofed",
            "counters.too_big",
            "egress",
            "exit",
            "id",
            "ipv4",
            "ipv6",
            "members",
            "members[].public_key",
            "members[].subnet_v4",
            "members[].subnet_v6",
            "members[].this_node",
            "name",
            "router_netns",
        ],
    );
    pin(
        "znet_create",
        &ZnetCreated {
            manifest: s(),
            znet: znet(),
        },
        &[
            "manifest",
            "znet",
            "znet.attachments",
            "znet.attachments[].container_id",
            "znet.attachments[].gateway_v4",
            "znet.attachments[].gateway_v6",
            "znet.attachments[].ifname",
            "znet.attachments[].ipv4",
            "znet.attachments[].ipv6",
            "znet.attachments[].netns",
            "znet.attachments[].range_v4",
            "znet.attachments[].range_v6",
            "znet.attachments[].znet",
            "znet.counters",
            "znet.counters.bad_source",
            "znet.counters.delivered",
            "znet.counters.exit_back",
            "znet.counters.exit_out",
            "znet.counters.no_egress",
            "znet.counters.no_member",
            "znet.counters.not_exit",
            "znet.counters.not_for_us",
            "znet.counters.not_member",
            "znet.counters.sent",
            "znet.counters.spoofed",
            "znet.counters.too_big",
            "znet.egress",
            "znet.exit",
            "znet.id",
            "znet.ipv4",
            "znet.ipv6",
            "znet.members",
            "znet.members[].public_key",
            "znet.members[].subnet_v4",
            "znet.members[].subnet_v6",
            "znet.members[].this_node",
            "znet.name",
            "znet.router_netns",
        ],
    );
    pin("znet_leave", &ZnetLeft { left: s() }, &["left"]);
    pin(
        "policy_check",
        &PolicyCheck {
            valid: true,
            report: s(),
        },
        &["report", "valid"],
    );
    pin(
        "verify",
        &Verification {
            address: s(),
            public_key: s(),
            belongs: true,
            node_address: s(),
            subnet: s(),
        },
        &["address", "belongs", "node_address", "public_key", "subnet"],
    );
}

/// The counters meshctl lists by name list every field, under its JSON key.
#[test]
fn counter_entries_match_their_keys() {
    fn names<const N: usize>(e: [(&'static str, u64); N]) -> Vec<String> {
        e.iter().map(|(k, _)| k.to_string()).collect()
    }
    assert_eq!(
        names(DropCounters::default().entries()),
        keys(&DropCounters::default())
    );
    assert_eq!(
        names(PolicyCounters::default().entries()),
        keys(&PolicyCounters::default())
    );
    assert_eq!(
        names(ZnetCounters::default().entries()),
        keys(&ZnetCounters::default())
    );
    // And each entry reads its own field.
    let d = DropCounters {
        no_link: 5,
        ..Default::default()
    };
    assert!(d.entries().contains(&("no_link", 5)));
    let p = PolicyCounters {
        flows: 3,
        dropped_out: 4,
        ..Default::default()
    };
    assert!(p.entries().contains(&("flows", 3)) && p.entries().contains(&("dropped_out", 4)));
    let z = ZnetCounters {
        spoofed: 6,
        ..Default::default()
    };
    assert!(z.entries().contains(&("spoofed", 6)));
}

/// Every reply reads back as the struct it was made from.
#[test]
fn replies_round_trip() {
    let st = status();
    assert_eq!(Reply::ok(&st).decode::<Status>(), Ok(st));
    let z = znet();
    assert_eq!(Reply::ok(&z).decode::<ZnetInfo>(), Ok(z));
    let off = Status {
        discovery: None,
        ..status()
    };
    let v = serde_json::to_value(&off).unwrap_or_default();
    assert!(v["discovery"].is_null(), "discovery off is null: {v}");
}

/// The gateway's structs (issue 17): `meshctl services --json` and `gateway status --json`.
#[test]
fn gateway_keys() {
    let svc = ServiceInfo {
        name: s(),
        kind: s(),
        znet: s(),
        netns: s(),
        port: 443,
        target: Some(s()),
        service_address: s(),
        max_connections: 1,
        idle_timeout: 1,
        gateways: vec![ServiceGateway {
            key: s(),
            state: s(),
            error: Some(s()),
            since: 1,
        }],
        open: 1,
        total: 1,
        failed: 1,
        bytes_in: 1,
        bytes_out: 1,
    };
    pin(
        "ServiceInfo",
        &svc,
        &[
            "bytes_in",
            "bytes_out",
            "failed",
            "gateways",
            "gateways[].error",
            "gateways[].key",
            "gateways[].since",
            "gateways[].state",
            "idle_timeout",
            "kind",
            "max_connections",
            "name",
            "netns",
            "open",
            "port",
            "service_address",
            "target",
            "total",
            "znet",
        ],
    );
    let st = GatewayStatus {
        enabled: true,
        listen: vec![s()],
        mesh_port: 7443,
        open: 1,
        services: vec![GatewayService {
            name: s(),
            kind: s(),
            publisher: s(),
            connected: true,
            open: 1,
            total: 1,
            bytes_in: 1,
            bytes_out: 1,
        }],
        counters: GatewayCounters::default(),
    };
    pin(
        "GatewayStatus",
        &st,
        &[
            "counters",
            "counters.accepted",
            "counters.garbage",
            "counters.idle_closed",
            "counters.no_name",
            "counters.over_client_limit",
            "counters.over_limit",
            "counters.over_service_limit",
            "counters.peek_timeout",
            "counters.publish_refused",
            "counters.publisher_down",
            "counters.publishers",
            "counters.unknown_name",
            "enabled",
            "listen",
            "mesh_port",
            "open",
            "services",
            "services[].bytes_in",
            "services[].bytes_out",
            "services[].connected",
            "services[].kind",
            "services[].name",
            "services[].open",
            "services[].publisher",
            "services[].total",
        ],
    );
    let u = Unpublished {
        name: s(),
        gateways: vec![Released {
            gateway: s(),
            released: true,
            error: None,
        }],
    };
    pin(
        "Unpublished",
        &u,
        &[
            "gateways",
            "gateways[].error",
            "gateways[].gateway",
            "gateways[].released",
            "name",
        ],
    );
    pin(
        "NameReleased",
        &NameReleased {
            name: s(),
            was_held_by: s(),
        },
        &["name", "was_held_by"],
    );
    // The publish request travels as one flat object tagged by cmd.
    let p = Request::Publish(Publish {
        znet: s(),
        netns: s(),
        port: 443,
        name: s(),
        kind: "tls".into(),
        gateways: vec![s()],
        max_connections: None,
        idle_timeout: Some(30),
    });
    let line = serde_json::to_string(&p).unwrap_or_default();
    assert!(line.starts_with("{\"cmd\":\"publish\""), "{line}");
    assert_eq!(serde_json::from_str::<Request>(&line).ok(), Some(p));
    let short =
        r#"{"cmd":"publish","znet":"z","netns":"n","port":80,"name":"a.b","gateways":["k"]}"#;
    assert!(
        matches!(serde_json::from_str::<Request>(short), Ok(Request::Publish(p)) if p.kind == "tls")
    );
}

#[test]
fn a_status_from_a_daemon_without_connection_counters_still_reads() {
    let mut v = serde_json::to_value(status()).unwrap_or_default();
    if let Value::Object(m) = &mut v {
        m.remove("connections");
    }
    let back: Status = serde_json::from_value(v).expect("older status");
    assert_eq!(back.connections, ConnectionCounters::default());
}

/// The names structs (issue 19): `meshctl name … --json`.
#[test]
fn name_keys() {
    pin(
        "name_list",
        &vec![name_info()],
        &[
            "[].addr",
            "[].delegated_by",
            "[].name",
            "[].state",
            "[].storers",
            "[].taken_by",
        ],
    );
    let r = NameResolution {
        name: s(),
        found: true,
        public_key: Some(s()),
        address: Some(s()),
        source: Some(s()),
        authority: None,
        expires: Some(1),
    };
    pin(
        "name_resolve",
        &r,
        &[
            "address",
            "authority",
            "expires",
            "found",
            "name",
            "public_key",
            "source",
        ],
    );
    let d = NameDelegation {
        name: s(),
        public_key: s(),
        authority: s(),
        expires: 1,
        token: s(),
    };
    pin(
        "name_delegate",
        &d,
        &["authority", "expires", "name", "public_key", "token"],
    );
    let p = NamePublished {
        name: s(),
        public_key: s(),
        seq: 1,
        expires: 1,
    };
    pin(
        "name_publish",
        &p,
        &["expires", "name", "public_key", "seq"],
    );
    pin(
        "name_release",
        &NameReleasedInfo { released: s() },
        &["released"],
    );
    // A status from a daemon before names reads with zero counters.
    let mut v = serde_json::to_value(status()).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("names");
    }
    let old: Status = serde_json::from_value(v).unwrap_or_else(|_| status());
    assert_eq!(old.names, NameCounters::default());
}
