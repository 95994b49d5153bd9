//! QUIC links authenticate with the node keys, both ways, on real sockets (127.0.0.1).
//!
//! Each test runs a quinn server and client endpoint on loopback, bounded by a timeout. Besides
//! the configurations `meshd::quic_tls` builds, some tests use hand-made rustls configurations
//! that a hostile peer could run: one that offers no client key, and ones that present a key
//! they cannot sign with (rustls does not check that a raw key matches its signer, so such a
//! forgery is easy to build; the peer's `CertificateVerify` check must catch it).

use anyhow::{Context, bail};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use meshd::identity::{Identity, PublicKey};
use meshd::quic_tls::{ALPN, client_config, peer_key, server_config, transport_config};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ClientConfig, Connection, Endpoint, ServerConfig};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{AlwaysResolvesClientRawPublicKeys, ResolvesClientCert};
use rustls::crypto::ring;
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::AlwaysResolvesServerRawPublicKeys;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const SERVER_NAME: &str = "planetary-lan";

/// Runs a test body with a deadline.
async fn bounded<T>(body: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs(15), body)
        .await
        .context("test timed out")?
}

/// What happened on each side of one connection attempt.
struct Attempt {
    client: Result<Connection, quinn::ConnectionError>,
    server: Result<Connection, quinn::ConnectionError>,
    /// Kept so the connections stay up while the test looks at them.
    _endpoints: (Endpoint, Endpoint),
}

/// Connects a client with `client` to a server with `server` on loopback. Each side's
/// result is waited for until the handshake is *confirmed* (a client that completed its side
/// may still be refused by the server a moment later), or the connection closed.
async fn attempt(server: ServerConfig, client: ClientConfig) -> anyhow::Result<Attempt> {
    let loopback: SocketAddr = "127.0.0.1:0".parse()?;
    let server_ep = Endpoint::server(server, loopback)?;
    let server_addr = server_ep.local_addr()?;
    let client_ep = Endpoint::client(loopback)?;
    let connecting = client_ep.connect_with(client, server_addr, SERVER_NAME)?;
    let accepting = async {
        let incoming = server_ep.accept().await.context("server endpoint closed")?;
        anyhow::Ok(incoming.await)
    };
    let (client_res, server_res) = tokio::join!(connecting, accepting);
    let server_res = server_res?;
    // The server has decided by now; a client it refused learns of it within one round trip
    // (the server's CONNECTION_CLOSE), far below this grace period on loopback.
    let client_res = match client_res {
        Ok(conn) => match tokio::time::timeout(Duration::from_millis(300), conn.closed()).await {
            Ok(reason) => Err(reason),
            Err(_) => Ok(conn),
        },
        Err(e) => Err(e),
    };
    Ok(Attempt {
        client: client_res,
        server: server_res,
        _endpoints: (server_ep, client_ep),
    })
}

/// Checks that one side's handshake failed, and why.
fn refused(side: Result<Connection, quinn::ConnectionError>, why: &str) -> anyhow::Result<()> {
    match side {
        Ok(_) => bail!("the connection was accepted; expected a refusal for {why:?}"),
        Err(e) if e.to_string().contains(why) || format!("{e:?}").contains(why) => Ok(()),
        Err(e) => bail!("refused for another reason than {why:?}: {e}"),
    }
}

/// A datagram and a stream message each way.
async fn exchange(client: &Connection, server: &Connection) -> anyhow::Result<()> {
    client.send_datagram(b"datagram from client".to_vec().into())?;
    assert_eq!(&server.read_datagram().await?[..], b"datagram from client");
    server.send_datagram(b"datagram from server".to_vec().into())?;
    assert_eq!(&client.read_datagram().await?[..], b"datagram from server");

    let (mut c_send, mut c_recv) = client.open_bi().await?;
    c_send.write_all(b"control from client").await?;
    c_send.finish()?;
    let (mut s_send, mut s_recv) = server.accept_bi().await?;
    assert_eq!(s_recv.read_to_end(1024).await?, b"control from client");
    s_send.write_all(b"control from server").await?;
    s_send.finish()?;
    assert_eq!(c_recv.read_to_end(1024).await?, b"control from server");
    Ok(())
}

// ---- Hand-made peers ----

/// Verifies nothing: accepts any server or client key and any signature. Still asks for raw
/// keys, so that the handshakes below fail only for the reason each test is about.
#[derive(Debug)]
struct AcceptAnything;

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

impl ClientCertVerifier for AcceptAnything {
    fn client_auth_mandatory(&self) -> bool {
        true
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

/// Says it has raw keys, then sends an empty `Certificate`.
#[derive(Debug)]
struct NoKey;

impl ResolvesClientCert for NoKey {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        None
    }
    fn only_raw_public_keys(&self) -> bool {
        true
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// Presents `shown`'s raw key but signs with the key of `signer_seed`.
fn presented_key(shown: PublicKey, signer_seed: &[u8; 32]) -> anyhow::Result<Arc<CertifiedKey>> {
    let pkcs8 = ed25519_dalek::SigningKey::from_bytes(signer_seed)
        .to_pkcs8_der()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let signer = ring::sign::any_eddsa_type(&PrivatePkcs8KeyDer::from(pkcs8.as_bytes()))?;
    let mut spki = vec![
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];
    spki.extend_from_slice(&shown.0);
    Ok(Arc::new(CertifiedKey::new(vec![spki.into()], signer)))
}

fn tls_client(
    resolver: Option<Arc<dyn ResolvesClientCert>>,
) -> anyhow::Result<quinn::ClientConfig> {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything));
    let mut tls = match resolver {
        Some(r) => builder.with_client_cert_resolver(r),
        None => builder.with_no_client_auth(),
    };
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

fn tls_server(key: Arc<CertifiedKey>) -> anyhow::Result<quinn::ServerConfig> {
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(AcceptAnything))
        .with_cert_resolver(Arc::new(AlwaysResolvesServerRawPublicKeys::new(key)));
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    config.transport_config(Arc::new(transport_config()));
    Ok(config)
}

/// The tests, named so that `cargo test quic_tls` selects them.
mod quic_tls {
    use super::*;

    #[tokio::test]
    async fn pinned_client_connects_and_both_sides_see_the_right_keys() -> anyhow::Result<()> {
        bounded(async {
            let server_id = Identity::from_seed(&[1; 32]);
            let client_id = Identity::from_seed(&[2; 32]);
            let a = attempt(
                server_config(&server_id)?,
                client_config(&client_id, Some(server_id.public_key()))?,
            )
            .await?;
            let (client, server) = (a.client?, a.server?);
            assert_eq!(peer_key(&client), Some(server_id.public_key()));
            assert_eq!(peer_key(&server), Some(client_id.public_key()));
            assert_eq!(
                client.handshake_data().and_then(|d| {
                    d.downcast::<quinn::crypto::rustls::HandshakeData>()
                        .ok()?
                        .protocol
                }),
                Some(ALPN.to_vec())
            );
            // Datagrams are on, and at least a minimum-MTU packet's worth fits in one.
            let max = client.max_datagram_size().context("datagrams are off")?;
            assert!(max >= 1100, "max datagram size {max}");
            exchange(&client, &server).await
        })
        .await
    }

    #[tokio::test]
    async fn client_expecting_another_key_fails() -> anyhow::Result<()> {
        bounded(async {
            let server_id = Identity::from_seed(&[1; 32]);
            let client_id = Identity::from_seed(&[2; 32]);
            let other = Identity::from_seed(&[3; 32]).public_key();
            let a = attempt(
                server_config(&server_id)?,
                client_config(&client_id, Some(other))?,
            )
            .await?;
            let why = format!("expected {other}");
            refused(a.client, &why)?;
            refused(a.server, &why)
        })
        .await
    }

    #[tokio::test]
    async fn unpinned_client_accepts_any_server_key() -> anyhow::Result<()> {
        bounded(async {
            let server_id = Identity::generate()?;
            let client_id = Identity::generate()?;
            let a = attempt(server_config(&server_id)?, client_config(&client_id, None)?).await?;
            let (client, server) = (a.client?, a.server?);
            assert_eq!(peer_key(&client), Some(server_id.public_key()));
            assert_eq!(peer_key(&server), Some(client_id.public_key()));
            Ok(())
        })
        .await
    }

    #[tokio::test]
    async fn server_refuses_a_client_without_a_key() -> anyhow::Result<()> {
        bounded(async {
            let server_id = Identity::from_seed(&[1; 32]);
            // Offers no client certificate type at all, as a plain TLS client does.
            let a = attempt(server_config(&server_id)?, tls_client(None)?).await?;
            refused(a.server, "IncorrectCertificateTypeExtension")?;
            refused(a.client, "IncorrectCertificateTypeExtension")?;
            // Offers raw keys, then sends no key.
            let a = attempt(
                server_config(&server_id)?,
                tls_client(Some(Arc::new(NoKey)))?,
            )
            .await?;
            refused(a.server, "peer sent no certificates")?;
            refused(a.client, "peer sent no certificates")
        })
        .await
    }

    #[tokio::test]
    async fn a_server_that_cannot_sign_with_its_key_is_refused() -> anyhow::Result<()> {
        bounded(async {
            let (k_seed, l_seed) = ([1; 32], [9; 32]);
            let k = Identity::from_seed(&k_seed).public_key();
            let client_id = Identity::from_seed(&[2; 32]);
            // Control: the hand-made server with the right signer is accepted.
            let a = attempt(
                tls_server(presented_key(k, &k_seed)?)?,
                client_config(&client_id, Some(k))?,
            )
            .await?;
            assert_eq!(peer_key(&a.client?), Some(k));
            // Shows K, signs with L: pinned and unpinned clients both refuse it.
            for expected in [Some(k), None] {
                let a = attempt(
                    tls_server(presented_key(k, &l_seed)?)?,
                    client_config(&client_id, expected)?,
                )
                .await?;
                refused(a.client, "BadSignature")?;
                refused(a.server, "BadSignature")?;
            }
            Ok(())
        })
        .await
    }

    #[tokio::test]
    async fn a_client_that_cannot_sign_with_its_key_is_refused() -> anyhow::Result<()> {
        bounded(async {
            let (k_seed, l_seed) = ([2; 32], [9; 32]);
            let k = Identity::from_seed(&k_seed).public_key();
            let server_id = Identity::from_seed(&[1; 32]);
            let forged = |seed: [u8; 32]| -> anyhow::Result<quinn::ClientConfig> {
                tls_client(Some(Arc::new(AlwaysResolvesClientRawPublicKeys::new(
                    presented_key(k, &seed)?,
                ))))
            };
            // Control: the hand-made client with the right signer is accepted.
            let a = attempt(server_config(&server_id)?, forged(k_seed)?).await?;
            assert_eq!(peer_key(&a.server?), Some(k));
            // Shows K, signs with L.
            let a = attempt(server_config(&server_id)?, forged(l_seed)?).await?;
            refused(a.server, "BadSignature")?;
            refused(a.client, "BadSignature")
        })
        .await
    }
}
