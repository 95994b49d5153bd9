//! Socket protection (`pl_node_set_protect`): every socket the node opens towards the network
//! reaches the app's callback before it is bound, connected or used; with protection required,
//! a refusal gives a clear error and no link. No root needed.
//!
//! The first test runs the protected node in a process of its own (this test binary again,
//! running the ignored test `protected_node_child`), so that every internet socket of that
//! process is the node's: each must be one the callback saw.
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use planetary_lan::*;
use std::ffi::{CString, c_void};
use std::io::{BufRead, BufReader};
use std::os::fd::RawFd;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the callback saw of one socket.
#[derive(Debug, Clone)]
struct Seen {
    kind: i32,
    inode: u64,
    /// Bound to a port when the callback ran.
    bound: bool,
    /// Connected when the callback ran.
    connected: bool,
}

#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<Seen>>,
    /// Kinds to refuse.
    refuse: Vec<i32>,
}

fn inode(fd: RawFd) -> u64 {
    // SAFETY: an all-zero `stat` is a valid value to be overwritten.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open for the call (the node's socket); `st` is writable.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return 0;
    }
    st.st_ino
}

/// The port `fd` is bound to (0: not bound), and whether it has a peer.
fn bound_and_connected(fd: RawFd) -> (bool, bool, i32) {
    // SAFETY: zeroed storage is valid; the lengths given are its size.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: as above; `fd` is open.
    let ok = unsafe { libc::getsockname(fd, (&raw mut ss).cast(), &mut len) } == 0;
    let family = i32::from(ss.ss_family);
    let port = if !ok {
        0
    } else if family == libc::AF_INET {
        // SAFETY: the family says the storage holds a sockaddr_in.
        u16::from_be(unsafe { (*(&raw const ss).cast::<libc::sockaddr_in>()).sin_port })
    } else if family == libc::AF_INET6 {
        // SAFETY: the family says the storage holds a sockaddr_in6.
        u16::from_be(unsafe { (*(&raw const ss).cast::<libc::sockaddr_in6>()).sin6_port })
    } else {
        0
    };
    // SAFETY: as above.
    let mut peer: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut plen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: as above.
    let connected = unsafe { libc::getpeername(fd, (&raw mut peer).cast(), &mut plen) } == 0;
    (port != 0, connected, family)
}

unsafe extern "C" fn record(ctx: *mut c_void, fd: i32, kind: i32) -> bool {
    // SAFETY: ctx is the Recorder the test keeps alive while the node may call.
    let r = unsafe { &*(ctx as *const Recorder) };
    let (bound, connected, _) = bound_and_connected(fd);
    r.seen.lock().unwrap().push(Seen {
        kind,
        inode: inode(fd),
        bound,
        connected,
    });
    !r.refuse.contains(&kind)
}

fn set_protect(node: PlNode, r: &Arc<Recorder>, required: bool) -> Result<(), Failure> {
    // SAFETY: callback of the right type; ctx kept alive by the caller until the node is freed.
    check(unsafe {
        pl_node_set_protect(node, Some(record), Arc::as_ptr(r) as *mut c_void, required)
    })
}

fn free(node: PlNode) {
    check(pl_node_free(node)).unwrap();
}

/// The socket kinds of the C API.
const UDP: i32 = 1;
const TCP_LISTENER: i32 = 2;
const TCP_DIAL: i32 = 3;
const TCP_ACCEPTED: i32 = 4;
const QUIC: i32 = 5;
const DISCOVERY: i32 = 6;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn listen_port(st: &serde_json::Value, scheme: &str) -> u16 {
    st["self"]["listen"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .find(|l| l.starts_with(scheme))
        .and_then(|l| l.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no {scheme} listener in {st}"))
}

#[test]
fn every_socket_is_protected_before_use() {
    // B: an unprotected peer with all three transports.
    let rb = Arc::new(Reports::default());
    let cfg = serde_json::json!({
        "state_dir": state_dir("protect-b"),
        "listen": ["udp://127.0.0.1:0", "tcp://127.0.0.1:0", "quic://127.0.0.1:0"],
        "discovery": { "enabled": false },
        "tun": { "mtu": 1280 },
    });
    let b = new_node(&cfg.to_string(), &rb).unwrap();
    start_packets(b, &rb).unwrap();
    let st = status(b).unwrap();
    let a_tcp = free_port();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            "protected_node_child",
            "--nocapture",
        ])
        .env("PL_PROTECT_CHILD", "1")
        .env("PL_B_UDP", listen_port(&st, "udp").to_string())
        .env("PL_B_TCP", listen_port(&st, "tcp").to_string())
        .env("PL_B_QUIC", listen_port(&st, "quic").to_string())
        .env("PL_A_TCP", a_tcp.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    let mut asked = false;
    for line in BufReader::new(out).lines() {
        let line = line.unwrap();
        if line.starts_with("READY") && !asked {
            // B dials A over TCP, so that A accepts a connection.
            let uri = CString::new(format!("tcp://127.0.0.1:{a_tcp}")).unwrap();
            // SAFETY: a valid string.
            check(unsafe { pl_node_add_peer(b, uri.as_ptr()) }).unwrap();
            asked = true;
        }
        lines.push(line);
    }
    let status = child.wait().unwrap();
    free(b);
    let out = lines.join("\n");
    assert!(
        status.success(),
        "the protected node's process failed:\n{out}"
    );
    eprintln!("{out}");
    assert!(out.contains("PROTECTED-ALL"), "{out}");
}

#[test]
#[ignore = "run by every_socket_is_protected_before_use, in a process of its own"]
fn protected_node_child() {
    if std::env::var_os("PL_PROTECT_CHILD").is_none() {
        return;
    }
    let env = |k: &str| std::env::var(k).unwrap();
    let ra = Arc::new(Reports::default());
    let cfg = serde_json::json!({
        "state_dir": state_dir("protect-a"),
        // An IPv6 wildcard UDP address, so that LAN discovery opens its socket too.
        "listen": ["udp://[::]:0", format!("tcp://127.0.0.1:{}", env("PL_A_TCP")), "quic://127.0.0.1:0"],
        "peers": [
            format!("udp://127.0.0.1:{}", env("PL_B_UDP")),
            format!("tcp://127.0.0.1:{}", env("PL_B_TCP")),
            format!("quic://127.0.0.1:{}", env("PL_B_QUIC")),
        ],
        "tun": { "mtu": 1280 },
    });
    let a = new_node(&cfg.to_string(), &ra).unwrap();
    let rec = Arc::new(Recorder::default());
    set_protect(a, &rec, true).unwrap();
    start_packets(a, &ra).unwrap();
    println!("READY");
    let want = [UDP, TCP_LISTENER, TCP_DIAL, TCP_ACCEPTED, QUIC, DISCOVERY];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let kinds: Vec<i32> = rec.seen.lock().unwrap().iter().map(|s| s.kind).collect();
        if want.iter().all(|k| kinds.contains(k)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every kind of socket was opened: saw {kinds:?}, want {want:?}; peers: {}",
            peers(a).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Links up over the protected sockets (the TCP and QUIC paths of the same peer).
    assert!(
        ra.wait_event(Duration::from_secs(10), |ev| ev
            .iter()
            .any(|e| e["event"] == "peer_up")),
        "no link"
    );
    std::thread::sleep(Duration::from_millis(500));
    let seen = rec.seen.lock().unwrap().clone();
    for s in &seen {
        if s.kind == TCP_ACCEPTED {
            assert!(s.connected, "an accepted socket is connected: {s:?}");
        } else {
            assert!(
                !s.bound && !s.connected,
                "the callback must see a socket before it is bound or connected: {s:?}"
            );
        }
    }
    // Every internet socket of this process now is one the callback saw.
    let inodes: Vec<u64> = seen.iter().map(|s| s.inode).collect();
    let mut open = 0;
    for entry in std::fs::read_dir("/proc/self/fd").unwrap() {
        let entry = entry.unwrap();
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if !target.to_string_lossy().starts_with("socket:") {
            continue;
        }
        let fd: RawFd = entry.file_name().to_string_lossy().parse().unwrap();
        let (_, _, family) = bound_and_connected(fd);
        if family != libc::AF_INET && family != libc::AF_INET6 {
            continue;
        }
        open += 1;
        assert!(
            inodes.contains(&inode(fd)),
            "fd {fd} ({target:?}) is an internet socket the protect callback never saw; it saw \
             {seen:?}"
        );
    }
    assert!(open >= 6, "only {open} internet sockets open");
    println!(
        "PROTECTED-ALL {open} sockets open, {} protected",
        seen.len()
    );
    free(a);
}

#[test]
fn required_protection_refused_gives_a_clear_error_and_no_node() {
    let r = Arc::new(Reports::default());
    let cfg = serde_json::json!({
        "state_dir": state_dir("protect-refused"),
        "listen": ["udp://127.0.0.1:0"],
        "discovery": { "enabled": false },
        "tun": { "mtu": 1280 },
    });
    let n = new_node(&cfg.to_string(), &r).unwrap();
    let rec = Arc::new(Recorder {
        refuse: vec![UDP],
        ..Recorder::default()
    });
    set_protect(n, &rec, true).unwrap();
    let (code, msg) = start_packets(n, &r).unwrap_err();
    assert_eq!(code, PlStatus::PlErrStartFailed, "{msg}");
    assert!(
        msg.contains("refused the UDP socket for udp://127.0.0.1:0")
            && msg.contains("VpnService.protect"),
        "{msg}"
    );
    // Not required: the refusal is logged and the node runs.
    set_protect(n, &rec, false).unwrap();
    start_packets(n, &r).unwrap();
    assert!(
        r.logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("using it unprotected")),
        "no warning logged"
    );
    // Not while it runs.
    let (code, msg) = set_protect(n, &rec, true).unwrap_err();
    assert_eq!(code, PlStatus::PlErrAlreadyRunning, "{msg}");
    // A NULL callback cannot be required.
    // SAFETY: NULL callback, as the API allows.
    let s = unsafe { pl_node_set_protect(n, None, std::ptr::null_mut(), true) };
    assert_eq!(s, PlStatus::PlErrNullPointer);
    free(n);
}

#[test]
fn a_refused_dial_opens_no_link_and_says_why() {
    let rb = Arc::new(Reports::default());
    let cfg_b = serde_json::json!({
        "state_dir": state_dir("protect-dial-b"),
        "listen": ["udp://127.0.0.1:0", "tcp://127.0.0.1:0"],
        "discovery": { "enabled": false },
        "tun": { "mtu": 1280 },
    });
    let b = new_node(&cfg_b.to_string(), &rb).unwrap();
    start_packets(b, &rb).unwrap();
    let b_tcp = listen_port(&status(b).unwrap(), "tcp");
    let ra = Arc::new(Reports::default());
    let cfg_a = serde_json::json!({
        "state_dir": state_dir("protect-dial-a"),
        "listen": ["udp://127.0.0.1:0"],
        "peers": [format!("tcp://127.0.0.1:{b_tcp}")],
        "discovery": { "enabled": false },
        "tun": { "mtu": 1280 },
    });
    let a = new_node(&cfg_a.to_string(), &ra).unwrap();
    let rec = Arc::new(Recorder {
        refuse: vec![TCP_DIAL],
        ..Recorder::default()
    });
    set_protect(a, &rec, true).unwrap();
    start_packets(a, &ra).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let why = loop {
        let p = peers(a).unwrap();
        let err = p[0]["last_error"].as_str().map(str::to_string);
        if let Some(e) = err.filter(|e| e.contains("protect")) {
            break e;
        }
        assert!(Instant::now() < deadline, "no error on the peer: {p}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(why.contains("refused the TCP dial socket"), "{why}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !ra.events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "peer_up"),
        "a link came up over a refused socket"
    );
    assert!(rec.seen.lock().unwrap().iter().any(|s| s.kind == TCP_DIAL));
    free(a);
    free(b);
}

#[test]
fn network_changed_binds_the_sockets_again_protected_on_the_same_port() {
    let r = Arc::new(Reports::default());
    let cfg = serde_json::json!({
        "state_dir": state_dir("protect-roam"),
        "listen": ["udp://127.0.0.1:0"],
        "discovery": { "enabled": false },
        "tun": { "mtu": 1280 },
    });
    let n = new_node(&cfg.to_string(), &r).unwrap();
    // Not running: nothing to rebind.
    assert_eq!(pl_node_network_changed(n), PlStatus::PlErrNotRunning);
    let rec = Arc::new(Recorder::default());
    set_protect(n, &rec, true).unwrap();
    start_packets(n, &r).unwrap();
    let before = port(n);
    let udp = |rec: &Recorder| {
        rec.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.kind == UDP)
            .count()
    };
    let first = udp(&rec);
    check(pl_node_network_changed(n)).unwrap();
    assert!(udp(&rec) > first, "the new sockets were not protected");
    assert_eq!(port(n), before, "the port changed");
    // Still answers.
    status(n).unwrap();
    free(n);
}
