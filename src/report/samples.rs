//! Results of typical runs (pass, gate failure, interruption, an engine that
//! failed to start) for the reporters' tests.

use indexmap::IndexMap;

use crate::results::{Better, Interval, Role};
use crate::results::{
    Chart, CheckKind, CheckOutcome, DetailTable, EngineRecord, GpuMemory, LogFindings, LogKind,
    Metric, RunMeta, RunResults, RunStatus, TestRecord, TestStatus, Verdict,
};

fn started() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .unwrap()
        .to_utc()
}

fn check(
    name: &str,
    metric: &str,
    kind: CheckKind,
    b: f64,
    l: f64,
    threshold: f64,
) -> CheckOutcome {
    let change = (l - b) / b * 100.0;
    let value = match kind {
        CheckKind::Absolute => l,
        CheckKind::Relative => change,
    };
    let verdict = if value <= threshold {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    CheckOutcome {
        kind,
        unit: if kind == CheckKind::Relative {
            "%".into()
        } else {
            "s".into()
        },
        baseline: Some(b),
        lmcache: Some(l),
        change_pct: Some(change),
        value: Some(value),
        ..CheckOutcome::bare(name, metric, threshold, verdict)
    }
}

/// Metrics as a run records them: each with the direction its kind
/// declares (the ones here: times and failures smaller, accuracy bigger;
/// a count of questions neither).
fn metrics(pairs: &[(&str, f64, &str)]) -> IndexMap<String, Metric> {
    pairs
        .iter()
        .map(|(k, v, u)| {
            let better = match *k {
                "accuracy" => Some(Better::Bigger),
                "questions" => None,
                _ => Some(Better::Smaller),
            };
            (
                k.to_string(),
                Metric {
                    better,
                    ..Metric::new(*v, u)
                },
            )
        })
        .collect()
}

fn long_doc_qa(lmcache_ttft: f64) -> TestRecord {
    let role = |ttft: f64, warm: f64| {
        metrics(&[
            ("query_ttft_per_prompt", ttft, "s"),
            ("warmup_ttft_mean", warm, "s"),
            ("failed_requests", 0.0, "requests"),
        ])
    };
    let checks = vec![
        check(
            "query_ttft_max",
            "query_ttft_per_prompt",
            CheckKind::Absolute,
            0.673,
            lmcache_ttft,
            0.22,
        ),
        check(
            "query_ttft_vs_baseline",
            "query_ttft_per_prompt",
            CheckKind::Relative,
            0.673,
            lmcache_ttft,
            -80.0,
        ),
    ];
    let status = if checks.iter().all(|c| c.verdict == Verdict::Pass) {
        TestStatus::Passed
    } else {
        TestStatus::Failed
    };
    TestRecord {
        name: "long_doc_qa".into(),
        kind: "long_doc_qa".into(),
        status,
        metrics: IndexMap::from([
            (Role::Baseline, role(0.673, 0.671)),
            (Role::Lmcache, role(lmcache_ttft, 0.702)),
        ]),
        checks,
        files: vec!["long_doc_qa/lmcache_result.json".into()],
        error: None,
        duration_secs: Some(4.21),
        started_at: None,
        notes: Vec::new(),
        caveats: Vec::new(),
        attempts: Vec::new(),
        tables: Vec::new(),
        charts: vec![Chart {
            title: "Mean TTFT per round".into(),
            x: vec!["warmup".into(), "query".into()],
            y_label: "TTFT".into(),
            y_unit: "s".into(),
            series: IndexMap::from([
                (Role::Baseline, vec![0.671, 0.673]),
                (Role::Lmcache, vec![0.702, lmcache_ttft]),
            ]),
        }],
        paired: IndexMap::new(),
    }
}

fn mmlu(status: TestStatus) -> TestRecord {
    let acc = |a: f64| metrics(&[("accuracy", a, ""), ("questions", 1531.0, "questions")]);
    let mut changed = check(
        "changed_answers",
        "changed_answers",
        CheckKind::Absolute,
        0.0,
        2.0,
        5.0,
    );
    changed.unit = "questions".into();
    changed.change_pct = None;
    changed.baseline = None;
    let mut subject = check(
        "max_subject_drop",
        "max_subject_drop",
        CheckKind::Absolute,
        0.0,
        0.0098,
        0.05,
    );
    subject.unit = String::new();
    subject.change_pct = None;
    subject.baseline = None;
    TestRecord {
        name: "mmlu".into(),
        kind: "mmlu".into(),
        status,
        metrics: IndexMap::from([(Role::Baseline, acc(0.6812)), (Role::Lmcache, acc(0.6806))]),
        checks: vec![changed, subject],
        files: vec!["mmlu/correctness-summary.txt".into()],
        error: (status == TestStatus::Interrupted).then(|| "interrupted by SIGTERM".into()),
        duration_secs: Some(61.5),
        started_at: None,
        notes: vec![
            "changed answers: 2 questions answered differently by LMCache (all in mmlu/changed_answers.jsonl)".into(),
            "largest subject drop: college_physics (0.0098)".into(),
        ],
        caveats: Vec::new(),
        attempts: Vec::new(),
        tables: vec![
            DetailTable {
                title: "MMLU accuracy per subject".into(),
                columns: ["Subject", "Questions", "Baseline", "LMCache", "Change"]
                    .map(String::from)
                    .to_vec(),
                rows: vec![
                    vec!["college_physics".into(), "102".into(), "0.4902".into(), "0.4804".into(), "-0.0098".into()],
                    vec!["abstract_algebra".into(), "100".into(), "0.3300".into(), "0.3300".into(), "+0.0000".into()],
                ],
                omitted_rows: 0,
            },
            DetailTable {
                title: "Changed answers (2)".into(),
                columns: ["Subject", "Question", "Correct", "Baseline", "LMCache"]
                    .map(String::from)
                    .to_vec(),
                rows: vec![
                    vec!["college_physics".into(), "17".into(), "B".into(), "B".into(), "C".into()],
                    vec!["high_school_us_history".into(), "3".into(), "A".into(), "D".into(), "A".into()],
                ],
                omitted_rows: 0,
            },
        ],
        charts: Vec::new(),
        paired: IndexMap::new(),
    }
}

fn engines(tail: &[&str]) -> Vec<EngineRecord> {
    [
        ("baseline", Role::Baseline, 8001),
        ("lmcache", Role::Lmcache, 8000),
    ]
    .into_iter()
    .map(|(name, role, port)| EngineRecord {
        name: name.into(),
        role,
        kind: "process".into(),
        url: format!("http://127.0.0.1:{port}"),
        pid: Some(4242),
        log: Some(format!("logs/{name}.log")),
        ready_secs: Some(41.3),
        log_tail: tail.iter().map(|l| l.to_string()).collect(),
        version: Some("0.26.0".into()),
        served_models: vec!["meta-llama/Llama-3.1-8B-Instruct".into()],
        process_started_unix: Some(1_796_178_176.31),
        // As the H200 run saw them (docs/runs/2026-12-02-h200-…).
        gpu_memory: Some(GpuMemory {
            before_start_mib: Some(0.0),
            at_ready_mib: Some(35_651.0),
            after_stop_mib: Some(0.0),
            after_stop_secs: Some(0.03),
            released: Some(true),
        }),
        gpu: Some(match role {
            Role::Lmcache => "1".into(),
            _ => "0".into(),
        }),
        kv_cache_tokens: Some(163_792),
        // The baseline compiled; LMCache's engine found its graphs cached.
        start: Some(crate::results::StartCache {
            state: match role {
                Role::Lmcache => "warm".into(),
                _ => "cold".into(),
            },
            compile_secs: Some(35.21),
            init_secs: Some(203.67),
            dir: Some("/var/cache/lmcache-e2e/vllm".into()),
        }),
        log_findings: Some(match role {
            Role::Lmcache => LogFindings {
                warnings: 7982,
                errors: 0,
                top: vec![
                    LogKind {
                        level: "WARNING".into(),
                        count: 4505,
                        example: "(EngineCore pid=1892) [2026-12-02 06:38:34,230] LMCache WARNING: Failed to allocate memory block of size 33554432 because no memory is available (memory_management.py:1413:lmcache.v1.memory_management)".into(),
                    },
                    LogKind {
                        level: "WARNING".into(),
                        count: 3465,
                        example: "(EngineCore pid=1892) [2026-12-02 06:38:24,449] LMCache WARNING: Pin count of MemoryObj 3858759680is negative: -1.Double unpin occurred somewhere.Setting pin count back to 0 as a hack but please find the bug.".into(),
                    },
                ],
            },
            _ => LogFindings::default(),
        }),
    })
    .collect()
}

fn base(status: RunStatus, tests: Vec<TestRecord>) -> RunResults {
    RunResults {
        schema_version: 1,
        tool_version: "0.1.0".into(),
        suite: "sim".into(),
        source: "preset `sim`".into(),
        build_id: "1234".into(),
        run_id: "1234-77".into(),
        results_dir: "/tmp/lmcache_ci_results_1234".into(),
        status,
        message: None,
        signal: None,
        started_at: started(),
        finished_at: Some(started() + chrono::Duration::milliseconds(75_310)),
        engines: engines(&[
            "INFO:     Started server process [4242]",
            "INFO:     Application startup complete.",
        ]),
        tests,
        meta: RunMeta {
            repository: Some("LMCache/LMCache".into()),
            commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
            branch: Some("fix/cache_*hits*".into()),
            pr_number: Some(1234),
            build_url: Some("https://github.com/LMCache/LMCache/actions/runs/99".into()),
            models: vec!["meta-llama/Llama-3.1-8B-Instruct".into()],
            gpus: vec!["GPU 0 (22 GiB)".into(), "GPU 1 (22 GiB)".into()],
            suite_hash: None,
            placement: Some("2 GPUs for 2 engines: one engine per GPU, started together (`baseline` on GPU 0, `lmcache` on GPU 1)".into()),
            schedule: Some("concurrent".into()),
            ci_build: Some("run 99, attempt 1".into()),
            artifact: Some("lmcache-e2e-results-e2e-sim-1".into()),
            artifact_url: Some(
                "https://github.com/LMCache/LMCache/actions/runs/99#artifacts".into(),
            ),
        },
        family: None,
        shard: None,
        merged_from: Vec::new(),
        history: None,
        controls: Vec::new(),
    }
}

pub(crate) fn passed() -> RunResults {
    base(
        RunStatus::Passed,
        vec![long_doc_qa(0.009), mmlu(TestStatus::Passed)],
    )
}

/// LMCache too slow, with hostile text where users and logs put it.
pub(crate) fn gate_failure() -> RunResults {
    let mut r = base(
        RunStatus::Failed,
        vec![mmlu(TestStatus::Passed), long_doc_qa(0.214)],
    );
    r.suite = "sim | <b>x</b>".into();
    r.engines[1].log_tail = vec![
        "INFO ready".into(),
        "```injected".into(),
        "<img src=x onerror=alert(1)>".into(),
    ];
    r
}

pub(crate) fn interrupted() -> RunResults {
    let mut r = base(
        RunStatus::Interrupted,
        vec![long_doc_qa(0.009), mmlu(TestStatus::Interrupted)],
    );
    r.signal = Some("SIGTERM".into());
    r.message = Some("interrupted by SIGTERM; engines stopped, partial results kept".into());
    r.tests[1].checks.clear();
    r.tests[1].tables.clear();
    r.tests[1].notes.clear();
    r
}

pub(crate) fn engine_failed() -> RunResults {
    let mut r = base(RunStatus::Error, Vec::new());
    let mut t = long_doc_qa(0.0);
    t.status = TestStatus::Error;
    t.metrics.clear();
    t.checks.clear();
    t.charts.clear();
    t.duration_secs = None;
    t.error = Some("engine `lmcache` exited (exit status: 1) before it was ready".into());
    r.tests = vec![t];
    r.message = Some(
        "engine `lmcache` exited (exit status: 1) before it was ready; last log lines below".into(),
    );
    r.engines[1].ready_secs = None;
    r.engines[1].log_tail = vec![
        "INFO 11-22 10:00:03 [api_server.py:1090] vLLM API server version 0.11.0".into(),
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB".into(),
    ];
    r
}

/// MMLU whose accuracy-drop interval straddles the bound: McNemar's
/// evidence shown, neither a pass nor a fail.
pub(crate) fn inconclusive() -> RunResults {
    let mut r = base(
        RunStatus::Inconclusive,
        vec![long_doc_qa(0.009), mmlu(TestStatus::Inconclusive)],
    );
    r.message =
        Some("could not tell: mmlu.accuracy_drop (-0.004 … +0.019 straddles <= 0.01)".into());
    let mut c = check(
        "accuracy_drop",
        "accuracy_drop",
        CheckKind::Absolute,
        f64::NAN,
        0.0076,
        0.01,
    );
    c.baseline = None;
    c.change_pct = None;
    c.unit = String::new();
    c.verdict = Verdict::Inconclusive;
    c.interval = Some(Interval {
        low: -0.0042,
        high: 0.0194,
        level: 0.95,
    });
    c.n = Some(264);
    c.p = Some(0.289);
    c.method = Some(crate::results::method::MCNEMAR.into());
    r.tests[1].checks.insert(0, c);
    r.family = Some(crate::results::Family {
        method: "holm".into(),
        alpha: 0.05,
        checks: 1,
        softened: Vec::new(),
    });
    r.tests[1]
        .notes
        .push("McNemar: 5 right → wrong, 3 wrong → right; a drop under 0.038 cannot be told from noise with 264 questions (a 1-point drop needs 3922)".into());
    r
}

/// A merged run of three shards, shown against the default branch's history
/// with a step in it.
pub(crate) fn merged_with_history() -> RunResults {
    use crate::results::{ChangePoint, HistoryView, MergedShard, MetricHistory};
    let mut r = passed();
    r.merged_from = (1..=3)
        .map(|index| MergedShard {
            index,
            dir: format!("shard-{index}"),
            status: RunStatus::Passed,
            duration_secs: Some(600.0 + f64::from(index) * 7.0),
            build_url: Some(format!(
                "https://buildkite.com/lmcache/e2e/builds/7#job-{index}"
            )),
        })
        .collect();
    let series: Vec<f64> = (0..30)
        .map(|i| if i < 15 { -72.0 } else { -61.0 } + f64::from(i % 3))
        .collect();
    r.history = Some(HistoryView {
        runs: 30,
        fingerprint: "3f2a9c41d0be".into(),
        method: "E-divisive means (Matteson & James 2014), 499 seeded permutations, p <= 0.01, at least 4 runs a side".into(),
        metrics: vec![MetricHistory {
            key: "long_doc_qa: query_ttft_vs_baseline".into(),
            unit: "%".into(),
            series,
            current: Some(-60.5),
            percentile: Some(81.7),
            change_points: vec![ChangePoint {
                at: 15,
                commit: Some("89abcdef0123456789abcdef0123456789abcdef".into()),
                change_pct: Some(15.3),
                p: 0.002,
            }],
        }],
    });
    r
}

/// A run far over a PR comment's limit: 60 long doc QA tests (one of them
/// failing), each with pages of notes and a wide table.
pub(crate) fn large() -> RunResults {
    let tests = (0..60)
        .map(|i| {
            let mut t = long_doc_qa(if i == 7 { 0.214 } else { 0.009 });
            t.name = format!("long_doc_qa@model-{i:02}");
            t.notes = (0..10)
                .map(|k| {
                    format!(
                        "note {k} of test {i}: {}",
                        "a finding worth keeping. ".repeat(20)
                    )
                })
                .collect();
            t.tables = vec![DetailTable {
                title: "Per prompt".into(),
                columns: ["Prompt", "Baseline TTFT", "LMCache TTFT"]
                    .map(String::from)
                    .to_vec(),
                rows: (0..50)
                    .map(|k| vec![format!("{k}"), "0.673".into(), "0.009".into()])
                    .collect(),
                omitted_rows: 0,
            }];
            t
        })
        .collect();
    base(RunStatus::Failed, tests)
}

pub(crate) fn all() -> Vec<(&'static str, RunResults)> {
    vec![
        ("passed", passed()),
        ("merged_with_history", merged_with_history()),
        ("inconclusive", inconclusive()),
        ("gate_failure", gate_failure()),
        ("interrupted", interrupted()),
        ("engine_failed", engine_failed()),
    ]
}
