//! `lmcache-e2e gpus` against an `nvidia-smi` on PATH that prints the real
//! captured output, and without one.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

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

#[test]
fn recommend_follows_gpu_and_ram_memory_and_prints_a_valid_suite() {
    let dir = tempdir();
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    // Eight 80 GB GPUs, in the four-column form the tool asks for.
    let rows: String = (0..8).map(|i| format!("{i}, 81559, 81079, 0\n")).collect();
    executable(
        &bin_dir.join("nvidia-smi"),
        &format!("#!/bin/sh\nprintf '{}'\n", rows.replace('\n', "\\n")),
    );
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

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
    assert!(
        stdout.contains("LMCACHE_MAX_LOCAL_CPU_SIZE=66 \\"),
        "{stdout}"
    );
    assert!(
        stdout.contains("--num-documents 51 \\\n    --document-length 10000"),
        "{stdout}"
    );
    // The suite snippet loads as a suite.
    let suite = dir.path().join("rec.toml");
    std::fs::write(&suite, &stdout[stdout.find("[run]").unwrap()..]).unwrap();
    let out = run(
        bin().args(["list", "--suite"]).arg(&suite),
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);

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
