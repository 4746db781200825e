//! Built-in suites selectable with `--preset`, embedded in the binary.

pub(crate) struct Preset {
    pub name: &'static str,
    pub about: &'static str,
    pub toml: &'static str,
}

pub(crate) const PRESETS: &[Preset] = &[
    Preset {
        name: "sim",
        about: "two simulated engines (baseline and LMCache) on this machine, no GPU needed",
        toml: include_str!("../../presets/sim.toml"),
    },
    Preset {
        name: "sim-controls",
        about: "the simulated engines with controls: correctness and TTFT checks, then an A/A run that must pass and injected KV faults (corrupt, dropped, slow) that must fail them",
        toml: include_str!("../../presets/sim-controls.toml"),
    },
    Preset {
        name: "gpu-1",
        about: "one GPU (H100/H200): baseline vLLM, then vLLM with LMCache's connector, on Llama-3.1-8B's architecture with dummy weights; seed 004's long doc QA, MMLU and determinism through LMCache, vllm bench serve throughput",
        toml: include_str!("../../presets/gpu-1.toml"),
    },
    Preset {
        name: "gpu-1-real",
        about: "one GPU, real weights (SmolLM2-135M): batch-invariant vLLM without and with LMCache's MP connector; MMLU, determinism on long real prompts, long doc QA; controls: A/A, the in-process connector known to corrupt (#4463), injected corrupt and slow KV",
        toml: include_str!("../../presets/gpu-1-real.toml"),
    },
    Preset {
        name: "mp",
        about: "LMCache's multiprocessing suite: LMCache server, vLLM+LMCache and baseline vLLM in containers, on two chosen GPUs",
        toml: include_str!("../../presets/mp.toml"),
    },
    Preset {
        name: "k3",
        about: "LMCache's CI today (.buildkite/k3_tests/multiprocess): lmcache server, vLLM+LMCache on GPU 0 and baseline vLLM on GPU 1 as processes; vllm bench, long doc QA, lm_eval",
        toml: include_str!("../../presets/k3.toml"),
    },
    Preset {
        name: "k3-sglang",
        about: "k3's multiprocess suite with SGLang: lmcache server, SGLang with LMCache on GPU 0 and without on GPU 1; long doc QA and lm_eval score mode with SGLang's overrides",
        toml: include_str!("../../presets/k3-sglang.toml"),
    },
    Preset {
        name: "correctness",
        about: "LMCache's MMLU correctness suite: vllm serve without and with the LMCache connector, TP 2, one after the other",
        toml: include_str!("../../presets/correctness.toml"),
    },
    Preset {
        name: "dynamo",
        about: "Dynamo's LMCache MMLU suite: frontend plus dynamo.vllm without and with --connector lmcache, one after the other",
        toml: include_str!("../../presets/dynamo.toml"),
    },
];

pub(crate) fn find(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, LoadRequest, Role};

    // long_doc_qa.py dies on a failed request; a preset that counts them
    // instead must gate them, or a LMCache that rejects requests passes.
    #[test]
    fn every_preset_with_long_doc_qa_gates_failed_requests_on_both_engines() {
        for preset in PRESETS {
            let lookup = |_: &str| None;
            let loaded = load(&LoadRequest {
                overlays: &[],
                preset: Some(preset.name),
                file: None,
                sets: &[],
                env: &lookup,
                kinds: &crate::workload::test_kinds(),
            })
            .unwrap_or_else(|e| panic!("preset {}: {e}", preset.name));
            for (name, test) in &loaded.suite.tests {
                if test.kind != "long_doc_qa" {
                    continue;
                }
                for role in [Role::Baseline, Role::Lmcache] {
                    assert!(
                        test.checks.values().any(|c| c.metric == "failed_requests"
                            && c.engine == role
                            && c.max == Some(0.0)),
                        "preset {}: tests.{name} has no failed_requests check on {role}",
                        preset.name
                    );
                }
            }
        }
    }
}
