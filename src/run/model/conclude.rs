//! A test's attempts and trials until the policy concludes, then what the
//! gate decided, told.

use std::time::Duration;

use crate::engine::EngineSpec;
use crate::gate;
use crate::results::{AttemptRecord, RunResults, TestStatus};
use crate::workload::Target;

use super::ModelRun;
use crate::run::error::RunError;
use crate::run::events::Event;
use crate::run::policy::{self, Next, Standing};
use crate::run::test::TestRun;

impl ModelRun<'_> {
    /// Finishes a test and gates it; while only retryable checks fail it
    /// retries, and while a check asking for more trials is inconclusive
    /// it adds paired trials. Tests run in trials (long document QA,
    /// throughput) pool the evidence of every trial and attempt; others
    /// rerun from scratch. Every attempt is kept.
    pub(super) async fn conclude(
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
        let looks = policy::looks_of(cfg, pooled && retry_phase.is_some());
        let mut history: Vec<AttemptRecord> = Vec::new();
        let mut looking = false;
        loop {
            let name = run.name().to_string();
            // More trials refine the same attempt: its record is replaced.
            if std::mem::take(&mut looking) {
                history.pop();
            }
            let attempt = history.len() as u32 + 1;
            let Some(record) =
                self.gate_attempt(run, *spent, test, looks, targets, results, attempt)
            else {
                break;
            };
            history.push(record);
            let standing = Standing {
                trials_run: run.trials_run(),
                max_trials: cfg.max_trials(),
                max_attempts: max,
                pooled,
            };
            let next = policy::next_step(&cfg.checks, &history, standing);
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
            let Some(trials) = policy::trials_for(next, standing, cfg.trials()) else {
                let note = looks
                    .sequential()
                    .then(|| policy::trials_used(run.trials_run(), cfg.max_trials()));
                self.conclude_history(&name, std::mem::take(&mut history), max, note, results);
                break;
            };
            if let Next::MoreTrials(k) = next {
                // More trials refine the same attempt.
                looking = true;
                self.events.info(format!(
                    "[{name}] inconclusive after {} trials: adding {k} (at most {})",
                    run.trials_run(),
                    cfg.max_trials()
                ));
            }
            if trials.fresh_attempt {
                let attempt = history.len() as u32 + 1;
                *run = TestRun::new(&name, self.params(test), self.label, attempt);
            }
            self.events.emit(&Event::Checkpoint(results))?;
            *spent += self
                .run_trials(run, phase, trials.first, trials.last, targets, results)
                .await?;
        }
        Ok(())
    }

    /// Ends the test's attempt so far and gates it; none where the test
    /// could not run (its record then says so).
    #[allow(clippy::too_many_arguments)]
    fn gate_attempt(
        &self,
        run: &mut TestRun,
        spent: Duration,
        test: &str,
        looks: gate::evidence::Looks,
        targets: &[Target],
        results: &mut RunResults,
        attempt: u32,
    ) -> Option<AttemptRecord> {
        let cfg = &self.loaded.suite.tests[test];
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
            return None;
        }
        gate::evidence::enrich(&mut t.metrics);
        let gated = gate::with_failures_gated(&cfg.checks, &t.metrics, cfg.allow_failed_requests);
        let kind = self.params(test).kind();
        let checks = gate::evaluate_looking(kind, &gated, &t.metrics, &t.paired, looks);
        Some(AttemptRecord {
            attempt,
            status: gate::test_status(&checks),
            metrics: t.metrics.clone(),
            checks,
        })
    }

    pub(super) fn conclude_history(
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
    pub(super) fn judged(&self, run: &TestRun, results: &RunResults) -> Result<(), RunError> {
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
}
