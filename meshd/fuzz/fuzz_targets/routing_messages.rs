//! Any bytes as a routing message from a peer: peer messages, routed headers and bodies.
#![no_main]
use libfuzzer_sys::fuzz_target;
use routing::wire::{PeerMsg, RoutedBody, RoutedHeader, is_routed};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = PeerMsg::decode(data) {
        // What decodes re-encodes to the same bytes.
        assert_eq!(m.encode(), data);
    }
    if let Some(&t) = data.first()
        && is_routed(t)
        && let Ok(h) = RoutedHeader::decode(data)
    {
        assert!(h.body_at <= data.len());
        let _ = RoutedBody::decode(h.kind, &data[h.body_at..]);
    }
});
