//! Splitting a suite over N CI jobs: its work units (each test of each
//! model, and an MMLU test subject by subject) spread deterministically over
//! the shards, balanced on a cost estimate by longest-processing-time-first
//! (Graham 1969: within 4/3 of the best split). Pure: the same units give
//! every shard the same plan, so each can find its part and a merge can
//! tell what is missing.

use std::str::FromStr;

use indexmap::IndexMap;

use std::path::Path;

use super::models::{models_of, record_name};
use crate::config::{Loaded, TestParams};
use crate::results::{PlannedUnit, ShardMark};
use crate::workload::{self, WorkloadError};

/// Shard `index` of `count`, 1-based as people say it (`--shard 2/4`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shard {
    pub index: u32,
    pub count: u32,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is no shard: write K/N with 1 <= K <= N, e.g. 2/4");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (
            k.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Self { index, count })
    }
}

impl Shard {
    /// Buildkite's `parallelism`: `BUILDKITE_PARALLEL_JOB` counts from 0.
    pub(crate) fn from_buildkite(
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Result<Self, String>> {
        let job = env("BUILDKITE_PARALLEL_JOB").filter(|v| !v.is_empty())?;
        let count = env("BUILDKITE_PARALLEL_JOB_COUNT").unwrap_or_default();
        let parsed = job
            .trim()
            .parse::<u32>()
            .ok()
            .map(|j| format!("{}/{}", j + 1, count.trim()));
        Some(
            parsed
                .ok_or(())
                .and_then(|s| s.parse().map_err(|_| ()))
                .map_err(|()| {
                    format!(
                    "BUILDKITE_PARALLEL_JOB={job} and BUILDKITE_PARALLEL_JOB_COUNT={count} name no shard"
                )
                }),
        )
    }
}

/// A test of one model as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unit {
    /// The name results record it under (`mmlu`, `mmlu@Model`).
    pub record: String,
    pub cost: f64,
    /// For a test that splits (MMLU), its subjects and their costs, in the
    /// order the unsharded test runs them; empty for a whole test.
    pub subjects: Vec<(String, f64)>,
}

/// Every shard's units: `plan[i]` for shard `i + 1`. Each unit (or subject)
/// goes to one shard: the costliest first, each to the least loaded
/// (the lowest index on a tie), so the split depends only on the units.
pub(crate) fn plan(units: &[Unit], count: u32) -> Vec<Vec<PlannedUnit>> {
    let count = count.max(1) as usize;
    // (cost, unit, subject)
    let mut items: Vec<(f64, usize, Option<usize>)> = Vec::new();
    for (u, unit) in units.iter().enumerate() {
        if unit.subjects.is_empty() {
            items.push((unit.cost, u, None));
        } else {
            items.extend(
                unit.subjects
                    .iter()
                    .enumerate()
                    .map(|(s, (_, c))| (*c, u, Some(s))),
            );
        }
    }
    items.sort_by(|a, b| b.0.total_cmp(&a.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    let mut load = vec![0.0f64; count];
    let mut placed: Vec<IndexMap<usize, Vec<usize>>> = vec![IndexMap::new(); count];
    for (cost, u, s) in items {
        let shard = (0..count)
            .min_by(|&a, &b| load[a].total_cmp(&load[b]).then(a.cmp(&b)))
            .expect("at least one shard");
        load[shard] += cost;
        let subjects = placed[shard].entry(u).or_default();
        subjects.extend(s);
    }
    placed
        .into_iter()
        .map(|mut by_unit| {
            by_unit.sort_keys();
            by_unit
                .into_iter()
                .map(|(u, mut subjects)| {
                    subjects.sort_unstable();
                    let unit = &units[u];
                    let cost = if subjects.is_empty() {
                        unit.cost
                    } else {
                        subjects.iter().map(|&s| unit.subjects[s].1).sum()
                    };
                    PlannedUnit {
                        record: unit.record.clone(),
                        subjects: subjects
                            .iter()
                            .map(|&s| unit.subjects[s].0.clone())
                            .collect(),
                        cost,
                    }
                })
                .collect()
        })
        .collect()
}

/// Roughly how many tokens a test sends through both engines: the weight
/// it is balanced on when no previous run says how long it took.
pub(crate) fn estimated_tokens(params: &TestParams, trials: u32) -> f64 {
    2.0 * params.params().tokens_per_trial() * f64::from(trials.max(1))
}

/// One shard's part of a suite.
pub(crate) struct ShardRun {
    pub mark: ShardMark,
    /// What a unit runs with instead of the suite's parameters (an MMLU
    /// test's subjects), by record name.
    pub params: IndexMap<String, TestParams>,
}

impl ShardRun {
    pub(super) fn runs(&self, record: &str) -> bool {
        self.mark.plan[self.mark.index as usize - 1]
            .iter()
            .any(|u| u.record == record)
    }
}

/// This job's part of the suite, from a plan every shard computes alike:
/// each test of each model is a unit, a kind that splits (MMLU) is split
/// into its parts; `previous` (record → seconds) weighs them by an
/// earlier run's durations.
pub(crate) fn assign(
    loaded: &Loaded,
    selected: &[String],
    shard: Shard,
    results_dir: &Path,
    previous: Option<&IndexMap<String, f64>>,
) -> Result<ShardRun, WorkloadError> {
    let mut units = Vec::new();
    let mut tests: IndexMap<String, &String> = IndexMap::new();
    for (_, label) in models_of(&loaded.suite.run) {
        for name in selected {
            let record = record_name(name, label.as_deref());
            let params = &loaded.params[name];
            let subjects =
                workload::kind_of(params).parts(params, results_dir, &loaded.suite_dir())?;
            let cost = if subjects.is_empty() {
                estimated_tokens(params, loaded.suite.tests[name].trials())
            } else {
                subjects.iter().map(|(_, c)| c).sum()
            };
            tests.insert(record.clone(), name);
            units.push(Unit {
                record,
                cost,
                subjects,
            });
        }
    }
    if let Some(secs) = previous {
        with_durations(&mut units, secs);
    }
    let plan = plan(&units, shard.count);
    let params = plan[shard.index as usize - 1]
        .iter()
        .filter(|u| !u.subjects.is_empty())
        .map(|u| {
            let whole = &loaded.params[tests[&u.record].as_str()];
            let part = workload::kind_of(whole).only(whole, &u.subjects);
            (u.record.clone(), part)
        })
        .collect();
    Ok(ShardRun {
        mark: ShardMark {
            index: shard.index,
            count: shard.count,
            units: units
                .into_iter()
                .map(|u| PlannedUnit {
                    record: u.record,
                    subjects: u.subjects.into_iter().map(|(s, _)| s).collect(),
                    cost: u.cost,
                })
                .collect(),
            plan,
        },
        params,
    })
}

/// Turns estimated tokens into seconds where a previous run recorded how
/// long units took: seconds per token from the units it knows, applied to
/// all, and its own seconds where it has them. Without any, tokens stay.
pub(crate) fn with_durations(units: &mut [Unit], previous: &IndexMap<String, f64>) {
    let (secs, tokens) = units
        .iter()
        .filter_map(|u| previous.get(&u.record).map(|s| (*s, u.cost)))
        .fold((0.0, 0.0), |(a, b), (s, t)| (a + s, b + t));
    if secs <= 0.0 || tokens <= 0.0 {
        return;
    }
    let per_token = secs / tokens;
    for u in units.iter_mut() {
        let scale = previous
            .get(&u.record)
            .filter(|s| **s > 0.0 && u.cost > 0.0)
            .map_or(per_token, |s| s / u.cost);
        u.cost *= scale;
        for (_, c) in u.subjects.iter_mut() {
            *c *= scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(record: &str, cost: f64) -> Unit {
        Unit {
            record: record.into(),
            cost,
            subjects: Vec::new(),
        }
    }

    fn records(plan: &[Vec<PlannedUnit>]) -> Vec<Vec<String>> {
        plan.iter()
            .map(|s| {
                s.iter()
                    .map(|u| {
                        if u.subjects.is_empty() {
                            u.record.clone()
                        } else {
                            format!("{}[{}]", u.record, u.subjects.join(","))
                        }
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn shards_parse_as_k_of_n() {
        assert_eq!(
            "2/4".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 4 }
        );
        for bad in ["0/4", "5/4", "2", "a/b", "1/0", ""] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.contains("K/N"), "{bad}: {e}");
        }
    }

    #[test]
    fn buildkite_parallel_jobs_count_from_zero() {
        let env = |job: &'static str, count: &'static str| {
            move |k: &str| match k {
                "BUILDKITE_PARALLEL_JOB" => Some(job.to_string()),
                "BUILDKITE_PARALLEL_JOB_COUNT" => Some(count.to_string()),
                _ => None,
            }
        };
        assert_eq!(
            Shard::from_buildkite(&env("0", "3")).unwrap().unwrap(),
            Shard { index: 1, count: 3 }
        );
        assert_eq!(
            Shard::from_buildkite(&env("2", "3")).unwrap().unwrap(),
            Shard { index: 3, count: 3 }
        );
        assert!(Shard::from_buildkite(&env("3", "3")).unwrap().is_err());
        assert!(Shard::from_buildkite(&|_: &str| None).is_none());
    }

    #[test]
    fn every_unit_lands_once_costliest_first_on_the_least_loaded() {
        let units = [
            whole("a", 5.0),
            whole("b", 4.0),
            whole("c", 3.0),
            whole("d", 3.0),
            whole("e", 1.0),
        ];
        let plan = plan(&units, 2);
        // a→1, b→2, c→2 (4 < 5), d→1 (5 < 7), e→2 (7 < 8).
        assert_eq!(records(&plan), [vec!["a", "d"], vec!["b", "c", "e"]]);
        let loads: Vec<f64> = plan
            .iter()
            .map(|s| s.iter().map(|u| u.cost).sum())
            .collect();
        assert_eq!(loads, [8.0, 8.0]);
    }

    #[test]
    fn mmlu_splits_by_subject_and_keeps_their_order() {
        let mmlu = Unit {
            record: "mmlu".into(),
            cost: 10.0,
            subjects: vec![
                ("anatomy".into(), 4.0),
                ("astronomy".into(), 3.0),
                ("biology".into(), 2.0),
                ("chemistry".into(), 1.0),
            ],
        };
        let plan = plan(&[mmlu, whole("long_doc_qa", 6.0)], 3);
        assert_eq!(
            records(&plan),
            [
                vec!["long_doc_qa"],
                vec!["mmlu[anatomy,chemistry]"],
                vec!["mmlu[astronomy,biology]"]
            ]
        );
    }

    #[test]
    fn more_shards_than_units_leaves_some_empty() {
        let plan = plan(&[whole("a", 1.0)], 3);
        assert_eq!(plan.len(), 3);
        assert_eq!(plan.iter().filter(|s| s.is_empty()).count(), 2);
    }

    #[test]
    fn a_previous_run_turns_tokens_into_its_seconds() {
        let mut units = [whole("a", 1000.0), whole("b", 1000.0), whole("c", 500.0)];
        let previous = IndexMap::from([("a".to_string(), 10.0), ("b".to_string(), 30.0)]);
        with_durations(&mut units, &previous);
        let costs: Vec<f64> = units.iter().map(|u| u.cost).collect();
        // c: unknown, at the known units' 40 s / 2000 tokens.
        assert_eq!(costs, [10.0, 30.0, 10.0]);
    }
}
