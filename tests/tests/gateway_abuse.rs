//! A gateway under attack from the internet and from the mesh (issue 17, point 4), on real
//! daemons: 10,000 connections of garbage, connections held open half-written, ClientHellos
//! with an oversized name, with none, and with a name nobody publishes. The gateway stays up,
//! its memory stays bounded, and the published service keeps answering a client from another
//! address throughout. A publish from a key outside the gateway's `publish` circle, and a
//! publish of a name another key holds, are refused with a message saying why.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tests::gateway::scene;
use tests::{Netns, Node, require_root, wait_until};

/// A TLS record holding a ClientHello, with `sni` as its server name (none: no extension).
fn client_hello(sni: Option<&[u8]>) -> Vec<u8> {
    let be16 = |n: usize| (n as u16).to_be_bytes();
    let mut ext = Vec::new();
    if let Some(name) = sni {
        let mut list = vec![0u8];
        list.extend(be16(name.len()));
        list.extend(name);
        let mut body = be16(list.len()).to_vec();
        body.extend(list);
        ext.extend([0, 0]);
        ext.extend(be16(body.len()));
        ext.extend(body);
    }
    let mut hello = vec![3, 3];
    hello.extend([7u8; 32]);
    hello.push(0);
    hello.extend([0, 2, 0x13, 0x01, 1, 0]);
    hello.extend(be16(ext.len()));
    hello.extend(ext);
    let mut hs = vec![1];
    hs.extend(&(hello.len() as u32).to_be_bytes()[1..]);
    hs.extend(hello);
    let mut rec = vec![0x16, 3, 1];
    rec.extend(be16(hs.len()));
    rec.extend(hs);
    rec
}

/// Connects from `from` to `to`, sends `bytes`, and reads what comes back until the gateway
/// closes (at most `wait`).
fn exchange(from: &str, to: SocketAddr, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    let src: SocketAddr = format!("{from}:0").parse().ok()?;
    s.bind(&src.into()).ok()?;
    s.connect_timeout(&to.into(), Duration::from_secs(2)).ok()?;
    let mut s: TcpStream = s.into();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    s.set_read_timeout(Some(wait)).ok()?;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    Some(out)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The interface of `ns` that has `addr`.
fn interface_with(ns: &Netns, addr: &str) -> String {
    let out = tests::run(ns.cmd("ip").args(["-o", "-4", "addr", "show"]));
    out.lines()
        .find(|l| l.contains(&format!(" {addr}/")))
        .and_then(|l| l.split_whitespace().nth(1))
        .expect("the interface")
        .to_string()
}

#[test]
fn a_gateway_survives_bad_input_and_refuses_bad_publishers() {
    require_root();
    let mut x = Node::new("gwx");
    x.configure("udp://0.0.0.0:7820", &[], "");
    x.start();
    let limits = "max_per_client = 100\npeek_timeout = 2\n";
    let mut s = scene("", "default = \"allow\"\n", limits, &[&x]);
    s.publish();
    let (_, k1) = s.g1.identity();
    let (_, c_key) = s.c.identity();
    let (_, x_key) = x.identity();

    // Publishers the gateway refuses. X is not in GW1's publish circle …
    tests::run(&mut x.ctl_cmd(&["znet", "create", "blog", "--ipv4", "10.53.0.0/16"]));
    let mut routers = tests::ZnetRouters::default();
    routers.add(&x, "blog");
    let blog = Netns::new("blog");
    tests::run(&mut x.ctl_cmd(&["znet", "attach", "blog", "--netns", &blog.name]));
    let target = format!("{}:443", blog.name);
    let publish =
        |name: &str| x.ctl(&["publish", "blog", &target, "--name", name, "--gateway", &k1]);
    let out = publish("blog.test");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "X published without a publish rule");
    assert!(
        err.contains(&format!("key {x_key} may not publish on this gateway")),
        "{err}"
    );
    // … and once it is, the name C holds is still C's.
    tests::run(&mut s.g1.ctl_cmd(&["circle", "add", "shops", &x_key]));
    let out = publish("shop.test");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "X took C's name");
    assert!(
        err.contains(&format!(
            "\"shop.test\" is held on this gateway by key {c_key}"
        )),
        "{err}"
    );
    assert!(tests::run(&mut x.ctl_cmd(&["services"])).contains("no published services"));

    // Attackers on their own addresses; the legitimate client stays on 10.80.1.1.
    let ifname = interface_with(&s.inet, "10.80.1.1");
    for a in ["10.80.1.3", "10.80.1.4", "10.80.1.5"] {
        tests::run(
            s.inet
                .cmd("ip")
                .args(["addr", "add", &format!("{a}/24"), "dev", &ifname]),
        );
    }
    let gw: SocketAddr = "10.80.1.2:443".parse().expect("addr");
    let pid = s.g1.pid().expect("GW1 runs");
    let rss_before = rss_kib(pid);

    // Odd ClientHellos: an oversized name, no name, a name nobody publishes.
    let answers: Vec<Option<Vec<u8>>> = s.inet.enter(move || {
        let long = vec![b'a'; 300];
        [Some(&long[..]), None, Some(&b"nobody.test"[..])]
            .into_iter()
            .map(|sni| exchange("10.80.1.5", gw, &client_hello(sni), Duration::from_secs(3)))
            .collect()
    });
    let alert = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];
    assert_eq!(
        answers[0].as_deref(),
        Some(&[][..]),
        "an oversized name: closed"
    );
    assert_eq!(
        answers[1].as_deref(),
        Some(&alert[..]),
        "no name: unrecognized_name"
    );
    assert_eq!(
        answers[2].as_deref(),
        Some(&alert[..]),
        "an unknown name: unrecognized_name"
    );

    // 150 connections held open half-written (a TLS record header and nothing more), and
    // 10,000 connections of garbage, while the client fetches the page every 100 ms.
    let held = s.inet.spawn(move || {
        let mut conns = Vec::new();
        for _ in 0..150 {
            let so = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None);
            let Ok(so) = so else { continue };
            let src: SocketAddr = "10.80.1.3:0".parse().expect("addr");
            if so.bind(&src.into()).is_ok() && so.connect(&gw.into()).is_ok() {
                let mut t: TcpStream = so.into();
                let _ = t.write_all(&[0x16, 3, 1]);
                conns.push(t);
            }
        }
        std::thread::sleep(Duration::from_secs(4));
        conns.len()
    });
    let done = Arc::new(AtomicU64::new(0));
    let flood: Vec<_> = (0..16u64)
        .map(|t| {
            let done = done.clone();
            s.inet.spawn(move || {
                let mut r = 0x9e37_79b9_7f4a_7c15u64 ^ t;
                for _ in 0..625 {
                    let mut junk = [0u8; 64];
                    for b in junk.iter_mut() {
                        r ^= r << 13;
                        r ^= r >> 7;
                        r ^= r << 17;
                        *b = r as u8;
                    }
                    let _ = exchange("10.80.1.4", gw, &junk, Duration::from_secs(3));
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let started = Instant::now();
    let (mut ok, mut failed) = (0, 0);
    // Through the whole attack: the flood, and the held connections until they are dropped.
    while (done.load(Ordering::Relaxed) < 10_000 || !held.is_finished())
        && started.elapsed() < Duration::from_secs(120)
    {
        match s.https_via("10.80.1.2") {
            Some(p) if p == s.page => ok += 1,
            _ => failed += 1,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for f in flood {
        f.join().expect("flood thread");
    }
    let held = held.join().expect("held thread");
    eprintln!("the attack took {:?}", started.elapsed());
    assert_eq!(done.load(Ordering::Relaxed), 10_000);
    assert!(held >= 100, "{held} connections held");
    assert_eq!(
        failed,
        0,
        "the service failed {failed} of {} requests during the attack",
        ok + failed
    );
    assert!(s.g1.running(), "GW1 died:\n{}", s.g1.log());
    let rss_after = rss_kib(pid);
    eprintln!(
        "GW1 RSS {rss_before} KiB before, {rss_after} KiB after; {ok} requests served during the attack"
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "GW1's memory grew from {rss_before} to {rss_after} KiB"
    );

    // The counters say what happened; the held connections were closed by the deadline.
    let c = |v: &serde_json::Value, k: &str| v["counters"][k].as_u64().unwrap_or(0);
    let st = s.g1.ctl_json(&["gateway", "status"]);
    assert!(c(&st, "garbage") >= 9_000, "{st}");
    assert!(
        c(&st, "no_name") >= 1 && c(&st, "unknown_name") >= 1,
        "{st}"
    );
    assert!(c(&st, "over_client_limit") >= 40, "{st}");
    assert!(c(&st, "peek_timeout") >= 100, "{st}");
    assert!(wait_until(Duration::from_secs(5), || {
        s.g1.ctl_json(&["gateway", "status"])["open"].as_u64() == Some(0)
    }));
    assert_eq!(s.https_via("10.80.1.2").as_deref(), Some(s.page.as_str()));

    // A mesh node sending garbage to the publishers' port is refused and counted.
    let (g1_addr, _) = s.g1.identity();
    let before = c(&s.g1.ctl_json(&["gateway", "status"]), "publish_refused");
    let sent = x.ns.enter(move || {
        (0..20)
            .filter(|_| {
                let to = SocketAddr::new(g1_addr.into(), 7443);
                TcpStream::connect_timeout(&to, Duration::from_secs(2))
                    .and_then(|mut t| {
                        t.write_all(
                            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789abcdef0123456789abcdef",
                        )?;
                        t.set_read_timeout(Some(Duration::from_secs(3)))?;
                        let mut out = Vec::new();
                        let _ = t.read_to_end(&mut out);
                        Ok(())
                    })
                    .is_ok()
            })
            .count()
    });
    assert_eq!(sent, 20);
    let after = c(&s.g1.ctl_json(&["gateway", "status"]), "publish_refused");
    assert!(after >= before + 20, "{before} → {after}");
    assert!(s.g1.running());
}
