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
