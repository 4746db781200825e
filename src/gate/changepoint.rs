//! Change points in a series of runs: E-divisive means (Matteson & James
//! 2014, "A nonparametric approach for multiple change point analysis of
//! multivariate data"), as MongoDB's signal-processing and Apache Otava
//! (Hunter) use it on CI performance series. Chosen over CUSUM because it
//! needs no target mean, no known variance and no tuned drift allowance,
//! and it says where each change happened, offline over a whole history;
//! significance comes from a seeded permutation test. Pure.

use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Permutations behind each split's p-value.
pub(crate) const PERMUTATIONS: usize = 499;
/// A split is kept when its permutation p-value is at most this.
pub(crate) const ALPHA: f64 = 0.01;
/// The fewest runs on either side of a change.
pub(crate) const MIN_SEGMENT: usize = 4;

pub(crate) const METHOD: &str =
    "E-divisive means (Matteson & James 2014), 499 seeded permutations, p <= 0.01, at least 4 runs a side";

/// A change found: the first index after it and its permutation p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Found {
    pub at: usize,
    pub p: f64,
}

/// Every change point of `series`, in order, found by splitting it where
/// the energy distance between the two sides is largest while a
/// permutation test finds that split significant, then each side again.
pub(crate) fn e_divisive(series: &[f64], seed: u64) -> Vec<Found> {
    let mut found = Vec::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    split(series, 0, &mut rng, &mut found);
    found.sort_by_key(|f| f.at);
    found
}

fn split(x: &[f64], offset: usize, rng: &mut rand::rngs::StdRng, found: &mut Vec<Found>) {
    if x.len() < 2 * MIN_SEGMENT || x.iter().any(|v| !v.is_finite()) {
        return;
    }
    let Some((tau, q)) = best_split(x) else {
        return;
    };
    let mut shuffled = x.to_vec();
    let beaten = (0..PERMUTATIONS)
        .filter(|_| {
            shuffled.shuffle(rng);
            best_split(&shuffled).is_some_and(|(_, qp)| qp >= q)
        })
        .count();
    let p = (beaten + 1) as f64 / (PERMUTATIONS + 1) as f64;
    if p > ALPHA {
        return;
    }
    found.push(Found {
        at: offset + tau,
        p,
    });
    split(&x[..tau], offset, rng, found);
    split(&x[tau..], offset + tau, rng, found);
}

/// The split `tau` (left side `x[..tau]`) with the largest scaled energy
/// divergence Q(tau) = tau (n - tau) / n * (2 E|X - Y| - E|X - X'| - E|Y - Y'|),
/// and that Q.
fn best_split(x: &[f64]) -> Option<(usize, f64)> {
    let n = x.len();
    let d = |i: usize, j: usize| (x[i] - x[j]).abs();
    // Pair sums kept as tau moves right, O(n) each: the left side gains
    // x[tau - 1], the right side loses it; between = total - left - right.
    let total: f64 = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .map(|(i, j)| d(i, j))
        .sum();
    let (mut left, mut right) = (0.0, total);
    let mut best: Option<(usize, f64)> = None;
    for tau in 1..n {
        let moved = tau - 1;
        left += (0..moved).map(|i| d(i, moved)).sum::<f64>();
        right -= (tau..n).map(|j| d(moved, j)).sum::<f64>();
        if tau < MIN_SEGMENT || n - tau < MIN_SEGMENT {
            continue;
        }
        let (l, r) = (tau as f64, (n - tau) as f64);
        let between = total - left - right;
        let e =
            2.0 * between / (l * r) - 2.0 * left / (l * (l - 1.0)) - 2.0 * right / (r * (r - 1.0));
        let q = l * r / n as f64 * e;
        if best.is_none_or(|(_, b)| q > b) {
            best = Some((tau, q));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr_like::normal;

    /// Gaussian noise without another dependency: Box–Muller on `rand`.
    mod rand_distr_like {
        use rand::Rng;
        pub(super) fn normal(rng: &mut impl Rng, mean: f64, sd: f64) -> f64 {
            let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen());
            mean + sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        }
    }

    fn series(seed: u64, n: usize, step_at: Option<usize>, step: f64, sd: f64) -> Vec<f64> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let level = if step_at.is_some_and(|s| i >= s) {
                    1.0 + step
                } else {
                    1.0
                };
                normal(&mut rng, level, sd)
            })
            .collect()
    }

    #[test]
    fn a_clear_step_is_found_where_it_is() {
        let x: Vec<f64> = (0..30).map(|i| if i < 15 { 1.0 } else { 1.15 }).collect();
        let mut x = x;
        for (i, v) in x.iter_mut().enumerate() {
            *v += (i % 3) as f64 * 0.01;
        }
        let found = e_divisive(&x, 1);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].at, 15);
        assert!(found[0].p <= ALPHA);
    }

    #[test]
    fn too_short_or_flat_series_have_none() {
        assert!(e_divisive(&[1.0; 7], 0).is_empty());
        assert!(e_divisive(&[1.0; 30], 0).is_empty());
        assert!(e_divisive(&[1.0, f64::NAN, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0], 0).is_empty());
    }

    #[test]
    fn the_same_series_and_seed_give_the_same_answer() {
        let x = series(7, 30, Some(15), 0.15, 0.05);
        assert_eq!(e_divisive(&x, 3), e_divisive(&x, 3));
    }

    /// The figures the README quotes: 30 runs, 5 % noise (run-to-run
    /// spread of a run's estimate), a 15 % step after run 15, 100 seeds.
    #[test]
    fn steps_are_found_near_where_they_are_and_noise_alone_rarely_alarms() {
        let seeds = 100;
        let (mut near, mut false_alarms) = (0, 0);
        for seed in 0..seeds {
            let step = e_divisive(&series(seed, 30, Some(15), 0.15, 0.05), seed);
            if step.iter().any(|f| f.at.abs_diff(15) <= 2) {
                near += 1;
            }
            false_alarms += e_divisive(&series(seed + 1000, 30, None, 0.0, 0.05), seed).len();
        }
        assert!(near >= 95, "found near the step in {near}/{seeds}");
        assert!(
            false_alarms <= 3,
            "{false_alarms} false change points in {seeds} series"
        );
    }
}
