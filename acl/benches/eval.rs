//! Policy evaluation cost: a policy of 10,000 identities (100 circles of 100 keys, nested in
//! departments) and 1,000 rules; prints the compile time, the number of tables and the cost
//! per packet of classifying the sender and asking for a traffic verdict.
//!
//! `cargo bench -p acl --bench eval`. Plain `main`, no harness: each figure is the best of 5
//! runs of about 10 M packets, drawn in a random order from 4,096 pre-generated packets so that
//! the branch predictor cannot learn the sequence.

use acl::{
    Action, At, Circle, Class, Key, Loc, Model, NamePolicy, Policy, PortSpec, Proto, Rule, Subject,
    Verdict,
};
use std::hint::black_box;
use std::time::{Duration, Instant};

const TEAMS: usize = 100;
const PER_TEAM: usize = 100;
const DEPARTMENTS: usize = 10;
const RULES: usize = 1_000;
const PACKETS: usize = 4096;
const ITERS: usize = 10_000_000;
const RUNS: usize = 5;

/// SplitMix64: deterministic, good enough to spread keys and packets.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// `n` valid Ed25519 public keys: random candidates, kept when `parse_key` accepts them
/// (about half are points of the curve).
fn keys(rng: &mut Rng, n: usize) -> Vec<Key> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut k = [0u8; 32];
        for chunk in k.chunks_mut(8) {
            chunk.copy_from_slice(&rng.next().to_le_bytes());
        }
        let hex: String = k.iter().map(|b| format!("{b:02x}")).collect();
        if let Ok(k) = acl::parse::parse_key(&hex) {
            out.push(k);
        }
    }
    out
}

fn at<T>(value: T) -> At<T> {
    At {
        value,
        loc: Loc::default(),
    }
}

fn spec(s: &str) -> PortSpec {
    PortSpec::parse(s).expect("a valid port spec")
}

/// Ports that services listen on, as rules name them.
const SERVICES: [&str; 14] = [
    "tcp/22",
    "tcp/80",
    "tcp/443",
    "udp/53",
    "tcp/53",
    "tcp/8000-8100",
    "udp/5000-6000",
    "tcp/3000-3999",
    "udp/51820",
    "tcp/5432",
    "tcp/6379",
    "udp/60000-61000",
    "icmp",
    "tcp/9090-9100",
];

/// 100 teams of 100 keys, 10 departments of 10 teams, `everyone` holding the departments;
/// 1,000 rules naming circles, single keys and `any`.
fn build(rng: &mut Rng, listed: &[Key]) -> Model {
    let mut circles = Vec::new();
    for t in 0..TEAMS {
        circles.push(Circle {
            name: format!("team-{t:02}"),
            loc: Loc::default(),
            members: listed[t * PER_TEAM..(t + 1) * PER_TEAM]
                .iter()
                .map(|k| at(Subject::Key(*k)))
                .collect(),
        });
    }
    let per_dept = TEAMS / DEPARTMENTS;
    for d in 0..DEPARTMENTS {
        circles.push(Circle {
            name: format!("dept-{d}"),
            loc: Loc::default(),
            members: (d * per_dept..(d + 1) * per_dept)
                .map(|t| at(Subject::Circle(format!("team-{t:02}"))))
                .collect(),
        });
    }
    circles.push(Circle {
        name: "everyone".into(),
        loc: Loc::default(),
        members: (0..DEPARTMENTS)
            .map(|d| at(Subject::Circle(format!("dept-{d}"))))
            .collect(),
    });

    // Allows name teams and departments mostly, sometimes single keys or everybody; denies
    // single out a key or a team, on some ports (a deny of everything for everybody would make
    // the rest moot).
    let allowed = |rng: &mut Rng| -> Subject {
        match rng.below(100) {
            0 => Subject::Any,
            1 => Subject::Circle("everyone".into()),
            2..=66 => Subject::Circle(format!("team-{:02}", rng.below(TEAMS))),
            67..=79 => Subject::Circle(format!("dept-{}", rng.below(DEPARTMENTS))),
            _ => Subject::Key(listed[rng.below(listed.len())]),
        }
    };
    let denied = |rng: &mut Rng| -> Subject {
        if rng.chance(60) {
            Subject::Key(listed[rng.below(listed.len())])
        } else {
            Subject::Circle(format!("team-{:02}", rng.below(TEAMS)))
        }
    };
    let mut rules = Vec::with_capacity(RULES);
    for i in 0..RULES {
        let action = match i % 20 {
            0..=13 => Action::Traffic,
            14..=16 => Action::Outbound,
            17..=18 => Action::Peer,
            _ => Action::Root,
        };
        let verdict = if rng.chance(15) {
            Verdict::Deny
        } else {
            Verdict::Allow
        };
        let pick = |rng: &mut Rng| match verdict {
            Verdict::Allow => allowed(rng),
            Verdict::Deny => denied(rng),
        };
        let mut subjects = vec![at(pick(rng))];
        if subjects[0].value != Subject::Any {
            for _ in 0..rng.below(3) {
                let s = pick(rng);
                if s != Subject::Any {
                    subjects.push(at(s));
                }
            }
        }
        let all_ports = verdict == Verdict::Allow && rng.chance(10);
        let ports = if action.has_ports() && !all_ports {
            (0..1 + rng.below(3))
                .map(|_| spec(SERVICES[rng.below(SERVICES.len())]))
                .collect()
        } else {
            Vec::new()
        };
        rules.push(Rule {
            loc: Loc::default(),
            action,
            verdict,
            subjects,
            ports,
            note: None,
        });
    }
    let mut defaults = Model::default().defaults;
    defaults[Action::Traffic.index()] = Verdict::Deny;
    defaults[Action::Root.index()] = Verdict::Deny;
    Model {
        defaults,
        circles,
        rules,
        tests: Vec::new(),
        names: NamePolicy::default(),
    }
}

/// A packet as it arrives: mostly TCP to well-known ports, some UDP, a little ICMP and other.
fn packet(rng: &mut Rng) -> (Proto, u16) {
    const PORTS: [u16; 12] = [
        22, 80, 443, 53, 8080, 8050, 5500, 3000, 51820, 5432, 60500, 9095,
    ];
    let proto = match rng.below(100) {
        0..=59 => Proto::Tcp,
        60..=89 => Proto::Udp,
        90..=97 => Proto::Icmp,
        _ => Proto::Other,
    };
    let port = if rng.chance(70) {
        PORTS[rng.below(PORTS.len())]
    } else {
        rng.next() as u16
    };
    (proto, port)
}

/// The best of `RUNS` runs of `iters` calls of `f(i)`, in ns per call.
fn best(iters: usize, runs: usize, mut f: impl FnMut(usize)) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let start = Instant::now();
        for i in 0..iters {
            f(i);
        }
        best = best.min(start.elapsed());
    }
    best.as_nanos() as f64 / iters as f64
}

/// (a), (c): classify the key, then ask for the traffic verdict.
fn classify_and_traffic(
    policy: &Policy,
    packets: &[(Key, Proto, u16)],
    iters: usize,
    runs: usize,
) -> f64 {
    best(iters, runs, |i| {
        let (key, proto, port) = &packets[i & (PACKETS - 1)];
        let class = policy.classify(black_box(key));
        black_box(class.traffic(black_box(*proto), black_box(*port)));
    })
}

fn main() {
    let mut rng = Rng(0x5eed_ac10_0000_0001);
    let t = Instant::now();
    let listed = keys(&mut rng, TEAMS * PER_TEAM);
    let strangers = keys(&mut rng, 1024);
    println!(
        "generated {} listed and {} stranger keys in {:.0} ms",
        listed.len(),
        strangers.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let model = build(&mut rng, &listed);
    let (circles, rules) = (model.circles.len(), model.rules.len());

    let mut compile = Duration::MAX;
    let mut policy = None;
    for _ in 0..RUNS {
        let m = model.clone();
        let t = Instant::now();
        let p = Policy::compile(m, "bench.toml").expect("the bench policy compiles");
        compile = compile.min(t.elapsed());
        policy = Some(black_box(p));
    }
    let policy = policy.expect("compiled at least once");
    println!(
        "policy: {} identities, {circles} circles, {rules} rules; compile (check + tables): {:.1} ms (best of {RUNS})",
        listed.len(),
        compile.as_secs_f64() * 1e3
    );
    println!("tables: {}", policy.tables());

    // The same traffic, whichever way it is asked.
    let mut draw = |keys: &[Key]| -> Vec<(Key, Proto, u16)> {
        (0..PACKETS)
            .map(|_| {
                let (proto, port) = packet(&mut rng);
                (keys[rng.below(keys.len())], proto, port)
            })
            .collect()
    };
    let known = draw(&listed);
    let unknown = draw(&strangers);
    let held: Vec<(Class, Proto, u16)> = known
        .iter()
        .map(|(k, p, n)| (policy.classify(k), *p, *n))
        .collect();
    let allowed = known
        .iter()
        .filter(|(k, p, n)| policy.decide(k, Action::Traffic, *p, *n).allows())
        .count();
    println!(
        "sample: {allowed} of {PACKETS} packets from listed keys allowed ({:.0} %)",
        100.0 * allowed as f64 / PACKETS as f64
    );

    let a = classify_and_traffic(&policy, &known, ITERS, RUNS);
    println!("(a) classify(key) + traffic(proto, port), listed keys: {a:.1} ns/packet");
    let b = best(ITERS, RUNS, |i| {
        let (class, proto, port) = &held[i & (PACKETS - 1)];
        black_box(black_box(class).traffic(black_box(*proto), black_box(*port)));
    });
    println!("(b) traffic(proto, port) with the Class held:         {b:.1} ns/packet");
    let c = classify_and_traffic(&policy, &unknown, ITERS, RUNS);
    println!("(c) classify(key) + traffic(proto, port), strangers:  {c:.1} ns/packet");

    // The same policy with one rule naming an overlay address: a key the policy does not name
    // must then have its addresses derived (SHA-512) on every classify; callers keep the Class.
    let mut with_addr = model.clone();
    with_addr.rules.push(Rule {
        loc: Loc::default(),
        action: Action::Traffic,
        verdict: Verdict::Allow,
        subjects: vec![at(Subject::Addr(routing::address::node_address(
            &strangers[0],
        )))],
        ports: vec![spec("tcp/22")],
        note: None,
    });
    let with_addr = Policy::compile(with_addr, "bench.toml").expect("compiles");
    let d = classify_and_traffic(&with_addr, &unknown, ITERS / 10, 3);
    println!(
        "(d) as (c), but the policy also names an address (SHA-512 per classify): {d:.1} ns/packet"
    );

    println!("per-packet evaluation (classify + traffic): {a:.1} ns (target <= 100 ns)");
}
