//! The `ci` pipeline: suite → launch engines → readiness → workloads (baseline
//! first, then LMCache) → gate → results, raced against engine deaths and
//! signals, with every engine stopped and the results written however it ends.

use std::io::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::future::try_join_all;
use futures_util::FutureExt;
use indexmap::IndexMap;

use crate::cli::CiArgs;
use crate::config::{self, Loaded, Role, Schedule};
use crate::engine::signals::{Received, Signals};
use crate::engine::{
    self, tail_lines, EngineError, EngineKind, EngineSpec, Supervisor, TAIL_LINES,
};
use crate::error::Error;
use crate::gate;
use crate::report::publish;
use crate::report::results::{
    AttemptRecord, EngineRecord, RunMeta, RunResults, RunStatus, TestRecord, TestStatus, Verdict,
    SCHEMA_VERSION,
};
use crate::suite_test;

enum Ended {
    Done(Result<(), Error>),
    Died(EngineError),
    Signal(Received),
    Panic(String),
}

pub(crate) fn load_suite(args: &crate::cli::SuiteArgs) -> Result<Loaded, Error> {
    let env = |k: &str| std::env::var(k).ok();
    Ok(config::load(&config::LoadRequest {
        preset: args.preset.as_deref(),
        file: args.suite.as_deref(),
        overlays: &args.overlays,
        sets: &args.sets,
        env: &env,
    })?)
}

pub(crate) async fn run(args: CiArgs) -> Result<(), Error> {
    let mut loaded = load_suite(&args.suite)?;
    if args.sequential {
        for p in loaded.params.values_mut() {
            if let config::TestParams::Mmlu(m) = p {
                m.sequential = true;
            }
        }
    }
    let selected: Vec<String> = loaded
        .suite
        .selected_tests(args.only.as_deref())?
        .into_iter()
        .map(|(n, _)| n.clone())
        .collect();
    let run_cfg = &loaded.suite.run;
    let started = chrono::Utc::now();
    let build_id = run_cfg
        .build_id
        .clone()
        .unwrap_or_else(|| format!("local_{}", started.format("%Y%m%d_%H%M%S")));
    let results_dir = args
        .results_dir
        .clone()
        .or_else(|| run_cfg.results_dir.clone())
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/lmcache_ci_results_{build_id}")));
    for dir in [results_dir.clone(), results_dir.join("logs")] {
        std::fs::create_dir_all(&dir).map_err(|source| Error::ResultsDir {
            path: dir.clone(),
            source,
        })?;
    }
    let run_id = format!("{build_id}-{}", std::process::id());
    let models = models_of(&loaded.suite.run);
    let mut signals = Signals::install()
        .map_err(|e| Error::Internal(format!("failed to install signal handlers: {e}")))?;

    let mut results = RunResults {
        schema_version: SCHEMA_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        suite: run_cfg.name.clone(),
        source: loaded.base.to_string(),
        build_id,
        run_id: run_id.clone(),
        results_dir: results_dir.clone(),
        status: RunStatus::Running,
        message: None,
        signal: None,
        started_at: started,
        finished_at: None,
        engines: Vec::new(),
        meta: RunMeta {
            models: models.iter().map(|(m, _)| m.clone()).collect(),
            ..crate::ci_env::detect(&|k| std::env::var(k).ok())
        },
        tests: models
            .iter()
            .flat_map(|(_, label)| selected.iter().map(move |name| (name, label)))
            .map(|(name, label)| TestRecord {
                name: record_name(name, label.as_deref()),
                kind: loaded.suite.tests[name].kind.as_str().to_string(),
                status: TestStatus::NotRun,
                metrics: IndexMap::new(),
                checks: Vec::new(),
                files: Vec::new(),
                error: None,
                duration_secs: None,
                notes: Vec::new(),
                attempts: Vec::new(),
                tables: Vec::new(),
                charts: Vec::new(),
            })
            .collect(),
    };
    results.write()?;
    eprintln!(
        "lmcache-e2e: suite `{}` ({}), results in {}",
        run_cfg.name,
        loaded.base,
        results_dir.display()
    );

    let supervisor = Supervisor::new(
        &run_id,
        Duration::from_secs_f64(run_cfg.grace_period_secs),
        &results_dir,
    );
    let ended = {
        let pipeline = AssertUnwindSafe(pipeline(
            &loaded,
            &selected,
            &models,
            &supervisor,
            &mut results,
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
        eprintln!(
            "lmcache-e2e: {} received: stopping engines (send it again to kill them now)",
            s.name
        );
    }
    let killed = supervisor
        .stop_all(async {
            let s = signals.recv().await;
            eprintln!("lmcache-e2e: {} received again: killing engines", s.name);
        })
        .await;
    if !killed.is_empty() {
        eprintln!(
            "lmcache-e2e: killed after the grace period: {}",
            killed.join(", ")
        );
    }
    finish(results, ended, &args.report).await
}

/// Records how the run ended, writes results.json and summary.md, and turns
/// the ending into the run's error (or none).
async fn finish(
    mut results: RunResults,
    ended: Ended,
    report: &crate::cli::ReportFlags,
) -> Result<(), Error> {
    let mark_running = |results: &mut RunResults, status: TestStatus, why: &str| {
        for t in results
            .tests
            .iter_mut()
            .filter(|t| t.status == TestStatus::Running)
        {
            t.status = status;
            t.error = Some(why.to_string());
        }
    };
    let outcome: Result<(), Error> = match ended {
        Ended::Done(Ok(())) => {
            let failed: Vec<&str> = results
                .tests
                .iter()
                .filter(|t| matches!(t.status, TestStatus::Failed | TestStatus::Error))
                .map(|t| t.name.as_str())
                .collect();
            if failed.is_empty() {
                results.status = RunStatus::Passed;
                Ok(())
            } else {
                results.status = RunStatus::Failed;
                Err(Error::Failed(format!(
                    "failed tests: {}",
                    failed.join(", ")
                )))
            }
        }
        Ended::Done(Err(e)) => {
            results.status = RunStatus::Error;
            results.message = Some(first_line(&e.to_string()));
            mark_running(
                &mut results,
                TestStatus::Error,
                "the run stopped with an error",
            );
            Err(e)
        }
        Ended::Died(e) => {
            results.status = RunStatus::Error;
            results.message = Some(first_line(&e.to_string()));
            mark_running(&mut results, TestStatus::Error, &first_line(&e.to_string()));
            Err(Error::Engine(e))
        }
        Ended::Signal(s) => {
            results.status = RunStatus::Interrupted;
            results.signal = Some(s.name.to_string());
            results.message = Some(format!(
                "interrupted by {}; engines stopped, partial results kept",
                s.name
            ));
            mark_running(
                &mut results,
                TestStatus::Interrupted,
                &format!("interrupted by {}", s.name),
            );
            Err(Error::Interrupted {
                name: s.name,
                number: s.number,
            })
        }
        Ended::Panic(msg) => {
            results.status = RunStatus::Error;
            results.message = Some(format!("internal error: {msg}"));
            mark_running(&mut results, TestStatus::Error, "internal error");
            Err(Error::Internal(msg))
        }
    };
    // Every engine's last lines, as the reference's cleanup printed them,
    // kept for the report (which shows them when the run did not pass).
    for e in &mut results.engines {
        if let Some(log) = &e.log {
            e.log_tail = tail_lines(&results.results_dir.join(log), TAIL_LINES);
            print_group(
                &format!("last {} lines of {} ({log})", e.log_tail.len(), e.name),
                &e.log_tail,
            );
        }
    }
    results.finished_at = Some(chrono::Utc::now());
    results.write()?;
    // Reports go out whatever the outcome: a failed or interrupted run is
    // the one maintainers most need to see.
    let env = |k: &str| std::env::var(k).ok();
    let delivered = publish::publish(&results, report, true, &publish::Env { get: &env }).await;
    match delivered {
        Ok(d) => {
            if let Ok(md) = std::fs::read_to_string(&d.summary_md) {
                println!("{md}");
            }
            outcome
        }
        // The run's own failure says more than the report's.
        Err(e) => outcome.and(Err(e.into())),
    }
}

/// A block of lines, collapsed where the CI can: GitHub Actions' groups,
/// Buildkite's `~~~` sections.
fn print_group(title: &str, lines: &[String]) {
    let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    let buildkite = std::env::var("BUILDKITE").is_ok_and(|v| v == "true");
    let (open, close) = match (github, buildkite) {
        (true, _) => (format!("::group::{title}"), "::endgroup::".to_string()),
        (_, true) => (format!("~~~ {title}"), String::new()),
        _ => (format!("--- {title} ---"), "--- end ---".to_string()),
    };
    let mut out = std::io::stderr().lock();
    let _ = writeln!(out, "{open}");
    for l in lines {
        // A log line must not open or close groups of its own.
        let l = if github && l.starts_with("::") {
            format!(" {l}")
        } else {
            l.clone()
        };
        let _ = writeln!(out, "{l}");
    }
    if !close.is_empty() {
        let _ = writeln!(out, "{close}");
    }
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

/// Waits for the GPUs the suite's `auto:N` containers need, as the
/// multiprocessing suite polls `nvidia-smi`.
async fn choose_gpus(suite: &config::Suite) -> Result<Vec<engine::gpu::GpuState>, Error> {
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
    eprintln!(
        "lmcache-e2e: waiting for {count} GPU(s) with {} MiB free and at most {} % busy",
        g.min_free_mib, g.max_util_pct
    );
    let chosen = engine::gpu::choose_gpus(&req).await?;
    eprintln!(
        "lmcache-e2e: chose GPU(s) {:?}",
        chosen.iter().map(|g| g.index).collect::<Vec<_>>()
    );
    Ok(chosen)
}

/// Each model to run, with the label its names carry when there are several.
fn models_of(run: &crate::config::RunConfig) -> Vec<(String, Option<String>)> {
    if run.models.is_empty() {
        return vec![(run.model.clone(), None)];
    }
    let label = |m: &String| {
        (run.models.len() > 1).then(|| crate::workload::mmlu::model_tail(m).to_string())
    };
    run.models.iter().map(|m| (m.clone(), label(m))).collect()
}

fn record_name(test: &str, label: Option<&str>) -> String {
    match label {
        Some(l) => format!("{test}@{l}"),
        None => test.to_string(),
    }
}

async fn pipeline(
    loaded: &Loaded,
    selected: &[String],
    models: &[(String, Option<String>)],
    supervisor: &Supervisor,
    results: &mut RunResults,
) -> Result<(), Error> {
    engine::image::build_images(
        &loaded.suite,
        &loaded.suite_dir(),
        &results.results_dir.join("logs"),
    )
    .await?;
    let chosen = choose_gpus(&loaded.suite).await?;
    results.meta.gpus = chosen
        .iter()
        .map(|g| match g.memory_total_mib {
            Some(mib) => format!("GPU {} ({:.0} GiB)", g.index, mib as f64 / 1024.0),
            None => format!("GPU {}", g.index),
        })
        .collect();
    for (i, (model, label)) in models.iter().enumerate() {
        if i > 0 {
            eprintln!("lmcache-e2e: stopping the engines of the previous model");
            supervisor.stop_all(std::future::pending()).await;
        }
        if label.is_some() {
            eprintln!("lmcache-e2e: model {model}");
        }
        run_model(
            loaded,
            selected,
            model,
            label.as_deref(),
            &chosen,
            supervisor,
            results,
        )
        .await?;
    }
    Ok(())
}

async fn run_model(
    loaded: &Loaded,
    selected: &[String],
    model: &str,
    label: Option<&str>,
    chosen_gpus: &[engine::gpu::GpuState],
    supervisor: &Supervisor,
    results: &mut RunResults,
) -> Result<(), Error> {
    let suite = &loaded.suite;
    let dir = results.results_dir.clone();
    let specs: Vec<EngineSpec> = engine::resolve(
        suite,
        &dir.join("logs"),
        model,
        label,
        &results.run_id,
        chosen_gpus,
    )?;
    // Baseline first, so warm-up effects never favour LMCache.
    // Services (e.g. the LMCache server) first, and up for every phase.
    let services: Vec<&EngineSpec> = specs.iter().filter(|s| s.role == Role::Service).collect();
    if !services.is_empty() {
        start_engines(&services, supervisor, results).await?;
    }
    let mut order: Vec<&EngineSpec> = specs.iter().filter(|s| s.role != Role::Service).collect();
    order.sort_by_key(|s| s.role);
    let phases: Vec<Vec<&EngineSpec>> = match suite.run.schedule {
        Schedule::Concurrent => vec![order],
        Schedule::Sequential => order.into_iter().map(|s| vec![s]).collect(),
    };
    let suite_dir = loaded.suite_dir();
    let ctx = suite_test::Ctx {
        specs: &specs,
        model,
        timeout: Duration::from_secs_f64(suite.run.request_timeout_secs),
        suite_dir: &suite_dir,
    };
    let mut runs: Vec<(suite_test::TestRun, Duration, &String)> = selected
        .iter()
        .map(|name| {
            let run =
                suite_test::TestRun::new(&record_name(name, label), &loaded.params[name], label);
            (run, Duration::ZERO, name)
        })
        .collect();
    let last = phases.len().saturating_sub(1);
    for (i, phase) in phases.iter().enumerate() {
        start_engines(phase, supervisor, results).await?;
        for (run, spent, _) in runs.iter_mut() {
            for spec in phase {
                let started = Instant::now();
                set_status(results, run.name(), TestStatus::Running)?;
                run.run_role(&ctx, spec.role, &roles_of(phase), results)
                    .await?;
                *spent += started.elapsed();
            }
        }
        if i < last {
            eprintln!(
                "lmcache-e2e: stopping {} before the next engine starts",
                names(phase)
            );
            let these: Vec<String> = phase.iter().map(|s| s.name.clone()).collect();
            let killed = supervisor.stop(Some(&these), std::future::pending()).await;
            if !killed.is_empty() {
                eprintln!(
                    "lmcache-e2e: killed after the grace period: {}",
                    killed.join(", ")
                );
            }
        }
    }
    // Retrying reruns the test on every engine, so they must all still be up.
    let retry_phase = (phases.len() == 1).then(|| &phases[0]);
    for (run, spent, test) in runs.iter_mut() {
        let cfg = &suite.tests[test.as_str()];
        let max = cfg.attempts();
        let mut history: Vec<AttemptRecord> = Vec::new();
        loop {
            run.finish(results)?;
            let t = results
                .test_mut(run.name())
                .expect("selected tests are recorded");
            t.duration_secs = Some(spent.as_secs_f64());
            if let Some(e) = &run.error {
                eprintln!("lmcache-e2e: [{}] error: {e}", t.name);
                t.status = TestStatus::Error;
                break;
            }
            let checks = gate::evaluate(&cfg.checks, &t.metrics);
            let attempt = history.len() as u32 + 1;
            history.push(AttemptRecord {
                attempt,
                status: gate::test_status(&checks),
                metrics: t.metrics.clone(),
                checks: checks.clone(),
            });
            let retry = attempt < max && gate::wants_retry(&cfg.checks, &checks);
            match (retry, retry_phase) {
                (true, Some(phase)) => {
                    eprintln!("lmcache-e2e: [{}] a retryable check failed on attempt {attempt} of {max}: running the test again", t.name);
                    results.write()?;
                    *run = suite_test::TestRun::new(
                        &record_name(test, label),
                        &loaded.params[test.as_str()],
                        label,
                    );
                    for spec in phase {
                        let started = Instant::now();
                        run.run_role(&ctx, spec.role, &roles_of(phase), results)
                            .await?;
                        *spent += started.elapsed();
                    }
                    continue;
                }
                (true, None) => t
                    .notes
                    .push("not retried: retries need run.schedule = \"concurrent\"".into()),
                _ => {}
            }
            let earlier: Vec<Vec<_>> = history[..history.len() - 1]
                .iter()
                .map(|a| a.checks.clone())
                .collect();
            t.checks = gate::mark_flaky(&earlier, checks);
            t.status = gate::test_status(&t.checks);
            if history.len() > 1 {
                // Say what failed before, so a flaky pass is never read as clean.
                for a in &history[..history.len() - 1] {
                    for c in a.checks.iter().filter(|c| c.verdict == Verdict::Fail) {
                        let value = c
                            .value
                            .map_or("no value".to_string(), |v| format!("{v:.2} {}", c.unit));
                        t.notes.push(format!(
                            "attempt {} of {}: {} failed ({value}, threshold {} {} {})",
                            a.attempt, max, c.name, c.op, c.threshold, c.unit
                        ));
                    }
                }
                t.attempts = std::mem::take(&mut history);
            }
            break;
        }
        results.write()?;
    }
    Ok(())
}

fn roles_of(specs: &[&EngineSpec]) -> Vec<crate::config::Role> {
    specs.iter().map(|s| s.role).collect()
}

fn names(specs: &[&EngineSpec]) -> String {
    specs
        .iter()
        .map(|s| format!("`{}`", s.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Starts engines together and waits until every one of them serves.
async fn start_engines(
    specs: &[&EngineSpec],
    supervisor: &Supervisor,
    results: &mut RunResults,
) -> Result<(), Error> {
    let dir = results.results_dir.clone();
    for spec in specs {
        let pid = supervisor.spawn(spec).await?;
        results.engines.push(EngineRecord {
            name: spec.name.clone(),
            role: spec.role,
            kind: format!("{:?}", spec.kind).to_lowercase(),
            url: spec.url.clone(),
            pid,
            log: spec.log.as_deref().map(|l| relative(&dir, l)),
            ready_secs: None,
            log_tail: Vec::new(),
        });
        match (&spec.log, spec.kind) {
            (_, EngineKind::External) => {
                eprintln!("lmcache-e2e: using engine `{}` at {}", spec.name, spec.url)
            }
            (Some(log), _) => eprintln!(
                "lmcache-e2e: started engine `{}` ({}) at {}, log {}",
                spec.name,
                spec.role,
                spec.url,
                log.display()
            ),
            (None, _) => {}
        }
    }
    results.write()?;
    let ready = try_join_all(specs.iter().map(|s| engine::wait_ready(supervisor, s))).await?;
    for (spec, took) in specs.iter().zip(ready) {
        supervisor.mark_ready(&spec.name);
        if let Some(e) = results.engines.iter_mut().find(|e| e.name == spec.name) {
            e.ready_secs = Some(took.as_secs_f64());
        }
        eprintln!(
            "lmcache-e2e: engine `{}` ready after {:.2} s",
            spec.name,
            took.as_secs_f64()
        );
    }
    Ok(results.write()?)
}

fn set_status(results: &mut RunResults, name: &str, status: TestStatus) -> Result<(), Error> {
    if let Some(t) = results.test_mut(name) {
        t.status = status;
    }
    Ok(results.write()?)
}
