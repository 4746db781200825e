//! One model's pass over the suite: its engines resolved and placed, each
//! test run phase by phase, concluded, and judged under one false-alarm
//! budget.

mod conclude;
mod engines;
mod schedule;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use crate::config::{Loaded, Role, TestParams};
use crate::engine::{self, EngineSpec, Supervisor};
use crate::gate;
use crate::results::RunResults;
use crate::workload::Target;

use super::caveats;
use super::error::RunError;
use super::events::Events;
use super::finish::Broken;
use super::models::record_name;
use super::placement;
use super::services::ServiceControl;
use super::test::TestRun;

/// One model's pass over the suite.
pub(super) struct ModelRun<'a> {
    pub(super) loaded: &'a Loaded,
    pub(super) suite_dir: PathBuf,
    pub(super) model: &'a str,
    pub(super) label: Option<&'a str>,
    pub(super) supervisor: &'a Supervisor,
    pub(super) events: &'a Events,
    /// The model's services, once resolved.
    pub(super) services: std::sync::OnceLock<ServiceControl<'a>>,
    /// A shard's own parameters for some of its units, by record name.
    pub(super) overrides: Option<&'a IndexMap<String, TestParams>>,
    /// Where the engines run.
    pub(super) placement: &'a placement::Placement,
}

impl ModelRun<'_> {
    /// A test's parameters: the shard's for its part, else the suite's.
    fn params(&self, test: &str) -> &TestParams {
        self.overrides
            .and_then(|o| o.get(&record_name(test, self.label)))
            .unwrap_or(&self.loaded.params[test])
    }

    pub(super) async fn run(
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
        let targets = targets_of(&specs);
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
        for (run, spent, test) in runs.iter_mut() {
            self.conclude(run, spent, test, retry_phase, &targets, results)
                .await?;
        }
        // Every test judged: the hard checks share one false-alarm budget
        // before anyone is told a verdict.
        self.share_budget(results);
        caveats::apply(suite, &mut results.tests);
        let mut broken = Vec::new();
        for (run, _, _) in runs.iter() {
            self.judged(run, results)?;
            broken.extend(broken_of(run));
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
}

/// The engines a workload may be sent to: all but the services.
fn targets_of(specs: &[EngineSpec]) -> Vec<Target> {
    specs
        .iter()
        .filter(|s| s.role != Role::Service)
        .map(|s| Target {
            name: s.name.clone(),
            role: s.role,
            url: s.url.clone(),
            live: Arc::default(),
        })
        .collect()
}

/// A test that could not run to its end (skipped ones aside).
fn broken_of(run: &TestRun) -> Option<Broken> {
    let e = run.error.as_ref().filter(|e| !e.skipped())?;
    Some(Broken {
        test: run.name().to_string(),
        class: e.class(),
        message: e.to_string(),
    })
}
