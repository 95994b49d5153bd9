//! Socket protection: an app that routes all of the device's traffic through its own VPN
//! (Android's `VpnService`) must exempt the node's own sockets from that VPN
//! (`VpnService.protect(fd)`), or the node's packets to its peers would loop back into itself.
//!
//! The app hands the node a callback ([`Protect::new`]); the node calls it with every socket
//! it opens towards the underlay (link UDP sockets, TCP listeners, dials and accepted
//! connections, the QUIC endpoint's socket, the LAN discovery socket, the DNS forwarder's
//! socket), right after creating it and before binding, connecting or sending on it. When the
//! app asks for protection to be *required*, a socket the callback refuses is closed unused,
//! and whatever needed it fails with [`Refused`]'s message; otherwise the refusal is logged
//! and the socket used as it is.
//!
//! Sockets towards the overlay (the gateway's, the metrics and DNS listeners, which serve
//! loopback or overlay addresses) are not handed over: protecting them would send them around
//! the VPN, which is where the overlay is.

use std::fmt;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

/// What a socket is for, as the app's callback is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum SocketKind {
    /// A UDP socket of a `udp://` listen address (links and their handshakes).
    Udp = 1,
    /// A TCP listener of a `tcp://` listen address.
    TcpListener = 2,
    /// An outgoing TCP connection to a `tcp://` peer.
    TcpDial = 3,
    /// A TCP connection accepted from a peer.
    TcpAccepted = 4,
    /// The UDP socket of the QUIC endpoint (`quic://` links).
    Quic = 5,
    /// The LAN discovery socket.
    Discovery = 6,
    /// The DNS forwarder's socket to the upstream resolver.
    Dns = 7,
}

impl fmt::Display for SocketKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SocketKind::Udp => "UDP",
            SocketKind::TcpListener => "TCP listening",
            SocketKind::TcpDial => "TCP dial",
            SocketKind::TcpAccepted => "accepted TCP",
            SocketKind::Quic => "QUIC",
            SocketKind::Discovery => "LAN discovery",
            SocketKind::Dns => "DNS forwarding",
        })
    }
}

/// The app's callback: `true` when it protected the socket.
pub type ProtectFn = dyn Fn(RawFd, SocketKind) -> bool + Send + Sync;

/// Protection refused for a socket the node needs, with protection required.
#[derive(Debug, Clone)]
pub struct Refused {
    /// What the socket was for.
    pub kind: SocketKind,
    /// Where it was to be bound or connected.
    pub what: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the app's protect callback refused the {} socket for {} (it returned false); \
             protection is required, so the node does not use an unprotected socket (call \
             VpnService.protect in the callback and return true, or do not require protection)",
            self.kind, self.what
        )
    }
}

impl std::error::Error for Refused {}

impl From<Refused> for std::io::Error {
    fn from(r: Refused) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::PermissionDenied, r)
    }
}

struct Inner {
    f: Box<ProtectFn>,
    required: bool,
}

/// The node's socket protection: none (the default: a daemon, a desktop), or the app's
/// callback. Cheap to clone.
#[derive(Clone, Default)]
pub struct Protect(Option<Arc<Inner>>);

impl fmt::Debug for Protect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Protect(none)"),
            Some(i) => write!(f, "Protect(required: {})", i.required),
        }
    }
}

impl Protect {
    /// Protection by `f`; `required`: refuse to use a socket `f` did not protect.
    pub fn new(f: Box<ProtectFn>, required: bool) -> Protect {
        Protect(Some(Arc::new(Inner { f, required })))
    }

    /// No protection: sockets are used as they are.
    pub fn none() -> Protect {
        Protect(None)
    }

    /// Whether an app's callback is set.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Hands `sock` (new, not yet bound, connected or used) to the app's callback. Errs only
    /// when protection is required and the callback refused; `what` names the address for
    /// the message.
    pub fn socket(
        &self,
        sock: &impl AsRawFd,
        kind: SocketKind,
        what: impl fmt::Display,
    ) -> Result<(), Refused> {
        let Some(inner) = &self.0 else {
            return Ok(());
        };
        if (inner.f)(sock.as_raw_fd(), kind) {
            return Ok(());
        }
        let refused = Refused {
            kind,
            what: what.to_string(),
        };
        if inner.required {
            tracing::error!("{refused}");
            return Err(refused);
        }
        tracing::warn!(
            "the app's protect callback refused the {kind} socket for {} (it returned false); \
             using it unprotected, since protection is not required",
            refused.what
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn none_lets_every_socket_through() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
        assert!(Protect::none().socket(&s, SocketKind::Udp, "x").is_ok());
        assert!(!Protect::default().is_set());
    }

    #[test]
    fn refusal_fails_only_when_required() {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        let refuse = move |fd, kind| {
            seen2.lock().expect("lock").push((fd, kind));
            false
        };
        let optional = Protect::new(Box::new(refuse.clone()), false);
        assert!(optional.socket(&s, SocketKind::Udp, "udp://[::]:1").is_ok());
        let required = Protect::new(Box::new(refuse), true);
        let e = required
            .socket(&s, SocketKind::Quic, "quic://[::]:2")
            .expect_err("refused");
        let msg = e.to_string();
        assert!(msg.contains("QUIC socket for quic://[::]:2"), "{msg}");
        assert!(msg.contains("VpnService.protect"), "{msg}");
        let fd = s.as_raw_fd();
        assert_eq!(
            *seen.lock().expect("lock"),
            vec![(fd, SocketKind::Udp), (fd, SocketKind::Quic)]
        );
    }
}
