//! TLS for QUIC links: the TLS identity of a `quic://` link *is* the node's ed25519 key.
//!
//! A QUIC link carries mesh data in QUIC datagrams and control messages on a stream. QUIC
//! cannot run without TLS 1.3, and a certificate authority means nothing in a mesh whose
//! identities are bare keys, so both sides present their node key itself as an RFC 7250 *raw
//! public key*: the TLS `Certificate` message carries only the key's SubjectPublicKeyInfo, and
//! the `CertificateVerify` message proves, with an ed25519 signature over the handshake
//! transcript, that the sender holds the matching secret key. Nothing is ever skipped:
//!
//! * **Mutual.** The server demands a client key ([`server_config`]); a client that offers no
//!   raw key, or an empty `Certificate`, is refused in the handshake.
//! * **Keys only.** A peer key must be the 44-byte SPKI of an ed25519 key (a fixed 12-byte
//!   prefix and the 32 key bytes) and a usable point: weak and non-canonical keys are refused as
//!   [`PublicKey::noise_static`] refuses them. Only TLS 1.3 and only the ed25519 signature
//!   scheme are accepted; the signature is checked by rustls' *ring* provider.
//! * **Pinned when known.** [`client_config`] with `Some(key)` refuses any server that does not
//!   prove possession of exactly that key. The server accepts any valid key; policy (is this
//!   node a peer of ours?) is the caller's decision, made with [`peer_key`].
//! * **No shortcuts.** Session resumption and 0-RTT are off, so every connection runs a full
//!   handshake with both signatures; server names are ignored (identity is the key) and no SNI
//!   is sent.
//!
//! ## Identity binding
//! Because the TLS key is the node key, the QUIC connection's authenticated peer is the same
//! identity that the link's Noise handshake authenticates (Noise's static key is derived from
//! the same ed25519 key, see [`crate::identity`]). TLS alone does not tie the two together: the
//! caller **must** compare [`peer_key`] of the connection with the key the Noise handshake
//! running over it authenticated, and drop the link if they differ. Otherwise a node could
//! relay another node's Noise handshake over a QUIC connection it authenticated itself.
//!
//! ## Datagram size
//! [`quinn::Connection::max_datagram_size`] changes during a connection: about 1160 bytes at
//! first (from `initial_mtu` 1200), more once MTU discovery has probed the path (1414 on
//! loopback, where quinn's default probing stops at a UDP payload of 1452), less again if the
//! path stops carrying large packets. The transport must check it for every datagram.
//!
//! [`server_config`]: crate::quic_tls::server_config
//! [`client_config`]: crate::quic_tls::client_config
//! [`peer_key`]: crate::quic_tls::peer_key
//! [`PublicKey::noise_static`]: crate::identity::PublicKey::noise_static

use crate::identity::{Identity, PublicKey};
use anyhow::Context;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{AlwaysResolvesClientRawPublicKeys, Resumption};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::{
    CertificateDer, PrivatePkcs8KeyDer, ServerName, SubjectPublicKeyInfoDer, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{AlwaysResolvesServerRawPublicKeys, NoServerSessionStorage};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, PeerIncompatible,
    SignatureScheme,
};
use std::fmt;
use std::sync::Arc;

/// ALPN of Planetary LAN links over QUIC.
pub const ALPN: &[u8] = b"planetary-lan/1";

/// The DER prefix of an ed25519 SubjectPublicKeyInfo: SEQUENCE (42 bytes) { SEQUENCE { OID
/// 1.3.101.112 }, BIT STRING (33 bytes, 0 unused bits) }; the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Datagram buffers, each way: enough for bulk traffic to queue behind a slow path.
const DATAGRAM_BUFFER: usize = 4 << 20;

/// The SubjectPublicKeyInfo (DER) of an ed25519 key: what a raw-key `Certificate` carries.
fn spki_der(key: &PublicKey) -> Vec<u8> {
    let mut der = Vec::with_capacity(ED25519_SPKI_PREFIX.len() + 32);
    der.extend_from_slice(&ED25519_SPKI_PREFIX);
    der.extend_from_slice(&key.0);
    der
}

/// The node key in a peer's raw-key `Certificate` entry, or `None` unless it is exactly the
/// SPKI of a usable ed25519 key (canonical, not weak).
fn key_from_spki(der: &[u8]) -> Option<PublicKey> {
    let bytes: [u8; 32] = der.strip_prefix(&ED25519_SPKI_PREFIX)?.try_into().ok()?;
    let key = PublicKey(bytes);
    key.noise_static().map(|_| key)
}

/// The checks both verifiers make on the peer's `Certificate` message.
fn check_peer_entry(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<PublicKey, rustls::Error> {
    if !intermediates.is_empty() {
        return Err(CertificateError::BadEncoding.into());
    }
    key_from_spki(end_entity).ok_or(CertificateError::BadEncoding.into())
}

/// Checks the TLS 1.3 `CertificateVerify` signature: ed25519 only, by the key in `entry`.
fn verify_signature(
    algorithms: &WebPkiSupportedAlgorithms,
    message: &[u8],
    entry: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if dss.scheme != SignatureScheme::ED25519 {
        return Err(PeerIncompatible::NoSignatureSchemesInCommon.into());
    }
    // The entry was checked by `verify_*_cert` already; check again, it costs nothing.
    key_from_spki(entry).ok_or(rustls::Error::from(CertificateError::BadEncoding))?;
    rustls::crypto::verify_tls13_signature_with_raw_key(
        message,
        &SubjectPublicKeyInfoDer::from(entry.as_ref()),
        dss,
        algorithms,
    )
}

/// The *ring* provider, as both sides use it.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// This node's key as rustls sees it: the SPKI as the only "certificate", and a signer.
fn certified_key(identity: &Identity) -> anyhow::Result<Arc<CertifiedKey>> {
    // The PKCS#8 document is zeroed when dropped; rustls borrows it to build the signer.
    let pkcs8 = identity
        .signing_key()
        .to_pkcs8_der()
        .map_err(|e| anyhow::anyhow!("cannot encode the node key as PKCS#8: {e}"))?;
    let signer = ring::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(pkcs8.as_bytes()))
        .context("rustls refused the node key as an ed25519 signing key")?;
    let spki = spki_der(&identity.public_key());
    Ok(Arc::new(CertifiedKey::new(vec![spki.into()], signer)))
}

/// Verifies a QUIC link server: a raw ed25519 key, optionally exactly the expected one.
#[derive(Debug)]
struct ServerKeyVerifier {
    expected: Option<PublicKey>,
    algorithms: WebPkiSupportedAlgorithms,
}

/// The server proved a key other than the one the client expected.
#[derive(thiserror::Error)]
#[error("the QUIC server's key is {got}, expected {expected}")]
struct UnexpectedKey {
    got: PublicKey,
    expected: PublicKey,
}

/// rustls shows certificate errors with `Debug`: make that the readable message too.
impl fmt::Debug for UnexpectedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl ServerCertVerifier for ServerKeyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = check_peer_entry(end_entity, intermediates)?;
        match self.expected {
            Some(expected) if expected != got => Err(CertificateError::Other(OtherError(
                Arc::new(UnexpectedKey { got, expected }),
            ))
            .into()),
            _ => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(PeerIncompatible::Tls13RequiredForQuic.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.algorithms, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// Verifies a QUIC link client: any raw ed25519 key, mandatory.
#[derive(Debug)]
struct ClientKeyVerifier {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ClientKeyVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        check_peer_entry(end_entity, intermediates).map(|_| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(PeerIncompatible::Tls13RequiredForQuic.into())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature(&self.algorithms, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// Server side: presents this node's key, REQUIRES a client key (mutual auth), accepts any
/// valid ed25519 key from the client (policy is checked later by the caller, with
/// [`peer_key`]).
pub fn server_config(identity: &Identity) -> anyhow::Result<quinn::ServerConfig> {
    let provider = provider();
    let verifier = ClientKeyVerifier {
        algorithms: provider.signature_verification_algorithms,
    };
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("the ring provider cannot do TLS 1.3")?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(
            certified_key(identity)?,
        )));
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.session_storage = Arc::new(NoServerSessionStorage {});
    tls.send_tls13_tickets = 0;
    tls.max_early_data_size = 0;
    let quic = QuicServerConfig::try_from(tls).context("no QUIC initial cipher suite")?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// Client side: presents this node's key; verifies the server proves possession of an ed25519
/// key, and if `expected` is `Some`, that it is exactly that key.
///
/// The server name given to [`quinn::Endpoint::connect`] is not checked (the key is the
/// identity) and not sent; any valid name does, e.g. `"planetary-lan"`.
pub fn client_config(
    identity: &Identity,
    expected: Option<PublicKey>,
) -> anyhow::Result<quinn::ClientConfig> {
    let provider = provider();
    let verifier = ServerKeyVerifier {
        expected,
        algorithms: provider.signature_verification_algorithms,
    };
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("the ring provider cannot do TLS 1.3")?
        .dangerous() // only to install our own verifier, which checks everything
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_cert_resolver(Arc::new(AlwaysResolvesClientRawPublicKeys::new(
            certified_key(identity)?,
        )));
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.resumption = Resumption::disabled();
    tls.enable_sni = false;
    tls.enable_early_data = false;
    let quic = QuicClientConfig::try_from(tls).context("no QUIC initial cipher suite")?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// The peer's authenticated node key of an established connection (`None` if unavailable,
/// e.g. before the handshake completed).
pub fn peer_key(conn: &quinn::Connection) -> Option<PublicKey> {
    let entries = conn
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    match entries.as_slice() {
        [entry] => key_from_spki(entry),
        _ => None,
    }
}

/// The transport config both sides use: datagrams on (4 MiB buffered each way), a 10 s idle
/// timeout and no QUIC keep-alive (a live link sends something every half second; a
/// connection that carries no link any more is closed by the timeout), MTU discovery from 1200
/// bytes, one bidirectional stream (the link's control stream) and no unidirectional ones (a
/// peer cannot make this node buffer streams it never reads).
pub fn transport_config() -> TransportConfig {
    let mut t = TransportConfig::default();
    t.datagram_receive_buffer_size(Some(DATAGRAM_BUFFER))
        .datagram_send_buffer_size(DATAGRAM_BUFFER)
        .keep_alive_interval(None)
        .max_idle_timeout(Some(IdleTimeout::from(VarInt::from_u32(10_000))))
        .initial_mtu(1200)
        .mtu_discovery_config(Some(MtuDiscoveryConfig::default()))
        .max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spki_roundtrip_and_refusals() {
        let key = Identity::from_seed(&[7; 32]).public_key();
        let der = spki_der(&key);
        assert_eq!(der.len(), 44);
        assert_eq!(key_from_spki(&der), Some(key));
        // Truncated, extended, another algorithm (Ed448's OID ends in 0x71).
        assert_eq!(key_from_spki(&der[..43]), None);
        let mut longer = der.clone();
        longer.push(0);
        assert_eq!(key_from_spki(&longer), None);
        let mut ed448 = der.clone();
        ed448[8] = 0x71;
        assert_eq!(key_from_spki(&ed448), None);
        // The identity point (small order) and a non-canonical encoding.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        assert_eq!(key_from_spki(&spki_der(&PublicKey(weak))), None);
        let mut non_canonical = [0xff; 32];
        non_canonical[0] = 0xee;
        non_canonical[31] = 0x7f;
        assert_eq!(key_from_spki(&spki_der(&PublicKey(non_canonical))), None);
    }
}
