//! Links the `meshd` binary with its code laid out by use: the functions a node runs (start,
//! link up, traffic, transit) first and together, so that the pages of code it maps stay few
//! (idle RSS 9.8 -> about 6.5 MiB). The list is `link/symbol-order.txt`, made by
//! `bench/symbol-order.sh`, whose `--check` (run by every meshd bench, `bench/lib.sh`) says
//! when it is stale.

use std::{env, path::Path};

fn main() {
    let order = Path::new(env!("CARGO_MANIFEST_DIR")).join("link/symbol-order.txt");
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-changed=build.rs");
    // lld (Rust's linker on x86_64 Linux) takes the option; symbols the list names that the
    // binary lacks are skipped, so a stale list costs memory, never a build.
    let linux = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if order.is_file() && linux {
        println!(
            "cargo:rustc-link-arg-bin=meshd=-Wl,--symbol-ordering-file={},--no-warn-symbol-ordering",
            order.display()
        );
    }
}
