//! The checks of a diffusers decoder configuration that the AutoencoderKL and the HunyuanVideo
//! VAE share, and how every VAE configuration reports a setting it cannot be built from.

use std::path::Path;

use dit_layers::LoadError;

/// Turns the message of a failed configuration check into an error naming `source`, where the
/// configuration came from (its `config.json`).
pub(crate) fn invalid(source: &Path) -> impl FnOnce(String) -> LoadError + '_ {
    move |message| LoadError::Config {
        path: source.to_path_buf(),
        message,
    }
}

/// The keys of a diffusers VAE configuration that both decoders are built from in the same way.
pub(crate) struct DecoderKeys<'a> {
    /// `_class_name`, when given.
    pub class_name: Option<&'a str>,
    /// `block_out_channels`.
    pub block_out_channels: &'a [usize],
    /// `up_block_types`.
    pub up_block_types: &'a [String],
    /// `act_fn`.
    pub act_fn: &'a str,
    /// `norm_num_groups`.
    pub norm_num_groups: usize,
}

impl DecoderKeys<'_> {
    /// Fails, naming the key, unless the class is `class`, the blocks are non-empty, positive
    /// and all `up_block`, the activation is SiLU and the group norm divides every block.
    pub(crate) fn check(&self, class: &str, up_block: &str) -> Result<(), String> {
        if let Some(name) = self.class_name
            && name != class
        {
            return Err(format!("_class_name is {name:?}, expected {class:?}"));
        }
        if self.block_out_channels.is_empty() || self.block_out_channels.contains(&0) {
            return Err(format!(
                "block_out_channels {:?} must be non-empty and positive",
                self.block_out_channels
            ));
        }
        if self.up_block_types.len() != self.block_out_channels.len() {
            return Err(format!(
                "up_block_types has {} entries, block_out_channels {}",
                self.up_block_types.len(),
                self.block_out_channels.len()
            ));
        }
        if let Some(other) = self.up_block_types.iter().find(|t| *t != up_block) {
            return Err(format!(
                "up_block_types: {other:?} is not supported, only {up_block:?}"
            ));
        }
        if !matches!(self.act_fn, "silu" | "swish") {
            return Err(format!(
                "act_fn {:?} is not supported, only \"silu\"",
                self.act_fn
            ));
        }
        let groups = self.norm_num_groups;
        if groups == 0 || self.block_out_channels.iter().any(|c| c % groups != 0) {
            return Err(format!(
                "norm_num_groups {groups} does not divide every block_out_channels entry {:?}",
                self.block_out_channels
            ));
        }
        Ok(())
    }
}
