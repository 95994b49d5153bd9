//! A node's own thread: a single-threaded tokio runtime around the daemon's loop
//! (`meshd::daemon::run_with`), with the app's log callback as this thread's tracing
//! subscriber. Whatever ends the loop (`stop`, a failure, a panic) ends in one `stopped` event.

use crate::callbacks::{EventSink, LogSink};
use meshd::config::Config;
use meshd::daemon::{self, Host, PacketQueue};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;

thread_local! {
    /// Set on every node's thread: calls that wait for a node refuse to run there.
    static ON_NODE_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is a node's thread (inside one of its callbacks).
pub fn on_node_thread() -> bool {
    ON_NODE_THREAD.with(|c| c.get())
}

/// What the thread needs besides the node's configuration.
pub struct Thread {
    /// The node's host side: local stack, requests, event hook, identity.
    pub host: Host,
    /// The app's log callback.
    pub log: Option<LogSink>,
    /// The app's event callback (for `stopped`).
    pub events: Option<EventSink>,
    /// Fires when `stop` is called.
    pub stop: oneshot::Receiver<()>,
    /// `start` waits here: `Ok` once `ready` was delivered, `Err` if the node never came up.
    pub up: std::sync::mpsc::Sender<Result<(), String>>,
    /// Packet mode's queue: closed when the loop ends, so `send_packet` says so.
    pub queue: Option<Arc<PacketQueue>>,
    /// Set once the loop has ended (before `stopped` is emitted).
    pub exited: Arc<AtomicBool>,
}

/// The thread's body.
pub fn run(cfg: Config, t: Thread) {
    ON_NODE_THREAD.with(|c| c.set(true));
    let Thread {
        host,
        log,
        events,
        stop,
        up,
        queue,
        exited,
    } = t;
    let outcome = catch_unwind(AssertUnwindSafe(|| run_loop(cfg, host, log, stop)));
    let error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(panic) => Some(crate::error::panic_message(panic.as_ref())),
    };
    if let Some(q) = &queue {
        q.close();
    }
    if let Some(e) = &error {
        // Before `ready` this is `start`'s error; after, nobody listens any more.
        let _ = up.send(Err(e.clone()));
    }
    exited.store(true, Ordering::SeqCst);
    if let Some(sink) = events {
        sink.emit(&serde_json::json!({ "event": "stopped", "error": error }));
    }
}

fn run_loop(
    cfg: Config,
    host: Host,
    log: Option<LogSink>,
    stop: oneshot::Receiver<()>,
) -> Result<(), String> {
    // The filter was checked by pl_node_new.
    let _log_guard = match log.map(|sink| crate::logging::subscriber(sink, &cfg.log_level)) {
        Some(Ok(s)) => Some(tracing::subscriber::set_default(s)),
        Some(Err(e)) => return Err(format!("{e:#}")),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the node's runtime: {e}"))?;
    let result = rt.block_on(daemon::run_with(cfg, host, async {
        let _ = stop.await;
    }));
    // Host name lookups run on tokio's blocking threads: do not wait for a slow resolver.
    rt.shutdown_timeout(Duration::from_millis(200));
    result.map_err(|e| {
        let e = format!("{e:#}");
        tracing::error!("the node stopped: {e}");
        e
    })
}
