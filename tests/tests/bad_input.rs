//! Hostile input on the UDP port: 100,000 random, truncated, corrupted and oversized datagrams
//! plus replays of captured valid ones. The daemon must not crash, must count them as dropped,
//! and a ping running at the same time must keep working.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;
use tests::{Node, Rng, require_root, veth};

const A_IP: &str = "10.98.0.1";
const B_IP: &str = "10.98.0.2";
const BAD: usize = 100_000;

/// UDP payloads from A to B in a pcap file (Ethernet link type) written by tcpdump.
fn udp_payloads(pcap: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if pcap.len() < 24 {
        return out;
    }
    let le = pcap[0] == 0xd4;
    let u32_at = |b: &[u8], i: usize| {
        let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let mut i = 24;
    while i + 16 <= pcap.len() {
        let incl = u32_at(pcap, i + 8) as usize;
        let Some(frame) = pcap.get(i + 16..i + 16 + incl) else {
            break;
        };
        i += 16 + incl;
        // Ethernet, IPv4, UDP.
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] {
            continue;
        }
        let ip = &frame[14..];
        let ihl = ((ip[0] & 0x0f) as usize) * 4;
        if ip[9] != 17 || ip.len() < ihl + 8 || ip[12..16] != [10, 98, 0, 1] {
            continue;
        }
        let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        out.push(ip[ihl + 8..total.min(ip.len())].to_vec());
    }
    out
}

/// Builds the hostile datagrams; returns them and how many are well-formed handshake inits
/// (which are answered, not dropped: an init is unauthenticated by design).
fn hostile(captured: &[Vec<u8>], rng: &mut Rng) -> (Vec<Vec<u8>>, usize) {
    let mut v = Vec::with_capacity(BAD);
    let mut inits = 0;
    for i in 0..BAD {
        let d = match i % 10 {
            0..=3 => {
                let len = rng.below(1500);
                rng.bytes(len)
            }
            4 | 5 => {
                // A known type byte, random rest, random length (sometimes exactly an init's).
                let len = if rng.below(50) == 0 {
                    148
                } else {
                    rng.below(1500) + 1
                };
                let mut d = rng.bytes(len);
                d[0] = 1 + rng.below(4) as u8;
                if d[0] == 1 && len == 148 && matches!(d[1], 1 | 2) {
                    inits += 1;
                }
                d
            }
            6 => {
                let c = &captured[rng.below(captured.len())];
                c[..rng.below(c.len())].to_vec() // truncated
            }
            7 => {
                let mut c = captured[rng.below(captured.len())].clone();
                let at = rng.below(c.len());
                c[at] ^= 1 << rng.below(8); // one bit flipped
                if c[0] == 1 && c.len() == 148 && matches!(c[1], 1 | 2) {
                    inits += 1;
                }
                c
            }
            8 if i % 100 == 8 => {
                let len = 1500 + rng.below(60_000);
                rng.bytes(len) // oversized (fragmented on the wire)
            }
            _ => {
                let c = captured[rng.below(captured.len())].clone(); // replayed verbatim
                if c[0] == 1 {
                    inits += 1;
                }
                c
            }
        };
        v.push(d);
    }
    (v, inits)
}

fn rcvbuf_errors(node: &Node) -> u64 {
    let out = node
        .ns
        .cmd("cat")
        .arg("/proc/net/snmp")
        .output()
        .expect("cat snmp");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(h), Some(v)) = (lines.next(), lines.next()) else {
        return 0;
    };
    h.split_whitespace()
        .zip(v.split_whitespace())
        .find(|(k, _)| *k == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn hostile_datagrams_are_dropped_and_counted_while_ping_keeps_working() {
    require_root();
    let mut a = Node::new("a");
    let mut b = Node::new("b");
    let (_, b_if) = veth(&a.ns, A_IP, &b.ns, B_IP);
    a.configure("udp://0.0.0.0:7820", &[format!("udp://{B_IP}:7820")], "");
    b.configure("udp://0.0.0.0:7820", &[], "");

    // Capture the handshake and some traffic from A to B.
    let pcap = b.dir.join("capture.pcap");
    let mut tcpdump =
        b.ns.cmd("tcpdump")
            .args(["-i", &b_if, "-U", "--immediate-mode", "-n", "-s", "0", "-w"])
            .arg(&pcap)
            .args(["udp", "and", "port", "7820"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump (apt-get install tcpdump)");
    // tcpdump says "listening on ..." once it captures.
    let mut err = std::io::BufReader::new(tcpdump.stderr.take().expect("stderr"));
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(&mut err, &mut line);
    assert!(line.contains("listening"), "tcpdump did not start: {line}");
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    b.start();
    a.start();
    let (b_addr, b_key) = b.identity();
    assert!(a.wait_link_up(&b_key, Duration::from_secs(5)));
    assert_eq!(a.ping(&b_addr, 10, "0.05"), 10);
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill").arg(tcpdump.id().to_string()).status();
    let _ = tcpdump.wait();
    let captured = udp_payloads(&std::fs::read(&pcap).expect("read capture"));
    assert!(
        captured.iter().any(|c| c[0] == 1),
        "no handshake init captured"
    );
    let types: Vec<u8> = captured.iter().map(|c| c[0]).collect();
    assert!(
        captured.iter().filter(|c| c[0] == 4).count() >= 3,
        "too few transport messages captured: types {types:?}"
    );

    let mut rng = Rng(0x5eed_1234_abcd_0042);
    let (datagrams, inits) = hostile(&captured, &mut rng);
    let before = b.status()["dropped_from_network"]
        .as_u64()
        .expect("counter");
    let kernel_before = rcvbuf_errors(&b);

    // A ping over the overlay runs during the whole flood.
    let pinger = {
        let ns = a.ns.name.clone();
        let addr = b_addr;
        std::thread::spawn(move || {
            let out = Command::new("ip")
                .args([
                    "netns", "exec", &ns, "ping", "-6", "-n", "-q", "-c", "60", "-i", "0.05",
                ])
                .args(["-W", "1", &addr.to_string()])
                .output()
                .expect("ping");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    let target: SocketAddr = format!("{B_IP}:7820").parse().expect("literal");
    let sent = a.ns.enter(move || {
        let s = UdpSocket::bind("10.98.0.1:0").expect("bind");
        let mut sent = 0;
        for (i, d) in datagrams.iter().enumerate() {
            if s.send_to(d, target).is_ok() {
                sent += 1;
            }
            if i % 500 == 499 {
                // About 50,000 datagrams a second: a flood, not a kernel buffer overflow test.
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        sent
    });
    let ping = pinger.join().expect("ping thread");
    assert_eq!(sent, BAD, "the sender could not send everything");

    assert!(b.running(), "meshd died:\n{}", b.log());
    let status = b.status();
    let dropped = status["dropped_from_network"].as_u64().expect("counter") - before;
    let kernel = rcvbuf_errors(&b) - kernel_before;
    eprintln!(
        "sent {BAD} hostile datagrams ({inits} well-formed inits); meshd counted {dropped} \
         dropped; the kernel dropped {kernel} (receive buffer full); ping: {}",
        ping.lines().find(|l| l.contains("received")).unwrap_or("?")
    );
    eprintln!("counters: {}", status["counters"]["dropped"]);
    // Every hostile datagram that reached meshd and was not a well-formed init is counted.
    assert!(
        dropped + kernel + inits as u64 >= BAD as u64,
        "only {dropped} of {BAD} counted as dropped (+{kernel} kernel, {inits} inits)"
    );
    assert!(
        status["counters"]["dropped"]["replay"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "no replay seen"
    );
    let replies: u32 = ping
        .lines()
        .find(|l| l.contains("received"))
        .and_then(|l| l.split(',').nth(1)?.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    assert!(replies >= 58, "ping suffered during the flood: {ping}");
    // Still linked, still working.
    assert_eq!(a.ping(&b_addr, 3, "0.2"), 3);
    assert!(b.running());
}
