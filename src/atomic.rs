//! Atomic file writes: every file metagrad writes goes to a temporary file in the same
//! folder, is flushed to disk, and is renamed over the destination. A full disk, an error
//! or a kill midway leaves the previous content (or no file), never a truncated one; the
//! temporary file is removed on error.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// A temporary file next to its destination, removed on drop unless [`TempFile::commit`]ted.
/// Its name keeps the destination's extension (`.name.tmp-<pid>-<n>.ext`), for writers
/// that choose a format by extension (PNG).
#[derive(Debug)]
pub struct TempFile {
    tmp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

fn io_error(path: &Path, source: std::io::Error) -> Error {
    Error::Io { context: format!("cannot write {}", path.display()), source }
}

impl TempFile {
    /// A temporary path for `dest` (nothing is created yet).
    pub fn new(dest: &Path) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = dest.file_name().map_or_else(|| "out".into(), |s| s.to_string_lossy().into_owned());
        let ext = dest.extension().map_or(String::new(), |e| format!(".{}", e.to_string_lossy()));
        let tmp = dest.with_file_name(format!(".{name}.tmp-{}-{n}{ext}", std::process::id()));
        Self { tmp, dest: dest.to_path_buf(), committed: false }
    }

    /// The temporary path to write to.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Flushes the written temporary file to disk and renames it over the destination.
    pub fn commit(mut self) -> Result<()> {
        File::open(&self.tmp).and_then(|f| f.sync_all()).map_err(|e| io_error(&self.dest, e))?;
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| io_error(&self.dest, e))?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `path` atomically through a buffered writer given to `write`. A symbolic link is
/// followed (its target is replaced); a device or pipe (`/dev/stdout`, a FIFO) is written
/// in place, as it cannot be replaced.
pub fn write_with(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<()> {
    if let Ok(meta) = std::fs::metadata(path)
        && !meta.is_file()
        && !meta.is_dir()
    {
        let file = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| io_error(path, e))?;
        let mut w = BufWriter::new(file);
        write(&mut w).map_err(|e| io_error(path, e))?;
        return w.flush().map_err(|e| io_error(path, e));
    }
    let resolved;
    let path = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            resolved = std::fs::canonicalize(path).map_err(|e| io_error(path, e))?;
            resolved.as_path()
        }
        _ => path,
    };
    let tmp = TempFile::new(path);
    let file = File::create(tmp.path()).map_err(|e| io_error(path, e))?;
    let mut w = BufWriter::new(file);
    write(&mut w).map_err(|e| io_error(path, e))?;
    w.into_inner().map_err(|e| io_error(path, e.into_error()))?;
    tmp.commit()
}

/// Writes `bytes` to `path` atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_with(path, |w| w.write_all(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_keeps_the_old_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        write_bytes(&p, b"old").unwrap();
        let err = write_with(&p, |w| {
            w.write_all(b"new, half")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("out.json") && err.to_string().contains("disk full"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "temporary file left behind");
        write_bytes(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn devices_are_written_in_place_and_links_followed() {
        // /dev/null stays a device (a rename would replace it with a regular file).
        write_bytes(Path::new("/dev/null"), b"x").unwrap();
        assert!(!std::fs::metadata("/dev/null").unwrap().is_file());
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.json");
        std::fs::write(&target, b"old").unwrap();
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write_bytes(&link, b"new").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }

    #[test]
    fn temporary_names_keep_the_extension_and_the_folder() {
        let t = TempFile::new(Path::new("a/b/fig.png"));
        assert_eq!(t.path().parent(), Some(Path::new("a/b")));
        assert_eq!(t.path().extension().unwrap(), "png");
    }
}
