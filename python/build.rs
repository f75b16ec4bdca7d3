//! Build script of the Python extension. With the `mujoco` feature the extension links
//! `libmujoco.so.3.17.0` (through the `metagrad` crate, whose build script finds it at build
//! time and hands its path on as `DEP_METAGRAD_MUJOCO_LIB_FILE`). The package carries that
//! library: it is copied next to the extension module (`metagrad/`), which maturin puts in
//! the wheel, and the extension's run-time search path is `$ORIGIN`. So the installed
//! package needs no `mujoco` Python package at any version (Meta-World's pin of another
//! version installs beside it). (A dependency's `rustc-link-arg` does not reach this
//! cdylib, hence this script.)

use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=DEP_METAGRAD_MUJOCO_LIB_FILE");
    if std::env::var_os("CARGO_FEATURE_MUJOCO").is_none() {
        return;
    }
    let Some(lib) = std::env::var_os("DEP_METAGRAD_MUJOCO_LIB_FILE").map(PathBuf::from) else {
        panic!("the metagrad crate did not report its MuJoCo library (DEP_METAGRAD_MUJOCO_LIB_FILE)");
    };
    let name = lib.file_name().expect("a file name").to_owned();
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let dest = manifest.join("metagrad").join(&name);
    let same =
        std::fs::metadata(&dest).ok().map(|m| m.len()) == std::fs::metadata(&lib).ok().map(|m| m.len());
    if !same {
        // Write beside, then rename: a concurrent reader never sees half a library.
        let tmp = dest.with_extension("partial");
        std::fs::copy(&lib, &tmp)
            .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", lib.display(), tmp.display()));
        std::fs::rename(&tmp, &dest).unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
    }
    println!("cargo::rerun-if-changed={}", lib.display());
    println!("cargo::rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN");
}
