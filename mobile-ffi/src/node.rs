//! Nodes and their lifecycle: a registry of live handles (a handle is a number that is never
//! reused, so a stale or made-up one is an error, not a crash), and one thread per running node
//! with its own single-threaded tokio runtime around `meshd::daemon::run_with`.

use crate::callbacks::{EventSink, LogSink, PacketOut};
use crate::error::{Error, PlStatus};
use meshd::admin::{Reply, Request};
use meshd::config::Config;
use meshd::daemon::{self, Attach, Event, Host, PacketPort, PacketQueue, Responder};
use meshd::identity::Identity;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// How long `start` waits for the node to bind its sockets and come up.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request (status, peers, add/remove peer) waits for the node's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `stop` waits for the node's thread to finish.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Packets queued in packet mode before `send_packet` refuses more.
const PACKET_QUEUE: usize = 4096;

/// How the node meets the app's network stack.
pub enum Mode {
    /// A TUN descriptor the OS gave the app.
    Fd(i32),
    /// Packets through `send_packet` and a callback.
    Packets(PacketOut),
}

struct Running {
    shutdown: oneshot::Sender<()>,
    requests: mpsc::Sender<(Request, Responder)>,
    queue: Option<Arc<PacketQueue>>,
    thread: JoinHandle<()>,
    thread_id: ThreadId,
}

/// One node: its configuration and identity (known from `pl_node_new` on, so the app can
/// configure its VPN interface with the address before it starts the node), its callbacks,
/// and its thread while it runs.
pub struct Node {
    cfg: Config,
    identity: Identity,
    log: Option<LogSink>,
    events: Option<EventSink>,
    running: Mutex<Option<Running>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the data consistent; a panic elsewhere must not
    // make the node unusable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn registry() -> &'static Mutex<HashMap<u64, Arc<Node>>> {
    static NODES: OnceLock<Mutex<HashMap<u64, Arc<Node>>>> = OnceLock::new();
    NODES.get_or_init(Default::default)
}

static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

/// Makes a node and returns its handle.
pub fn create(cfg: Config, log: Option<LogSink>, events: Option<EventSink>) -> Result<u64, Error> {
    let path = cfg.identity_path();
    let (identity, _) = Identity::load_or_create(&path).map_err(|e| {
        Error::new(
            PlStatus::PlErrIo,
            format!(
                "cannot load or create the node's key {}: {e:#}",
                path.display()
            ),
        )
    })?;
    let node = Arc::new(Node {
        cfg,
        identity,
        log,
        events,
        running: Mutex::new(None),
    });
    let handle = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
    lock(registry()).insert(handle, node);
    Ok(handle)
}

/// The node of `handle`.
pub fn get(handle: u64) -> Result<Arc<Node>, Error> {
    lock(registry()).get(&handle).cloned().ok_or_else(|| {
        Error::new(
            PlStatus::PlErrInvalidHandle,
            format!("{handle} is not a node handle (never made by pl_node_new, or already freed)"),
        )
    })
}

/// Stops (if running) and forgets the node of `handle`.
pub fn free(handle: u64) -> Result<(), Error> {
    let node = lock(registry()).remove(&handle).ok_or_else(|| {
        Error::new(
            PlStatus::PlErrInvalidHandle,
            format!("{handle} is not a node handle (never made by pl_node_new, or already freed)"),
        )
    })?;
    match node.stop() {
        Ok(()) => Ok(()),
        Err(e) if e.status == PlStatus::PlErrNotRunning => Ok(()),
        Err(e) => Err(e),
    }
}

fn event_json(e: &Event) -> serde_json::Value {
    match e {
        Event::Ready {
            address,
            public_key,
        } => serde_json::json!({
            "event": "ready",
            "address": address.to_string(),
            "public_key": public_key.to_string(),
        }),
        Event::PeerUp(k) | Event::PeerDown(k) => serde_json::json!({
            "event": if matches!(e, Event::PeerUp(_)) { "peer_up" } else { "peer_down" },
            "public_key": k.to_string(),
            "address": k.address().to_string(),
        }),
    }
}

impl Node {
    /// The node's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Starts the node's thread; returns once it is up (or failed to come up).
    pub fn start(&self, mode: Mode) -> Result<(), Error> {
        let mut running = lock(&self.running);
        if let Some(r) = running.as_ref() {
            if !r.thread.is_finished() {
                return Err(Error::new(
                    PlStatus::PlErrAlreadyRunning,
                    "the node is running already; call pl_node_stop first",
                ));
            }
            // It stopped by itself (the `stopped` event said why): reap it and start anew.
            if let Some(r) = running.take() {
                let _ = r.thread.join();
            }
        }
        let (local, queue) = match mode {
            Mode::Fd(fd) => {
                let dup = meshd::tun::adopt(fd)
                    .map_err(|e| Error::new(PlStatus::PlErrBadDescriptor, format!("{e:#}")))?;
                (Attach::TunFd(dup), None)
            }
            Mode::Packets(out) => {
                let queue = PacketQueue::new(PACKET_QUEUE);
                let port = PacketPort {
                    queue: queue.clone(),
                    sink: Box::new(move |p| out.deliver(p)),
                };
                (Attach::Packets(port), Some(queue))
            }
        };
        let (req_tx, req_rx) = mpsc::channel(64);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (up_tx, up_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let cfg = self.cfg.clone();
        let identity = Identity::from_seed(&self.identity.secret_seed());
        let log = self.log;
        let events = self.events;
        let up_on_ready = up_tx.clone();
        let on_event = Box::new(move |e: Event| {
            if matches!(e, Event::Ready { .. }) {
                let _ = up_on_ready.send(Ok(()));
            }
            if let Some(sink) = events {
                sink.emit(&event_json(&e));
            }
        });
        let host = Host {
            local: Some(local),
            admin_socket: false,
            requests: Some(req_rx),
            on_event: Some(on_event),
            identity: Some(identity),
        };
        let thread = std::thread::Builder::new()
            .name("planetary-node".into())
            .spawn(move || node_thread(cfg, host, log, events, stop_rx, up_tx))
            .map_err(|e| Error::new(PlStatus::PlErrIo, format!("cannot start a thread: {e}")))?;
        let thread_id = thread.thread().id();
        let outcome = match up_rx.recv_timeout(START_TIMEOUT) {
            Ok(r) => r,
            Err(_) => Err(format!(
                "the node did not come up within {} s",
                START_TIMEOUT.as_secs()
            )),
        };
        if let Err(why) = outcome {
            let _ = stop_tx.send(());
            if let Some(q) = &queue {
                q.close();
            }
            join_within(thread, STOP_TIMEOUT);
            return Err(Error::new(PlStatus::PlErrStartFailed, why));
        }
        *running = Some(Running {
            shutdown: stop_tx,
            requests: req_tx,
            queue,
            thread,
            thread_id,
        });
        Ok(())
    }

    /// Stops the node and waits (boundedly) for its thread.
    pub fn stop(&self) -> Result<(), Error> {
        let r = {
            let mut running = lock(&self.running);
            if let Some(r) = running.as_ref() {
                on_other_thread(r)?;
            }
            running.take()
        };
        let Some(r) = r else {
            return Err(Error::new(
                PlStatus::PlErrNotRunning,
                "the node is not running (never started, or stopped already)",
            ));
        };
        let finished_by_itself = r.thread.is_finished();
        let _ = r.shutdown.send(());
        if let Some(q) = &r.queue {
            q.close();
        }
        if !join_within(r.thread, STOP_TIMEOUT) {
            return Err(Error::new(
                PlStatus::PlErrTimeout,
                format!(
                    "the node's thread did not finish within {} s; it was left to finish alone",
                    STOP_TIMEOUT.as_secs()
                ),
            ));
        }
        if finished_by_itself {
            return Err(Error::new(
                PlStatus::PlErrNotRunning,
                "the node had stopped by itself already (see its `stopped` event)",
            ));
        }
        Ok(())
    }

    /// Queues one packet (packet mode).
    pub fn send_packet(&self, packet: &[u8]) -> Result<(), Error> {
        let queue = {
            let running = lock(&self.running);
            let Some(r) = running.as_ref() else {
                return Err(not_running());
            };
            r.queue.clone().ok_or_else(|| {
                Error::new(
                    PlStatus::PlErrInvalidArgument,
                    "the node runs on a TUN descriptor, not in packet mode: send packets by \
                     writing them to the descriptor",
                )
            })?
        };
        let mtu = usize::from(self.cfg.tun.mtu);
        if packet.is_empty() || packet[0] >> 4 != 6 {
            return Err(Error::new(
                PlStatus::PlErrInvalidArgument,
                "not an IPv6 packet (the first nibble must be 6); the mesh carries IPv6 only",
            ));
        }
        if packet.len() > mtu {
            return Err(Error::new(
                PlStatus::PlErrInvalidArgument,
                format!("a packet of {} bytes exceeds the MTU {mtu}", packet.len()),
            ));
        }
        queue.push(packet.to_vec()).map_err(|e| match e {
            daemon::PushError::Full => Error::new(
                PlStatus::PlErrQueueFull,
                "the node's queue is full; the packet was dropped (not fatal)",
            ),
            daemon::PushError::Closed => not_running(),
        })
    }

    /// Asks the running node and waits (boundedly) for the answer.
    pub fn request(&self, req: Request) -> Result<serde_json::Value, Error> {
        let tx = {
            let running = lock(&self.running);
            let Some(r) = running.as_ref() else {
                return Err(not_running());
            };
            on_other_thread(r)?;
            r.requests.clone()
        };
        let (reply_tx, reply_rx) = std::sync::mpsc::sync_channel::<Reply>(1);
        let responder: Responder = Box::new(move |r| {
            let _ = reply_tx.send(r);
        });
        tx.try_send((req, responder)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => Error::new(
                PlStatus::PlErrTimeout,
                "the node has 64 requests waiting already; try again shortly",
            ),
            mpsc::error::TrySendError::Closed(_) => not_running(),
        })?;
        let started = Instant::now();
        let reply = reply_rx
            .recv_timeout(REQUEST_TIMEOUT)
            .map_err(|e| match e {
                std::sync::mpsc::RecvTimeoutError::Timeout => Error::new(
                    PlStatus::PlErrTimeout,
                    format!(
                        "the node did not answer within {} s",
                        started.elapsed().as_secs()
                    ),
                ),
                std::sync::mpsc::RecvTimeoutError::Disconnected => not_running(),
            })?;
        match reply.ok {
            true => Ok(reply.data),
            false => Err(Error::new(
                PlStatus::PlErrRefused,
                reply.error.unwrap_or_else(|| "refused".into()),
            )),
        }
    }
}

fn not_running() -> Error {
    Error::new(
        PlStatus::PlErrNotRunning,
        "the node is not running: call pl_node_start (or it stopped by itself: see its \
         `stopped` event)",
    )
}

fn on_other_thread(r: &Running) -> Result<(), Error> {
    if std::thread::current().id() == r.thread_id {
        return Err(Error::new(
            PlStatus::PlErrWrongThread,
            "called from the node's own thread (inside a callback); this call waits for the \
             node, so make it from another thread",
        ));
    }
    Ok(())
}

/// Joins `thread` if it finishes within `limit`; otherwise leaves it to finish alone.
fn join_within(thread: JoinHandle<()>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while !thread.is_finished() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = thread.join();
    true
}

/// The node's thread: a single-threaded runtime around the daemon's loop, with the app's log
/// callback as this thread's tracing subscriber.
fn node_thread(
    cfg: Config,
    host: Host,
    log: Option<LogSink>,
    events: Option<EventSink>,
    stop: oneshot::Receiver<()>,
    up: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let _log_guard = match log.map(|sink| crate::logging::subscriber(sink, &cfg.log_level)) {
        Some(Ok(s)) => Some(tracing::subscriber::set_default(s)),
        Some(Err(e)) => {
            let _ = up.send(Err(format!("{e:#}")));
            return;
        }
        None => None,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = up.send(Err(format!("cannot start the node's runtime: {e}")));
            return;
        }
    };
    let result = rt.block_on(daemon::run_with(cfg, host, async {
        let _ = stop.await;
    }));
    // Host name lookups run on tokio's blocking threads: do not wait for a slow resolver.
    rt.shutdown_timeout(Duration::from_millis(200));
    let error = result.as_ref().err().map(|e| format!("{e:#}"));
    if let Some(e) = &error {
        tracing::error!("the node stopped: {e}");
        // Before `ready`, this is `start`'s error; after, nobody listens on `up` any more.
        let _ = up.send(Err(e.clone()));
    }
    if let Some(sink) = events {
        sink.emit(&serde_json::json!({ "event": "stopped", "error": error }));
    }
}
