//! The control socket: accepts `meshctl` connections and hands each request to the daemon loop.

use super::{Reply, Request};
use anyhow::{Context, bail};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
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
        if std::fs::symlink_metadata(path).is_ok() {
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
        let listener = UnixListener::bind(path)
            .with_context(|| format!("cannot create admin socket {}", path.display()))?;
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

async fn accept_loop(listener: UnixListener, tx: mpsc::Sender<AdminRequest>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream, tx.clone()));
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
    let mut lines = BufReader::new(r.take(MAX_LINE as u64 * 64)).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.len() > MAX_LINE {
            break;
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Err(e) => Reply::err(format!("bad request: {e}")),
            Ok(req) => {
                let (rtx, rrx) = oneshot::channel();
                if tx.send((req, rtx)).await.is_err() {
                    Reply::err("meshd is shutting down")
                } else {
                    rrx.await
                        .unwrap_or_else(|_| Reply::err("meshd is shutting down"))
                }
            }
        };
        let mut out = serde_json::to_vec(&reply).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
        out.push(b'\n');
        if w.write_all(&out).await.is_err() {
            break;
        }
    }
}

use tokio::io::AsyncReadExt as _;
