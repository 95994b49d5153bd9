//! Every first byte and kind code of every wire format this node speaks, in one place.
//!
//! A received message is told apart by one byte at several *dispatch points*; two codes that
//! meet at the same point must differ, or a message would be taken for another. The parsers
//! and emitters use these constants (through the names their modules re-export), and the test
//! below checks each dispatch point for collisions, so a new kind added here cannot silently
//! shadow an old one.
//!
//! ```text
//!  UDP datagram ─ [datagram] ─► INIT/RESPONSE/FINAL (Noise XX), COOKIE, TRANSPORT, STALE,
//!                                or DIRECT (an E2E_DATA message for the link peer itself)
//!    TRANSPORT plaintext ─ [link_frame] ─► ROUTING ─► routing message ─ [routing::wire::kind]
//!      TRAFFIC payload ─ [routed] ─► E2E_INIT / E2E_RESP / E2E_DATA / E2E_STALE, or ZNET | id | e2e message
//!        E2E_DATA plaintext ─ [session_payload] ─► IPv6 (or IPv4/IPv6 in a znet), or CONTROL
//!          CONTROL ─ [control] ─► ENDPOINTS (NAT traversal)
//!  LAN multicast (its own port) ─ [discovery::MAGIC] ─► signed announcement
//! ```
//!
//! Handshake payloads start with a version ([`HANDSHAKE_PAYLOAD_VERSION`]) and name the AEAD
//! with a suite byte ([`suite`]).

/// First byte of a UDP (or TCP/QUIC-framed) datagram between linked nodes ([`crate::wire`]).
pub mod datagram {
    /// Noise XX message 1.
    pub const INIT: u8 = 1;
    /// Noise XX message 2.
    pub const RESPONSE: u8 = 2;
    /// Noise XX message 3.
    pub const FINAL: u8 = 3;
    /// A transport message (encrypted frame).
    pub const TRANSPORT: u8 = 4;
    /// A cookie reply: the answer to an init under load (prove your address first).
    pub const COOKIE: u8 = 5;
    /// "The receiver index you used is unknown here" (a hint, unauthenticated).
    pub const STALE: u8 = 6;
    /// An end-to-end DATA message sent bare to the link peer that is its destination: the
    /// layout of a transport message, sealed once, by the end-to-end session.
    pub const DIRECT: u8 = 7;
    /// All of them, for the collision test.
    pub const ALL: &[(&str, u8)] = &[
        ("INIT", INIT),
        ("RESPONSE", RESPONSE),
        ("FINAL", FINAL),
        ("TRANSPORT", TRANSPORT),
        ("COOKIE", COOKIE),
        ("STALE", STALE),
        ("DIRECT", DIRECT),
    ];
}

/// AEAD suite byte of a handshake init ([`crate::wire::Suite`]).
pub mod suite {
    /// AES-256-GCM.
    pub const AES_GCM: u8 = 1;
    /// ChaCha20-Poly1305.
    pub const CHACHA_POLY: u8 = 2;
    /// All of them, for the collision test.
    pub const ALL: &[(&str, u8)] = &[("AES_GCM", AES_GCM), ("CHACHA_POLY", CHACHA_POLY)];
}

/// Version byte of a link handshake payload ([`crate::wire::HandshakePayload`]).
pub const HANDSHAKE_PAYLOAD_VERSION: u8 = 1;

/// First byte of a transport message's plaintext ([`crate::wire::frame`]); an empty plaintext
/// is a keepalive.
pub mod link_frame {
    /// A routing message follows.
    pub const ROUTING: u8 = 2;
    /// The sender is closing the link.
    pub const CLOSE: u8 = 3;
    /// The sender refuses this link.
    pub const REFUSED: u8 = 4;
    /// "I see you at this endpoint".
    pub const OBSERVED: u8 = 5;
    /// A path probe.
    pub const PROBE: u8 = 6;
    /// The answer to a probe.
    pub const PROBE_REPLY: u8 = 7;
    /// "My network changed: send to where this came from".
    pub const MOVED: u8 = 8;
    /// All of them, for the collision test.
    pub const ALL: &[(&str, u8)] = &[
        ("ROUTING", ROUTING),
        ("CLOSE", CLOSE),
        ("REFUSED", REFUSED),
        ("OBSERVED", OBSERVED),
        ("PROBE", PROBE),
        ("PROBE_REPLY", PROBE_REPLY),
        ("MOVED", MOVED),
    ];
}

/// First byte of the payload of routed traffic (`routing`'s TRAFFIC body): an end-to-end
/// message ([`crate::e2e::wire`]) or a znet's ([`crate::znet`]).
pub mod routed {
    /// End-to-end Noise IK message 1.
    pub const E2E_INIT: u8 = 1;
    /// End-to-end Noise IK message 2.
    pub const E2E_RESP: u8 = 2;
    /// "The receiver index of your end-to-end data is unknown here" (a hint).
    pub const E2E_STALE: u8 = 3;
    /// End-to-end data (the layout of a link transport message).
    pub const E2E_DATA: u8 = super::datagram::TRANSPORT;
    /// A znet's message: `ZNET | znet id (8) | end-to-end message`.
    pub const ZNET: u8 = 0x5a;
    /// All of them, for the collision test.
    pub const ALL: &[(&str, u8)] = &[
        ("E2E_INIT", E2E_INIT),
        ("E2E_RESP", E2E_RESP),
        ("E2E_STALE", E2E_STALE),
        ("E2E_DATA", E2E_DATA),
        ("ZNET", ZNET),
    ];
}

/// First byte of an end-to-end session's plaintext: an IP packet (its version in the high
/// nibble) or a message for the node itself.
pub mod session_payload {
    /// A message between the two nodes themselves ([`super::control`]).
    pub const CONTROL: u8 = 0x00;
    /// High nibble of an IPv4 packet's first byte (znets only).
    pub const IPV4_NIBBLE: u8 = 4;
    /// High nibble of an IPv6 packet's first byte.
    pub const IPV6_NIBBLE: u8 = 6;
}

/// Kind byte after [`session_payload::CONTROL`].
pub mod control {
    /// The sender's public endpoints, for hole punching ([`crate::nat`]).
    pub const ENDPOINTS: u8 = 1;
    /// All of them, for the collision test.
    pub const ALL: &[(&str, u8)] = &[("ENDPOINTS", ENDPOINTS)];
}

/// LAN announcements ([`crate::discovery`]), on their own multicast port.
pub mod discovery {
    /// The first four bytes of an announcement.
    pub const MAGIC: &[u8; 4] = b"PLD1";
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Fails if two names share a code at one dispatch point.
    fn distinct(point: &str, codes: &[(&str, u8)]) {
        let mut seen: HashMap<u8, &str> = HashMap::new();
        for &(name, code) in codes {
            if let Some(other) = seen.insert(code, name) {
                panic!("{point}: {name} and {other} are both {code:#04x}");
            }
        }
    }

    #[test]
    fn no_two_codes_collide_at_a_dispatch_point() {
        distinct("datagram", datagram::ALL);
        distinct("suite", suite::ALL);
        distinct("link frame", link_frame::ALL);
        distinct("routed payload", routed::ALL);
        distinct("control", control::ALL);
        use routing::wire::kind;
        distinct(
            "routing message",
            &[
                ("ANNOUNCE", kind::ANNOUNCE),
                ("SIG_REQ", kind::SIG_REQ),
                ("SIG_RES", kind::SIG_RES),
                ("PPING", kind::PPING),
                ("PPONG", kind::PPONG),
                ("ANN_REQ", kind::ANN_REQ),
                ("TRAFFIC", kind::TRAFFIC),
                ("FIND", kind::FIND),
                ("FOUND", kind::FOUND),
                ("BROKEN", kind::BROKEN),
                ("PING", kind::PING),
                ("PONG", kind::PONG),
                ("NOTIFY", kind::NOTIFY),
            ],
        );
        // A control message must not look like an IP packet of either version.
        let nibble = session_payload::CONTROL >> 4;
        assert_ne!(nibble, session_payload::IPV4_NIBBLE);
        assert_ne!(nibble, session_payload::IPV6_NIBBLE);
        // A keepalive is an empty plaintext: no frame kind may be needed to mark it, and 0 is
        // left free so that a zeroed buffer is never a valid frame.
        assert!(link_frame::ALL.iter().all(|&(_, c)| c != 0));
        // Announcements live on their own port, but a stray one must still not parse as a
        // link datagram.
        assert!(datagram::ALL.iter().all(|&(_, c)| c != discovery::MAGIC[0]));
    }

    #[test]
    fn the_parsers_use_the_registry() {
        assert_eq!(crate::wire::TYPE_INIT, datagram::INIT);
        assert_eq!(crate::wire::TYPE_TRANSPORT, datagram::TRANSPORT);
        assert_eq!(crate::wire::TYPE_COOKIE, datagram::COOKIE);
        assert_eq!(crate::wire::frame::PROBE_REPLY, link_frame::PROBE_REPLY);
        assert_eq!(crate::e2e::wire::TYPE_DATA, routed::E2E_DATA);
        assert_eq!(crate::znet::ZNET, routed::ZNET);
        assert_eq!(crate::e2e::CONTROL, session_payload::CONTROL);
        assert_eq!(crate::nat::ENDPOINTS, control::ENDPOINTS);
        assert_eq!(crate::wire::Suite::AesGcm.to_byte(), suite::AES_GCM);
    }
}
