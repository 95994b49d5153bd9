//! Human-readable output, built as text and printed by the caller.

use std::fmt::Write as _;

use api::{PeerAdded, PeerInfo, PeerRemoved, RouteInfo, SelfInfo, SessionInfo, Status, TreeInfo};

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn ago(secs: Option<u64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 120 => format!("{s}s"),
        Some(s) if s < 7200 => format!("{}m", s / 60),
        Some(s) => format!("{}h", s / 3600),
    }
}

/// Prints rows as aligned columns under a header.
fn print_table(o: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        let _ = writeln!(o, "{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

pub fn self_info(s: &SelfInfo) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "public key  {}", s.public_key);
    let _ = writeln!(o, "address     {}", s.address);
    let _ = writeln!(o, "subnet      {}", s.subnet);
    let _ = writeln!(o, "listen      {}", s.listen.join(", "));
    let _ = writeln!(o, "tun         {} (mtu {})", s.tun, s.mtu);
    let _ = writeln!(o, "version     {}", s.version);
    if let Some(k) = &s.key_name {
        let _ = writeln!(o, "key name    {k}");
    }
    for n in &s.names {
        let state = match (n.state.as_str(), n.storers, &n.taken_by) {
            ("held", Some(1), _) => "held (1 storing node)".into(),
            ("held", Some(c), _) => format!("held ({c} storing nodes)"),
            ("taken", _, Some(by)) => format!("taken by {by}"),
            (st, ..) => st.to_string(),
        };
        let _ = writeln!(o, "name        {} {state}", n.name);
    }
    o
}

pub fn peers(peers: &[PeerInfo]) -> String {
    let mut o = String::new();
    if peers.is_empty() {
        let _ = writeln!(
            o,
            "no peers (add one with `meshctl peer add udp://HOST:PORT`)"
        );
        return o;
    }
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            vec![
                p.public_key
                    .as_deref()
                    .map_or("?".into(), |k| format!("{}…", &k[..16.min(k.len())])),
                p.address.clone().unwrap_or_else(|| "-".into()),
                p.state.clone(),
                p.transport.clone().unwrap_or_else(|| "-".into()),
                p.origin.clone().unwrap_or_else(|| "-".into()),
                match p.paths.len() {
                    0 | 1 => p
                        .endpoint
                        .clone()
                        .or_else(|| p.uri.clone())
                        .unwrap_or_else(|| "-".into()),
                    // Several paths: the one in use (with its measured round trip) and how
                    // many others stand by (all of them in --json).
                    n => format!("{} (+{} more)", p.paths[0], n - 1),
                },
                bytes(p.rx_bytes),
                bytes(p.tx_bytes),
                ago(p.last_handshake_secs),
                p.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &mut o,
        &[
            "PUBLIC KEY",
            "ADDRESS",
            "STATE",
            "VIA",
            "ORIGIN",
            "ENDPOINT",
            "RX",
            "TX",
            "HANDSHAKE",
            "ERROR",
        ],
        &rows,
    );
    o
}

pub fn status(s: &Status) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "address     {}", s.node.address);
    let _ = writeln!(o, "public key  {}", s.node.public_key);
    let _ = writeln!(o, "uptime      {}", ago(Some(s.uptime_secs)));
    let _ = writeln!(
        o,
        "links       {} up, {} configured",
        s.peers_up, s.peers_configured
    );
    let c = &s.counters;
    let _ = writeln!(
        o,
        "datagrams   {} received, {} sent",
        c.rx_datagrams, c.tx_datagrams
    );
    let _ = writeln!(o, "handshakes  {} completed", c.handshakes_completed);
    let r = &s.routing;
    let _ = writeln!(
        o,
        "routing     depth {}, {} state entries ({} bytes), {} forwarded, {} lookups",
        r.depth, r.state_entries, r.state_bytes, r.forwarded, r.lookups,
    );
    if let Some(f) = &s.policy.file {
        let pc = &s.policy.counters;
        let _ = writeln!(
            o,
            "policy      {f}: {} links and {} sessions refused, {} packets dropped in, {} out",
            pc.links_refused, pc.sessions_refused, pc.dropped_in, pc.dropped_out
        );
        if s.policy.last_error.is_some() {
            let _ = writeln!(
                o,
                "            the last reload was REFUSED: see meshctl policy show"
            );
        }
    }
    if let Some(d) = &s.discovery {
        let dc = &d.counters;
        let _ = writeln!(
            o,
            "discovery   on {}: {} neighbours found, {} denied by policy, {} forged and {} \
             rate-limited announcements dropped",
            if d.interfaces.is_empty() {
                "no interface yet".to_string()
            } else {
                d.interfaces.join(", ")
            },
            dc.new_neighbours,
            dc.denied,
            dc.bad_signature,
            dc.rate_limited,
        );
    } else {
        let _ = writeln!(o, "discovery   off");
    }
    let _ = writeln!(
        o,
        "nat         public endpoints {}; {} direct paths tried",
        if s.nat.endpoints.is_empty() {
            "unknown".to_string()
        } else {
            s.nat.endpoints.join(", ")
        },
        s.nat.counters.punches,
    );
    let cc = &s.connections;
    let _ = writeln!(
        o,
        "connections {} dialed ({} failed); inbound: {} strangers closed to make room, {} \
         refused (full), {} closed unauthenticated",
        cc.dials,
        cc.dial_failures,
        cc.evicted,
        cc.refused_per_address + cc.refused_per_prefix + cc.refused_total,
        cc.unauthenticated_closed,
    );
    let nc = &s.names;
    let _ = writeln!(
        o,
        "names       {} claimed, {} stored for others, {} lookups; refused: {} taken, {} full; \
         dropped: {} bad signature, {} old sequence, {} expired",
        nc.claims,
        nc.stored,
        nc.lookups,
        nc.taken,
        nc.full,
        nc.bad_signature,
        nc.old_sequence,
        nc.expired,
    );
    let _ = writeln!(o, "dropped     {} from the network", s.dropped_from_network);
    for (k, v) in c.dropped.entries() {
        if v > 0 {
            let _ = writeln!(o, "  {:<18}{v}", k.replace('_', " "));
        }
    }
    o
}

pub fn added(a: &PeerAdded) -> String {
    format!(
        "added {}{}\n",
        a.added,
        if a.persistent {
            ""
        } else {
            " (until meshd restarts)"
        }
    )
}

pub fn removed(r: &PeerRemoved) -> String {
    let mut o = format!("removed {}\n", r.removed);
    if let Some(n) = &r.note {
        let _ = writeln!(o, "note: {n}");
    }
    o
}

fn short(k: &str) -> String {
    format!("{}…", &k[..16.min(k.len())])
}

fn coords(c: &[u64]) -> String {
    let parts: Vec<String> = c.iter().map(|p| p.to_string()).collect();
    format!("[{}]", parts.join(" "))
}

pub fn tree(t: &TreeInfo) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "root        {}{}",
        t.root_address,
        if t.is_root { " (this node)" } else { "" }
    );
    let _ = writeln!(o, "root key    {}", t.root);
    let _ = writeln!(
        o,
        "parent      {}",
        if t.is_root {
            "-".to_string()
        } else {
            short(&t.parent)
        }
    );
    let _ = writeln!(o, "coords      {}", coords(&t.coords));
    let _ = writeln!(o, "depth       {}", t.depth);
    let rows: Vec<Vec<String>> = t
        .peers
        .iter()
        .map(|p| {
            vec![
                short(&p.public_key),
                p.address.clone(),
                p.coords.as_deref().map_or("-".into(), coords),
                format!("{:.3} ms", p.rtt_us as f64 / 1000.0),
                if p.parent {
                    "parent".into()
                } else {
                    String::new()
                },
            ]
        })
        .collect();
    if !rows.is_empty() {
        let _ = writeln!(o);
        print_table(&mut o, &["PEER", "ADDRESS", "COORDS", "RTT", ""], &rows);
    }
    o
}

pub fn routes(r: &[RouteInfo]) -> String {
    let mut o = String::new();
    if r.is_empty() {
        let _ = writeln!(o, "no destinations looked up yet");
        return o;
    }
    let rows: Vec<Vec<String>> = r
        .iter()
        .map(|x| {
            vec![
                x.address.clone(),
                short(&x.public_key),
                coords(&x.coords),
                ago(Some(x.age_secs)),
            ]
        })
        .collect();
    print_table(&mut o, &["ADDRESS", "OWNER", "COORDS", "AGE"], &rows);
    o
}

pub fn sessions(s: &[SessionInfo]) -> String {
    let mut o = String::new();
    if s.is_empty() {
        let _ = writeln!(o, "no end-to-end sessions");
        return o;
    }
    let rows: Vec<Vec<String>> = s
        .iter()
        .map(|x| {
            vec![
                short(&x.public_key),
                x.address.clone(),
                x.state.clone(),
                ago(x.age_secs),
                x.rx_packets.to_string(),
                x.tx_packets.to_string(),
            ]
        })
        .collect();
    print_table(
        &mut o,
        &["PEER", "ADDRESS", "STATE", "AGE", "RX PKTS", "TX PKTS"],
        &rows,
    );
    o
}
