//! The sample sheet of one model: the first samples without cache and under one
//! representative setting per policy, side by side, upscaled for visibility.
//!
//! Images (FLUX): a row per sample, a column per setting. Videos (WAN): a row per sample and
//! setting (no cache first), a column per frame.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use image::{RgbImage, imageops};
use plotters::prelude::*;
use vae::Rgb8Image;

use super::{Model, font};

/// Samples the sheet shows.
pub const SHEET_SAMPLES: usize = 8;
/// Nearest-neighbour upscaling of every frame.
const SCALE: u32 = 2;
/// Space between cells, pixels.
const GAP: u32 = 4;
/// Width of the row labels, pixels.
const LABEL_WIDTH: u32 = 170;
/// Height of the column headers, pixels.
const HEADER_HEIGHT: u32 = 28;

/// One output the sheet shows.
pub struct Shown {
    /// Sample index.
    pub sample: usize,
    /// The setting's label (`none`, `dicache-0.4`).
    pub label: String,
    /// Its frames (one for an image).
    pub frames: Vec<Rgb8Image>,
}

/// A grid of equally sized frames with row labels and column headers.
struct Grid<'a> {
    columns: Vec<String>,
    rows: Vec<(String, Vec<&'a Rgb8Image>)>,
}

/// Writes the sheet of `model`'s `shown` outputs as a PNG to `path`.
pub fn write(model: Model, shown: &[Shown], path: &Path) -> Result<()> {
    let grid = match model {
        Model::Flux => by_sample(shown),
        Model::Wan => by_setting(shown),
    };
    let sheet = draw(&grid)?;
    sheet
        .save(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

/// A row per sample, a column per setting (the first frame of each).
fn by_sample(shown: &[Shown]) -> Grid<'_> {
    let first = shown.first().map_or(0, |s| s.sample);
    let columns = shown
        .iter()
        .filter(|s| s.sample == first)
        .map(|s| s.label.clone())
        .collect();
    let mut rows: Vec<(String, Vec<&Rgb8Image>)> = Vec::new();
    for s in shown {
        let label = format!("sample {}", s.sample);
        match rows.last_mut() {
            Some((last, cells)) if *last == label => cells.push(&s.frames[0]),
            _ => rows.push((label, vec![&s.frames[0]])),
        }
    }
    Grid { columns, rows }
}

/// A row per sample and setting, a column per frame.
fn by_setting(shown: &[Shown]) -> Grid<'_> {
    let frames = shown.first().map_or(0, |s| s.frames.len());
    Grid {
        columns: (0..frames).map(|f| format!("frame {f}")).collect(),
        rows: shown
            .iter()
            .map(|s| {
                (
                    format!("#{} {}", s.sample, s.label),
                    s.frames.iter().collect(),
                )
            })
            .collect(),
    }
}

/// Lays the grid out on a white sheet and writes the labels.
fn draw(grid: &Grid<'_>) -> Result<RgbImage> {
    let (w, h) = grid
        .rows
        .first()
        .and_then(|(_, cells)| cells.first())
        .map(|f| (f.width as u32 * SCALE, f.height as u32 * SCALE))
        .context("nothing to show on the sample sheet")?;
    let columns = grid.rows.iter().map(|r| r.1.len()).max().unwrap_or(0) as u32;
    let width = LABEL_WIDTH + columns * (w + GAP);
    let height = HEADER_HEIGHT + grid.rows.len() as u32 * (h + GAP);
    let mut sheet = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let cell = |row: usize, col: usize| {
        (
            LABEL_WIDTH + col as u32 * (w + GAP),
            HEADER_HEIGHT + row as u32 * (h + GAP),
        )
    };
    for (r, (_, cells)) in grid.rows.iter().enumerate() {
        for (c, frame) in cells.iter().enumerate() {
            let image = RgbImage::from_raw(
                frame.width as u32,
                frame.height as u32,
                frame.pixels.clone(),
            )
            .context("frame buffer size")?;
            let big = imageops::resize(&image, w, h, imageops::FilterType::Nearest);
            let (x, y) = cell(r, c);
            imageops::replace(&mut sheet, &big, i64::from(x), i64::from(y));
        }
    }
    font::register()?;
    {
        let area = BitMapBackend::with_buffer(sheet.as_mut(), (width, height)).into_drawing_area();
        let style = ("sans-serif", 16).into_font().color(&BLACK);
        let err = |e| anyhow!("sample sheet: {e}");
        for (c, name) in grid.columns.iter().enumerate() {
            let (x, _) = cell(0, c);
            area.draw_text(name, &style, (x as i32 + 4, 6))
                .map_err(err)?;
        }
        for (r, (label, _)) in grid.rows.iter().enumerate() {
            let (_, y) = cell(r, 0);
            area.draw_text(label, &style, (8, (y + h / 2) as i32 - 8))
                .map_err(err)?;
        }
        area.present().map_err(err)?;
    }
    Ok(sheet)
}
