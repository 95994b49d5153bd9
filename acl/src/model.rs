//! The policy as written: circles, rules, defaults and tests, each with its location in the
//! file. [`crate::parse`] builds it from TOML; [`crate::compile`] checks it and turns it into
//! lookup tables. Its fields are public so that tools (and the reference evaluator in the
//! property tests) can read it.

use crate::error::Loc;
use std::fmt;
use std::net::Ipv6Addr;

/// A 32-byte public key (an Ed25519 key, as in `meshd`).
pub type Key = [u8; 32];

/// What a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    /// The subject may open a direct link with this node.
    Peer,
    /// The subject may open sessions to this node and send it packets.
    Traffic,
    /// The subject may be the root of the tree this node uses.
    Root,
    /// This node may send packets to the subject.
    Outbound,
    /// The subject may publish services on this node's gateway (`[gateway]`). Its default
    /// is `deny` whatever `default` says: a public name is opened only when a rule allows it.
    Publish,
}

impl Action {
    /// Every action, in the order of [`Action::index`].
    pub const ALL: [Action; 5] = [
        Action::Peer,
        Action::Traffic,
        Action::Root,
        Action::Outbound,
        Action::Publish,
    ];

    /// 0..5, for tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used in the file.
    pub fn name(self) -> &'static str {
        match self {
            Action::Peer => "peer",
            Action::Traffic => "traffic",
            Action::Root => "root",
            Action::Outbound => "outbound",
            Action::Publish => "publish",
        }
    }

    /// Whether rules of this action may name ports.
    pub fn has_ports(self) -> bool {
        matches!(self, Action::Traffic | Action::Outbound)
    }

    pub(crate) fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.name() == s)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// Let it through.
    Allow,
    /// Refuse or drop it.
    Deny,
}

impl Verdict {
    /// The word used in the file.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }

    /// True for [`Verdict::Allow`].
    pub fn allows(self) -> bool {
        self == Verdict::Allow
    }

    pub(crate) fn parse(s: &str) -> Option<Verdict> {
        match s {
            "allow" => Some(Verdict::Allow),
            "deny" => Some(Verdict::Deny),
            _ => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The protocol of a packet, as far as rules can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    /// TCP (next header 6).
    Tcp,
    /// UDP (next header 17).
    Udp,
    /// ICMPv6 (next header 58); it has no ports.
    Icmp,
    /// Anything else; only rules without ports (or `all`) match it.
    Other,
}

impl Proto {
    /// Every protocol, in the order of [`Proto::index`].
    pub const ALL: [Proto; 4] = [Proto::Tcp, Proto::Udp, Proto::Icmp, Proto::Other];

    /// 0..4, for tables.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The protocol of an IPv6 next-header value.
    pub fn from_next_header(n: u8) -> Proto {
        match n {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            58 => Proto::Icmp,
            _ => Proto::Other,
        }
    }

    /// The name used in the file.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::Other => "other",
        }
    }

    /// Whether packets of this protocol have ports.
    pub fn has_ports(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Udp)
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which packets a rule covers: a protocol (or all) and a port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortSpec {
    /// `None`: every protocol.
    pub proto: Option<Proto>,
    /// First port (0 for protocols without ports).
    pub lo: u16,
    /// Last port, inclusive.
    pub hi: u16,
}

impl PortSpec {
    /// Every packet.
    pub const ALL: PortSpec = PortSpec {
        proto: None,
        lo: 0,
        hi: u16::MAX,
    };

    /// Whether a packet of `proto` to `port` is covered.
    pub fn covers(&self, proto: Proto, port: u16) -> bool {
        self.proto.is_none_or(|p| p == proto)
            && (!proto.has_ports() || (self.lo..=self.hi).contains(&port))
    }

    /// Parses `all`, `tcp`, `tcp/22`, `udp/8000-8100`, `icmp`, `other`.
    pub fn parse(s: &str) -> Result<PortSpec, String> {
        let fix = "write all, tcp, udp, icmp, other, tcp/22 or udp/8000-8100";
        if s == "all" {
            return Ok(PortSpec::ALL);
        }
        let (proto, ports) = match s.split_once('/') {
            Some((p, r)) => (p, Some(r)),
            None => (s, None),
        };
        let proto = match proto {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "icmp" | "icmpv6" => Proto::Icmp,
            "other" => Proto::Other,
            _ => return Err(format!("{s:?} names no protocol; {fix}")),
        };
        let Some(ports) = ports else {
            return Ok(PortSpec {
                proto: Some(proto),
                lo: 0,
                hi: u16::MAX,
            });
        };
        if !proto.has_ports() {
            return Err(format!(
                "{s:?}: {proto} has no ports; write just {proto:?}",
                proto = proto.name()
            ));
        }
        let port = |p: &str| {
            p.parse::<u16>()
                .map_err(|_| format!("{s:?}: {p:?} is not a port (0 to 65535); {fix}"))
        };
        let (lo, hi) = match ports.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None if ports == "*" => (0, u16::MAX),
            None => {
                let p = port(ports)?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(format!(
                "{s:?}: the range is empty ({lo} > {hi}); write {hi}-{lo}"
            ));
        }
        Ok(PortSpec {
            proto: Some(proto),
            lo,
            hi,
        })
    }
}

impl fmt::Display for PortSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.proto {
            None => f.write_str("all"),
            Some(p) if !p.has_ports() || (self.lo == 0 && self.hi == u16::MAX) => {
                f.write_str(p.name())
            }
            Some(p) if self.lo == self.hi => write!(f, "{p}/{}", self.lo),
            Some(p) => write!(f, "{p}/{}-{}", self.lo, self.hi),
        }
    }
}

/// Who a rule, circle member or test names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// Everybody.
    Any,
    /// A circle, by name.
    Circle(String),
    /// One identity.
    Key(Key),
    /// The identity that owns this overlay address (its node address or an address of its
    /// /64 subnet).
    Addr(Ipv6Addr),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Any => f.write_str("any"),
            Subject::Circle(n) => write!(f, "circle:{n}"),
            Subject::Key(k) => {
                for b in k {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
            Subject::Addr(a) => write!(f, "{a}"),
        }
    }
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At<T> {
    /// The value.
    pub value: T,
    /// Where.
    pub loc: Loc,
}

/// A named set of identities and other circles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Circle {
    /// Its name.
    pub name: String,
    /// Where it is defined.
    pub loc: Loc,
    /// Keys, addresses and circles (never `any`).
    pub members: Vec<At<Subject>>,
}

/// One rule: allow or deny some subjects an action, for some packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Where it starts.
    pub loc: Loc,
    /// What it is about.
    pub action: Action,
    /// Allow or deny.
    pub verdict: Verdict,
    /// Whom it names.
    pub subjects: Vec<At<Subject>>,
    /// Which packets (traffic and outbound only); empty means all.
    pub ports: Vec<PortSpec>,
    /// The author's note, shown by `explain`.
    pub note: Option<String>,
}

impl Rule {
    /// Whether the rule covers a packet of `proto` to `port` (always true for peer and root).
    pub fn covers(&self, proto: Proto, port: u16) -> bool {
        self.ports.is_empty() || self.ports.iter().any(|p| p.covers(proto, port))
    }

    /// `allow traffic circle:family tcp/22`: the rule in one line.
    pub fn summary(&self) -> String {
        let subjects: Vec<String> = self.subjects.iter().map(|s| s.value.to_string()).collect();
        let mut s = format!("{} {} {}", self.verdict, self.action, subjects.join(", "));
        if self.action.has_ports() {
            let ports: Vec<String> = self.ports.iter().map(|p| p.to_string()).collect();
            s.push(' ');
            s.push_str(&if ports.is_empty() {
                "all".to_string()
            } else {
                ports.join(", ")
            });
        }
        s
    }
}

/// A test the policy carries: this subject, for this action (and packet), gets this verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Test {
    /// Where.
    pub loc: Loc,
    /// What is tested.
    pub action: Action,
    /// The remote side (for outbound: the destination). A circle means each of its members.
    pub subject: At<Subject>,
    /// The packet, for traffic and outbound.
    pub packet: Option<(Proto, u16)>,
    /// The expected verdict.
    pub expect: Verdict,
}

/// A whole policy as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    /// The verdict when no rule matches, by [`Action::index`].
    pub defaults: [Verdict; 5],
    /// Circles, in file order.
    pub circles: Vec<Circle>,
    /// Rules, in file order.
    pub rules: Vec<Rule>,
    /// Tests, in file order.
    pub tests: Vec<Test>,
    /// `[names]`: pinned names and the circle of name authorities.
    pub names: NamePolicy,
}

/// `[names]`: names this node resolves by its own policy, before any claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamePolicy {
    /// `shop = "KEY"`: the name always resolves to this key here (pins win over delegations
    /// and claims), in file order.
    pub pins: Vec<NamePin>,
    /// `authorities = "circle:NAME"`: the circle whose members' signed delegations this node
    /// accepts (a delegated name wins over a first claim).
    pub authorities: Option<At<String>>,
}

/// One pinned name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePin {
    /// The name (lowercase).
    pub name: String,
    /// The key it resolves to.
    pub key: Key,
    /// Where it is written.
    pub loc: Loc,
}

impl Default for Model {
    /// The empty policy: everything allowed but publishing on a gateway.
    fn default() -> Self {
        Model {
            defaults: [
                Verdict::Allow,
                Verdict::Allow,
                Verdict::Allow,
                Verdict::Allow,
                Verdict::Deny,
            ],
            circles: Vec::new(),
            rules: Vec::new(),
            tests: Vec::new(),
            names: NamePolicy::default(),
        }
    }
}
