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

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tests::{Netns, Node, require_root, unique, veth, wait_until};

/// The container's server (Python: HTTPS on 443 and HTTP on 80, one page), killed on drop.
struct Site {
    child: Child,
}

const SERVER: &str = r#"
import http.server, ssl, sys, threading
page = sys.argv[1].encode()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)
    def log_message(self, *a):
        pass
class TLS(http.server.ThreadingHTTPServer):
    # The handshake runs in the request's thread, not in accept.
    def get_request(self):
        s, a = self.socket.accept()
        return ctx.wrap_socket(s, server_side=True, do_handshake_on_connect=False), a
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[2], sys.argv[3])
http.server.ThreadingHTTPServer.allow_reuse_address = True
plain = http.server.ThreadingHTTPServer(("0.0.0.0", 80), H)
threading.Thread(target=plain.serve_forever, daemon=True).start()
TLS(("0.0.0.0", 443), H).serve_forever()
"#;

impl Site {
    fn start(ns: &Netns, dir: &Path, page: &str) -> Site {
        let script = dir.join("server.py");
        std::fs::write(&script, SERVER).expect("write server");
        let child = ns
            .cmd("python3")
            .arg(&script)
            .arg(page)
            .arg(dir.join("cert.pem"))
            .arg(dir.join("key.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3");
        let ready = wait_until(Duration::from_secs(10), || {
            ns.enter(|| {
                ["127.0.0.1:443", "127.0.0.1:80"]
                    .iter()
                    .all(|a| std::net::TcpStream::connect(a).is_ok())
            })
        });
        assert!(ready, "the container's server did not start");
        Site { child }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A self-signed certificate for `name` in `dir` (cert.pem, key.pem).
pub fn certificate(dir: &Path, name: &str) {
    tests::run(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "2",
        "-subj",
        &format!("/CN={name}"),
        "-addext",
        &format!("subjectAltName=DNS:{name}"),
        "-keyout",
        dir.join("key.pem").to_str().expect("utf-8"),
        "-out",
        dir.join("cert.pem").to_str().expect("utf-8"),
    ]));
}

/// nftables in the container: every SYN it receives, and those from any address but the
/// router namespace's (`gw`), the znet's local delivery path (the container's own loopback
/// aside: the test's readiness probe).
fn count_syns(ns: &Netns, gw: &str) {
    let rules = format!(
        "table inet wall {{\n counter syn_all {{}}\n counter syn_other {{}}\n chain input {{\n  \
         type filter hook input priority 0; policy accept;\n  \
         tcp flags & (syn | ack) == syn counter name \"syn_all\"\n  \
         iifname != \"lo\" meta nfproto ipv4 tcp flags & (syn | ack) == syn ip saddr != {gw} counter name \"syn_other\"\n  \
         iifname != \"lo\" meta nfproto ipv6 tcp flags & (syn | ack) == syn counter name \"syn_other\"\n }}\n}}\n"
    );
    let mut c = ns.cmd("nft");
    c.args(["-f", "-"]).stdin(Stdio::piped());
    let mut child = c.spawn().expect("nft");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(rules.as_bytes())
        .expect("rules");
    assert!(child.wait().expect("nft").success(), "nft rules");
}

fn syns(ns: &Netns, counter: &str) -> u64 {
    let out = tests::run(
        ns.cmd("nft")
            .args(["-j", "list", "counter", "inet", "wall", counter]),
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("nft JSON");
    v["nftables"]
        .as_array()
        .and_then(|a| a.iter().find_map(|x| x["counter"]["packets"].as_u64()))
        .expect("counter packets")
}

/// curl in `ns`: the page at `url`, with `resolve` (`NAME:PORT:ADDR`); `None` on failure.
fn curl(ns: &Netns, cacert: &Path, resolve: &str, url: &str, max: &str) -> Option<String> {
    let out = ns
        .cmd("curl")
        .args(["-s", "--max-time", max, "--cacert"])
        .arg(cacert)
        .args(["--resolve", resolve, url])
        .output()
        .expect("curl");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn gateway_config(policy: &str) -> String {
    format!("policy_file = \"{policy}\"\n[gateway]\nlisten = [\"0.0.0.0:443\", \"0.0.0.0:80\"]\n")
}

fn services_connected(c: &Node, name: &str, gateways: usize) -> bool {
    let v = c.ctl_json(&["services"]);
    let Some(list) = v.as_array() else {
        return false;
    };
    let rows: Vec<_> = list.iter().filter(|s| s["name"] == name).collect();
    !rows.is_empty()
        && rows.iter().all(|s| {
            s["gateways"]
                .as_array()
                .is_some_and(|g| g.len() == gateways && g.iter().all(|g| g["state"] == "connected"))
        })
}

/// The scene: the internet namespace, two gateways, the container node and its container.
struct Scene {
    inet: Netns,
    g1: Node,
    g2: Node,
    c: Node,
    web: Netns,
    dir: PathBuf,
    page: String,
    _site: Site,
    _routers: tests::ZnetRouters,
}

fn scene(extra_c: &str, policy_c: &str, users: &[&Node]) -> Scene {
    let dir = std::env::temp_dir().join(unique("plgw"));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut routers = tests::ZnetRouters::default();
    let inet = Netns::new("inet");
    let mut g1 = Node::new("gw1");
    let mut g2 = Node::new("gw2");
    let mut c = Node::new("gwc");
    veth(&inet, "10.80.1.1", &g1.ns, "10.80.1.2");
    veth(&inet, "10.80.2.1", &g2.ns, "10.80.2.2");
    veth(&c.ns, "10.81.1.1", &g1.ns, "10.81.1.2");
    veth(&c.ns, "10.81.2.1", &g2.ns, "10.81.2.2");
    let mut peers = vec![
        "udp://10.81.1.2:7820".to_string(),
        "udp://10.81.2.2:7820".into(),
    ];
    for (i, u) in users.iter().enumerate() {
        let (a, b) = (format!("10.82.{}.1", i + 1), format!("10.82.{}.2", i + 1));
        veth(&c.ns, &a, &u.ns, &b);
        peers.push(format!("udp://{b}:7820"));
    }
    std::fs::write(c.dir.join("policy.toml"), policy_c).expect("policy");
    c.configure(
        "udp://0.0.0.0:7820",
        &peers,
        &format!("policy_file = \"policy.toml\"\n{extra_c}"),
    );
    c.start();
    let (_, c_key) = c.identity();
    for g in [&mut g1, &mut g2] {
        let policy = format!(
            "[circles]\nshops = [\"{c_key}\"]\n\n[[rules]]\naction = \"publish\"\nallow = \"circle:shops\"\n"
        );
        std::fs::write(g.dir.join("policy.toml"), policy).expect("policy");
        g.configure("udp://0.0.0.0:7820", &[], &gateway_config("policy.toml"));
        g.start();
        let (_, k) = g.identity();
        assert!(
            c.wait_link_up(&k, Duration::from_secs(10)),
            "C links with a gateway"
        );
    }
    // The container.
    tests::run(&mut c.ctl_cmd(&["znet", "create", "shop", "--ipv4", "10.52.0.0/16"]));
    routers.add(&c, "shop");
    let web = Netns::new("web");
    tests::run(&mut c.ctl_cmd(&["znet", "attach", "shop", "--netns", &web.name]));
    count_syns(&web, "10.52.1.1");
    certificate(&dir, "shop.test");
    let page = format!("planetary-shop-page-{}", unique("p"));
    let site = Site::start(&web, &dir, &page);
    Scene {
        inet,
        g1,
        g2,
        c,
        web,
        dir,
        page,
        _site: site,
        _routers: routers,
    }
}

impl Scene {
    fn publish(&self) {
        let (_, k1) = self.g1.identity();
        let (_, k2) = self.g2.identity();
        for (port, kind) in [("443", "tls"), ("80", "http")] {
            let target = format!("{}:{port}", self.web.name);
            let args = [
                "publish",
                "shop",
                &target,
                "--name",
                "shop.test",
                "--kind",
                kind,
                "--gateway",
                &k1,
                "--gateway",
                &k2,
            ];
            tests::run(&mut self.c.ctl_cmd(&args));
        }
        assert!(
            wait_until(Duration::from_secs(10), || services_connected(
                &self.c,
                "shop.test",
                2
            )),
            "both gateways connected: {}\nC log:\n{}",
            serde_json::to_string_pretty(&self.c.ctl_json(&["services"])).unwrap_or_default(),
            self.c.log()
        );
    }

    fn https_via(&self, gw: &str) -> Option<String> {
        curl(
            &self.inet,
            &self.dir.join("cert.pem"),
            &format!("shop.test:443:{gw}"),
            "https://shop.test/",
            "3",
        )
    }
}

#[test]
fn gateways_carry_a_published_service_through_the_wall() {
    require_root();
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
    let mut s = scene("", &policy_c, &[&u, &d]);
    s.publish();

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
    let _ = s.g2.ctl(&["services"]);
    let _ = std::fs::remove_dir_all(&s.dir);
}
