//! The scalar coefficients of one UniPC update with the B(h) variants (data-prediction form),
//! computed in f32 as diffusers computes them on 0-dim f32 tensors.
//!
//! With flow sigmas `alpha = 1 - sigma`, and the log-SNR of a sigma is
//! `lambda = ln(alpha) - ln(sigma)`. An update goes from the sample at `s0` to `t`; `h` is the
//! log-SNR step `lambda_t - lambda_s0`, and each earlier model output at `s_k` enters through
//! `r_k = (lambda_{s_k} - lambda_s0) / h`.

use crate::SolverType;

/// Log-SNR of a flow sigma, from f32 logarithms rounded from f64. PyTorch's f32 `log` (MKL's)
/// is an ulp off for a few percent of arguments, which no rounding rule reproduces; the
/// schedules whose sigmas avoid them are computed bit for bit.
fn lambda(sigma: f32) -> f32 {
    (f64::from(1.0 - sigma).ln() as f32) - (f64::from(sigma).ln() as f32)
}

/// The coefficients of one update: the new sample is
/// `sample_scale * x - x0_scale * m0 - res_scale * sum_k rho_k * D_k`, where `x` is the sample
/// at `s0`, `m0` the data prediction at `s0` and `D_k` the scaled differences of data
/// predictions that the predictor and corrector weight with their `rho`s.
#[derive(Debug, Clone)]
pub(crate) struct BhCoefficients {
    /// `sigma_t / sigma_s0`.
    pub sample_scale: f32,
    /// `alpha_t * (e^{-h} - 1)`.
    pub x0_scale: f32,
    /// `alpha_t * B(-h)`.
    pub res_scale: f32,
    /// `r_k` of each earlier model output, most recent first (`order - 1` of them).
    pub rks: Vec<f32>,
    /// The order conditions `R rho = b`: row `i` holds the `i`-th powers of
    /// `[r_1, ..., r_{order-1}, 1]`.
    r: Vec<Vec<f32>>,
    /// Their right-hand side.
    b: Vec<f32>,
}

impl BhCoefficients {
    /// The coefficients of an update to `sigma_t` from `sigmas[0]`, with earlier model outputs
    /// at `sigmas[1..]` (most recent first); the update's order is `sigmas.len()` (at least 1).
    pub fn new(solver_type: SolverType, sigma_t: f32, sigmas: &[f32]) -> Self {
        let order = sigmas.len();
        let sigma_s0 = sigmas[0];
        let alpha_t = 1.0 - sigma_t;
        let lambda_s0 = lambda(sigma_s0);
        let h = lambda(sigma_t) - lambda_s0;
        let rks: Vec<f32> = sigmas[1..]
            .iter()
            .map(|&s| (lambda(s) - lambda_s0) / h)
            .collect();
        // Data prediction integrates towards decreasing noise: everything is in `-h`.
        let hh = -h;
        let h_phi_1 = exp_m1(hh);
        let b_h = match solver_type {
            SolverType::Bh1 => hh,
            SolverType::Bh2 => h_phi_1,
        };
        let nodes: Vec<f32> = rks.iter().copied().chain([1.0]).collect();
        let mut r = Vec::with_capacity(order);
        let mut b = Vec::with_capacity(order);
        // `h_phi_k` runs through `hh * phi_{k+1}(hh)` by the reference's recurrence
        // `h_phi_k / hh - 1 / (k + 1)!`, rounded as it rounds.
        let mut h_phi_k = h_phi_1 / hh - 1.0;
        let mut factorial: u32 = 1;
        for i in 1..=order {
            r.push(nodes.iter().map(|&x| power(x, i - 1)).collect());
            b.push(h_phi_k * factorial as f32 / b_h);
            factorial *= i as u32 + 1;
            h_phi_k = h_phi_k / hh - (1.0 / f64::from(factorial)) as f32;
        }
        Self {
            sample_scale: sigma_t / sigma_s0,
            x0_scale: alpha_t * h_phi_1,
            res_scale: alpha_t * b_h,
            rks,
            r,
            b,
        }
    }

    /// The predictor's (UniP's) weights of the `order - 1` differences: none at order 1, 0.5
    /// at order 2 (diffusers' simplification), else the solution of the leading
    /// `(order - 1)`-square system.
    pub fn predictor_rhos(&self) -> Vec<f32> {
        match self.rks.len() {
            0 => Vec::new(),
            1 => vec![0.5],
            k => solve(
                self.r[..k].iter().map(|row| row[..k].to_vec()).collect(),
                self.b[..k].to_vec(),
            ),
        }
    }

    /// The corrector's (UniC's) weights: of the `order - 1` differences, then of the
    /// difference between the new and the last data prediction; 0.5 at order 1 (diffusers'
    /// simplification), else the solution of the whole system.
    pub fn corrector_rhos(&self) -> Vec<f32> {
        if self.rks.is_empty() {
            vec![0.5]
        } else {
            solve(self.r.clone(), self.b.clone())
        }
    }
}

/// `e^x - 1` rounded as PyTorch's f32 `expm1` rounds it: as the exact value is (measured: it
/// agrees with the f64 result rounded to f32, where `f32::exp_m1` is off by an ulp in several
/// percent of the arguments).
fn exp_m1(x: f32) -> f32 {
    f64::from(x).exp_m1() as f32
}

/// `x^n` as PyTorch's `pow` computes it for the exponents 0 to 3: by repeated products.
fn power(x: f32, n: usize) -> f32 {
    match n {
        0 => 1.0,
        _ => (1..n).fold(x, |p, _| p * x),
    }
}

/// Solves the small system `a x = b` in f32 by LU factorisation with partial pivoting, in the
/// order of operations of the MKL `sgetrf`/`sgetrs` that PyTorch's `linalg.solve` calls:
/// columns are eliminated below the pivots with the pivot's reciprocal, and the back
/// substitution multiplies by the diagonal's reciprocals (bit for bit on the 2x2 systems of
/// `solver_order` 2; MKL's 3x3 path rounds differently in the last bit).
/// The systems of UniPC are Vandermonde matrices of distinct nodes, hence regular.
fn solve(mut a: Vec<Vec<f32>>, mut b: Vec<f32>) -> Vec<f32> {
    let n = b.len();
    for k in 0..n {
        let pivot = (k..n).fold(k, |best, row| {
            if a[row][k].abs() > a[best][k].abs() {
                row
            } else {
                best
            }
        });
        a.swap(k, pivot);
        b.swap(k, pivot);
        let (done, rest) = a.split_at_mut(k + 1);
        let (b_done, b_rest) = b.split_at_mut(k + 1);
        let pivot_row = &done[k];
        let inverse = 1.0 / pivot_row[k];
        for (row, rhs) in rest.iter_mut().zip(b_rest) {
            let l = row[k] * inverse;
            for (x, &u) in row[k + 1..].iter_mut().zip(&pivot_row[k + 1..]) {
                *x -= l * u;
            }
            *rhs -= l * b_done[k];
        }
    }
    for k in (0..n).rev() {
        b[k] *= 1.0 / a[k][k];
        for row in 0..k {
            b[row] -= b[k] * a[row][k];
        }
    }
    b
}
