//! `meshctl ui` in a real browser: headless Chromium loads the page of the middle node of a
//! three-node line (A - B - C) and the test reads the DOM it built: both peers (by key and
//! address), links up, the tree (root, depth, coordinates) and the sessions. A screenshot is
//! taken too (`UI_SCREENSHOT=path` keeps it; docs/ui.png was made so).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tests::{Netns, Node, require_root, veth};

/// `meshctl ui` on a node, stopped on drop.
struct Ui(Child);

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromium() -> &'static str {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("Chromium (apt-get install chromium)")
}

/// Chromium, headless, in `ns`, loading `url` for a few seconds of page time; `what` is
/// `--dump-dom` or `--screenshot=PATH`. Returns stdout.
fn browse(ns: &Netns, url: &str, what: &str, profile: &std::path::Path) -> String {
    let out = ns
        .cmd(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=1280,1000",
            "--virtual-time-budget=6000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(what)
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .expect("chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn chromium_draws_the_peers_the_tree_and_the_sessions_of_a_three_node_mesh() {
    require_root();
    let mut a = Node::new("ua");
    let mut b = Node::new("ub");
    let mut c = Node::new("uc");
    veth(&a.ns, "10.95.0.1", &b.ns, "10.95.0.2");
    veth(&b.ns, "10.95.1.1", &c.ns, "10.95.1.2");
    a.configure("udp://0.0.0.0:7820", &["udp://10.95.0.2:7820".into()], "");
    b.configure("udp://0.0.0.0:7820", &["udp://10.95.1.2:7820".into()], "");
    c.configure("udp://0.0.0.0:7820", &[], "");
    a.start();
    b.start();
    c.start();
    let (a_addr, ka) = a.identity();
    let (b_addr, _) = b.identity();
    let (c_addr, kc) = c.identity();
    assert!(b.wait_link_up(&ka, Duration::from_secs(10)), "{}", b.log());
    assert!(b.wait_link_up(&kc, Duration::from_secs(10)), "{}", b.log());
    // Sessions from B to both, and traffic across B (A to C).
    // (A reaches C once the tree has formed across B: tried for a while.)
    assert_eq!(b.ping(&a_addr, 2, "0.2"), 2);
    assert_eq!(b.ping(&c_addr, 2, "0.2"), 2);
    let across = tests::wait_until(Duration::from_secs(15), || a.ping(&c_addr, 1, "0.2") == 1);
    assert!(across, "A never reached C through B:\n{}", a.log());

    let (_, meshctl) = tests::binaries();
    let mut child =
        b.ns.cmd(meshctl.to_str().expect("utf-8"))
            .arg("--socket")
            .arg(b.socket())
            .args(["ui", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("meshctl ui");
    let stdout = child.stdout.take().expect("stdout");
    let ui = Ui(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("meshctl ui prints its address");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_string();

    let profile = std::env::temp_dir().join(tests::unique("chromium"));
    let dom = browse(&b.ns, &url, "--dump-dom", &profile);
    let tree = b.ctl_json(&["tree"]);
    for (what, needle) in [
        ("A's key on the map", format!("data-key=\"{ka}\"")),
        ("C's key on the map", format!("data-key=\"{kc}\"")),
        ("A's address in the peers table", a_addr.to_string()),
        ("C's address in the peers table", c_addr.to_string()),
        ("this node's address", b_addr.to_string()),
        ("the depth", "<dt>depth</dt>".to_string()),
        (
            "the tree's coordinates",
            format!(
                "[{}]",
                tree["coords"]
                    .as_array()
                    .map(|c| c
                        .iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(", "))
                    .unwrap_or_default()
            ),
        ),
        (
            "the root's key",
            tree["root"].as_str().expect("root")[..16].to_string(),
        ),
    ] {
        assert!(
            dom.contains(&needle),
            "{what} ({needle}) not on the page:\n{dom}"
        );
    }
    assert_eq!(
        dom.matches("data-state=\"up\"").count(),
        2,
        "two links up:\n{dom}"
    );
    assert!(
        dom.contains("<td>direct</td>"),
        "a direct session in the table:\n{dom}"
    );
    assert!(
        !dom.contains("class=\"error\">meshd"),
        "the page shows an error:\n{dom}"
    );

    // A screenshot (kept where UI_SCREENSHOT says).
    let shot = std::env::var("UI_SCREENSHOT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| profile.join("ui.png"));
    browse(
        &b.ns,
        &url,
        &format!("--screenshot={}", shot.display()),
        &profile,
    );
    let png = std::fs::read(&shot).unwrap_or_default();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "no screenshot at {}",
        shot.display()
    );

    // Not the secret path, another host, another method: refused.
    let port = url
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    let get = |path: &str, host: &str| {
        let out =
            b.ns.cmd("curl")
                .args([
                    "-s",
                    "--max-time",
                    "40",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                ])
                .args(["-H", &format!("Host: {host}")])
                .arg(format!("http://127.0.0.1:{port}{path}"))
                .output()
                .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(get("/", &format!("127.0.0.1:{port}")), "404");
    assert_eq!(get("/state.json", &format!("127.0.0.1:{port}")), "404");
    let secret_path = url.trim_start_matches(&format!("http://127.0.0.1:{port}"));
    assert_eq!(get(secret_path, "attacker.example"), "403");
    assert_eq!(
        get(
            &format!("{secret_path}state.json"),
            &format!("127.0.0.1:{port}")
        ),
        "200"
    );
    // Connections held open without a request (more than it serves at once) are closed after
    // the 5 s deadline, 8 at a time, and the page's data comes after them.
    let p: u16 = port.parse().expect("port");
    let held = b.ns.enter(move || {
        (0..30)
            .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", p)).ok())
            .collect::<Vec<_>>()
    });
    assert_eq!(held.len(), 30);
    let t = std::time::Instant::now();
    assert_eq!(
        get(
            &format!("{secret_path}state.json"),
            &format!("127.0.0.1:{port}")
        ),
        "200"
    );
    // (30 held, 8 at a time, 5 s each: served in the fourth round at the latest.)
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "waited {:?}",
        t.elapsed()
    );
    drop(held);
    drop(ui);
    let _ = std::fs::remove_dir_all(&profile);
}
