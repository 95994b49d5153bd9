//! Any bytes as a name record, and as a storing node's input: a `NAME_PUT` body offered to a
//! name store. Checks: no panic; what decodes re-encodes to the same bytes; a record the store
//! takes verifies, and the store never holds more than its bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use routing::name_record::NameRecord;
use routing::name_store::{MAX_PER_OWNER, NameStore, Stored};
use routing::wire::{RoutedBody, kind};

fuzz_target!(|data: &[u8]| {
    if let Ok(rec) = NameRecord::from_bytes(data) {
        assert_eq!(rec.to_bytes(), data);
        let mut store = NameStore::default();
        let now = rec.expires.saturating_sub(data.len() as u64);
        if store.put(rec.clone(), now, |r| r.verify()) == Stored::Stored {
            assert!(rec.verify());
            assert!(store.len() <= MAX_PER_OWNER);
        }
    }
    for k in [
        kind::NAME_PUT,
        kind::NAME_ACK,
        kind::NAME_GET,
        kind::NAME_VAL,
    ] {
        if let Ok(body) = RoutedBody::decode(k, data) {
            let mut b = Vec::new();
            body.encode(&mut b);
            assert_eq!(b, data);
        }
    }
});
