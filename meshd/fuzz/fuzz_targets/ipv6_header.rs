//! Any bytes as a decrypted IPv6 packet.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshd::packet::Ipv6Header;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Ipv6Header::parse(data) {
        assert!(h.total_len <= data.len());
    }
});
