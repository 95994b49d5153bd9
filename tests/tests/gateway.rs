//! Apps behind the network wall, on real daemons (issue 17, points 1 and 3).
//!
//! ```text
//!   inet (curl) ── GW1 ─┐
//!               └─ GW2 ─┤ mesh links        container node C: znet "shop", container "web"
//!                       C ──────────────────  (HTTPS and HTTP server for shop.test, nftables
//!   U (allowed) ────────┤                      counters of the SYNs that reach it)
//!   D (denied)  ────────┘
//! ```
//!
//! C publishes shop.test (TLS, and HTTP) through GW1 and GW2: it dials out to both over the
//! overlay. curl in the internet namespace gets the page through either gateway; with GW1
//! killed, requests through GW2 go on without a gap over 2 s. No SYN reaches the container
//! but from its router namespace (C's local delivery path); C listens on no uplink address
//! for the service; a capture at GW1 shows the server name in the clear but never the page.
//! Mesh users: U, allowed by C's circles, fetches the page at the service address over the
//! overlay; D, denied, gets nothing and C counts it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tests::gateway::{curl, scene, syns};
use tests::{Node, require_root, wait_until};

#[test]
fn gateways_carry_a_published_service_through_the_wall() {
    require_root();
    let t0 = Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", t0.elapsed().as_secs_f64());
    let u = Node::new("gwu");
    let d = Node::new("gwd");
    for n in [&u, &d] {
        n.configure("udp://0.0.0.0:7820", &[], "");
    }
    let mut u = u;
    let mut d = d;
    u.start();
    d.start();
    let (_, u_key) = u.identity();
    // C: traffic only from its users' circle, to the service's ports.
    let policy_c = format!(
        "[defaults]\ntraffic = \"deny\"\n\n[circles]\nusers = [\"{u_key}\"]\n\n[[rules]]\n\
         action = \"traffic\"\nallow = \"circle:users\"\nports = [\"tcp/443\", \"tcp/80\"]\n"
    );
    let mut s = scene("", &policy_c, "", &[&u, &d]);
    phase("scene up");
    s.publish();
    phase("published");

    // Through each gateway, TLS passed through (curl checks the container's certificate) …
    for gw in ["10.80.1.2", "10.80.2.2"] {
        let page = s.https_via(gw);
        assert_eq!(
            page.as_deref(),
            Some(s.page.as_str()),
            "HTTPS through {gw}\nC log:\n{}",
            s.c.log()
        );
        // … and plain HTTP routed by Host.
        let page = curl(
            &s.inet,
            &s.dir.join("cert.pem"),
            &format!("shop.test:80:{gw}"),
            "http://shop.test/",
            "3",
        );
        assert_eq!(page.as_deref(), Some(s.page.as_str()), "HTTP through {gw}");
    }
    phase("pages through both gateways");
    // An unknown name gets a 404 from the gateway, not the container.
    let out = s
        .inet
        .cmd("curl")
        .args([
            "-s",
            "--max-time",
            "3",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .args(["--resolve", "blog.test:80:10.80.1.2", "http://blog.test/"])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "404");

    // A capture at GW1 while a page goes through it: the server name is there in the clear
    // (the capture works), the page never is.
    let pcap = s.dir.join("gw1.pcap");
    let mut dump =
        s.g1.ns
            .cmd("tcpdump")
            .args(["-i", "any", "-U", "-s", "0", "-w"])
            .arg(&pcap)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump");
    std::thread::sleep(Duration::from_millis(700));
    for _ in 0..3 {
        assert_eq!(s.https_via("10.80.1.2").as_deref(), Some(s.page.as_str()));
    }
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-INT", &dump.id().to_string()])
        .status();
    let _ = dump.wait();
    let captured = std::fs::read(&pcap).expect("capture");
    let has = |needle: &[u8]| captured.windows(needle.len()).any(|w| w == needle);
    assert!(
        has(b"shop.test"),
        "the capture saw the ClientHello ({} bytes)",
        captured.len()
    );
    assert!(!has(s.page.as_bytes()), "the page's plaintext crossed GW1");

    phase("capture");
    // Mesh users: U (allowed) at the service address over the overlay; D (denied) nothing.
    let svc = s.c.ctl_json(&["services"])[0]["service_address"]
        .as_str()
        .expect("service address")
        .to_string();
    let resolve = format!("shop.test:443:[{svc}]");
    let page = wait_until(Duration::from_secs(5), || {
        curl(
            &u.ns,
            &s.dir.join("cert.pem"),
            &resolve,
            "https://shop.test/",
            "2",
        )
        .as_deref()
            == Some(s.page.as_str())
    });
    assert!(page, "U reaches the service address\nC log:\n{}", s.c.log());
    let refused = |c: &Node| {
        let p = c.ctl_json(&["policy", "show"]);
        p["counters"]["sessions_refused"].as_u64().unwrap_or(0)
            + p["counters"]["dropped_in"].as_u64().unwrap_or(0)
    };
    let before = refused(&s.c);
    assert_eq!(
        curl(
            &d.ns,
            &s.dir.join("cert.pem"),
            &resolve,
            "https://shop.test/",
            "2"
        ),
        None,
        "D is denied"
    );
    assert!(refused(&s.c) > before, "C counts what it refused from D");

    phase("mesh users");
    // The wall: every SYN the container saw came from its router namespace.
    let (all, other) = (syns(&s.web, "syn_all"), syns(&s.web, "syn_other"));
    assert!(all >= 9, "the container saw the connections ({all} SYNs)");
    assert_eq!(other, 0, "SYNs reached the container from elsewhere");
    // C listens for the service only on its service address (the overlay), not on an uplink.
    let listening = tests::run(s.c.ns.cmd("ss").args(["-Htln"]));
    for line in listening.lines() {
        let local = line.split_whitespace().nth(3).unwrap_or("");
        if local.ends_with(":443") || local.ends_with(":80") {
            assert!(local.contains(&svc), "C listens on {local}");
        }
    }

    phase("the wall");
    // GW1 dies: requests through GW2 go on, with no gap over 2 s.
    let status = s.g2.ctl_json(&["gateway", "status"]);
    assert!(
        status["services"][0]["total"].as_u64().unwrap_or(0) >= 1,
        "{status}"
    );
    let started = Instant::now();
    let mut last_ok = Instant::now();
    let mut worst = Duration::ZERO;
    let mut killed = false;
    let mut served = 0;
    while started.elapsed() < Duration::from_secs(6) {
        if !killed && started.elapsed() > Duration::from_secs(1) {
            s.g1.kill9();
            killed = true;
        }
        if s.https_via("10.80.2.2").as_deref() == Some(s.page.as_str()) {
            worst = worst.max(last_ok.elapsed());
            last_ok = Instant::now();
            served += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    worst = worst.max(last_ok.elapsed());
    assert!(
        worst < Duration::from_secs(2),
        "the longest gap through GW2 was {worst:?} ({served} served)"
    );
    phase(&format!("failover: longest gap {worst:?}, {served} served"));
    let _ = s.g2.ctl(&["services"]);
    let _ = std::fs::remove_dir_all(&s.dir);
}
