//! The numbers every export format writes: each finite metric of every
//! engine, and every check's value, with its interval and which side of
//! it is better.

use crate::results::{Better, CheckOutcome, Interval, Op, RunResults};

/// One number to export: where it belongs, what it is, its evidence.
pub(crate) struct Row<'a> {
    pub test: &'a str,
    /// The engine role, or `checks`.
    pub group: &'a str,
    pub name: &'a str,
    pub unit: &'a str,
    pub value: f64,
    pub interval: Option<Interval>,
    pub n: Option<u64>,
    pub better: Option<Better>,
}

pub(crate) fn rows(results: &RunResults) -> Vec<Row<'_>> {
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
