//! The orchestrator: suite → engines → readiness → workloads (baseline
//! first, then LMCache) → gate → results, raced against engine deaths and
//! signals, with every engine stopped and the results written however it
//! ends. It prints nothing: it emits events.

pub(crate) mod calibrate;
pub(crate) mod caveats;
pub(crate) mod compare;
pub(crate) mod controls;
mod engagement;
pub(crate) mod events;
mod identity;
pub(crate) mod merge;
mod models;
mod placement;
pub(crate) mod plan;
mod services;
pub(crate) mod shard;
mod signals;
mod test;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{join_all, try_join_all};
use futures_util::FutureExt;
use indexmap::IndexMap;

use crate::config::{self, Loaded, Role, Schedule, TestParams};
use crate::engine::gpu::GpuError;
use crate::engine::image::ImageError;
use crate::engine::{
    self, tail_lines, EngineError, EngineKind, EngineSpec, Supervisor, TAIL_LINES,
};
use crate::gate;
use crate::results::{
    AttemptRecord, EngineRecord, ResultsError, RunMeta, RunResults, RunStatus, TestRecord,
    TestStatus, SCHEMA_VERSION,
};
use crate::workload::{Ctx, ErrorClass, Harness, Progress, Target};
use identity::Identity;
use signals::{Received, Signals};

pub(crate) use models::{models_of, record_name};
pub(crate) use shard::ShardRun;

pub(crate) use events::{Event, Events, ResultsWriter, Sink};
use services::{ServiceControl, NO_SERVICES};
use test::TestRun;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RunError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error("failed to create the results directory {path}: {source}")]
    ResultsDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to install signal handlers: {0}")]
    Signals(std::io::Error),
    /// A test could not run to the end; its class picks the exit code.
    #[error("test `{test}` failed to run: {message}")]
    Workload {
        test: String,
        class: ErrorClass,
        message: String,
    },
    /// The run finished and a hard check failed; already reported.
    #[error("the run failed: {0}")]
    Failed(String),
    /// The run finished, nothing failed, and a check could not tell
    /// (`run.inconclusive_exit = 1`); already reported.
    #[error("{0}")]
    Undecided(String),
    /// A signal stopped the run; already reported.
    #[error("interrupted by {name}")]
    Interrupted { name: &'static str, number: i32 },
    #[error("internal error: {0}")]
    Internal(String),
}

impl RunError {
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            RunError::Engine(e) => e.class(),
            RunError::Gpu(e) => e.class(),
            RunError::Image(e) => e.class(),
            RunError::Results(_) | RunError::ResultsDir { .. } => ErrorClass::Setup,
            RunError::Workload { class, .. } => *class,
            RunError::Failed(_) | RunError::Undecided(_) => ErrorClass::Failed,
            RunError::Interrupted { number, .. } => ErrorClass::Interrupted(*number),
            RunError::Signals(_) | RunError::Internal(_) => ErrorClass::Internal,
        }
    }
}

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

/// What a test needs after the gate's look at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Conclude,
    Retry,
    MoreTrials(u32),
}

/// A test that could not run to the end, and what kind of failure it was.
struct Broken {
    test: String,
    class: ErrorClass,
    message: String,
}

enum Ended {
    Done(Result<Vec<Broken>, RunError>),
    Died(EngineError),
    Signal(Received),
    Panic(String),
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
        &mut results,
        &still_held,
        run_cfg.gpu_release_timeout_secs,
        events,
    )
    .await;
    let exit = inconclusive_exit(run_cfg, results.meta.schedule.as_deref());
    let outcome = finish(&mut results, ended, events, exit);
    events.emit(&Event::RunFinished(&results))?;
    Ok((results, outcome))
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

/// The exit code of a run that could not tell. Engines one after the
/// other cannot add trials after the fact: a check that asked for them
/// never had its budget, so it only warns.
fn inconclusive_exit(run: &config::RunConfig, ran: Option<&str>) -> i32 {
    match (run.schedule, ran) {
        (Schedule::Sequential, _) | (Schedule::Auto, Some("sequential")) => 0,
        _ => run.inconclusive_exit,
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

/// Records how the run ended and turns the ending into the run's error (or
/// none). Every engine's last lines are kept for the report.
fn finish(
    results: &mut RunResults,
    ended: Ended,
    events: &Events,
    inconclusive_exit: i32,
) -> Result<(), RunError> {
    let outcome: Result<(), RunError> = match ended {
        Ended::Done(Ok(broken)) => verdict(results, broken, inconclusive_exit),
        Ended::Done(Err(e)) => {
            results.status = RunStatus::Error;
            results.message = Some(first_line(&e.to_string()));
            mark_running(results, TestStatus::Error, "the run stopped with an error");
            Err(e)
        }
        Ended::Died(e) => {
            let message = first_line(&e.to_string());
            events.say(&Event::EngineDied { message: &message });
            results.status = RunStatus::Error;
            mark_running(results, TestStatus::Error, &message);
            results.message = Some(message);
            Err(RunError::Engine(e))
        }
        Ended::Signal(s) => {
            results.status = RunStatus::Interrupted;
            results.signal = Some(s.name.to_string());
            results.message = Some(format!(
                "interrupted by {}; engines stopped, partial results kept",
                s.name
            ));
            mark_running(
                results,
                TestStatus::Interrupted,
                &format!("interrupted by {}", s.name),
            );
            Err(RunError::Interrupted {
                name: s.name,
                number: s.number,
            })
        }
        Ended::Panic(msg) => {
            results.status = RunStatus::Error;
            results.message = Some(format!("internal error: {msg}"));
            mark_running(results, TestStatus::Error, "internal error");
            Err(RunError::Internal(msg))
        }
    };
    for e in &mut results.engines {
        if let Some(log) = &e.log {
            e.log_findings = engine::logscan::scan(&results.results_dir.join(log));
            e.log_tail = tail_lines(&results.results_dir.join(log), TAIL_LINES);
            let title = format!("last {} lines of {} ({log})", e.log_tail.len(), e.name);
            events.say(&Event::LogTail {
                title: &title,
                lines: &e.log_tail,
                passed: outcome.is_ok(),
            });
        }
    }
    results.finished_at = Some(chrono::Utc::now());
    outcome
}

fn mark_running(results: &mut RunResults, status: TestStatus, why: &str) {
    for t in results
        .tests
        .iter_mut()
        .filter(|t| t.status == TestStatus::Running)
    {
        t.status = status;
        t.error = Some(why.to_string());
    }
}

/// A run that went to its end: passed, failed by a gate, or stopped by a
/// test that could not run (whose class says what to fix).
fn verdict(
    results: &mut RunResults,
    mut broken: Vec<Broken>,
    inconclusive_exit: i32,
) -> Result<(), RunError> {
    let failed: Vec<&str> = results
        .tests
        .iter()
        .filter(|t| matches!(t.status, TestStatus::Failed | TestStatus::Error))
        .map(|t| t.name.as_str())
        .collect();
    if failed.is_empty() {
        let undecided = undecided_checks(results);
        if undecided.is_empty() {
            results.status = RunStatus::Passed;
            return Ok(());
        }
        let message = format!("could not tell: {}", undecided.join("; "));
        results.status = RunStatus::Inconclusive;
        results.message = Some(message.clone());
        // A check that asked for more trials was meant to decide: the
        // suite's policy sets the exit code. One that only warns keeps 0.
        let meant_to_decide = results.tests.iter().flat_map(|t| &t.checks).any(|c| {
            c.verdict == crate::results::Verdict::Inconclusive
                && c.on_inconclusive.wants_more_trials()
        });
        return match (meant_to_decide, inconclusive_exit) {
            (true, 1) => Err(RunError::Undecided(message)),
            _ => Ok(()),
        };
    }
    let message = format!("failed tests: {}", failed.join(", "));
    results.status = RunStatus::Failed;
    // A bad input file is the first thing to fix, then the machine, then
    // the engine; a test that only failed to measure is a failed run.
    broken.sort_by_key(|b| b.class);
    match broken.into_iter().find(|b| b.class != ErrorClass::Failed) {
        Some(b) => Err(RunError::Workload {
            test: b.test,
            class: b.class,
            message: b.message,
        }),
        None => Err(RunError::Failed(message)),
    }
}

/// Each hard check that ended inconclusive, with its interval and bound:
/// `test.check: +3.1 … +17.2 % straddles <= 10 %`.
fn undecided_checks(results: &RunResults) -> Vec<String> {
    results
        .tests
        .iter()
        .filter(|t| t.status == TestStatus::Inconclusive)
        .flat_map(|t| t.checks.iter().map(move |c| (t, c)))
        .filter(|(_, c)| c.verdict == crate::results::Verdict::Inconclusive)
        .map(|(t, c)| {
            // A percent to a tenth; any other figure to three places.
            let (unit, places) = if c.unit == "%" { (" %", 1) } else { ("", 3) };
            match &c.interval {
                Some(i) => format!(
                    "{}.{} ({:+.places$} … {:+.places$}{unit} straddles {} {}{unit})",
                    t.name, c.name, i.low, i.high, c.op, c.threshold
                ),
                None => format!("{}.{}", t.name, c.name),
            }
        })
        .collect()
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

fn panic_message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_string())
}

fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

/// Memory in use on the GPUs may differ from this much and still count as
/// given back (the driver's and other tenants' small allocations).
const GPU_SLACK_MIB: f64 = 512.0;

/// After `names` stopped: waits up to `timeout_secs` for the GPU memory
/// they held to be free, records what was seen on each, and says it. The
/// level to come back to is the lowest any of them saw before it started.
async fn gpu_after_stop(
    results: &mut RunResults,
    names: &[String],
    timeout_secs: f64,
    events: &Events,
) {
    let before = results
        .engines
        .iter()
        .filter(|e| names.contains(&e.name))
        .filter_map(|e| e.gpu_memory.as_ref()?.before_start_mib)
        .reduce(f64::min);
    let Some(before) = before else {
        return;
    };
    let Some(settled) = engine::gpu::settle(
        before,
        GPU_SLACK_MIB,
        Duration::from_secs_f64(timeout_secs),
        Duration::from_millis(500),
        engine::gpu::memory_used_mib,
    )
    .await
    else {
        return;
    };
    for e in results
        .engines
        .iter_mut()
        .filter(|e| names.contains(&e.name))
    {
        let g = e.gpu_memory.get_or_insert_with(Default::default);
        g.after_stop_mib = Some(settled.used_mib);
        g.after_stop_secs = Some(settled.waited.as_secs_f64());
        g.released = Some(settled.back);
    }
    events.say(&Event::GpuMemoryAfterStop {
        engines: names,
        used_mib: settled.used_mib,
        before_mib: before,
        secs: settled.waited.as_secs_f64(),
        released: settled.back,
    });
}

/// Waits for the GPUs the suite's `auto:N` containers need, as the
/// multiprocessing suite polls `nvidia-smi`.
async fn choose_gpus(
    suite: &config::Suite,
    events: &Events,
) -> Result<Vec<engine::gpu::GpuState>, RunError> {
    let count = engine::auto_gpus_needed(suite);
    if count == 0 {
        return Ok(Vec::new());
    }
    let g = &suite.run.gpus;
    let req = engine::gpu::GpuRequest {
        count,
        min_free_mib: g.min_free_mib,
        max_util_pct: g.max_util_pct,
        timeout: Duration::from_secs_f64(g.timeout_secs.max(0.0)),
        poll: Duration::from_secs_f64(g.poll_secs.max(0.01)),
    };
    events.info(format!(
        "waiting for {count} GPU(s) with {} MiB free and at most {} % busy",
        g.min_free_mib, g.max_util_pct
    ));
    let chosen = engine::gpu::choose_gpus(&req).await?;
    events.info(format!(
        "chose GPU(s) {:?}",
        chosen.iter().map(|g| g.index).collect::<Vec<_>>()
    ));
    Ok(chosen)
}

/// Every engine still answers: one a test found dead ends the run as an
/// engine failure, wherever it runs.
fn answering(targets: &[Target]) -> Result<(), RunError> {
    match targets.iter().find_map(|t| Some((t, t.live.dead()?))) {
        Some((t, why)) => Err(RunError::Engine(EngineError::Unresponsive {
            engine: t.name.clone(),
            why,
        })),
        None => Ok(()),
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

/// How often a test looks at its evidence: after its first trials and
/// each one added, where a check may add trials and the engines stay up
/// for them; else once.
fn looks_of(cfg: &config::TestConfig, can_add: bool) -> gate::evidence::Looks {
    let wants = cfg
        .checks
        .values()
        .any(|c| c.enabled && c.on_inconclusive.wants_more_trials());
    match can_add && wants {
        true => gate::evidence::Looks {
            first: cfg.trials() as usize,
            last: cfg.max_trials() as usize,
        },
        false => gate::evidence::Looks::ONE,
    }
}

/// What the report says of a test that looked after each trial.
fn trials_used(used: u32, most: u32) -> String {
    match used < most {
        true => format!("trials: {used} of at most {most}, stopped when decided (a look after each trial at Pocock's group-sequential level, so the looks together keep the 5 % false-alarm rate)"),
        false => format!("trials: all {most} allowed (a look after each trial at Pocock's group-sequential level)"),
    }
}

/// One model's pass over the suite.
struct ModelRun<'a> {
    loaded: &'a Loaded,
    suite_dir: PathBuf,
    model: &'a str,
    label: Option<&'a str>,
    supervisor: &'a Supervisor,
    events: &'a Events,
    /// The model's services, once resolved.
    services: std::sync::OnceLock<ServiceControl<'a>>,
    /// A shard's own parameters for some of its units, by record name.
    overrides: Option<&'a IndexMap<String, TestParams>>,
    /// Where the engines run.
    placement: &'a placement::Placement,
}

impl ModelRun<'_> {
    /// A test's parameters: the shard's for its part, else the suite's.
    fn params(&self, test: &str) -> &TestParams {
        self.overrides
            .and_then(|o| o.get(&record_name(test, self.label)))
            .unwrap_or(&self.loaded.params[test])
    }

    async fn run(
        &self,
        selected: &[String],
        chosen_gpus: &[engine::gpu::GpuState],
        results: &mut RunResults,
    ) -> Result<Vec<Broken>, RunError> {
        let suite = &self.loaded.suite;
        let mut specs: Vec<EngineSpec> = engine::resolve(
            suite,
            &results.results_dir.join("logs"),
            self.model,
            self.label,
            &results.run_id,
            chosen_gpus,
        )?;
        self.place(&mut specs);
        self.give_cache(&mut specs);
        // Services (e.g. the LMCache server) first, and up for every phase.
        let services: Vec<&EngineSpec> = specs.iter().filter(|s| s.role == Role::Service).collect();
        let _ = self.services.set(ServiceControl::new(
            self.supervisor,
            services.iter().map(|s| (*s).clone()).collect(),
        ));
        if !services.is_empty() {
            self.start_engines(&services, results).await?;
        }
        // Baseline first, so warm-up effects never favour LMCache.
        let mut order: Vec<&EngineSpec> =
            specs.iter().filter(|s| s.role != Role::Service).collect();
        order.sort_by_key(|s| s.role);
        let (phases, up) = self.phases(order, results).await?;
        let targets: Vec<Target> = specs
            .iter()
            .filter(|s| s.role != Role::Service)
            .map(|s| Target {
                name: s.name.clone(),
                role: s.role,
                url: s.url.clone(),
                live: Arc::default(),
            })
            .collect();
        let mut runs: Vec<(TestRun, Duration, &String)> = selected
            .iter()
            .map(|name| {
                let record = record_name(name, self.label);
                let run = TestRun::new(&record, self.params(name), self.label, 1);
                (run, Duration::ZERO, name)
            })
            .collect();
        let last = phases.len().saturating_sub(1);
        for (i, phase) in phases.iter().enumerate() {
            let fresh: Vec<&EngineSpec> = phase
                .iter()
                .filter(|s| !up.contains(&s.name))
                .copied()
                .collect();
            if !fresh.is_empty() {
                self.start_engines(&fresh, results).await?;
            }
            for (run, spent, test) in runs.iter_mut() {
                let trials = self.loaded.suite.tests[test.as_str()].trials();
                *spent += self
                    .run_trials(run, phase, 1, trials, &targets, results)
                    .await?;
                self.same_servers(phase, results).await?;
            }
            if i < last {
                self.stop_phase(phase, results).await;
            }
        }
        // Retrying reruns the test on every engine, so they must all still be up.
        let retry_phase = (phases.len() == 1).then(|| &phases[0]);
        let mut broken = Vec::new();
        for (run, spent, test) in runs.iter_mut() {
            self.conclude(run, spent, test, retry_phase, &targets, results)
                .await?;
        }
        // Every test judged: the hard checks share one false-alarm budget
        // before anyone is told a verdict.
        self.share_budget(results);
        caveats::apply(suite, &mut results.tests);
        for (run, _, _) in runs.iter() {
            self.judged(run, results)?;
            if let Some(e) = run.error.as_ref().filter(|e| !e.skipped()) {
                broken.push(Broken {
                    test: run.name().to_string(),
                    class: e.class(),
                    message: e.to_string(),
                });
            }
        }
        Ok(broken)
    }

    /// Holm over the run's hard checks, and which it softened.
    fn share_budget(&self, results: &mut RunResults) {
        results.family = gate::share_alpha(&mut results.tests, self.loaded.suite.run.holm);
        if let Some(f) = results.family.as_ref().filter(|f| !f.softened.is_empty()) {
            self.events.info(format!(
                "Holm over {} hard checks: {} no longer beyond its threshold ({})",
                f.checks,
                f.softened.len(),
                f.softened.join(", ")
            ));
        }
    }

    /// Gives each engine the GPU its placement chose.
    fn place(&self, specs: &mut [EngineSpec]) {
        for spec in specs {
            let base = spec
                .name
                .split('@')
                .next()
                .unwrap_or(&spec.name)
                .to_string();
            if let Some(gpu) = placement::gpu_of(&self.loaded.suite, &self.placement.layout, &base)
            {
                spec.give_env("CUDA_VISIBLE_DEVICES", &gpu.to_string());
            }
        }
    }

    /// Points each started engine's compile caches into
    /// `run.engine_cache`, where the suite and the job leave them unset.
    fn give_cache(&self, specs: &mut [EngineSpec]) {
        let Some(dir) = &self.loaded.suite.run.engine_cache else {
            return;
        };
        for (var, sub) in engine::startlog::CACHE_ENV {
            if std::env::var_os(var).is_some() {
                continue;
            }
            let path = std::path::absolute(dir.join(sub)).unwrap_or_else(|_| dir.join(sub));
            if let Err(e) = std::fs::create_dir_all(&path) {
                self.events.info(format!(
                    "warning: failed to create the engine cache {}: {e}; engines start cold",
                    path.display()
                ));
                return;
            }
            for spec in specs.iter_mut().filter(|s| s.role != Role::Service) {
                spec.give_env(var, &path.display().to_string());
            }
        }
    }

    /// The phases the engines run in (each phase's engines up together),
    /// and the engines already started on the way: on a shared GPU the
    /// first engine starts alone, and its measured memory decides whether
    /// the others start beside it.
    async fn phases<'s>(
        &self,
        order: Vec<&'s EngineSpec>,
        results: &mut RunResults,
    ) -> Result<(Vec<Vec<&'s EngineSpec>>, Vec<String>), RunError> {
        let one_by_one = |order: Vec<&'s EngineSpec>| order.into_iter().map(|s| vec![s]).collect();
        let (phases, up) = match &self.placement.layout {
            placement::Layout::AsWritten(Schedule::Sequential) => (one_by_one(order), Vec::new()),
            placement::Layout::AsWritten(_) | placement::Layout::PerGpu(_) => {
                (vec![order], Vec::new())
            }
            placement::Layout::Shared { gpu } => {
                let Some(first) = order.first().copied().filter(|_| order.len() > 1) else {
                    return Ok((vec![order], Vec::new()));
                };
                self.start_engines(&[first], results).await?;
                let beside = self.fits_beside(first, *gpu, results).await;
                let phases = if beside {
                    vec![order]
                } else {
                    one_by_one(order)
                };
                (phases, vec![first.name.clone()])
            }
        };
        results.meta.schedule = Some(
            match phases.len() {
                1 => "concurrent",
                _ => "sequential",
            }
            .into(),
        );
        Ok((phases, up))
    }

    /// Whether the engines after `first` fit beside it on `gpu`: the memory
    /// it took from start to ready against what is free now. Says which.
    async fn fits_beside(&self, first: &EngineSpec, gpu: u32, results: &RunResults) -> bool {
        let took = results
            .engines
            .iter()
            .find(|e| e.name == first.name)
            .and_then(|e| e.gpu_memory.as_ref())
            .and_then(|g| Some(g.at_ready_mib? - g.before_start_mib?));
        let free = engine::gpu::snapshot()
            .await
            .and_then(|g| g.into_iter().find(|g| g.index == gpu))
            .map(|g| g.memory_free_mib as f64);
        let beside = took.zip(free).is_some_and(|(t, f)| placement::fits(t, f));
        let seen = match took.zip(free) {
            Some((t, f)) => format!("took {t:.0} MiB of GPU {gpu} and {f:.0} MiB are free"),
            None => format!("left GPU {gpu}'s memory unread (`nvidia-smi` did not answer)"),
        };
        let then = match beside {
            true => "the other engines start beside it",
            false => "the other engines start after it stops",
        };
        self.events.info(format!("`{}` {seen}: {then}", first.name));
        beside
    }

    /// Runs paired trials `first..=last` of one test on a phase's engines;
    /// which engine goes first alternates (baseline, LMCache, LMCache,
    /// baseline, ...) so drift over time cancels instead of favouring one
    /// side.
    async fn run_trials(
        &self,
        run: &mut TestRun,
        phase: &[&EngineSpec],
        first: u32,
        trials: u32,
        targets: &[Target],
        results: &mut RunResults,
    ) -> Result<Duration, RunError> {
        let mut spent = Duration::ZERO;
        if let Some(note) = self.pairing_note(run, phase, trials) {
            if !run.output.notes.contains(&note) {
                run.output.notes.push(note);
            }
        }
        for trial in first..=trials {
            let mut order: Vec<&EngineSpec> = phase.to_vec();
            if trial % 2 == 0 {
                order.reverse();
            }
            if trials > 1 {
                self.events
                    .info(format!("[{}] trial {trial} of {trials}", run.name()));
            }
            spent += self
                .run_phase(run, &order, (trial, trials), targets, results)
                .await?;
            run.end_trial(trial, &order.iter().map(|s| s.role).collect::<Vec<_>>());
            self.restore_services(results).await?;
        }
        Ok(spent)
    }

    #[allow(clippy::too_many_arguments)]
    fn ctx<'c>(
        &'c self,
        test: &'c str,
        progress: &'c Arc<Progress>,
        out_dir: &'c Path,
        targets: &'c [Target],
        say: &'c (dyn Fn(String) + Send + Sync),
        (trial, trials): (u32, u32),
    ) -> Ctx<'c> {
        Ctx {
            trial,
            trials,
            test,
            model: self.model,
            timeout: Duration::from_secs_f64(self.loaded.suite.run.request_timeout_secs),
            suite_dir: &self.suite_dir,
            out_dir,
            engines: targets,
            progress,
            say,
            harness: self
                .services
                .get()
                .map_or(&NO_SERVICES as &dyn Harness, |c| c as &dyn Harness),
        }
    }

    /// Runs one test against every engine of a phase, recording after each.
    async fn run_phase(
        &self,
        run: &mut TestRun,
        phase: &[&EngineSpec],
        trial: (u32, u32),
        targets: &[Target],
        results: &mut RunResults,
    ) -> Result<Duration, RunError> {
        let roles: Vec<Role> = phase.iter().map(|s| s.role).collect();
        let out_dir = run.out_dir(results);
        let name = run.name().to_string();
        let progress = run.progress.clone();
        let say = self.say_for(&name);
        let ctx = self.ctx(&name, &progress, &out_dir, targets, &say, trial);
        let mut spent = Duration::ZERO;
        for step in self.steps(run, phase) {
            if run.error.is_some() {
                break;
            }
            if let Some(t) = results.test_mut(&name) {
                t.status = TestStatus::Running;
                t.started_at.get_or_insert_with(chrono::Utc::now);
            }
            self.events.emit(&Event::Checkpoint(results))?;
            for spec in &step {
                self.events.say(&Event::TestStarted {
                    test: &name,
                    role: spec.role,
                    engine: &spec.name,
                    progress: &progress,
                });
            }
            let before = join_all(step.iter().map(|s| engagement::read(&s.url))).await;
            let sent = progress.requests_ever();
            let started = Instant::now();
            match step.as_slice() {
                [one] => run.run_role(&ctx, one.role, &roles).await,
                many => {
                    let together: Vec<Role> = many.iter().map(|s| s.role).collect();
                    run.run_together(&ctx, &together).await;
                }
            }
            spent += started.elapsed();
            let asked = progress.requests_ever() > sent;
            for (spec, before) in step.iter().zip(before) {
                self.keep_engagement(run, spec, before, asked, targets, results)
                    .await;
                self.events.say(&Event::TestStepDone {
                    test: &name,
                    role: spec.role,
                });
            }
            run.record(results);
            self.events.emit(&Event::Checkpoint(results))?;
            answering(targets)?;
        }
        Ok(spent)
    }

    /// How the test's trials pair the engines, and why, for the report:
    /// said of tests run in paired trials on both engines.
    fn pairing_note(&self, run: &TestRun, phase: &[&EngineSpec], trials: u32) -> Option<String> {
        if !run.kind().pairs_trials() || trials < 2 {
            return None;
        }
        // A phase of one engine is one step too: asked first, or the
        // sequential schedule would read as "together" (as on SGLang's H100 run).
        if phase.len() < 2 {
            return Some("pairing: the engines ran one after the other (run.schedule = \"sequential\"), trial by trial; noise a trial shares widens the interval (random effects over trials)".into());
        }
        if self.steps(run, phase).len() == 1 {
            return Some("pairing: both engines served each trial at once (run.pairing = \"together\"), so what slows the host slows both and cancels in each prompt's ratio".into());
        }
        if self.shares_a_gpu() && self.loaded.suite.run.pairing == config::Pairing::Together {
            return Some("pairing: baseline and LMCache one after the other in each trial, their order alternating, although run.pairing = \"together\": they share one GPU, where serving both at once would slow each by the other's work".into());
        }
        Some("pairing: baseline and LMCache one after the other in each trial, their order alternating; noise a trial shares widens the interval (random effects over trials); run.pairing = \"together\" serves both at once".into())
    }

    /// Whether the placement put the engines on one GPU: each one's work
    /// would then slow the other's.
    fn shares_a_gpu(&self) -> bool {
        matches!(self.placement.layout, placement::Layout::Shared { .. })
    }

    /// The steps of one trial: both engines at once where the suite pairs
    /// them together and the kind can, else one engine a step.
    fn steps<'s>(&self, run: &TestRun, phase: &[&'s EngineSpec]) -> Vec<Vec<&'s EngineSpec>> {
        let together = self.loaded.suite.run.pairing == config::Pairing::Together
            && run.kind().serves_together()
            && phase.len() > 1
            && !self.shares_a_gpu();
        if together {
            vec![phase.to_vec()]
        } else {
            phase.iter().map(|s| vec![*s]).collect()
        }
    }

    /// Outside the clock: the counters say whether a cache was used, for
    /// an engine the step sent requests to (and that still answers); the
    /// first reading of the test and its latest are kept as the engine
    /// served them, for anyone to check.
    async fn keep_engagement(
        &self,
        run: &mut TestRun,
        spec: &EngineSpec,
        before: Option<engagement::Reading>,
        asked: bool,
        targets: &[Target],
        results: &RunResults,
    ) {
        let dead = targets
            .iter()
            .any(|t| t.name == spec.name && t.live.dead().is_some());
        let after = if asked && !dead {
            engagement::read(&spec.url).await
        } else {
            None
        };
        let (Some(b), Some(a)) = (before, after) else {
            return;
        };
        let dir = results
            .results_dir
            .join("metrics")
            .join(run.name().replace(['@', '/'], "-"));
        let role = spec.role.to_string();
        if !dir.join(format!("{role}-before.prom")).exists() {
            engagement::keep(&dir, &role, "before", &b);
        }
        engagement::keep(&dir, &role, "after", &a);
        run.output
            .metrics
            .entry(spec.role)
            .or_default()
            .extend(engagement::growth(&b.counters, &a.counters));
    }

    /// Lines a workload says, as events of its test.
    fn say_for(&self, test: &str) -> impl Fn(String) + Send + Sync + 'static {
        let (events, test) = (self.events.clone(), test.to_string());
        move |text: String| {
            events.say(&Event::TestSaid {
                test: &test,
                text: &text,
            })
        }
    }

    /// Finishes a test and gates it; while only retryable checks fail it
    /// retries, and while a check asking for more trials is inconclusive
    /// it adds paired trials. Tests run in trials (long document QA,
    /// throughput) pool the evidence of every trial and attempt; others
    /// rerun from scratch. Every attempt is kept.
    async fn conclude(
        &self,
        run: &mut TestRun,
        spent: &mut Duration,
        test: &str,
        retry_phase: Option<&Vec<&EngineSpec>>,
        targets: &[Target],
        results: &mut RunResults,
    ) -> Result<(), RunError> {
        let cfg = &self.loaded.suite.tests[test];
        let kind = self.params(test).kind();
        let pooled = kind.pairs_trials();
        let max = cfg.attempts(kind.default_attempts());
        let looks = looks_of(cfg, pooled && retry_phase.is_some());
        let mut history: Vec<AttemptRecord> = Vec::new();
        let mut looking = false;
        loop {
            let name = run.name().to_string();
            let progress = run.progress.clone();
            let out_dir = run.out_dir(results);
            let say = self.say_for(&name);
            run.finish(&self.ctx(&name, &progress, &out_dir, targets, &say, (1, 1)));
            run.record(results);
            let t = results
                .test_mut(&name)
                .expect("selected tests are recorded");
            t.duration_secs = Some(spent.as_secs_f64());
            if let Some(e) = &run.error {
                t.status = if e.skipped() {
                    TestStatus::NotRun
                } else {
                    TestStatus::Error
                };
                break;
            }
            gate::evidence::enrich(&mut t.metrics);
            let gated =
                gate::with_failures_gated(&cfg.checks, &t.metrics, cfg.allow_failed_requests);
            let checks = gate::evaluate_looking(&gated, &t.metrics, &t.paired, looks);
            // More trials refine the same attempt: its record is replaced.
            if std::mem::take(&mut looking) {
                history.pop();
            }
            history.push(AttemptRecord {
                attempt: history.len() as u32 + 1,
                status: gate::test_status(&checks),
                metrics: t.metrics.clone(),
                checks,
            });
            let next = self.next_step(cfg, run, &history, pooled, max);
            let attempt = history.len() as u32;
            self.events.say(&Event::AttemptFinished {
                test: &name,
                attempt,
                max,
                retrying: matches!(next, Next::Retry) && retry_phase.is_some(),
            });
            let Some(phase) = retry_phase else {
                let note = (next != Next::Conclude).then(|| {
                    "not retried and no trials added: that needs the engines up together (run.schedule)".to_string()
                });
                self.conclude_history(&name, std::mem::take(&mut history), max, note, results);
                break;
            };
            let from = run.trials_run() + 1;
            match next {
                Next::Conclude => {
                    let note = looks
                        .sequential()
                        .then(|| trials_used(run.trials_run(), cfg.max_trials()));
                    self.conclude_history(&name, std::mem::take(&mut history), max, note, results);
                    break;
                }
                Next::MoreTrials(k) => {
                    looking = true;
                    self.events.info(format!(
                        "[{name}] inconclusive after {} trials: adding {k} (at most {})",
                        from - 1,
                        cfg.max_trials()
                    ));
                }
                Next::Retry if pooled => {}
                Next::Retry => {
                    let attempt = history.len() as u32 + 1;
                    *run = TestRun::new(&name, self.params(test), self.label, attempt);
                }
            }
            self.events.emit(&Event::Checkpoint(results))?;
            let count = match next {
                Next::MoreTrials(k) => k,
                _ => cfg.trials(),
            };
            let first = if pooled { from } else { 1 };
            *spent += self
                .run_trials(run, phase, first, first + count - 1, targets, results)
                .await?;
        }
        Ok(())
    }

    /// What the gate's latest look asks for: a retry (a retryable check
    /// failed), more trials (a check that asks for them is inconclusive and
    /// the test may grow), or nothing more.
    fn next_step(
        &self,
        cfg: &config::TestConfig,
        run: &TestRun,
        history: &[AttemptRecord],
        pooled: bool,
        max_attempts: u32,
    ) -> Next {
        if gate::retry(&cfg.checks, history, max_attempts) {
            return Next::Retry;
        }
        let Some(last) = history.last() else {
            return Next::Conclude;
        };
        let undecided = last.checks.iter().any(|c| {
            c.verdict == crate::results::Verdict::Inconclusive
                && c.on_inconclusive.wants_more_trials()
        });
        let room = cfg.max_trials().saturating_sub(run.trials_run());
        if pooled && undecided && room > 0 {
            // One at a time: `calibrate` found it as sure as two at a time
            // and cheaper; the order keeps alternating by trial number.
            Next::MoreTrials(room.min(1))
        } else {
            Next::Conclude
        }
    }

    fn conclude_history(
        &self,
        name: &str,
        history: Vec<AttemptRecord>,
        max: u32,
        note: Option<String>,
        results: &mut RunResults,
    ) {
        let Some(t) = results.test_mut(name) else {
            return;
        };
        let concluded = gate::conclude(history, max);
        t.checks = concluded.checks;
        t.status = concluded.status;
        t.notes.extend(note);
        t.notes.extend(concluded.notes);
        t.attempts = concluded.attempts;
    }

    /// Tells what the gate decided (or why the test could not run).
    fn judged(&self, run: &TestRun, results: &RunResults) -> Result<(), RunError> {
        let Some(t) = results.tests.iter().find(|t| t.name == run.name()) else {
            return Ok(());
        };
        for check in &t.checks {
            self.events.say(&Event::CheckJudged {
                test: &t.name,
                check,
            });
        }
        self.events.say(&Event::TestFinished(t));
        Ok(self.events.emit(&Event::Checkpoint(results))?)
    }

    /// An engine the run did not start must still be the server it found
    /// ready: one restarted or replaced under the run would be measured in
    /// its place.
    async fn same_servers(
        &self,
        phase: &[&EngineSpec],
        results: &RunResults,
    ) -> Result<(), RunError> {
        for spec in phase.iter().filter(|s| s.kind == EngineKind::External) {
            let Some(rec) = results.engines.iter().find(|e| e.name == spec.name) else {
                continue;
            };
            let Ok(c) = crate::client::OpenAiClient::new(&spec.url, Duration::from_secs(5)) else {
                continue;
            };
            let mut seen = Identity::of(&c).await;
            if seen.is_silent() {
                // A busy server may miss one probe; a gone one misses two.
                tokio::time::sleep(Duration::from_secs(2)).await;
                seen = Identity::of(&c).await;
            }
            let was = Identity::recorded(rec);
            if was.changed_to(&seen) {
                return Err(RunError::Engine(EngineError::Changed {
                    engine: spec.name.clone(),
                    was: was.describe(),
                    now: seen.describe(),
                }));
            }
        }
        Ok(())
    }

    async fn stop_phase(&self, phase: &[&EngineSpec], results: &mut RunResults) {
        let these: Vec<String> = phase.iter().map(|s| s.name.clone()).collect();
        self.events.info(format!(
            "stopping {} before the next engine starts",
            these
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let killed = self
            .supervisor
            .stop(Some(&these), std::future::pending())
            .await;
        if !killed.is_empty() {
            self.events.say(&Event::EnginesKilled(&killed));
        }
        let timeout = self.loaded.suite.run.gpu_release_timeout_secs;
        gpu_after_stop(results, &these, timeout, self.events).await;
    }

    /// Starts again the services a workload stopped (fault tolerance), so
    /// the next trial and test find them up.
    async fn restore_services(&self, results: &mut RunResults) -> Result<(), RunError> {
        let Some(control) = self.services.get() else {
            return Ok(());
        };
        let stopped = control.take_stopped();
        if stopped.is_empty() {
            return Ok(());
        }
        self.events.info(format!(
            "starting {} again",
            stopped
                .iter()
                .map(|s| format!("`{}`", s.name))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        self.start_engines(&stopped, results).await
    }

    /// Starts engines together and waits until every one of them serves.
    async fn start_engines(
        &self,
        specs: &[&EngineSpec],
        results: &mut RunResults,
    ) -> Result<(), RunError> {
        let dir = results.results_dir.clone();
        let gpu_before = engine::gpu::memory_used_mib().await;
        let prefilled: Vec<bool> = specs
            .iter()
            .map(|s| engine::startlog::prefilled(s.env_var("VLLM_CACHE_ROOT")))
            .collect();
        for spec in specs {
            let pid = self.supervisor.spawn(spec).await?;
            // A restarted service keeps one record.
            results.engines.retain(|e| e.name != spec.name);
            results.engines.push(EngineRecord {
                name: spec.name.clone(),
                role: spec.role,
                kind: spec.kind.as_str().to_string(),
                url: spec.url.clone(),
                pid,
                log: spec.log.as_deref().map(|l| relative(&dir, l)),
                ready_secs: None,
                log_tail: Vec::new(),
                version: None,
                served_models: Vec::new(),
                process_started_unix: None,
                gpu_memory: gpu_before.map(|mib| crate::results::GpuMemory {
                    before_start_mib: Some(mib),
                    ..Default::default()
                }),
                gpu: spec.env_var("CUDA_VISIBLE_DEVICES").map(String::from),
                kv_cache_tokens: None,
                start: None,
                log_findings: None,
            });
            self.events.say(&Event::EngineStarting {
                name: &spec.name,
                role: spec.role,
                url: &spec.url,
                log: spec.log.as_deref(),
            });
        }
        self.events.emit(&Event::Checkpoint(results))?;
        let events = self.events.clone();
        let say = move |name: &str, took: Duration, line: Option<String>, probe: &str| {
            events.say(&Event::EngineStillStarting {
                name,
                secs: took.as_secs_f64(),
                last_line: line.as_deref(),
                probe,
            })
        };
        let starting = engine::Starting {
            every: Duration::from_secs_f64(self.loaded.suite.run.starting_report_secs),
            say: &say,
        };
        let ready = try_join_all(
            specs
                .iter()
                .map(|s| engine::wait_ready(self.supervisor, s, &starting)),
        )
        .await?;
        let gpu_ready = match gpu_before {
            Some(_) => engine::gpu::memory_used_mib().await,
            None => None,
        };
        for ((spec, took), prefilled) in specs.iter().zip(ready).zip(prefilled) {
            self.supervisor.mark_ready(&spec.name);
            self.record_ready(spec, took, (gpu_ready, prefilled), results)
                .await;
        }
        Ok(self.events.emit(&Event::Checkpoint(results))?)
    }

    /// Records what a ready engine says of itself (identity, KV capacity),
    /// how its start went (its log) and the GPU memory now; says it.
    async fn record_ready(
        &self,
        spec: &EngineSpec,
        took: Duration,
        (gpu_ready, prefilled): (Option<f64>, bool),
        results: &mut RunResults,
    ) {
        let said = match crate::client::OpenAiClient::new(&spec.url, Duration::from_secs(5)) {
            Ok(c) if spec.role != Role::Service => Some(Identity::of(&c).await),
            _ => None,
        };
        let start = spec
            .log
            .as_deref()
            .and_then(|l| engine::startlog::read(l, spec.env_var("VLLM_CACHE_ROOT"), prefilled));
        self.events.say(&Event::EngineReady {
            name: &spec.name,
            secs: took.as_secs_f64(),
        });
        if let Some(s) = &start {
            self.events.info(format!(
                "engine `{}`: {}",
                spec.name,
                crate::results::start_said(s)
            ));
        }
        let Some(e) = results.engines.iter_mut().find(|e| e.name == spec.name) else {
            return;
        };
        e.ready_secs = Some(took.as_secs_f64());
        e.start = start;
        if let Some(said) = said {
            e.version = said.version;
            e.served_models = said.served;
            e.process_started_unix = said.started;
            e.kv_cache_tokens = said.kv_cache_tokens;
        }
        if let Some(g) = e.gpu_memory.as_mut() {
            g.at_ready_mib = gpu_ready;
        }
    }
}
