//! Any bytes as an ENDPOINTS message (NAT traversal, inside an end-to-end session): no panic,
//! at most four endpoints, and what parses re-encodes to something that parses the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshd::nat::{MAX_ENDPOINTS, endpoints_message, get_addr, parse_endpoints};

fuzz_target!(|data: &[u8]| {
    if let Some(eps) = parse_endpoints(data) {
        assert!(eps.len() <= MAX_ENDPOINTS);
        assert_eq!(parse_endpoints(&endpoints_message(&eps)), Some(eps));
    }
    if let Some((_, n)) = get_addr(data) {
        assert!(n <= data.len());
    }
});
