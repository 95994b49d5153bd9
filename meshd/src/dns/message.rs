//! One DNS query in, one decision out, sans-IO: answer now (key names, errors, names of
//! other zones), look a mesh name up first, or forward to the upstream resolver.
//!
//! ```text
//!  bytes ─► Message::from_vec ─► checks (a query, opcode QUERY, one question)
//!        ─► under the suffix?  no ─► Forward (if an upstream is set) or REFUSED
//!                              yes ─► the suffix itself or a deeper name: NOERROR/NXDOMAIN
//!                                     a key name: AAAA/TXT now, offline
//!                                     a mesh name: Lookup(Question) ─► answer(question, …)
//! ```
//!
//! Nothing here panics on any input (`meshd/fuzz/fuzz_targets/dns_query.rs`); a datagram that
//! is not a query is dropped unanswered (never answer an answer: no loops, no reflection of
//! responses).

use super::keyname;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{AAAA, TXT};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::net::Ipv6Addr;

/// The TTL of answers about mesh names: short, so that a released name leaves caches soon.
pub const NAME_TTL: u32 = 10;
/// The TTL of answers about key names (they never change).
pub const KEY_TTL: u32 = 3600;
/// The largest UDP answer sent to a client that announced more (EDNS), the DNS flag day's size.
pub const MAX_UDP_ANSWER: u16 = 1232;
/// The largest UDP answer to a client without EDNS (RFC 1035).
pub const PLAIN_UDP_ANSWER: u16 = 512;

/// What a mesh name resolved to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAnswer {
    /// The owner's key.
    pub key: [u8; 32],
    /// The address to answer AAAA with: the record's service address, else the owner's node
    /// address.
    pub addr: Ipv6Addr,
}

/// How a query came in (its answer's size limit depends on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A datagram: 512 bytes, or what EDNS announced up to [`MAX_UDP_ANSWER`].
    Udp,
    /// A TCP stream: 65,535 bytes.
    Tcp,
}

/// A query for a mesh name, waiting for its lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    query: Message,
    /// The name (one label, lowercase), as the routing core takes it.
    pub name: String,
    transport: Transport,
}

/// What to do with a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Look `Question::name` up, then [`answer`] (or [`fail`]).
    Lookup(Question),
    /// Send the query as it is to the upstream resolver, and its answer back.
    Forward,
    /// Not a query: send nothing.
    Drop,
}

/// The responder's settings.
#[derive(Debug, Clone)]
pub struct Zone {
    suffix: Name,
    forward: bool,
}

impl Zone {
    /// The zone of `suffix` (checked by the configuration: labels of `a-z 0-9 -`); `forward`:
    /// an upstream takes the other names.
    pub fn new(suffix: &str, forward: bool) -> Result<Zone, String> {
        let mut suffix = Name::from_ascii(suffix)
            .map_err(|e| format!("dns.suffix {suffix:?} is not a DNS name: {e}"))?
            .to_lowercase();
        suffix.set_fqdn(true);
        Ok(Zone { suffix, forward })
    }

    /// Decides what to do with the query in `bytes`.
    pub fn handle(&self, bytes: &[u8], transport: Transport) -> Step {
        let query = match Message::from_vec(bytes) {
            Ok(m) => m,
            // A query we cannot read: FORMERR if its header says it is a query.
            Err(_) => return format_error(bytes),
        };
        if query.message_type != MessageType::Query {
            return Step::Drop;
        }
        if query.op_code != OpCode::Query {
            return Step::Reply(reply(
                &query,
                ResponseCode::NotImp,
                vec![],
                transport,
                false,
            ));
        }
        let [q] = query.queries.as_slice() else {
            return Step::Reply(reply(
                &query,
                ResponseCode::FormErr,
                vec![],
                transport,
                false,
            ));
        };
        let qname = q.name().to_lowercase();
        if !self.suffix.zone_of(&qname) {
            return match self.forward {
                true => Step::Forward,
                false => Step::Reply(reply(
                    &query,
                    ResponseCode::Refused,
                    vec![],
                    transport,
                    false,
                )),
            };
        }
        let depth = qname.num_labels().saturating_sub(self.suffix.num_labels());
        let label = qname
            .iter()
            .next()
            .map(|l| String::from_utf8_lossy(l).into_owned());
        let label = match (depth, label) {
            // The suffix itself: it exists, with nothing to say about it.
            (0, _) => {
                return Step::Reply(reply(
                    &query,
                    ResponseCode::NoError,
                    vec![],
                    transport,
                    true,
                ));
            }
            (1, Some(l)) => l,
            // Names are single labels: nothing lives deeper.
            _ => {
                return Step::Reply(reply(
                    &query,
                    ResponseCode::NXDomain,
                    vec![],
                    transport,
                    true,
                ));
            }
        };
        if q.query_class() != DNSClass::IN && q.query_class() != DNSClass::ANY {
            return Step::Reply(reply(
                &query,
                ResponseCode::Refused,
                vec![],
                transport,
                false,
            ));
        }
        if let Some(key) = keyname::decode(&label) {
            let found = NameAnswer {
                key,
                addr: routing::address::node_address(&key),
            };
            let answers = records(q, Some(&found), KEY_TTL);
            return Step::Reply(reply(
                &query,
                ResponseCode::NoError,
                answers,
                transport,
                true,
            ));
        }
        let Some(name) = super::valid_name(&label) else {
            return Step::Reply(reply(
                &query,
                ResponseCode::NXDomain,
                vec![],
                transport,
                true,
            ));
        };
        match q.query_type() {
            RecordType::AAAA | RecordType::TXT | RecordType::ANY => Step::Lookup(Question {
                query,
                name,
                transport,
            }),
            // A names that may exist has no A record: NOERROR, nothing (no lookup spent).
            _ => Step::Reply(reply(
                &query,
                ResponseCode::NoError,
                vec![],
                transport,
                true,
            )),
        }
    }
}

/// The answer to `q` once its lookup finished: `None`, no such name (NXDOMAIN).
pub fn answer(q: &Question, found: Option<&NameAnswer>) -> Vec<u8> {
    let Some(query) = q.query.queries.first() else {
        return reply(&q.query, ResponseCode::ServFail, vec![], q.transport, false);
    };
    match found {
        Some(f) => {
            let answers = records(query, Some(f), NAME_TTL);
            reply(&q.query, ResponseCode::NoError, answers, q.transport, true)
        }
        None => reply(&q.query, ResponseCode::NXDomain, vec![], q.transport, true),
    }
}

/// The answer to `q` when its lookup could not be made or took too long (SERVFAIL).
pub fn fail(q: &Question) -> Vec<u8> {
    reply(&q.query, ResponseCode::ServFail, vec![], q.transport, false)
}

/// SERVFAIL for a query that could not be forwarded (the upstream did not answer); `None` if
/// `bytes` is not a readable query.
pub fn servfail(bytes: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let query = Message::from_vec(bytes).ok()?;
    (query.message_type == MessageType::Query)
        .then(|| reply(&query, ResponseCode::ServFail, vec![], transport, false))
}

/// The AAAA and TXT records `q` asks for.
fn records(q: &Query, found: Option<&NameAnswer>, ttl: u32) -> Vec<Record> {
    let Some(f) = found else { return vec![] };
    let name = q.name().clone();
    let t = q.query_type();
    let mut out = Vec::new();
    if matches!(t, RecordType::AAAA | RecordType::ANY) {
        out.push(Record::from_rdata(
            name.clone(),
            ttl,
            RData::AAAA(AAAA(f.addr)),
        ));
    }
    if matches!(t, RecordType::TXT | RecordType::ANY) {
        let hex: String = f.key.iter().map(|b| format!("{b:02x}")).collect();
        out.push(Record::from_rdata(
            name,
            ttl,
            RData::TXT(TXT::new(vec![hex])),
        ));
    }
    out
}

/// FORMERR for a message whose header reads as a query; nothing for anything else.
fn format_error(bytes: &[u8]) -> Step {
    match bytes {
        [a, b, flags, ..] if bytes.len() >= 12 && flags & 0x80 == 0 => {
            let id = u16::from_be_bytes([*a, *b]);
            let m = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
            m.to_vec().map_or(Step::Drop, Step::Reply)
        }
        _ => Step::Drop,
    }
}

/// The response to `query`, within the size the client can take (else truncated: TC set, the
/// answers left out, so that it asks again over TCP).
fn reply(
    query: &Message,
    code: ResponseCode,
    answers: Vec<Record>,
    transport: Transport,
    authoritative: bool,
) -> Vec<u8> {
    let mut m = Message::response(query.id, query.op_code);
    m.metadata.recursion_desired = query.recursion_desired;
    m.metadata.authoritative = authoritative;
    m.metadata.response_code = code;
    // The question, echoed: only the first (a query with several is refused, and its
    // answer must not grow with them).
    m.add_queries(query.queries.iter().take(1).cloned());
    m.add_answers(answers);
    let limit = match (transport, &query.edns) {
        (Transport::Tcp, _) => u16::MAX,
        (Transport::Udp, None) => PLAIN_UDP_ANSWER,
        (Transport::Udp, Some(e)) => e.max_payload().clamp(PLAIN_UDP_ANSWER, MAX_UDP_ANSWER),
    };
    if query.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(MAX_UDP_ANSWER);
        m.set_edns(e);
    }
    let bytes = match m.to_vec() {
        Ok(b) => b,
        Err(_) => return server_failure(query.id),
    };
    if bytes.len() <= usize::from(limit) {
        return bytes;
    }
    match m.truncate().to_vec() {
        Ok(b) if b.len() <= usize::from(limit) => b,
        // Not even the question fits: the header alone, truncated.
        _ => {
            let mut h = Message::response(query.id, query.op_code);
            h.metadata = m.metadata;
            h.metadata.truncation = true;
            h.to_vec().unwrap_or_else(|_| server_failure(query.id))
        }
    }
}

/// A bare SERVFAIL (a response that could not be encoded, which should not happen).
fn server_failure(id: u16) -> Vec<u8> {
    let m = Message::error_msg(id, OpCode::Query, ResponseCode::ServFail);
    m.to_vec().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, t: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        // Any bytes as labels (from_ascii refuses some that arrive off the wire).
        let labels: Vec<&[u8]> = name
            .trim_end_matches('.')
            .split('.')
            .map(str::as_bytes)
            .collect();
        let mut n = Name::from_labels(labels).expect("name");
        n.set_fqdn(true);
        m.add_query(Query::query(n, t));
        m.to_vec().expect("encode")
    }

    fn parse(b: &[u8]) -> Message {
        Message::from_vec(b).expect("a valid answer")
    }

    fn zone() -> Zone {
        Zone::new("mesh", false).expect("zone")
    }

    #[test]
    fn key_names_answer_offline() {
        let key = [7u8; 32];
        let name = format!("{}.mesh.", keyname::encode(&key));
        let Step::Reply(r) = zone().handle(&query(&name, RecordType::ANY), Transport::Udp) else {
            panic!("a key name is answered at once");
        };
        let m = parse(&r);
        assert_eq!(m.response_code, ResponseCode::NoError);
        assert!(m.authoritative);
        let want = routing::address::node_address(&key);
        assert!(m.answers.iter().any(|a| a.data == RData::AAAA(AAAA(want))));
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            m.answers
                .iter()
                .any(|a| a.data == RData::TXT(TXT::new(vec![hex.clone()])))
        );
        // Upper case in the query is the same name.
        let upper = name.to_uppercase();
        let Step::Reply(r) = zone().handle(&query(&upper, RecordType::AAAA), Transport::Udp) else {
            panic!("upper case too");
        };
        assert_eq!(parse(&r).answers.len(), 1);
    }

    #[test]
    fn mesh_names_are_looked_up_and_answered() {
        let Step::Lookup(q) = zone().handle(&query("Shop.mesh.", RecordType::AAAA), Transport::Udp)
        else {
            panic!("a mesh name needs a lookup");
        };
        assert_eq!(q.name, "shop");
        let found = NameAnswer {
            key: [1; 32],
            addr: "fd00::1".parse().expect("addr"),
        };
        let m = parse(&answer(&q, Some(&found)));
        assert_eq!(m.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].data, RData::AAAA(AAAA(found.addr)));
        assert_eq!(m.answers[0].ttl, NAME_TTL);
        assert_eq!(
            parse(&answer(&q, None)).response_code,
            ResponseCode::NXDomain
        );
        assert_eq!(parse(&fail(&q)).response_code, ResponseCode::ServFail);
    }

    #[test]
    fn other_questions() {
        let z = zone();
        let code = |name: &str, t| match z.handle(&query(name, t), Transport::Udp) {
            Step::Reply(r) => (parse(&r).response_code, parse(&r).answers.len()),
            s => panic!("{name}: {s:?}"),
        };
        assert_eq!(
            code("shop.mesh.", RecordType::A),
            (ResponseCode::NoError, 0)
        );
        assert_eq!(code("mesh.", RecordType::SOA), (ResponseCode::NoError, 0));
        assert_eq!(
            code("www.shop.mesh.", RecordType::AAAA),
            (ResponseCode::NXDomain, 0)
        );
        assert_eq!(
            code("-bad.mesh.", RecordType::AAAA),
            (ResponseCode::NXDomain, 0)
        );
        assert_eq!(
            code("example.com.", RecordType::AAAA),
            (ResponseCode::Refused, 0)
        );
        assert_eq!(
            code("notmesh.", RecordType::AAAA),
            (ResponseCode::Refused, 0)
        );
        let fwd = Zone::new("mesh", true).expect("zone");
        assert_eq!(
            fwd.handle(&query("example.com.", RecordType::A), Transport::Udp),
            Step::Forward
        );
    }

    #[test]
    fn garbage_and_answers_are_not_answered() {
        let z = zone();
        assert_eq!(z.handle(&[], Transport::Udp), Step::Drop);
        assert_eq!(z.handle(&[0; 5], Transport::Udp), Step::Drop);
        // A header that reads as a query, then garbage: FORMERR with its id.
        let mut b = vec![0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        b.extend_from_slice(&[0xff; 7]);
        let Step::Reply(r) = z.handle(&b, Transport::Udp) else {
            panic!("FORMERR")
        };
        let m = parse(&r);
        assert_eq!((m.id, m.response_code), (0x1234, ResponseCode::FormErr));
        // A response is never answered.
        let mut resp = query("shop.mesh.", RecordType::AAAA);
        resp[2] |= 0x80;
        assert_eq!(z.handle(&resp, Transport::Udp), Step::Drop);
        // Two questions: FORMERR.
        let mut m = Message::query();
        for n in ["a.mesh.", "b.mesh."] {
            m.add_query(Query::query(
                Name::from_ascii(n).expect("n"),
                RecordType::AAAA,
            ));
        }
        let Step::Reply(r) = z.handle(&m.to_vec().expect("enc"), Transport::Udp) else {
            panic!("FORMERR")
        };
        assert_eq!(parse(&r).response_code, ResponseCode::FormErr);
        // Many long questions under another opcode: NOTIMP, and the answer stays small
        // (found by the dns_query fuzz target).
        let mut m = Message::query();
        m.metadata.op_code = OpCode::Status;
        for i in 0..40 {
            let long = format!("{}{i}.example.", "a".repeat(60));
            m.add_query(Query::query(
                Name::from_ascii(&long).expect("n"),
                RecordType::AAAA,
            ));
        }
        let Step::Reply(r) = z.handle(&m.to_vec().expect("enc"), Transport::Udp) else {
            panic!("NOTIMP")
        };
        assert!(
            r.len() <= usize::from(PLAIN_UDP_ANSWER),
            "{} bytes",
            r.len()
        );
        assert_eq!(parse(&r).response_code, ResponseCode::NotImp);
    }
}
