//! Differentiable policies.
//!
//! Every estimator in [`crate::estimators`] is a function of the policy parameters θ only
//! through a handful of per-sample scalars, the *rows*:
//!
//! * a **likelihood-ratio row** holds ρ_i = π_θ(a_i|x_i) / μ_i for a taken action; its
//!   derivatives are those of u_i = log π_θ(a_i|x_i) (μ_i is a constant);
//! * a **critic-mean row** (discrete policies only) holds c_i = Σ_b π_θ(b|x_i) Q̂(x_i, b);
//!   its derivatives are those of u_i = c_i.
//!
//! A policy evaluated on a batch produces a [`ScoreRows`] object that knows the row values
//! and exposes the first- and second-order derivative products of the u_i with respect to θ.
//! The chain rule in [`crate::estimators::chain`] turns an estimator's derivatives with
//! respect to its rows into parameter gradients, Hessians and Hessian-vector products with
//! these products only, so a new policy needs nothing but this trait.

pub mod gaussian_mlp;
pub mod mlp_kernels;
pub mod softmax;

pub use gaussian_mlp::{GaussianMlp, GaussianMlpConfig, GaussianMlpRows, Precision};
pub use softmax::{SoftmaxRows, TabularSoftmax};

/// The θ-dependent scalars that estimators read, with derivative products w.r.t. θ.
///
/// Let J be the `num_rows × num_params` Jacobian of the u_i (see the module docs) and
/// ∇²u_i their Hessians. Implementations must be exact (no finite differences).
pub trait ScoreRows: Sync {
    /// Dimension D of θ.
    fn num_params(&self) -> usize;
    /// Number of rows.
    fn num_rows(&self) -> usize;
    /// Row values: ρ_i for likelihood-ratio rows, c_i for critic-mean rows.
    fn values(&self) -> &[f64];
    /// `out[i] = ∇u_i · v` (Jacobian-vector product, `out.len() == num_rows`).
    fn jvp(&self, v: &[f64], out: &mut [f64]);
    /// `out += Σ_i w_i ∇u_i` (vector-Jacobian product, `out.len() == num_params`).
    fn vjp_add(&self, w: &[f64], out: &mut [f64]);
    /// `out += Σ_i w_i ∇²u_i v` (the rows' own curvature applied to `v`).
    fn curvature_hvp_add(&self, w: &[f64], v: &[f64], out: &mut [f64]);
    /// The chain rule's last HVP step in one call: `grad += Jᵀg` and
    /// `hv += Jᵀf + Σ_i g_i ∇²u_i v`. Implementations may share work between the parts.
    fn gradient_and_hvp_add(&self, g: &[f64], f: &[f64], v: &[f64], grad: &mut [f64], hv: &mut [f64]) {
        self.vjp_add(g, grad);
        self.vjp_add(f, hv);
        self.curvature_hvp_add(g, v, hv);
    }
    /// `out += Jᵀ c + Σ_i w_i ∇²u_i v` with c = `op`(J v) (`op` receives J v and writes c,
    /// pre-zeroed): the Hessian-vector product of an estimator whose row-space second
    /// derivatives `op` applies (Gauss–Newton part) with row gradient w (curvature part).
    /// The default is [`Self::jvp`], `op`, then [`Self::gradient_and_hvp_add`] (whose
    /// gradient part is discarded); a policy may share passes between the steps.
    fn fused_hvp_add(&self, w: &[f64], v: &[f64], op: &mut dyn FnMut(&[f64], &mut [f64]), out: &mut [f64]) {
        let mut jv = vec![0.0; self.num_rows()];
        self.jvp(v, &mut jv);
        let mut c = vec![0.0; self.num_rows()];
        op(&jv, &mut c);
        let mut unused = vec![0.0; self.num_params()];
        self.gradient_and_hvp_add(w, &c, v, &mut unused, out);
    }
    /// Whether [`Self::fused_hvp_add`] shares passes (true for policies that override it
    /// with a single fused pass). When false, estimators compute HVPs through
    /// [`Self::gradient_and_hvp_add`], which needs one estimator pass instead of two.
    fn has_fused_hvp(&self) -> bool {
        false
    }
    /// `out += Σ_i w_i ∇²u_i` as a dense row-major D×D matrix.
    fn curvature_hessian_add(&self, w: &[f64], out: &mut [f64]);
    /// For every block (one per trajectory, see [`RowBlocks`]):
    /// `out += Σ_{a,b} f[a·k+b] ∇u_{rows[a]} ∇u_{rows[b]}ᵀ` (k = `rows.len()`), into a dense
    /// row-major D×D matrix. This is the Gauss–Newton part JᵀFJ of the chain rule.
    ///
    /// The default forms the dense gradient of each row; parameterisations with sparse or
    /// structured Jacobians override it.
    fn outer_add(&self, blocks: &RowBlocks, out: &mut [f64]) {
        let d = self.num_params();
        let mut w = vec![0.0; self.num_rows()];
        for (rows, f) in blocks.iter() {
            let k = rows.len();
            let mut grads = vec![0.0; k * d];
            for (a, &r) in rows.iter().enumerate() {
                w[r] = 1.0;
                self.vjp_add(&w, &mut grads[a * d..(a + 1) * d]);
                w[r] = 0.0;
            }
            // fg = F G, then out += Gᵀ (F G).
            let mut fg = vec![0.0; k * d];
            for a in 0..k {
                for b in 0..k {
                    let fab = f[a * k + b];
                    if fab != 0.0 {
                        let (gb, fga) = (&grads[b * d..(b + 1) * d], &mut fg[a * d..(a + 1) * d]);
                        fga.iter_mut().zip(gb).for_each(|(x, y)| *x += fab * y);
                    }
                }
            }
            for a in 0..k {
                let (ga, fga) = (&grads[a * d..(a + 1) * d], &fg[a * d..(a + 1) * d]);
                for (i, gi) in ga.iter().enumerate() {
                    if *gi != 0.0 {
                        let row = &mut out[i * d..(i + 1) * d];
                        row.iter_mut().zip(fga).for_each(|(o, y)| *o += gi * y);
                    }
                }
            }
        }
    }

    /// [`Self::outer_add`] for blocks given in semiseparable form
    /// ([`SemiseparableBlocks`]): `out += Σ_{a,b} F_ab ∇u_{rows[a]} ∇u_{rows[b]}ᵀ`.
    ///
    /// The default expands one block at a time to its dense k×k matrix and calls
    /// [`Self::outer_add`] (O(k²) per block); policies with structured Jacobians override it
    /// to run in O(k) per block (the tabular softmax: O(k·D)).
    fn semiseparable_outer_add(&self, blocks: &SemiseparableBlocks, out: &mut [f64]) {
        for b in blocks.iter() {
            let mut dense = RowBlocks::new();
            dense.push(b.rows, &b.dense());
            self.outer_add(&dense, out);
        }
    }
}

/// Dense row-space second-derivative blocks, one per trajectory: block n lists the rows it
/// couples and the row-major k×k matrix F of the estimator's second derivatives in them.
#[derive(Clone, Debug, Default)]
pub struct RowBlocks {
    rows: Vec<usize>,
    row_start: Vec<usize>,
    f: Vec<f64>,
}

impl RowBlocks {
    /// An empty set of blocks.
    pub fn new() -> Self {
        Self { rows: Vec::new(), row_start: vec![0], f: Vec::new() }
    }
    /// Append a block; `f.len()` must be `rows.len()²`.
    pub fn push(&mut self, rows: &[usize], f: &[f64]) {
        assert_eq!(f.len(), rows.len() * rows.len(), "block matrix must be k×k");
        self.rows.extend_from_slice(rows);
        self.row_start.push(self.rows.len());
        self.f.extend_from_slice(f);
    }
    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.row_start.len() - 1
    }
    /// Whether there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The blocks as (rows, k×k matrix) pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&[usize], &[f64])> + '_ {
        let mut f_at = 0;
        self.row_start.windows(2).map(move |w| {
            let rows = &self.rows[w[0]..w[1]];
            let k = rows.len();
            let f = &self.f[f_at..f_at + k * k];
            f_at += k * k;
            (rows, f)
        })
    }
}

/// Row-space second-derivative blocks in semiseparable form, one per trajectory: in the
/// block's row order r_0 … r_{k−1},
///
/// F_ii = diag_i,  F_ij = F_ji = v_i u_j β^{j−i} (i < j).
///
/// Every closed-form row Hessian of the estimators has this form (DR/IS: F_jk = g_max(j,k),
/// i.e. u = g, v = 1, β = 1; truncated DR: v_j = 1[ρ_j ≤ c̄]; TayPO-2: u_k = ρ_k a_k,
/// v_j = ρ_j, β = 1 or γ), so a block costs O(k) memory instead of k².
#[derive(Clone, Debug, Default)]
pub struct SemiseparableBlocks {
    rows: Vec<usize>,
    diag: Vec<f64>,
    u: Vec<f64>,
    v: Vec<f64>,
    start: Vec<usize>,
    beta: Vec<f64>,
}

/// One block of [`SemiseparableBlocks`].
#[derive(Clone, Copy, Debug)]
pub struct Semiseparable<'a> {
    /// The rows, in the block's order.
    pub rows: &'a [usize],
    /// F_ii.
    pub diag: &'a [f64],
    /// u_j of F_ij = v_i u_j β^{j−i}, i < j.
    pub u: &'a [f64],
    /// v_i of F_ij = v_i u_j β^{j−i}, i < j.
    pub v: &'a [f64],
    /// β.
    pub beta: f64,
}

impl Semiseparable<'_> {
    /// The dense row-major k×k matrix (O(k²); for defaults and tests).
    pub fn dense(&self) -> Vec<f64> {
        let k = self.rows.len();
        let mut f = vec![0.0; k * k];
        for i in 0..k {
            f[i * k + i] = self.diag[i];
            let mut w = self.v[i];
            for j in i + 1..k {
                w *= self.beta;
                let x = w * self.u[j];
                f[i * k + j] = x;
                f[j * k + i] = x;
            }
        }
        f
    }
}

impl SemiseparableBlocks {
    /// No blocks.
    pub fn new() -> Self {
        Self { start: vec![0], ..Default::default() }
    }
    /// Appends an empty block with factor β; fill it with [`Self::push_row`].
    pub fn begin(&mut self, beta: f64) {
        if self.start.is_empty() {
            self.start.push(0);
        }
        self.beta.push(beta);
        self.start.push(self.rows.len());
    }
    /// Appends row `row` with (diag, u, v) to the last block.
    pub fn push_row(&mut self, row: usize, diag: f64, u: f64, v: f64) {
        self.rows.push(row);
        self.diag.push(diag);
        self.u.push(u);
        self.v.push(v);
        *self.start.last_mut().expect("begin() first") = self.rows.len();
    }
    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.beta.len()
    }
    /// Whether there are no blocks.
    pub fn is_empty(&self) -> bool {
        self.beta.is_empty()
    }
    /// The blocks.
    pub fn iter(&self) -> impl Iterator<Item = Semiseparable<'_>> + '_ {
        self.start.windows(2).zip(&self.beta).map(move |(w, &beta)| {
            let r = w[0]..w[1];
            Semiseparable {
                rows: &self.rows[r.clone()],
                diag: &self.diag[r.clone()],
                u: &self.u[r.clone()],
                v: &self.v[r],
                beta,
            }
        })
    }
}

/// Checks a replacement θ for a policy with `expected` parameters: the length and that every
/// entry is finite (the checks behind every [`Policy::set_params`]).
pub(crate) fn check_params(expected: usize, theta: &[f64]) -> Result<(), crate::error::SettingError> {
    crate::error::ensure(
        theta.len() == expected,
        "theta.len()",
        theta.len(),
        &format!("expected {expected}"),
    )?;
    match theta.iter().position(|t| !t.is_finite()) {
        Some(i) => {
            Err(crate::error::SettingError::new("theta", format!("θ[{i}] = {}", theta[i]), "must be finite"))
        }
        None => Ok(()),
    }
}

/// A policy with a flat parameter vector θ.
pub trait Policy {
    /// Dimension D of θ.
    fn num_params(&self) -> usize;
    /// The parameters θ.
    fn params(&self) -> &[f64];
    /// Replace the parameters.
    ///
    /// # Errors
    /// `theta.len() != num_params()` or a non-finite entry (the parameters are left as they were).
    fn set_params(&mut self, theta: &[f64]) -> Result<(), crate::error::SettingError>;
}
