//! Long calls: the work runs on a worker thread with the GIL released, while the calling
//! thread waits for its events (progress, forwarded to a Python callback with the GIL held)
//! and polls Python's signal handlers every 50 ms. On `KeyboardInterrupt` (or an exception
//! from the callback) it asks the library to stop; the work ends at its next check, well
//! within a second, keeping what it completed (a meta-RL run: its last checkpoint), and the
//! exception is raised. Every call has its own stop flag ([`metagrad::stop::StopFlag`]), on
//! its own pool of worker threads: concurrent calls (e.g. from Python threads) stop
//! independently.

use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::time::Duration;

use pyo3::prelude::*;

enum Message<T, E> {
    Event(E),
    Done(metagrad::Result<T>),
}

/// Sends progress events from the work (any thread) to the caller's thread.
pub struct Events<T, E>(Sender<Message<T, E>>);

impl<T, E> Events<T, E> {
    /// Reports one event (dropped if the caller is gone).
    pub fn send(&self, event: E) {
        let _ = self.0.send(Message::Event(event));
    }
}

/// Runs `work` without the GIL on a pool of `threads` worker threads (default: as many as
/// rayon's global pool) that carry this call's stop flag; `on_event` receives its events on
/// the calling thread with the GIL. Errors of `work` become Python exceptions.
pub fn run_stoppable<T: Send, E: Send>(
    py: Python<'_>,
    threads: Option<usize>,
    work: impl FnOnce(&Events<T, E>) -> metagrad::Result<T> + Send,
    mut on_event: impl FnMut(Python<'_>, E) -> PyResult<()>,
) -> PyResult<T> {
    let flag = metagrad::stop::StopFlag::new();
    let pool =
        flag.pool(threads.unwrap_or_else(rayon::current_num_threads)).map_err(crate::errors::py_err)?;
    let (tx, rx) = channel::<Message<T, E>>();
    // A `Mutex` makes the receiver shareable with the GIL-free wait (only this thread locks it).
    let rx = std::sync::Mutex::new(rx);
    std::thread::scope(|scope| {
        let pool = &pool;
        scope.spawn(move || {
            let events = Events(tx);
            let result = pool.install(|| work(&events));
            let _ = events.0.send(Message::Done(result));
        });
        let mut pending: Option<PyErr> = None;
        loop {
            let msg = py.detach(|| rx.lock().expect("not poisoned").recv_timeout(Duration::from_millis(50)));
            match msg {
                Ok(Message::Event(e)) => {
                    if pending.is_none()
                        && let Err(err) = on_event(py, e)
                    {
                        flag.request();
                        pending = Some(err);
                    }
                }
                Ok(Message::Done(result)) => {
                    return match (pending, result) {
                        (Some(err), Err(metagrad::Error::Stopped(_))) => Err(err),
                        (Some(err), Ok(_)) => Err(err),
                        (_, r) => r.map_err(crate::errors::py_err),
                    };
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(pyo3::exceptions::PyRuntimeError::new_err("the worker thread panicked"));
                }
            }
            if pending.is_none()
                && let Err(err) = py.check_signals()
            {
                flag.request();
                pending = Some(err);
            }
        }
    })
}
