//! A watch on the event loop's own turns: each piece of work the loop does between two waits
//! is timed, and one that takes longer than [`SLOW_TURN`] is logged with what it was. Nothing
//! on the loop should ever take that long (see `bench/stall.sh`); when something does, the log
//! names it.
//!
//! The data path's turns (packets between the TUN and the links) read only the wall clock
//! (two vDSO reads a turn). The control turns (admin requests, timers, results of workers)
//! also read the thread's CPU clock, so that a slow one tells work done on the loop apart from
//! a loop that was not running (preempted, or its vCPU taken by the hypervisor).

use std::time::{Duration, Instant};

/// A turn longer than this is logged.
pub const SLOW_TURN: Duration = Duration::from_millis(5);

/// Times one turn of the loop until dropped.
pub struct Turn {
    what: &'static str,
    start: Instant,
    cpu_start: Option<Duration>,
}

/// Starts timing a data-path turn that does `what` (wall clock only).
pub fn turn(what: &'static str) -> Turn {
    Turn {
        what,
        start: Instant::now(),
        cpu_start: None,
    }
}

/// Starts timing a control turn that does `what` (wall clock and the thread's CPU time).
pub fn control_turn(what: &'static str) -> Turn {
    Turn {
        what,
        start: Instant::now(),
        cpu_start: thread_cpu_time(),
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let took = self.start.elapsed();
        if took < SLOW_TURN {
            return;
        }
        let ms = format!("{:.1}", took.as_secs_f64() * 1000.0);
        match self.cpu_start.zip(thread_cpu_time()) {
            Some((a, b)) => tracing::warn!(
                what = self.what,
                ms,
                cpu_ms = format!("{:.1}", b.saturating_sub(a).as_secs_f64() * 1000.0),
                "slow turn of the event loop: packets waited"
            ),
            None => tracing::warn!(
                what = self.what,
                ms,
                "slow turn of the event loop: packets waited"
            ),
        }
    }
}

/// CPU time this thread has used (Linux: `CLOCK_THREAD_CPUTIME_ID`).
fn thread_cpu_time() -> Option<Duration> {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID).ok()?;
    Some(Duration::from(ts))
}
