//! Build script: with the `mujoco` feature, check that the project-local MuJoCo engine is
//! installed and embed its directory as the run-time library path (rpath), so binaries,
//! tests and benchmarks run without `LD_LIBRARY_PATH`. Without the feature it does nothing.

use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=METAGRAD_MUJOCO_LIB_DIR");
    if std::env::var_os("CARGO_FEATURE_MUJOCO").is_none() {
        return;
    }
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    // The engine lives in .deps/mujoco/lib (scripts/install-mujoco.sh). METAGRAD_MUJOCO_LIB_DIR
    // overrides it (a directory holding libmujoco.so.3.17.0).
    let lib_dir = match std::env::var_os("METAGRAD_MUJOCO_LIB_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => manifest_dir.join(".deps/mujoco/lib"),
    };
    let lib_file = lib_dir.join("libmujoco.so.3.17.0");
    println!("cargo::rerun-if-changed={}", lib_file.display());
    if !lib_file.is_file() {
        eprintln!(
            "\nerror: the `mujoco` feature needs the MuJoCo engine, but {} does not exist.\n\
             Install it (project-local, into .deps/) with:\n\n    scripts/install-mujoco.sh\n\n\
             or build without `--features mujoco`.\n",
            lib_file.display()
        );
        std::process::exit(1);
    }
    println!("cargo::rustc-link-search=native={}", lib_dir.display());
    println!("cargo::rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
}
