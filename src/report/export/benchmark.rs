//! github-action-benchmark's custom JSON (`customSmallerIsBetter` /
//! `customBiggerIsBetter`): one format per side.

use serde_json::{json, Map, Value};

use super::api::Exporter;
use super::rows::rows;
use crate::results::{Better, RunResults};

/// The numbers whose better side is the smaller one.
pub(crate) struct Smaller;

/// The numbers whose better side is the bigger one.
pub(crate) struct Bigger;

impl Exporter for Smaller {
    fn name(&self) -> &'static str {
        "benchmark-smaller"
    }

    fn export(&self, results: &RunResults) -> Value {
        github_benchmark(results, Better::Smaller)
    }
}

impl Exporter for Bigger {
    fn name(&self) -> &'static str {
        "benchmark-bigger"
    }

    fn export(&self, results: &RunResults) -> Value {
        github_benchmark(results, Better::Bigger)
    }
}

/// github-action-benchmark's custom format: `[{name, unit, value, range,
/// extra}]`, only the numbers whose better side is `which`.
fn github_benchmark(results: &RunResults, which: Better) -> Value {
    let entries: Vec<Value> = rows(results)
        .into_iter()
        .filter(|r| r.better == Some(which))
        .map(|r| {
            let mut e = Map::new();
            e.insert(
                "name".into(),
                json!(format!("{} {} {}", r.test, r.group, r.name)),
            );
            e.insert(
                "unit".into(),
                json!(if r.unit.is_empty() { "1" } else { r.unit }),
            );
            e.insert("value".into(), json!(r.value));
            if let Some(i) = r.interval {
                e.insert(
                    "range".into(),
                    json!(format!("± {:.4}", (i.high - i.low) / 2.0)),
                );
            }
            let mut extra = vec![format!("suite {}", results.suite)];
            if let Some(i) = r.interval {
                extra.push(format!(
                    "{:.0} % interval [{:.4}, {:.4}]",
                    i.level * 100.0,
                    i.low,
                    i.high
                ));
            }
            if let Some(n) = r.n {
                extra.push(format!("n = {n}"));
            }
            if let Some(c) = &results.meta.commit {
                extra.push(format!("commit {c}"));
            }
            e.insert("extra".into(), json!(extra.join("\n")));
            Value::Object(e)
        })
        .collect();
    Value::Array(entries)
}
