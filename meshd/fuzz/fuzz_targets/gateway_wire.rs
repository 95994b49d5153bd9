//! What a publisher and a gateway say to each other: any bytes parse to a message, "more",
//! or an error, never a panic; a message parsed re-encodes to the bytes it came from.
#![no_main]
use libfuzzer_sys::fuzz_target;
use meshd::gateway::wire::{Answer, Hello, parse_client};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((h, n))) = Hello::parse(data) {
        assert!(n <= data.len());
        assert_eq!(
            Hello::parse(&h.encode()),
            Ok(Some((h.clone(), h.encode().len())))
        );
    }
    if let Ok(Some((a, n))) = Answer::parse(data) {
        assert!(n <= data.len());
        let _ = a.encode();
    }
    let _ = parse_client(data);
});
