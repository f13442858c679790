//! `bench <model>-forward --profile`: where a forward's time goes, phase by phase: the
//! embedding, each block, the head, each timed on its own (the backend synced around it) on the
//! same random model and input as the benchmark.

use anyhow::Result;
use burn::tensor::backend::Backend;
use dicache_core::CacheableModel;

use crate::{Samples, timing::Timer};

/// Times one forward of `model` on `input` and, with `profile`, each of its phases first,
/// printing their table.
pub fn forward<B: Backend, M: CacheableModel<B>>(
    model: &M,
    input: &M::Input,
    timer: &Timer<B>,
    profile: bool,
) -> Result<Samples> {
    if profile {
        print_table(&phases(model, input, timer)?);
    }
    timer.time(|| Ok(model.forward(input)))
}

/// The median wall time of the embedding, each block and the head.
fn phases<B: Backend, M: CacheableModel<B>>(
    model: &M,
    input: &M::Input,
    timer: &Timer<B>,
) -> Result<Vec<(String, Samples)>> {
    let mut rows = vec![("embed".to_string(), timer.time(|| Ok(model.embed(input)))?)];
    let (ctx, mut state) = model.embed(input);
    for i in 0..model.num_blocks() {
        let block = i..i + 1;
        let samples = timer.time(|| Ok(model.run_blocks(&ctx, state.clone(), block.clone())))?;
        rows.push((format!("block {i}"), samples));
        state = model.run_blocks(&ctx, state, block);
    }
    let image = model.image_stream(&state);
    rows.push((
        "head".to_string(),
        timer.time(|| Ok(model.head(&ctx, image.clone())))?,
    ));
    Ok(rows)
}

/// Prints the phases' median wall and CPU times and their shares of the sum.
fn print_table(rows: &[(String, Samples)]) {
    let total: f64 = rows.iter().map(|(_, s)| s.wall()).sum();
    println!("| phase | ms | CPU ms | share |\n|---|---:|---:|---:|");
    for (name, s) in rows {
        let cpu = s.cpu().map_or("–".to_string(), |c| format!("{c:.1}"));
        println!(
            "| {name} | {:.1} | {cpu} | {:.1} % |",
            s.wall(),
            100.0 * s.wall() / total
        );
    }
    println!("| sum | {total:.1} | | |\n");
}
