//! Evidence for the gate: turns the paired counts a workload measured into
//! intervals and p-values on the metrics checks bound, so a check judges an
//! interval, not a point. Pure.

use indexmap::IndexMap;

use super::stats;
use crate::results::{Interval, Metric, Role};

/// Confidence of every interval the gate computes.
pub(crate) const LEVEL: f64 = 0.95;
/// The false-alarm rate and power the detectable-effect figures assume.
const ALPHA: f64 = 0.05;
const POWER: f64 = 0.8;

/// The looks a test takes at its evidence when a check may add trials
/// (`on_inconclusive = "more-trials"`): after its first `first` trials,
/// then after each one added, up to `last`. Each look may stop the test,
/// so no look is judged at the whole budget: every look is at Pocock's
/// (1977) group-sequential nominal level for that many looks, the level at
/// which K looks at accumulating data together keep a 5 % false-alarm
/// rate. (Pocock's constants assume equally spaced looks from the start;
/// looks that begin after several trials are more alike, so the rate they
/// keep is lower still.)
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Looks {
    pub first: usize,
    pub last: usize,
}

pub(crate) const SEQUENTIAL: &str =
    "a look after each trial, each at Pocock's group-sequential level";

/// Pocock's (1977, table 1) critical values for K = 1..=10 looks at a
/// two-sided 5 %: each look's |z| must exceed it.
const POCOCK: [f64; 10] = [
    1.960, 2.178, 2.289, 2.361, 2.413, 2.453, 2.485, 2.512, 2.535, 2.555,
];

impl Looks {
    /// One look, at the full budget.
    pub(crate) const ONE: Looks = Looks { first: 0, last: 0 };

    /// Whether the test looks more than once.
    pub(crate) fn sequential(&self) -> bool {
        self.last > self.first && self.first > 0
    }

    /// How many looks it takes at most.
    pub(crate) fn count(&self) -> usize {
        match self.sequential() {
            true => self.last - self.first + 1,
            false => 1,
        }
    }

    /// The confidence level of the interval judged at every look: Pocock's
    /// nominal level for this many looks (beyond ten, the 5 % split evenly,
    /// as Bonferroni).
    pub(crate) fn level(&self) -> f64 {
        let k = self.count();
        if k == 1 {
            return LEVEL;
        }
        match POCOCK.get(k - 1) {
            Some(c) => {
                let normal = statrs::distribution::Normal::new(0.0, 1.0).expect("standard normal");
                use statrs::distribution::ContinuousCDF;
                2.0 * normal.cdf(*c) - 1.0
            }
            None => 1.0 - ALPHA / k as f64,
        }
    }
}

/// Adds what the measured metrics support: for MMLU, McNemar's exact test
/// on the paired answers and an Agresti–Min interval on the accuracy drop, the
/// smallest drop this many questions can detect, and how many questions a
/// 1-point drop would need.
pub(crate) fn enrich(metrics: &mut IndexMap<Role, IndexMap<String, Metric>>) {
    if let Some(m) = metrics.get_mut(&Role::Lmcache) {
        paired_accuracy(m);
    }
}

fn paired_accuracy(m: &mut IndexMap<String, Metric>) {
    let count = |k: &str| {
        m.get(k)
            .map(|v| v.value)
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    let (Some(n), Some(b), Some(c)) = (
        count("paired_questions"),
        count("right_to_wrong"),
        count("wrong_to_right"),
    ) else {
        return;
    };
    let (n, b, c) = (n as u64, b as u64, c as u64);
    if n == 0 {
        return;
    }
    let p = stats::mcnemar_exact_p(b, c);
    let (_, diff) = stats::paired_accuracy_diff(n, b, c, LEVEL);
    // A drop is baseline − LMCache: the interval of the difference, negated.
    // `+ 0.0` turns a negated zero into a plain one for the report.
    let drop = diff.map(|i| Interval {
        low: -i.high + 0.0,
        high: -i.low + 0.0,
        level: i.level,
    });
    if let Some(d) = m.get_mut("accuracy_drop") {
        *d = d.clone().with_evidence(drop, Some(n), Some(p));
    }
    let discordant = (b + c) as f64 / n as f64;
    m.insert(
        "mcnemar_p".into(),
        Metric::new(p, "").with_evidence(None, Some(n), None),
    );
    m.insert(
        "min_detectable_drop".into(),
        Metric::new(
            stats::mcnemar_min_detectable(n, discordant, ALPHA, POWER),
            "",
        ),
    );
    m.insert(
        "questions_for_1pt_drop".into(),
        Metric::new(
            stats::mcnemar_questions_needed(0.01, discordant, ALPHA, POWER) as f64,
            "questions",
        ),
    );
}

/// A relative change estimated from paired trials.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Estimate {
    /// Percent change of LMCache against baseline.
    pub point: f64,
    pub interval: Interval,
    /// Pairs it rests on.
    pub n: u64,
    /// Trials it pools.
    pub trials: usize,
    pub method: &'static str,
}

pub(crate) use crate::results::method::{RANDOM_EFFECTS, T_TRIALS};

/// The relative change (LMCache against baseline, in %) from paired
/// trials, with its interval; none from one trial, which cannot show
/// run-to-run noise. One value per trial (throughput): a Student t
/// interval of the per-trial changes. Several per trial (prompts): each
/// trial's estimate from its paired prompts, pooled by random effects, so
/// noise that moves a whole trial (bursts, requests in flight queued
/// together) widens the interval instead of faking a change. The interval
/// is at confidence `level` (95 %, or a sequential look's share of the
/// budget).
pub(crate) fn change_interval_at(trials: &[Vec<(f64, f64)>], level: f64) -> Option<Estimate> {
    let n = trials.iter().map(Vec::len).sum::<usize>() as u64;
    if trials.len() < 2 {
        return None;
    }
    let ((point, interval), method) = if trials.iter().all(|t| t.len() == 1) {
        let changes: Vec<f64> = trials
            .iter()
            .filter_map(|t| t.first())
            .filter(|(b, _)| *b != 0.0)
            .map(|(b, l)| (l - b) / b * 100.0)
            .collect();
        (stats::t_interval(&changes, level), T_TRIALS)
    } else {
        (
            stats::random_effects_change_pct(trials, level),
            RANDOM_EFFECTS,
        )
    };
    Some(Estimate {
        point,
        interval: interval?,
        n,
        trials: trials.len(),
        method,
    })
}

/// The trials in all after which an interval like `interval` (from
/// `trials` trials) would likely clear `threshold`: its half-width shrinks
/// as t(k − 1)/√k while its centre stays. `None` when the centre sits on
/// the bound (no number of trials would likely decide it) or past 100.
pub(crate) fn trials_to_decide(
    interval: &Interval,
    threshold: f64,
    trials: usize,
) -> Option<usize> {
    if trials < 2 {
        return None;
    }
    let centre = (interval.low + interval.high) / 2.0;
    let half = (interval.high - interval.low) / 2.0;
    let gap = (centre - threshold).abs();
    if gap < half * 0.05 {
        return None;
    }
    let t = |k: usize| {
        statrs::distribution::StudentsT::new(0.0, 1.0, (k - 1) as f64)
            .map(|d| {
                use statrs::distribution::ContinuousCDF;
                d.inverse_cdf(0.5 + interval.level / 2.0)
            })
            .unwrap_or(f64::INFINITY)
    };
    let now = t(trials) / (trials as f64).sqrt();
    (trials + 1..=100).find(|&k| half * (t(k) / (k as f64).sqrt()) / now < gap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_looks_are_judged_at_pococks_nominal_level() {
        // Five looks (3 to 7 trials): 1.58 % each, not 5 %.
        let five = Looks { first: 3, last: 7 };
        assert_eq!(five.count(), 5);
        assert!(
            (1.0 - five.level() - 0.0158).abs() < 0.0002,
            "{}",
            five.level()
        );
        assert_eq!(Looks::ONE.level(), LEVEL);
        assert_eq!(Looks { first: 3, last: 3 }.count(), 1);
        // Beyond Pocock's table, Bonferroni.
        assert!((Looks { first: 1, last: 20 }.level() - (1.0 - 0.05 / 20.0)).abs() < 1e-12);
    }

    fn mmlu(n: f64, b: f64, c: f64, drop: f64) -> IndexMap<Role, IndexMap<String, Metric>> {
        let m = IndexMap::from([
            ("paired_questions".to_string(), Metric::new(n, "questions")),
            ("right_to_wrong".to_string(), Metric::new(b, "questions")),
            ("wrong_to_right".to_string(), Metric::new(c, "questions")),
            ("accuracy_drop".to_string(), Metric::new(drop, "")),
        ]);
        IndexMap::from([(Role::Lmcache, m)])
    }

    #[test]
    fn the_accuracy_drop_gets_mcnemar_and_an_interval() {
        let mut m = mmlu(264.0, 12.0, 2.0, 10.0 / 264.0);
        enrich(&mut m);
        let l = &m[&Role::Lmcache];
        let d = &l["accuracy_drop"];
        let i = d.interval.unwrap();
        assert!(i.low < d.value && d.value < i.high && i.low > 0.0, "{i:?}");
        assert_eq!(d.n, Some(264));
        assert!(d.p.unwrap() < 0.02, "12 against 2 is unlikely by chance");
        assert!(l["min_detectable_drop"].value > 0.01);
        assert!(l["questions_for_1pt_drop"].value > 264.0);
    }

    #[test]
    fn without_paired_counts_nothing_is_added() {
        let mut m = IndexMap::from([(
            Role::Lmcache,
            IndexMap::from([("accuracy_drop".to_string(), Metric::new(0.01, ""))]),
        )]);
        enrich(&mut m);
        assert_eq!(m[&Role::Lmcache].len(), 1);
        assert!(m[&Role::Lmcache]["accuracy_drop"].interval.is_none());
    }
}
