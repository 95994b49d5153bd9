//! The first bytes of a public connection to a gateway: any prefix must be decided or ask for
//! more, never panic, and a full buffer must be decided.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshd::gateway::peek::{MAX_PEEK, Peek, peek};

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(MAX_PEEK)];
    let r = peek(data);
    if data.len() == MAX_PEEK {
        assert_ne!(r, Peek::NeedMore);
    }
});
