//! Running one test of a suite: its workload against baseline, then LMCache,
//! then what comparing the two adds. Results are recorded after each engine,
//! so an interrupted run keeps what was measured.

use std::path::Path;
use std::time::Duration;

use indexmap::IndexMap;

use crate::client::OpenAiClient;
use crate::config::{Role, TestParams};
use crate::engine::EngineSpec;
use crate::error::Error;
use crate::report::results::{Metric, RunResults};
use crate::workload::{long_doc_qa, mmlu, WorkloadError};

/// Changed questions listed in the notes; the rest are in the files.
const NOTE_LIMIT: usize = 20;

pub(crate) struct Ctx<'a> {
    pub specs: &'a [EngineSpec],
    pub model: &'a str,
    pub timeout: Duration,
    pub suite_dir: &'a Path,
}

/// What a test produced, or why it could not finish.
#[derive(Default)]
pub(crate) struct TestOutput {
    pub metrics: IndexMap<Role, IndexMap<String, Metric>>,
    pub files: Vec<String>,
    pub notes: Vec<String>,
    pub error: Option<String>,
}

fn client_for<'a>(
    ctx: &'a Ctx<'_>,
    name: &str,
    role: Role,
) -> Result<(&'a EngineSpec, OpenAiClient), String> {
    let spec = ctx.specs.iter().find(|s| s.role == role).ok_or_else(|| {
        format!(
            "test `{name}` compares baseline with LMCache, but the suite has no `{role}` engine"
        )
    })?;
    let client = OpenAiClient::new(&spec.url, ctx.timeout).map_err(|e| e.to_string())?;
    Ok((spec, client))
}

fn record(results: &mut RunResults, name: &str, out: &TestOutput) -> Result<(), Error> {
    if let Some(t) = results.test_mut(name) {
        t.metrics = out.metrics.clone();
        t.files = out.files.clone();
        t.notes = out.notes.clone();
    }
    Ok(results.write()?)
}

pub(crate) async fn run(
    ctx: &Ctx<'_>,
    name: &str,
    params: &TestParams,
    results: &mut RunResults,
) -> Result<TestOutput, Error> {
    let mut out = TestOutput::default();
    let dir = results.results_dir.clone();
    let step: Result<(), String> = async {
        match params {
            TestParams::LongDocQa(p) => {
                // Baseline first, so warm-up effects never favour LMCache.
                for role in [Role::Baseline, Role::Lmcache] {
                    let (spec, client) = client_for(ctx, name, role)?;
                    eprintln!("lmcache-e2e: [{name}] running against {role} (`{}`)", spec.name);
                    let r = long_doc_qa::run(&client, ctx.model, p, &dir, role.as_str()).await.map_err(|e| e.to_string())?;
                    let m = |k: &str| r.metrics.get(k).map_or(f64::NAN, |m| m.value);
                    eprintln!(
                        "lmcache-e2e: [{name}] {role}: query TTFT {:.3} s, query round {:.3} s/prompt, warmup round {:.3} s/prompt, {} failed requests",
                        m("query_ttft_per_prompt"),
                        m("query_round_time_per_prompt"),
                        m("warmup_round_time_per_prompt"),
                        m("failed_requests")
                    );
                    out.metrics.insert(role, r.metrics);
                    out.files.extend(r.files);
                    record(results, name, &out).map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            TestParams::Mmlu(p) => run_mmlu(ctx, name, p, results, &mut out).await,
        }
    }
    .await;
    out.error = step.err();
    record(results, name, &out)?;
    Ok(out)
}

async fn run_mmlu(
    ctx: &Ctx<'_>,
    name: &str,
    p: &mmlu::MmluParams,
    results: &mut RunResults,
    out: &mut TestOutput,
) -> Result<(), String> {
    let dir = results.results_dir.clone();
    let wl = |e: WorkloadError| e.to_string();
    let (_, tokenizer) = client_for(ctx, name, Role::Baseline)?;
    let model = tokenizer
        .resolve_model(ctx.model)
        .await
        .map_err(|e| e.to_string())?;
    let plan = mmlu::plan(p, &dir, ctx.suite_dir, Some((&tokenizer, &model)))
        .await
        .map_err(wl)?;
    eprintln!(
        "lmcache-e2e: [{name}] {} questions from {} subjects ({}), few-shot examples per subject: {}",
        plan.items.len(),
        plan.subjects.len(),
        plan.data_dir.display(),
        summarize_fewshot(&plan.fewshot_used)
    );
    let mut per_role = IndexMap::new();
    for role in [Role::Baseline, Role::Lmcache] {
        let (spec, client) = client_for(ctx, name, role)?;
        let twice = role == Role::Lmcache && p.store_then_load;
        eprintln!(
            "lmcache-e2e: [{name}] asking {role} (`{}`){}",
            spec.name,
            if twice {
                ", each prompt twice (store, then load)"
            } else {
                ""
            }
        );
        let records = mmlu::run(&client, &model, p, &plan, &spec.name, twice)
            .await
            .map_err(wl)?;
        let scores = mmlu::scores(&records);
        let metrics = mmlu::role_metrics(&records);
        eprintln!(
            "lmcache-e2e: [{name}] {role}: accuracy {:.4} over {} questions, {} failed requests",
            metrics["accuracy"].value, metrics["questions"].value, metrics["failed_requests"].value
        );
        let files = [
            (
                mmlu::legacy_name(p.variant, role.as_str(), &model),
                mmlu::legacy_jsonl(&scores),
            ),
            (
                format!("{role}_questions.jsonl"),
                mmlu::records_jsonl(&records),
            ),
        ];
        for (file, body) in files {
            out.files
                .push(mmlu::write_file(&dir, &file, body.as_bytes()).map_err(wl)?);
        }
        out.metrics.insert(role, metrics);
        record(results, name, out).map_err(|e| e.to_string())?;
        per_role.insert(role, records);
    }

    let (b, l) = (&per_role[&Role::Baseline], &per_role[&Role::Lmcache]);
    let comparison = mmlu::compare::compare(&mmlu::scores(b), &mmlu::scores(l));
    let changed = mmlu::changed(b, l);
    if let Some(m) = out.metrics.get_mut(&Role::Lmcache) {
        m.extend(mmlu::comparison_metrics(&comparison, Some(changed.len())));
    }
    let show = |c: Option<char>| c.map_or("no answer".to_string(), String::from);
    for c in changed.iter().take(NOTE_LIMIT) {
        out.notes.push(format!(
            "changed answer: {} question {} (correct {}): baseline {}, LMCache {}",
            c.subject,
            c.index,
            c.label,
            show(c.baseline),
            show(c.lmcache)
        ));
    }
    if changed.len() > NOTE_LIMIT {
        out.notes.push(format!(
            "… and {} more changed answers in mmlu/changed_answers.jsonl",
            changed.len() - NOTE_LIMIT
        ));
    }
    if let Some(worst) = &comparison.worst_subject {
        out.notes.push(format!(
            "largest subject drop: {worst} ({:.4})",
            comparison.max_subject_drop
        ));
    }
    for note in &out.notes {
        eprintln!("lmcache-e2e: [{name}] {note}");
    }
    let changed_jsonl: String = changed
        .iter()
        .map(|c| serde_json::to_string(c).expect("serializes") + "\n")
        .collect();
    for (file, body) in [
        (
            "correctness-summary.txt".to_string(),
            mmlu::compare::summary_text(&comparison),
        ),
        (
            "comparison.json".to_string(),
            serde_json::to_string_pretty(&comparison).expect("serializes"),
        ),
        ("changed_answers.jsonl".to_string(), changed_jsonl),
    ] {
        out.files
            .push(mmlu::write_file(&dir, &file, body.as_bytes()).map_err(wl)?);
    }
    Ok(())
}

fn summarize_fewshot(used: &IndexMap<String, usize>) -> String {
    let mut counts: Vec<usize> = used.values().copied().collect();
    counts.sort_unstable();
    counts.dedup();
    counts
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(" or ")
}
