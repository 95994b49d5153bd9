//! One `meshd` process in a namespace, started from a config file only.

use crate::{Netns, binaries, wait_until};
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A node: its namespace, its directory (config, key, state, log) and its daemon process.
pub struct Node {
    /// The namespace it runs in.
    pub ns: Netns,
    /// Directory with `meshd.toml`, `state/`, `admin.sock`, `meshd.log`.
    pub dir: PathBuf,
    child: Option<Child>,
    starts: u32,
}

impl Node {
    /// Creates the namespace and directory; does not start the daemon.
    pub fn new(label: &str) -> Node {
        let ns = Netns::new(label);
        let dir = std::env::temp_dir().join(format!("planetary-{}", ns.name));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("node dir");
        Node {
            ns,
            dir,
            child: None,
            starts: 0,
        }
    }

    /// Writes `meshd.toml`: listen on `listen`, link to `peers`, plus `extra` TOML lines.
    pub fn configure(&self, listen: &str, peers: &[String], extra: &str) {
        self.configure_listen(&[listen], peers, extra);
    }

    /// As [`Node::configure`], with several listen URIs.
    pub fn configure_listen(&self, listen: &[&str], peers: &[String], extra: &str) {
        let peers: Vec<String> = peers.iter().map(|p| format!("{p:?}")).collect();
        let listen: Vec<String> = listen.iter().map(|l| format!("{l:?}")).collect();
        let text = format!(
            "state_dir = \"state\"\nlisten = [{}]\npeers = [{}]\n\
             admin_socket = \"admin.sock\"\nlog_level = \"meshd=debug\"\n{extra}\n\
             [tun]\nname = \"{}\"\n",
            listen.join(", "),
            peers.join(", "),
            // Interface names are per namespace; a fixed one would do, a unique one reads better.
            &crate::unique("m")[..],
        );
        std::fs::write(self.dir.join("meshd.toml"), text).expect("write config");
    }

    /// Path of the admin socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }

    /// Starts `meshd --config meshd.toml` in the namespace and waits for its admin socket.
    pub fn start(&mut self) {
        self.start_wrapped(&[], &[]);
    }

    /// As [`Node::start`], with meshd run by `wrapper` (`["setpriv", ARGS…, "--"]`: the
    /// wrapper's arguments, then meshd's command line) and with `env` set.
    pub fn start_wrapped(&mut self, wrapper: &[&str], env: &[(&str, &str)]) {
        if let Some(mut c) = self.child.take() {
            // A process that exited on its own (or was stopped): reap it first.
            assert!(c.try_wait().ok().flatten().is_some(), "already running");
        }
        let (meshd, _) = binaries();
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("meshd.log"))
            .expect("log file");
        let meshd = meshd.to_str().expect("utf-8 path");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = self.ns.cmd(program);
                c.args(args).arg(meshd);
                c
            }
            None => self.ns.cmd(meshd),
        };
        let child = cmd
            .envs(env.iter().copied())
            .arg("--config")
            .arg(self.dir.join("meshd.toml"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn meshd");
        self.child = Some(child);
        let up = wait_until(Duration::from_secs(10), || {
            self.ctl(&["self", "--json"]).status.success()
        });
        assert!(up, "meshd did not start; log:\n{}", self.log());
    }

    /// Kills the daemon with SIGKILL (no clean-up: a crash).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// True while the daemon process lives.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The command `meshctl --socket <ours> ARGS`, to run with [`crate::run`] (which fails
    /// the test with meshctl's error).
    pub fn ctl_cmd(&self, args: &[&str]) -> Command {
        let (_, meshctl) = binaries();
        let mut c = Command::new(meshctl);
        c.arg("--socket").arg(self.socket()).args(args);
        c
    }

    /// Runs `meshctl --socket <ours> ARGS`.
    pub fn ctl(&self, args: &[&str]) -> std::process::Output {
        let (_, meshctl) = binaries();
        Command::new(meshctl)
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("run meshctl")
    }

    /// Runs `meshctl ARGS --json` and parses the output, failing the test on error.
    pub fn ctl_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.ctl(&a);
        assert!(
            out.status.success(),
            "meshctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("meshctl printed JSON")
    }

    /// The node's overlay address and public key, from `meshctl self --json`.
    pub fn identity(&self) -> (Ipv6Addr, String) {
        let v = self.ctl_json(&["self"]);
        let addr = v["address"]
            .as_str()
            .expect("address")
            .parse()
            .expect("an IPv6 address");
        (
            addr,
            v["public_key"].as_str().expect("public_key").to_string(),
        )
    }

    /// Waits until `meshctl peers` shows a link up with `key`.
    pub fn wait_link_up(&self, key: &str, timeout: Duration) -> bool {
        wait_until(timeout, || {
            let out = self.ctl(&["peers", "--json"]);
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout) else {
                return false;
            };
            v.as_array().is_some_and(|rows| {
                rows.iter()
                    .any(|r| r["public_key"] == key && r["state"] == "up")
            })
        })
    }

    /// `meshctl status --json`.
    pub fn status(&self) -> serde_json::Value {
        self.ctl_json(&["status"])
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("meshd.log")).unwrap_or_default()
    }

    /// Starts `ping` from this node's namespace: `count` echo requests `interval` apart, each
    /// waited for at most a second. Read the result with [`ping_received`].
    pub fn spawn_ping(&self, addr: &Ipv6Addr, count: u32, interval: &str) -> Child {
        self.ns
            .cmd("ping")
            .args([
                "-6",
                "-n",
                "-q",
                "-c",
                &count.to_string(),
                "-i",
                interval,
                "-W",
                "1",
            ])
            .arg(addr.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run ping")
    }

    /// Pings `addr` from this node's namespace: `count` echo requests `interval` apart.
    /// Returns how many replies came back.
    pub fn ping(&self, addr: &Ipv6Addr, count: u32, interval: &str) -> u32 {
        let out = self
            .spawn_ping(addr, count, interval)
            .wait_with_output()
            .expect("run ping");
        ping_received(&String::from_utf8_lossy(&out.stdout))
    }
}

/// How many replies `ping -q` reported in its summary (0 if it printed none).
pub fn ping_received(stdout: &str) -> u32 {
    stdout
        .lines()
        .find_map(|l| {
            let l = l.trim();
            l.contains("received")
                .then(|| l.split(',').nth(1)?.split_whitespace().next()?.parse().ok())?
        })
        .unwrap_or(0)
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- meshd log of {} ---\n{}", self.ns.name, self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
