//! Circles on real daemons. Five nodes: A (with a circle policy), its friends B and D, C whom
//! A blocks, and an intruder I holding the lowest key of all.
//!
//! ```text
//!        C ─── A ─── D          veth links; C dials A (and is refused),
//!        │ ╲   │   ╱            A dials B and D, B dials C and D,
//!        │   ╲ │ ╱              I dials B and C (started last)
//!        I ─── B
//! ```
//!
//! A allows {B, D} and denies {C}: C cannot link with A, nor reach it through B; B and D can;
//! A may not send to C (outbound).
//! A port rule lets D reach tcp/22 and not tcp/80, until the file is edited (live). Broken files
//! are refused with file and line while the previous policy stays. Moving D into the blocked
//! circle closes its link and session within a second. A root rule (on A, B and D) keeps I, the
//! lowest key, from becoming their root, while C, which has no such rule, takes I as root.

use meshd::identity::Identity;
use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tests::{Node, require_root, veth, wait_until};

const A: usize = 0;
const B: usize = 1;
const C: usize = 2;
const D: usize = 3;
const I: usize = 4;
const NAMES: [&str; 5] = ["a", "b", "c", "d", "i"];

/// Edges (dialer, listener).
const EDGES: [(usize, usize); 7] = [(A, B), (C, A), (B, C), (B, D), (A, D), (I, B), (I, C)];

struct Net {
    nodes: Vec<Node>,
    keys: Vec<String>,
    addrs: Vec<Ipv6Addr>,
}

/// Five identities made up front: I gets the lowest key.
fn identities() -> Vec<Identity> {
    let mut ids: Vec<Identity> = (1u8..=5).map(|s| Identity::from_seed(&[s; 32])).collect();
    ids.sort_by_key(|i| i.public_key().0);
    let lowest = ids.remove(0);
    ids.push(lowest); // A, B, C, D, then I
    ids
}

/// A's policy. `stage` 1: D may not use tcp/80; 2: it may; 3: D is blocked.
fn a_policy(net_keys: &[String], stage: u8) -> String {
    let k = |i: usize| &net_keys[i];
    let (friends, blocked) = if stage == 3 {
        (
            format!("\"{}\"", k(B)),
            format!("\"{}\", \"{}\"", k(C), k(D)),
        )
    } else {
        (
            format!("\"{}\", \"{}\"", k(B), k(D)),
            format!("\"{}\"", k(C)),
        )
    };
    let no_web = if stage == 1 {
        format!(
            "[[rules]]\naction = \"traffic\"\ndeny = \"{}\"\nports = \"tcp/80\"\nnote = \"no web for D\"\n\n",
            k(D)
        )
    } else {
        String::new()
    };
    format!(
        r#"# A's circle policy (written by the policy test)
[defaults]
traffic = "deny"

[circles]
friends = [{friends}]
blocked = [{blocked}]
intruders = ["{i}"]

[[rules]]
action = "peer"
deny = "circle:blocked"

[[rules]]
action = "traffic"
allow = "circle:friends"
ports = ["icmp", "tcp/22", "tcp/80"]

{no_web}[[rules]]
action = "traffic"
deny = "circle:blocked"

[[rules]]
action = "root"
deny = "circle:intruders"

[[rules]]
action = "outbound"
deny = "circle:blocked"

[[tests]]
from = "circle:blocked"
to = "icmp"
expect = "deny"

[[tests]]
action = "root"
from = "circle:intruders"
expect = "deny"
"#,
        i = k(I)
    )
}

/// B's and D's policy: everything allowed but the intruder as root.
fn root_only_policy(net_keys: &[String]) -> String {
    format!(
        "[circles]\nintruders = [\"{}\"]\n\n[[rules]]\naction = \"root\"\ndeny = \"circle:intruders\"\n",
        net_keys[I]
    )
}

/// Writes a policy file as an editor would: a new file renamed over the old.
fn write_policy(node: &Node, text: &str) {
    let tmp = node.dir.join("policy.toml.new");
    std::fs::write(&tmp, text).expect("write policy");
    std::fs::rename(&tmp, node.dir.join("policy.toml")).expect("rename policy");
}

fn setup() -> Net {
    require_root();
    let ids = identities();
    let keys: Vec<String> = ids.iter().map(|i| i.public_key().to_string()).collect();
    let addrs: Vec<Ipv6Addr> = ids.iter().map(|i| i.public_key().address()).collect();
    let nodes: Vec<Node> = NAMES.iter().map(|n| Node::new(&format!("p{n}"))).collect();
    let mut peers: Vec<Vec<String>> = vec![vec![]; 5];
    for (e, &(dialer, listener)) in EDGES.iter().enumerate() {
        let (dip, lip) = (format!("10.77.{e}.1"), format!("10.77.{e}.2"));
        veth(&nodes[dialer].ns, &dip, &nodes[listener].ns, &lip);
        peers[dialer].push(format!("udp://{lip}:7820"));
    }
    for (i, node) in nodes.iter().enumerate() {
        ids[i]
            .save_new(&node.dir.join("state").join("identity.key"))
            .expect("identity file");
        let policy = match i {
            A => Some(a_policy(&keys, 1)),
            B | D => Some(root_only_policy(&keys)),
            _ => None,
        };
        let extra = match policy {
            Some(p) => {
                write_policy(node, &p);
                "policy_file = \"policy.toml\""
            }
            None => "",
        };
        node.configure("udp://0.0.0.0:7820", &peers[i], extra);
    }
    Net { nodes, keys, addrs }
}

fn counter(node: &Node, name: &str) -> u64 {
    node.status()["policy"]["counters"][name]
        .as_u64()
        .unwrap_or(0)
}

fn policy_field(node: &Node, name: &str) -> serde_json::Value {
    node.ctl_json(&["policy", "show"])[name].clone()
}

fn link_up(node: &Node, key: &str) -> bool {
    let v = node.ctl_json(&["peers"]);
    v.as_array().is_some_and(|rows| {
        rows.iter()
            .any(|r| r["public_key"] == key && r["state"] == "up")
    })
}

fn root_of(node: &Node) -> String {
    node.ctl_json(&["tree"])["root"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// A TCP server on A's overlay address at `port` that sends "hi" to every client; stops when
/// the flag is set.
fn serve(a: &Node, addr: Ipv6Addr, port: u16, stop: Arc<AtomicBool>) {
    let l = a.ns.enter(move || {
        TcpListener::bind(SocketAddr::new(addr.into(), port)).expect("bind on A's address")
    });
    l.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(b"hi");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
}

/// Connects from `from` to A's `port` and reads the greeting, within `timeout`.
fn tcp_works(from: &Node, addr: Ipv6Addr, port: u16, timeout: Duration) -> bool {
    from.ns.enter(move || {
        let Ok(mut s) = TcpStream::connect_timeout(&SocketAddr::new(addr.into(), port), timeout)
        else {
            return false;
        };
        let _ = s.set_read_timeout(Some(timeout));
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).is_ok() && &buf == b"hi"
    })
}

/// Pings until one reply or `timeout`.
fn reaches(from: &Node, to: Ipv6Addr, timeout: Duration) -> bool {
    wait_until(timeout, || from.ping(&to, 1, "0.2") == 1)
}

#[test]
fn circles_gate_links_sessions_ports_and_the_root_live() {
    let started = Instant::now();
    let phase = |what: &str| eprintln!("[{:>5.1} s] {what}", started.elapsed().as_secs_f64());
    let mut net = setup();
    for i in [A, B, C, D] {
        net.nodes[i].start();
    }
    let (a, b, c, d) = (&net.nodes[A], &net.nodes[B], &net.nodes[C], &net.nodes[D]);
    let k = net.keys.clone();
    for (x, y) in [(A, B), (A, D), (B, C), (B, D)] {
        assert!(
            net.nodes[x].wait_link_up(&k[y], Duration::from_secs(10)),
            "link {}-{} did not come up",
            NAMES[x],
            NAMES[y]
        );
    }

    phase("links up");
    // C cannot link with A: refused at the handshake, and told so.
    assert!(
        wait_until(Duration::from_secs(10), || counter(a, "links_refused") > 0),
        "A never refused C"
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            let v = c.ctl_json(&["peers"]);
            v.as_array().is_some_and(|rows| {
                rows.iter().any(|r| {
                    r["last_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("refused"))
                })
            })
        }),
        "C's dialer of A does not say it was refused"
    );
    for _ in 0..10 {
        assert!(!link_up(a, &k[C]), "A linked with C");
        std::thread::sleep(Duration::from_millis(200));
    }

    phase("C refused");
    // B and D reach A; C reaches B but not A through B: A refuses its session.
    assert!(
        reaches(b, net.addrs[A], Duration::from_secs(10)),
        "B cannot reach A"
    );
    assert!(
        reaches(d, net.addrs[A], Duration::from_secs(10)),
        "D cannot reach A"
    );
    assert!(
        reaches(c, net.addrs[B], Duration::from_secs(10)),
        "C cannot reach B"
    );
    let refused = counter(a, "sessions_refused");
    assert_eq!(c.ping(&net.addrs[A], 3, "0.3"), 0, "C reached A");
    assert!(
        wait_until(Duration::from_secs(5), || counter(a, "sessions_refused")
            > refused),
        "A's policy did not refuse C's session (sessions_refused stayed {refused})"
    );
    assert_eq!(c.ping(&net.addrs[A], 2, "0.3"), 0, "C reached A");
    // Nor may A send to C: the local program is told at once (ICMPv6 prohibited).
    let out =
        a.ns.cmd("ping")
            .args(["-6", "-n", "-c", "1", "-W", "2"])
            .arg(net.addrs[C].to_string())
            .output()
            .expect("ping");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && text.contains("prohibited"),
        "{text}"
    );
    assert!(counter(a, "dropped_out") > 0, "no outbound drop counted");

    phase("reachability checked");
    // Ports: D may use tcp/22, not tcp/80.
    let stop = Arc::new(AtomicBool::new(false));
    serve(a, net.addrs[A], 22, stop.clone());
    serve(a, net.addrs[A], 80, stop.clone());
    assert!(
        tcp_works(d, net.addrs[A], 22, Duration::from_secs(3)),
        "D cannot use tcp/22"
    );
    let dropped = counter(a, "dropped_in");
    assert!(
        !tcp_works(d, net.addrs[A], 80, Duration::from_secs(2)),
        "D used tcp/80"
    );
    let dropped_80 = counter(a, "dropped_in");
    assert!(
        dropped_80 > dropped,
        "no drop counted for tcp/80 ({dropped} → {dropped_80})"
    );
    assert!(
        tcp_works(b, net.addrs[A], 80, Duration::from_secs(3)),
        "B cannot use tcp/80"
    );

    phase("port rule checked");
    // The file is edited: D may use tcp/80 now, live.
    write_policy(a, &a_policy(&k, 2));
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || tcp_works(
            d,
            net.addrs[A],
            80,
            Duration::from_millis(300)
        )),
        "the edit did not let D use tcp/80"
    );
    let flip = t0.elapsed();
    let before = counter(a, "dropped_in");
    assert!(tcp_works(d, net.addrs[A], 80, Duration::from_secs(2)));
    assert!(
        tcp_works(d, net.addrs[A], 22, Duration::from_secs(2)),
        "tcp/22 disturbed"
    );
    assert_eq!(
        counter(a, "dropped_in"),
        before,
        "allowed traffic was dropped"
    );
    eprintln!("tcp/80 for D allowed {flip:?} after the file changed");
    assert!(
        flip < Duration::from_secs(2),
        "the edit took {flip:?} to apply"
    );

    phase("flip checked");
    // Broken files are refused with file and line; the previous policy stays.
    let good = a_policy(&k, 2);
    let broken = [
        ("[circles\n".to_string(), "policy.toml:1:", "not valid TOML"),
        (
            good.replace("allow = \"circle:friends\"", "allow = \"circle:frends\""),
            "policy.toml:16:",
            "unknown circle \"frends\"",
        ),
        (
            good.replace("intruders = [", "intruders = [\"circle:blocked\", ")
                .replace("blocked = [", "blocked = [\"circle:intruders\", "),
            "policy.toml:",
            "circles contain each other",
        ),
        (
            good.replace(&k[B], &k[B][..60]),
            "policy.toml:6:",
            "a key has 64",
        ),
        (
            good.replace(
                "to = \"icmp\"\nexpect = \"deny\"",
                "to = \"icmp\"\nexpect = \"allow\"",
            ),
            "policy.toml:31:",
            "test failed",
        ),
    ];
    for (n, (text, place, words)) in broken.iter().enumerate() {
        let failures = policy_field(a, "reload_failures").as_u64().unwrap_or(0);
        write_policy(a, text);
        assert!(
            wait_until(Duration::from_secs(3), || {
                policy_field(a, "reload_failures").as_u64().unwrap_or(0) > failures
            }),
            "broken file {n} was not noticed"
        );
        let err = policy_field(a, "last_error")
            .as_str()
            .unwrap_or("")
            .to_string();
        assert!(
            err.contains(place) && err.contains(words),
            "broken file {n}: want {place}…{words}, got:\n{err}"
        );
        // `meshctl policy reload` says the same and fails.
        let out = a.ctl(&["policy", "reload"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(place), "{stderr}");
        assert!(stderr.contains("previous policy stays"), "{stderr}");
    }
    // Still the policy of stage 2: D uses tcp/80, C is still refused.
    assert!(
        tcp_works(d, net.addrs[A], 80, Duration::from_secs(2)),
        "previous policy lost"
    );
    let explain = a.ctl(&["policy", "explain", &k[C]]);
    let text = String::from_utf8_lossy(&explain.stdout);
    assert!(
        text.contains("DENY  peer") && text.contains("circle:blocked"),
        "{text}"
    );
    write_policy(a, &good);
    assert!(wait_until(Duration::from_secs(3), || policy_field(
        a,
        "last_error"
    )
    .is_null()));

    phase("broken files checked");
    // meshctl edits circles safely: validated, written keeping comments, reloaded.
    let out = a.ctl(&["circle", "add", "ops", &k[B]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = std::fs::read_to_string(a.dir.join("policy.toml")).expect("policy file");
    assert!(
        file.starts_with("# A's circle policy") && file.contains("ops = ["),
        "{file}"
    );
    let show = a.ctl_json(&["circle", "show", "ops"]);
    assert_eq!(show["members"][0], k[B].as_str());
    let out = a.ctl(&["circle", "add", "ops", "not-a-key"]);
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read_to_string(a.dir.join("policy.toml")).expect("file"),
        file,
        "a refused edit changed the file"
    );
    let list = a.ctl_json(&["circle", "list"]);
    assert_eq!(list.as_array().map(|l| l.len()), Some(4), "{list}");
    let out = a.ctl(&["circle", "remove", "ops", &k[B]]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let why = a.ctl(&["policy", "explain", &net.addrs[D].to_string(), "tcp/80"]);
    let why = String::from_utf8_lossy(&why.stdout);
    assert!(
        why.contains("ALLOW traffic tcp/80") && why.contains("friends"),
        "{why}"
    );

    phase("circle edits checked");
    // D is moved into the blocked circle: its link and session go within a second.
    assert!(reaches(d, net.addrs[A], Duration::from_secs(5)), "D lost A");
    let (closed_links, closed_sessions) =
        (counter(a, "links_closed"), counter(a, "sessions_closed"));
    write_policy(a, &a_policy(&k, 3));
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(3), || !link_up(a, &k[D])
            && counter(a, "links_closed") > closed_links
            && counter(a, "sessions_closed") > closed_sessions),
        "D's link and session were not torn down"
    );
    let teardown = t0.elapsed();
    eprintln!("D's link and session torn down {teardown:?} after the file changed");
    assert!(
        teardown <= Duration::from_secs(1),
        "teardown took {teardown:?}"
    );
    // D still holds its end of the session: its packets die as unknown at A, then its
    // handshake again (after 3 s without answer) is refused by the policy.
    let refused = counter(a, "sessions_refused");
    assert!(
        wait_until(Duration::from_secs(8), || {
            assert_eq!(d.ping(&net.addrs[A], 1, "0.2"), 0, "blocked D reached A");
            counter(a, "sessions_refused") > refused
        }),
        "D's new session was not refused"
    );
    assert!(
        reaches(b, net.addrs[A], Duration::from_secs(5)),
        "B disturbed"
    );

    phase("teardown checked");
    // The intruder: lowest key of all. C (no root rule) takes it as root; A, B, D do not.
    write_policy(a, &a_policy(&k, 2));
    net.nodes[I].start();
    let (a, b, c, d) = (&net.nodes[A], &net.nodes[B], &net.nodes[C], &net.nodes[D]);
    assert!(
        wait_until(Duration::from_secs(15), || root_of(c) == k[I]),
        "C never took the intruder as root (root {})",
        root_of(c)
    );
    assert!(link_up(b, &k[I]), "B is not linked with the intruder");
    for _ in 0..3 {
        for (n, node) in [(A, a), (B, b), (D, d)] {
            let r = root_of(node);
            assert!(
                !r.is_empty() && r != k[I],
                "{} took the intruder as root",
                NAMES[n]
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(reaches(a, net.addrs[B], Duration::from_secs(5)), "A lost B");
    phase("root rule checked");
    stop.store(true, Ordering::Relaxed);
}
