//! Cooperative stop requests for long computations.
//!
//! A caller that wants a running study or meta-RL run to end early (the Python package on
//! Ctrl-C) requests a stop; the computation checks [`check`] at points where stopping loses
//! nothing it would keep (between the study's work items; between a meta-RL iteration's
//! sampling rounds and outer-optimiser steps, whose unfinished iteration is dropped and
//! whose last checkpoint stays) and returns [`crate::Error::Stopped`].
//!
//! Two kinds of flag: the process-wide one ([`request`], [`reset`]), which every
//! computation sees, and a [`StopFlag`] of one call, which only the computation run under
//! it sees ([`StopFlag::run`] on the calling thread, [`StopFlag::pool`] for the worker
//! threads it uses), so that concurrent calls stop independently.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result, invalid};

static STOP: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// The flag of the computation this thread works for, if it has one of its own.
    static CURRENT: RefCell<Option<StopFlag>> = const { RefCell::new(None) };
}

/// The stop flag of one computation (one call): requesting a stop on it stops that
/// computation only.
#[derive(Clone, Debug, Default)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// A new flag, not requested.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the computation run under this flag to stop at its next check.
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether a stop was requested on this flag.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Runs `f` on this thread with this flag as the thread's flag (the previous one is
    /// restored afterwards).
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        let previous = CURRENT.with(|c| c.replace(Some(self.clone())));
        struct Restore(Option<StopFlag>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                let _ = CURRENT.try_with(|c| *c.borrow_mut() = previous);
            }
        }
        let _restore = Restore(previous);
        f()
    }

    /// A thread pool of `threads` workers that all carry this flag: a computation
    /// `install`ed on it sees this flag in its parallel work.
    ///
    /// # Errors
    /// The pool cannot be started (field `threads`).
    pub fn pool(&self, threads: usize) -> Result<rayon::ThreadPool> {
        let flag = self.clone();
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .start_handler(move |_| CURRENT.with(|c| *c.borrow_mut() = Some(flag.clone())))
            .build()
            .map_err(|e| invalid("threads", format!("cannot start a thread pool of {threads}: {e}")))
    }
}

/// The flag of the computation the calling thread works for, if it has one of its own (to
/// hand to the threads or pools a computation starts).
pub fn current() -> Option<StopFlag> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Asks every running computation to stop at its next check (the process-wide flag).
pub fn request() {
    STOP.store(true, Ordering::Relaxed);
}

/// Clears the process-wide request (before a computation starts, and after it ended).
pub fn reset() {
    STOP.store(false, Ordering::Relaxed);
}

/// Whether a stop was requested for the computation the calling thread works for: on the
/// process-wide flag, or on the thread's own [`StopFlag`].
pub fn requested() -> bool {
    STOP.load(Ordering::Relaxed) || CURRENT.with(|c| c.borrow().as_ref().is_some_and(StopFlag::requested))
}

/// `Err(Error::Stopped)` when a stop was requested ([`requested`]).
pub fn check() -> Result<()> {
    if requested() { Err(Error::Stopped("a stop was requested (interrupted)".into())) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    #[test]
    fn a_calls_flag_stops_its_own_work_only() {
        let (a, b) = (StopFlag::new(), StopFlag::new());
        let (pa, pb) = (a.pool(2).unwrap(), b.pool(2).unwrap());
        a.request();
        let seen = |pool: &rayon::ThreadPool| {
            pool.install(|| (0..64).into_par_iter().map(|_| check().is_err()).collect::<Vec<_>>())
        };
        assert!(seen(&pa).iter().all(|&stopped| stopped));
        assert!(seen(&pb).iter().all(|&stopped| !stopped));
        assert!(!requested(), "the calling thread has no flag of its own");
        assert!(a.run(requested) && !b.run(requested));
        assert!(current().is_none(), "run restores the thread's flag");
    }
}
