//! Delivering a run's reports: summary.md and junit.xml in the results
//! directory, then wherever the flags (or the CI `ci` runs on) ask for, the
//! same for `ci` at its end and for `report` from disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) use super::github::RunHead;
use super::github::{self, Backoff, CommentOutcome, PrTarget};
use super::render::{marker, safe_id, Destination, Detail, Templates};
use super::{buildkite, junit, ReportError};
use crate::results::{write_atomic, RunResults};

/// What to deliver where: made by the command from its flags and the CI's
/// environment, so reporting itself reads neither.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// Append to this job summary file (`$GITHUB_STEP_SUMMARY`).
    pub step_summary: Option<PathBuf>,
    /// Asked for a job summary, but the CI gave no file: say so.
    pub step_summary_missing: bool,
    /// Write step outputs here (`$GITHUB_OUTPUT`).
    pub step_outputs: Option<PathBuf>,
    /// `::error` lines for the job's page, one per failed check.
    pub github_annotations: bool,
    pub comment: Option<CommentPlan>,
    pub buildkite_annotate: bool,
    pub buildkite_upload: bool,
    /// Also write the JUnit XML here.
    pub junit: Option<PathBuf>,
    pub templates: Option<PathBuf>,
    /// Keeps one comment and one annotation per id.
    pub comment_id: Option<String>,
    /// A report that cannot be delivered fails instead of warning.
    pub strict: bool,
}

/// The sticky PR comment: where it goes and with what token.
#[derive(Debug, Clone)]
pub(crate) struct CommentPlan {
    pub api_url: String,
    /// `--repo`; else as `trust` allows.
    pub repo: Option<String>,
    pub job_repository: Option<String>,
    /// `--pr`; else as `trust` allows.
    pub pr: Option<u64>,
    pub event_pr: Option<u64>,
    pub token: Option<String>,
    pub backoff_unit: Option<Duration>,
    pub trust: Trust,
}

/// Whom the comment's destination may come from. A `workflow_run` job holds
/// a write token and renders an artifact a fork's pull request produced:
/// results.json then says nothing about where to write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Trust {
    /// No GitHub event (a developer's shell, Buildkite): results.json may
    /// name the repository and pull request.
    #[default]
    Results,
    /// A `pull_request` job: the job's repository and the event's PR.
    Event,
    /// A `workflow_run` job: the job's repository, and the open PR GitHub
    /// says has the run's head commit; results.json must record that commit.
    WorkflowRun(RunHead),
}

/// Where the reports went, for the caller to print.
#[derive(Debug, Default)]
pub(crate) struct Delivered {
    pub summary_md: PathBuf,
    pub warnings: Vec<String>,
    /// Workflow commands for the caller to print on stdout.
    pub annotations: Vec<String>,
}

/// Renders and delivers every report the plan asks for; `say` tells what
/// happened (and waits for rate limits) as it goes. Delivery problems are
/// warnings unless the plan is strict.
pub(crate) async fn publish(
    results: &RunResults,
    plan: &Plan,
    say: &(dyn Fn(String) + Send + Sync),
) -> Result<Delivered, ReportError> {
    let flags = plan;
    let templates = Templates::load(flags.templates.as_deref())?;
    let dir = &results.results_dir;
    let id = flags
        .comment_id
        .clone()
        .unwrap_or_else(|| results.suite.clone());
    let (summary_md, junit_path) = write_local(results, flags, &templates, &id)?;
    let mut delivered = Delivered {
        summary_md: summary_md.clone(),
        warnings: Vec::new(),
        annotations: if flags.github_annotations {
            super::glance::github_annotations(results)
        } else {
            Vec::new()
        },
    };
    let mut warn = |e: ReportError| -> Result<(), ReportError> {
        if flags.strict {
            return Err(e);
        }
        delivered.warnings.push(e.to_string());
        Ok(())
    };

    if let Some(path) = &flags.step_summary {
        let (body, _) = templates.render_fitting(Destination::Summary, results, &id)?;
        if let Err(e) = github::append_step_summary(path, &body) {
            warn(e)?;
        }
    }
    if flags.step_summary_missing {
        warn(ReportError::Github(
            "GITHUB_STEP_SUMMARY is not set, so there is no job summary to write (is this a GitHub Actions step?)".into(),
        ))?;
    }
    if let Some(path) = &flags.step_outputs {
        let outputs = [
            ("verdict", verdict_word(results).to_string()),
            ("results-dir", dir.display().to_string()),
            ("summary", summary_md.display().to_string()),
            ("junit", junit_path.display().to_string()),
        ];
        if let Err(e) = github::write_outputs(path, &outputs) {
            warn(e)?;
        }
    }
    if let Some(plan) = &flags.comment {
        match comment(results, plan, &templates, &id, say).await {
            Ok(CommentOutcome::Created(n)) => {
                say(format!(
                    "created the PR comment (id {n}, comment id `{id}`)"
                ));
                comment_output(flags, n, &mut warn)?;
            }
            Ok(CommentOutcome::Updated(n)) => {
                say(format!(
                    "updated the PR comment (id {n}, comment id `{id}`)"
                ));
                comment_output(flags, n, &mut warn)?;
            }
            Ok(CommentOutcome::Skipped(why)) => warn(ReportError::CommentSkipped(why))?,
            Err(e) => warn(e)?,
        }
    }

    if flags.buildkite_annotate {
        let (body, _) = templates.render_fitting(Destination::Buildkite, results, &id)?;
        let context = format!("lmcache-e2e-{}", safe_id(&id));
        if let Err(e) = buildkite::annotate(&context, buildkite::style(results), &body).await {
            warn(e)?;
        }
    }
    if flags.buildkite_upload {
        if let Err(e) = buildkite::upload(dir).await {
            warn(e)?;
        }
    }
    Ok(delivered)
}

/// The reports that stay with the results: `summary.md`, `junit.xml` (and
/// a copy where the plan asks); their paths.
fn write_local(
    results: &RunResults,
    flags: &Plan,
    templates: &Templates,
    id: &str,
) -> Result<(PathBuf, PathBuf), ReportError> {
    let dir = &results.results_dir;
    let summary = templates.render(Destination::Summary, results, Detail::Full, id)?;
    let summary_md = dir.join("summary.md");
    write_atomic(&summary_md, summary.as_bytes())?;
    let junit_xml = junit::render(results);
    let junit_path = dir.join("junit.xml");
    write_atomic(&junit_path, junit_xml.as_bytes())?;
    if let Some(extra) = &flags.junit {
        write_file(extra, &junit_xml)?;
    }
    Ok((summary_md, junit_path))
}

/// The comment's GitHub id as the step's `comment-id` output, for a later
/// step that links or edits it.
fn comment_output(
    flags: &Plan,
    id: u64,
    warn: &mut dyn FnMut(ReportError) -> Result<(), ReportError>,
) -> Result<(), ReportError> {
    match &flags.step_outputs {
        Some(path) => match github::write_outputs(path, &[("comment-id", id.to_string())]) {
            Ok(()) => Ok(()),
            Err(e) => warn(e),
        },
        None => Ok(()),
    }
}

/// Under `workflow_run`: the artifact must be of the run GitHub reports on
/// (results.json's commit is the event's `head_sha`), and the PR is the open
/// one GitHub says has that head. `Ok(Err(why))`: no PR to comment on.
async fn pr_of_run(
    results: &RunResults,
    plan: &CommentPlan,
    repo: (&str, &str),
    head: &RunHead,
    backoff: &Backoff,
    say: &(dyn Fn(String) + Send + Sync),
) -> Result<Result<u64, String>, ReportError> {
    if results.meta.commit.as_deref() != Some(head.head_sha.as_str()) {
        return Err(ReportError::Untrusted(format!(
            "results.json records commit {}, but the workflow_run event is for {}: this artifact is not that run's;              refusing to comment (pass --pr N to choose the pull request yourself)",
            results.meta.commit.as_deref().unwrap_or("(none)"),
            head.head_sha
        )));
    }
    let Some(token) = plan.token.as_deref().filter(|t| !t.trim().is_empty()) else {
        return Ok(Err(
            "no GitHub token (GITHUB_TOKEN is unset), so the run's pull request cannot be looked up".into(),
        ));
    };
    Ok(
        match github::pr_with_head(&plan.api_url, repo, token, head, backoff, say).await? {
            Some(n) => {
                say(format!(
                    "the workflow_run is for {}/{}#{n} (head {})",
                    repo.0, repo.1, head.head_sha
                ));
                Ok(n)
            }
            None => Err(format!(
                "no open pull request of {}/{} has head {} (from {}): it was closed or pushed to since",
                repo.0,
                repo.1,
                head.head_sha,
                head.head_repository.as_deref().unwrap_or("its repository")
            )),
        },
    )
}

fn write_file(path: &Path, text: &str) -> Result<(), ReportError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|source| ReportError::Write {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::write(path, text).map_err(|source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// `passed`, `inconclusive`, `failed`, `interrupted` or `error`: the
/// action's `verdict`.
pub(crate) fn verdict_word(results: &RunResults) -> &'static str {
    use crate::results::RunStatus;
    match results.status {
        RunStatus::Passed => "passed",
        RunStatus::Inconclusive => "inconclusive",
        RunStatus::Failed => "failed",
        RunStatus::Interrupted => "interrupted",
        RunStatus::Error | RunStatus::Running => "error",
    }
}

async fn comment(
    results: &RunResults,
    plan: &CommentPlan,
    templates: &Templates,
    id: &str,
    say: &(dyn Fn(String) + Send + Sync),
) -> Result<CommentOutcome, ReportError> {
    let repo = plan.repo.clone().or_else(|| match plan.trust {
        Trust::Results => results
            .meta
            .repository
            .clone()
            .or_else(|| plan.job_repository.clone()),
        Trust::Event | Trust::WorkflowRun(_) => plan.job_repository.clone(),
    });
    let Some(repo) = repo else {
        return Ok(CommentOutcome::Skipped(
            "the repository is unknown: pass --repo OWNER/NAME (or run on GitHub Actions)".into(),
        ));
    };
    let Some((owner, name)) = github::split_repo(&repo) else {
        return Err(ReportError::Github(format!(
            "--repo `{repo}` is not OWNER/NAME"
        )));
    };
    let backoff = Backoff {
        unit: plan.backoff_unit.unwrap_or(Backoff::default().unit),
        ..Backoff::default()
    };
    let number = match (plan.pr, &plan.trust) {
        (Some(n), _) => n,
        (None, Trust::Results) => match results.meta.pr_number.or(plan.event_pr) {
            Some(n) => n,
            None => return Ok(CommentOutcome::Skipped(
                "this run is not for a pull request (none in results.json or the event); pass --pr N"
                    .into(),
            )),
        },
        (None, Trust::Event) => match plan.event_pr {
            Some(n) => n,
            None => {
                return Ok(CommentOutcome::Skipped(
                    "the event is not for a pull request; pass --pr N".into(),
                ))
            }
        },
        (None, Trust::WorkflowRun(head)) => {
            match pr_of_run(results, plan, (&owner, &name), head, &backoff, say).await? {
                Ok(n) => n,
                Err(why) => return Ok(CommentOutcome::Skipped(why)),
            }
        }
    };
    let target = PrTarget {
        api_url: plan.api_url.clone(),
        owner,
        repo: name,
        number,
    };
    let (body, detail) = templates.render_fitting(Destination::PrComment, results, id)?;
    if detail != Detail::Full {
        say("the PR comment leaves out details to fit GitHub's limit".into());
    }
    let (fallback, _) = templates.render_within(
        Destination::PrComment,
        results,
        id,
        Destination::PrComment.limit() / 2,
    )?;
    github::upsert_comment(
        &target,
        plan.token.as_deref(),
        &marker(id),
        &body,
        &fallback,
        &backoff,
        say,
    )
    .await
}
