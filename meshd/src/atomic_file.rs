//! The one way meshd writes a file it must not lose or half-write: a temporary file beside
//! the target, written, `fsync`ed, renamed over the target, and the directory `fsync`ed, so a
//! reader (or a restart after a crash) sees the old file or the new one, never a mix.
//!
//! These calls block on the disk: the daemon runs them on its worker threads (the znet worker,
//! the policy worker, the peer store's), never on the event loop between two packets.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Who may read the new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The old file's mode if there is one, else the process's default (umask).
    Keep,
    /// Exactly this mode (a secret: `0o600`).
    Exactly(u32),
}

/// Writes `contents` to `path` atomically, creating the parent directory if needed. The error
/// names the file.
pub fn write(path: &Path, contents: &[u8], mode: Mode) -> std::io::Result<()> {
    let named = |e: std::io::Error, what: &str, p: &Path| {
        std::io::Error::new(e.kind(), format!("cannot {what} {}: {e}", p.display()))
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).map_err(|e| named(e, "create", dir))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.meshd-tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    let keep = match mode {
        Mode::Exactly(m) => {
            opts.mode(m);
            None
        }
        Mode::Keep => std::fs::metadata(path).ok().map(|m| m.permissions()),
    };
    let r = (|| {
        let mut f = opts.open(&tmp)?;
        if let Some(p) = keep {
            f.set_permissions(p)?;
        }
        f.write_all(contents)?;
        f.sync_all()
    })();
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(named(e, "write", &tmp));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(named(e, "write", path));
    }
    // The rename itself is durable only once the directory is.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmpdir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("meshd-atomic-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn writes_replaces_and_keeps_or_sets_the_mode() {
        let d = tmpdir("mode");
        let p = d.join("sub/a.json");
        write(&p, b"one", Mode::Exactly(0o600)).expect("first write");
        assert_eq!(std::fs::read(&p).expect("read"), b"one");
        let m = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(m, 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        write(&p, b"two", Mode::Keep).expect("second write");
        assert_eq!(std::fs::read(&p).expect("read"), b"two");
        let m = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(m, 0o640);
        // No temporary file is left behind.
        let left: Vec<_> = std::fs::read_dir(d.join("sub")).expect("dir").collect();
        assert_eq!(left.len(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_failed_write_names_the_file_and_leaves_the_old_one() {
        let d = tmpdir("fail");
        let p = d.join("x");
        write(&p, b"old", Mode::Keep).expect("write");
        // A directory where the file should go cannot be replaced by a rename.
        let q = d.join("isdir");
        std::fs::create_dir_all(q.join("inner")).expect("mkdir");
        let e = write(&q, b"new", Mode::Keep).expect_err("must fail");
        assert!(e.to_string().contains("isdir"), "{e}");
        assert_eq!(std::fs::read(&p).expect("read"), b"old");
        let _ = std::fs::remove_dir_all(&d);
    }
}
