//! The simulated engine over real HTTP: the OpenAI wire format vLLM speaks,
//! the prefix cache, and deterministic output.

use std::process::{Child, Stdio};
use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};

/// POSTs `body` as JSON to `url` and reads the answer as JSON.
async fn post_json(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    http.post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

struct Sim {
    child: Child,
    url: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start(extra: &[&str]) -> Sim {
    let port = free_port();
    let child = bin()
        .args(["sim", "serve", "--port", &port.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sim = Sim {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http
            .get(format!("{}/health", sim.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return sim;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("sim did not start");
}

/// The `data:` payloads of an SSE body.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| {
            e.lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(String::from)
        })
        .collect()
}

#[tokio::test]
async fn chat_stream_follows_vllm_chunk_order_with_usage() {
    let sim = start(&["--cache-tokens", "10000"]).await;
    let http = reqwest::Client::new();
    let body = json!({
        "model": "lmcache-e2e/sim",
        "messages": [{"role": "user", "content": "0 hi hi hi"}],
        "max_tokens": 3,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let resp = http
        .post(format!("{}/v1/chat/completions", sim.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let ev = events(&resp.text().await.unwrap());
    assert_eq!(ev.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "");
    let content: Vec<&Value> = chunks[1..4].iter().map(|c| &c["choices"][0]).collect();
    assert!(content
        .iter()
        .all(|c| !c["delta"]["content"].as_str().unwrap().is_empty()));
    assert_eq!(content[2]["finish_reason"], "length");
    let usage = &chunks[4];
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 4);
    assert_eq!(usage["usage"]["completion_tokens"], 3);
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
}

#[tokio::test]
async fn completions_are_deterministic_and_the_cache_reports_hits() {
    // LMCache's store alone (no GPU cache): 4-token chunks, full ones only.
    let sim = start(&["--external-cache-tokens", "10000", "--chunk-size", "4"]).await;
    let http = reqwest::Client::new();
    let ask = || async {
        let body = json!({"model": "lmcache-e2e/sim", "prompt": "7 hi hi hi hi hi hi hi hi", "max_tokens": 5, "temperature": 0});
        let v: Value = post_json(&http, &format!("{}/v1/completions", sim.url), &body).await;
        v
    };
    let first = ask().await;
    let second = ask().await;
    assert_eq!(first["object"], "text_completion");
    assert_eq!(
        first["choices"][0]["text"], second["choices"][0]["text"],
        "same prompt, same text, cache or not"
    );
    assert_eq!(first["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
    // The same prompt again hits its two full chunks; the ninth token is
    // computed (as LMCache 0.5.2 loads full chunks only).
    assert_eq!(second["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
    assert_eq!(second["usage"]["total_tokens"], 9 + 5);
    // A longer prompt reuses only the full 4-token chunks of its prefix.
    let body = json!({"model": "lmcache-e2e/sim", "prompt": "7 hi hi hi hi hi hi hi hi hi hi", "max_tokens": 1});
    let v: Value = post_json(&http, &format!("{}/v1/completions", sim.url), &body).await;
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
}

/// A vLLM 0.26 capture from the H200 run (tests/fixtures/vllm/).
fn capture(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/vllm")
            .join(name),
    )
    .unwrap()
}

/// `name{labels} value` samples of a Prometheus text, by name: each with
/// its label keys (sorted) and value; and each name's HELP and TYPE.
#[derive(Default)]
struct Scrape {
    samples: std::collections::BTreeMap<String, Vec<(Vec<String>, String, f64)>>,
    help: std::collections::BTreeMap<String, String>,
}

fn scrape(text: &str) -> Scrape {
    let mut s = Scrape::default();
    for line in text.lines() {
        if let Some(rest) = line
            .strip_prefix("# HELP ")
            .or(line.strip_prefix("# TYPE "))
        {
            let (name, what) = rest.split_once(' ').unwrap();
            let e = s.help.entry(name.to_string()).or_default();
            e.push_str(what);
            e.push('|');
            continue;
        }
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = head.split_once('{').unwrap_or((head, "}"));
        let labels = labels.trim_end_matches('}');
        let mut keys: Vec<String> = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| l.split('=').next().unwrap().to_string())
            .collect();
        keys.sort();
        let source = labels
            .split(',')
            .find_map(|l| l.strip_prefix("source="))
            .unwrap_or("")
            .trim_matches('"')
            .to_string();
        s.samples.entry(name.to_string()).or_default().push((
            keys,
            source,
            value.parse().unwrap_or(f64::NAN),
        ));
    }
    s
}

/// The counters the tool reads off vLLM's `/metrics`.
const READ: &[&str] = &[
    "vllm:prefix_cache_queries_total",
    "vllm:prefix_cache_hits_total",
    "vllm:external_prefix_cache_queries_total",
    "vllm:external_prefix_cache_hits_total",
    "vllm:prompt_tokens_total",
    "vllm:prompt_tokens_by_source_total",
    "vllm:prompt_tokens_cached_total",
    "vllm:request_success_total",
];

async fn sim_metrics(sim: &Sim) -> String {
    reqwest::get(format!("{}/metrics", sim.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn complete_twice(sim: &Sim, prompt: &str) {
    let http = reqwest::Client::new();
    for _ in 0..2 {
        let body = json!({"model": "lmcache-e2e/sim", "prompt": prompt, "max_tokens": 1});
        http.post(format!("{}/v1/completions", sim.url))
            .json(&body)
            .send()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_sims_metrics_are_named_labelled_and_described_as_vllms() {
    let real = scrape(&capture("metrics-lmcache-after.prom"));
    let sim = start(&[
        "--cache-tokens",
        "10000",
        "--external-cache-tokens",
        "10000",
    ])
    .await;
    complete_twice(&sim, "7 hi hi hi").await;
    let ours = scrape(&sim_metrics(&sim).await);
    for name in READ {
        let (r, o) = (&real.samples[*name], &ours.samples[*name]);
        let keys = |v: &Vec<(Vec<String>, String, f64)>| {
            v.iter()
                .map(|(k, s, _)| (k.clone(), s.clone()))
                .collect::<std::collections::BTreeSet<_>>()
        };
        if *name == "vllm:request_success_total" {
            // vLLM lists every finish reason; the sim's requests all end by length.
            assert_eq!(r[0].0, o[0].0, "{name}: label keys");
        } else {
            assert_eq!(keys(r), keys(o), "{name}: label keys and sources");
        }
        assert_eq!(real.help[*name], ours.help[*name], "{name}: HELP and TYPE");
    }
}

/// What vLLM 0.26 with LMCache counted on the H200 (long document QA, 24
/// documents of 10,000 tokens that overflow the GPU's cache): every prompt
/// token is a prefix-cache query; what the GPU lacked is asked of the
/// connector; prompt tokens by source add up; cached = local + external.
/// The sim keeps the same books, the GPU's cache in front of LMCache's.
#[tokio::test]
async fn the_sim_keeps_vllms_books_for_the_gpu_cache_and_the_connector() {
    let books = |text: &str| {
        let s = scrape(text);
        let one = |n: &str| s.samples[n].iter().map(|x| x.2).sum::<f64>();
        let source = |src: &str| {
            s.samples["vllm:prompt_tokens_by_source_total"]
                .iter()
                .find(|x| x.1 == src)
                .unwrap()
                .2
        };
        (
            one("vllm:prompt_tokens_total"),
            one("vllm:prefix_cache_queries_total"),
            one("vllm:prefix_cache_hits_total"),
            one("vllm:external_prefix_cache_queries_total"),
            one("vllm:external_prefix_cache_hits_total"),
            one("vllm:prompt_tokens_cached_total"),
            [
                source("local_compute"),
                source("local_cache_hit"),
                source("external_kv_transfer"),
            ],
        )
    };
    let check = |text: &str, what: &str| {
        let (prompt, queries, local, ext_q, ext_hit, cached, by_source) = books(text);
        assert_eq!(queries, prompt, "{what}: every prompt token is queried");
        if !what.contains("baseline") {
            assert_eq!(
                ext_q,
                queries - local,
                "{what}: the connector is asked for what the GPU lacked"
            );
        }
        assert_eq!(cached, local + ext_hit, "{what}: cached = local + external");
        assert_eq!(
            by_source.iter().sum::<f64>(),
            prompt,
            "{what}: sources add up"
        );
        assert_eq!(by_source[1], local, "{what}");
        assert_eq!(by_source[2], ext_hit, "{what}");
        (local, ext_hit)
    };
    let (_, real_ext) = check(&capture("metrics-lmcache-after.prom"), "vLLM");
    assert!(real_ext > 0.0);
    let (_, real_ext) = check(&capture("metrics-baseline-after.prom"), "vLLM baseline");
    assert_eq!(real_ext, 0.0);
    // A 40-token prompt twice: the GPU holds two full 16-token blocks;
    // LMCache (4-token chunks) has the rest but the last token, which vLLM
    // always computes.
    let sim = start(&[
        "--cache-tokens",
        "10000",
        "--external-cache-tokens",
        "10000",
        "--chunk-size",
        "4",
    ])
    .await;
    let prompt = format!("7 {}", vec!["hi"; 39].join(" "));
    complete_twice(&sim, &prompt).await;
    let (local, ext) = check(&sim_metrics(&sim).await, "sim");
    assert_eq!((local, ext), (32.0, 7.0));
    // After vLLM's reset of the GPU's prefix cache, LMCache serves it all.
    reqwest::Client::new()
        .post(format!("{}/reset_prefix_cache", sim.url))
        .send()
        .await
        .unwrap();
    complete_twice(&sim, &prompt).await;
    let (local, ext) = check(&sim_metrics(&sim).await, "sim after reset");
    assert_eq!(
        (local, ext),
        (32.0 + 32.0, 7.0 + 39.0 + 7.0),
        "39 from LMCache, then 32 + 7 again"
    );
    // A baseline (no connector) asks no connector.
    let base = start(&["--cache-tokens", "10000"]).await;
    complete_twice(&base, &prompt).await;
    let (local, ext) = check(&sim_metrics(&base).await, "sim baseline");
    assert_eq!((local, ext), (32.0, 0.0));
    let (_, _, _, ext_q, ..) = books(&sim_metrics(&base).await);
    assert_eq!(ext_q, 0.0);
}

#[tokio::test]
async fn corrupt_on_hit_changes_the_answer_only_on_a_hit() {
    let sim = start(&[
        "--external-cache-tokens",
        "10000",
        "--chunk-size",
        "2",
        "--corrupt-on-hit",
    ])
    .await;
    let http = reqwest::Client::new();
    let body = json!({"model": "lmcache-e2e/sim", "prompt": "1 hi hi hi", "max_tokens": 6});
    let mut texts = Vec::new();
    for _ in 0..2 {
        let v: Value = post_json(&http, &format!("{}/v1/completions", sim.url), &body).await;
        texts.push(v["choices"][0]["text"].as_str().unwrap().to_string());
    }
    assert_ne!(texts[0], texts[1]);
}

#[tokio::test]
async fn errors_use_vllm_bodies() {
    let sim = start(&["--max-model-len", "8"]).await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/completions", sim.url))
        .json(&json!({"model": "other", "prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "error");
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("`other` does not exist"));

    let r = http
        .post(format!("{}/v1/completions", sim.url))
        .json(&json!({"model": "lmcache-e2e/sim", "prompt": "a b c d e f", "max_tokens": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("maximum context length is 8"));

    let r = http
        .post(format!("{}/v1/chat/completions", sim.url))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let models: Value = http
        .get(format!("{}/v1/models", sim.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "lmcache-e2e/sim");
    let tok: Value = post_json(
        &http,
        &format!("{}/tokenize", sim.url),
        &json!({"prompt": "a b c"}),
    )
    .await;
    assert_eq!(tok["count"], 3);
}

#[tokio::test]
async fn ci_runs_against_servers_it_did_not_start() {
    let (a, b) = (
        start(&[]).await,
        start(&[
            "--cache-tokens",
            "100000",
            "--cached-prefill-us-per-token",
            "1",
        ])
        .await,
    );
    let dir = tempdir();
    let suite = dir.path().join("external.toml");
    std::fs::write(
        &suite,
        format!(
            r#"
[engines.vllm-baseline]
role = "baseline"
kind = "external"
url = "{}"
[engines.vllm-lmcache]
role = "lmcache"
kind = "external"
url = "{}/v1"
[tests.ldqa]
kind = "long_doc_qa"
num_documents = 3
document_length = 600
output_len = 4
prewarmup_prompts = 0
[tests.ldqa.checks.no_failures]
metric = "failed_requests"
max = 0
"#,
            a.url, b.url
        ),
    )
    .unwrap();
    let results_dir = dir.path().join("r");
    let out = tokio::task::spawn_blocking(move || {
        run(&mut ci_suite(&suite, &results_dir), Duration::from_secs(60))
    })
    .await
    .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("using engine `vllm-baseline`"), "{stderr}");
    let r = results(&dir.path().join("r"));
    assert_eq!(
        r["tests"][0]["metrics"]["lmcache"]["requests"]["value"],
        9.0
    );
    // External engines are never stopped by the run.
    let http = reqwest::Client::new();
    assert!(http
        .get(format!("{}/health", a.url))
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
}

/// Every key path of a JSON value (`choices.0.delta.content`), arrays by
/// their first element; what a client reads is reachable the same way.
fn key_paths(v: &Value, at: &str, out: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                out.insert(p.clone());
                key_paths(v, &p, out);
            }
        }
        Value::Array(a) => {
            if let Some(first) = a.first() {
                key_paths(first, &format!("{at}.0"), out);
            }
        }
        _ => {}
    }
}

fn paths(v: &Value) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    key_paths(v, "", &mut out);
    out
}

/// The chunks of a stream, as (kind, key paths): the role chunk, a token
/// chunk, the last token chunk, the usage chunk; then `[DONE]`.
fn stream_shape(body: &str) -> Vec<std::collections::BTreeSet<String>> {
    let events = events(body);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{body}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let first_token = chunks
        .iter()
        .position(|c| {
            c["choices"][0]["finish_reason"].is_null() && c["choices"][0].get("token_ids").is_some()
        })
        .unwrap();
    let last_token = chunks
        .iter()
        .rposition(|c| !c["choices"][0]["finish_reason"].is_null())
        .unwrap();
    let mut shape: Vec<_> = chunks[..first_token].iter().map(paths).collect();
    shape.push(paths(&chunks[first_token]));
    shape.push(paths(&chunks[last_token]));
    shape.extend(chunks[last_token + 1..].iter().map(paths));
    shape
}

#[tokio::test]
async fn the_sim_streams_and_answers_with_vllms_fields() {
    let sim = start(&[]).await;
    let http = reqwest::Client::new();
    let post = |path: &'static str, body: Value| {
        let (http, url) = (http.clone(), format!("{}{path}", sim.url));
        async move {
            http.post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let model = "lmcache-e2e/sim";
    let chat = post("/v1/chat/completions", json!({"model": model, "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}})).await;
    assert_eq!(
        stream_shape(&chat),
        stream_shape(&capture("chat-stream.sse")),
        "chat stream"
    );
    let text = post("/v1/completions", json!({"model": model, "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}})).await;
    assert_eq!(
        stream_shape(&text),
        stream_shape(&capture("completions-stream.sse")),
        "completions stream"
    );
    let whole: Value = serde_json::from_str(
        &post(
            "/v1/completions",
            json!({"model": model, "prompt": "The capital of France is", "max_tokens": 2}),
        )
        .await,
    )
    .unwrap();
    let real: Value = serde_json::from_str(&capture("completion.json")).unwrap();
    let (ours, theirs) = (paths(&whole), paths(&real));
    // The sim reports cached tokens as vLLM does with --enable-prompt-tokens-details.
    let extra: Vec<_> = ours.difference(&theirs).collect();
    assert_eq!(
        extra,
        ["usage.prompt_tokens_details.cached_tokens"],
        "completion"
    );
    assert!(
        theirs.is_subset(&ours),
        "completion lacks {:?}",
        theirs.difference(&ours).collect::<Vec<_>>()
    );
    let models: Value = reqwest::get(format!("{}/v1/models", sim.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let real: Value = serde_json::from_str(&capture("models.json")).unwrap();
    assert_eq!(paths(&models), paths(&real), "/v1/models");
    let version: Value = reqwest::get(format!("{}/version", sim.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let real: Value = serde_json::from_str(&capture("version.json")).unwrap();
    assert_eq!(paths(&version), paths(&real), "/version");
}
