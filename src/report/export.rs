//! Exports for the dashboards teams already run, one function per format:
//! Bencher Metric Format (`bencher run --file`) and github-action-benchmark's
//! custom JSON (`customSmallerIsBetter` / `customBiggerIsBetter`). Every
//! finite metric of every engine, and every check's value, with its
//! interval where it has one.

use serde_json::{json, Map, Value};

pub(crate) use crate::results::Better;
use crate::results::{CheckOutcome, Interval, Op, RunResults};

/// One number to export: where it belongs, what it is, its evidence.
struct Row<'a> {
    test: &'a str,
    /// The engine role, or `checks`.
    group: &'a str,
    name: &'a str,
    unit: &'a str,
    value: f64,
    interval: Option<Interval>,
    n: Option<u64>,
    better: Option<Better>,
}

fn rows(results: &RunResults) -> Vec<Row<'_>> {
    let mut out = Vec::new();
    for t in &results.tests {
        for (role, metrics) in &t.metrics {
            for (name, m) in metrics.iter().filter(|(_, m)| m.value.is_finite()) {
                out.push(Row {
                    test: &t.name,
                    group: role.as_str(),
                    name,
                    unit: &m.unit,
                    value: m.value,
                    interval: m.interval,
                    n: m.n,
                    better: m.better,
                });
            }
        }
        for c in &t.checks {
            let Some(value) = c.value.filter(|v| v.is_finite()) else {
                continue;
            };
            out.push(Row {
                test: &t.name,
                group: "checks",
                name: &c.name,
                unit: &c.unit,
                value,
                interval: c.interval,
                n: c.n,
                better: Some(check_better(c)),
            });
        }
    }
    out
}

/// A check bounds its value from the bad side: `<=` wants it small.
fn check_better(c: &CheckOutcome) -> Better {
    if c.op == Op::AtMost {
        Better::Smaller
    } else {
        Better::Bigger
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
pub(crate) fn bencher(results: &RunResults) -> Value {
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

/// github-action-benchmark's custom format: `[{name, unit, value, range,
/// extra}]`, only the numbers whose better side is `which`.
pub(crate) fn github_benchmark(results: &RunResults, which: Better) -> Value {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::samples;

    #[test]
    fn a_metric_goes_where_its_declared_direction_says_and_none_is_left_out() {
        let r = samples::gate_failure();
        let names = |b: Better| -> Vec<String> {
            github_benchmark(&r, b)
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect()
        };
        let (smaller, bigger) = (names(Better::Smaller), names(Better::Bigger));
        let has = |v: &[String], metric: &str| v.iter().any(|n| n.contains(metric));
        assert!(has(&smaller, "query_ttft_per_prompt"), "{smaller:?}");
        assert!(!has(&bigger, "query_ttft_per_prompt"), "{bigger:?}");
        // The sample declares no direction for `requests`-like counts.
        let all = [smaller, bigger].concat();
        assert!(!has(&all, "questions"), "{all:?}");
    }

    #[test]
    fn bencher_has_one_benchmark_per_test_and_engine_with_intervals() {
        let r = samples::gate_failure();
        let v = bencher(&r);
        let obj = v.as_object().unwrap();
        assert!(!obj.is_empty());
        for (bench, measures) in obj {
            assert!(bench.starts_with(&format!("{}/", r.suite)), "{bench}");
            for (slug, m) in measures.as_object().unwrap() {
                assert!(slug.len() <= 64 && !slug.contains('_'), "{slug}");
                assert!(m["value"].is_number());
                assert_eq!(
                    m.get("lower_value").is_some(),
                    m.get("upper_value").is_some()
                );
            }
        }
        assert!(obj.keys().any(|k| k.ends_with("/checks")));
    }

    #[test]
    fn github_benchmark_splits_by_direction() {
        let r = samples::gate_failure();
        let smaller = github_benchmark(&r, Better::Smaller);
        let bigger = github_benchmark(&r, Better::Bigger);
        let names = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect()
        };
        let (s, b) = (names(&smaller), names(&bigger));
        assert!(!s.is_empty() && !b.is_empty());
        assert!(s.iter().all(|n| !b.contains(n)));
    }
}
