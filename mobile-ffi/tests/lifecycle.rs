//! 100 start/stop cycles in one process leave no threads, descriptors or memory behind.
//!
//! Node A is made, started, linked to node B (which runs throughout), checked, stopped and
//! freed, 100 times. Cycles alternate between packet mode and a TUN descriptor (when running as
//! root: the test opens one TUN device, in a namespace of its own, and hands the same
//! descriptor to every descriptor cycle, as an app hands over the one VpnService gave it).
//! Threads, open descriptors and resident memory are read from /proc before and after (after 10
//! warm-up cycles, so that allocator arenas and lazily made statics exist already).
#![allow(clippy::unwrap_used)]

mod common;
use common::*;
use planetary_lan::*;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4
}

/// A TUN device in a namespace of its own (deleted on drop), opened as an app's VPN service
/// would get it: IFF_TUN | IFF_NO_PI.
struct Tun {
    fd: std::os::fd::OwnedFd,
    ns: String,
}

impl Tun {
    fn open() -> Option<Tun> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let ns = format!("plffi{}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .ok()?
            .success();
        if !ok {
            return None;
        }
        let path = format!("/run/netns/{ns}");
        let fd = std::thread::spawn(move || {
            let nsf = std::fs::File::open(&path).unwrap();
            use std::os::fd::AsRawFd;
            // SAFETY: setns on this thread only, with an open namespace file.
            assert_eq!(
                unsafe { libc::setns(nsf.as_raw_fd(), libc::CLONE_NEWNET) },
                0
            );
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/net/tun")
                .unwrap();
            // SAFETY: a zeroed ifreq is valid; TUNSETIFF reads it during the call.
            let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
            req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
            for (d, s) in req.ifr_name.iter_mut().zip(b"pltun0") {
                *d = *s as libc::c_char;
            }
            // SAFETY: f is an open /dev/net/tun; req outlives the call.
            let r = unsafe { libc::ioctl(f.as_raw_fd(), libc::TUNSETIFF, &req) };
            assert_eq!(r, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
            std::os::fd::OwnedFd::from(f)
        })
        .join()
        .ok()?;
        Some(Tun { fd, ns })
    }
}

impl Drop for Tun {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// One cycle. Each cycle's A sends from another loopback address: B admits handshakes from
/// one unknown address at a few per second (its flood guard), which would make every fourth
/// cycle wait a second.
fn cycle(
    i: usize,
    dir: &std::path::Path,
    b: &Reports,
    b_port: u16,
    b_addr: std::net::Ipv6Addr,
    tun: Option<i32>,
) -> [Duration; 3] {
    // What B reported is not kept: the test measures the library's memory, not its own.
    b.logs.lock().unwrap().clear();
    b.events.lock().unwrap().clear();
    let t = Instant::now();
    let r = Arc::new(Reports::default());
    let json = serde_json::json!({
        "state_dir": dir,
        "listen": [format!("udp://127.0.0.{}:0", 10 + i % 200)],
        "peers": [format!("udp://127.0.0.1:{b_port}")],
        "tun": { "mtu": 1280 },
    })
    .to_string();
    let a = new_node(&json, &r).unwrap();
    match tun {
        Some(fd) => check(pl_node_start(a, fd)).unwrap(),
        None => start_packets(a, &r).unwrap(),
    }
    assert!(
        r.wait_event(Duration::from_secs(5), |ev| {
            ev.iter()
                .any(|e| e["event"] == "peer_up" && e["address"] == b_addr.to_string())
        }),
        "A never linked with B: {:?}",
        r.events.lock().unwrap()
    );
    let linked = t.elapsed();
    assert_eq!(status(a).unwrap()["peers_up"], 1);
    let t = Instant::now();
    check(pl_node_stop(a)).unwrap();
    let stopped = t.elapsed();
    check(pl_node_free(a)).unwrap();
    // Delivered before pl_node_stop returned, and a stop asked for is not an error.
    let ev = r.events.lock().unwrap().clone();
    let last = ev.last().expect("events");
    assert_eq!(last["event"], "stopped", "{ev:?}");
    assert!(
        last["error"].is_null(),
        "stopping reported an error: {last}"
    );
    [linked, stopped, Duration::ZERO]
}

#[test]
fn hundred_start_stop_cycles_leak_nothing() {
    let rb = Arc::new(Reports::default());
    let json = serde_json::json!({ "state_dir": state_dir("b"), "listen": ["udp://127.0.0.1:0"] });
    let b = new_node(&json.to_string(), &rb).unwrap();
    start_packets(b, &rb).unwrap();
    let (b_port, b_addr) = (port(b), address(b));
    let tun = Tun::open();
    let tun_fd = tun.as_ref().map(|t| {
        use std::os::fd::AsRawFd;
        t.fd.as_raw_fd()
    });
    if tun_fd.is_none() {
        println!("not root: every cycle runs in packet mode");
    }
    let dir = state_dir("a");
    let mode = |i: usize| if i % 2 == 1 { tun_fd } else { None };
    for i in 0..10 {
        cycle(i, &dir, &rb, b_port, b_addr, mode(i));
    }
    let (t0, f0, m0) = (threads(), fds(), rss_kib());
    let started = Instant::now();
    // PL_CYCLES=1000 looks for slower leaks.
    let cycles: usize = std::env::var("PL_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let mut slowest = [Duration::ZERO; 3];
    for i in 0..cycles {
        let d = cycle(i, &dir, &rb, b_port, b_addr, mode(i));
        for k in 0..3 {
            slowest[k] = slowest[k].max(d[k]);
        }
    }
    println!(
        "slowest start-to-linked {:?}, slowest stop {:?}",
        slowest[0], slowest[1]
    );
    let took = started.elapsed();
    // The node threads are joined by stop; give the kernel a moment to reap the tasks.
    let settled = Instant::now() + Duration::from_secs(2);
    while threads() != t0 && Instant::now() < settled {
        std::thread::sleep(Duration::from_millis(10));
    }
    let (t1, f1, m1) = (threads(), fds(), rss_kib());
    println!(
        "{cycles} cycles ({} with a TUN descriptor) in {:.2} s: threads {t0} -> {t1}, \
         descriptors {f0} -> {f1}, RSS {m0} KiB -> {m1} KiB ({:+} KiB)",
        if tun_fd.is_some() { cycles / 2 } else { 0 },
        took.as_secs_f64(),
        m1 as i64 - m0 as i64
    );
    assert_eq!(t1, t0, "threads leaked");
    assert_eq!(f1, f0, "descriptors leaked");
    // Allocator noise is tens to hundreds of KiB; a leak of one node per cycle (its buffers
    // are over 1 MiB) would be 100 MiB.
    assert!(m1 < m0 + 4096, "memory grew by {} KiB", m1 - m0);
    check(pl_node_free(b)).unwrap();
    drop(tun);
}
