//! `lmcache-e2e recommend`: LMCache's long-doc-QA recommender (its
//! benchmarking tutorial, seed 004) from this machine's GPUs and RAM and the
//! model's `config.json`: tensor parallelism, the context and memory share
//! the GPU's KV cache allows, the LMCache CPU cache size and the long
//! document QA workload that fills it, as commands and a suite with checks.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::results::ErrorClass;
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RecommendError {
    #[error(
        "failed to find {model}'s config.json in the HF cache ({searched}); pass --config FILE"
    )]
    NoConfig { model: String, searched: String },
    #[error("failed to read {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("{model} needs {needed} GPU(s) of {gpu_mib} MiB (weights {weights_gib:.1} GiB), this machine has {have}")]
    TooBig {
        model: String,
        needed: usize,
        have: usize,
        gpu_mib: u64,
        weights_gib: f64,
    },
    #[error("no GPUs found; run on a GPU machine or pass --gpus N --gpu-mib M")]
    NoGpus,
}

impl RecommendError {
    /// The machine or the model's files it reads.
    pub(crate) fn class(&self) -> ErrorClass {
        ErrorClass::Setup
    }
}

/// The fields of a Hugging Face `config.json` that size a decoder.
#[derive(Debug, Deserialize)]
pub(crate) struct ModelConfig {
    pub hidden_size: u64,
    pub num_hidden_layers: u64,
    pub num_attention_heads: u64,
    pub num_key_value_heads: Option<u64>,
    pub intermediate_size: u64,
    pub vocab_size: u64,
    pub head_dim: Option<u64>,
    pub torch_dtype: Option<String>,
    /// The longest context the model takes.
    pub max_position_embeddings: Option<u64>,
}

impl ModelConfig {
    fn dtype_bytes(&self) -> u64 {
        match self.torch_dtype.as_deref() {
            Some("float32") => 4,
            _ => 2,
        }
    }

    /// Parameters of a Llama-style decoder: embeddings and head, then per
    /// layer the attention projections and a gated MLP.
    pub(crate) fn params(&self) -> u64 {
        let (h, kv) = (
            self.hidden_size,
            self.num_key_value_heads.unwrap_or(self.num_attention_heads),
        );
        let head = self.head_dim.unwrap_or(h / self.num_attention_heads);
        let attn = h * h * 2 + 2 * h * kv * head;
        let mlp = 3 * h * self.intermediate_size;
        2 * self.vocab_size * h + self.num_hidden_layers * (attn + mlp)
    }

    pub(crate) fn weight_bytes(&self) -> u64 {
        self.params() * self.dtype_bytes()
    }

    /// KV cache bytes per token: keys and values of every layer.
    pub(crate) fn kv_bytes_per_token(&self) -> u64 {
        let kv = self.num_key_value_heads.unwrap_or(self.num_attention_heads);
        let head = self
            .head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads);
        2 * self.num_hidden_layers * kv * head * self.dtype_bytes()
    }
}

pub(crate) fn find_config(
    model: &str,
    explicit: Option<&Path>,
) -> Result<(PathBuf, ModelConfig), RecommendError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => {
            let home = std::env::var("HF_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|_| {
                    PathBuf::from(std::env::var("HOME").unwrap_or_default())
                        .join(".cache/huggingface")
                });
            let snapshots = home
                .join("hub")
                .join(format!("models--{}", model.replace('/', "--")))
                .join("snapshots");
            std::fs::read_dir(&snapshots)
                .ok()
                .and_then(|d| {
                    d.flatten()
                        .map(|e| e.path().join("config.json"))
                        .find(|p| p.exists())
                })
                .ok_or_else(|| RecommendError::NoConfig {
                    model: model.into(),
                    searched: snapshots.display().to_string(),
                })?
        }
    };
    let bad = |message: String| RecommendError::Config {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let cfg = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    Ok((path, cfg))
}

#[derive(Debug, PartialEq)]
pub(crate) struct Recommendation {
    pub tp: usize,
    /// LMCache's local CPU cache per worker, GB (`LMCACHE_MAX_LOCAL_CPU_SIZE`).
    pub cpu_cache_gb: u64,
    pub num_documents: u64,
    pub document_length: u64,
    /// `--max-model-len`: the model's context, no more than the GPU's KV
    /// cache holds (an L4 holds ~33k tokens of Llama-3.1-8B, not 131k).
    pub max_model_len: u64,
    /// Tokens of KV the engine's GPU memory leaves, all workers together.
    pub gpu_kv_tokens: u64,
}

/// Tensor parallelism: the smallest power of two whose share of the weights
/// fits in 80 % of one GPU (the rest is the KV cache). CPU cache: 80 % of
/// the available host RAM, split across the TP workers. Documents: enough
/// 10,000-token documents to fill that cache (so the query round must load
/// from LMCache).
pub(crate) fn recommend(
    model: &str,
    cfg: &ModelConfig,
    gpus: usize,
    gpu_mib: u64,
    host_ram_gb: f64,
) -> Result<Recommendation, RecommendError> {
    if gpus == 0 || gpu_mib == 0 {
        return Err(RecommendError::NoGpus);
    }
    let usable = gpu_mib as f64 * 1024.0 * 1024.0 * 0.8;
    let weights = cfg.weight_bytes() as f64;
    let mut tp = 1;
    while weights / tp as f64 > usable {
        tp *= 2;
    }
    if tp > gpus {
        return Err(RecommendError::TooBig {
            model: model.into(),
            needed: tp,
            have: gpus,
            gpu_mib,
            weights_gib: weights / (1u64 << 30) as f64,
        });
    }
    let cpu_cache_gb = ((host_ram_gb * 0.8) / tp as f64).floor().max(1.0) as u64;
    let gpu_kv_tokens = gpu_kv_tokens(cfg, tp, gpu_mib);
    let context = cfg.max_position_embeddings.unwrap_or(131_072);
    let max_model_len = (gpu_kv_tokens / 1024 * 1024).clamp(2048, context.max(2048));
    // A question and its answer follow each document.
    let document_length = 10_000.min(max_model_len.saturating_sub(1024)).max(1024);
    let doc_bytes = (document_length * cfg.kv_bytes_per_token()) as f64;
    let fill_cpu = ((cpu_cache_gb * tp as u64) as f64 * 1e9 / doc_bytes).ceil() as u64;
    // Enough to fill LMCache's CPU cache and to overflow the GPU's, so the
    // query round must load from LMCache.
    let num_documents = fill_cpu.max(gpu_kv_tokens / document_length + 1).max(1);
    Ok(Recommendation {
        tp,
        cpu_cache_gb,
        num_documents,
        document_length,
        max_model_len,
        gpu_kv_tokens,
    })
}

/// vLLM's KV cache at `--gpu-memory-utilization 0.9`: that share of every
/// worker's GPU, less the weights and a tenth for activations, in tokens.
fn gpu_kv_tokens(cfg: &ModelConfig, tp: usize, gpu_mib: u64) -> u64 {
    let memory = 0.9 * tp as f64 * gpu_mib as f64 * 1024.0 * 1024.0;
    let weights = cfg.weight_bytes() as f64;
    let kv = (memory - weights) * 0.9;
    (kv.max(0.0) / cfg.kv_bytes_per_token().max(1) as f64) as u64
}

/// The commands, as the recommender prints them, and a suite snippet.
pub(crate) fn render(model: &str, r: &Recommendation) -> String {
    let mut s = String::new();
    let serve = format!(
        "vllm serve {model} \\\n    --tensor-parallel-size {} \\\n    --load-format dummy \\\n    --max-model-len {} \\\n    --gpu-memory-utilization 0.9",
        r.tp, r.max_model_len
    );
    let _ = writeln!(s, "1. vLLM deployment:\n\nPYTHONHASHSEED=0 \\\n{serve}\n");
    let _ = writeln!(
        s,
        "2. LMCache deployment:\n\nPYTHONHASHSEED=0 \\\nLMCACHE_MAX_LOCAL_CPU_SIZE={} \\\n{serve} \\\n    --kv-transfer-config \\\n    '{{\"kv_connector\": \"LMCacheConnectorV1\", \"kv_role\": \"kv_both\"}}'\n",
        r.cpu_cache_gb
    );
    let _ = writeln!(
        s,
        "3. Long document QA workload:\n\npython benchmarks/long_doc_qa/long_doc_qa.py \\\n    --model {model} \\\n    --num-documents {} \\\n    --document-length {} \\\n    --output-len 100 \\\n    --repeat-count 1 \\\n    --repeat-mode tile \\\n    --max-inflight-requests 4\n",
        r.num_documents, r.document_length
    );
    let _ = writeln!(
        s,
        "4. As a suite (lmcache-e2e ci --suite FILE):\n\n[run]\nmodel = \"{model}\"\n# One engine per GPU where there are two, else side by side if they fit.\nschedule = \"auto\"\n\n[engines.baseline]\nrole = \"baseline\"\nkind = \"process\"\ncommand = \"vllm\"\nargs = [\"serve\", \"{{model}}\", \"--tensor-parallel-size\", \"{tp}\", \"--load-format\", \"dummy\", \"--max-model-len\", \"{len_max}\", \"--gpu-memory-utilization\", \"0.9\", \"--port\", \"{{port}}\"]\nenv = {{ PYTHONHASHSEED = \"0\" }}\n\n[engines.lmcache]\nrole = \"lmcache\"\nkind = \"process\"\ncommand = \"vllm\"\nargs = [\"serve\", \"{{model}}\", \"--tensor-parallel-size\", \"{tp}\", \"--load-format\", \"dummy\", \"--max-model-len\", \"{len_max}\", \"--gpu-memory-utilization\", \"0.9\", \"--port\", \"{{port}}\", \"--kv-transfer-config\", '{{\"kv_connector\": \"LMCacheConnectorV1\", \"kv_role\": \"kv_both\"}}']\nenv = {{ PYTHONHASHSEED = \"0\", LMCACHE_MAX_LOCAL_CPU_SIZE = \"{cpu}\" }}\n\n[tests.long_doc_qa]\nkind = \"long_doc_qa\"\nnum_documents = {docs}\n# Sized to the GPU KV cache the baseline reports once ready: documents\n# holding 1.5 of it, at most num_documents (what LMCache's CPU cache holds).\noverflow_gpu_cache = 1.5\ndocument_length = {len}\noutput_len = 100\nrepeat_count = 1\nrepeat_mode = \"tile\"\nmax_inflight_requests = 4\ntrials = 3{checks}",
        checks = long_doc_qa_checks(),
        len_max = r.max_model_len,
        tp = r.tp,
        cpu = r.cpu_cache_gb,
        docs = r.num_documents,
        len = r.document_length
    );
    s
}

/// The suite's checks: long document QA's starters and both engines'
/// failed requests, as TOML tables.
fn long_doc_qa_checks() -> String {
    let kind = crate::workload::kind("long_doc_qa").expect("long_doc_qa is a kind");
    let mut s = String::new();
    for (name, body) in kind.starter_checks() {
        let _ = write!(s, "\n\n[tests.long_doc_qa.checks.{name}]\n{body}");
    }
    for role in ["baseline", "lmcache"] {
        let _ = write!(
            s,
            "\n\n[tests.long_doc_qa.checks.{role}_failed_requests]\nmetric = \"failed_requests\"\nengine = \"{role}\"\nmax = 0"
        );
    }
    s
}

/// MemAvailable from /proc/meminfo, in GB.
pub(crate) fn host_ram_gb() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: f64 = text
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024.0 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama(hidden: u64, layers: u64, heads: u64, inter: u64) -> ModelConfig {
        ModelConfig {
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: Some(8),
            intermediate_size: inter,
            vocab_size: 128_256,
            head_dim: None,
            torch_dtype: Some("bfloat16".into()),
            max_position_embeddings: None,
        }
    }

    #[test]
    fn sizes_match_the_known_models() {
        let l8 = llama(4096, 32, 32, 14_336);
        assert!(
            (7.9e9..8.2e9).contains(&(l8.params() as f64)),
            "{}",
            l8.params()
        );
        assert_eq!(l8.kv_bytes_per_token(), 131_072);
        let l70 = llama(8192, 80, 64, 28_672);
        assert!(
            (70.0e9..71.0e9).contains(&(l70.params() as f64)),
            "{}",
            l70.params()
        );
    }

    #[test]
    fn the_seed_examples_follow_from_memory() {
        // An 80 GB GPU: 8B fits on one; 70B needs four (its 141 GB of weights
        // over 64 GB usable per GPU).
        let r = recommend("m", &llama(4096, 32, 32, 14_336), 8, 81_559, 82.5).unwrap();
        assert_eq!(
            (r.tp, r.cpu_cache_gb, r.num_documents, r.document_length),
            (1, 66, 51, 10_000)
        );
        assert_eq!(r.max_model_len, 131_072, "the model's whole context fits");
        let r = recommend("m", &llama(8192, 80, 64, 28_672), 8, 81_559, 200.0).unwrap();
        assert_eq!((r.tp, r.cpu_cache_gb), (4, 40));
        let e = recommend("m", &llama(8192, 80, 64, 28_672), 1, 81_559, 200.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs 4 GPU(s)") && e.contains("has 1"), "{e}");
    }

    /// The seeds' runners are 2×L4: Llama-3.1-8B's 16 GB of weights leave
    /// about 4 GB of KV, some 30,000 tokens, not its 131,072-token context.
    /// The context is cut to what fits, the documents to the context, and
    /// there are enough of them to overflow the GPU's cache; an H200 keeps
    /// the whole context.
    #[test]
    fn the_context_and_documents_follow_the_gpus_kv_cache() {
        let mut l8 = llama(4096, 32, 32, 14_336);
        l8.max_position_embeddings = Some(131_072);
        let l4 = recommend("m", &l8, 2, 23_034, 64.0).unwrap();
        assert_eq!(l4.tp, 1);
        assert!((20_000..40_000).contains(&l4.gpu_kv_tokens), "{l4:?}");
        assert!(
            l4.max_model_len <= l4.gpu_kv_tokens && l4.max_model_len.is_multiple_of(1024),
            "{l4:?}"
        );
        assert!(l4.document_length + 1024 <= l4.max_model_len, "{l4:?}");
        assert!(
            l4.num_documents * l4.document_length > l4.gpu_kv_tokens,
            "{l4:?}"
        );
        let h200 = recommend("m", &l8, 1, 143_771, 128.0).unwrap();
        assert_eq!(
            (h200.max_model_len, h200.document_length),
            (131_072, 10_000)
        );
        assert!(
            h200.num_documents * h200.document_length > h200.gpu_kv_tokens,
            "{h200:?}"
        );
    }
}
