//! `meshd-cni` under a real container runtime: podman (CNI backend, runc) starts containers on
//! a znet on two nodes with the configuration `docs/ZNET.md` gives and no other plugin. No image
//! can be pulled here, so the containers run a root filesystem made of Debian's static busybox
//! (`podman run --rootfs`). The containers ping each other and move a file intact across the
//! mesh, the first packet of a new znet session is fast, `podman stop` detaches, and a stop while
//! meshd is down still succeeds and leaves nothing behind once meshd is back.
//!
//! Needs podman, runc and busybox-static (`.ci/run` installs them).

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use tests::{Node, binaries, require_root, unique, veth, wait_until};

/// Where Debian's busybox-static puts its binary.
const BUSYBOX: &str = "/bin/busybox";

/// One podman "installation" for one node: its own storage, containers.conf and CNI network
/// directory, so that nothing on the host is used or left.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    /// podman set up for `node`, whose znet `znet` is the CNI network `net`.
    fn new(node: &Node, znet: &str, net: &str) -> Podman {
        let dir = std::env::temp_dir().join(unique("podman"));
        let netd = dir.join("net.d");
        let bin = dir.join("cni-bin");
        std::fs::create_dir_all(&netd).expect("net.d");
        std::fs::create_dir_all(&bin).expect("cni-bin");
        // The plugin as an administrator installs it: in a CNI plugin directory.
        let plugin = binaries().1.with_file_name("meshd-cni");
        assert!(
            plugin.exists(),
            "{} is missing: it is built with `cargo build -p meshctl`",
            plugin.display()
        );
        std::fs::copy(&plugin, bin.join("meshd-cni")).expect("install the plugin");
        // The configuration of docs/ZNET.md, as a .conflist.
        let conflist = json!({
            "cniVersion": "1.0.0",
            "name": net,
            "plugins": [{
                "type": "meshd-cni",
                "znet": znet,
                "socket": node.socket().to_str().expect("utf-8 path"),
            }]
        });
        std::fs::write(netd.join(format!("{net}.conflist")), conflist.to_string())
            .expect("write the conflist");
        // runc: crun refuses this machine's hybrid cgroups. The limits: podman's defaults for
        // root are above what this machine's root may set.
        let conf = format!(
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             [network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{}\", \"/usr/lib/cni\"]\n\
             network_config_dir = \"{}\"\n[engine]\nruntime = \"runc\"\n",
            bin.display(),
            netd.display()
        );
        std::fs::write(dir.join("containers.conf"), conf).expect("containers.conf");
        assert!(
            Command::new("podman")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success()),
            "podman does not run here: install podman, runc and busybox-static"
        );
        Podman { dir }
    }

    /// `podman ARGS` with this installation's configuration and storage.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .arg("--root")
            .arg(self.dir.join("storage"))
            .arg("--runroot")
            .arg(self.dir.join("run"))
            .args(args);
        c
    }

    /// Runs `podman ARGS`, whatever it ends with.
    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run podman: {e}"))
    }

    /// Runs `podman ARGS`; fails the test unless podman succeeded.
    fn ok(&self, args: &[&str]) -> String {
        tests::run(&mut self.command(args))
    }

    /// Starts a detached container named `name` on network `net` that sleeps.
    fn start(&self, name: &str, net: &str, rootfs: &Path) {
        self.ok(&[
            "run",
            "-d",
            "--name",
            name,
            "--network",
            net,
            "--rootfs",
            rootfs.to_str().expect("utf-8 path"),
            "/bin/sleep",
            "600",
        ]);
    }

    /// The container's IPv4 address on its znet interface.
    fn ipv4(&self, name: &str) -> String {
        let out = self.ok(&["exec", name, "/bin/ip", "-4", "-o", "addr", "show", "eth0"]);
        out.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .and_then(|a| a.split('/').next())
            .unwrap_or_else(|| panic!("no IPv4 address on eth0 in {name}: {out}"))
            .to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-a", "-f", "-t", "0"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A root filesystem of busybox alone: the shell and the tools the test runs.
fn busybox_rootfs() -> PathBuf {
    let bin = std::fs::read(BUSYBOX)
        .unwrap_or_else(|e| panic!("cannot read {BUSYBOX} ({e}): install busybox-static"));
    // A dynamically linked busybox has a loader (an ELF PT_INTERP header); alone in a root
    // filesystem it cannot run.
    assert!(
        !has_interpreter(&bin),
        "{BUSYBOX} is dynamically linked: install busybox-static"
    );
    let root = std::env::temp_dir().join(unique("rootfs"));
    for d in ["bin", "tmp", "www", "proc", "sys", "dev", "etc"] {
        std::fs::create_dir_all(root.join(d)).expect("rootfs dir");
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copy busybox");
    for tool in [
        "sh", "ip", "ping", "sleep", "httpd", "wget", "md5sum", "dd", "cat", "ls",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(tool)).expect("symlink");
    }
    root
}

/// Whether a 64-bit little-endian ELF file asks for a program interpreter (`PT_INTERP`).
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| {
        elf.get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..count).any(|i| {
        let at = phoff as usize + i * size;
        elf.get(at..at + 4) == Some(&3u32.to_le_bytes()[..])
    })
}

/// `manifest` with `key` added as a member.
fn with_member(manifest: &str, key: &str) -> String {
    format!("{manifest}\n[[members]]\nkey = \"{key}\"\n")
}

/// The attachments of znet `znet` on `node`, by container id.
fn attached(node: &Node, znet: &str) -> Vec<String> {
    node.ctl_json(&["znet", "show", znet])["attachments"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["container_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The id of container `name`.
fn id_of(p: &Podman, name: &str) -> String {
    p.ok(&["inspect", "--format", "{{.Id}}", name])
        .trim()
        .to_string()
}

#[test]
fn podman_runs_containers_on_a_znet_across_two_nodes() {
    require_root();
    let mut routers = tests::ZnetRouters::default();
    let mut a = Node::new("pda");
    let mut b = Node::new("pdb");
    veth(&a.ns, "10.79.0.1", &b.ns, "10.79.0.2");
    a.configure("udp://0.0.0.0:7820", &["udp://10.79.0.2:7820".into()], "");
    b.configure("udp://0.0.0.0:7820", &[], "");
    a.start();
    b.start();
    let (_, kb) = b.identity();
    assert!(a.wait_link_up(&kb, Duration::from_secs(10)));

    let out = a.ctl(&["znet", "create", "shop", "--ipv4", "10.51.0.0/16"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest = with_member(&String::from_utf8_lossy(&out.stdout), &kb);
    for n in [&a, &b] {
        let f = n.dir.join("shop.toml");
        std::fs::write(&f, &manifest).expect("write the manifest");
        let out = n.ctl(&["znet", "join", f.to_str().expect("utf-8")]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        routers.add(n, "shop");
    }

    let rootfs = busybox_rootfs();
    let (net_a, net_b) = (unique("shopa"), unique("shopb"));
    let pa = Podman::new(&a, "shop", &net_a);
    let pb = Podman::new(&b, "shop", &net_b);
    let (ca, cb) = (unique("ca"), unique("cb"));
    pa.start(&ca, &net_a, &rootfs);
    pb.start(&cb, &net_b, &rootfs);
    let (ipa, ipb) = (pa.ipv4(&ca), pb.ipv4(&cb));
    assert!(
        ipa.starts_with("10.51.") && ipb.starts_with("10.51."),
        "{ipa} {ipb}"
    );
    assert_eq!(attached(&a, "shop"), vec![id_of(&pa, &ca)]);

    // The first packet of a new znet session: one echo request, answered within 50 ms.
    let out = pa.ok(&["exec", &ca, "/bin/ping", "-c", "1", "-W", "2", &ipb]);
    let ms: f64 = out
        .split("time=")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no reply time in: {out}"));
    assert!(
        ms < 50.0,
        "the first packet of a new znet session took {ms} ms (want < 50)"
    );
    let out = pb.ok(&["exec", &cb, "/bin/ping", "-c", "3", &ipa]);
    assert!(out.contains("3 packets received"), "{out}");

    // A file moves intact: 4 MiB of random bytes served by A's container, fetched by B's.
    pa.ok(&[
        "exec",
        &ca,
        "/bin/dd",
        "if=/dev/urandom",
        "of=/www/f",
        "bs=65536",
        "count=64",
    ]);
    let sum_a = pa.ok(&["exec", &ca, "/bin/md5sum", "/www/f"]);
    pa.ok(&[
        "exec",
        "-d",
        &ca,
        "/bin/httpd",
        "-f",
        "-p",
        "8080",
        "-h",
        "/www",
    ]);
    let url = format!("http://{ipa}:8080/f");
    let fetched = wait_until(Duration::from_secs(5), || {
        pb.run(&["exec", &cb, "/bin/wget", "-q", "-O", "/tmp/f", &url])
            .status
            .success()
    });
    assert!(fetched, "B's container could not fetch {url}");
    let sum_b = pb.ok(&["exec", &cb, "/bin/md5sum", "/tmp/f"]);
    assert_eq!(
        sum_a.split_whitespace().next(),
        sum_b.split_whitespace().next(),
        "the file changed on the way"
    );

    // podman stop detaches.
    pa.ok(&["stop", "-t", "0", &ca]);
    assert!(
        wait_until(Duration::from_secs(5), || attached(&a, "shop").is_empty()),
        "still attached after podman stop: {:?}",
        attached(&a, "shop")
    );

    // A stop while meshd is down succeeds, and nothing is left once meshd is back.
    b.kill9();
    let out = pb.run(&["stop", "-t", "0", &cb]);
    assert!(
        out.status.success(),
        "podman stop failed while meshd was down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.start();
    assert!(
        wait_until(Duration::from_secs(5), || attached(&b, "shop").is_empty()),
        "meshd kept the attachment of a stopped container: {:?}",
        attached(&b, "shop")
    );
    let _ = std::fs::remove_dir_all(&rootfs);
}
