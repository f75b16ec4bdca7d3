//! The instruction-set level of the hot loops, chosen once per process.
//!
//! The library is compiled for baseline x86-64 (or any other target, where only the
//! portable code exists); the network passes' loops (matrix products, tanh, element-wise
//! chain rules) and the tabular softmax's Hessian assembly are compiled a second and third
//! time with the instructions of [`Level::Avx2`] (x86-64-v3: AVX2, FMA, BMI) and
//! [`Level::Avx512`] (x86-64-v4: AVX-512 F/BW/CD/DQ/VL), and every call runs the copy of the level chosen at the first call: the
//! best the CPU has, or the one named by the environment variable `METAGRAD_CPU`
//! (`baseline`, `avx2` or `avx512`; capped at what the CPU has, with a note).
//!
//! **Results do not depend on the level.** Rust never contracts or reorders floating-point
//! operations, so a loop compiled for wider vectors gives the same bits; the matrix
//! products are the only code whose levels use different instructions, and every level
//! performs the same operations in the same order for every entry of C (fused
//! multiply-adds from +0 over depth blocks of 256, `mlp_kernels`), which on CPUs without
//! an FMA instruction (baseline) cost a correctly rounded software `fma`. Tests run every
//! level of this machine in one build and compare bits.

use std::fmt;
use std::sync::OnceLock;

/// The environment variable that forces a level.
pub const ENV: &str = "METAGRAD_CPU";

/// An instruction-set level of the hot loops (ordered: a CPU that has a level has the ones
/// below it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// The target's baseline (SSE2 on x86-64; the only level on other architectures).
    Baseline,
    /// x86-64-v3: AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE.
    Avx2,
    /// x86-64-v4: x86-64-v3 and AVX-512 F, BW, CD, DQ, VL.
    Avx512,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 3] = [Level::Baseline, Level::Avx2, Level::Avx512];

    /// The name `METAGRAD_CPU` takes and `metagrad --version` prints.
    pub fn name(self) -> &'static str {
        match self {
            Level::Baseline => "baseline",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512",
        }
    }

    /// The highest level this CPU runs (detected once).
    pub fn detected() -> Level {
        static DETECTED: OnceLock<Level> = OnceLock::new();
        *DETECTED.get_or_init(detect)
    }

    /// The levels this CPU runs, lowest first.
    pub fn available() -> Vec<Level> {
        Level::ALL.into_iter().filter(|l| *l <= Level::detected()).collect()
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Level {
    type Err = LevelError;
    fn from_str(s: &str) -> Result<Self, LevelError> {
        Level::ALL
            .into_iter()
            .find(|l| l.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| LevelError(s.to_owned()))
    }
}

/// An unknown `METAGRAD_CPU` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LevelError(pub String);

impl fmt::Display for LevelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{ENV}={:?} is not a CPU level: use one of baseline, avx2, avx512 (or unset it for the best this CPU has)",
            self.0
        )
    }
}

impl std::error::Error for LevelError {}

#[cfg(target_arch = "x86_64")]
fn detect() -> Level {
    use std::arch::is_x86_feature_detected as has;
    let v3 = has!("avx")
        && has!("avx2")
        && has!("fma")
        && has!("bmi1")
        && has!("bmi2")
        && has!("f16c")
        && has!("lzcnt")
        && has!("movbe")
        && has!("popcnt");
    let v4 = has!("avx512f") && has!("avx512bw") && has!("avx512cd") && has!("avx512dq") && has!("avx512vl");
    match (v3, v4) {
        (true, true) => Level::Avx512,
        (true, false) => Level::Avx2,
        _ => Level::Baseline,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Level {
    Level::Baseline
}

/// The level in use and how it was chosen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// The level every dispatched loop runs.
    pub level: Level,
    /// The highest level of this CPU.
    pub detected: Level,
    /// The level `METAGRAD_CPU` asked for, if set.
    pub requested: Option<Level>,
}

impl Selection {
    /// The selection for a `METAGRAD_CPU` value (`None`: unset or empty).
    pub fn from_request(value: Option<&str>) -> Result<Selection, LevelError> {
        let detected = Level::detected();
        let requested = match value.map(str::trim).filter(|v| !v.is_empty()) {
            Some(v) => Some(v.parse::<Level>()?),
            None => None,
        };
        let level = requested.map_or(detected, |r| r.min(detected));
        Ok(Selection { level, detected, requested })
    }

    /// A note when the requested level is above this CPU's (then capped), else `None`.
    pub fn note(&self) -> Option<String> {
        let r = self.requested?;
        (r > self.detected).then(|| {
            format!("note: {ENV}={r} is above this CPU's level; using {} (the best it has)", self.detected)
        })
    }
}

static SELECTION: OnceLock<Selection> = OnceLock::new();

/// Reads `METAGRAD_CPU` and fixes the level of this process (the first call decides;
/// later calls return the same selection). Programs call it at start-up to report a bad
/// value as an error; otherwise the first dispatched loop calls it and panics on one.
/// Prints [`Selection::note`] to standard error once when the request is capped.
pub fn init() -> Result<&'static Selection, LevelError> {
    if let Some(s) = SELECTION.get() {
        return Ok(s);
    }
    let value = std::env::var(ENV).ok();
    let sel = Selection::from_request(value.as_deref())?;
    let mut first = false;
    let sel = SELECTION.get_or_init(|| {
        first = true;
        sel
    });
    if first && let Some(note) = sel.note() {
        eprintln!("{note}");
    }
    Ok(sel)
}

/// The level of this process's dispatched loops ([`init`] on first use).
///
/// # Panics
/// On the first call, if `METAGRAD_CPU` holds an unknown value.
#[inline]
pub fn level() -> Level {
    match SELECTION.get() {
        Some(s) => s.level,
        None => init().unwrap_or_else(|e| panic!("{e}")).level,
    }
}

/// Defines a function whose body is compiled once per [`Level`] and which runs the copy of
/// the level it is given (its first argument, a [`Level`]; never above
/// [`Level::detected`], which callers ensure by passing [`level()`] or one of
/// [`Level::available`]). Everything the body calls should be `#[inline(always)]` (or
/// itself dispatched) so that it is compiled into each copy.
///
/// ```ignore
/// multiversion! {
///     /// Doc.
///     pub(crate) fn scale<F: Real>(level: Level, x: &mut [F], a: F) {
///         x.iter_mut().for_each(|v| *v *= a)
///     }
/// }
/// ```
macro_rules! multiversion {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident $(<$g:ident: $bound:path>)? ($level:ident: Level $(, $arg:ident: $ty:ty)* $(,)?) $(-> $ret:ty)? $body:block
    ) => {
        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name $(<$g: $bound>)? ($level: $crate::cpu::Level $(, $arg: $ty)*) $(-> $ret)? {
            #[inline(always)]
            #[allow(clippy::too_many_arguments, unused_variables)]
            fn portable $(<$g: $bound>)? ($level: $crate::cpu::Level $(, $arg: $ty)*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,sse3,ssse3,sse4.1,sse4.2")]
            #[allow(clippy::too_many_arguments)]
            fn avx2 $(<$g: $bound>)? ($level: $crate::cpu::Level $(, $arg: $ty)*) $(-> $ret)? {
                portable $(::<$g>)? ($level $(, $arg)*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,sse3,ssse3,sse4.1,sse4.2,avx512f,avx512bw,avx512cd,avx512dq,avx512vl")]
            #[allow(clippy::too_many_arguments)]
            fn avx512 $(<$g: $bound>)? ($level: $crate::cpu::Level $(, $arg: $ty)*) $(-> $ret)? {
                portable $(::<$g>)? ($level $(, $arg)*)
            }
            match $level {
                // SAFETY: the level is at most the CPU's (the macro's contract), so the
                // CPU has the instructions of the copy.
                #[cfg(target_arch = "x86_64")]
                $crate::cpu::Level::Avx512 => unsafe { avx512 $(::<$g>)? ($level $(, $arg)*) },
                // SAFETY: as above.
                #[cfg(target_arch = "x86_64")]
                $crate::cpu::Level::Avx2 => unsafe { avx2 $(::<$g>)? ($level $(, $arg)*) },
                _ => portable $(::<$g>)? ($level $(, $arg)*),
            }
        }
    };
}

pub(crate) use multiversion;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_unknown_values_name_the_valid_ones() {
        for l in Level::ALL {
            assert_eq!(l.name().parse::<Level>(), Ok(l));
        }
        assert_eq!(" AVX2 ".parse::<Level>(), Ok(Level::Avx2));
        let e = "sse9".parse::<Level>().unwrap_err().to_string();
        assert!(e.contains("\"sse9\"") && e.contains("baseline, avx2, avx512"), "{e}");
    }

    #[test]
    fn requests_are_capped_at_the_cpus_level_with_a_note() {
        let d = Level::detected();
        assert_eq!(Selection::from_request(None).unwrap().level, d);
        assert_eq!(Selection::from_request(Some("")).unwrap().level, d);
        for l in Level::ALL {
            let s = Selection::from_request(Some(l.name())).unwrap();
            assert_eq!(s.level, l.min(d));
            assert_eq!(s.note().is_some(), l > d, "{s:?}");
        }
        assert!(Selection::from_request(Some("avx3")).is_err());
    }
}
