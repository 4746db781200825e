//! Readiness: an engine is ready when `/health` answers 2xx and then
//! `/v1/models` does; it fails early when its process exits, and at its
//! deadline otherwise, with the log tail either way.

use std::time::{Duration, Instant};

use super::{tail_lines, EngineError, EngineSpec, Supervisor, TAIL_LINES};
use crate::client::OpenAiClient;
use crate::config::Readiness;

const POLL: Duration = Duration::from_millis(200);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Waits until the engine serves; returns how long that took.
pub(crate) async fn wait_ready(
    supervisor: &Supervisor,
    spec: &EngineSpec,
) -> Result<Duration, EngineError> {
    let start = Instant::now();
    let tail = || {
        spec.log
            .as_deref()
            .map(|l| tail_lines(l, TAIL_LINES))
            .unwrap_or_default()
    };
    let client =
        OpenAiClient::new(&spec.url, PROBE_TIMEOUT).map_err(|e| EngineError::NotReady {
            engine: spec.name.clone(),
            url: spec.url.clone(),
            waited: 0.0,
            last: e.to_string(),
            log: spec.log.clone(),
            tail: Vec::new(),
        })?;
    let mut last = "no answer yet".to_string();
    loop {
        if let Some(status) = supervisor.exit_status(&spec.name) {
            return Err(EngineError::ExitedEarly {
                engine: spec.name.clone(),
                status,
                log: spec.log.clone(),
                tail: tail(),
            });
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
        let probe_timeout = remaining.min(PROBE_TIMEOUT);
        let probed = match spec.readiness {
            Readiness::Http => async {
                client.probe("/health", probe_timeout).await?;
                client.models(probe_timeout).await
            }
            .await
            .map_err(|e| e.to_string())
            .and_then(|models| {
                if models.is_empty() {
                    Err("/v1/models lists no model yet".to_string())
                } else {
                    Ok(())
                }
            }),
            Readiness::Tcp => tcp_accepts(&spec.url, probe_timeout).await,
        };
        match probed {
            Ok(()) => return Ok(start.elapsed()),
            Err(e) => last = e,
        }
        tokio::time::sleep(POLL.min(spec.readiness_timeout.saturating_sub(start.elapsed()))).await;
    }
}

/// The engine's `host:port` accepts a TCP connection.
async fn tcp_accepts(url: &str, timeout: std::time::Duration) -> Result<(), String> {
    let addr = url
        .split("://")
        .nth(1)
        .unwrap_or(url)
        .trim_end_matches('/')
        .to_string();
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("failed to connect to {addr}: {e}")),
        Err(_) => Err(format!("failed to connect to {addr}: timed out")),
    }
}
