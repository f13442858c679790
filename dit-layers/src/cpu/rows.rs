//! Slice primitives of the CPU kernels: the softmax pieces of attention (maximum, shifted
//! exponential with its sum, scaling) and the tanh GELU, written so the compiler vectorises them
//! (eight independent lanes, no calls into libm; on x86-64 compiled a second time for AVX2+FMA
//! and picked at run time, elsewhere the portable build), and SiLU, which keeps the standard
//! library's `exp` for parity (see [`silu`]).

/// Lanes the loops below are written for (one AVX2 register of f32).
const LANES: usize = 8;

/// The largest element of `row` (`-inf` for an empty or all `-inf` row).
pub fn max(row: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the features the function was compiled for.
        return unsafe { max_avx2(row) };
    }
    max_portable(row)
}

/// Replaces every `x` in `row` by `exp(x - shift)` and returns their sum. Requires
/// `x - shift <= 0` for finite `x` (true when `shift` is at least the row maximum); `-inf`
/// becomes 0.
pub fn exp_shifted_sum(row: &mut [f32], shift: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: as in `max`.
        return unsafe { exp_shifted_sum_avx2(row, shift) };
    }
    exp_shifted_sum_portable(row, shift)
}

/// Replaces every `x` in `values` by `0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³)))`.
pub fn gelu_tanh(values: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
        // SAFETY: as in `max`.
        return unsafe { gelu_tanh_avx2(values) };
    }
    gelu_tanh_portable(values)
}

/// Replaces every `x` in `values` by `x * sigmoid(x)` (SiLU), computed as PyTorch does,
/// `x / (1 + exp(-x))`, with the standard library's `exp`: this file's polynomial one is an ulp
/// coarser, which a VAE decoder's stack of SiLUs turns into drift beyond the parity tolerance.
pub fn silu(values: &mut [f32]) {
    for x in values.iter_mut() {
        *x /= 1.0 + (-*x).exp();
    }
}

/// Multiplies every element of `row` by `factor`.
pub fn scale(row: &mut [f32], factor: f32) {
    row.iter_mut().for_each(|x| *x *= factor);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn max_avx2(row: &[f32]) -> f32 {
    max_portable(row)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn exp_shifted_sum_avx2(row: &mut [f32], shift: f32) -> f32 {
    exp_shifted_sum_portable(row, shift)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn gelu_tanh_avx2(values: &mut [f32]) {
    gelu_tanh_portable(values)
}

#[inline(always)]
fn gelu_tanh_portable(values: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    for x in values.iter_mut() {
        let v = *x;
        let inner = SQRT_2_OVER_PI * (v + 0.044_715 * v * v * v);
        *x = 0.5 * v * (1.0 + tanh(inner));
    }
}

/// `tanh(y) = sign(y) (1 - e) / (1 + e)` with `e = exp(-2|y|) <= 1`: absolute error about
/// 1e-7 (relative error grows near 0, where callers add 1 to it).
#[inline(always)]
fn tanh(y: f32) -> f32 {
    let e = exp_nonpositive(-2.0 * y.abs());
    let t = (1.0 - e) / (1.0 + e);
    if y < 0.0 { -t } else { t }
}

#[inline(always)]
fn max_portable(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (m, &x) in lanes.iter_mut().zip(chunk) {
            *m = if x > *m { x } else { *m };
        }
    }
    tail.iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m })
}

#[inline(always)]
fn exp_shifted_sum_portable(row: &mut [f32], shift: f32) -> f32 {
    let mut sums = [0.0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (s, x) in sums.iter_mut().zip(chunk.iter_mut()) {
            *x = exp_nonpositive(*x - shift);
            *s += *x;
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for x in chunks.into_remainder() {
        *x = exp_nonpositive(*x - shift);
        sum += *x;
    }
    sum
}

/// `exp(x)` for `x <= 0` to about one ulp, branch-free so loops over it vectorise: `x = n ln 2 + r`
/// with `|r| <= ln 2 / 2`, a degree-7 minimax polynomial for `exp(r)` (the Cephes `expf`
/// coefficients), and `2^n` built from the exponent bits. Results below `2^-126` (`x < -87`,
/// far below one part in 2^100 of the row sum) are flushed to 0, as is `-inf`.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LOG2_E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that `n * LN2_HI` is exact for the |n| <= 126 used here.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding 1.5 * 2^23 rounds to an integer held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const P: [f32; 6] = [
        1.987_569_1e-4,
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        5e-1, // 0.500_000_01 (Cephes), which rounds to 0.5 in f32
    ];
    let clamped = if x < -87.0 { -87.0 } else { x };
    let rounded = clamped * LOG2_E + ROUND;
    let n = rounded - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let poly = P[1..].iter().fold(P[0], |acc, &c| acc * r + c);
    let exp_r = poly * r * r + r + 1.0;
    let exponent = (rounded.to_bits() as i32 - ROUND.to_bits() as i32 + 127) as u32;
    let value = exp_r * f32::from_bits(exponent << 23);
    if x < -87.0 { 0.0 } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_to_two_ulp() {
        let mut worst = 0.0f64;
        for i in 0..=870_000 {
            let x = -(i as f32) * 1e-4;
            let got = exp_nonpositive(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 2.5e-7, "worst relative error {worst:e}");
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(-100.0), 0.0);
        assert_eq!(exp_nonpositive(0.0), 1.0);
    }

    #[test]
    fn gelu_matches_the_formula_in_f64() {
        let mut xs: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 5e-3).collect();
        xs.extend([-30.0, 30.0, f32::MIN_POSITIVE, -1e-9]);
        let want: Vec<f64> = xs
            .iter()
            .map(|&x| {
                let x = x as f64;
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
            })
            .collect();
        gelu_tanh(&mut xs);
        for (got, want) in xs.iter().zip(&want) {
            let err = (*got as f64 - want).abs();
            assert!(err <= 1e-6 + 1e-6 * want.abs(), "{got} vs {want}");
        }
    }

    #[test]
    fn rows_match_scalar_loops() {
        let mut row: Vec<f32> = (0..37).map(|i| ((i * 7919) % 101) as f32 * -0.13).collect();
        row[5] = f32::NEG_INFINITY;
        let m = max(&row);
        assert_eq!(m, row.iter().cloned().fold(f32::NEG_INFINITY, f32::max));
        let want: Vec<f64> = row.iter().map(|&x| ((x - 1.0) as f64).exp()).collect();
        let sum = exp_shifted_sum(&mut row, 1.0);
        for (got, want) in row.iter().zip(&want) {
            assert!((*got as f64 - want).abs() <= 3e-7 * want, "{got} vs {want}");
        }
        assert!((sum as f64 - want.iter().sum::<f64>()).abs() < 1e-5);
        assert_eq!(max(&[]), f32::NEG_INFINITY);
    }
}
