//! Retries as a pure function over attempts: whether another attempt could
//! change the verdict, and what the attempts together conclude (a pass
//! after a failure is flaky, and says what failed before).

use indexmap::IndexMap;

use super::check::{mark_flaky, test_status, wants_retry};
use crate::config::CheckConfig;
use crate::results::{AttemptRecord, CheckOutcome, TestStatus, Verdict};

/// What a test's attempts conclude.
#[derive(Debug, Clone)]
pub(crate) struct Concluded {
    pub checks: Vec<CheckOutcome>,
    pub status: TestStatus,
    /// What failed on earlier attempts, one line each.
    pub notes: Vec<String>,
    /// Every attempt when there were several; empty after one.
    pub attempts: Vec<AttemptRecord>,
}

/// Another attempt is wanted when it is allowed (`max`), possible (the
/// engines are still up) and every failing check of the last is retryable.
pub(crate) fn retry(
    checks: &IndexMap<String, CheckConfig>,
    history: &[AttemptRecord],
    max: u32,
) -> bool {
    history
        .last()
        .is_some_and(|a| a.attempt < max && wants_retry(checks, &a.checks))
}

pub(crate) fn conclude(history: Vec<AttemptRecord>, max: u32) -> Concluded {
    let Some((last, earlier)) = history.split_last() else {
        return Concluded {
            checks: Vec::new(),
            status: TestStatus::Passed,
            notes: Vec::new(),
            attempts: Vec::new(),
        };
    };
    let earlier_checks: Vec<Vec<CheckOutcome>> = earlier.iter().map(|a| a.checks.clone()).collect();
    let checks = mark_flaky(&earlier_checks, last.checks.clone());
    let status = test_status(&checks);
    let mut notes = Vec::new();
    for a in earlier {
        for c in a.checks.iter().filter(|c| c.verdict == Verdict::Fail) {
            let value = c
                .value
                .map_or("no value".to_string(), |v| format!("{v:.2} {}", c.unit));
            notes.push(format!(
                "attempt {} of {max}: {} failed ({value}, threshold {} {} {})",
                a.attempt, c.name, c.op, c.threshold, c.unit
            ));
        }
    }
    let attempts = if history.len() > 1 {
        history
    } else {
        Vec::new()
    };
    Concluded {
        checks,
        status,
        notes,
        attempts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Metric, Op, Role};

    fn outcome(verdict: Verdict, value: f64) -> CheckOutcome {
        CheckOutcome {
            op: Op::AtLeast,
            change_pct: Some(value),
            value: Some(value),
            ..CheckOutcome::bare("tput", "total_token_throughput", -5.0, verdict)
        }
    }

    fn attempt(n: u32, verdict: Verdict, value: f64) -> AttemptRecord {
        AttemptRecord {
            attempt: n,
            status: if verdict == Verdict::Fail {
                TestStatus::Failed
            } else {
                TestStatus::Passed
            },
            metrics: IndexMap::from([(
                Role::Lmcache,
                IndexMap::from([("x".to_string(), Metric::new(value, "%"))]),
            )]),
            checks: vec![outcome(verdict, value)],
        }
    }

    fn retryable() -> IndexMap<String, CheckConfig> {
        IndexMap::from([(
            "tput".to_string(),
            CheckConfig {
                min_change_pct: Some(-5.0),
                retryable: true,
                ..CheckConfig::on("total_token_throughput")
            },
        )])
    }

    #[test]
    fn a_pass_after_a_failure_is_flaky_and_names_what_failed_before() {
        let history = vec![
            attempt(1, Verdict::Fail, -9.0),
            attempt(2, Verdict::Pass, -1.0),
        ];
        assert!(!retry(&retryable(), &history, 3), "the last attempt passed");
        let c = conclude(history, 3);
        assert_eq!(c.status, TestStatus::Flaky);
        assert_eq!(c.checks[0].verdict, Verdict::Flaky);
        assert_eq!(c.attempts.len(), 2, "every attempt is kept");
        assert!(
            c.notes[0].starts_with("attempt 1 of 3: tput failed (-9.00 %"),
            "{:?}",
            c.notes
        );
    }

    #[test]
    fn retries_stop_at_the_limit_and_one_attempt_keeps_no_history() {
        let history = vec![attempt(1, Verdict::Fail, -9.0)];
        assert!(retry(&retryable(), &history, 3));
        assert!(!retry(&retryable(), &history, 1), "max_attempts = 1");
        let c = conclude(history, 1);
        assert_eq!(c.status, TestStatus::Failed);
        assert!(c.attempts.is_empty() && c.notes.is_empty());
    }
}
