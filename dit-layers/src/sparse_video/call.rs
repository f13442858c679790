//! One transformer call's Sparse VideoGen: which rows and layers attend densely, the profiling
//! of the others, their sparse attention, and the head classes chosen, for the trace.

use std::sync::{Arc, Mutex, PoisonError};

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use dicache_core::{BatchRows, HeadClasses};

use super::{
    BandMask, HeadClass, SparseVideoError, SparseVideoSettings, VideoTokens, band_attention,
    band_tokens, classify, from_token_major, sample_mse, to_token_major,
};
use crate::{DenoisingStep, Heads};

/// Sparse VideoGen for the self-attentions of one transformer call, built from the
/// generation's [`SparseVideoPlan`] where the model embeds the call and read by each block's
/// attention ([`SparseVideoCall::attend`]).
#[derive(Debug, Clone)]
pub struct SparseVideoCall {
    settings: Arc<SparseVideoSettings>,
    tokens: VideoTokens,
    dense_layers: usize,
    rows: Vec<CallRow>,
    /// The head classes of every row of the call, shared by the row subsets the cache engine
    /// runs the deep blocks on.
    classes: Arc<Mutex<Vec<HeadClasses>>>,
}

/// One batch row of the call.
#[derive(Debug, Clone)]
struct CallRow {
    /// The row's index in the whole call.
    id: usize,
    /// Where it stands in its generation (step 0 of none outside a denoising loop).
    step: usize,
    /// Whether it is in the dense warm-up steps.
    warmup: bool,
    /// Its band mask (its real tokens: HunyuanVideo's prompt length).
    mask: BandMask,
}

/// Sparse VideoGen checked for one video size: the settings, the call's tokens and the band.
/// A model makes it where it checks a generation's inputs, so that every call of the
/// generation can attend sparsely.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseVideoPlan {
    settings: Arc<SparseVideoSettings>,
    tokens: VideoTokens,
    band: usize,
}

impl SparseVideoPlan {
    /// The plan of `settings` (validated) on `tokens`; an error when the sparsity leaves no
    /// band on them.
    pub fn new(
        settings: Arc<SparseVideoSettings>,
        tokens: VideoTokens,
    ) -> Result<Self, SparseVideoError> {
        settings.validate()?;
        let band = band_tokens(&settings, tokens)?;
        Ok(Self {
            settings,
            tokens,
            band,
        })
    }

    /// The plan of a model's `settings` (`None`: it attends densely, no plan) on a token
    /// `grid` `[frames, height, width]` followed by `text` text tokens.
    pub fn for_grid(
        settings: Option<&Arc<SparseVideoSettings>>,
        [frames, height, width]: [usize; 3],
        text: usize,
    ) -> Result<Option<Self>, SparseVideoError> {
        let tokens = VideoTokens {
            frames,
            frame_size: height * width,
            text,
        };
        settings.map(|s| Self::new(s.clone(), tokens)).transpose()
    }

    /// The band's width in tokens.
    pub fn band(&self) -> usize {
        self.band
    }

    /// One call of a model with `layers` blocks, whose batch rows stand at `steps` (none:
    /// outside a denoising loop, every row sparse from step 0) with `real[b]` tokens that are
    /// not padding.
    pub fn call(&self, layers: usize, steps: &[DenoisingStep], real: &[usize]) -> SparseVideoCall {
        let s = &self.settings;
        let rows: Vec<CallRow> = real
            .iter()
            .enumerate()
            .map(|(id, &real)| {
                let place = steps.get(id).copied();
                CallRow {
                    id,
                    step: place.map_or(0, |p| p.step),
                    warmup: place.is_some_and(|p| s.is_warmup(p.step, p.of)),
                    mask: BandMask::with_band(s.variant, self.tokens, self.band, real),
                }
            })
            .collect();
        SparseVideoCall {
            settings: s.clone(),
            tokens: self.tokens,
            dense_layers: s.dense_layer_count(layers),
            classes: Arc::new(Mutex::new(vec![HeadClasses::default(); rows.len()])),
            rows,
        }
    }
}

impl SparseVideoCall {
    /// What a model's `CacheableModel::head_classes` reports for a call with `call` (none:
    /// dense attention, nothing to report).
    pub fn report(call: Option<&Self>) -> Vec<HeadClasses> {
        call.map_or_else(Vec::new, Self::head_classes)
    }

    /// The head classes each row of the call chose so far, over its blocks.
    pub fn head_classes(&self) -> Vec<HeadClasses> {
        let all = self.classes.lock().unwrap_or_else(PoisonError::into_inner);
        self.rows.iter().map(|r| all[r.id]).collect()
    }

    /// Self-attention of block `layer` over `h` (`[batch, heads, tokens, dim]`, frame-major,
    /// rows as the call's): rows in warm-up, and every row in the dense layers, through
    /// `dense` (given the heads of those rows and their indices in the batch); the others
    /// profiled and attended sparsely. Returns `[batch, heads, tokens, dim]`.
    pub fn attend<B: Backend>(
        &self,
        layer: usize,
        h: Heads<B>,
        dense: impl Fn(Heads<B>, &[usize]) -> Tensor<B, 4>,
    ) -> Tensor<B, 4> {
        let all_dense = HeadClasses {
            dense: h.q.dims()[1],
            ..HeadClasses::default()
        };
        let sparse: Vec<bool> = self
            .rows
            .iter()
            .map(|r| layer >= self.dense_layers && !r.warmup)
            .collect();
        if !sparse.iter().any(|&s| s) {
            for row in &self.rows {
                self.add(row.id, all_dense);
            }
            let all: Vec<usize> = (0..self.rows.len()).collect();
            return dense(h, &all);
        }
        let outputs = self.rows.iter().enumerate().map(|(b, row)| {
            let one = Heads {
                q: h.q.clone().narrow(0, b, 1),
                k: h.k.clone().narrow(0, b, 1),
                v: h.v.clone().narrow(0, b, 1),
            };
            if sparse[b] {
                self.sparse_row(layer, row, one)
            } else {
                self.add(row.id, all_dense);
                dense(one, &[b])
            }
        });
        Tensor::cat(outputs.collect(), 0)
    }

    /// Profiles the heads of one row (`[1, heads, tokens, dim]`) and attends each class
    /// through the band, temporal heads in token-major order.
    fn sparse_row<B: Backend>(&self, layer: usize, row: &CallRow, h: Heads<B>) -> Tensor<B, 4> {
        let [_, heads, len, _] = h.q.dims();
        let s = &self.settings;
        let count = s.sampled_rows.min(len);
        let sampled = s.rows.draw(row.step, layer, count, s.sample_range.min(len));
        let errors = sample_mse(&h.q, &h.k, &h.v, &sampled, s.variant, self.tokens);
        let errors = errors
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("f32 data after convert");
        let classes = &classify(&errors, 1, heads)[0];
        let of = |class| -> Vec<usize> { (0..heads).filter(|&i| classes[i] == class).collect() };
        let (spatial, temporal) = (of(HeadClass::Spatial), of(HeadClass::Temporal));
        self.add(
            row.id,
            HeadClasses {
                dense: 0,
                spatial: spatial.len(),
                temporal: temporal.len(),
            },
        );
        let tokens = self.tokens;
        let attend = |h: Heads<B>, class| match class {
            HeadClass::Spatial => band_attention(h.q, h.k, h.v, &row.mask),
            HeadClass::Temporal => {
                let out = band_attention(
                    to_token_major(h.q, tokens),
                    to_token_major(h.k, tokens),
                    to_token_major(h.v, tokens),
                    &row.mask,
                );
                from_token_major(out, tokens)
            }
        };
        if temporal.is_empty() {
            return attend(h, HeadClass::Spatial);
        }
        if spatial.is_empty() {
            return attend(h, HeadClass::Temporal);
        }
        let device = h.q.device();
        let index = |heads: &[usize]| {
            let heads: Vec<i64> = heads.iter().map(|&i| i as i64).collect();
            let n = heads.len();
            Tensor::<B, 1, Int>::from_data(TensorData::new(heads, [n]), &device)
        };
        let pick = |heads: &[usize]| {
            let i = index(heads);
            Heads {
                q: h.q.clone().select(1, i.clone()),
                k: h.k.clone().select(1, i.clone()),
                v: h.v.clone().select(1, i),
            }
        };
        let joined = Tensor::cat(
            vec![
                attend(pick(&spatial), HeadClass::Spatial),
                attend(pick(&temporal), HeadClass::Temporal),
            ],
            1,
        );
        // Head `i` stands at its position in `spatial ++ temporal`.
        let order: Vec<usize> = spatial.iter().chain(&temporal).copied().collect();
        let mut back = vec![0; heads];
        for (at, &head) in order.iter().enumerate() {
            back[head] = at;
        }
        joined.select(1, index(&back))
    }

    /// Adds `classes` to row `id`'s count.
    fn add(&self, id: usize, classes: HeadClasses) {
        let mut all = self.classes.lock().unwrap_or_else(PoisonError::into_inner);
        all[id] += classes;
    }
}

impl BatchRows for SparseVideoCall {
    /// The rows' plans, counting into the same head classes.
    fn rows(&self, rows: &[usize]) -> Self {
        Self {
            settings: self.settings.clone(),
            tokens: self.tokens,
            dense_layers: self.dense_layers,
            rows: rows.iter().map(|&r| self.rows[r].clone()).collect(),
            classes: self.classes.clone(),
        }
    }
}
