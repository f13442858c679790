//! diffusers' tiled decoding of `AutoencoderKLHunyuanVideo` (`tiled_decode`,
//! `_temporal_tiled_decode`): the latent clip cut into overlapping tiles in space and time,
//! each decoded on its own, and the overlaps cross-faded (`blend_v`, `blend_h`, `blend_t`), so
//! memory is bounded by the tile size rather than the video size.

use burn::tensor::{Tensor, TensorData, backend::Backend};

use crate::VaeError;

/// Tile sizes in video pixels and frames, as diffusers' `enable_tiling` takes them; the
/// defaults are diffusers'. Each axis is tiled only when the clip is larger than one tile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileConfig {
    /// Spatial tiles (diffusers' `use_tiling`); `None` decodes every frame whole.
    pub spatial: Option<SpatialTiles>,
    /// Temporal tiles (diffusers' `use_framewise_decoding`, on by default there); `None`
    /// decodes all frames at once.
    pub temporal: Option<TemporalTiles>,
}

impl Default for TileConfig {
    /// diffusers after `enable_tiling()`: both axes tiled with its default sizes.
    fn default() -> Self {
        Self {
            spatial: Some(SpatialTiles::default()),
            temporal: Some(TemporalTiles::default()),
        }
    }
}

/// Spatial tiles of `min_height` x `min_width` pixels every `stride_height` / `stride_width`
/// pixels; neighbours are cross-faded over `min - stride` pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpatialTiles {
    /// `tile_sample_min_height` (256).
    pub min_height: usize,
    /// `tile_sample_min_width` (256).
    pub min_width: usize,
    /// `tile_sample_stride_height` (192).
    pub stride_height: usize,
    /// `tile_sample_stride_width` (192).
    pub stride_width: usize,
}

impl Default for SpatialTiles {
    fn default() -> Self {
        Self {
            min_height: 256,
            min_width: 256,
            stride_height: 192,
            stride_width: 192,
        }
    }
}

/// Temporal tiles of `min_frames` video frames (plus the frame before them) every
/// `stride_frames` frames; neighbours are cross-faded over `min_frames - stride_frames` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemporalTiles {
    /// `tile_sample_min_num_frames` (16).
    pub min_frames: usize,
    /// `tile_sample_stride_num_frames` (12).
    pub stride_frames: usize,
}

impl Default for TemporalTiles {
    fn default() -> Self {
        Self {
            min_frames: 16,
            stride_frames: 12,
        }
    }
}

/// One axis of a tiling in latent cells and in video samples.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Axis {
    /// Latent cells per tile (`tile_latent_min_*`).
    pub tile: usize,
    /// Latent cells between tile starts (`tile_latent_stride_*`).
    pub stride: usize,
    /// Video samples each tile contributes (`tile_sample_stride_*`).
    pub sample_stride: usize,
    /// Video samples cross-faded between neighbours (`min - stride`).
    pub blend: usize,
}

impl Axis {
    /// The axis of tiles `min` samples long every `stride` samples, `ratio` samples per
    /// latent cell; fails, naming `what`, when a tile or a stride is under one latent cell or
    /// tiles would leave gaps.
    pub fn new(min: usize, stride: usize, ratio: usize, what: &str) -> Result<Self, VaeError> {
        if stride / ratio == 0 || stride > min {
            return Err(VaeError::Tiles(format!(
                "{what}: tiles of {min} every {stride} must satisfy {ratio} <= stride <= min \
                 ({ratio} per latent cell)"
            )));
        }
        Ok(Self {
            tile: min / ratio,
            stride: stride / ratio,
            sample_stride: stride,
            blend: min - stride,
        })
    }
}

/// The first `len` entries of `x` along `dim`, or all when there are fewer.
pub(crate) fn head<B: Backend>(x: Tensor<B, 5>, dim: usize, len: usize) -> Tensor<B, 5> {
    let have = x.dims()[dim];
    x.narrow(dim, 0, len.min(have))
}

/// The last `len` entries of `x` along `dim` (all when there are fewer): the part of a tile a
/// later neighbour's [`blend`] reads; `None` when `len` is 0 (no blending).
pub(crate) fn overlap<B: Backend>(
    x: &Tensor<B, 5>,
    dim: usize,
    len: usize,
) -> Option<Tensor<B, 5>> {
    let have = x.dims()[dim];
    let len = len.min(have);
    (len > 0).then(|| x.clone().narrow(dim, have - len, len))
}

/// diffusers' `blend_v` / `blend_h` / `blend_t` along `dim` (3, 4, 2): the first `extent`
/// entries of `b` (at most as many as `a` and `b` hold) cross-faded from the last ones of `a`,
/// entry `y` as `a[-extent + y] * (1 - y / extent) + b[y] * (y / extent)` with f32 weights;
/// `b` unchanged without `a`.
pub(crate) fn blend<B: Backend>(
    a: Option<&Tensor<B, 5>>,
    b: Tensor<B, 5>,
    dim: usize,
    extent: usize,
) -> Tensor<B, 5> {
    let Some(a) = a else {
        return b;
    };
    let len_b = b.dims()[dim];
    let extent = extent.min(a.dims()[dim]).min(len_b);
    if extent == 0 {
        return b;
    }
    let mut shape = [1; 5];
    shape[dim] = extent;
    let weights = |f: &dyn Fn(f64) -> f64| {
        let values: Vec<f32> = (0..extent)
            .map(|y| f(y as f64 / extent as f64) as f32)
            .collect();
        Tensor::<B, 5>::from_data(TensorData::new(values, shape), &b.device()).cast(b.dtype())
    };
    let faded = a.clone().narrow(dim, a.dims()[dim] - extent, extent) * weights(&|y| 1.0 - y)
        + b.clone().narrow(dim, 0, extent) * weights(&|y| y);
    if extent == len_b {
        faded
    } else {
        Tensor::cat(vec![faded, b.narrow(dim, extent, len_b - extent)], dim)
    }
}

/// diffusers' `tiled_decode`: `decode` run on tiles of `z` `[batch, c, t, h, w]` cut by
/// `rows` (height) and `cols` (width), each tile cross-faded with the already blended tiles
/// above and to its left, its first `sample_stride` rows and columns kept. Returns
/// `[batch, c', t', h * ratio, w * ratio]` for `ratio` video pixels per latent cell.
///
/// Only the strips of the previous row and of the left tile that the next blends read are
/// held, so memory grows with one row of tiles.
pub(crate) fn decode_spatial_tiles<B: Backend>(
    z: Tensor<B, 5>,
    [rows, cols]: [Axis; 2],
    ratio: usize,
    decode: &impl Fn(Tensor<B, 5>) -> Tensor<B, 5>,
) -> Tensor<B, 5> {
    let [_, _, _, height, width] = z.dims();
    // Bottom strips of the blended tiles of the row above, one per column.
    let mut above: Vec<Option<Tensor<B, 5>>> = Vec::new();
    let mut out_rows = Vec::new();
    for i in (0..height).step_by(rows.stride) {
        let mut row = Vec::new();
        let mut strips = Vec::new();
        let mut left: Option<Tensor<B, 5>> = None;
        for (col, j) in (0..width).step_by(cols.stride).enumerate() {
            let tile = z.clone().narrow(3, i, rows.tile.min(height - i)).narrow(
                4,
                j,
                cols.tile.min(width - j),
            );
            let up = above.get(col).and_then(Option::as_ref);
            let tile = blend(up, decode(tile), 3, rows.blend);
            let tile = blend(left.as_ref(), tile, 4, cols.blend);
            strips.push(overlap(&tile, 3, rows.blend));
            left = overlap(&tile, 4, cols.blend);
            row.push(head(
                head(tile, 3, rows.sample_stride),
                4,
                cols.sample_stride,
            ));
        }
        out_rows.push(Tensor::cat(row, 4));
        above = strips;
    }
    let video = Tensor::cat(out_rows, 3);
    head(head(video, 3, height * ratio), 4, width * ratio)
}

/// diffusers' `_temporal_tiled_decode`: `decode` run on tiles of `frames.tile + 1` latent
/// frames of `z` `[batch, c, t, h, w]` every `frames.stride`; every tile after the first
/// drops its first video frame (the one its predecessor ends on) and is cross-faded with the
/// blended tile before it. Returns `[batch, c', 1 + ratio (t - 1), h', w']` for `ratio` video
/// frames per latent frame.
pub(crate) fn decode_temporal_tiles<B: Backend>(
    z: Tensor<B, 5>,
    frames: Axis,
    ratio: usize,
    decode: &impl Fn(Tensor<B, 5>) -> Tensor<B, 5>,
) -> Tensor<B, 5> {
    let latent_frames = z.dims()[2];
    // The last frames of the previous blended tile.
    let mut before: Option<Tensor<B, 5>> = None;
    let mut pieces = Vec::new();
    for i in (0..latent_frames).step_by(frames.stride) {
        let len = (frames.tile + 1).min(latent_frames - i);
        let tile = if i == 0 {
            decode(z.clone().narrow(2, i, len))
        } else if len > 1 {
            let decoded = decode(z.clone().narrow(2, i, len));
            let count = decoded.dims()[2];
            decoded.narrow(2, 1, count - 1)
        } else {
            // One latent frame decodes to the frame the previous tile ends on, which the
            // tile drops: nothing is left (diffusers decodes it and keeps none of it).
            continue;
        };
        let tile = blend(before.as_ref(), tile, 2, frames.blend);
        let keep = frames.sample_stride + usize::from(i == 0);
        before = overlap(&tile, 2, frames.blend);
        pieces.push(head(tile, 2, keep));
    }
    head(Tensor::cat(pieces, 2), 2, 1 + ratio * (latent_frames - 1))
}
