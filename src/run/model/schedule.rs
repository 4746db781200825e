//! The order a model's engines serve a test in: phases, paired trials
//! whose order alternates, steps of one engine or both at once, and the
//! engagement counters read around each step.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::config::{self, Role, Schedule};
use crate::engine::EngineSpec;
use crate::results::{RunResults, TestStatus};
use crate::workload::{Ctx, Harness, Progress, Target};

use super::engines::answering;
use super::ModelRun;
use crate::run::engagement;
use crate::run::error::RunError;
use crate::run::events::Event;
use crate::run::placement;
use crate::run::services::NO_SERVICES;
use crate::run::test::TestRun;

impl ModelRun<'_> {
    /// The phases the engines run in (each phase's engines up together),
    /// and the engines already started on the way: on a shared GPU the
    /// first engine starts alone, and its measured memory decides whether
    /// the others start beside it.
    pub(super) async fn phases<'s>(
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

    /// Runs paired trials `first..=last` of one test on a phase's engines;
    /// which engine goes first alternates (baseline, LMCache, LMCache,
    /// baseline, ...) so drift over time cancels instead of favouring one
    /// side.
    pub(super) async fn run_trials(
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
    pub(super) fn ctx<'c>(
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
    pub(super) async fn run_phase(
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
    pub(super) fn pairing_note(
        &self,
        run: &TestRun,
        phase: &[&EngineSpec],
        trials: u32,
    ) -> Option<String> {
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
    pub(super) fn shares_a_gpu(&self) -> bool {
        matches!(self.placement.layout, placement::Layout::Shared { .. })
    }

    /// The steps of one trial: both engines at once where the suite pairs
    /// them together and the kind can, else one engine a step.
    pub(super) fn steps<'s>(
        &self,
        run: &TestRun,
        phase: &[&'s EngineSpec],
    ) -> Vec<Vec<&'s EngineSpec>> {
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
    pub(super) async fn keep_engagement(
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
    pub(super) fn say_for(&self, test: &str) -> impl Fn(String) + Send + Sync + 'static {
        let (events, test) = (self.events.clone(), test.to_string());
        move |text: String| {
            events.say(&Event::TestSaid {
                test: &test,
                text: &text,
            })
        }
    }
}
