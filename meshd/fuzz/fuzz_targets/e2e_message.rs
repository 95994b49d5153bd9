//! Any bytes as an end-to-end message (the payload of routed traffic).
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshd::e2e::wire::{Msg, parse};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = parse(data) {
        let inner = match m {
            Msg::Init { noise, .. } | Msg::Resp { noise, .. } => noise,
            Msg::Data { ciphertext, .. } => ciphertext,
            Msg::Stale { .. } => &data[..0],
        };
        assert!(inner.len() < data.len());
    }
});
