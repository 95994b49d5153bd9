//! Any string as a peer URI (from a config file, the environment or meshctl).
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshd::uri::PeerUri;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(u) = s.parse::<PeerUri>() {
            // What we print, we parse back to the same thing.
            assert_eq!(u.to_string().parse::<PeerUri>().ok(), Some(u));
        }
    }
});
