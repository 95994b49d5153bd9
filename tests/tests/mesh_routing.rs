//! Seven daemons in a topology with cycles: a ring of five (0-1-2-3-4-0) with two chords
//! (0-2, 1-3) and a tail of two (4-5-6). Every pair reaches every other across up to four
//! hops; TCP crosses three; links are cut with nftables and the root is stopped and restarted.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tests::{Mesh, wait_until};

/// The routing tests' ring of five with two chords and a tail of two.
fn edges() -> Vec<(usize, usize)> {
    routing::testnet::graphs::ring5_chords_tail2()
}

/// The scenarios are timing-sensitive: one seven-daemon mesh at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// One ping from `a` to `b`'s overlay address (waiting up to `wait` seconds for the reply).
fn ping_once(m: &Mesh, a: usize, b: usize, wait: &str) -> bool {
    m.nodes[a]
        .ns
        .cmd("ping")
        .args(["-6", "-n", "-q", "-c", "1", "-W", wait])
        .arg(m.addrs[b].to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Every ordered pair among `alive` pings, in parallel, retrying until `deadline`. Returns the
/// pairs that never answered.
fn all_pairs(m: &Mesh, alive: &[usize], deadline: Instant) -> Vec<(usize, usize)> {
    let mut handles = Vec::new();
    for &a in alive {
        for &b in alive {
            if a == b {
                continue;
            }
            let ns = m.nodes[a].ns.name.clone();
            let addr = m.addrs[b].to_string();
            handles.push((
                (a, b),
                std::thread::spawn(move || {
                    while Instant::now() < deadline {
                        let ok = Command::new("ip")
                            .args([
                                "netns", "exec", &ns, "ping", "-6", "-n", "-q", "-c", "1", "-W",
                                "1", &addr,
                            ])
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .status()
                            .is_ok_and(|s| s.success());
                        if ok {
                            return true;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    false
                }),
            ));
        }
    }
    handles
        .into_iter()
        .filter_map(|(pair, h)| (!h.join().unwrap_or(false)).then_some(pair))
        .collect()
}

fn forwarded(m: &Mesh, i: usize) -> u64 {
    m.nodes[i].status()["routing"]["forwarded"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn every_pair_reaches_every_other_and_tcp_crosses_three_hops() {
    let _g = serial();
    let m = Mesh::new(7, &edges());
    let failed = all_pairs(
        &m,
        &[0, 1, 2, 3, 4, 5, 6],
        Instant::now() + Duration::from_secs(15),
    );
    assert!(failed.is_empty(), "pairs that never answered: {failed:?}");
    // The overlay's own view of the path lengths.
    let mut longest = 0;
    for b in 0..6 {
        let hops = m
            .overlay_hops(6, b)
            .unwrap_or_else(|| panic!("overlay ping 6 -> {b} failed"));
        eprintln!("6 -> {b}: {hops} hops");
        longest = longest.max(hops);
    }
    assert_eq!(longest, 4, "the farthest pair is four hops apart");
    assert_eq!(m.overlay_hops(6, 0), Some(3));

    // 100 MB of TCP from node 6 to node 0, three hops.
    const TOTAL: usize = 100 * 1024 * 1024;
    let secs = tests::transfer::intact(&m.nodes[6], &m.nodes[0], TOTAL);
    eprintln!(
        "100 MiB across 3 hops in {secs:.2} s ({:.0} Mbit/s)",
        TOTAL as f64 * 8.0 / secs / 1e6
    );
}

#[test]
fn cutting_a_link_on_the_active_path_reroutes_within_5_seconds() {
    let _g = serial();
    let m = Mesh::new(7, &edges());
    assert!(all_pairs(&m, &[6, 2], Instant::now() + Duration::from_secs(10)).is_empty());
    // Which of 0 and 3 carries 6 -> 2?
    let (f0, f3) = (forwarded(&m, 0), forwarded(&m, 3));
    for _ in 0..10 {
        ping_once(&m, 6, 2, "1");
    }
    let via = if forwarded(&m, 0) - f0 >= forwarded(&m, 3) - f3 {
        0
    } else {
        3
    };
    let k = m.edge(4, via).expect("edge");
    eprintln!("6 -> 2 goes through 4 -> {via}; cutting that link");
    m.cut(k);
    let cut_at = Instant::now();
    let resumed = wait_until(Duration::from_secs(8), || ping_once(&m, 6, 2, "1"));
    let took = cut_at.elapsed();
    assert!(resumed, "never rerouted");
    eprintln!(
        "cut link 4-{via}: traffic 6 -> 2 resumed after {:.2} s",
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    m.restore(k);
}

#[test]
fn stopping_the_root_reforms_the_tree_within_10_seconds_and_restoring_brings_it_back() {
    let _g = serial();
    let mut m = Mesh::new(7, &edges());
    // Nodes 4 and 5 are cut vertices: stopping either would split the network, whatever the
    // routing. Operators pick well-connected roots; so does this test, with eligible_roots.
    m.set_eligible_roots(&[0, 1, 2, 3]);
    assert!(
        all_pairs(
            &m,
            &[0, 1, 2, 3, 4, 5, 6],
            Instant::now() + Duration::from_secs(15)
        )
        .is_empty()
    );
    let root = m.root(6).expect("a root");
    assert!(root <= 3, "root {root} is not one of the eligible nodes");
    let hops_before: Vec<Option<u64>> = (0..7)
        .map(|b| {
            if b == 6 {
                Some(0)
            } else {
                m.overlay_hops(6, b)
            }
        })
        .collect();
    eprintln!("root is node {root}; hops from 6: {hops_before:?}");
    // Graceful stop: the daemon says goodbye on its links.
    let pid = m.nodes[root].pid().expect("running");
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    assert!(
        wait_until(Duration::from_secs(5), || !m.nodes[root].running()),
        "root did not stop"
    );
    let stopped = Instant::now();
    let alive: Vec<usize> = (0..7).filter(|i| *i != root).collect();
    let deadline = stopped + Duration::from_secs(10);
    let new_root = loop {
        let r = m.root(alive[0]);
        if let Some(r) = r.filter(|r| *r != root && alive.iter().all(|&i| m.root(i) == Some(*r))) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no new root 10 s after the old one stopped"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let reformed = stopped.elapsed();
    let failed = all_pairs(&m, &alive, deadline);
    let took = stopped.elapsed();
    assert!(
        failed.is_empty(),
        "unreachable 10 s after the root stopped: {failed:?}"
    );
    eprintln!(
        "root {root} stopped: node {new_root} is root after {:.2} s; all {} remaining pairs reach each other after {:.2} s",
        reformed.as_secs_f64(),
        alive.len() * (alive.len() - 1),
        took.as_secs_f64()
    );
    assert!(took < Duration::from_secs(10));

    // Restore: the old root comes back (same key), the tree and the paths are as before.
    m.nodes[root].start();
    assert!(
        wait_until(Duration::from_secs(15), || (0..7)
            .all(|i| m.root(i) == Some(root))),
        "the old root did not take over again"
    );
    let restored = Instant::now();
    let back = wait_until(Duration::from_secs(10), || {
        (0..6).all(|b| m.overlay_hops(6, b) == hops_before[b])
    });
    let hops_after: Vec<Option<u64>> = (0..7)
        .map(|b| {
            if b == 6 {
                Some(0)
            } else {
                m.overlay_hops(6, b)
            }
        })
        .collect();
    assert!(
        back,
        "paths differ after the restore: before {hops_before:?}, after {hops_after:?}"
    );
    eprintln!(
        "restored: original paths back {:.2} s after the root returned",
        restored.elapsed().as_secs_f64()
    );
}

#[test]
fn a_capture_at_the_middle_node_shows_no_plaintext() {
    let _g = serial();
    let m = Mesh::new(7, &edges());
    // 6 -> 4 crosses 5 (the tail).
    assert!(all_pairs(&m, &[6, 4], Instant::now() + Duration::from_secs(10)).is_empty());
    assert_eq!(m.overlay_hops(6, 4), Some(2));
    let pcap = m.nodes[5].dir.join("middle.pcap");
    let mut tcpdump = m.nodes[5]
        .ns
        .cmd("tcpdump")
        .args(["-i", "any", "-U", "--immediate-mode", "-n", "-s", "0", "-w"])
        .arg(&pcap)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump");
    let mut err = std::io::BufReader::new(tcpdump.stderr.take().expect("stderr"));
    let mut line = String::new();
    for _ in 0..5 {
        line.clear();
        let _ = std::io::BufRead::read_line(&mut err, &mut line);
        if line.contains("listening") || line.is_empty() {
            break;
        }
    }
    assert!(line.contains("listening"), "tcpdump: {line}");
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));

    const SECRET: &[u8] = b"PLANETARY-KNOWN-PLAINTEXT-4a1c9e";
    let dst = SocketAddr::new(m.addrs[4].into(), 6000);
    let receiver = m.nodes[4].ns.spawn(move || {
        let s = UdpSocket::bind(dst).expect("bind");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut buf = [0u8; 2048];
        let n = s.recv(&mut buf).expect("nothing arrived at node 4");
        buf[..n].to_vec()
    });
    std::thread::sleep(Duration::from_millis(200));
    m.nodes[6].ns.enter(move || {
        let s = UdpSocket::bind("[::]:0").expect("bind");
        for _ in 0..20 {
            let _ = s.send_to(SECRET, dst);
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let got = receiver.join().expect("receiver");
    assert_eq!(got, SECRET, "node 4 received the payload");
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill").arg(tcpdump.id().to_string()).status();
    let _ = tcpdump.wait();
    let captured = std::fs::read(&pcap).expect("capture");
    assert!(captured.len() > 1000, "the capture at node 5 is empty");
    assert!(
        !captured.windows(SECRET.len()).any(|w| w == SECRET),
        "the middle node's capture contains the plaintext"
    );
    eprintln!("capture at node 5: {} bytes, no plaintext", captured.len());
}

#[test]
fn killing_the_root_reforms_the_tree_within_10_seconds() {
    let _g = serial();
    let mut m = Mesh::new(7, &edges());
    m.set_eligible_roots(&[0, 1, 2, 3]);
    let all: Vec<usize> = (0..7).collect();
    assert!(all_pairs(&m, &all, Instant::now() + Duration::from_secs(15)).is_empty());
    let root = m.root(6).expect("a root");
    // A crash: no farewell, the others must notice the silence (root timeout: 6 s).
    m.nodes[root].kill9();
    let stopped = Instant::now();
    let alive: Vec<usize> = (0..7).filter(|i| *i != root).collect();
    let deadline = stopped + Duration::from_secs(10);
    let new_root = loop {
        let r = m.root(alive[0]);
        if let Some(r) = r.filter(|r| *r != root && alive.iter().all(|&i| m.root(i) == Some(*r))) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no new root 10 s after the old one was killed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let reformed = stopped.elapsed();
    let failed = all_pairs(&m, &alive, deadline);
    assert!(
        failed.is_empty(),
        "unreachable 10 s after the root was killed: {failed:?}"
    );
    eprintln!(
        "root {root} killed: node {new_root} is root after {:.2} s; all pairs reach each other after {:.2} s",
        reformed.as_secs_f64(),
        stopped.elapsed().as_secs_f64()
    );
}
