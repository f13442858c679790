//! The speed/fidelity frontier of one model: loop speedup against PSNR (left) and SSIM
//! (right), one line per policy, each point labelled with its setting.

use std::path::Path;

use anyhow::Result;
use plotters::style::{BLACK, RGBColor};

use super::results::{ModelResult, SettingResult};
use crate::chart::{self, Panel, Series};

/// Writes the frontier plot of `result` as a PNG to `path`.
pub fn frontier(result: &ModelResult, path: &Path) -> Result<()> {
    let title = format!(
        "{}: speed and fidelity against no cache ({} samples)",
        result.setup.model.title(),
        result.samples
    );
    let panels = [
        panel(result, "PSNR (dB)", |s| s.summary.psnr),
        panel(result, "SSIM", |s| s.summary.ssim),
    ];
    chart::write_png(path, &title, &panels)
}

/// One panel: loop speedup on x, `y` of each setting on y, a line per policy (settings where
/// `y` is infinite, such as the PSNR of no cache, are left out).
fn panel(result: &ModelResult, y_desc: &str, y: fn(&SettingResult) -> f64) -> Panel {
    let mut names: Vec<&str> = result.settings.iter().map(|s| s.series.as_str()).collect();
    names.dedup();
    let series = names
        .into_iter()
        .map(|name| Series {
            name: name.to_string(),
            color: color_of(name),
            points: result
                .settings
                .iter()
                .filter(|s| s.series == name)
                .map(|s| (s.summary.loop_speedup, y(s), point_label(s)))
                .collect(),
        })
        .collect();
    Panel {
        x_desc: "speedup of the denoising loop (x)".to_string(),
        y_desc: y_desc.to_string(),
        x_includes: Some(1.0),
        series,
    }
}

/// The label of a point: the setting's value, or the label itself for no cache.
fn point_label(setting: &SettingResult) -> String {
    if setting.value.is_empty() {
        setting.label.clone()
    } else {
        setting.value.clone()
    }
}

/// The colour of a policy's series.
fn color_of(series: &str) -> RGBColor {
    match series {
        "uniform" => RGBColor(31, 119, 180),
        "fbcache" => RGBColor(255, 127, 14),
        "dicache" => RGBColor(214, 39, 40),
        "dicache (delta_minus)" => RGBColor(148, 103, 189),
        _ => BLACK,
    }
}
