//! Cooperative stop requests for long computations.
//!
//! A caller that wants a running study or meta-RL run to end early (the Python package on
//! Ctrl-C) calls [`request`]; the computation checks [`check`] at points where stopping loses
//! nothing it would keep (between the study's work items; between a meta-RL iteration's
//! sampling rounds and outer-optimiser steps, whose unfinished iteration is dropped and
//! whose last checkpoint stays) and returns [`crate::Error::Stopped`]. The flag is
//! process-wide: one stoppable computation at a time.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks the running computation to stop at its next check.
pub fn request() {
    STOP.store(true, Ordering::Relaxed);
}

/// Clears a request (before a computation starts, and after it ended).
pub fn reset() {
    STOP.store(false, Ordering::Relaxed);
}

/// Whether a stop was requested.
pub fn requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// `Err(Error::Stopped)` when a stop was requested.
pub fn check() -> Result<()> {
    if requested() { Err(Error::Stopped("a stop was requested (interrupted)".into())) } else { Ok(()) }
}
