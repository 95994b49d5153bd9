//! # `tests`: end-to-end tests of Planetary LAN
//!
//! This crate owns the tests that run the real `meshd` and `meshctl` binaries, with real TUN
//! devices and the real kernel, in network namespaces joined by veth pairs. The library part is
//! the harness ([`Netns`], [`Node`], [`wait_until`]); the tests live in `tests/tests/`.
//!
//! ## What it must not do
//! Send traffic anywhere but inside its own namespaces (veth addresses from 10.0.0.0/8 inside
//! them, overlay addresses); leave namespaces or processes behind, even when a test fails
//! (everything is torn down in `Drop`); wait without a bound. The tests need root; without it
//! they fail with a message saying so.
//!
//! The binaries are built on first use with the same cargo profile as the test itself.

pub mod gaps;
pub mod gateway;
mod mesh;
pub mod node;
pub mod transfer;

pub use mesh::Mesh;
pub use node::{Node, ping_received};

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Fails the test with an explanation unless we can create namespaces and TUN devices.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the end-to-end tests create network namespaces and TUN devices: run them as root"
    );
    assert!(
        std::path::Path::new("/dev/net/tun").exists(),
        "the end-to-end tests need /dev/net/tun"
    );
}

/// Polls `f` every 50 ms until it is true or `timeout` passes; returns whether it became true.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a command, failing the test with its output if it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A name no other test (in this or another process) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

/// A network namespace, deleted on drop.
pub struct Netns {
    /// Its name (under /run/netns).
    pub name: String,
}

impl Netns {
    /// Creates a namespace with loopback up.
    pub fn new(prefix: &str) -> Netns {
        let name = unique(&format!("pl{prefix}"));
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        run(ns.cmd("ip").args(["link", "set", "lo", "up"]));
        ns
    }

    /// A command that runs inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `f` on a thread that has entered this namespace (its sockets live there).
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f)
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Starts `f` on a new thread inside this namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Joins two namespaces with a veth pair and gives each end an IPv4 address in a /24.
/// Returns the interface names (in `a`, in `b`).
pub fn veth(a: &Netns, a_ip: &str, b: &Netns, b_ip: &str) -> (String, String) {
    let (ia, ib) = (unique("va"), unique("vb"));
    run(Command::new("ip").args([
        "link", "add", &ia, "netns", &a.name, "type", "veth", "peer", "name", &ib, "netns", &b.name,
    ]));
    for (ns, ifname, ip) in [(a, &ia, a_ip), (b, &ib, b_ip)] {
        run(ns
            .cmd("ip")
            .args(["addr", "add", &format!("{ip}/24"), "dev", ifname]));
        run(ns.cmd("ip").args(["link", "set", ifname, "up"]));
    }
    (ia, ib)
}

/// Paths of the `meshd` and `meshctl` binaries, built once per test process with the profile
/// this test was built with.
pub fn binaries() -> &'static (PathBuf, PathBuf) {
    static BINS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BINS.get_or_init(|| {
        let dir = cargo_build();
        (dir.join("meshd"), dir.join("meshctl"))
    })
}

/// Path of the app library `libplanetary_lan.so` (crate `mobile-ffi`), built once per test
/// process with this test's profile; its header is in `mobile-ffi/include`.
pub fn mobile_library() -> &'static PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| cargo_build().join("libplanetary_lan.so"))
}

/// The workspace's root directory.
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Builds what the tests run (meshd, meshctl, the app library) with the profile this test was
/// built with; returns `target/<profile>`. Always the same set of packages, so that features
/// unify the same way and the second build (from another test binary) finds everything fresh.
fn cargo_build() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let target_dir = profile_dir.parent().expect("target dir");
    let profile = profile_dir
        .file_name()
        .and_then(|p| p.to_str())
        .expect("profile name");
    let profile = if profile == "debug" { "dev" } else { profile };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    // Cargo gives a test process variables such as CARGO_MANIFEST_DIR; build scripts
    // (ring's) watch them, so passing them on would rebuild everything every time.
    for (k, _) in std::env::vars() {
        if k.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&k.as_str())
        {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(workspace())
        .env("CARGO_TARGET_DIR", target_dir)
        .args(["build", "--quiet", "--profile", profile]);
    for p in ["meshd", "meshctl", "mobile-ffi"] {
        cmd.args(["-p", p]);
    }
    run(&mut cmd);
    profile_dir.to_path_buf()
}

/// Router namespaces of znets, removed when this is dropped. A daemon started by the tests
/// runs under `ip netns exec`, which gives it a mount namespace of its own, so the router
/// namespaces it creates are mounted only there: once the daemon is gone, their files remain
/// under /run/netns. Declare this before the nodes, so that it is dropped after them.
#[derive(Default)]
pub struct ZnetRouters(pub Vec<String>);

impl ZnetRouters {
    /// Records the router namespace of `znet` on `node`.
    pub fn add(&mut self, node: &Node, znet: &str) {
        let v = node.ctl_json(&["znet", "show", znet]);
        if let Some(r) = v["router_netns"].as_str() {
            self.0.push(r.to_string());
        }
    }
}

impl Drop for ZnetRouters {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
            let _ = std::fs::remove_file(format!("/run/netns/{n}"));
        }
    }
}

/// The output of a command that must succeed (a spawn error counts as failure).
pub fn ok(out: impl Into<Out>, what: &str) -> String {
    let out = out.into().0;
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A command's output, whether it came as `Output` or as `io::Result<Output>`.
pub struct Out(pub std::process::Output);

impl From<std::process::Output> for Out {
    fn from(o: std::process::Output) -> Out {
        Out(o)
    }
}

impl From<std::io::Result<std::process::Output>> for Out {
    fn from(o: std::io::Result<std::process::Output>) -> Out {
        Out(o.expect("run command"))
    }
}

/// A small xorshift stream for attack traffic (spoofed sources, keys, hostile bytes): seeded,
/// so a failing run repeats.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number below `n` (not 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}
