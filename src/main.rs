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
            eprintln!("error: {}", message(&e));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, each said once: a cause whose text its parent's message
/// already contains (e.g. an I/O error the context quotes) is not repeated.
fn message(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}
