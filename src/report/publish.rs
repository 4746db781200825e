//! Delivering a run's reports: summary.md and junit.xml in the results
//! directory, then wherever the flags (or the CI `ci` runs on) ask for, the
//! same for `ci` at its end and for `report` from disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::github::{self, Backoff, CommentOutcome, PrTarget};
use super::render::{marker, safe_id, Detail, Target, Templates};
use super::results::{write_atomic, RunResults};
use super::{buildkite, junit, ReportError};
use crate::cli::ReportFlags;

/// What the CI environment tells the reporters, read once.
pub(crate) struct Env<'a> {
    pub get: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    fn var(&self, k: &str) -> Option<String> {
        (self.get)(k).filter(|v| !v.is_empty())
    }

    fn is(&self, k: &str, v: &str) -> bool {
        self.var(k).as_deref() == Some(v)
    }
}

/// Where the reports went, for the caller to print.
#[derive(Debug, Default)]
pub(crate) struct Delivered {
    pub summary_md: PathBuf,
    pub warnings: Vec<String>,
}

/// Renders and delivers every report `flags` asks for. `auto` (set by `ci`)
/// adds the job summary on GitHub Actions and the annotation on Buildkite.
/// Delivery problems are warnings unless `--strict-report`.
pub(crate) async fn publish(
    results: &RunResults,
    flags: &ReportFlags,
    auto: bool,
    env: &Env<'_>,
) -> Result<Delivered, ReportError> {
    let templates = Templates::load(flags.templates.as_deref())?;
    let dir = &results.results_dir;
    let id = flags
        .comment_id
        .clone()
        .unwrap_or_else(|| results.suite.clone());
    let summary = templates.render(Target::Summary, results, Detail::Full, &id)?;
    let summary_md = dir.join("summary.md");
    write_atomic(&summary_md, summary.as_bytes())?;
    let junit_xml = junit::render(results);
    let junit_path = dir.join("junit.xml");
    write_atomic(&junit_path, junit_xml.as_bytes())?;
    if let Some(extra) = &flags.junit {
        write_file(extra, &junit_xml)?;
    }
    let mut delivered = Delivered {
        summary_md: summary_md.clone(),
        warnings: Vec::new(),
    };
    let mut warn = |e: ReportError| -> Result<(), ReportError> {
        if flags.strict_report {
            return Err(e);
        }
        delivered.warnings.push(e.to_string());
        Ok(())
    };

    let on_github = env.is("GITHUB_ACTIONS", "true");
    if flags.github_summary || (auto && on_github) {
        match env.var("GITHUB_STEP_SUMMARY") {
            Some(path) => {
                let (body, _) = templates.render_fitting(Target::Summary, results, &id)?;
                if let Err(e) = github::append_step_summary(Path::new(&path), &body) {
                    warn(e)?;
                }
            }
            None => warn(ReportError::Github(
                "GITHUB_STEP_SUMMARY is not set, so there is no job summary to write (is this a GitHub Actions step?)".into(),
            ))?,
        }
    }
    if let Some(path) = env.var("GITHUB_OUTPUT") {
        let outputs = [
            ("verdict", verdict_word(results).to_string()),
            ("results-dir", dir.display().to_string()),
            ("summary", summary_md.display().to_string()),
            ("junit", junit_path.display().to_string()),
        ];
        if let Err(e) = github::write_outputs(Path::new(&path), &outputs) {
            warn(e)?;
        }
    }
    if flags.pr_comment {
        match comment(results, flags, env, &templates, &id).await {
            Ok(CommentOutcome::Created(n)) => {
                eprintln!("lmcache-e2e: created the PR comment (id {n}, comment id `{id}`)")
            }
            Ok(CommentOutcome::Updated(n)) => {
                eprintln!("lmcache-e2e: updated the PR comment (id {n}, comment id `{id}`)")
            }
            Ok(CommentOutcome::Skipped(why)) => warn(ReportError::CommentSkipped(why))?,
            Err(e) => warn(e)?,
        }
    }

    let on_buildkite = env.is("BUILDKITE", "true");
    if flags.buildkite_annotate || (auto && on_buildkite) {
        let (body, _) = templates.render_fitting(Target::Buildkite, results, &id)?;
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
    for w in &delivered.warnings {
        eprintln!("lmcache-e2e: warning: {w}");
    }
    Ok(delivered)
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

/// `passed`, `failed`, `interrupted` or `error`: the action's `verdict`.
pub(crate) fn verdict_word(results: &RunResults) -> &'static str {
    use super::results::RunStatus;
    match results.status {
        RunStatus::Passed => "passed",
        RunStatus::Failed => "failed",
        RunStatus::Interrupted => "interrupted",
        RunStatus::Error | RunStatus::Running => "error",
    }
}

async fn comment(
    results: &RunResults,
    flags: &ReportFlags,
    env: &Env<'_>,
    templates: &Templates,
    id: &str,
) -> Result<CommentOutcome, ReportError> {
    let repo = flags
        .repo
        .clone()
        .or_else(|| results.meta.repository.clone())
        .or_else(|| env.var("GITHUB_REPOSITORY"));
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
    let pr = flags
        .pr
        .or(results.meta.pr_number)
        .or_else(|| crate::ci_env::detect(env.get).pr_number);
    let Some(number) = pr else {
        return Ok(CommentOutcome::Skipped(
            "this run is not for a pull request (none in results.json or the event); pass --pr N"
                .into(),
        ));
    };
    let target = PrTarget {
        api_url: env
            .var("GITHUB_API_URL")
            .unwrap_or_else(|| "https://api.github.com".into()),
        owner,
        repo: name,
        number,
    };
    let (body, detail) = templates.render_fitting(Target::PrComment, results, id)?;
    if detail != Detail::Full {
        eprintln!("lmcache-e2e: the PR comment leaves out details to fit GitHub's limit");
    }
    let (fallback, _) = templates.render_within(
        Target::PrComment,
        results,
        id,
        Target::PrComment.limit() / 2,
    )?;
    let backoff = Backoff {
        unit: env
            .var("LMCACHE_E2E_GITHUB_BACKOFF_MS")
            .and_then(|v| v.parse().ok())
            .map_or(Backoff::default().unit, Duration::from_millis),
        ..Backoff::default()
    };
    let token = env.var("GITHUB_TOKEN");
    github::upsert_comment(
        &target,
        token.as_deref(),
        &marker(id),
        &body,
        &fallback,
        &backoff,
    )
    .await
}
