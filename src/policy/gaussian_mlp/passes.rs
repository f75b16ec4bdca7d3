//! The network passes of a [`GaussianMlp`] in either precision: forward, forward-mode
//! (R-operator) tangents, backpropagation and forward-over-reverse (Pearlmutter's
//! R-operator on backpropagation), with the cached plain backward chain they share.

use super::{GaussianMlp, Precision};
use crate::policy::mlp_kernels::{
    Buf, Real, add_row, col_sums_add, mm_nn, mm_nt, mm_tn_add, mul_tanh_grad, r_tanh_grad, tanh_grad_into,
    tanh_inplace,
};

/// One batched forward pass in the working precision: the observations, the hidden
/// post-tanh activations h_1…h_{L−1} (each N×n_l, row-major) and the means (N×act_dim,
/// in f64). The same type holds the R-operator tangents of a forward-mode pass.
#[derive(Clone, Debug)]
pub(super) struct Activations<F: Real> {
    pub(super) input: Vec<F>,
    pub(super) hidden: Vec<Buf<F>>,
    pub(super) mean: Vec<f64>,
}

/// The plain backward pass of one set of output cotangents (see
/// [`GaussianMlp::plain_chain`]).
pub(super) struct PlainChain<F: Real> {
    /// (D_l, D_l W_lᵀ) for l = L−1 … 0 (the second is empty for the first layer).
    pub(super) layers: Vec<(Buf<F>, Buf<F>)>,
}

/// [`PlainChain`] of the last estimator weights w seen by an HVP of a [`GaussianMlpRows`],
/// in the rows' precision.
pub(super) struct CachedChain {
    pub(super) w: Vec<f64>,
    pub(super) chain: Box<dyn std::any::Any + Send>,
}

/// A forward pass in either precision.
#[derive(Clone, Debug)]
pub(super) enum Pass {
    F64(Activations<f64>),
    F32(Activations<f32>),
}

impl Pass {
    pub(super) fn mean(&self) -> &[f64] {
        match self {
            Pass::F64(a) => &a.mean,
            Pass::F32(a) => &a.mean,
        }
    }
}

/// Runs `$body` with `$theta` (the policy's network weights) and `$act` (the pass's
/// activations) in the pass's precision.
macro_rules! with_pass {
    ($p:expr, $pass:expr, |$theta:ident, $act:ident| $body:expr) => {
        match $pass {
            Pass::F64($act) => {
                let $theta: &[f64] = &$p.theta;
                $body
            }
            Pass::F32($act) => {
                let $theta: &[f32] = &$p.theta32;
                $body
            }
        }
    };
}

pub(super) fn to_real<F: Real>(x: &[f64]) -> Vec<F> {
    x.iter().map(|&v| F::from_f64(v)).collect()
}

pub(crate) use with_pass;

impl GaussianMlp {
    /// Batched forward pass (obs: N×obs_dim row-major) in the policy's precision.
    pub(super) fn forward(&self, obs: &[f64], n: usize) -> Pass {
        match self.precision {
            Precision::F64 => Pass::F64(self.forward_in(&self.theta, obs, n)),
            Precision::F32 => Pass::F32(self.forward_in(&self.theta32, obs, n)),
        }
    }

    /// Batched forward pass with network weights `theta` in precision F.
    pub(super) fn forward_in<F: Real>(&self, theta: &[F], obs: &[f64], n: usize) -> Activations<F> {
        let nl = self.n_layers();
        let input: Vec<F> = to_real(obs);
        let mut hidden: Vec<Buf<F>> = Vec::with_capacity(nl - 1);
        let mut mean = Vec::new();
        for l in 0..nl {
            let (fi, fo) = (self.sizes[l], self.sizes[l + 1]);
            let x = if l == 0 { &input } else { &hidden[l - 1][..] };
            // Written in full by the β = 0 product.
            let mut z = Buf::scratch(n * fo);
            mm_nn(n, fi, fo, x, self.weights(theta, l), F::ZERO, &mut z);
            add_row(&mut z, self.biases(theta, l));
            if l + 1 < nl {
                tanh_inplace(&mut z);
                hidden.push(z);
            } else {
                mean = z.iter().map(|x| x.to_f64()).collect();
            }
        }
        Activations { input, hidden, mean }
    }

    /// Forward-mode tangents along v (network part of v only, in precision F): R{h_l} for
    /// hidden layers and R{m}. R{z_l} = R{h_{l−1}} W_l + h_{l−1} V_l + V_{b,l},
    /// R{h_l} = (1 − h_l²) ⊙ R{z_l}.
    pub(super) fn forward_r<F: Real>(
        &self,
        theta: &[F],
        act: &Activations<F>,
        n: usize,
        v: &[F],
    ) -> Activations<F> {
        let nl = self.n_layers();
        let mut hidden: Vec<Buf<F>> = Vec::with_capacity(nl - 1);
        let mut mean = Vec::new();
        for l in 0..nl {
            let (fi, fo) = (self.sizes[l], self.sizes[l + 1]);
            let input = if l == 0 { &act.input[..] } else { &act.hidden[l - 1][..] };
            // Written in full by the β = 0 product.
            let mut rz = Buf::scratch(n * fo);
            mm_nn(n, fi, fo, input, self.weights(v, l), F::ZERO, &mut rz);
            if l > 0 {
                mm_nn(n, fi, fo, &hidden[l - 1], self.weights(theta, l), F::ONE, &mut rz);
            }
            add_row(&mut rz, self.biases(v, l));
            if l + 1 < nl {
                mul_tanh_grad(&mut rz, &act.hidden[l]);
                hidden.push(rz);
            } else {
                mean = rz.iter().map(|x| x.to_f64()).collect();
            }
        }
        Activations { input: Vec::new(), hidden, mean }
    }

    /// Adds a network-part gradient accumulated in precision F to the f64 `out`.
    pub(super) fn add_net_grad<F: Real>(&self, grad: &[F], out: &mut [f64]) {
        out[..self.s_off].iter_mut().zip(grad).for_each(|(o, g)| *o += g.to_f64());
    }

    /// Backpropagation: out[net part] += Σ_i J_{m,i}ᵀ g_i for output-space cotangents
    /// `g_mean` (N×act_dim). The log-std block of `out` is not touched.
    pub(super) fn backward_add<F: Real>(
        &self,
        theta: &[F],
        act: &Activations<F>,
        n: usize,
        g_mean: &[f64],
        out: &mut [f64],
    ) {
        self.backward_from_chain(act, n, &self.plain_chain(theta, act, n, g_mean), out);
    }

    /// [`Self::backward_add`] from the plain backward pass of its cotangents.
    pub(super) fn backward_from_chain<F: Real>(
        &self,
        act: &Activations<F>,
        n: usize,
        chain: &PlainChain<F>,
        out: &mut [f64],
    ) {
        let mut grad = vec![F::ZERO; self.s_off];
        for (l, (dz, _)) in (0..self.n_layers()).rev().zip(&chain.layers) {
            let (fi, fo) = (self.sizes[l], self.sizes[l + 1]);
            let input = if l == 0 { &act.input[..] } else { &act.hidden[l - 1][..] };
            mm_tn_add(fi, n, fo, input, dz, &mut grad[self.w_off[l]..self.w_off[l] + fi * fo]);
            col_sums_add(dz, fo, &mut grad[self.b_off[l]..self.b_off[l] + fo]);
        }
        self.add_net_grad(&grad, out);
    }

    /// The cotangents of the plain backward pass for output cotangents `g_mean`: per layer
    /// l (output layer first), D_l (cotangent of z_l) and, for l > 0, D_l W_lᵀ (the
    /// cotangent of h_{l−1} before the tanh derivative). They depend on `g_mean` only, so
    /// a loop of HVPs at fixed estimator weights computes them once.
    pub(super) fn plain_chain<F: Real>(
        &self,
        theta: &[F],
        act: &Activations<F>,
        n: usize,
        g_mean: &[f64],
    ) -> PlainChain<F> {
        let mut layers = Vec::with_capacity(self.n_layers());
        let mut dz: Buf<F> = to_real(g_mean).into();
        for l in (0..self.n_layers()).rev() {
            let (fi, fo) = (self.sizes[l], self.sizes[l + 1]);
            if l > 0 {
                // Both written in full (β = 0 product, element-wise map).
                let (mut dh, mut next) = (Buf::scratch(n * fi), Buf::scratch(n * fi));
                mm_nt(n, fo, fi, &dz, self.weights(theta, l), F::ZERO, &mut dh);
                tanh_grad_into(&mut next, &dh, &act.hidden[l - 1]);
                layers.push((dz, dh));
                dz = next;
            } else {
                layers.push((dz, Buf::default()));
                break;
            }
        }
        PlainChain { layers }
    }

    /// Pearlmutter's R-operator applied to [`Self::backward_add`]: out[net part] +=
    /// R{Σ_i J_{m,i}ᵀ g_i} along v, given the plain backward pass of the cotangents g
    /// ([`Self::plain_chain`]) and their directional derivatives `rg_mean`. With D_l the
    /// cotangent of z_l:
    /// R{dW_l} = R{h_{l−1}}ᵀ D_l + h_{l−1}ᵀ R{D_l}, R{db_l} = Σ_i R{D_l},
    /// R{D_{l−1}} = (R{D_l} W_lᵀ + D_l V_lᵀ) ⊙ (1 − h²) − 2 (D_l W_lᵀ) ⊙ h ⊙ R{h}.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn backward_r_add<F: Real>(
        &self,
        theta: &[F],
        act: &Activations<F>,
        ract: &Activations<F>,
        n: usize,
        v: &[F],
        plain: &PlainChain<F>,
        rg_mean: &[f64],
        out: &mut [f64],
    ) {
        let mut grad = vec![F::ZERO; self.s_off];
        let mut rdz: Buf<F> = to_real(rg_mean).into();
        for (l, (dz, dh)) in (0..self.n_layers()).rev().zip(&plain.layers) {
            let (fi, fo) = (self.sizes[l], self.sizes[l + 1]);
            let input = if l == 0 { &act.input[..] } else { &act.hidden[l - 1][..] };
            let ow = &mut grad[self.w_off[l]..self.w_off[l] + fi * fo];
            mm_tn_add(fi, n, fo, input, &rdz, ow);
            if l > 0 {
                mm_tn_add(fi, n, fo, &ract.hidden[l - 1], dz, ow);
            }
            col_sums_add(&rdz, fo, &mut grad[self.b_off[l]..self.b_off[l] + fo]);
            if l > 0 {
                // Written in full by the β = 0 product.
                let mut rdh = Buf::scratch(n * fi);
                mm_nt(n, fo, fi, &rdz, self.weights(theta, l), F::ZERO, &mut rdh);
                mm_nt(n, fo, fi, dz, self.weights(v, l), F::ONE, &mut rdh);
                r_tanh_grad(&mut rdh, dh, &act.hidden[l - 1], &ract.hidden[l - 1]);
                rdz = rdh;
            }
        }
        self.add_net_grad(&grad, out);
    }
}
