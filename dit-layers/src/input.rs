//! The checks of one transformer call's inputs that every model makes: tensor shapes, latent
//! sizes against the patch and the rotary table, guidance against the guidance embedding, text
//! masks; and the one error type that names the input at fault.

use burn::tensor::{Tensor, backend::Backend};
use thiserror::Error;

/// Inputs that do not fit the model; every variant names the input.
#[derive(Debug, Error, PartialEq)]
pub enum InputError {
    /// A tensor has the wrong shape.
    #[error("input {name}: expected shape {expected}, found {found:?}")]
    Shape {
        /// The input (`latents`, `timestep`, `encoder_hidden_states`, ...).
        name: &'static str,
        /// The expected shape, with symbolic sizes (`[batch, img_tokens, 64]`).
        expected: String,
        /// The shape given.
        found: Vec<usize>,
    },
    /// A latent size is not a positive multiple of the patch.
    #[error(
        "input latents: {axis} = {size} is not a positive multiple of the patch size {patch} on \
         that axis (patch_size {patch_size:?})"
    )]
    NotDivisible {
        /// `frames`, `height` or `width`.
        axis: &'static str,
        /// The size given.
        size: usize,
        /// The patch size on that axis.
        patch: usize,
        /// The whole patch.
        patch_size: [usize; 3],
    },
    /// More patches along an axis than the rotary table covers.
    #[error(
        "input latents: {patches} patches along {axis}, but the rotary table covers \
         rope_max_seq_len = {max} positions"
    )]
    TooLong {
        /// `frames`, `height` or `width`.
        axis: &'static str,
        /// Patches along that axis.
        patches: usize,
        /// `rope_max_seq_len`.
        max: usize,
    },
    /// Guidance given to a model without guidance embedding, or missing for one with it.
    #[error(
        "input guidance: the model {} a guidance embedding (guidance_embeds = {model}) but guidance was {}",
        if *model { "has" } else { "has no" },
        if *model { "not given" } else { "given" }
    )]
    Guidance {
        /// Whether the model embeds guidance.
        model: bool,
    },
    /// A row of the text mask is not ones followed by zeros, or has no valid token.
    #[error(
        "input encoder_attention_mask: row {row} is {values:?}; each row must be 1s (valid \
         tokens, at least one) followed by 0s (right padding)"
    )]
    Mask {
        /// The batch row.
        row: usize,
        /// Its values.
        values: Vec<i64>,
    },
    /// Sparse attention settings that cannot work on latents of this size.
    #[error("sparse attention: {0}")]
    Sparse(#[from] crate::SparseVideoError),
}

/// Checks that the input `name` has the shape `want`; `expected` describes it in the error
/// (with symbolic sizes where the caller has them).
pub fn expect_shape(
    name: &'static str,
    found: &[usize],
    want: &[usize],
    expected: impl Into<String>,
) -> Result<(), InputError> {
    if found == want {
        Ok(())
    } else {
        Err(InputError::Shape {
            name,
            expected: expected.into(),
            found: found.to_vec(),
        })
    }
}

/// Checks that a step's input `name` keeps the shape it had when the generation's inputs were
/// checked (`before`).
pub fn same_shape(name: &'static str, found: &[usize], before: &[usize]) -> Result<(), InputError> {
    expect_shape(
        name,
        found,
        before,
        format!("{before:?} (as at the first step)"),
    )
}

/// The token grid `[frames, height, width]` of latents of `sizes` (frames, height, width) cut
/// into patches of `patch`; every size must be a positive multiple of its patch and, where
/// `max_patches` is given, make at most that many patches (the rotary table's length).
pub fn patch_grid(
    sizes: [usize; 3],
    patch: [usize; 3],
    max_patches: Option<usize>,
) -> Result<[usize; 3], InputError> {
    let mut grid = [0; 3];
    for (i, axis) in ["frames", "height", "width"].into_iter().enumerate() {
        let (size, p) = (sizes[i], patch[i]);
        if size == 0 || !size.is_multiple_of(p) {
            return Err(InputError::NotDivisible {
                axis,
                size,
                patch: p,
                patch_size: patch,
            });
        }
        grid[i] = size / p;
        if let Some(max) = max_patches.filter(|&max| grid[i] > max) {
            return Err(InputError::TooLong {
                axis,
                patches: grid[i],
                max,
            });
        }
    }
    Ok(grid)
}

/// Checks that a guidance input (the shape of the tensor `given`, if any) matches the model's
/// guidance embedding (`embeds`) and the call's `batch`.
pub fn check_guidance(
    given: Option<[usize; 1]>,
    embeds: bool,
    batch: usize,
) -> Result<(), InputError> {
    match (given, embeds) {
        (Some(dims), true) => expect_batch("guidance", dims, batch),
        (None, false) => Ok(()),
        _ => Err(InputError::Guidance { model: embeds }),
    }
}

impl<I: dicache_core::JoinRows, P: dicache_core::JoinRows> dicache_core::JoinRows
    for Checked<I, P>
{
    /// The inputs and what was prepared from them, joined row by row: the inputs of calls
    /// checked apart that share the batch-independent shapes.
    fn join(parts: Vec<Self>) -> Self {
        let mut steps = Vec::new();
        let (input, prepared) = parts
            .into_iter()
            .map(|c| {
                steps.extend(c.steps);
                (c.input, c.prepared)
            })
            .unzip();
        Self {
            input: I::join(input),
            prepared: P::join(prepared),
            steps,
        }
    }
}

/// The tensors of a transformer call that change from step to step: the latents (of `N`
/// dimensions) and the timestep `[batch]`.
pub trait StepTensors<B: Backend, const N: usize> {
    /// The latents and the timestep, to replace.
    fn step_tensors(&mut self) -> (&mut Tensor<B, N>, &mut Tensor<B, 1>);
}

/// Implements [`StepTensors`] for a model input struct `$input<B>` whose step tensors are its
/// fields `latents` (of `$dims` dimensions) and `timestep`.
#[macro_export]
macro_rules! step_tensors {
    ($input:ident, $dims:literal) => {
        impl<B: ::burn::tensor::backend::Backend> $crate::StepTensors<B, $dims> for $input<B> {
            fn step_tensors(
                &mut self,
            ) -> (
                &mut ::burn::tensor::Tensor<B, $dims>,
                &mut ::burn::tensor::Tensor<B, 1>,
            ) {
                (&mut self.latents, &mut self.timestep)
            }
        }
    };
}

/// Checks that the input `name` (`timestep`, `guidance`) has one value per batch row.
pub fn expect_batch(name: &'static str, found: [usize; 1], batch: usize) -> Result<(), InputError> {
    expect_shape(name, &found, &[batch], format!("[{batch}]"))
}

/// A model's input `I` checked against its configuration, with `P`, what the model prepared
/// from it (token grid, rotary table, embedded text): the only input a model runs on. A
/// denoising loop checks the first step's input and moves it on with [`Checked::next_step`], so
/// what does not change during a generation is checked and prepared once.
#[derive(Debug, Clone)]
pub struct Checked<I, P> {
    input: I,
    prepared: P,
    steps: Vec<DenoisingStep>,
}

/// Where a batch row of a transformer call stands in its generation: what a model whose
/// behaviour follows the schedule (Sparse VideoGen's dense warm-up steps) reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenoisingStep {
    /// The step's index, from 0.
    pub step: usize,
    /// The generation's steps.
    pub of: usize,
}

impl<I, P> Checked<I, P> {
    /// `input` with what the model prepared from it; for a model's `check_input`, after it
    /// checked `input`.
    pub fn new(input: I, prepared: P) -> Self {
        Self {
            input,
            prepared,
            steps: Vec::new(),
        }
    }

    /// The same call with each batch row's place in its generation (a denoising loop sets it
    /// before every call).
    pub fn at_steps(mut self, steps: Vec<DenoisingStep>) -> Self {
        self.steps = steps;
        self
    }

    /// Each batch row's place in its generation; empty when the caller did not say (a call
    /// outside a denoising loop).
    pub fn steps(&self) -> &[DenoisingStep] {
        &self.steps
    }

    /// The inputs.
    pub fn get(&self) -> &I {
        &self.input
    }

    /// What the model prepared from the inputs.
    pub fn prepared(&self) -> &P {
        &self.prepared
    }

    /// The same call at the next step: new `latents` and `timestep` of the shapes checked
    /// before, everything else (and what was prepared from it) kept.
    pub fn next_step<B: Backend, const N: usize>(
        mut self,
        latents: Tensor<B, N>,
        timestep: Tensor<B, 1>,
    ) -> Result<Self, InputError>
    where
        I: StepTensors<B, N>,
    {
        let (old_latents, old_timestep) = self.input.step_tensors();
        same_shape("latents", &latents.dims(), &old_latents.dims())?;
        same_shape("timestep", &timestep.dims(), &old_timestep.dims())?;
        *old_latents = latents;
        *old_timestep = timestep;
        Ok(self)
    }
}
