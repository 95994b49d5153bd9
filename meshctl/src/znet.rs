//! `meshctl znet …` output.

use api::{Attachment, ZnetInfo};
use std::fmt::Write as _;

pub fn list(z: &[ZnetInfo]) -> String {
    if z.is_empty() {
        return "no znets (create one with meshctl znet create NAME --ipv4 10.50.0.0/16)\n".into();
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<14} {:<18} {:<16} {:>8} {:>11}",
        "NAME", "ID", "IPV4", "MEMBERS", "CONTAINERS"
    );
    for x in z {
        let _ = writeln!(
            o,
            "{:<14} {:<18} {:<16} {:>8} {:>11}",
            x.name,
            x.id,
            x.ipv4,
            x.members.len(),
            x.attachments.len()
        );
    }
    o
}

pub fn show(x: &ZnetInfo) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "znet        {} (id {})", x.name, x.id);
    let _ = writeln!(
        o,
        "ranges      {}{}",
        x.ipv4,
        x.ipv6
            .as_deref()
            .map(|v| format!(", {v}"))
            .unwrap_or_default()
    );
    let _ = writeln!(o, "router      netns {}", x.router_netns);
    let egress = match x.egress.as_deref() {
        None => "none (containers reach only the znet)".to_string(),
        Some("local") => "local (each node NATs its own containers)".to_string(),
        Some(k) if x.exit => format!("through {}… (this node: the exit)", &k[..16.min(k.len())]),
        Some(k) => format!("through {}…", &k[..16.min(k.len())]),
    };
    let _ = writeln!(o, "egress      {egress}");
    let _ = writeln!(o, "members");
    for m in &x.members {
        let _ = writeln!(
            o,
            "  {} {:<16} {}{}",
            if m.this_node { "*" } else { " " },
            m.subnet_v4,
            &m.public_key[..16.min(m.public_key.len())],
            if m.this_node {
                "… (this node)"
            } else {
                "…"
            }
        );
    }
    let _ = writeln!(o, "containers");
    if x.attachments.is_empty() {
        let _ = writeln!(o, "  none (meshctl znet attach {} --netns NS)", x.name);
    }
    for a in &x.attachments {
        let _ = writeln!(o, "  {:<16} {:<24} {}", a.ipv4, a.netns, a.ifname);
    }
    let parts: Vec<String> = x
        .counters
        .entries()
        .iter()
        .map(|(k, v)| format!("{} {v}", k.replace('_', " ")))
        .collect();
    let _ = writeln!(o, "counters    {}", parts.join(", "));
    o
}

pub fn attached(a: &Attachment) -> String {
    format!(
        "{} is on znet {}: {}/32{} via {} ({}{}), gateway {}\n",
        a.netns,
        a.znet,
        a.ipv4,
        a.ipv6
            .as_deref()
            .map(|v| format!(" and {v}/128"))
            .unwrap_or_default(),
        a.ifname,
        a.range_v4,
        if a.default_route {
            ", and a default route: the znet has egress"
        } else {
            ""
        },
        a.gateway_v4
    )
}
