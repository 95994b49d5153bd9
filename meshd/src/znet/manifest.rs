//! The znet manifest: one TOML file that defines a private network of a deployment, the same
//! file on every member node.
//!
//! ```toml
//! name = "shop"                                   # 1-12 of a-z 0-9 -
//! id = "3f2a9c1b7d4e5f60"                         # 16 hex digits, unique per znet
//! secret = "…64 hex digits…"                      # the network secret: keep it secret
//! ipv4 = "10.50.0.0/16"
//! ipv6 = "fd00:5a31:7e2b:1::/64"                  # optional
//!
//! [[members]]
//! key = "…64 hex digits…"                         # a node's public key
//! subnet = "10.50.1.0/24"                         # optional: member i (from 0) gets 10.50.(i+1).0/24
//! ```
//!
//! `egress` (optional, before the members) says how containers reach beyond the znet:
//! `"local"` (each node through its own uplink, NATed) or a member's key (that member is the
//! exit: traffic crosses the znet to it and leaves there, NATed). Absent: nothing beyond the
//! znet is reachable.
//!
//! Each member's containers get addresses from its /24 (and, with `ipv6`, from its /80:
//! the /64 plus the member's number). `meshctl znet create` writes one with a fresh id and
//! secret; `meshctl znet join FILE` puts it in force on a node (again, after an edit).

use crate::identity::PublicKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use zeroize::Zeroizing;

/// A checked manifest. Its `Debug` output leaves the secret out (logs and panics must not
/// carry it).
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Name (used in namespace and interface names).
    pub name: String,
    /// Id.
    pub id: u64,
    /// The network secret (wiped from memory when dropped).
    pub secret: Zeroizing<[u8; 32]>,
    /// The IPv4 range (a /16).
    pub ipv4: Ipv4Addr,
    /// The IPv6 /64, if any.
    pub ipv6: Option<Ipv6Addr>,
    /// Members, in file order.
    pub members: Vec<Member>,
    /// How containers reach beyond the znet; `None`: they do not.
    pub egress: Option<Egress>,
}

/// How a znet's containers reach addresses outside the znet (IPv4 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    /// Each node NATs its own containers through its own uplink.
    Local,
    /// Traffic crosses the znet to this member (the exit) and leaves there, NATed.
    Member(PublicKey),
}

impl std::fmt::Display for Egress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Egress::Local => f.write_str("local"),
            Egress::Member(k) => write!(f, "{k}"),
        }
    }
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("ipv4", &self.ipv4)
            .field("ipv6", &self.ipv6)
            .field("members", &self.members)
            .field("egress", &self.egress)
            .finish()
    }
}

/// One member node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its key.
    pub key: PublicKey,
    /// Its IPv4 /24 (network address).
    pub v4: Ipv4Addr,
    /// Its IPv6 /80 (network address), if the znet has IPv6.
    pub v6: Option<Ipv6Addr>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    id: String,
    secret: String,
    ipv4: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ipv6: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    egress: Option<String>,
    #[serde(default)]
    members: Vec<RawMember>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subnet: Option<String>,
}

fn hex32(s: &str, what: &str) -> Result<[u8; 32], String> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{what} must be 64 hex digits"));
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o =
            u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| format!("{what}: bad hex"))?;
    }
    Ok(out)
}

fn net<A: std::str::FromStr>(s: &str, what: &str) -> Result<(A, u8), String> {
    let (a, p) = s
        .split_once('/')
        .ok_or_else(|| format!("{what} {s:?} needs a prefix length, like 10.50.0.0/16"))?;
    let a = a
        .parse::<A>()
        .map_err(|_| format!("{what} {s:?}: {a:?} is not an address"))?;
    let p = p
        .parse::<u8>()
        .map_err(|_| format!("{what} {s:?}: {p:?} is not a prefix length"))?;
    Ok((a, p))
}

impl Manifest {
    /// Parses and checks a manifest.
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let e = e.to_string();
            if e.contains("unknown field `egress`") {
                "egress: put `egress = …` before the first [[members]] (after it, TOML reads \
                 it as a member's key)"
                    .to_string()
            } else {
                format!("not a valid manifest: {e}")
            }
        })?;
        let ok_name = !raw.name.is_empty()
            && raw.name.len() <= 12
            && raw
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok_name {
            return Err(format!(
                "name {:?}: 1 to 12 of a-z, 0-9 and '-' (it names a namespace and interfaces)",
                raw.name
            ));
        }
        let id = (raw.id.len() == 16)
            .then(|| u64::from_str_radix(&raw.id, 16).ok())
            .flatten()
            .ok_or_else(|| format!("id {:?} must be 16 hex digits", raw.id))?;
        let secret = hex32(&raw.secret, "secret")?;
        let (ipv4, p4) = net::<Ipv4Addr>(&raw.ipv4, "ipv4")?;
        if p4 != 16 || u32::from(ipv4) & 0xffff != 0 {
            return Err(format!(
                "ipv4 {:?} must be a /16 network (like 10.50.0.0/16)",
                raw.ipv4
            ));
        }
        let ipv6 = match &raw.ipv6 {
            None => None,
            Some(s) => {
                let (a, p) = net::<Ipv6Addr>(s, "ipv6")?;
                if p != 64 || u128::from(a) & u128::from(u64::MAX) != 0 {
                    return Err(format!("ipv6 {s:?} must be a /64 network"));
                }
                Some(a)
            }
        };
        if raw.members.is_empty() {
            return Err("a znet needs at least one [[members]] entry".into());
        }
        if raw.members.len() > 254 {
            return Err("at most 254 members (one /24 each in the /16)".into());
        }
        let mut members: Vec<Member> = Vec::new();
        for (i, m) in raw.members.iter().enumerate() {
            let key: PublicKey = m
                .key
                .parse()
                .map_err(|e| format!("member {}: key {:?}: {e}", i + 1, m.key))?;
            if members.iter().any(|o| o.key == key) {
                return Err(format!("member {}: key {key} is listed twice", i + 1));
            }
            let v4 = match &m.subnet {
                None => Ipv4Addr::from(u32::from(ipv4) | ((i as u32 + 1) << 8)),
                Some(s) => {
                    let (a, p) = net::<Ipv4Addr>(s, "subnet")?;
                    if p != 24 || u32::from(a) & 0xff != 0 {
                        return Err(format!(
                            "member {}: subnet {s:?} must be a /24 network",
                            i + 1
                        ));
                    }
                    if u32::from(a) & 0xffff_0000 != u32::from(ipv4) {
                        return Err(format!(
                            "member {}: subnet {s:?} is outside the znet's range {}",
                            i + 1,
                            raw.ipv4
                        ));
                    }
                    a
                }
            };
            if let Some(o) = members.iter().find(|o| o.v4 == v4) {
                return Err(format!(
                    "member {}: subnet {v4}/24 is already member {}'s",
                    i + 1,
                    o.key
                ));
            }
            let v6 =
                ipv6.map(|p| Ipv6Addr::from(u128::from(p) | (u128::from(v4.octets()[2]) << 48)));
            members.push(Member { key, v4, v6 });
        }
        let egress = match raw.egress.as_deref() {
            None => None,
            Some(s) => Some(parse_egress(s, &members)?),
        };
        Ok(Manifest {
            name: raw.name,
            id,
            secret: Zeroizing::new(secret),
            ipv4,
            ipv6,
            members,
            egress,
        })
    }

    /// The manifest as TOML (every subnet written out).
    pub fn to_toml(&self) -> String {
        let raw = Raw {
            name: self.name.clone(),
            id: format!("{:016x}", self.id),
            secret: self.secret.iter().map(|b| format!("{b:02x}")).collect(),
            ipv4: format!("{}/16", self.ipv4),
            ipv6: self.ipv6.map(|a| format!("{a}/64")),
            egress: self.egress.map(|e| e.to_string()),
            members: self
                .members
                .iter()
                .map(|m| RawMember {
                    key: m.key.to_string(),
                    subnet: Some(format!("{}/24", m.v4)),
                })
                .collect(),
        };
        toml::to_string(&raw).unwrap_or_default()
    }

    /// The pre-shared key of the znet's sessions.
    pub fn psk(&self) -> Zeroizing<[u8; 32]> {
        let mut h = Sha256::new();
        h.update(b"planetary-lan/znet/v1");
        h.update(self.id.to_be_bytes());
        h.update(*self.secret);
        Zeroizing::new(h.finalize().into())
    }

    /// The member `key`, if it is one.
    pub fn member(&self, key: &PublicKey) -> Option<&Member> {
        self.members.iter().find(|m| m.key == *key)
    }

    /// Whether `ip` lies in the znet's ranges (its /16, its /64).
    pub fn in_range(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => u32::from(a) & 0xffff_0000 == u32::from(self.ipv4),
            IpAddr::V6(a) => self
                .ipv6
                .is_some_and(|n| u128::from(a) >> 64 == u128::from(n) >> 64),
        }
    }

    /// The exit member, if `egress` names one.
    pub fn exit_member(&self) -> Option<&PublicKey> {
        match &self.egress {
            Some(Egress::Member(k)) => Some(k),
            _ => None,
        }
    }

    /// The member whose subnet holds `ip`.
    pub fn owner_of(&self, ip: IpAddr) -> Option<&Member> {
        self.members.iter().find(|m| m.holds(ip))
    }
}

/// Reads `egress`: `"local"` or the key of a member.
fn parse_egress(s: &str, members: &[Member]) -> Result<Egress, String> {
    if s == "local" {
        return Ok(Egress::Local);
    }
    let key: PublicKey = s.parse().map_err(|e| {
        format!(
            "egress {s:?}: give \"local\" (each node NATs its own containers) or the key of \
             the member that is the exit ({e})"
        )
    })?;
    if !members.iter().any(|m| m.key == key) {
        return Err(format!(
            "egress {s:?} is not a member's key: add that node to [[members]] or name another \
             member (or \"local\")"
        ));
    }
    Ok(Egress::Member(key))
}

impl Member {
    /// Whether `ip` lies in this member's subnets.
    pub fn holds(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => u32::from(a) & 0xffff_ff00 == u32::from(self.v4),
            IpAddr::V6(a) => self
                .v6
                .is_some_and(|n| u128::from(a) >> 48 == u128::from(n) >> 48),
        }
    }

    /// The gateway address of this member's subnet (the router namespace's side): `.1`.
    pub fn gateway_v4(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.v4) | 1)
    }

    /// The IPv6 gateway (`::1` of the /80).
    pub fn gateway_v6(&self) -> Option<Ipv6Addr> {
        self.v6.map(|n| Ipv6Addr::from(u128::from(n) | 1))
    }

    /// The IPv6 address that goes with IPv4 host `v4` (same host number).
    pub fn v6_for(&self, v4: Ipv4Addr) -> Option<Ipv6Addr> {
        self.v6
            .map(|n| Ipv6Addr::from(u128::from(n) | u128::from(v4.octets()[3])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn key(n: u8) -> String {
        Identity::from_seed(&[n; 32]).public_key().to_string()
    }

    fn text(extra: &str) -> String {
        format!(
            "name = \"shop\"\nid = \"3f2a9c1b7d4e5f60\"\nsecret = \"{}\"\nipv4 = \"10.50.0.0/16\"\nipv6 = \"fd00:5a31:7e2b:1::/64\"\n{extra}",
            "ab".repeat(32)
        )
    }

    #[test]
    fn parses_derives_and_round_trips() {
        let t = text(&format!(
            "[[members]]\nkey = \"{}\"\n[[members]]\nkey = \"{}\"\nsubnet = \"10.50.9.0/24\"\n",
            key(1),
            key(2)
        ));
        let m = Manifest::parse(&t).expect("valid");
        assert_eq!(m.members[0].v4, Ipv4Addr::new(10, 50, 1, 0));
        assert_eq!(m.members[1].v4, Ipv4Addr::new(10, 50, 9, 0));
        assert!(m.members[1].holds("10.50.9.7".parse().expect("ip")));
        assert!(!m.members[1].holds("10.50.1.7".parse().expect("ip")));
        let v6 = m.members[0]
            .v6_for(Ipv4Addr::new(10, 50, 1, 2))
            .expect("v6");
        assert!(m.members[0].holds(IpAddr::V6(v6)));
        assert!(!m.members[1].holds(IpAddr::V6(v6)));
        assert_eq!(Manifest::parse(&m.to_toml()).expect("round trip"), m);
    }

    #[test]
    fn egress_is_local_or_a_member_and_round_trips() {
        let members = format!(
            "[[members]]\nkey = \"{}\"\n[[members]]\nkey = \"{}\"\n",
            key(1),
            key(2)
        );
        let none = Manifest::parse(&text(&members)).expect("valid");
        assert_eq!(none.egress, None);
        assert!(!none.to_toml().contains("egress"));
        let local =
            Manifest::parse(&text(&format!("egress = \"local\"\n{members}"))).expect("valid");
        assert_eq!(local.egress, Some(Egress::Local));
        assert_eq!(local.exit_member(), None);
        let exit =
            Manifest::parse(&text(&format!("egress = \"{}\"\n{members}", key(2)))).expect("valid");
        assert_eq!(exit.egress, Some(Egress::Member(exit.members[1].key)));
        assert_eq!(exit.exit_member(), Some(&exit.members[1].key));
        for m in [&local, &exit] {
            assert_eq!(&Manifest::parse(&m.to_toml()).expect("round trip"), m);
        }
        assert!(exit.in_range("10.50.200.1".parse().expect("ip")));
        assert!(!exit.in_range("10.51.0.1".parse().expect("ip")));
        assert!(exit.in_range("fd00:5a31:7e2b:1:ffff::1".parse().expect("ip")));
        assert!(!exit.in_range("fd00:5a31:7e2b:2::1".parse().expect("ip")));
    }

    #[test]
    fn bad_egress_names_the_field_and_the_fix() {
        let members = format!("[[members]]\nkey = \"{}\"\n", key(1));
        for (egress, want) in [
            ("\"Local\"", "give \"local\""),
            ("\"abc\"", "the key of the member that is the exit"),
            (
                &format!("\"{}\"", key(9)),
                "is not a member's key: add that node",
            ),
            ("true", "not a valid manifest"),
        ] {
            let t = text(&format!("egress = {egress}\n{members}"));
            let e = Manifest::parse(&t).expect_err(&t);
            assert!(e.contains("egress") && e.contains(want), "{t}\n→ {e}");
        }
        // After [[members]], TOML makes it a member's key: said plainly.
        let t = text(&format!("{members}egress = \"local\"\n"));
        let e = Manifest::parse(&t).expect_err(&t);
        assert!(e.contains("before the first [[members]]"), "{e}");
    }

    #[test]
    fn debug_output_leaves_the_secret_out() {
        let m =
            Manifest::parse(&text(&format!("[[members]]\nkey = \"{}\"\n", key(1)))).expect("valid");
        let shown = format!("{m:?}");
        assert!(
            shown.contains("shop") && shown.contains("<redacted>"),
            "{shown}"
        );
        assert!(
            !shown.contains("abab") && !shown.contains("171, 171"),
            "{shown}"
        );
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        let k = key(1);
        for (t, want) in [
            (text(""), "at least one"),
            (text("[[members]]\nkey = \"abc\"\n"), "member 1: key"),
            (
                text(&format!(
                    "[[members]]\nkey = \"{k}\"\n[[members]]\nkey = \"{k}\"\n"
                )),
                "listed twice",
            ),
            (
                text(&format!(
                    "[[members]]\nkey = \"{k}\"\nsubnet = \"10.60.1.0/24\"\n"
                )),
                "outside the znet's range",
            ),
            (
                text(&format!(
                    "[[members]]\nkey = \"{k}\"\nsubnet = \"10.50.1.0/25\"\n"
                )),
                "must be a /24",
            ),
            (
                "name = \"Shop!\"\nid = \"00\"\nsecret = \"\"\nipv4 = \"x\"\n".to_string(),
                "name",
            ),
            ("this is not toml".to_string(), "not a valid manifest"),
        ] {
            let e = Manifest::parse(&t).expect_err(&t);
            assert!(e.contains(want), "{t}\n→ {e}");
        }
    }
}
