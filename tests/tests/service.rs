//! meshd as the systemd service `packaging/meshd.service` runs it: the unit passes
//! `systemd-analyze verify`; daemons started with exactly the unit's capabilities (setpriv drops
//! every other, and sets no-new-privileges, as the unit does) tell systemd they are ready
//! (`READY=1` on `NOTIFY_SOCKET`), link, ping, attach containers to a znet that carries their
//! traffic, reload the policy on SIGHUP (and live on), and say `STOPPING=1` on SIGTERM.
//!
//! What this cannot show without systemd as PID 1: the file-system sandbox (`ProtectSystem`
//! and the rest), which `systemd-analyze verify` only parses.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;
use tests::{Netns, Node, ok, require_root, veth, wait_until, workspace};

fn unit() -> String {
    std::fs::read_to_string(workspace().join("packaging/meshd.service")).expect("the unit file")
}

/// The unit's `CapabilityBoundingSet`, as setpriv writes them (`net_admin`, …).
fn unit_capabilities() -> Vec<String> {
    let unit = unit();
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("CapabilityBoundingSet= in the unit");
    line.split_whitespace()
        .map(|c| c.trim_start_matches("CAP_").to_lowercase())
        .collect()
}

#[test]
fn the_unit_passes_systemd_analyze_verify() {
    require_root();
    let (meshd, _) = tests::binaries();
    let dir = std::env::temp_dir().join(tests::unique("unit"));
    std::fs::create_dir_all(&dir).expect("dir");
    // The unit names the installed binary; the one built here stands in for it. (The man pages
    // it names are checked where they are installed: the package test.)
    let text = unit().replace("/usr/bin/meshd", meshd.to_str().expect("utf-8"));
    let path = dir.join("meshd.service");
    std::fs::write(&path, text).expect("write unit");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "systemd-analyze verify: {said}"
    );
    assert!(unit().contains("Type=notify"));
    assert!(unit().contains("ExecReload=/bin/kill -HUP $MAINPID"));
}

/// A socket standing in for systemd's `NOTIFY_SOCKET`.
struct Notify {
    sock: UnixDatagram,
    path: PathBuf,
}

impl Notify {
    fn new() -> Notify {
        let path = std::env::temp_dir().join(format!("{}.sock", tests::unique("notify")));
        let sock = UnixDatagram::bind(&path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_secs(15))).ok();
        Notify { sock, path }
    }

    /// The next message, or "" after the timeout.
    fn next(&self) -> String {
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).trim().to_string(),
            Err(_) => String::new(),
        }
    }
}

impl Drop for Notify {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn signal(node: &Node, sig: &str) {
    let pid = node.pid().expect("running").to_string();
    ok(
        Command::new("kill").args(["-s", sig, &pid]).output(),
        "kill",
    );
}

#[test]
fn with_only_the_units_capabilities_meshd_links_pings_and_attaches_containers() {
    require_root();
    let caps = unit_capabilities();
    assert!(caps.contains(&"net_admin".to_string()), "{caps:?}");
    let bounding = format!(
        "-all,{}",
        caps.iter()
            .map(|c| format!("+{c}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    // Root, with the bounding set of the unit: nothing else can be had, even by exec.
    let wrapper = [
        "setpriv",
        "--bounding-set",
        &bounding,
        "--inh-caps=-all",
        "--no-new-privs",
        "--",
    ];
    let mut cleanup = tests::ZnetRouters::default();
    let mut a = Node::new("sa");
    let mut b = Node::new("sb");
    veth(&a.ns, "10.96.0.1", &b.ns, "10.96.0.2");
    let policy = a.dir.join("policy.toml");
    std::fs::write(&policy, "default = \"allow\"\n").expect("policy");
    a.configure(
        "udp://0.0.0.0:7820",
        &["udp://10.96.0.2:7820".into()],
        &format!("policy_file = {:?}\n", policy.to_str().expect("utf-8")),
    );
    b.configure("udp://0.0.0.0:7820", &[], "");
    let notify = Notify::new();
    let env = [("NOTIFY_SOCKET", notify.path.to_str().expect("utf-8"))];
    a.start_wrapped(&wrapper, &env);
    assert_eq!(notify.next(), "READY=1", "no READY=1 from A:\n{}", a.log());
    b.start_wrapped(&wrapper, &[]);

    // What the daemon holds is exactly the unit's set.
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", a.pid().expect("pid"))).expect("status");
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .expect("CapBnd")
        .trim();
    let decoded = Command::new("capsh")
        .arg(format!("--decode={bnd}"))
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut held: Vec<String> = decoded
        .trim()
        .split('=')
        .nth(1)
        .unwrap_or("")
        .split(',')
        .filter(|c| !c.is_empty())
        .map(|c| c.trim_start_matches("cap_").to_string())
        .collect();
    // (setpriv's wrapper is a child of `ip netns exec`: the set is checked on meshd itself.)
    let mut want = caps.clone();
    held.sort();
    want.sort();
    assert_eq!(held, want, "meshd's bounding set: {decoded}");

    let (a_addr, ka) = a.identity();
    let (b_addr, kb) = b.identity();
    assert!(a.wait_link_up(&kb, Duration::from_secs(10)), "{}", a.log());
    assert!(b.wait_link_up(&ka, Duration::from_secs(10)), "{}", b.log());
    assert_eq!(a.ping(&b_addr, 3, "0.2"), 3, "ping A→B:\n{}", a.log());
    assert_eq!(b.ping(&a_addr, 3, "0.2"), 3, "ping B→A");

    // A znet on both, a container on each: the containers reach each other.
    let m = ok(
        a.ctl(&["znet", "create", "sz", "--ipv4", "10.60.0.0/16"]),
        "znet create",
    );
    let manifest = format!("{m}\n[[members]]\nkey = \"{kb}\"\n");
    for n in [&a, &b] {
        let f = n.dir.join("sz.toml");
        std::fs::write(&f, &manifest).expect("write");
        ok(
            n.ctl(&["znet", "join", f.to_str().expect("utf-8")]),
            "znet join",
        );
        cleanup.add(n, "sz");
    }
    let ca = Netns::new("sca");
    let cb = Netns::new("scb");
    let attach = |n: &Node, c: &Netns| -> String {
        let v: serde_json::Value = serde_json::from_str(&ok(
            n.ctl(&["znet", "attach", "sz", "--netns", &c.name, "--json"]),
            "znet attach",
        ))
        .expect("JSON");
        v["ipv4"].as_str().expect("ipv4").to_string()
    };
    let _ip_a = attach(&a, &ca);
    let ip_b = attach(&b, &cb);
    let reached = wait_until(Duration::from_secs(15), || {
        ca.cmd("ping")
            .args(["-n", "-q", "-c", "1", "-W", "1", &ip_b])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(
        reached,
        "container A never reached container B:\n{}\n{}",
        a.log(),
        b.log()
    );

    // `systemctl reload`: SIGHUP reads the policy again; the daemon lives on.
    signal(&a, "HUP");
    assert!(
        wait_until(Duration::from_secs(5), || a
            .log()
            .contains("SIGHUP: policy file read again")),
        "no reload on SIGHUP:\n{}",
        a.log()
    );
    assert!(a.running(), "SIGHUP ended meshd:\n{}", a.log());
    assert_eq!(a.ping(&b_addr, 2, "0.2"), 2);

    // `systemctl stop`: STOPPING=1, then the process ends.
    signal(&a, "TERM");
    assert_eq!(notify.next(), "STOPPING=1");
    assert!(
        wait_until(Duration::from_secs(10), || !a.running()),
        "meshd did not stop"
    );
}
