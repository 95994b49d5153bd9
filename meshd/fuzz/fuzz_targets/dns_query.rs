//! Any bytes as a query to the DNS responder (UDP and TCP, with and without an upstream), and
//! the answers it makes once a lookup finished.
#![no_main]
use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;
use meshd::dns::message::{self, MAX_UDP_ANSWER, NameAnswer, Step, Transport, Zone};

fn check(query: &[u8], reply: &[u8], transport: Transport) {
    // Every reply is a DNS message, with the query's id, that fits the transport.
    let m = Message::from_vec(reply).expect("the responder answers valid DNS");
    if query.len() >= 2 {
        assert_eq!(m.metadata.id.to_be_bytes(), [query[0], query[1]]);
    }
    if transport == Transport::Udp {
        assert!(
            reply.len() <= usize::from(MAX_UDP_ANSWER),
            "{} bytes",
            reply.len()
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let found = NameAnswer {
        key: [7; 32],
        addr: std::net::Ipv6Addr::new(0x600, 1, 2, 3, 4, 5, 6, 7),
    };
    for forward in [false, true] {
        let Ok(zone) = Zone::new("mesh.example", forward) else {
            return;
        };
        for t in [Transport::Udp, Transport::Tcp] {
            match zone.handle(data, t) {
                Step::Reply(r) => check(data, &r, t),
                Step::Lookup(q) => {
                    check(data, &message::answer(&q, Some(&found)), t);
                    check(data, &message::answer(&q, None), t);
                    check(data, &message::fail(&q), t);
                }
                Step::Forward => {
                    assert!(forward, "forwarded without an upstream");
                    if let Some(r) = message::servfail(data, t) {
                        check(data, &r, t);
                    }
                }
                Step::Drop => {}
            }
        }
    }
});
