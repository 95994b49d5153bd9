//! A node's lifecycle: start, stop, and the calls that need it running; one thread per running
//! node ([`crate::thread`]). Handles live in [`crate::registry`].
//!
//! A node moves through [`State`]s under its lock, and no call waits for the node while
//! holding it: `start` marks the node `Starting`, lets go, and waits; `stop` marks it
//! `Stopping`, lets go, and joins. Whoever arrives meanwhile gets an answer at once. Once
//! `pl_node_free` has returned OK, the node's thread is gone, so no callback can see the app's
//! `ctx` again.

use crate::callbacks::{EventSink, LogSink, PacketOut};
use crate::error::{Error, PlStatus};
use crate::thread::{Thread, on_node_thread};
use api::{Reply, Request};
use meshd::config::Config;
use meshd::daemon::{self, Attach, Event, Host, PacketPort, PacketQueue, Responder};
use meshd::identity::Identity;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
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

pub(crate) struct Running {
    shutdown: oneshot::Sender<()>,
    requests: mpsc::Sender<(Request, Responder)>,
    queue: Option<Arc<PacketQueue>>,
    thread: JoinHandle<()>,
    /// The loop has ended by itself (the `stopped` event is on its way or delivered).
    exited: Arc<AtomicBool>,
}

/// Where a node is in its life.
pub(crate) enum State {
    Stopped,
    /// `start` is waiting for the node to come up.
    Starting,
    Running(Running),
    /// Its thread is being joined (`None`: by a `stop` in progress), or did not finish in time
    /// (a callback of the app has not returned): callbacks may still run.
    Stopping(Option<JoinHandle<()>>),
    /// `pl_node_free` is done with it.
    Freed,
}

/// One node: its configuration and identity (known from `pl_node_new` on, so the app can
/// configure its VPN interface with the address before it starts the node), its callbacks,
/// its state, and the lock on its state directory.
pub struct Node {
    pub(crate) cfg: Config,
    pub(crate) identity: Identity,
    pub(crate) log: Option<LogSink>,
    pub(crate) events: Option<EventSink>,
    /// Socket protection for the next start ([`Node::set_protect`]).
    pub(crate) protect: Mutex<meshd::protect::Protect>,
    pub(crate) state: Mutex<State>,
    pub(crate) _dir_lock: std::fs::File,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the data consistent; a panic elsewhere must not
    // make the node unusable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn freed() -> Error {
    Error::new(
        PlStatus::PlErrInvalidHandle,
        "this node handle was freed (by pl_node_free on another thread)",
    )
}

pub(crate) fn stopping() -> Error {
    Error::new(
        PlStatus::PlErrTimeout,
        "the node's thread has not finished yet (one of the app's callbacks has not returned); \
         callbacks may still run, so keep ctx valid and call pl_node_stop or pl_node_free again",
    )
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

/// Joins `thread` if it finishes within `limit`; otherwise gives it back.
fn join_within(thread: JoinHandle<()>, limit: Duration) -> Result<(), JoinHandle<()>> {
    let deadline = Instant::now() + limit;
    while !thread.is_finished() {
        if Instant::now() >= deadline {
            return Err(thread);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = thread.join();
    Ok(())
}

impl Node {
    /// The node's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Starts the node's thread; returns once it is up (the `ready` event delivered) or failed
    /// to come up.
    pub fn start(&self, mode: Mode) -> Result<(), Error> {
        on_other_thread()?;
        let leftover = {
            let mut state = lock(&self.state);
            match &*state {
                State::Running(r) if !r.exited.load(Ordering::SeqCst) => {
                    return Err(Error::new(
                        PlStatus::PlErrAlreadyRunning,
                        "the node is running already; call pl_node_stop first",
                    ));
                }
                State::Starting => {
                    return Err(Error::new(
                        PlStatus::PlErrAlreadyRunning,
                        "the node is being started by another call",
                    ));
                }
                State::Stopping(None) => return Err(stopping()),
                State::Stopping(Some(t)) if !t.is_finished() => return Err(stopping()),
                State::Freed => return Err(freed()),
                _ => {}
            }
            // A node that stopped by itself (its `stopped` event said why) is reaped below.
            match std::mem::replace(&mut *state, State::Starting) {
                State::Running(r) => Some(r.thread),
                State::Stopping(t) => t,
                _ => None,
            }
        };
        if let Some(t) = leftover
            && let Err(t) = join_within(t, STOP_TIMEOUT)
        {
            *lock(&self.state) = State::Stopping(Some(t));
            return Err(stopping());
        }
        let result = self.spawn(mode);
        let mut state = lock(&self.state);
        match result {
            Ok(r) => {
                *state = State::Running(r);
                Ok(())
            }
            Err((e, thread)) => {
                *state = match thread {
                    Some(t) => State::Stopping(Some(t)),
                    None => State::Stopped,
                };
                Err(e)
            }
        }
    }

    /// Makes the node's thread and waits for it to come up. On failure, gives back the thread
    /// if it has not finished.
    fn spawn(&self, mode: Mode) -> Result<Running, (Error, Option<JoinHandle<()>>)> {
        let (local, queue) = match mode {
            Mode::Fd(fd) => {
                let dup = meshd::tun::adopt(fd).map_err(|e| {
                    (
                        Error::new(PlStatus::PlErrBadDescriptor, format!("{e:#}")),
                        None,
                    )
                })?;
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
        let events = self.events;
        let up_on_ready = up_tx.clone();
        let on_event = Box::new(move |e: Event| {
            if let Some(sink) = events {
                sink.emit(&event_json(&e));
            }
            // After the app heard `ready`: `start` returns only then.
            if matches!(e, Event::Ready { .. }) {
                let _ = up_on_ready.send(Ok(()));
            }
        });
        let exited = Arc::new(AtomicBool::new(false));
        let t = Thread {
            host: Host {
                local: Some(local),
                admin_socket: false,
                requests: Some(req_rx),
                on_event: Some(on_event),
                identity: Some(Identity::from_seed(&self.identity.secret_seed())),
                // An app's process: its signals and its service manager are the app's.
                service: false,
                protect: lock(&self.protect).clone(),
            },
            log: self.log,
            events,
            stop: stop_rx,
            up: up_tx,
            queue: queue.clone(),
            exited: exited.clone(),
        };
        let cfg = self.cfg.clone();
        let thread = std::thread::Builder::new()
            .name("planetary-node".into())
            .spawn(move || crate::thread::run(cfg, t))
            .map_err(|e| {
                (
                    Error::new(PlStatus::PlErrIo, format!("cannot start a thread: {e}")),
                    None,
                )
            })?;
        let outcome = match up_rx.recv_timeout(START_TIMEOUT) {
            Ok(r) => r,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(format!(
                "the node did not come up within {} s",
                START_TIMEOUT.as_secs()
            )),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Err("the node's thread ended without saying why (a bug, please report it)".into())
            }
        };
        if let Err(why) = outcome {
            let _ = stop_tx.send(());
            let left = join_within(thread, STOP_TIMEOUT).err();
            return Err((Error::new(PlStatus::PlErrStartFailed, why), left));
        }
        Ok(Running {
            shutdown: stop_tx,
            requests: req_tx,
            queue,
            thread,
            exited,
        })
    }

    /// Stops the node and waits (at most [`STOP_TIMEOUT`]) for its thread.
    pub fn stop(&self) -> Result<(), Error> {
        on_other_thread()?;
        let (thread, by_itself) = {
            let mut state = lock(&self.state);
            match std::mem::replace(&mut *state, State::Stopping(None)) {
                State::Running(r) => {
                    let by_itself = r.exited.load(Ordering::SeqCst);
                    let _ = r.shutdown.send(());
                    (r.thread, by_itself)
                }
                State::Stopping(Some(t)) => (t, false),
                other => {
                    let e = match &other {
                        State::Starting => Error::new(
                            PlStatus::PlErrNotRunning,
                            "the node is still starting (pl_node_start has not returned); \
                             stop it after that",
                        ),
                        State::Stopping(None) => stopping(),
                        State::Freed => freed(),
                        _ => Error::new(
                            PlStatus::PlErrNotRunning,
                            "the node is not running (never started, or stopped already)",
                        ),
                    };
                    *state = other;
                    return Err(e);
                }
            }
        };
        if let Err(t) = join_within(thread, STOP_TIMEOUT) {
            *lock(&self.state) = State::Stopping(Some(t));
            return Err(stopping());
        }
        *lock(&self.state) = State::Stopped;
        if by_itself {
            return Err(Error::new(
                PlStatus::PlErrNotRunning,
                "the node had stopped by itself already (see its `stopped` event)",
            ));
        }
        Ok(())
    }

    /// Sets the socket protection the node uses from its next start on (every socket it
    /// opens towards the underlay goes through it: [`meshd::protect`]). Refused while the
    /// node runs, since its sockets are open already.
    pub fn set_protect(&self, protect: meshd::protect::Protect) -> Result<(), Error> {
        let state = lock(&self.state);
        let stopped = match &*state {
            State::Stopped => true,
            // It stopped by itself: its thread no longer opens sockets.
            State::Running(r) => r.exited.load(Ordering::SeqCst),
            _ => false,
        };
        if !stopped {
            return Err(Error::new(
                PlStatus::PlErrAlreadyRunning,
                "socket protection is set before the node starts (its sockets are open \
                 already); stop the node, set it, and start again",
            ));
        }
        *lock(&self.protect) = protect;
        Ok(())
    }

    /// The device's network changed: the node binds its sockets again, re-learns its public
    /// endpoints and tells its peers where it is now.
    pub fn network_changed(&self) -> Result<api::NetworkChanged, Error> {
        self.request_as(Request::NetworkChanged)
    }

    /// Queues one packet (packet mode).
    pub fn send_packet(&self, packet: &[u8]) -> Result<(), Error> {
        let queue = {
            let state = lock(&self.state);
            let State::Running(r) = &*state else {
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
        on_other_thread()?;
        let tx = {
            let state = lock(&self.state);
            let State::Running(r) = &*state else {
                return Err(not_running());
            };
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
        reply.into_result().map_err(refused)
    }

    /// [`Node::request`], its answer read as a `T`.
    pub fn request_as<T: serde::de::DeserializeOwned>(&self, req: Request) -> Result<T, Error> {
        let data = self.request(req)?;
        serde_json::from_value(data).map_err(|e| {
            Error::new(
                PlStatus::PlErrRefused,
                format!("a bug: the node's answer does not match the library's types: {e}"),
            )
        })
    }
}

/// The node refused a request: its message, and its hint after a semicolon.
fn refused(e: api::Error) -> Error {
    let message = match e.hint {
        Some(hint) => format!("{}; {hint}", e.message),
        None => e.message,
    };
    Error::new(PlStatus::PlErrRefused, message)
}

fn not_running() -> Error {
    Error::new(
        PlStatus::PlErrNotRunning,
        "the node is not running: call pl_node_start (or it stopped by itself: see its \
         `stopped` event)",
    )
}

/// Refuses calls that wait for a node on a node's thread (inside a callback): the node would
/// wait for itself, or two nodes for each other.
pub(crate) fn on_other_thread() -> Result<(), Error> {
    if on_node_thread() {
        return Err(Error::new(
            PlStatus::PlErrWrongThread,
            "called from inside a node's callback; this call waits for a node, so make it from \
             another thread",
        ));
    }
    Ok(())
}
