//! What an engine's start log says about its compile cache: whether vLLM
//! loaded its compiled graphs from an earlier start (warm), compiled them
//! with kernels an earlier start left in the cache (partly warm: on an
//! H200 its init took 17 s instead of 116 s), compiled everything (cold)
//! or compiles nothing (eager), and how long compiling and its engine's
//! initialisation took, from the lines vLLM 0.26 writes.

use std::io::Read;
use std::path::Path;

use crate::results::StartCache;

/// The environment variables an engine cache directory sets, and the
/// folder of each under it.
pub(crate) const CACHE_ENV: &[(&str, &str)] = &[
    ("VLLM_CACHE_ROOT", "vllm"),
    // vLLM hashes its config folder into the compile cache's key: under a
    // HOME that differs between runs the graphs would never be found.
    ("VLLM_CONFIG_ROOT", "vllm-config"),
    // Hashed into the key too, and it follows HOME (~/.cache/vllm/...).
    ("VLLM_XLA_CACHE_PATH", "vllm-xla"),
    ("TRITON_CACHE_DIR", "triton"),
    ("TORCHINDUCTOR_CACHE_DIR", "inductor"),
    ("FLASHINFER_WORKSPACE_BASE", "flashinfer"),
    ("CUDA_CACHE_PATH", "cuda"),
];

/// Read at most this much of a log's start.
const MAX_BYTES: u64 = 16 * 1024 * 1024;

/// The number after `marker` up to its next space (`took 35.21 s`).
fn secs_after(line: &str, marker: &str) -> Option<f64> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// Reads the compile-cache state from a start log's text; `None` when the
/// log shows no engine of vLLM's (another server). `prefilled`: the cache
/// directory held an earlier start's files when this one began.
pub(crate) fn from_text(text: &str, dir: Option<&str>, prefilled: bool) -> Option<StartCache> {
    let (mut cold, mut warm, mut eager) = (false, false, false);
    let (mut compile, mut init) = (None, None);
    for line in text.lines() {
        if line.contains("Compiling a graph for compile range") {
            cold = true;
        } else if line.contains("Directly load the compiled graph")
            || line.contains("Directly load AOT compilation")
        {
            warm = true;
        } else if line.contains("Enforce eager set, disabling torch.compile") {
            eager = true;
        }
        if let Some(s) = secs_after(line, "torch.compile took ")
            .or_else(|| secs_after(line, "initial profiling/warmup run together took "))
        {
            compile = Some(s);
        }
        if let Some(s) = secs_after(
            line,
            "init engine (profile, create kv cache, warmup model) took ",
        ) {
            init = Some(s);
        }
    }
    let state = match (cold, warm, eager) {
        (true, _, _) if prefilled => "partly warm",
        (true, _, _) => "cold",
        (false, true, _) => "warm",
        (false, false, true) => "eager",
        _ if init.is_some() => "unknown",
        _ => return None,
    };
    Some(StartCache {
        state: state.into(),
        compile_secs: compile,
        init_secs: init,
        dir: dir.map(String::from),
    })
}

/// Whether an engine cache directory already holds files (any of its
/// folders not empty).
pub(crate) fn prefilled(vllm_root: Option<&str>) -> bool {
    let Some(root) = vllm_root.map(Path::new).and_then(Path::parent) else {
        return false;
    };
    CACHE_ENV
        .iter()
        .any(|(_, sub)| std::fs::read_dir(root.join(sub)).is_ok_and(|mut d| d.next().is_some()))
}

/// Reads it from the log file.
pub(crate) fn read(path: &Path, dir: Option<&str>, prefilled: bool) -> Option<StartCache> {
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    from_text(&text, dir, prefilled)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The H200's cold baseline start (docs/runs/2026-12-02-…/logs).
    const COLD: &str = "\
(EngineCore pid=784) INFO 12-02 06:28:21 [backends.py:1094] Using cache directory: /root/.cache/vllm/torch_compile_cache/5c952a6615/rank_0_0/backbone for vLLM's torch.compile
(EngineCore pid=784) INFO 12-02 06:28:21 [backends.py:1155] Dynamo bytecode transform time: 12.43 s
(EngineCore pid=784) INFO 12-02 06:28:29 [backends.py:378] Cache the graph of compile range (1, 8192) for later use
(EngineCore pid=784) INFO 12-02 06:28:36 [backends.py:393] Compiling a graph for compile range (1, 8192) takes 14.55 s
(EngineCore pid=784) INFO 12-02 06:28:43 [monitor.py:53] torch.compile took 35.21 s in total
(EngineCore pid=784) INFO 12-02 06:31:31 [core.py:340] init engine (profile, create kv cache, warmup model) took 203.67 s (compilation: 35.21 s)
";

    #[test]
    fn a_cold_start_compiles_and_says_how_long() {
        let s = from_text(COLD, Some("/c/vllm"), false).unwrap();
        assert_eq!(s.state, "cold");
        assert_eq!(s.compile_secs, Some(35.21));
        assert_eq!(s.init_secs, Some(203.67));
        assert_eq!(s.dir.as_deref(), Some("/c/vllm"));
        // The H200's second pass: graphs compiled again, kernels cached.
        assert_eq!(from_text(COLD, None, true).unwrap().state, "partly warm");
    }

    /// The gpu-1 preset's two passes on an H200 (docs/runs/2026-12-06-…):
    /// the first compiled everything; the second, its engine cache kept
    /// but under another HOME, compiled its graphs again (vLLM keyed them
    /// by its config folder) with the kernels the first left.
    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/vllm/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn the_h200_passes_read_as_cold_then_partly_warm() {
        let cold = from_text(&fixture("start-h200-cold.log"), None, false).unwrap();
        assert_eq!(
            (cold.state.as_str(), cold.compile_secs, cold.init_secs),
            ("cold", Some(23.54), Some(116.41))
        );
        let second = from_text(&fixture("start-h200-second.log"), None, true).unwrap();
        assert_eq!(
            (second.state.as_str(), second.compile_secs, second.init_secs),
            ("partly warm", Some(13.42), Some(17.18))
        );
    }

    /// vLLM's compile-cache key as the H100's cold baseline wrote it
    /// (`cache_key_factors.json`, docs/runs/2026-12-06-h100-gpu-minutes/)
    /// under HOME /root/r/home-cold: every factor that is a path under HOME
    /// differs between jobs, so the engine cache must pin it.
    #[test]
    fn every_key_factor_under_home_is_pinned_by_the_engine_cache() {
        let text = fixture("cache-key-factors-h100.json");
        let factors: serde_json::Value = serde_json::from_str(&text).unwrap();
        let env = factors["env"].as_object().unwrap();
        let under_home: Vec<&str> = env
            .iter()
            .filter(|(_, v)| {
                v.as_str()
                    .is_some_and(|v| v.starts_with("/root/r/home-cold/"))
            })
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(under_home, ["VLLM_XLA_CACHE_PATH"]);
        // The config folder was pinned when this key was written.
        assert!(env.contains_key("VLLM_CONFIG_ROOT"));
        for name in under_home.into_iter().chain(["VLLM_CONFIG_ROOT"]) {
            assert!(
                CACHE_ENV.iter().any(|(n, _)| *n == name),
                "{name} is hashed into vLLM's compile key and follows HOME"
            );
        }
    }

    #[test]
    fn a_warm_start_loads_and_eager_and_other_servers_are_told_apart() {
        // The H100's start under another HOME once VLLM_XLA_CACHE_PATH was
        // pinned: its graphs came from the cache.
        let s = from_text(&fixture("start-h100-warm.log"), None, true).unwrap();
        assert_eq!(
            (s.state.as_str(), s.compile_secs, s.init_secs),
            ("warm", Some(4.03), Some(7.28))
        );
        let eager = "(APIServer pid=1108) WARNING 12-02 07:16:38 [vllm.py:1163] Enforce eager set, disabling torch.compile and CUDAGraphs.\n";
        assert_eq!(from_text(eager, None, false).unwrap().state, "eager");
        assert_eq!(from_text("llama server listening\n", None, false), None);
    }
}
