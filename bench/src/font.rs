//! The font of the plots and sample sheets: DejaVu Sans, embedded (`bench/assets`, Bitstream
//! Vera license beside it), registered as plotters' `sans-serif` so no system font is needed.

use std::sync::OnceLock;

use anyhow::{Result, ensure};
use plotters::style::{FontStyle, register_font};

const DEJAVU_SANS: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Registers the font once per process.
pub fn register() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| register_font("sans-serif", FontStyle::Normal, DEJAVU_SANS).is_ok());
    ensure!(ok, "the embedded DejaVu Sans font did not load");
    Ok(())
}
