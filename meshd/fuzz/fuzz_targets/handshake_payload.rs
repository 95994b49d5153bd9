//! Any bytes as the payload inside a handshake.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshd::wire::HandshakePayload;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = HandshakePayload::parse(data) {
        assert_eq!(HandshakePayload::parse(&p.emit()), Ok(p));
    }
});
