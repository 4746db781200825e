//! What the orchestrator tells the world, as typed events, and the sinks
//! that consume them: the results writer (results.json as the run goes),
//! the console and CI log groups (in `console`). Deep code never prints.

use std::path::Path;
use std::sync::Arc;

use crate::results::{CheckOutcome, ResultsError, Role, RunResults, TestRecord};
use crate::workload::Progress;

#[derive(Debug)]
pub(crate) enum Event<'a> {
    RunStarted {
        suite: &'a str,
        source: &'a str,
        results_dir: &'a Path,
    },
    /// A line about the run itself (GPU choice, models, stopping engines).
    Info(String),
    EngineStarting {
        name: &'a str,
        role: Role,
        url: &'a str,
        /// `None` for an external engine, which is used, not started.
        log: Option<&'a Path>,
    },
    /// An engine still starting, said every `run.starting_report_secs`.
    EngineStillStarting {
        name: &'a str,
        secs: f64,
        last_line: Option<&'a str>,
        /// What its address last answered, or why nothing did.
        probe: &'a str,
    },
    EngineReady {
        name: &'a str,
        secs: f64,
    },
    /// GPU memory after engines stopped, against what was in use before
    /// they started.
    GpuMemoryAfterStop {
        engines: &'a [String],
        used_mib: f64,
        before_mib: f64,
        secs: f64,
        released: bool,
    },
    EngineDied {
        message: &'a str,
    },
    /// Engines that ignored SIGTERM for the whole grace period.
    EnginesKilled(&'a [String]),
    Signal {
        name: &'a str,
        again: bool,
    },
    /// A test's workload starts against one engine; its counters say how far
    /// it is until `TestStepDone`.
    TestStarted {
        test: &'a str,
        role: Role,
        engine: &'a str,
        progress: &'a Arc<Progress>,
    },
    /// A line from a running workload.
    TestSaid {
        test: &'a str,
        text: &'a str,
    },
    TestStepDone {
        test: &'a str,
        role: Role,
    },
    AttemptFinished {
        test: &'a str,
        attempt: u32,
        max: u32,
        retrying: bool,
    },
    CheckJudged {
        test: &'a str,
        check: &'a CheckOutcome,
    },
    TestFinished(&'a TestRecord),
    /// An engine's last log lines, at the end of every run.
    LogTail {
        title: &'a str,
        lines: &'a [String],
        /// Whether the run passed (a terminal needs no logs then).
        passed: bool,
    },
    /// The results changed: time to persist them.
    Checkpoint(&'a RunResults),
    RunFinished(&'a RunResults),
}

/// Consumes events. Only the results writer can fail; a console that
/// cannot print must not stop a run.
pub(crate) trait Sink: Send + Sync {
    fn event(&self, event: &Event<'_>) -> Result<(), ResultsError>;
}

/// Every sink of a run; cheap to clone into tasks.
#[derive(Clone, Default)]
pub(crate) struct Events {
    sinks: Vec<Arc<dyn Sink>>,
}

impl Events {
    pub(crate) fn new(sinks: Vec<Arc<dyn Sink>>) -> Self {
        Self { sinks }
    }

    /// Sends `event` to every sink; the first failure is returned after all
    /// of them saw it.
    pub(crate) fn emit(&self, event: &Event<'_>) -> Result<(), ResultsError> {
        let mut first = Ok(());
        for s in &self.sinks {
            if let Err(e) = s.event(event) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }

    /// For events whose sinks cannot fail (everything but checkpoints).
    pub(crate) fn say(&self, event: &Event<'_>) {
        let _ = self.emit(event);
    }

    pub(crate) fn info(&self, text: String) {
        self.say(&Event::Info(text));
    }
}

/// Writes results.json (atomically) whenever the results change, so an
/// interrupted or killed run keeps what it measured.
pub(crate) struct ResultsWriter;

impl Sink for ResultsWriter {
    fn event(&self, event: &Event<'_>) -> Result<(), ResultsError> {
        match event {
            Event::Checkpoint(r) | Event::RunFinished(r) => r.write(),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Recorder(Mutex<Vec<String>>);

    impl Sink for Recorder {
        fn event(&self, event: &Event<'_>) -> Result<(), ResultsError> {
            self.0.lock().unwrap().push(format!("{event:?}"));
            Ok(())
        }
    }

    struct Failing;

    impl Sink for Failing {
        fn event(&self, _: &Event<'_>) -> Result<(), ResultsError> {
            Err(ResultsError::Write {
                path: "results.json".into(),
                source: std::io::Error::other("disk full"),
            })
        }
    }

    #[test]
    fn every_sink_sees_the_event_even_after_one_fails() {
        let rec = Arc::new(Recorder(Mutex::new(Vec::new())));
        let events = Events::new(vec![Arc::new(Failing), rec.clone()]);
        let err = events.emit(&Event::Info("hello".into())).unwrap_err();
        assert!(err.to_string().contains("disk full"));
        assert_eq!(rec.0.lock().unwrap().as_slice(), ["Info(\"hello\")"]);
    }
}
