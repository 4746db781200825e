//! The statistics behind verdicts, each a published method named where it
//! is used: McNemar's exact test and an Agresti–Min interval for paired accuracy,
//! a random-effects interval over trials (DerSimonian–Laird, Hartung–Knapp)
//! for latency changes measured per prompt, a seeded paired bootstrap for
//! a single trial's, a Student t interval for per-trial ratios, and Holm's
//! step-down adjustment for many checks.
//! Pure functions: numbers in, numbers out.

use crate::results::Interval;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, Normal, StudentsT};

/// The standard normal quantile for a two-sided `level`.
fn z(level: f64) -> f64 {
    Normal::new(0.0, 1.0)
        .expect("standard normal")
        .inverse_cdf(0.5 + level / 2.0)
}

/// McNemar's exact test (two-sided, binomial on the discordant pairs): the
/// chance of a split at least this uneven if LMCache changed nothing.
/// `b` = right → wrong, `c` = wrong → right.
pub(crate) fn mcnemar_exact_p(b: u64, c: u64) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    let binom = Binomial::new(0.5, n).expect("p = 0.5 is valid");
    (2.0 * binom.cdf(k)).min(1.0)
}

/// The paired accuracy difference (LMCache − baseline) over `n` questions
/// with `b` right → wrong and `c` wrong → right, and its interval: Wald
/// after adding ½ to each cell of the 2×2 table (Agresti & Min 2005,
/// "Simple improved confidence intervals for comparing matched
/// proportions"). Plain Wald collapses to a point when no answer changed,
/// claiming certainty 48 questions cannot give; this one does not.
pub(crate) fn paired_accuracy_diff(n: u64, b: u64, c: u64, level: f64) -> (f64, Option<Interval>) {
    if n == 0 {
        return (0.0, None);
    }
    let d = (c as f64 - b as f64) / n as f64;
    let na = n as f64 + 2.0;
    let (pb, pc) = ((b as f64 + 0.5) / na, (c as f64 + 0.5) / na);
    let center = pc - pb;
    let var = ((pb + pc) - center * center) / na;
    let half = z(level) * var.max(0.0).sqrt();
    (
        d,
        Some(Interval {
            low: center - half + 0.0,
            high: center + half + 0.0,
            level,
        }),
    )
}

/// The smallest accuracy drop McNemar's test would detect (two-sided α,
/// power 1 − β) with `n` questions when a fraction `discordant` of them
/// flip (Connor 1987, normal approximation).
pub(crate) fn mcnemar_min_detectable(n: u64, discordant: f64, alpha: f64, power: f64) -> f64 {
    if n == 0 {
        return f64::INFINITY;
    }
    // With no flips observed, plan for at least one question's worth.
    let psi = discordant.max(1.0 / n as f64);
    let (za, zb) = (z(1.0 - alpha), z(2.0 * power - 1.0));
    // Solve n = (za·√ψ + zb·√(ψ − δ²))² / δ² for δ by bisection.
    let needed = |delta: f64| {
        let inner = (psi - delta * delta).max(0.0);
        ((za * psi.sqrt() + zb * inner.sqrt()) / delta).powi(2)
    };
    let (mut lo, mut hi) = (1e-9, psi.sqrt());
    if needed(hi) > n as f64 {
        return hi;
    }
    for _ in 0..100 {
        let mid = (lo + hi) / 2.0;
        if needed(mid) > n as f64 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// Questions McNemar's test needs to detect a drop of `delta` with power
/// 1 − β, when a fraction `discordant` of questions flip (Connor 1987).
pub(crate) fn mcnemar_questions_needed(delta: f64, discordant: f64, alpha: f64, power: f64) -> u64 {
    let psi = discordant.max(delta);
    let (za, zb) = (z(1.0 - alpha), z(2.0 * power - 1.0));
    let inner = (psi - delta * delta).max(0.0);
    ((za * psi.sqrt() + zb * inner.sqrt()) / delta)
        .powi(2)
        .ceil() as u64
}

/// Share of per-pair log ratios trimmed from each end before averaging: a
/// stall (one request many times slower) moves a mean without bound but
/// a trimmed mean not at all, while costing little power without stalls.
pub(crate) const TRIM: f64 = 0.1;

/// The typical percent change of LMCache against baseline over paired
/// prompts: the 10 % trimmed mean of per-pair log ratios, back-transformed
/// (a ratio, so long and short prompts weigh alike), with a percentile
/// interval from a seeded paired bootstrap (Efron & Tibshirani 1993,
/// ch. 13) stratified by trial: prompts are resampled within each trial,
/// the trials kept. Resampling the trials too (a two-stage bootstrap) was
/// measured with `calibrate`: from three trials it doubles the interval's
/// width (it counts the prompt noise twice, Davison & Hinkley 1997 §3.8)
/// and left half of the clear 10 % regressions inconclusive; pairing
/// within a trial already removes what trials share. Each trial is a list
/// of (baseline, LMCache) pairs; pairs with a non-positive value carry no
/// ratio and are left out.
pub(crate) fn paired_bootstrap_change_pct(
    trials: &[Vec<(f64, f64)>],
    resamples: usize,
    level: f64,
    seed: u64,
) -> (f64, Option<Interval>) {
    let logs: Vec<Vec<f64>> = trials
        .iter()
        .map(|t| {
            t.iter()
                .filter(|(b, l)| *b > 0.0 && *l > 0.0 && b.is_finite() && l.is_finite())
                .map(|(b, l)| (l / b).ln())
                .collect()
        })
        .filter(|t: &Vec<f64>| !t.is_empty())
        .collect();
    let mut all: Vec<f64> = logs.iter().flatten().copied().collect();
    let point = trimmed_mean(&mut all).map_or(f64::NAN, pct);
    if all.len() < 2 || resamples == 0 {
        return (point, None);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stats = Vec::with_capacity(resamples);
    let mut drawn = Vec::with_capacity(all.len());
    for _ in 0..resamples {
        drawn.clear();
        for t in &logs {
            drawn.extend((0..t.len()).map(|_| t[rng.gen_range(0..t.len())]));
        }
        if let Some(m) = trimmed_mean(&mut drawn) {
            stats.push(pct(m));
        }
    }
    (point, percentile_interval(&mut stats, level))
}

/// The typical percent change of LMCache against baseline from paired
/// trials of paired prompts, with an interval that holds when trials
/// vary together (a burst, a noisy neighbour or a throttled GPU moves every
/// prompt of one engine's trial at once). Each trial gives its own
/// estimate: the 10 % trimmed mean of its per-prompt log ratios, with the
/// Tukey–McLaughlin variance of a trimmed mean (winsorized variance over
/// (1 − 2γ)² n). The trials are pooled as a random-effects meta-analysis:
/// the between-trial variance τ² by DerSimonian & Laird (1986), the
/// interval by Hartung & Knapp (2001) with Student t on k − 1 degrees of
/// freedom and the variance never below the model's (Röver, Knapp & Friede
/// 2015), which keeps its coverage from as few as three trials (IntHout et
/// al. 2014). With no shared noise τ² is 0 and the interval is the pooled
/// within-trial one, widened by t's few degrees of freedom; prompts in
/// flight, whose queue positions tie their latencies together, are covered
/// by the same spread between trials.
pub(crate) fn random_effects_change_pct(
    trials: &[Vec<(f64, f64)>],
    level: f64,
) -> (f64, Option<Interval>) {
    let per_trial: Vec<(f64, f64)> = trials
        .iter()
        .filter_map(|t| {
            let mut logs: Vec<f64> = t
                .iter()
                .filter(|(b, l)| *b > 0.0 && *l > 0.0 && b.is_finite() && l.is_finite())
                .map(|(b, l)| (l / b).ln())
                .collect();
            let y = trimmed_mean(&mut logs)?;
            Some((y, trimmed_mean_variance(&logs)))
        })
        .collect();
    let k = per_trial.len();
    if k == 0 {
        return (f64::NAN, None);
    }
    if k < 2 {
        return (pct(per_trial[0].0), None);
    }
    let (mu, se) = hartung_knapp(&per_trial);
    let t = StudentsT::new(0.0, 1.0, (k - 1) as f64)
        .expect("k ≥ 2 gives positive freedom")
        .inverse_cdf(0.5 + level / 2.0);
    let interval = se.is_finite().then(|| Interval {
        low: pct(mu - t * se),
        high: pct(mu + t * se),
        level,
    });
    (pct(mu), interval)
}

/// The trials' estimates averaged with weights `w`.
fn weighted_mean(per_trial: &[(f64, f64)], w: &[f64]) -> f64 {
    let sum: f64 = per_trial.iter().zip(w).map(|((y, _), w)| w * y).sum();
    sum / w.iter().sum::<f64>()
}

/// The pooled estimate and its standard error from per-trial (estimate,
/// variance) pairs: DerSimonian–Laird τ², Hartung–Knapp variance with
/// Röver et al.'s floor. Trials without a variance (one prompt) weigh
/// alike, τ² then carrying all of the spread.
fn hartung_knapp(per_trial: &[(f64, f64)]) -> (f64, f64) {
    let k = per_trial.len() as f64;
    let known = per_trial.iter().all(|(_, v)| *v > 0.0 && v.is_finite());
    let w: Vec<f64> = per_trial
        .iter()
        .map(|(_, v)| if known { 1.0 / v } else { 1.0 })
        .collect();
    let sw: f64 = w.iter().sum();
    let fixed = weighted_mean(per_trial, &w);
    let tau2 = if known {
        let q: f64 = per_trial
            .iter()
            .zip(&w)
            .map(|((y, _), w)| w * (y - fixed).powi(2))
            .sum();
        let c = sw - w.iter().map(|w| w * w).sum::<f64>() / sw;
        ((q - (k - 1.0)) / c).max(0.0)
    } else {
        0.0
    };
    let w_star: Vec<f64> = per_trial
        .iter()
        .map(|(_, v)| if known { 1.0 / (v + tau2) } else { 1.0 })
        .collect();
    let sws: f64 = w_star.iter().sum();
    let mu = weighted_mean(per_trial, &w_star);
    let spread = per_trial
        .iter()
        .zip(&w_star)
        .map(|((y, _), w)| w * (y - mu).powi(2))
        .sum::<f64>()
        / (k - 1.0);
    // Known variances floor the spread at the model's; unknown ones leave
    // the trials' own spread (then a Student t over their estimates).
    let scale = if known { spread.max(1.0) } else { spread };
    (mu, (scale / sws).sqrt())
}

/// The Tukey–McLaughlin variance of a `TRIM` trimmed mean: the winsorized
/// variance over (1 − 2γ)² n, γ the share trimmed from each end; `values`
/// sorted (as `trimmed_mean` leaves them). Zero below two values.
fn trimmed_mean_variance(values: &[f64]) -> f64 {
    let n = values.len();
    if n < 2 {
        return 0.0;
    }
    let cut = (n as f64 * TRIM).floor() as usize;
    let (lo, hi) = (values[cut], values[n - 1 - cut]);
    let wins: Vec<f64> = values.iter().map(|v| v.clamp(lo, hi)).collect();
    let mean = wins.iter().sum::<f64>() / n as f64;
    let var = wins.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    // The share actually trimmed: none of fewer than ten values.
    let trimmed = cut as f64 / n as f64;
    var / ((1.0 - 2.0 * trimmed).powi(2) * n as f64)
}

/// Mean of the values left after trimming `TRIM` of them from each end.
fn trimmed_mean(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let cut = (values.len() as f64 * TRIM).floor() as usize;
    let kept = &values[cut..values.len() - cut];
    Some(kept.iter().sum::<f64>() / kept.len() as f64)
}

/// A mean log ratio as a percent change.
fn pct(log_ratio: f64) -> f64 {
    (log_ratio.exp() - 1.0) * 100.0
}

/// The run's false-alarm budget, that p-values are put on the scale of.
const BUDGET: f64 = 0.05;

/// The two-sided p-value that a check holds, read off its interval by a
/// normal approximation (half-width = z·se): how surprising the estimate
/// is if the true value sat on the threshold. `bad_above`: the check
/// fails above the threshold (`<=` bounds). Below 5 % exactly when the
/// whole interval lies on the bad side, whatever the interval's level
/// (scaled by 5 % over 1 − level).
pub(crate) fn breach_p(interval: &Interval, threshold: f64, bad_above: bool) -> f64 {
    let center = (interval.low + interval.high) / 2.0;
    let se = (interval.high - interval.low) / (2.0 * z(interval.level));
    if se.is_nan() || se <= 0.0 {
        let beyond = if bad_above {
            interval.low > threshold
        } else {
            interval.high < threshold
        };
        return if beyond { 0.0 } else { 1.0 };
    }
    let excess = if bad_above {
        center - threshold
    } else {
        threshold - center
    };
    let normal = Normal::new(0.0, 1.0).expect("standard normal");
    // On the run's scale: an interval narrowed to a look's share of the
    // budget (sequential trials) is beyond its bound exactly when this is
    // below the whole budget, as Holm compares it.
    let share = (1.0 - interval.level).max(f64::MIN_POSITIVE);
    let scale = BUDGET / share;
    (2.0 * (1.0 - normal.cdf(excess / se)) * scale).min(1.0)
}

fn percentile_interval(stats: &mut [f64], level: f64) -> Option<Interval> {
    if stats.is_empty() {
        return None;
    }
    stats.sort_by(f64::total_cmp);
    let at = |q: f64| stats[((q * (stats.len() - 1) as f64).round() as usize).min(stats.len() - 1)];
    let tail = (1.0 - level) / 2.0;
    Some(Interval {
        low: at(tail),
        high: at(1.0 - tail),
        level,
    })
}

/// Mean of per-trial percent changes with a Student t interval across
/// trials (for throughput, whose unit of evidence is a whole trial).
pub(crate) fn t_interval(values: &[f64], level: f64) -> (f64, Option<Interval>) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, None);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, None);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .expect("n ≥ 2 gives positive freedom")
        .inverse_cdf(0.5 + level / 2.0);
    let half = t * (var / n as f64).sqrt();
    (
        mean,
        Some(Interval {
            low: mean - half,
            high: mean + half,
            level,
        }),
    )
}

/// Holm's step-down adjustment (Holm 1979): adjusted p-values that keep
/// the chance of any false alarm among all of them at most α.
pub(crate) fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        running = running.max(((m - rank) as f64 * p[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_exact_matches_the_binomial_tail() {
        // 10 discordant, split 1:9: 2·P(X ≤ 1 | n=10, ½) = 2·11/1024.
        assert!((mcnemar_exact_p(1, 9) - 22.0 / 1024.0).abs() < 1e-12);
        assert!(
            (mcnemar_exact_p(9, 1) - 22.0 / 1024.0).abs() < 1e-12,
            "two-sided"
        );
        assert_eq!(mcnemar_exact_p(0, 0), 1.0);
        assert_eq!(mcnemar_exact_p(5, 5), 1.0);
    }

    #[test]
    fn paired_difference_interval_covers_the_point_and_narrows_with_n() {
        let (d, ci) = paired_accuracy_diff(264, 8, 2, 0.95);
        let ci = ci.unwrap();
        assert!((d - (-6.0 / 264.0)).abs() < 1e-12);
        assert!(ci.low < d && d < ci.high && ci.high < 0.0 + 0.01);
        let (_, wide) = paired_accuracy_diff(100, 8, 2, 0.95);
        assert!(wide.unwrap().high - wide.unwrap().low > ci.high - ci.low);
    }

    #[test]
    fn no_changed_answer_is_not_certainty() {
        let (d, ci) = paired_accuracy_diff(48, 0, 0, 0.95);
        let ci = ci.unwrap();
        assert_eq!(d, 0.0);
        // ±1.96/(n + 2): 48 questions cannot bound a drop to 1 point.
        assert!((ci.high - 1.96 / 50.0).abs() < 1e-3, "{ci:?}");
        let (_, ci) = paired_accuracy_diff(200, 0, 0, 0.95);
        assert!(ci.unwrap().high < 0.01, "200 questions can");
    }

    #[test]
    fn power_figures_follow_connor() {
        // 5 % of questions flipping, α = 0.05, power 0.8: a 1-point drop
        // needs thousands of questions; 264 detect only several points.
        let n = mcnemar_questions_needed(0.01, 0.05, 0.05, 0.8);
        assert!((3000..4500).contains(&n), "{n}");
        let mde = mcnemar_min_detectable(264, 0.05, 0.05, 0.8);
        assert!((0.03..0.08).contains(&mde), "{mde}");
        assert!(mcnemar_questions_needed(mde, 0.05, 0.05, 0.8) <= 270);
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_a_clear_change() {
        let trials: Vec<Vec<(f64, f64)>> = (0..3)
            .map(|t| {
                (0..20)
                    .map(|i| (1.0 + 0.01 * ((i * 7 + t) % 5) as f64, 0.5))
                    .collect()
            })
            .collect();
        let (point, ci) = paired_bootstrap_change_pct(&trials, 500, 0.95, 7);
        let ci = ci.unwrap();
        assert!(ci.low <= point && point <= ci.high);
        assert!(ci.high < -40.0, "{ci:?}");
        assert_eq!(
            paired_bootstrap_change_pct(&trials, 500, 0.95, 7)
                .1
                .unwrap(),
            ci
        );
        assert!(
            paired_bootstrap_change_pct(&[vec![(1.0, 2.0)]], 500, 0.95, 7)
                .1
                .is_none()
        );
    }

    #[test]
    fn a_stall_moves_the_mean_but_not_the_trimmed_estimate() {
        let calm: Vec<Vec<(f64, f64)>> = (0..3)
            .map(|t| {
                (0..20)
                    .map(|i| {
                        (
                            1.0 + 0.02 * ((i + t) % 7) as f64,
                            1.0 + 0.02 * ((i * 3 + t) % 7) as f64,
                        )
                    })
                    .collect()
            })
            .collect();
        let mut stalled = calm.clone();
        stalled[1][4].1 *= 10.0;
        let (a, ci_a) = paired_bootstrap_change_pct(&calm, 1000, 0.95, 1);
        let (b, ci_b) = paired_bootstrap_change_pct(&stalled, 1000, 0.95, 1);
        assert!((a - b).abs() < 1.0, "{a} vs {b}");
        assert!(ci_b.unwrap().high < 5.0, "{ci_a:?} {ci_b:?}");
        let sums = |t: &[Vec<(f64, f64)>]| {
            let (x, y) = t
                .iter()
                .flatten()
                .fold((0.0, 0.0), |(x, y), p| (x + p.0, y + p.1));
            (y - x) / x * 100.0
        };
        assert!(
            sums(&stalled) - sums(&calm) > 10.0,
            "the mean of sums moves"
        );
    }

    #[test]
    fn breach_p_is_below_alpha_exactly_when_the_interval_is_beyond() {
        let i = |low, high| Interval {
            low,
            high,
            level: 0.95,
        };
        assert!(breach_p(&i(5.1, 9.0), 5.0, true) < 0.05);
        assert!(breach_p(&i(4.9, 9.0), 5.0, true) > 0.05);
        assert!(breach_p(&i(-9.0, -5.1), -5.0, false) < 0.05);
        assert!(breach_p(&i(-20.0, 3.0), 5.0, true) > 0.9);
        assert!((breach_p(&i(5.0, 9.0), 5.0, true) - 0.05).abs() < 1e-9);
    }

    #[test]
    fn t_interval_needs_two_trials() {
        assert!(t_interval(&[1.0], 0.95).1.is_none());
        let (m, ci) = t_interval(&[-2.0, 0.0, 2.0], 0.95);
        let ci = ci.unwrap();
        assert_eq!(m, 0.0);
        // t(0.975, 2) = 4.303, s = 2, n = 3.
        assert!((ci.high - 4.303 * 2.0 / 3f64.sqrt()).abs() < 1e-2, "{ci:?}");
    }

    #[test]
    fn holm_adjusts_step_down_and_stays_monotone() {
        let adj = holm(&[0.01, 0.04, 0.03, 0.5]);
        assert_eq!(adj, vec![0.04, 0.09, 0.09, 0.5]);
    }
}
