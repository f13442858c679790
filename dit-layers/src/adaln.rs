//! Adaptive layer norms of the MM-DiT family (FLUX.1, HunyuanVideo): the conditioning vector
//! `temb` is turned into per-channel shift, scale (and gate) by `linear(silu(temb))` (diffusers
//! `normalization.py`), applied after a parameter-free layer norm. WAN's blocks apply the same
//! [`Modulation`], read from a learned table plus the timestep projection.

use crate::{LayerNorm, Linear, LoadError, ParamSource, per_sample};
use burn::{
    module::Module,
    tensor::{Tensor, activation::silu, backend::Backend},
};

/// Epsilon of the parameter-free layer norms of these blocks (FLUX.1 and HunyuanVideo).
pub const ADALN_NORM_EPS: f64 = 1e-6;

/// One shift/scale/gate triple of adaLN-Zero, each `[batch, hidden]`.
#[derive(Debug, Clone)]
pub struct Modulation<B: Backend> {
    /// Added after scaling.
    pub shift: Tensor<B, 2>,
    /// `x * (1 + scale)`.
    pub scale: Tensor<B, 2>,
    /// Multiplies the branch output before the residual add.
    pub gate: Tensor<B, 2>,
}

impl<B: Backend> Modulation<B> {
    /// `norm(x) * (1 + scale) + shift` for `x` `[batch, tokens, hidden]`: the modulated input
    /// of a branch, in one pass on the CPU.
    pub fn norm_scale_shift(&self, norm: &LayerNorm<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
        norm.forward_scale_shift(x, &self.scale, &self.shift)
    }

    /// The gated residual `x + gate * branch`, both `[batch, tokens, hidden]`, in one pass on
    /// the CPU.
    pub fn gated_add(&self, x: Tensor<B, 3>, branch: Tensor<B, 3>) -> Tensor<B, 3> {
        #[cfg(feature = "flex")]
        if let Some(y) = crate::cpu::norm::try_gated_add(&x, &branch, &self.gate) {
            return y;
        }
        let tokens = branch.dims()[1];
        x + branch * over_tokens(self.gate.clone(), tokens)
    }

    /// Splits `emb` `[batch, 3N * hidden]` into `N` triples, each stored (shift, scale, gate):
    /// the output of an adaLN `linear` (`N` = 2 for a block with attention and MLP branches),
    /// or WAN's `scale_shift_table + timestep_proj` flattened to `[batch, 6 * dim]`.
    pub fn split<const N: usize>(emb: Tensor<B, 2>) -> [Self; N] {
        let mut chunks = emb.chunk(3 * N, 1).into_iter();
        std::array::from_fn(|_| {
            let mut next = || chunks.next().expect("chunk(3N) yields 3N parts");
            Self {
                shift: next(),
                scale: next(),
                gate: next(),
            }
        })
    }
}

/// `x * (1 + scale) + shift` with `scale`, `shift` `[batch, hidden]` laid over the tokens.
pub fn scale_shift<B: Backend>(
    x: Tensor<B, 3>,
    scale: Tensor<B, 2>,
    shift: Tensor<B, 2>,
) -> Tensor<B, 3> {
    let tokens = x.dims()[1];
    x * over_tokens(scale + 1.0, tokens) + over_tokens(shift, tokens)
}

/// A per-sample vector `v` `[batch, hidden]` laid over `tokens` tokens, as the right-hand
/// operand of an element-wise op with a `[batch, tokens, hidden]` tensor: a broadcast row for a
/// batch of one, repeated for more. Flex's fast broadcasts cover a right-hand row shared by
/// every token of the whole tensor, not a row per batch entry, which falls to its strided loop:
/// measured on `[4, 1024, 768]`, 52 ms against 4.5 ms repeated (and 13 ms for a broadcast
/// left-hand operand even at batch 1, against 0.46 ms on the right).
pub fn over_tokens<B: Backend>(v: Tensor<B, 2>, tokens: usize) -> Tensor<B, 3> {
    let v = v.unsqueeze_dim(1);
    match v.dims()[0] {
        1 => v,
        _ => v.repeat_dim(1, tokens),
    }
}

/// diffusers `AdaLayerNormZero`: `linear` (`hidden -> 6 hidden`) gives the modulations of the
/// attention and the MLP branch of a double-stream block.
#[derive(Module, Debug)]
pub struct AdaLayerNormZero<B: Backend> {
    /// `linear`: `[hidden -> 6 hidden]`.
    pub linear: Linear<B>,
    /// Parameter-free layer norm.
    pub norm: LayerNorm<B>,
}

impl<B: Backend> AdaLayerNormZero<B> {
    /// Builds the norm of width `hidden` from `src`.
    pub fn new(src: &impl ParamSource<B>, hidden: usize) -> Result<Self, LoadError> {
        Ok(Self {
            linear: src.linear("linear", hidden, 6 * hidden, true)?,
            norm: LayerNorm::plain(ADALN_NORM_EPS),
        })
    }

    /// The attention branch's input `norm(x) * (1 + scale) + shift` for `x`
    /// `[batch, tokens, hidden]`, with the attention (`msa`) and MLP modulations.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        temb: Tensor<B, 2>,
    ) -> (Tensor<B, 3>, Modulation<B>, Modulation<B>) {
        let [msa, mlp] = Modulation::split(per_sample(silu(temb), |t| self.linear.forward(t)));
        (msa.norm_scale_shift(&self.norm, x), msa, mlp)
    }
}

/// diffusers `AdaLayerNormZeroSingle`: `linear` (`hidden -> 3 hidden`) gives the one modulation
/// of a single-stream block.
#[derive(Module, Debug)]
pub struct AdaLayerNormZeroSingle<B: Backend> {
    /// `linear`: `[hidden -> 3 hidden]`.
    pub linear: Linear<B>,
    /// Parameter-free layer norm.
    pub norm: LayerNorm<B>,
}

impl<B: Backend> AdaLayerNormZeroSingle<B> {
    /// Builds the norm of width `hidden` from `src`.
    pub fn new(src: &impl ParamSource<B>, hidden: usize) -> Result<Self, LoadError> {
        Ok(Self {
            linear: src.linear("linear", hidden, 3 * hidden, true)?,
            norm: LayerNorm::plain(ADALN_NORM_EPS),
        })
    }

    /// `norm(x) * (1 + scale) + shift` for `x` `[batch, tokens, hidden]`, and the modulation.
    pub fn forward(&self, x: Tensor<B, 3>, temb: Tensor<B, 2>) -> (Tensor<B, 3>, Modulation<B>) {
        let [m] = Modulation::split(per_sample(silu(temb), |t| self.linear.forward(t)));
        (m.norm_scale_shift(&self.norm, x), m)
    }
}

/// diffusers `AdaLayerNormContinuous` as FLUX.1's and HunyuanVideo's `norm_out` use it: `linear`
/// (`hidden -> 2 hidden`) gives **(scale, shift)**, in this order (BFL stores shift first).
#[derive(Module, Debug)]
pub struct AdaLayerNormContinuous<B: Backend> {
    /// `linear`: `[hidden -> 2 hidden]`, scale rows first.
    pub linear: Linear<B>,
    /// Parameter-free layer norm.
    pub norm: LayerNorm<B>,
}

impl<B: Backend> AdaLayerNormContinuous<B> {
    /// Builds the norm of width `hidden` from `src`.
    pub fn new(src: &impl ParamSource<B>, hidden: usize) -> Result<Self, LoadError> {
        Ok(Self {
            linear: src.linear("linear", hidden, 2 * hidden, true)?,
            norm: LayerNorm::plain(ADALN_NORM_EPS),
        })
    }

    /// `norm(x) * (1 + scale) + shift` for `x` `[batch, tokens, hidden]`.
    pub fn forward(&self, x: Tensor<B, 3>, temb: Tensor<B, 2>) -> Tensor<B, 3> {
        let mut halves = per_sample(silu(temb), |t| self.linear.forward(t))
            .chunk(2, 1)
            .into_iter();
        let scale = halves.next().expect("two halves");
        let shift = halves.next().expect("two halves");
        self.norm.forward_scale_shift(x, &scale, &shift)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Tensor};
    use burn_flex::Flex;

    use super::*;

    /// The fused CPU paths equal the composed formulas, also when the modulation is one row
    /// shared by a batch of two (a broadcast the fused kernels leave to the generic path).
    #[test]
    fn fused_modulation_equals_the_formula_with_own_and_shared_rows() {
        let device = Default::default();
        let random =
            |dims: [usize; 2]| Tensor::<Flex, 2>::random(dims, Distribution::Default, &device);
        let x = Tensor::<Flex, 3>::random([2, 5, 8], Distribution::Normal(0.3, 2.0), &device);
        let branch = Tensor::<Flex, 3>::random([2, 5, 8], Distribution::Default, &device);
        let norm = LayerNorm::plain(1e-6);
        for rows in [2, 1] {
            let m = Modulation {
                shift: random([rows, 8]),
                scale: random([rows, 8]),
                gate: random([rows, 8]),
            };
            let normed = norm.forward(x.clone());
            let want = normed * (m.scale.clone().unsqueeze_dim::<3>(1) + 1.0)
                + m.shift.clone().unsqueeze_dim::<3>(1);
            let got = m.norm_scale_shift(&norm, x.clone());
            let diff = (got - want).abs().max().into_scalar();
            assert!(diff < 1e-5, "norm_scale_shift, {rows} row(s): {diff}");

            let want = x.clone() + branch.clone() * m.gate.clone().unsqueeze_dim::<3>(1);
            let got = m.gated_add(x.clone(), branch.clone());
            let diff = (got - want).abs().max().into_scalar();
            assert!(diff < 1e-6, "gated_add, {rows} row(s): {diff}");
        }
    }
}
