//! The orchestrator: suite → engines → readiness → workloads (baseline
//! first, then LMCache) → gate → results, raced against engine deaths and
//! signals, with every engine stopped and the results written however it
//! ends. It prints nothing: it emits events.

pub(crate) mod calibrate;
pub(crate) mod caveats;
pub(crate) mod compare;
pub(crate) mod controls;
mod engagement;
mod error;
pub(crate) mod events;
mod finish;
mod gpu_memory;
mod identity;
pub(crate) mod merge;
mod model;
mod models;
mod placement;
pub(crate) mod plan;
mod policy;
mod services;
pub(crate) mod shard;
mod signals;
mod test;

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::FutureExt;

use crate::config::{Loaded, Schedule};
use crate::engine::{self, Supervisor};
use crate::results::{RunMeta, RunResults, RunStatus, TestRecord, TestStatus, SCHEMA_VERSION};
use finish::{finish, inconclusive_exit, panic_message, Broken, Ended};
use gpu_memory::{choose_gpus, gpu_after_stop};
use model::ModelRun;
use signals::Signals;

pub(crate) use error::RunError;
pub(crate) use events::{Event, Events, ResultsWriter, Sink};
pub(crate) use models::{models_of, record_name};
pub(crate) use shard::ShardRun;

/// What to run.
pub(crate) struct Request<'a> {
    pub loaded: &'a Loaded,
    /// Tests to run, by name, in order.
    pub selected: Vec<String>,
    pub results_dir: PathBuf,
    pub build_id: String,
    /// Where the job runs (repository, commit, PR), from the CI's variables.
    pub meta: RunMeta,
    /// This job's part, when the suite is split over several.
    pub shard: Option<ShardRun>,
}

/// Runs the suite. The results come back however the run ended (also
/// written to `results.json`), with the error that ended it, if any.
pub(crate) async fn run(
    req: Request<'_>,
    events: &Events,
) -> Result<(RunResults, Result<(), RunError>), RunError> {
    let loaded = req.loaded;
    let run_cfg = &loaded.suite.run;
    let results_dir = req.results_dir.clone();
    for dir in [results_dir.clone(), results_dir.join("logs")] {
        std::fs::create_dir_all(&dir).map_err(|source| RunError::ResultsDir {
            path: dir.clone(),
            source,
        })?;
    }
    let run_id = format!("{}-{}", req.build_id, std::process::id());
    let models = models_of(run_cfg);
    let mut signals = Signals::install().map_err(RunError::Signals)?;
    let mut results = new_results(&req, &run_id, &models);
    events.emit(&Event::Checkpoint(&results))?;
    events.say(&Event::RunStarted {
        suite: &run_cfg.name,
        source: &results.source,
        results_dir: &results_dir,
    });
    say_overrides(loaded, events);

    let supervisor = Supervisor::new(
        &run_id,
        Duration::from_secs_f64(run_cfg.grace_period_secs),
        &results_dir,
    );
    let ended = {
        let pipeline = AssertUnwindSafe(pipeline(
            loaded,
            &req.selected,
            &models,
            req.shard.as_ref(),
            &supervisor,
            &mut results,
            events,
        ))
        .catch_unwind();
        tokio::select! {
            r = pipeline => match r {
                Ok(r) => Ended::Done(r),
                Err(panic) => Ended::Panic(panic_message(panic)),
            },
            e = supervisor.watch_deaths() => Ended::Died(e),
            s = signals.recv() => Ended::Signal(s),
        }
    };

    if let Ended::Signal(s) = &ended {
        events.say(&Event::Signal {
            name: s.name,
            again: false,
        });
    }
    stop_everything(&supervisor, &mut signals, &mut results, run_cfg, events).await;
    let exit = inconclusive_exit(run_cfg, results.meta.schedule.as_deref());
    let outcome = finish(&mut results, ended, events, exit);
    events.emit(&Event::RunFinished(&results))?;
    Ok((results, outcome))
}

/// Stops every engine still up (a second signal kills them at once), then
/// waits for the GPU memory the ones not yet seen stopping held.
async fn stop_everything(
    supervisor: &Supervisor,
    signals: &mut Signals,
    results: &mut RunResults,
    run_cfg: &crate::config::RunConfig,
    events: &Events,
) {
    let killed = supervisor
        .stop_all(async {
            let s = signals.recv().await;
            events.say(&Event::Signal {
                name: s.name,
                again: true,
            });
        })
        .await;
    if !killed.is_empty() {
        events.say(&Event::EnginesKilled(&killed));
    }
    let still_held: Vec<String> = results
        .engines
        .iter()
        .filter(|e| {
            e.gpu_memory
                .as_ref()
                .is_some_and(|g| g.after_stop_mib.is_none())
        })
        .map(|e| e.name.clone())
        .collect();
    gpu_after_stop(
        results,
        &still_held,
        run_cfg.gpu_release_timeout_secs,
        events,
    )
    .await;
}

/// Names each environment variable that overrode the suite.
fn say_overrides(loaded: &Loaded, events: &Events) {
    let overridden = loaded.env_overridden();
    if !overridden.is_empty() {
        events.info(format!(
            "the environment overrides the suite: {} (run.env_overrides = false refuses it)",
            overridden
                .iter()
                .map(|(var, key)| format!("{var} sets {key}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
}

fn new_results(req: &Request<'_>, run_id: &str, models: &[(String, Option<String>)]) -> RunResults {
    let suite = &req.loaded.suite;
    RunResults {
        schema_version: SCHEMA_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        suite: suite.run.name.clone(),
        source: req.loaded.base.to_string(),
        build_id: req.build_id.clone(),
        run_id: run_id.to_string(),
        results_dir: req.results_dir.clone(),
        status: RunStatus::Running,
        message: None,
        signal: None,
        started_at: chrono::Utc::now(),
        finished_at: None,
        engines: Vec::new(),
        meta: RunMeta {
            models: models.iter().map(|(m, _)| m.clone()).collect(),
            suite_hash: Some(suite.hash()),
            ..req.meta.clone()
        },
        tests: models
            .iter()
            .flat_map(|(_, label)| req.selected.iter().map(move |name| (name, label)))
            .map(|(name, label)| (name, record_name(name, label.as_deref())))
            .filter(|(_, record)| req.shard.as_ref().is_none_or(|s| s.runs(record)))
            .map(|(name, record)| {
                TestRecord::new(&record, &suite.tests[name].kind, TestStatus::NotRun)
            })
            .collect(),
        family: None,
        shard: req.shard.as_ref().map(|s| s.mark.clone()),
        merged_from: Vec::new(),
        history: None,
        controls: Vec::new(),
    }
}

async fn pipeline(
    loaded: &Loaded,
    selected: &[String],
    models: &[(String, Option<String>)],
    shard: Option<&ShardRun>,
    supervisor: &Supervisor,
    results: &mut RunResults,
    events: &Events,
) -> Result<Vec<Broken>, RunError> {
    // Input files first: a bad archive must cost no engine start.
    for name in selected {
        let params = &loaded.params[name];
        crate::workload::kind_of(params)
            .prepare(params, &results.results_dir, &loaded.suite_dir())
            .map_err(|e| RunError::Workload {
                test: name.clone(),
                class: e.class(),
                message: e.to_string(),
            })?;
    }
    engine::image::build_images(
        &loaded.suite,
        &loaded.suite_dir(),
        &results.results_dir.join("logs"),
        &|line| events.info(line),
    )
    .await?;
    let chosen = choose_gpus(&loaded.suite, events).await?;
    let seen = engine::gpu::snapshot().await;
    // The GPUs chosen, else every GPU the machine has (process engines
    // pick their own with CUDA_VISIBLE_DEVICES).
    results.meta.gpus = match chosen.is_empty() {
        false => chosen.iter().map(engine::gpu::GpuState::label).collect(),
        true => seen
            .iter()
            .flatten()
            .map(engine::gpu::GpuState::label)
            .collect(),
    };
    let placement = placement::decide(&loaded.suite, seen.as_deref());
    if loaded.suite.run.schedule == Schedule::Auto {
        events.info(format!("placement: {}", placement.why));
    }
    results.meta.placement = Some(placement.why.clone());
    let mut broken = Vec::new();
    let mut started = false;
    for (model, label) in models {
        let mine: Vec<String> = selected
            .iter()
            .filter(|t| shard.is_none_or(|s| s.runs(&record_name(t, label.as_deref()))))
            .cloned()
            .collect();
        // A shard starts no engine for a model it has no work for.
        if mine.is_empty() && shard.is_some() {
            continue;
        }
        if std::mem::replace(&mut started, true) {
            events.info("stopping the engines of the previous model".into());
            supervisor.stop_all(std::future::pending()).await;
        }
        if label.is_some() {
            events.info(format!("model {model}"));
        }
        let ctx = ModelRun {
            loaded,
            suite_dir: loaded.suite_dir(),
            model,
            label: label.as_deref(),
            supervisor,
            events,
            services: std::sync::OnceLock::new(),
            overrides: shard.map(|s| &s.params),
            placement: &placement,
        };
        broken.extend(ctx.run(&mine, &chosen, results).await?);
    }
    Ok(broken)
}
