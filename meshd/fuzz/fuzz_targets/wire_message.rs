//! Any bytes as a link datagram (and as a direct message): parse must return a view or an error, never panic, and a
//! view's fields must lie inside the input.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshd::wire::{Message, parse, parse_direct};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = parse(data) {
        let inner = match m {
            Message::Init {
                noise, head, mac, ..
            } => {
                assert!(head.len() + mac.len() <= data.len());
                noise
            }
            Message::Cookie { echo, cookie, .. } => {
                assert!(8 + echo.len() + cookie.len() == data.len());
                cookie
            }
            Message::Response { noise, .. } => noise,
            Message::Final { noise, .. } => noise,
            Message::Transport { ciphertext, .. } => ciphertext,
            Message::Stale { .. } => &data[..0],
        };
        assert!(inner.len() < data.len());
    }
    if let Some((_, _, ciphertext)) = parse_direct(data) {
        assert_eq!(ciphertext.len() + meshd::wire::TRANSPORT_HEADER_LEN, data.len());
    }
});
