//! What the policy worker thread does, and the order its jobs go in.
//!
//! Reading, parsing and compiling the policy file (0.1 s for 10,000 identities) and writing a
//! circle edit (`fsync`) block: they run on the worker ([`run`]), and the compiled policy comes
//! back to the event loop, which puts it in force ([`super::policy`]). [`Queue`] decides when a
//! job starts, and is pure (no thread, no clock), so its rules are tested here:
//! - at most one job runs at a time; the others wait, in the order they were asked for;
//! - a reload asked for while one is waiting joins it (one read serves every asker), but never
//!   the running one, which may have read the file before the ask;
//! - a change of the file seen by the poller starts a reload only when nothing runs or waits
//!   (the poller sees the change again once the queue is idle);
//! - at most [`MAX_WAITING`] jobs wait; beyond that a request is refused.
//!
//! This file must not touch the `Node`: results travel back as [`Outcome`]s.

use crate::atomic_file;
use acl::Policy;
use std::collections::VecDeque;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Jobs waiting behind the running one, at most.
pub const MAX_WAITING: usize = 16;
/// Requests served by one reload, at most (more start another).
pub const MAX_WAITERS: usize = 64;

/// What identifies a version of the file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    mtime_ns: i128,
    ctime_ns: i128,
    len: u64,
    ino: u64,
}

/// The file's stamp now (`None`: it cannot be looked at).
pub fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        len: m.len(),
        ino: m.ino(),
    })
}

/// How often the watcher thread looks at the file.
pub const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// Starts a thread that looks at the file's stamp every [`WATCH_INTERVAL`] and publishes it
/// when it changes; the thread ends once the receiver is dropped. A `stat` is not done on the
/// event loop: on ext4 it can wait for a directory that a rename holds while the journal
/// commits another process's fsync (tens of milliseconds, measured by `bench/stall.sh`).
pub fn watch(
    path: PathBuf,
    first: Option<Stamp>,
) -> std::io::Result<tokio::sync::watch::Receiver<Option<Stamp>>> {
    let (tx, rx) = tokio::sync::watch::channel(first);
    std::thread::Builder::new()
        .name("meshd-policy-watch".into())
        .spawn(move || {
            super::blocking::lower_priority();
            while !tx.is_closed() {
                std::thread::sleep(WATCH_INTERVAL);
                let st = stamp(&path);
                tx.send_if_modified(|v| {
                    let changed = *v != st;
                    *v = st;
                    changed
                });
            }
        })?;
    Ok(rx)
}

/// The file's text, and its stamp from just before it was read.
pub fn read(path: &Path) -> Result<(String, Option<Stamp>), String> {
    let st = stamp(path);
    std::fs::read_to_string(path)
        .map(|t| (t, st))
        .map_err(|e| format!("cannot read the policy file {}: {e}", path.display()))
}

/// Parses, compiles and tests `text` (read from `path`).
pub fn load(path: &Path, text: &str) -> Result<Policy, String> {
    // An empty file is far more often one caught while being written (or truncated by
    // mistake) than a wish to allow everything, which `default = "allow"` says plainly.
    if text.trim().is_empty() {
        return Err(format!(
            "{}: the policy file is empty; to allow everything, write default = \"allow\"",
            path.display()
        ));
    }
    Policy::load(text, &path.display().to_string()).map_err(|e| e.to_string())
}

/// A change to one circle, asked for by `meshctl circle add/remove`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CircleEdit {
    /// Add `member` to `circle` (creating the circle).
    Add { circle: String, member: String },
    /// Remove `member` from `circle`.
    Remove { circle: String, member: String },
}

impl CircleEdit {
    /// What the edit does, for the reply and the log.
    pub fn describe(&self) -> String {
        match self {
            CircleEdit::Add { circle, member } => format!("{member} is in circle {circle}"),
            CircleEdit::Remove { circle, member } => {
                format!("{member} removed from circle {circle}")
            }
        }
    }

    /// The new text (`None`: nothing to change).
    fn apply(&self, text: &str) -> Result<Option<String>, acl::edit::EditError> {
        match self {
            CircleEdit::Add { circle, member } => acl::edit::add_member(text, circle, member),
            CircleEdit::Remove { circle, member } => {
                acl::edit::remove_member(text, circle, member).map(Some)
            }
        }
    }
}

/// A job for the worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// Read and compile the file as it is.
    Reload,
    /// Edit the file: read, edit, check (compile and run its tests), write atomically.
    Edit(CircleEdit),
}

/// What a job came to.
pub struct Outcome {
    /// The job.
    pub task: Task,
    /// The file's stamp to remember (`None`: leave the one remembered; a job that could not
    /// read the file or changed nothing).
    pub stamp: Option<Option<Stamp>>,
    /// The compiled policy to put in force; `Ok(None)`: nothing to change.
    pub result: Result<Option<Policy>, crate::admin::Error>,
    /// How long the job took on the worker.
    pub took: Duration,
}

impl Outcome {
    /// A job that never ran.
    pub fn not_run(task: Task, why: crate::admin::Error) -> Outcome {
        Outcome {
            task,
            stamp: None,
            result: Err(why),
            took: Duration::ZERO,
        }
    }
}

/// Runs `task` on the file at `path` (on the worker thread: this blocks).
pub fn run(path: &Path, task: Task) -> Outcome {
    let t0 = Instant::now();
    let (stamp, result) = match &task {
        Task::Reload => match read(path) {
            Ok((text, st)) => (
                Some(st),
                load(path, &text)
                    .map(Some)
                    .map_err(crate::admin::Error::bad_request),
            ),
            Err(e) => (None, Err(crate::admin::Error::internal(e))),
        },
        Task::Edit(edit) => match edit_file(path, edit) {
            Ok(Some((p, st))) => (Some(st), Ok(Some(p))),
            Ok(None) => (None, Ok(None)),
            Err(e) => (None, Err(e)),
        },
    };
    Outcome {
        task,
        stamp,
        result,
        took: t0.elapsed(),
    }
}

/// The edit is checked (parsed, compiled, its tests run) before it is written; a refused
/// edit leaves the file as it was.
fn edit_file(
    path: &Path,
    edit: &CircleEdit,
) -> Result<Option<(Policy, Option<Stamp>)>, crate::admin::Error> {
    use crate::admin::Error;
    let (text, _) = read(path).map_err(Error::internal)?;
    let Some(new) = edit
        .apply(&text)
        .map_err(|e| Error::bad_request(e.to_string()))?
    else {
        return Ok(None);
    };
    let p = load(path, &new).map_err(|e| {
        Error::bad_request(format!(
            "the change would make the policy invalid, so the file was not changed:\n{e}"
        ))
    })?;
    atomic_file::write(path, new.as_bytes(), atomic_file::Mode::Keep)
        .map_err(|e| Error::internal(format!("the policy file was not changed: {e}")))?;
    Ok(Some((p, stamp(path))))
}

/// When policy jobs start; `W` is whoever waits for one (the daemon: a reply to send).
pub struct Queue<W> {
    /// Those waiting for the running job, if one runs.
    running: Option<Vec<W>>,
    /// Jobs not started yet, in order, each with those waiting for it.
    waiting: VecDeque<(Task, Vec<W>)>,
}

impl<W> Default for Queue<W> {
    fn default() -> Self {
        Queue {
            running: None,
            waiting: VecDeque::new(),
        }
    }
}

impl<W> Queue<W> {
    /// Whether a job runs or waits.
    pub fn busy(&self) -> bool {
        self.running.is_some() || !self.waiting.is_empty()
    }

    /// `waiter` asks for `task`: `Ok(Some(task))` to start now, `Ok(None)` if it waits (or
    /// joined a waiting reload), `Err(waiter)` if too many jobs wait already.
    pub fn push(&mut self, task: Task, waiter: W) -> Result<Option<Task>, W> {
        if self.running.is_none() {
            self.running = Some(vec![waiter]);
            return Ok(Some(task));
        }
        if task == Task::Reload
            && let Some((Task::Reload, ws)) = self.waiting.back_mut()
            && ws.len() < MAX_WAITERS
        {
            ws.push(waiter);
            return Ok(None);
        }
        if self.waiting.len() >= MAX_WAITING {
            return Err(waiter);
        }
        self.waiting.push_back((task, vec![waiter]));
        Ok(None)
    }

    /// The file changed on disk: a reload to start now, or `None` if the queue is busy.
    pub fn file_changed(&mut self) -> Option<Task> {
        if self.busy() {
            return None;
        }
        self.running = Some(Vec::new());
        Some(Task::Reload)
    }

    /// The running job is done: those who waited for it, and the next job to start.
    pub fn finished(&mut self) -> (Vec<W>, Option<Task>) {
        let done = self.running.take().unwrap_or_default();
        let next = self.waiting.pop_front().map(|(task, ws)| {
            self.running = Some(ws);
            task
        });
        (done, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(m: &str) -> Task {
        Task::Edit(CircleEdit::Add {
            circle: "ops".into(),
            member: m.into(),
        })
    }

    #[test]
    fn one_job_at_a_time_in_the_order_asked() {
        let mut q = Queue::default();
        assert_eq!(q.push(add("a"), 1), Ok(Some(add("a"))));
        assert_eq!(q.push(add("b"), 2), Ok(None));
        assert_eq!(q.push(Task::Reload, 3), Ok(None));
        assert_eq!(q.push(add("c"), 4), Ok(None));
        assert_eq!(q.finished(), (vec![1], Some(add("b"))));
        assert_eq!(q.finished(), (vec![2], Some(Task::Reload)));
        assert_eq!(q.finished(), (vec![3], Some(add("c"))));
        assert_eq!(q.finished(), (vec![4], None));
        assert!(!q.busy());
        assert_eq!(
            q.finished(),
            (vec![], None),
            "finishing an idle queue is harmless"
        );
    }

    #[test]
    fn reloads_asked_while_one_runs_are_coalesced_into_the_next() {
        let mut q = Queue::default();
        assert_eq!(q.push(Task::Reload, 1), Ok(Some(Task::Reload)));
        // Not joined to the running reload: it may have read the file before these asks.
        for w in 2..=5 {
            assert_eq!(q.push(Task::Reload, w), Ok(None));
        }
        assert_eq!(q.finished(), (vec![1], Some(Task::Reload)));
        assert_eq!(q.finished(), (vec![2, 3, 4, 5], None));
    }

    #[test]
    fn a_reload_after_an_edit_does_not_jump_ahead_of_it() {
        let mut q = Queue::default();
        q.push(add("a"), 1).expect("runs");
        q.push(Task::Reload, 2).expect("waits");
        q.push(add("b"), 3).expect("waits");
        // Joining the first reload would read the file before edit b: a new reload waits
        // behind b instead.
        q.push(Task::Reload, 4).expect("waits");
        q.push(Task::Reload, 5).expect("joins 4");
        assert_eq!(q.finished(), (vec![1], Some(Task::Reload)));
        assert_eq!(q.finished(), (vec![2], Some(add("b"))));
        assert_eq!(q.finished(), (vec![3], Some(Task::Reload)));
        assert_eq!(q.finished(), (vec![4, 5], None));
    }

    #[test]
    fn the_poller_starts_nothing_while_a_job_runs_or_waits() {
        let mut q: Queue<u32> = Queue::default();
        assert_eq!(q.file_changed(), Some(Task::Reload));
        assert_eq!(q.file_changed(), None, "one runs");
        q.push(add("a"), 1).expect("waits");
        assert_eq!(q.finished(), (vec![], Some(add("a"))));
        assert_eq!(q.file_changed(), None, "the edit runs");
        assert_eq!(q.finished(), (vec![1], None));
        assert_eq!(q.file_changed(), Some(Task::Reload));
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut q = Queue::default();
        q.push(add("first"), 0).expect("runs");
        for w in 1..=MAX_WAITING {
            assert_eq!(q.push(add("x"), w), Ok(None));
        }
        assert_eq!(q.push(add("y"), 99), Err(99));
        // A reload cannot join an edit either.
        assert_eq!(q.push(Task::Reload, 98), Err(98));
        // One reload serves at most MAX_WAITERS.
        let mut q = Queue::default();
        q.push(add("first"), 0).expect("runs");
        for w in 1..=MAX_WAITERS {
            assert_eq!(q.push(Task::Reload, w), Ok(None));
        }
        assert_eq!(q.push(Task::Reload, 1000), Ok(None));
        let (_, next) = q.finished();
        assert_eq!(next, Some(Task::Reload));
        assert_eq!(q.finished().0.len(), MAX_WAITERS);
        assert_eq!(q.finished(), (vec![1000], None));
    }

    fn tmp(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("meshd-policy-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn edits_are_checked_before_they_are_written() {
        let d = tmp("edit");
        let f = d.join("policy.toml");
        let text = "# kept\n[circles]\nops = []\n";
        std::fs::write(&f, text).expect("write");
        let key = "a".repeat(64);
        let o = run(&f, add(&key));
        assert!(matches!(o.result, Ok(Some(_))), "{:?}", o.result.err());
        assert!(o.stamp.is_some_and(|s| s == stamp(&f)));
        let after = std::fs::read_to_string(&f).expect("read");
        assert!(
            after.starts_with("# kept") && after.contains(&key),
            "{after}"
        );
        // The same again: nothing to change, nothing written.
        let o = run(&f, add(&key));
        assert!(matches!(o.result, Ok(None)) && o.stamp.is_none());
        // A bad member: refused, the file unchanged.
        let o = run(&f, add("not-a-key"));
        assert!(o.result.is_err() && o.stamp.is_none());
        assert_eq!(std::fs::read_to_string(&f).expect("read"), after);
        // A reload of a broken file says where, and remembers the stamp it read (so the
        // poller does not read it again and again).
        std::fs::write(&f, "[circles\n").expect("write");
        let o = run(&f, Task::Reload);
        let e = o.result.err().map(|e| e.message).unwrap_or_default();
        assert!(e.contains("policy.toml"), "{e}");
        assert_eq!(o.stamp, Some(stamp(&f)));
        let _ = std::fs::remove_dir_all(&d);
    }
}
