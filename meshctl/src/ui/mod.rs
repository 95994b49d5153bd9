//! `meshctl ui`: a local page that draws this node, its peers and paths, its place in the tree,
//! its sessions and live traffic, refreshed every second.
//!
//! The page (three files built into meshctl: `index.html`, `app.js`, `app.css`; no build step,
//! nothing fetched from elsewhere) is served on loopback only, under a random path that
//! `meshctl ui` prints: the page shows what the admin socket answers, so another user of the
//! machine (who may not use that socket) must not read it through a port. `state.json` is read
//! from the admin socket at each poll; meshctl keeps no state.
//!
//! Bounds: `GET` only; at most [`MAX_CONNECTIONS`] connections served at once (the next waits
//! in the kernel's listen queue until one ends); a request head must arrive whole within [`DEADLINE`] and fit in [`MAX_HEAD`]
//! bytes; a `Host` other than the loopback address served is refused (DNS rebinding).

use anyhow::{Context, bail};
use api::Request;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 8;
/// Longest request head.
pub const MAX_HEAD: usize = 8 * 1024;
/// Time for a request's head to arrive and for the answer to be taken.
pub const DEADLINE: Duration = Duration::from_secs(5);

const INDEX: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const APP_CSS: &str = include_str!("app.css");

/// What a request asks for, once checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Asked {
    /// A file of the page or `state.json`, by name.
    File(&'static str),
    /// Nothing here (or not under the secret path).
    NotFound,
    /// Not `GET`.
    BadMethod,
    /// A `Host` other than ours.
    BadHost,
    /// Not HTTP, too long, or not sent in time.
    Bad,
}

/// Reads a request head: `None` while incomplete. `prefix` is `/<secret>/`; `host` the
/// `ADDRESS:PORT` served.
pub fn parse(buf: &[u8], prefix: &str, host: &str) -> Option<Asked> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => None,
        Ok(httparse::Status::Partial) | Err(_) => Some(Asked::Bad),
        Ok(httparse::Status::Complete(_)) => {
            if req.method != Some("GET") {
                return Some(Asked::BadMethod);
            }
            let given = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("host"))
                .map(|h| String::from_utf8_lossy(h.value).into_owned());
            let port = host.rsplit(':').next().unwrap_or("");
            let ours = given.as_deref().is_some_and(|g| {
                g == host || g == format!("localhost:{port}") || g == format!("[::1]:{port}")
            });
            if !ours {
                return Some(Asked::BadHost);
            }
            let path = req.path.unwrap_or("").split('?').next().unwrap_or("");
            // The secret compared in constant time (a local user timing the answers learns
            // nothing of it), then the file after it.
            let head = path.get(..prefix.len()).unwrap_or("");
            let same = head.len() == prefix.len()
                && head
                    .bytes()
                    .zip(prefix.bytes())
                    .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                    == 0;
            let Some(rest) = path.get(prefix.len()..).filter(|_| same) else {
                return Some(Asked::NotFound);
            };
            Some(match rest {
                "" | "index.html" => Asked::File("index.html"),
                "app.js" => Asked::File("app.js"),
                "app.css" => Asked::File("app.css"),
                "state.json" => Asked::File("state.json"),
                _ => Asked::NotFound,
            })
        }
    }
}

/// Serves the page on `listen` (loopback only) until interrupted.
pub fn serve(socket: &Path, listen: SocketAddr) -> anyhow::Result<()> {
    if !listen.ip().is_loopback() {
        bail!(
            "--listen {listen}: the page shows what meshd's admin socket answers, so it is served \
             on loopback only (127.0.0.1 or [::1]); reach it from elsewhere through ssh -L"
        );
    }
    let listener =
        TcpListener::bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let secret = secret()?;
    let prefix = format!("/{secret}/");
    // Checked once, so that a daemon that is not running says so now, not in the browser.
    crate::call(socket, &Request::SelfInfo)?;
    println!("meshctl ui: open http://{addr}{prefix}  (Ctrl-C to stop)");
    std::io::stdout().flush().ok();
    let state = Arc::new(Shared {
        socket: socket.to_path_buf(),
        prefix,
        host: addr.to_string(),
        active: (Mutex::new(0), Condvar::new()),
    });
    loop {
        // At most MAX_CONNECTIONS at once: the next is accepted when one ends (until then it
        // waits in the kernel's listen queue), and each ends within DEADLINE of its start.
        {
            let (n, freed) = &state.active;
            let mut n = n.lock().unwrap_or_else(|e| e.into_inner());
            while *n >= MAX_CONNECTIONS {
                n = freed.wait(n).unwrap_or_else(|e| e.into_inner());
            }
            *n += 1;
        }
        let stream = listener.accept().map(|(s, _)| s);
        let state = state.clone();
        std::thread::spawn(move || {
            if let Ok(stream) = stream {
                handle(stream, &state);
            }
            let (n, freed) = &state.active;
            *n.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
            freed.notify_one();
        });
    }
}

struct Shared {
    socket: PathBuf,
    prefix: String,
    host: String,
    /// Connections being served, and a signal when one ends.
    active: (Mutex<usize>, Condvar),
}

/// 16 random bytes from the kernel, in hex.
fn secret() -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .context("cannot read /dev/urandom for the page's secret path")?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn read_head(stream: &mut TcpStream, s: &Shared) -> Asked {
    let until = Instant::now() + DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return Asked::Bad;
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Asked::Bad,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(a) = parse(&buf, &s.prefix, &s.host) {
            return a;
        }
    }
}

fn handle(mut stream: TcpStream, s: &Shared) {
    let asked = read_head(&mut stream, s);
    let text = "text/plain; charset=utf-8";
    let (status, ctype, body): (&str, &str, String) = match asked {
        Asked::File("index.html") => ("200 OK", "text/html; charset=utf-8", INDEX.into()),
        Asked::File("app.js") => ("200 OK", "text/javascript; charset=utf-8", APP_JS.into()),
        Asked::File("app.css") => ("200 OK", "text/css; charset=utf-8", APP_CSS.into()),
        Asked::File(_) => match state(&s.socket) {
            Ok(v) => ("200 OK", "application/json", v.to_string()),
            Err(e) => (
                "503 Service Unavailable",
                "application/json",
                serde_json::json!({ "error": format!("{e:#}") }).to_string(),
            ),
        },
        Asked::NotFound => ("404 Not Found", text, "not found\n".into()),
        Asked::BadMethod => ("405 Method Not Allowed", text, "GET only\n".into()),
        Asked::BadHost => (
            "403 Forbidden",
            text,
            "open the address meshctl ui printed\n".into(),
        ),
        Asked::Bad => ("400 Bad Request", text, "bad request\n".into()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
         Referrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n\
         Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; \
         connect-src 'self'; img-src 'self'; frame-ancestors 'none'\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.set_write_timeout(Some(DEADLINE));
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
}

/// What the page draws, read from the admin socket now.
fn state(socket: &Path) -> anyhow::Result<serde_json::Value> {
    let ask = |req: Request| -> anyhow::Result<serde_json::Value> {
        crate::call(socket, &req)?
            .into_result()
            .map_err(|e| anyhow::anyhow!("{}", e.message))
    };
    let time_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Ok(serde_json::json!({
        "time_ms": time_ms,
        "self": ask(Request::SelfInfo)?,
        "status": ask(Request::Status)?,
        "peers": ask(Request::Peers)?,
        "tree": ask(Request::Tree)?,
        "sessions": ask(Request::Sessions)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_of_the_secret_path_from_our_host_is_answered() {
        let host = "127.0.0.1:4000";
        let p = |s: &str| parse(s.as_bytes(), "/abc/", host);
        let get = |path: &str, h: &str| p(&format!("GET {path} HTTP/1.1\r\nHost: {h}\r\n\r\n"));
        assert_eq!(get("/abc/", host), Some(Asked::File("index.html")));
        assert_eq!(
            get("/abc/app.js", "localhost:4000"),
            Some(Asked::File("app.js"))
        );
        assert_eq!(
            get("/abc/state.json?x", host),
            Some(Asked::File("state.json"))
        );
        assert_eq!(get("/", host), Some(Asked::NotFound));
        assert_eq!(get("/abd/", host), Some(Asked::NotFound));
        assert_eq!(get("/abc/../etc/passwd", host), Some(Asked::NotFound));
        assert_eq!(get("/abc/", "evil.example:4000"), Some(Asked::BadHost));
        assert_eq!(p("GET /abc/ HTTP/1.1\r\n\r\n"), Some(Asked::BadHost));
        assert_eq!(
            p("POST /abc/ HTTP/1.1\r\nHost: 127.0.0.1:4000\r\n\r\n"),
            Some(Asked::BadMethod)
        );
        assert_eq!(p("\x16\x03\x01"), Some(Asked::Bad));
        assert_eq!(p("GET /abc/ HTTP/1.1\r\nHost: 127"), None);
        assert_eq!(
            p(&format!(
                "GET /abc/ HTTP/1.1\r\nX: {}",
                "a".repeat(MAX_HEAD)
            )),
            Some(Asked::Bad)
        );
    }
}
