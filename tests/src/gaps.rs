//! Measuring outages as a user sees them: a UDP probe every 10 ms across the overlay, echoed
//! by the other side, whose echoes are stamped with the wall-clock time they arrived, read
//! against instants the test noted on the same clock (a cut, a repair, a restart).
//!
//! Not `ping`: iputils' ping gives up on its own after a run of ICMPv6 errors (a node without
//! a route answers "address unreachable"), which is exactly what happens during an outage.

use crate::Node;
use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The echo port on the probed node.
const ECHO_PORT: u16 = 7999;
/// Time between probes.
const EVERY: Duration = Duration::from_millis(10);

/// Seconds since the epoch on the wall clock.
pub fn wall() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Probes from one node to another's overlay address, echoed there.
pub struct Prober {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    arrivals: Arc<Mutex<Vec<f64>>>,
}

impl Prober {
    /// Starts an echo in `to`'s namespace (on all addresses, so it survives `to`'s daemon
    /// restarting) and probes of `addr` from `from`'s namespace.
    pub fn start(from: &Node, to: &Node, addr: &Ipv6Addr) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        let echo = to.ns.enter(|| {
            let s = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, ECHO_PORT)).expect("bind echo");
            s.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
            s
        });
        let halt = stop.clone();
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !halt.load(Ordering::Relaxed) {
                if let Ok((n, peer)) = echo.recv_from(&mut buf) {
                    let _ = echo.send_to(&buf[..n], peer);
                }
            }
        }));
        let probe = from.ns.enter(|| {
            let s = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0)).expect("bind probe");
            s.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
            s
        });
        let rx = probe.try_clone().expect("clone socket");
        let (halt, seen) = (stop.clone(), arrivals.clone());
        threads.push(std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while !halt.load(Ordering::Relaxed) {
                if rx.recv_from(&mut buf).is_ok() {
                    let t = wall();
                    if let Ok(mut v) = seen.lock() {
                        v.push(t);
                    }
                }
            }
        }));
        let to = SocketAddr::from((*addr, ECHO_PORT));
        let halt = stop.clone();
        threads.push(std::thread::spawn(move || {
            let mut seq = 0u64;
            while !halt.load(Ordering::Relaxed) {
                // Errors (no route while a daemon restarts) are outages like any other.
                let _ = probe.send_to(&seq.to_be_bytes(), to);
                seq += 1;
                std::thread::sleep(EVERY);
            }
        }));
        Prober {
            stop,
            threads,
            arrivals,
        }
    }

    /// Stops probing and returns the arrival times of the echoes, in order.
    pub fn stop(mut self) -> Replies {
        self.halt();
        let v = self.arrivals.lock().map(|v| v.clone()).unwrap_or_default();
        Replies(v)
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Arrival times of echoes (seconds since the epoch).
pub struct Replies(pub Vec<f64>);

impl Replies {
    /// How long after `at` the first echo arrived, if one did.
    pub fn first_after(&self, at: f64) -> Option<Duration> {
        self.0
            .iter()
            .find(|&&t| t >= at)
            .map(|t| Duration::from_secs_f64(t - at))
    }

    /// The longest time without an echo between `from` and `to` (the edges count: no echo
    /// at all in the window is a gap of the whole window).
    pub fn longest_gap(&self, from: f64, to: f64) -> Duration {
        let mut last = from;
        let mut worst: f64 = 0.0;
        for &t in self.0.iter().filter(|&&t| t > from && t < to) {
            worst = worst.max(t - last);
            last = t;
        }
        worst = worst.max(to - last);
        Duration::from_secs_f64(worst)
    }

    /// Echoes that arrived between `from` and `to`.
    pub fn count(&self, from: f64, to: f64) -> usize {
        self.0.iter().filter(|&&t| t >= from && t < to).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_and_first_arrivals() {
        let r = Replies(vec![1000.10, 1000.11, 1001.50]);
        let gap = r.longest_gap(1000.0, 1002.0);
        assert!((gap.as_secs_f64() - 1.39).abs() < 1e-6, "{gap:?}");
        let back = r.first_after(1001.0).expect("reply");
        assert!((back.as_secs_f64() - 0.5).abs() < 1e-6);
        assert_eq!(r.count(1000.0, 1001.0), 2);
        assert_eq!(r.first_after(1002.0), None);
    }
}
