//! Build script: embeds the git commit being built (`METAGRAD_GIT_COMMIT`, written into every
//! result's `config.json`); with the `mujoco` feature, check that the project-local MuJoCo engine is
//! installed and embed its directory as the run-time library path (rpath), so binaries,
//! tests and benchmarks run without `LD_LIBRARY_PATH`. When that engine is missing and the
//! build is the Python package's (maturin sets `PYO3_PYTHON`), it links the engine of that
//! interpreter's `mujoco` wheel instead. Without the feature it does nothing.

use std::path::PathBuf;
use std::process::Command;

/// `git <args>` in the package directory, trimmed stdout if it succeeded.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The engine's file name (MuJoCo 3.17.0, as pinned by scripts/install-mujoco.sh).
const LIB_FILE: &str = "libmujoco.so.3.17.0";

/// The directory of the `mujoco` Python package of `$PYO3_PYTHON` (set by maturin), if it
/// holds [`LIB_FILE`].
fn python_mujoco_dir() -> Option<PathBuf> {
    println!("cargo::rerun-if-env-changed=PYO3_PYTHON");
    let python = std::env::var_os("PYO3_PYTHON")?;
    let out = Command::new(python)
        .args(["-c", "import os, mujoco; print(os.path.dirname(mujoco.__file__))"])
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    (out.status.success() && dir.join(LIB_FILE).is_file()).then_some(dir)
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    // The commit HEAD points at ("unknown" outside a git checkout); rebuilt when HEAD moves.
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo::rustc-env=METAGRAD_GIT_COMMIT={commit}");
    // In a linked worktree the branch refs live in the common git directory, not in the
    // worktree's own: watch both.
    let dirs = [
        git(&["rev-parse", "--absolute-git-dir"]),
        git(&["rev-parse", "--path-format=absolute", "--git-common-dir"]),
    ];
    for dir in dirs.into_iter().flatten() {
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
    let mut lib_file = lib_dir.join(LIB_FILE);
    println!("cargo::rerun-if-changed={}", lib_file.display());
    // Building the Python package (maturin sets PYO3_PYTHON) on a fresh clone: the engine of
    // the `mujoco` wheel that the interpreter imports (pyproject.toml lists it as a build
    // requirement, so pip's isolated build environment has it).
    if !lib_file.is_file()
        && std::env::var_os("METAGRAD_MUJOCO_LIB_DIR").is_none()
        && let Some(dir) = python_mujoco_dir()
    {
        println!("cargo::warning=linking MuJoCo from the Python package `mujoco` in {}", dir.display());
        lib_file = dir.join(LIB_FILE);
    }
    if !lib_file.is_file() {
        eprintln!(
            "\nerror: the `mujoco` feature needs the MuJoCo engine, but {} does not exist.\n\
             Install it (project-local, into .deps/) with:\n\n    scripts/install-mujoco.sh\n\n\
             or build without `--features mujoco`. (Building the Python package, maturin's \
             interpreter can provide it instead: `pip install mujoco==3.17.0`.)\n",
            lib_file.display()
        );
        std::process::exit(1);
    }
    // For dependents' build scripts (as DEP_METAGRAD_MUJOCO_LIB_FILE): the Python package
    // bundles this library.
    println!("cargo::metadata=lib_file={}", lib_file.display());
    let lib_dir = lib_file.parent().map(PathBuf::from).unwrap_or_default();
    println!("cargo::rustc-link-search=native={}", lib_dir.display());
    println!("cargo::rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
}
