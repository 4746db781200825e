//! One test of a suite across phases: its workload planned once, run
//! against one engine at a time (baseline first, then LMCache), then
//! finished. What it measured is recorded after each engine, so an
//! interrupted run keeps it.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::TestParams;
use crate::results::{Role, RunResults};
use crate::workload::{self, Ctx, Output, Progress, Workload, WorkloadError};

pub(crate) struct TestRun {
    /// The name results record it under (`mmlu`, or `mmlu@Model` when a
    /// suite runs several models).
    name: String,
    /// Outputs go to this subdirectory of the results directory, if any.
    subdir: Option<String>,
    workload: Box<dyn Workload>,
    planned: bool,
    pub output: Output,
    /// Why the test could not finish; later phases skip it.
    pub error: Option<WorkloadError>,
    pub progress: Arc<Progress>,
}

impl TestRun {
    pub(crate) fn new(name: &str, params: &TestParams, subdir: Option<&str>, attempt: u32) -> Self {
        Self {
            name: name.to_string(),
            subdir: subdir.map(String::from),
            workload: workload::for_test(params, attempt),
            planned: false,
            output: Output::default(),
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
        let files = self
            .output
            .files
            .iter()
            .map(|f| match &self.subdir {
                Some(s) => format!("{s}/{f}"),
                None => f.clone(),
            })
            .collect();
        if let Some(t) = results.test_mut(&self.name) {
            t.metrics = self.output.metrics.clone();
            t.files = files;
            t.notes = self.output.notes.clone();
            t.tables = self.output.tables.clone();
            t.charts = self.output.charts.clone();
            t.error = self.error.as_ref().map(|e| e.to_string());
        }
    }

    /// Runs the workload against the engine of `role` (planning it first,
    /// the first time).
    pub(crate) async fn run_role(&mut self, ctx: &Ctx<'_>, role: Role, phase: &[Role]) {
        if self.error.is_some() {
            return;
        }
        if !self.planned {
            self.planned = true;
            if let Err(e) = self.workload.plan(ctx, role).await {
                self.error = Some(e);
                return;
            }
        }
        if let Err(e) = self.workload.run(ctx, role, phase, &mut self.output).await {
            self.error = Some(e);
        }
    }

    /// After every engine ran: what comparing them adds.
    pub(crate) fn finish(&mut self, ctx: &Ctx<'_>) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.workload.finish(ctx, &mut self.output) {
            self.error = Some(e);
        }
    }
}
