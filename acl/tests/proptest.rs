//! Property tests of the policy engine against a naive reference evaluator.
//!
//! The reference evaluator below is written straight from the semantics, over [`acl::Model`]:
//! a rule matches an identity if one of its subjects is `any`, the identity's key, an overlay
//! address the key owns, or a circle whose nested expansion holds the key or such an address;
//! for traffic and outbound the rule must also cover the packet. Among the matching rules of the
//! action, a deny wins, else an allow, else the default. No tables, no caches.
//!
//! Random policies are built both in memory (straight into a [`Model`]) and as TOML text
//! (through [`Policy::load`], so the parser and the in-file tests are covered too), and every
//! verdict of the compiled policy, of `explain` and of the in-file tests is compared with the
//! reference. For traffic and outbound every port where some rule's range starts or ends is
//! asked, so each segment of every port map is checked, not a sample.

use acl::{
    Action, At, Circle, Loc, Model, NamePolicy, Policy, PortSpec, ProblemKind, Proto, Rule,
    Subject, Verdict, Who,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use routing::address::{key_owns, node_address, node_subnet};
use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::sync::OnceLock;

type Key = acl::Key;

// ---------------------------------------------------------------------------------------------
// Keys

/// Keys `0..NAMED` may be named as keys; `NAMED..POOL` only through their addresses;
/// `STRANGER` is never named at all.
const NAMED: usize = 8;
const POOL: usize = 10;
const STRANGER: usize = 10;
const KEYS: usize = 11;

/// Valid Ed25519 public keys: the first `KEYS` of `[i; 32]` that `parse_key` accepts.
fn keys() -> &'static [Key; KEYS] {
    static KEYS_CELL: OnceLock<[Key; KEYS]> = OnceLock::new();
    KEYS_CELL.get_or_init(|| {
        let found: Vec<Key> = (1..=255u8)
            .filter_map(|i| acl::parse::parse_key(&format!("{i:02x}").repeat(32)).ok())
            .take(KEYS)
            .collect();
        found
            .try_into()
            .expect("at least 11 of [i; 32] are Ed25519 points")
    })
}

fn hex(k: &Key) -> String {
    k.iter().map(|b| format!("{b:02x}")).collect()
}

/// An address in `key`'s subnet, with `host` in the host part.
fn subnet_addr(key: &Key, host: u16) -> Ipv6Addr {
    let mut o = node_subnet(key).octets();
    o[14..16].copy_from_slice(&host.to_be_bytes());
    Ipv6Addr::from(o)
}

// ---------------------------------------------------------------------------------------------
// The reference evaluator

/// Whether `subject` names `key`, circles expanded recursively.
fn names(model: &Model, subject: &Subject, key: &Key) -> bool {
    match subject {
        Subject::Any => true,
        Subject::Key(k) => k == key,
        Subject::Addr(a) => key_owns(key, a),
        Subject::Circle(n) => model
            .circles
            .iter()
            .filter(|c| c.name == *n)
            .any(|c| c.members.iter().any(|m| names(model, &m.value, key))),
    }
}

/// Whether `spec` covers a packet of `proto` to `port`, from the meaning of a port spec.
fn spec_covers(spec: &PortSpec, proto: Proto, port: u16) -> bool {
    let proto_ok = match spec.proto {
        None => true,
        Some(p) => p == proto,
    };
    let port_ok = match proto {
        Proto::Tcp | Proto::Udp => spec.lo <= port && port <= spec.hi,
        Proto::Icmp | Proto::Other => true,
    };
    proto_ok && port_ok
}

/// Indices of the rules of `action` that match `key` (and cover the packet).
fn naive_matching(model: &Model, key: &Key, action: Action, proto: Proto, port: u16) -> Vec<usize> {
    let mut out = Vec::new();
    for (i, r) in model.rules.iter().enumerate() {
        if r.action != action {
            continue;
        }
        if matches!(action, Action::Traffic | Action::Outbound)
            && !r.ports.is_empty()
            && !r.ports.iter().any(|s| spec_covers(s, proto, port))
        {
            continue;
        }
        if r.subjects.iter().any(|s| names(model, &s.value, key)) {
            out.push(i);
        }
    }
    out
}

/// The verdict, by the book.
fn naive(model: &Model, key: &Key, action: Action, proto: Proto, port: u16) -> Verdict {
    let matching = naive_matching(model, key, action, proto, port);
    let has = |v: Verdict| matching.iter().any(|&i| model.rules[i].verdict == v);
    if has(Verdict::Deny) {
        Verdict::Deny
    } else if has(Verdict::Allow) {
        Verdict::Allow
    } else {
        model.defaults[action.index()]
    }
}

/// The circles whose expansion holds `key`, in file order.
fn naive_circles(model: &Model, key: &Key) -> Vec<String> {
    model
        .circles
        .iter()
        .filter(|c| names(model, &Subject::Circle(c.name.clone()), key))
        .map(|c| c.name.clone())
        .collect()
}

/// Keys written as a subject anywhere (in a circle or a rule).
fn named_keys(model: &Model) -> BTreeSet<Key> {
    let circles = model.circles.iter().flat_map(|c| c.members.iter());
    let rules = model.rules.iter().flat_map(|r| r.subjects.iter());
    circles
        .chain(rules)
        .filter_map(|s| match s.value {
            Subject::Key(k) => Some(k),
            _ => None,
        })
        .collect()
}

/// Every packet that can tell two port maps apart: for tcp and udp, each port where some rule's
/// range starts or ends (and its neighbours); icmp and other once each.
fn packets(model: &Model, extra: &[u16]) -> Vec<(Proto, u16)> {
    let mut ports: BTreeSet<u16> = [0, 1, u16::MAX - 1, u16::MAX].into_iter().collect();
    ports.extend(extra.iter().copied());
    for r in &model.rules {
        for s in &r.ports {
            for p in [s.lo, s.hi] {
                ports.extend([p.saturating_sub(1), p, p.saturating_add(1)]);
            }
        }
    }
    let mut out = Vec::new();
    for proto in [Proto::Tcp, Proto::Udp] {
        out.extend(ports.iter().map(|&p| (proto, p)));
    }
    out.push((Proto::Icmp, 0));
    out.push((Proto::Icmp, 443));
    out.push((Proto::Other, 0));
    out.push((Proto::Other, 22));
    out
}

/// Compares every verdict of `policy` for the pool keys and the stranger with the reference
/// evaluator over `model` (the policy as meant, which for a loaded text is the in-memory twin).
fn check_against_reference(policy: &Policy, model: &Model, how: &str) -> Result<(), TestCaseError> {
    let packets = packets(model, &[]);
    let named = named_keys(model);
    for key in keys() {
        let class = policy.classify(key);
        let circles = naive_circles(model, key);
        let addr_class = named
            .contains(key)
            .then(|| policy.classify_who(&Who::Addr(subnet_addr(key, 0x1234))));
        let mut receives_any = false;
        let mut sends_any = false;
        for action in Action::ALL {
            let pk: &[(Proto, u16)] = if action.has_ports() {
                &packets
            } else {
                &[(Proto::Tcp, 22)]
            };
            for &(proto, port) in pk {
                let want = naive(model, key, action, proto, port);
                let got = class.decide(action, proto, port);
                prop_assert_eq!(
                    got,
                    want,
                    "{}: classify({}).decide({:?}, {:?}, {})",
                    how,
                    hex(key),
                    action,
                    proto,
                    port
                );
                prop_assert_eq!(policy.decide(key, action, proto, port), want);
                if let Some(c) = &addr_class {
                    prop_assert_eq!(
                        c.decide(action, proto, port),
                        want,
                        "{}: classify_who(an address of {}) for {:?} {:?} {}",
                        how,
                        hex(key),
                        action,
                        proto,
                        port
                    );
                }
                match action {
                    Action::Traffic => receives_any |= want.allows(),
                    Action::Outbound => sends_any |= want.allows(),
                    _ => {}
                }
                let e = policy.explain(&Who::Key(*key), action, Some((proto, port)));
                prop_assert_eq!(
                    e.verdict,
                    want,
                    "{}: explain({}, {:?}, {:?}/{}): {}",
                    how,
                    hex(key),
                    action,
                    proto,
                    port,
                    e.reason
                );
                let matching = naive_matching(model, key, action, proto, port);
                let got_matching: Vec<usize> = e.matching.iter().map(|r| r.number - 1).collect();
                prop_assert_eq!(
                    &got_matching,
                    &matching,
                    "{}: explain's matching rules",
                    how
                );
                let decider = matching
                    .iter()
                    .copied()
                    .find(|&i| model.rules[i].verdict == Verdict::Deny)
                    .or_else(|| matching.first().copied());
                prop_assert_eq!(e.decided_by.map(|r| r.number - 1), decider);
                prop_assert_eq!(&e.circles, &circles, "{}: explain's circles", how);
            }
        }
        prop_assert_eq!(class.receives_any(), receives_any, "{}: receives_any", how);
        prop_assert_eq!(class.sends_any(), sends_any, "{}: sends_any", how);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Random policies

/// A subject as generated: circles by a number, resolved against the circles that may be named.
#[derive(Debug, Clone)]
enum S {
    Any,
    Key(usize),
    Node(usize),
    Subnet(usize, u16),
    Circle(usize),
}

/// A port spec as generated, with the way it is written.
#[derive(Debug, Clone)]
enum P {
    All,
    Proto(Proto),
    IcmpV6,
    Star(Proto),
    Single(Proto, u16),
    Range(Proto, u16, u16),
}

impl P {
    fn spec(&self) -> PortSpec {
        let full = |p| PortSpec {
            proto: Some(p),
            lo: 0,
            hi: u16::MAX,
        };
        match *self {
            P::All => PortSpec::ALL,
            P::Proto(p) | P::Star(p) => full(p),
            P::IcmpV6 => full(Proto::Icmp),
            P::Single(p, n) => PortSpec {
                proto: Some(p),
                lo: n,
                hi: n,
            },
            P::Range(p, a, b) => PortSpec {
                proto: Some(p),
                lo: a.min(b),
                hi: a.max(b),
            },
        }
    }

    fn text(&self) -> String {
        match *self {
            P::All => "all".into(),
            P::Proto(p) => p.name().into(),
            P::IcmpV6 => "icmpv6".into(),
            P::Star(p) => format!("{}/*", p.name()),
            P::Single(p, n) => format!("{}/{n}", p.name()),
            P::Range(p, a, b) => format!("{}/{}-{}", p.name(), a.min(b), a.max(b)),
        }
    }
}

#[derive(Debug, Clone)]
struct RuleGen {
    actions: Vec<Action>,
    verdict: Verdict,
    subjects: Vec<S>,
    ports: Vec<P>,
    note: bool,
    /// Bits choosing how the rule is written (single strings or lists, key order).
    style: u8,
}

#[derive(Debug, Clone)]
struct Spec {
    base: Verdict,
    overrides: [Option<Verdict>; 5],
    /// Members of circle `c{i}`; `S::Circle(j)` names `c{j % i}` (a lower circle: no cycles).
    circles: Vec<Vec<S>>,
    /// The order in which the circles are written.
    order: Vec<usize>,
    rules: Vec<RuleGen>,
    /// In-file tests: (named key, action, packet).
    tests: Vec<(usize, Action, (Proto, u16))>,
    /// Multi-line circle arrays.
    tall: bool,
}

/// Ports where rules start or end; queries and ranges mostly use these so that they meet.
const PORTS: [u16; 16] = [
    0, 1, 21, 22, 23, 53, 80, 443, 1000, 8000, 8050, 8100, 32768, 65000, 65534, 65535,
];

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![3 => prop::sample::select(PORTS.to_vec()), 1 => any::<u16>()]
}

fn verdict() -> impl Strategy<Value = Verdict> {
    prop_oneof![Just(Verdict::Allow), Just(Verdict::Deny)]
}

fn action() -> impl Strategy<Value = Action> {
    prop::sample::select(Action::ALL.to_vec())
}

fn any_proto() -> impl Strategy<Value = Proto> {
    prop::sample::select(Proto::ALL.to_vec())
}

fn port_proto() -> impl Strategy<Value = Proto> {
    prop_oneof![Just(Proto::Tcp), Just(Proto::Udp)]
}

fn port_gen() -> impl Strategy<Value = P> {
    prop_oneof![
        1 => Just(P::All),
        1 => any_proto().prop_map(P::Proto),
        1 => Just(P::IcmpV6),
        1 => port_proto().prop_map(P::Star),
        3 => (port_proto(), port()).prop_map(|(p, n)| P::Single(p, n)),
        3 => (port_proto(), port(), port()).prop_map(|(p, a, b)| P::Range(p, a, b)),
    ]
}

fn member_gen() -> impl Strategy<Value = S> {
    prop_oneof![
        4 => (0..NAMED).prop_map(S::Key),
        1 => (0..POOL).prop_map(S::Node),
        1 => (0..POOL, any::<u16>()).prop_map(|(k, h)| S::Subnet(k, h)),
        3 => (0..16usize).prop_map(S::Circle),
    ]
}

fn subject_gen() -> impl Strategy<Value = S> {
    prop_oneof![1 => Just(S::Any), 8 => member_gen()]
}

fn rule_gen() -> impl Strategy<Value = RuleGen> {
    (
        prop::collection::vec(action(), 1..=2),
        verdict(),
        prop::collection::vec(subject_gen(), 1..=3),
        prop::collection::vec(port_gen(), 0..=3),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(|(actions, verdict, subjects, ports, note, style)| RuleGen {
            actions,
            verdict,
            subjects,
            ports,
            note,
            style,
        })
}

fn spec_gen() -> impl Strategy<Value = Spec> {
    let circles = prop::collection::vec(prop::collection::vec(member_gen(), 0..=4), 0..=6)
        .prop_flat_map(|c| {
            let n = c.len();
            (Just(c), Just((0..n).collect::<Vec<usize>>()).prop_shuffle())
        });
    let tests = prop::collection::vec((0..NAMED, action(), (any_proto(), port())), 0..=3);
    (
        verdict(),
        prop::array::uniform5(prop::option::of(verdict())),
        circles,
        prop::collection::vec(rule_gen(), 0..=10),
        tests,
        any::<bool>(),
    )
        .prop_map(
            |(base, overrides, (circles, order), rules, tests, tall)| Spec {
                base,
                overrides,
                circles,
                order,
                rules,
                tests,
                tall,
            },
        )
}

fn circle_name(i: usize) -> String {
    format!("c{i}")
}

/// Resolves a generated subject; `circles` is how many circles it may name (the lower ones).
fn resolve(s: &S, circles: usize) -> Subject {
    let k = keys();
    match *s {
        S::Any => Subject::Any,
        S::Key(i) => Subject::Key(k[i]),
        S::Node(i) => Subject::Addr(node_address(&k[i])),
        S::Subnet(i, h) => Subject::Addr(subnet_addr(&k[i], h)),
        S::Circle(j) if circles == 0 => Subject::Key(k[j % NAMED]),
        S::Circle(j) => Subject::Circle(circle_name(j % circles)),
    }
}

fn at<T>(value: T) -> At<T> {
    At {
        value,
        loc: Loc::default(),
    }
}

impl Spec {
    fn defaults(&self) -> [Verdict; 5] {
        // `default` leaves publish denied; only `[defaults] publish` changes it.
        let mut d = self.overrides.map(|o| o.unwrap_or(self.base));
        d[Action::Publish.index()] =
            self.overrides[Action::Publish.index()].unwrap_or(Verdict::Deny);
        d
    }

    /// Circle `i`'s members, resolved.
    fn members(&self, i: usize) -> Vec<Subject> {
        self.circles[i].iter().map(|s| resolve(s, i)).collect()
    }

    /// A rule's subjects, resolved (`any` alone, as the file demands).
    fn subjects(&self, r: &RuleGen) -> Vec<Subject> {
        let s: Vec<Subject> = r
            .subjects
            .iter()
            .map(|s| resolve(s, self.circles.len()))
            .collect();
        if s.contains(&Subject::Any) {
            vec![Subject::Any]
        } else {
            s
        }
    }

    /// A rule's ports: none unless all its actions take ports.
    fn ports(r: &RuleGen) -> &[P] {
        if r.actions.iter().all(|a| a.has_ports()) {
            &r.ports
        } else {
            &[]
        }
    }

    fn model(&self) -> Model {
        let circles = self
            .order
            .iter()
            .map(|&i| Circle {
                name: circle_name(i),
                loc: Loc::default(),
                members: self.members(i).into_iter().map(at).collect(),
            })
            .collect();
        let mut rules = Vec::new();
        for (n, r) in self.rules.iter().enumerate() {
            for &action in &r.actions {
                rules.push(Rule {
                    loc: Loc::default(),
                    action,
                    verdict: r.verdict,
                    subjects: self.subjects(r).into_iter().map(at).collect(),
                    ports: Self::ports(r).iter().map(P::spec).collect(),
                    note: r.note.then(|| format!("note {n}")),
                });
            }
        }
        Model {
            defaults: self.defaults(),
            circles,
            rules,
            tests: Vec::new(),
            names: NamePolicy::default(),
        }
    }

    /// The policy as TOML, with in-file tests expecting the reference's verdicts (except the
    /// test `flip`, which expects the opposite). Returns the text and each test's line.
    fn text(&self, model: &Model, flip: Option<usize>) -> (String, Vec<u32>) {
        let mut t = Text::default();
        t.push("# generated");
        t.push(format!("default = {}", quote(self.base.name())));
        if self.overrides.iter().any(Option::is_some) {
            t.push("");
            t.push("[defaults]");
            for a in Action::ALL {
                if let Some(v) = self.overrides[a.index()] {
                    t.push(format!("{} = {}", a.name(), quote(v.name())));
                }
            }
        }
        if !self.circles.is_empty() {
            t.push("");
            t.push("[circles]");
            for &i in &self.order {
                let members: Vec<String> =
                    self.members(i).iter().map(ToString::to_string).collect();
                if self.tall {
                    t.push(format!("{} = [", circle_name(i)));
                    for m in members {
                        t.push(format!("  {},", quote(&m)));
                    }
                    t.push("]");
                } else {
                    t.push(format!("{} = {}", circle_name(i), list(&members)));
                }
            }
        }
        for (n, r) in self.rules.iter().enumerate() {
            t.push("");
            t.push("[[rules]]");
            let actions: Vec<String> = r.actions.iter().map(|a| a.name().to_string()).collect();
            let subjects: Vec<String> = self.subjects(r).iter().map(ToString::to_string).collect();
            let ports: Vec<String> = Self::ports(r).iter().map(P::text).collect();
            let one_or_list = |v: &[String], bit: u8| {
                if v.len() == 1 && r.style & bit != 0 {
                    quote(&v[0])
                } else {
                    list(v)
                }
            };
            let action_line = format!("action = {}", one_or_list(&actions, 1));
            if r.style & 8 == 0 {
                t.push(action_line.clone());
            }
            t.push(format!(
                "{} = {}",
                r.verdict.name(),
                one_or_list(&subjects, 2)
            ));
            // No ports means all of them (an empty list is refused: it reads as "none").
            if !ports.is_empty() {
                t.push(format!("ports = {}", one_or_list(&ports, 4)));
            }
            if r.note {
                t.push(format!("note = {}", quote(&format!("note {n}"))));
            }
            if r.style & 8 != 0 {
                t.push(action_line);
            }
        }
        let mut lines = Vec::new();
        for (n, &(k, action, (proto, port))) in self.tests.iter().enumerate() {
            let key = keys()[k];
            let port = if proto.has_ports() { port } else { 0 };
            let mut expect = naive(model, &key, action, proto, port);
            if flip == Some(n) {
                expect = match expect {
                    Verdict::Allow => Verdict::Deny,
                    Verdict::Deny => Verdict::Allow,
                };
            }
            t.push("");
            lines.push(t.push("[[tests]]"));
            t.push(format!("action = {}", quote(action.name())));
            let packet = if proto.has_ports() {
                format!("{}/{port}", proto.name())
            } else {
                proto.name().to_string()
            };
            match action {
                Action::Peer | Action::Root | Action::Publish => {
                    t.push(format!("from = {}", quote(&hex(&key))))
                }
                Action::Traffic => {
                    t.push(format!("from = {}", quote(&hex(&key))));
                    t.push(format!("to = {}", quote(&packet)))
                }
                Action::Outbound => {
                    t.push(format!("to = {}", quote(&hex(&key))));
                    t.push(format!("port = {}", quote(&packet)))
                }
            };
            t.push(format!("expect = {}", quote(expect.name())));
        }
        (t.finish(), lines)
    }
}

/// Text written line by line, so that a test knows the line of everything it writes.
#[derive(Default)]
struct Text {
    lines: Vec<String>,
}

impl Text {
    /// Appends a line; returns its number (from 1).
    fn push(&mut self, s: impl Into<String>) -> u32 {
        self.lines.push(s.into());
        self.lines.len() as u32
    }

    fn finish(&self) -> String {
        let mut s = self.lines.join("\n");
        s.push('\n');
        s
    }
}

fn quote(s: &str) -> String {
    format!("\"{s}\"")
}

fn list(items: &[String]) -> String {
    let q: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", q.join(", "))
}

/// The model without locations (and tests), to compare a parsed model with its in-memory twin.
fn strip(model: &Model) -> Model {
    let mut m = model.clone();
    m.tests.clear();
    for c in &mut m.circles {
        c.loc = Loc::default();
        for s in &mut c.members {
            s.loc = Loc::default();
        }
    }
    for r in &mut m.rules {
        r.loc = Loc::default();
        for s in &mut r.subjects {
            s.loc = Loc::default();
        }
    }
    m
}

/// `cases` in release builds; a quarter in debug builds, where SHA-512 and Ed25519 are slow.
fn config(cases: u32) -> ProptestConfig {
    let cases = if cfg!(debug_assertions) {
        cases / 4
    } else {
        cases
    };
    ProptestConfig {
        // Never write regression files next to the sources.
        failure_persistence: None,
        ..ProptestConfig::with_cases(cases)
    }
}

fn flipped(v: Verdict) -> Verdict {
    match v {
        Verdict::Allow => Verdict::Deny,
        Verdict::Deny => Verdict::Allow,
    }
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(config(256))]

    /// The compiled policy, `explain` and the address lookups agree with the reference, for
    /// policies built in memory.
    #[test]
    fn compiled_policy_agrees_with_the_reference(spec in spec_gen()) {
        let model = spec.model();
        let policy = Policy::compile(model.clone(), "p.toml").expect("a generated policy is valid");
        prop_assert!(policy.tables() >= 1);
        check_against_reference(&policy, &model, "compiled")?;
    }

    /// The same policies written as TOML: the parser gives the same model, the tests carried in
    /// the file pass (and a wrong one fails at its line), and every verdict agrees.
    #[test]
    fn loaded_policy_agrees_with_the_reference(spec in spec_gen(), flip in any::<prop::sample::Index>()) {
        let model = spec.model();
        let (text, _) = spec.text(&model, None);
        let policy = match Policy::load(&text, "p.toml") {
            Ok(p) => p,
            Err(e) => return Err(TestCaseError::fail(format!("{e}\n--- text ---\n{text}"))),
        };
        prop_assert_eq!(strip(policy.model()), model.clone(), "parsed model\n{}", text);
        prop_assert_eq!(policy.model().tests.len(), spec.tests.len());
        check_against_reference(&policy, &model, "loaded")?;

        if !spec.tests.is_empty() {
            let n = flip.index(spec.tests.len());
            let (text, lines) = spec.text(&model, Some(n));
            let e = match Policy::load(&text, "p.toml") {
                Ok(_) => return Err(TestCaseError::fail(format!("the wrong test {n} passed\n{text}"))),
                Err(e) => e,
            };
            prop_assert!(!e.problems.is_empty());
            for p in &e.problems {
                prop_assert_eq!(p.kind, ProblemKind::TestFailed, "{}\n{}", e, text);
                prop_assert_eq!(p.loc.line, lines[n], "{}\n{}", e, text);
            }
        }
    }

    /// A deny for `any` makes every decision of its action Deny; a deny naming one key (by key,
    /// address or circle) makes that key's decisions Deny, whatever allows are added.
    #[test]
    fn deny_always_wins(
        spec in spec_gen(),
        action in action(),
        k in 0..POOL,
        how in 0..4u8,
        host in any::<u16>(),
        positions in prop::collection::vec(any::<prop::sample::Index>(), 4),
    ) {
        let base = spec.model();
        let key = keys()[k];
        let rule = |verdict, subject| Rule {
            loc: Loc::default(),
            action,
            verdict,
            subjects: vec![at(subject)],
            ports: Vec::new(),
            note: None,
        };
        let packets = packets(&base, &[]);
        let asked: &[(Proto, u16)] = if action.has_ports() { &packets } else { &[(Proto::Tcp, 0)] };

        // Deny any.
        let mut model = base.clone();
        let at_ = positions[0].index(model.rules.len() + 1);
        model.rules.insert(at_, rule(Verdict::Deny, Subject::Any));
        let policy = Policy::compile(model.clone(), "p.toml").expect("valid");
        for key in keys() {
            for &(proto, port) in asked {
                prop_assert_eq!(policy.decide(key, action, proto, port), Verdict::Deny);
                let e = policy.explain(&Who::Key(*key), action, Some((proto, port)));
                prop_assert_eq!(e.verdict, Verdict::Deny);
                prop_assert_eq!(e.decided_by.map(|r| r.verdict), Some(Verdict::Deny));
            }
        }

        // Deny one key, then allow it every way there is.
        let mut model = base;
        let subject = match how {
            0 => Subject::Key(key),
            1 => Subject::Addr(node_address(&key)),
            2 => Subject::Addr(subnet_addr(&key, host)),
            _ => {
                model.circles.push(Circle {
                    name: "deny-me".into(),
                    loc: Loc::default(),
                    members: vec![at(Subject::Key(key))],
                });
                model.circles.push(Circle {
                    name: "outer".into(),
                    loc: Loc::default(),
                    members: vec![at(Subject::Circle("deny-me".into()))],
                });
                Subject::Circle("outer".into())
            }
        };
        let deny = rule(Verdict::Deny, subject);
        let i = positions[1].index(model.rules.len() + 1);
        model.rules.insert(i, deny);
        for (n, s) in [Subject::Key(key), Subject::Any].into_iter().enumerate() {
            let i = positions[2 + n].index(model.rules.len() + 1);
            model.rules.insert(i, rule(Verdict::Allow, s));
        }
        let policy = Policy::compile(model.clone(), "p.toml").expect("valid");
        let class = policy.classify(&key);
        for &(proto, port) in asked {
            prop_assert_eq!(class.decide(action, proto, port), Verdict::Deny, "{:?} {}", proto, port);
            let e = policy.explain(&Who::Key(key), action, Some((proto, port)));
            prop_assert_eq!(e.verdict, Verdict::Deny, "{}", e.reason);
        }
        check_against_reference(&policy, &model, "deny one key")?;
    }

    /// A key in c0, c1 holding circle:c0, … cN holding circle:cN-1, and one rule naming only cN:
    /// the rule applies to the key (and only to members).
    #[test]
    fn nesting_resolves(
        depth in 0..=10usize,
        action in action(),
        default in verdict(),
        k in 0..NAMED,
        order in Just((0..=10usize).collect::<Vec<usize>>()).prop_shuffle(),
        noise in prop::collection::vec(0..NAMED, 0..3),
        as_text in any::<bool>(),
        by_address in any::<bool>(),
    ) {
        let key = keys()[k];
        let inner = if by_address { Subject::Addr(node_address(&key)) } else { Subject::Key(key) };
        // n0 holds the key, n{i} holds circle:n{i-1}; written in a shuffled order.
        let mut circles: Vec<Circle> = order
            .iter()
            .filter(|&&i| i <= depth)
            .map(|&i| Circle {
                name: format!("n{i}"),
                loc: Loc::default(),
                members: vec![at(if i == 0 {
                    inner.clone()
                } else {
                    Subject::Circle(format!("n{}", i - 1))
                })],
            })
            .collect();
        // Other keys sit in a circle of their own, outside the chain.
        let others: Vec<Subject> = noise.iter().filter(|&&n| n != k).map(|&n| Subject::Key(keys()[n])).collect();
        if !others.is_empty() {
            circles.push(Circle {
                name: "others".into(),
                loc: Loc::default(),
                members: others.into_iter().map(at).collect(),
            });
        }
        // Publish's default is deny whatever `default` says.
        let want = flipped(if action == Action::Publish { Verdict::Deny } else { default });
        let model = Model {
            // As `default = …` in a file: publish stays denied.
            defaults: Action::ALL.map(|a| if a == Action::Publish { Verdict::Deny } else { default }),
            circles,
            rules: vec![Rule {
                loc: Loc::default(),
                action,
                verdict: want,
                subjects: vec![at(Subject::Circle(format!("n{depth}")))],
                ports: Vec::new(),
                note: None,
            }],
            tests: Vec::new(),
            names: NamePolicy::default(),
        };
        let policy = if as_text {
            let mut t = Text::default();
            t.push(format!("default = {}", quote(default.name())));
            t.push("[circles]");
            for c in &model.circles {
                let m: Vec<String> = c.members.iter().map(|m| m.value.to_string()).collect();
                t.push(format!("{} = {}", c.name, list(&m)));
            }
            t.push("[[rules]]");
            t.push(format!("action = {}", quote(action.name())));
            t.push(format!("{} = \"circle:n{depth}\"", want.name()));
            let text = t.finish();
            Policy::load(&text, "p.toml").map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?
        } else {
            Policy::compile(model.clone(), "p.toml").expect("valid")
        };
        let members = policy.circle_members(&format!("n{depth}")).expect("the circle exists");
        prop_assert_eq!(members, vec![inner]);
        for (proto, port) in [(Proto::Tcp, 22), (Proto::Udp, 53), (Proto::Icmp, 0), (Proto::Other, 0)] {
            prop_assert_eq!(policy.decide(&key, action, proto, port), want);
            for &n in &noise {
                if n != k {
                    prop_assert_eq!(policy.decide(&keys()[n], action, proto, port), model.defaults[action.index()]);
                }
            }
            prop_assert_eq!(policy.decide(&keys()[STRANGER], action, proto, port), model.defaults[action.index()]);
        }
        let e = policy.explain(&Who::Key(key), action, Some((Proto::Tcp, 22)));
        prop_assert_eq!(e.circles.len(), depth + 1);
        check_against_reference(&policy, &model, "nesting")?;
    }
}

// ---------------------------------------------------------------------------------------------
// Broken policies

/// A policy with a cycle among its circles and/or references to circles nobody defined.
#[derive(Debug, Clone)]
struct Broken {
    /// Circles `b0..bN`; circles `0..cycle` form the cycle b0 → b1 → … → b0.
    circles: usize,
    cycle: usize,
    /// For each circle outside the cycle, the circles it holds (`j % circles`, kept acyclic:
    /// only cycle circles or lower ones).
    extra: Vec<Vec<usize>>,
    /// Where unknown circles are named: 0 a circle member, 1 a rule, 2 a test.
    unknown: Vec<(u8, usize)>,
    order: Vec<usize>,
    tall: bool,
    key: usize,
}

fn broken_gen() -> impl Strategy<Value = Broken> {
    (1..=8usize, 0..=8usize)
        .prop_flat_map(|(circles, cycle)| {
            let cycle = cycle.min(circles);
            (
                Just(circles),
                Just(cycle),
                prop::collection::vec(prop::collection::vec(0..16usize, 0..3), circles),
                prop::collection::vec((0..3u8, 0..16usize), 0..=3),
                Just((0..circles).collect::<Vec<usize>>()).prop_shuffle(),
                any::<bool>(),
                0..NAMED,
            )
        })
        .prop_filter("something must be wrong", |(_, cycle, _, unknown, ..)| {
            *cycle > 0 || !unknown.is_empty()
        })
        .prop_map(
            |(circles, cycle, extra, unknown, order, tall, key)| Broken {
                circles,
                cycle,
                extra,
                unknown,
                order,
                tall,
                key,
            },
        )
}

impl Broken {
    /// The members of circle `i` (names and keys), marking the cycle edge and unknown names.
    fn members(&self, i: usize) -> Vec<(String, Mark)> {
        let mut m = vec![(hex(&keys()[self.key]), Mark::None)];
        if i < self.cycle {
            m.push((format!("circle:b{}", (i + 1) % self.cycle), Mark::Cycle));
        } else {
            for &j in &self.extra[i] {
                // Cycle circles, or lower circles outside the cycle: no new cycle.
                let j = j % i.max(1);
                if j < i {
                    m.push((format!("circle:b{j}"), Mark::None));
                }
            }
        }
        for (n, &(place, which)) in self.unknown.iter().enumerate() {
            if place == 0 && which % self.circles == i {
                m.push((format!("circle:ghost{n}"), Mark::Unknown));
            }
        }
        m
    }

    /// The text, the lines of the cycle's memberships and the lines naming unknown circles.
    fn text(&self) -> (String, Vec<u32>, Vec<u32>) {
        let mut t = Text::default();
        let (mut cycle_lines, mut unknown_lines) = (Vec::new(), Vec::new());
        let mut mark = |line: u32, m: Mark| match m {
            Mark::Cycle => cycle_lines.push(line),
            Mark::Unknown => unknown_lines.push(line),
            Mark::None => {}
        };
        t.push("default = \"deny\"");
        t.push("");
        t.push("[circles]");
        for &i in &self.order {
            let members = self.members(i);
            if self.tall {
                t.push(format!("b{i} = ["));
                for (s, m) in members {
                    let line = t.push(format!("    {},", quote(&s)));
                    mark(line, m);
                }
                t.push("]");
            } else {
                let names: Vec<String> = members.iter().map(|(s, _)| s.clone()).collect();
                let line = t.push(format!("b{i} = {}", list(&names)));
                for (_, m) in members {
                    mark(line, m);
                }
            }
        }
        for (n, &(place, which)) in self.unknown.iter().enumerate() {
            if place == 1 {
                t.push("");
                t.push("[[rules]]");
                t.push("action = \"traffic\"");
                if which % 2 == 0 {
                    let line = t.push(format!("allow = [\"circle:b0\", \"circle:ghost{n}\"]"));
                    mark(line, Mark::Unknown);
                } else {
                    t.push("deny = [");
                    t.push("  \"circle:b0\",");
                    let line = t.push(format!("  \"circle:ghost{n}\","));
                    mark(line, Mark::Unknown);
                    t.push("]");
                }
                t.push("ports = \"tcp/22\"");
            }
        }
        for (n, &(place, _)) in self.unknown.iter().enumerate() {
            if place == 2 {
                t.push("");
                t.push("[[tests]]");
                t.push("action = \"peer\"");
                let line = t.push(format!("from = \"circle:ghost{n}\""));
                mark(line, Mark::Unknown);
                t.push("expect = \"deny\"");
            }
        }
        (t.finish(), cycle_lines, unknown_lines)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    None,
    Cycle,
    Unknown,
}

proptest! {
    #![proptest_config(config(256))]

    /// Cycles and unknown circles are rejected, each problem at the line of the reference.
    #[test]
    fn cycles_and_unknown_circles_are_rejected_with_a_location(b in broken_gen()) {
        let (text, cycle_lines, unknown_lines) = b.text();
        let e = match Policy::load(&text, "p.toml") {
            Ok(_) => return Err(TestCaseError::fail(format!("accepted:\n{text}"))),
            Err(e) => e,
        };
        let ctx = format!("{e}\n--- text ---\n{text}");
        prop_assert_eq!(e.file.as_str(), "p.toml");
        let cycles: Vec<u32> = e.problems.iter().filter(|p| p.kind == ProblemKind::Cycle).map(|p| p.loc.line).collect();
        let unknowns: Vec<u32> = e.problems.iter().filter(|p| p.kind == ProblemKind::UnknownCircle).map(|p| p.loc.line).collect();
        prop_assert_eq!(cycles.len() + unknowns.len(), e.problems.len(), "other problems: {}", ctx);
        if b.cycle > 0 {
            // One simple cycle: one membership closes it, and it is one of the cycle's.
            prop_assert_eq!(cycles.len(), 1, "{}", ctx);
            prop_assert!(cycle_lines.contains(&cycles[0]), "cycle at line {} not in {:?}: {}", cycles[0], cycle_lines, ctx);
        } else {
            prop_assert!(cycles.is_empty(), "{}", ctx);
        }
        let want: BTreeSet<u32> = unknown_lines.iter().copied().collect();
        let got: BTreeSet<u32> = unknowns.iter().copied().collect();
        prop_assert_eq!(got, want, "{}", ctx);
        prop_assert_eq!(unknowns.len(), unknown_lines.len(), "{}", ctx);
        for p in &e.problems {
            prop_assert!(p.loc.col >= 1, "{}", ctx);
        }
    }
}

/// The hand-written cases the properties generalise, with their exact locations.
#[test]
fn cycle_and_unknown_circle_locations() {
    let text = "[circles]\na = [\"circle:b\"]\nb = [\n  \"circle:a\",\n]\n\n[[rules]]\naction = \"peer\"\nallow = [\"circle:a\", \"circle:nope\"]\n";
    let e = match Policy::load(text, "p.toml") {
        Ok(_) => panic!("a cycle was accepted"),
        Err(e) => e,
    };
    let got: Vec<(ProblemKind, u32, u32)> = e
        .problems
        .iter()
        .map(|p| (p.kind, p.loc.line, p.loc.col))
        .collect();
    assert_eq!(
        got,
        vec![
            (ProblemKind::Cycle, 4, 3),
            (ProblemKind::UnknownCircle, 9, 22)
        ],
        "{e}"
    );
}
