//! Two nodes in one process, both in packet mode, linked over loopback: an ICMPv6 echo request
//! handed to A's `pl_node_send_packet` comes out of B's packet callback, and B's reply out of
//! A's. Also: events, status, peers, add and remove peer at runtime. No root needed.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use planetary_lan::*;
use std::ffi::CString;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(dir: &std::path::Path, peers: &[String]) -> String {
    serde_json::json!({
        "state_dir": dir,
        "listen": ["udp://127.0.0.1:0"],
        "peers": peers,
        "log_level": "debug",
        "tun": { "mtu": 1280 },
    })
    .to_string()
}

#[test]
fn two_nodes_in_one_process_exchange_packets() {
    let (ra, rb) = (Arc::new(Reports::default()), Arc::new(Reports::default()));
    let b = new_node(&config(&state_dir("b"), &[]), &rb).unwrap();
    start_packets(b, &rb).unwrap();
    let b_port = port(b);
    let a = new_node(
        &config(&state_dir("a"), &[format!("udp://127.0.0.1:{b_port}")]),
        &ra,
    )
    .unwrap();
    start_packets(a, &ra).unwrap();
    let (aa, ab) = (address(a), address(b));

    // Events: ready, then peer_up on both sides.
    for (r, other) in [(&ra, ab), (&rb, aa)] {
        assert!(
            r.wait_event(Duration::from_secs(5), |ev| {
                ev.iter()
                    .any(|e| e["event"] == "peer_up" && e["address"] == other.to_string())
            }),
            "no peer_up: {:?}",
            r.events.lock().unwrap()
        );
        assert_eq!(r.events.lock().unwrap()[0]["event"], "ready");
    }
    assert!(
        ra.logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("packet mode"))
    );

    // A → B: echo request; B's "stack" answers; B → A: echo reply.
    let payload = b"planetary packet mode";
    let started = Instant::now();
    let mut got_reply = false;
    for seq in 1..=20u16 {
        send(a, &echo(128, aa, ab, 7, seq, payload)).unwrap();
        if let Some(req) = rb.take_packet(Duration::from_millis(500), |p| {
            parse_echo(p).is_some_and(|e| e.0 == 128 && e.2 == seq)
        }) {
            let (_, id, s, src, dst) = parse_echo(&req).unwrap();
            assert_eq!((id, src, dst), (7, aa, ab));
            assert!(req.ends_with(payload));
            send(b, &echo(129, ab, aa, id, s, payload)).unwrap();
            let reply = ra.take_packet(Duration::from_secs(2), |p| {
                parse_echo(p).is_some_and(|e| e.0 == 129 && e.2 == seq)
            });
            let reply = reply.expect("B's reply never reached A's callback");
            assert_eq!(parse_echo(&reply).unwrap().3, ab);
            got_reply = true;
            break;
        }
    }
    assert!(got_reply, "no echo request reached B's callback");
    println!("first round trip after {:?}", started.elapsed());

    // Status and peers answer with the node's view.
    let st = status(a).unwrap();
    assert_eq!(st["self"]["address"], aa.to_string());
    assert_eq!(st["peers_up"], 1);
    let ps = peers(a).unwrap();
    assert_eq!(ps[0]["state"], "up");
    assert_eq!(ps[0]["address"], ab.to_string());

    // Remove the peer at runtime: the link goes down; add it back: up again.
    let uri = CString::new(format!("udp://127.0.0.1:{b_port}")).unwrap();
    // SAFETY: valid string.
    check(unsafe { pl_node_remove_peer(a, uri.as_ptr()) }).unwrap();
    assert!(ra.wait_event(Duration::from_secs(5), |ev| {
        ev.iter().any(|e| e["event"] == "peer_down")
    }));
    // SAFETY: valid string.
    check(unsafe { pl_node_add_peer(a, uri.as_ptr()) }).unwrap();
    assert!(ra.wait_event(Duration::from_secs(5), |ev| {
        ev.iter().filter(|e| e["event"] == "peer_up").count() == 2
    }));
    // Adding it twice is refused with the reason.
    // SAFETY: valid string.
    let e = check(unsafe { pl_node_add_peer(a, uri.as_ptr()) }).unwrap_err();
    assert_eq!(e.0, PlStatus::PlErrRefused);
    assert!(e.1.contains("already a peer"), "{}", e.1);

    // Stop: a `stopped` event with no error; the peer sees the link go down at once.
    check(pl_node_stop(a)).unwrap();
    assert!(ra.wait_event(Duration::from_secs(1), |ev| {
        ev.last()
            .is_some_and(|e| e["event"] == "stopped" && e["error"].is_null())
    }));
    assert!(rb.wait_event(Duration::from_secs(3), |ev| {
        ev.iter().any(|e| e["event"] == "peer_down")
    }));
    check(pl_node_free(a)).unwrap();
    check(pl_node_free(b)).unwrap();
}
