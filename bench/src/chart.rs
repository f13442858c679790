//! Line charts written as PNG: panels side by side, each with labelled series of labelled
//! points, in the embedded font.

use std::{ops::Range, path::Path};

use anyhow::{Context, Result, anyhow};
use plotters::{coord::Shift, prelude::*};

use crate::font;

const WIDTH: u32 = 1400;
const HEIGHT: u32 = 600;

/// One line of a panel.
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// Its colour.
    pub color: RGBColor,
    /// Its points `(x, y, label)`, drawn in order of x; non-finite ones are left out (and a
    /// series without finite points with them).
    pub points: Vec<(f64, f64, String)>,
}

/// One panel: axes and lines.
pub struct Panel {
    /// The x axis' description.
    pub x_desc: String,
    /// The y axis' description.
    pub y_desc: String,
    /// A value the x range must include (1 for a speedup), if any.
    pub x_includes: Option<f64>,
    /// The lines.
    pub series: Vec<Series>,
}

/// Writes `panels` side by side under `title` as a PNG to `path`.
pub fn write_png(path: &Path, title: &str, panels: &[Panel]) -> Result<()> {
    font::register()?;
    let mut pixels = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (WIDTH, HEIGHT)).into_drawing_area();
        let root = root
            .titled(title, ("sans-serif", 22))
            .map_err(|e| anyhow!("plot: {e}"))?;
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (area, panel) in areas.iter().zip(panels) {
            draw(area, panel)?;
        }
        root.present().map_err(|e| anyhow!("plot: {e}"))?;
    }
    image::RgbImage::from_raw(WIDTH, HEIGHT, pixels)
        .context("plot buffer size")?
        .save(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

fn draw(area: &DrawingArea<BitMapBackend<'_>, Shift>, panel: &Panel) -> Result<()> {
    let finite = |p: &&(f64, f64, String)| p.0.is_finite() && p.1.is_finite();
    let points = || {
        panel
            .series
            .iter()
            .flat_map(|s| s.points.iter().filter(finite))
    };
    let x_range = padded(points().map(|p| p.0).chain(panel.x_includes));
    let y_range = padded(points().map(|p| p.1));
    let err = |e| anyhow!("plot: {e}");
    let mut chart = ChartBuilder::on(area)
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, y_range)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(panel.x_desc.as_str())
        .y_desc(panel.y_desc.as_str())
        .label_style(("sans-serif", 15))
        .axis_desc_style(("sans-serif", 17))
        .draw()
        .map_err(err)?;
    for series in &panel.series {
        let color = series.color;
        let mut line: Vec<_> = series.points.iter().filter(finite).cloned().collect();
        if line.is_empty() {
            continue;
        }
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(
                line.iter().map(|p| (p.0, p.1)),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(series.name.as_str())
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

/// The range of `values` widened by a tenth on each side (by 0.05 around a single value).
fn padded(values: impl Iterator<Item = f64>) -> Range<f64> {
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
