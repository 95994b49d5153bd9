//! Any line on the admin socket.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshd::admin::Request;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<Request>(data);
});
