//! NumPy's `linspace`, value for value.

/// `numpy.linspace(start, stop, num)` in float64, rounded as NumPy rounds: element `i` is
/// `i * step + start` with `step = (stop - start) / (num - 1)`, and the last element is `stop`
/// exactly. Pipelines build their custom sigmas with it, e.g. FLUX's
/// `linspace(1.0, 1.0 / steps, steps)` and HunyuanVideo's `linspace(1.0, 0.0, steps + 1)`
/// without its last element.
pub fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    if num == 1 {
        return vec![start];
    }
    let div = num.saturating_sub(1) as f64;
    let delta = stop - start;
    let step = delta / div;
    let mut values: Vec<f64> = (0..num)
        .map(|i| {
            let i = i as f64;
            // NumPy divides first when the step underflows to zero.
            let offset = if step == 0.0 {
                i / div * delta
            } else {
                i * step
            };
            offset + start
        })
        .collect();
    if let Some(last) = values.last_mut() {
        *last = stop;
    }
    values
}
