//! Measuring outages as a user sees them: a steady `ping` (100 echo requests a second) whose
//! replies carry the time they arrived (`ping -D`), read against instants the test noted on the
//! same wall clock (a cut, a repair, a restart).

use crate::Node;
use std::net::Ipv6Addr;
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the epoch on the wall clock, the clock `ping -D` prints.
pub fn wall() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A `ping -D -i 0.01` running in a node's namespace.
pub struct Pinger {
    child: Option<Child>,
}

impl Pinger {
    /// Starts pinging `addr` from `from` every 10 ms for at most `secs` seconds.
    pub fn start(from: &Node, addr: &Ipv6Addr, secs: u64) -> Pinger {
        let child = from
            .ns
            .cmd("ping")
            // A count, not a deadline (`-w`): with a deadline, ping exits at the first ICMPv6
            // error (the node answers "address unreachable" while it has no route).
            .args(["-6", "-n", "-D", "-i", "0.01", "-W", "1", "-c"])
            .arg((secs * 100).to_string())
            .arg(addr.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run ping");
        Pinger { child: Some(child) }
    }

    /// Stops the ping and returns the arrival times of its replies, in order.
    pub fn stop(mut self) -> Replies {
        let Some(child) = self.child.take() else {
            return Replies(Vec::new());
        };
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let out = child.wait_with_output().expect("wait for ping");
        Replies(parse(&String::from_utf8_lossy(&out.stdout)))
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `[1764833000.123456] 64 bytes from ...: icmp_seq=...` lines → arrival times.
fn parse(out: &str) -> Vec<f64> {
    out.lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect()
}

/// Arrival times of echo replies (seconds since the epoch).
pub struct Replies(pub Vec<f64>);

impl Replies {
    /// How long after `at` the first reply arrived, if one did.
    pub fn first_after(&self, at: f64) -> Option<Duration> {
        self.0
            .iter()
            .find(|&&t| t >= at)
            .map(|t| Duration::from_secs_f64(t - at))
    }

    /// The longest time without a reply between `from` and `to` (the edges count: no reply
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

    /// Replies that arrived between `from` and `to`.
    pub fn count(&self, from: f64, to: f64) -> usize {
        self.0.iter().filter(|&&t| t >= from && t < to).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ping_d_output() {
        let out = "PING fd00::1(fd00::1) 56 data bytes\n\
                   [1764833000.100000] 64 bytes from fd00::1: icmp_seq=1 ttl=64 time=0.1 ms\n\
                   [1764833000.110000] 64 bytes from fd00::1: icmp_seq=2 ttl=64 time=0.1 ms\n\
                   [1764833001.500000] 64 bytes from fd00::1: icmp_seq=3 ttl=64 time=0.1 ms\n";
        let r = Replies(parse(out));
        assert_eq!(r.0.len(), 3);
        let gap = r.longest_gap(1764833000.0, 1764833002.0);
        assert!((gap.as_secs_f64() - 1.39).abs() < 1e-6, "{gap:?}");
        let back = r.first_after(1764833001.0).expect("reply");
        assert!((back.as_secs_f64() - 0.5).abs() < 1e-6);
        assert_eq!(r.count(1764833000.0, 1764833001.0), 2);
    }
}
