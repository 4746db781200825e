//! What the subcommands share: standard output, loading the suite, the
//! console, the delivery plan from flags and CI, delivering the reports,
//! and `--history` (for `ci` and `merge`). No subcommand uses another.

use crate::ci_env::CiEnv;
use crate::cli::{HistoryAppend, HistoryFlags, ReportFlags, SuiteArgs};
use crate::config::{self, Loaded};
use crate::console::{Console, Options, Verbosity};
use crate::error::Error;
use crate::gate;
use crate::report::publish::{self, CommentPlan, Plan, RunHead, Trust};
use crate::report::ReportError;
use crate::results::history::{self, Entry};
use crate::results::{RunResults, RunStatus};

/// Standard output a line at a time; a reader that went away (`| head`)
/// ends the output quietly instead of a panic.
pub(crate) struct Out {
    stdout: std::io::Stdout,
    closed: bool,
}

impl Out {
    pub(crate) fn new() -> Self {
        Self {
            stdout: std::io::stdout(),
            closed: false,
        }
    }

    pub(crate) fn line(&mut self, text: impl std::fmt::Display) {
        use std::io::Write as _;
        if !self.closed && writeln!(self.stdout.lock(), "{text}").is_err() {
            self.closed = true;
        }
    }

    /// Text as it is, without a line end of its own.
    pub(crate) fn text(&mut self, text: impl std::fmt::Display) {
        use std::io::Write as _;
        if !self.closed && write!(self.stdout.lock(), "{text}").is_err() {
            self.closed = true;
        }
    }
}

pub(crate) fn load_suite(args: &SuiteArgs) -> Result<Loaded, Error> {
    load(args, None)
}

/// The suite as its control `name` changes it.
pub(crate) fn load_control(args: &SuiteArgs, name: &str) -> Result<Loaded, Error> {
    load(args, Some(name))
}

fn load(args: &SuiteArgs, control: Option<&str>) -> Result<Loaded, Error> {
    let env = |k: &str| std::env::var(k).ok();
    let kinds = crate::workload::test_kinds();
    let req = config::LoadRequest {
        preset: args.preset.as_deref(),
        file: args.suite.as_deref(),
        overlays: &args.overlays,
        sets: &args.sets,
        env: &env,
        kinds: &kinds,
    };
    Ok(match control {
        Some(name) => config::load_control(&req, name)?,
        None => config::load(&req)?,
    })
}

pub(crate) fn console(verbosity: Verbosity, ci: &CiEnv) -> Console {
    Console::new(Options::detect(verbosity, ci.ci))
}

/// Whom the PR comment's destination may come from (README: "Trust").
fn trust(ci: &CiEnv) -> Trust {
    match (ci.event_name.as_deref(), &ci.workflow_run) {
        (Some("workflow_run"), Some(run)) => Trust::WorkflowRun(RunHead {
            head_sha: run.head_sha.clone(),
            head_repository: run.head_repository.clone(),
            pull_requests: run.pull_requests.clone(),
        }),
        // An event that says nothing usable about its run: trust nothing
        // the artifact says either (the PR must then be given with --pr).
        (Some("workflow_run"), None) => Trust::Event,
        (Some(_), _) => Trust::Event,
        (None, _) => Trust::Results,
    }
}

/// What to deliver where, from the flags and the CI. `auto` (for `ci`)
/// adds the job summary on GitHub Actions and the annotation on Buildkite.
pub(crate) fn delivery_plan(flags: &ReportFlags, ci: &CiEnv, auto: bool) -> Plan {
    let summary = flags.github_summary || (auto && ci.on_github);
    Plan {
        step_summary: ci.step_summary.clone().filter(|_| summary),
        step_summary_missing: summary && ci.step_summary.is_none(),
        step_outputs: ci.step_outputs.clone(),
        github_annotations: ci.on_github,
        comment: flags.pr_comment.then(|| CommentPlan {
            api_url: ci.api_url.clone(),
            repo: flags.repo.clone(),
            job_repository: ci.repository.clone(),
            pr: flags.pr,
            event_pr: ci.meta.pr_number,
            token: ci.token.clone(),
            backoff_unit: ci.backoff_unit,
            trust: trust(ci),
        }),
        buildkite_annotate: flags.buildkite_annotate || (auto && ci.on_buildkite),
        buildkite_upload: flags.buildkite_upload,
        junit: flags.junit.clone(),
        templates: flags.templates.clone(),
        comment_id: flags.comment_id.clone(),
        strict: flags.strict_report,
    }
}

/// Publishes, with what happens told on the console; returns summary.md.
pub(crate) async fn deliver(
    results: &RunResults,
    plan: &Plan,
    console: &Console,
) -> Result<std::path::PathBuf, ReportError> {
    let say_to = console.clone();
    let say = move |line: String| say_to.info(&line);
    let delivered = publish::publish(results, plan, &say).await?;
    for w in &delivered.warnings {
        console.warn(w);
    }
    // GitHub reads workflow commands from the step's output, a line each.
    let mut out = Out::new();
    for a in &delivered.annotations {
        out.line(a.clone());
    }
    Ok(delivered.summary_md)
}

/// The store may be any job's cache: this much at most.
const MAX_MIB: u64 = 64;

/// `--history FILE` for `ci` and `merge`: the run shown against the
/// default branch's recent runs, then appended when it is one of them.
pub(crate) fn apply_history(
    flags: &HistoryFlags,
    ci: &CiEnv,
    results: &mut RunResults,
    console: &Console,
) -> Result<(), Error> {
    let Some(path) = &flags.history else {
        return Ok(());
    };
    let store = history::read(path, MAX_MIB)?;
    if store.skipped > 0 {
        console.warn(&format!(
            "history {}: skipped {} line(s) that are no run this tool wrote",
            path.display(),
            store.skipped
        ));
    }
    let entry = Entry::of(results);
    results.history = gate::history::view(&store.entries, &entry);
    match &results.history {
        Some(v) => console.info(&format!(
            "history: compared with the last {} run(s) of the default branch with fingerprint {}",
            v.runs, v.fingerprint
        )),
        None => console.info(&format!(
            "history: no earlier run in {} has this run's fingerprint ({}); nothing to compare",
            path.display(),
            entry.fingerprint.key()
        )),
    }
    if appends(flags, ci, results) {
        if results.shard.as_ref().is_some_and(|m| m.count > 1) {
            // Part of a run is no run: the merge appends the whole.
            console
                .info("history: a shard is not appended; `merge --history` appends the merged run");
        } else {
            history::append(path, &entry)?;
            console.info(&format!("history: appended this run to {}", path.display()));
        }
    }
    results.write()?;
    Ok(())
}

/// Only a run that went to its end adds to the history; `auto` adds runs of
/// the default branch that are no pull request.
fn appends(flags: &HistoryFlags, ci: &CiEnv, results: &RunResults) -> bool {
    let whole = matches!(
        results.status,
        RunStatus::Passed | RunStatus::Inconclusive | RunStatus::Failed
    );
    let default = flags
        .default_branch
        .as_deref()
        .or(ci.default_branch.as_deref())
        .unwrap_or("main");
    whole
        && match flags.history_append {
            HistoryAppend::Always => true,
            HistoryAppend::Never => false,
            HistoryAppend::Auto => {
                results.meta.pr_number.is_none() && results.meta.branch.as_deref() == Some(default)
            }
        }
}
