//! TOML text to [`Model`], with a location on everything.
//!
//! The file is read through `toml`'s spanned document tree rather than serde structs, so that
//! every problem (a bad key in the third member of a circle, an unknown field in rule 7) can
//! name its line and column, and so that all problems are reported at once, not only the first.

use crate::error::{Loc, PolicyError, ProblemKind, Problems};
use crate::model::*;
use std::net::Ipv6Addr;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Parses policy text. `file` names the file in messages. Only the shape and the values are
/// checked here; names and cycles are checked by [`crate::compile`].
pub fn parse(text: &str, file: &str) -> Result<Model, PolicyError> {
    let mut p = Problems::default();
    let root = match DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            let loc = e.span().map_or(Loc::default(), |s| Loc::of(text, s.start));
            let msg = e.message().trim().to_string();
            p.push(loc, ProblemKind::Syntax, format!("not valid TOML: {msg}"));
            return Err(PolicyError::new(file, p.0));
        }
    };
    let mut cx = Cx { text, p };
    let mut model = Model::default();
    for (k, v) in root.get_ref() {
        match k.get_ref().as_ref() {
            "default" => {
                if let Some(d) = cx.verdict(v) {
                    // `default` leaves `publish` denied: opening a public name takes a rule
                    // or `[defaults] publish`.
                    for a in Action::ALL {
                        if a != Action::Publish {
                            model.defaults[a.index()] = d;
                        }
                    }
                }
            }
            "defaults" | "circles" | "rules" | "tests" | "names" => {}
            other => cx.bad(
                k.span().start,
                format!(
                    "unknown key {other:?}; a policy has default, [defaults], [circles], \
                     [[rules]], [[tests]] and [names]"
                ),
            ),
        }
    }
    let get = |name: &str| {
        root.get_ref()
            .iter()
            .find(|(k, _)| k.get_ref() == name)
            .map(|(_, v)| v)
    };
    if let Some(v) = get("defaults") {
        cx.defaults(v, &mut model);
    }
    if let Some(v) = get("circles") {
        cx.circles(v, &mut model);
    }
    if let Some(v) = get("rules") {
        for t in cx.tables(v, "rules", "[[rules]]") {
            cx.rule(t, &mut model);
        }
    }
    if let Some(v) = get("tests") {
        for t in cx.tables(v, "tests", "[[tests]]") {
            cx.test(t, &mut model);
        }
    }
    if let Some(v) = get("names") {
        cx.names(v, &mut model);
    }
    cx.p.into_result(file, model)
}

struct Cx<'t> {
    text: &'t str,
    p: Problems,
}

type Val<'a> = Spanned<DeValue<'a>>;

impl Cx<'_> {
    fn loc(&self, offset: usize) -> Loc {
        Loc::of(self.text, offset)
    }

    fn bad(&mut self, offset: usize, msg: impl Into<String>) {
        let loc = self.loc(offset);
        self.p.push(loc, ProblemKind::BadValue, msg);
    }

    fn string<'v>(&mut self, v: &'v Val<'_>, what: &str) -> Option<&'v str> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.bad(v.span().start, format!("{what} must be a string"));
                None
            }
        }
    }

    /// A string or a list of strings, each with its offset.
    fn strings<'v>(&mut self, v: &'v Val<'_>, what: &str) -> Vec<(&'v str, usize)> {
        match v.get_ref() {
            DeValue::String(s) => vec![(s.as_ref(), v.span().start)],
            DeValue::Array(a) => {
                let mut out = Vec::new();
                for item in a.iter() {
                    if let Some(s) = self.string(item, what) {
                        out.push((s, item.span().start));
                    }
                }
                out
            }
            _ => {
                self.bad(
                    v.span().start,
                    format!("{what} must be a string or a list of strings"),
                );
                Vec::new()
            }
        }
    }

    fn verdict(&mut self, v: &Val<'_>) -> Option<Verdict> {
        let s = self.string(v, "a default")?;
        let d = Verdict::parse(s);
        if d.is_none() {
            self.bad(
                v.span().start,
                format!("{s:?} is not a verdict; write \"allow\" or \"deny\""),
            );
        }
        d
    }

    fn defaults(&mut self, v: &Val<'_>, model: &mut Model) {
        let DeValue::Table(t) = v.get_ref() else {
            self.bad(
                v.span().start,
                "[defaults] must be a table: peer = \"allow\", traffic = \"deny\", …",
            );
            return;
        };
        for (k, v) in t {
            match Action::parse(k.get_ref()) {
                Some(a) => {
                    if let Some(d) = self.verdict(v) {
                        model.defaults[a.index()] = d;
                    }
                }
                None => self.bad(
                    k.span().start,
                    format!(
                        "unknown action {:?} in [defaults]; the actions are peer, traffic, root, \
                         outbound and publish",
                        k.get_ref()
                    ),
                ),
            }
        }
    }

    fn circles(&mut self, v: &Val<'_>, model: &mut Model) {
        let DeValue::Table(t) = v.get_ref() else {
            self.bad(
                v.span().start,
                "[circles] must be a table: NAME = [\"KEY\", \"circle:OTHER\", …]",
            );
            return;
        };
        for (k, v) in t {
            let name = k.get_ref().as_ref();
            let loc = self.loc(k.span().start);
            if let Err(why) = check_circle_name(name) {
                self.bad(k.span().start, why);
                continue;
            }
            let DeValue::Array(_) = v.get_ref() else {
                self.bad(
                    v.span().start,
                    format!(
                        "circle {name:?} must be a list of keys, addresses and \"circle:NAME\""
                    ),
                );
                continue;
            };
            let mut members = Vec::new();
            for (s, at) in self.strings(v, "a circle member") {
                match parse_subject(s) {
                    Ok(Subject::Any) => self.bad(
                        at,
                        format!("circle {name:?}: \"any\" cannot be a member; use \"any\" in the rule instead"),
                    ),
                    Ok(value) => members.push(At { value, loc: self.loc(at) }),
                    Err(why) => self.bad(at, format!("circle {name:?}: {why}")),
                }
            }
            model.circles.push(Circle {
                name: name.to_string(),
                loc,
                members,
            });
        }
        model.circles.sort_by_key(|c| c.loc);
    }

    /// `[names]`: `NAME = "KEY"` pins, and `authorities = "circle:NAME"`.
    fn names(&mut self, v: &Val<'_>, model: &mut Model) {
        let DeValue::Table(t) = v.get_ref() else {
            self.bad(
                v.span().start,
                "[names] must be a table: shop = \"KEY\" pins a name, authorities = \
                 \"circle:NAME\" trusts a circle's delegations",
            );
            return;
        };
        for (k, v) in t {
            let name = k.get_ref().as_ref();
            let at = v.span().start;
            if name == "authorities" {
                let Some(s) = self.string(v, "authorities") else {
                    continue;
                };
                match s.strip_prefix("circle:") {
                    Some(c) => match check_circle_name(c) {
                        Ok(()) => {
                            model.names.authorities = Some(At {
                                value: c.to_string(),
                                loc: self.loc(at),
                            })
                        }
                        Err(why) => self.bad(at, format!("[names] authorities: {why}")),
                    },
                    None => self.bad(
                        at,
                        format!(
                            "[names] authorities = {s:?}: name a circle, \"circle:NAME\", whose \
                             members are the name authorities"
                        ),
                    ),
                }
                continue;
            }
            let Some(lower) = check_name(name) else {
                self.bad(
                    k.span().start,
                    format!(
                        "[names] {name:?} is not a name: one DNS label, 1 to 63 of a-z, 0-9 and \
                         '-', not starting or ending with '-' (or \"authorities\")"
                    ),
                );
                continue;
            };
            let Some(s) = self.string(v, "a pinned name's key") else {
                continue;
            };
            match parse_key(s) {
                Ok(key) => model.names.pins.push(NamePin {
                    name: lower,
                    key,
                    loc: self.loc(k.span().start),
                }),
                Err(why) => self.bad(at, format!("[names] {name}: {why}")),
            }
        }
        // In file order (the table's keys are not); a name pinned twice is reported at the
        // second pin.
        model.names.pins.sort_by_key(|p| p.loc);
        let mut seen = std::collections::BTreeSet::new();
        let mut twice = Vec::new();
        model.names.pins.retain(|p| {
            let first = seen.insert(p.name.clone());
            if !first {
                twice.push((p.loc, p.name.clone()));
            }
            first
        });
        for (loc, name) in twice {
            self.p.push(
                loc,
                ProblemKind::BadValue,
                format!("[names] {name:?} is pinned twice; keep one"),
            );
        }
    }

    fn tables<'v, 'a>(
        &mut self,
        v: &'v Val<'a>,
        key: &str,
        form: &str,
    ) -> Vec<(&'v DeTable<'a>, usize)> {
        match v.get_ref() {
            DeValue::Array(a) => a
                .iter()
                .filter_map(|item| match item.get_ref() {
                    DeValue::Table(t) => Some((t, item.span().start)),
                    _ => {
                        self.bad(
                            item.span().start,
                            format!("each of {key} must be a table ({form})"),
                        );
                        None
                    }
                })
                .collect(),
            _ => {
                self.bad(
                    v.span().start,
                    format!("{key} must be a list of tables: write {form} sections"),
                );
                Vec::new()
            }
        }
    }

    fn rule(&mut self, (t, at): (&DeTable<'_>, usize), model: &mut Model) {
        let loc = self.loc(at);
        let mut actions = Vec::new();
        let mut verdicts = Vec::new();
        let mut ports = Vec::new();
        let mut note = None;
        let mut saw_action = false;
        for (k, v) in t {
            match k.get_ref().as_ref() {
                "action" => {
                    saw_action = true;
                    if matches!(v.get_ref(), DeValue::Array(a) if a.is_empty()) {
                        self.bad(v.span().start, "action = [] names no action; write peer, traffic, root, outbound or publish");
                    }
                    for (s, o) in self.strings(v, "action") {
                        match Action::parse(s) {
                            Some(a) => actions.push(a),
                            None => self.bad(
                                o,
                                format!("unknown action {s:?}; write peer, traffic, root, outbound or publish"),
                            ),
                        }
                    }
                }
                w @ ("allow" | "deny") => {
                    let verdict = Verdict::parse(w).unwrap_or(Verdict::Deny);
                    let mut subjects = Vec::new();
                    for (s, o) in self.strings(v, w) {
                        match parse_subject(s) {
                            Ok(value) => subjects.push(At { value, loc: self.loc(o) }),
                            Err(why) => self.bad(o, why),
                        }
                    }
                    if subjects.is_empty() && matches!(v.get_ref(), DeValue::Array(_)) {
                        self.bad(v.span().start, format!("{w} names nobody; name a circle, a key, an address or \"any\""));
                    }
                    verdicts.push((verdict, subjects, v.span().start));
                }
                "ports" => {
                    if matches!(v.get_ref(), DeValue::Array(a) if a.is_empty()) {
                        self.bad(
                            v.span().start,
                            "ports = [] names no packet; omit ports for all of them",
                        );
                    }
                    for (s, o) in self.strings(v, "ports") {
                        match PortSpec::parse(s) {
                            Ok(p) => ports.push(p),
                            Err(why) => self.bad(o, why),
                        }
                    }
                }
                "note" => note = self.string(v, "note").map(str::to_string),
                other => self.bad(
                    k.span().start,
                    format!("unknown key {other:?} in a rule; a rule has action, allow or deny, ports and note"),
                ),
            }
        }
        if !saw_action {
            self.bad(at, "this rule has no action; add action = \"peer\", \"traffic\", \"root\", \"outbound\" or \"publish\"");
        }
        if verdicts.len() != 1 {
            self.bad(
                at,
                "a rule needs exactly one of allow = … or deny = … (write two rules for both)",
            );
            return;
        }
        let Some((verdict, subjects, vat)) = verdicts.pop() else {
            return;
        };
        if subjects.is_empty() {
            return;
        }
        if subjects.iter().any(|s| s.value == Subject::Any) && subjects.len() > 1 {
            self.bad(vat, "\"any\" already names everybody; write it alone");
        }
        for action in actions {
            if !action.has_ports() && !ports.is_empty() {
                self.bad(
                    at,
                    format!("a {action} rule takes no ports (only traffic and outbound rules do)"),
                );
                continue;
            }
            model.rules.push(Rule {
                loc,
                action,
                verdict,
                subjects: subjects.clone(),
                ports: ports.clone(),
                note: note.clone(),
            });
        }
    }

    fn test(&mut self, (t, at): (&DeTable<'_>, usize), model: &mut Model) {
        let loc = self.loc(at);
        let mut action = Action::Traffic;
        let (mut from, mut to, mut port, mut expect) = (None, None, None, None);
        for (k, v) in t {
            match k.get_ref().as_ref() {
                "action" => {
                    if let Some(s) = self.string(v, "action") {
                        match Action::parse(s) {
                            Some(a) => action = a,
                            None => self.bad(v.span().start, format!("unknown action {s:?}; write peer, traffic, root, outbound or publish")),
                        }
                    }
                }
                "from" => from = self.string(v, "from").map(|s| (s, v.span().start)),
                "to" => to = self.string(v, "to").map(|s| (s, v.span().start)),
                "port" => port = self.string(v, "port").map(|s| (s, v.span().start)),
                "expect" => expect = self.verdict(v),
                other => self.bad(
                    k.span().start,
                    format!("unknown key {other:?} in a test; a test has action, from, to, port and expect"),
                ),
            }
        }
        let Some(expect) = expect else {
            self.bad(at, "this test has no expect = \"allow\" or \"deny\"");
            return;
        };
        // traffic: from = SUBJECT, to = PACKET (or port = PACKET); outbound: to = SUBJECT,
        // port = PACKET; peer and root: from = SUBJECT.
        let (subject, packet) = match action {
            Action::Outbound => (to, port),
            Action::Traffic => (from, port.or(to)),
            Action::Peer | Action::Root | Action::Publish => (from, None),
        };
        let Some((s, so)) = subject else {
            let key = if action == Action::Outbound {
                "to"
            } else {
                "from"
            };
            self.bad(at, format!("this {action} test names nobody; add {key} = \"circle:NAME\" (or a key, an address, \"any\")"));
            return;
        };
        let subject = match parse_subject(s) {
            Ok(value) => At {
                value,
                loc: self.loc(so),
            },
            Err(why) => return self.bad(so, why),
        };
        let packet = match (action.has_ports(), packet) {
            (false, None) => None,
            (false, Some((_, o))) => {
                return self.bad(o, format!("a {action} test takes no packet"));
            }
            (true, None) => {
                let hint = if action == Action::Outbound {
                    "port"
                } else {
                    "to"
                };
                return self.bad(at, format!("this {action} test names no packet; add {hint} = \"tcp/22\" (or udp/PORT, icmp, other)"));
            }
            (true, Some((s, o))) => match parse_packet(s) {
                Ok(p) => Some(p),
                Err(why) => return self.bad(o, why),
            },
        };
        model.tests.push(Test {
            loc,
            action,
            subject,
            packet,
            expect,
        });
    }
}

/// A name as `[names]` pins it: one DNS label (`a-z 0-9 -`, 1 to 63, no `-` at either end),
/// lowercased; `None` if it is not one. The routing core's rule, so a pin can never name
/// what no record can.
pub fn check_name(name: &str) -> Option<String> {
    routing::name_record::validate_name(name).ok()
}

/// Circle names: letters, digits, `-`, `_`, `.`; not `any`.
pub fn check_circle_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        return Err(format!(
            "{name:?} is not a valid circle name (1 to 64 letters, digits, '-', '_', '.')"
        ));
    }
    if name == "any" {
        return Err("\"any\" is reserved (it names everybody); choose another circle name".into());
    }
    Ok(())
}

/// Parses a subject: `any`, `circle:NAME`, a key (64 hex digits) or an overlay address.
pub fn parse_subject(s: &str) -> Result<Subject, String> {
    if s == "any" {
        return Ok(Subject::Any);
    }
    if let Some(name) = s.strip_prefix("circle:") {
        check_circle_name(name)?;
        return Ok(Subject::Circle(name.to_string()));
    }
    if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return parse_key(s).map(Subject::Key);
    }
    if let Ok(a) = s.parse::<Ipv6Addr>() {
        if routing::address::owner_id(&a).is_none() {
            return Err(format!(
                "{s:?} is not an overlay address (node addresses start with 6xx:, subnets \
                 with 7xx:)"
            ));
        }
        return Ok(Subject::Addr(a));
    }
    let hint = if s.len() != 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) && s.len() > 16 {
        format!(" (it has {} hex digits; a key has 64)", s.len())
    } else if s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        format!(" (for a circle write \"circle:{s}\")")
    } else {
        String::new()
    };
    Err(format!(
        "{s:?} is not a key (64 hex digits), an overlay address, \"any\" or \"circle:NAME\"{hint}"
    ))
}

/// Parses a public key: 64 hex digits naming a valid Ed25519 point.
pub fn parse_key(s: &str) -> Result<Key, String> {
    if s.len() != 64 {
        return Err(format!(
            "{s:?} is not a key: a key has 64 hex digits, this has {}",
            s.len()
        ));
    }
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2).unwrap_or("zz"), 16)
            .map_err(|_| format!("{s:?} is not a key: only hex digits 0-9 a-f"))?;
    }
    if ed25519_dalek::VerifyingKey::from_bytes(&k).is_err() {
        return Err(format!(
            "{s:?} is not a valid public key (not a point of Ed25519); copy it again from \
             `meshctl status` on that node"
        ));
    }
    Ok(k)
}

/// Parses a test packet: `tcp/22`, `udp/53`, `icmp`, `other`.
pub fn parse_packet(s: &str) -> Result<(Proto, u16), String> {
    let p = PortSpec::parse(s)?;
    match p.proto {
        Some(proto) if !proto.has_ports() => Ok((proto, 0)),
        Some(proto) if p.lo == p.hi => Ok((proto, p.lo)),
        _ => Err(format!(
            "{s:?} is not one packet; write tcp/PORT, udp/PORT, icmp or other"
        )),
    }
}
