//! What shapes a simulated engine (its options, one struct for `sim serve`
//! and `[engines.X.sim]`) and the sim's own log line.

use serde::{Deserialize, Serialize};

/// One line of the sim's own log (its stderr, which the supervisor sends to
/// `logs/<engine>.log`), stamped with seconds since the sim started as
/// vLLM's logger stamps its lines.
pub(super) fn log(args: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let t = START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64();
    let _ = writeln!(std::io::stderr().lock(), "[{t:9.3}] {args}");
}

/// Everything that shapes a simulated engine. The same struct is the
/// `sim serve` command line and the `[engines.X.sim]` table of a suite, so the
/// two can never drift apart.
#[derive(Debug, Clone, PartialEq, clap::Args, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SimOptions {
    /// Model id served on /v1/models and accepted in requests.
    #[arg(long, default_value = "lmcache-e2e/sim")]
    pub served_model_name: String,
    /// Delay before the server starts listening, like a model load.
    #[arg(long, default_value_t = 0)]
    pub load_delay_ms: u64,
    /// Prefill time per prompt token that is not in the prefix cache.
    #[arg(long, default_value_t = 50.0)]
    pub prefill_us_per_token: f64,
    /// Prefill time per prompt token found in the prefix cache.
    #[arg(long, default_value_t = 2.0)]
    pub cached_prefill_us_per_token: f64,
    /// Decode time per output token after the first.
    #[arg(long, default_value_t = 1.0)]
    pub decode_ms_per_token: f64,
    /// Fixed time before the first token of every request (scheduling).
    #[arg(long, default_value_t = 0.0)]
    pub base_latency_ms: f64,
    /// The GPU's prefix cache (vLLM's, in 16-token blocks), in tokens; 0
    /// disables it (`--no-enable-prefix-caching`).
    #[arg(long, default_value_t = 0)]
    pub cache_tokens: u64,
    /// Tokens per cache chunk (LMCache's default chunk size).
    #[arg(long, default_value_t = 256)]
    pub chunk_size: usize,
    /// Longest prompt plus output accepted, in tokens.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_model_len: u64,
    /// Fault: exit with status 1 before listening.
    #[arg(long)]
    pub crash_at_start: bool,
    /// Fault: exit with status 1 when request N+1 arrives.
    #[arg(long)]
    pub crash_after: Option<u64>,
    /// Fault: stop answering anything (including /health) after N requests.
    #[arg(long)]
    pub hang_after: Option<u64>,
    /// Fault: answer with different text when any prompt token was cached.
    #[arg(long)]
    pub corrupt_on_hit: bool,
    /// Fault: fraction of generation requests answered with HTTP 500.
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Seed of the fault generator, so a faulty run is reproducible.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fault: the first N generation requests are slower (a cold engine).
    #[arg(long, default_value_t = 0)]
    pub slow_first_requests: u64,
    /// Extra prefill time of each of those requests.
    #[arg(long, default_value_t = 0.0)]
    pub slow_extra_ms: f64,
    /// Log each generation request with the number in flight on arrival.
    #[arg(long)]
    pub log_requests: bool,
    /// A KV connector's store (LMCache's CPU cache) of this many tokens
    /// behind the GPU's prefix cache (`--cache-tokens`): what the GPU lacks
    /// is looked up there, and vLLM counts what it finds as
    /// `vllm:external_prefix_cache_hits_total` and prompt tokens of source
    /// `external_kv_transfer`. 0: no connector (a baseline).
    #[arg(long, default_value_t = 0)]
    pub external_cache_tokens: u64,
    /// Noise: each request's prefill and decode times are multiplied by a
    /// seeded log-normal factor with this spread (0.1 ≈ 10 % jitter), as
    /// run-to-run noise on a shared GPU. Draws from `--seed`: give engines
    /// different seeds for independent noise.
    #[arg(long, default_value_t = 0.0)]
    pub jitter: f64,
    /// A true slowdown of every request by this percent (a regression to
    /// detect).
    #[arg(long, default_value_t = 0.0)]
    pub slowdown_pct: f64,
    /// Noise: the chance that a request stalls (a long pause on a shared
    /// GPU), `--stall-factor` times slower than it would be.
    #[arg(long, default_value_t = 0.0)]
    pub stall_rate: f64,
    #[arg(long, default_value_t = 10.0)]
    pub stall_factor: f64,
    /// Noise: latency grows by this percent per minute since start (slow
    /// drift, which alternating the engines' order cancels).
    #[arg(long, default_value_t = 0.0)]
    pub drift_pct_per_min: f64,
    /// Noise shared by every request of a window (a noisy neighbour, a
    /// throttled GPU, another job on the host): bursts a second on average,
    /// each `--burst-secs` long, during which latency is `--burst-factor`
    /// times what it would be. Seeded from `--seed`.
    #[arg(long, default_value_t = 0.0)]
    pub burst_rate: f64,
    #[arg(long, default_value_t = 2.0)]
    pub burst_secs: f64,
    #[arg(long, default_value_t = 1.4)]
    pub burst_factor: f64,
    /// MMLU answer key: a directory of MMLU CSV files (`question,A,B,C,D,
    /// answer`, as in `data/test/`). Questions found in it are answered
    /// right with probability `--accuracy` (seeded per question, the same
    /// on every engine), else with a fixed wrong letter.
    #[arg(long)]
    pub answer_key: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 0.6)]
    pub accuracy: f64,
    /// Fault: this fraction of prompts with a cache hit is answered with a
    /// wrong letter (seeded per prompt), as a KV cache that returns
    /// slightly wrong values would.
    #[arg(long, default_value_t = 0.0)]
    pub flip_on_hit_rate: f64,
    /// Real numerics: this share of prompts (chosen per prompt) is
    /// continued otherwise, from a token chosen per prompt, whenever any of
    /// its prefix came from a cache (the GPU's or the connector's), the
    /// same way from either, as vLLM 0.26 does with real weights even
    /// batch invariant (docs/runs/2026-12-06-h200-real-weights/).
    #[arg(long, default_value_t = 0.0)]
    pub reuse_changes_rate: f64,
    /// Fault in the KV the connector restores (LMCache's store, never the
    /// GPU's own prefix cache): `corrupt-kv` answers differently from a
    /// token chosen per prompt on (a damaged V plane may only show after
    /// the first tokens, as LMCache issue #4463's does), `drop-first-chunk`
    /// loses every prefix's first chunk so nothing after it is found,
    /// `slow-retrieve` restores slower than recomputing would be. The same
    /// names as `engines.X.fault`, which sets it.
    #[arg(long)]
    pub kv_fault: Option<KvFault>,
    /// Dummy weights (vLLM's `--load-format dummy`): every continuation is
    /// the same token run, whatever the prompt and whatever the KV, so no
    /// correctness check can see a fault.
    #[arg(long)]
    pub dummy_weights: bool,
    /// `host:port` of the LMCache server that holds this engine's KV cache
    /// (vLLM's `lmcache.mp.port`): while it accepts no connection, the
    /// cache is out of reach, and requests follow `--kv-load-failure-policy`.
    #[arg(long)]
    pub kv_server: Option<String>,
    /// Without the KV server: `recompute` (vLLM's `kv_load_failure_policy`
    /// as k3 sets it: prefill everything, answer anyway) or `fail` (HTTP
    /// 500).
    #[arg(long, default_value = "recompute")]
    pub kv_load_failure_policy: KvFailurePolicy,
}

/// A fault in the KV a connector restores; the sim models it, and for a
/// process engine `lmcache-e2e` injects it into LMCache with a start-up hook.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    clap::ValueEnum,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum KvFault {
    /// Restored KV is wrong: outputs change (correctness checks must fail).
    CorruptKv,
    /// The first chunk of every stored prefix is lost: nothing is restored,
    /// all is recomputed (outputs right, the TTFT win gone).
    DropFirstChunk,
    /// Restoring is slower than recomputing (outputs right, TTFT worse).
    SlowRetrieve,
}

impl KvFault {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            KvFault::CorruptKv => "corrupt-kv",
            KvFault::DropFirstChunk => "drop-first-chunk",
            KvFault::SlowRetrieve => "slow-retrieve",
        }
    }
}

/// What a sim does with a request when its KV server is gone.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum KvFailurePolicy {
    #[default]
    Recompute,
    Fail,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            served_model_name: "lmcache-e2e/sim".to_string(),
            load_delay_ms: 0,
            prefill_us_per_token: 50.0,
            cached_prefill_us_per_token: 2.0,
            decode_ms_per_token: 1.0,
            base_latency_ms: 0.0,
            cache_tokens: 0,
            chunk_size: 256,
            max_model_len: 1_000_000,
            crash_at_start: false,
            crash_after: None,
            hang_after: None,
            corrupt_on_hit: false,
            error_rate: 0.0,
            seed: 0,
            slow_first_requests: 0,
            slow_extra_ms: 0.0,
            log_requests: false,
            external_cache_tokens: 0,
            jitter: 0.0,
            slowdown_pct: 0.0,
            stall_rate: 0.0,
            stall_factor: 10.0,
            drift_pct_per_min: 0.0,
            burst_rate: 0.0,
            burst_secs: 2.0,
            burst_factor: 1.4,
            answer_key: None,
            accuracy: 0.6,
            flip_on_hit_rate: 0.0,
            reuse_changes_rate: 0.0,
            kv_fault: None,
            dummy_weights: false,
            kv_server: None,
            kv_load_failure_policy: KvFailurePolicy::Recompute,
        }
    }
}

impl SimOptions {
    /// The `sim serve` arguments that reproduce these options in a child process.
    pub(crate) fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            "--served-model-name".to_string(),
            self.served_model_name.clone(),
        ];
        let mut push = |flag: &str, value: String| {
            args.push(flag.to_string());
            args.push(value);
        };
        push("--load-delay-ms", self.load_delay_ms.to_string());
        push(
            "--prefill-us-per-token",
            self.prefill_us_per_token.to_string(),
        );
        push(
            "--cached-prefill-us-per-token",
            self.cached_prefill_us_per_token.to_string(),
        );
        push(
            "--decode-ms-per-token",
            self.decode_ms_per_token.to_string(),
        );
        push("--base-latency-ms", self.base_latency_ms.to_string());
        push("--cache-tokens", self.cache_tokens.to_string());
        push(
            "--external-cache-tokens",
            self.external_cache_tokens.to_string(),
        );
        push("--chunk-size", self.chunk_size.to_string());
        push("--max-model-len", self.max_model_len.to_string());
        push("--error-rate", self.error_rate.to_string());
        push("--seed", self.seed.to_string());
        push(
            "--slow-first-requests",
            self.slow_first_requests.to_string(),
        );
        push("--slow-extra-ms", self.slow_extra_ms.to_string());
        push("--jitter", self.jitter.to_string());
        push("--slowdown-pct", self.slowdown_pct.to_string());
        push("--stall-rate", self.stall_rate.to_string());
        push("--stall-factor", self.stall_factor.to_string());
        push("--drift-pct-per-min", self.drift_pct_per_min.to_string());
        push("--burst-rate", self.burst_rate.to_string());
        push("--burst-secs", self.burst_secs.to_string());
        push("--burst-factor", self.burst_factor.to_string());
        push("--accuracy", self.accuracy.to_string());
        push("--flip-on-hit-rate", self.flip_on_hit_rate.to_string());
        push("--reuse-changes-rate", self.reuse_changes_rate.to_string());
        if let Some(dir) = &self.answer_key {
            push("--answer-key", dir.display().to_string());
        }
        if let Some(fault) = self.kv_fault {
            push("--kv-fault", fault.as_str().to_string());
        }
        if let Some(addr) = &self.kv_server {
            push("--kv-server", addr.clone());
        }
        if self.kv_load_failure_policy == KvFailurePolicy::Fail {
            push("--kv-load-failure-policy", "fail".to_string());
        }
        if let Some(n) = self.crash_after {
            push("--crash-after", n.to_string());
        }
        if let Some(n) = self.hang_after {
            push("--hang-after", n.to_string());
        }
        if self.crash_at_start {
            args.push("--crash-at-start".to_string());
        }
        if self.corrupt_on_hit {
            args.push("--corrupt-on-hit".to_string());
        }
        if self.log_requests {
            args.push("--log-requests".to_string());
        }
        if self.dummy_weights {
            args.push("--dummy-weights".to_string());
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        opts: SimOptions,
    }

    #[test]
    fn args_round_trip_through_the_command_line() {
        let opts = SimOptions {
            cache_tokens: 4096,
            external_cache_tokens: 200_000,
            crash_after: Some(3),
            corrupt_on_hit: true,
            error_rate: 0.25,
            stall_rate: 0.01,
            drift_pct_per_min: 2.5,
            answer_key: Some("/data/test".into()),
            flip_on_hit_rate: 0.05,
            kv_fault: Some(KvFault::DropFirstChunk),
            dummy_weights: true,
            kv_server: Some("127.0.0.1:6555".into()),
            kv_load_failure_policy: KvFailurePolicy::Fail,
            ..SimOptions::default()
        };
        let mut argv = vec!["sim".to_string()];
        argv.extend(opts.to_args());
        let parsed = Wrapper::try_parse_from(argv).unwrap();
        assert_eq!(parsed.opts, opts);
    }

    #[test]
    fn clap_defaults_match_serde_defaults() {
        let parsed = Wrapper::try_parse_from(["sim"]).unwrap();
        assert_eq!(parsed.opts, SimOptions::default());
    }
}
