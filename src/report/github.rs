//! GitHub: the job summary, step outputs, and the sticky PR comment (found
//! again by its hidden marker and updated in place, through octocrab).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use octocrab::models::issues::Comment;
use octocrab::models::CommentId;
use octocrab::{FromResponse, Octocrab, Page};

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
    /// One second in production. Every wait is a multiple of it (including
    /// what GitHub asks for), so tests can run them all in milliseconds.
    pub unit: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            attempts: 5,
            unit: Duration::from_secs(1),
        }
    }
}

/// The longest wait GitHub may ask for that we sit out: a primary rate limit
/// that resets in half an hour is not worth holding a GPU agent for.
const MAX_WAIT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CommentOutcome {
    Created(u64),
    Updated(u64),
    /// Not posted, for a reason the job should not fail over.
    Skipped(String),
}

/// How a failed request is handled.
#[derive(Debug, PartialEq, Eq)]
enum Failure {
    /// Try again after a wait (5xx, a rate limit, a dropped connection).
    /// `asked` is the wait GitHub named (`retry-after`, or until
    /// `x-ratelimit-reset` once `x-ratelimit-remaining` is 0).
    Transient {
        rate_limited: bool,
        asked: Option<Duration>,
        what: String,
    },
    /// The token may not write here: skip, with what to change.
    Forbidden(String),
    /// GitHub refused the body (e.g. too long).
    Unprocessable(String),
    Other(String),
}

fn transient(what: String) -> Failure {
    Failure::Transient {
        rate_limited: false,
        asked: None,
        what,
    }
}

/// Sorts a non-2xx answer by its status, GitHub's JSON error body when there
/// is one, and the rate-limit headers (which octocrab's typed errors drop).
fn classify(status: StatusCode, headers: &HeaderMap, body: &str, now: SystemTime) -> Failure {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let message = json
        .as_ref()
        .and_then(|j| j.get("message"))
        .and_then(|m| m.as_str());
    let detail = match message {
        Some(message) => {
            let errors: Vec<String> = json
                .as_ref()
                .and_then(|j| j.get("errors"))
                .and_then(|e| e.as_array())
                .into_iter()
                .flatten()
                .map(|e| {
                    e.get("message")
                        .and_then(|m| m.as_str())
                        .map_or_else(|| e.to_string(), str::to_string)
                })
                .collect();
            if errors.is_empty() {
                message.to_string()
            } else {
                format!("{message} ({})", errors.join("; "))
            }
        }
        // A proxy's HTML page, or nothing: its first words say enough.
        None => {
            let first: String = body
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .take(120)
                .collect();
            if first.is_empty() {
                "an empty body".to_string()
            } else {
                format!("a body that is not GitHub's JSON: {first}")
            }
        }
    };
    let what = format!("HTTP {}: {detail}", status.as_u16());
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let exhausted = header("x-ratelimit-remaining") == Some("0");
    // GitHub sends seconds; an HTTP date is not something it does.
    let retry_after = header("retry-after")
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs);
    let until_reset = header("x-ratelimit-reset")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|_| exhausted)
        .map(|reset| {
            (SystemTime::UNIX_EPOCH + Duration::from_secs(reset))
                .duration_since(now)
                .unwrap_or_default()
        });
    let said_rate_limit = message.is_some_and(|m| m.to_lowercase().contains("rate limit"));
    let rate_limited = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN
            && (exhausted || retry_after.is_some() || said_rate_limit));
    match status.as_u16() {
        _ if rate_limited => Failure::Transient {
            rate_limited: true,
            asked: retry_after.or(until_reset),
            what,
        },
        500..=599 => Failure::Transient {
            rate_limited: false,
            asked: retry_after,
            what,
        },
        401 | 403 | 404 => Failure::Forbidden(what),
        422 => Failure::Unprocessable(what),
        _ => Failure::Other(what),
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

/// A request to GitHub's REST API.
#[derive(Clone, Copy)]
enum Verb<'a> {
    Get,
    Post(&'a serde_json::Value),
    Patch(&'a serde_json::Value),
}

/// One request through octocrab's client (token, base URI, TLS), reading
/// the status and headers ourselves so rate limits can be honoured.
async fn send<R: FromResponse>(crab: &Octocrab, verb: Verb<'_>, uri: &str) -> Result<R, Failure> {
    let response = match verb {
        Verb::Get => crab._get(uri).await,
        Verb::Post(body) => crab._post(uri, Some(body)).await,
        Verb::Patch(body) => crab._patch(uri, Some(body)).await,
    }
    // No connection, or it dropped: worth another try.
    .map_err(|e| transient(error_text(&e)))?;
    let status = response.status();
    if !status.is_success() {
        let headers = response.headers().clone();
        let body = crab.body_to_string(response).await.unwrap_or_default();
        return Err(classify(status, &headers, &body, SystemTime::now()));
    }
    R::from_response(response).await.map_err(|e| {
        transient(format!(
            "HTTP {}: an answer that does not parse: {}",
            status.as_u16(),
            error_text(&e)
        ))
    })
}

/// Runs `call` until it succeeds, fails for good, or attempts run out.
async fn with_retry<T, F, Fut>(
    backoff: &Backoff,
    what: &str,
    scrub: &dyn Fn(String) -> String,
    mut call: F,
) -> Result<T, (Failure, String)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failure = match call().await {
            Ok(v) => return Ok(v),
            Err(failure) => failure,
        };
        if let Failure::Transient {
            rate_limited,
            asked,
            what: why,
        } = &failure
        {
            if let Some(long) = asked.filter(|a| *a > MAX_WAIT) {
                let text = format!(
                    "{why} (GitHub asks to wait {} s; not holding the job that long)",
                    long.as_secs()
                );
                return Err((failure, scrub(text)));
            }
            if attempt < backoff.attempts {
                // What GitHub asked for; else at least a minute after a
                // rate limit (its documented rule), and a doubling wait
                // after a 5xx.
                let wait = match asked {
                    Some(asked) => backoff.unit.mul_f64(asked.as_secs_f64()),
                    None if *rate_limited => backoff.unit * 60 * attempt,
                    None => backoff.unit * 2u32.pow(attempt - 1),
                };
                let why_wait = match asked {
                    Some(asked) => format!(" as GitHub asked ({} s)", asked.as_secs()),
                    None => String::new(),
                };
                eprintln!(
                    "lmcache-e2e: {what} failed ({}); attempt {attempt} of {}, retrying in {:.1} s{why_wait}",
                    scrub(why.clone()),
                    backoff.attempts,
                    wait.as_secs_f64()
                );
                tokio::time::sleep(wait).await;
                continue;
            }
        }
        let text = match &failure {
            Failure::Transient { what: w, .. } => {
                format!("{w} (gave up after {attempt} attempts)")
            }
            Failure::Forbidden(w) | Failure::Unprocessable(w) | Failure::Other(w) => w.clone(),
        };
        return Err((failure, scrub(text)));
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
    let comments = format!(
        "/repos/{}/{}/issues/{}/comments",
        target.owner, target.repo, target.number
    );
    let existing = match find_comment(&crab, &comments, marker, backoff, &scrub).await {
        Ok(found) => found,
        Err(e) => return fail(e),
    };
    let mut text = body;
    loop {
        let payload = serde_json::json!({ "body": text });
        let posted = match existing {
            // PATCH, as GitHub documents it (octocrab's update_comment
            // POSTs, which only github.com happens to accept).
            Some(id) => {
                let uri = format!(
                    "/repos/{}/{}/issues/comments/{}",
                    target.owner,
                    target.repo,
                    CommentId(id)
                );
                with_retry(backoff, "updating the PR comment", &scrub, || {
                    send::<Comment>(&crab, Verb::Patch(&payload), &uri)
                })
                .await
                .map(|c| CommentOutcome::Updated(c.id.0))
            }
            None => with_retry(backoff, "creating the PR comment", &scrub, || {
                send::<Comment>(&crab, Verb::Post(&payload), &comments)
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
    comments: &str,
    marker: &str,
    backoff: &Backoff,
    scrub: &dyn Fn(String) -> String,
) -> Result<Option<u64>, (Failure, String)> {
    let mut uri = format!("{comments}?per_page=100");
    loop {
        let page: Page<Comment> = with_retry(backoff, "listing the PR comments", scrub, || {
            send(crab, Verb::Get, &uri)
        })
        .await?;
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

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    const NOW: u64 = 1_800_000_000;

    fn sort(status: u16, pairs: &[(&'static str, &str)], body: &str) -> Failure {
        classify(
            StatusCode::from_u16(status).unwrap(),
            &headers(pairs),
            body,
            SystemTime::UNIX_EPOCH + Duration::from_secs(NOW),
        )
    }

    #[test]
    fn rate_limits_wait_as_long_as_github_says() {
        let secondary = r#"{"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#;
        assert!(matches!(
            sort(403, &[("retry-after", "42")], secondary),
            Failure::Transient { rate_limited: true, asked: Some(d), .. } if d == Duration::from_secs(42)
        ));
        // Without retry-after: no wait named, so the caller's minute applies.
        assert!(matches!(
            sort(403, &[], secondary),
            Failure::Transient {
                rate_limited: true,
                asked: None,
                ..
            }
        ));
        // A primary limit: until the reset.
        let reset = (NOW + 1800).to_string();
        assert!(matches!(
            sort(403, &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &reset)],
                 r#"{"message": "API rate limit exceeded for installation ID 1."}"#),
            Failure::Transient { rate_limited: true, asked: Some(d), .. } if d == Duration::from_secs(1800)
        ));
        assert!(matches!(
            sort(429, &[], ""),
            Failure::Transient {
                rate_limited: true,
                ..
            }
        ));
        // A 403 that is about permissions is not retried, even with requests
        // left in the window.
        assert_eq!(
            sort(
                403,
                &[("x-ratelimit-remaining", "4999")],
                r#"{"message": "Resource not accessible by integration"}"#
            ),
            Failure::Forbidden("HTTP 403: Resource not accessible by integration".into())
        );
    }

    #[test]
    fn error_bodies_are_summed_up_on_one_line() {
        assert_eq!(
            sort(502, &[], "<html>\n<body><h1>502 Bad Gateway</h1></body>\n</html>"),
            Failure::Transient {
                rate_limited: false,
                asked: None,
                what: "HTTP 502: a body that is not GitHub's JSON: <html> <body><h1>502 Bad Gateway</h1></body> </html>".into()
            }
        );
        assert_eq!(
            sort(
                422,
                &[],
                r#"{"message": "Validation Failed", "errors": [{"resource": "IssueComment", "code": "custom", "field": "body", "message": "body is too long (maximum is 65536 characters)"}]}"#
            ),
            Failure::Unprocessable(
                "HTTP 422: Validation Failed (body is too long (maximum is 65536 characters))"
                    .into()
            )
        );
        assert!(
            matches!(sort(404, &[], ""), Failure::Forbidden(w) if w == "HTTP 404: an empty body")
        );
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
