//! What the interleaved benchmarks share to read their figures: a size from the
//! environment, quantiles over rounds, and the `median (p10-p90, min-max)` cell of a ratio.

/// `name` from the environment as a number, `default` when unset.
///
/// # Panics
///
/// When `name` is set to something that is not a number.
pub fn env_or(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v}: not a number")),
        Err(_) => default,
    }
}

/// Rounds and requests per contender of an interleaved benchmark: `ROUNDS` (15) and `REQS`
/// (`requests`) from the environment under `cargo bench`, one tiny round of `smoke` requests
/// when the target runs as a test (`cargo test --all-targets`).
pub fn bench_size(requests: usize, smoke: usize) -> (usize, usize) {
    if std::env::args().any(|a| a == "--bench") {
        (env_or("ROUNDS", 15), env_or("REQS", requests))
    } else {
        (1, smoke)
    }
}

/// The `q`-quantile of sorted `xs` (nearest rank).
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    let i = ((xs.len() - 1) as f64 * q).round() as usize;
    xs[i]
}

/// `xs`, sorted.
pub fn sorted(mut xs: Vec<f64>) -> Vec<f64> {
    xs.sort_by(f64::total_cmp);
    xs
}

/// Per-round ratios `a[r] / b[r]`, sorted.
pub fn ratios(a: &[f64], b: &[f64]) -> Vec<f64> {
    sorted(a.iter().zip(b).map(|(a, b)| a / b).collect())
}

/// A table cell for sorted ratios: `**median**x (p10-p90, min-max)`.
pub fn spread(r: &[f64]) -> String {
    format!(
        "**{:.2}x** ({:.2}-{:.2}, {:.2}-{:.2})",
        quantile(r, 0.5),
        quantile(r, 0.1),
        quantile(r, 0.9),
        r[0],
        r[r.len() - 1]
    )
}
