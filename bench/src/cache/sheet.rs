//! The sample sheet of one model: the first samples without cache and under one
//! representative setting per policy, side by side, upscaled for visibility.
//!
//! Images (FLUX): a row per sample, labelled with its prompt, a column per setting. Videos
//! (WAN): a row per sample and setting (no cache first, labelled with the prompt too), a column
//! per frame.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use image::{RgbImage, imageops};
use plotters::prelude::*;
use vae::Rgb8Image;

use super::Model;
use crate::font;

/// Samples the sheet shows.
pub const SHEET_SAMPLES: usize = 8;
/// Nearest-neighbour upscaling of every frame.
const SCALE: u32 = 2;
/// Space between cells, pixels.
const GAP: u32 = 4;
/// Width of the row labels, pixels.
const LABEL_WIDTH: u32 = 180;
/// Characters per line of a row label (fits LABEL_WIDTH at the label font).
const LABEL_CHARS: usize = 19;
/// Label font size and line height, pixels.
const FONT_SIZE: u32 = 16;
const LINE_HEIGHT: u32 = 18;
/// Height of the column headers, pixels.
const HEADER_HEIGHT: u32 = 28;

/// One output the sheet shows.
pub struct Shown {
    /// Sample index.
    pub sample: usize,
    /// The sample's prompt.
    pub prompt: String,
    /// The setting's label (`none`, `dicache-0.4`).
    pub label: String,
    /// Its frames (one for an image).
    pub frames: Vec<Rgb8Image>,
}

/// A grid of equally sized frames with row labels (lines of text) and column headers.
struct Grid<'a> {
    columns: Vec<String>,
    rows: Vec<(Vec<String>, Vec<&'a Rgb8Image>)>,
}

/// `text` broken into lines that fit the label column.
fn lines(text: &str) -> Vec<String> {
    textwrap::wrap(text, LABEL_CHARS)
        .into_iter()
        .map(|line| line.into_owned())
        .collect()
}

/// Writes the sheet of `model`'s `shown` outputs as a PNG to `path`.
pub fn write(model: Model, shown: &[Shown], path: &Path) -> Result<()> {
    let grid = if model.is_video() {
        by_setting(shown)
    } else {
        by_sample(shown)
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
    let rows = shown
        .chunk_by(|a, b| a.sample == b.sample)
        .map(|sample| {
            let cells = sample.iter().map(|s| &s.frames[0]).collect();
            (lines(&sample[0].prompt), cells)
        })
        .collect();
    Grid { columns, rows }
}

/// A row per sample and setting, a column per frame.
fn by_setting(shown: &[Shown]) -> Grid<'_> {
    let frames = shown.first().map_or(0, |s| s.frames.len());
    Grid {
        columns: (0..frames).map(|f| format!("frame {f}")).collect(),
        rows: shown
            .chunk_by(|a, b| a.sample == b.sample)
            .flat_map(|sample| {
                sample.iter().enumerate().map(|(j, s)| {
                    let mut label = vec![format!("#{} {}", s.sample, s.label)];
                    if j == 0 {
                        label.extend(lines(&s.prompt));
                    }
                    (label, s.frames.iter().collect())
                })
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
        let style = ("sans-serif", FONT_SIZE).into_font().color(&BLACK);
        let err = |e| anyhow!("sample sheet: {e}");
        for (c, name) in grid.columns.iter().enumerate() {
            let (x, _) = cell(0, c);
            area.draw_text(name, &style, (x as i32 + 4, 6))
                .map_err(err)?;
        }
        for (r, (label, _)) in grid.rows.iter().enumerate() {
            let (_, y) = cell(r, 0);
            // The label's lines, centred on the row.
            let top = (y + h / 2) as i32 - (label.len() as u32 * LINE_HEIGHT / 2) as i32;
            for (l, line) in label.iter().enumerate() {
                let line_y = top + (l as u32 * LINE_HEIGHT) as i32;
                area.draw_text(line, &style, (8, line_y)).map_err(err)?;
            }
        }
        area.present().map_err(err)?;
    }
    Ok(sheet)
}
