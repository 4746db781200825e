//! GitHub: the job summary, step outputs, and the sticky PR comment (found
//! again by its hidden marker and updated in place, through octocrab).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use octocrab::models::issues::Comment;
use octocrab::models::CommentId;
use octocrab::{Octocrab, Page};

use super::ReportError;

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

/// Waits between attempts of a request GitHub may answer later.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub attempts: u32,
    pub first: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            attempts: 5,
            first: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CommentOutcome {
    Created(u64),
    Updated(u64),
    /// Not posted, for a reason the job should not fail over.
    Skipped(String),
}

/// How a failed request is handled.
enum Failure {
    /// Try again after a wait (5xx, a rate limit, a dropped connection).
    Transient {
        rate_limited: bool,
        what: String,
    },
    /// The token may not write here: skip, with what to change.
    Forbidden(String),
    /// GitHub refused the body (e.g. too long).
    Unprocessable(String),
    Other(String),
}

fn classify(e: &octocrab::Error) -> Failure {
    match e {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code.as_u16();
            let message = source.message.clone();
            let detail = match &source.errors {
                Some(errors) if !errors.is_empty() => format!(
                    "{message} ({})",
                    errors
                        .iter()
                        .map(|e| e
                            .get("message")
                            .and_then(|m| m.as_str())
                            .map_or_else(|| e.to_string(), str::to_string))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                _ => message.clone(),
            };
            let what = format!("HTTP {status}: {detail}");
            let rate_limited =
                status == 429 || (status == 403 && message.to_lowercase().contains("rate limit"));
            match status {
                _ if rate_limited => Failure::Transient {
                    rate_limited: true,
                    what,
                },
                500..=599 => Failure::Transient {
                    rate_limited: false,
                    what,
                },
                401 | 403 | 404 => Failure::Forbidden(what),
                422 => Failure::Unprocessable(what),
                _ => Failure::Other(what),
            }
        }
        // No JSON error body (a proxy's 502 page) or no connection: both
        // worth another try.
        other => Failure::Transient {
            rate_limited: false,
            what: error_text(other),
        },
    }
}

/// The error and its causes on one line (octocrab's messages may carry a
/// backtrace after the first line).
fn error_text(e: &dyn std::error::Error) -> String {
    let first = |e: &dyn std::error::Error| {
        e.to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let mut parts = vec![first(e)];
    let mut source = e.source();
    while let Some(s) = source {
        let line = first(s);
        if !parts.iter().any(|p| p.contains(&line)) {
            parts.push(line);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Runs `call` until it succeeds, fails for good, or attempts run out.
async fn with_retry<T, F, Fut>(
    backoff: &Backoff,
    what: &str,
    mut call: F,
) -> Result<T, (Failure, String)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, octocrab::Error>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) => match classify(&e) {
                Failure::Transient {
                    rate_limited,
                    what: why,
                } if attempt < backoff.attempts => {
                    // GitHub asks for at least a minute after a secondary
                    // rate limit; 5xx get a doubling wait.
                    let wait = if rate_limited {
                        backoff.first * 60 * attempt
                    } else {
                        backoff.first * 2u32.pow(attempt - 1)
                    };
                    eprintln!(
                        "lmcache-e2e: {what} failed ({why}); attempt {attempt} of {}, retrying in {:.1} s",
                        backoff.attempts,
                        wait.as_secs_f64()
                    );
                    tokio::time::sleep(wait).await;
                }
                failure => {
                    let text = match &failure {
                        Failure::Transient { what: w, .. } => {
                            format!("{w} (gave up after {attempt} attempts)")
                        }
                        Failure::Forbidden(w) | Failure::Unprocessable(w) | Failure::Other(w) => {
                            w.clone()
                        }
                    };
                    return Err((failure, text));
                }
            },
        }
    }
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
) -> Result<CommentOutcome, ReportError> {
    let Some(token) = token.filter(|t| !t.trim().is_empty()) else {
        return Ok(CommentOutcome::Skipped(
            "no GitHub token (GITHUB_TOKEN is unset), so no PR comment; pass the workflow's token with `pull-requests: write`".into(),
        ));
    };
    // Never let the token leak through a message, whatever produced it.
    let scrub = |s: String| s.replace(token, "***");
    let crab = Octocrab::builder()
        .base_uri(target.api_url.as_str())
        .map_err(|e| {
            ReportError::Github(format!(
                "GITHUB_API_URL `{}` is not a URL: {}",
                target.api_url,
                error_text(&e)
            ))
        })?
        .personal_token(token.to_string())
        .build()
        .map_err(|e| ReportError::Github(scrub(error_text(&e))))?;
    let fail = |(failure, text): (Failure, String)| match failure {
        Failure::Forbidden(_) => Ok(CommentOutcome::Skipped(scrub(permission_hint(
            target, &text,
        )))),
        _ => Err(ReportError::Github(scrub(format!(
            "{}/{}#{} at {}: {text}",
            target.owner, target.repo, target.number, target.api_url
        )))),
    };
    let existing = match find_comment(&crab, target, marker, backoff).await {
        Ok(found) => found,
        Err(e) => return fail(e),
    };
    let issues = crab.issues(&target.owner, &target.repo);
    let mut text = body;
    loop {
        let payload = serde_json::json!({ "body": text });
        let posted = match existing {
            // PATCH, as GitHub documents it (octocrab's update_comment
            // POSTs, which only github.com happens to accept).
            Some(id) => with_retry(backoff, "updating the PR comment", || {
                crab.patch::<Comment, _, _>(
                    format!(
                        "/repos/{}/{}/issues/comments/{}",
                        target.owner,
                        target.repo,
                        CommentId(id)
                    ),
                    Some(&payload),
                )
            })
            .await
            .map(|c| CommentOutcome::Updated(c.id.0)),
            None => with_retry(backoff, "creating the PR comment", || {
                issues.create_comment(target.number, text)
            })
            .await
            .map(|c| CommentOutcome::Created(c.id.0)),
        };
        match posted {
            Err((Failure::Unprocessable(why), _)) if text != fallback => {
                eprintln!(
                    "lmcache-e2e: GitHub refused the PR comment ({}); posting the short form",
                    scrub(why)
                );
                text = fallback;
            }
            Err(e) => return fail(e),
            Ok(outcome) => return Ok(outcome),
        }
    }
}

/// The id of the first comment carrying `marker`, following every page.
async fn find_comment(
    crab: &Octocrab,
    target: &PrTarget,
    marker: &str,
    backoff: &Backoff,
) -> Result<Option<u64>, (Failure, String)> {
    let issues = crab.issues(&target.owner, &target.repo);
    let mut page: Page<Comment> = with_retry(backoff, "listing the PR comments", || {
        issues.list_comments(target.number).per_page(100).send()
    })
    .await?;
    loop {
        if let Some(c) = page
            .items
            .iter()
            .find(|c| c.body.as_deref().is_some_and(|b| b.contains(marker)))
        {
            return Ok(Some(c.id.0));
        }
        let next = page.next.clone();
        if next.is_none() {
            return Ok(None);
        }
        match with_retry(backoff, "listing the PR comments", || {
            crab.get_page::<Comment>(&next)
        })
        .await?
        {
            Some(p) => page = p,
            None => return Ok(None),
        }
    }
}

/// `owner/name` split, or a clear error.
pub(crate) fn split_repo(repo: &str) -> Option<(String, String)> {
    let (owner, name) = repo.split_once('/')?;
    (!owner.is_empty() && !name.is_empty() && !name.contains('/'))
        .then(|| (owner.to_string(), name.to_string()))
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
    }
}
