//! GitHub's REST API underneath the PR comment: one request through
//! octocrab's client with a deadline, what a refusal means (GitHub's error
//! body and rate-limit headers), and how long to wait before trying again.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use octocrab::{FromResponse, Octocrab};

/// Waits between attempts of a request GitHub may answer later.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub attempts: u32,
    /// One second in production. Every wait is a multiple of it (what GitHub
    /// asks for, and the deadline of a request too), so tests can run them
    /// all in milliseconds.
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

impl Backoff {
    /// How long one request may take, answer included: a GitHub (or a
    /// proxy) that stops answering must not hold the job.
    fn deadline(&self) -> Duration {
        self.unit * 30
    }
}

/// The longest wait GitHub may ask for that we sit out: a primary rate limit
/// that resets in half an hour is not worth holding a GPU agent for.
const MAX_WAIT: Duration = Duration::from_secs(300);

/// How a failed request is handled.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Failure {
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

impl Failure {
    /// The same failure, saying which step it happened in.
    pub(super) fn within(self, step: &str) -> Self {
        let prefix = |w: String| format!("{step}: {w}");
        match self {
            Failure::Transient {
                rate_limited,
                asked,
                what,
            } => Failure::Transient {
                rate_limited,
                asked,
                what: prefix(what),
            },
            Failure::Forbidden(w) => Failure::Forbidden(prefix(w)),
            Failure::Unprocessable(w) => Failure::Unprocessable(prefix(w)),
            Failure::Other(w) => Failure::Other(prefix(w)),
        }
    }
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
pub(super) fn error_text(e: &dyn std::error::Error) -> String {
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
pub(super) enum Verb<'a> {
    Get,
    Post(&'a serde_json::Value),
    Patch(&'a serde_json::Value),
}

/// One request through octocrab's client (token, base URI, TLS), reading
/// the status and headers ourselves so rate limits can be honoured.
pub(super) async fn send<R: FromResponse>(
    crab: &Octocrab,
    verb: Verb<'_>,
    uri: &str,
) -> Result<R, Failure> {
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

/// Runs `call` until it succeeds, fails for good, or attempts run out; each
/// attempt gets `backoff.deadline()`.
pub(super) async fn with_retry<T, F, Fut>(
    backoff: &Backoff,
    what: &str,
    scrub: &dyn Fn(String) -> String,
    say: &(dyn Fn(String) + Send + Sync),
    mut call: F,
) -> Result<T, (Failure, String)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failure = match tokio::time::timeout(backoff.deadline(), call()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(failure)) => failure,
            Err(_) => transient(format!(
                "no answer within {:.1} s",
                backoff.deadline().as_secs_f64()
            )),
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
                say(format!(
                    "{what} failed ({}); attempt {attempt} of {}, retrying in {:.1} s{why_wait}",
                    scrub(why.clone()),
                    backoff.attempts,
                    wait.as_secs_f64()
                ));
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
