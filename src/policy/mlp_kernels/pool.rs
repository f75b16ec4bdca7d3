//! The per-thread pool of freed work buffers of the MLP's passes ([`Buf`]).

use std::fmt::Debug;

use super::Real;

/// Buffers of at least this many entries go back to their thread's pool when dropped.
const POOLED_MIN: usize = 4096;
/// At most this many freed buffers are kept per thread and type.
const POOLED_MAX: usize = 48;

/// A work buffer of the MLP's passes (activations, tangents, cotangents) whose memory,
/// when dropped, returns to a per-thread pool that [`Buf::scratch`] takes from. A pass
/// over N = 2000 samples works on N×64 buffers (0.5 MB in f32); allocating them afresh
/// for every pass cost the zero-filling of every buffer and, when the allocator had
/// returned the pages, page faults (together ≈ 12 % of a meta-iteration, `perf`).
pub(crate) struct Buf<F: Real>(Vec<F>);

impl<F: Real> Buf<F> {
    /// `len` entries whose values are unspecified (left over from an earlier use): only
    /// for outputs that are written in full before they are read (β = 0 products, maps).
    pub(crate) fn scratch(len: usize) -> Self {
        let reused = F::pool().try_with(|p| {
            let mut p = p.borrow_mut();
            let i = p.iter().rposition(|v| v.capacity() >= len)?;
            Some(p.swap_remove(i))
        });
        let mut v = reused.ok().flatten().unwrap_or_default();
        if v.len() >= len {
            v.truncate(len);
        } else {
            v.resize(len, F::ZERO);
        }
        Self(v)
    }
}

impl<F: Real> From<Vec<F>> for Buf<F> {
    fn from(v: Vec<F>) -> Self {
        Self(v)
    }
}

impl<F: Real> Default for Buf<F> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<F: Real> Clone for Buf<F> {
    fn clone(&self) -> Self {
        let mut b = Self::scratch(self.0.len());
        b.0.copy_from_slice(&self.0);
        b
    }
}

impl<F: Real> Debug for Buf<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<F: Real> std::ops::Deref for Buf<F> {
    type Target = [F];
    fn deref(&self) -> &[F] {
        &self.0
    }
}

impl<'a, F: Real> IntoIterator for &'a Buf<F> {
    type Item = &'a F;
    type IntoIter = std::slice::Iter<'a, F>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl<F: Real> std::ops::DerefMut for Buf<F> {
    fn deref_mut(&mut self) -> &mut [F] {
        &mut self.0
    }
}

impl<F: Real> Drop for Buf<F> {
    fn drop(&mut self) {
        if self.0.capacity() >= POOLED_MIN {
            let v = std::mem::take(&mut self.0);
            // During thread teardown the pool may be gone: then the memory is just freed.
            let _ = F::pool().try_with(|p| {
                let mut p = p.borrow_mut();
                if p.len() < POOLED_MAX {
                    p.push(v);
                }
            });
        }
    }
}
