//! Calibration: how often each gate raises a false alarm and how often it
//! catches a real regression, measured on the sim's own noise model
//! (`sim::noise`: seeded log-normal jitter, rare stalls, slow drift, a true
//! slowdown) and its answer flips, judged with the gate's own statistics.
//! One table (`lmcache-e2e calibrate` prints it); its figures set the
//! presets' defaults.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::gate::evidence::{change_interval_at, Looks, LEVEL};
use crate::gate::stats;
use crate::results::Interval;
use crate::sim::noise::Noise;

/// What a calibration runs: seeded runs per cell, the trials and prompts
/// of a verdict, the bound and the true slowdown.
pub(crate) struct Calibration {
    pub runs: usize,
    pub trials: usize,
    pub max_trials: usize,
    pub prompts: usize,
    pub throughput_prompts: usize,
    pub questions: usize,
    pub bound_pct: f64,
    pub slowdown_pct: f64,
    pub seed: u64,
    /// Only the latency rows whose noise label contains this.
    pub noise: Option<String>,
    /// Noise measured on real engines, replayed after the table.
    pub profile: Option<NoiseProfile>,
}

/// The noise of one row.
#[derive(Clone, Copy)]
struct Weather {
    jitter: f64,
    stalls: bool,
    drift: bool,
    /// Bursts shared by every request of a 2 s window (×1.4, 0.1 a second).
    bursts: bool,
    /// Requests in flight at once (long document QA's
    /// `max_inflight_requests`): they queue for one prefill at a time, as
    /// on the sim and a GPU.
    inflight: usize,
    /// Both engines' rounds run at the same time (`run.pairing =
    /// "together"`), else one after the other, their order alternating.
    together: bool,
    /// A whole round's shift (log-normal σ, per engine): what a measured
    /// noise profile says trials share.
    trial_sd: f64,
    /// Seconds one request takes on average: the clock drift and bursts
    /// run on (1 s for the classic rows; 0.1 s, a query's TTFT on a GPU,
    /// where bursts span requests).
    request_secs: f64,
}

impl Weather {
    fn noise(self, slowdown_pct: f64, burst_seed: u64) -> Noise {
        Noise {
            jitter: self.jitter,
            stall_rate: if self.stalls { 0.01 } else { 0.0 },
            stall_factor: 10.0,
            drift_pct_per_min: if self.drift { 5.0 } else { 0.0 },
            slowdown_pct,
            burst_rate: if self.bursts { 0.1 } else { 0.0 },
            burst_secs: 2.0,
            burst_factor: 1.4,
            burst_seed,
        }
    }

    /// Both engines of one run, on one host: a burst (another job, a
    /// throttled GPU) slows whichever engine is serving while it lasts;
    /// the windows are drawn afresh per run.
    fn engines(self, slowdown_pct: f64, rng: &mut StdRng) -> (Noise, Noise) {
        let host: u64 = rng.gen();
        (self.noise(0.0, host), self.noise(slowdown_pct, host))
    }

    fn label(self) -> String {
        let mut s = format!("jitter {:.0} %", self.jitter * 100.0);
        if self.stalls {
            s.push_str(", 1 % stalls ×10");
        }
        if self.drift {
            s.push_str(", drift 5 %/min");
        }
        if self.bursts {
            s.push_str(", bursts ×1.4 for 2 s, 0.1/s");
        }
        if self.inflight > 1 {
            s.push_str(&format!(", {} in flight", self.inflight));
        }
        if self.trial_sd > 0.0 {
            s.push_str(&format!(", trials shift {:.1} %", self.trial_sd * 100.0));
        }
        if self.together {
            s.push_str(", engines together");
        }
        s
    }
}

/// How often a gate said fail and inconclusive, and what it cost.
#[derive(Default)]
struct Tally {
    fail: usize,
    inconclusive: usize,
    requests: usize,
    runs: usize,
}

impl Tally {
    fn add(&mut self, verdict: Judged, requests: usize) {
        self.runs += 1;
        self.requests += requests;
        match verdict {
            Judged::Fail => self.fail += 1,
            Judged::Inconclusive => self.inconclusive += 1,
            Judged::Pass => {}
        }
    }

    fn cell(&self, intervals: bool) -> String {
        let pct = |k: usize| 100.0 * k as f64 / self.runs.max(1) as f64;
        let cost = self.requests as f64 / self.runs.max(1) as f64;
        if intervals {
            format!(
                "{:.1} % fail, {:.1} % inconcl., {cost:.0} req",
                pct(self.fail),
                pct(self.inconclusive)
            )
        } else {
            format!("{:.1} % fail, {cost:.0} req", pct(self.fail))
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Judged {
    Pass,
    Fail,
    Inconclusive,
}

/// The gate's rule: fail when all of the interval is beyond the bound,
/// pass when all of it is within, else inconclusive. `bad_above`: the
/// check fails above the bound.
fn judge(i: &Interval, bound: f64, bad_above: bool) -> Judged {
    let (beyond, within) = if bad_above {
        (i.low > bound, i.high <= bound)
    } else {
        (i.high < bound, i.low >= bound)
    };
    match (beyond, within) {
        (true, _) => Judged::Fail,
        (_, true) => Judged::Pass,
        _ => Judged::Inconclusive,
    }
}

fn point(change: f64, bound: f64, bad_above: bool) -> Judged {
    let beyond = if bad_above {
        change > bound
    } else {
        change < bound
    };
    if beyond {
        Judged::Fail
    } else {
        Judged::Pass
    }
}

/// Every row's noise: three jitters, each alone, with stalls, with drift;
/// then what a trial shares: requests in flight, and bursts with them.
fn weathers() -> impl Iterator<Item = Weather> {
    let classic = [0.05, 0.10, 0.20].into_iter().flat_map(|jitter| {
        [(false, false), (true, false), (false, true)]
            .into_iter()
            .map(move |(stalls, drift)| Weather {
                jitter,
                stalls,
                drift,
                bursts: false,
                inflight: 1,
                together: false,
                trial_sd: 0.0,
                request_secs: 1.0,
            })
    });
    let shared = [
        (false, 4, false),
        (true, 1, false),
        (true, 4, false),
        (true, 4, true),
    ]
    .into_iter()
    .map(|(bursts, inflight, together)| Weather {
        jitter: 0.10,
        stalls: false,
        drift: false,
        bursts,
        inflight,
        together,
        trial_sd: 0.0,
        request_secs: 0.1,
    });
    classic.chain(shared)
}

/// A clock per run: both engines start together, so drift follows it.
struct Clock(f64);

/// One trial of long document QA's query round on both engines, order
/// alternating by trial: per prompt, (baseline, LMCache) TTFTs. Prompts
/// differ in length (0.5–1.5 × a base), as the documents do.
fn ttft_trial(
    rng: &mut StdRng,
    clock: &mut Clock,
    (b, l): (Noise, Noise),
    (prompts, weather): (usize, Weather),
    trial: usize,
) -> Vec<(f64, f64)> {
    let bases: Vec<f64> = (0..prompts).map(|_| 0.5 + rng.gen::<f64>()).collect();
    let serve = |noise: Noise, rng: &mut StdRng, clock: &mut Clock| {
        serve_round(&bases, noise, weather, rng, clock)
    };
    // A round's shift: one draw per engine per trial; served together, the
    // host's one shift for both.
    let shift =
        |rng: &mut StdRng| (weather.trial_sd * crate::sim::noise::standard_normal(rng)).exp();
    let (tb, tl) = if weather.together {
        // Both rounds at once from the same instant: what slows the host
        // slows both.
        let start = clock.0;
        let host = shift(rng);
        let tb = scaled(serve(b, rng, clock), host);
        let end = std::mem::replace(&mut clock.0, start);
        let tl = scaled(serve(l, rng, clock), host);
        clock.0 = clock.0.max(end);
        (tb, tl)
    } else if trial % 2 == 1 {
        let tb = scaled(serve(b, rng, clock), shift(rng));
        (tb, scaled(serve(l, rng, clock), shift(rng)))
    } else {
        let tl = scaled(serve(l, rng, clock), shift(rng));
        (scaled(serve(b, rng, clock), shift(rng)), tl)
    };
    tb.into_iter().zip(tl).collect()
}

fn scaled(ttfts: Vec<f64>, by: f64) -> Vec<f64> {
    ttfts.into_iter().map(|t| t * by).collect()
}

/// Noise measured on real engines: two identical engines (A/A) in paired
/// trials give each request's jitter (from the spread of per-prompt log
/// ratios within a trial) and what trials share (the spread of the
/// trials' mean log ratios beyond what the jitter explains, a method of
/// moments as in DerSimonian & Laird), per engine (each ratio has two).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct NoiseProfile {
    /// Where it was measured: the results directory and test.
    pub source: String,
    pub metric: String,
    pub trials: usize,
    pub prompts_per_trial: usize,
    /// Log-normal σ of one request, per engine.
    pub jitter: f64,
    /// Log-normal σ of a whole trial's shift, per engine.
    pub trial_sd: f64,
}

impl NoiseProfile {
    /// From the paired samples of `metric` in an A/A run's results; `None`
    /// where no test has two trials of it with two prompts each.
    pub(crate) fn measure(
        results: &crate::results::RunResults,
        metric: &str,
        source: &str,
    ) -> Option<Self> {
        let (test, trials) = results.tests.iter().find_map(|t| {
            let trials = t.paired.get(metric)?;
            (trials.len() >= 2 && trials.iter().all(|p| p.len() >= 2)).then_some((t, trials))
        })?;
        let logs: Vec<Vec<f64>> = trials
            .iter()
            .map(|t| {
                t.iter()
                    .filter(|(b, l)| *b > 0.0 && *l > 0.0)
                    .map(|(b, l)| (l / b).ln())
                    .collect()
            })
            .collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let var = |v: &[f64]| {
            let m = mean(v);
            v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1).max(1) as f64
        };
        let dof: usize = logs.iter().map(|t| t.len() - 1).sum();
        let within = logs
            .iter()
            .map(|t| var(t) * (t.len() - 1) as f64)
            .sum::<f64>()
            / dof as f64;
        let n = logs.iter().map(Vec::len).sum::<usize>() as f64 / logs.len() as f64;
        let means: Vec<f64> = logs.iter().map(|t| mean(t)).collect();
        let between = (var(&means) - within / n).max(0.0);
        Some(Self {
            source: format!("{source}, test {}", test.name),
            metric: metric.to_string(),
            trials: logs.len(),
            prompts_per_trial: n.round() as usize,
            jitter: (within / 2.0).sqrt(),
            trial_sd: (between / 2.0).sqrt(),
        })
    }

    /// The rows it replays: engines one after the other and together.
    fn weathers(&self, inflight: usize) -> Vec<Weather> {
        [false, true]
            .into_iter()
            .map(|together| Weather {
                jitter: self.jitter,
                stalls: false,
                drift: false,
                bursts: false,
                inflight,
                together,
                trial_sd: self.trial_sd,
                request_secs: 0.1,
            })
            .collect()
    }
}

/// The long document QA rows of a measured profile, after the table.
fn profile_rows(args: &Calibration, profile: &NoiseProfile, out: &mut Vec<String>) {
    out.push(String::new());
    out.push(format!(
        "# Replayed: {} ({} trials of {} prompts, {}): jitter {:.1} %, trials shift {:.1} % per engine.",
        profile.source,
        profile.trials,
        profile.prompts_per_trial,
        profile.metric,
        profile.jitter * 100.0,
        profile.trial_sd * 100.0
    ));
    out.push("| workload | noise | truth | today: point | today: retried until pass | interval gate | + more trials, 95 % each look | + more trials, sequential looks (α spent) |".to_string());
    out.push("|---|---|---|---|---|---|---|---|".to_string());
    for (i, w) in profile.weathers(4).into_iter().enumerate() {
        for (k, slowdown) in [0.0, args.slowdown_pct].into_iter().enumerate() {
            let truth = if slowdown == 0.0 {
                "no change".to_string()
            } else {
                format!("TTFT +{slowdown} %")
            };
            let seed = args.seed.wrapping_add(10_000 + 2 * i as u64 + k as u64);
            row(
                out,
                "long doc QA",
                &w.label(),
                &truth,
                &ttft_row(args, w, slowdown, seed),
            );
        }
    }
}

/// One engine's round, `weather.inflight` requests at a time: each waits
/// for the one prefill in progress (FIFO), its TTFT is from its send to
/// its prefill's end, and its slot frees after a decode of half a mean
/// request. One at a time, each TTFT is its own service.
fn serve_round(
    bases: &[f64],
    noise: Noise,
    weather: Weather,
    rng: &mut StdRng,
    clock: &mut Clock,
) -> Vec<f64> {
    let start = clock.0;
    let decode = if weather.inflight > 1 {
        0.5 * weather.request_secs
    } else {
        0.0
    };
    let mut slots = vec![start; weather.inflight.max(1)];
    let mut prefill_free = start;
    let mut end = start;
    let mut ttfts = Vec::with_capacity(bases.len());
    for base in bases {
        let (slot, sent) = slots
            .iter()
            .copied()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .expect("at least one slot");
        let begin = sent.max(prefill_free);
        let done = begin + base * noise.factor(rng, begin) * weather.request_secs;
        prefill_free = done;
        slots[slot] = done + decode;
        end = end.max(done + decode);
        ttfts.push(done - sent);
    }
    clock.0 = end;
    ttfts
}

/// The change of the mean TTFT, as today's scripts compute it.
fn mean_change(trials: &[Vec<(f64, f64)>]) -> f64 {
    let (b, l) = trials
        .iter()
        .flatten()
        .fold((0.0, 0.0), |(b, l), (x, y)| (b + x, l + y));
    (l - b) / b * 100.0
}

/// What one gate does with a workload that yields paired trials.
struct Policy {
    trials: usize,
    max_trials: usize,
}

/// Runs the interval gate: `trials` trials, then (if it straddles) one at
/// a time up to `max_trials`, as `on_inconclusive = "more-trials"` does. Returns the verdict and the pairs it cost.
fn interval_gate<F>(
    policy: &Policy,
    mut trial: F,
    judge_one: impl Fn(&[Vec<(f64, f64)>]) -> Judged,
) -> (Judged, usize)
where
    F: FnMut(usize) -> Vec<(f64, f64)>,
{
    let mut all: Vec<Vec<(f64, f64)>> = (1..=policy.trials).map(&mut trial).collect();
    loop {
        let verdict = judge_one(&all);
        if verdict != Judged::Inconclusive || all.len() >= policy.max_trials {
            return (verdict, all.iter().map(Vec::len).sum());
        }
        let next = all.len() + 1;
        let more = (policy.max_trials - all.len()).min(1);
        all.extend((next..next + more).map(&mut trial));
    }
}

/// The interval gates compared, by column: the first trials alone; more
/// trials while undecided, each look at 95 % (what `more-trials` did
/// before); and each look at its share of the budget (sequential looks).
fn gates(args: &Calibration) -> [(usize, usize, Looks); 3] {
    let sequential = Looks {
        first: args.trials,
        last: args.max_trials,
    };
    [
        (2, args.trials, Looks::ONE),
        (3, args.max_trials, Looks::ONE),
        (4, args.max_trials, sequential),
    ]
}

/// Today's gates on one run: the point estimate once, and retried until
/// a pass (LMCache's CI retries up to 3 times).
fn today<F>(mut attempt: F) -> [(Judged, usize); 2]
where
    F: FnMut() -> (Judged, usize),
{
    let first = attempt();
    let mut retried = first;
    let mut cost = first.1;
    for _ in 1..3 {
        if retried.0 == Judged::Pass {
            break;
        }
        retried = attempt();
        cost += retried.1;
    }
    [first, (retried.0, cost)]
}

/// Long document QA: LMCache's query TTFT at most `bound` % above
/// baseline's, `prompts` queries per verdict (split over the trials).
fn ttft_row(args: &Calibration, weather: Weather, slowdown: f64, seed: u64) -> [Tally; 5] {
    let mut rng = StdRng::seed_from_u64(seed);
    let per_trial = (args.prompts / args.trials).max(1);
    let bound = args.bound_pct;
    let mut tallies: [Tally; 5] = Default::default();
    for _ in 0..args.runs {
        let engines = weather.engines(slowdown, &mut rng);
        let [once, retried] = today(|| {
            let mut clock = Clock(0.0);
            let t = vec![ttft_trial(
                &mut rng,
                &mut clock,
                engines,
                (args.prompts, weather),
                1,
            )];
            (point(mean_change(&t), bound, true), 2 * args.prompts)
        });
        tallies[0].add(once.0, once.1);
        tallies[1].add(retried.0, retried.1);
        for (k, max_trials, looks) in gates(args) {
            let judge_one = |t: &[Vec<(f64, f64)>]| {
                change_interval_at(t, looks.level())
                    .map_or(Judged::Inconclusive, |e| judge(&e.interval, bound, true))
            };
            let mut clock = Clock(0.0);
            let policy = Policy {
                trials: args.trials,
                max_trials,
            };
            let (v, pairs) = interval_gate(
                &policy,
                |i| ttft_trial(&mut rng, &mut clock, engines, (per_trial, weather), i),
                judge_one,
            );
            tallies[k].add(v, 2 * pairs);
        }
    }
    tallies
}

/// One throughput trial on both engines: `n` requests each, served one
/// after another; (baseline, LMCache) requests per second.
fn throughput_trial(
    rng: &mut StdRng,
    clock: &mut Clock,
    (b, l): (Noise, Noise),
    (n, weather): (usize, Weather),
    trial: usize,
) -> Vec<(f64, f64)> {
    let mut serve = |noise: Noise, rng: &mut StdRng| {
        let start = clock.0;
        for _ in 0..n {
            clock.0 += noise.factor(rng, clock.0) * weather.request_secs;
        }
        n as f64 / (clock.0 - start)
    };
    let pair = if trial % 2 == 1 {
        let tb = serve(b, rng);
        (tb, serve(l, rng))
    } else {
        let tl = serve(l, rng);
        (serve(b, rng), tl)
    };
    vec![pair]
}

/// Throughput: LMCache's at least `-5 %` of baseline's.
fn throughput_row(args: &Calibration, weather: Weather, drop_pct: f64, seed: u64) -> [Tally; 5] {
    let mut rng = StdRng::seed_from_u64(seed);
    // A throughput drop of d % is a latency rise of 1/(1 − d) − 1.
    let slowdown = (1.0 / (1.0 - drop_pct / 100.0) - 1.0) * 100.0;
    let n = args.throughput_prompts;
    let bound = -5.0;
    let mut tallies: [Tally; 5] = Default::default();
    for _ in 0..args.runs {
        let engines = weather.engines(slowdown, &mut rng);
        let [once, retried] = today(|| {
            let mut clock = Clock(0.0);
            let t = throughput_trial(&mut rng, &mut clock, engines, (n, weather), 1);
            let (b, l) = t[0];
            (point((l - b) / b * 100.0, bound, false), 2 * n)
        });
        tallies[0].add(once.0, once.1);
        tallies[1].add(retried.0, retried.1);
        for (k, max_trials, looks) in gates(args) {
            let judge_one = |t: &[Vec<(f64, f64)>]| {
                change_interval_at(t, looks.level())
                    .map_or(Judged::Inconclusive, |e| judge(&e.interval, bound, false))
            };
            let mut clock = Clock(0.0);
            let policy = Policy {
                trials: args.trials,
                max_trials,
            };
            let (v, trials) = interval_gate(
                &policy,
                |i| throughput_trial(&mut rng, &mut clock, engines, (n, weather), i),
                judge_one,
            );
            tallies[k].add(v, 2 * n * trials);
        }
    }
    tallies
}

/// MMLU on `questions` paired questions: baseline right with probability
/// 0.6; a fraction `background` of questions answered afresh by LMCache
/// (engines that are not batch-invariant); LMCache's cache hits turn a
/// right answer wrong often enough to cost `drop_pts` points. Gates:
/// today's point drop ≤ 1 point (retried until a pass), McNemar's interval
/// on the drop (fail when all of it is above 0), and changed answers = 0.
fn mmlu_row(args: &Calibration, background: f64, drop_pts: f64, seed: u64) -> [Tally; 4] {
    const ACCURACY: f64 = 0.6;
    let mut rng = StdRng::seed_from_u64(seed);
    let q = args.questions;
    let flip = drop_pts / 100.0 / ACCURACY;
    let mut tallies: [Tally; 4] = Default::default();
    let truth: Vec<bool> = (0..q).map(|_| rng.gen::<f64>() < ACCURACY).collect();
    for _ in 0..args.runs {
        let answer = |rng: &mut StdRng| {
            let (mut b, mut c) = (0u64, 0u64);
            for &right in &truth {
                let mut l = right;
                if rng.gen::<f64>() < background {
                    l = rng.gen::<f64>() < ACCURACY;
                }
                if l && rng.gen::<f64>() < flip {
                    l = false;
                }
                match (right, l) {
                    (true, false) => b += 1,
                    (false, true) => c += 1,
                    _ => {}
                }
            }
            (b, c)
        };
        let [once, retried] = today(|| {
            let (b, c) = answer(&mut rng);
            (point((b as f64 - c as f64) / q as f64, 0.01, true), 2 * q)
        });
        tallies[0].add(once.0, once.1);
        tallies[1].add(retried.0, retried.1);
        let (b, c) = answer(&mut rng);
        let (_, diff) = stats::paired_accuracy_diff(q as u64, b, c, LEVEL);
        let drop = diff.map(|i| Interval {
            low: -i.high,
            high: -i.low,
            level: i.level,
        });
        let verdict = drop.map_or(Judged::Inconclusive, |d| judge(&d, 0.0, true));
        tallies[2].add(verdict, 2 * q);
        tallies[3].add(point((b + c) as f64, 0.0, true), 2 * q);
    }
    tallies
}

pub(crate) fn table(args: &Calibration) -> Vec<String> {
    let mut out = Vec::new();
    out.push(format!(
        "# {} seeded runs per cell; the sim's noise model (sim::noise). Cells: fail rate (a false alarm under \"no change\", a detection otherwise), inconclusive rate, mean requests per verdict (both engines).",
        args.runs
    ));
    out.push(format!(
        "# long doc QA: LMCache query TTFT at most {:+} % vs baseline, {} queries per verdict ({} trials of {}; more trials: one at a time up to {}). Throughput: at least -5 %, {} prompts per trial. Today: one point estimate, and retried until a pass (up to 3 attempts).",
        args.bound_pct,
        args.prompts,
        args.trials,
        (args.prompts / args.trials).max(1),
        args.max_trials,
        args.throughput_prompts
    ));
    out.push("| workload | noise | truth | today: point | today: retried until pass | interval gate | + more trials, 95 % each look | + more trials, sequential looks (α spent) |".to_string());
    out.push("|---|---|---|---|---|---|---|---|".to_string());
    let mut seed = args.seed;
    let mut next_seed = || {
        seed = seed.wrapping_add(1);
        seed
    };
    for w in weathers() {
        if args
            .noise
            .as_deref()
            .is_some_and(|n| !w.label().contains(n))
        {
            // Its seeds still drawn: a row is the same alone or in the table.
            for _ in 0..6 {
                next_seed();
            }
            continue;
        }
        // At the bound a fail is a false alarm: the check's claim holds.
        for slowdown in [0.0, args.bound_pct, args.slowdown_pct] {
            let truth = match slowdown {
                0.0 => "no change".to_string(),
                s if s == args.bound_pct => format!("TTFT +{s} % (at the bound)"),
                s => format!("TTFT +{s} %"),
            };
            row(
                &mut out,
                "long doc QA",
                &w.label(),
                &truth,
                &ttft_row(args, w, slowdown, next_seed()),
            );
        }
        for (truth, drop) in [
            ("no change", 0.0),
            ("throughput -5 %", 5.0),
            ("throughput -10 %", 10.0),
        ] {
            row(
                &mut out,
                "throughput",
                &w.label(),
                truth,
                &throughput_row(args, w, drop, next_seed()),
            );
        }
    }
    if let Some(profile) = &args.profile {
        profile_rows(args, profile, &mut out);
    }
    if args.noise.is_some() {
        return out;
    }
    mmlu_table(args, &mut next_seed, &mut out);
    change_point_table(args, &mut next_seed, &mut out);
    out
}

/// MMLU's rows: today's gates beside McNemar's interval and the count of
/// changed answers, as answers vary in the background.
fn mmlu_table(args: &Calibration, next_seed: &mut impl FnMut() -> u64, out: &mut Vec<String>) {
    out.push(String::new());
    out.push("| workload | noise | truth | today: drop ≤ 1 pt | today: retried until pass | McNemar interval: drop ≤ 0 | changed answers = 0 |".to_string());
    out.push("|---|---|---|---|---|---|---|".to_string());
    for background in [0.0, 0.02, 0.05] {
        for (truth, drop) in [("no change", 0.0), ("MMLU -1 pt", 1.0), ("MMLU -3 pt", 3.0)] {
            let noise = format!("{:.0} % answers vary", background * 100.0);
            row(
                out,
                &format!("MMLU, {} questions", args.questions),
                &noise,
                truth,
                &mmlu_row(args, background, drop, next_seed()),
            );
        }
    }
}

/// Runs in a history, and where its step is.
const HISTORY_RUNS: usize = 30;
const STEP_AT: usize = 15;

/// E-divisive on histories of the default branch: each run's value is its
/// long document QA change (LMCache vs baseline query TTFT, one verdict's
/// prompts), and from run 16 on LMCache is `step` % slower.
fn change_point_table(
    args: &Calibration,
    next_seed: &mut impl FnMut() -> u64,
    out: &mut Vec<String>,
) {
    out.push(String::new());
    out.push(format!(
        "# Change points ({}): {} histories of {HISTORY_RUNS} runs per cell; a run's value is its query TTFT check's estimate (10 % trimmed mean of log ratios) over {} prompts in {} trials. Found: a change point within 2 runs of run {}; false: change points in histories without a step.",
        crate::gate::changepoint::METHOD,
        args.runs,
        args.prompts,
        args.trials,
        STEP_AT + 1
    ));
    out.push("| noise | truth | histories with a change point | found near the step | change points per history |".to_string());
    out.push("|---|---|---|---|---|".to_string());
    for w in weathers() {
        for step in [0.0, 15.0] {
            let seed = next_seed();
            let (mut any, mut near, mut total) = (0, 0, 0);
            for h in 0..args.runs {
                let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1000) + h as u64);
                let series: Vec<f64> = (0..HISTORY_RUNS)
                    .map(|i| {
                        let slow = if step > 0.0 && i >= STEP_AT {
                            step
                        } else {
                            0.0
                        };
                        let engines = w.engines(slow, &mut rng);
                        let mut clock = Clock(0.0);
                        let per_trial = (args.prompts / args.trials).max(1);
                        let t: Vec<Vec<(f64, f64)>> = (1..=args.trials)
                            .map(|k| ttft_trial(&mut rng, &mut clock, engines, (per_trial, w), k))
                            .collect();
                        // The check's own estimate, as the history stores it.
                        stats::paired_bootstrap_change_pct(&t, 0, LEVEL, 0).0
                    })
                    .collect();
                let found = crate::gate::changepoint::e_divisive(&series, h as u64);
                any += usize::from(!found.is_empty());
                near += usize::from(found.iter().any(|f| f.at.abs_diff(STEP_AT) <= 2));
                total += found.len();
            }
            let truth = if step > 0.0 {
                format!("TTFT +{step} % from run {}", STEP_AT + 1)
            } else {
                "no change".into()
            };
            let pct = |k: usize| 100.0 * k as f64 / args.runs as f64;
            out.push(format!(
                "| {} | {truth} | {:.1} % | {} | {:.2} |",
                w.label(),
                pct(any),
                if step > 0.0 {
                    format!("{:.1} %", pct(near))
                } else {
                    "-".into()
                },
                total as f64 / args.runs as f64
            ));
        }
    }
}

fn row(out: &mut Vec<String>, workload: &str, noise: &str, truth: &str, t: &[Tally]) {
    let cells: Vec<String> = t.iter().enumerate().map(|(i, t)| t.cell(i >= 2)).collect();
    out.push(format!(
        "| {workload} | {noise} | {truth} | {} |",
        cells.join(" | ")
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeded A/A runs of three trials of 8 prompts, 4 in flight, the
    /// engines one after the other, under 10 % jitter and bursts (×1.4 for
    /// 2 s, 0.1 a second): how often the gate's interval lies wholly above
    /// `bound` %.
    fn burst_false_alarms(runs: usize, bound: f64) -> f64 {
        let weather = Weather {
            jitter: 0.10,
            stalls: false,
            drift: false,
            bursts: true,
            inflight: 4,
            together: false,
            trial_sd: 0.0,
            request_secs: 0.1,
        };
        let mut rng = StdRng::seed_from_u64(42);
        let mut alarms = 0;
        for _ in 0..runs {
            let engines = weather.engines(0.0, &mut rng);
            let mut clock = Clock(0.0);
            let trials: Vec<Vec<(f64, f64)>> = (1..=3)
                .map(|i| ttft_trial(&mut rng, &mut clock, engines, (8, weather), i))
                .collect();
            let e = change_interval_at(&trials, LEVEL).expect("three trials give an interval");
            alarms += usize::from(e.interval.low > bound);
        }
        alarms as f64 / runs as f64
    }

    /// A burst moves every prompt of one engine's trial at once; an
    /// interval that counts only the prompts' noise (the paired bootstrap
    /// within trials) called identical engines different in about a
    /// quarter of these runs. Pooling the trials by random effects keeps
    /// the false alarms at the nominal rate or below, at a bound of 0
    /// (any change at all) as at 10 %.
    /// More trials while undecided look again after each: judged at 95 %
    /// every time, five looks at a true change sitting on the bound failed
    /// the check (a false alarm: its claim holds) in 12 % of 200 runs
    /// where 2.5 % was promised; at Pocock's level the looks keep it, and
    /// a real slowdown of twice the bound is still caught most of the
    /// time.
    #[test]
    fn looks_after_each_trial_keep_the_false_alarm_rate_at_pococks_level() {
        let args = Calibration {
            runs: 200,
            trials: 3,
            max_trials: 7,
            prompts: 60,
            throughput_prompts: 20,
            questions: 0,
            bound_pct: 5.0,
            slowdown_pct: 10.0,
            seed: 0,
            noise: None,
            profile: None,
        };
        let weather = Weather {
            jitter: 0.10,
            stalls: false,
            drift: false,
            bursts: false,
            inflight: 4,
            together: false,
            trial_sd: 0.0,
            request_secs: 0.1,
        };
        let fails = |t: &Tally| t.fail as f64 / t.runs as f64;
        let at_bound = ttft_row(&args, weather, args.bound_pct, 7);
        let (each_95, pocock) = (fails(&at_bound[3]), fails(&at_bound[4]));
        assert!(each_95 > 0.08, "95 % at every look: {each_95}");
        assert!(pocock <= 0.04, "Pocock's level: {pocock}");
        let slower = ttft_row(&args, weather, 2.0 * args.bound_pct, 8);
        assert!(fails(&slower[4]) >= 0.5, "{}", fails(&slower[4]));
    }

    #[test]
    fn bursts_a_trial_shares_raise_no_more_false_alarms_than_promised() {
        let at_zero = burst_false_alarms(400, 0.0);
        assert!(at_zero <= 0.025, "{at_zero} of A/A runs above 0 %");
        assert_eq!(burst_false_alarms(400, 10.0), 0.0);
    }
}
