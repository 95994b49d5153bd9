//! The control socket: accepts `meshctl` connections and hands each request to the daemon loop.

use super::{Error, Reply, Request};
use anyhow::{Context, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// A request waiting for the daemon loop to answer it.
pub type AdminRequest = (Request, oneshot::Sender<Reply>);

/// Longest request line accepted (a peer URI is short; this is generous).
const MAX_LINE: usize = 64 * 1024;

/// The bound control socket. Dropping it removes the socket file.
pub struct Server {
    path: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Server {
    /// Binds `path` (mode 0660, group `group`), refusing if another daemon answers on it, and
    /// spawns the accept loop. Requests arrive on the returned channel.
    pub async fn bind(
        path: &Path,
        group: Option<&str>,
    ) -> anyhow::Result<(Server, mpsc::Receiver<AdminRequest>)> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create directory {}", dir.display()))?;
        }
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                bail!(
                    "admin_socket {} exists and is not a socket; move it away or choose \
                     another admin_socket",
                    path.display()
                );
            }
            if UnixStream::connect(path).await.is_ok() {
                bail!(
                    "another meshd is already running: its admin socket {} answers \
                     (stop it first, or give this one another admin_socket)",
                    path.display()
                );
            }
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove stale admin socket {}", path.display()))?;
        }
        // Created owner-only, so that nobody can connect before the group and mode are set.
        let old_mask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        nix::sys::stat::umask(old_mask);
        let listener =
            bound.with_context(|| format!("cannot create admin socket {}", path.display()))?;
        let server = Server {
            path: path.to_path_buf(),
        };
        if let Some(g) = group {
            let gid = nix::unistd::Group::from_name(g)
                .ok()
                .flatten()
                .with_context(|| format!("admin_group {g:?} does not exist"))?
                .gid;
            std::os::unix::fs::chown(path, None, Some(gid.as_raw()))
                .with_context(|| format!("cannot give {} to group {g}", path.display()))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
            .with_context(|| format!("cannot set permissions of {}", path.display()))?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(accept_loop(listener, tx));
        Ok((server, rx))
    }
}

/// Most control connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 32;

async fn accept_loop(listener: UnixListener, tx: mpsc::Sender<AdminRequest>) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _)) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    serve(stream, tx).await;
                    drop(permit);
                });
            }
            Err(e) => {
                tracing::warn!("admin socket accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve(stream: UnixStream, tx: mpsc::Sender<AdminRequest>) {
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        // At most one line of MAX_LINE bytes is ever buffered.
        match (&mut r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let too_long = line.len() > MAX_LINE;
        let reply = if too_long {
            Reply::error(Error::bad_request(format!(
                "request longer than {MAX_LINE} bytes"
            )))
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Err(e) => Reply::error(
                    Error::bad_request(format!("bad request: {e}"))
                        .with_hint("meshctl and meshd should come from the same release"),
                ),
                Ok(req) => {
                    let (rtx, rrx) = oneshot::channel();
                    let down = || Reply::error(Error::unavailable("meshd is shutting down"));
                    if tx.send((req, rtx)).await.is_err() {
                        down()
                    } else {
                        rrx.await.unwrap_or_else(|_| down())
                    }
                }
            }
        };
        let mut out = serde_json::to_vec(&reply).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
        out.push(b'\n');
        if w.write_all(&out).await.is_err() || too_long {
            break;
        }
    }
}
