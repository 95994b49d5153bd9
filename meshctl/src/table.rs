//! Human-readable output.

use meshd::admin::{PeerInfo, SelfInfo, Status};

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
fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}", w = *w))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

pub fn self_info(s: &SelfInfo) {
    println!("public key  {}", s.public_key);
    println!("address     {}", s.address);
    println!("subnet      {}", s.subnet);
    println!("listen      {}", s.listen.join(", "));
    println!("tun         {} (mtu {})", s.tun, s.mtu);
    println!("version     {}", s.version);
}

pub fn peers(peers: &[PeerInfo]) {
    if peers.is_empty() {
        println!("no peers (add one with `meshctl peer add udp://HOST:PORT`)");
        return;
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
                p.endpoint
                    .clone()
                    .or_else(|| p.uri.clone())
                    .unwrap_or_else(|| "-".into()),
                bytes(p.rx_bytes),
                bytes(p.tx_bytes),
                ago(p.last_handshake_secs),
                p.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(
        &[
            "PUBLIC KEY",
            "ADDRESS",
            "STATE",
            "ENDPOINT",
            "RX",
            "TX",
            "HANDSHAKE",
            "ERROR",
        ],
        &rows,
    );
}

pub fn status(s: &Status) {
    println!("address     {}", s.node.address);
    println!("public key  {}", s.node.public_key);
    println!("uptime      {}", ago(Some(s.uptime_secs)));
    println!(
        "links       {} up, {} configured",
        s.peers_up, s.peers_configured
    );
    let c = &s.counters;
    let n = |k: &str| c.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
    println!(
        "datagrams   {} received, {} sent",
        n("rx_datagrams"),
        n("tx_datagrams")
    );
    println!("handshakes  {} completed", n("handshakes_completed"));
    println!("dropped     {} from the network", s.dropped_from_network);
    if let Some(d) = c.get("dropped").and_then(|d| d.as_object()) {
        for (k, v) in d {
            let v = v.as_u64().unwrap_or(0);
            if v > 0 {
                println!("  {:<18}{v}", k.replace('_', " "));
            }
        }
    }
}

pub fn done(data: &serde_json::Value) {
    if let Some(u) = data.get("added").and_then(|v| v.as_str()) {
        let persistent = data
            .get("persistent")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        println!(
            "added {u}{}",
            if persistent {
                ""
            } else {
                " (until meshd restarts)"
            }
        );
    }
    if let Some(u) = data.get("removed").and_then(|v| v.as_str()) {
        println!("removed {u}");
    }
    if let Some(n) = data.get("note").and_then(|v| v.as_str()) {
        println!("note: {n}");
    }
}
