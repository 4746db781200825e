//! `lmcache-e2e setup`: the job's Python environment, its prerequisites
//! check, and the MMLU data step.

use std::sync::Mutex;

use indicatif::ProgressBar;

use crate::ci_env::CiEnv;
use crate::cli::{SetupDataArgs, SuiteArgs};
use crate::console::{Console, Verbosity};
use crate::error::Error;
use crate::setup::env::{SetupError, Step, StepObserver};
use crate::setup::prereqs;
use crate::workload::mmlu::data;

pub(crate) fn check(suite: &SuiteArgs) -> Result<(), Error> {
    let loaded = super::common::load_suite(suite)?;
    let mut checks = prereqs::check(&loaded.suite);
    // What the engines and tests run and read, as `ci` will ask for them.
    let all: Vec<String> = loaded.suite.tests.keys().cloned().collect();
    checks.extend(loaded.needs(&all).into_iter().map(prereqs::Check::from));
    super::common::Out::new().line(prereqs::table(&checks));
    let missing: Vec<&str> = checks
        .iter()
        .filter(|c| c.required && c.found.is_none())
        .map(|c| c.name.as_str())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Setup(SetupError::Missing(missing.join(", "))))
    }
}

/// A spinner per step on a terminal; one line per step everywhere.
struct Steps {
    console: Console,
    terminal: bool,
    spinner: Mutex<Option<ProgressBar>>,
}

impl StepObserver for Steps {
    fn started(&self, name: &str) {
        if self.terminal {
            let bar = ProgressBar::new_spinner();
            bar.set_message(format!("setup: {name}"));
            bar.enable_steady_tick(std::time::Duration::from_millis(100));
            *self.spinner.lock().unwrap_or_else(|p| p.into_inner()) = Some(bar);
        }
    }

    fn finished(&self, step: Option<&Step>) {
        if let Some(bar) = self
            .spinner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            bar.finish_and_clear();
        }
        if let Some(s) = step {
            self.console.line(&format!(
                "setup: {}: {} ({:.2} s)",
                s.name, s.outcome, s.secs
            ));
        }
    }
}

pub(crate) fn run(suite: &SuiteArgs) -> Result<(), Error> {
    let loaded = super::common::load_suite(suite)?;
    let ci = CiEnv::from_process();
    let console = super::common::console(Verbosity::Normal, &ci);
    let steps = Steps {
        console: console.clone(),
        terminal: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        spinner: Mutex::new(None),
    };
    let started = std::time::Instant::now();
    let result = console.group("lmcache-e2e setup", || {
        crate::setup::env::setup(&loaded.suite.setup, &loaded.suite_dir(), &steps)
    });
    let steps = result?;
    let changed = steps.iter().filter(|s| s.changed).count();
    super::common::Out::new().line(format!(
        "setup: {} steps, {changed} changed, {:.2} s",
        steps.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

pub(crate) fn data(args: &SetupDataArgs) -> Result<(), Error> {
    let started = std::time::Instant::now();
    let p = data::prepare(&args.archive, &args.into)?;
    let what = if p.extracted {
        "extracted"
    } else {
        "already up to date"
    };
    super::common::Out::new().line(format!(
        "MMLU data {what}: {} ({} subjects{}) in {:.2} s",
        p.data_dir.display(),
        p.subjects,
        p.sha256
            .map(|s| format!(", sha256 {s}"))
            .unwrap_or_default(),
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}
