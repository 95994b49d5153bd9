//! Policy files as people write them: every kind of mistake is reported with the file, the
//! line, the column and a fix; a good file loads and answers as its author meant.

use acl::{Action, Policy, ProblemKind, Proto, Verdict, Who};

/// Three valid keys (Ed25519 points).
fn keys() -> [String; 3] {
    let mut out = Vec::new();
    let mut i = 0u8;
    while out.len() < 3 {
        let hex: String = std::iter::repeat_n(format!("{i:02x}"), 32).collect();
        if acl::parse::parse_key(&hex).is_ok() {
            out.push(hex);
        }
        i += 1;
    }
    [out[0].clone(), out[1].clone(), out[2].clone()]
}

/// 64 hex digits that are not an Ed25519 point.
fn not_a_point() -> String {
    (0u8..=255)
        .map(|i| std::iter::repeat_n(format!("{i:02x}"), 32).collect::<String>())
        .find(|h| acl::parse::parse_key(h).is_err())
        .expect("some byte pattern is not a point")
}

fn err(text: &str) -> acl::PolicyError {
    match Policy::load(text, "policy.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn every_mistake_names_its_place() {
    let [k1, _, _] = keys();
    let cases: Vec<(String, ProblemKind, &str, &str)> = vec![
        // (file, kind, "line:col", words the message must hold)
        (
            "[circles\nfamily = []\n".into(),
            ProblemKind::Syntax,
            "1:",
            "not valid TOML",
        ),
        (
            "[circles]\nfamily = [\"circle:frends\"]\nfriends = []\n".into(),
            ProblemKind::UnknownCircle,
            "2:11",
            "unknown circle \"frends\" (defined circles: family, friends)",
        ),
        (
            "[circles]\na = [\"circle:b\"]\nb = [\"circle:c\"]\nc = [\"circle:a\"]\n".into(),
            ProblemKind::Cycle,
            "",
            "circles contain each other",
        ),
        (
            "[circles]\nfamily = [\"abcd\"]\n".into(),
            ProblemKind::BadValue,
            "2:11",
            "is not a key",
        ),
        (
            format!("[circles]\nfamily = [\"{}\"]\n", &k1[..63]),
            ProblemKind::BadValue,
            "2:11",
            "a key has 64",
        ),
        (
            format!("[circles]\nfamily = [\"{}\"]\n", not_a_point()),
            ProblemKind::BadValue,
            "2:11",
            "not a valid public key",
        ),
        (
            "[circles]\nfamily = [\"10.0.0.1\"]\n".into(),
            ProblemKind::BadValue,
            "2:11",
            "not a key",
        ),
        (
            "[circles]\nfamily = [\"fe80::1\"]\n".into(),
            ProblemKind::BadValue,
            "2:11",
            "not an overlay address",
        ),
        (
            "[[rules]]\naction = \"trafic\"\nallow = \"any\"\n".into(),
            ProblemKind::BadValue,
            "2:10",
            "unknown action \"trafic\"",
        ),
        (
            "[[rules]]\naction = \"traffic\"\nallow = \"any\"\nports = \"tcp/99999\"\n".into(),
            ProblemKind::BadValue,
            "4:9",
            "is not a port",
        ),
        (
            "[[rules]]\naction = \"peer\"\nallow = \"any\"\nports = \"tcp/22\"\n".into(),
            ProblemKind::BadValue,
            "1:1",
            "takes no ports",
        ),
        (
            "[[rules]]\naction = \"traffic\"\nallow = \"any\"\ndeny = \"any\"\n".into(),
            ProblemKind::BadValue,
            "1:1",
            "exactly one of allow",
        ),
        (
            "[[rules]]\naction = \"traffic\"\nallow = \"family\"\n".into(),
            ProblemKind::BadValue,
            "3:9",
            "write \"circle:family\"",
        ),
        (
            "[[rules]]\naction = \"traffic\"\nalow = \"any\"\n".into(),
            ProblemKind::BadValue,
            "3:1",
            "unknown key \"alow\"",
        ),
        (
            "default = \"maybe\"\n".into(),
            ProblemKind::BadValue,
            "1:11",
            "write \"allow\" or \"deny\"",
        ),
        (
            "[circles]\nguests = [\"any\"]\n".into(),
            ProblemKind::BadValue,
            "2:11",
            "\"any\" cannot be a member",
        ),
        (
            format!(
                "[circles]\nguests = [\"{k1}\"]\n\n[[rules]]\naction = \"traffic\"\nallow = \"any\"\n\n\
                 [[tests]]\nfrom = \"circle:guests\"\nto = \"tcp/22\"\nexpect = \"deny\"\n"
            ),
            ProblemKind::TestFailed,
            "8:1",
            "test failed: traffic tcp/22 for circle:guests",
        ),
        (
            "[[tests]]\nfrom = \"circle:nobody\"\nto = \"tcp/22\"\nexpect = \"deny\"\n".into(),
            ProblemKind::UnknownCircle,
            "2:8",
            "unknown circle \"nobody\"",
        ),
        (
            "[[tests]]\nfrom = \"any\"\nexpect = \"deny\"\n".into(),
            ProblemKind::BadValue,
            "1:1",
            "names no packet",
        ),
    ];
    for (text, kind, at, words) in cases {
        let e = err(&text);
        let found = e.problems.iter().any(|p| {
            let msg = format!("policy.toml:{}:{}: {}", p.loc.line, p.loc.col, p.message);
            p.kind == kind && msg.starts_with(&format!("policy.toml:{at}")) && msg.contains(words)
        });
        assert!(
            found,
            "want {kind:?} at {at} saying {words:?}:\n{text}\n→ {e}"
        );
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let e = err("[circles]\na = [\"circle:x\"]\nb = [\"circle:y\"]\n");
    assert_eq!(e.problems.len(), 2, "{e}");
    let text = e.to_string();
    assert!(
        text.contains("policy.toml:2:") && text.contains("policy.toml:3:"),
        "{text}"
    );
}

#[test]
fn a_failing_test_says_which_rule_decided() {
    let [k1, _, _] = keys();
    let e = err(&format!(
        "[circles]\nfamily = [\"{k1}\"]\nguests = [\"{k1}\"]\n\
         [[rules]]\naction = \"traffic\"\nallow = \"circle:family\"\nports = \"tcp/22\"\n\
         [[rules]]\naction = \"traffic\"\ndeny = \"circle:guests\"\nnote = \"guests stay out\"\n\
         [[tests]]\nfrom = \"circle:family\"\nto = \"tcp/22\"\nexpect = \"allow\"\n"
    ));
    let m = e.to_string();
    assert!(m.contains("expected allow, got deny"), "{m}");
    assert!(
        m.contains("rule 2 at line 8") && m.contains("guests stay out"),
        "{m}"
    );
    assert!(m.contains("deny wins over allow"), "{m}");
}

#[test]
fn a_good_policy_answers_as_meant() {
    let [b, c, d] = keys();
    let text = format!(
        r#"# A's policy
[defaults]
traffic = "deny"

[circles]
friends = ["{b}", "circle:family"]
family = ["{d}"]
blocked = ["{c}"]

[[rules]]
action = "peer"
deny = "circle:blocked"

[[rules]]
action = "traffic"
allow = "circle:friends"
ports = ["icmp", "tcp/22", "tcp/80"]

[[rules]]
action = "traffic"
deny = "{d}"
ports = "tcp/80"
note = "no web for d"

[[rules]]
action = ["traffic", "root"]
deny = "circle:blocked"

[[tests]]
from = "circle:blocked"
to = "icmp"
expect = "deny"

[[tests]]
from = "circle:family"
to = "tcp/22"
expect = "allow"

[[tests]]
action = "root"
from = "circle:blocked"
expect = "deny"

[[tests]]
action = "outbound"
to = "any"
port = "udp/53"
expect = "allow"
"#
    );
    let p = Policy::load(&text, "a.toml").expect("valid");
    let key = |h: &str| {
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("hex");
        }
        k
    };
    let (b, c, d) = (key(&b), key(&c), key(&d));
    assert_eq!(
        p.decide(&b, Action::Traffic, Proto::Tcp, 80),
        Verdict::Allow
    );
    assert_eq!(p.decide(&d, Action::Traffic, Proto::Tcp, 80), Verdict::Deny);
    assert_eq!(
        p.decide(&d, Action::Traffic, Proto::Tcp, 22),
        Verdict::Allow
    );
    assert_eq!(p.decide(&d, Action::Traffic, Proto::Udp, 22), Verdict::Deny);
    assert_eq!(p.decide(&c, Action::Peer, Proto::Other, 0), Verdict::Deny);
    assert_eq!(p.decide(&c, Action::Root, Proto::Other, 0), Verdict::Deny);
    assert_eq!(p.decide(&b, Action::Peer, Proto::Other, 0), Verdict::Allow);
    assert!(!p.classify(&c).receives_any());
    assert!(p.classify(&c).sends_any());
    // By address: the node address of d stands for d.
    let d_addr = routing::address::node_address(&d);
    assert_eq!(
        p.classify_who(&Who::Addr(d_addr)).traffic(Proto::Tcp, 80),
        Verdict::Deny
    );
    let e = p.explain(&Who::Key(d), Action::Traffic, Some((Proto::Tcp, 80)));
    assert_eq!(e.verdict, Verdict::Deny);
    assert_eq!(e.decided_by.as_ref().map(|r| r.line), Some(19));
    assert_eq!(e.circles, vec!["friends".to_string(), "family".to_string()]);
    assert!(e.reason.contains("deny wins over allow"), "{}", e.reason);
    assert!(e.reason.contains("no web for d"), "{}", e.reason);
    let e = p.explain(&Who::Key([7; 32]), Action::Traffic, Some((Proto::Tcp, 22)));
    assert!(
        e.reason.contains("default for traffic is deny"),
        "{}",
        e.reason
    );
    assert_eq!(p.circle_members("friends").map(|m| m.len()), Some(2));
}

#[test]
fn publishing_is_denied_unless_a_rule_or_its_own_default_allows_it() {
    let [k1, k2, _] = keys();
    let key = |h: &str| -> [u8; 32] {
        let mut k = [0u8; 32];
        for (i, b) in k.iter_mut().enumerate() {
            *b = u8::from_str_radix(&h[2 * i..2 * i + 2], 16).expect("hex");
        }
        k
    };
    let publish = |p: &Policy, k: &str| p.decide(&key(k), Action::Publish, Proto::Tcp, 0);
    // No policy, and `default = "allow"`, leave publishing denied.
    for text in ["", "default = \"allow\"\n"] {
        let p = Policy::load(text, "p.toml").expect("loads");
        assert_eq!(publish(&p, &k1), Verdict::Deny, "{text:?}");
        assert_eq!(
            p.decide(&key(&k1), Action::Traffic, Proto::Tcp, 80),
            Verdict::Allow
        );
    }
    let p = Policy::load("[defaults]\npublish = \"allow\"\n", "p.toml").expect("loads");
    assert_eq!(publish(&p, &k1), Verdict::Allow);
    let text = format!(
        "[circles]\nshops = [\"{k1}\"]\n\n[[rules]]\naction = \"publish\"\nallow = \"circle:shops\"\n\n\
         [[tests]]\naction = \"publish\"\nfrom = \"{k2}\"\nexpect = \"deny\"\n"
    );
    let p = Policy::load(&text, "p.toml").expect("loads");
    assert_eq!(publish(&p, &k1), Verdict::Allow);
    assert_eq!(publish(&p, &k2), Verdict::Deny);
    let e = err("[[rules]]\naction = \"publish\"\nallow = \"any\"\nports = \"tcp/443\"\n");
    assert!(e.to_string().contains("takes no ports"), "{e}");
}

/// `[names]`: pins and the authorities circle (issue 19); mistakes name their place and fix.
#[test]
fn names_pins_and_authorities() {
    let [k1, k2, k3] = keys();
    let text = format!(
        "[circles]\nauth = [\"{k2}\", \"circle:more\"]\nmore = [\"{k3}\"]\n\n[names]\nShop = \"{k1}\"\nauthorities = \"circle:auth\"\n"
    );
    let p = Policy::load(&text, "policy.toml").expect("loads");
    let pins = p.name_pins();
    let want = acl::parse::parse_key(&k1).expect("key");
    assert_eq!(pins.get("shop"), Some(&want), "pinned names are lowercased");
    let auth = p.name_authorities();
    assert_eq!(auth.len(), 2, "nested circles count");
    assert!(p.name_authority_addresses().is_empty());
    // Without [names], nothing is pinned or trusted.
    let plain = Policy::load("default = \"allow\"\n", "policy.toml").expect("loads");
    assert!(plain.name_pins().is_empty() && plain.name_authorities().is_empty());
    for (text, kind, at, words) in [
        (
            format!("[names]\n-shop = \"{k1}\"\n"),
            ProblemKind::BadValue,
            "2:1",
            "is not a name",
        ),
        (
            "[names]\nshop = \"abcd\"\n".to_string(),
            ProblemKind::BadValue,
            "2:8",
            "a key has 64 hex digits",
        ),
        (
            "[names]\nauthorities = \"auth\"\n".to_string(),
            ProblemKind::BadValue,
            "2:15",
            "name a circle, \"circle:NAME\"",
        ),
        (
            "[names]\nauthorities = \"circle:nobody\"\n".to_string(),
            ProblemKind::UnknownCircle,
            "2:15",
            "[names] authorities names unknown circle \"nobody\"",
        ),
        (
            format!("[names]\nshop = \"{k1}\"\nSHOP = \"{k2}\"\n"),
            ProblemKind::BadValue,
            "3:1",
            "pinned twice",
        ),
        (
            "names = 3\n".to_string(),
            ProblemKind::BadValue,
            "1:9",
            "[names] must be a table",
        ),
    ] {
        let e = err(&text);
        let p = e
            .problems
            .iter()
            .find(|p| p.kind == kind)
            .unwrap_or_else(|| panic!("{text}: {e}"));
        let shown = e.to_string();
        assert!(shown.contains(words), "{text}: {shown}");
        if !at.is_empty() {
            assert!(
                shown.contains(&format!("policy.toml:{at}")),
                "{text}: {shown}"
            );
        }
        let _ = p;
    }
}
