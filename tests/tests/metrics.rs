//! The metrics endpoint as Prometheus sees it: two linked daemons scraped over HTTP, the page
//! checked by `promtool check metrics` (Debian's `prometheus` package), counters that move with
//! traffic and with drops, and what the endpoint refuses.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tests::{Netns, Node, require_root, veth, wait_until};

const A_IP: &str = "10.97.0.1";
const B_IP: &str = "10.97.0.2";
const PORT: u16 = 9820;

/// One HTTP exchange inside `ns` (a thread in the namespace): the whole answer.
fn http(ns: &Netns, request: &[u8]) -> String {
    let request = request.to_vec();
    ns.enter(move || {
        let mut s = TcpStream::connect(("127.0.0.1", PORT)).expect("connect to the endpoint");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        s.write_all(&request).expect("send");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
}

/// The page of `GET /metrics` as `curl` or `promtool` get it (the classic text format), its
/// head checked.
fn scrape(ns: &Netns) -> String {
    let answer = http(ns, b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_string()
}

/// A Prometheus server in the namespace, scraping the endpoint every second (OpenMetrics, as
/// it asks for), killed on drop.
struct Prometheus {
    child: std::process::Child,
    ns: String,
    dir: std::path::PathBuf,
}

impl Prometheus {
    fn start(node: &Node) -> Prometheus {
        let dir = node.dir.join("prometheus");
        std::fs::create_dir_all(&dir).expect("dir");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  \
                 - job_name: meshd\n    static_configs:\n      - targets: ['127.0.0.1:{PORT}']\n"
            ),
        )
        .expect("config");
        let child = node
            .ns
            .cmd("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg("--web.listen-address=127.0.0.1:9090")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("log")).expect("log"))
            .spawn()
            .expect("prometheus (apt-get install prometheus)");
        Prometheus {
            child,
            ns: node.ns.name.clone(),
            dir,
        }
    }

    /// The value of an instant query's first sample, if any.
    fn query(&self, ns: &Netns, q: &str) -> Option<f64> {
        let req = format!(
            "GET /api/v1/query?query={} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            q.replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22")
                .replace('=', "%3D")
        );
        let answer = ns.enter(move || {
            let mut s = TcpStream::connect(("127.0.0.1", 9090)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok();
            s.write_all(req.as_bytes()).ok()?;
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            Some(String::from_utf8_lossy(&out).into_owned())
        })?;
        let body = answer.split_once("\r\n\r\n")?.1;
        // (Chunked or not, the JSON is in one piece here: it is short.)
        let json = &body[body.find('{')?..=body.rfind('}')?];
        let v: serde_json::Value = serde_json::from_str(json).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.ns;
    }
}

/// The value of one series (`name{labels}` exactly as written), or 0 if absent.
fn value(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn promtool(page: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (apt-get install prometheus)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(page.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- page ---\n{page}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // It also reports lint problems (names, units) with success: none are allowed.
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.trim().is_empty(),
        "promtool: {said}\n--- page ---\n{page}"
    );
}

#[test]
fn two_linked_daemons_are_scraped_checked_by_promtool_and_counters_move() {
    require_root();
    let mut a = Node::new("ma");
    let mut b = Node::new("mb");
    veth(&a.ns, A_IP, &b.ns, B_IP);
    let on = format!("metrics_listen = \"{PORT}\"\n");
    a.configure("udp://0.0.0.0:7820", &[format!("udp://{B_IP}:7820")], &on);
    // B: the endpoint is off unless enabled.
    b.configure("udp://0.0.0.0:7820", &[format!("udp://{A_IP}:7820")], "");
    a.start();
    b.start();
    let (_, kb) = b.identity();
    assert!(a.wait_link_up(&kb, Duration::from_secs(5)), "{}", a.log());
    let off =
        b.ns.enter(|| TcpStream::connect(("127.0.0.1", PORT)).is_err());
    assert!(
        off,
        "B has no metrics_listen, yet something answers on {PORT}"
    );

    let first = scrape(&a.ns);
    promtool(&first);
    for family in [
        "meshd_links{state=\"up\",transport=\"udp\"} 1",
        "meshd_build_info{version=",
        "meshd_handshakes_total ",
        "meshd_link_dropped_total{reason=\"malformed\"} ",
        "meshd_routing_forwarded_total ",
        "meshd_sessions{state=\"up\",path=\"direct\"} ",
        "meshd_policy_refused_total{what=\"packet_in\"} ",
        "meshd_uptime_seconds ",
    ] {
        assert!(first.contains(family), "no {family:?} in\n{first}");
    }

    // Traffic moves the byte, packet and session counters.
    let (b_addr, _) = b.identity();
    assert_eq!(a.ping(&b_addr, 10, "0.05"), 10, "{}", a.log());
    let second = scrape(&a.ns);
    promtool(&second);
    for series in [
        "meshd_link_sent_packets_total",
        "meshd_link_sent_bytes_total",
        "meshd_link_received_bytes_total",
        "meshd_session_sent_bytes_total",
        "meshd_datagrams_sent_total",
        "meshd_sessions_established_total",
    ] {
        assert!(
            value(&second, series) > value(&first, series),
            "{series} did not grow: {} then {}",
            value(&first, series),
            value(&second, series)
        );
    }
    assert!(value(&second, "meshd_link_sent_packets_total") >= 10.0);

    // Prometheus itself scrapes the OpenMetrics page and stores the series.
    let prom = Prometheus::start(&a);
    let mut up = None;
    let scraped = wait_until(Duration::from_secs(30), || {
        up = prom.query(&a.ns, "up{job=\"meshd\"}");
        up == Some(1.0)
            && prom
                .query(&a.ns, "meshd_link_sent_packets_total")
                .is_some_and(|v| v >= 10.0)
    });
    assert!(
        scraped,
        "Prometheus did not scrape the endpoint (up = {up:?}):\n{}",
        prom.log()
    );
    assert_eq!(
        prom.query(&a.ns, "meshd_links{state=\"up\",transport=\"udp\"}"),
        Some(1.0)
    );
    drop(prom);

    // Drops move the drop counters: garbage datagrams at A's port from B's side.
    let before = value(&second, "meshd_link_dropped_total{reason=\"malformed\"}");
    b.ns.enter(|| {
        let s = UdpSocket::bind("0.0.0.0:0").expect("udp");
        for i in 0..50u8 {
            let _ = s.send_to(&[0xee, i, 1, 2, 3], (A_IP, 7820));
        }
    });
    let mut third = String::new();
    let moved = wait_until(Duration::from_secs(5), || {
        third = scrape(&a.ns);
        value(&third, "meshd_link_dropped_total{reason=\"malformed\"}") >= before + 50.0
    });
    assert!(moved, "malformed drops did not count 50:\n{third}");
    promtool(&third);

    // A link that goes away keeps what it carried counted (the totals never go down).
    let sent = value(&third, "meshd_link_sent_bytes_total");
    b.kill9();
    let mut fourth = String::new();
    assert!(
        wait_until(Duration::from_secs(20), || {
            fourth = scrape(&a.ns);
            value(&fourth, "meshd_links{state=\"up\",transport=\"udp\"}") == 0.0
        }),
        "the link never went down:\n{fourth}"
    );
    assert!(
        value(&fourth, "meshd_link_sent_bytes_total") >= sent,
        "{fourth}"
    );
}

#[test]
fn the_endpoint_answers_get_of_its_path_only_and_bounds_its_connections() {
    require_root();
    let mut a = Node::new("mx");
    a.configure(
        "udp://0.0.0.0:7820",
        &[],
        &format!("metrics_listen = \"{PORT}\"\n"),
    );
    a.start();
    assert!(wait_until(Duration::from_secs(5), || {
        a.ns.enter(|| TcpStream::connect(("127.0.0.1", PORT)).is_ok())
    }));
    let first_line = |s: &str| s.lines().next().unwrap_or("").to_string();
    assert_eq!(
        first_line(&http(
            &a.ns,
            b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
        )),
        "HTTP/1.1 405 Method Not Allowed"
    );
    assert_eq!(
        first_line(&http(&a.ns, b"GET / HTTP/1.1\r\n\r\n")),
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        first_line(&http(&a.ns, b"GET /../admin.sock HTTP/1.1\r\n\r\n")),
        "HTTP/1.1 404 Not Found"
    );
    assert_eq!(
        first_line(&http(&a.ns, b"\x16\x03\x01\x00\x05hello\r\n\r\n")),
        "HTTP/1.1 400 Bad Request"
    );
    let head = http(&a.ns, b"HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.ends_with("\r\n\r\n"), "HEAD carries no body: {head}");
    // An oversized head is refused, not buffered.
    let long = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let big = http(&a.ns, long.as_bytes());
    assert!(big.starts_with("HTTP/1.1 400"), "{}", first_line(&big));

    // Connections that hold still (more than the endpoint serves at once) are closed after
    // the deadline, and a scrape gets through after them.
    let held = a.ns.enter(|| {
        (0..20)
            .filter_map(|_| TcpStream::connect(("127.0.0.1", PORT)).ok())
            .collect::<Vec<_>>()
    });
    assert_eq!(held.len(), 20, "the listen queue takes them");
    let t = Instant::now();
    let page = scrape(&a.ns);
    let waited = t.elapsed();
    assert!(page.contains("meshd_uptime_seconds"));
    assert!(
        waited < Duration::from_secs(20),
        "a scrape waited {waited:?} behind held connections"
    );
    // Each held connection was closed by the endpoint (read gives EOF or an answer).
    for mut s in held {
        s.set_read_timeout(Some(Duration::from_secs(15))).ok();
        let mut buf = Vec::new();
        let closed = s.read_to_end(&mut buf).is_ok();
        assert!(closed, "a held connection was never closed");
    }
    assert!(a.running(), "meshd died:\n{}", a.log());
}
