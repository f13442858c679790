//! The speed/fidelity frontier of one model: loop speedup against PSNR (left) and SSIM
//! (right), one line per policy, each point labelled with its setting.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use plotters::{coord::Shift, prelude::*};

use super::{
    font,
    results::{ModelResult, SettingResult},
};

const WIDTH: u32 = 1400;
const HEIGHT: u32 = 600;

/// Writes the frontier plot of `result` as a PNG to `path`.
pub fn frontier(result: &ModelResult, path: &Path) -> Result<()> {
    font::register()?;
    let mut pixels = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        let title = format!(
            "{}: speed and fidelity against no cache ({} samples)",
            result.model.title(),
            result.samples
        );
        let root = root
            .titled(&title, ("sans-serif", 22))
            .map_err(|e| anyhow!("plot: {e}"))?;
        let (left, right) = root.split_horizontally(WIDTH / 2);
        panel(&left, result, "PSNR (dB)", |s| s.summary.psnr)?;
        panel(&right, result, "SSIM", |s| s.summary.ssim)?;
        root.present().map_err(|e| anyhow!("plot: {e}"))?;
    }
    image::RgbImage::from_raw(WIDTH, HEIGHT, pixels)
        .context("plot buffer size")?
        .save(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

/// One panel: loop speedup on x, `y` of each setting on y (settings where it is infinite, such
/// as the PSNR of no cache, are left out).
fn panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    result: &ModelResult,
    y_desc: &str,
    y: fn(&SettingResult) -> f64,
) -> Result<()> {
    let points: Vec<(&SettingResult, f64, f64)> = result
        .settings
        .iter()
        .map(|s| (s, s.summary.loop_speedup, y(s)))
        .filter(|(_, x, y)| x.is_finite() && y.is_finite())
        .collect();
    let (x_range, y_range) = (
        padded(points.iter().map(|p| p.1).chain([1.0])),
        padded(points.iter().map(|p| p.2)),
    );
    let err = |e| anyhow!("plot: {e}");
    let mut chart = ChartBuilder::on(area)
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, y_range)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("speedup of the denoising loop (x)")
        .y_desc(y_desc)
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(err)?;
    let mut series: Vec<&str> = points.iter().map(|p| p.0.series.as_str()).collect();
    series.dedup();
    for name in series {
        let color = color_of(name);
        let mut line: Vec<(f64, f64, String)> = points
            .iter()
            .filter(|p| p.0.series == name)
            .map(|p| (p.1, p.2, point_label(p.0)))
            .collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(
                line.iter().map(|p| (p.0, p.1)),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(3)));
        chart
            .draw_series(line.into_iter().map(|(x, y, label)| {
                EmptyElement::at((x, y))
                    + Circle::new((0, 0), 4, color.filled())
                    + Text::new(label, (6, -16), ("sans-serif", 14))
            }))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    Ok(())
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

/// The range of `values` widened by a tenth on each side (by 0.05 around a single value).
fn padded(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    let pad = if hi > lo { (hi - lo) / 10.0 } else { 0.05 };
    lo - pad..hi + pad
}

#[cfg(test)]
mod tests {
    use super::padded;

    #[test]
    fn ranges_are_padded_and_never_empty() {
        assert_eq!(padded([1.0, 3.0].into_iter()), 0.8..3.2);
        assert_eq!(padded([1.0].into_iter()), 0.95..1.05);
        assert_eq!(padded(std::iter::empty()), 0.0..1.0);
    }
}
