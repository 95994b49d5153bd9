//! znets on real daemons. Three nodes in a line N1 - N3 - N2 (so N3 carries N1's and N2's
//! traffic). znet Z1 on N1 and N2, two containers each; znet Z2 on N2 and N3 with the SAME
//! IPv4 range. Containers reach their znet's containers on other nodes (ping, TCP); nothing
//! reaches across znets, from the host or from the overlay; N3 forwards Z1's traffic without
//! reading it and cannot inject into it; membership changes cut off and let in; a restart
//! keeps addresses; bad input is refused with nothing left half-configured.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tests::{Netns, Node, ok, require_root, veth, wait_until};

fn err(out: std::process::Output, what: &str) -> String {
    assert!(!out.status.success(), "{what} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a command in the daemon's mount namespace: the daemon runs under `ip netns exec`,
/// which gives it a mount namespace of its own, so the router namespaces it creates are
/// mounted only there (a daemon on a real host has no such detour).
fn in_daemon(node: &Node, args: &[&str]) -> std::process::Output {
    let pid = node.pid().expect("daemon running").to_string();
    Command::new("nsenter")
        .args(["-t", &pid, "-m"])
        .args(args)
        .output()
        .expect("nsenter")
}

/// One ping from namespace `ns` to `addr`, waiting up to a second.
fn ping(ns: &Netns, addr: &str) -> bool {
    ns.cmd("ping")
        .args(["-n", "-q", "-c", "1", "-W", "1", addr])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn reaches(ns: &Netns, addr: &str, timeout: Duration) -> bool {
    wait_until(timeout, || ping(ns, addr))
}

/// A TCP server in `ns` on `ip:port` that answers every client with `word`.
fn serve(ns: &Netns, ip: &str, port: u16, word: &'static str, stop: Arc<AtomicBool>) {
    let addr: SocketAddr = format!("{ip}:{port}").parse().expect("addr");
    let l = ns.enter(move || TcpListener::bind(addr).expect("bind in container"));
    l.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    let _ = s.set_nonblocking(false);
                    let mut buf = [0u8; 64];
                    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                    let n = s.read(&mut buf).unwrap_or(0);
                    let _ = s.write_all(word.as_bytes());
                    let _ = s.write_all(&buf[..n]);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
}

/// Connects from `ns` to `ip:port`, sends `msg`, returns what came back.
fn talk(ns: &Netns, ip: &str, port: u16, msg: &'static str) -> Option<String> {
    let addr: SocketAddr = format!("{ip}:{port}").parse().expect("addr");
    ns.enter(move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(msg.as_bytes()).ok()?;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        Some(out)
    })
}

fn attach(node: &Node, znet: &str, c: &Netns, ip: Option<&str>) -> String {
    let mut args = vec!["znet", "attach", znet, "--netns", &c.name];
    if let Some(ip) = ip {
        args.extend(["--ip", ip]);
    }
    args.push("--json");
    let v: serde_json::Value =
        serde_json::from_str(&ok(node.ctl(&args), "znet attach")).expect("JSON");
    v["ipv4"].as_str().expect("ipv4").to_string()
}

fn counter(node: &Node, znet: &str, name: &str) -> u64 {
    node.ctl_json(&["znet", "show", znet])["counters"][name]
        .as_u64()
        .unwrap_or(0)
}

/// Adds `key` as a member to the manifest text.
fn with_member(manifest: &str, key: &str) -> String {
    format!("{manifest}\n[[members]]\nkey = \"{key}\"\n")
}

#[test]
fn znets_are_private_networks_across_nodes() {
    require_root();
    // Declared first, dropped last: after the daemons are gone.
    let mut cleanup = tests::ZnetRouters::default();
    let mut n1 = Node::new("zn1");
    let mut n2 = Node::new("zn2");
    let mut n3 = Node::new("zn3");
    veth(&n1.ns, "10.78.0.1", &n3.ns, "10.78.0.2");
    veth(&n3.ns, "10.78.1.1", &n2.ns, "10.78.1.2");
    n1.configure("udp://0.0.0.0:7820", &["udp://10.78.0.2:7820".into()], "");
    n3.configure("udp://0.0.0.0:7820", &["udp://10.78.1.2:7820".into()], "");
    n2.configure("udp://0.0.0.0:7820", &[], "");
    n1.start();
    n3.start();
    n2.start();
    let _ = n1.identity();
    let (_, k2) = n2.identity();
    let (_, k3) = n3.identity();
    assert!(n1.wait_link_up(&k3, Duration::from_secs(10)));
    assert!(n3.wait_link_up(&k2, Duration::from_secs(10)));

    // Z1 on N1 and N2; Z2 on N2 and N3 with the same IPv4 range.
    let m1 = ok(
        n1.ctl(&["znet", "create", "z1", "--ipv4", "10.50.0.0/16"]),
        "create z1",
    );
    let z1 = with_member(&m1, &k2);
    let z1_file = n1.dir.join("z1.toml");
    std::fs::write(&z1_file, &z1).expect("write");
    ok(
        n1.ctl(&["znet", "join", z1_file.to_str().expect("utf-8")]),
        "join z1 on N1",
    );
    let z1_file2 = n2.dir.join("z1.toml");
    std::fs::write(&z1_file2, &z1).expect("write");
    ok(
        n2.ctl(&["znet", "join", z1_file2.to_str().expect("utf-8")]),
        "join z1 on N2",
    );
    let m2 = ok(
        n2.ctl(&["znet", "create", "z2", "--ipv4", "10.50.0.0/16"]),
        "create z2",
    );
    let z2 = with_member(&m2, &k3);
    for n in [&n2, &n3] {
        let f = n.dir.join("z2.toml");
        std::fs::write(&f, &z2).expect("write");
        ok(
            n.ctl(&["znet", "join", f.to_str().expect("utf-8")]),
            "join z2",
        );
    }

    for (n, z) in [(&n1, "z1"), (&n2, "z1"), (&n2, "z2"), (&n3, "z2")] {
        let r = n.ctl_json(&["znet", "show", z])["router_netns"]
            .as_str()
            .expect("router_netns")
            .to_string();
        cleanup.0.push(r);
    }

    // Containers.
    let c1a = Netns::new("c1a");
    let c1b = Netns::new("c1b");
    let c2a = Netns::new("c2a");
    let c2b = Netns::new("c2b");
    let d2 = Netns::new("d2");
    let d3 = Netns::new("d3");
    let ip1a = attach(&n1, "z1", &c1a, None);
    let ip1b = attach(&n1, "z1", &c1b, None);
    let ip2a = attach(&n2, "z1", &c2a, None);
    let ip2b = attach(&n2, "z1", &c2b, Some("10.50.2.9"));
    let ipd2 = attach(&n2, "z2", &d2, None);
    let ipd3 = attach(&n3, "z2", &d3, None);
    assert_eq!((ip1a.as_str(), ip2a.as_str()), ("10.50.1.2", "10.50.2.2"));
    assert_eq!(
        (ipd2.as_str(), ipd3.as_str()),
        ("10.50.1.2", "10.50.2.2"),
        "Z2 reuses Z1's range"
    );
    assert_eq!(ip2b, "10.50.2.9");

    // Every container pings, and opens TCP to, each of its znet's containers on the other
    // node (both ways); Z2 likewise.
    let z1_n1 = [(&c1a, &ip1a), (&c1b, &ip1b)];
    let z1_n2 = [(&c2a, &ip2a), (&c2b, &ip2b)];
    let mut pairs: Vec<(&Netns, &String)> = Vec::new();
    for (x, _) in z1_n1 {
        for (_, ip) in z1_n2 {
            pairs.push((x, ip));
        }
    }
    for (x, _) in z1_n2 {
        for (_, ip) in z1_n1 {
            pairs.push((x, ip));
        }
    }
    pairs.push((&d2, &ipd3));
    pairs.push((&d3, &ipd2));
    for (from, to) in &pairs {
        assert!(
            reaches(from, to, Duration::from_secs(10)),
            "{} cannot reach {to}\nN1:\n{}",
            from.name,
            n1.log()
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    for (ns, ip) in z1_n1.iter().chain(z1_n2.iter()) {
        serve(ns, ip, 8080, "z1:", stop.clone());
    }
    serve(&d2, &ipd2, 8080, "z2:", stop.clone());
    serve(&d3, &ipd3, 8080, "z2:", stop.clone());
    for (from, to) in &pairs {
        let want = if from.name == d2.name || from.name == d3.name {
            "z2:hi"
        } else {
            "z1:hi"
        };
        assert_eq!(
            talk(from, to, 8080, "hi").as_deref(),
            Some(want),
            "TCP from {} to {to}",
            from.name
        );
    }
    assert_eq!(
        talk(&c1a, &ip2a, 8080, "SECRET-PAYLOAD-7431").as_deref(),
        Some("z1:SECRET-PAYLOAD-7431"),
        "TCP within Z1"
    );

    // The same address in the other znet is never reached: 10.50.2.2 from Z1 is c2a.
    assert_eq!(talk(&c1b, "10.50.2.2", 8080, "x").as_deref(), Some("z1:x"));
    // Not the host, not the overlay; and the host cannot reach the containers.
    assert!(
        !ping(&c1a, "10.78.0.1"),
        "a container reached its host's veth"
    );
    assert!(!ping(&c1a, "10.78.0.2"), "a container reached another host");
    assert!(!ping(&n1.ns, &ip1a), "the host reached its container");
    assert!(!ping(&n3.ns, &ip2a), "a mesh node reached a container");
    let ov = n2.identity().0.to_string();
    let st = c1a
        .cmd("ping")
        .args(["-6", "-c", "1", "-W", "1", &ov])
        .output()
        .expect("ping");
    assert!(!st.status.success(), "a container reached the overlay");

    // No container speaks for another: not for a neighbour on its node (reverse-path
    // filter), not for another node's subnet (counted as spoofed).
    let sent = counter(&n1, "z1", "sent");
    for fake in [ip1a.as_str(), "10.50.2.77"] {
        ok(
            c1b.cmd("ip")
                .args(["addr", "add", &format!("{fake}/32"), "dev", "zn0"])
                .output(),
            "alias",
        );
        let st = c1b
            .cmd("ping")
            .args(["-n", "-q", "-c", "1", "-W", "1", "-I", fake, &ip2a])
            .output()
            .expect("ping");
        assert!(!st.status.success(), "c1b sent as {fake}");
        ok(
            c1b.cmd("ip")
                .args(["addr", "del", &format!("{fake}/32"), "dev", "zn0"])
                .output(),
            "alias",
        );
    }
    assert_eq!(
        counter(&n1, "z1", "sent"),
        sent,
        "a spoofed packet left the node"
    );
    assert!(
        counter(&n1, "z1", "spoofed") > 0,
        "no spoofed packet counted"
    );

    // N3 forwards Z1's packets without reading them: the payload never shows in clear on
    // its links.
    let cap = n3
        .ns
        .cmd("timeout")
        .args(["4", "tcpdump", "-i", "any", "-n", "-A", "-s", "0", "udp"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(Duration::from_millis(800));
    for _ in 0..3 {
        assert!(talk(&c1a, &ip2a, 8080, "SECRET-PAYLOAD-7431").is_some());
    }
    let seen = cap.wait_with_output().expect("tcpdump output");
    let text = String::from_utf8_lossy(&seen.stdout);
    assert!(
        text.contains("7820"),
        "tcpdump saw no overlay traffic on N3"
    );
    assert!(
        !text.contains("SECRET-PAYLOAD"),
        "N3 saw Z1's payload in clear"
    );

    // N3 forges Z1: same id, its own secret, itself a member. N1 drops what it sends.
    let forged = z1
        .lines()
        .map(|l| {
            if l.starts_with("secret") {
                format!("secret = \"{}\"", "42".repeat(32))
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let forged = with_member(&forged.replace("name = \"z1\"", "name = \"fake\""), &k3);
    let ff = n3.dir.join("fake.toml");
    std::fs::write(&ff, forged).expect("write");
    ok(
        n3.ctl(&["znet", "join", ff.to_str().expect("utf-8")]),
        "forged join on N3",
    );
    cleanup.0.push(
        n3.ctl_json(&["znet", "show", "fake"])["router_netns"]
            .as_str()
            .expect("router_netns")
            .to_string(),
    );
    let e3 = Netns::new("e3");
    let ipe3 = attach(&n3, "fake", &e3, None);
    assert_eq!(ipe3, "10.50.3.2");
    let before = counter(&n1, "z1", "not_member");
    for _ in 0..3 {
        assert!(!ping(&e3, &ip1a), "N3's forged znet reached Z1");
    }
    assert!(
        wait_until(Duration::from_secs(5), || counter(&n1, "z1", "not_member")
            > before),
        "N1 did not count N3's injection"
    );

    // Removing N2 from Z1 (on N1) cuts it off within 5 s; adding it back lets it in.
    std::fs::write(&z1_file, &m1).expect("write");
    ok(
        n1.ctl(&["znet", "join", z1_file.to_str().expect("utf-8")]),
        "remove N2",
    );
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || !ping(&c2a, &ip1a)),
        "N2 still reaches N1's containers"
    );
    eprintln!("removed member cut off after {:?}", t0.elapsed());
    assert!(!ping(&c1a, &ip2a));
    std::fs::write(&z1_file, &z1).expect("write");
    ok(
        n1.ctl(&["znet", "join", z1_file.to_str().expect("utf-8")]),
        "add N2 back",
    );
    assert!(
        reaches(&c2a, &ip1a, Duration::from_secs(10)),
        "N2 not let back in"
    );

    // Bad input: refused with a reason, nothing half-configured.
    let rns = n1.ctl_json(&["znet", "show", "z1"])["router_netns"]
        .as_str()
        .expect("router_netns")
        .to_string();
    let links_before = ok(in_daemon(&n1, &["ip", "-n", &rns, "link", "show"]), "links");
    let bad = n1.dir.join("bad.toml");
    std::fs::write(&bad, "name = \"bad\"\nid = \"zz\"\n").expect("write");
    let e = err(
        n1.ctl(&["znet", "join", bad.to_str().expect("utf-8")]),
        "bad manifest",
    );
    assert!(e.contains("manifest"), "{e}");
    let e = err(
        n1.ctl(&["znet", "attach", "z1", "--netns", "no-such-ns"]),
        "unknown netns",
    );
    assert!(e.contains("no network namespace"), "{e}");
    let c1c = Netns::new("c1c");
    let e = err(
        n1.ctl(&[
            "znet",
            "attach",
            "z1",
            "--netns",
            &c1c.name,
            "--ip",
            "10.50.2.7",
        ]),
        "outside",
    );
    assert!(e.contains("outside this node's subnet"), "{e}");
    let e = err(
        n1.ctl(&["znet", "attach", "z1", "--netns", &c1c.name, "--ip", &ip1a]),
        "duplicate",
    );
    assert!(e.contains("already used"), "{e}");
    let e = err(
        n1.ctl(&["znet", "attach", "nosuch", "--netns", &c1c.name]),
        "unknown znet",
    );
    assert!(e.contains("no znet"), "{e}");
    let links_after = ok(in_daemon(&n1, &["ip", "-n", &rns, "link", "show"]), "links");
    assert_eq!(
        links_before, links_after,
        "a refused attach left links behind"
    );
    let c1c_links = ok(c1c.cmd("ip").args(["link", "show"]).output(), "links");
    assert!(!c1c_links.contains("zn0"), "{c1c_links}");
    let netns = ok(Command::new("ip").args(["netns", "list"]).output(), "netns");
    assert!(!netns.contains("zn-bad-"), "{netns}");

    // A restart keeps every address and the connectivity.
    n1.kill9();
    n1.start();
    assert!(n1.wait_link_up(&k3, Duration::from_secs(10)));
    assert!(
        reaches(&c1a, &ip2a, Duration::from_secs(15)),
        "no connectivity after restart"
    );
    let shown = n1.ctl_json(&["znet", "show", "z1"]);
    let ips: Vec<&str> = shown["attachments"]
        .as_array()
        .expect("attachments")
        .iter()
        .filter_map(|a| a["ipv4"].as_str())
        .collect();
    assert_eq!(ips, vec![ip1a.as_str(), ip1b.as_str()]);
    let a = ok(c1a.cmd("ip").args(["-4", "addr", "show"]).output(), "addr");
    assert!(a.contains(&format!("{ip1a}/32")), "{a}");
    stop.store(true, Ordering::Relaxed);
    // Leaving removes the router namespace.
    ok(n1.ctl(&["znet", "leave", "z1"]), "leave");
    let netns = ok(Command::new("ip").args(["netns", "list"]).output(), "netns");
    assert!(!netns.contains(&rns), "{netns}");
}

/// Changes to a znet are made one after the other, off the daemon's event loop: the same
/// container attached twice at once is attached once (the other attach is refused, nothing
/// half-made is left), and a leave racing an attach leaves nothing behind.
#[test]
fn concurrent_changes_are_serialized() {
    require_root();
    let mut cleanup = tests::ZnetRouters::default();
    let mut n = Node::new("zc1");
    n.configure("udp://0.0.0.0:7820", &[], "");
    n.start();
    ok(
        n.ctl(&["znet", "create", "zc", "--ipv4", "10.60.0.0/16"]),
        "create zc",
    );
    cleanup.add(&n, "zc");
    let rns = n.ctl_json(&["znet", "show", "zc"])["router_netns"]
        .as_str()
        .expect("router_netns")
        .to_string();

    // The same container, twice at once.
    let c = Netns::new("cc");
    let outs: Vec<std::process::Output> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| s.spawn(|| n.ctl(&["znet", "attach", "zc", "--netns", &c.name, "--json"])))
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let done: Vec<&std::process::Output> = outs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(
        done.len(),
        1,
        "exactly one attach succeeds: {:?}",
        outs.iter()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .collect::<Vec<_>>()
    );
    let refused = outs
        .iter()
        .find(|o| !o.status.success())
        .expect("one refused");
    let e = String::from_utf8_lossy(&refused.stderr);
    assert!(e.contains("already attached"), "{e}");
    let v: serde_json::Value =
        serde_json::from_slice(&done[0].stdout).expect("attach answers JSON");
    let ip = v["ipv4"].as_str().expect("ipv4").to_string();
    assert_eq!(ip, "10.60.1.2");
    // The state: one attachment, one veth, one interface with the address in the container.
    let shown = n.ctl_json(&["znet", "show", "zc"]);
    let atts = shown["attachments"].as_array().expect("attachments");
    assert_eq!(atts.len(), 1, "{shown}");
    let links = ok(
        in_daemon(&n, &["ip", "-n", &rns, "-o", "link", "show"]),
        "links",
    );
    assert_eq!(
        links.lines().filter(|l| l.contains(": zv")).count(),
        1,
        "{links}"
    );
    let a = ok(
        c.cmd("ip").args(["-4", "-o", "addr", "show"]).output(),
        "addr",
    );
    assert_eq!(a.matches(&format!("{ip}/32")).count(), 1, "{a}");
    // znet list and show answer while a change is in flight, and the state stays whole.
    assert!(
        n.ctl_json(&["znet", "list"])
            .as_array()
            .is_some_and(|l| l.len() == 1)
    );

    // A leave racing an attach: whichever goes first, nothing is left behind.
    let c2 = Netns::new("cc2");
    let (att, leave) = std::thread::scope(|s| {
        let a = s.spawn(|| n.ctl(&["znet", "attach", "zc", "--netns", &c2.name]));
        let l = s.spawn(|| n.ctl(&["znet", "leave", "zc"]));
        (a.join().expect("thread"), l.join().expect("thread"))
    });
    ok(leave, "leave");
    if !att.status.success() {
        let e = String::from_utf8_lossy(&att.stderr);
        assert!(e.contains("no znet"), "{e}");
    }
    let gone = n.ctl(&["znet", "show", "zc"]);
    assert!(!gone.status.success(), "znet still shown after leave");
    for ns in [&c, &c2] {
        let l = ok(ns.cmd("ip").args(["-o", "link", "show"]).output(), "links");
        assert!(!l.contains("zn0"), "{}: {l}", ns.name);
    }
    let netns = ok(Command::new("ip").args(["netns", "list"]).output(), "netns");
    assert!(!netns.contains(&rns), "{netns}");
}
