//! Checking a [`Model`] (unknown circles, cycles) and compiling it into lookup tables.
//!
//! An identity is a set of *atoms*: its key, its node address and its subnet. A rule matches
//! an identity when it names `any`, one of its atoms, or a circle whose (nested) expansion
//! holds one of its atoms. Identities that match the same rules behave alike, so they share
//! one [`Table`]: a verdict for `peer` and `root`, and for `traffic` and `outbound` a step
//! function over the ports of each protocol, with deny already merged over allow. A packet
//! then costs one hash lookup (key to table) and one binary search over a few port ranges.

use crate::error::{PolicyError, ProblemKind, Problems};
use crate::model::*;
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv6Addr;
use std::sync::Arc;

/// One thing a subject can name: a key, or the owner id of an overlay address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Atom {
    Key(Key),
    Addr(Ipv6Addr),
}

impl Atom {
    pub(crate) fn subject(&self) -> Subject {
        match self {
            Atom::Key(k) => Subject::Key(*k),
            Atom::Addr(a) => Subject::Addr(*a),
        }
    }
}

/// The atoms of a key: the key, its node address, its subnet.
pub(crate) fn key_atoms(k: &Key) -> [Atom; 3] {
    [
        Atom::Key(*k),
        Atom::Addr(routing::address::node_address(k)),
        Atom::Addr(routing::address::node_subnet(k)),
    ]
}

/// The checked circles: names, and each circle's expansion into atoms.
pub(crate) struct Circles {
    pub(crate) index: HashMap<String, usize>,
    pub(crate) expanded: Vec<BTreeSet<Atom>>,
}

/// Checks names and cycles; expands every circle.
pub(crate) fn check(model: &Model, file: &str) -> Result<Circles, PolicyError> {
    let mut p = Problems::default();
    let index: HashMap<String, usize> = model
        .circles
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), i))
        .collect();
    let mut names: Vec<&str> = model.circles.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    let defined = if names.is_empty() {
        "no circle is defined; add one under [circles]".to_string()
    } else {
        format!("defined circles: {}", names.join(", "))
    };
    let unknown = |s: &At<Subject>, whose: &str, p: &mut Problems| {
        if let Subject::Circle(n) = &s.value
            && !index.contains_key(n)
        {
            p.push(
                s.loc,
                ProblemKind::UnknownCircle,
                format!("{whose}names unknown circle {n:?} ({defined})"),
            );
        }
    };
    for c in &model.circles {
        for m in &c.members {
            unknown(m, &format!("circle {:?} ", c.name), &mut p);
        }
    }
    for r in &model.rules {
        for s in &r.subjects {
            unknown(s, "this rule ", &mut p);
        }
    }
    for t in &model.tests {
        unknown(&t.subject, "this test ", &mut p);
    }
    if let Some(a) = &model.names.authorities {
        let s = At {
            value: Subject::Circle(a.value.clone()),
            loc: a.loc,
        };
        unknown(&s, "[names] authorities ", &mut p);
    }
    // Cycles: depth-first, reporting the member that closes each cycle.
    let n = model.circles.len();
    let mut state = vec![0u8; n]; // 0 new, 1 on the stack, 2 done
    let mut order = Vec::with_capacity(n);
    for start in 0..n {
        if state[start] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        state[start] = 1;
        while let Some((c, next)) = stack.last().copied() {
            let members = &model.circles[c].members;
            if next >= members.len() {
                state[c] = 2;
                order.push(c);
                stack.pop();
                continue;
            }
            if let Some(top) = stack.last_mut() {
                top.1 += 1;
            }
            let m = &members[next];
            let Subject::Circle(name) = &m.value else {
                continue;
            };
            let Some(&d) = index.get(name) else { continue };
            match state[d] {
                0 => {
                    state[d] = 1;
                    stack.push((d, 0));
                }
                1 => {
                    let from = stack.iter().position(|(x, _)| *x == d).unwrap_or(0);
                    let mut path: Vec<&str> = stack[from..]
                        .iter()
                        .map(|(x, _)| model.circles[*x].name.as_str())
                        .collect();
                    path.push(name);
                    p.push(
                        m.loc,
                        ProblemKind::Cycle,
                        format!(
                            "circles contain each other: {} (remove one of these memberships)",
                            path.join(" → ")
                        ),
                    );
                }
                _ => {}
            }
        }
    }
    if !p.0.is_empty() {
        return Err(PolicyError::new(file, p.0));
    }
    // `order` lists every circle after the circles it contains.
    let mut expanded: Vec<BTreeSet<Atom>> = vec![BTreeSet::new(); n];
    for c in order {
        let mut set = BTreeSet::new();
        for m in &model.circles[c].members {
            match &m.value {
                Subject::Key(k) => {
                    set.insert(Atom::Key(*k));
                }
                Subject::Addr(a) => {
                    if let Some(o) = routing::address::owner_id(a) {
                        set.insert(Atom::Addr(o));
                    }
                }
                Subject::Circle(name) => {
                    if let Some(&d) = index.get(name) {
                        let inner = expanded[d].clone();
                        set.extend(inner);
                    }
                }
                Subject::Any => {}
            }
        }
        expanded[c] = set;
    }
    Ok(Circles { index, expanded })
}

/// The verdicts of one protocol over the ports: `verdicts[i]` holds from `starts[i]` up to the
/// next start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortMap {
    starts: Box<[u16]>,
    verdicts: Box<[Verdict]>,
}

impl PortMap {
    #[inline]
    pub(crate) fn get(&self, port: u16) -> Verdict {
        if self.starts.len() == 1 {
            return self.verdicts[0];
        }
        let i = self.starts.partition_point(|&s| s <= port);
        self.verdicts[i.saturating_sub(1)]
    }

    pub(crate) fn all_allowed(&self) -> bool {
        self.verdicts.iter().all(|v| v.allows())
    }

    fn any_allowed(&self) -> bool {
        self.verdicts.iter().any(|v| v.allows())
    }

    /// Sweeps the ranges of the matching rules; deny wins wherever both cover a port.
    fn build(model: &Model, rules: &[u32], action: Action, proto: Proto) -> PortMap {
        let default = model.defaults[action.index()];
        // (position, allow delta, deny delta)
        let mut events: Vec<(u32, i32, i32)> = Vec::new();
        for &r in rules {
            let rule = &model.rules[r as usize];
            if rule.action != action {
                continue;
            }
            let full = [PortSpec::ALL];
            let specs: &[PortSpec] = if rule.ports.is_empty() {
                &full
            } else {
                &rule.ports
            };
            for s in specs.iter().filter(|s| s.proto.is_none_or(|p| p == proto)) {
                let (lo, hi) = if proto.has_ports() {
                    (s.lo, s.hi)
                } else {
                    (0, u16::MAX)
                };
                let (a, d) = match rule.verdict {
                    Verdict::Allow => (1, 0),
                    Verdict::Deny => (0, 1),
                };
                events.push((u32::from(lo), a, d));
                events.push((u32::from(hi) + 1, -a, -d));
            }
        }
        events.sort_unstable();
        let (mut allow, mut deny) = (0i32, 0i32);
        let mut starts: Vec<u16> = vec![0];
        let mut verdicts: Vec<Verdict> = vec![default];
        let mut i = 0;
        while i < events.len() {
            let pos = events[i].0;
            while i < events.len() && events[i].0 == pos {
                allow += events[i].1;
                deny += events[i].2;
                i += 1;
            }
            if pos > u32::from(u16::MAX) {
                break;
            }
            let v = if deny > 0 {
                Verdict::Deny
            } else if allow > 0 {
                Verdict::Allow
            } else {
                default
            };
            let pos = pos as u16;
            if verdicts.last() == Some(&v) {
                continue;
            }
            if starts.last() == Some(&pos) {
                verdicts.pop();
                starts.pop();
                if verdicts.last() == Some(&v) {
                    continue;
                }
            }
            starts.push(pos);
            verdicts.push(v);
        }
        PortMap {
            starts: starts.into(),
            verdicts: verdicts.into(),
        }
    }
}

/// Everything about identities that match the same rules.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Table {
    /// The rules whose subjects match, in file order.
    pub(crate) rules: Vec<u32>,
    /// Verdicts of `peer`, `root` and `publish` (by [`Action::index`]; the others unused).
    pub(crate) fixed: [Verdict; 5],
    /// `traffic` then `outbound`, by [`Proto::index`].
    pub(crate) ports: [[PortMap; 4]; 2],
    /// Some packet of `traffic` / `outbound` is allowed.
    pub(crate) any: [bool; 2],
}

impl Table {
    pub(crate) fn build(model: &Model, rules: Vec<u32>) -> Table {
        let fixed_of = |a: Action| {
            let matching = rules
                .iter()
                .map(|&r| &model.rules[r as usize])
                .filter(|r| r.action == a);
            let mut v = None;
            for r in matching {
                if r.verdict == Verdict::Deny {
                    return Verdict::Deny;
                }
                v = Some(Verdict::Allow);
            }
            v.unwrap_or(model.defaults[a.index()])
        };
        let ports = [Action::Traffic, Action::Outbound]
            .map(|a| Proto::ALL.map(|p| PortMap::build(model, &rules, a, p)));
        let any = [0, 1].map(|i| ports[i].iter().any(PortMap::any_allowed));
        Table {
            fixed: [
                fixed_of(Action::Peer),
                Verdict::Deny,
                fixed_of(Action::Root),
                Verdict::Deny,
                fixed_of(Action::Publish),
            ],
            ports,
            any,
            rules,
        }
    }
}

/// The compiled lookup structures of a policy.
pub(crate) struct Compiled {
    /// Keys named anywhere in the policy, to their table.
    pub(crate) keys: HashMap<Key, Arc<Table>, BuildKeyHasher>,
    /// Address owner ids named in the policy, to the rules that name them (directly or
    /// through circles).
    pub(crate) addr_rules: HashMap<Ipv6Addr, Vec<u32>>,
    /// Tables of single address atoms (an unnamed key that owns one named address).
    pub(crate) addr_tables: HashMap<Ipv6Addr, Arc<Table>>,
    /// Rules that name `any`.
    pub(crate) any_rules: Vec<u32>,
    /// The table of identities the policy does not name.
    pub(crate) stranger: Arc<Table>,
    /// The owner ids (node address and subnet) of every named key, to the key.
    pub(crate) addr_owner: HashMap<Ipv6Addr, Key>,
}

/// Builds the tables.
pub(crate) fn compile(model: &Model, circles: &Circles) -> Compiled {
    let mut any_rules = Vec::new();
    let mut by_atom: HashMap<Atom, Vec<u32>> = HashMap::new();
    for (i, r) in model.rules.iter().enumerate() {
        let i = i as u32;
        let mut atoms: BTreeSet<Atom> = BTreeSet::new();
        for s in &r.subjects {
            match &s.value {
                Subject::Any => any_rules.push(i),
                Subject::Key(k) => {
                    atoms.insert(Atom::Key(*k));
                }
                Subject::Addr(a) => {
                    if let Some(o) = routing::address::owner_id(a) {
                        atoms.insert(Atom::Addr(o));
                    }
                }
                Subject::Circle(n) => {
                    if let Some(&c) = circles.index.get(n) {
                        atoms.extend(circles.expanded[c].iter().copied());
                    }
                }
            }
        }
        for a in atoms {
            by_atom.entry(a).or_default().push(i);
        }
    }
    any_rules.dedup();
    // Every key named in a circle or a rule gets a table, even if no rule names it.
    let mut all_keys: BTreeSet<Key> = BTreeSet::new();
    for set in &circles.expanded {
        for a in set {
            if let Atom::Key(k) = a {
                all_keys.insert(*k);
            }
        }
    }
    for a in by_atom.keys() {
        if let Atom::Key(k) = a {
            all_keys.insert(*k);
        }
    }
    let mut cache: HashMap<Vec<u32>, Arc<Table>> = HashMap::new();
    let mut table_of = |rules: Vec<u32>| -> Arc<Table> {
        cache
            .entry(rules.clone())
            .or_insert_with(|| Arc::new(Table::build(model, rules)))
            .clone()
    };
    let has_addrs = by_atom.keys().any(|a| matches!(a, Atom::Addr(_)));
    let rules_of = |atoms: &[Atom]| -> Vec<u32> {
        let mut v = any_rules.clone();
        for a in atoms {
            if let Some(r) = by_atom.get(a) {
                v.extend_from_slice(r);
            }
        }
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut keys = HashMap::with_capacity_and_hasher(all_keys.len(), BuildKeyHasher);
    for k in &all_keys {
        let rules = if has_addrs {
            rules_of(&key_atoms(k))
        } else {
            rules_of(&[Atom::Key(*k)])
        };
        keys.insert(*k, table_of(rules));
    }
    let mut addr_rules = HashMap::new();
    let mut addr_tables = HashMap::new();
    for (a, _) in by_atom.iter() {
        if let Atom::Addr(o) = a {
            let rules = rules_of(&[*a]);
            addr_tables.insert(*o, table_of(rules.clone()));
            addr_rules.insert(*o, rules);
        }
    }
    let stranger = table_of(any_rules.clone());
    let mut addr_owner = HashMap::with_capacity(2 * all_keys.len());
    for k in &all_keys {
        for a in &key_atoms(k)[1..] {
            if let Atom::Addr(o) = a {
                addr_owner.insert(*o, *k);
            }
        }
    }
    Compiled {
        keys,
        addr_rules,
        addr_tables,
        any_rules,
        stranger,
        addr_owner,
    }
}

/// Keys are public keys: uniformly distributed bytes already, and the map holds only keys the
/// policy's author wrote. Their first eight bytes are the hash.
#[derive(Clone, Copy, Default)]
pub(crate) struct BuildKeyHasher;

/// See [`BuildKeyHasher`].
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }
}

impl std::hash::BuildHasher for BuildKeyHasher {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}
