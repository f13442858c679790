//! Layer and RMS normalisation, with or without learned parameters.

use burn::{
    module::{Module, Param},
    tensor::{FloatDType, Tensor, backend::Backend},
};

use crate::{LoadError, WeightsView};

/// `nn.LayerNorm` over the last dimension; `weight`/`bias` absent when
/// `elementwise_affine=False`. Statistics are computed in f32.
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// Scale `[dim]`.
    pub weight: Option<Param<Tensor<B, 1>>>,
    /// Shift `[dim]`.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// Added to the variance.
    pub eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// A norm without learned parameters.
    pub fn plain(eps: f64) -> Self {
        Self {
            weight: None,
            bias: None,
            eps,
        }
    }

    /// A fresh affine norm of size `dim`: scale ones (and shift zeros when `bias`), as
    /// PyTorch initialises `nn.LayerNorm`.
    pub fn identity(dim: usize, bias: bool, eps: f64, device: &B::Device) -> Self {
        Self {
            weight: Some(Param::from_tensor(Tensor::ones([dim], device))),
            bias: bias.then(|| Param::from_tensor(Tensor::zeros([dim], device))),
            eps,
        }
    }

    /// Loads `weight` (and `bias` when `bias`) of size `dim` from `w`.
    pub fn load(
        w: &WeightsView<'_>,
        dim: usize,
        bias: bool,
        eps: f64,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        let weight = Some(Param::from_tensor(w.tensor("weight", [dim], device)?));
        let bias = if bias {
            Some(Param::from_tensor(w.tensor("bias", [dim], device)?))
        } else {
            None
        };
        Ok(Self { weight, bias, eps })
    }

    /// Normalises `x` `[..., dim]` over its last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        #[cfg(feature = "flex")]
        if let Some(y) = self.fused(&x, None) {
            return y;
        }
        self.composed(x)
    }

    /// `forward(x) * (1 + scale) + shift` for `x` `[batch, tokens, dim]`, `scale` and `shift`
    /// `[batch, dim]` laid over the tokens: an adaLN-modulated norm (one pass on the CPU).
    pub fn forward_scale_shift(
        &self,
        x: Tensor<B, 3>,
        scale: &Tensor<B, 2>,
        shift: &Tensor<B, 2>,
    ) -> Tensor<B, 3> {
        #[cfg(feature = "flex")]
        if let Some(y) = self.fused(&x, Some((scale, shift))) {
            return y;
        }
        crate::scale_shift(self.composed(x), scale.clone(), shift.clone())
    }

    /// The norm (and modulation) in one pass on Flex f32 tensors; `None` elsewhere.
    #[cfg(feature = "flex")]
    fn fused<const D: usize>(
        &self,
        x: &Tensor<B, D>,
        modulation: Option<(&Tensor<B, 2>, &Tensor<B, 2>)>,
    ) -> Option<Tensor<B, D>> {
        use crate::cpu::norm::{Affine, RowNorm, try_norm};
        let weight = self.weight.as_ref().map(|p| p.val());
        let bias = self.bias.as_ref().map(|p| p.val());
        let affine = Affine {
            weight: weight.as_ref(),
            bias: bias.as_ref(),
            modulation,
        };
        try_norm(x, RowNorm::Layer, self.eps, affine)
    }

    /// The norm as Burn operations: statistics in f32, the result in `x`'s dtype.
    fn composed<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let x32 = x.cast(FloatDType::F32);
        let mean = x32.clone().mean_dim(D - 1);
        let centered = x32 - mean;
        let var = centered.clone().square().mean_dim(D - 1);
        let mut y = (centered / (var + self.eps).sqrt()).cast(dtype);
        if let Some(w) = &self.weight {
            y = y * w.val().unsqueeze();
        }
        if let Some(b) = &self.bias {
            y = y + b.val().unsqueeze();
        }
        y
    }
}

/// RMS normalisation over the last dimension with a learned scale (`weight`), statistics in
/// f32, as in diffusers' `RMSNorm` and T5's layer norm.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    /// Scale `[dim]`.
    pub weight: Param<Tensor<B, 1>>,
    /// Added to the mean square.
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// Loads `weight` of size `dim` from `w`.
    pub fn load(
        w: &WeightsView<'_>,
        dim: usize,
        eps: f64,
        device: &B::Device,
    ) -> Result<Self, LoadError> {
        Ok(Self {
            weight: Param::from_tensor(w.tensor("weight", [dim], device)?),
            eps,
        })
    }

    /// Normalises `x` `[..., dim]` over its last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        #[cfg(feature = "flex")]
        {
            use crate::cpu::norm::{Affine, RowNorm, try_norm};
            let weight = self.weight.val();
            let affine = Affine {
                weight: Some(&weight),
                bias: None,
                modulation: None,
            };
            if let Some(y) = try_norm(&x, RowNorm::Rms, self.eps, affine) {
                return y;
            }
        }
        let dtype = x.dtype();
        let x32 = x.cast(FloatDType::F32);
        let rms = (x32.clone().square().mean_dim(D - 1) + self.eps).sqrt();
        (x32 / rms).cast(dtype) * self.weight.val().unsqueeze()
    }
}
