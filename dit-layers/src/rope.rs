//! Rotary position embedding over several position axes, as FLUX (text/image ids over 3 axes),
//! HunyuanVideo and WAN (frame, height, width) use it.
//!
//! The head dimension is split into one part per axis; in the part of axis `a` (size `d_a`),
//! channel pair `j` is rotated by the angle `pos_a * theta^(-2j / d_a)`. Pairs are adjacent
//! channels `(2j, 2j + 1)` (diffusers' `repeat_interleave_real=True` convention).

use burn::tensor::{FloatDType, Tensor, TensorData, backend::Backend};
use thiserror::Error;

/// A rotary embedding that cannot be built or applied as asked.
#[derive(Debug, Error, PartialEq)]
pub enum RopeError {
    /// An axis has an odd or zero number of channels.
    #[error("rotary axis {axis} has {dim} channels; every axis needs an even, non-zero count")]
    AxisDim {
        /// The axis.
        axis: usize,
        /// Its channel count.
        dim: usize,
    },
    /// No axes were given.
    #[error("a rotary embedding needs at least one axis")]
    NoAxes,
    /// The positions do not have one column per axis.
    #[error("rotary positions have shape {shape:?}, expected [tokens, {axes}]")]
    Positions {
        /// The shape given.
        shape: Vec<usize>,
        /// The number of axes.
        axes: usize,
    },
}

/// The float precision the rotation angles are computed in before their cosines and sines are
/// rounded to f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnglePrecision {
    /// f64 frequencies and angles (diffusers' FLUX: `freqs_dtype=torch.float64`).
    F64,
    /// f32 frequencies, angles and trigonometry (diffusers' default `freqs_dtype`, used by
    /// HunyuanVideo), reproducing the reference's rounding.
    F32,
}

/// Rotary embedding with per-axis channel counts `axes_dims` (summing to the head dimension)
/// and base `theta`.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiAxisRope {
    axes_dims: Vec<usize>,
    theta: f64,
    precision: AnglePrecision,
}

impl MultiAxisRope {
    /// An embedding over `axes_dims.len()` axes; fails unless every axis has an even, non-zero
    /// number of channels.
    pub fn new(axes_dims: Vec<usize>, theta: f64) -> Result<Self, RopeError> {
        if axes_dims.is_empty() {
            return Err(RopeError::NoAxes);
        }
        if let Some((axis, &dim)) = axes_dims
            .iter()
            .enumerate()
            .find(|&(_, &d)| d == 0 || !d.is_multiple_of(2))
        {
            return Err(RopeError::AxisDim { axis, dim });
        }
        Ok(Self {
            axes_dims,
            theta,
            precision: AnglePrecision::F64,
        })
    }

    /// The same embedding with angles computed in `precision` (f64 unless set).
    pub fn with_precision(self, precision: AnglePrecision) -> Self {
        Self { precision, ..self }
    }

    /// Channels per axis.
    pub fn axes_dims(&self) -> &[usize] {
        &self.axes_dims
    }

    /// The head dimension the embedding rotates (sum of the axes' channels).
    pub fn head_dim(&self) -> usize {
        self.axes_dims.iter().sum()
    }

    /// The table for position ids `ids` `[tokens, axes]` (read back to the host; angles are
    /// computed in the embedding's [`AnglePrecision`]).
    pub fn table<B: Backend>(&self, ids: Tensor<B, 2>) -> Result<RopeTable<B>, RopeError> {
        let [tokens, axes] = ids.dims();
        if axes != self.axes_dims.len() {
            return Err(RopeError::Positions {
                shape: vec![tokens, axes],
                axes: self.axes_dims.len(),
            });
        }
        let device = ids.device();
        let positions: Vec<f64> = ids.into_data().iter::<f64>().collect();
        self.table_from_positions(&positions, &device)
    }

    /// The table over a video's token grid `[frames, height, width]` (after patching), tokens in
    /// (frame, row, column) order at positions (frame, row, column) on three axes.
    pub fn grid_table<B: Backend>(
        &self,
        [f, h, w]: [usize; 3],
        device: &B::Device,
    ) -> Result<RopeTable<B>, RopeError> {
        let positions: Vec<f64> = (0..f)
            .flat_map(|i| (0..h).flat_map(move |j| (0..w).flat_map(move |k| [i, j, k])))
            .map(|p| p as f64)
            .collect();
        self.table_from_positions(&positions, device)
    }

    /// The table for positions given row-major on the host: `positions[t * axes + a]` is the
    /// position of token `t` on axis `a`.
    pub fn table_from_positions<B: Backend>(
        &self,
        positions: &[f64],
        device: &B::Device,
    ) -> Result<RopeTable<B>, RopeError> {
        let axes = self.axes_dims.len();
        if !positions.len().is_multiple_of(axes) {
            return Err(RopeError::Positions {
                shape: vec![positions.len()],
                axes,
            });
        }
        let tokens = positions.len() / axes;
        let head_dim = self.head_dim();
        let inv_freqs: Vec<Vec<f64>> = self
            .axes_dims
            .iter()
            .map(|&d| {
                (0..d / 2)
                    .map(|j| 1.0 / self.theta.powf((2 * j) as f64 / d as f64))
                    .collect()
            })
            .collect();
        let mut cos = Vec::with_capacity(tokens * head_dim);
        let mut sin = Vec::with_capacity(tokens * head_dim);
        let inv_freqs_f32: Vec<Vec<f32>> = self
            .axes_dims
            .iter()
            .map(|&d| {
                (0..d / 2)
                    .map(|j| 1.0 / (self.theta as f32).powf((2 * j) as f32 / d as f32))
                    .collect()
            })
            .collect();
        for token in positions.chunks_exact(axes) {
            for (a, &pos) in token.iter().enumerate() {
                for j in 0..self.axes_dims[a] / 2 {
                    let (s, c) = match self.precision {
                        AnglePrecision::F64 => {
                            let angle = pos * inv_freqs[a][j];
                            (angle.sin() as f32, angle.cos() as f32)
                        }
                        AnglePrecision::F32 => {
                            let angle = pos as f32 * inv_freqs_f32[a][j];
                            (angle.sin(), angle.cos())
                        }
                    };
                    cos.extend([c, c]);
                    sin.extend([s, s]);
                }
            }
        }
        let shape = [tokens, head_dim];
        Ok(RopeTable {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
        })
    }
}

/// Cosines and sines of the rotation angles, each `[tokens, head_dim]` with every value
/// repeated for the two channels of its pair.
#[derive(Debug, Clone)]
pub struct RopeTable<B: Backend> {
    /// `cos(angle)` `[tokens, head_dim]`.
    pub cos: Tensor<B, 2>,
    /// `sin(angle)` `[tokens, head_dim]`.
    pub sin: Tensor<B, 2>,
}

impl<B: Backend> RopeTable<B> {
    /// Rotates `x` `[batch, heads, tokens, head_dim]` (computed in f32, returned in `x`'s dtype):
    /// each pair `(a, b)` becomes `(a cos - b sin, b cos + a sin)`.
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        #[cfg(feature = "flex")]
        let x = match crate::cpu::rope::try_rotate_pairs(x, &self.cos, &self.sin) {
            Ok(rotated) => return rotated,
            Err(x) => x,
        };
        let dtype = x.dtype();
        let [batch, heads, tokens, head_dim] = x.dims();
        let x = x.cast(FloatDType::F32);
        let pairs = x.clone().reshape([batch, heads, tokens, head_dim / 2, 2]);
        let real = pairs.clone().narrow(4, 0, 1);
        let imag = pairs.narrow(4, 1, 1);
        let rotated =
            Tensor::cat(vec![imag.neg(), real], 4).reshape([batch, heads, tokens, head_dim]);
        let cos = self.cos.clone().cast(FloatDType::F32).unsqueeze::<4>();
        let sin = self.sin.clone().cast(FloatDType::F32).unsqueeze::<4>();
        (x * cos + rotated * sin).cast(dtype)
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Tensor;
    use burn_flex::Flex;

    use super::{MultiAxisRope, RopeError};

    #[test]
    fn odd_or_missing_axes_are_rejected() {
        assert_eq!(
            MultiAxisRope::new(vec![4, 3], 1e4),
            Err(RopeError::AxisDim { axis: 1, dim: 3 })
        );
        assert_eq!(MultiAxisRope::new(vec![], 1e4), Err(RopeError::NoAxes));
    }

    #[test]
    fn positions_need_one_column_per_axis() {
        let rope = MultiAxisRope::new(vec![2, 2], 1e4).unwrap();
        let ids = Tensor::<Flex, 2>::zeros([3, 3], &Default::default());
        assert_eq!(
            rope.table(ids).unwrap_err(),
            RopeError::Positions {
                shape: vec![3, 3],
                axes: 2
            }
        );
    }

    #[test]
    fn rotation_keeps_pair_norms_and_position_zero_is_identity() {
        let device = Default::default();
        let rope = MultiAxisRope::new(vec![2, 4], 100.0).unwrap();
        let table = rope
            .table_from_positions::<Flex>(&[0.0, 0.0, 3.0, -1.5], &device)
            .unwrap();
        let x = Tensor::<Flex, 4>::from_floats(
            [[[
                [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
                [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            ]]],
            &device,
        );
        let y: Vec<f32> = table.apply(x).into_data().iter::<f32>().collect();
        assert_eq!(&y[..6], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        for pair in 0..3 {
            let (a, b) = (y[6 + 2 * pair], y[7 + 2 * pair]);
            let (u, v) = ((2 * pair + 1) as f32, (2 * pair + 2) as f32);
            assert!(((a * a + b * b) - (u * u + v * v)).abs() < 1e-4);
        }
        // Axis 0 rotates its only pair by 3 rad.
        let (s, c) = (3.0f32.sin(), 3.0f32.cos());
        assert!((y[6] - (c - 2.0 * s)).abs() < 1e-5 && (y[7] - (2.0 * c + s)).abs() < 1e-5);
    }
}
