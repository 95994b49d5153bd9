//! A sequence of routing messages from a peer into a router that is part of a small live
//! network: whatever arrives, it must not panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use routing::testnet::Net;
use routing::{PeerId, RouterConfig};
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let mut net = Net::new(3, &[(0, 1), (1, 2)], RouterConfig::default(), 5);
    net.run_for(Duration::from_millis(300));
    // Input: [len_hi len_lo from bytes...]* delivered to node 1 as if from node `from % 2 * 2`.
    let mut rest = data;
    while rest.len() >= 3 {
        let len = (u16::from_be_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 3);
        let from = if rest[2] % 2 == 0 { 0 } else { 2 };
        let mut msg = rest[3..3 + len].to_vec();
        rest = &rest[3 + len..];
        let now = net.now;
        let _ = net.nodes[1].router.handle(now, PeerId(from), &mut msg);
        net.collect(1);
        net.run_for(Duration::from_millis(10));
    }
});
