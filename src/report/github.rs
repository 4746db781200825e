//! GitHub: the job summary, step outputs, and the sticky PR comment (found
//! again by its hidden marker and updated in place, through octocrab).

use octocrab::models::issues::Comment;
use octocrab::models::CommentId;
use octocrab::{Octocrab, Page};
use std::io::Write;
use std::path::Path;

use super::github_api::{error_text, send, with_retry, Failure, Verb};
use super::ReportError;

pub(crate) use super::github_api::Backoff;

/// Appends to `$GITHUB_STEP_SUMMARY` (other steps may have written to it).
pub(crate) fn append_step_summary(path: &Path, body: &str) -> Result<(), ReportError> {
    append(path, format!("{body}\n").as_bytes())
}

/// Appends `name=value` outputs to `$GITHUB_OUTPUT`, in the multiline form so
/// no value can smuggle in another output.
pub(crate) fn write_outputs(path: &Path, outputs: &[(&str, String)]) -> Result<(), ReportError> {
    let mut text = String::new();
    for (name, value) in outputs {
        let mut delimiter = format!("lmcache_e2e_{}", rand::random::<u64>());
        while value.contains(&delimiter) {
            delimiter = format!("lmcache_e2e_{}", rand::random::<u64>());
        }
        text.push_str(&format!("{name}<<{delimiter}\n{value}\n{delimiter}\n"));
    }
    append(path, text.as_bytes())
}

fn append(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let err = |source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)
}

/// The pull request to comment on.
#[derive(Debug, Clone)]
pub(crate) struct PrTarget {
    /// `GITHUB_API_URL`: `https://api.github.com`, or GitHub Enterprise's
    /// `https://HOST/api/v3`.
    pub api_url: String,
    pub owner: String,
    pub repo: String,
    pub number: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CommentOutcome {
    Created(u64),
    Updated(u64),
    /// Not posted, for a reason the job should not fail over.
    Skipped(String),
}

fn permission_hint(target: &PrTarget, why: &str) -> String {
    format!(
        "the token may not comment on {}/{}#{} ({why}); the job needs `permissions: pull-requests: write`. \
         Pull requests from forks get a read-only token: run the suite on `pull_request`, upload the results \
         directory as an artifact, and post the comment from a `workflow_run` job with \
         `lmcache-e2e report --pr-comment` (examples/github/)",
        target.owner, target.repo, target.number
    )
}

/// An API client for `api_url` with `token`; errors never carry the token.
fn client(api_url: &str, token: &str) -> Result<Octocrab, ReportError> {
    let scrub = |s: String| s.replace(token, "***");
    Octocrab::builder()
        .base_uri(api_url)
        .map_err(|e| {
            ReportError::Github(format!(
                "GITHUB_API_URL `{api_url}` is not a URL: {}",
                error_text(&e)
            ))
        })?
        .personal_token(token.to_string())
        .build()
        .map_err(|e| ReportError::Github(scrub(error_text(&e))))
}

/// What GitHub itself says a `workflow_run` was for: the commit it ran on,
/// the repository that commit came from, and the pull requests GitHub
/// linked (none for a fork).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunHead {
    pub head_sha: String,
    pub head_repository: Option<String>,
    pub pull_requests: Vec<u64>,
}

/// The open pull request of `repo` whose head is `head.head_sha` (from
/// `head.head_repository`), asked of GitHub: the PRs the event lists, else
/// those the REST API lists for the commit. `Ok(None)` when there is none
/// or its head has moved on.
pub(crate) async fn pr_with_head(
    api_url: &str,
    (owner, repo): (&str, &str),
    token: &str,
    head: &RunHead,
    backoff: &Backoff,
    say: &(dyn Fn(String) + Send + Sync),
) -> Result<Option<u64>, ReportError> {
    let scrub = |s: String| s.replace(token, "***");
    let crab = client(api_url, token)?;
    let ours = |pr: &serde_json::Value| {
        let str_at = |p: &str| pr.pointer(p).and_then(serde_json::Value::as_str);
        str_at("/head/sha") == Some(head.head_sha.as_str())
            && str_at("/state") == Some("open")
            && head
                .head_repository
                .as_deref()
                .is_none_or(|r| str_at("/head/repo/full_name") == Some(r))
    };
    let ask = |uri: String, what: &'static str| {
        let crab = crab.clone();
        async move {
            with_retry(backoff, what, &scrub, say, || {
                send::<serde_json::Value>(&crab, Verb::Get, &uri)
            })
            .await
            .map_err(|(_, text)| ReportError::Github(scrub(format!("{owner}/{repo}: {text}"))))
        }
    };
    if head.pull_requests.is_empty() {
        let listed = ask(
            format!("/repos/{owner}/{repo}/commits/{}/pulls", head.head_sha),
            "listing the pull requests of the run's commit",
        )
        .await?;
        return Ok(listed
            .as_array()
            .into_iter()
            .flatten()
            .find(|pr| ours(pr))
            .and_then(|pr| pr.get("number").and_then(serde_json::Value::as_u64)));
    }
    for n in &head.pull_requests {
        let pr = ask(
            format!("/repos/{owner}/{repo}/pulls/{n}"),
            "reading the run's pull request",
        )
        .await?;
        if ours(&pr) {
            return Ok(Some(*n));
        }
    }
    Ok(None)
}

/// Finds this suite's comment (by `marker`) on the pull request and updates
/// it, or creates one. `fallback` is posted instead if GitHub refuses
/// `body` (e.g. too long after all).
pub(crate) async fn upsert_comment(
    target: &PrTarget,
    token: Option<&str>,
    marker: &str,
    body: &str,
    fallback: &str,
    backoff: &Backoff,
    say: &(dyn Fn(String) + Send + Sync),
) -> Result<CommentOutcome, ReportError> {
    let Some(token) = token.filter(|t| !t.trim().is_empty()) else {
        return Ok(CommentOutcome::Skipped(
            "no GitHub token (GITHUB_TOKEN is unset), so no PR comment; pass the workflow's token with `pull-requests: write`".into(),
        ));
    };
    // Never let the token leak through a message, whatever produced it.
    let scrub = |s: String| s.replace(token, "***");
    let crab = client(&target.api_url, token)?;
    let fail = |(failure, text): (Failure, String)| match failure {
        Failure::Forbidden(_) => Ok(CommentOutcome::Skipped(scrub(permission_hint(
            target, &text,
        )))),
        _ => Err(ReportError::Github(scrub(format!(
            "{}/{}#{} at {}: {text}",
            target.owner, target.repo, target.number, target.api_url
        )))),
    };
    let comments = format!(
        "/repos/{}/{}/issues/{}/comments",
        target.owner, target.repo, target.number
    );
    let mut text = body;
    loop {
        let payload = serde_json::json!({ "body": text });
        // Every attempt looks for the comment again, so a retry is safe: a
        // create that timed out or got a 5xx may still have landed, and is
        // then updated instead of posted twice.
        let posted = with_retry(backoff, "posting the PR comment", &scrub, say, || {
            update_or_create(&crab, target, &comments, marker, &payload)
        })
        .await;
        match posted {
            Err((Failure::Unprocessable(why), _)) if text != fallback => {
                say(format!(
                    "GitHub refused the PR comment ({}); posting the short form",
                    scrub(why)
                ));
                text = fallback;
            }
            Err(e) => return fail(e),
            Ok(outcome) => return Ok(outcome),
        }
    }
}

/// One attempt: find this suite's comment, then update it or create one.
async fn update_or_create(
    crab: &Octocrab,
    target: &PrTarget,
    comments: &str,
    marker: &str,
    payload: &serde_json::Value,
) -> Result<CommentOutcome, Failure> {
    let existing = find_comment(crab, comments, marker)
        .await
        .map_err(|f| f.within("listing the PR comments"))?;
    match existing {
        // PATCH, as GitHub documents it (octocrab's update_comment POSTs,
        // which only github.com happens to accept).
        Some(id) => {
            let uri = format!(
                "/repos/{}/{}/issues/comments/{}",
                target.owner,
                target.repo,
                CommentId(id)
            );
            send::<Comment>(crab, Verb::Patch(payload), &uri)
                .await
                .map(|c| CommentOutcome::Updated(c.id.0))
                .map_err(|f| f.within(&format!("updating comment {id}")))
        }
        None => send::<Comment>(crab, Verb::Post(payload), comments)
            .await
            .map(|c| CommentOutcome::Created(c.id.0))
            .map_err(|f| f.within("creating the comment")),
    }
}

/// The id of the first comment carrying `marker`, following every page.
async fn find_comment(
    crab: &Octocrab,
    comments: &str,
    marker: &str,
) -> Result<Option<u64>, Failure> {
    let mut uri = format!("{comments}?per_page=100");
    loop {
        let page: Page<Comment> = send(crab, Verb::Get, &uri).await?;
        if let Some(c) = page
            .items
            .iter()
            .find(|c| c.body.as_deref().is_some_and(|b| b.contains(marker)))
        {
            return Ok(Some(c.id.0));
        }
        match page.next {
            Some(next) => uri = next.to_string(),
            None => return Ok(None),
        }
    }
}

/// `owner/name` split, or a clear error.
/// Only GitHub's own name characters pass, since both parts go into URLs.
pub(crate) fn split_repo(repo: &str) -> Option<(String, String)> {
    let (owner, name) = repo.split_once('/')?;
    let valid = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (valid(owner) && valid(name)).then(|| (owner.to_string(), name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_use_delimiters_so_values_cannot_add_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        std::fs::write(&path, "earlier=1\n").unwrap();
        write_outputs(&path, &[("verdict", "failed\nverdict=passed".into())]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("earlier=1\nverdict<<lmcache_e2e_"),
            "{text}"
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[2], "failed");
        assert_eq!(lines[3], "verdict=passed");
        assert_eq!(lines[4], lines[1].trim_start_matches("verdict<<"));
    }

    #[test]
    fn repo_names() {
        assert_eq!(
            split_repo("LMCache/LMCache"),
            Some(("LMCache".into(), "LMCache".into()))
        );
        assert_eq!(split_repo("LMCache"), None);
        assert_eq!(split_repo("a/b/c"), None);
        assert_eq!(split_repo("a/b?x=1"), None);
        assert_eq!(split_repo("a /b"), None);
        assert_eq!(
            split_repo("vllm-project/vllm.ascend_x"),
            Some(("vllm-project".into(), "vllm.ascend_x".into()))
        );
    }
}
