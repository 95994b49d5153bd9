//! The scene of the gateway tests (issue 17): an internet namespace with clients, two
//! gateway nodes with public addresses there, a container node whose znet container serves
//! `shop.test` over HTTPS and HTTP (Python, a self-signed certificate), nftables counters of
//! the SYNs that reach the container, and curl.
//!
//! ```text
//!   inet (curl) ── GW1 ─┐
//!               └─ GW2 ─┤ mesh links        container node C: znet "shop", container "web"
//!                       C
//!   extra nodes ────────┘ (linked to C)
//! ```

use crate::{Netns, Node, unique, veth, wait_until};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The container's server (Python: HTTPS on 443 and HTTP on 80, one page), killed on drop.
pub struct Site {
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
    /// Starts the server in `ns` (certificate in `dir`) and waits until it listens.
    pub fn start(ns: &Netns, dir: &Path, page: &str) -> Site {
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
    crate::run(Command::new("openssl").args([
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
pub fn count_syns(ns: &Netns, gw: &str) {
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

/// The packets counter `counter` (`syn_all`, `syn_other`) of [`count_syns`] counted.
pub fn syns(ns: &Netns, counter: &str) -> u64 {
    let out = crate::run(
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
pub fn curl(ns: &Netns, cacert: &Path, resolve: &str, url: &str, max: &str) -> Option<String> {
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

/// A gateway's extra configuration: `policy` and `[gateway]` on ports 443 and 80, then
/// `gateway_extra` (more keys of `[gateway]`).
pub fn gateway_config(policy: &str, gateway_extra: &str) -> String {
    format!(
        "policy_file = \"{policy}\"\n[gateway]\nlisten = [\"0.0.0.0:443\", \"0.0.0.0:80\"]\n{gateway_extra}\n"
    )
}

/// Whether every kind of `name` that `c` publishes is connected to its `gateways` gateways.
pub fn services_connected(c: &Node, name: &str, gateways: usize) -> bool {
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
pub struct Scene {
    /// The internet.
    pub inet: Netns,
    /// Gateway 1 (public address 10.80.1.2).
    pub g1: Node,
    /// Gateway 2 (public address 10.80.2.2).
    pub g2: Node,
    /// The container node.
    pub c: Node,
    /// The container (10.52.1.2 on znet `shop`).
    pub web: Netns,
    /// The certificate's directory.
    pub dir: PathBuf,
    /// The page the container serves.
    pub page: String,
    _site: Site,
    _routers: crate::ZnetRouters,
}

/// Builds the scene: C with `extra_c` configuration and policy `policy_c`, linked to both
/// gateways and to `users`; the gateways with `gateway_extra` in `[gateway]`, allowing C to
/// publish.
pub fn scene(extra_c: &str, policy_c: &str, gateway_extra: &str, users: &[&Node]) -> Scene {
    let dir = std::env::temp_dir().join(unique("plgw"));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut routers = crate::ZnetRouters::default();
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
        g.configure(
            "udp://0.0.0.0:7820",
            &[],
            &gateway_config("policy.toml", gateway_extra),
        );
        g.start();
        let (_, k) = g.identity();
        assert!(
            c.wait_link_up(&k, Duration::from_secs(10)),
            "C links with a gateway"
        );
    }
    // The container.
    crate::run(&mut c.ctl_cmd(&["znet", "create", "shop", "--ipv4", "10.52.0.0/16"]));
    routers.add(&c, "shop");
    let web = Netns::new("web");
    crate::run(&mut c.ctl_cmd(&["znet", "attach", "shop", "--netns", &web.name]));
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
    /// C publishes shop.test (TLS on 443, HTTP on 80) on both gateways; waits until connected.
    pub fn publish(&self) {
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
            crate::run(&mut self.c.ctl_cmd(&args));
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

    /// The page over HTTPS from the internet through gateway address `gw`.
    pub fn https_via(&self, gw: &str) -> Option<String> {
        curl(
            &self.inet,
            &self.dir.join("cert.pem"),
            &format!("shop.test:443:{gw}"),
            "https://shop.test/",
            "3",
        )
    }
}
