//! One test of a suite across phases: its workload planned once, run
//! against one engine at a time (baseline first, then LMCache), then
//! finished. What it measured is recorded after each engine, so an
//! interrupted run keeps it.

use std::path::PathBuf;
use std::sync::Arc;

use indexmap::IndexMap;

use crate::config::{metrics, TestKind, TestParams};
use crate::results::{Metric, Role, RunResults};
use crate::workload::{self, Ctx, Output, Progress, Workload, WorkloadError};

pub(crate) struct TestRun {
    /// The name results record it under (`mmlu`, or `mmlu@Model` when a
    /// suite runs several models).
    name: String,
    kind: &'static dyn TestKind,
    /// Outputs go to this subdirectory of the results directory, if any.
    subdir: Option<String>,
    workload: Box<dyn Workload>,
    planned: bool,
    /// What the trials measured so far, each engine's latest trial last.
    pub output: Output,
    /// The pooled outputs of every trial so far, once finished: what is
    /// recorded and gated. More trials clear it.
    finished: Option<Output>,
    /// Each trial's metrics per role, pooled when the test finishes.
    per_trial: Vec<IndexMap<Role, IndexMap<String, Metric>>>,
    /// Why the test could not finish; later phases skip it.
    pub error: Option<WorkloadError>,
    pub progress: Arc<Progress>,
}

impl TestRun {
    /// The kind of test it runs.
    pub(crate) fn kind(&self) -> &'static dyn TestKind {
        self.kind
    }

    pub(crate) fn new(name: &str, params: &TestParams, subdir: Option<&str>, attempt: u32) -> Self {
        Self {
            name: name.to_string(),
            kind: params.kind(),
            subdir: subdir.map(String::from),
            workload: workload::for_test(params, attempt),
            planned: false,
            output: Output::default(),
            finished: None,
            per_trial: Vec::new(),
            error: None,
            progress: Arc::new(Progress::default()),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Where this test writes.
    pub(crate) fn out_dir(&self, results: &RunResults) -> PathBuf {
        match &self.subdir {
            Some(s) => results.results_dir.join(s),
            None => results.results_dir.clone(),
        }
    }

    /// Copies what the test has so far into its record (files relative to
    /// the results directory).
    pub(crate) fn record(&self, results: &mut RunResults) {
        let out = self.finished.as_ref().unwrap_or(&self.output);
        let files = out
            .files
            .iter()
            .map(|f| match &self.subdir {
                Some(s) => format!("{s}/{f}"),
                None => f.clone(),
            })
            .collect();
        // What a kind declares of a metric must be what it records: the
        // debug builds the tests run hold each to its declared unit.
        debug_assert!(
            out.metrics.values().flat_map(|m| m.iter()).all(|(k, m)| {
                let own = self.kind.metrics().iter().find(|s| s.name == k);
                own.is_none_or(|s| s.unit == m.unit)
            }),
            "{} records a metric in another unit than it declares",
            self.kind.name()
        );
        // The catalog the suite's checks are validated against must list
        // every metric a test records: the debug builds the tests run
        // hold it to that.
        debug_assert!(
            out.metrics
                .values()
                .flat_map(|m| m.keys())
                .all(|k| metrics::knows(self.kind, k)),
            "{} records a metric its kind does not list: {:?}",
            self.kind.name(),
            out.metrics
                .values()
                .flat_map(|m| m.keys())
                .filter(|k| !metrics::knows(self.kind, k))
                .collect::<Vec<_>>()
        );
        if let Some(t) = results.test_mut(&self.name) {
            t.metrics = out.metrics.clone();
            for (name, m) in t.metrics.values_mut().flat_map(|m| m.iter_mut()) {
                m.better = m.better.or(metrics::spec(self.kind, name).better);
            }
            t.files = files;
            t.notes = out.notes.clone();
            t.tables = out.tables.clone();
            t.charts = out.charts.clone();
            t.paired = out.paired.clone();
            t.error = self.error.as_ref().map(|e| e.to_string());
        }
    }

    /// Runs the workload against the engine of `role` (planning it first,
    /// the first time).
    pub(crate) async fn run_role(&mut self, ctx: &Ctx<'_>, role: Role, phase: &[Role]) {
        if !self.ready(ctx, role).await {
            return;
        }
        if let Err(e) = self.workload.run(ctx, role, phase, &mut self.output).await {
            self.error = Some(e);
        }
    }

    /// Runs the test on the engines of `roles` at once (`run.pairing =
    /// "together"`).
    pub(crate) async fn run_together(&mut self, ctx: &Ctx<'_>, roles: &[Role]) {
        if !self.ready(ctx, roles[0]).await {
            return;
        }
        if let Err(e) = self
            .workload
            .run_together(ctx, roles, &mut self.output)
            .await
        {
            self.error = Some(e);
        }
    }

    /// Planned (once, against `first`) and not broken: whether to run.
    async fn ready(&mut self, ctx: &Ctx<'_>, first: Role) -> bool {
        if self.error.is_some() {
            return false;
        }
        self.finished = None;
        if !self.planned {
            self.planned = true;
            if let Err(e) = self.workload.plan(ctx, first).await {
                self.error = Some(e);
                return false;
            }
        }
        true
    }

    /// Keeps what trial `trial` measured on `roles`.
    pub(crate) fn end_trial(&mut self, trial: u32, roles: &[Role]) {
        let i = trial.saturating_sub(1) as usize;
        if self.per_trial.len() <= i {
            self.per_trial.resize_with(i + 1, IndexMap::new);
        }
        for role in roles {
            if let Some(m) = self.output.metrics.get(role) {
                self.per_trial[i].insert(*role, m.clone());
            }
        }
    }

    /// Trials run so far.
    pub(crate) fn trials_run(&self) -> u32 {
        self.per_trial.len() as u32
    }

    /// Several trials become one value per metric (their mean, each trial's
    /// value kept beside it) and, per
    /// metric both engines have, one baseline/LMCache pair per trial.
    fn pool_trials(&self, out: &mut Output) {
        if self.per_trial.len() < 2 {
            return;
        }
        let mut pooled: IndexMap<Role, IndexMap<String, Metric>> = IndexMap::new();
        for (role, metrics) in &out.metrics {
            let mut m = metrics.clone();
            for (name, metric) in m.iter_mut() {
                let values: Vec<f64> = self
                    .per_trial
                    .iter()
                    .filter_map(|t| t.get(role)?.get(name).map(|v| v.value))
                    .collect();
                if !values.is_empty() {
                    metric.value = values.iter().sum::<f64>() / values.len() as f64;
                    metric.n = Some(values.len() as u64);
                    metric.trials = values;
                }
            }
            pooled.insert(*role, m);
        }
        let names: Vec<String> = pooled
            .get(&Role::Baseline)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for name in names {
            let pairs: Vec<Vec<(f64, f64)>> = self
                .per_trial
                .iter()
                .filter_map(|t| {
                    let b = t.get(&Role::Baseline)?.get(&name)?.value;
                    let l = t.get(&Role::Lmcache)?.get(&name)?.value;
                    (b.is_finite() && l.is_finite()).then(|| vec![(b, l)])
                })
                .collect();
            out.paired.entry(name).or_insert(pairs);
        }
        out.metrics = pooled;
    }

    /// After every engine ran: every trial so far pooled, and what
    /// comparing the engines adds. Runs again after more trials.
    pub(crate) fn finish(&mut self, ctx: &Ctx<'_>) {
        if self.error.is_some() {
            return;
        }
        let mut out = self.output.clone();
        self.pool_trials(&mut out);
        match self.workload.finish(ctx, &mut out) {
            Ok(()) => self.finished = Some(out),
            Err(e) => self.error = Some(e),
        }
    }
}
