//! The job's credentials never leave this process: with a token set (as a
//! GitHub job has it), no child it starts sees it (engines, `vllm bench`,
//! `lm_eval`, `buildkite-agent`, stand-ins here that write down their
//! environment), and no output of any subcommand, log or file in the
//! results directory carries it, `--verbose` and `config show` included.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(120);
const TOKEN: &str = "ghs_secretsTestToken9f8e7d6c5b4a";
const OTHER: &str = "ACTIONS-runtime-token-0a1b2c3d";

/// Writes its environment to `$ENV_DUMPS/<name>.<pid>.env`, then runs as
/// `$0`'s role: an engine (the sim), `vllm bench serve`, `lm_eval` or
/// `buildkite-agent`.
const RECORDER: &str = r#"#!/bin/sh
env > "$ENV_DUMPS/$(basename "$0").$$.env"
case "$(basename "$0")" in
  engine) exec "$LMCACHE_E2E_BIN" sim serve --port "$1" --served-model-name m --cache-tokens 100000 ;;
  vllm)
    while [ $# -gt 0 ]; do
      case "$1" in --result-dir) dir="$2" ;; --result-filename) file="$2" ;; esac; shift
    done
    printf '{"completed": 4, "failed": 0, "duration": 1.0, "total_input_tokens": 400, "total_output_tokens": 4, "total_token_throughput": 404.0}' > "$dir/$file" ;;
  lm_eval)
    while [ $# -gt 0 ]; do [ "$1" = "--output_path" ] && out="$2"; shift; done
    mkdir -p "$out/m" && echo '{"doc_id": 0}' > "$out/m/samples_gsm8k_2026-01-01T00-00-00.jsonl" ;;
  buildkite-agent) cat > /dev/null ;;
esac
"#;

fn stand_ins(dir: &Path) -> std::path::PathBuf {
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    for name in ["engine", "vllm", "lm_eval", "buildkite-agent"] {
        executable(&bin_dir.join(name), RECORDER);
    }
    std::fs::create_dir_all(dir.join("dumps")).unwrap();
    bin_dir
}

fn with_secrets(cmd: &mut Command, dir: &Path, bin_dir: &Path) {
    cmd.env("GITHUB_TOKEN", TOKEN)
        .env("GH_TOKEN", TOKEN)
        .env("ACTIONS_RUNTIME_TOKEN", OTHER)
        .env("PATH", path_with(bin_dir))
        .env("ENV_DUMPS", dir.join("dumps"))
        .env("LMCACHE_E2E_BIN", env!("CARGO_BIN_EXE_lmcache-e2e"));
}

fn suite(dir: &Path) -> std::path::PathBuf {
    let engine = |name: &str, role: &str| {
        format!(
            "[engines.{name}]\nrole = \"{role}\"\nkind = \"process\"\ncommand = \"engine\"\nargs = [\"{{port}}\"]\n"
        )
    };
    let path = dir.join("suite.toml");
    std::fs::write(
        &path,
        format!(
            "[run]\nname = \"secrets\"\nmodel = \"m\"\n{}{}\
             [tests.throughput]\nkind = \"throughput\"\ndriver = \"vllm-bench\"\nnum_prompts = 4\ninput_len = 100\nrecord_only = true\n\
             [tests.lm_eval]\nkind = \"lm_eval\"\nlimit = 2\nnum_concurrent = 1\nrecord_only = true\n",
            engine("baseline", "baseline"),
            engine("lmcache", "lmcache"),
        ),
    )
    .unwrap();
    path
}

fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.contains(TOKEN),
        "{what} carries the GitHub token:\n{text}"
    );
    assert!(
        !text.contains(OTHER),
        "{what} carries the runtime token:\n{text}"
    );
}

fn assert_output_clean(what: &str, out: &Output) {
    let (stdout, stderr) = text(out);
    assert_clean(&format!("{what} stdout"), &stdout);
    assert_clean(&format!("{what} stderr"), &stderr);
}

/// Every file under `dir`, read as text.
fn assert_tree_clean(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            assert_tree_clean(&p);
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
            assert_clean(&p.display().to_string(), &text);
        }
    }
}

#[test]
fn no_child_output_or_file_of_any_subcommand_sees_the_token() {
    let dir = tempdir();
    let bin_dir = stand_ins(dir.path());
    let suite = suite(dir.path());
    let results = dir.path().join("r");
    let sub = |args: &[&str]| {
        let mut cmd = bin();
        cmd.args(args);
        with_secrets(&mut cmd, dir.path(), &bin_dir);
        run(&mut cmd, LIMIT)
    };
    let suite_s = suite.display().to_string();
    let results_s = results.display().to_string();
    let out = sub(&[
        "ci",
        "--verbose",
        "--suite",
        &suite_s,
        "--results-dir",
        &results_s,
    ]);
    let (_, stderr) = text(&out);
    assert_ne!(out.status.code(), Some(2), "{stderr}");
    assert_output_clean("ci --verbose", &out);
    for args in [
        vec!["config", "show", "--suite", &suite_s],
        vec!["config", "show", "--preset", "k3"],
        vec!["list"],
        vec![
            "report",
            "--results-dir",
            &results_s,
            "--buildkite-annotate",
            "--pr-comment",
            "--pr",
            "7",
            "--repo",
            "o/r",
        ],
        vec!["cleanup", "--results-dir", &results_s],
        vec!["gpus"],
    ] {
        let out = sub(&args);
        assert_output_clean(&args.join(" "), &out);
    }
    assert_tree_clean(&results);
    // Every child wrote down its environment: engines (two), vllm bench
    // (two), lm_eval (two runs), the Buildkite agent.
    let dumps: Vec<_> = std::fs::read_dir(dir.path().join("dumps"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    for role in ["engine.", "vllm.", "lm_eval.", "buildkite-agent."] {
        assert!(
            dumps
                .iter()
                .any(|d| d.file_name().unwrap().to_string_lossy().starts_with(role)),
            "no {role} child ran: {dumps:?}"
        );
    }
    for d in &dumps {
        let env = std::fs::read_to_string(d).unwrap();
        assert_clean(&d.display().to_string(), &env);
        assert!(
            env.contains("ENV_DUMPS="),
            "the dump is an environment: {env}"
        );
    }
}
