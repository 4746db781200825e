//! The `vllm bench serve` adapter: runs the real command with the
//! reference's flags against one engine and reads the result file it saves.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use indexmap::IndexMap;
use serde_json::Value;

use super::api::{ErrorClass, WorkloadError};
use crate::child::NoSecrets;
use crate::client::{BadUrl, Endpoint};
use crate::config::Api;
use crate::results::Metric;

/// One `vllm bench serve` run: the random data set and the load, as the
/// kinds that drive it (throughput, fault tolerance) ask for it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bench {
    pub num_prompts: usize,
    pub input_len: usize,
    pub output_len: u32,
    pub seed: u64,
    pub request_rate: Option<f64>,
    pub max_concurrency: Option<usize>,
    pub endpoint: Api,
    pub ignore_eos: bool,
}

/// How far the prompt tokens the engine counted are from the asked-for
/// total: in tokens (the older scripts' `== 500000`) and in percent (k3's
/// ±1 %: the random dataset decodes and re-encodes).
pub(super) fn input_tokens(p: &Bench, total_in: f64) -> [(&'static str, Metric); 2] {
    let expected = (p.num_prompts * p.input_len) as f64;
    let off = (total_in - expected).abs();
    [
        ("input_token_mismatch", Metric::new(off, "tokens")),
        (
            "input_token_error_pct",
            Metric::new(
                if expected > 0.0 {
                    off / expected * 100.0
                } else {
                    0.0
                },
                "%",
            ),
        ),
    ]
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum VllmBenchError {
    #[error("failed to find `{command}` on PATH ({source}); install vLLM in the job's environment, or use driver = \"native\"")]
    NotFound {
        command: String,
        source: which::Error,
    },
    #[error("failed to run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
    #[error("`vllm bench serve` exited with {status}; last lines of {log}:\n{tail}")]
    Failed {
        status: String,
        log: PathBuf,
        tail: String,
    },
    #[error("`vllm bench serve` wrote no readable result at {path} ({message}); last lines of {log}:\n{tail}")]
    Result {
        path: PathBuf,
        message: String,
        log: PathBuf,
        tail: String,
    },
    #[error(transparent)]
    Url(#[from] BadUrl),
}

impl From<VllmBenchError> for WorkloadError {
    fn from(e: VllmBenchError) -> Self {
        WorkloadError::Kind(e.class(), Box::new(e))
    }
}

impl VllmBenchError {
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            VllmBenchError::NotFound { .. } | VllmBenchError::Spawn { .. } => ErrorClass::Setup,
            VllmBenchError::Failed { .. } | VllmBenchError::Result { .. } => ErrorClass::Failed,
            VllmBenchError::Url(_) => ErrorClass::BadInput,
        }
    }
}

/// The reference's command line for one engine.
pub(crate) fn args(
    p: &Bench,
    server: &Endpoint,
    model: &str,
    result_dir: &Path,
    label: &str,
) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "bench".into(),
        "serve".into(),
        "--seed".into(),
        p.seed.to_string(),
    ];
    // `--port` as the reference passes it when the engine is a plain
    // host:port; `--base-url` (the server root: vllm bench appends the
    // endpoint, `/v1/...`, itself) for anything else.
    if server.is_plain_host_port() {
        a.extend([
            "--host".into(),
            server.host(),
            "--port".into(),
            server.port().to_string(),
        ]);
    } else {
        a.extend(["--base-url".into(), server.root()]);
    }
    let (backend, endpoint) = match p.endpoint {
        Api::Chat => ("openai-chat", "/v1/chat/completions"),
        Api::Completions => ("openai", "/v1/completions"),
    };
    for (flag, value) in [
        ("--model", model.to_string()),
        ("--dataset-name", "random".into()),
        ("--random-input-len", p.input_len.to_string()),
        ("--random-output-len", p.output_len.to_string()),
        ("--num-prompts", p.num_prompts.to_string()),
    ] {
        a.extend([flag.to_string(), value]);
    }
    if p.ignore_eos {
        a.push("--ignore-eos".into());
    }
    a.extend([
        "--backend".into(),
        backend.into(),
        "--endpoint".into(),
        endpoint.into(),
    ]);
    if let Some(rate) = p.request_rate {
        a.extend(["--request-rate".into(), rate.to_string()]);
    }
    if let Some(n) = p.max_concurrency {
        a.extend(["--max-concurrency".into(), n.to_string()]);
    }
    a.extend([
        "--result-dir".into(),
        result_dir.display().to_string(),
        "--result-filename".into(),
        format!("{label}.json"),
        "--save-result".into(),
    ]);
    a
}

fn tail(path: &Path) -> String {
    crate::results::tail_lines(path, 20).join("\n")
}

/// Runs `vllm bench serve` against `url`, output to `vllm_bench/<label>.log`,
/// and reads `vllm_bench/<label>.json`.
pub(crate) async fn run(
    command: &str,
    p: &Bench,
    url: &str,
    model: &str,
    results_dir: &Path,
    label: &str,
) -> Result<IndexMap<String, Metric>, VllmBenchError> {
    let server = Endpoint::parse(url)?;
    let program = which::which(command).map_err(|source| VllmBenchError::NotFound {
        command: command.to_string(),
        source,
    })?;
    let dir = results_dir.join("vllm_bench");
    let spawn_err = |source| VllmBenchError::Spawn {
        command: command.to_string(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(spawn_err)?;
    let log = dir.join(format!("{label}.log"));
    let out = std::fs::File::create(&log).map_err(spawn_err)?;
    let err = out.try_clone().map_err(spawn_err)?;
    let result = dir.join(format!("{label}.json"));
    let _ = std::fs::remove_file(&result);
    let status = tokio::process::Command::new(program)
        .no_secrets()
        .args(args(p, &server, model, &dir, label))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Dropped on a signal: the benchmark must not outlive the run.
        .kill_on_drop(true)
        .status()
        .await
        .map_err(spawn_err)?;
    if !status.success() {
        return Err(VllmBenchError::Failed {
            status: status.to_string(),
            tail: tail(&log),
            log,
        });
    }
    let bad = |message: String| VllmBenchError::Result {
        path: result.clone(),
        message,
        tail: tail(&log),
        log: log.clone(),
    };
    let text = std::fs::read_to_string(&result).map_err(|e| bad(e.to_string()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    metrics(p, &doc).map_err(bad)
}

/// The gate's metrics from a `vllm bench serve` result.
pub(crate) fn metrics(p: &Bench, doc: &Value) -> Result<IndexMap<String, Metric>, String> {
    let mut m = IndexMap::new();
    let required = [
        ("completed", "requests"),
        ("total_input_tokens", "tokens"),
        ("total_output_tokens", "tokens"),
        ("duration", "s"),
        ("total_token_throughput", "tok/s"),
    ];
    for (k, unit) in required {
        let v = doc
            .get(k)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("no numeric `{k}`"))?;
        m.insert(k.to_string(), Metric::new(v, unit));
    }
    for (k, unit) in [
        ("failed", "requests"),
        ("request_throughput", "req/s"),
        ("output_throughput", "tok/s"),
    ] {
        if let Some(v) = doc.get(k).and_then(Value::as_f64) {
            m.insert(k.to_string(), Metric::new(v, unit));
        }
    }
    for name in ["ttft", "tpot", "itl", "e2el"] {
        for stat in ["mean", "median", "p99"] {
            let k = format!("{stat}_{name}_ms");
            if let Some(v) = doc.get(&k).and_then(Value::as_f64) {
                m.insert(k, Metric::new(v, "ms"));
            }
        }
    }
    let completed = m["completed"].value;
    m.insert(
        "incomplete_requests".into(),
        Metric::new((p.num_prompts as f64 - completed).max(0.0), "requests"),
    );
    let total_in = m["total_input_tokens"].value;
    for (name, metric) in input_tokens(p, total_in) {
        m.insert(name.into(), metric);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::throughput::ThroughputParams;

    mod fuzz_result {
        use super::*;
        use crate::results::fuzz::{mutated, timed};
        use proptest::prelude::proptest;

        proptest! {
            // vllm bench's result file: gated metrics, or an error naming
            // the field it lacks.
            #[test]
            fn fuzz_vllm_bench_result(bytes in mutated(include_bytes!("../../tests/fixtures/fuzz/vllm_bench.json"))) {
                let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else { return Ok(()) };
                let p = ThroughputParams::default();
                match timed("a vllm bench result", || metrics(&p.bench(), &doc)) {
                    // What the gate reads is a count it can compare.
                    Ok(m) => {
                        let incomplete = m["incomplete_requests"].value;
                        assert!(incomplete.is_finite() && incomplete >= 0.0, "{incomplete}");
                    }
                    Err(e) => assert!(!e.is_empty()),
                }
            }
        }
    }

    #[test]
    fn the_reference_command_line() {
        let p = ThroughputParams {
            seed: 7,
            ..ThroughputParams::default()
        };
        let a = args(
            &p.bench(),
            &Endpoint::parse("http://127.0.0.1:9000").unwrap(),
            "Qwen/Qwen3-14B",
            Path::new("/r/vllm_bench"),
            "baseline",
        )
        .join(" ");
        assert_eq!(
            a,
            "bench serve --seed 7 --host 127.0.0.1 --port 9000 --model Qwen/Qwen3-14B --dataset-name random \
             --random-input-len 10000 --random-output-len 1 --num-prompts 50 --ignore-eos --backend openai-chat \
             --endpoint /v1/chat/completions --result-dir /r/vllm_bench --result-filename baseline.json --save-result"
        );
        for url in [
            "https://gpu-box.internal/v1",
            "http://10.0.0.5:8000/llm/v1/",
        ] {
            let a = args(
                &p.bench(),
                &Endpoint::parse(url).unwrap(),
                "m",
                Path::new("/r"),
                "lmcache",
            )
            .join(" ");
            let root = url.trim_end_matches('/').trim_end_matches("/v1");
            assert!(
                a.contains(&format!("--base-url {root} ")),
                "vllm bench appends /v1/... itself, so --base-url is the root: {a}"
            );
        }
    }

    #[test]
    fn metrics_require_the_gated_fields() {
        let p = ThroughputParams {
            num_prompts: 2,
            input_len: 10,
            ..ThroughputParams::default()
        };
        let doc = serde_json::json!({"completed": 1, "total_input_tokens": 10, "total_output_tokens": 2, "duration": 1.0, "total_token_throughput": 12.0});
        let m = metrics(&p.bench(), &doc).unwrap();
        assert_eq!(m["incomplete_requests"].value, 1.0);
        assert_eq!(m["input_token_mismatch"].value, 10.0);
        assert!(metrics(&p.bench(), &serde_json::json!({"completed": 1}))
            .unwrap_err()
            .contains("total_input_tokens"));
    }
}
