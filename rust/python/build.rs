//! Builds the inner-command program (`rust/client`) and hands its path and
//! hash to the extension, which embeds it with `include_bytes!`.
//!
//! maturin packs only the extension module into the wheel, so the program
//! travels inside it. It is built by a nested cargo with its own target
//! directory under `OUT_DIR`, because the outer cargo holds the lock on the
//! main one; it is always an optimized build, since it starts once per
//! `redo-ifchange` call.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("rust/python lies two levels below the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    let target_dir = out_dir.join("client-target");
    let target = std::env::var("TARGET").expect("TARGET");
    let host = std::env::var("HOST").expect("HOST");

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(&workspace)
        .args([
            "build",
            "--release",
            "--offline",
            "-p",
            "redors-client",
            "--target-dir",
        ])
        .arg(&target_dir);
    let mut release_dir = target_dir.clone();
    if target != host {
        command.args(["--target", &target]);
        release_dir.push(&target);
    }
    release_dir.push("release");
    // The outer build's settings for this crate do not apply to the program.
    for variable in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "PYO3_BUILD_EXTENSION_MODULE",
    ] {
        command.env_remove(variable);
    }
    let status = command
        .status()
        .expect("cannot run cargo to build redors-client");
    assert!(status.success(), "building redors-client failed ({status})");

    let program = release_dir.join("redors-client");
    let bytes = std::fs::read(&program).expect("cannot read the built redors-client");
    let hash = blake3::hash(&bytes).to_hex();
    println!("cargo:rustc-env=REDORS_CLIENT_PATH={}", program.display());
    println!("cargo:rustc-env=REDORS_CLIENT_HASH={}", &hash[..16]);
    for input in ["rust/client", "rust/core", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(input).display());
    }
}
