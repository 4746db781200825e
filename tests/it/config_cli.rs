//! Suite loading and the CLI around it: errors name the key and the file,
//! `list`, `--only`, `config show`, exit codes for bad usage.

use std::time::Duration;

use crate::common::*;

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn unknown_key_in_a_suite_file_names_key_and_file_and_exits_2() {
    let dir = tempdir();
    let suite = dir.path().join("my-suite.toml");
    std::fs::write(
        &suite,
        "[engines.lm]\nrole = \"lmcache\"\nkind = \"sim\"\n[tests.ldqa]\nkind = \"long_doc_qa\"\nnum_docs = 3\n",
    )
    .unwrap();
    let out = run(&mut ci_suite(&suite, dir.path().join("r")), LIMIT);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("tests.ldqa.num_docs") && stderr.contains("my-suite.toml"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("r").exists(),
        "nothing runs on a bad config"
    );
}

#[test]
fn wrong_types_and_syntax_errors_name_where() {
    let dir = tempdir();
    let suite = dir.path().join("s.toml");
    std::fs::write(
        &suite,
        "[engines.lm]\nrole = \"lmcache\"\nkind = \"sim\"\nport = \"eighty\"\n",
    )
    .unwrap();
    let out = run(bin().args(["list", "--suite"]).arg(&suite), LIMIT);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("engines.lm.port") && stderr.contains("s.toml"),
        "{stderr}"
    );

    std::fs::write(&suite, "[engines.lm\nrole = 1\n").unwrap();
    let out = run(bin().args(["list", "--suite"]).arg(&suite), LIMIT);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("s.toml") && stderr.contains("line 1"),
        "{stderr}"
    );

    let out = run(
        bin().args(["list", "--suite", "/no/such/suite.toml"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("/no/such/suite.toml"));
}

#[test]
fn env_overrides_type_errors_name_the_variable() {
    let out = run(
        bin().args(["config", "show"]).env("NUM_DOCUMENTS", "lots"),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("NUM_DOCUMENTS"));
}

#[test]
fn config_show_says_where_each_value_came_from() {
    let out = run(
        bin()
            .args(["config", "show", "--set", "tests.long_doc_qa.output_len=7"])
            .env("MODEL", "Qwen/Qwen3-14B")
            .env("MAX_LMCACHE_TTFT", "0.3"),
        LIMIT,
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let line = |key: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} in {stdout}"))
            .to_string()
    };
    assert!(
        line("run.model").contains("\"Qwen/Qwen3-14B\"")
            && line("run.model").ends_with("# env MODEL")
    );
    assert!(line("tests.long_doc_qa.checks.query_ttft.max").contains("0.3"));
    assert!(line("tests.long_doc_qa.output_len").ends_with("# --set"));
    assert!(line("tests.long_doc_qa.num_documents").ends_with("# preset `sim`"));
    assert!(line("run.request_timeout_secs").contains("60"));
    assert!(line("tests.long_doc_qa.ttft_trim_fraction").ends_with("# default"));
}

#[test]
fn list_and_only_select_tests_by_name() {
    let out = run(bin().args(["list", "--preset", "sim"]), LIMIT);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).0.starts_with("long_doc_qa  [long_doc_qa]"));
    // `--checks` says each metric's unit, better side and how its trials
    // are judged, as its kind declares them.
    let out = run(bin().args(["list", "--checks", "--preset", "sim"]), LIMIT);
    let listed = text(&out).0;
    for said in [
        "query_ttft_per_prompt (s, smaller is better)",
        "load_pass_external_pct (%, bigger is better, in every trial)",
        "questions (questions)",
    ] {
        assert!(listed.contains(said), "{said} in {listed}");
    }

    let dir = tempdir();
    let out = run(
        bin()
            .args(["ci", "--only", "nothing-like-this", "--results-dir"])
            .arg(dir.path()),
        LIMIT,
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("no test matches --only `nothing-like-this`"),
        "{stderr}"
    );
}

#[test]
fn only_takes_a_list_comma_separated_or_repeated() {
    for args in [
        vec!["--only", "mmlu,determinism"],
        vec!["--only", "mmlu", "--only", "determinism"],
    ] {
        let dir = tempdir();
        let out = run(
            bin()
                .args(["ci", "--quiet"])
                .args(&args)
                .arg("--results-dir")
                .arg(dir.path()),
            Duration::from_secs(120),
        );
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stdout}{stderr}");
        let r = results(dir.path());
        let ran: Vec<&str> = r["tests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(ran, ["mmlu", "determinism"], "{args:?}");
    }
    let dir = tempdir();
    let out = run(
        bin()
            .args(["ci", "--only", "mmlu,nothing-like-this", "--results-dir"])
            .arg(dir.path()),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out)
        .1
        .contains("no test matches --only `nothing-like-this`"));
}

#[test]
fn unknown_preset_and_bad_usage_exit_2() {
    let out = run(bin().args(["ci", "--preset", "gpu-please"]), LIMIT);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("unknown preset `gpu-please`"));
    let out = run(bin().args(["ci", "--frobnicate"]), LIMIT);
    assert_eq!(out.status.code(), Some(2));
    let out = run(bin().args(["ci", "--set", "novalue"]), LIMIT);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_documents_exit_codes_on_every_subcommand() {
    let out = run(bin().arg("--help"), LIMIT);
    let stdout = text(&out).0;
    assert!(stdout.contains("Exit codes") && stdout.contains("143"));
    for sub in [
        &["ci"][..],
        &["list"],
        &["config", "show"],
        &["report"],
        &["cleanup"],
        &["sim", "serve"],
    ] {
        let out = run(bin().args(sub).arg("--help"), LIMIT);
        assert_eq!(out.status.code(), Some(0), "{sub:?} --help");
    }
}

#[test]
fn each_command_lists_the_exit_codes_it_can_give() {
    let help = |cmd: &str| text(&run(bin().args([cmd, "--help"]), LIMIT)).0;
    let ci = help("ci");
    assert!(
        ci.contains("a control did not reach the verdict it names"),
        "{ci}"
    );
    // Only `ci` starts engines; every other command lists its own codes.
    for tool in [
        "gpus",
        "recommend",
        "export",
        "report",
        "merge",
        "compare",
        "setup",
        "list",
        "calibrate",
        "config",
    ] {
        let h = help(tool);
        assert!(
            h.contains("Exit codes") && !h.contains("an engine failed to start"),
            "{tool}: {h}"
        );
    }
    assert!(help("report").contains("whatever verdict the run had"));
    // A results directory given without its results.json is the user's
    // input (2), as the tables say, not a setup failure (3).
    let missing = tempdir();
    let gone = missing.path().join("nothing-here");
    for args in [
        vec!["report", "--results-dir"],
        vec!["export", "--format", "bencher", "--results-dir"],
    ] {
        let out = run(bin().args(&args).arg(&gone), LIMIT);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out).1);
    }
    // A format no row of the exporters' table is: usage, naming them all.
    let out = run(
        bin()
            .args(["export", "--format", "bencherr", "--results-dir"])
            .arg(&gone),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    assert!(
        text(&out)
            .1
            .contains("no export format `bencherr`; the formats are bencher,"),
        "{}",
        text(&out).1
    );
    let cleanup = help("cleanup");
    assert!(
        cleanup.contains("without a run's state.json") && cleanup.contains("Docker CLI"),
        "{cleanup}"
    );
}

#[test]
fn report_into_a_reader_that_goes_away_ends_quietly() {
    let dir = tempdir();
    let out = run(
        bin()
            .args(["ci", "--quiet", "--only", "determinism", "--results-dir"])
            .arg(dir.path()),
        Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    // A reader that is already gone (`| head -1` after its line): every
    // write meets a closed pipe.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = bin()
        .args(["report", "--results-dir"])
        .arg(dir.path())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
