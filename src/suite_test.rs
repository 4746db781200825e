//! Running one test of a suite in phases: its workload against one engine
//! at a time (baseline first, then LMCache), then what comparing the two
//! adds. Results are recorded after each engine, so an interrupted run keeps
//! what was measured; phases let engines run one after the other.

use std::path::Path;
use std::time::Duration;

use indexmap::IndexMap;

use crate::client::OpenAiClient;
use crate::config::{Role, TestParams};
use crate::engine::EngineSpec;
use crate::error::Error;
use crate::report::results::{Chart, DetailTable, Metric, RunResults};
use crate::workload::determinism::{self, Outputs, PromptCase};
use crate::workload::{lm_eval, long_doc_qa, mmlu, request_rate, throughput, WorkloadError};

/// Mismatches listed in the notes; the rest are in the files.
const NOTE_LIMIT: usize = 20;
/// Changed MMLU answers listed in the report's table; all are in the file.
const TABLE_LIMIT: usize = 200;

pub(crate) struct Ctx<'a> {
    pub specs: &'a [EngineSpec],
    pub model: &'a str,
    pub timeout: Duration,
    pub suite_dir: &'a Path,
}

/// One test's state across phases.
pub(crate) struct TestRun<'p> {
    /// The name results record it under (`mmlu`, or `mmlu@Model` when a
    /// suite runs several models).
    name: String,
    /// Outputs go to this subdirectory of the results directory, if any.
    subdir: Option<String>,
    params: &'p TestParams,
    pub metrics: IndexMap<Role, IndexMap<String, Metric>>,
    files: Vec<String>,
    notes: Vec<String>,
    tables: Vec<DetailTable>,
    charts: Vec<Chart>,
    /// Why the test could not finish; later phases skip it.
    pub error: Option<String>,
    mmlu_plan: Option<(mmlu::Plan, String)>,
    mmlu_records: IndexMap<Role, Vec<mmlu::Record>>,
    det_cases: Vec<PromptCase>,
    /// Determinism outputs per pass: `baseline`, `store`, `load`.
    det_outputs: IndexMap<&'static str, Outputs>,
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

impl<'p> TestRun<'p> {
    pub(crate) fn new(name: &str, params: &'p TestParams, subdir: Option<&str>) -> Self {
        Self {
            name: name.to_string(),
            subdir: subdir.map(String::from),
            params,
            metrics: IndexMap::new(),
            files: Vec::new(),
            notes: Vec::new(),
            tables: Vec::new(),
            charts: Vec::new(),
            error: None,
            mmlu_plan: None,
            mmlu_records: IndexMap::new(),
            det_cases: Vec::new(),
            det_outputs: IndexMap::new(),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Where this test writes, and the prefix of its files relative to the
    /// results directory.
    fn out_dir(&self, results: &RunResults) -> std::path::PathBuf {
        match &self.subdir {
            Some(s) => results.results_dir.join(s),
            None => results.results_dir.clone(),
        }
    }

    fn keep(&mut self, role: Role, metrics: IndexMap<String, Metric>, files: Vec<String>) {
        self.metrics.insert(role, metrics);
        for f in files {
            self.add_file(f);
        }
    }

    fn add_file(&mut self, rel: String) {
        self.files.push(match &self.subdir {
            Some(s) => format!("{s}/{rel}"),
            None => rel,
        });
    }

    fn record(&self, results: &mut RunResults) -> Result<(), Error> {
        if let Some(t) = results.test_mut(&self.name) {
            t.metrics = self.metrics.clone();
            t.files = self.files.clone();
            t.notes = self.notes.clone();
            t.tables = self.tables.clone();
            t.charts = self.charts.clone();
            t.error = self.error.clone();
        }
        Ok(results.write()?)
    }

    /// Runs the workload against the engine of `role`.
    pub(crate) async fn run_role(
        &mut self,
        ctx: &Ctx<'_>,
        role: Role,
        phase: &[Role],
        results: &mut RunResults,
    ) -> Result<(), Error> {
        if self.error.is_some() {
            return Ok(());
        }
        let dir = self.out_dir(results);
        let step = match self.params {
            TestParams::LongDocQa(p) => self.long_doc_qa(ctx, p, role, &dir).await,
            TestParams::Mmlu(p) => self.mmlu_role(ctx, p, role, &dir).await,
            TestParams::Throughput(p) => self.throughput(ctx, p, role, &dir).await,
            TestParams::Determinism(p) => self.determinism_role(ctx, p, role).await,
            TestParams::LmEval(p) => self.lm_eval(ctx, p, role, &dir).await,
            TestParams::RequestRate(p) => self.request_rate(ctx, p, role, phase, &dir).await,
        };
        self.error = step.err();
        self.record(results)
    }

    async fn long_doc_qa(
        &mut self,
        ctx: &Ctx<'_>,
        p: &crate::config::LongDocQaParams,
        role: Role,
        dir: &Path,
    ) -> Result<(), String> {
        let name = &self.name;
        let (spec, client) = client_for(ctx, name, role)?;
        eprintln!(
            "lmcache-e2e: [{name}] running against {role} (`{}`)",
            spec.name
        );
        let r = long_doc_qa::run(&client, ctx.model, p, dir, role.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let m = |k: &str| r.metrics.get(k).map_or(f64::NAN, |m| m.value);
        eprintln!(
            "lmcache-e2e: [{name}] {role}: query TTFT {:.3} s, query round {:.3} s/prompt, warmup round {:.3} s/prompt, {} failed requests",
            m("query_ttft_per_prompt"),
            m("query_round_time_per_prompt"),
            m("warmup_round_time_per_prompt"),
            m("failed_requests")
        );
        self.keep(role, r.metrics, r.files);
        Ok(())
    }

    async fn throughput(
        &mut self,
        ctx: &Ctx<'_>,
        p: &throughput::ThroughputParams,
        role: Role,
        dir: &Path,
    ) -> Result<(), String> {
        let name = &self.name;
        let (spec, client) = client_for(ctx, name, role)?;
        eprintln!(
            "lmcache-e2e: [{name}] {} prompts of {} tokens against {role} (`{}`)",
            p.num_prompts, p.input_len, spec.name
        );
        let r = match p.driver {
            throughput::Driver::Native => {
                throughput::run(&client, ctx.model, p, dir, role.as_str())
                    .await
                    .map_err(|e| e.to_string())?
            }
            throughput::Driver::VllmBench => {
                let model = client
                    .resolve_model(ctx.model)
                    .await
                    .map_err(|e| e.to_string())?;
                let metrics = crate::workload::vllm_bench::run(
                    &p.vllm_command,
                    p,
                    &spec.url,
                    &model,
                    dir,
                    role.as_str(),
                )
                .await
                .map_err(|e| e.to_string())?;
                throughput::ThroughputOutput {
                    metrics,
                    files: vec![
                        format!("vllm_bench/{role}.json"),
                        format!("vllm_bench/{role}.log"),
                    ],
                }
            }
        };
        let m = |k: &str| r.metrics.get(k).map_or(f64::NAN, |m| m.value);
        eprintln!(
            "lmcache-e2e: [{name}] {role}: {}/{} completed, {:.0} tok/s total, mean TTFT {:.1} ms, {:.2} s",
            m("completed"),
            p.num_prompts,
            m("total_token_throughput"),
            m("mean_ttft_ms"),
            m("duration")
        );
        self.keep(role, r.metrics, r.files);
        Ok(())
    }

    /// Against the LMCache engine only: the first run stores, the second
    /// loads, and their samples must be identical.
    async fn lm_eval(
        &mut self,
        ctx: &Ctx<'_>,
        p: &lm_eval::LmEvalParams,
        role: Role,
        dir: &Path,
    ) -> Result<(), String> {
        if role != Role::Lmcache {
            return Ok(());
        }
        let name = self.name.clone();
        let (spec, client) = client_for(ctx, &name, role)?;
        let model = client
            .resolve_model(ctx.model)
            .await
            .map_err(|e| e.to_string())?;
        let mut samples = Vec::new();
        for run in ["first_run", "second_run"] {
            eprintln!(
                "lmcache-e2e: [{name}] lm_eval {} ({run}) against `{}`",
                p.task, spec.name
            );
            let file = lm_eval::run_once(p, &model, &spec.url, dir, run)
                .await
                .map_err(|e| e.to_string())?;
            self.add_file(
                file.strip_prefix(dir)
                    .unwrap_or(&file)
                    .display()
                    .to_string(),
            );
            samples.push(file);
        }
        let diff = lm_eval::sorted_diff(&samples[0], &samples[1]).map_err(|e| e.to_string())?;
        let lines = |p: &Path| {
            std::fs::read_to_string(p)
                .map(|t| t.lines().count())
                .unwrap_or(0)
        };
        let mut m = IndexMap::new();
        m.insert(
            "differing_sample_lines".to_string(),
            Metric::new(diff.len() as f64, "lines"),
        );
        m.insert(
            "samples".to_string(),
            Metric::new(lines(&samples[0]) as f64, "lines"),
        );
        self.metrics.insert(role, m);
        if !diff.is_empty() {
            let shown: Vec<String> = diff
                .iter()
                .take(50)
                .map(|l| l.chars().take(400).collect())
                .collect();
            for l in shown.iter().take(5) {
                self.notes.push(format!(
                    "differs: {}",
                    l.chars().take(200).collect::<String>()
                ));
            }
            self.notes.push(format!(
                "{} differing sample lines; the first 50 are in lm_eval/diff.txt",
                diff.len()
            ));
            let path = dir.join("lm_eval/diff.txt");
            crate::report::results::write_atomic(&path, (shown.join("\n") + "\n").as_bytes())
                .map_err(|e| e.to_string())?;
            self.add_file("lm_eval/diff.txt".into());
            for note in &self.notes {
                eprintln!("lmcache-e2e: [{name}] {note}");
            }
        }
        Ok(())
    }

    /// Every engine up in this phase gets the same schedule at once, as
    /// lmcache-tests' experiments did; later roles of the phase find their
    /// rows already there.
    async fn request_rate(
        &mut self,
        ctx: &Ctx<'_>,
        p: &request_rate::RequestRateParams,
        role: Role,
        phase: &[Role],
        dir: &Path,
    ) -> Result<(), String> {
        if self.metrics.contains_key(&role) {
            return Ok(());
        }
        let name = self.name.clone();
        let mut engines = Vec::new();
        for r in phase {
            let (spec, client) = client_for(ctx, &name, *r)?;
            engines.push((spec.name.clone(), client));
        }
        let names: Vec<&str> = engines.iter().map(|(n, _)| n.as_str()).collect();
        eprintln!(
            "lmcache-e2e: [{name}] {} requests/s for {} s to {} at once",
            p.qps,
            p.duration_secs,
            names.join(", ")
        );
        let rows = request_rate::run(&engines, ctx.model, p)
            .await
            .map_err(|e| e.to_string())?;
        for r in phase {
            let spec_name = client_for(ctx, &name, *r)?.0.name.clone();
            let mine: Vec<&request_rate::Row> =
                rows.iter().filter(|row| row.engine == spec_name).collect();
            let m = request_rate::metrics(&mine);
            eprintln!(
                "lmcache-e2e: [{name}] {r}: mean TTFT {:.3} s, p99 {:.3} s, {} failed",
                m["mean_ttft"].value, m["p99_ttft"].value, m["failed_requests"].value
            );
            self.metrics.insert(*r, m);
        }
        let file_stem = name.replace('@', "-");
        let wl = |e: WorkloadError| e.to_string();
        let csv = request_rate::csv(&name, p, &rows);
        let mut written =
            vec![
                request_rate::write(dir, &format!("{file_stem}.csv"), csv.as_bytes())
                    .map_err(wl)?,
            ];
        let title = format!("{name}: TTFT over time ({} req/s)", p.qps);
        written.push(
            request_rate::write(
                dir,
                &format!("{file_stem}_ttft.svg"),
                request_rate::svg(&title, &rows).as_bytes(),
            )
            .map_err(wl)?,
        );
        for f in written {
            self.add_file(f);
        }
        Ok(())
    }

    async fn determinism_role(
        &mut self,
        ctx: &Ctx<'_>,
        p: &determinism::DeterminismParams,
        role: Role,
    ) -> Result<(), String> {
        if role == Role::Baseline && !p.compare_baseline {
            return Ok(());
        }
        let name = self.name.clone();
        if self.det_cases.is_empty() {
            self.det_cases =
                determinism::load_prompts(p, ctx.suite_dir).map_err(|e| e.to_string())?;
        }
        let (spec, client) = client_for(ctx, &name, role)?;
        let ask = |client: OpenAiClient| {
            let cases = self.det_cases.clone();
            async move {
                determinism::ask_all(&client, ctx.model, p, &cases)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        if role == Role::Baseline {
            eprintln!(
                "lmcache-e2e: [{name}] {} prompts to baseline (`{}`)",
                self.det_cases.len(),
                spec.name
            );
            let out = ask(client).await?;
            self.det_outputs.insert("baseline", out);
        } else {
            eprintln!(
                "lmcache-e2e: [{name}] {} prompts to LMCache (`{}`), store then load",
                self.det_cases.len(),
                spec.name
            );
            let store = ask(client.clone()).await?;
            determinism::pause(p).await;
            let load = ask(client).await?;
            self.det_outputs.insert("store", store);
            self.det_outputs.insert("load", load);
        }
        Ok(())
    }

    async fn mmlu_role(
        &mut self,
        ctx: &Ctx<'_>,
        p: &mmlu::MmluParams,
        role: Role,
        dir: &Path,
    ) -> Result<(), String> {
        let wl = |e: WorkloadError| e.to_string();
        let name = self.name.clone();
        let (spec, client) = client_for(ctx, &name, role)?;
        if self.mmlu_plan.is_none() {
            // Prompts are built once, with the first engine's tokenizer, and
            // sent unchanged to every engine.
            let model = client
                .resolve_model(ctx.model)
                .await
                .map_err(|e| e.to_string())?;
            let plan = mmlu::plan(p, dir, ctx.suite_dir, Some((&client, &model)))
                .await
                .map_err(wl)?;
            let mut counts: Vec<usize> = plan.fewshot_used.values().copied().collect();
            counts.sort_unstable();
            counts.dedup();
            eprintln!(
                "lmcache-e2e: [{name}] {} questions from {} subjects ({}), few-shot examples per subject: {}",
                plan.items.len(),
                plan.subjects.len(),
                plan.data_dir.display(),
                counts.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" or ")
            );
            self.mmlu_plan = Some((plan, model));
        }
        let (plan, model) = self.mmlu_plan.as_ref().expect("planned above");
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
        let records = mmlu::run(&client, model, p, plan, &spec.name, twice)
            .await
            .map_err(wl)?;
        let metrics = mmlu::role_metrics(&records);
        eprintln!(
            "lmcache-e2e: [{name}] {role}: accuracy {:.4} over {} questions, {} failed requests",
            metrics["accuracy"].value, metrics["questions"].value, metrics["failed_requests"].value
        );
        let files = [
            (
                mmlu::legacy_name(p.variant, role.as_str(), model),
                mmlu::legacy_jsonl(&mmlu::scores(&records)),
            ),
            (
                format!("{role}_questions.jsonl"),
                mmlu::records_jsonl(&records),
            ),
        ];
        for (file, body) in files {
            let rel = mmlu::write_file(dir, &file, body.as_bytes()).map_err(wl)?;
            self.add_file(rel);
        }
        self.metrics.insert(role, metrics);
        self.mmlu_records.insert(role, records);
        Ok(())
    }

    /// After every engine ran: what the comparison adds (MMLU's changed
    /// answers and subject drops).
    pub(crate) fn finish(&mut self, results: &mut RunResults) -> Result<(), Error> {
        if self.error.is_some() {
            return self.record(results);
        }
        let dir = self.out_dir(results);
        let finished = match self.params {
            TestParams::Mmlu(_) => self.mmlu_finish(&dir),
            TestParams::Determinism(_) => self.determinism_finish(&dir),
            TestParams::LongDocQa(_) => {
                self.long_doc_qa_chart();
                Ok(())
            }
            TestParams::Throughput(_) | TestParams::LmEval(_) | TestParams::RequestRate(_) => {
                Ok(())
            }
        };
        if let Err(e) = finished {
            self.error = Some(e);
        }
        self.record(results)
    }

    /// Mean TTFT per round, baseline against LMCache: the cache's effect at
    /// a glance (the query round should drop).
    fn long_doc_qa_chart(&mut self) {
        let rounds = [
            ("warmup", "warmup_ttft_mean"),
            ("query", "query_ttft_per_prompt"),
        ];
        let series: IndexMap<Role, Vec<f64>> = self
            .metrics
            .iter()
            .map(|(role, m)| {
                let values = rounds
                    .iter()
                    .map(|(_, k)| m.get(*k).map_or(f64::NAN, |m| m.value))
                    .collect();
                (*role, values)
            })
            .collect();
        if series.len() >= 2 {
            self.charts.push(Chart {
                title: "Mean TTFT per round".into(),
                x: rounds.iter().map(|(r, _)| r.to_string()).collect(),
                y_label: "TTFT".into(),
                y_unit: "s".into(),
                series,
            });
        }
    }

    fn determinism_finish(&mut self, dir: &Path) -> Result<(), String> {
        let (Some(store), Some(load)) =
            (self.det_outputs.get("store"), self.det_outputs.get("load"))
        else {
            return Err(format!("test `{}` needs an LMCache engine", self.name));
        };
        let mut pairs: Vec<(&str, &Outputs, &Outputs)> =
            vec![("LMCache store vs load", store, load)];
        if let Some(b) = self.det_outputs.get("baseline") {
            pairs.push(("baseline vs LMCache", b, load));
        }
        let mismatches = determinism::compare(&self.det_cases, &pairs);
        let mut metrics = determinism::metrics(&self.det_cases, &mismatches);
        metrics.insert(
            "failed_requests".into(),
            Metric::new(
                self.det_outputs
                    .values()
                    .flat_map(|o| o.values())
                    .filter(|v| v.is_none())
                    .count() as f64,
                "requests",
            ),
        );
        self.metrics
            .entry(Role::Lmcache)
            .or_default()
            .extend(metrics);
        for m in mismatches.iter().take(NOTE_LIMIT) {
            self.notes.push(format!(
                "differs: id `{}` ({}): {}",
                m.id, m.between, m.detail
            ));
        }
        if mismatches.len() > NOTE_LIMIT {
            self.notes.push(format!(
                "… and {} more in determinism/mismatches.jsonl",
                mismatches.len() - NOTE_LIMIT
            ));
        }
        for note in &self.notes {
            eprintln!("lmcache-e2e: [{}] {note}", self.name);
        }
        let outputs: String = self
            .det_cases
            .iter()
            .map(|c| {
                let get = |pass: &str| self.det_outputs.get(pass).and_then(|o| o.get(&c.id)).cloned().flatten();
                serde_json::json!({"id": c.id, "baseline": get("baseline"), "store": get("store"), "load": get("load")}).to_string() + "\n"
            })
            .collect();
        let listed: String = mismatches
            .iter()
            .map(|m| serde_json::to_string(m).expect("serializes") + "\n")
            .collect();
        for (file, body) in [("outputs.jsonl", outputs), ("mismatches.jsonl", listed)] {
            let sub = dir.join("determinism");
            std::fs::create_dir_all(&sub)
                .map_err(|e| format!("failed to create {}: {e}", sub.display()))?;
            crate::report::results::write_atomic(&sub.join(file), body.as_bytes())
                .map_err(|e| e.to_string())?;
            self.add_file(format!("determinism/{file}"));
        }
        Ok(())
    }

    fn mmlu_finish(&mut self, dir: &Path) -> Result<(), String> {
        let (Some(b), Some(l)) = (
            self.mmlu_records.get(&Role::Baseline),
            self.mmlu_records.get(&Role::Lmcache),
        ) else {
            return Err(format!(
                "test `{}` needs answers from both a baseline and an LMCache engine",
                self.name
            ));
        };
        let comparison = mmlu::compare::compare(&mmlu::scores(b), &mmlu::scores(l));
        let changed = mmlu::changed(b, l);
        if let Some(m) = self.metrics.get_mut(&Role::Lmcache) {
            m.extend(mmlu::comparison_metrics(&comparison, Some(changed.len())));
        }
        let show = |c: Option<char>| c.map_or("no answer".to_string(), String::from);
        for c in changed.iter().take(NOTE_LIMIT) {
            eprintln!(
                "lmcache-e2e: [{}] changed answer: {} question {} (correct {}): baseline {}, LMCache {}",
                self.name,
                c.subject,
                c.index,
                c.label,
                show(c.baseline),
                show(c.lmcache)
            );
        }
        if !changed.is_empty() {
            self.notes.push(format!(
                "changed answers: {} questions answered differently by LMCache (all in mmlu/changed_answers.jsonl)",
                changed.len()
            ));
        }
        let mut rows: Vec<&mmlu::compare::SubjectRow> = comparison.rows.iter().collect();
        // Worst drop first: the subject to look at.
        rows.sort_by(|a, b| a.difference.total_cmp(&b.difference));
        self.tables.push(DetailTable {
            title: "MMLU accuracy per subject".into(),
            columns: ["Subject", "Questions", "Baseline", "LMCache", "Change"]
                .map(String::from)
                .to_vec(),
            rows: rows
                .iter()
                .map(|r| {
                    vec![
                        r.subject.clone(),
                        r.num_questions.to_string(),
                        format!("{:.4}", r.baseline),
                        format!("{:.4}", r.lmcache),
                        format!("{:+.4}", r.difference),
                    ]
                })
                .collect(),
            omitted_rows: 0,
        });
        if !changed.is_empty() {
            self.tables.push(DetailTable {
                title: format!("Changed answers ({})", changed.len()),
                columns: ["Subject", "Question", "Correct", "Baseline", "LMCache"]
                    .map(String::from)
                    .to_vec(),
                rows: changed
                    .iter()
                    .take(TABLE_LIMIT)
                    .map(|c| {
                        vec![
                            c.subject.clone(),
                            c.index.to_string(),
                            c.label.to_string(),
                            show(c.baseline),
                            show(c.lmcache),
                        ]
                    })
                    .collect(),
                omitted_rows: changed.len().saturating_sub(TABLE_LIMIT),
            });
        }
        if let Some(worst) = &comparison.worst_subject {
            self.notes.push(format!(
                "largest subject drop: {worst} ({:.4})",
                comparison.max_subject_drop
            ));
        }
        for note in &self.notes {
            eprintln!("lmcache-e2e: [{}] {note}", self.name);
        }
        let changed_jsonl: String = changed
            .iter()
            .map(|c| serde_json::to_string(c).expect("serializes") + "\n")
            .collect();
        for (file, body) in [
            (
                "correctness-summary.txt",
                mmlu::compare::summary_text(&comparison),
            ),
            (
                "comparison.json",
                serde_json::to_string_pretty(&comparison).expect("serializes"),
            ),
            ("changed_answers.jsonl", changed_jsonl),
        ] {
            let rel = mmlu::write_file(dir, file, body.as_bytes()).map_err(|e| e.to_string())?;
            self.add_file(rel);
        }
        Ok(())
    }
}
