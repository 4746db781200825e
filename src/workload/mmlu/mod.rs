//! MMLU correctness: the same questions to baseline and LMCache (each prompt
//! twice on LMCache, store then load), scored with the reference's parser,
//! compared per subject and per question.

mod ask;
pub(crate) mod compare;
pub(crate) mod data;
mod measure;
mod merge;
mod params;
pub(crate) mod prompt;
mod records;
pub(crate) mod scores;

use std::path::Path;

use indexmap::IndexMap;

use futures_util::future::BoxFuture;

use super::api::{
    own, Ctx, Merged, Output, PartError, ShardPart, Workload, WorkloadError, WorkloadKind,
};
use crate::config::metrics::MetricSpec;
use crate::config::{ConfigError, KindParams, TestKind, TestParams, Typing};
use crate::results::method::Method;
use crate::results::Role;
use schemars::SchemaGenerator;

use ask::{locate_data, Answered};
pub(crate) use ask::{plan, run, subject_sizes};
use measure::{answer, summarize, NOTE_LIMIT};
pub(crate) use measure::{comparison_metrics, role_metrics, scores};
use merge::merge_parts;
pub(crate) use params::{question_tokens, MmluParams};
pub(crate) use records::{legacy_jsonl, legacy_name, records_jsonl, write_file, Plan, Record};

impl WorkloadKind for Kind {
    fn prepare(
        &self,
        params: &TestParams,
        results_dir: &Path,
        suite_dir: &Path,
    ) -> Result<(), WorkloadError> {
        locate_data(own::<MmluParams>(params), results_dir, suite_dir)?;
        Ok(())
    }

    fn start(&self, params: &TestParams, _attempt: u32) -> Box<dyn Workload> {
        Box::new(Mmlu::new(own::<MmluParams>(params).clone()))
    }

    /// Its subjects, each costing its questions.
    fn parts(
        &self,
        params: &TestParams,
        results_dir: &Path,
        suite_dir: &Path,
    ) -> Result<Vec<(String, f64)>, WorkloadError> {
        let p = own::<MmluParams>(params);
        let per_question = question_tokens(p);
        Ok(subject_sizes(p, results_dir, suite_dir)?
            .into_iter()
            .map(|(s, n)| (s, n as f64 * per_question))
            .collect())
    }

    fn only(&self, params: &TestParams, parts: &[String]) -> TestParams {
        let mut part = params.clone();
        if let Some(p) = part.get_mut::<MmluParams>() {
            p.subjects = parts.to_vec();
        }
        part
    }

    fn merge(
        &self,
        parts: &[ShardPart<'_>],
        order: &[String],
    ) -> Option<Result<Merged, PartError>> {
        Some(merge_parts(parts, order))
    }
}

/// The kind `mmlu`.
pub(crate) struct Kind;

impl TestKind for Kind {
    fn name(&self) -> &'static str {
        "mmlu"
    }

    fn parse(&self, table: &Typing<'_>) -> Result<Box<dyn KindParams>, ConfigError> {
        table.typed::<MmluParams>()
    }

    fn schema(&self, g: &mut SchemaGenerator) -> serde_json::Value {
        g.subschema_for::<MmluParams>().to_value()
    }

    fn metrics(&self) -> &'static [MetricSpec] {
        use MetricSpec as M;
        const SPECS: &[MetricSpec] = &[
            M::new("accuracy", "").bigger(),
            M::new("accuracy_unweighted", "").bigger(),
            M::new("questions", "questions"),
            M::new("failed_requests", "requests").smaller(),
            M::new("paired_questions", "questions"),
            M::new("right_to_wrong", "questions").smaller(),
            M::new("wrong_to_right", "questions").smaller(),
            M::new("accuracy_drop", "").smaller().by(Method::McNemar),
            M::new("accuracy_drop_unweighted", "").smaller(),
            M::new("max_subject_drop", "").smaller(),
            M::new("max_subject_change", "").smaller(),
            M::new("changed_answers", "questions").smaller(),
            M::new("load_pass_external_pct", "%").bigger().every_trial(),
        ];
        SPECS
    }

    fn starter_checks(&self) -> &'static [(&'static str, &'static str)] {
        &[
            ("accuracy_drop", "metric = \"accuracy_drop\"\nmax = 0.01"),
            ("changed_answers", "metric = \"changed_answers\"\nmax = 0"),
        ]
    }

    fn judges_outputs(&self) -> bool {
        true
    }
}

/// The MMLU test: prompts built once (with the first engine's tokenizer)
/// and sent unchanged to every engine, then compared per question.
pub(crate) struct Mmlu {
    params: MmluParams,
    plan: Option<(Plan, String)>,
    records: IndexMap<Role, Vec<Record>>,
}

impl Mmlu {
    pub(crate) fn new(params: MmluParams) -> Self {
        Self {
            params,
            plan: None,
            records: IndexMap::new(),
        }
    }
}

impl Workload for Mmlu {
    fn plan<'a>(
        &'a mut self,
        ctx: &'a Ctx<'a>,
        first: Role,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        Box::pin(async move {
            let (_, client) = ctx.engine(first)?;
            let model = super::shared::resolve_model(&client, ctx.model).await?;
            let plan = plan(
                &self.params,
                ctx.out_dir,
                ctx.suite_dir,
                Some((&client, &model)),
            )
            .await?;
            let mut counts: Vec<usize> = plan.fewshot_used.values().copied().collect();
            counts.sort_unstable();
            counts.dedup();
            (ctx.say)(format!(
                "{} questions from {} subjects ({}), few-shot examples per subject: {}",
                plan.items.len(),
                plan.subjects.len(),
                plan.data_dir.display(),
                counts
                    .iter()
                    .map(|c| c.to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ));
            self.plan = Some((plan, model));
            Ok(())
        })
    }

    fn run<'a>(
        &'a mut self,
        ctx: &'a Ctx<'a>,
        role: Role,
        _phase: &'a [Role],
        out: &'a mut Output,
    ) -> BoxFuture<'a, Result<(), WorkloadError>> {
        Box::pin(async move {
            let p = &self.params;
            let (target, client) = ctx.engine(role)?;
            let (plan, model) = self.plan.as_ref().expect("planned before the first engine");
            // The baseline's scored answer reuses a prefix where LMCache's
            // does (its load pass, after resets): like with like.
            let twice = p.store_then_load
                && (role == Role::Lmcache || (p.reset_prefix_cache && p.baseline_reuses_prefix));
            // Only LMCache's GPU cache is emptied: the baseline's second ask
            // must find its prefix there.
            let mut asked = p.clone();
            asked.reset_prefix_cache &= role == Role::Lmcache;
            (ctx.say)(format!(
                "asking {role} (`{}`){}",
                target.name,
                if twice {
                    ", each prompt twice (store, then load)"
                } else {
                    ""
                }
            ));
            let Answered {
                records,
                load_share,
            } = run(
                &client,
                model,
                &asked,
                plan,
                &target.name,
                twice,
                ctx.progress,
            )
            .await?;
            let mut metrics = role_metrics(&records);
            metrics.extend(load_share);
            (ctx.say)(format!(
                "{role}: accuracy {:.4} over {} questions, {} failed requests",
                metrics["accuracy"].value,
                metrics["questions"].value,
                metrics["failed_requests"].value
            ));
            let files = [
                (
                    legacy_name(p.variant, role.as_str(), model),
                    legacy_jsonl(&scores(&records)),
                ),
                (format!("{role}_questions.jsonl"), records_jsonl(&records)),
            ];
            for (file, body) in files {
                out.files
                    .push(write_file(ctx.out_dir, &file, body.as_bytes())?);
            }
            out.metrics.insert(role, metrics);
            self.records.insert(role, records);
            Ok(())
        })
    }

    fn finish(&mut self, ctx: &Ctx<'_>, out: &mut Output) -> Result<(), WorkloadError> {
        let (Some(b), Some(l)) = (
            self.records.get(&Role::Baseline),
            self.records.get(&Role::Lmcache),
        ) else {
            return Err(WorkloadError::NeedsEngine {
                test: ctx.test.to_string(),
                what: "both a baseline and an LMCache engine".into(),
            });
        };
        let summary = summarize(b, l);
        for c in summary.changed.iter().take(NOTE_LIMIT) {
            (ctx.say)(format!(
                "changed answer: {} question {} (correct {}): baseline {}, LMCache {}",
                c.subject,
                c.index,
                c.label,
                answer(c.baseline),
                answer(c.lmcache)
            ));
        }
        if let Some(m) = out.metrics.get_mut(&Role::Lmcache) {
            m.extend(summary.metrics);
        }
        out.notes.extend(summary.notes);
        out.tables.extend(summary.tables);
        for (file, body) in summary.files {
            out.files
                .push(write_file(ctx.out_dir, &file, body.as_bytes())?);
        }
        Ok(())
    }
}
