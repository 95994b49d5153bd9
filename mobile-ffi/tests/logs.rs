//! Each node logs to its own callback, also while other nodes (with and without a log
//! callback) start and stop on other threads at the same time: 20 rounds of 8 nodes, every
//! node with a callback must see its own shutdown line.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;
use planetary_lan::*;
use std::sync::Arc;

#[test]
fn every_node_logs_its_shutdown() {
    let mut missing = 0;
    for round in 0..20 {
        let quiet: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    let json = std::ffi::CString::new(serde_json::json!({"state_dir": state_dir(&format!("q{round}-{i}")), "listen": ["udp://127.0.0.1:0"]}).to_string()).unwrap();
                    let mut n = 0;
                    // SAFETY: a valid string and out pointer; no callbacks.
                    let s = unsafe { pl_node_new(json.as_ptr(), None, None, std::ptr::null_mut(), &mut n) };
                    check(s).unwrap();
                    let r = Arc::new(Reports::default());
                    start_packets(n, &r).unwrap();
                    check(pl_node_stop(n)).unwrap();
                    check(pl_node_free(n)).unwrap();
                })
            })
            .collect();
        let hs: Vec<_> = (0..4)
            .map(|i| {
                std::thread::spawn(move || {
                    let r = Arc::new(Reports::default());
                    let json = serde_json::json!({"state_dir": state_dir(&format!("ls{round}-{i}")), "listen": ["udp://127.0.0.1:0"]}).to_string();
                    let n = new_node(&json, &r).unwrap();
                    start_packets(n, &r).unwrap();
                    check(pl_node_stop(n)).unwrap();
                    check(pl_node_free(n)).unwrap();
                    let logs = r.logs.lock().unwrap().clone();
                    logs.iter().any(|l| l.contains("shutting down"))
                })
            })
            .collect();
        for q in quiet {
            q.join().unwrap();
        }
        for h in hs {
            if !h.join().unwrap() {
                missing += 1;
            }
        }
    }
    assert_eq!(missing, 0, "nodes that did not log their shutdown");
}
