//! `lmcache-e2e calibrate`: how often each gate raises a false alarm and
//! how often it catches a real regression, measured on the sim's noise
//! model (seeded log-normal jitter per request, rare 10× stalls, a true
//! slowdown) with the gate's own statistics. Prints one table; the figures
//! tune the presets' defaults.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::cli::CalibrateArgs;
use crate::error::Error;
use crate::gate::evidence::change_interval;

/// One cell: the noise, the truth, and how the gate is run.
struct Cell {
    jitter: f64,
    stalls: bool,
    slowdown_pct: f64,
}

/// What the sim would measure: per trial, per prompt, (baseline, LMCache)
/// TTFTs. Prompts differ in length (0.5–1.5 × a base); each request gets
/// its own log-normal factor; a stall (1 %) makes one request 10× slower.
fn measure(rng: &mut StdRng, cell: &Cell, trials: usize, prompts: usize) -> Vec<Vec<(f64, f64)>> {
    let noise = |rng: &mut StdRng| {
        let (u1, u2): (f64, f64) = (rng.gen(), rng.gen());
        let z = (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        let stall = if cell.stalls && rng.gen::<f64>() < 0.01 {
            10.0
        } else {
            1.0
        };
        (cell.jitter * z).exp() * stall
    };
    (0..trials)
        .map(|_| {
            (0..prompts)
                .map(|_| {
                    let base = 0.5 + rng.gen::<f64>();
                    let b = base * noise(rng);
                    let l = base * noise(rng) * (1.0 + cell.slowdown_pct / 100.0);
                    (b, l)
                })
                .collect()
        })
        .collect()
}

fn change_pct(pairs: &[Vec<(f64, f64)>]) -> f64 {
    let (b, l) = pairs
        .iter()
        .flatten()
        .fold((0.0, 0.0), |(b, l), (x, y)| (b + x, l + y));
    (l - b) / b * 100.0
}

/// Alarm rates of three gates on `runs` seeded runs of one cell: today's
/// point estimate (one run), today's with retries until a pass (as
/// LMCache's CI retries, up to 3), and the interval gate on `trials`.
fn rates(cell: &Cell, args: &CalibrateArgs, seed: u64) -> [f64; 3] {
    let mut rng = StdRng::seed_from_u64(seed);
    let bound = args.bound_pct;
    let (mut point, mut retried, mut interval) = (0, 0, 0);
    for run in 0..args.runs {
        let once = measure(&mut rng, cell, 1, args.prompts);
        point += usize::from(change_pct(&once) > bound);
        let all_fail = (0..3).all(|i| {
            i == 0 && change_pct(&once) > bound
                || i > 0 && change_pct(&measure(&mut rng, cell, 1, args.prompts)) > bound
        });
        retried += usize::from(all_fail);
        let trials = measure(&mut rng, cell, args.trials, args.prompts);
        let name = format!("calibrate-{run}");
        let alarm = change_interval(&name, &trials).is_some_and(|(i, _)| i.low > bound);
        interval += usize::from(alarm);
    }
    let r = args.runs as f64;
    [point as f64 / r, retried as f64 / r, interval as f64 / r]
}

pub(crate) fn run(args: &CalibrateArgs) -> Result<(), Error> {
    println!(
        "# check: LMCache query TTFT at most {:+} % against baseline; {} runs per cell, {} prompts per trial",
        args.bound_pct, args.runs, args.prompts
    );
    println!(
        "# requests per verdict: point {}, retried up to {}, interval gate {} ({} trials)",
        2 * args.prompts,
        6 * args.prompts,
        2 * args.prompts * args.trials,
        args.trials
    );
    println!("| jitter | stalls | truth | point estimate | retried until pass | interval gate |");
    println!("|---|---|---|---|---|---|");
    let mut seed = args.seed;
    for jitter in [0.05, 0.10, 0.20] {
        for stalls in [false, true] {
            for slowdown_pct in [0.0, args.slowdown_pct] {
                let cell = Cell {
                    jitter,
                    stalls,
                    slowdown_pct,
                };
                seed = seed.wrapping_add(1);
                let [p, r, i] = rates(&cell, args, seed);
                let truth = if slowdown_pct == 0.0 {
                    "no change: false alarms".to_string()
                } else {
                    format!("TTFT +{slowdown_pct} %: detected")
                };
                println!(
                    "| {:.0} % | {} | {truth} | {:.1} % | {:.1} % | {:.1} % |",
                    jitter * 100.0,
                    if stalls { "1 % at 10×" } else { "none" },
                    p * 100.0,
                    r * 100.0,
                    i * 100.0
                );
            }
        }
    }
    Ok(())
}
