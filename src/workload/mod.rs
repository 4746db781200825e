//! Workloads: one module per kind behind the [`Workload`] trait. They reach
//! engines only through `client` and a base URL, so they run the same
//! against servers this tool did not start.

mod api;
pub(crate) mod determinism;
pub(crate) mod fault_tolerance;
pub(crate) mod lm_eval;
pub(crate) mod long_doc_qa;
pub(crate) mod mmlu;
mod progress;
pub(crate) mod request_rate;
mod shared;
pub(crate) mod throughput;
pub(crate) mod vllm_bench;

use crate::config::{TestKind, TestParams};

pub(crate) use api::{
    Ctx, ErrorClass, Harness, Merged, Output, PartError, ShardPart, Target, Workload,
    WorkloadError, WorkloadKind,
};
pub(crate) use progress::{Progress, Snapshot};

/// The registry: every kind of test, once. A new kind is its module (its
/// parameters, its facts, its workload) and one line here.
static KINDS: &[&dyn WorkloadKind] = &[
    &long_doc_qa::Kind,
    &mmlu::Kind,
    &throughput::Kind,
    &determinism::Kind,
    &lm_eval::Kind,
    &request_rate::Kind,
    &fault_tolerance::Kind,
];

/// Every kind, as the suite loader takes them.
pub(crate) fn test_kinds() -> Vec<&'static dyn TestKind> {
    KINDS.iter().map(|k| *k as &dyn TestKind).collect()
}

/// The kind named `name`.
pub(crate) fn kind(name: &str) -> Option<&'static dyn WorkloadKind> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// The kind of a loaded test: the suite was loaded with this table.
pub(crate) fn kind_of(params: &TestParams) -> &'static dyn WorkloadKind {
    kind(params.kind().name()).expect("a suite is loaded with the registry's kinds")
}

/// A fresh workload for attempt `attempt` (from 1) of a test.
pub(crate) fn for_test(params: &TestParams, attempt: u32) -> Box<dyn Workload> {
    kind_of(params).start(params, attempt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, LoadRequest, Role};

    fn load_file(
        path: &std::path::Path,
    ) -> Result<crate::config::Loaded, crate::config::ConfigError> {
        load(&LoadRequest {
            preset: None,
            file: Some(path),
            overlays: &[],
            sets: &[],
            env: &|_| None,
            kinds: &test_kinds(),
        })
    }

    /// A suite of two sim engines (and a service) with one test of `kind`
    /// and nothing else: the kind's defaults, and its starter checks (so a
    /// starter that names no metric of its kind fails to load).
    fn suite_of(kind: &str) -> String {
        let checks: String = super::kind(kind)
            .map(|k| k.starter_checks())
            .unwrap_or(&[("any", "metric = \"requests\"\nmax = 0")])
            .iter()
            .map(|(name, body)| format!("[tests.t.checks.{name}]\n{body}\n"))
            .collect();
        format!(
            "[engines.base]\nrole = \"baseline\"\nkind = \"sim\"\n\
             [engines.lm]\nrole = \"lmcache\"\nkind = \"sim\"\n\
             [engines.server]\nrole = \"service\"\nkind = \"process\"\ncommand = \"sleep\"\nargs = [\"60\"]\n\
             [tests.t]\nkind = \"{kind}\"\n{checks}"
        )
    }

    #[test]
    fn every_kind_in_the_table_loads_its_defaults_and_starts() {
        let mut names: Vec<&str> = KINDS.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KINDS.len(), "a kind name is taken twice");
        let dir = tempfile::tempdir().unwrap();
        for k in KINDS {
            let path = dir.path().join(format!("{}.toml", k.name()));
            std::fs::write(&path, suite_of(k.name())).unwrap();
            let loaded = load_file(&path).unwrap_or_else(|e| panic!("kind {}: {e}", k.name()));
            let params = &loaded.params["t"];
            assert_eq!(params.kind().name(), k.name());
            assert_eq!(kind_of(params).name(), k.name());
            assert!(
                !k.metrics().is_empty() && !k.starter_checks().is_empty(),
                "kind {} gates on nothing",
                k.name()
            );
            assert_eq!(
                loaded.suite.tests["t"].checks.len(),
                k.starter_checks().len()
            );
            assert!(
                params.params().tokens_per_trial() > 0.0,
                "kind {} costs nothing to a shard plan",
                k.name()
            );
            assert!(
                k.roles().contains(&Role::Lmcache),
                "kind {} never runs LMCache",
                k.name()
            );
            // Starting reads the parameters as the kind's own type: a row
            // whose `start` expects another kind's parameters panics here.
            let _started = for_test(params, 1);
        }
    }

    /// Counts where neither way is better: how much was measured.
    const NEUTRAL: &[&str] = &[
        "requests",
        "questions",
        "paired_questions",
        "samples",
        "compared_prompts",
        "stopped_mid_run",
        "completed",
        "total_input_tokens",
        "total_output_tokens",
        "achieved_prompt_tokens",
    ];

    /// Exports and reports read each metric's direction from its kind: one
    /// left undeclared would drop out of github-action-benchmark's files;
    /// a name declared twice would make its spec a coin toss.
    #[test]
    fn every_kind_says_which_way_is_better_for_each_metric_but_counts() {
        for k in KINDS {
            let mut seen = std::collections::BTreeSet::new();
            for m in k.metrics() {
                assert!(seen.insert(m.name), "kind {}: `{}` twice", k.name(), m.name);
                assert!(
                    m.better.is_some() ^ NEUTRAL.contains(&m.name),
                    "kind {}: `{}` needs a direction, or is a count",
                    k.name(),
                    m.name
                );
            }
        }
    }

    #[test]
    fn a_kind_not_in_the_table_is_refused_naming_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("suite.toml");
        std::fs::write(&path, suite_of("long_doc_q")).unwrap();
        let err = load_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("tests.t.kind")
                && err.contains("did you mean `long_doc_qa`?")
                && err.contains("fault_tolerance"),
            "{err}"
        );
    }
}
