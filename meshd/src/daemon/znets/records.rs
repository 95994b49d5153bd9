//! A znet's records in `<state_dir>/znets/`: `NAME.toml` (its manifest, which holds the
//! znet's secret: mode 0600) and `NAME.attach.json` (the containers attached here). Written
//! atomically with [`crate::atomic_file::write`] before a change is reported done, and read
//! at start to build everything again.
//!
//! The writes block on the disk: they run on the znet worker (or before the event loop starts).

use crate::admin::Attachment;
use crate::atomic_file::{self, Mode};
use crate::znet::Manifest;
use anyhow::Context;
use std::path::{Path, PathBuf};

/// The records of one node, in one directory.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    /// The records in `<state_dir>/znets`.
    pub fn new(state_dir: &Path) -> Records {
        Records {
            dir: state_dir.join("znets"),
        }
    }

    fn manifest_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.toml"))
    }

    fn attach_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.attach.json"))
    }

    /// The names of the recorded znets, sorted.
    pub fn names(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_suffix(".toml").map(str::to_string)
            })
            .collect();
        names.sort();
        names
    }

    /// The recorded manifest and attachments of znet `name`.
    pub fn load(&self, name: &str) -> anyhow::Result<(Manifest, Vec<Attachment>)> {
        let file = self.manifest_file(name);
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let manifest =
            Manifest::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let file = self.attach_file(name);
        let attachments = match std::fs::read_to_string(&file) {
            Ok(t) => serde_json::from_str(&t)
                .with_context(|| format!("{} is not a list of attachments", file.display()))?,
            Err(_) => Vec::new(),
        };
        Ok((manifest, attachments))
    }

    /// Records a manifest (it holds the znet's secret: readable by meshd only).
    pub fn save_manifest(&self, m: &Manifest) -> anyhow::Result<()> {
        atomic_file::write(
            &self.manifest_file(&m.name),
            m.to_toml().as_bytes(),
            Mode::Exactly(0o600),
        )?;
        Ok(())
    }

    /// Records the attachments of znet `name`.
    pub fn save_attachments(&self, name: &str, a: &[Attachment]) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(a)?;
        atomic_file::write(&self.attach_file(name), text.as_bytes(), Mode::Keep)?;
        Ok(())
    }

    /// Forgets znet `name`.
    pub fn remove(&self, name: &str) {
        let _ = std::fs::remove_file(self.manifest_file(name));
        let _ = std::fs::remove_file(self.attach_file(name));
    }
}
