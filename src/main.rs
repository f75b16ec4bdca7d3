//! The `metagrad` command-line tool ([`metagrad::cli`]).

use std::process::ExitCode;

/// mimalloc keeps freed pages for reuse; with glibc's malloc the estimators' per-call row
/// buffers were unmapped and page-faulted again on every call (`benches/estimators.rs`:
/// DR HVP 0.27 → 0.13 ms).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ExitCode::from(metagrad::cli::main(std::env::args_os()))
}
