//! `lmcache-e2e calibrate`: prints the gates' false-alarm and detection
//! rates on the sim's noise model (`run::calibrate` measures them).

use crate::cli::CalibrateArgs;
use crate::error::Error;
use crate::run::calibrate::{table, Calibration};

pub(crate) fn run(args: &CalibrateArgs) -> Result<(), Error> {
    let mut out = super::common::Out::new();
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
    }) {
        out.line(line);
    }
    Ok(())
}
