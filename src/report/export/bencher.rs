//! Bencher Metric Format (`bencher run --file`).

use serde_json::{json, Map, Value};

use super::api::Exporter;
use super::rows::rows;
use crate::results::RunResults;

pub(crate) struct Bencher;

impl Exporter for Bencher {
    fn name(&self) -> &'static str {
        "bencher"
    }

    fn export(&self, results: &RunResults) -> Value {
        bencher(results)
    }
}

/// A Bencher measure slug: kebab case, at most 64 characters.
fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.trim_matches('-').chars().take(64).collect()
}

/// Bencher Metric Format: `{benchmark: {measure: {value, lower_value,
/// upper_value}}}`, one benchmark per test and engine (or its checks).
fn bencher(results: &RunResults) -> Value {
    let mut out = Map::new();
    for r in rows(results) {
        let benchmark = format!("{}/{}/{}", results.suite, r.test, r.group);
        let mut metric = Map::new();
        metric.insert("value".into(), json!(r.value));
        if let Some(i) = r
            .interval
            .filter(|i| i.low.is_finite() && i.high.is_finite())
        {
            metric.insert("lower_value".into(), json!(i.low));
            metric.insert("upper_value".into(), json!(i.high));
        }
        out.entry(benchmark)
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .expect("benchmarks are objects")
            .insert(slug(r.name), Value::Object(metric));
    }
    Value::Object(out)
}
