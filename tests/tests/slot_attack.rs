//! The slot attack of issue 18: an attacker on 40 addresses (each in a /24 of its own, so
//! that only the whole table bounds it) keeps 300 TCP connections to A's `tcp://` listener,
//! each holding a partial frame (the length 0xFFFF, then nothing), and reopens at once every
//! one A closes. While they are held, a new node B dialing `tcp://` links within 2 s and its
//! link carries pings; A's RSS stays within a bound; and once the attacker stops reopening,
//! A closes every connection it holds by the frame deadline. QUIC: connections that set up
//! and then send nothing, or stop inside a frame, are closed by their deadlines too.

use socket2::{Domain, Socket, Type};
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tests::{Netns, Node, require_root, run, veth, wait_until};

const A_IP: &str = "10.97.0.1";
const B_IP: &str = "10.97.0.2";
const A_X_IP: &str = "10.98.0.1";
const X_IP: &str = "10.98.0.2";
const TCP_PORT: u16 = 7830;
const QUIC_PORT: u16 = 7831;
/// Attacker addresses: 10.99.N.2 for N in 1..=ADDRESSES.
const ADDRESSES: u8 = 40;
/// Connections the attacker keeps open (more than meshd's 256 inbound slots).
const HELD: usize = 300;
/// meshd's inbound slots (`conns::MAX_INBOUND`).
const MAX_INBOUND: usize = 256;
/// meshd's deadlines (`conns::FRAME_TIMEOUT`, `CONNECT_TIMEOUT`, `AUTH_TIMEOUT`).
const FRAME_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// What a meshd QUIC client writes first on its stream (`daemon/streams`).
const QUIC_PREAMBLE: &[u8] = b"PLQ1";
/// How late after its deadline a connection may be closed (a loaded machine).
const SLACK: Duration = Duration::from_secs(2);
/// How much A's RSS may grow while the attack is held (the issue measured 28 MB before).
const RSS_GROWTH_BOUND_KIB: u64 = 8 * 1024;

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

/// Established TCP connections in `ns` whose local port is `port`.
fn established(ns: &Netns, port: u16) -> usize {
    let filter = format!("( sport = :{port} )");
    run(ns.cmd("ss").args(["-Htn", "state", "established", &filter]))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

fn attacker_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 99, (i % usize::from(ADDRESSES)) as u8 + 1, 2)
}

/// A connection from `src` to A that sent the length 0xFFFF and nothing more.
fn hold(src: Ipv4Addr, to: SocketAddr) -> Option<Socket> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    s.bind(&SocketAddr::new(src.into(), 0).into()).ok()?;
    s.connect_timeout(&to.into(), Duration::from_secs(1)).ok()?;
    s.send(&[0xff, 0xff]).ok()?;
    s.set_nonblocking(true).ok()?;
    Some(s)
}

/// Whether A closed `s`.
fn closed(s: &Socket) -> bool {
    let mut b = [MaybeUninit::<u8>::uninit(); 64];
    match s.recv(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    }
}

/// The attacker: keeps [`HELD`] connections, reopening those A closes while `reopen` is set,
/// until `stop`. Returns how many of its connections are still open at the end.
struct Attack {
    reopen: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    reopened: Arc<AtomicU64>,
    open: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Attack {
    fn start(x: &Netns) -> Attack {
        let reopen = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let reopened = Arc::new(AtomicU64::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (r, s, n, o) = (reopen.clone(), stop.clone(), reopened.clone(), open.clone());
        let thread = x.spawn(move || {
            let to: SocketAddr = format!("{A_X_IP}:{TCP_PORT}").parse().expect("address");
            let mut socks: Vec<Option<Socket>> = (0..HELD).map(|_| None).collect();
            let mut first = true;
            while !s.load(Ordering::Relaxed) {
                let again = r.load(Ordering::Relaxed);
                for (i, slot) in socks.iter_mut().enumerate() {
                    if slot.as_ref().is_some_and(closed) {
                        *slot = None;
                    }
                    if slot.is_none() && (first || again) {
                        *slot = hold(attacker_ip(i), to);
                        if !first {
                            n.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                first = false;
                o.store(socks.iter().flatten().count(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Attack {
            reopen,
            stop,
            reopened,
            open,
            thread: Some(thread),
        }
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Samples the peak RSS of `pid` every 50 ms until dropped.
struct Peak {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Peak {
    fn start(pid: u32) -> Peak {
        let peak = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Peak { peak, stop }
    }

    fn kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for Peak {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn transport_of(n: &Node, key: &str) -> String {
    n.ctl_json(&["peers"])
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["public_key"] == key && r["state"] == "up")
        .map(|r| r["transport"].as_str().unwrap_or("?").to_string())
        .unwrap_or_default()
}

#[test]
fn held_partial_frames_do_not_keep_a_new_tcp_peer_out() {
    require_root();
    let t = Instant::now();
    let mut a = Node::new("sa");
    let mut b = Node::new("sb");
    let x = Netns::new("sx");
    veth(&a.ns, A_IP, &b.ns, B_IP);
    let (_, x_if) = veth(&a.ns, A_X_IP, &x, X_IP);
    for n in 1..=ADDRESSES {
        run(x
            .cmd("ip")
            .args(["addr", "add", &format!("10.99.{n}.2/32"), "dev", &x_if]));
    }
    run(a
        .ns
        .cmd("ip")
        .args(["route", "add", "10.99.0.0/16", "via", X_IP]));
    a.configure_listen(
        &[
            &format!("tcp://0.0.0.0:{TCP_PORT}"),
            &format!("quic://0.0.0.0:{QUIC_PORT}"),
        ],
        &[],
        "",
    );
    b.configure(
        &format!("tcp://0.0.0.0:{TCP_PORT}"),
        &[format!("tcp://{A_IP}:{TCP_PORT}")],
        "",
    );
    a.start();
    let pid = a.pid().expect("A runs");
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = rss_kib(pid);
    eprintln!(
        "[{:.1}s] A up, RSS {rss_before} KiB",
        t.elapsed().as_secs_f64()
    );

    // The attack: the table fills.
    let peak = Peak::start(pid);
    let attack = Attack::start(&x);
    let mut most = 0;
    let full = wait_until(Duration::from_secs(10), || {
        most = most.max(established(&a.ns, TCP_PORT));
        most >= MAX_INBOUND - 6
    });
    assert!(full, "the attack held only {most} connections\n{}", a.log());
    eprintln!(
        "[{:.1}s] attack holds {most} connections at A ({} open at the attacker)",
        t.elapsed().as_secs_f64(),
        attack.open.load(Ordering::Relaxed)
    );

    // A new node dials tcp:// while they are held.
    let b_start = Instant::now();
    b.start();
    let b_up = b_start.elapsed();
    let (_, kb) = b.identity();
    let (a_addr, ka) = a.identity();
    let linked = a.wait_link_up(&kb, Duration::from_secs(2));
    let link_time = b_start.elapsed().saturating_sub(b_up);
    eprintln!(
        "[{:.1}s] B's daemon up in {:.2} s, then linked to A in {:.2} s (held at A: {})",
        t.elapsed().as_secs_f64(),
        b_up.as_secs_f64(),
        link_time.as_secs_f64(),
        established(&a.ns, TCP_PORT)
    );
    assert!(
        linked,
        "B did not link within 2 s while the slots were held\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
    assert_eq!(transport_of(&b, &ka), "tcp");
    // The link carries traffic while the attacker keeps reopening what A closes.
    assert_eq!(b.ping(&a_addr, 5, "0.2"), 5, "pings over the link");
    let held_after = established(&a.ns, TCP_PORT);
    let rss_during = peak.kib();
    let reopened = attack.reopened.load(Ordering::Relaxed);
    eprintln!(
        "[{:.1}s] under attack: held at A {held_after}, reopened {reopened}, RSS {rss_before} → peak {rss_during} KiB (+{} KiB, bound +{RSS_GROWTH_BOUND_KIB})",
        t.elapsed().as_secs_f64(),
        rss_during.saturating_sub(rss_before)
    );
    assert!(
        held_after >= MAX_INBOUND - 6,
        "the attack let go: {held_after}"
    );
    assert!(
        rss_during <= rss_before + RSS_GROWTH_BOUND_KIB,
        "RSS grew from {rss_before} to {rss_during} KiB"
    );

    // The attacker stops reopening but keeps what it has: A closes all of it by the frame
    // deadline; B's link stays.
    attack.reopen.store(false, Ordering::Relaxed);
    let stopped = Instant::now();
    let drained = wait_until(FRAME_TIMEOUT + Duration::from_secs(3), || {
        established(&a.ns, TCP_PORT) <= 1
    });
    eprintln!(
        "[{:.1}s] attack stopped reopening: A let go of it in {:.2} s (still held at A: {}, open at the attacker: {})",
        t.elapsed().as_secs_f64(),
        stopped.elapsed().as_secs_f64(),
        established(&a.ns, TCP_PORT),
        attack.open.load(Ordering::Relaxed)
    );
    assert!(
        drained,
        "partial frames held past the deadline\n{}",
        a.log()
    );
    drop(attack);
    assert!(a.wait_link_up(&kb, Duration::from_secs(1)));
    assert_eq!(b.ping(&a_addr, 3, "0.2"), 3, "pings after the attack");
    // An operator sees what happened: `meshctl status` (and its JSON) counts the strangers
    // closed to make room.
    let conns = &a.status()["connections"];
    eprintln!("A's connection counters: {conns}");
    assert!(
        conns["evicted"].as_u64().is_some_and(|n| n > 0),
        "evictions not counted: {conns}"
    );
    let shown = String::from_utf8_lossy(&a.ctl(&["status"]).stdout).into_owned();
    assert!(
        shown.contains("strangers closed to make room"),
        "meshctl status:\n{shown}"
    );
    eprintln!("[{:.1}s] done", t.elapsed().as_secs_f64());
    drop(peak);
}

/// How long after `start` the QUIC connection `c` was closed by A.
async fn closed_after(c: &quinn::Connection, start: Instant) -> Duration {
    let why = c.closed().await;
    let after = start.elapsed();
    eprintln!(
        "QUIC connection closed after {:.2} s: {why}",
        after.as_secs_f64()
    );
    after
}

#[test]
fn quic_connections_that_send_nothing_or_no_link_are_closed_by_their_deadlines() {
    require_root();
    let mut a = Node::new("qa");
    let x = Netns::new("qx");
    veth(&a.ns, A_X_IP, &x, X_IP);
    a.configure(&format!("quic://0.0.0.0:{QUIC_PORT}"), &[], "");
    a.start();
    let to: SocketAddr = format!("{A_X_IP}:{QUIC_PORT}").parse().expect("address");
    let times = x.enter(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let id = meshd::identity::Identity::from_seed(&[9; 32]);
            let cfg = meshd::quic_tls::client_config(&id, None).expect("client config");
            let bind: SocketAddr = format!("{X_IP}:0").parse().expect("address");
            // An endpoint (a source port) each: A keys QUIC connections by their source, and a
            // newer one from the same source replaces the older.
            let connect = || async {
                quinn::Endpoint::client(bind)
                    .expect("endpoint")
                    .connect_with(cfg.clone(), to, "planetary-lan")
                    .expect("connect")
                    .await
                    .expect("QUIC handshake with A")
            };
            let start = Instant::now();
            // Set up, then nothing: no stream.
            let silent = connect().await;
            // The preamble and a frame's length, then nothing.
            let partial = connect().await;
            let (mut ps, _pr) = partial.open_bi().await.expect("stream");
            ps.write_all(QUIC_PREAMBLE).await.expect("write");
            ps.write_all(&[0xff, 0xff]).await.expect("write");
            let partial_start = Instant::now();
            // Frames every 200 ms that are no handshake: busy, never a link.
            let busy = connect().await;
            let (mut bs, _br) = busy.open_bi().await.expect("stream");
            bs.write_all(QUIC_PREAMBLE).await.expect("write");
            let busy_start = Instant::now();
            let chatter = async {
                loop {
                    let mut frame = vec![0x00, 0x20];
                    frame.extend_from_slice(&[0x5a; 32]);
                    if bs.write_all(&frame).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            };
            let measured = async {
                tokio::join!(
                    closed_after(&silent, start),
                    closed_after(&partial, partial_start),
                    closed_after(&busy, busy_start),
                )
            };
            let limit = AUTH_TIMEOUT + SLACK + Duration::from_secs(1);
            tokio::select! {
                t = tokio::time::timeout(limit, measured) => t.ok(),
                _ = chatter => None,
            }
        })
    });
    let Some((silent, partial, busy)) = times else {
        panic!("a QUIC connection was held past its deadline\n{}", a.log());
    };
    eprintln!(
        "closed: set up and silent after {:.2} s (bound {CONNECT_TIMEOUT:?}), partial frame after {:.2} s ({FRAME_TIMEOUT:?}), frames but no link after {:.2} s ({AUTH_TIMEOUT:?})",
        silent.as_secs_f64(),
        partial.as_secs_f64(),
        busy.as_secs_f64()
    );
    assert!(silent <= CONNECT_TIMEOUT + SLACK, "silent: {silent:?}");
    assert!(
        partial <= FRAME_TIMEOUT + SLACK,
        "partial frame: {partial:?}"
    );
    assert!(
        busy + SLACK >= AUTH_TIMEOUT && busy <= AUTH_TIMEOUT + SLACK,
        "busy stranger: {busy:?}"
    );
}
