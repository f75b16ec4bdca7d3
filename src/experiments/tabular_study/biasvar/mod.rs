//! The bias–variance decomposition of every estimator against the exact derivatives
//! (`metagrad tabular --sweep biasvar`).
//!
//! For an estimator, a quantity (gradient or Hessian, flattened to n entries) and a target h
//! (the derivative of the finite-horizon value J_T that the estimator sees, or of the
//! infinite-horizon V of the paper's figures), the N-trajectory estimate ĥ_N (the mean of
//! the per-trajectory estimates ĥ) has
//!
//! MSE(N) = E‖ĥ_N − h‖² = ‖E\[ĥ\] − h‖² + tr Var(ĥ)/N = bias² + σ²/N.
//!
//! **Estimation.** Per (trial, ε) point, M trajectories from μ are drawn in K chunks of c
//! (M = Kc; chunk k from its own stream `[3, trial, ε index, k]`, so results do not depend
//! on the thread count) and every estimator's chunk mean m_k is computed by the library's
//! batch estimator, on the same data (common random numbers). The chunks form G = [`GROUPS`]
//! groups of K/G consecutive chunks. Only O(G·n) numbers are kept: per group the sum of
//! d_k = m_k − h_V and the sums of ‖d_k‖² (plain and entry-centred). With d̄ = Σ_k d_k/K,
//! Δ = h_V − h and b̂ = d̄ + Δ (the estimated bias vector):
//!
//! * σ̂² = c Σ_k ‖d_k − d̄‖²/(K − 1) (batch means: Var(m_k) = Σ/c), unbiased for σ² = tr Var(ĥ);
//!   its standard error from the spread of the G within-group estimates;
//! * bias² = ‖b̂‖² − σ̂²/M, unbiased for ‖E\[ĥ\] − h‖² (E‖b̂‖² = bias² + σ²/M);
//! * its Monte-Carlo standard error s from se² = 4 b̂ᵀΣb̂/M + 2 tr(Σ²)/M² (the variance of a
//!   squared norm of a mean), with b̂ᵀΣb̂/M = b̂ᵀCb̂/G and tr(Σ²)/M² = tr(C²)/G² where C =
//!   Σ/(M/G) is the covariance of a group mean ḡ_g: b̂ᵀCb̂ from the spread of b̂·ḡ_g, and
//!   tr(C²) = E[((ḡ_g − ḡ_h)·(ḡ_k − ḡ_l))²]/4 over disjoint pairs (exact for any
//!   distribution), both from the G×G Gram matrix of the group means;
//! * the bias is *detectable* when bias² > 2s; otherwise only the bound bias² ≤ max(bias², 0) + 2s
//!   is reported (column `bias2` is then empty);
//! * `bias_se` = √(σ̂²/M), the root-mean-square Monte-Carlo error of the bias vector b̂
//!   (it falls as 1/√M);
//! * the predicted Pearson correlation of Fig. 1 with the exact derivative h at N, for
//!   entry-centred vectors (subscript c): ρ(N) ≈ ⟨h_c, μ_c⟩ / (‖h_c‖ √(‖μ_c‖² + σ_c²/N)),
//!   μ = E\[ĥ\], with ‖μ_c‖² estimated without bias as ‖μ̂_c‖² − σ̂_c²/M (the noise of a mean
//!   of N trajectories concentrates on a sphere of radius σ_c/√N, nearly orthogonal to h).
//!
//! Targets: J_T is computed with the bootstrap the estimator uses (the critic V̂ at x_T; 0
//! for IS); IS and DR are unbiased for its derivatives, TayPO-K for those of order ≤ K
//! on-policy. The difference between the two targets is the truncation at T.
//!
//! The pieces: the decomposition per trial (`estimate`), its summary over trials, the
//! predicted N sweep and the result files (`report`).

mod estimate;
mod report;
#[cfg(test)]
mod tests;

pub use super::params::GROUPS;
pub use estimate::{BiasVarRow, Quantity, Target};
pub use report::{
    BiasVarOutput, Crossover, Prediction, Table, biasvar_table, predictions, summarise_biasvar,
};
