//! The names this node claims, kept across restarts in `<state_dir>/names.json` and claimed
//! again at start: the name, its service address and its delegation token.
//!
//! Read once at start (before the event loop). A change is made in memory at once and the
//! whole list is then written atomically (`fsync`ed) by the store's own writer thread
//! ([`super::state_file`]), never on the event loop; whoever waits for the save (the reply to
//! `meshctl name claim`) gets a oneshot that fires when it is written.

use super::state_file::{StateFile, Written};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use tokio::sync::oneshot;

/// Saves waiting to be written, at most (a change beyond is refused: try again).
pub const MAX_PENDING_SAVES: usize = 32;

/// One claim as saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedClaim {
    /// The name.
    pub name: String,
    /// The service address, if any.
    #[serde(default)]
    pub addr: Option<std::net::Ipv6Addr>,
    /// The delegation token, if any.
    #[serde(default)]
    pub delegation: Option<String>,
}

/// A save the writer is done with.
pub type Saved = Written;

/// Whether a save was written: `Err` names the file and the reason.
pub type SaveDone = oneshot::Receiver<Result<(), String>>;

/// The claims of this node, as saved.
pub struct NameStore {
    claims: Vec<SavedClaim>,
    file: StateFile,
    waiting: HashMap<u64, oneshot::Sender<Result<(), String>>>,
}

impl NameStore {
    /// Loads the store (an absent file is an empty one).
    pub fn open(state_dir: &Path) -> anyhow::Result<NameStore> {
        let path = state_dir.join("names.json");
        let claims = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is corrupt (expected a JSON list of {{\"name\", \"addr\", \"delegation\"}}); \
                     fix or delete it (the names are then claimed again with meshctl name claim)",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(NameStore {
            claims,
            file: StateFile::new("meshd-names", path, MAX_PENDING_SAVES),
            waiting: HashMap::new(),
        })
    }

    /// The saved claims.
    pub fn claims(&self) -> &[SavedClaim] {
        &self.claims
    }

    /// The saved claim of `name`.
    pub fn get(&self, name: &str) -> Option<&SavedClaim> {
        self.claims.iter().find(|c| c.name == name)
    }

    /// Adds or replaces the claim of `c.name`; the receiver fires once it is written.
    pub fn put(&mut self, c: SavedClaim) -> anyhow::Result<SaveDone> {
        self.claims.retain(|x| x.name != c.name);
        self.claims.push(c);
        self.save()
    }

    /// Removes the claim of `name`; `None` if there was none.
    pub fn remove(&mut self, name: &str) -> Option<anyhow::Result<SaveDone>> {
        let before = self.claims.len();
        self.claims.retain(|x| x.name != name);
        (self.claims.len() != before).then(|| self.save())
    }

    fn save(&mut self) -> anyhow::Result<SaveDone> {
        let text = serde_json::to_string_pretty(&self.claims)?;
        let ticket = self.file.submit(text)?;
        let (tx, rx) = oneshot::channel();
        self.waiting.insert(ticket, tx);
        Ok(rx)
    }

    /// The next save the writer is done with.
    pub async fn saved(&mut self) -> Saved {
        self.file.written().await
    }

    /// A save is written (or failed): tells whoever waits.
    pub fn finish(&mut self, s: Saved) {
        if let Err(e) = &s.result {
            tracing::error!("names not saved for restarts: {e}");
        }
        if let Some(tx) = self.waiting.remove(&s.ticket) {
            let _ = tx.send(s.result);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_survive_a_restart_and_a_corrupt_file_is_named() {
        let d = std::env::temp_dir().join(format!("meshd-names-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let mut s = NameStore::open(&d).expect("open");
        let c = SavedClaim {
            name: "shop".into(),
            addr: Some("fd00::1".parse().expect("addr")),
            delegation: None,
        };
        let mut done = s.put(c.clone()).expect("queued");
        let mut done2 = s
            .put(SavedClaim {
                name: "web".into(),
                addr: None,
                delegation: Some("ab".into()),
            })
            .expect("queued");
        let mut done3 = s.remove("web").expect("was there").expect("queued");
        assert!(s.remove("nope").is_none());
        rt.block_on(async {
            for _ in 0..3 {
                let saved = s.saved().await;
                s.finish(saved);
            }
        });
        for d in [&mut done, &mut done2, &mut done3] {
            assert_eq!(d.try_recv().expect("told"), Ok(()));
        }
        let again = NameStore::open(&d).expect("reopen");
        assert_eq!(again.claims(), std::slice::from_ref(&c));
        std::fs::write(d.join("names.json"), "{").expect("write");
        let e = format!("{:#}", NameStore::open(&d).err().expect("corrupt"));
        assert!(
            e.contains("names.json") && e.contains("fix or delete"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}
