//! What a publisher and a gateway say to each other. Every connection the publisher dials
//! starts with a hello and the gateway's answer. A *control* connection (op publish) then
//! carries nothing: it holds the name's service up while it is open. A *data* connection (op
//! data) waits idle until the gateway gives it a public connection, whose client it names
//! first; then it carries that connection's bytes both ways.
//!
//! ```text
//!  publisher ─▶ gateway   Hello:   "PLGW" 1 | op (1 publish, 2 release, 3 data) | kind |
//!                                  key (32) | name length (1) | name
//!  gateway ─▶ publisher   Answer:  "PLGW" 1 | 0 ok, 1 refused | message length (2) | message
//!  on a data connection, when a public connection takes it:
//!  gateway ─▶ publisher   Client:  4 | IPv4 (4) | port (2)   or   6 | IPv6 (16) | port (2)
//! ```
//!
//! Parsers take what has arrived so far and say `Ok(None)` until the whole message is there;
//! anything malformed is an error, never a panic. Every field is bounded: a hello is at most
//! 295 bytes, an answer at most 1,031.

use super::peek::{MAX_NAME, dns_name};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const MAGIC: &[u8; 4] = b"PLGW";
const VERSION: u8 = 1;
/// The longest answer message.
pub const MAX_MESSAGE: usize = 1024;

/// How the gateway tells a service's connections apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// TLS, routed by the ClientHello's server name and passed through.
    Tls,
    /// Plain HTTP, routed by `Host`.
    Http,
    /// A raw TCP port of the gateway (`[[gateway.tcp]]`).
    Tcp,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 3] = [Kind::Tls, Kind::Http, Kind::Tcp];

    /// `tls`, `http`, `tcp`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tls => "tls",
            Kind::Http => "http",
            Kind::Tcp => "tcp",
        }
    }

    /// From its name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    fn code(self) -> u8 {
        match self {
            Kind::Tls => 1,
            Kind::Http => 2,
            Kind::Tcp => 3,
        }
    }

    fn of_code(c: u8) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.code() == c)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a publisher asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Carry this name's connections to me on this connection.
    Publish,
    /// I no longer publish this name: forget that I hold it.
    Release,
    /// A data connection for a name I publish (and whose control connection is open): keep it
    /// idle until a public connection needs it.
    Data,
}

/// The first message on a publisher's connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Publish or release.
    pub op: Op,
    /// The kind.
    pub kind: Kind,
    /// The publisher's key (its node address must be the connection's source).
    pub key: [u8; 32],
    /// The name (a DNS name, lowercase).
    pub name: String,
}

/// A message that is not what the protocol allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WireError(pub &'static str);

impl Hello {
    /// The bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(41 + self.name.len());
        b.extend_from_slice(MAGIC);
        b.push(VERSION);
        b.push(match self.op {
            Op::Publish => 1,
            Op::Release => 2,
            Op::Data => 3,
        });
        b.push(self.kind.code());
        b.extend_from_slice(&self.key);
        b.push(self.name.len().min(MAX_NAME) as u8);
        b.extend_from_slice(&self.name.as_bytes()[..self.name.len().min(MAX_NAME)]);
        b
    }

    /// A hello from the first bytes of a connection, and its length.
    pub fn parse(buf: &[u8]) -> Result<Option<(Hello, usize)>, WireError> {
        if header(buf)?.is_none() {
            return Ok(None);
        }
        let Some(&[op, kind]) = buf.get(5..7) else {
            return Ok(None);
        };
        let op = match op {
            1 => Op::Publish,
            2 => Op::Release,
            3 => Op::Data,
            _ => return Err(WireError("unknown operation")),
        };
        let kind = Kind::of_code(kind).ok_or(WireError("unknown kind"))?;
        let Some(key) = buf.get(7..39) else {
            return Ok(None);
        };
        let Some(&len) = buf.get(39) else {
            return Ok(None);
        };
        let len = usize::from(len);
        if len == 0 || len > MAX_NAME {
            return Err(WireError("bad name length"));
        }
        let Some(raw) = buf.get(40..40 + len) else {
            return Ok(None);
        };
        let name = dns_name(raw).ok_or(WireError("the name is not a DNS name"))?;
        let mut k = [0u8; 32];
        k.copy_from_slice(key);
        Ok(Some((
            Hello {
                op,
                kind,
                key: k,
                name,
            },
            40 + len,
        )))
    }
}

/// `Ok(Some(()))` once the magic and version are there and right.
fn header(buf: &[u8]) -> Result<Option<()>, WireError> {
    let n = buf.len().min(4);
    if buf[..n] != MAGIC[..n] {
        return Err(WireError("not a Planetary LAN gateway connection"));
    }
    match buf.get(4) {
        None => Ok(None),
        Some(&VERSION) => Ok(Some(())),
        Some(_) => Err(WireError("unsupported gateway protocol version")),
    }
}

/// The gateway's answer to a hello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Done.
    Ok,
    /// Refused, with the reason (for the publisher's log and `meshctl services`).
    Refused(String),
}

impl Answer {
    /// The bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(MAGIC);
        b.push(VERSION);
        match self {
            Answer::Ok => b.extend_from_slice(&[0, 0, 0]),
            Answer::Refused(m) => {
                let mut end = m.len().min(MAX_MESSAGE);
                while !m.is_char_boundary(end) {
                    end -= 1;
                }
                b.push(1);
                b.extend_from_slice(&(end as u16).to_be_bytes());
                b.extend_from_slice(&m.as_bytes()[..end]);
            }
        }
        b
    }

    /// An answer from what has arrived, and its length.
    pub fn parse(buf: &[u8]) -> Result<Option<(Answer, usize)>, WireError> {
        if header(buf)?.is_none() {
            return Ok(None);
        }
        let Some(&[status, l0, l1]) = buf.get(5..8) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if len > MAX_MESSAGE {
            return Err(WireError("answer message too long"));
        }
        let Some(msg) = buf.get(8..8 + len) else {
            return Ok(None);
        };
        let answer = match status {
            0 => Answer::Ok,
            1 => Answer::Refused(String::from_utf8_lossy(msg).into_owned()),
            _ => return Err(WireError("unknown answer")),
        };
        Ok(Some((answer, 8 + len)))
    }
}

/// The client a stream carries: written first on each stream.
pub fn encode_client(addr: SocketAddr) -> Vec<u8> {
    let mut b = Vec::with_capacity(19);
    match addr.ip() {
        IpAddr::V4(a) => {
            b.push(4);
            b.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            b.push(6);
            b.extend_from_slice(&a.octets());
        }
    }
    b.extend_from_slice(&addr.port().to_be_bytes());
    b
}

/// The client of a stream, and the header's length.
pub fn parse_client(buf: &[u8]) -> Result<Option<(SocketAddr, usize)>, WireError> {
    let (ip, n): (IpAddr, usize) = match buf.first() {
        None => return Ok(None),
        Some(4) => match buf.get(1..5) {
            None => return Ok(None),
            Some(o) => (Ipv4Addr::new(o[0], o[1], o[2], o[3]).into(), 5),
        },
        Some(6) => match buf.get(1..17) {
            None => return Ok(None),
            Some(o) => {
                let mut a = [0u8; 16];
                a.copy_from_slice(o);
                (Ipv6Addr::from(a).into(), 17)
            }
        },
        Some(_) => return Err(WireError("bad client address family")),
    };
    let Some(&[p0, p1]) = buf.get(n..n + 2) else {
        return Ok(None);
    };
    Ok(Some((
        SocketAddr::new(ip, u16::from_be_bytes([p0, p1])),
        n + 2,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn messages_round_trip_and_wait_for_their_last_byte() {
        let h = Hello {
            op: Op::Publish,
            kind: Kind::Http,
            key: [7; 32],
            name: "shop.test".into(),
        };
        let b = h.encode();
        for i in 0..b.len() {
            assert_eq!(Hello::parse(&b[..i]), Ok(None), "{i} bytes");
        }
        assert_eq!(Hello::parse(&b), Ok(Some((h, b.len()))));
        for a in [Answer::Ok, Answer::Refused("no: ✗".into())] {
            let b = a.encode();
            for i in 0..b.len() {
                assert_eq!(Answer::parse(&b[..i]), Ok(None));
            }
            assert_eq!(Answer::parse(&b), Ok(Some((a, b.len()))));
        }
        for c in ["192.0.2.1:443", "[2001:db8::1]:65535"] {
            let c: SocketAddr = c.parse().expect("addr");
            let b = encode_client(c);
            assert_eq!(parse_client(&b[..b.len() - 1]), Ok(None));
            assert_eq!(parse_client(&b), Ok(Some((c, b.len()))));
        }
        // A refusal longer than the limit is cut at a character boundary.
        let long = "é".repeat(MAX_MESSAGE);
        let b = Answer::Refused(long).encode();
        assert!(
            matches!(Answer::parse(&b), Ok(Some((Answer::Refused(m), _))) if m.len() <= MAX_MESSAGE)
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert!(Hello::parse(b"GET / HTTP/1.1").is_err());
        assert!(Hello::parse(b"PLGW\x02").is_err());
        let mut b = Hello {
            op: Op::Release,
            kind: Kind::Tls,
            key: [1; 32],
            name: "a.b".into(),
        }
        .encode();
        b[40] = b' ';
        assert!(Hello::parse(&b).is_err());
        b[39] = 0;
        assert!(Hello::parse(&b).is_err());
        assert!(Answer::parse(b"PLGW\x01\x07\x00\x00").is_err());
        assert!(Answer::parse(b"PLGW\x01\x01\xff\xff").is_err());
        assert!(parse_client(&[5, 1, 2]).is_err());
    }

    proptest! {
        #[test]
        fn no_input_panics(b in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = Hello::parse(&b);
            let _ = Answer::parse(&b);
            let _ = parse_client(&b);
            let mut m = b"PLGW\x01".to_vec();
            m.extend_from_slice(&b);
            let _ = Hello::parse(&m);
            let _ = Answer::parse(&m);
        }
    }
}
