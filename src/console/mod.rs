//! The console: the one place that talks to the person watching (stderr),
//! as a sink of the run's events. On a terminal, live progress bars per
//! running workload and colour; off one (CI logs), plain lines with no ANSI
//! codes and a progress line per workload every ~10 s or 10 %, whichever is
//! rarer. The final verdict table goes to stdout.

mod groups;

use std::io::{IsTerminal, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ci_env::Ci;
use crate::report::terminal;
use crate::results::{
    CheckOutcome, ResultsError, Role, RunResults, TestRecord, TestStatus, Verdict,
};
use crate::run::{Event, Sink};
use crate::workload::{Progress, Snapshot};

pub(crate) use groups::CiGroups;

/// How much to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verbosity {
    /// Warnings, errors and the final table.
    Quiet,
    Normal,
    /// Also every check as it is judged.
    Verbose,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub verbosity: Verbosity,
    /// Live bars and colour: stderr is a terminal (and NO_COLOR is unset,
    /// for colour).
    pub terminal: bool,
    pub colour: bool,
    pub ci: Ci,
    /// Off a terminal, a progress line at most this often
    /// (`LMCACHE_E2E_PROGRESS_SECS`, default 10).
    pub progress_every: Duration,
}

impl Options {
    /// What this process's stderr and environment call for.
    pub(crate) fn detect(verbosity: Verbosity, ci: Ci) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let no_colour = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let progress_every = std::env::var("LMCACHE_E2E_PROGRESS_SECS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v > 0.0)
            .map_or(PLAIN_EVERY, Duration::from_secs_f64);
        Self {
            verbosity,
            terminal,
            colour: terminal && !no_colour,
            ci,
            progress_every,
        }
    }
}

/// A plain progress line at most this often, and only after this much more
/// of the work is done.
const PLAIN_EVERY: Duration = Duration::from_secs(10);
const PLAIN_STEP: f64 = 0.10;

struct Running {
    test: String,
    role: Role,
    progress: Arc<Progress>,
    bar: Option<ProgressBar>,
    last_line: Instant,
    last_fraction: f64,
    /// The stage `last_fraction` belongs to: a new stage counts from zero.
    last_stage: String,
}

struct Inner {
    opts: Options,
    multi: Option<MultiProgress>,
    running: Mutex<Vec<Running>>,
    /// A spinner per engine still starting (terminal only).
    starting: Mutex<Vec<(String, ProgressBar)>>,
    stopped: AtomicBool,
}

#[derive(Clone)]
pub(crate) struct Console {
    inner: Arc<Inner>,
}

impl Console {
    pub(crate) fn new(opts: Options) -> Self {
        let multi = opts
            .terminal
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
        let console = Self {
            inner: Arc::new(Inner {
                opts,
                multi,
                running: Mutex::new(Vec::new()),
                starting: Mutex::new(Vec::new()),
                stopped: AtomicBool::new(false),
            }),
        };
        console.start_ticker();
        console
    }

    /// Updates bars (terminal) or prints progress lines (plain) from the
    /// workloads' counters, on its own thread so the driver never waits.
    fn start_ticker(&self) {
        let inner = Arc::downgrade(&self.inner);
        let every = if self.inner.opts.terminal {
            Duration::from_millis(100)
        } else {
            self.inner.opts.progress_every.min(Duration::from_secs(1))
        };
        std::thread::spawn(move || loop {
            std::thread::sleep(every);
            let Some(inner) = inner.upgrade() else {
                return;
            };
            if inner.stopped.load(Ordering::Relaxed) {
                return;
            }
            inner.tick();
        });
    }

    /// A line for the person watching, above any progress bars.
    pub(crate) fn line(&self, text: &str) {
        self.inner.line(text);
    }

    pub(crate) fn info(&self, text: &str) {
        if self.inner.opts.verbosity > Verbosity::Quiet {
            self.line(&format!("lmcache-e2e: {text}"));
        }
    }

    pub(crate) fn warn(&self, text: &str) {
        let w = self.inner.paint("warning", Colour::Yellow);
        self.line(&format!("lmcache-e2e: {w}: {text}"));
    }

    /// The final verdict table, on stdout.
    pub(crate) fn table(&self, results: &RunResults) {
        self.inner.stop_bars();
        let text = terminal::render(results, self.inner.opts.colour);
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "{text}");
        let _ = out.flush();
    }

    /// A block that CI logs fold (GitHub's `::group::`, Buildkite's `---`).
    pub(crate) fn group<T>(&self, title: &str, f: impl FnOnce() -> T) -> T {
        let (open, close) = groups::markers(self.inner.opts.ci, title, false);
        if let Some(o) = &open {
            self.line(o);
        }
        let r = f();
        if let Some(c) = &close {
            self.line(c);
        }
        r
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
    }
}

#[derive(Clone, Copy)]
enum Colour {
    Green,
    Red,
    Yellow,
    Dim,
}

impl Inner {
    fn line(&self, text: &str) {
        match &self.multi {
            Some(m) if !self.stopped.load(Ordering::Relaxed) => {
                let _ = m.println(text);
            }
            _ => {
                let mut err = std::io::stderr().lock();
                let _ = writeln!(err, "{text}");
            }
        }
    }

    fn paint(&self, text: &str, c: Colour) -> String {
        if !self.opts.colour {
            return text.to_string();
        }
        let code = match c {
            Colour::Green => "32",
            Colour::Red => "31",
            Colour::Yellow => "33",
            Colour::Dim => "2",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Vec<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tick(&self) {
        let mut lines = Vec::new();
        for r in self.running().iter_mut() {
            let s = r.progress.snapshot();
            match &r.bar {
                Some(bar) => {
                    bar.set_length(s.total.max(1));
                    bar.set_position(s.done);
                    bar.set_message(bar_message(&s));
                }
                None => {
                    if r.last_stage != s.stage {
                        r.last_stage = s.stage.clone();
                        r.last_fraction = 0.0;
                    }
                    let fraction = if s.total > 0 {
                        s.done as f64 / s.total as f64
                    } else {
                        0.0
                    };
                    let since = r.last_line.elapsed();
                    if plain_due(since, self.opts.progress_every, fraction, r.last_fraction) {
                        r.last_line = Instant::now();
                        r.last_fraction = fraction;
                        lines.push(format!(
                            "lmcache-e2e: [{}] {}: {}",
                            r.test,
                            r.role,
                            plain_progress(&s)
                        ));
                    }
                }
            }
        }
        if self.opts.verbosity > Verbosity::Quiet {
            for l in lines {
                self.line(&l);
            }
        }
    }

    fn started(&self, test: &str, role: Role, engine: &str, progress: &Arc<Progress>) {
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new(1));
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} {msg} {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(format!("{test} → {role} ({engine})"));
            bar
        });
        self.running().push(Running {
            test: test.to_string(),
            role,
            progress: progress.clone(),
            bar,
            last_line: Instant::now(),
            last_fraction: 0.0,
            last_stage: String::new(),
        });
    }

    fn step_done(&self, test: &str, role: Role) {
        let mut running = self.running();
        if let Some(i) = running
            .iter()
            .position(|r| r.test == test && r.role == role)
        {
            let r = running.remove(i);
            if let Some(bar) = r.bar {
                bar.finish_and_clear();
            }
        }
    }

    fn stop_bars(&self) {
        self.engine_started(None);
        for r in self.running().drain(..) {
            if let Some(bar) = r.bar {
                bar.finish_and_clear();
            }
        }
        self.stopped.store(true, Ordering::Relaxed);
        if let Some(m) = &self.multi {
            let _ = m.clear();
        }
    }

    /// On a terminal, a spinner per engine starting: its elapsed time and
    /// latest word, replaced by the ready line.
    fn starting_bar(&self, name: &str) {
        let Some(multi) = &self.multi else {
            return;
        };
        let bar = multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {elapsed} {wide_msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(format!("starting `{name}`"));
        bar.enable_steady_tick(Duration::from_millis(100));
        self.starting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((name.to_string(), bar));
    }

    /// Updates the engine's spinner; false when there is none (off a terminal).
    fn starting_word(&self, name: &str, word: &str) -> bool {
        let bars = self.starting.lock().unwrap_or_else(|p| p.into_inner());
        match bars.iter().find(|(n, _)| n == name) {
            Some((_, bar)) => {
                bar.set_message(word.to_string());
                true
            }
            None => false,
        }
    }

    /// Clears the spinner of `name` (every one with `None`).
    fn engine_started(&self, name: Option<&str>) {
        let mut bars = self.starting.lock().unwrap_or_else(|p| p.into_inner());
        bars.retain(|(n, bar)| {
            let done = name.is_none_or(|name| n == name);
            if done {
                bar.finish_and_clear();
            }
            !done
        });
    }

    fn verdict_word(&self, v: Verdict) -> String {
        match v {
            Verdict::Pass => self.paint("pass", Colour::Green),
            Verdict::Fail => self.paint("FAIL", Colour::Red),
            Verdict::Warning => self.paint("warning", Colour::Yellow),
            Verdict::Flaky => self.paint("flaky", Colour::Yellow),
            Verdict::Inconclusive => self.paint("inconclusive", Colour::Yellow),
        }
    }

    fn status_word(&self, s: TestStatus) -> String {
        let (word, c) = match s {
            TestStatus::Passed => ("passed", Colour::Green),
            TestStatus::Warning => ("passed with warnings", Colour::Yellow),
            TestStatus::Flaky => ("flaky", Colour::Yellow),
            TestStatus::Inconclusive => ("inconclusive", Colour::Yellow),
            TestStatus::Failed => ("FAILED", Colour::Red),
            TestStatus::Error => ("could not run", Colour::Red),
            TestStatus::Interrupted => ("interrupted", Colour::Yellow),
            TestStatus::NotRun | TestStatus::Running => ("not run", Colour::Dim),
        };
        self.paint(word, c)
    }
}

/// A plain progress line is due when both `every` (~10 s) and 10 % of the
/// work have passed since the last one: whichever is rarer, so a CI log
/// stays short.
fn plain_due(since_last: Duration, every: Duration, fraction: f64, last_fraction: f64) -> bool {
    since_last >= every && fraction - last_fraction >= PLAIN_STEP
}

fn eta(s: &Snapshot) -> String {
    match s.eta_secs() {
        Some(e) if s.done < s.total => format!(", ETA {e:.0} s"),
        _ => String::new(),
    }
}

fn bar_message(s: &Snapshot) -> String {
    let failed = if s.failed > 0 {
        format!(", {} failed", s.failed)
    } else {
        String::new()
    };
    format!("{} {:.1}/s{failed}{}", s.stage, s.rate(), eta(s))
}

fn plain_progress(s: &Snapshot) -> String {
    format!(
        "{} {}/{}, {:.1}/s, {} failed{}",
        s.stage,
        s.done,
        s.total,
        s.rate(),
        s.failed,
        eta(s)
    )
}

impl Console {
    /// An engine not ready yet: the log's last line says how far it got;
    /// without one, what its address answers (or that nothing does).
    fn still_starting(&self, name: &str, secs: f64, last_line: Option<&str>, probe: &str) {
        let word = match last_line {
            Some(l) => clean(l),
            None => format!("nothing ready yet: {}", clean(probe)),
        };
        if !self.inner.starting_word(name, &word) {
            self.info(&format!(
                "engine `{name}` still starting ({secs:.0} s): {word}"
            ));
        }
    }

    /// One check's verdict, shown as it is judged (`--verbose`).
    fn judged(&self, test: &str, check: &CheckOutcome) {
        let value = check
            .value
            .map_or("no value".to_string(), |v| format!("{v:.4} {}", check.unit));
        self.line(&format!(
            "lmcache-e2e: [{test}] {}: {} ({value}, threshold {} {} {}; {}){}",
            check.name,
            self.inner.verdict_word(check.verdict),
            check.op,
            check.threshold,
            check.unit,
            crate::report::format::evidence(check),
            check
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ));
    }

    fn test_finished(&self, t: &TestRecord) {
        for caveat in &t.caveats {
            self.warn(&format!("[{}] {caveat}", t.name));
        }
        for note in &t.notes {
            self.info(&format!("[{}] {note}", t.name));
        }
        match &t.error {
            // Skipped (what it needs is not here): its reason says so.
            Some(e) if t.status == TestStatus::NotRun => self.warn(&format!("[{}] {e}", t.name)),
            Some(e) => self.line(&format!(
                "lmcache-e2e: [{}] {}: {e}",
                t.name,
                self.inner.paint("error", Colour::Red)
            )),
            None => self.info(&format!(
                "[{}] {}",
                t.name,
                self.inner.status_word(t.status)
            )),
        }
    }
}

impl Console {
    /// Says what an engine did (started, still starting, ready, died,
    /// killed, gave its GPU memory back); false for any other event.
    fn engine_event(&self, event: &Event<'_>) -> bool {
        let i = &self.inner;
        match event {
            Event::EngineStarting {
                name,
                role,
                url,
                log,
            } => {
                match log {
                    Some(log) => self.info(&format!(
                        "started engine `{name}` ({role}) at {url}, log {}",
                        log.display()
                    )),
                    None => self.info(&format!("using engine `{name}` at {url}")),
                }
                i.starting_bar(name);
            }
            Event::EngineStillStarting {
                name,
                secs,
                last_line,
                probe,
            } => self.still_starting(name, *secs, last_line.as_deref(), probe),
            Event::GpuMemoryAfterStop {
                engines,
                used_mib,
                before_mib,
                secs,
                released,
            } => {
                let who = engines.join("`, `");
                let line = format!(
                    "GPU memory {used_mib:.0} MiB in use {secs:.1} s after `{who}` stopped ({before_mib:.0} MiB before it started)"
                );
                match released {
                    true => self.info(&line),
                    false => self.warn(&format!(
                        "{line}: not released; the next engine may not fit"
                    )),
                }
            }
            Event::EngineReady { name, secs } => {
                i.engine_started(Some(name));
                self.info(&format!("engine `{name}` ready after {secs:.2} s"))
            }
            Event::EngineDied { message } => {
                i.engine_started(None);
                self.warn(message)
            }
            Event::EnginesKilled(names) => self.warn(&format!(
                "killed after the grace period: {}",
                names.join(", ")
            )),
            _ => return false,
        }
        true
    }
}

impl Sink for Console {
    fn event(&self, event: &Event<'_>) -> Result<(), ResultsError> {
        if self.engine_event(event) {
            return Ok(());
        }
        let i = &self.inner;
        let verbose = i.opts.verbosity >= Verbosity::Verbose;
        match event {
            Event::RunStarted {
                suite,
                source,
                results_dir,
            } => self.info(&format!(
                "suite `{suite}` ({source}), results in {}",
                results_dir.display()
            )),
            Event::Info(text) => self.info(text),
            Event::Signal { name, again: false } => self.warn(&format!(
                "{name} received: stopping engines (send it again to kill them now)"
            )),
            Event::Signal { name, again: true } => {
                self.warn(&format!("{name} received again: killing engines"))
            }
            Event::TestStarted {
                test,
                role,
                engine,
                progress,
            } => {
                self.info(&format!("[{test}] running against {role} (`{engine}`)"));
                i.started(test, *role, engine, progress);
            }
            Event::TestSaid { test, text } => self.info(&format!("[{test}] {text}")),
            Event::TestStepDone { test, role } => i.step_done(test, *role),
            Event::AttemptFinished {
                test,
                attempt,
                max,
                retrying: true,
            } => self.warn(&format!(
                "[{test}] a retryable check failed on attempt {attempt} of {max}: running the test again"
            )),
            Event::AttemptFinished { .. } => {}
            Event::CheckJudged { test, check } if verbose => self.judged(test, check),
            Event::CheckJudged { .. } => {}
            Event::TestFinished(t) => self.test_finished(t),
            // The end of the run: whatever bars an interruption or a dead
            // engine left are cleared before the logs go under them.
            Event::LogTail { .. } => i.stop_bars(),
            Event::Checkpoint(_) => {}
            Event::RunFinished(results) => self.table(results),
            // Said by `engine_event`.
            Event::EngineStarting { .. }
            | Event::EngineStillStarting { .. }
            | Event::GpuMemoryAfterStop { .. }
            | Event::EngineReady { .. }
            | Event::EngineDied { .. }
            | Event::EnginesKilled(_) => {}
        }
        Ok(())
    }
}

/// An engine's log line on our console: its colours and other control
/// characters (a terminal obeys ESC) dropped.
fn clean(line: &str) -> String {
    crate::results::strip_ansi(line)
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_progress_waits_for_both_time_and_work() {
        let s = Duration::from_secs;
        let every = PLAIN_EVERY;
        assert!(
            !plain_due(s(30), every, 0.05, 0.0),
            "time passed, too little work"
        );
        assert!(
            !plain_due(s(3), every, 0.9, 0.0),
            "much work, too little time"
        );
        assert!(plain_due(s(10), every, 0.1, 0.0));
        assert!(!plain_due(s(60), every, 0.5, 0.45));
    }

    #[test]
    fn progress_text_says_rate_failures_and_eta() {
        let snap = Snapshot {
            stage: "query round".into(),
            total: 80,
            done: 20,
            failed: 2,
            elapsed_secs: 10.0,
        };
        assert_eq!(
            plain_progress(&snap),
            "query round 20/80, 2.0/s, 2 failed, ETA 30 s"
        );
        assert_eq!(bar_message(&snap), "query round 2.0/s, 2 failed, ETA 30 s");
    }
}
