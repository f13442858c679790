//! When a pipeline's text encoders are in memory: loaded with it and kept, or loaded for each
//! request's prompts and dropped before its denoising loop.

use crate::PipelineError;

/// When a pipeline's text encoders are in memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum EncoderResidency {
    /// Loaded with the pipeline and kept: nothing is read again between requests.
    #[default]
    Resident,
    /// Loaded to encode a request's prompts and dropped before its denoising loop, so their
    /// memory is free while the transformer runs (T5-XXL takes 9.5 GB in bf16); read again for
    /// every request.
    OnDemand,
}

/// The loader of a pipeline's text encoders.
type Loader<T> = Box<dyn Fn() -> Result<T, PipelineError> + Send + Sync>;

/// A pipeline's text encoders `T`, kept or loaded at each use as an [`EncoderResidency`] says.
pub struct TextEncoders<T> {
    resident: Option<T>,
    load: Loader<T>,
}

impl<T> TextEncoders<T> {
    /// The encoders `load` reads, kept when `residency` says so. They are loaded once now
    /// either way, so a missing or damaged file is an error of the pipeline's loading, not of a
    /// later request.
    pub fn new(
        residency: EncoderResidency,
        load: impl Fn() -> Result<T, PipelineError> + Send + Sync + 'static,
    ) -> Result<Self, PipelineError> {
        let loaded = load()?;
        Ok(Self {
            resident: (residency == EncoderResidency::Resident).then_some(loaded),
            load: Box::new(load),
        })
    }

    /// Whether the encoders stay in memory between uses.
    pub fn is_resident(&self) -> bool {
        self.resident.is_some()
    }

    /// Runs `f` with the encoders: the kept ones, or ones loaded for this call and dropped
    /// after it.
    pub fn with<R>(
        &self,
        f: impl FnOnce(&T) -> Result<R, PipelineError>,
    ) -> Result<R, PipelineError> {
        match &self.resident {
            Some(encoders) => f(encoders),
            None => f(&(self.load)()?),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    /// Encoders whose loader counts its calls.
    fn counted(residency: EncoderResidency) -> (TextEncoders<usize>, Arc<AtomicUsize>) {
        let loads = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&loads);
        let encoders = TextEncoders::new(residency, move || {
            Ok(counter.fetch_add(1, Ordering::SeqCst) + 1)
        })
        .unwrap();
        (encoders, loads)
    }

    #[test]
    fn resident_encoders_load_once_and_on_demand_ones_at_each_use() {
        let (resident, loads) = counted(EncoderResidency::Resident);
        assert!(resident.is_resident());
        for _ in 0..3 {
            assert_eq!(resident.with(|n| Ok(*n)).unwrap(), 1);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);

        let (on_demand, loads) = counted(EncoderResidency::OnDemand);
        assert!(!on_demand.is_resident());
        // Loaded (and dropped) once to check the files, then once per use.
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(on_demand.with(|n| Ok(*n)).unwrap(), 2);
        assert_eq!(on_demand.with(|n| Ok(*n)).unwrap(), 3);
    }

    #[test]
    fn a_failing_loader_fails_the_pipeline_load_either_way() {
        for residency in [EncoderResidency::Resident, EncoderResidency::OnDemand] {
            let err = TextEncoders::<()>::new(residency, || {
                Err(PipelineError::Request("no text encoder".into()))
            })
            .err()
            .unwrap();
            assert!(err.to_string().contains("no text encoder"), "{err}");
        }
    }
}
