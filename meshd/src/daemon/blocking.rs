//! A dedicated thread for work that blocks (reading and compiling the policy file, `fsync`ed
//! writes), so that the event loop never waits on a disk or a compile between two packets.
//!
//! Jobs go in through a bounded queue and run one at a time, in the order they were submitted
//! (a later job never overtakes an earlier one); each result comes back to the loop on a tokio
//! channel, where the loop applies it. The thread holds no daemon state: what a job needs
//! travels with it, and what it changes travels back.
//!
//! ```text
//!   event loop ── submit(job) ──▶ [bounded queue] ──▶ thread: run(job) ──▶ done channel ──▶ loop
//! ```
//!
//! The thread is started on the first job (a daemon that never reloads its policy never
//! starts one) and ends when the [`Worker`] is dropped. It runs at a lower priority than the
//! loop ([`lower_priority`]): on a host with two cores, a compile beside the loop must not delay
//! packets.

use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use tokio::sync::mpsc;

/// How much nicer than the daemon a worker thread is where it cannot be made an idle-class
/// thread (Linux: per-thread nice value).
pub const WORKER_NICE: i32 = 10;

/// Puts the calling thread below the loop (best effort: a failure only leaves it at the
/// daemon's priority). Linux: the idle scheduling class (`SCHED_IDLE`), which any normal or
/// real-time thread preempts as soon as it wakes, so a compile beside the loop does not
/// delay packets even on one core (a nice value alone left 8 to 12 ms gaps on two busy
/// cores: `bench/stall.sh`). An idle-class thread still runs whenever a core has nothing
/// else to do; on a core saturated by the data path for a long time its job waits. If the
/// class cannot be set: the normal policy, [`WORKER_NICE`] nicer.
pub(crate) fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid sched_param for the call; id 0 is the calling thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
            return;
        }
        // SAFETY: as above; gettid, getpriority and setpriority take no pointers, and on
        // Linux the nice value of a thread id is that thread's only.
        let r = unsafe {
            libc::sched_setscheduler(0, libc::SCHED_OTHER, &param);
            let tid = libc::gettid() as libc::id_t;
            let now = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(libc::PRIO_PROCESS, tid, (now + WORKER_NICE).min(19))
        };
        if r != 0 {
            tracing::debug!(
                "worker thread priority unchanged: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Runs jobs of type `J` on its own thread, results of type `R` back to the loop.
pub struct Worker<J, R> {
    name: &'static str,
    capacity: usize,
    run: Option<Box<dyn FnMut(J) -> R + Send>>,
    jobs: Option<SyncSender<J>>,
    done_tx: mpsc::Sender<R>,
    done_rx: mpsc::Receiver<R>,
}

/// Why a job was not queued (it is handed back).
#[derive(Debug)]
pub enum Refused<J> {
    /// `capacity` jobs are waiting already.
    Full(J),
    /// The thread could not be started, or is gone.
    Gone(J, String),
}

impl<J: Send + 'static, R: Send + 'static> Worker<J, R> {
    /// A worker named `name` (the thread's name, in errors too) with room for `capacity` jobs
    /// waiting to start.
    pub fn new(
        name: &'static str,
        capacity: usize,
        run: impl FnMut(J) -> R + Send + 'static,
    ) -> Worker<J, R> {
        let capacity = capacity.max(1);
        // A result waits here until the loop takes it; the thread then blocks on `send`,
        // which only delays the next job.
        let (done_tx, done_rx) = mpsc::channel(capacity);
        Worker {
            name,
            capacity,
            run: Some(Box::new(run)),
            jobs: None,
            done_tx,
            done_rx,
        }
    }

    /// Queues `job` behind the jobs submitted before it.
    pub fn submit(&mut self, job: J) -> Result<(), Refused<J>> {
        if self.jobs.is_none()
            && let Err(e) = self.start()
        {
            return Err(Refused::Gone(job, e));
        }
        let Some(jobs) = self.jobs.as_ref() else {
            return Err(Refused::Gone(
                job,
                format!("the {} thread is gone", self.name),
            ));
        };
        match jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => Err(Refused::Full(job)),
            Err(TrySendError::Disconnected(job)) => Err(Refused::Gone(
                job,
                format!("the {} thread stopped (see the log above)", self.name),
            )),
        }
    }

    fn start(&mut self) -> Result<(), String> {
        let Some(mut run) = self.run.take() else {
            return Err(format!(
                "the {} thread stopped (see the log above)",
                self.name
            ));
        };
        let (tx, rx) = sync_channel::<J>(self.capacity);
        let done = self.done_tx.clone();
        std::thread::Builder::new()
            .name(self.name.into())
            .spawn(move || {
                lower_priority();
                while let Ok(job) = rx.recv() {
                    if done.blocking_send(run(job)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start the {} thread: {e}", self.name))?;
        self.jobs = Some(tx);
        Ok(())
    }

    /// The next result, in the order the jobs were submitted.
    pub async fn done(&mut self) -> R {
        match self.done_rx.recv().await {
            Some(r) => r,
            // Not reached: `self` holds a sender. Pending is what a closed channel means here.
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn results_come_back_in_submission_order() {
        let mut w = Worker::new("test-worker", 8, |n: u32| {
            // Earlier jobs are slower: still, nothing overtakes them.
            std::thread::sleep(Duration::from_millis(u64::from(8 - n)));
            n * 10
        });
        for n in 0..8 {
            w.submit(n).expect("room for 8");
        }
        let got: Vec<u32> = block_on(async {
            let mut v = Vec::new();
            for _ in 0..8 {
                v.push(w.done().await);
            }
            v
        });
        assert_eq!(got, (0..8).map(|n| n * 10).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_queue_hands_the_job_back() {
        let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
        let gate = std::sync::Mutex::new(gate_rx);
        let mut w = Worker::new("test-full", 1, move |n: u32| {
            // The first job waits for the gate, so the queue fills behind it.
            if n == 0 {
                let _ = gate.lock().map(|g| g.recv());
            }
            n
        });
        w.submit(0).expect("first");
        // The thread takes job 0 off the queue at some point; until then the queue is full.
        let mut queued = 0;
        let mut refused = 0;
        for n in 1..10 {
            match w.submit(n) {
                Ok(()) => queued += 1,
                Err(Refused::Full(j)) => {
                    assert_eq!(j, n);
                    refused += 1;
                }
                Err(Refused::Gone(..)) => panic!("worker gone"),
            }
        }
        assert!(
            queued <= 2,
            "a queue of 1 (and a result slot) took {queued}"
        );
        assert!(refused >= 7);
        let _ = gate_tx.send(());
        assert_eq!(block_on(w.done()), 0);
    }
}
