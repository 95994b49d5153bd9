//! znet egress on real daemons. Node A and node B are linked; only B is connected to a
//! namespace standing for the internet (an HTTP server on 10.79.9.2). B allows itself to be
//! the exit of znet `zx` (`[znet] exit`), not of `zy`.
//!
//! * `zl` (on B, `egress = "local"`): B's container fetches the page, NATed to B's address;
//!   the internet reaches neither the container nor the router namespace (SYN to B's address,
//!   to the container's, to the transfer address: no container sees a connection).
//! * `zx` (A and B, `egress` = B): A's container fetches the page through B, NATed there.
//! * `zy` (A and B, `egress` = B, which did not allow it): refused, counted by B.
//! * `zn` (on B, no egress): the fetch fails as before; egress cannot be turned on while a
//!   container is attached (a clear refusal).
//! * a crash and restart of B keeps both ways out; `znet leave` removes the uplink and its
//!   rules from the host.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tests::{Netns, Node, ok, require_root, veth, wait_until};

const SERVER: &str = "10.79.9.2:8080";
const B_UPLINK: &str = "10.79.9.1";

/// An HTTP server in `ns` that answers every request with the address it came from.
fn http_server(ns: &Netns, stop: Arc<AtomicBool>) {
    let addr: SocketAddr = SERVER.parse().expect("addr");
    let l = ns.enter(move || TcpListener::bind(addr).expect("bind the internet's server"));
    l.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, peer)) => {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let mut buf = [0u8; 512];
                    let _ = s.read(&mut buf);
                    let body = format!("hello {}", peer.ip());
                    let _ = write!(
                        s,
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
}

/// `GET /` from inside `ns`: the body, or `None` if nothing came back within two seconds.
fn fetch(ns: &Netns) -> Option<String> {
    fetch_within(ns, Duration::from_secs(2))
}

/// A fetch that should fail: a second is plenty for a SYN to cross the test's links.
fn no_fetch(ns: &Netns) -> bool {
    fetch_within(ns, Duration::from_secs(1)).is_none()
}

fn fetch_within(ns: &Netns, connect: Duration) -> Option<String> {
    let addr: SocketAddr = SERVER.parse().expect("addr");
    ns.enter(move || {
        let mut s = TcpStream::connect_timeout(&addr, connect).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.split("\r\n\r\n").nth(1).map(str::to_string)
    })
}

/// Waits (bounded) for the first fetch to succeed: the znet's session is set up on demand.
fn fetches(ns: &Netns) -> Option<String> {
    let mut got = None;
    wait_until(Duration::from_secs(10), || {
        got = fetch(ns);
        got.is_some()
    });
    got
}

/// Creates znet `name` on `node` with `egress` (if any) and `more` members; returns the
/// manifest text (joined on `node`).
fn create(node: &Node, name: &str, egress: Option<&str>, more: &[&str]) -> String {
    let mut m = ok(
        node.ctl(&["znet", "create", name, "--ipv4", "10.50.0.0/16"]),
        "znet create",
    );
    if let Some(e) = egress {
        m = m.replacen(
            "[[members]]",
            &format!("egress = \"{e}\"\n\n[[members]]"),
            1,
        );
    }
    for k in more {
        m.push_str(&format!("\n[[members]]\nkey = \"{k}\"\n"));
    }
    join(node, name, &m);
    m
}

fn join(node: &Node, name: &str, manifest: &str) {
    let f = node.dir.join(format!("{name}.toml"));
    std::fs::write(&f, manifest).expect("write manifest");
    ok(
        node.ctl(&["znet", "join", f.to_str().expect("utf-8")]),
        "znet join",
    );
}

fn attach(node: &Node, znet: &str, c: &Netns) -> serde_json::Value {
    let out = ok(
        node.ctl(&["znet", "attach", znet, "--netns", &c.name, "--json"]),
        "znet attach",
    );
    serde_json::from_str(&out).expect("JSON")
}

fn counter(node: &Node, znet: &str, name: &str) -> u64 {
    node.ctl_json(&["znet", "show", znet])["counters"][name]
        .as_u64()
        .unwrap_or(0)
}

/// Tries to open TCP from the internet to `ip:port` (routed through B); true if it connected.
fn syn(inet: &Netns, ip: &str, port: u16) -> bool {
    let addr: SocketAddr = format!("{ip}:{port}").parse().expect("addr");
    inet.enter(move || TcpStream::connect_timeout(&addr, Duration::from_millis(400)).is_ok())
}

#[test]
fn containers_reach_the_outside_only_when_the_manifest_says_so() {
    require_root();
    let t0 = std::time::Instant::now();
    let phase = |what: &str| eprintln!("egress test: {:.2?} {what}", t0.elapsed());
    let mut cleanup = tests::ZnetRouters::default();
    let mut a = Node::new("ega");
    let mut b = Node::new("egb");
    let inet = Netns::new("egi");
    veth(&a.ns, "10.79.0.1", &b.ns, "10.79.0.2");
    veth(&b.ns, B_UPLINK, &inet, "10.79.9.2");
    a.configure("udp://0.0.0.0:7820", &["udp://10.79.0.2:7820".into()], "");
    b.configure("udp://0.0.0.0:7820", &[], "[znet]\nexit = [\"zx\"]\n");
    a.start();
    b.start();
    let (_, kb) = b.identity();
    assert!(a.wait_link_up(&kb, Duration::from_secs(10)));
    let stop = Arc::new(AtomicBool::new(false));
    http_server(&inet, stop.clone());
    // B itself reaches the server; A does not (only B is connected to the internet).
    assert!(
        fetch(&b.ns).is_some(),
        "the test's internet is not reachable from B"
    );
    assert!(no_fetch(&a.ns), "A must not reach the internet by itself");

    phase("setup");
    // (a) egress = "local" on B.
    create(&b, "zl", Some("local"), &[]);
    cleanup.add(&b, "zl");
    let cl = Netns::new("egcl");
    let att = attach(&b, "zl", &cl);
    assert_eq!(att["default_route"], true, "{att}");
    let body = fetches(&cl).unwrap_or_else(|| panic!("zl: no page\n{}", b.log()));
    assert_eq!(body, format!("hello {B_UPLINK}"), "NATed to B's address");

    phase("local");
    // (b) egress through the exit member B, for A's container.
    let zx = create(&a, "zx", Some(&kb), &[&kb]);
    join(&b, "zx", &zx);
    cleanup.add(&a, "zx");
    cleanup.add(&b, "zx");
    assert_eq!(b.ctl_json(&["znet", "show", "zx"])["exit"], true);
    let cx = Netns::new("egcx");
    attach(&a, "zx", &cx);
    let body =
        fetches(&cx).unwrap_or_else(|| panic!("zx: no page\nA:\n{}\nB:\n{}", a.log(), b.log()));
    assert_eq!(body, format!("hello {B_UPLINK}"), "NATed at the exit");
    assert!(counter(&b, "zx", "exit_out") > 0 && counter(&b, "zx", "exit_back") > 0);

    phase("exit");
    // An exit member that did not allow it refuses.
    let zy = create(&a, "zy", Some(&kb), &[&kb]);
    join(&b, "zy", &zy);
    cleanup.add(&a, "zy");
    cleanup.add(&b, "zy");
    let cy = Netns::new("egcy");
    attach(&a, "zy", &cy);
    assert!(no_fetch(&cy), "zy: B is not allowed to be its exit");
    assert!(
        counter(&b, "zy", "not_exit") > 0,
        "B did not count the refusal"
    );

    phase("refused exit");
    // (c) Nothing unsolicited comes in: a container listening on every address sees no
    // connection from the internet, whether sent to B's address (the NAT address), to the
    // container's, or to the router namespace's transfer address.
    let port = 9099;
    let listener = cl.enter(move || TcpListener::bind(("0.0.0.0", port)).expect("bind"));
    listener.set_nonblocking(true).expect("nonblocking");
    for route in ["10.50.0.0/16", "169.254.77.0/24"] {
        ok(
            inet.cmd("ip")
                .args(["route", "add", route, "via", B_UPLINK])
                .output()
                .expect("ip"),
            "route",
        );
    }
    for ip in [B_UPLINK, "10.50.1.2", "169.254.77.2"] {
        assert!(
            !syn(&inet, ip, port),
            "the internet connected to {ip}:{port}"
        );
    }
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock),
        "a connection from the internet reached the container"
    );
    // A's container is not reachable either (B does not route the znet's addresses).
    assert!(!syn(&inet, "10.50.1.2", 9), "reached a container through B");

    phase("unsolicited");
    // (d) Without egress, nothing changes: no page, even on B, which has an uplink.
    create(&b, "zn", None, &[]);
    cleanup.add(&b, "zn");
    let cn = Netns::new("egcn");
    let att = attach(&b, "zn", &cn);
    assert!(att.get("default_route").is_none(), "{att}");
    assert!(
        no_fetch(&cn),
        "a container without egress reached the internet"
    );
    let routes = ok(
        cn.cmd("ip").args(["route", "show"]).output().expect("ip"),
        "routes",
    );
    assert!(!routes.contains("default"), "{routes}");
    // Turning egress on with a container attached is refused, clearly.
    let m = std::fs::read_to_string(b.dir.join("zn.toml")).expect("manifest");
    let f = b.dir.join("zn-egress.toml");
    std::fs::write(
        &f,
        m.replacen("[[members]]", "egress = \"local\"\n[[members]]", 1),
    )
    .expect("write");
    let out = b.ctl(&["znet", "join", f.to_str().expect("utf-8")]);
    assert!(
        !out.status.success(),
        "egress turned on under an attached container"
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("egress") && e.contains("detach"), "{e}");

    phase("no egress");
    // egress may change while containers are attached (only not on or off): zl names B as
    // its exit, which B did not allow, so B's own container loses its way out; back to
    // "local", it has it again.
    let zl = std::fs::read_to_string(b.dir.join("zl.toml")).expect("manifest");
    join(
        &b,
        "zl",
        &zl.replace("egress = \"local\"", &format!("egress = \"{kb}\"")),
    );
    assert!(no_fetch(&cl), "zl: still a way out through a refused exit");
    join(&b, "zl", &zl);
    assert!(fetches(&cl).is_some(), "zl: no way out once local again");

    phase("switch");
    // A crash and restart of B: both ways out are built again.
    b.kill9();
    b.start();
    assert!(a.wait_link_up(&kb, Duration::from_secs(10)));
    assert!(
        fetches(&cl).is_some(),
        "zl: no page after B restarted\n{}",
        b.log()
    );
    assert!(
        fetches(&cx).is_some(),
        "zx: no page after B restarted\n{}",
        b.log()
    );
    assert!(!syn(&inet, "169.254.77.2", port), "after restart");

    phase("restart");
    // Leaving removes the uplink and the host's rules.
    let ns_links = || {
        ok(
            b.ns.cmd("ip")
                .args(["-o", "link", "show"])
                .output()
                .expect("ip"),
            "links",
        )
    };
    let tables = || {
        ok(
            b.ns.cmd("nft")
                .args(["list", "tables"])
                .output()
                .expect("nft"),
            "nft",
        )
    };
    let zl_rns = b.ctl_json(&["znet", "show", "zl"])["router_netns"]
        .as_str()
        .expect("router_netns")
        .to_string();
    assert!(tables().contains(&zl_rns), "{}", tables());
    let before = ns_links().matches(": ze").count();
    ok(b.ctl(&["znet", "leave", "zl"]), "leave");
    ok(b.ctl(&["znet", "leave", "zx"]), "leave");
    assert!(!tables().contains(&zl_rns), "{}", tables());
    assert_eq!(before, 2, "one uplink each for zl and zx: {}", ns_links());
    assert_eq!(ns_links().matches(": ze").count(), 0, "{}", ns_links());
    phase("leave");
    stop.store(true, Ordering::Relaxed);
}
