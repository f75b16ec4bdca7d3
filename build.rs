//! Build script: embeds the git commit being built (`METAGRAD_GIT_COMMIT`, written into every
//! result's `config.json`); with the `mujoco` feature, check that the project-local MuJoCo engine is
//! installed and embed its directory as the run-time library path (rpath), so binaries,
//! tests and benchmarks run without `LD_LIBRARY_PATH`. Without the feature it does nothing.

use std::path::PathBuf;
use std::process::Command;

/// `git <args>` in the package directory, trimmed stdout if it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    // The commit HEAD points at ("unknown" outside a git checkout); rebuilt when HEAD moves.
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo::rustc-env=METAGRAD_GIT_COMMIT={commit}");
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        for f in ["HEAD", "refs/heads", "packed-refs"] {
            let path = PathBuf::from(&dir).join(f);
            if path.exists() {
                println!("cargo::rerun-if-changed={}", path.display());
            }
        }
    }
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
