//! The trial and retry policy: from a test's gated attempts so far, what
//! comes next (conclude, retry, add a trial) and which trials that runs.
//! Pure, with no engine and no clock, so a table of histories tests it.

use indexmap::IndexMap;

use crate::config::{CheckConfig, TestConfig};
use crate::gate;
use crate::results::{AttemptRecord, Verdict};

/// What a test needs after the gate's look at it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    Conclude,
    Retry,
    MoreTrials(u32),
}

/// Where a test stands against what its suite allows.
#[derive(Debug, Clone, Copy)]
pub(super) struct Standing {
    /// Trials run so far (of this attempt, or pooled over attempts).
    pub trials_run: u32,
    /// Trials a test may grow to (`max_trials`).
    pub max_trials: u32,
    /// Attempts a test may make.
    pub max_attempts: u32,
    /// Whether its trials pool (paired trials, each from fresh inputs).
    pub pooled: bool,
}

/// The trials a step runs, `first..=last`, and whether they begin a fresh
/// attempt (its trials counted from 1 again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Trials {
    pub first: u32,
    pub last: u32,
    pub fresh_attempt: bool,
}

/// What the gate's latest look asks for: a retry (every failing check is
/// retryable and attempts are left), one more trial (a check that asks
/// for them is inconclusive and the pooled test may grow), or nothing.
pub(super) fn next_step(
    checks: &IndexMap<String, CheckConfig>,
    history: &[AttemptRecord],
    s: Standing,
) -> Next {
    if gate::retry(checks, history, s.max_attempts) {
        return Next::Retry;
    }
    let Some(last) = history.last() else {
        return Next::Conclude;
    };
    let undecided = last
        .checks
        .iter()
        .any(|c| c.verdict == Verdict::Inconclusive && c.on_inconclusive.wants_more_trials());
    let room = s.max_trials.saturating_sub(s.trials_run);
    if s.pooled && undecided && room > 0 {
        // One at a time: `calibrate` found it as sure as two at a time
        // and cheaper; the order keeps alternating by trial number.
        Next::MoreTrials(room.min(1))
    } else {
        Next::Conclude
    }
}

/// The trials `next` runs, `per_attempt` of them for a retry: pooled
/// trials continue the count (a retry adds fresh trials to the pool), an
/// unpooled retry starts its own. None when the test concludes.
pub(super) fn trials_for(next: Next, s: Standing, per_attempt: u32) -> Option<Trials> {
    let count = match next {
        Next::Conclude => return None,
        Next::MoreTrials(k) => k,
        Next::Retry => per_attempt,
    };
    let first = if s.pooled { s.trials_run + 1 } else { 1 };
    Some(Trials {
        first,
        last: first + count - 1,
        fresh_attempt: next == Next::Retry && !s.pooled,
    })
}

/// How often a test looks at its evidence: after its first trials and
/// each one added, where a check may add trials and the engines stay up
/// for them; else once.
pub(super) fn looks_of(cfg: &TestConfig, can_add: bool) -> gate::evidence::Looks {
    let wants = cfg
        .checks
        .values()
        .any(|c| c.enabled && c.on_inconclusive.wants_more_trials());
    match can_add && wants {
        true => gate::evidence::Looks {
            first: cfg.trials() as usize,
            last: cfg.max_trials() as usize,
        },
        false => gate::evidence::Looks::ONE,
    }
}

/// What the report says of a test that looked after each trial.
pub(super) fn trials_used(used: u32, most: u32) -> String {
    match used < most {
        true => format!("trials: {used} of at most {most}, stopped when decided (a look after each trial at Pocock's group-sequential level, so the looks together keep the 5 % false-alarm rate)"),
        false => format!("trials: all {most} allowed (a look after each trial at Pocock's group-sequential level)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{CheckOutcome, OnInconclusive, TestStatus};

    fn outcome(verdict: Verdict, on_inconclusive: OnInconclusive) -> CheckOutcome {
        CheckOutcome {
            on_inconclusive,
            ..CheckOutcome::bare("ttft", "query_ttft_per_prompt", 0.0, verdict)
        }
    }

    fn history(verdicts: &[(Verdict, OnInconclusive)]) -> Vec<AttemptRecord> {
        verdicts
            .iter()
            .enumerate()
            .map(|(i, (v, on))| AttemptRecord {
                attempt: i as u32 + 1,
                status: TestStatus::Passed,
                metrics: IndexMap::new(),
                checks: vec![outcome(*v, *on)],
            })
            .collect()
    }

    fn checks(retryable: bool) -> IndexMap<String, CheckConfig> {
        IndexMap::from([(
            "ttft".to_string(),
            CheckConfig {
                max_change_pct: Some(0.0),
                retryable,
                ..CheckConfig::on("query_ttft_per_prompt")
            },
        )])
    }

    fn standing(trials_run: u32, max_trials: u32, max_attempts: u32, pooled: bool) -> Standing {
        Standing {
            trials_run,
            max_trials,
            max_attempts,
            pooled,
        }
    }

    #[test]
    fn each_history_gets_its_next_step() {
        use OnInconclusive::{MoreTrials, Warn};
        use Verdict::{Fail, Inconclusive, Pass};
        // Why, whether the check is retryable, the attempts' verdicts, the
        // standing, and the step wanted.
        type Row<'a> = (
            &'a str,
            bool,
            &'a [(Verdict, OnInconclusive)],
            Standing,
            Next,
        );
        // A table reads best a row to a line.
        #[rustfmt::skip]
        let rows: &[Row] = &[
            ("nothing gated yet", true, &[], standing(0, 9, 3, true), Next::Conclude),
            ("a pass", true, &[(Pass, Warn)], standing(3, 9, 3, true), Next::Conclude),
            ("a retryable failure, attempts left", true, &[(Fail, Warn)], standing(3, 9, 3, true), Next::Retry),
            ("a retryable failure on the last attempt", true, &[(Fail, Warn), (Fail, Warn), (Fail, Warn)], standing(9, 9, 3, true), Next::Conclude),
            ("a failure not retryable", false, &[(Fail, Warn)], standing(3, 9, 3, true), Next::Conclude),
            ("undecided, asks for trials, room", false, &[(Inconclusive, MoreTrials)], standing(3, 9, 1, true), Next::MoreTrials(1)),
            ("undecided, asks for trials, none left", false, &[(Inconclusive, MoreTrials)], standing(9, 9, 1, true), Next::Conclude),
            ("undecided, only warns", false, &[(Inconclusive, Warn)], standing(3, 9, 1, true), Next::Conclude),
            ("undecided, trials that do not pool", false, &[(Inconclusive, MoreTrials)], standing(1, 9, 1, false), Next::Conclude),
            ("a retry comes before more trials", true, &[(Fail, MoreTrials)], standing(3, 9, 3, true), Next::Retry),
        ];
        for (why, retryable, past, s, want) in rows {
            let got = next_step(&checks(*retryable), &history(past), *s);
            assert_eq!(got, *want, "{why}");
        }
    }

    #[test]
    fn each_step_runs_its_trials() {
        let rows = [
            ("concluded", Next::Conclude, standing(3, 9, 3, true), None),
            (
                "one more pooled trial",
                Next::MoreTrials(1),
                standing(3, 9, 1, true),
                Some(Trials {
                    first: 4,
                    last: 4,
                    fresh_attempt: false,
                }),
            ),
            (
                "a pooled retry adds an attempt's trials to the pool",
                Next::Retry,
                standing(3, 9, 3, true),
                Some(Trials {
                    first: 4,
                    last: 6,
                    fresh_attempt: false,
                }),
            ),
            (
                "an unpooled retry starts over",
                Next::Retry,
                standing(1, 1, 3, false),
                Some(Trials {
                    first: 1,
                    last: 3,
                    fresh_attempt: true,
                }),
            ),
        ];
        for (why, next, s, want) in rows {
            assert_eq!(trials_for(next, s, 3), want, "{why}");
        }
    }

    #[test]
    fn a_test_looks_after_each_trial_only_where_it_may_add_them() {
        let mut cfg = TestConfig {
            kind: "long_doc_qa".into(),
            enabled: true,
            checks: checks(false),
            max_attempts: None,
            trials: Some(3),
            max_trials: Some(9),
            allow_failed_requests: false,
            record_only: false,
            params: toml::Table::new(),
        };
        assert_eq!(
            looks_of(&cfg, true),
            gate::evidence::Looks::ONE,
            "no check asks"
        );
        cfg.checks["ttft"].on_inconclusive = OnInconclusive::MoreTrials;
        assert_eq!(
            looks_of(&cfg, false),
            gate::evidence::Looks::ONE,
            "engines not up together"
        );
        let looks = looks_of(&cfg, true);
        assert_eq!((looks.first, looks.last), (3, 9));
        assert!(trials_used(4, 9).starts_with("trials: 4 of at most 9"));
        assert!(trials_used(9, 9).starts_with("trials: all 9 allowed"));
    }
}
