//! HTTP surface of the sim: the OpenAI routes vLLM serves (`/health`,
//! `/v1/models`, `/v1/completions`, `/v1/chat/completions`, `/tokenize`),
//! streaming and not, with vLLM's wire format and error bodies.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use futures_util::stream;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::answers::Answers;
use super::cache::PrefixCache;
use super::noise::Noise;
use super::options::{log, KvFailurePolicy, KvFault, SimOptions};
use super::text::{fnv1a, output_words, token_id, tokenize};

#[derive(Debug, thiserror::Error)]
pub(crate) enum SimError {
    #[error("failed to start the simulated engine: crash at start requested (fault injection)")]
    CrashAtStart,
    #[error("failed to listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("failed to serve HTTP: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    AnswerKey(#[from] super::answers::KeyError),
}

/// vLLM's KV block size: the GPU's prefix cache holds full blocks only.
const GPU_BLOCK_TOKENS: usize = 16;

struct Sim {
    opts: SimOptions,
    /// The GPU's prefix cache.
    gpu_cache: Mutex<PrefixCache>,
    /// The KV connector's store (LMCache's CPU cache), when there is one.
    external: Option<Mutex<PrefixCache>>,
    /// Prefill is compute-bound on a real GPU: one prompt at a time, in
    /// arrival order (tokio's mutex is fair), while decodes overlap.
    prefill: tokio::sync::Mutex<()>,
    requests: AtomicU64,
    in_flight: Arc<AtomicU64>,
    faults: Mutex<StdRng>,
    created: u64,
    /// Prompt tokens as vLLM's `/metrics` counts them: all of them (each
    /// looked up in the GPU's prefix cache), those found there, those then
    /// asked of the connector, and those it had.
    queried_tokens: AtomicU64,
    local_hit_tokens: AtomicU64,
    external_queried_tokens: AtomicU64,
    external_hit_tokens: AtomicU64,
    finished_requests: AtomicU64,
    noise: Noise,
    started: std::time::Instant,
    answers: Answers,
    /// Times the injected KV fault changed a request.
    fault_fired: AtomicU64,
}

#[derive(Clone, Copy, PartialEq)]
enum Api {
    Chat,
    Completions,
}

/// Runs the sim until the process is killed.
pub(crate) async fn serve(host: &str, port: u16, opts: SimOptions) -> Result<(), SimError> {
    if opts.crash_at_start {
        log(format_args!(
            "sim: loading model {}",
            opts.served_model_name
        ));
        return Err(SimError::CrashAtStart);
    }
    log(format_args!(
        "sim: loading model {} ({} ms)",
        opts.served_model_name, opts.load_delay_ms
    ));
    // vLLM does not listen until the model is loaded; neither does the sim.
    tokio::time::sleep(Duration::from_millis(opts.load_delay_ms)).await;
    let answers = Answers::new(
        opts.answer_key.as_deref(),
        opts.accuracy,
        opts.flip_on_hit_rate,
    )?;
    if let Some(dir) = &opts.answer_key {
        log(format_args!(
            "sim: answer key {} ({} questions, accuracy {})",
            dir.display(),
            answers.known_questions(),
            opts.accuracy
        ));
    }
    if let Some(f) = opts.kv_fault {
        log(format_args!(
            "lmcache-e2e fault: {} armed on the sim's KV connector",
            f.as_str()
        ));
    }
    let addr = format!("{host}:{port}");
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| SimError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local: SocketAddr = listener.local_addr().map_err(SimError::Serve)?;
    log(format_args!(
        "sim: serving {} on http://{local}",
        opts.served_model_name
    ));
    // Small SSE writes must leave at once: without TCP_NODELAY, Nagle's
    // algorithm and the client's delayed ACK add ~40 ms to every token.
    // uvicorn (vLLM) sets it too.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(opts, answers))
        .with_graceful_shutdown(terminated())
        .await
        .map_err(SimError::Serve)
}

/// SIGTERM or SIGINT, as vLLM handles them: stop serving and exit. As PID 1
/// in a container, a process without a handler would ignore SIGTERM and
/// hold `docker stop` for its whole timeout.
async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    log(format_args!("sim: shutting down"));
}

fn router(opts: SimOptions, answers: Answers) -> Router {
    let sim = Arc::new(Sim {
        noise: Noise::of(&opts),
        started: std::time::Instant::now(),
        answers,
        fault_fired: AtomicU64::new(0),
        gpu_cache: Mutex::new(PrefixCache::new(opts.cache_tokens, GPU_BLOCK_TOKENS)),
        external: (opts.external_cache_tokens > 0).then(|| {
            Mutex::new(PrefixCache::new(
                opts.external_cache_tokens,
                opts.chunk_size,
            ))
        }),
        prefill: tokio::sync::Mutex::new(()),
        requests: AtomicU64::new(0),
        in_flight: Arc::new(AtomicU64::new(0)),
        faults: Mutex::new(StdRng::seed_from_u64(opts.seed)),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        queried_tokens: AtomicU64::new(0),
        local_hit_tokens: AtomicU64::new(0),
        external_queried_tokens: AtomicU64::new(0),
        external_hit_tokens: AtomicU64::new(0),
        finished_requests: AtomicU64::new(0),
        opts,
    });
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/version", get(version))
        .route("/tokenize", post(tokenize_route))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/metrics", get(metrics))
        .route("/reset_prefix_cache", post(reset_prefix_cache))
        .with_state(sim)
}

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let body = json!({
        "object": "error",
        "message": message.into(),
        "type": kind,
        "param": null,
        "code": status.as_u16(),
    });
    (status, Json(body)).into_response()
}

impl Sim {
    /// Counts a request and applies the crash and hang faults. Hanging never
    /// returns: the connection stays open and silent, like a wedged engine.
    async fn admit(&self) -> u64 {
        let n = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(limit) = self.opts.crash_after {
            if n > limit {
                log(format_args!(
                    "sim: crashing on request {n} (fault: crash after {limit})"
                ));
                std::process::exit(1);
            }
        }
        if let Some(limit) = self.opts.hang_after {
            if n > limit {
                std::future::pending::<()>().await;
            }
        }
        n
    }

    /// One request's latency factor, from the sim's noise model and its
    /// fault generator.
    fn noise(&self) -> f64 {
        let elapsed = self.started.elapsed().as_secs_f64();
        self.faults
            .lock()
            .map(|mut r| self.noise.factor(&mut *r, elapsed))
            .unwrap_or(1.0)
    }

    /// Notes that the KV fault changed a request; the first time in the
    /// log, in the line the fault hook of a real engine prints, so a
    /// control can tell a fault that fired from one that never did.
    fn fired(&self) {
        if self.fault_fired.fetch_add(1, Ordering::Relaxed) == 0 {
            if let Some(f) = self.opts.kv_fault {
                log(format_args!("lmcache-e2e fault: {} fired", f.as_str()));
            }
        }
    }

    async fn hang_if_wedged(&self) {
        if let Some(limit) = self.opts.hang_after {
            if self.requests.load(Ordering::SeqCst) >= limit {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// vLLM 0.26's cache counters in Prometheus text, named, labelled and
/// described as its `/metrics` serves them (tests/fixtures/vllm/).
async fn metrics(State(sim): State<Arc<Sim>>) -> Response {
    let model = &sim.opts.served_model_name;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let (all, local, ext_queried, ext_hit) = (
        get(&sim.queried_tokens),
        get(&sim.local_hit_tokens),
        get(&sim.external_queried_tokens),
        get(&sim.external_hit_tokens),
    );
    let labels = format!("engine=\"0\",model_name=\"{model}\"");
    let mut text = String::new();
    let mut counter = |name: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} counter");
        for (labels, value) in samples {
            let _ = writeln!(text, "{name}{{{labels}}} {value}.0");
        }
    };
    let one = |v: u64| [(labels.clone(), v)];
    counter(
        "vllm:prefix_cache_queries_total",
        "Prefix cache queries, in terms of number of queried tokens.",
        &one(all),
    );
    counter(
        "vllm:prefix_cache_hits_total",
        "Prefix cache hits, in terms of number of cached tokens.",
        &one(local),
    );
    counter("vllm:external_prefix_cache_queries_total", "External prefix cache queries from KV connector cross-instance cache sharing, in terms of number of queried tokens.", &one(ext_queried));
    counter("vllm:external_prefix_cache_hits_total", "External prefix cache hits from KV connector cross-instance cache sharing, in terms of number of cached tokens.", &one(ext_hit));
    counter(
        "vllm:prompt_tokens_total",
        "Number of prefill tokens processed.",
        &one(all),
    );
    let by_source: Vec<(String, u64)> = [
        ("local_compute", all - local - ext_hit),
        ("local_cache_hit", local),
        ("external_kv_transfer", ext_hit),
    ]
    .into_iter()
    .map(|(source, v)| (format!("{labels},source=\"{source}\""), v))
    .collect();
    counter(
        "vllm:prompt_tokens_by_source_total",
        "Number of prompt tokens by source.",
        &by_source,
    );
    counter(
        "vllm:prompt_tokens_cached_total",
        "Number of cached prompt tokens (local + external).",
        &one(local + ext_hit),
    );
    let finished = get(&sim.finished_requests);
    counter(
        "vllm:request_success_total",
        "Count of successfully processed requests.",
        &[(
            format!("engine=\"0\",finished_reason=\"length\",model_name=\"{model}\""),
            finished,
        )],
    );
    gauges(&mut text, &sim);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The gauges vLLM serves beside its counters: its cache configuration
/// (GPU KV capacity) and the process's start time.
fn gauges(text: &mut String, sim: &Sim) {
    // vLLM's cache configuration, as an info gauge (its GPU KV capacity).
    let blocks = sim.opts.cache_tokens / GPU_BLOCK_TOKENS as u64;
    let _ = writeln!(
        text,
        "# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig\n# TYPE vllm:cache_config_info gauge\n\
         vllm:cache_config_info{{block_size=\"{GPU_BLOCK_TOKENS}\",enable_prefix_caching=\"True\",engine=\"0\",kv_cache_size_tokens=\"{}\",num_gpu_blocks=\"{blocks}\"}} 1.0",
        blocks * GPU_BLOCK_TOKENS as u64
    );
    // prometheus_client's process collector, as vLLM's and SGLang's serve it.
    let _ = writeln!(
        text,
        "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {:e}",
        sim.created as f64
    );
}

/// vLLM's `POST /reset_prefix_cache` (a dev-mode route): empties the GPU's
/// prefix cache and leaves the connector's store (LMCache's) alone, as
/// vLLM does without `reset_external=true`.
async fn reset_prefix_cache(State(sim): State<Arc<Sim>>) -> Json<Value> {
    if let Ok(mut cache) = sim.gpu_cache.lock() {
        cache.clear();
    }
    Json(json!({ "success": true }))
}

async fn health(State(sim): State<Arc<Sim>>) -> StatusCode {
    sim.hang_if_wedged().await;
    StatusCode::OK
}

/// As vLLM answers it; the sim's own version, marked as the sim's.
async fn version() -> Json<Value> {
    Json(json!({ "version": concat!("sim-", env!("CARGO_PKG_VERSION")) }))
}

async fn models(State(sim): State<Arc<Sim>>) -> Json<Value> {
    sim.hang_if_wedged().await;
    Json(json!({
        "object": "list",
        "data": [{
            "id": sim.opts.served_model_name,
            "object": "model",
            "created": sim.created,
            "owned_by": "lmcache-e2e",
            "root": sim.opts.served_model_name,
            "parent": null,
            "max_model_len": sim.opts.max_model_len,
            "permission": [{
                "id": "modelperm-sim",
                "object": "model_permission",
                "created": sim.created,
                "allow_create_engine": false,
                "allow_sampling": true,
                "allow_logprobs": true,
                "allow_search_indices": false,
                "allow_view": true,
                "allow_fine_tuning": false,
                "organization": "*",
                "group": null,
                "is_blocking": false,
            }],
        }],
    }))
}

/// Looks a prompt up as vLLM with a KV connector does, and stores it: the
/// GPU's prefix cache first, then the connector for what the GPU lacked.
/// vLLM computes at least the last prompt token, so neither counts it.
/// Returns (tokens the GPU had, tokens the connector added).
fn lookup(sim: &Sim, tokens: &[&str], kv_reachable: bool) -> (usize, usize) {
    let most = tokens.len().saturating_sub(1);
    let local = sim
        .gpu_cache
        .lock()
        .map(|mut c| c.lookup_and_store(tokens))
        .unwrap_or(0)
        .min(most);
    let external = match (&sim.external, kv_reachable) {
        (Some(store), true) => {
            let mut found = store
                .lock()
                .map(|mut c| c.lookup_and_store(tokens))
                .unwrap_or(0);
            if sim.opts.kv_fault == Some(KvFault::DropFirstChunk) && found > local {
                // The chunk every key after it chains from is gone.
                sim.fired();
                found = 0;
            }
            sim.external_queried_tokens
                .fetch_add((tokens.len() - local) as u64, Ordering::Relaxed);
            found.min(most).saturating_sub(local)
        }
        (Some(_), false) => {
            sim.external_queried_tokens
                .fetch_add((tokens.len() - local) as u64, Ordering::Relaxed);
            0
        }
        (None, _) => 0,
    };
    sim.queried_tokens
        .fetch_add(tokens.len() as u64, Ordering::Relaxed);
    sim.local_hit_tokens
        .fetch_add(local as u64, Ordering::Relaxed);
    sim.external_hit_tokens
        .fetch_add(external as u64, Ordering::Relaxed);
    (local, external)
}

/// The prompt text of a request: `prompt` for completions, the messages'
/// text contents (string or content parts) for chat.
fn prompt_of(body: &Value, api: Api) -> Result<String, String> {
    match api {
        Api::Completions => match body.get("prompt") {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Array(items)) if items.len() == 1 && items[0].is_string() => {
                Ok(items[0].as_str().unwrap_or_default().to_string())
            }
            Some(_) => Err("'prompt' must be a string".to_string()),
            None => Err("'prompt' is required".to_string()),
        },
        Api::Chat => {
            let messages = body
                .get("messages")
                .and_then(Value::as_array)
                .ok_or("'messages' must be a list of messages")?;
            let mut parts = Vec::new();
            for m in messages {
                match m.get("content") {
                    Some(Value::String(s)) => parts.push(s.clone()),
                    Some(Value::Array(items)) => {
                        for item in items {
                            if let Some(t) = item.get("text").and_then(Value::as_str) {
                                parts.push(t.to_string());
                            }
                        }
                    }
                    Some(Value::Null) | None => {}
                    Some(_) => return Err("message 'content' must be a string or a list".into()),
                }
            }
            Ok(parts.join("\n"))
        }
    }
}

async fn tokenize_route(State(sim): State<Arc<Sim>>, body: Json<Value>) -> Response {
    sim.hang_if_wedged().await;
    let api = if body.get("messages").is_some() {
        Api::Chat
    } else {
        Api::Completions
    };
    match prompt_of(&body, api) {
        Ok(prompt) => {
            let tokens: Vec<u32> = tokenize(&prompt).into_iter().map(token_id).collect();
            Json(json!({
                "count": tokens.len(),
                "max_model_len": sim.opts.max_model_len,
                "tokens": tokens,
            }))
            .into_response()
        }
        Err(msg) => error(StatusCode::BAD_REQUEST, "BadRequestError", msg),
    }
}

async fn completions(
    State(sim): State<Arc<Sim>>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    generate(sim, body, Api::Completions).await
}

async fn chat_completions(
    State(sim): State<Arc<Sim>>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    generate(sim, body, Api::Chat).await
}

/// Counts a generation request in flight until dropped, wherever the
/// response ends (a handler's return, or the end of a stream).
struct InFlight(Arc<AtomicU64>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Plan {
    id: String,
    model: String,
    api: Api,
    created: u64,
    words: Vec<&'static str>,
    prompt_tokens: usize,
    cached_tokens: usize,
    include_usage: bool,
    decode: Duration,
}

async fn generate(
    sim: Arc<Sim>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
    api: Api,
) -> Response {
    let n = sim.admit().await;
    let now = sim.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let guard = InFlight(sim.in_flight.clone());
    if sim.opts.log_requests {
        log(format_args!("sim: request {n} arrived, {now} in flight"));
    }
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, "BadRequestError", e.body_text()),
    };
    let (prompt, max_tokens) = match admitted(&sim, &body, api, n) {
        Ok(asked) => asked,
        Err(refused) => return refused,
    };
    let kv_reachable = match kv_server(&sim, n).await {
        Ok(reachable) => reachable,
        Err(refused) => return refused,
    };
    let tokens = tokenize(&prompt);
    let (local, restored) = prefill(&sim, &tokens, kv_reachable, n).await;
    let cached_tokens = local + restored;
    sim.finished_requests.fetch_add(1, Ordering::Relaxed);
    let variant = u64::from(sim.opts.corrupt_on_hit && cached_tokens > 0);
    let plan = Plan {
        id: format!("{}-{n}", if api == Api::Chat { "chatcmpl" } else { "cmpl" }),
        model: sim.opts.served_model_name.clone(),
        api,
        created: sim.created,
        words: answer(
            &sim,
            &prompt,
            max_tokens,
            variant,
            cached_tokens > 0,
            restored > 0,
        ),
        prompt_tokens: tokens.len(),
        cached_tokens,
        include_usage: body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        decode: Duration::from_secs_f64(
            (sim.opts.decode_ms_per_token / 1000.0 * sim.noise()).max(0.0),
        ),
    };
    if body.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        stream_response(plan, guard)
    } else {
        let decode = plan.decode * plan.words.len().saturating_sub(1) as u32;
        tokio::time::sleep(decode).await;
        let response = Json(whole_response(&plan)).into_response();
        drop(guard);
        response
    }
}

/// The request's prompt and `max_tokens`, or vLLM's refusal: another
/// model, no prompt, more than the context holds, or an injected fault.
fn admitted(sim: &Sim, body: &Value, api: Api, n: u64) -> Result<(String, usize), Response> {
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if model != sim.opts.served_model_name {
        return Err(error(
            StatusCode::NOT_FOUND,
            "NotFoundError",
            format!("The model `{model}` does not exist."),
        ));
    }
    let prompt = prompt_of(body, api)
        .map_err(|msg| error(StatusCode::BAD_REQUEST, "BadRequestError", msg))?;
    let max_tokens = body
        .get(
            if api == Api::Chat && body.get("max_completion_tokens").is_some() {
                "max_completion_tokens"
            } else {
                "max_tokens"
            },
        )
        .and_then(Value::as_u64)
        .unwrap_or(16) as usize;
    let asked = tokenize(&prompt).len() + max_tokens;
    if asked as u64 > sim.opts.max_model_len {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "BadRequestError",
            format!(
                "This model's maximum context length is {} tokens. However, you requested {} tokens ({} in the messages, {} in the completion).",
                sim.opts.max_model_len,
                asked,
                asked - max_tokens,
                max_tokens
            ),
        ));
    }
    if sim.opts.error_rate > 0.0 {
        let roll: f64 = sim.faults.lock().map(|mut r| r.gen()).unwrap_or(0.0);
        if roll < sim.opts.error_rate {
            return Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                format!("injected fault on request {n}"),
            ));
        }
    }
    Ok((prompt, max_tokens))
}

/// Whether the LMCache server answers; an unreachable one fails the
/// request under the `fail` policy, as LMCache's connector does.
async fn kv_server(sim: &Sim, n: u64) -> Result<bool, Response> {
    let Some(addr) = &sim.opts.kv_server else {
        return Ok(true);
    };
    if tokio::net::TcpStream::connect(addr.as_str()).await.is_ok() {
        return Ok(true);
    }
    log(format_args!(
        "request {n}: KV server {addr} unreachable ({:?})",
        sim.opts.kv_load_failure_policy
    ));
    match sim.opts.kv_load_failure_policy {
        KvFailurePolicy::Fail => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "failed to load KV from the LMCache server".to_string(),
        )),
        KvFailurePolicy::Recompute => Ok(false),
    }
}

/// Prefill: queue for the "GPU", then pay for the uncached tokens; returns
/// how many the GPU had and how many the connector restored.
async fn prefill(sim: &Sim, tokens: &[&str], kv_reachable: bool, n: u64) -> (usize, usize) {
    let _gpu = sim.prefill.lock().await;
    let (local, external) = lookup(sim, tokens, kv_reachable);
    let cached = local + external;
    let uncached = tokens.len() - cached;
    let cold = if n <= sim.opts.slow_first_requests {
        sim.opts.slow_extra_ms
    } else {
        0.0
    };
    // A slow retrieval costs more per restored token than recomputing it.
    let restore_us = if sim.opts.kv_fault == Some(KvFault::SlowRetrieve) && external > 0 {
        sim.fired();
        1.5 * sim.opts.prefill_us_per_token
    } else {
        sim.opts.cached_prefill_us_per_token
    };
    let micros = (uncached as f64 * sim.opts.prefill_us_per_token
        + local as f64 * sim.opts.cached_prefill_us_per_token
        + external as f64 * restore_us
        + (sim.opts.base_latency_ms + cold) * 1000.0)
        * sim.noise();
    tokio::time::sleep(Duration::from_micros(micros.max(0.0) as u64)).await;
    (local, external)
}

/// The output words, the first one the answer key's letter (or a flipped
/// one) when the prompt asks a multiple-choice question.
fn answer(
    sim: &Sim,
    prompt: &str,
    n: usize,
    variant: u64,
    hit: bool,
    restored: bool,
) -> Vec<&'static str> {
    if sim.opts.dummy_weights {
        if restored && sim.opts.kv_fault == Some(KvFault::CorruptKv) {
            sim.fired();
        }
        // Random weights collapse to one token whatever came before it,
        // right KV or wrong.
        return vec!["the"; n];
    }
    let mut words = output_words(prompt, n, variant);
    if prompt.trim_end().ends_with("Answer:") {
        if let Some(first) = words.first_mut() {
            *first = sim.answers.letter(prompt, first, hit);
        }
    }
    if hit && reuse_changes(prompt, sim.opts.reuse_changes_rate) {
        diverge(prompt, &mut words, 0x5e05e, 0x0005_e05e_c0de);
    }
    if restored && sim.opts.kv_fault == Some(KvFault::CorruptKv) {
        sim.fired();
        corrupt(prompt, &mut words);
    }
    words
}

/// Whether a reused prefix continues this prompt otherwise (a share
/// `rate` of prompts, drawn per prompt).
fn reuse_changes(prompt: &str, rate: f64) -> bool {
    rate > 0.0 && (fnv1a(0x5e05e, prompt.as_bytes()) % 10_000) as f64 / 10_000.0 < rate
}

/// Restored KV gone wrong: the output leaves the right one at a token
/// chosen per prompt among the first eight (at the first for one prompt in
/// eight, so a two-token MMLU answer sees only some of it).
fn corrupt(prompt: &str, words: &mut [&'static str]) {
    let from = diverge(prompt, words, 0xbad, 0xbad_c0de);
    if from == 0 && prompt.trim_end().ends_with("Answer:") {
        if let Some(first) = words.first_mut() {
            let letters = ["A", "B", "C", "D"];
            let at = letters.iter().position(|l| l == first).unwrap_or(0);
            *first = letters[(at + 1) % 4];
        }
    }
}

/// Continues `words` otherwise from a token chosen per prompt and `salt`
/// among the first eight, with the words of `seed`; returns that token's
/// place.
fn diverge(prompt: &str, words: &mut [&'static str], salt: u64, seed: u64) -> usize {
    let from = (fnv1a(salt, prompt.as_bytes()) % 8) as usize;
    let wrong = output_words(prompt, words.len(), seed);
    for (i, w) in words.iter_mut().enumerate().skip(from) {
        *w = if *w == wrong[i] {
            if *w == "the" {
                "cache"
            } else {
                "the"
            }
        } else {
            wrong[i]
        };
    }
    from
}

/// vLLM 0.26 names the build it serves here.
const FINGERPRINT: &str = concat!("sim-", env!("CARGO_PKG_VERSION"));

/// Usage as vLLM counts it; `prompt_tokens_details` (cached tokens) as it
/// gives them with `--enable-prompt-tokens-details`, which the sim always
/// has on (vLLM's default is `null` there).
fn usage(plan: &Plan) -> Value {
    json!({
        "prompt_tokens": plan.prompt_tokens,
        "total_tokens": plan.prompt_tokens + plan.words.len(),
        "completion_tokens": plan.words.len(),
        "prompt_tokens_details": {"cached_tokens": plan.cached_tokens},
    })
}

fn output_text(plan: &Plan) -> String {
    plan.words
        .iter()
        .map(|w| format!(" {w}"))
        .collect::<String>()
}

/// A whole (not streamed) answer, with the fields vLLM 0.26 gives one
/// (tests/fixtures/vllm/completion.json).
fn whole_response(plan: &Plan) -> Value {
    let text = output_text(plan);
    let choice = match plan.api {
        Api::Chat => json!({
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": null,
            "finish_reason": "length",
            "stop_reason": null,
            "token_ids": null,
        }),
        Api::Completions => json!({
            "index": 0,
            "text": text,
            "logprobs": null,
            "finish_reason": "length",
            "stop_reason": null,
            "token_ids": null,
            "prompt_logprobs": null,
            "prompt_token_ids": null,
            "routed_experts": null,
        }),
    };
    json!({
        "id": plan.id,
        "object": if plan.api == Api::Chat { "chat.completion" } else { "text_completion" },
        "created": plan.created,
        "model": plan.model,
        "choices": [choice],
        "service_tier": null,
        "system_fingerprint": FINGERPRINT,
        "usage": usage(plan),
        "kv_transfer_params": null,
        "ec_transfer_params": null,
        "metrics": null,
    })
}

/// One streamed chunk, with the fields vLLM 0.26 streams
/// (tests/fixtures/vllm/*-stream.sse): the chat role chunk carries
/// `prompt_token_ids` and `prompt_text`, a token chunk `token_ids`, the
/// last one `stop_reason`.
fn chunk(plan: &Plan, piece: Option<&str>, finish: Option<&str>, role: bool) -> Value {
    let mut choice = match plan.api {
        Api::Chat => {
            let mut delta = json!({});
            if role {
                delta["role"] = json!("assistant");
                delta["content"] = json!("");
            }
            if let Some(p) = piece {
                delta["content"] = json!(p);
            }
            json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
        }
        Api::Completions => json!({
            "index": 0,
            "text": piece.unwrap_or(""),
            "logprobs": null,
            "finish_reason": finish,
            "stop_reason": null,
            "prompt_token_ids": null,
        }),
    };
    if !role {
        choice["token_ids"] = Value::Null;
    }
    if plan.api == Api::Chat && finish.is_some() {
        choice["stop_reason"] = Value::Null;
    }
    let mut c = json!({
        "id": plan.id,
        "object": if plan.api == Api::Chat { "chat.completion.chunk" } else { "text_completion" },
        "created": plan.created,
        "model": plan.model,
        "choices": [choice],
    });
    if role {
        c["prompt_token_ids"] = Value::Null;
        c["prompt_text"] = Value::Null;
    }
    c
}

/// vLLM's chunk order: role (chat only, empty content), one chunk per token
/// with the last carrying `finish_reason`, the usage chunk with empty
/// choices when asked for, then `[DONE]`.
fn stream_response(plan: Plan, guard: InFlight) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(16);
    tokio::spawn(async move {
        let _guard = guard;
        let mut events = Vec::new();
        if plan.api == Api::Chat {
            events.push((Duration::ZERO, chunk(&plan, None, None, true).to_string()));
        }
        let last = plan.words.len().saturating_sub(1);
        for (i, w) in plan.words.iter().enumerate() {
            let wait = if i == 0 { Duration::ZERO } else { plan.decode };
            let finish = (i == last).then_some("length");
            events.push((
                wait,
                chunk(&plan, Some(&format!(" {w}")), finish, false).to_string(),
            ));
        }
        if plan.include_usage {
            let mut u = chunk(&plan, None, None, false);
            u["choices"] = json!([]);
            // Streamed usage has no details in vLLM 0.26.
            let mut usage = usage(&plan);
            usage
                .as_object_mut()
                .map(|o| o.remove("prompt_tokens_details"));
            u["usage"] = usage;
            u["system_fingerprint"] = json!(FINGERPRINT);
            events.push((Duration::ZERO, u.to_string()));
        }
        events.push((Duration::ZERO, "[DONE]".to_string()));
        for (wait, data) in events {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            if tx.send(Event::default().data(data)).await.is_err() {
                return; // client went away
            }
        }
    });
    let events = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<Event, Infallible>(e), rx))
    });
    Sse::new(events).into_response()
}
