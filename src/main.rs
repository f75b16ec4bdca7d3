//! The `metagrad` command-line tool.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc keeps freed pages for reuse; with glibc's malloc the estimators' per-call row
/// buffers were unmapped and page-faulted again on every call (`benches/estimators.rs`:
/// DR HVP 0.27 → 0.13 ms).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
