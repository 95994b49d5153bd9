//! Key names: a node's public key as one DNS label, `<base32 of the key, lowercase, no
//! padding>` (52 characters), under the suffix. They resolve offline to the key's node address:
//! the name *is* the key, so no lookup and no trust is needed.

use data_encoding::BASE32_NOPAD;

/// The length of a key name's label.
pub const KEY_LABEL_LEN: usize = 52;

/// The label of `key`.
pub fn encode(key: &[u8; 32]) -> String {
    BASE32_NOPAD.encode(key).to_ascii_lowercase()
}

/// The key a label names, if it is a key name (exactly the canonical encoding of 32 bytes).
pub fn decode(label: &str) -> Option<[u8; 32]> {
    if label.len() != KEY_LABEL_LEN {
        return None;
    }
    let upper = label.to_ascii_uppercase();
    let bytes = BASE32_NOPAD.decode(upper.as_bytes()).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_only_canonical() {
        let key = [0xa5u8; 32];
        let l = encode(&key);
        assert_eq!(l.len(), KEY_LABEL_LEN);
        assert!(
            l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_eq!(decode(&l), Some(key));
        assert_eq!(decode(&l.to_uppercase()), Some(key));
        assert_eq!(decode("shop"), None);
        assert_eq!(decode(&l[1..]), None);
        // The last character carries 4 unused bits: a non-zero one is not a key name.
        let mut other = l.clone().into_bytes();
        let last = other.len() - 1;
        other[last] = if other[last] == b'b' { b'c' } else { b'b' };
        let other = String::from_utf8(other).expect("ascii");
        assert_eq!(decode(&other), None, "{other}");
    }
}
