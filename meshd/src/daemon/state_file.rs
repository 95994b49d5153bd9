//! A state file (`peers.json`, `names.json`) written whole and atomically (`fsync`ed) by its
//! own [`Worker`] thread, never on the event loop, in the order its versions were handed over.
//! Each version gets a ticket, which comes back with its outcome from [`StateFile::written`];
//! the store that owns the file decides what the outcome means to whom.

use super::blocking::{Refused, Worker};
use crate::atomic_file;
use std::path::PathBuf;

/// A version of a state file the writer is done with.
pub struct Written {
    /// The ticket [`StateFile::submit`] gave it.
    pub ticket: u64,
    /// `Err` names the file and the reason.
    pub result: Result<(), String>,
}

/// One state file and its writer.
pub struct StateFile {
    path: PathBuf,
    writer: Worker<(u64, String), Written>,
    next_ticket: u64,
    in_flight: usize,
    max_pending: usize,
}

impl StateFile {
    /// The writer of `path`, on a thread named `thread`, with at most `max_pending` versions
    /// handed over and not yet written.
    pub fn new(thread: &'static str, path: PathBuf, max_pending: usize) -> StateFile {
        let target = path.clone();
        let writer = Worker::new(thread, max_pending, move |(ticket, text): (u64, String)| {
            Written {
                ticket,
                result: atomic_file::write(&target, text.as_bytes(), atomic_file::Mode::Keep)
                    .map_err(|e| e.to_string()),
            }
        });
        StateFile {
            path,
            writer,
            next_ticket: 0,
            in_flight: 0,
            max_pending,
        }
    }

    /// Hands the file's new text to the writer: its ticket, or why not (try again later).
    pub fn submit(&mut self, text: String) -> anyhow::Result<u64> {
        if self.in_flight >= self.max_pending {
            anyhow::bail!(
                "{} changes to {} are being written already; try again in a moment",
                self.max_pending,
                self.path.display()
            );
        }
        let ticket = self.next_ticket;
        match self.writer.submit((ticket, text)) {
            Ok(()) => {}
            Err(Refused::Full(_)) => anyhow::bail!(
                "the writer of {} is busy; try again in a moment",
                self.path.display()
            ),
            Err(Refused::Gone(_, why)) => anyhow::bail!("{why}"),
        }
        self.next_ticket += 1;
        self.in_flight += 1;
        Ok(ticket)
    }

    /// The next version written (or not), in the order they were handed over.
    pub async fn written(&mut self) -> Written {
        let w = self.writer.done().await;
        self.in_flight = self.in_flight.saturating_sub(1);
        w
    }
}
