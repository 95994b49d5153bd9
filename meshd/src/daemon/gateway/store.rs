//! What the gateway thread must not lose across a restart, in `<state_dir>/gateway/`:
//! `published.json` (the services this node publishes) and `names.json` (on a gateway: who
//! holds which name). Written through `atomic_file` on a blocking thread, one write at a time
//! and in order (an async lock), and answered only once written.

use crate::atomic_file::{self, Mode};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// The two files and the lock that keeps their writes in order.
#[derive(Clone)]
pub struct Store {
    dir: PathBuf,
    lock: Rc<tokio::sync::Mutex<()>>,
}

const PUBLISHED: &str = "published.json";
const NAMES: &str = "names.json";

impl Store {
    /// The store under `state_dir`.
    pub fn new(state_dir: &Path) -> Store {
        Store {
            dir: state_dir.join("gateway"),
            lock: Rc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The services published before the restart. A file that cannot be read is reported and
    /// kept aside (renamed `.bad`), never silently overwritten.
    pub fn published(&self) -> Vec<api::Publish> {
        self.read(PUBLISHED).unwrap_or_default()
    }

    /// The names held on this gateway before the restart.
    pub fn names(&self) -> Vec<(String, [u8; 32])> {
        let m: BTreeMap<String, String> = self.read(NAMES).unwrap_or_default();
        m.into_iter()
            .filter_map(|(n, k)| {
                let mut key = [0u8; 32];
                let ok = k.len() == 64
                    && (0..32).all(|i| match u8::from_str_radix(&k[2 * i..2 * i + 2], 16) {
                        Ok(b) => {
                            key[i] = b;
                            true
                        }
                        Err(_) => false,
                    });
                if !ok {
                    tracing::warn!(name = %n, "gateway names: a held name with a bad key was dropped");
                }
                ok.then_some((n, key))
            })
            .collect()
    }

    fn read<T: serde::de::DeserializeOwned>(&self, file: &str) -> Option<T> {
        let path = self.dir.join(file);
        let text = match std::fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::error!("cannot read {}: {e}", path.display());
                return None;
            }
        };
        match serde_json::from_slice(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                let bad = path.with_extension("json.bad");
                tracing::error!(
                    "{} is not valid ({e}); kept as {} and ignored",
                    path.display(),
                    bad.display()
                );
                let _ = std::fs::rename(&path, &bad);
                None
            }
        }
    }

    /// Saves the published services.
    pub async fn save_published(&self, list: &[api::Publish]) -> std::io::Result<()> {
        self.write(PUBLISHED, serde_json::to_vec_pretty(list)?)
            .await
    }

    /// Saves the held names.
    pub async fn save_names(&self, held: Vec<(String, [u8; 32])>) -> std::io::Result<()> {
        let m: BTreeMap<String, String> = held
            .into_iter()
            .map(|(n, k)| (n, k.iter().map(|b| format!("{b:02x}")).collect()))
            .collect();
        self.write(NAMES, serde_json::to_vec_pretty(&m)?).await
    }

    async fn write(&self, file: &str, bytes: Vec<u8>) -> std::io::Result<()> {
        let _turn = self.lock.lock().await;
        let path = self.dir.join(file);
        tokio::task::spawn_blocking(move || atomic_file::write(&path, &bytes, Mode::Exactly(0o600)))
            .await
            .map_err(|e| std::io::Error::other(format!("the writer thread failed: {e}")))?
    }
}
