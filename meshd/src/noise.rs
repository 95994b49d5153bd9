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

use crate::identity::PublicKey;
use crate::wire::{HandshakePayload, Suite};
use snow::{Builder, HandshakeState};

const PROLOGUE: &[u8] = b"planetary-lan/link/v1";
const E2E_PROLOGUE: &[u8] = b"planetary-lan/e2e/v1";

use zeroize::Zeroizing;

fn builder(suite: Suite) -> Result<Builder<'static>, snow::Error> {
    let params = suite.noise_name().parse()?;
    Ok(Builder::new(params))
}

/// What binds an end-to-end session to a znet: its id (in the prologue) and a pre-shared key
/// derived from the znet's secret (Noise IKpsk1: the psk is mixed in with the first message,
/// so a responder refuses an init without it before answering). A node without the secret can complete no
/// handshake of that znet: it can neither read its traffic nor inject into it.
#[derive(Clone, PartialEq, Eq)]
pub struct Bind {
    /// The znet id.
    pub id: u64,
    /// The pre-shared key (wiped from memory when dropped).
    pub psk: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Bind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the psk: configs are logged.
        f.debug_struct("Bind")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

fn ik_builder(suite: Suite, bind: Option<&Bind>) -> Result<Builder<'_>, snow::Error> {
    let pattern = if bind.is_some() { "_IKpsk1_" } else { "_IK_" };
    let params = suite.noise_name().replace("_XX_", pattern).parse()?;
    let b = Builder::new(params);
    match bind {
        Some(z) => b.psk(1, &z.psk),
        None => Ok(b),
    }
}

fn e2e_prologue(suite: Suite, bind: Option<&Bind>) -> Vec<u8> {
    let mut p = E2E_PROLOGUE.to_vec();
    p.push(suite.to_byte());
    if let Some(z) = bind {
        p.extend_from_slice(b"/znet/");
        p.extend_from_slice(&z.id.to_be_bytes());
    }
    p
}

/// An end-to-end (IK) handshake towards `remote` (the destination's X25519 key, derived from
/// the key a lookup returned). IK, because the source always knows the destination's key: one
/// round trip, and the initiator's identity travels encrypted to the responder's key.
pub fn ik_initiator(
    private: &[u8; 32],
    remote: &[u8; 32],
    suite: Suite,
    bind: Option<&Bind>,
) -> Result<HandshakeState, snow::Error> {
    let p = e2e_prologue(suite, bind);
    ik_builder(suite, bind)?
        .local_private_key(private)?
        .remote_public_key(remote)?
        .prologue(&p)?
        .build_initiator()
}

/// The destination's side of an end-to-end handshake.
pub fn ik_responder(
    private: &[u8; 32],
    suite: Suite,
    bind: Option<&Bind>,
) -> Result<HandshakeState, snow::Error> {
    let p = e2e_prologue(suite, bind);
    ik_builder(suite, bind)?
        .local_private_key(private)?
        .prologue(&p)?
        .build_responder()
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

/// Verifies the payload a peer sent inside a handshake (its ed25519 key) against the static
/// key Noise authenticated, and returns the peer's identity.
pub fn peer_identity(hs: &HandshakeState, payload: &[u8]) -> Result<PublicKey, &'static str> {
    let p = HandshakePayload::parse(payload).map_err(|_| "bad handshake payload")?;
    let key = PublicKey(p.public_key);
    let expected = key
        .noise_static()
        .ok_or("handshake key is not a valid ed25519 key")?;
    match hs.get_remote_static() {
        Some(rs) if rs == expected.as_slice() => Ok(key),
        _ => Err("handshake key does not match its Noise static key"),
    }
}
