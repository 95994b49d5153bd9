//! Handles: a registry of live nodes. A handle is a number that is never reused, so a stale or
//! made-up one is an error, not a crash. Each node holds a lock on its state directory for as
//! long as it exists.

use crate::callbacks::{EventSink, LogSink};
use crate::error::{Error, PlStatus};
use crate::node::{Node, State, lock, on_other_thread, stopping};
use meshd::config::Config;
use meshd::identity::Identity;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

fn registry() -> &'static Mutex<HashMap<u64, Arc<Node>>> {
    static NODES: OnceLock<Mutex<HashMap<u64, Arc<Node>>>> = OnceLock::new();
    NODES.get_or_init(Default::default)
}

static NEXT_HANDLE: AtomicU64 = AtomicU64::new(1);

fn invalid_handle(handle: u64) -> Error {
    Error::new(
        PlStatus::PlErrInvalidHandle,
        format!("{handle} is not a node handle (never made by pl_node_new, or already freed)"),
    )
}

/// Locks `<state_dir>/node.lock` for as long as the node exists: two nodes on one state
/// directory would share a key and overwrite each other's files.
fn lock_state_dir(cfg: &Config) -> Result<std::fs::File, Error> {
    let dir = &cfg.state_dir;
    std::fs::create_dir_all(dir).map_err(|e| {
        Error::new(
            PlStatus::PlErrIo,
            format!("cannot create state_dir {}: {e}", dir.display()),
        )
    })?;
    let path = dir.join("node.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| {
            Error::new(
                PlStatus::PlErrIo,
                format!("cannot open {}: {e}", path.display()),
            )
        })?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::new(
            PlStatus::PlErrInvalidArgument,
            format!(
                "state_dir {} is in use by another node (of this process or another): give \
                 each node its own state_dir",
                dir.display()
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::new(
            PlStatus::PlErrIo,
            format!("cannot lock {}: {e}", path.display()),
        )),
    }
}

/// Makes a node and returns its handle.
pub fn create(cfg: Config, log: Option<LogSink>, events: Option<EventSink>) -> Result<u64, Error> {
    let dir_lock = lock_state_dir(&cfg)?;
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
        protect: Mutex::new(meshd::protect::Protect::none()),
        state: Mutex::new(State::Stopped),
        _dir_lock: dir_lock,
    });
    let handle = NEXT_HANDLE.fetch_add(1, Ordering::Relaxed);
    lock(registry()).insert(handle, node);
    Ok(handle)
}

/// The node of `handle`.
pub fn get(handle: u64) -> Result<Arc<Node>, Error> {
    lock(registry())
        .get(&handle)
        .cloned()
        .ok_or_else(|| invalid_handle(handle))
}

/// Stops (if running) and forgets the node of `handle`. Fails, keeping the handle, when the
/// node cannot be stopped now (being started, or a callback of the app has not returned).
pub fn free(handle: u64) -> Result<(), Error> {
    on_other_thread()?;
    let node = get(handle)?;
    match node.stop() {
        Ok(()) => {}
        Err(e) if e.status == PlStatus::PlErrNotRunning => {}
        Err(e) => return Err(e),
    }
    {
        let mut state = lock(&node.state);
        match &*state {
            State::Stopped => *state = State::Freed,
            State::Freed => return Err(invalid_handle(handle)),
            State::Starting | State::Running(_) => {
                return Err(Error::new(
                    PlStatus::PlErrAlreadyRunning,
                    "the node is being started by another call; free it after pl_node_start \
                     returns",
                ));
            }
            State::Stopping(_) => return Err(stopping()),
        }
    }
    lock(registry()).remove(&handle);
    Ok(())
}
