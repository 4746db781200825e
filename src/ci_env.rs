//! What the CI system says about the job, read once: which CI it is, the
//! repository, commit, branch, pull request and build link, and where
//! GitHub wants summaries, outputs and API calls. Everything else takes it
//! from here instead of reading the environment itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::results::RunMeta;

/// The CI system the job runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ci {
    GithubActions,
    Buildkite,
    None,
}

/// Everything the job's environment says that this tool uses.
#[derive(Debug, Clone)]
pub(crate) struct CiEnv {
    /// The CI whose log conventions apply (GitHub's first, if both say so).
    pub ci: Ci,
    /// Each CI's own variable, as a job can run a tool of one CI inside the
    /// other: each gets its report.
    pub on_github: bool,
    pub on_buildkite: bool,
    pub meta: RunMeta,
    /// `$GITHUB_STEP_SUMMARY`.
    pub step_summary: Option<PathBuf>,
    /// `$GITHUB_OUTPUT`.
    pub step_outputs: Option<PathBuf>,
    /// `$GITHUB_REPOSITORY`.
    pub repository: Option<String>,
    /// `$GITHUB_API_URL`, or github.com's.
    pub api_url: String,
    pub token: Option<String>,
    /// `LMCACHE_E2E_GITHUB_BACKOFF_MS`: the unit of retry waits (tests).
    pub backoff_unit: Option<Duration>,
    /// The build id when `BUILD_ID` is unset: GitHub's `<run id>-<attempt>`,
    /// Buildkite's build number.
    pub build_id: Option<String>,
    /// `$GITHUB_EVENT_NAME` on GitHub Actions.
    pub event_name: Option<String>,
    /// What a `workflow_run` event says of the run it reports on.
    pub workflow_run: Option<WorkflowRun>,
    /// The repository's default branch, when the CI says:
    /// `BUILDKITE_PIPELINE_DEFAULT_BRANCH`, or the GitHub event's
    /// `repository.default_branch`.
    pub default_branch: Option<String>,
}

/// A `workflow_run` event's own facts about the run it reports on (GitHub
/// writes them; a fork's artifact cannot change them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WorkflowRun {
    pub head_sha: String,
    /// `owner/name` the head commit came from (a fork's, for a fork's PR).
    pub head_repository: Option<String>,
    /// The PRs GitHub linked (empty when the head is in a fork).
    pub pull_requests: Vec<u64>,
}

impl WorkflowRun {
    fn of(event: &serde_json::Value) -> Option<Self> {
        let run = event.get("workflow_run")?;
        Some(Self {
            head_sha: run.get("head_sha")?.as_str()?.to_string(),
            head_repository: run
                .pointer("/head_repository/full_name")
                .and_then(|v| v.as_str())
                .map(str::to_string),
            pull_requests: run
                .get("pull_requests")
                .and_then(|p| p.as_array())
                .into_iter()
                .flatten()
                .filter_map(|p| p.get("number").and_then(|n| n.as_u64()))
                .collect(),
        })
    }
}

impl CiEnv {
    pub(crate) fn detect(env: &dyn Fn(&str) -> Option<String>) -> Self {
        let set = |k: &str| env(k).filter(|v| !v.is_empty());
        let on_github = set("GITHUB_ACTIONS").as_deref() == Some("true");
        let on_buildkite = set("BUILDKITE").as_deref() == Some("true");
        let ci = if on_github {
            Ci::GithubActions
        } else if on_buildkite {
            Ci::Buildkite
        } else {
            Ci::None
        };
        let event_name = set("GITHUB_EVENT_NAME").filter(|_| on_github);
        let event = set("GITHUB_EVENT_PATH")
            .filter(|_| on_github)
            .and_then(|p| read_event(Path::new(&p)));
        let workflow_run = match event_name.as_deref() {
            Some("workflow_run") => event.as_ref().and_then(WorkflowRun::of),
            _ => None,
        };
        let default_branch = set("BUILDKITE_PIPELINE_DEFAULT_BRANCH")
            .filter(|_| on_buildkite)
            .or_else(|| {
                event
                    .as_ref()?
                    .pointer("/repository/default_branch")?
                    .as_str()
                    .map(str::to_string)
            });
        let build_id = if on_github {
            set("GITHUB_RUN_ID").map(|run| match set("GITHUB_RUN_ATTEMPT") {
                Some(a) => format!("{run}-{a}"),
                None => run,
            })
        } else if on_buildkite {
            set("BUILDKITE_BUILD_NUMBER")
        } else {
            None
        };
        Self {
            build_id,
            default_branch,
            ci,
            on_github,
            on_buildkite,
            event_name,
            workflow_run,
            meta: detect(env),
            step_summary: set("GITHUB_STEP_SUMMARY").map(PathBuf::from),
            step_outputs: set("GITHUB_OUTPUT").map(PathBuf::from),
            repository: set("GITHUB_REPOSITORY"),
            api_url: set("GITHUB_API_URL").unwrap_or_else(|| "https://api.github.com".into()),
            token: set("GITHUB_TOKEN"),
            backoff_unit: set("LMCACHE_E2E_GITHUB_BACKOFF_MS")
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis),
        }
    }

    /// From this process's environment.
    pub(crate) fn from_process() -> Self {
        Self::detect(&|k| std::env::var(k).ok())
    }
}

/// Reads the job's metadata through `env` (a function so tests need not
/// touch the process environment).
fn detect(env: &dyn Fn(&str) -> Option<String>) -> RunMeta {
    let set = |k: &str| env(k).filter(|v| !v.is_empty());
    if set("GITHUB_ACTIONS").as_deref() == Some("true") {
        let event = set("GITHUB_EVENT_PATH").and_then(|p| read_event(Path::new(&p)));
        let pr = event.as_ref().and_then(pr_of_event);
        let head_sha = event
            .as_ref()
            .and_then(|e| e.pointer("/pull_request/head/sha"))
            .and_then(|v| v.as_str())
            .map(str::to_string);
        let run_id = set("GITHUB_RUN_ID");
        let attempt = set("GITHUB_RUN_ATTEMPT");
        let build_url = match (
            set("GITHUB_SERVER_URL"),
            set("GITHUB_REPOSITORY"),
            run_id.as_deref(),
        ) {
            (Some(server), Some(repo), Some(run)) => Some(match attempt.as_deref() {
                Some(a) => format!("{server}/{repo}/actions/runs/{run}/attempts/{a}"),
                None => format!("{server}/{repo}/actions/runs/{run}"),
            }),
            _ => None,
        };
        let ci_build = run_id.as_deref().map(|run| match attempt.as_deref() {
            Some(a) => format!("run {run}, attempt {a}"),
            None => format!("run {run}"),
        });
        let artifact = set("LMCACHE_E2E_ARTIFACT_NAME");
        return RunMeta {
            ci_build,
            // The run's page lists its artifacts at the end.
            artifact_url: artifact
                .as_ref()
                .and(build_url.as_ref())
                .map(|u| format!("{u}#artifacts")),
            artifact,
            repository: set("GITHUB_REPOSITORY"),
            // On pull_request events GITHUB_SHA is the merge commit; the
            // head commit is what the author pushed.
            commit: head_sha.or_else(|| set("GITHUB_SHA")),
            branch: set("GITHUB_HEAD_REF").or_else(|| set("GITHUB_REF_NAME")),
            pr_number: pr.or_else(|| pr_of_ref(set("GITHUB_REF").as_deref())),
            build_url,
            ..RunMeta::default()
        };
    }
    if set("BUILDKITE").as_deref() == Some("true") {
        let build_url = set("BUILDKITE_BUILD_URL").map(|u| match set("BUILDKITE_JOB_ID") {
            Some(job) => format!("{u}#{job}"),
            None => u,
        });
        let artifact = set("LMCACHE_E2E_ARTIFACT_NAME");
        return RunMeta {
            ci_build: set("BUILDKITE_BUILD_NUMBER").map(|n| format!("build {n}")),
            // The job's own entry on the build page has an Artifacts tab.
            artifact_url: artifact.as_ref().and(build_url.clone()),
            artifact,
            repository: set("BUILDKITE_PULL_REQUEST_REPO")
                .or_else(|| set("BUILDKITE_REPO"))
                .and_then(|r| github_repo_of_url(&r)),
            commit: set("BUILDKITE_COMMIT"),
            branch: set("BUILDKITE_BRANCH"),
            // "false" when the build is not for a pull request.
            pr_number: set("BUILDKITE_PULL_REQUEST").and_then(|v| v.parse().ok()),
            build_url,
            ..RunMeta::default()
        };
    }
    RunMeta::default()
}

fn read_event(path: &Path) -> Option<serde_json::Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// The pull request of a `pull_request`/`pull_request_target` event, or of
/// the run a `workflow_run` event reports on (empty for forks, which is why
/// `ci` records the number in results.json).
fn pr_of_event(event: &serde_json::Value) -> Option<u64> {
    event
        .pointer("/pull_request/number")
        .or_else(|| event.pointer("/workflow_run/pull_requests/0/number"))
        .or_else(|| {
            event
                .pointer("/issue/number")
                .filter(|_| event.pointer("/issue/pull_request").is_some())
        })
        .and_then(|v| v.as_u64())
}

fn pr_of_ref(r: Option<&str>) -> Option<u64> {
    r?.strip_prefix("refs/pull/")?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// `owner/name` from a GitHub clone URL (https or ssh), if it is one.
fn github_repo_of_url(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://github.com/")
        .or_else(|| url.strip_prefix("git@github.com:"))
        .or_else(|| url.strip_prefix("ssh://git@github.com/"))?;
    let rest = rest.trim_end_matches('/').trim_end_matches(".git");
    (rest.split('/').count() == 2).then(|| rest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn github_pull_request_uses_the_head_commit_and_pr_number() {
        let dir = tempfile::tempdir().unwrap();
        let event = dir.path().join("event.json");
        std::fs::write(
            &event,
            r#"{"pull_request":{"number":1234,"head":{"sha":"abc123"}}}"#,
        )
        .unwrap();
        let meta = detect(&env_of(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_EVENT_PATH", event.to_str().unwrap()),
            ("GITHUB_REPOSITORY", "LMCache/LMCache"),
            ("GITHUB_SHA", "merge0"),
            ("GITHUB_HEAD_REF", "fix-cache"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_RUN_ID", "99"),
        ]));
        assert_eq!(meta.pr_number, Some(1234));
        assert_eq!(meta.commit.as_deref(), Some("abc123"));
        assert_eq!(meta.branch.as_deref(), Some("fix-cache"));
        assert_eq!(
            meta.build_url.as_deref(),
            Some("https://github.com/LMCache/LMCache/actions/runs/99")
        );
    }

    #[test]
    fn github_names_the_run_attempt_and_the_artifact() {
        let vars = [
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REPOSITORY", "LMCache/LMCache"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_RUN_ID", "99"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("LMCACHE_E2E_ARTIFACT_NAME", "lmcache-e2e-results-e2e-sim-2"),
        ];
        let env = CiEnv::detect(&env_of(&vars));
        assert_eq!(env.build_id.as_deref(), Some("99-2"));
        assert_eq!(env.meta.ci_build.as_deref(), Some("run 99, attempt 2"));
        assert_eq!(
            env.meta.build_url.as_deref(),
            Some("https://github.com/LMCache/LMCache/actions/runs/99/attempts/2")
        );
        assert_eq!(
            env.meta.artifact_url.as_deref(),
            Some("https://github.com/LMCache/LMCache/actions/runs/99/attempts/2#artifacts")
        );
    }

    #[test]
    fn github_ref_gives_the_pr_without_an_event_file() {
        let meta = detect(&env_of(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REF", "refs/pull/77/merge"),
        ]));
        assert_eq!(meta.pr_number, Some(77));
    }

    #[test]
    fn buildkite_variables() {
        let meta = detect(&env_of(&[
            ("BUILDKITE", "true"),
            ("BUILDKITE_REPO", "git@github.com:LMCache/LMCache.git"),
            ("BUILDKITE_COMMIT", "def456"),
            ("BUILDKITE_BRANCH", "dev"),
            ("BUILDKITE_PULL_REQUEST", "false"),
            (
                "BUILDKITE_BUILD_URL",
                "https://buildkite.com/lmcache/e2e/builds/7",
            ),
            ("BUILDKITE_JOB_ID", "j1"),
        ]));
        assert_eq!(meta.repository.as_deref(), Some("LMCache/LMCache"));
        assert_eq!(meta.pr_number, None);
        assert_eq!(
            meta.build_url.as_deref(),
            Some("https://buildkite.com/lmcache/e2e/builds/7#j1")
        );
    }

    #[test]
    fn outside_ci_nothing_is_known() {
        assert_eq!(detect(&env_of(&[])), RunMeta::default());
    }
}
