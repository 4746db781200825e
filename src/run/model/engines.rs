//! Starting, checking and stopping a model's engines, and what each one
//! said when it was ready.

use std::path::Path;
use std::time::Duration;

use futures_util::future::try_join_all;

use crate::config::Role;
use crate::engine::{self, EngineError, EngineSpec};
use crate::results::{EngineRecord, RunResults};
use crate::workload::Target;

use super::ModelRun;
use crate::run::error::RunError;
use crate::run::events::Event;
use crate::run::gpu_memory::gpu_after_stop;
use crate::run::identity::Identity;
use crate::run::placement;

/// Every engine still answers: one a test found dead ends the run as an
/// engine failure, wherever it runs.
pub(super) fn answering(targets: &[Target]) -> Result<(), RunError> {
    match targets.iter().find_map(|t| Some((t, t.live.dead()?))) {
        Some((t, why)) => Err(RunError::Engine(EngineError::Unresponsive {
            engine: t.name.clone(),
            why,
        })),
        None => Ok(()),
    }
}

pub(super) fn relative(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

impl ModelRun<'_> {
    /// Whether the engines after `first` fit beside it on `gpu`: the memory
    /// it took from start to ready against what is free now. Says which.
    pub(super) async fn fits_beside(
        &self,
        first: &EngineSpec,
        gpu: u32,
        results: &RunResults,
    ) -> bool {
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

    /// An engine the run did not start must still be the server it found
    /// ready: one restarted or replaced under the run would be measured in
    /// its place.
    pub(super) async fn same_servers(
        &self,
        phase: &[&EngineSpec],
        results: &RunResults,
    ) -> Result<(), RunError> {
        for spec in phase.iter().filter(|s| !s.kind.started()) {
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

    pub(super) async fn stop_phase(&self, phase: &[&EngineSpec], results: &mut RunResults) {
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
    pub(super) async fn restore_services(&self, results: &mut RunResults) -> Result<(), RunError> {
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
    pub(super) async fn start_engines(
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
    pub(super) async fn record_ready(
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
