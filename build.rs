//! Link order of the agent's code: the functions it runs at start-up and while idle are
//! placed first and together (`packaging/symbol-order/`), so the pages of code an idle agent
//! has mapped are the ones it uses. Without an order they are spread over the whole 7.5 MB
//! `.text`, and the kernel maps 64 KiB around each page touched: idle RSS was mostly the
//! binary's code (see docs/decisions.md, "Code layout").
//!
//! Only where the linker is LLD (the default for x86_64 glibc Linux since Rust 1.90). Names
//! the build does not have are skipped silently (symbol names carry hashes of the compiler's
//! and dependencies' versions; functions added since the list was made are not in it): the
//! order then covers less, nothing breaks. `regenerate.sh` makes the list again.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let order = format!("{dir}/packaging/symbol-order/symbol-order.txt");
    println!("cargo:rerun-if-changed={order}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SLUICE_NO_SYMBOL_ORDER");
    let cfg = |name: &str| std::env::var(name).unwrap_or_default();
    let lld_by_default = cfg("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && cfg("CARGO_CFG_TARGET_OS") == "linux"
        && cfg("CARGO_CFG_TARGET_ENV") == "gnu";
    // A build that opts out of LLD (`-C linker-features=-lld`, another linker) or asks for
    // no order (`SLUICE_NO_SYMBOL_ORDER=1`, e.g. to measure without it) gets none.
    let flags = cfg("CARGO_ENCODED_RUSTFLAGS");
    let other_linker = [
        "linker-features=-lld",
        "link-self-contained=-linker",
        "linker=",
    ]
    .iter()
    .any(|flag| flags.contains(flag));
    let wanted = std::env::var_os("SLUICE_NO_SYMBOL_ORDER").is_none();
    if lld_by_default && !other_linker && wanted && std::path::Path::new(&order).exists() {
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={order}");
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
}
