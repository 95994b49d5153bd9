//! Peers added at runtime (`meshctl peer add`, persistent by default), kept across restarts
//! in `<state_dir>/peers.json`.
//!
//! The store is read once at start (before the event loop). A change is made in memory at
//! once, and the whole list is then written atomically (`fsync`ed) by the store's own writer
//! thread ([`super::state_file`]), never on the event loop. Saves are written in the order the
//! changes were made, so a later save is never overtaken by an earlier one; the request that
//! made a change is answered only once its save is written (or with the error if it failed):
//! the loop [`park`](PeerStore::park)s the reply and [`finish`](PeerStore::finish)es it.

use super::Responder;
use super::state_file::{StateFile, Written};
use crate::admin::Reply;
use crate::uri::PeerUri;
use anyhow::Context;
use std::collections::HashMap;
use std::path::Path;

/// Saves written or waiting to be, at most (a change beyond that is refused).
pub const MAX_PENDING_SAVES: usize = 32;

/// Which change a save records (for the error message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Add,
    Remove,
}

/// A save the writer is done with.
pub type Saved = Written;

/// Peers added with `meshctl peer add`, kept in `<state_dir>/peers.json`.
pub struct PeerStore {
    peers: Vec<PeerUri>,
    file: StateFile,
    /// Saves handed to the writer and not finished, with what they record.
    pending: HashMap<u64, Change>,
    /// The save queued by the last change, until the loop takes it ([`PeerStore::take_queued`]).
    queued: Option<u64>,
    /// Replies waiting for their save.
    parked: HashMap<u64, (Reply, Responder)>,
}

impl PeerStore {
    /// Loads the store (an absent file is an empty store).
    pub fn open(state_dir: &Path) -> anyhow::Result<PeerStore> {
        let path = state_dir.join("peers.json");
        let peers = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let list: Vec<String> = serde_json::from_str(&text).with_context(|| {
                    format!(
                        "{} is corrupt (expected a JSON list of peer URIs); fix or delete it",
                        path.display()
                    )
                })?;
                list.iter()
                    .map(|s| {
                        s.parse()
                            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
                    })
                    .collect::<anyhow::Result<_>>()?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(PeerStore {
            peers,
            file: StateFile::new("meshd-peers", path, MAX_PENDING_SAVES),
            pending: HashMap::new(),
            queued: None,
            parked: HashMap::new(),
        })
    }

    /// The stored peers.
    pub fn peers(&self) -> &[PeerUri] {
        &self.peers
    }

    /// Hands the list as it is now to the writer.
    fn save(&mut self, change: Change) -> anyhow::Result<()> {
        let list: Vec<String> = self.peers.iter().map(|p| p.to_string()).collect();
        let text = serde_json::to_string_pretty(&list)?;
        let ticket = self.file.submit(text)?;
        self.pending.insert(ticket, change);
        self.queued = Some(ticket);
        Ok(())
    }

    /// Adds (or replaces) the peer of `uri`'s endpoint and queues a save.
    pub(super) fn add(&mut self, uri: PeerUri) -> anyhow::Result<()> {
        self.peers.retain(|p| p.endpoint() != uri.endpoint());
        self.peers.push(uri);
        self.save(Change::Add)
    }

    /// Removes the peer of `uri`'s endpoint; `true` (and a save queued) if it was stored.
    pub(super) fn remove(&mut self, uri: &PeerUri) -> anyhow::Result<bool> {
        let before = self.peers.len();
        self.peers.retain(|p| p.endpoint() != uri.endpoint());
        if self.peers.len() == before {
            return Ok(false);
        }
        self.save(Change::Remove)?;
        Ok(true)
    }

    /// The save queued by the change just made, if it made one.
    pub fn take_queued(&mut self) -> Option<u64> {
        self.queued.take()
    }

    /// Keeps `reply` until save `ticket` is written, then sends it with `respond`.
    pub fn park(&mut self, ticket: u64, reply: Reply, respond: Responder) {
        if self.pending.contains_key(&ticket) {
            self.parked.insert(ticket, (reply, respond));
        } else {
            respond(reply);
        }
    }

    /// Answers a request without a save to wait for at once, else when it is written.
    pub fn answer(&mut self, reply: Reply, respond: Responder) {
        match self.take_queued() {
            Some(ticket) => self.park(ticket, reply, respond),
            None => respond(reply),
        }
    }

    /// The next save the writer is done with.
    pub async fn saved(&mut self) -> Saved {
        self.file.written().await
    }

    /// A save is written (or failed): sends the reply that waited for it.
    pub fn finish(&mut self, s: Saved) {
        let change = self.pending.remove(&s.ticket);
        let Some((reply, respond)) = self.parked.remove(&s.ticket) else {
            if let Err(e) = s.result {
                tracing::error!("{e}");
            }
            return;
        };
        respond(match (s.result, change) {
            (Ok(()), _) => reply,
            (Err(e), Some(Change::Remove)) => {
                Reply::err(format!("peer removed, but the change was not saved: {e}"))
            }
            (Err(e), _) => Reply::err(format!("peer added, but not saved for restarts: {e}")),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("meshd-peers-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn uri(n: u16) -> PeerUri {
        format!("udp://192.0.2.1:{n}").parse().expect("uri")
    }

    #[test]
    fn saves_are_written_in_order_and_replies_wait_for_them() {
        let d = dir("order");
        let mut s = PeerStore::open(&d).expect("open");
        let got = Arc::new(Mutex::new(Vec::new()));
        for n in 1..=10 {
            s.add(uri(n)).expect("queued");
            let g = got.clone();
            s.answer(
                Reply::ok(n),
                Box::new(move |r| g.lock().expect("lock").push(r.data)),
            );
        }
        s.remove(&uri(3)).expect("queued");
        assert!(!s.remove(&uri(99)).expect("nothing to do"));
        let g = got.clone();
        s.answer(
            Reply::ok("removed"),
            Box::new(move |r| g.lock().expect("lock").push(r.data)),
        );
        assert!(
            got.lock().expect("lock").is_empty(),
            "no reply before its save"
        );
        block_on(async {
            for _ in 0..11 {
                let saved = s.saved().await;
                s.finish(saved);
            }
        });
        let replies = got.lock().expect("lock").clone();
        let mut want: Vec<serde_json::Value> = (1..=10).map(|n| n.into()).collect();
        want.push("removed".into());
        assert_eq!(replies, want);
        // The file holds the last list: the last save was not overtaken.
        let again = PeerStore::open(&d).expect("reopen");
        let mut want: Vec<PeerUri> = (1..=10).map(uri).collect();
        want.retain(|u| *u != uri(3));
        assert_eq!(again.peers(), want.as_slice());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_failed_save_is_an_error_to_the_user() {
        let d = dir("fail");
        let mut s = PeerStore::open(&d).expect("open");
        // A directory where the file should be: the rename fails.
        std::fs::create_dir_all(d.join("peers.json/x")).expect("mkdir");
        s.add(uri(1)).expect("queued");
        let got = Arc::new(Mutex::new(None));
        let g = got.clone();
        s.answer(
            Reply::ok("added"),
            Box::new(move |r| *g.lock().expect("lock") = Some(r)),
        );
        block_on(async {
            let saved = s.saved().await;
            s.finish(saved);
        });
        let r = got.lock().expect("lock").take().expect("answered");
        let e = r.error.map(|e| e.message).unwrap_or_default();
        assert!(
            !r.ok && e.contains("not saved") && e.contains("peers.json"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
