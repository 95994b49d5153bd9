//! Noise handshake setup for links.
//!
//! **Pattern: XX.** Peers are usually configured by address alone (`udp://HOST:PORT`), so the
//! initiator often does not know the responder's key in advance, which rules out IK. XX
//! authenticates both sides, hides both static keys from passive observers (the responder's is
//! encrypted to the initiator's ephemeral key, the initiator's is sent last, encrypted), and
//! costs half a round trip more than IK, once per link and per rekey (every 120 s): nothing on
//! the data path. The responder learns the initiator's identity only in message 3, so a spoofed
//! message 1 costs it one DH and a bounded slot in its pending table, never a session.
//!
//! **Suites**: see [`crate::wire::Suite`]. The prologue binds the suite byte and a version
//! string, so the two ends agree on both or the handshake fails.

use crate::wire::Suite;
use snow::{Builder, HandshakeState};

const PROLOGUE: &[u8] = b"planetary-lan/link/v1";

fn builder(suite: Suite) -> Result<Builder<'static>, snow::Error> {
    let params = suite.noise_name().parse()?;
    Ok(Builder::new(params))
}

fn prologue(suite: Suite) -> Vec<u8> {
    let mut p = PROLOGUE.to_vec();
    p.push(suite.to_byte());
    p
}

/// A handshake state for the side that sends message 1.
pub fn initiator(private: &[u8; 32], suite: Suite) -> Result<HandshakeState, snow::Error> {
    let p = prologue(suite);
    builder(suite)?
        .local_private_key(private)?
        .prologue(&p)?
        .build_initiator()
}

/// A handshake state for the side that receives message 1.
pub fn responder(private: &[u8; 32], suite: Suite) -> Result<HandshakeState, snow::Error> {
    let p = prologue(suite);
    builder(suite)?
        .local_private_key(private)?
        .prologue(&p)?
        .build_responder()
}

/// The suite this machine is fastest with: AES-GCM where the CPU has AES instructions,
/// ChaCha20-Poly1305 elsewhere.
pub fn preferred_suite() -> Suite {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("aes")
            && std::arch::is_x86_feature_detected!("pclmulqdq")
        {
            return Suite::AesGcm;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("aes")
            && std::arch::is_aarch64_feature_detected!("pmull")
        {
            return Suite::AesGcm;
        }
    }
    Suite::ChaChaPoly
}
