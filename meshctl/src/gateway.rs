//! `meshctl publish`, `unpublish`, `services` and `gateway …` output.

use api::{GatewayStatus, ServiceInfo, Unpublished};
use std::fmt::Write as _;

fn short(key: &str) -> String {
    format!("{}…", &key[..16.min(key.len())])
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

pub fn published(s: &ServiceInfo) -> String {
    let mut o = format!(
        "publishing {} ({}) → {} port {} on znet {}\nmesh users: [{}]:{}\n",
        s.name, s.kind, s.netns, s.port, s.znet, s.service_address, s.port
    );
    for g in &s.gateways {
        let _ = writeln!(
            o,
            "gateway {}: {}{}",
            short(&g.key),
            g.state,
            g.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    o
}

pub fn unpublished(u: &Unpublished) -> String {
    let mut o = format!("unpublished {}\n", u.name);
    for g in &u.gateways {
        let _ = match &g.error {
            None => writeln!(o, "  {}: released", short(&g.gateway)),
            Some(e) => writeln!(o, "  {}: not released ({e})", short(&g.gateway)),
        };
    }
    o
}

pub fn services(list: &[ServiceInfo]) -> String {
    if list.is_empty() {
        return "no published services (meshctl publish ZNET NETNS:PORT --name NAME --gateway KEY)\n"
            .into();
    }
    let mut o = String::new();
    for s in list {
        let _ = writeln!(
            o,
            "{} ({})  {}:{} on znet {} ({})",
            s.name,
            s.kind,
            s.netns,
            s.port,
            s.znet,
            s.target.as_deref().unwrap_or("not attached")
        );
        let _ = writeln!(o, "  mesh users   [{}]:{}", s.service_address, s.port);
        let _ = writeln!(
            o,
            "  connections  {} open, {} carried, {} failed; {} in, {} out",
            s.open,
            s.total,
            s.failed,
            bytes(s.bytes_in),
            bytes(s.bytes_out)
        );
        for g in &s.gateways {
            let _ = writeln!(
                o,
                "  gateway {} {} for {} s{}",
                short(&g.key),
                g.state,
                g.since,
                g.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
        }
    }
    o
}

pub fn status(g: &GatewayStatus) -> String {
    if !g.enabled {
        return "this node is not a gateway (add a [gateway] section to meshd.toml)\n".into();
    }
    let mut o = String::new();
    let _ = writeln!(o, "listen      {}", g.listen.join(", "));
    let _ = writeln!(o, "publishers  overlay port {}", g.mesh_port);
    let _ = writeln!(o, "open        {} public connections", g.open);
    if g.services.is_empty() {
        let _ = writeln!(o, "names       none published");
    } else {
        let _ = writeln!(
            o,
            "{:<28} {:<5} {:<18} {:<9} {:>6} {:>8} {:>10} {:>10}",
            "NAME", "KIND", "PUBLISHER", "CONNECTED", "OPEN", "TOTAL", "IN", "OUT"
        );
        for s in &g.services {
            let _ = writeln!(
                o,
                "{:<28} {:<5} {:<18} {:<9} {:>6} {:>8} {:>10} {:>10}",
                s.name,
                s.kind,
                short(&s.publisher),
                if s.connected { "yes" } else { "no" },
                s.open,
                s.total,
                bytes(s.bytes_in),
                bytes(s.bytes_out)
            );
        }
    }
    let c = &g.counters;
    let _ = writeln!(
        o,
        "accepted {}; refused: over_limit {}, over_client_limit {}, over_service_limit {}; \
         closed: garbage {}, no_name {}, unknown_name {}, peek_timeout {}, publisher_down {}, \
         idle {}; publishers {} (refused {})",
        c.accepted,
        c.over_limit,
        c.over_client_limit,
        c.over_service_limit,
        c.garbage,
        c.no_name,
        c.unknown_name,
        c.peek_timeout,
        c.publisher_down,
        c.idle_closed,
        c.publishers,
        c.publish_refused
    );
    o
}
