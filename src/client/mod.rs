//! OpenAI-compatible HTTP client: model discovery, health probes, and
//! streamed chat completions timed to the first content token. Works against
//! any server that follows the OpenAI API (vLLM, SGLang, llama.cpp, Dynamo).

mod endpoint;
mod liveness;
mod sse;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};

pub(crate) use endpoint::{BadUrl, Endpoint};
pub(crate) use liveness::Liveness;
pub(crate) use sse::SseParser;

pub(crate) mod prometheus;

use crate::config::Api;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("failed to build the HTTP client: {0}")]
    Build(reqwest::Error),
    #[error(transparent)]
    BadUrl(#[from] BadUrl),
    #[error("failed to reach {url}: {message}")]
    Request { url: String, message: String },
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} answered something that is not an OpenAI response: {message}")]
    Garbage { url: String, message: String },
    #[error("not sent to {url}: the server is taken for dead ({why})")]
    Dead { url: String, why: String },
    #[error("{url} served no models; pass the model name explicitly (MODEL or run.model)")]
    NoModels { url: String },
}

/// How long the probe after a failed request waits for any answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// One client per server, sharing a connection pool across its requests.
#[derive(Clone)]
pub(crate) struct OpenAiClient {
    base: Endpoint,
    http: reqwest::Client,
    timeout: Duration,
    /// Shared by the clones: one request that finds the server dead spares
    /// the others their timeouts. `None` for a client that waits for a
    /// server to come up, where reaching nothing is expected.
    live: Option<Arc<liveness::Liveness>>,
}

/// What one streamed request did, timed on the client's monotonic clock.
#[derive(Debug, Clone)]
pub(crate) struct StreamOutcome {
    pub start: Instant,
    /// Time to the first chunk with non-empty content, if any came.
    pub ttft: Option<Duration>,
    /// Arrival of every chunk with content, from the start (for ITL).
    pub chunk_times: Vec<Duration>,
    pub end: Instant,
    pub text: String,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// The last `finish_reason` the stream gave.
    pub finish_reason: Option<String>,
    pub error: Option<String>,
}

impl StreamOutcome {
    /// Nothing received yet; the clock starts now.
    fn starting_now() -> Self {
        let start = Instant::now();
        Self {
            start,
            ttft: None,
            chunk_times: Vec::new(),
            end: start,
            text: String::new(),
            prompt_tokens: None,
            completion_tokens: None,
            finish_reason: None,
            error: None,
        }
    }

    pub(crate) fn successful(&self) -> bool {
        self.error.is_none() && self.ttft.is_some()
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".to_string();
    }
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

/// Applies one server-sent event's `data` to `out`: usage, finish reason,
/// and the first content's time. `Ok(true)` for `[DONE]`; an error says
/// what the event lacked or held.
fn apply_event(data: &str, out: &mut StreamOutcome) -> Result<bool, String> {
    if data == "[DONE]" {
        return Ok(true);
    }
    let v: Value =
        serde_json::from_str(data).map_err(|e| format!("{e} in event {:?}", snippet(data)))?;
    if let Some(err) = v.get("error") {
        return Err(format!("error event: {}", snippet(&err.to_string())));
    }
    if let Some(usage) = v.get("usage").filter(|u| !u.is_null()) {
        out.prompt_tokens = usage.get("prompt_tokens").and_then(Value::as_u64);
        out.completion_tokens = usage.get("completion_tokens").and_then(Value::as_u64);
    }
    let Some(choices) = v.get("choices").and_then(Value::as_array) else {
        return Err(format!("no `choices` in event {:?}", snippet(data)));
    };
    for choice in choices {
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            out.finish_reason = Some(reason.to_string());
        }
        // Chat streams deltas (content, or a reasoning field); completions
        // stream `text`.
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        let piece = ["content", "reasoning_content", "reasoning"]
            .iter()
            .filter_map(|k| delta.get(*k).and_then(Value::as_str))
            .chain(choice.get("text").and_then(Value::as_str))
            .find(|s| !s.is_empty());
        if let Some(piece) = piece {
            let now = out.start.elapsed();
            if out.ttft.is_none() {
                out.ttft = Some(now);
            }
            out.chunk_times.push(now);
            let is_answer = delta.get("content").and_then(Value::as_str) == Some(piece)
                || choice.get("text").and_then(Value::as_str) == Some(piece);
            if is_answer {
                out.text.push_str(piece);
            }
        }
    }
    Ok(false)
}

/// A tokenizer answer's count: `count`, else the length of `tokens`.
fn token_count(answer: &Value) -> Option<u64> {
    answer.get("count").and_then(Value::as_u64).or_else(|| {
        answer
            .get("tokens")
            .and_then(Value::as_array)
            .map(|t| t.len() as u64)
    })
}

/// The most of one answer this client reads: vLLM's `/metrics` is about
/// 100 KB and its JSON answers less; a server that sends more is not
/// served whole (and never kept whole in the results).
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// An answer's body as text, refused past [`MAX_ANSWER_BYTES`].
async fn capped_text(url: &str, mut resp: reqwest::Response) -> Result<String, ClientError> {
    let mut body: Vec<u8> = Vec::new();
    loop {
        let chunk = resp.chunk().await.map_err(|e| ClientError::Request {
            url: url.to_string(),
            message: describe(&e),
        })?;
        let Some(chunk) = chunk else { break };
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(ClientError::Garbage {
                url: url.to_string(),
                message: format!(
                    "the answer runs past {} MiB, far more than an OpenAI server or /metrics sends; refused",
                    MAX_ANSWER_BYTES >> 20
                ),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn snippet(body: &str) -> String {
    let body = body.trim();
    let mut s: String = body.chars().take(300).collect();
    if s.len() < body.len() {
        s.push('…');
    }
    s
}

impl OpenAiClient {
    /// `base` is the server root, e.g. `http://127.0.0.1:8000`; a trailing
    /// `/v1` is accepted too.
    pub(crate) fn new(base: &str, timeout: Duration) -> Result<Self, ClientError> {
        let base = Endpoint::parse(base)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .build()
            .map_err(ClientError::Build)?;
        Ok(Self {
            base,
            http,
            timeout,
            live: Some(Arc::default()),
        })
    }

    /// Shares `live` with every client of the same engine: one that finds
    /// it dead tells them all, and the run.
    pub(crate) fn watched_by(mut self, live: Arc<Liveness>) -> Self {
        self.live = Some(live);
        self
    }

    /// A client for polling a server that is not up yet: what it reaches
    /// nothing with never marks the server dead.
    pub(crate) fn probing(mut self) -> Self {
        self.live = None;
        self
    }

    /// The server root (no `/v1`, no trailing slash).
    pub(crate) fn base(&self) -> String {
        self.base.root()
    }

    pub(crate) fn endpoint(&self) -> &Endpoint {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        self.base.at(path)
    }

    /// `GET path` answered 2xx within `timeout`.
    pub(crate) async fn probe(&self, path: &str, timeout: Duration) -> Result<(), ClientError> {
        let url = self.url(path);
        let resp = self
            .http
            .get(&url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| ClientError::Request {
                url: url.clone(),
                message: describe(&e),
            })?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            let body = resp.text().await.unwrap_or_default();
            Err(ClientError::Status {
                url,
                status: status.as_u16(),
                body: snippet(&body),
            })
        }
    }

    /// Scrapes a Prometheus `/metrics` URL: its text, or `None` when the
    /// server has no such endpoint (404, 405, 501), so a missing metric is
    /// "not available", never a failure. [`prometheus::parse`] reads it.
    pub(crate) async fn scrape(&self, url: &str) -> Result<Option<String>, ClientError> {
        let resp = self
            .http
            .get(url)
            .timeout(self.timeout.min(Duration::from_secs(10)))
            .send()
            .await
            .map_err(|e| ClientError::Request {
                url: url.to_string(),
                message: describe(&e),
            })?;
        let status = resp.status().as_u16();
        if matches!(status, 404 | 405 | 501) {
            return Ok(None);
        }
        let body = capped_text(url, resp).await?;
        if !(200..300).contains(&status) {
            return Err(ClientError::Status {
                url: url.to_string(),
                status,
                body: snippet(&body),
            });
        }
        Ok(Some(body))
    }

    pub(crate) async fn models(&self, timeout: Duration) -> Result<Vec<String>, ClientError> {
        let url = self.url("/v1/models");
        let value = self.get_json(&url, timeout).await?;
        let data =
            value
                .get("data")
                .and_then(Value::as_array)
                .ok_or_else(|| ClientError::Garbage {
                    url: url.clone(),
                    message: "no `data` list in the /v1/models answer".to_string(),
                })?;
        Ok(data
            .iter()
            .filter_map(|m| m.get("id").and_then(Value::as_str).map(String::from))
            .collect())
    }

    /// What the server says it is, as vLLM and SGLang answer `GET /version`
    /// (`{"version": "0.9.1"}`); `None` from a server that does not say, or
    /// says something that is no short version string.
    pub(crate) async fn server_version(&self) -> Option<String> {
        let url = self.url("/version");
        let value = self.get_json(&url, Duration::from_secs(5)).await.ok()?;
        let v = value.get("version")?.as_str()?;
        let plain = |c: char| c.is_ascii_alphanumeric() || "._+-".contains(c);
        (!v.is_empty() && v.len() <= 64 && v.chars().all(plain)).then(|| v.to_string())
    }

    /// `model = "auto"` means the first model the server lists, as
    /// `long_doc_qa.py --model auto` does.
    pub(crate) async fn resolve_model(&self, model: &str) -> Result<String, ClientError> {
        if model != "auto" {
            return Ok(model.to_string());
        }
        self.models(self.timeout)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::NoModels {
                url: self.url("/v1/models"),
            })
    }

    async fn get_json(&self, url: &str, timeout: Duration) -> Result<Value, ClientError> {
        self.send_json(url, self.http.get(url).timeout(timeout))
            .await
    }

    async fn post_json(&self, url: &str, body: &Value) -> Result<Value, ClientError> {
        self.send_json(url, self.http.post(url).json(body).timeout(self.timeout))
            .await
    }

    /// Sends, requires 2xx, parses JSON; every failure names the URL.
    async fn send_json(
        &self,
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<Value, ClientError> {
        self.alive(url)?;
        let request_err = |e: reqwest::Error| ClientError::Request {
            url: url.to_string(),
            message: describe(&e),
        };
        let sent = async {
            let resp = req.send().await.map_err(request_err)?;
            let status = resp.status();
            Ok((status, capped_text(url, resp).await?))
        };
        let (status, text) = self.watched(sent.await).await?;
        if !status.is_success() {
            return Err(ClientError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                body: snippet(&text),
            });
        }
        serde_json::from_str(&text).map_err(|e| ClientError::Garbage {
            url: url.to_string(),
            message: format!("{e} in {:?}", snippet(&text)),
        })
    }

    /// Refuses at once when the server is taken for dead.
    fn alive(&self, url: &str) -> Result<(), ClientError> {
        match self.live.as_ref().and_then(|l| l.dead()) {
            Some(why) => Err(ClientError::Dead {
                url: url.to_string(),
                why,
            }),
            None => Ok(()),
        }
    }

    /// Passes a request's result on, first probing the server when the
    /// request reached nothing.
    async fn watched<T>(&self, result: Result<T, ClientError>) -> Result<T, ClientError> {
        if let Err(e @ ClientError::Request { .. }) = &result {
            self.confirm_dead(e.to_string()).await;
        }
        result
    }

    /// After a request that reached nothing: one short probe of
    /// `/v1/models`; any HTTP answer means the server lives (the request
    /// alone failed), none means it is taken for dead.
    async fn confirm_dead(&self, why: String) {
        let Some(live) = &self.live else { return };
        let url = self.url("/v1/models");
        let probe = self.http.get(&url).timeout(PROBE_TIMEOUT).send().await;
        if let Err(e) = probe {
            live.mark_dead(format!(
                "{why}; then {url} reached nothing either: {}",
                describe(&e)
            ));
        }
    }

    /// Empties the engine's GPU prefix cache (vLLM's `POST
    /// /reset_prefix_cache`, served with `VLLM_SERVER_DEV_MODE=1`), so the
    /// next request's prefix must come from a KV connector such as LMCache
    /// or be computed. vLLM refuses (`{"success": false}`) while blocks are
    /// held, by requests or transfers still in flight: asked again every
    /// half second for up to `patience`.
    pub(crate) async fn reset_prefix_cache(&self, patience: Duration) -> Result<(), ClientError> {
        let url = self.url("/reset_prefix_cache");
        let start = Instant::now();
        loop {
            let answer = self.post_json(&url, &Value::Null).await;
            let v = match answer {
                Err(ClientError::Status { status: 404 | 405, body, .. }) => {
                    return Err(ClientError::Status {
                        url,
                        status: 404,
                        body: format!(
                            "{body} (vLLM serves this route only with VLLM_SERVER_DEV_MODE=1 in the engine's env)"
                        ),
                    })
                }
                other => other?,
            };
            match v.get("success").and_then(Value::as_bool) {
                Some(true) => return Ok(()),
                Some(false) if start.elapsed() < patience => {
                    tokio::time::sleep(Duration::from_millis(500)).await
                }
                Some(false) => {
                    return Err(ClientError::Garbage {
                        url,
                        message: format!(
                        "the prefix cache could not be reset within {:.0} s (blocks still held)",
                        patience.as_secs_f64()
                    ),
                    })
                }
                None => {
                    return Err(ClientError::Garbage {
                        url,
                        message: format!("no `success` in {:?}", snippet(&v.to_string())),
                    })
                }
            }
        }
    }

    /// A non-streamed `POST /v1/completions`; `body` carries the sampling
    /// parameters. Returns the first choice's text and the prompt tokens.
    pub(crate) async fn completion(
        &self,
        body: &Value,
    ) -> Result<(String, Option<u64>), ClientError> {
        let url = self.url("/v1/completions");
        let v = self.post_json(&url, body).await?;
        let text = v
            .pointer("/choices/0/text")
            .and_then(Value::as_str)
            .ok_or_else(|| ClientError::Garbage {
                url: url.clone(),
                message: format!("no `choices[0].text` in {:?}", snippet(&v.to_string())),
            })?;
        Ok((
            text.to_string(),
            v.pointer("/usage/prompt_tokens").and_then(Value::as_u64),
        ))
    }

    /// Token count of `prompt` from the server's tokenizer, in whichever
    /// shape it serves one: vLLM's and SGLang's `POST /tokenize`
    /// (`{model, prompt}` → `count`), llama.cpp's native server's
    /// (`{content}` → `tokens`), llama-cpp-python's `POST /extras/tokenize`
    /// (`{input}` → `tokens`). `None` when it serves none (404, 405, 501):
    /// not every OpenAI server does.
    pub(crate) async fn tokenize_count(
        &self,
        model: &str,
        prompt: &str,
    ) -> Result<Option<u64>, ClientError> {
        let Some(answer) = self.tokenized(model, prompt).await? else {
            return Ok(None);
        };
        Ok(token_count(&answer))
    }

    /// The token ids of `text` from the server's tokenizer (as
    /// `tokenize_count` finds one); `None` when it serves none or gives
    /// only a count.
    pub(crate) async fn tokenize_ids(
        &self,
        model: &str,
        text: &str,
    ) -> Result<Option<Vec<u64>>, ClientError> {
        let Some(answer) = self.tokenized(model, text).await? else {
            return Ok(None);
        };
        Ok(answer
            .get("tokens")
            .and_then(Value::as_array)
            .map(|t| t.iter().filter_map(Value::as_u64).collect()))
    }

    /// The tokenizer's answer for `prompt`, in the first shape the server
    /// takes; `None` when it serves no tokenizer.
    async fn tokenized(&self, model: &str, prompt: &str) -> Result<Option<Value>, ClientError> {
        let shapes = [
            ("/tokenize", json!({"model": model, "prompt": prompt})),
            ("/tokenize", json!({"content": prompt})),
            ("/extras/tokenize", json!({"model": model, "input": prompt})),
        ];
        for (path, body) in shapes {
            let url = self.url(path);
            let answer = match self.post_json(&url, &body).await {
                Ok(v) => v,
                Err(ClientError::Status {
                    status: 404 | 405 | 501,
                    ..
                }) => continue,
                // A body in a shape this server does not take.
                Err(ClientError::Status {
                    status: 400 | 422, ..
                }) => continue,
                Err(e) => return Err(e),
            };
            match token_count(&answer) {
                // An empty list for a non-empty prompt: the server read
                // another field (llama.cpp's native `/tokenize` answers
                // vLLM's shape so); try the next shape.
                Some(0) if !prompt.is_empty() => continue,
                Some(_) => return Ok(Some(answer)),
                None => {
                    return Err(ClientError::Garbage {
                        url,
                        message: "neither `count` nor a `tokens` list in the tokenizer's answer"
                            .into(),
                    })
                }
            }
        }
        Ok(None)
    }

    /// A streamed chat completion (`stream_options.include_usage`), timed to
    /// the first non-empty content or reasoning delta. Never fails as a
    /// whole: what went wrong is in `error`, so a workload can count it.
    pub(crate) async fn chat_stream(
        &self,
        model: &str,
        prompt: &str,
        max_tokens: u32,
        extra: &Value,
    ) -> StreamOutcome {
        self.stream(Api::Chat, model, prompt, max_tokens, extra)
            .await
    }

    /// A streamed request to either endpoint; `extra` is merged into the
    /// body (e.g. `ignore_eos`, `seed`).
    pub(crate) async fn stream(
        &self,
        api: Api,
        model: &str,
        prompt: &str,
        max_tokens: u32,
        extra: &Value,
    ) -> StreamOutcome {
        let (path, mut body) = match api {
            Api::Chat => (
                "/v1/chat/completions",
                json!({"messages": [{"role": "user", "content": prompt}]}),
            ),
            Api::Completions => ("/v1/completions", json!({"prompt": prompt})),
        };
        for (k, v) in [
            ("model", json!(model)),
            ("max_tokens", json!(max_tokens)),
            ("temperature", json!(0)),
            ("stream", json!(true)),
            ("stream_options", json!({"include_usage": true})),
        ] {
            body[k] = v;
        }
        if let (Some(obj), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                obj.insert(k.clone(), v.clone());
            }
        }
        let url = self.url(path);
        let mut out = StreamOutcome::starting_now();
        if let Err(e) = self.alive(&url) {
            out.error = Some(e.to_string());
            return out;
        }
        let result =
            tokio::time::timeout(self.timeout, self.stream_into(&url, &body, &mut out)).await;
        out.end = Instant::now();
        let reached = match &result {
            Ok(Err(e @ ClientError::Request { .. })) => Err(e.to_string()),
            Err(_) => Err(format!(
                "{url} did not finish within {:.0} s",
                self.timeout.as_secs_f64()
            )),
            _ => Ok(()),
        };
        if let Err(why) = reached {
            self.confirm_dead(why).await;
        }
        match result {
            Ok(Ok(())) if out.ttft.is_none() => {
                out.error = Some(match &out.finish_reason {
                    Some(reason) => format!(
                        "{url} streamed no content: the model finished ({reason}) before its first token; ask for `min_tokens` if it ends its answer at once"
                    ),
                    None => format!("{url} streamed no content"),
                });
            }
            Ok(Ok(())) => {}
            Ok(Err(e)) => out.error = Some(e.to_string()),
            Err(_) => {
                out.error = Some(format!(
                    "{url} did not finish within {:.0} s",
                    self.timeout.as_secs_f64()
                ));
            }
        }
        out
    }

    async fn stream_into(
        &self,
        url: &str,
        body: &Value,
        out: &mut StreamOutcome,
    ) -> Result<(), ClientError> {
        let request_err = |e: reqwest::Error| ClientError::Request {
            url: url.to_string(),
            message: describe(&e),
        };
        let resp = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(request_err)?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(ClientError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                body: snippet(&body),
            });
        }
        let garbage = |message: String| ClientError::Garbage {
            url: url.to_string(),
            message,
        };
        let mut parser = SseParser::default();
        let mut stream = resp.bytes_stream();
        let mut done = false;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(request_err)?;
            for data in parser.push(&chunk) {
                done |= apply_event(&data, out).map_err(garbage)?;
            }
        }
        if !done {
            return Err(garbage(
                "the stream ended without `data: [DONE]`".to_string(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::fuzz::{mutated, timed};
    use proptest::prelude::proptest;

    /// A server whose `/metrics` never ends: the scrape stops past the cap
    /// and says so, instead of holding (and keeping) gigabytes.
    #[tokio::test]
    async fn an_endless_metrics_page_is_refused_past_the_cap() {
        let endless = axum::Router::new().route(
            "/metrics",
            axum::routing::get(|| async {
                let line = bytes_line();
                let chunks = futures_util::stream::repeat_with(move || {
                    Ok::<_, std::io::Error>(line.clone())
                });
                axum::body::Body::from_stream(chunks)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, endless).await });
        let client = OpenAiClient::new(&format!("http://{addr}"), Duration::from_secs(30)).unwrap();
        let err = client
            .scrape(&format!("http://{addr}/metrics"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("runs past 16 MiB"), "{err}");
    }

    fn bytes_line() -> Vec<u8> {
        "vllm:prefix_cache_queries_total{engine=\"0\"} 1.0\n"
            .repeat(1000)
            .into_bytes()
    }

    #[test]
    fn a_real_stream_decodes_to_its_answer_usage_and_finish() {
        let mut out = StreamOutcome::starting_now();
        let mut done = false;
        for data in
            SseParser::default().push(include_bytes!("../../tests/fixtures/fuzz/stream.sse"))
        {
            done |= apply_event(&data, &mut out).unwrap();
        }
        assert!(done && out.ttft.is_some());
        assert_eq!(out.text, "I");
        assert_eq!(
            (out.prompt_tokens, out.completion_tokens),
            (Some(12), Some(1))
        );
        assert_eq!(out.finish_reason.as_deref(), Some("length"));
    }

    /// vLLM 0.26's streams as an H200 served them: the chat stream opens
    /// with a role chunk of empty content (no first token yet), ends with a
    /// usage chunk of empty choices.
    #[test]
    fn vllm_026_streams_decode_to_their_answers_and_usage() {
        for (bytes, text, prompt) in [
            (
                &include_bytes!("../../tests/fixtures/vllm/chat-stream.sse")[..],
                " impairs encroachment impairs encroachment impairs encroachment impairs encroachment",
                33,
            ),
            (
                &include_bytes!("../../tests/fixtures/vllm/completions-stream.sse")[..],
                " engrossed is engrossed is engrossed is engrossed is",
                5,
            ),
        ] {
            let mut out = StreamOutcome::starting_now();
            let mut done = false;
            for data in SseParser::default().push(bytes) {
                done |= apply_event(&data, &mut out).unwrap();
            }
            assert!(done);
            assert_eq!(out.text, text);
            assert_eq!(out.chunk_times.len(), 8, "eight tokens, the role chunk not one");
            assert_eq!((out.prompt_tokens, out.completion_tokens), (Some(prompt), Some(8)));
            assert_eq!(out.finish_reason.as_deref(), Some("length"));
        }
    }

    proptest! {
        // What any OpenAI server (or something posing as one) streams:
        // decoded, or an error quoting the event; never a panic, and text
        // only ever grows from content that was there.
        #[test]
        fn fuzz_openai_stream(bytes in mutated(include_bytes!("../../tests/fixtures/fuzz/stream.sse"))) {
            let mut out = StreamOutcome::starting_now();
            timed("an OpenAI stream", || {
                for data in SseParser::default().push(&bytes) {
                    if let Err(e) = apply_event(&data, &mut out) {
                        assert!(e.contains("event") || e.contains("error"), "{e}");
                        break;
                    }
                }
            });
            assert!(out.text.len() <= bytes.len());
            assert_eq!(out.ttft.is_some(), !out.chunk_times.is_empty());
        }
    }
}
