//! The link wire format: what travels in one UDP datagram between two peers.
//!
//! Every datagram starts with a type byte. Integers are big-endian.
//!
//! ```text
//! HandshakeInit (1)       0 type=1 | 1 suite | 2 zero(2) | 4 sender_index(4) | 8 noise XX msg 1 (32)
//!                         | 40 cookie MAC (16, zero: none) | 56 zero padding up to INIT_LEN (148)
//! HandshakeResponse (2)   0 type=2 | 1 zero(3) | 4 sender_index(4) | 8 receiver_index(4)
//!                         | 12 noise XX msg 2 (e, encrypted s, encrypted payload)
//! HandshakeFinal (3)      0 type=3 | 1 zero(3) | 4 receiver_index(4) | 8 noise XX msg 3
//! Transport (4)           0 type=4 | 1 receiver_index(4) | 5 counter(8) | 13 ciphertext (>= 16)
//! CookieReply (5)         0 type=5 | 1 zero(3) | 4 receiver_index(4) | 8 echo(8) | 16 cookie(16)
//! Stale (6)               0 type=6 | 1 zero(3) | 4 receiver_index(4)
//! ```
//!
//! * **Indexes** are chosen by the receiver of a message, at random, per session. A datagram is
//!   matched to its session by index, not by source address, so peers may change addresses.
//! * The **init is padded** to be longer than the response it provokes, so a spoofed init never
//!   makes this node send more bytes than it received (no amplification).
//! * The **suite** byte names the AEAD of the session (see [`Suite`]). It is also part of the
//!   Noise prologue, so a tampered suite byte makes the handshake fail.
//! * A **cookie reply** answers an init when this node is under a flood of them
//!   ([`crate::link`]'s `cookie` module): it carries a MAC of the initiator's address and port,
//!   which the initiator puts, MACed over the init's first [`INIT_MAC_AT`] bytes, into the
//!   cookie MAC field of its next init to prove that it receives at its address. It echoes the
//!   init's index and the first 8 bytes of its ephemeral key, so that nobody off the path can
//!   forge one, and is shorter than an init (no amplification).
//! * A **stale** hint answers a transport message whose receiver index this node does not know
//!   (it restarted, or dropped the session): "index N is gone here". It is not authenticated,
//!   so it never tears anything down; the peer that used index N only handshakes again at once
//!   ([`crate::link`]), keeping its session until the new one is up. Eight bytes, smaller than
//!   the smallest transport message it answers, and rate-limited: no amplification.
//! * The **counter** of a transport message is the AEAD nonce and is checked against a replay
//!   window ([`crate::replay`]).
//!
//! Parsing goes through [`parse`], which validates every length once and returns a borrowed view
//! ([`Message`]); nothing here panics on any input (see `fuzz/`).

use crate::codes;

/// Type byte of a handshake init.
pub const TYPE_INIT: u8 = codes::datagram::INIT;
/// Type byte of a stale-index hint.
pub const TYPE_STALE: u8 = codes::datagram::STALE;
/// Exact length of a stale-index hint.
pub const STALE_LEN: usize = 8;
/// Type byte of a handshake response.
pub const TYPE_RESPONSE: u8 = codes::datagram::RESPONSE;
/// Type byte of a handshake final message.
pub const TYPE_FINAL: u8 = codes::datagram::FINAL;
/// Type byte of a transport message.
pub const TYPE_TRANSPORT: u8 = codes::datagram::TRANSPORT;
/// Type byte of a direct message: end-to-end data for the link peer itself
/// ([`parse_direct`]).
pub const TYPE_DIRECT: u8 = codes::datagram::DIRECT;
/// Type byte of a cookie reply.
pub const TYPE_COOKIE: u8 = codes::datagram::COOKIE;

/// Length of the Noise part of a handshake init (the initiator's ephemeral key).
pub const INIT_NOISE_LEN: usize = 32;
/// Exact length of a handshake init on the wire (header, Noise message, padding).
pub const INIT_LEN: usize = 148;
/// Where an init's cookie MAC starts; the MAC covers the bytes before it.
pub const INIT_MAC_AT: usize = 8 + INIT_NOISE_LEN;
/// Length of a cookie, of a cookie MAC, and of a cookie reply's echo.
pub const COOKIE_LEN: usize = 16;
/// Length of the echo of the init in a cookie reply.
pub const COOKIE_ECHO_LEN: usize = 8;
/// Exact length of a cookie reply.
pub const COOKIE_REPLY_LEN: usize = 8 + COOKIE_ECHO_LEN + COOKIE_LEN;
// A cookie reply, which anyone can provoke with a spoofed init, is no amplifier; and the
// cookie MAC fits in the init's padding.
const _: () = assert!(COOKIE_REPLY_LEN < INIT_LEN && INIT_MAC_AT + COOKIE_LEN <= INIT_LEN);
/// Bytes before the ciphertext of a transport message.
pub const TRANSPORT_HEADER_LEN: usize = 13;
/// Length of the AEAD tag.
pub const TAG_LEN: usize = 16;
/// Total per-packet overhead of a transport message (header and tag).
pub const TRANSPORT_OVERHEAD: usize = TRANSPORT_HEADER_LEN + TAG_LEN;
/// The largest datagram this node sends or accepts.
pub const MAX_DATAGRAM: usize = 65_535 - 8 - 40;

/// The AEAD cipher of a session, chosen by the initiator.
///
/// Both are 256-bit AEADs with the Noise `25519` DH and `BLAKE2s` hash. AES-256-GCM is about
/// three times faster than ChaCha20-Poly1305 on CPUs with AES instructions (measured in
/// `docs/BENCHMARKS.md`); ChaCha20-Poly1305 is faster on CPUs without them (older phones). The
/// initiator picks by its own hardware unless configured; the responder accepts either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Suite {
    /// `Noise_XX_25519_AESGCM_BLAKE2s`.
    AesGcm,
    /// `Noise_XX_25519_ChaChaPoly_BLAKE2s`.
    ChaChaPoly,
}

impl Suite {
    /// The wire byte.
    pub fn to_byte(self) -> u8 {
        match self {
            Suite::AesGcm => codes::suite::AES_GCM,
            Suite::ChaChaPoly => codes::suite::CHACHA_POLY,
        }
    }

    /// From the wire byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            codes::suite::AES_GCM => Some(Suite::AesGcm),
            codes::suite::CHACHA_POLY => Some(Suite::ChaChaPoly),
            _ => None,
        }
    }

    /// The Noise protocol name.
    pub fn noise_name(self) -> &'static str {
        match self {
            Suite::AesGcm => "Noise_XX_25519_AESGCM_BLAKE2s",
            Suite::ChaChaPoly => "Noise_XX_25519_ChaChaPoly_BLAKE2s",
        }
    }

    /// Short name for status output.
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesGcm => "aes-256-gcm",
            Suite::ChaChaPoly => "chacha20-poly1305",
        }
    }
}

/// A validated, borrowed view of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// Handshake message 1.
    Init {
        /// The AEAD the initiator wants.
        suite: Suite,
        /// The initiator's index for this session.
        sender: u32,
        /// The Noise message (exactly [`INIT_NOISE_LEN`] bytes).
        noise: &'a [u8],
        /// The bytes the cookie MAC covers (the first [`INIT_MAC_AT`]).
        head: &'a [u8],
        /// The cookie MAC ([`COOKIE_LEN`] bytes); all zero when the init carries none.
        mac: &'a [u8],
    },
    /// Handshake message 2.
    Response {
        /// The responder's index for this session.
        sender: u32,
        /// The initiator's index, echoed.
        receiver: u32,
        /// The Noise message.
        noise: &'a [u8],
    },
    /// Handshake message 3.
    Final {
        /// The responder's index, echoed.
        receiver: u32,
        /// The Noise message.
        noise: &'a [u8],
    },
    /// Encrypted data.
    Transport {
        /// The receiving side's index of the session.
        receiver: u32,
        /// The nonce.
        counter: u64,
        /// Ciphertext and tag (at least [`TAG_LEN`] bytes).
        ciphertext: &'a [u8],
    },
    /// "The session you call `receiver` is gone here" (unauthenticated: a hint).
    Stale {
        /// The index the sender did not know (the receiver's remote index of a session).
        receiver: u32,
    },
    /// A cookie reply to one of our inits.
    Cookie {
        /// Our index of the init it answers.
        receiver: u32,
        /// The first [`COOKIE_ECHO_LEN`] bytes of that init's Noise message.
        echo: &'a [u8],
        /// The cookie ([`COOKIE_LEN`] bytes).
        cookie: &'a [u8],
    },
}

/// Why a datagram was not understood. Every variant is the sender's fault (or noise on the
/// wire); none is a local bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Zero bytes.
    #[error("empty datagram")]
    Empty,
    /// A type byte this version does not know.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// Shorter or longer than the message type allows.
    #[error("bad length {len} for message type {ty}")]
    Length {
        /// The type byte.
        ty: u8,
        /// The datagram length.
        len: usize,
    },
    /// A suite byte this version does not know.
    #[error("unknown cipher suite {0}")]
    UnknownSuite(u8),
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// Smallest Noise message 2: ephemeral (32), encrypted static (48), empty encrypted payload (16).
const MIN_RESPONSE_NOISE: usize = 32 + 48 + TAG_LEN;
/// Smallest Noise message 3: encrypted static (48), empty encrypted payload (16).
const MIN_FINAL_NOISE: usize = 48 + TAG_LEN;
/// Largest handshake message accepted (handshakes carry a small payload).
const MAX_HANDSHAKE: usize = 1024;

/// A direct message's fields: receiver index (of the end-to-end session), counter and
/// ciphertext. Same layout and length bounds as a transport message; `None` if it is not one.
pub fn parse_direct(b: &[u8]) -> Option<(u32, u64, &[u8])> {
    if b.first() != Some(&TYPE_DIRECT) || b.len() < TRANSPORT_OVERHEAD || b.len() > MAX_DATAGRAM {
        return None;
    }
    Some((u32_at(b, 1), u64_at(b, 5), &b[TRANSPORT_HEADER_LEN..]))
}

/// Parses one datagram, checking every length before any field is read.
pub fn parse(b: &[u8]) -> Result<Message<'_>, WireError> {
    let ty = *b.first().ok_or(WireError::Empty)?;
    let bad_len = WireError::Length { ty, len: b.len() };
    match ty {
        TYPE_INIT => {
            if b.len() != INIT_LEN {
                return Err(bad_len);
            }
            let suite = Suite::from_byte(b[1]).ok_or(WireError::UnknownSuite(b[1]))?;
            Ok(Message::Init {
                suite,
                sender: u32_at(b, 4),
                noise: &b[8..INIT_MAC_AT],
                head: &b[..INIT_MAC_AT],
                mac: &b[INIT_MAC_AT..INIT_MAC_AT + COOKIE_LEN],
            })
        }
        TYPE_RESPONSE => {
            if b.len() < 12 + MIN_RESPONSE_NOISE || b.len() > MAX_HANDSHAKE {
                return Err(bad_len);
            }
            Ok(Message::Response {
                sender: u32_at(b, 4),
                receiver: u32_at(b, 8),
                noise: &b[12..],
            })
        }
        TYPE_FINAL => {
            if b.len() < 8 + MIN_FINAL_NOISE || b.len() > MAX_HANDSHAKE {
                return Err(bad_len);
            }
            Ok(Message::Final {
                receiver: u32_at(b, 4),
                noise: &b[8..],
            })
        }
        TYPE_TRANSPORT => {
            if b.len() < TRANSPORT_OVERHEAD || b.len() > MAX_DATAGRAM {
                return Err(bad_len);
            }
            Ok(Message::Transport {
                receiver: u32_at(b, 1),
                counter: u64_at(b, 5),
                ciphertext: &b[TRANSPORT_HEADER_LEN..],
            })
        }
        TYPE_STALE => {
            if b.len() != STALE_LEN {
                return Err(bad_len);
            }
            Ok(Message::Stale {
                receiver: u32_at(b, 4),
            })
        }
        TYPE_COOKIE => {
            if b.len() != COOKIE_REPLY_LEN {
                return Err(bad_len);
            }
            Ok(Message::Cookie {
                receiver: u32_at(b, 4),
                echo: &b[8..8 + COOKIE_ECHO_LEN],
                cookie: &b[8 + COOKIE_ECHO_LEN..],
            })
        }
        other => Err(WireError::UnknownType(other)),
    }
}

/// Writes the header of a handshake init into `out[..8]` and zeroes the padding; the caller
/// writes the Noise message into `out[8..40]`. Returns [`INIT_LEN`].
///
/// # Panics
/// If `out` is shorter than [`INIT_LEN`] (a caller bug: buffers are sized by this module).
pub fn emit_init_header(out: &mut [u8], suite: Suite, sender: u32) -> usize {
    out[..INIT_LEN].fill(0);
    out[0] = TYPE_INIT;
    out[1] = suite.to_byte();
    out[4..8].copy_from_slice(&sender.to_be_bytes());
    INIT_LEN
}

/// Writes a whole cookie reply into `out[..COOKIE_REPLY_LEN]`: the init's index, the first
/// [`COOKIE_ECHO_LEN`] bytes of its Noise message, the cookie. Returns [`COOKIE_REPLY_LEN`].
///
/// # Panics
/// If `out` is shorter than [`COOKIE_REPLY_LEN`] (a caller bug).
pub fn emit_cookie_reply(
    out: &mut [u8],
    receiver: u32,
    echo: &[u8; COOKIE_ECHO_LEN],
    cookie: &[u8; COOKIE_LEN],
) -> usize {
    out[..4].copy_from_slice(&[TYPE_COOKIE, 0, 0, 0]);
    out[4..8].copy_from_slice(&receiver.to_be_bytes());
    out[8..8 + COOKIE_ECHO_LEN].copy_from_slice(echo);
    out[8 + COOKIE_ECHO_LEN..COOKIE_REPLY_LEN].copy_from_slice(cookie);
    COOKIE_REPLY_LEN
}

/// Writes the 12-byte header of a handshake response; the Noise message follows at `out[12..]`.
pub fn emit_response_header(out: &mut [u8], sender: u32, receiver: u32) -> usize {
    out[..4].copy_from_slice(&[TYPE_RESPONSE, 0, 0, 0]);
    out[4..8].copy_from_slice(&sender.to_be_bytes());
    out[8..12].copy_from_slice(&receiver.to_be_bytes());
    12
}

/// Writes the 8-byte header of a handshake final; the Noise message follows at `out[8..]`.
pub fn emit_final_header(out: &mut [u8], receiver: u32) -> usize {
    out[..4].copy_from_slice(&[TYPE_FINAL, 0, 0, 0]);
    out[4..8].copy_from_slice(&receiver.to_be_bytes());
    8
}

/// A stale-index hint for `receiver`.
pub fn emit_stale(receiver: u32) -> [u8; STALE_LEN] {
    let mut out = [0u8; STALE_LEN];
    out[0] = TYPE_STALE;
    out[4..8].copy_from_slice(&receiver.to_be_bytes());
    out
}

/// Writes the 13-byte header of a transport message; the ciphertext follows.
pub fn emit_transport_header(out: &mut [u8], receiver: u32, counter: u64) -> usize {
    out[0] = TYPE_TRANSPORT;
    out[1..5].copy_from_slice(&receiver.to_be_bytes());
    out[5..13].copy_from_slice(&counter.to_be_bytes());
    TRANSPORT_HEADER_LEN
}

/// What a peer proves about itself inside the encrypted handshake (Noise messages 2 and 3).
///
/// ```text
/// 0 version=1 | 1 ed25519 public key (32) | 33 extensions (ignored by version 1)
/// ```
///
/// Link handshakes carry one extension: the sender's *incarnation* (4 bytes at offset 33), a
/// random number drawn at each start of the node ([`LinkPayload`]). A peer that handshakes
/// with another incarnation than the link's restarted: its old link is torn down and a new one
/// comes up, so that routing starts over with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakePayload {
    /// The sender's ed25519 public key; its Montgomery form must equal the Noise static key.
    pub public_key: [u8; 32],
}

/// Length of a version-1 handshake payload.
pub const HANDSHAKE_PAYLOAD_LEN: usize = 33;

/// Why a handshake payload was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Fewer than 33 bytes.
    #[error("handshake payload too short ({0} bytes)")]
    Short(usize),
    /// A version this node does not speak.
    #[error("unsupported handshake version {0}")]
    Version(u8),
}

impl HandshakePayload {
    /// Parses a payload; extensions after the key are ignored.
    pub fn parse(b: &[u8]) -> Result<Self, PayloadError> {
        if b.len() < HANDSHAKE_PAYLOAD_LEN {
            return Err(PayloadError::Short(b.len()));
        }
        if b[0] != codes::HANDSHAKE_PAYLOAD_VERSION {
            return Err(PayloadError::Version(b[0]));
        }
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(&b[1..33]);
        Ok(HandshakePayload { public_key })
    }

    /// Encodes the payload.
    pub fn emit(&self) -> [u8; HANDSHAKE_PAYLOAD_LEN] {
        let mut out = [0u8; HANDSHAKE_PAYLOAD_LEN];
        out[0] = codes::HANDSHAKE_PAYLOAD_VERSION;
        out[1..].copy_from_slice(&self.public_key);
        out
    }
}

/// A link handshake's payload: the [`HandshakePayload`] and the sender's incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkPayload {
    /// The key part.
    pub base: HandshakePayload,
    /// A random number per start of the sender; `None` from a node that does not send it.
    pub incarnation: Option<u32>,
}

/// Length of a link handshake payload with its incarnation (4 bytes: with 8, a response would
/// be longer than the init that provokes it, which is padded to 148 bytes against
/// amplification).
pub const LINK_PAYLOAD_LEN: usize = HANDSHAKE_PAYLOAD_LEN + 4;

impl LinkPayload {
    /// Parses a payload; an extension shorter than 4 bytes is no incarnation.
    pub fn parse(b: &[u8]) -> Result<Self, PayloadError> {
        let base = HandshakePayload::parse(b)?;
        let incarnation = b
            .get(HANDSHAKE_PAYLOAD_LEN..LINK_PAYLOAD_LEN)
            .map(|x| u32_at(x, 0));
        Ok(LinkPayload { base, incarnation })
    }

    /// Encodes the payload (always with an incarnation).
    pub fn emit(&self) -> [u8; LINK_PAYLOAD_LEN] {
        let mut out = [0u8; LINK_PAYLOAD_LEN];
        out[..HANDSHAKE_PAYLOAD_LEN].copy_from_slice(&self.base.emit());
        out[HANDSHAKE_PAYLOAD_LEN..].copy_from_slice(&self.incarnation.unwrap_or(0).to_be_bytes());
        out
    }
}

/// Kinds of frame inside a transport message's plaintext. An empty plaintext is a keepalive.
pub mod frame {
    use crate::codes::link_frame;

    /// A routing message follows (the `routing` crate's wire format).
    pub const ROUTING: u8 = link_frame::ROUTING;
    /// The sender is closing the link (shutting down).
    pub const CLOSE: u8 = link_frame::CLOSE;
    /// The sender refuses this link (its policy does not allow the receiver): sent once, on
    /// the session the refused handshake made, so that it is authenticated; the receiver
    /// stops using the link and dials again only after its back-off.
    pub const REFUSED: u8 = link_frame::REFUSED;
    /// "I see you at this endpoint": family (4 or 6), address, port. Tells a node behind a
    /// NAT its public endpoint ([`crate::nat`]).
    pub const OBSERVED: u8 = link_frame::OBSERVED;
    /// A path probe: nonce (8 bytes), answered over the path it came on
    /// ([`crate::link::paths`]).
    pub const PROBE: u8 = link_frame::PROBE;
    /// The answer to a [`PROBE`]: its nonce.
    pub const PROBE_REPLY: u8 = link_frame::PROBE_REPLY;
    /// "My network changed": no body. The receiver sends to the path this came on at once
    /// and tells the sender where it sees it ([`crate::link::Links::network_changed`]).
    pub const MOVED: u8 = link_frame::MOVED;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_headers() {
        let mut b = [0u8; INIT_LEN];
        emit_init_header(&mut b, Suite::ChaChaPoly, 0xdead_beef);
        assert_eq!(
            parse(&b),
            Ok(Message::Init {
                suite: Suite::ChaChaPoly,
                sender: 0xdead_beef,
                noise: &[0; 32],
                head: &b[..INIT_MAC_AT],
                mac: &[0; COOKIE_LEN],
            })
        );
        let mut c = [0u8; COOKIE_REPLY_LEN];
        emit_cookie_reply(&mut c, 9, &[1; COOKIE_ECHO_LEN], &[2; COOKIE_LEN]);
        assert_eq!(
            parse(&c),
            Ok(Message::Cookie {
                receiver: 9,
                echo: &[1; COOKIE_ECHO_LEN],
                cookie: &[2; COOKIE_LEN],
            })
        );
        assert!(matches!(
            parse(&c[..COOKIE_REPLY_LEN - 1]),
            Err(WireError::Length { .. })
        ));
        let mut b = [7u8; 12 + MIN_RESPONSE_NOISE];
        emit_response_header(&mut b, 1, 2);
        assert!(matches!(
            parse(&b),
            Ok(Message::Response {
                sender: 1,
                receiver: 2,
                ..
            })
        ));
        let mut b = [7u8; 8 + MIN_FINAL_NOISE];
        emit_final_header(&mut b, 3);
        assert!(matches!(parse(&b), Ok(Message::Final { receiver: 3, .. })));
        let mut b = [7u8; TRANSPORT_OVERHEAD];
        emit_transport_header(&mut b, 4, u64::MAX - 1);
        assert_eq!(
            parse(&b),
            Ok(Message::Transport {
                receiver: 4,
                counter: u64::MAX - 1,
                ciphertext: &[7; 16]
            })
        );
    }

    #[test]
    fn rejects_bad_lengths_and_types() {
        assert_eq!(parse(&[]), Err(WireError::Empty));
        assert_eq!(parse(&[9]), Err(WireError::UnknownType(9)));
        for ty in [
            TYPE_INIT,
            TYPE_RESPONSE,
            TYPE_FINAL,
            TYPE_TRANSPORT,
            TYPE_COOKIE,
        ] {
            for len in [1, 5, 12, 28] {
                let mut b = vec![0u8; len];
                b[0] = ty;
                assert!(
                    matches!(parse(&b), Err(WireError::Length { .. })),
                    "{ty} {len}"
                );
            }
        }
        let mut b = [0u8; INIT_LEN];
        emit_init_header(&mut b, Suite::AesGcm, 1);
        b[1] = 77;
        assert_eq!(parse(&b), Err(WireError::UnknownSuite(77)));
    }

    #[test]
    fn init_is_not_an_amplifier() {
        // The response carries e (32), s (32+16) and the payload (33+16) after a 12-byte header.
        let response = 12 + 32 + 48 + HANDSHAKE_PAYLOAD_LEN + TAG_LEN;
        assert!(
            INIT_LEN >= response,
            "init {INIT_LEN} < response {response}"
        );
    }

    #[test]
    fn payload_roundtrip() {
        let p = HandshakePayload {
            public_key: [5; 32],
        };
        assert_eq!(HandshakePayload::parse(&p.emit()), Ok(p));
        assert_eq!(
            HandshakePayload::parse(&[1; 3]),
            Err(PayloadError::Short(3))
        );
        let mut b = p.emit();
        b[0] = 2;
        assert_eq!(HandshakePayload::parse(&b), Err(PayloadError::Version(2)));
    }
}
