//! `lmcache-e2e gpus` against an `nvidia-smi` on PATH that prints the real
//! captured output, and without one.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

fn with_fake_smi(dir: &Path, fixture: &str) -> String {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/nvidia-smi")
        .join(fixture);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    executable(
        &bin.join("nvidia-smi"),
        &format!("#!/bin/sh\n[ \"$1\" = \"--query-gpu=index,memory.total,memory.free,utilization.gpu\" ] || exit 9\ncat '{}'\n", fixture.display()),
    );
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn an_idle_gpu_is_chosen_and_a_busy_one_times_out() {
    let dir = tempdir();
    let path = with_fake_smi(dir.path(), "idle-query-gpu-noheader.csv");
    let out = run(
        bin().args(["gpus", "--count", "1"]).env("PATH", &path),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert_eq!(text(&out).0.trim(), "0");

    let dir = tempdir();
    let path = with_fake_smi(dir.path(), "busy-query-gpu-noheader.csv");
    let out = run(
        bin()
            .args([
                "gpus",
                "--count",
                "1",
                "--timeout-secs",
                "0.3",
                "--poll-secs",
                "0.1",
            ])
            .env("PATH", &path),
        Duration::from_secs(20),
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("at least 70000 MiB free and at most 20 %")
            && stderr.contains("GPU 0: 51237 MiB free, 100 %"),
        "{stderr}"
    );

    let out = run(
        bin()
            .args(["gpus", "--count", "2"])
            .env("PATH", with_fake_smi(dir.path(), "idle-query-gpu.csv")),
        Duration::from_secs(20),
    );
    assert!(
        text(&out)
            .1
            .contains("2 GPU(s) asked for, but this machine has 1"),
        "{}",
        text(&out).1
    );
}

#[test]
fn no_nvidia_smi_is_fine_without_gpus_and_an_error_with() {
    let out = run(
        bin()
            .args(["gpus", "--count", "0"])
            .env("PATH", "/nonexistent"),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(0));
    let out = run(
        bin()
            .args(["gpus", "--count", "2"])
            .env("PATH", "/nonexistent"),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out).1.contains("`nvidia-smi` is not on PATH"));
}

fn config_json(
    dir: &Path,
    name: &str,
    hidden: u64,
    layers: u64,
    heads: u64,
    intermediate: u64,
) -> std::path::PathBuf {
    let p = dir.join(format!("{name}.json"));
    std::fs::write(
        &p,
        format!(
            r#"{{"architectures": ["LlamaForCausalLM"], "hidden_size": {hidden}, "num_hidden_layers": {layers}, "num_attention_heads": {heads},
               "num_key_value_heads": 8, "intermediate_size": {intermediate}, "vocab_size": 128256, "torch_dtype": "bfloat16"}}"#
        ),
    )
    .unwrap();
    p
}

/// A PATH whose `nvidia-smi` reports eight 80 GB GPUs, in the four-column
/// form the tool asks for.
fn eight_gpus(dir: &Path) -> String {
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    // Eight 80 GB GPUs, in the four-column form the tool asks for.
    let rows: String = (0..8).map(|i| format!("{i}, 81559, 81079, 0\n")).collect();
    executable(
        &bin_dir.join("nvidia-smi"),
        &format!("#!/bin/sh\nprintf '{}'\n", rows.replace('\n', "\\n")),
    );
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn recommend_follows_gpu_and_ram_memory_and_prints_a_valid_suite() {
    let dir = tempdir();
    let path = eight_gpus(dir.path());
    let c8 = config_json(dir.path(), "llama8b", 4096, 32, 32, 14_336);
    let out = run(
        bin()
            .args([
                "recommend",
                "--model",
                "meta-llama/Llama-3.1-8B-Instruct",
                "--host-ram-gb",
                "82.5",
                "--config",
            ])
            .arg(&c8)
            .env("PATH", &path),
        Duration::from_secs(20),
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("8 GPU(s) of 81559 MiB"), "{stdout}");
    assert!(stdout.contains("vllm serve meta-llama/Llama-3.1-8B-Instruct \\\n    --tensor-parallel-size 1 \\\n    --load-format dummy"), "{stdout}");
    // The context and memory share come with it: what fits the GPU's KV.
    assert!(
        stdout.contains("--load-format dummy \\\n    --max-model-len 131072 \\\n    --gpu-memory-utilization 0.9"),
        "{stdout}"
    );
    assert!(
        stdout.contains("LMCACHE_MAX_LOCAL_CPU_SIZE=66 \\"),
        "{stdout}"
    );
    assert!(
        stdout.contains("--num-documents 51 \\\n    --document-length 10000"),
        "{stdout}"
    );
    // The suite snippet loads as a suite (a test without checks would be
    // refused), gating TTFT against the baseline and failed requests.
    let suite = dir.path().join("rec.toml");
    std::fs::write(&suite, &stdout[stdout.find("[run]").unwrap()..]).unwrap();
    let out = run(
        bin().args(["list", "--checks", "--suite"]).arg(&suite),
        Duration::from_secs(20),
    );
    let (listed, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        listed.contains("long_doc_qa  [long_doc_qa]  3 checks"),
        "{listed}"
    );
    assert!(
        listed.contains("query_ttft_vs_baseline: query_ttft_per_prompt"),
        "{listed}"
    );
    assert!(listed.contains("lmcache_failed_requests"), "{listed}");
}

#[test]
fn recommend_scales_a_bigger_model_and_refuses_gpus_too_small() {
    let dir = tempdir();
    let path = eight_gpus(dir.path());
    let c70 = config_json(dir.path(), "llama70b", 8192, 80, 64, 28_672);
    let out = run(
        bin()
            .args([
                "recommend",
                "--model",
                "meta-llama/Llama-3.1-70B-Instruct",
                "--host-ram-gb",
                "200",
                "--config",
            ])
            .arg(&c70)
            .env("PATH", &path),
        Duration::from_secs(20),
    );
    let stdout = text(&out).0;
    assert!(
        stdout.contains("--tensor-parallel-size 4")
            && stdout.contains("LMCACHE_MAX_LOCAL_CPU_SIZE=40"),
        "{stdout}"
    );

    let out = run(
        bin()
            .args([
                "recommend",
                "--model",
                "x/y",
                "--gpus",
                "1",
                "--gpu-mib",
                "24000",
                "--host-ram-gb",
                "64",
                "--config",
            ])
            .arg(&c70),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out).1.contains("needs 8 GPU(s) of 24000 MiB"),
        "{}",
        text(&out).1
    );
}

/// An `nvidia-smi` whose H200 holds 35,651 MiB for each running sim engine
/// of this test (as vLLM at `--gpu-memory-utilization 0.25` did), and,
/// like the driver, frees it `release_secs` after the engine's process is
/// gone (`never`: not at all).
fn h200_smi(dir: &Path, tag: &str, release: &str) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let seen = dir.join("last-alive");
    executable(
        &bin.join("nvidia-smi"),
        &format!(
            r#"#!/bin/sh
now=$(date +%s.%N)
n=$(pgrep -f -- "--served-model-name {tag}" | wc -l)
if [ "$n" -gt 0 ]; then echo "$now $n" > '{seen}'; fi
used=$(awk -v now="$now" -v n="$n" -v rel='{release}' '{{ if (n > 0) print n * 35651; else if (rel == "never" || now - $1 < rel) print $2 * 35651; else print 0 }}' '{seen}' 2>/dev/null)
[ -n "$used" ] || used=0
echo "index, name, uuid, memory.total [MiB], memory.used [MiB], memory.free [MiB], utilization.gpu [%]"
echo "0, NVIDIA H200, GPU-39e29321-8872-211d-3f94-a429bb254acf, 143771 MiB, $used MiB, $((143156 - used)) MiB, 0 %"
"#,
            seen = seen.display()
        ),
    );
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Two sims one after the other, as on one GPU.
fn sequential_suite(dir: &Path, tag: &str, extra: &str) -> std::path::PathBuf {
    let engine = |role: &str| {
        format!(
            "[engines.{role}]\nrole = \"{role}\"\nkind = \"sim\"\n[engines.{role}.sim]\n\
             served_model_name = \"{tag}\"\nload_delay_ms = 1500\ncache_tokens = 100000\n"
        )
    };
    let suite = dir.join("suite.toml");
    std::fs::write(
        &suite,
        format!(
            "[run]\nname = \"one-gpu\"\nschedule = \"sequential\"\nstarting_report_secs = 0.5\n{extra}\n{}{}\
             [tests.determinism]\nkind = \"determinism\"\nmax_tokens = 4\nstore_load_pause_secs = 0\n\
             [tests.determinism.checks.identical]\nmetric = \"mismatched_outputs\"\nmax = 0\n",
            engine("baseline"),
            engine("lmcache")
        ),
    )
    .unwrap();
    suite
}

/// Runs the two sims one after the other on the fake H200 freeing memory
/// `release` seconds late; returns the output and the results directory.
fn on_one_gpu(
    dir: &Path,
    tag: &str,
    release: &str,
    extra: &str,
) -> (std::process::Output, std::path::PathBuf) {
    let path = h200_smi(dir, tag, release);
    let results_dir = dir.join("r");
    let suite = sequential_suite(dir, tag, extra);
    let mut cmd = ci_suite(&suite, &results_dir);
    cmd.env("PATH", &path);
    for var in [
        "NCCL_NVLS_ENABLE",
        "TORCH_SYMM_MEM_DISABLE_MULTICAST",
        "NVSHMEM_DISABLE_NVLS",
    ] {
        cmd.env_remove(var);
    }
    let out = run(&mut cmd, Duration::from_secs(60));
    (out, results_dir)
}

#[test]
fn one_gpu_runs_wait_for_the_memory_and_record_it_with_the_gpu() {
    let dir = tempdir();
    let tag = format!("h200-{}", std::process::id());
    let (out, results_dir) = on_one_gpu(dir.path(), &tag, "1.0", "");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let r = results(&results_dir);
    assert_eq!(
        r["meta"]["gpus"],
        serde_json::json!(["GPU 0 NVIDIA H200 (140 GiB)"])
    );
    for e in r["engines"].as_array().unwrap() {
        let g = &e["gpu_memory"];
        assert_eq!(g["before_start_mib"], 0.0, "{e}");
        assert_eq!(g["at_ready_mib"], 35651.0, "{e}");
        assert_eq!(g["after_stop_mib"], 0.0, "{e}");
        assert_eq!(g["released"], true, "{e}");
    }
    // The baseline's memory took the driver a second to free, and the
    // LMCache engine started only after that.
    let base = &r["engines"][0]["gpu_memory"];
    assert!(base["after_stop_secs"].as_f64().unwrap() >= 0.5, "{base}");
    assert!(
        stderr.contains("GPU memory 0 MiB in use")
            && stderr.contains("after `baseline` stopped (0 MiB before it started)"),
        "{stderr}"
    );
    // A start that takes a while says so, with the engine's last log line.
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("engine `baseline` still starting (")
                && l.ends_with(&format!("sim: loading model {tag} (1500 ms)"))),
        "{stderr}"
    );
}

#[test]
fn memory_that_is_never_freed_is_a_warning_once_the_wait_is_over() {
    let dir = tempdir();
    let tag = format!("h200-stuck-{}", std::process::id());
    let (out, results_dir) = on_one_gpu(dir.path(), &tag, "never", "gpu_release_timeout_secs = 1");
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains("GPU memory 35651 MiB in use")
            && stderr.contains("not released; the next engine may not fit"),
        "{stderr}"
    );
    let r = results(&results_dir);
    let base = &r["engines"][0]["gpu_memory"];
    assert_eq!(base["released"], false, "{base}");
    assert_eq!(base["after_stop_mib"], 35651.0, "{base}");
    let waited = base["after_stop_secs"].as_f64().unwrap();
    assert!(
        (0.5..3.0).contains(&waited),
        "gave up after about 1 s: {waited}"
    );
}

/// A `vllm` stand-in: records the `CUDA_VISIBLE_DEVICES` it was started
/// with as `<dir>/<engine>.gpu` (and the NVLink multicast switches as
/// `<engine>.multicast`), then serves as the sim, tagged so a fake
/// `nvidia-smi` can count it.
fn stand_in(dir: &Path, tag: &str) -> std::path::PathBuf {
    let path = dir.join("vllm-stand-in");
    executable(
        &path,
        &format!(
            "#!/bin/sh\necho \"${{CUDA_VISIBLE_DEVICES-unset}}\" > '{0}/'\"$1\".gpu\n\
             echo \"${{NCCL_NVLS_ENABLE-unset}} ${{TORCH_SYMM_MEM_DISABLE_MULTICAST-unset}} ${{NVSHMEM_DISABLE_NVLS-unset}}\" > '{0}/'\"$1\".multicast\n\
             exec '{1}' sim serve --port \"$2\" --served-model-name {tag} --load-delay-ms 800 --cache-tokens 100000\n",
            dir.display(),
            env!("CARGO_BIN_EXE_lmcache-e2e"),
        ),
    );
    path
}

/// Two stand-in engines under `run.schedule = "auto"`.
fn auto_suite(dir: &Path, tag: &str) -> std::path::PathBuf {
    auto_suite_with(
        dir,
        tag,
        "",
        "[tests.determinism]\nkind = \"determinism\"\nmax_tokens = 4\nstore_load_pause_secs = 0\n\
         [tests.determinism.checks.identical]\nmetric = \"mismatched_outputs\"\nmax = 0\n",
    )
}

fn auto_suite_with(dir: &Path, tag: &str, run: &str, tests: &str) -> std::path::PathBuf {
    let program = stand_in(dir, tag);
    let engine = |role: &str| {
        format!(
            "[engines.{role}]\nrole = \"{role}\"\nkind = \"process\"\ncommand = {:?}\n\
             args = [\"{role}\", \"{{port}}\"]\n",
            program.display().to_string()
        )
    };
    let suite = dir.join("suite.toml");
    std::fs::write(
        &suite,
        format!(
            "[run]\nname = \"auto\"\nschedule = \"auto\"\n{run}{}{}{tests}",
            engine("baseline"),
            engine("lmcache")
        ),
    )
    .unwrap();
    suite
}

/// An `nvidia-smi` with one GPU of `total` MiB where each running engine
/// of this test holds `each` MiB.
fn one_gpu_smi(dir: &Path, tag: &str, name: &str, total: u64, each: u64) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    executable(
        &bin.join("nvidia-smi"),
        &format!(
            "#!/bin/sh\nn=$(pgrep -f -- \"--served-model-name {tag}\" | wc -l)\nused=$((n * {each}))\n\
             echo \"index, name, uuid, memory.total [MiB], memory.used [MiB], memory.free [MiB], utilization.gpu [%]\"\n\
             echo \"0, {name}, GPU-0, {total} MiB, $used MiB, $(({total} - used)) MiB, 0 %\"\n"
        ),
    );
    path_with(&bin)
}

fn gpu_of(dir: &Path, engine: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{engine}.gpu")))
        .unwrap()
        .trim()
        .to_string()
}

/// Runs two stand-ins under `run.schedule = "auto"` (the suite's `run`
/// and `tests` tables as given) on one fake GPU named `gpu` of `total` MiB
/// where each engine holds `each`; asserts a pass and returns the stderr,
/// the results and the folder the stand-ins wrote their GPUs into.
fn auto_on_one_gpu(
    gpu: &str,
    total: u64,
    each: u64,
    (run_table, tests): (&str, &str),
) -> (String, serde_json::Value, tempfile::TempDir) {
    let dir = tempdir();
    let tag = format!(
        "auto-{}-{total}-{}",
        gpu.replace(' ', "-"),
        std::process::id()
    );
    let path = one_gpu_smi(dir.path(), &tag, gpu, total, each);
    let suite = match tests {
        "" => auto_suite(dir.path(), &tag),
        _ => auto_suite_with(dir.path(), &tag, run_table, tests),
    };
    let results_dir = dir.path().join("r");
    let mut cmd = ci_suite(&suite, &results_dir);
    cmd.env("PATH", &path);
    for var in [
        "NCCL_NVLS_ENABLE",
        "TORCH_SYMM_MEM_DISABLE_MULTICAST",
        "NVSHMEM_DISABLE_NVLS",
    ] {
        cmd.env_remove(var);
    }
    let out = run(&mut cmd, Duration::from_secs(60));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    (stderr, results(&results_dir), dir)
}

#[test]
fn auto_placement_shares_one_gpu_when_the_baseline_leaves_room_for_another() {
    let (stderr, r, dir) = auto_on_one_gpu("NVIDIA H200", 143771, 35651, ("", ""));
    assert!(
        stderr.contains("`baseline` starts alone")
            && stderr.contains("`baseline` took 35651 MiB of GPU 0 and 108120 MiB are free: the other engines start beside it"),
        "{stderr}"
    );
    assert_eq!(r["meta"]["schedule"], "concurrent");
    assert_eq!(
        (
            gpu_of(dir.path(), "baseline"),
            gpu_of(dir.path(), "lmcache")
        ),
        ("0".into(), "0".into())
    );
    // Every engine starts with NVLink multicast off, the job having said nothing.
    for engine in ["baseline", "lmcache"] {
        let multicast = std::fs::read_to_string(dir.path().join(format!("{engine}.multicast")));
        assert_eq!(multicast.unwrap().trim(), "0 1 1", "{engine}");
    }
    // The LMCache engine found the baseline's memory taken and kept it.
    let lm = engine_record(&r, "lmcache");
    assert_eq!(lm["gpu_memory"]["at_ready_mib"], 71302.0, "{lm}");
    assert_eq!(lm["gpu"], "0");
    // What the stand-in reports as vLLM does (`vllm:cache_config_info`).
    assert_eq!(lm["kv_cache_tokens"], 100000, "{lm}");

    // On an L4 the baseline leaves too little: one after the other.
    let (stderr, r, _dir) = auto_on_one_gpu("NVIDIA L4", 23034, 20700, ("", ""));
    assert!(
        stderr.contains(
            "took 20700 MiB of GPU 0 and 2334 MiB are free: the other engines start after it stops"
        ),
        "{stderr}"
    );
    assert_eq!(r["meta"]["schedule"], "sequential");
}

#[test]
fn auto_placement_gives_each_engine_its_own_gpu_when_there_are_two() {
    let dir = tempdir();
    let tag = format!("auto-2xl4-{}", std::process::id());
    let smi = dir.path().join("bin");
    std::fs::create_dir_all(&smi).unwrap();
    executable(
        &smi.join("nvidia-smi"),
        "#!/bin/sh\necho \"index, name, uuid, memory.total [MiB], memory.used [MiB], memory.free [MiB], utilization.gpu [%]\"\n\
         echo \"0, NVIDIA L4, GPU-0, 23034 MiB, 0 MiB, 22563 MiB, 0 %\"\n\
         echo \"1, NVIDIA L4, GPU-1, 23034 MiB, 0 MiB, 22563 MiB, 0 %\"\n",
    );
    let suite = auto_suite(dir.path(), &tag);
    // The plan says so before anything starts.
    let out = run(
        bin()
            .args(["ci", "--suite"])
            .arg(&suite)
            .arg("--dry-run")
            .env("PATH", path_with(&smi)),
        Duration::from_secs(20),
    );
    let (plan, _) = text(&out);
    assert!(
        plan.contains("placement on this machine now: 2 GPUs for 2 engines: one engine per GPU, started together (`baseline` on GPU 0, `lmcache` on GPU 1)"),
        "{plan}"
    );
    let results_dir = dir.path().join("r");
    let out = run(
        ci_suite(&suite, &results_dir).env("PATH", path_with(&smi)),
        Duration::from_secs(60),
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        (
            gpu_of(dir.path(), "baseline"),
            gpu_of(dir.path(), "lmcache")
        ),
        ("0".into(), "1".into())
    );
    assert_eq!(results(&results_dir)["meta"]["schedule"], "concurrent");
}

#[test]
fn an_engine_cache_kept_between_runs_makes_the_next_start_warm_and_says_so() {
    let dir = tempdir();
    let tag = format!("cache-{}", std::process::id());
    // Compiles (and keeps the result in VLLM_CACHE_ROOT) unless an earlier
    // start kept it, writing the lines vLLM 0.26 writes either way.
    let program = dir.path().join("vllm-stand-in");
    executable(
        &program,
        &format!(
            "#!/bin/sh\nc=\"$VLLM_CACHE_ROOT/torch_compile_cache\"\n\
             if [ -e \"$c/graph\" ]; then echo \"(EngineCore pid=$$) INFO 12-06 10:00:01 [backends.py:292] Directly load the compiled graph(s) for compile range (1, 8192) from the cache, took 0.500 s\"\n\
             else mkdir -p \"$c\" && touch \"$c/graph\" && echo \"(EngineCore pid=$$) INFO 12-06 10:00:01 [backends.py:393] Compiling a graph for compile range (1, 8192) takes 1.20 s\"; fi\n\
             echo \"(EngineCore pid=$$) INFO 12-06 10:00:02 [monitor.py:53] torch.compile took 1.50 s in total\"\n\
             echo \"$TRITON_CACHE_DIR\" > '{}/'\"$1\".triton\n\
             exec '{}' sim serve --port \"$2\" --served-model-name {tag}\n",
            dir.path().display(),
            env!("CARGO_BIN_EXE_lmcache-e2e"),
        ),
    );
    let engine = |role: &str| {
        format!(
            "[engines.{role}]\nrole = \"{role}\"\nkind = \"process\"\ncommand = {:?}\n\
             args = [\"{role}\", \"{{port}}\"]\n",
            program.display().to_string()
        )
    };
    let cache = dir.path().join("engine-cache");
    let suite = dir.path().join("suite.toml");
    std::fs::write(
        &suite,
        format!(
            "[run]\nname = \"cache\"\nschedule = \"sequential\"\nengine_cache = {:?}\n{}{}\
             [tests.determinism]\nkind = \"determinism\"\nmax_tokens = 4\nstore_load_pause_secs = 0\n\
             [tests.determinism.checks.identical]\nmetric = \"mismatched_outputs\"\nmax = 0\n",
            cache.display().to_string(),
            engine("baseline"),
            engine("lmcache")
        ),
    )
    .unwrap();
    let states = |results_dir: &Path| -> Vec<String> {
        results(results_dir)["engines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["start"]["state"].as_str().unwrap_or("none").to_string())
            .collect()
    };
    let first = dir.path().join("r1");
    let out = run(&mut ci_suite(&suite, &first), Duration::from_secs(60));
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    // The baseline compiled; LMCache's engine, after it, found the graph.
    assert_eq!(states(&first), ["cold", "warm"]);
    assert!(
        stderr.contains("engine `baseline`: cold start (torch.compile 1.5 s)"),
        "{stderr}"
    );
    let r = results(&first);
    assert_eq!(
        r["engines"][0]["start"]["dir"],
        cache.join("vllm").display().to_string()
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("baseline.triton"))
            .unwrap()
            .trim(),
        cache.join("triton").display().to_string()
    );
    let second = dir.path().join("r2");
    let out = run(&mut ci_suite(&suite, &second), Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert_eq!(states(&second), ["warm", "warm"]);
}

#[test]
fn engines_sharing_one_gpu_take_turns_even_when_told_to_serve_together() {
    let tests =
        "[tests.long_doc_qa]\nkind = \"long_doc_qa\"\ndocument_length = 200\nnum_documents = 2\n\
         output_len = 2\nrepeat_count = 1\nprewarmup_prompts = 0\ntrials = 2\nmax_trials = 2\n\
         [tests.long_doc_qa.checks.failed]\nmetric = \"failed_requests\"\nmax = 0\n";
    let (stderr, r, _dir) = auto_on_one_gpu(
        "NVIDIA H200",
        143771,
        35651,
        ("pairing = \"together\"\n", tests),
    );
    // The first trial's LMCache run began after the baseline's ended.
    let at = |what: &str| {
        stderr
            .find(what)
            .unwrap_or_else(|| panic!("{what} in {stderr}"))
    };
    assert!(
        at("[long_doc_qa] baseline: query TTFT") < at("[long_doc_qa] running against lmcache"),
        "{stderr}"
    );
    let notes = r["tests"][0]["notes"].to_string();
    assert!(
        notes.contains("although run.pairing = \\\"together\\\": they share one GPU"),
        "{notes}"
    );
}
