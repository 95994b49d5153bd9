//! What a public connection to a gateway asks for, read from its first bytes without
//! answering anything: the server name of a TLS ClientHello (SNI), or the `Host` of a plain
//! HTTP request. The gateway routes the connection by that name and then passes the bytes
//! through unchanged; it never terminates TLS.
//!
//! Sans-IO: the caller reads into a buffer and calls [`peek`] after each read until it stops
//! saying [`Peek::NeedMore`]. The buffer never needs more than [`MAX_PEEK`] bytes: a longer
//! first record or header is refused, so a client cannot make the gateway hold more for it.
//!
//! The TLS records and ClientHello are parsed by `tls-parser`, HTTP by `httparse`; this file
//! only bounds them and checks the name.

use tls_parser::{
    SNIType, TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_extensions,
    parse_tls_plaintext,
};

/// The most a gateway reads before it knows where a connection goes: one TLS record of the
/// largest size TLS allows (16 KiB and its 5-byte header), or an HTTP request head that long.
pub const MAX_PEEK: usize = 5 + (1 << 14);

/// The longest name accepted (a DNS name's limit).
pub const MAX_NAME: usize = 253;

/// What the first bytes of a connection say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peek {
    /// Not enough bytes yet: read more (the buffer is below [`MAX_PEEK`]).
    NeedMore,
    /// A TLS ClientHello, with its server name if it gave one (lowercase, no trailing dot).
    Tls(Option<String>),
    /// A plain HTTP request, with its `Host` (lowercase, no port, no trailing dot) if it gave
    /// one.
    Http(Option<String>),
    /// Not something the gateway carries; the reason, for the log and the counters.
    Refused(Refusal),
}

/// Why a connection's first bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Neither a TLS handshake record nor an HTTP request line.
    NotTlsOrHttp,
    /// A TLS record longer than TLS allows, or a request head longer than [`MAX_PEEK`].
    TooLong,
    /// A TLS record that does not hold a well-formed ClientHello (garbage, another message,
    /// or a ClientHello split over several records, which no common client sends).
    BadClientHello,
    /// An HTTP request head that does not parse.
    BadHttp,
    /// A server name or `Host` that is not a DNS name (empty, too long, bad characters).
    BadName,
}

impl Refusal {
    /// A short name, for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::NotTlsOrHttp => "not_tls_or_http",
            Refusal::TooLong => "too_long",
            Refusal::BadClientHello => "bad_client_hello",
            Refusal::BadHttp => "bad_http",
            Refusal::BadName => "bad_name",
        }
    }
}

/// Looks at the first bytes of a connection (all of them so far).
pub fn peek(buf: &[u8]) -> Peek {
    match buf.first() {
        None => Peek::NeedMore,
        // A TLS record of type handshake.
        Some(0x16) => peek_tls(buf),
        Some(b) if b.is_ascii_uppercase() => peek_http(buf),
        Some(_) => Peek::Refused(Refusal::NotTlsOrHttp),
    }
}

fn peek_tls(buf: &[u8]) -> Peek {
    let Some(header) = buf.get(..5) else {
        return Peek::NeedMore;
    };
    if header[1] != 3 {
        return Peek::Refused(Refusal::NotTlsOrHttp);
    }
    let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if len > (1 << 14) {
        return Peek::Refused(Refusal::TooLong);
    }
    let Some(record) = buf.get(..5 + len) else {
        return Peek::NeedMore;
    };
    let Ok((_, plain)) = parse_tls_plaintext(record) else {
        return Peek::Refused(Refusal::BadClientHello);
    };
    let hello = plain.msg.iter().find_map(|m| match m {
        TlsMessage::Handshake(TlsMessageHandshake::ClientHello(h)) => Some(h),
        _ => None,
    });
    let Some(hello) = hello else {
        return Peek::Refused(Refusal::BadClientHello);
    };
    let Some(ext) = hello.ext else {
        return Peek::Tls(None);
    };
    let Ok((_, extensions)) = parse_tls_extensions(ext) else {
        return Peek::Refused(Refusal::BadClientHello);
    };
    let sni = extensions.iter().find_map(|e| match e {
        TlsExtension::SNI(names) => Some(names),
        _ => None,
    });
    let Some(names) = sni else {
        return Peek::Tls(None);
    };
    match names.iter().find(|(t, _)| *t == SNIType::HostName) {
        None => Peek::Tls(None),
        Some((_, raw)) => match dns_name(raw) {
            Some(n) => Peek::Tls(Some(n)),
            None => Peek::Refused(Refusal::BadName),
        },
    }
}

fn peek_http(buf: &[u8]) -> Peek {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() >= MAX_PEEK => Peek::Refused(Refusal::TooLong),
        Ok(httparse::Status::Partial) => Peek::NeedMore,
        // Too many headers for the array: a request head no browser sends.
        Err(httparse::Error::TooManyHeaders) => Peek::Refused(Refusal::TooLong),
        Err(_) => Peek::Refused(Refusal::BadHttp),
        Ok(httparse::Status::Complete(_)) => {
            let host = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("host"))
                .map(|h| h.value);
            match host {
                None => Peek::Http(None),
                Some(v) => match dns_name(strip_port(v)) {
                    Some(n) => Peek::Http(Some(n)),
                    None => Peek::Refused(Refusal::BadName),
                },
            }
        }
    }
}

/// `host:port` → `host` (a bracketed IPv6 literal keeps its brackets and is then refused as
/// a name, which is right: services are published under names).
fn strip_port(v: &[u8]) -> &[u8] {
    match v.iter().rposition(|b| *b == b':') {
        Some(i) if !v.contains(&b']') && v[i + 1..].iter().all(u8::is_ascii_digit) => &v[..i],
        _ => v,
    }
}

/// `raw` as a DNS name: letters, digits, `-` and `.`, labels of 1 to 63, at most
/// [`MAX_NAME`] in all; lowercased, a trailing dot dropped. `None` if it is not one.
pub fn dns_name(raw: &[u8]) -> Option<String> {
    let raw = raw.strip_suffix(b".").unwrap_or(raw);
    if raw.is_empty() || raw.len() > MAX_NAME {
        return None;
    }
    let ok = raw.split(|b| *b == b'.').all(|label| {
        (1..=63).contains(&label.len())
            && label
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && !label.starts_with(b"-")
            && !label.ends_with(b"-")
    });
    ok.then(|| String::from_utf8_lossy(raw).to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The first flight of a real TLS client (rustls) asking for `name`.
    fn client_hello(name: &str) -> Vec<u8> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let server = rustls::pki_types::ServerName::try_from(name.to_string()).expect("name");
        let mut conn = rustls::ClientConnection::new(Arc::new(config), server).expect("client");
        let mut out = Vec::new();
        conn.write_tls(&mut out).expect("write");
        out
    }

    #[test]
    fn a_client_hello_gives_its_server_name_once_complete() {
        let hello = client_hello("Shop.Test");
        for cut in [0, 1, 4, 5, 6, hello.len() / 2, hello.len() - 1] {
            assert_eq!(peek(&hello[..cut]), Peek::NeedMore, "cut at {cut}");
        }
        assert_eq!(peek(&hello), Peek::Tls(Some("shop.test".into())));
        // Bytes after the record (the client's next flight) change nothing.
        let mut more = hello.clone();
        more.extend_from_slice(&[0x17, 3, 3, 0, 1, 0]);
        assert_eq!(peek(&more), Peek::Tls(Some("shop.test".into())));
    }

    #[test]
    fn a_client_hello_without_a_name_says_so() {
        // An IP address as the server name: rustls sends no SNI.
        let hello = client_hello("10.1.2.3");
        assert_eq!(peek(&hello), Peek::Tls(None));
    }

    #[test]
    fn bad_tls_is_refused_without_waiting() {
        // A record length above TLS's limit: refused from the header alone.
        assert_eq!(
            peek(&[0x16, 3, 1, 0x40, 0x01]),
            Peek::Refused(Refusal::TooLong)
        );
        // A complete record of garbage.
        let mut junk = vec![0x16, 3, 1, 0, 32];
        junk.extend_from_slice(&[0xAB; 32]);
        assert_eq!(peek(&junk), Peek::Refused(Refusal::BadClientHello));
        // Not a TLS version.
        assert_eq!(
            peek(&[0x16, 9, 9, 0, 1, 0]),
            Peek::Refused(Refusal::NotTlsOrHttp)
        );
        // An SSH banner, a zero byte.
        assert_eq!(
            peek(b"SSH-2.0-OpenSSH_9.2\r\n"),
            Peek::Refused(Refusal::BadHttp)
        );
        assert_eq!(peek(&[0]), Peek::Refused(Refusal::NotTlsOrHttp));
    }

    #[test]
    fn a_bad_server_name_is_refused() {
        let hello = client_hello("shop.test");
        // Replace the name's bytes in place with ones no DNS name has.
        let at = hello
            .windows(9)
            .position(|w| w == b"shop.test")
            .expect("the name is in the hello");
        let mut bad = hello.clone();
        bad[at..at + 9].copy_from_slice(b"shop/test");
        assert_eq!(peek(&bad), Peek::Refused(Refusal::BadName));
    }

    #[test]
    fn http_gives_its_host_once_the_head_is_complete() {
        let req = b"GET / HTTP/1.1\r\nHost: Shop.Test:8080\r\nUser-Agent: curl\r\n\r\n";
        assert_eq!(peek(&req[..20]), Peek::NeedMore);
        assert_eq!(peek(req), Peek::Http(Some("shop.test".into())));
        assert_eq!(
            peek(b"GET / HTTP/1.0\r\n\r\n"),
            Peek::Http(None),
            "HTTP/1.0 without Host"
        );
        assert_eq!(
            peek(b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n"),
            Peek::Refused(Refusal::BadName)
        );
    }

    #[test]
    fn an_endless_http_head_is_refused_at_the_bound() {
        let mut req = b"GET / HTTP/1.1\r\nX: ".to_vec();
        req.resize(MAX_PEEK, b'a');
        assert_eq!(peek(&req), Peek::Refused(Refusal::TooLong));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..100 {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(peek(&many), Peek::Refused(Refusal::TooLong));
    }

    #[test]
    fn names_follow_dns_rules() {
        assert_eq!(dns_name(b"A-b.c."), Some("a-b.c".into()));
        for bad in [
            &b""[..],
            b".",
            b"a..b",
            b"-a.b",
            b"a-.b",
            b"a_b",
            b"a b",
            b"\xc3\xa9.test",
        ] {
            assert_eq!(dns_name(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        let long = format!("{}.test", "a".repeat(64));
        assert_eq!(dns_name(long.as_bytes()), None);
        let total = vec!["a".repeat(63); 4].join(".");
        assert_eq!(dns_name(total.as_bytes()), None, "255 bytes");
    }

    /// Any input: no panic, and never a demand for more than [`MAX_PEEK`] bytes.
    #[test]
    fn arbitrary_bytes_never_panic_or_ask_for_more_than_the_bound() {
        use proptest::prelude::*;
        proptest!(ProptestConfig::with_cases(2000), |(bytes in proptest::collection::vec(any::<u8>(), 0..600), first in prop_oneof![Just(0x16u8), Just(b'G'), any::<u8>()])| {
            let mut b = vec![first];
            b.extend_from_slice(&bytes);
            let _ = peek(&b);
        });
        let mut big = vec![0x16, 3, 1, 0x40, 0x00];
        big.resize(MAX_PEEK, 0);
        assert_ne!(peek(&big), Peek::NeedMore, "a full buffer must be decided");
    }
}
