//! `lmcache-e2e calibrate`: prints the gates' false-alarm and detection
//! rates on the sim's noise model (`run::calibrate` measures them), and
//! measures or replays the noise of real engines.

use std::path::Path;

use crate::cli::CalibrateArgs;
use crate::error::Error;
use crate::results::RunResults;
use crate::run::calibrate::{table, Calibration, NoiseProfile};

/// The largest results.json `--measure` reads (another job's artifact).
const MAX_RESULTS_MIB: u64 = 64;

pub(crate) fn run(args: &CalibrateArgs) -> Result<(), Error> {
    let mut out = super::common::Out::new();
    if let Some(dir) = &args.measure {
        let profile = measure(dir, &args.metric)?;
        out.line(serde_json::to_string_pretty(&profile).expect("a profile serializes"));
        return Ok(());
    }
    let profile = args.profile.as_deref().map(read_profile).transpose()?;
    for line in table(&Calibration {
        runs: args.runs,
        trials: args.trials,
        max_trials: args.max_trials,
        prompts: args.prompts,
        throughput_prompts: args.throughput_prompts,
        questions: args.questions,
        bound_pct: args.bound_pct,
        slowdown_pct: args.slowdown_pct,
        seed: args.seed,
        noise: args.noise.clone(),
        profile,
    }) {
        out.line(line);
    }
    Ok(())
}

/// The profile of an A/A run's paired samples of `metric`.
fn measure(dir: &Path, metric: &str) -> Result<NoiseProfile, Error> {
    let results = RunResults::read_untrusted(dir, MAX_RESULTS_MIB)?;
    NoiseProfile::measure(&results, metric, &dir.display().to_string()).ok_or_else(|| {
        Error::Usage(format!(
            "{} has no test with paired samples of `{metric}` in two trials or more; measure an A/A run of a test in trials (e.g. long_doc_qa with trials = 5)",
            dir.display()
        ))
    })
}

fn read_profile(path: &Path) -> Result<NoiseProfile, Error> {
    let bad = |why: String| {
        Error::Usage(format!(
            "failed to read the noise profile {}: {why}",
            path.display()
        ))
    };
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let p: NoiseProfile = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let sane = |v: f64| v.is_finite() && (0.0..=2.0).contains(&v);
    if !(sane(p.jitter) && sane(p.trial_sd)) {
        return Err(bad(format!(
            "jitter {} and trial_sd {} must be log-normal spreads between 0 and 2",
            p.jitter, p.trial_sd
        )));
    }
    Ok(p)
}
