#!/usr/bin/env bash
# packaging/build-deb.sh — builds target/debian/meshd_<version>_<arch>.deb with cargo-deb:
# meshd and meshctl in /usr/bin, the CNI plugin in /usr/lib/cni (where podman and the CNI
# runtimes look), the systemd unit (not enabled: edit /etc/meshd/meshd.toml first, then
# `systemctl enable --now meshd`), a commented default configuration, man pages and bash, zsh
# and fish completions. The package is described in meshd/Cargo.toml ([package.metadata.deb]).
#
# Usage: packaging/build-deb.sh   (prints the path of the package)
# Environment: NO_BUILD=1 packages the binaries already in target/release (the package test
# builds them as every other test does).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null ||
  { echo "cargo-deb is missing: cargo install cargo-deb --locked" >&2; exit 1; }
[ -n "${NO_BUILD:-}" ] || cargo build --release -p meshd -p meshctl --bins >&2
A=target/deb-assets
rm -rf "$A"
mkdir -p "$A/man" "$A/completions"
for b in meshd meshctl; do
  "target/release/$b" man | gzip -9n > "$A/man/$b.1.gz"
  "target/release/$b" completions bash > "$A/completions/$b"
  "target/release/$b" completions zsh > "$A/completions/_$b"
  "target/release/$b" completions fish > "$A/completions/$b.fish"
done
target/release/meshd init-config > "$A/meshd.toml"
cargo deb -p meshd --no-build --strip --quiet >&2
ls -t target/debian/meshd_*.deb | head -1
