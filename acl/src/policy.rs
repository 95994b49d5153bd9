//! [`Policy`]: a checked, compiled policy, and the questions `meshd` and `meshctl` ask it.

use crate::compile::{self, Atom, Circles, Compiled, Table, key_atoms};
use crate::error::{PolicyError, ProblemKind, Problems};
use crate::model::*;
use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv6Addr;
use std::sync::Arc;

/// A policy that parsed, checked, compiled and passed its own tests.
pub struct Policy {
    file: String,
    model: Model,
    circles: Circles,
    compiled: Compiled,
}

/// How the policy treats one identity: cheap to clone, cheap to ask, per packet.
#[derive(Clone, Debug)]
pub struct Class(Arc<Table>);

impl Class {
    /// May this identity link with us?
    #[inline]
    pub fn peer(&self) -> Verdict {
        self.0.fixed[Action::Peer.index()]
    }

    /// May this identity be the root of our tree?
    #[inline]
    pub fn root(&self) -> Verdict {
        self.0.fixed[Action::Root.index()]
    }

    /// May this identity publish services on our gateway?
    #[inline]
    pub fn publish(&self) -> Verdict {
        self.0.fixed[Action::Publish.index()]
    }

    /// May this identity send us a packet of `proto` to our `port`?
    #[inline]
    pub fn traffic(&self, proto: Proto, port: u16) -> Verdict {
        self.0.ports[0][proto.index()].get(port)
    }

    /// May we send this identity a packet of `proto` to its `port`?
    #[inline]
    pub fn outbound(&self, proto: Proto, port: u16) -> Verdict {
        self.0.ports[1][proto.index()].get(port)
    }

    /// May this identity send us `proto` on every port? (For packets whose ports cannot be
    /// read: non-first fragments.)
    #[inline]
    pub fn traffic_all(&self, proto: Proto) -> bool {
        self.0.ports[0][proto.index()].all_allowed()
    }

    /// May we send this identity `proto` on every port?
    #[inline]
    pub fn outbound_all(&self, proto: Proto) -> bool {
        self.0.ports[1][proto.index()].all_allowed()
    }

    /// The verdict for `action` (the packet is ignored for peer and root).
    pub fn decide(&self, action: Action, proto: Proto, port: u16) -> Verdict {
        match action {
            Action::Peer => self.peer(),
            Action::Root => self.root(),
            Action::Publish => self.publish(),
            Action::Traffic => self.traffic(proto, port),
            Action::Outbound => self.outbound(proto, port),
        }
    }

    /// Some packet from this identity is allowed in.
    pub fn receives_any(&self) -> bool {
        self.0.any[0]
    }

    /// Some packet to this identity is allowed out.
    pub fn sends_any(&self) -> bool {
        self.0.any[1]
    }
}

/// Who is asked about: a key, or an overlay address (which stands for the key that owns it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// A public key.
    Key(Key),
    /// An overlay address.
    Addr(Ipv6Addr),
}

/// A rule, as `explain` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    /// 1-based number among the rules of the file.
    pub number: usize,
    /// Line in the file.
    pub line: u32,
    /// Allow or deny.
    pub verdict: Verdict,
    /// The rule in one line.
    pub summary: String,
    /// The author's note.
    pub note: Option<String>,
}

/// Why a verdict is what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The question.
    pub action: Action,
    /// The packet, for traffic and outbound.
    pub packet: Option<(Proto, u16)>,
    /// The answer.
    pub verdict: Verdict,
    /// The rule that decided; `None` when the default did.
    pub decided_by: Option<RuleRef>,
    /// Every rule that matches, in file order.
    pub matching: Vec<RuleRef>,
    /// The circles the identity is in (nesting included).
    pub circles: Vec<String>,
    /// The reasoning in words.
    pub reason: String,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.verdict.name().to_uppercase())?;
        write!(f, ": {}", self.reason)
    }
}

impl Policy {
    /// Parses, checks and compiles `text`, then runs the tests it carries. `file` names the file
    /// in messages. On any problem nothing is returned but the error: the caller keeps the
    /// policy it had.
    pub fn load(text: &str, file: &str) -> Result<Policy, PolicyError> {
        let model = crate::parse::parse(text, file)?;
        let policy = Policy::compile(model, file)?;
        policy.run_tests()?;
        Ok(policy)
    }

    /// Checks and compiles a model without running its tests.
    pub fn compile(model: Model, file: &str) -> Result<Policy, PolicyError> {
        let circles = compile::check(&model, file)?;
        let compiled = compile::compile(&model, &circles);
        Ok(Policy {
            file: file.to_string(),
            model,
            circles,
            compiled,
        })
    }

    /// The policy of a node without a policy file: everything allowed.
    pub fn allow_all() -> Policy {
        #[allow(clippy::expect_used)]
        Policy::compile(Model::default(), "(none)").expect("the empty policy compiles")
    }

    /// True if the policy allows every link, root and packet (no rules but `publish` ones,
    /// those defaults allow): callers may skip all checks of those. Publishing is asked
    /// separately ([`Class::publish`]), so its rules and its default do not count.
    pub fn is_open(&self) -> bool {
        let packets = |a: &Action| *a != Action::Publish;
        self.model.rules.iter().all(|r| !packets(&r.action))
            && Action::ALL
                .iter()
                .filter(|a| packets(a))
                .all(|a| self.model.defaults[a.index()].allows())
    }

    /// True if some rule is about `action`.
    pub fn has_rules(&self, action: Action) -> bool {
        self.model.rules.iter().any(|r| r.action == action)
    }

    /// True if some rule or circle names an overlay address: classifying a key the policy does
    /// not name then derives its addresses (a SHA-512), and callers should keep the result.
    pub fn names_addresses(&self) -> bool {
        !self.compiled.addr_tables.is_empty()
    }

    /// The file name given at load.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The policy as written.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Number of distinct tables (identities that match the same rules share one).
    pub fn tables(&self) -> usize {
        let mut seen: Vec<*const Table> = self.compiled.keys.values().map(Arc::as_ptr).collect();
        seen.extend(self.compiled.addr_tables.values().map(Arc::as_ptr));
        seen.push(Arc::as_ptr(&self.compiled.stranger));
        seen.sort_unstable();
        seen.dedup();
        seen.len()
    }

    /// How the policy treats `key`. One hash lookup when the policy names the key (or names no
    /// address at all); otherwise the key's addresses are derived (a SHA-512), so callers on a
    /// hot path keep the result per key.
    pub fn classify(&self, key: &Key) -> Class {
        if let Some(t) = self.compiled.keys.get(key) {
            return Class(t.clone());
        }
        if self.compiled.addr_tables.is_empty() {
            return Class(self.compiled.stranger.clone());
        }
        self.classify_atoms(&key_atoms(key))
    }

    fn classify_atoms(&self, atoms: &[Atom]) -> Class {
        if let Some(Atom::Key(k)) = atoms.first()
            && let Some(t) = self.compiled.keys.get(k)
        {
            return Class(t.clone());
        }
        let named: Vec<Ipv6Addr> = atoms
            .iter()
            .filter_map(|a| match a {
                Atom::Addr(o) if self.compiled.addr_tables.contains_key(o) => Some(*o),
                _ => None,
            })
            .collect();
        match named.as_slice() {
            [] => Class(self.compiled.stranger.clone()),
            [one] => match self.compiled.addr_tables.get(one) {
                Some(t) => Class(t.clone()),
                None => Class(self.compiled.stranger.clone()),
            },
            _ => {
                // An unnamed key owning two named addresses (its node address and its subnet):
                // rare, built on the spot.
                let mut rules: Vec<u32> = self.compiled.any_rules.clone();
                for o in &named {
                    if let Some(r) = self.compiled.addr_rules.get(o) {
                        rules.extend_from_slice(r);
                    }
                }
                rules.sort_unstable();
                rules.dedup();
                Class(Arc::new(Table::build(&self.model, rules)))
            }
        }
    }

    /// The atoms of `who`: a key's own; for an address, those of the named key that owns it,
    /// else the address alone.
    fn atoms_of(&self, who: &Who) -> Vec<Atom> {
        match who {
            Who::Key(k) => key_atoms(k).to_vec(),
            Who::Addr(a) => {
                let Some(o) = routing::address::owner_id(a) else {
                    return Vec::new();
                };
                match self.compiled.addr_owner.get(&o) {
                    Some(k) => key_atoms(k).to_vec(),
                    None => vec![Atom::Addr(o)],
                }
            }
        }
    }

    /// How the policy treats `who`.
    pub fn classify_who(&self, who: &Who) -> Class {
        match who {
            Who::Key(k) => self.classify(k),
            Who::Addr(_) => self.classify_atoms(&self.atoms_of(who)),
        }
    }

    /// The verdict for `key`, `action` and (for traffic and outbound) a packet.
    pub fn decide(&self, key: &Key, action: Action, proto: Proto, port: u16) -> Verdict {
        self.classify(key).decide(action, proto, port)
    }

    /// `[names]` pins: name to key.
    pub fn name_pins(&self) -> std::collections::BTreeMap<String, Key> {
        self.model
            .names
            .pins
            .iter()
            .map(|p| (p.name.clone(), p.key))
            .collect()
    }

    /// The keys of the `[names] authorities` circle (nesting resolved; members written as
    /// addresses cannot sign and do not count: [`Policy::name_authority_addresses`]).
    pub fn name_authorities(&self) -> BTreeSet<Key> {
        let Some(a) = &self.model.names.authorities else {
            return BTreeSet::new();
        };
        let Some(&i) = self.circles.index.get(&a.value) else {
            return BTreeSet::new();
        };
        self.circles.expanded[i]
            .iter()
            .filter_map(|m| match m {
                Atom::Key(k) => Some(*k),
                Atom::Addr(_) => None,
            })
            .collect()
    }

    /// Members of the authorities circle written as addresses: they cannot sign delegations,
    /// so they are not authorities (a warning for the operator).
    pub fn name_authority_addresses(&self) -> Vec<Ipv6Addr> {
        let Some(a) = &self.model.names.authorities else {
            return Vec::new();
        };
        let Some(&i) = self.circles.index.get(&a.value) else {
            return Vec::new();
        };
        self.circles.expanded[i]
            .iter()
            .filter_map(|m| match m {
                Atom::Addr(o) => Some(*o),
                Atom::Key(_) => None,
            })
            .collect()
    }

    /// Circle names, in file order.
    pub fn circle_names(&self) -> impl Iterator<Item = &str> {
        self.model.circles.iter().map(|c| c.name.as_str())
    }

    /// Everybody in circle `name`, nesting resolved (keys and addresses); `None` if there is no
    /// such circle.
    pub fn circle_members(&self, name: &str) -> Option<Vec<Subject>> {
        let &i = self.circles.index.get(name)?;
        Some(self.circles.expanded[i].iter().map(Atom::subject).collect())
    }

    /// The circles holding one of `atoms`, by name, nesting included.
    fn circles_of(&self, atoms: &[Atom]) -> Vec<String> {
        self.model
            .circles
            .iter()
            .enumerate()
            .filter(|(i, _)| atoms.iter().any(|a| self.circles.expanded[*i].contains(a)))
            .map(|(_, c)| c.name.clone())
            .collect()
    }

    fn rule_ref(&self, i: usize) -> RuleRef {
        let r = &self.model.rules[i];
        RuleRef {
            number: i + 1,
            line: r.loc.line,
            verdict: r.verdict,
            summary: r.summary(),
            note: r.note.clone(),
        }
    }

    /// Indexes of the rules of `action` whose subjects match `who` (and which cover the
    /// packet, if one is given), and the circles `who` is in.
    fn matching(
        &self,
        who: &Who,
        action: Action,
        packet: Option<(Proto, u16)>,
    ) -> (Vec<usize>, Vec<String>) {
        let atoms = self.atoms_of(who);
        let circles = self.circles_of(&atoms);
        let names = |s: &Subject| match s {
            Subject::Any => true,
            Subject::Key(k) => atoms.contains(&Atom::Key(*k)),
            Subject::Addr(a) => {
                routing::address::owner_id(a).is_some_and(|o| atoms.contains(&Atom::Addr(o)))
            }
            Subject::Circle(n) => circles.iter().any(|c| c == n),
        };
        let matching = self
            .model
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.action == action
                    && packet.is_none_or(|(proto, port)| r.covers(proto, port))
                    && r.subjects.iter().any(|s| names(&s.value))
            })
            .map(|(i, _)| i)
            .collect();
        (matching, circles)
    }

    /// The rules of `action` that name `who` (directly, through a circle, or as `any`),
    /// whatever packets they cover.
    pub fn rules_naming(&self, who: &Who, action: Action) -> Vec<RuleRef> {
        self.matching(who, action, None)
            .0
            .into_iter()
            .map(|i| self.rule_ref(i))
            .collect()
    }

    /// Which rule decides `action` for `who` (and, for traffic and outbound, the packet; none
    /// given means a packet of protocol `other`), and why. Worked out from the rules as
    /// written, not from the tables, so it also checks them.
    pub fn explain(&self, who: &Who, action: Action, packet: Option<(Proto, u16)>) -> Explanation {
        let packet = action
            .has_ports()
            .then(|| packet.unwrap_or((Proto::Other, 0)));
        let (matching, circles) = self.matching(who, action, packet);
        let first = |v: Verdict| {
            matching
                .iter()
                .copied()
                .find(|&i| self.model.rules[i].verdict == v)
        };
        let (deny, allow) = (first(Verdict::Deny), first(Verdict::Allow));
        let what = question(action, packet);
        let describe = |i: usize| {
            let r = self.rule_ref(i);
            let note = r
                .note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            format!("rule {} at line {}: {}{note}", r.number, r.line, r.summary)
        };
        let (verdict, decided_by, reason) = match (deny, allow) {
            (Some(d), Some(a)) => (
                Verdict::Deny,
                Some(d),
                format!(
                    "{what} is denied by {}; {} would allow it, but deny wins over allow",
                    describe(d),
                    describe(a)
                ),
            ),
            (Some(d), None) => (
                Verdict::Deny,
                Some(d),
                format!("{what} is denied by {}", describe(d)),
            ),
            (None, Some(a)) => (
                Verdict::Allow,
                Some(a),
                format!("{what} is allowed by {}", describe(a)),
            ),
            (None, None) => {
                let v = self.model.defaults[action.index()];
                (
                    v,
                    None,
                    format!("no rule matches {what}; the default for {action} is {v}"),
                )
            }
        };
        Explanation {
            action,
            packet,
            verdict,
            decided_by: decided_by.map(|i| self.rule_ref(i)),
            matching: matching.into_iter().map(|i| self.rule_ref(i)).collect(),
            circles,
            reason,
        }
    }

    /// Runs the tests the policy carries, through the compiled tables; every failure is
    /// reported with the test's line and the explanation.
    pub fn run_tests(&self) -> Result<(), PolicyError> {
        let mut p = Problems::default();
        for t in &self.model.tests {
            let (proto, port) = t.packet.unwrap_or((Proto::Other, 0));
            let members: Vec<(Who, Option<String>)> = match &t.subject.value {
                Subject::Any => vec![(Who::Key(STRANGER), None)],
                Subject::Key(k) => vec![(Who::Key(*k), None)],
                Subject::Addr(a) => vec![(Who::Addr(*a), None)],
                Subject::Circle(n) => self
                    .circle_members(n)
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|s| {
                        let label = Some(s.to_string());
                        match s {
                            Subject::Key(k) => Some((Who::Key(k), label)),
                            Subject::Addr(a) => Some((Who::Addr(a), label)),
                            _ => None,
                        }
                    })
                    .collect(),
            };
            let mut failed = BTreeSet::new();
            for (who, label) in &members {
                let got = if *who == Who::Key(STRANGER) {
                    Class(self.compiled.stranger.clone()).decide(t.action, proto, port)
                } else {
                    self.classify_who(who).decide(t.action, proto, port)
                };
                if got != t.expect && failed.len() < 3 {
                    let e = self.explain(who, t.action, t.packet);
                    let whom = match label {
                        Some(l) => format!(" (member {l})"),
                        None => String::new(),
                    };
                    failed.insert(format!(
                        "test failed: {} for {}{whom}: expected {}, got {}: {}",
                        question(t.action, t.packet),
                        t.subject.value,
                        t.expect,
                        got,
                        e.reason
                    ));
                }
            }
            if members.is_empty() {
                failed.insert(format!(
                    "test names {}, which has no members: it tests nothing",
                    t.subject.value
                ));
            }
            for f in failed {
                p.push(t.loc, ProblemKind::TestFailed, f);
            }
        }
        p.into_result(&self.file, ())
    }
}

/// The key a test uses for "somebody the policy does not name".
const STRANGER: Key = [0xff; 32];

/// `traffic tcp/22`, `peer`: the question, in words.
fn question(action: Action, packet: Option<(Proto, u16)>) -> String {
    match packet {
        Some((p, n)) if action.has_ports() && p.has_ports() => format!("{action} {p}/{n}"),
        Some((p, _)) if action.has_ports() => format!("{action} {p}"),
        _ => action.name().to_string(),
    }
}
