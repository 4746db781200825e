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
