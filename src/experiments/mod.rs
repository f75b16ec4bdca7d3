//! Experiments that reproduce the paper, with their result files.

pub mod meta_rl;
pub mod metrics;
pub mod tabular_study;

pub use tabular_study::biasvar;

use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result, invalid};

/// The distinct items of `items` in the order of their first appearance (the row order of
/// the tables and figures built from result rows).
pub fn first_seen<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for x in items {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// Creates `dir` (and parents) and checks that it is writable, naming it otherwise.
pub fn prepare_output_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        context: format!("cannot create output folder {}", dir.display()),
        source,
    })?;
    let probe = dir.join(".metagrad-write-test");
    std::fs::write(&probe, b"").map_err(|source| Error::Io {
        context: format!("output folder {} is not writable", dir.display()),
        source,
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Writes rows as CSV with a header from the row type's field names (atomically, see
/// [`crate::atomic`]).
pub fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    crate::atomic::write_with(path, |out| {
        let mut w = csv::Writer::from_writer(out);
        for r in rows {
            w.serialize(r).map_err(csv_io)?;
        }
        w.flush()
    })
}

/// [`write_csv`], but a file without rows still gets its header (the field names of
/// `T::default()`), so that CSV readers see an empty table, not an empty file.
pub fn write_csv_or_header<T: Serialize + Default>(path: &Path, rows: &[T]) -> Result<()> {
    if !rows.is_empty() {
        return write_csv(path, rows);
    }
    let io = |source| Error::Io { context: format!("cannot write the header of {}", path.display()), source };
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(T::default()).map_err(|e| io(csv_io(e)))?;
    let text = w.into_inner().map_err(|e| io(e.into_error()))?;
    let header = text.split_inclusive(|&b| b == b'\n').next().unwrap_or_default();
    crate::atomic::write_bytes(path, header)
}

/// A CSV error as an I/O error (serialisation errors included, with their text).
pub(crate) fn csv_io(e: csv::Error) -> std::io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(source) => source,
        other => std::io::Error::other(format!("cannot serialise a row: {other:?}")),
    }
}

/// Writes a value as pretty JSON (atomically, see [`crate::atomic`]).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| invalid(path.display().to_string(), e.to_string()))?;
    crate::atomic::write_bytes(path, (text + "\n").as_bytes())
}

/// The configuration written next to every result: settings, seed, version.
#[derive(Serialize)]
pub struct RunConfig<'a, T: Serialize> {
    /// The command that produced the results.
    pub command: &'a str,
    /// metagrad's version.
    pub version: &'a str,
    /// The git commit of the binary that wrote the results (for a resumed meta-RL run: that
    /// last extended it); uncommitted changes are not visible.
    pub commit: &'a str,
    /// The CPU level the hot loops ran at ([`crate::cpu`]; results do not depend on it).
    pub cpu_level: &'static str,
    /// Every setting (including the seed).
    pub settings: &'a T,
}

impl<'a, T: Serialize> RunConfig<'a, T> {
    /// The record for `command` with `settings`, this build's version and commit.
    pub fn new(command: &'a str, settings: &'a T) -> Self {
        Self {
            command,
            version: env!("CARGO_PKG_VERSION"),
            commit: env!("METAGRAD_GIT_COMMIT"),
            cpu_level: crate::cpu::level().name(),
            settings,
        }
    }
}
