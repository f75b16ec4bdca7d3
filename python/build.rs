//! Build script of the Python extension. With the `mujoco` feature the extension links
//! `libmujoco.so.3.17.0` (through the `metagrad` crate, whose build script finds it at build
//! time) and must find it at run time without `LD_LIBRARY_PATH`: the PyPI wheel
//! `mujoco==3.17.0`, a run-time dependency of the package, installs it into
//! `site-packages/mujoco/`, next to `site-packages/metagrad/_metagrad.*.so`. So the run-time
//! search path is `$ORIGIN/../mujoco`. (A dependency's `rustc-link-arg` does not reach this
//! cdylib, hence this script.)

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_FEATURE_MUJOCO").is_some() {
        println!("cargo::rustc-link-arg-cdylib=-Wl,-rpath,$ORIGIN/../mujoco");
    }
}
