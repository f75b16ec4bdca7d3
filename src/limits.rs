//! Documented size limits, checked (with checked arithmetic) before anything is allocated.
//!
//! Every size that comes from a file, a flag or a keyword argument is compared with a limit
//! here before memory is reserved for it; the error names the field, the value and the
//! limit, and the flag that raises it where a user may need more.
//!
//! | limit | default | raised by |
//! |---|---|---|
//! | bytes read from a problem file (or standard input) | [`DEFAULT_MAX_INPUT_BYTES`] = 256 MiB | `--max-input-mb` |
//! | parameters D = \|X\|·\|A\| (the D×D Hessians are the output) | [`DEFAULT_MAX_PARAMS`] = 1000 | `--max-params` |
//! | steps N·T of one batch of trajectories | [`DEFAULT_MAX_STEPS`] = 10⁷ | `--max-steps` |
//! | trials of the tabular study | [`MAX_TRIALS`] = 10⁵ | — |
//! | meta-RL environment steps per iteration, tasks·rollouts·horizon·(K + 1) | [`DEFAULT_MAX_META_STEPS`] = 4·10⁶ | `--max-steps-per-iteration` |
//! | meta-RL policy parameters | [`MAX_POLICY_PARAMS`] = 10⁶ | — |
//! | worker threads | [`MAX_THREADS`] = 1024 | — |

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result, invalid};

/// Default bound on the bytes of one input document (256 MiB).
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 256 << 20;
/// Default bound on D = |X|·|A| (a D×D Hessian per estimator is the output: 8 MB at D = 1000).
pub const DEFAULT_MAX_PARAMS: usize = 1000;
/// Default bound on the total steps Σ_n T_n of one batch of trajectories.
pub const DEFAULT_MAX_STEPS: usize = 10_000_000;
/// Bound on the trials of the tabular study.
pub const MAX_TRIALS: usize = 100_000;
/// Default bound on the environment steps of one meta-RL iteration (50× the default setup).
pub const DEFAULT_MAX_META_STEPS: usize = 4_000_000;
/// Bound on the number of parameters of a meta-RL policy.
pub const MAX_POLICY_PARAMS: usize = 1_000_000;
/// Bound on ProMP's outer (Adam) steps per meta-RL iteration (`--promp-steps`; ProMP uses 5).
pub const MAX_PROMP_STEPS: usize = 10_000;
/// Bound on `--threads`.
pub const MAX_THREADS: usize = 1024;
/// Copies of an environment in one vectorised env (`envs::vector::VecEnv`): a MuJoCo copy
/// holds its own simulation state (tens to hundreds of KB).
pub const MAX_VECTOR_ENVS: usize = 100_000;

/// The limits that a user may raise (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one input document.
    pub max_input_bytes: u64,
    /// D = |X|·|A|.
    pub max_params: usize,
    /// Σ_n T_n of one batch.
    pub max_steps: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_input_bytes: DEFAULT_MAX_INPUT_BYTES,
            max_params: DEFAULT_MAX_PARAMS,
            max_steps: DEFAULT_MAX_STEPS,
        }
    }
}

/// `Ok(())` when `value ≤ limit`, else an error naming the field, the value, the limit and
/// (if any) the flag that raises it.
pub fn check(field: &str, value: usize, limit: usize, flag: Option<&str>) -> Result<()> {
    if value <= limit {
        return Ok(());
    }
    let raise = flag.map_or(String::new(), |f| format!(" (raise it with {f})"));
    Err(invalid(field, format!("{value} exceeds the limit of {limit}{raise}")))
}

/// The product of `factors` (named in `what` for the error), or an error when it overflows
/// or exceeds `limit`.
pub fn product(
    field: &str,
    what: &str,
    factors: &[usize],
    limit: usize,
    flag: Option<&str>,
) -> Result<usize> {
    let shown = || factors.iter().map(usize::to_string).collect::<Vec<_>>().join(" × ");
    let raise = flag.map_or(String::new(), |f| format!(" (raise it with {f})"));
    let p = factors.iter().try_fold(1usize, |acc, &f| acc.checked_mul(f)).ok_or_else(|| {
        invalid(field, format!("{what} = {} overflows; the limit is {limit}{raise}", shown()))
    })?;
    if p > limit {
        return Err(invalid(
            field,
            format!("{what} = {} = {p} exceeds the limit of {limit}{raise}", shown()),
        ));
    }
    Ok(p)
}

/// Reads a whole text document from `path` (`-` = standard input), refusing more than
/// `max_bytes` bytes without reading further (so `/dev/zero` or an endless pipe stops).
pub fn read_bounded(path: &Path, max_bytes: u64) -> Result<String> {
    read_bounded_as(path, max_bytes, "input", Some("--max-input-mb"))
}

/// [`read_bounded`] naming the document `field` in errors, with the flag (if any) that
/// raises the limit.
pub fn read_bounded_as(path: &Path, max_bytes: u64, field: &str, flag: Option<&str>) -> Result<String> {
    let name =
        if path.as_os_str() == "-" { "standard input".to_string() } else { path.display().to_string() };
    let io = |source: std::io::Error| Error::Io { context: format!("cannot read {name}"), source };
    let mut bytes = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin().lock().take(max_bytes.saturating_add(1)).read_to_end(&mut bytes).map_err(io)?;
    } else {
        let file = std::fs::File::open(path).map_err(io)?;
        if file.metadata().map_err(io)?.is_dir() {
            return Err(invalid(field, format!("{name} is a folder, not a file")));
        }
        file.take(max_bytes.saturating_add(1)).read_to_end(&mut bytes).map_err(io)?;
    }
    if bytes.len() as u64 > max_bytes {
        let raise = flag.map_or(String::new(), |f| format!("; raise it with {f}"));
        return Err(invalid(
            field,
            format!("{name} is larger than the limit of {max_bytes} bytes ({} MiB{raise})", max_bytes >> 20),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        invalid(
            field,
            format!("{name} is not UTF-8 text (invalid byte at offset {})", e.utf8_error().valid_up_to()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn products_overflow_and_limits_are_errors_naming_the_field() {
        assert_eq!(product("x", "a·b", &[3, 4], 12, None).unwrap(), 12);
        let e = product("transitions", "|X|·|A|", &[usize::MAX, 2], 1000, Some("--max-params")).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("transitions") && m.contains("overflows") && m.contains("--max-params"), "{m}");
        let m = product("n", "N·T", &[1000, 1000], 999, None).unwrap_err().to_string();
        assert!(m.contains("1000000") && m.contains("999"), "{m}");
        assert!(check("threads", 5, 4, None).unwrap_err().to_string().contains("threads"));
    }

    #[test]
    fn reading_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        std::fs::write(&p, vec![b' '; 100]).unwrap();
        assert_eq!(read_bounded(&p, 100).unwrap().len(), 100);
        let m = read_bounded(&p, 99).unwrap_err().to_string();
        assert!(m.contains("limit of 99 bytes") && m.contains("--max-input-mb"), "{m}");
        let m = read_bounded(dir.path(), 99).unwrap_err().to_string();
        assert!(m.contains("folder"), "{m}");
        #[cfg(unix)]
        {
            let m = read_bounded(Path::new("/dev/zero"), 1 << 10).unwrap_err().to_string();
            assert!(m.contains("limit"), "{m}");
        }
    }
}
