//! The znet worker: one dedicated thread that does the changes' system work (netlink,
//! namespaces, TUN devices, fsync'd records) so that the event loop never waits for it. Jobs go
//! in through a bounded channel (the loop sends one at a time: see [`super::changes`]); each
//! result comes back as a [`Done`] on a tokio channel that the loop selects on.
//!
//! The thread ends when the loop drops its [`Worker`] (the channel closes).

use super::jobs::{self, Change, Context, Outcome, State};
use tokio::sync::mpsc;

/// Jobs the channel to the worker holds (the loop keeps at most one in flight).
const JOBS: usize = 2;
/// Results the channel back to the loop holds.
const RESULTS: usize = 2;

/// A change and the state it is checked against.
struct Job {
    change: Change,
    state: State,
}

/// A change done (or refused), for the loop.
pub struct Done(pub anyhow::Result<Outcome>);

/// The loop's end of the worker.
pub struct Worker {
    tx: std::sync::mpsc::SyncSender<Job>,
}

impl Worker {
    /// Starts the worker thread; the receiver gets each job's result.
    pub fn start(ctx: Context) -> std::io::Result<(Worker, mpsc::Receiver<Done>)> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(JOBS);
        let (done_tx, done_rx) = mpsc::channel(RESULTS);
        std::thread::Builder::new()
            .name("meshd-znets".into())
            .spawn(move || {
                // Below the loop, like the other workers: plumbing must not delay packets.
                crate::daemon::blocking::lower_priority();
                while let Ok(job) = rx.recv() {
                    // A bug in a job must not leave its request (and every one behind it)
                    // waiting forever: it is answered as an internal error.
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        jobs::run(&ctx, &job.state, job.change)
                    }))
                    .unwrap_or_else(|_| {
                        Err(anyhow::anyhow!(
                            "internal error: the znet change panicked (see the log); the znet \
                             may be half set up: leave and join it again"
                        ))
                    });
                    if done_tx.blocking_send(Done(r)).is_err() {
                        break;
                    }
                }
            })?;
        Ok((Worker { tx }, done_rx))
    }

    /// Hands a change to the worker, with a snapshot of the state. Fails if the worker is gone
    /// (it panicked) or, against the loop's own rule, already holds a job.
    pub fn send(&self, change: Change, state: State) -> anyhow::Result<()> {
        self.tx
            .try_send(Job { change, state })
            .map_err(|e| match e {
                std::sync::mpsc::TrySendError::Full(_) => {
                    anyhow::anyhow!("internal error: the znet worker is busy")
                }
                std::sync::mpsc::TrySendError::Disconnected(_) => {
                    anyhow::anyhow!("the znet worker thread stopped (see the log); restart meshd")
                }
            })
    }
}
