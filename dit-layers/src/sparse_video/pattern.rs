//! Which keys a query sees: the band mask of the sparse computation (the reference's
//! flex-attention `mask_mod`) and the two masks profiling emulates (`get_attention_mask`).

use std::ops::Range;

use super::{SparseVideoError, SparseVideoSettings, SvgVariant};

/// Blocks of the reference's masks: profiling masks are bands of these, and the sparse band's
/// width is rounded to a multiple of it.
const BLOCK: usize = 128;

/// The tokens of one self-attention call: `frames * frame_size` video tokens in frame-major
/// order, then `text` text tokens (HunyuanVideo's joint attention; none for WAN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoTokens {
    /// Latent frames after patching.
    pub frames: usize,
    /// Tokens per latent frame after patching.
    pub frame_size: usize,
    /// Text tokens after the video tokens.
    pub text: usize,
}

impl VideoTokens {
    /// Video tokens.
    pub fn video(&self) -> usize {
        self.frames * self.frame_size
    }

    /// All tokens.
    pub fn len(&self) -> usize {
        self.video() + self.text
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where token `i` (frame-major: frame `i / frame_size`, patch `i % frame_size`) stands in
    /// token-major order (`patch * frames + frame`); text tokens stay in place.
    pub fn token_major(&self, i: usize) -> usize {
        if i >= self.video() {
            return i;
        }
        let (frame, patch) = (i / self.frame_size, i % self.frame_size);
        patch * self.frames + frame
    }
}

/// The reference's `sparsity_to_width`: the band's half-width, in frames, with which a band
/// of video tokens (and the dense text rows and columns) covers `sparsity` of the attention map.
pub fn band_frames(sparsity: f64, tokens: VideoTokens) -> f64 {
    let seq = tokens.len() as f64;
    let total = seq * seq;
    let video_share = (sparsity * total - 2.0 * seq * tokens.text as f64) / total;
    let width = seq * (1.0 - (1.0 - video_share).sqrt());
    width / tokens.frame_size as f64
}

/// The band's width in tokens for `settings` on `tokens`: `width * frame_size` (from
/// [`band_frames`]) rounded up (WAN) or down (HunyuanVideo) to a multiple of 128. An error when
/// that leaves no band.
pub fn band_tokens(
    settings: &SparseVideoSettings,
    tokens: VideoTokens,
) -> Result<usize, SparseVideoError> {
    let width = band_frames(settings.sparsity, tokens) * tokens.frame_size as f64;
    let blocks = width / BLOCK as f64;
    let blocks = match settings.variant {
        SvgVariant::Wan => blocks.ceil(),
        SvgVariant::HunyuanVideo => blocks.floor(),
    };
    if !(blocks.is_finite() && blocks >= 1.0) {
        return Err(SparseVideoError::NoBand {
            sparsity: settings.sparsity,
            frames: tokens.frames,
            frame_size: tokens.frame_size,
            text: tokens.text,
        });
    }
    Ok(blocks as usize * BLOCK)
}

/// The keys each query attends to in the sparse computation, in the order the heads' tokens
/// are placed (frame-major for spatial heads, token-major for temporal ones): the reference's
/// `generate_temporal_head_mask_mod`, applied element by element as flex attention applies it.
///
/// - WAN: `|q - k| <= band` or `k < frame_size` (the first frame's keys, a sink), with
///   `band = ceil(width * frame_size / 128) * 128`.
/// - HunyuanVideo: among the `real` tokens (video and the prompt's text tokens),
///   `|q - k| < band` or `k` or `q` a text token, with `band = floor(width * frame_size / 128)
///   * 128`; padded text tokens attend to each other only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BandMask {
    variant: SvgVariant,
    tokens: VideoTokens,
    band: usize,
    real: usize,
}

impl BandMask {
    /// The mask of `settings` on `tokens`, `real` of them not padding (`tokens.len()` for WAN,
    /// video plus prompt tokens for HunyuanVideo). An error when the sparsity leaves no band.
    pub fn new(
        settings: &SparseVideoSettings,
        tokens: VideoTokens,
        real: usize,
    ) -> Result<Self, SparseVideoError> {
        Ok(Self::with_band(
            settings.variant,
            tokens,
            band_tokens(settings, tokens)?,
            real,
        ))
    }

    /// The mask of `variant` with a band of `band` tokens (from [`band_tokens`]).
    pub(super) fn with_band(
        variant: SvgVariant,
        tokens: VideoTokens,
        band: usize,
        real: usize,
    ) -> Self {
        Self {
            variant,
            tokens,
            band,
            real: real.min(tokens.len()),
        }
    }

    /// The band's width in tokens.
    pub fn band(&self) -> usize {
        self.band
    }

    /// All tokens of the sequence.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the sequence is empty.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether query `q` sees key `k`.
    pub fn allowed(&self, q: usize, k: usize) -> bool {
        let distance = q.abs_diff(k);
        match self.variant {
            SvgVariant::Wan => distance <= self.band || k < self.tokens.frame_size,
            SvgVariant::HunyuanVideo => {
                let video = self.tokens.video();
                match (q < self.real, k < self.real) {
                    (true, true) => distance < self.band || k >= video || q >= video,
                    (q_real, k_real) => !q_real && !k_real,
                }
            }
        }
    }

    /// Sorted, disjoint key ranges that hold every key some query of `queries` sees.
    pub fn key_ranges(&self, queries: Range<usize>) -> Vec<Range<usize>> {
        let len = self.len();
        if queries.is_empty() {
            return Vec::new();
        }
        let (first, last) = (queries.start, queries.end - 1);
        let band = |end: usize| first.saturating_sub(self.band)..(last + self.band + 1).min(end);
        let mut ranges = match self.variant {
            SvgVariant::Wan => vec![0..self.tokens.frame_size.min(len), band(len)],
            SvgVariant::HunyuanVideo => {
                let video = self.tokens.video();
                let mut ranges = Vec::new();
                if first < self.real {
                    if last >= video {
                        // Text queries see every real key.
                        ranges.push(0..self.real);
                    } else {
                        ranges.push(band(video));
                        ranges.push(video..self.real);
                    }
                }
                if last >= self.real {
                    ranges.push(self.real..len);
                }
                ranges
            }
        };
        ranges.retain(|r| !r.is_empty());
        ranges.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(prev) if r.start <= prev.end => prev.end = prev.end.max(r.end),
                _ => merged.push(r),
            }
        }
        merged
    }

    /// Whether every query of `queries` sees every key of `keys` (then no element needs
    /// masking); false when unsure.
    pub fn covers(&self, queries: Range<usize>, keys: Range<usize>) -> bool {
        if queries.is_empty() || keys.is_empty() {
            return true;
        }
        let (q0, q1, k0, k1) = (queries.start, queries.end - 1, keys.start, keys.end - 1);
        let farthest = q1.abs_diff(k0).max(k1.abs_diff(q0));
        match self.variant {
            SvgVariant::Wan => k1 < self.tokens.frame_size || farthest <= self.band,
            SvgVariant::HunyuanVideo => {
                let video = self.tokens.video();
                if q0 >= self.real && k0 >= self.real {
                    return true;
                }
                q1 < self.real
                    && k1 < self.real
                    && (k0 >= video || q0 >= video || farthest < self.band)
            }
        }
    }

    /// The fraction of the `[N, N]` map the mask computes: what the band costs against dense
    /// attention.
    pub fn density(&self) -> f64 {
        let len = self.len();
        let mut seen = 0usize;
        for q in 0..len {
            for r in self.key_ranges(q..q + 1) {
                seen += r.filter(|&k| self.allowed(q, k)).count();
            }
        }
        seen as f64 / (len * len) as f64
    }
}

/// The two head classes profiling tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeadClass {
    /// Attends within its own and nearby frames: computed in frame-major order.
    Spatial,
    /// Attends to the same positions across frames: computed in token-major order.
    Temporal,
}

/// Whether query `q` sees key `k` (both in frame-major order) under the mask profiling
/// emulates for `class` (the reference's `get_attention_mask`): bands of 128-token blocks less
/// than 2 frames (WAN) or 1.5 frames (HunyuanVideo) apart, WAN's first-frame sink, and
/// HunyuanVideo's text rows and columns (padding included) all visible; the temporal mask is
/// the spatial one read in token-major order.
pub fn profile_allowed(
    variant: SvgVariant,
    tokens: VideoTokens,
    class: HeadClass,
    q: usize,
    k: usize,
) -> bool {
    let video = tokens.video();
    if q >= video || k >= video {
        return true;
    }
    let (q, k) = match class {
        HeadClass::Spatial => (q, k),
        HeadClass::Temporal => (tokens.token_major(q), tokens.token_major(k)),
    };
    let blocks_apart = (q / BLOCK).abs_diff(k / BLOCK);
    match variant {
        SvgVariant::Wan => k < tokens.frame_size || blocks_apart < 2 * tokens.frame_size / BLOCK,
        SvgVariant::HunyuanVideo => blocks_apart < 3 * tokens.frame_size / (2 * BLOCK),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(variant: SvgVariant, sparsity: f64) -> SparseVideoSettings {
        SparseVideoSettings {
            sparsity,
            ..SparseVideoSettings::reference(variant)
        }
    }

    /// The ranges and coverage agree with the element-wise predicate on every query block.
    fn check_ranges(mask: &BandMask) {
        let len = mask.len();
        for block in [1, 7, 128, 300] {
            for q0 in (0..len).step_by(block) {
                let queries = q0..(q0 + block).min(len);
                let ranges = mask.key_ranges(queries.clone());
                for q in queries.clone() {
                    for k in 0..len {
                        let inside = ranges.iter().any(|r| r.contains(&k));
                        assert!(
                            inside || !mask.allowed(q, k),
                            "key {k} of query {q} outside {ranges:?}"
                        );
                    }
                }
                for r in &ranges {
                    if mask.covers(queries.clone(), r.clone()) {
                        for q in queries.clone() {
                            assert!(r.clone().all(|k| mask.allowed(q, k)));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn key_ranges_hold_every_visible_key() {
        let wan = VideoTokens {
            frames: 5,
            frame_size: 256,
            text: 0,
        };
        let mask = BandMask::new(&settings(SvgVariant::Wan, 0.3), wan, wan.len()).unwrap();
        assert_eq!(mask.band(), 256);
        check_ranges(&mask);
        let hunyuan = VideoTokens {
            frames: 5,
            frame_size: 256,
            text: 64,
        };
        let mask =
            BandMask::new(&settings(SvgVariant::HunyuanVideo, 0.4), hunyuan, 1280 + 40).unwrap();
        check_ranges(&mask);
    }

    #[test]
    fn token_major_is_a_permutation_keeping_text() {
        let tokens = VideoTokens {
            frames: 3,
            frame_size: 4,
            text: 2,
        };
        let mut seen: Vec<usize> = (0..tokens.len()).map(|i| tokens.token_major(i)).collect();
        assert_eq!(tokens.token_major(1), 3); // frame 0, patch 1
        assert_eq!(tokens.token_major(4), 1); // frame 1, patch 0
        assert_eq!(tokens.token_major(12), 12);
        seen.sort();
        assert_eq!(seen, (0..tokens.len()).collect::<Vec<_>>());
    }

    #[test]
    fn a_sparsity_without_band_is_an_error() {
        let tokens = VideoTokens {
            frames: 2,
            frame_size: 16,
            text: 0,
        };
        let err = BandMask::new(&settings(SvgVariant::HunyuanVideo, 0.3), tokens, 32);
        assert!(
            matches!(err, Err(SparseVideoError::NoBand { .. })),
            "{err:?}"
        );
    }
}
