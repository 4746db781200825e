//! What a test kind tells the suite loader about itself, so the loader
//! names no kind: how its parameters are typed, checked and shown, which
//! metrics its checks may bound, which engines it needs, whether it runs
//! paired trials, how often it retries by default, which of the reference
//! scripts' environment variables set it, and what it needs on the machine.
//! The kinds themselves live in `workload/`, one module each, and reach the
//! loader as a table (`LoadRequest::kinds`).

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;

use schemars::SchemaGenerator;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ConfigError;
use super::metric_spec::MetricSpec;
use super::origin::{typed_at, Source};
use super::params::Invalid;
use super::suite::Suite;
use super::wants::Wants;
use crate::results::Role;

/// How an environment variable's text becomes a suite value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvType {
    Str,
    /// A one-element list of strings.
    List,
    Int,
    Float,
}

/// One of the reference scripts' environment variables that sets a key of
/// a test of this kind (`DOCUMENT_LENGTH` → `tests.NAME.document_length`).
/// A `checks.NAME.…` key applies only where the test has that check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EnvVar {
    pub var: &'static str,
    pub key: &'static str,
    pub ty: EnvType,
}

/// A kind of test, as the suite loader sees it. Implemented once per kind,
/// beside its workload.
pub(crate) trait TestKind: Sync + 'static {
    /// `kind = "…"` in a suite.
    fn name(&self) -> &'static str;

    /// The test's parameters, typed from its table (`typed::<P>` does it,
    /// with errors naming the key and the layer it came from).
    fn parse(&self, table: &Typing<'_>) -> Result<Box<dyn KindParams>, ConfigError>;

    /// The JSON Schema of its parameters (`g.subschema_for::<P>()`).
    fn schema(&self, g: &mut SchemaGenerator) -> serde_json::Value;

    /// The metrics it records that its checks may bound, engine counters
    /// aside: each with its unit, its better side, whether a bound holds in
    /// every trial, and its own method where it has one.
    fn metrics(&self) -> &'static [MetricSpec];

    /// The checks a suite starts from (name, then the check's TOML body):
    /// what a test without checks is told to add, and what `recommend`
    /// writes.
    fn starter_checks(&self) -> &'static [(&'static str, &'static str)];

    /// The engine roles it cannot do without.
    fn roles(&self) -> &'static [Role] {
        &[Role::Baseline, Role::Lmcache]
    }

    /// Whether it runs paired trials (each from fresh inputs, pooled), so
    /// `trials`, `max_trials` and `on_inconclusive = "more-trials"` apply.
    fn pairs_trials(&self) -> bool {
        false
    }

    /// Whether a trial can serve both engines at once (`run.pairing =
    /// "together"`); kinds that cannot run them one after the other.
    fn serves_together(&self) -> bool {
        false
    }

    /// Runs while only retryable checks fail, when the suite says none.
    fn default_attempts(&self) -> u32 {
        1
    }

    /// The reference scripts' environment variables that set its keys.
    fn env(&self) -> &'static [EnvVar] {
        &[]
    }

    /// Whether it judges what the engines answer (a correctness test): a
    /// dummy-weights engine or one that is not batch invariant then makes
    /// it blind or noisy, and its failure taints the run's speed figures.
    fn judges_outputs(&self) -> bool {
        false
    }
}

impl fmt::Debug for dyn TestKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A test's parameters, typed by its kind.
pub(crate) trait KindParams: fmt::Debug + Send + Sync + AsParams {
    /// Values that parse but make no test (a zero count), with the key.
    fn validate(&self) -> Result<(), Invalid>;

    /// What the rest of the suite must hold for it (fault tolerance: the
    /// service it stops exists).
    fn validate_in(&self, _suite: &Suite) -> Result<(), Invalid> {
        Ok(())
    }

    /// Programs and files it needs here.
    fn wants(&self) -> Vec<Wants> {
        Vec::new()
    }

    /// Roughly how many tokens one trial sends through one engine: the
    /// weight shards are balanced on when no earlier run says how long.
    fn tokens_per_trial(&self) -> f64;

    /// `ci --sequential`: one request at a time, where the kind has a knob.
    fn set_sequential(&mut self) {}
}

/// What every parameter type can do without writing it out: clone itself,
/// show itself as TOML, and be read back as its own type by its kind.
pub(crate) trait AsParams {
    fn clone_box(&self) -> Box<dyn KindParams>;
    fn to_toml(&self) -> Option<toml::Value>;
    fn as_any(&self) -> &dyn Any;
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: KindParams + Clone + Serialize + 'static> AsParams for T {
    fn clone_box(&self) -> Box<dyn KindParams> {
        Box::new(self.clone())
    }

    fn to_toml(&self) -> Option<toml::Value> {
        toml::Value::try_from(self).ok()
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A test's kind and its typed parameters.
pub(crate) struct TestParams {
    kind: &'static dyn TestKind,
    params: Box<dyn KindParams>,
}

impl TestParams {
    pub(crate) fn new(kind: &'static dyn TestKind, params: Box<dyn KindParams>) -> Self {
        Self { kind, params }
    }

    pub(crate) fn kind(&self) -> &'static dyn TestKind {
        self.kind
    }

    /// The parameters as their own type; `None` for another kind's.
    pub(crate) fn get<P: 'static>(&self) -> Option<&P> {
        self.params.as_any().downcast_ref()
    }

    pub(crate) fn get_mut<P: 'static>(&mut self) -> Option<&mut P> {
        self.params.as_any_mut().downcast_mut()
    }

    pub(crate) fn params(&self) -> &dyn KindParams {
        self.params.as_ref()
    }

    pub(crate) fn params_mut(&mut self) -> &mut dyn KindParams {
        self.params.as_mut()
    }
}

impl Clone for TestParams {
    fn clone(&self) -> Self {
        Self {
            kind: self.kind,
            params: self.params.clone_box(),
        }
    }
}

impl fmt::Debug for TestParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {:?}", self.kind.name(), self.params)
    }
}

/// A test's table on its way to typed parameters: the keys of the test
/// other than the ones every test has, and the origins to blame a bad one.
pub(crate) struct Typing<'a> {
    pub(super) table: toml::Value,
    pub(super) prefix: &'a str,
    pub(super) origins: &'a BTreeMap<String, Source>,
    pub(super) base: &'a Source,
}

impl Typing<'_> {
    /// The table as `P`, each unknown key or wrong type named with the
    /// layer it came from.
    pub(crate) fn typed<P>(&self) -> Result<Box<dyn KindParams>, ConfigError>
    where
        P: KindParams + DeserializeOwned + Clone + Serialize + 'static,
    {
        typed_at::<P>(self.table.clone(), self.prefix, self.origins, self.base)
            .map(|p| Box::new(p) as Box<dyn KindParams>)
    }
}

/// A kind of test for the loader's own tests: one count, two metrics, and
/// a file it wants, so they need no real kind.
#[cfg(test)]
pub(crate) mod toy {
    use serde::{Deserialize, Serialize};

    use super::{KindParams, TestKind, Typing, Wants};
    use crate::config::metrics::MetricSpec;
    use crate::config::{at_least_one, ConfigError, Invalid};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields, default)]
    pub(crate) struct ToyParams {
        pub questions: u32,
        pub data: Option<String>,
    }

    impl Default for ToyParams {
        fn default() -> Self {
            Self {
                questions: 4,
                data: None,
            }
        }
    }

    impl KindParams for ToyParams {
        fn validate(&self) -> Result<(), Invalid> {
            at_least_one(&[("questions", u64::from(self.questions))])
        }

        fn wants(&self) -> Vec<Wants> {
            self.data
                .iter()
                .map(|d| Wants::File {
                    key: "data",
                    path: d.clone(),
                    fix: "give the toy's data",
                })
                .collect()
        }

        fn tokens_per_trial(&self) -> f64 {
            f64::from(self.questions) * 10.0
        }
    }

    pub(crate) struct Toy;

    impl TestKind for Toy {
        fn name(&self) -> &'static str {
            "toy"
        }

        fn parse(&self, table: &Typing<'_>) -> Result<Box<dyn KindParams>, ConfigError> {
            table.typed::<ToyParams>()
        }

        fn schema(&self, g: &mut schemars::SchemaGenerator) -> serde_json::Value {
            g.subschema_for::<ToyParams>().to_value()
        }

        fn metrics(&self) -> &'static [MetricSpec] {
            const SPECS: &[MetricSpec] = &[
                MetricSpec::new("answers", "answers"),
                MetricSpec::new("wrong_answers", "answers").smaller(),
            ];
            SPECS
        }

        fn starter_checks(&self) -> &'static [(&'static str, &'static str)] {
            &[("wrong_answers", "metric = \"wrong_answers\"\nmax = 0")]
        }
    }

    /// The table the loader's tests load with.
    pub(crate) const KINDS: &[&dyn TestKind] = &[&Toy];

    mod tests {
        use super::*;
        use crate::config::{load, LoadRequest, Loaded};

        fn load_toy(test: &str) -> Result<Loaded, ConfigError> {
            load_tests(&format!(
                "[tests.t]\nkind = \"toy\"\nrecord_only = true\n{test}"
            ))
        }

        /// A suite of two sims and `tests`.
        fn load_tests(tests: &str) -> Result<Loaded, ConfigError> {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("suite.toml");
            std::fs::write(
                &path,
                format!(
                    "[engines.base]\nrole = \"baseline\"\nkind = \"sim\"\n\
                     [engines.lm]\nrole = \"lmcache\"\nkind = \"sim\"\n{tests}"
                ),
            )
            .unwrap();
            load(&LoadRequest {
                preset: None,
                file: Some(&path),
                overlays: &[],
                sets: &[],
                env: &|_| None,
                kinds: KINDS,
            })
        }

        #[test]
        fn a_test_without_checks_is_refused_with_its_kinds_starters() {
            let err = load_tests(
                "[tests.t]\nkind = \"toy\"\n[tests.off]\nkind = \"toy\"\nenabled = false\n",
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("`tests.t.checks`"), "{err}");
            assert!(err.contains("nothing it measures could fail it"), "{err}");
            assert!(
                err.contains("[tests.t.checks.wrong_answers]\n      metric = \"wrong_answers\"\n      max = 0"),
                "{err}"
            );
            assert!(err.contains("record_only = true"), "{err}");
            assert!(
                !err.contains("tests.off"),
                "a disabled test is not judged: {err}"
            );
        }

        /// The loader knows no kind: what it does for one, it does through
        /// the kind's own declaration.
        #[test]
        fn a_kind_the_loader_never_heard_of_is_typed_checked_and_shown() {
            let loaded = load_toy("questions = 7\n").unwrap();
            let p = loaded.params["t"].get::<ToyParams>().unwrap();
            assert_eq!(p.questions, 7);
            assert!(loaded
                .show()
                .iter()
                .any(|(k, v, _)| k == "tests.t.questions" && v == "7"));

            let err = load_toy("questions = 0\n").unwrap_err().to_string();
            assert!(
                err.contains("`tests.t.questions`") && err.contains("at least 1"),
                "{err}"
            );
            let err = load_toy("questoins = 3\n").unwrap_err().to_string();
            assert!(err.contains("did you mean `questions`?"), "{err}");
            let err = load_toy("[tests.t.checks.c]\nmetric = \"answer\"\nmin = 1\n")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("toy tests record no metric `answer`; did you mean `answers`?"),
                "{err}"
            );
            let err = load_toy("trials = 2\n").unwrap_err().to_string();
            assert!(err.contains("toy tests run no paired trials"), "{err}");
            let missing = load_toy("data = \"/nonexistent/toy.csv\"\n").unwrap();
            let needs = missing.needs(&["t".to_string()]);
            assert!(
                needs
                    .iter()
                    .any(|n| n.key == "tests.t.data" && n.found.is_none()),
                "the toy's file is a need"
            );
        }
    }
}
