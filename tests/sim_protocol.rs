//! The simulated engine over real HTTP: the OpenAI wire format vLLM speaks,
//! the prefix cache, and deterministic output.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

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
    let sim = start(&["--cache-tokens", "10000", "--chunk-size", "4"]).await;
    let http = reqwest::Client::new();
    let ask = || async {
        let body = json!({"model": "lmcache-e2e/sim", "prompt": "7 hi hi hi hi hi hi hi hi", "max_tokens": 5, "temperature": 0});
        let v: Value = http
            .post(format!("{}/v1/completions", sim.url))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
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
    // The same prompt again hits every chunk, the partial last one included.
    assert_eq!(second["usage"]["prompt_tokens_details"]["cached_tokens"], 9);
    assert_eq!(second["usage"]["total_tokens"], 9 + 5);
    // A longer prompt reuses only the full 4-token chunks of its prefix.
    let body = json!({"model": "lmcache-e2e/sim", "prompt": "7 hi hi hi hi hi hi hi hi hi hi", "max_tokens": 1});
    let v: Value = http
        .post(format!("{}/v1/completions", sim.url))
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
}

#[tokio::test]
async fn metrics_count_cache_queries_and_hits_as_vllm_does() {
    let http = reqwest::Client::new();
    for (flag, hit_name, other) in [
        (
            None,
            "vllm:prefix_cache_hits_total",
            "vllm:external_prefix_cache_hits_total",
        ),
        (
            Some("--external-cache"),
            "vllm:external_prefix_cache_hits_total",
            "vllm:prefix_cache_hits_total",
        ),
    ] {
        let mut args = vec!["--cache-tokens", "10000", "--chunk-size", "4"];
        args.extend(flag);
        let sim = start(&args).await;
        for _ in 0..2 {
            let body = json!({"model": "lmcache-e2e/sim", "prompt": "7 hi hi hi hi hi hi hi hi", "max_tokens": 1});
            http.post(format!("{}/v1/completions", sim.url))
                .json(&body)
                .send()
                .await
                .unwrap();
        }
        let text = http
            .get(format!("{}/metrics", sim.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let value = |name: &str| -> f64 {
            text.lines()
                .find(|l| l.starts_with(&format!("{name}{{")))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} in {text}"))
        };
        assert_eq!(value("vllm:prefix_cache_queries_total"), 18.0, "{text}");
        assert_eq!(
            value(hit_name),
            9.0,
            "the second prompt hit all 9 tokens: {text}"
        );
        assert_eq!(value(other), 0.0, "{text}");
        assert!(text.contains(&format!("# TYPE {hit_name} counter")));
    }
}

#[tokio::test]
async fn corrupt_on_hit_changes_the_answer_only_on_a_hit() {
    let sim = start(&[
        "--cache-tokens",
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
        let v: Value = http
            .post(format!("{}/v1/completions", sim.url))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
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
    let tok: Value = http
        .post(format!("{}/tokenize", sim.url))
        .json(&json!({"prompt": "a b c"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
        run(
            bin()
                .args(["ci", "--suite"])
                .arg(&suite)
                .arg("--results-dir")
                .arg(&results_dir),
            Duration::from_secs(60),
        )
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
