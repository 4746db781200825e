//! `lmcache-e2e ci`: runs a suite (or one shard of it) with the console and
//! results writer as its event sinks, then delivers the reports whatever
//! the outcome.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;

use crate::ci_env::CiEnv;
use crate::cli::{CiArgs, ShardFlags};
use crate::config::Loaded;
use crate::console::{CiGroups, Verbosity};
use crate::error::Error;
use crate::results::RunResults;
use crate::run::shard::{self, Shard};
use crate::run::{self, Events, ResultsWriter, ShardRun};

/// The suite's controls after its run: each says whether the verdict could
/// have been otherwise. They need a run that went to its end (a gate's
/// failure included); a control that reached the other verdict fails it.
async fn with_controls(
    controls: Vec<run::controls::Control>,
    results: &mut RunResults,
    mut outcome: Result<(), run::RunError>,
    (build_id, meta, events): (&String, &crate::results::RunMeta, &Events),
) -> Result<Result<(), run::RunError>, Error> {
    let finished = matches!(
        outcome,
        Ok(()) | Err(run::RunError::Failed(_) | run::RunError::Undecided(_))
    );
    if !finished {
        return Ok(outcome);
    }
    if let Err(e) = run::controls::run_all(controls, results, build_id, meta, events).await {
        outcome = Err(e);
    }
    if let Some(missed) = run::controls::verdict(results) {
        if outcome.is_ok() {
            outcome = Err(run::RunError::Failed(missed));
        }
    }
    events.emit(&run::Event::RunFinished(results))?;
    Ok(outcome)
}

pub(crate) async fn run(args: CiArgs) -> Result<(), Error> {
    let mut loaded = super::common::load_suite(&args.suite)?;
    if args.sequential {
        for p in loaded.params.values_mut() {
            p.params_mut().set_sequential();
        }
    }
    let selected: Vec<String> = loaded
        .suite
        .selected_tests(&args.only)?
        .into_iter()
        .map(|(n, _)| n.clone())
        .collect();
    let ci = CiEnv::from_process();
    if args.dry_run {
        let gpus = match loaded.suite.run.schedule {
            crate::config::Schedule::Auto => crate::engine::gpu::snapshot().await,
            _ => None,
        };
        return dry_run(&args, &loaded, &selected, &ci, gpus.as_deref());
    }
    // Every mistake of the suite and every program or file it lacks here,
    // at once, before an engine spends minutes starting.
    loaded.preflight(&selected)?;
    let controls = controls_of(&args, &loaded)?;
    let verbosity = match (args.quiet, args.verbose) {
        (true, _) => Verbosity::Quiet,
        (_, true) => Verbosity::Verbose,
        _ => Verbosity::Normal,
    };
    let console = super::common::console(verbosity, &ci);
    let events = Events::new(vec![
        Arc::new(ResultsWriter),
        Arc::new(console.clone()),
        Arc::new(CiGroups { ci: ci.ci }),
    ]);
    let build_id = build_id_of(&loaded, &ci);
    let results_dir = results_dir_of(&args, &loaded, &build_id);
    crate::results::claim_dir(&results_dir, args.overwrite)?;
    let shard = match which_shard(&args.shard)? {
        Some(s) => Some(shard_run(&loaded, &selected, s, &results_dir, &args.shard)?),
        None => None,
    };
    let sharded = shard.is_some();
    let request = run::Request {
        loaded: &loaded,
        selected,
        results_dir,
        build_id: build_id.clone(),
        meta: ci.meta.clone(),
        shard,
    };
    let (mut results, mut outcome) = run::run(request, &events).await?;
    if !controls.is_empty() && sharded {
        console.info("this is a shard: the suite's controls are left to an unsharded run");
    } else if !controls.is_empty() {
        let ran = (&build_id, &ci.meta, &events);
        outcome = with_controls(controls, &mut results, outcome, ran).await?;
    }
    // A history that cannot be read must not cost the run its reports.
    let history = super::common::apply_history(&args.history, &ci, &mut results, &console);
    // Reports go out whatever the outcome: a failed or interrupted run is
    // the one maintainers most need to see.
    let mut plan = super::common::delivery_plan(&args.report, &ci, true);
    if let Some(mark) = results.shard.as_ref().filter(|m| m.count > 1) {
        // One comment for the whole suite: `merge` writes it. A shard's
        // annotation keeps its own context until the merge's replaces it.
        if plan.comment.take().is_some() {
            console.info("this is a shard: the PR comment is left to `merge`");
        }
        let id = args
            .report
            .comment_id
            .clone()
            .unwrap_or_else(|| results.suite.clone());
        plan.comment_id = Some(format!("{id}-shard-{}", mark.index));
    }
    let delivered = super::common::deliver(&results, &plan, &console).await;
    // The run's own failure says most, then the history's, then the report's.
    outcome?;
    history?;
    delivered?;
    Ok(())
}

/// `--dry-run`: the plan, printed even where this machine lacks what the
/// suite needs (a maintainer reviews a GPU suite on a laptop), then what
/// is missing here (exit 2) and the controls' mistakes, if any.
fn dry_run(
    args: &CiArgs,
    loaded: &Loaded,
    selected: &[String],
    ci: &CiEnv,
    gpus: Option<&[crate::engine::gpu::GpuState]>,
) -> Result<(), Error> {
    let results_dir = results_dir_of(args, loaded, &build_id_of(loaded, ci));
    let mut out = super::common::Out::new();
    let mut lines = run::plan::lines(loaded, selected, &results_dir);
    if let Some(placed) = run::plan::placement_line(loaded, gpus) {
        lines.insert(1, placed);
    }
    let last = lines.pop();
    let skip = args.no_controls || !args.only.is_empty();
    let names = loaded.suite.controls.keys().filter(|_| !skip);
    lines.extend(run::plan::control_lines(loaded, names));
    for line in lines.into_iter().chain(last) {
        out.line(line);
    }
    loaded.preflight(selected)?;
    controls_of(args, loaded).map(|_| ())
}

/// The suite's controls, each loaded as the suite it makes (a mistake in
/// one is the suite's: exit 2 before any engine starts); none with
/// `--no-controls` or `--only`.
fn controls_of(args: &CiArgs, loaded: &Loaded) -> Result<Vec<run::controls::Control>, Error> {
    if args.no_controls || !args.only.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for name in loaded.suite.controls.keys() {
        let mut control = super::common::load_control(&args.suite, name)?;
        if args.sequential {
            for p in control.params.values_mut() {
                p.params_mut().set_sequential();
            }
        }
        let selected: Vec<String> = control
            .suite
            .selected_tests(&[])?
            .into_iter()
            .map(|(n, _)| n.clone())
            .collect();
        control.preflight(&selected)?;
        out.push(run::controls::Control {
            name: name.clone(),
            loaded: control,
        });
    }
    Ok(out)
}

/// `BUILD_ID` (or `run.build_id`), else the CI's own build, else the time.
fn build_id_of(loaded: &Loaded, ci: &CiEnv) -> String {
    loaded
        .suite
        .run
        .build_id
        .clone()
        .or_else(|| ci.build_id.clone())
        .unwrap_or_else(|| format!("local_{}", chrono::Utc::now().format("%Y%m%d_%H%M%S")))
}

fn results_dir_of(args: &CiArgs, loaded: &Loaded, build_id: &str) -> PathBuf {
    args.results_dir
        .clone()
        .or_else(|| loaded.suite.run.results_dir.clone())
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/lmcache_ci_results_{build_id}")))
}

/// `--shard`, else Buildkite's parallel job, else none.
fn which_shard(flags: &ShardFlags) -> Result<Option<Shard>, Error> {
    let env = |k: &str| std::env::var(k).ok();
    let parsed = match &flags.shard {
        Some(s) => Some(s.parse::<Shard>().map_err(|e| format!("--shard: {e}"))),
        None => Shard::from_buildkite(&env),
    };
    parsed.transpose().map_err(Error::Usage)
}

/// This job's part of the suite; `--durations-from` (the user named it:
/// whatever is wrong with it is bad input) weighs the units.
fn shard_run(
    loaded: &Loaded,
    selected: &[String],
    shard: Shard,
    results_dir: &Path,
    flags: &ShardFlags,
) -> Result<ShardRun, Error> {
    let previous = match &flags.durations_from {
        Some(dir) => {
            let previous = RunResults::read_untrusted(dir, 64)
                .map_err(|e| Error::Usage(format!("--durations-from: {e}")))?;
            Some(
                previous
                    .tests
                    .iter()
                    .filter_map(|t| Some((t.name.clone(), t.duration_secs?)))
                    .collect::<IndexMap<String, f64>>(),
            )
        }
        None => None,
    };
    shard::assign(loaded, selected, shard, results_dir, previous.as_ref()).map_err(Error::Shard)
}
