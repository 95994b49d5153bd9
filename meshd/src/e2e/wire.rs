//! End-to-end messages, carried as the payload of routed traffic.
//!
//! ```text
//! INIT (1)  suite (1) | zero (3) | sender index (4) | Noise IK message 1
//!           (e, encrypted s, encrypted payload: version | ed25519 key)
//! RESP (2)  zero (3) | sender index (4) | receiver index (4) | Noise IK message 2 (e, empty payload)
//! DATA (4)  receiver index (4) | counter (8) | ciphertext of one IPv6 packet (same layout as a
//!           link transport message, and the same replay window)
//! STALE (3) zero (3) | receiver index (4): "the session you call this is gone here" (the
//!           answer to DATA for an unknown index; not authenticated, so only a hint)
//! ```

use crate::codes;
use crate::wire::{HANDSHAKE_PAYLOAD_LEN, Suite, TAG_LEN, TRANSPORT_OVERHEAD};

/// Type byte of an end-to-end handshake init.
pub const TYPE_INIT: u8 = codes::routed::E2E_INIT;
/// Type byte of an end-to-end handshake response.
pub const TYPE_RESP: u8 = codes::routed::E2E_RESP;
/// Type byte of a stale-index hint.
pub const TYPE_STALE: u8 = codes::routed::E2E_STALE;
/// Length of a STALE message.
pub const STALE_LEN: usize = 8;
/// Type byte of end-to-end data (the link transport layout).
pub const TYPE_DATA: u8 = codes::routed::E2E_DATA;

/// Length of an IK message 1: ephemeral, encrypted static, encrypted payload.
pub const INIT_NOISE_LEN: usize = 32 + 32 + TAG_LEN + HANDSHAKE_PAYLOAD_LEN + TAG_LEN;
/// Length of an INIT message.
pub const INIT_LEN: usize = 8 + INIT_NOISE_LEN;
/// Length of an IK message 2: ephemeral, empty encrypted payload.
pub const RESP_NOISE_LEN: usize = 32 + TAG_LEN;
/// Length of a RESP message.
pub const RESP_LEN: usize = 12 + RESP_NOISE_LEN;
/// Bytes a DATA message adds to a packet.
pub const DATA_OVERHEAD: usize = TRANSPORT_OVERHEAD;
/// Where a DATA message's ciphertext starts (after type, receiver index and counter).
pub const DATA_CIPHERTEXT_AT: usize = 13;

/// A checked view of an end-to-end message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Msg<'a> {
    /// Handshake message 1.
    Init {
        /// The suite the initiator chose.
        suite: Suite,
        /// The initiator's index.
        sender: u32,
        /// The Noise message.
        noise: &'a [u8],
    },
    /// Handshake message 2.
    Resp {
        /// The responder's index.
        sender: u32,
        /// The initiator's index, echoed.
        receiver: u32,
        /// The Noise message.
        noise: &'a [u8],
    },
    /// Data.
    Data {
        /// The receiver's index.
        receiver: u32,
        /// The nonce.
        counter: u64,
        /// Ciphertext and tag.
        ciphertext: &'a [u8],
    },
    /// A stale-index hint.
    Stale {
        /// The index the sender of the hint did not know.
        receiver: u32,
    },
}

/// Why an end-to-end message was not understood (the sender's fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MsgError {
    /// Wrong length for its type.
    #[error("bad length")]
    Length,
    /// Unknown type or suite.
    #[error("unknown type or suite")]
    Unknown,
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Parses an end-to-end message, checking lengths first.
pub fn parse(b: &[u8]) -> Result<Msg<'_>, MsgError> {
    match b.first().copied() {
        Some(TYPE_INIT) => {
            if b.len() != INIT_LEN {
                return Err(MsgError::Length);
            }
            let suite = Suite::from_byte(b[1]).ok_or(MsgError::Unknown)?;
            Ok(Msg::Init {
                suite,
                sender: u32_at(b, 4),
                noise: &b[8..],
            })
        }
        Some(TYPE_RESP) => {
            if b.len() != RESP_LEN {
                return Err(MsgError::Length);
            }
            Ok(Msg::Resp {
                sender: u32_at(b, 4),
                receiver: u32_at(b, 8),
                noise: &b[12..],
            })
        }
        Some(TYPE_DATA) => {
            if b.len() < DATA_OVERHEAD {
                return Err(MsgError::Length);
            }
            let mut c = [0u8; 8];
            c.copy_from_slice(&b[5..13]);
            Ok(Msg::Data {
                receiver: u32_at(b, 1),
                counter: u64::from_be_bytes(c),
                ciphertext: &b[DATA_CIPHERTEXT_AT..],
            })
        }
        Some(TYPE_STALE) => {
            if b.len() != STALE_LEN {
                return Err(MsgError::Length);
            }
            Ok(Msg::Stale {
                receiver: u32_at(b, 4),
            })
        }
        _ => Err(MsgError::Unknown),
    }
}

/// A STALE message for `receiver`.
pub fn emit_stale(receiver: u32) -> Vec<u8> {
    let mut b = vec![0u8; STALE_LEN];
    b[0] = TYPE_STALE;
    b[4..8].copy_from_slice(&receiver.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_checked() {
        assert_eq!(parse(&[]), Err(MsgError::Unknown));
        assert_eq!(parse(&[TYPE_INIT; 10]), Err(MsgError::Length));
        assert_eq!(parse(&[TYPE_RESP; 10]), Err(MsgError::Length));
        assert_eq!(parse(&[TYPE_DATA; 10]), Err(MsgError::Length));
        let mut init = vec![0u8; INIT_LEN];
        init[0] = TYPE_INIT;
        init[1] = 9;
        assert_eq!(parse(&init), Err(MsgError::Unknown));
        init[1] = Suite::AesGcm.to_byte();
        assert!(matches!(parse(&init), Ok(Msg::Init { .. })));
    }
}
