//! Readiness: an engine is ready when `/health` answers 2xx and then
//! `/v1/models` does; it fails early when its process exits, and at its
//! deadline otherwise, with the log tail either way.

use std::time::{Duration, Instant};

use super::{tail_lines, EngineError, EngineSpec, Supervisor, TAIL_LINES};
use crate::client::OpenAiClient;

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
        let probed = async {
            client.probe("/health", probe_timeout).await?;
            client.models(probe_timeout).await
        };
        match probed.await {
            Ok(models) if !models.is_empty() => return Ok(start.elapsed()),
            Ok(_) => last = "/v1/models lists no model yet".to_string(),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(POLL.min(spec.readiness_timeout.saturating_sub(start.elapsed()))).await;
    }
}
