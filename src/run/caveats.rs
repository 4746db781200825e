//! When a verdict means less than it says: a correctness test on engines
//! that cannot show a fault (dummy weights) or that differ without one
//! (vLLM not batch invariant), and a speed figure measured on an engine
//! whose outputs a correctness test of the same run found wrong.

use crate::config::{EngineConfig, EngineKind, Suite};
use crate::results::{Role, TestRecord, TestStatus};

/// Whether tests of `kind` judge what the engines answer.
fn judges_outputs(kind: &str) -> bool {
    crate::workload::test_kinds()
        .iter()
        .any(|k| k.name() == kind && k.judges_outputs())
}

/// Every argument the engine is launched with (a container's too).
fn args_of(e: &EngineConfig) -> Vec<&str> {
    e.args.iter().map(String::as_str).collect()
}

fn dummy_weights(e: &EngineConfig) -> bool {
    if e.sim.as_ref().is_some_and(|s| s.dummy_weights) {
        return true;
    }
    let args = args_of(e);
    args.windows(2)
        .any(|w| w[0] == "--load-format" && w[1] == "dummy")
        || args.contains(&"--load-format=dummy")
}

/// A vLLM engine (its program, image or arguments say so).
fn is_vllm(e: &EngineConfig) -> bool {
    let image = e.container.as_ref().map(|c| c.image.as_str());
    e.kind != EngineKind::Sim
        && e.command
            .as_deref()
            .into_iter()
            .chain(image)
            .chain(e.args.first().map(String::as_str))
            .any(|s| s.contains("vllm"))
}

fn batch_invariant(e: &EngineConfig) -> bool {
    e.env
        .get("VLLM_BATCH_INVARIANT")
        .is_some_and(|v| v.trim() == "1")
}

/// The caveats of every correctness test, from the engines it compares.
pub(crate) fn of_suite(suite: &Suite) -> Vec<String> {
    let compared: Vec<(&String, &EngineConfig)> = suite
        .engines
        .iter()
        .filter(|(_, e)| matches!(e.role, Role::Baseline | Role::Lmcache))
        .collect();
    let named = |pick: &dyn Fn(&EngineConfig) -> bool| -> Vec<String> {
        compared
            .iter()
            .filter(|(_, e)| pick(e))
            .map(|(n, _)| format!("`{n}`"))
            .collect()
    };
    let mut out = Vec::new();
    let dummy = named(&dummy_weights);
    if !dummy.is_empty() {
        out.push(format!(
            "cannot fail: {} run{} dummy weights (`--load-format dummy`), so every continuation is the same token run and no answer can change, corrupted KV or not; run real weights for a correctness verdict",
            dummy.join(" and "),
            if dummy.len() == 1 { "s" } else { "" }
        ));
    }
    let variant = named(&|e| is_vllm(e) && !batch_invariant(e));
    if !variant.is_empty() {
        out.push(format!(
            "may differ without a fault: {} {} not batch invariant (set VLLM_BATCH_INVARIANT=1, with --enforce-eager and --attention-backend FLASH_ATTN), so batching alone can change a greedy output",
            variant.join(" and "),
            if variant.len() == 1 { "is" } else { "are" }
        ));
    }
    out
}

/// Whether the test behind a record (`test` or `test@model`) measures
/// without checks.
fn records_only(suite: &Suite, record: &str) -> bool {
    let name = record.split_once('@').map_or(record, |(test, _)| test);
    suite
        .tests
        .get(name)
        .is_some_and(|t| t.record_only && t.checks.is_empty())
}

/// Adds the suite's caveats to its correctness tests (a passed one is then
/// a warning), and to every other test when a correctness test failed.
pub(crate) fn apply(suite: &Suite, tests: &mut [TestRecord]) {
    let said = of_suite(suite);
    let wrong: Vec<String> = tests
        .iter()
        .filter(|t| judges_outputs(&t.kind) && t.status == TestStatus::Failed)
        .map(|t| format!("`{}`", t.name))
        .collect();
    for t in tests.iter_mut() {
        let mut caveats: Vec<String> = if judges_outputs(&t.kind) {
            said.clone()
        } else if !wrong.is_empty() {
            vec![format!(
                "measured on wrong outputs: {} failed in this run, so these figures come from an engine whose answers were wrong",
                wrong.join(", ")
            )]
        } else {
            Vec::new()
        };
        if records_only(suite, &t.name) {
            caveats.push(
                "records only: the test has no checks (record_only = true), so nothing it measured was judged".into(),
            );
        }
        if caveats.is_empty() || t.status == TestStatus::NotRun {
            continue;
        }
        if t.status == TestStatus::Passed {
            t.status = TestStatus::Warning;
        }
        for c in caveats {
            if !t.caveats.contains(&c) {
                t.caveats.push(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn suite(extra: &str) -> Suite {
        toml::from_str(&format!(
            "[engines.base]\nrole = 'baseline'\nkind = 'process'\ncommand = 'vllm'\n{extra}\n[engines.lm]\nrole = 'lmcache'\nkind = 'process'\ncommand = 'vllm'\nargs = ['serve', 'm']\nenv = {{ VLLM_BATCH_INVARIANT = '1' }}\n"
        ))
        .unwrap()
    }

    #[test]
    fn dummy_weights_and_batch_variance_are_named() {
        let s = suite("args = ['serve', 'm', '--load-format', 'dummy']");
        let c = of_suite(&s);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(
            c[0].starts_with("cannot fail: `base` runs dummy weights"),
            "{}",
            c[0]
        );
        assert!(
            c[1].starts_with("may differ without a fault: `base` is not batch invariant"),
            "{}",
            c[1]
        );
        let s = suite(
            "args = ['serve', 'm', '--load-format=dummy']\nenv = { VLLM_BATCH_INVARIANT = '1' }",
        );
        assert_eq!(of_suite(&s).len(), 1);
        let s = suite("env = { VLLM_BATCH_INVARIANT = '1' }");
        assert!(of_suite(&s).is_empty());
    }

    #[test]
    fn a_failed_correctness_test_taints_the_speed_figures() {
        let s = suite("env = { VLLM_BATCH_INVARIANT = '1' }");
        let det = TestRecord::new("determinism", "determinism", TestStatus::Failed);
        let speed = TestRecord::new("long_doc_qa", "long_doc_qa", TestStatus::Passed);
        let mut tests = vec![det, speed];
        apply(&s, &mut tests);
        assert_eq!(tests[1].status, TestStatus::Warning);
        assert!(
            tests[1].caveats[0].starts_with("measured on wrong outputs: `determinism` failed"),
            "{:?}",
            tests[1].caveats
        );
        assert!(tests[0].caveats.is_empty());
    }

    #[test]
    fn a_test_without_checks_is_never_a_plain_pass() {
        let mut s = suite("env = { VLLM_BATCH_INVARIANT = '1' }");
        s.tests.insert(
            "rate".into(),
            toml::from_str("kind = 'request_rate'\nrecord_only = true").unwrap(),
        );
        let mut tests = vec![TestRecord::new(
            "rate@m",
            "request_rate",
            TestStatus::Passed,
        )];
        apply(&s, &mut tests);
        assert_eq!(tests[0].status, TestStatus::Warning);
        assert!(
            tests[0].caveats[0].starts_with("records only"),
            "{:?}",
            tests[0].caveats
        );
    }
}
