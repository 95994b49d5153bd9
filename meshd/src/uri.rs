//! Peer and listen URIs: `udp://HOST:PORT[?key=PUBKEY]`, `tcp://…` and `quic://…`, and the
//! [`Endpoint`] (transport and socket address) the link core sends to and hears from.
//!
//! `HOST` is an IPv4 address, an IPv6 address in brackets, or a DNS name. A peer URI may pin the
//! key the peer must present (`?key=` followed by 64 hex digits); a pinned peer that presents
//! another key is refused. Listen URIs take an address (`udp://[::]:7820`), never a key.

use crate::identity::PublicKey;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// The transports a URI can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// Noise over UDP datagrams.
    Udp,
    /// Noise datagrams framed over TCP (for networks that block UDP).
    Tcp,
    /// Noise datagrams in QUIC datagrams (and on a stream when too big), inside a QUIC
    /// connection whose TLS key is the node's key.
    Quic,
}

impl Scheme {
    /// `udp`, `tcp` or `quic`.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Udp => "udp",
            Scheme::Tcp => "tcp",
            Scheme::Quic => "quic",
        }
    }
}

/// Where a link datagram goes or came from: a transport and a socket address. For TCP and
/// QUIC it names the connection (the remote's address and port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    /// The transport.
    pub scheme: Scheme,
    /// The remote socket address.
    pub addr: SocketAddr,
}

impl Endpoint {
    /// A UDP endpoint.
    pub fn udp(addr: SocketAddr) -> Endpoint {
        Endpoint {
            scheme: Scheme::Udp,
            addr,
        }
    }

    /// An endpoint of `scheme`.
    pub fn new(scheme: Scheme, addr: SocketAddr) -> Endpoint {
        Endpoint { scheme, addr }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme.name(), self.addr)
    }
}

/// Where a URI points.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A literal address.
    Ip(IpAddr),
    /// A DNS name, resolved when dialing.
    Name(String),
    /// An IPv6 link-local address with the index of the interface it is on
    /// (`[fe80::1%3]`): how LAN discovery names a neighbour.
    Scoped(std::net::Ipv6Addr, u32),
}

/// A parsed `udp://HOST:PORT[?key=PUBKEY]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerUri {
    /// The transport.
    pub scheme: Scheme,
    /// The host part.
    pub host: Host,
    /// The port.
    pub port: u16,
    /// The key the peer must present, if pinned.
    pub key: Option<PublicKey>,
}

/// Why a URI was rejected; the message says what a valid one looks like.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UriError {
    /// No `scheme://`, or an unknown scheme.
    #[error(
        "unsupported scheme in {0:?}: use udp://HOST:PORT, tcp://HOST:PORT or quic://HOST:PORT"
    )]
    Scheme(String),
    /// Missing or bad `:PORT`.
    #[error("missing or invalid port in {0:?}: use udp://HOST:PORT, e.g. udp://192.0.2.1:7820")]
    Port(String),
    /// Empty or malformed host.
    #[error(
        "invalid host in {0:?}: use an IPv4 address, an IPv6 address in brackets, or a DNS name"
    )]
    Host(String),
    /// Bad `?key=`.
    #[error("invalid key in {uri:?}: {reason}")]
    Key {
        /// The URI.
        uri: String,
        /// Why the key is invalid.
        reason: String,
    },
    /// An unknown `?name=value`.
    #[error("unknown option {0:?} in peer URI: only ?key=PUBKEY is supported")]
    Option(String),
}

impl FromStr for PeerUri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| UriError::Scheme(s.into()))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "udp" => Scheme::Udp,
            "tcp" => Scheme::Tcp,
            "quic" => Scheme::Quic,
            _ => return Err(UriError::Scheme(s.into())),
        };
        let (authority, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        let (host, port) = if let Some(after) = authority.strip_prefix('[') {
            let (h, p) = after
                .split_once(']')
                .ok_or_else(|| UriError::Host(s.into()))?;
            let (h, zone) = match h.split_once('%') {
                Some((h, z)) => (
                    h,
                    Some(z.parse::<u32>().map_err(|_| UriError::Host(s.into()))?),
                ),
                None => (h, None),
            };
            let ip: std::net::Ipv6Addr = h.parse().map_err(|_| UriError::Host(s.into()))?;
            let p = p
                .strip_prefix(':')
                .ok_or_else(|| UriError::Port(s.into()))?;
            let host = match zone {
                Some(z) => Host::Scoped(ip, z),
                None => Host::Ip(IpAddr::V6(ip)),
            };
            (host, p)
        } else {
            let (h, p) = authority
                .rsplit_once(':')
                .ok_or_else(|| UriError::Port(s.into()))?;
            if h.is_empty() || h.contains(':') {
                return Err(UriError::Host(s.into()));
            }
            let host = match h.parse::<std::net::Ipv4Addr>() {
                Ok(ip) => Host::Ip(IpAddr::V4(ip)),
                Err(_) if valid_dns_name(h) => Host::Name(h.to_ascii_lowercase()),
                Err(_) => return Err(UriError::Host(s.into())),
            };
            (host, p)
        };
        let port: u16 = port.parse().map_err(|_| UriError::Port(s.into()))?;
        let mut key = None;
        for pair in query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .filter(|p| !p.is_empty())
        {
            match pair.split_once('=') {
                Some(("key", v)) => {
                    key = Some(v.parse().map_err(|e: crate::identity::KeyParseError| {
                        UriError::Key {
                            uri: s.into(),
                            reason: e.to_string(),
                        }
                    })?)
                }
                _ => return Err(UriError::Option(pair.into())),
            }
        }
        Ok(PeerUri {
            scheme,
            host,
            port,
            key,
        })
    }
}

fn valid_dns_name(h: &str) -> bool {
    h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl PeerUri {
    /// The socket address, if the host is a literal address.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self.host {
            Host::Ip(ip) => Some(SocketAddr::new(ip, self.port)),
            Host::Scoped(ip, zone) => Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip, self.port, 0, zone,
            ))),
            Host::Name(_) => None,
        }
    }

    /// The link endpoint, if the host is a literal address.
    pub fn link_endpoint(&self) -> Option<Endpoint> {
        self.socket_addr().map(|a| Endpoint::new(self.scheme, a))
    }

    /// The same URI without its key: what identifies "this peer entry" regardless of pinning.
    pub fn endpoint(&self) -> String {
        let host = match &self.host {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            Host::Ip(IpAddr::V4(ip)) => ip.to_string(),
            Host::Scoped(ip, zone) => format!("[{ip}%{zone}]"),
            Host::Name(n) => n.clone(),
        };
        format!("{}://{host}:{}", self.scheme.name(), self.port)
    }
}

impl fmt::Display for PeerUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.endpoint())?;
        if let Some(k) = &self.key {
            write!(f, "?key={k}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_addresses_keep_their_interface() {
        let u: PeerUri = "udp://[fe80::1%3]:7820".parse().expect("scoped");
        assert_eq!(u.host, Host::Scoped("fe80::1".parse().expect("ip"), 3));
        let a = u.socket_addr().expect("address");
        assert_eq!(a.to_string(), "[fe80::1%3]:7820");
        assert_eq!(u.to_string(), "udp://[fe80::1%3]:7820");
        assert_eq!(u.to_string().parse::<PeerUri>(), Ok(u));
        // Interfaces are named by index; anything else is refused.
        assert!("udp://[fe80::1%eth0]:7820".parse::<PeerUri>().is_err());
        assert!("udp://[fe80::1%]:7820".parse::<PeerUri>().is_err());
    }

    #[test]
    fn parses_the_forms_users_write() {
        let u: PeerUri = "udp://10.0.0.2:7820".parse().expect("v4");
        assert_eq!(u.socket_addr(), Some("10.0.0.2:7820".parse().expect("lit")));
        let u: PeerUri = "udp://[fd00::2]:7820".parse().expect("v6");
        assert_eq!(
            u.socket_addr(),
            Some("[fd00::2]:7820".parse().expect("lit"))
        );
        let u: PeerUri = "UDP://Node.Example.org:1/".parse().expect("name");
        assert_eq!(u.host, Host::Name("node.example.org".into()));
        let k = crate::identity::Identity::from_seed(&[3; 32]).public_key();
        let u: PeerUri = format!("udp://10.0.0.2:7820?key={k}")
            .parse()
            .expect("pinned");
        assert_eq!(u.key, Some(k));
        assert_eq!(u.to_string(), format!("udp://10.0.0.2:7820?key={k}"));
    }

    #[test]
    fn rejects_with_a_reason() {
        for (s, want) in [
            ("10.0.0.2:7820", "scheme"),
            ("http://10.0.0.2:7820", "scheme"),
            ("udp://10.0.0.2", "port"),
            ("udp://10.0.0.2:99999", "port"),
            ("udp://:7820", "host"),
            ("udp://fd00::2:7820", "host"),
            ("udp://[fd00::2:7820", "host"),
            ("udp://bad_name:7820", "host"),
            ("udp://10.0.0.2:7820?key=zz", "key"),
            ("udp://10.0.0.2:7820?foo=1", "option"),
        ] {
            let e = s
                .parse::<PeerUri>()
                .expect_err(s)
                .to_string()
                .to_lowercase();
            assert!(e.contains(want), "{s}: {e}");
        }
    }
}
