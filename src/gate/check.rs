//! One check against the metrics: the verdict with its interval, the
//! worst trial of an engagement metric, and the test's status from its
//! checks; the family-wise alpha shared by a run's relative checks.

use indexmap::IndexMap;

use super::{evidence, stats};
use crate::config::metrics;
use crate::config::{CheckConfig, Role, Severity, TestKind};
use crate::results::{
    CheckKind, CheckOutcome, Family, Interval, Metric, Op, Paired, TestRecord, TestStatus, Verdict,
};

/// Percent change of LMCache against baseline: negative means LMCache is
/// lower (faster, for latencies).
pub(crate) fn change_pct(baseline: f64, lmcache: f64) -> Option<f64> {
    let pct = (lmcache - baseline) / baseline * 100.0;
    (baseline != 0.0 && pct.is_finite()).then_some(pct)
}

/// Checks against the metrics of a test of `kind` (whose specs say how
/// each metric is judged); `paired` holds the paired samples that give
/// relative checks their intervals.
pub(crate) fn evaluate(
    kind: &dyn TestKind,
    checks: &IndexMap<String, CheckConfig>,
    metrics: &IndexMap<Role, IndexMap<String, Metric>>,
    paired: &Paired,
) -> Vec<CheckOutcome> {
    evaluate_looking(kind, checks, metrics, paired, evidence::Looks::ONE)
}

/// As [`evaluate`], for a test that looks at its evidence after each
/// trial: a check that may add trials judges an interval at its look's
/// share of the false-alarm budget.
pub(crate) fn evaluate_looking(
    kind: &dyn TestKind,
    checks: &IndexMap<String, CheckConfig>,
    metrics: &IndexMap<Role, IndexMap<String, Metric>>,
    paired: &Paired,
    looks: evidence::Looks,
) -> Vec<CheckOutcome> {
    checks
        .iter()
        .filter(|(_, c)| c.enabled)
        .map(|(name, c)| {
            let looks = match c.on_inconclusive.wants_more_trials() {
                true => looks,
                false => evidence::Looks::ONE,
            };
            evaluate_one(
                name,
                c,
                metrics::spec(kind, &c.metric),
                metrics,
                paired,
                looks,
            )
        })
        .collect()
}

/// Metrics that count requests that did not complete.
const FAILURES: [&str; 2] = ["failed_requests", "incomplete_requests"];

/// The suite's checks, and one more for every engine that recorded a
/// failure count no check bounds: a request that failed fails the test
/// (unless the test allows it), so a suite whose requests all fail is
/// never a green.
pub(crate) fn with_failures_gated(
    checks: &IndexMap<String, CheckConfig>,
    metrics: &IndexMap<Role, IndexMap<String, Metric>>,
    allow_failed: bool,
) -> IndexMap<String, CheckConfig> {
    let mut out = checks.clone();
    if allow_failed {
        return out;
    }
    for (role, recorded) in metrics {
        for metric in FAILURES.iter().filter(|m| recorded.contains_key(**m)) {
            let bounded = checks
                .values()
                .any(|c| c.enabled && c.metric == *metric && c.engine == *role);
            if bounded {
                continue;
            }
            out.insert(
                format!("{role}_{metric}"),
                CheckConfig {
                    metric: metric.to_string(),
                    engine: *role,
                    max: Some(0.0),
                    min: None,
                    max_change_pct: None,
                    min_change_pct: None,
                    severity: Severity::Error,
                    enabled: true,
                    retryable: false,
                    on_inconclusive: Default::default(),
                },
            );
        }
    }
    out
}

fn evaluate_one(
    name: &str,
    c: &CheckConfig,
    spec: metrics::MetricSpec,
    metrics: &IndexMap<Role, IndexMap<String, Metric>>,
    paired: &Paired,
    looks: evidence::Looks,
) -> CheckOutcome {
    let metric = |role: Role| {
        metrics
            .get(&role)
            .and_then(|m| m.get(&c.metric))
            .filter(|m| m.value.is_finite())
    };
    let get = |role: Role| metric(role).map(|m| m.value);
    let (baseline, lmcache) = (get(Role::Baseline), get(Role::Lmcache));
    let change = baseline.zip(lmcache).and_then(|(b, l)| change_pct(b, l));

    let (kind, op, threshold) = bound(c);
    let every_trial = kind == CheckKind::Absolute && spec.judged == metrics::Judged::EveryTrial;
    let worst = match kind {
        CheckKind::Absolute if every_trial => {
            metric(c.engine).and_then(|m| worst_trial(&m.trials, op))
        }
        _ => None,
    };
    let value = match kind {
        CheckKind::Absolute => worst.map(|(_, v)| v).or(get(c.engine)),
        CheckKind::Relative => change,
    };
    // An absolute value carries its own evidence; a relative change gets
    // its interval from the paired trials (none from a single one).
    let evidence = match kind {
        CheckKind::Absolute => metric(c.engine),
        CheckKind::Relative => None,
    };
    let relative = (kind == CheckKind::Relative)
        .then(|| paired.get(&c.metric))
        .flatten()
        .and_then(|t| evidence::change_interval_at(t, looks.level()))
        .filter(|e| e.point.is_finite());
    // A paired estimate replaces the change of the means: the interval is
    // its interval, and the two must agree.
    let (value, change) = match &relative {
        Some(e) => (Some(e.point), Some(e.point)),
        None => (value, change),
    };
    let interval = evidence
        .and_then(|m| m.interval)
        .or(relative.as_ref().map(|e| e.interval));
    let method = method_of(&spec, relative.as_ref(), evidence, looks);
    let verdict = match value.map(|v| judge(v, interval, op, threshold)) {
        Some(Judged::Within) => Verdict::Pass,
        Some(Judged::Straddles) => Verdict::Inconclusive,
        _ if c.severity == Severity::Warning => Verdict::Warning,
        _ => Verdict::Fail,
    };
    let message = match (value, worst, verdict) {
        (None, ..) => Some(missing_said(c, kind, baseline, lmcache)),
        (Some(v), Some((trial, _)), Verdict::Fail | Verdict::Warning) => {
            Some(worst_said(trial, v, metric(c.engine), op, threshold))
        }
        (Some(_), _, Verdict::Inconclusive) => relative
            .as_ref()
            .map(|e| undecided_said(&e.interval, threshold, e.trials)),
        _ => None,
    };
    CheckOutcome {
        name: name.to_string(),
        metric: c.metric.clone(),
        kind,
        engine: c.engine,
        op,
        threshold,
        unit: unit_of(c, kind, metrics),
        severity: c.severity,
        baseline,
        lmcache,
        change_pct: change,
        value,
        verdict,
        message,
        interval,
        n: evidence
            .and_then(|m| m.n)
            .or(relative.as_ref().map(|e| e.n)),
        p: evidence.and_then(|m| m.p),
        method,
        p_adjusted: None,
        on_inconclusive: c.on_inconclusive,
        every_trial,
        worst_trial: worst.map(|(t, _)| t),
    }
}

/// How the check's evidence was weighed, as results name it.
fn method_of(
    spec: &metrics::MetricSpec,
    relative: Option<&evidence::Estimate>,
    absolute: Option<&Metric>,
    looks: evidence::Looks,
) -> Option<String> {
    match relative {
        Some(e) if looks.sequential() => Some(format!(
            "{}; {} (look {} of at most {})",
            e.method,
            evidence::SEQUENTIAL,
            e.trials.saturating_sub(looks.first) + 1,
            looks.count()
        )),
        Some(e) => Some(e.method.to_string()),
        // An absolute value weighed by its kind's own method (MMLU's drop:
        // McNemar) where it carries that method's interval.
        None => spec
            .method_for(false)
            .filter(|_| absolute.is_some_and(|m| m.interval.is_some()))
            .map(|m| m.as_str().to_string()),
    }
}

/// What an inconclusive relative check tells: how long it looked, and
/// how many more trials would likely decide it.
fn undecided_said(interval: &Interval, threshold: f64, trials: usize) -> String {
    let more = match evidence::trials_to_decide(interval, threshold, trials) {
        Some(k) => format!("about {} more would likely decide it", k - trials),
        None => "the change sits on the bound: more trials would not likely decide it".into(),
    };
    format!("could not tell after {trials} trials; {more}")
}

/// What the judged value is in: percent for a change, else the metric's
/// unit (from whichever engine has it).
fn unit_of(
    c: &CheckConfig,
    kind: CheckKind,
    metrics: &IndexMap<Role, IndexMap<String, Metric>>,
) -> String {
    match kind {
        CheckKind::Relative => "%".to_string(),
        CheckKind::Absolute => [Role::Lmcache, Role::Baseline]
            .iter()
            .find_map(|r| metrics.get(r).and_then(|m| m.get(&c.metric)))
            .map(|m| m.unit.clone())
            .unwrap_or_default(),
    }
}

/// The check's kind, comparison and bound.
fn bound(c: &CheckConfig) -> (CheckKind, Op, f64) {
    // Config validation guarantees one bound; treat none as unmeetable.
    c.bound()
        .unwrap_or((CheckKind::Absolute, Op::AtMost, f64::NAN))
}

/// Why a check has no value to judge.
fn missing_said(
    c: &CheckConfig,
    kind: CheckKind,
    baseline: Option<f64>,
    lmcache: Option<f64>,
) -> String {
    match (kind, baseline, lmcache) {
        (CheckKind::Absolute, ..) => {
            format!("no value of `{}` from the {} engine", c.metric, c.engine)
        }
        (CheckKind::Relative, None, _) => format!("no baseline value of `{}`", c.metric),
        (CheckKind::Relative, _, None) => format!("no LMCache value of `{}`", c.metric),
        (CheckKind::Relative, ..) => format!("baseline `{}` is 0: no percent change", c.metric),
    }
}

/// Why a bound held to every trial failed: the worst trial's value, and
/// whether the mean would have hidden it.
fn worst_said(trial: u32, v: f64, m: Option<&Metric>, op: Op, threshold: f64) -> String {
    let trials = m.map_or(0, |m| m.trials.len());
    let mean = m.map_or(f64::NAN, |m| m.value);
    if matches!(judge(mean, None, op, threshold), Judged::Within) {
        format!(
            "trial {trial} of {trials} had {} (every trial must prove it; the mean {} hides that)",
            plain(v),
            plain(mean)
        )
    } else {
        format!(
            "trial {trial} of {trials} had {}, the worst; the mean is {}",
            plain(v),
            plain(mean)
        )
    }
}

/// The trial (1-based) whose value is furthest on the wrong side of a
/// bound of `op`, when there are several trials.
fn worst_trial(trials: &[f64], op: Op) -> Option<(u32, f64)> {
    if trials.len() < 2 {
        return None;
    }
    let worse = |a: f64, b: f64| match op {
        Op::AtLeast => a < b,
        Op::AtMost => a > b,
    };
    let mut worst: Option<(u32, f64)> = None;
    for (i, v) in trials.iter().copied().enumerate() {
        // A trial that measured nothing is the worst there is.
        let replace = match worst {
            None => true,
            Some((_, w)) => !w.is_nan() && (v.is_nan() || worse(v, w)),
        };
        if replace {
            worst = Some((i as u32 + 1, v));
        }
    }
    worst
}

/// A figure in a message: whole numbers without decimals.
fn plain(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    }
}

enum Judged {
    Within,
    Beyond,
    Straddles,
}

/// Three verdicts: the whole interval on the good side of the threshold,
/// the whole of it on the bad side, or across it. Without an interval the
/// point decides.
fn judge(value: f64, interval: Option<Interval>, op: Op, threshold: f64) -> Judged {
    let ok = |v: f64| op.holds(v, threshold);
    let (low, high) = interval.map_or((value, value), |i| (i.low, i.high));
    match (ok(low), ok(high)) {
        (true, true) => Judged::Within,
        (false, false) => Judged::Beyond,
        _ => Judged::Straddles,
    }
}

/// Whether another attempt could change the verdict: something failed, and
/// every failing check is retryable.
pub(crate) fn wants_retry(
    checks: &IndexMap<String, CheckConfig>,
    outcomes: &[CheckOutcome],
) -> bool {
    let failed: Vec<&CheckOutcome> = outcomes
        .iter()
        .filter(|o| o.verdict == Verdict::Fail)
        .collect();
    !failed.is_empty()
        && failed
            .iter()
            .all(|o| checks.get(&o.name).is_some_and(|c| c.retryable))
}

/// The last attempt's outcomes, with checks that failed on any earlier
/// attempt but pass now marked flaky: never hidden as a plain pass.
pub(crate) fn mark_flaky(
    earlier: &[Vec<CheckOutcome>],
    last: Vec<CheckOutcome>,
) -> Vec<CheckOutcome> {
    last.into_iter()
        .map(|mut o| {
            let failed_before = earlier
                .iter()
                .flatten()
                .any(|e| e.name == o.name && e.verdict == Verdict::Fail);
            if o.verdict == Verdict::Pass && failed_before {
                o.verdict = Verdict::Flaky;
            }
            o
        })
        .collect()
}

/// The false-alarm budget the run's hard checks share.
pub(crate) const ALPHA: f64 = 1.0 - evidence::LEVEL;

/// The run's hard checks with intervals share one false-alarm budget:
/// Holm's step-down adjustment (Holm 1979) of each check's p-value that it
/// holds. A failure that stands alone but not after the adjustment becomes
/// inconclusive and says so; passes are left alone. `enabled = false`
/// records the family without adjusting it.
pub(crate) fn share_alpha(tests: &mut [TestRecord], enabled: bool) -> Option<Family> {
    let mut family: Vec<(usize, usize, f64)> = Vec::new();
    for (ti, t) in tests.iter().enumerate() {
        for (ci, c) in t.checks.iter().enumerate() {
            if c.severity != Severity::Error {
                continue;
            }
            if let (Some(i), Some(_)) = (c.interval, c.value) {
                family.push((ti, ci, stats::breach_p(&i, c.threshold, c.op == Op::AtMost)));
            }
        }
    }
    if family.is_empty() {
        return None;
    }
    let mut softened = Vec::new();
    if enabled {
        let p: Vec<f64> = family.iter().map(|f| f.2).collect();
        let adjusted = stats::holm(&p);
        let m = family.len();
        for (&(ti, ci, alone), adj) in family.iter().zip(adjusted) {
            let t = &mut tests[ti];
            let c = &mut t.checks[ci];
            c.p_adjusted = Some(adj);
            if c.verdict == Verdict::Fail && adj >= ALPHA {
                c.verdict = Verdict::Inconclusive;
                c.message = Some(format!(
                    "beyond the threshold on its own (p = {alone:.3}) but not after Holm over the run's {m} hard checks (p = {adj:.3})"
                ));
                softened.push(format!("{}: {}", t.name, c.name));
                t.status = test_status(&t.checks);
            }
        }
    }
    Some(Family {
        method: if enabled { "holm" } else { "none" }.into(),
        alpha: ALPHA,
        checks: family.len(),
        softened,
    })
}

/// Takes back what `share_alpha` did, so the checks can join a larger
/// family (shards merged into one run): each check's own verdict again.
pub(crate) fn unshare_alpha(tests: &mut [TestRecord]) {
    for t in tests.iter_mut() {
        let mut changed = false;
        for c in t.checks.iter_mut() {
            if c.p_adjusted.take().is_none() || c.verdict != Verdict::Inconclusive {
                continue;
            }
            if let Some(v) = c.value {
                if matches!(judge(v, c.interval, c.op, c.threshold), Judged::Beyond) {
                    c.verdict = Verdict::Fail;
                    c.message = None;
                    changed = true;
                }
            }
        }
        if changed {
            t.status = test_status(&t.checks);
        }
    }
}

/// The check a recorded outcome was judged by: what a merge re-judges the
/// union with (retrying is over by then).
pub(crate) fn check_of(o: &CheckOutcome) -> CheckConfig {
    let mut c = CheckConfig::on(&o.metric);
    c.engine = o.engine;
    c.severity = o.severity;
    c.on_inconclusive = o.on_inconclusive;
    let t = Some(o.threshold);
    match (o.kind, o.op) {
        (CheckKind::Absolute, Op::AtMost) => c.max = t,
        (CheckKind::Absolute, Op::AtLeast) => c.min = t,
        (CheckKind::Relative, Op::AtMost) => c.max_change_pct = t,
        (CheckKind::Relative, Op::AtLeast) => c.min_change_pct = t,
    }
    c
}

/// A test's status from its check verdicts.
pub(crate) fn test_status(outcomes: &[CheckOutcome]) -> TestStatus {
    let blocking = |o: &CheckOutcome| {
        o.verdict == Verdict::Fail
            || (o.verdict == Verdict::Inconclusive
                && o.on_inconclusive.fails()
                && o.severity == Severity::Error)
    };
    if outcomes.iter().any(blocking) {
        TestStatus::Failed
    } else if outcomes.iter().any(|o| o.verdict == Verdict::Flaky) {
        TestStatus::Flaky
    } else if outcomes.iter().any(|o| o.verdict == Verdict::Inconclusive) {
        TestStatus::Inconclusive
    } else if outcomes.iter().any(|o| o.verdict == Verdict::Warning) {
        TestStatus::Warning
    } else {
        TestStatus::Passed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::OnInconclusive;

    /// The checks judged as for a test of the loader's toy kind: every
    /// metric here is its own or an engine counter.
    fn evaluate(
        checks: &IndexMap<String, CheckConfig>,
        metrics: &IndexMap<Role, IndexMap<String, Metric>>,
        paired: &Paired,
    ) -> Vec<CheckOutcome> {
        super::evaluate(&crate::config::toy::Toy, checks, metrics, paired)
    }

    fn metrics(b: f64, l: f64) -> IndexMap<Role, IndexMap<String, Metric>> {
        let one = |v| IndexMap::from([("ttft".to_string(), Metric::new(v, "s"))]);
        IndexMap::from([(Role::Baseline, one(b)), (Role::Lmcache, one(l))])
    }

    fn check(f: impl FnOnce(&mut CheckConfig)) -> IndexMap<String, CheckConfig> {
        let mut c = CheckConfig::on("ttft");
        f(&mut c);
        IndexMap::from([("c".to_string(), c)])
    }

    #[test]
    fn relative_change_must_be_at_most_the_threshold() {
        let c = check(|c| c.max_change_pct = Some(-60.0));
        let pass = evaluate(&c, &metrics(1.0, 0.2), &Paired::new());
        assert_eq!(pass[0].verdict, Verdict::Pass);
        assert!((pass[0].change_pct.unwrap() + 80.0).abs() < 1e-9);
        let fail = evaluate(&c, &metrics(1.0, 0.5), &Paired::new());
        assert_eq!(fail[0].verdict, Verdict::Fail);
        assert_eq!(test_status(&fail), TestStatus::Failed);
    }

    #[test]
    fn absolute_bounds_apply_to_the_chosen_engine() {
        let c = check(|c| {
            c.max = Some(0.22);
            c.engine = Role::Baseline;
        });
        assert_eq!(
            evaluate(&c, &metrics(0.3, 0.1), &Paired::new())[0].verdict,
            Verdict::Fail
        );
        let c = check(|c| c.min = Some(0.5));
        assert_eq!(
            evaluate(&c, &metrics(0.3, 0.6), &Paired::new())[0].verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn a_cache_hit_bound_holds_in_every_trial_not_on_average() {
        let hits = "vllm:external_prefix_cache_hits_total";
        let c = {
            let mut c = CheckConfig::on(hits);
            c.min = Some(1.0);
            IndexMap::from([("lmcache_cache_hits".to_string(), c)])
        };
        let pooled = |trials: Vec<f64>| {
            let mut m = Metric::new(trials.iter().sum::<f64>() / trials.len() as f64, "tokens");
            m.n = Some(trials.len() as u64);
            m.trials = trials;
            IndexMap::from([(Role::Lmcache, IndexMap::from([(hits.to_string(), m)]))])
        };
        // The mean (80) clears the bound; trial 2 had no hit at all.
        let out = evaluate(&c, &pooled(vec![120.0, 0.0, 120.0]), &Paired::new());
        assert_eq!(out[0].verdict, Verdict::Fail);
        assert_eq!(out[0].value, Some(0.0));
        assert_eq!(out[0].worst_trial, Some(2));
        assert!(out[0].every_trial);
        assert_eq!(
            out[0].message.as_deref(),
            Some("trial 2 of 3 had 0 (every trial must prove it; the mean 80 hides that)")
        );
        let out = evaluate(&c, &pooled(vec![120.0, 7.0, 90.0]), &Paired::new());
        assert_eq!(out[0].verdict, Verdict::Pass);
        assert_eq!((out[0].value, out[0].worst_trial), (Some(7.0), Some(2)));
        assert_eq!(out[0].message, None);
        // Other metrics keep their mean: a latency bound is about the run.
        let mut c = check(|c| c.max = Some(0.5));
        c["c"].metric = "ttft".into();
        let mut m = metrics(0.3, 0.4);
        let ttft = m[&Role::Lmcache].get_mut("ttft").unwrap();
        ttft.trials = vec![0.2, 0.6];
        assert_eq!(evaluate(&c, &m, &Paired::new())[0].verdict, Verdict::Pass);
    }

    #[test]
    fn soft_failures_warn_and_do_not_fail_the_test() {
        let c = check(|c| {
            c.max = Some(0.1);
            c.severity = Severity::Warning;
        });
        let out = evaluate(&c, &metrics(1.0, 0.5), &Paired::new());
        assert_eq!(out[0].verdict, Verdict::Warning);
        assert_eq!(test_status(&out), TestStatus::Warning);
    }

    #[test]
    fn missing_or_nan_values_fail_with_a_reason() {
        let c = check(|c| c.max_change_pct = Some(-60.0));
        let out = evaluate(&c, &metrics(f64::NAN, 0.5), &Paired::new());
        assert_eq!(out[0].verdict, Verdict::Fail);
        assert!(out[0].message.as_deref().unwrap().contains("baseline"));
        let out = evaluate(&c, &metrics(0.0, 0.5), &Paired::new());
        assert_eq!(out[0].verdict, Verdict::Fail);
    }

    #[test]
    fn a_pass_after_a_failure_is_flaky_and_retry_needs_retryable_checks() {
        let mut c = check(|c| c.min_change_pct = Some(-5.0));
        let first = evaluate(&c, &metrics(100.0, 90.0), &Paired::new());
        assert_eq!(first[0].verdict, Verdict::Fail);
        assert!(!wants_retry(&c, &first), "not retryable");
        c["c"].retryable = true;
        assert!(wants_retry(&c, &first));
        let second = evaluate(&c, &metrics(100.0, 98.0), &Paired::new());
        assert!(!wants_retry(&c, &second), "nothing failed");
        let last = mark_flaky(&[first], second);
        assert_eq!(last[0].verdict, Verdict::Flaky);
        assert_eq!(test_status(&last), TestStatus::Flaky);
    }

    /// `ttft ≤ 0.01` judged on LMCache's value with the interval given.
    fn judged_with_interval(low: f64, high: f64) -> CheckOutcome {
        let c = check(|c| c.max = Some(0.01));
        let mut m = metrics(1.0, (low + high) / 2.0);
        m[&Role::Lmcache]["ttft"].interval = Some(Interval {
            low,
            high,
            level: 0.95,
        });
        evaluate(&c, &m, &Paired::new()).remove(0)
    }

    #[test]
    fn an_interval_gives_three_verdicts() {
        let with = |low: f64, high: f64| judged_with_interval(low, high);
        assert_eq!(
            with(-0.01, 0.009).verdict,
            Verdict::Pass,
            "all of it within"
        );
        assert_eq!(with(0.011, 0.03).verdict, Verdict::Fail, "all of it beyond");
        let straddles = with(-0.004, 0.019);
        assert_eq!(straddles.verdict, Verdict::Inconclusive);
        assert_eq!(
            test_status(std::slice::from_ref(&straddles)),
            TestStatus::Inconclusive
        );
        let strict = check(|c| {
            c.max = Some(0.01);
            c.on_inconclusive = OnInconclusive::Fail;
        });
        let mut m = metrics(1.0, 0.007);
        m[&Role::Lmcache]["ttft"].interval = Some(Interval {
            low: -0.004,
            high: 0.019,
            level: 0.95,
        });
        let out = evaluate(&strict, &m, &Paired::new());
        assert_eq!(out[0].verdict, Verdict::Inconclusive);
        assert_eq!(
            test_status(&out),
            TestStatus::Failed,
            "fail on inconclusive"
        );
    }

    fn record(name: &str, checks: Vec<CheckOutcome>) -> TestRecord {
        let status = test_status(&checks);
        TestRecord {
            checks,
            ..TestRecord::new(name, "long_doc_qa", status)
        }
    }

    #[test]
    fn holm_softens_a_lone_marginal_failure_among_many_checks_but_not_a_clear_one() {
        let with = |low: f64, high: f64| judged_with_interval(low, high);
        // Just beyond (p ≈ 0.04) among four checks: not beyond after Holm.
        let marginal = with(0.0102, 0.03);
        assert_eq!(marginal.verdict, Verdict::Fail);
        let passes = || with(-0.02, 0.0);
        let mut tests = vec![
            record("a", vec![marginal.clone()]),
            record("b", vec![passes(), passes(), passes()]),
        ];
        let family = share_alpha(&mut tests, true).unwrap();
        assert_eq!(family.checks, 4);
        assert_eq!(family.softened, vec!["a: c".to_string()]);
        assert_eq!(tests[0].checks[0].verdict, Verdict::Inconclusive);
        assert_eq!(tests[0].status, TestStatus::Inconclusive);
        assert!(tests[0].checks[0]
            .message
            .as_deref()
            .unwrap()
            .contains("Holm"));
        // Switched off: judged alone.
        let mut alone = vec![record("a", vec![marginal]), record("b", vec![passes()])];
        assert!(share_alpha(&mut alone, false).unwrap().softened.is_empty());
        assert_eq!(alone[0].checks[0].verdict, Verdict::Fail);
        // A clear failure survives any reasonable family.
        let mut clear = vec![
            record("a", vec![with(0.05, 0.09)]),
            record("b", vec![passes(), passes()]),
        ];
        share_alpha(&mut clear, true);
        assert_eq!(clear[0].checks[0].verdict, Verdict::Fail);
        assert!(clear[0].checks[0].p_adjusted.unwrap() < 0.001);
    }

    #[test]
    fn disabled_checks_are_skipped() {
        let c = check(|c| {
            c.max = Some(0.0);
            c.enabled = false;
        });
        assert!(evaluate(&c, &metrics(1.0, 1.0), &Paired::new()).is_empty());
    }
}
