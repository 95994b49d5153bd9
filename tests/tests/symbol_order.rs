//! The list that lays out the `meshd` binary's code by use (`meshd/link/symbol-order.txt`,
//! given to the linker by `meshd/build.rs`) must still name the binary's functions. Symbol
//! names carry hashes that change with the toolchain, with dependencies' versions and with
//! the packages one `cargo build` selects; a stale list silently gives back the idle memory
//! it saves (9.8 -> about 6.5 MiB, docs/BENCHMARKS.md).
//!
//! Checks the binary these tests run (built by `tests::binaries`) against the part of the
//! list made from the same build, and only with the toolchain that made the list (a newer
//! Rust makes every name new: rerun `bench/symbol-order.sh`). `nm` (binutils) reads the
//! symbols.

use std::collections::HashSet;
use std::process::Command;

const ORDER: &str = include_str!("../../meshd/link/symbol-order.txt");
/// The packages `tests::binaries` builds, as the list's section header names them.
const OUR_BUILD: &str = "# build: cargo build --release -p meshd -p meshctl -p mobile-ffi";

#[test]
fn symbol_order_names_the_binary() {
    if cfg!(debug_assertions) {
        eprintln!("symbol_order: a debug build; the list is for release builds, not checked");
        return;
    }
    let rustc = Command::new("rustc")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if !ORDER
        .lines()
        .any(|l| l.strip_prefix("# ") == Some(rustc.as_str()))
    {
        eprintln!(
            "symbol_order: the list was made with another toolchain than {rustc:?}: not \
             checked (rerun bench/symbol-order.sh as root to lay the binary out again)"
        );
        return;
    }
    let wanted: Vec<&str> = ORDER
        .lines()
        .skip_while(|l| *l != OUR_BUILD)
        .skip(1)
        .take_while(|l| !l.starts_with("# build:"))
        .filter(|l| !l.is_empty())
        .collect();
    assert!(
        wanted.len() > 500,
        "meshd/link/symbol-order.txt has no section '{OUR_BUILD}' ({} names): rerun \
         bench/symbol-order.sh as root",
        wanted.len()
    );
    let meshd = &tests::binaries().0;
    let out = Command::new("nm")
        .arg("--defined-only")
        .arg(meshd)
        .output()
        .expect("run nm (binutils)");
    assert!(out.status.success(), "nm {} failed", meshd.display());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let symbols: HashSet<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    let missing: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|s| !symbols.contains(s))
        .collect();
    // Names with a ThinLTO module hash (`.llvm.N`) change when their module does; the others
    // only with the toolchain or the dependencies. Allow a tenth to go stale between refreshes.
    assert!(
        missing.len() * 10 <= wanted.len(),
        "{} of the {} functions in meshd/link/symbol-order.txt for this build are not in {} \
         (first: {:?}): rerun bench/symbol-order.sh as root, then rebuild",
        missing.len(),
        wanted.len(),
        meshd.display(),
        &missing[..missing.len().min(3)]
    );
}
