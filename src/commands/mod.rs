//! One module per subcommand; this one dispatches and holds what several
//! share (loading a suite, the console, the delivery plan).

mod calibrate;
mod ci;
mod cleanup;
pub(crate) mod compare;
mod config_show;
mod export;
mod gpus;
mod history;
mod list;
mod merge;
mod recommend;
mod report;
mod setup;
mod sim;

use crate::ci_env::CiEnv;
use crate::cli::{
    Cli, Command, ConfigCommand, ReportFlags, SetupArgs, SetupCommand, SimCommand, SuiteArgs,
};
use crate::config::{self, Loaded};
use crate::console::{Console, Options, Verbosity};
use crate::error::Error;
use crate::report::publish::{CommentPlan, Plan, RunHead, Trust};

pub(crate) async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Ci(args) => ci::run(args).await,
        Command::List(args) => list::run(&args),
        Command::Config(ConfigCommand::Show(args)) => config_show::run(&args),
        Command::Config(ConfigCommand::Schema) => {
            let schema = serde_json::to_string_pretty(&config::schema::suite())
                .expect("a schema serializes");
            Out::new().line(schema);
            Ok(())
        }
        Command::Report(args) => report::run(args).await,
        Command::Recommend(args) => recommend::run(&args).await,
        Command::Setup(SetupArgs {
            step: None,
            check: true,
            suite,
        }) => setup::check(&suite),
        Command::Setup(SetupArgs {
            step: None, suite, ..
        }) => setup::run(&suite),
        Command::Setup(SetupArgs {
            step: Some(SetupCommand::Data(args)),
            ..
        }) => setup::data(&args),
        Command::Gpus(args) => gpus::run(&args).await,
        Command::Compare(args) => compare::command(&args),
        Command::Cleanup(args) => cleanup::run(args).await,
        Command::Sim(SimCommand::Serve(args)) => sim::run(args).await,
        Command::Calibrate(args) => calibrate::run(&args),
        Command::Merge(args) => merge::run(args).await,
        Command::Export(args) => export::run(&args),
    }
}

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
}

pub(crate) fn load_suite(args: &SuiteArgs) -> Result<Loaded, Error> {
    let env = |k: &str| std::env::var(k).ok();
    Ok(config::load(&config::LoadRequest {
        preset: args.preset.as_deref(),
        file: args.suite.as_deref(),
        overlays: &args.overlays,
        sets: &args.sets,
        env: &env,
    })?)
}

fn console(verbosity: Verbosity, ci: &CiEnv) -> Console {
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
fn delivery_plan(flags: &ReportFlags, ci: &CiEnv, auto: bool) -> Plan {
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
