//! Readiness: an engine is ready when its health route (`/health` unless
//! the suite names another; none when the server has none) answers 2xx and
//! then `/v1/models` lists a model, or for `readiness = "tcp"` when its port
//! accepts; it fails early when its process exits, and at its deadline
//! otherwise, with what the server last answered and the log tail.

use std::time::{Duration, Instant};

use super::spec::{EngineError, EngineSpec, TAIL_LINES};
use super::supervisor::Supervisor;
use crate::client::{ClientError, Endpoint, OpenAiClient};
use crate::config::Readiness;
use crate::results::tail_lines;

const POLL: Duration = Duration::from_millis(200);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Told of a slow start: the engine, how long it has been starting, its
/// log's last line and what its address last answered (or that nothing did).
pub(crate) type SayStarting = dyn Fn(&str, Duration, Option<String>, &str) + Send + Sync;

/// Who hears about a slow start, and how often: vLLM takes minutes on a
/// cold compile cache, and a CI log that says nothing for 200 s looks hung.
pub(crate) struct Starting<'a> {
    pub every: Duration,
    pub say: &'a SayStarting,
}

/// The last line of an engine's log worth showing: progress bars redraw
/// with `\r`, so the last of those pieces; blank lines skipped.
pub(crate) fn last_log_line(log: &std::path::Path) -> Option<String> {
    let lines = tail_lines(log, 5);
    lines
        .iter()
        .rev()
        // Our own header says what was started, not how far it got.
        .filter(|l| !l.starts_with(super::backend::LOG_HEADER))
        .filter_map(|l| l.rsplit('\r').map(str::trim).find(|p| !p.is_empty()))
        .next()
        .map(|l| l.chars().take(200).collect())
}

/// Waits until the engine serves; returns how long that took.
pub(crate) async fn wait_ready(
    supervisor: &Supervisor,
    spec: &EngineSpec,
    starting: &Starting<'_>,
) -> Result<Duration, EngineError> {
    let start = Instant::now();
    let mut next_word = starting.every;
    let tail = || {
        spec.log
            .as_deref()
            .map(|l| tail_lines(l, TAIL_LINES))
            .unwrap_or_default()
    };
    // A URL no client can be made for is never going to be ready.
    let unusable = |e: ClientError| EngineError::NotReady {
        engine: spec.name.clone(),
        url: spec.url.clone(),
        waited: 0.0,
        last: e.to_string(),
        log: spec.log.clone(),
        tail: Vec::new(),
    };
    let client = OpenAiClient::new(&spec.url, PROBE_TIMEOUT)
        .map_err(unusable)?
        .probing();
    let mut last = "no answer yet".to_string();
    let mut health = Health::of(spec.health_path.as_deref());
    let health_at = match spec.health_port {
        Some(port) => OpenAiClient::new(&client.endpoint().with_port(port).root(), PROBE_TIMEOUT)
            .map_err(unusable)?
            .probing(),
        None => client.clone(),
    };
    let exited = |status: String, orphan: String| EngineError::ExitedEarly {
        engine: spec.name.clone(),
        status,
        orphan,
        log: spec.log.clone(),
        tail: tail(),
    };
    loop {
        if let Some(status) = supervisor.exit_status(&spec.name) {
            return Err(exited(status, orphaned(client.endpoint()).await));
        }
        let remaining = spec.readiness_timeout.saturating_sub(start.elapsed());
        if remaining.is_zero() {
            return Err(EngineError::NotReady {
                engine: spec.name.clone(),
                url: spec.url.clone(),
                waited: start.elapsed().as_secs_f64(),
                last,
                log: spec.log.clone(),
                tail: tail(),
            });
        }
        if !starting.every.is_zero() && start.elapsed() >= next_word {
            let line = spec.log.as_deref().and_then(last_log_line);
            (starting.say)(&spec.name, start.elapsed(), line, &last);
            while next_word <= start.elapsed() {
                next_word += starting.every;
            }
        }
        let probe_timeout = remaining.min(PROBE_TIMEOUT);
        let probed = match spec.readiness {
            Readiness::Http => {
                serves(&client, &health_at, &mut health, &spec.name, probe_timeout).await
            }
            Readiness::Health => healthy(&health_at, &health, &spec.name, probe_timeout).await,
            Readiness::Tcp => tcp_accepts(client.endpoint(), probe_timeout).await,
        };
        match probed {
            // An answer counts only while the launched process lives: one
            // that answered as its process ended came from something else.
            Ok(()) => match supervisor.exit_status(&spec.name) {
                Some(status) => return Err(exited(status, orphaned(client.endpoint()).await)),
                None => return Ok(start.elapsed()),
            },
            Err(e) => last = e,
        }
        tokio::time::sleep(POLL.min(spec.readiness_timeout.saturating_sub(start.elapsed()))).await;
    }
}

/// What `readiness = "http"` polls before `/v1/models`.
#[derive(Debug, Clone, PartialEq)]
enum Health {
    /// `/health`, until the server says it has no such route.
    Default,
    /// A route the suite named: it must answer 2xx.
    Given(String),
    /// `/v1/models` alone.
    ModelsOnly,
}

impl Health {
    fn path(&self) -> Option<String> {
        match self {
            Health::Default => Some("/health".to_string()),
            Health::Given(p) => Some(p.clone()),
            Health::ModelsOnly => None,
        }
    }

    fn of(path: Option<&str>) -> Self {
        match path {
            None => Health::Default,
            Some("") => Health::ModelsOnly,
            Some(p) => Health::Given(p.to_string()),
        }
    }
}

/// One poll: the health route (if any) answers 2xx, then `/v1/models`
/// lists a model. A server without `/health` (404, 405, 501: llama-cpp-
/// python's) falls back to `/v1/models` alone for the rest of the wait,
/// as upstream's `wait-for-servers.sh` accepts either.
async fn serves(
    client: &OpenAiClient,
    health_at: &OpenAiClient,
    health: &mut Health,
    engine: &str,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(path) = health.path() {
        match health_at.probe(&path, timeout).await {
            Ok(()) => {}
            Err(ClientError::Status {
                status: 404 | 405 | 501,
                ..
            }) if *health == Health::Default => *health = Health::ModelsOnly,
            Err(e @ ClientError::Status { .. }) if *health != Health::Default => {
                return Err(format!(
                    "{e}; if this server's health route is another, set engines.{engine}.health_path (\"\" polls /v1/models alone)"
                ))
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    match client.models(timeout).await {
        Ok(models) if models.is_empty() => Err(format!(
            "{} lists no model yet",
            client.endpoint().at("/v1/models")
        )),
        Ok(_) => Ok(()),
        Err(e @ ClientError::Status { .. }) | Err(e @ ClientError::Garbage { .. }) => Err(format!(
            "{e}; an OpenAI-compatible server lists its models at /v1/models"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// `readiness = "health"`: the health route alone answers 2xx.
async fn healthy(
    health_at: &OpenAiClient,
    health: &Health,
    engine: &str,
    timeout: Duration,
) -> Result<(), String> {
    let path = health.path().unwrap_or_else(|| "/health".to_string());
    health_at.probe(&path, timeout).await.map_err(|e| match e {
        ClientError::Status { .. } => format!(
            "{e}; set engines.{engine}.health_path (and health_port) to the service's health route"
        ),
        e => e.to_string(),
    })
}

/// The engine's host and port accept a TCP connection.
/// What to add when an engine's process is gone but its port answers: a
/// launcher that put the server in the background, or a stale server.
async fn orphaned(endpoint: &Endpoint) -> String {
    match tcp_accepts(endpoint, Duration::from_secs(1)).await {
        Ok(()) => format!(
            "; yet {}:{} answers, from a process the run did not launch: a command that starts the server in the background and returns is not supported (run it in the foreground, e.g. with `exec`), and that server is still running",
            endpoint.host(),
            endpoint.port()
        ),
        Err(_) => String::new(),
    }
}

async fn tcp_accepts(endpoint: &Endpoint, timeout: Duration) -> Result<(), String> {
    let addr = (endpoint.host(), endpoint.port());
    let shown = format!("{}:{}", addr.0, addr.1);
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("failed to connect to {shown}: {e}")),
        Err(_) => Err(format!("failed to connect to {shown}: timed out")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// vLLM's start as the H200 logged it, cut where CUDA graphs were being
    /// captured: tqdm redraws the bar with `\r` on one line.
    #[test]
    fn the_last_log_line_is_the_progress_bars_latest_state() {
        let real = include_str!("../../tests/fixtures/vllm/vllm-start.log");
        let upto: Vec<&str> = real
            .lines()
            .take_while(|l| !l.contains("Graph capturing finished"))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("baseline.log");
        std::fs::write(
            &log,
            format!(
                "{} starting engine `baseline`: vllm serve m\n{}\n",
                super::super::backend::LOG_HEADER,
                upto.join("\n")
            ),
        )
        .unwrap();
        let line = last_log_line(&log).unwrap();
        assert!(
            line.starts_with("Capturing CUDA graphs (FULL): 100%"),
            "{line}"
        );
        assert!(!line.contains('\r'));
        // Only our header so far: nothing the engine said yet.
        std::fs::write(
            &log,
            format!(
                "{} starting engine `baseline`: vllm serve m\n",
                super::super::backend::LOG_HEADER
            ),
        )
        .unwrap();
        assert_eq!(last_log_line(&log), None);
    }
}
