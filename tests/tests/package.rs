//! The Debian package: `packaging/build-deb.sh` builds it with cargo-deb; `dpkg -i` installs it
//! into a throwaway copy of this machine's root (an overlay on `/` in a mount namespace of its
//! own, entered with chroot: nothing reaches the real root), where meshd, meshctl, the CNI
//! plugin, the unit, the configuration, the man pages and the completions are checked where
//! Debian puts them; then `dpkg -r` keeps the identity key and `dpkg -P` removes it.

use std::process::Command;
use tests::{require_root, workspace};

/// What runs inside the throwaway root, with the package at /tmp/meshd.deb.
const CHECKS: &str = r#"
set -eu
export DEBIAN_FRONTEND=noninteractive
dpkg -i /tmp/meshd.deb
meshd --version | grep -q '^meshd '
meshctl --help | grep -q 'Usage: meshctl'
test -x /usr/lib/cni/meshd-cni
# Man pages, where man looks for them.
for b in meshd meshctl; do
  zcat /usr/share/man/man1/$b.1.gz | grep -q "^.TH $b 1"
done
# Completions, where bash-completion, zsh and fish look for them; bash's loads and registers.
test -s /usr/share/zsh/vendor-completions/_meshd
test -s /usr/share/zsh/vendor-completions/_meshctl
test -s /usr/share/fish/vendor_completions.d/meshd.fish
test -s /usr/share/fish/vendor_completions.d/meshctl.fish
bash -c '. /usr/share/bash-completion/completions/meshctl; complete -p meshctl' | grep -q _meshctl
bash -c '. /usr/share/bash-completion/completions/meshd; complete -p meshd' | grep -q _meshd
# The unit, verified with its man pages installed; not enabled by the installation.
systemd-analyze verify /usr/lib/systemd/system/meshd.service
test ! -e /etc/systemd/system/multi-user.target.wants/meshd.service
# The configuration: every key, commented, and valid as it is.
grep -q '^# metrics_listen' /etc/meshd/meshd.toml
meshd --config /etc/meshd/meshd.toml check-config > /dev/null
# Removing keeps the node's key and the configuration; purging removes them.
mkdir -p /var/lib/meshd
echo secret > /var/lib/meshd/identity.key
dpkg -r meshd
test ! -e /usr/bin/meshd
test -f /var/lib/meshd/identity.key
test -f /etc/meshd/meshd.toml
dpkg -P meshd
test ! -e /var/lib/meshd
test ! -e /etc/meshd/meshd.toml
echo ALL-CHECKED
"#;

#[test]
fn the_package_installs_where_debian_puts_things_and_keeps_the_key_until_purged() {
    require_root();
    // Built as for every other test (release here), then packaged as they are.
    let (meshd, _) = tests::binaries();
    assert!(
        meshd.ends_with("release/meshd"),
        "the package is made of release binaries: run this test with --release"
    );
    let built = Command::new(workspace().join("packaging/build-deb.sh"))
        .env("NO_BUILD", "1")
        .output()
        .expect("packaging/build-deb.sh");
    assert!(
        built.status.success(),
        "the package did not build:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = workspace().join(String::from_utf8_lossy(&built.stdout).trim());
    assert!(deb.is_file(), "no package at {}", deb.display());

    let dir = std::env::temp_dir().join(tests::unique("deb"));
    for d in ["upper", "work", "root"] {
        std::fs::create_dir_all(dir.join(d)).expect("dir");
    }
    let d = dir.to_str().expect("utf-8");
    // The overlay, the package and the chroot exist only in this mount namespace: when the
    // shell ends, they are gone; the upper directory is removed below.
    let script = format!(
        "set -e\n\
         mount -t overlay overlay -o lowerdir=/,upperdir={d}/upper,workdir={d}/work {d}/root\n\
         mount --rbind /proc {d}/root/proc\n\
         mount --rbind /dev {d}/root/dev\n\
         mount -t tmpfs tmpfs {d}/root/tmp\n\
         mount -t tmpfs tmpfs {d}/root/run\n\
         cp {deb} {d}/root/tmp/meshd.deb\n\
         chroot {d}/root sh -c '{checks}'\n",
        deb = deb.display(),
        checks = CHECKS.replace('\'', "'\\''"),
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare");
    let _ = std::fs::remove_dir_all(&dir);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.contains("ALL-CHECKED"),
        "the package checks failed:\n{said}"
    );
}
