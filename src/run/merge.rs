//! A sharded suite's results directories made one: the shards checked to
//! be one whole (every shard once, one commit, suite and engines), whole
//! tests taken as they are with their files, split tests (MMLU by subject)
//! recomputed by their kind from every shard's answers, and every check judged again on
//! the union, Holm over the merged run's hard checks.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::gate;
use crate::results::{
    ErrorClass, MergedShard, Metric, PlannedUnit, Role, RunResults, RunStatus, ShardMark,
    TestRecord, TestStatus,
};
use crate::workload::{self, Merged, PartError, ShardPart};

/// A merge refused or failed; `class` says whose fault.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MergeError {
    #[error("failed to merge: {dir} is no shard (its results.json has no shard mark; run `ci --shard K/N`)")]
    NotAShard { dir: PathBuf },
    #[error("failed to merge: shard {index} of {count} is missing (given: {given})")]
    Missing {
        index: u32,
        count: u32,
        given: String,
    },
    #[error("failed to merge: shard {index} is given twice: {first} and {second}")]
    Duplicate {
        index: u32,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("failed to merge: {first} and {second} differ in {what} ({a} vs {b}); shards of one run share it")]
    Mismatch {
        what: &'static str,
        first: PathBuf,
        second: PathBuf,
        a: String,
        b: String,
    },
    #[error("failed to merge: {path}: {why}")]
    BadFile { path: PathBuf, why: String },
    #[error(transparent)]
    Results(#[from] crate::results::ResultsError),
    #[error("failed to merge into {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl MergeError {
    pub(crate) fn class(&self) -> ErrorClass {
        match self {
            MergeError::Io { .. } => ErrorClass::Setup,
            MergeError::Results(e) => e.class(),
            MergeError::NotAShard { .. }
            | MergeError::Missing { .. }
            | MergeError::Duplicate { .. }
            | MergeError::Mismatch { .. }
            | MergeError::BadFile { .. } => ErrorClass::BadInput,
        }
    }
}

/// One shard's results and where they came from.
pub(crate) struct ShardDir {
    pub dir: PathBuf,
    pub results: RunResults,
}

/// A question file this large is no shard of ours.
const MAX_FILE_MIB: u64 = 256;

/// A shard checked to carry its mark (which shard of how many, and the
/// plan): what every step after the check reads it from.
struct Marked {
    dir: PathBuf,
    results: RunResults,
    mark: ShardMark,
}

/// Checks the shards are one run's, then writes their union into `into`.
pub(crate) fn merge(shards: Vec<ShardDir>, into: &Path) -> Result<RunResults, MergeError> {
    let shards = check_whole(shards)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| MergeError::Io { path, source }
    };
    std::fs::create_dir_all(into).map_err(io(into))?;
    let (first, mark) = (&shards[0].results, &shards[0].mark);
    let mut tests = Vec::new();
    for unit in &mark.units {
        let parts = planned_parts(&shards, mark, unit)?;
        let record = if parts.len() == 1 {
            let (k, s, t) = parts[0];
            whole(k, s, t, into)?
        } else {
            merge_split(unit, &parts, into)?
        };
        tests.push(record);
    }
    gate::unshare_alpha(&mut tests);
    let holm = shards
        .iter()
        .all(|s| s.results.family.as_ref().is_none_or(|f| f.method == "holm"));
    let family = gate::share_alpha(&mut tests, holm);
    let mut engines = Vec::new();
    for s in &shards {
        let k = s.mark.index;
        for e in &s.results.engines {
            let mut e = e.clone();
            e.name = format!("{} (shard {k})", e.name);
            e.log = e.log.map(|l| copy_in(&s.dir, &l, k, into)).transpose()?;
            engines.push(e);
        }
    }
    let (status, message) = status_of(&shards, &tests);
    let mut meta = first.meta.clone();
    meta.gpus = shards
        .iter()
        .flat_map(|s| s.results.meta.gpus.iter().cloned())
        .collect();
    meta.build_url = first.meta.build_url.clone();
    let results = RunResults {
        schema_version: first.schema_version,
        tool_version: first.tool_version.clone(),
        suite: first.suite.clone(),
        source: first.source.clone(),
        build_id: first.build_id.clone(),
        run_id: format!("{}-merged", first.build_id),
        results_dir: into.to_path_buf(),
        status,
        message,
        signal: None,
        started_at: shards
            .iter()
            .map(|s| s.results.started_at)
            .fold(first.started_at, std::cmp::min),
        finished_at: shards.iter().filter_map(|s| s.results.finished_at).max(),
        engines,
        tests,
        meta,
        family,
        shard: None,
        merged_from: shards
            .iter()
            .map(|s| MergedShard {
                index: s.mark.index,
                dir: s.dir.display().to_string(),
                status: s.results.status,
                duration_secs: s
                    .results
                    .finished_at
                    .map(|f| (f - s.results.started_at).num_milliseconds() as f64 / 1000.0),
                build_url: s.results.meta.build_url.clone(),
            })
            .collect(),
        history: None,
        controls: Vec::new(),
    };
    results.write()?;
    Ok(results)
}

/// The records of `unit` from every shard the plan gave it to: one for a
/// whole test, several for one split by subject. A shard whose results
/// lack what its plan gave it refuses the merge.
fn planned_parts<'a>(
    shards: &'a [Marked],
    mark: &ShardMark,
    unit: &PlannedUnit,
) -> Result<Vec<(u32, &'a Marked, &'a TestRecord)>, MergeError> {
    let mut parts = Vec::new();
    for (i, planned) in mark.plan.iter().enumerate() {
        if !planned.iter().any(|u| u.record == unit.record) {
            continue;
        }
        let k = i as u32 + 1;
        // `check_whole` gave every shard of the plan once, in order.
        let s = &shards[i];
        let Some(t) = s.results.tests.iter().find(|t| t.name == unit.record) else {
            return Err(MergeError::BadFile {
                path: RunResults::path(&s.dir),
                why: format!(
                    "shard {k} has no record of test `{}`, which its plan gives it",
                    unit.record
                ),
            });
        };
        parts.push((k, s, t));
    }
    if parts.is_empty() {
        return Err(MergeError::BadFile {
            path: RunResults::path(&shards[0].dir),
            why: format!("no shard's plan runs test `{}`", unit.record),
        });
    }
    Ok(parts)
}

/// `rel` inside a shard's directory, really: resolved through any links,
/// still under the directory, and a plain file. `None` when it is absent.
fn inside(dir: &Path, rel: &str) -> Result<Option<PathBuf>, MergeError> {
    let from = dir.join(rel);
    let bad = |why: &str| MergeError::BadFile {
        path: from.clone(),
        why: why.into(),
    };
    let real = match std::fs::canonicalize(&from) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(MergeError::Io { path: from, source }),
    };
    let root = std::fs::canonicalize(dir).map_err(|source| MergeError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    if !real.starts_with(&root) {
        return Err(bad("it leads out of the shard's directory (a link)"));
    }
    if !std::fs::metadata(&real).is_ok_and(|m| m.is_file()) {
        return Err(bad("not a plain file"));
    }
    Ok(Some(real))
}

/// Every shard of one plan exactly once, all of one commit, suite, tool
/// and engines; sorted by index.
fn check_whole(given: Vec<ShardDir>) -> Result<Vec<Marked>, MergeError> {
    let mut shards = Vec::new();
    for s in given {
        let Some(m) = s.results.shard.clone() else {
            return Err(MergeError::NotAShard { dir: s.dir });
        };
        if m.index == 0 || m.index > m.count || m.plan.len() != m.count as usize {
            return Err(MergeError::BadFile {
                path: RunResults::path(&s.dir),
                why: format!(
                    "shard {} of {} with a plan of {} parts is no shard this tool wrote",
                    m.index,
                    m.count,
                    m.plan.len()
                ),
            });
        }
        shards.push(Marked {
            dir: s.dir,
            results: s.results,
            mark: m,
        });
    }
    shards.sort_by_key(|s| s.mark.index);
    let index = |s: &Marked| s.mark.index;
    for pair in shards.windows(2) {
        if index(&pair[0]) == index(&pair[1]) {
            return Err(MergeError::Duplicate {
                index: index(&pair[0]),
                first: pair[0].dir.clone(),
                second: pair[1].dir.clone(),
            });
        }
    }
    let Some((head, rest)) = shards.split_first() else {
        return Err(MergeError::Missing {
            index: 1,
            count: 1,
            given: "nothing".into(),
        });
    };
    for other in rest {
        same(head, other)?;
    }
    let count = head.mark.count;
    let given = shards
        .iter()
        .map(|s| format!("{} ({}/{count})", s.dir.display(), index(s)))
        .collect::<Vec<_>>()
        .join(", ");
    if let Some(missing) = (1..=count).find(|k| !shards.iter().any(|s| index(s) == *k)) {
        return Err(MergeError::Missing {
            index: missing,
            count,
            given,
        });
    }
    Ok(shards)
}

fn same(a: &Marked, b: &Marked) -> Result<(), MergeError> {
    let (ra, rb) = (&a.results, &b.results);
    let (ma, mb) = (&a.mark, &b.mark);
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
    let engines = |r: &RunResults| -> IndexMap<String, String> {
        r.engines
            .iter()
            .map(|e| {
                let v = e.version.as_deref().unwrap_or("?");
                (e.name.clone(), format!("{} {v}", e.kind))
            })
            .collect()
    };
    let (ea, eb) = (engines(ra), engines(rb));
    let engine_differs = ea
        .iter()
        .find(|(n, v)| eb.get(*n).is_some_and(|w| w != *v))
        .map(|(n, v)| (format!("{n}: {v}"), format!("{n}: {}", eb[n])));
    let differs: [(&'static str, Option<(String, String)>); 6] = [
        (
            "commit",
            (ra.meta.commit != rb.meta.commit)
                .then(|| (show(&ra.meta.commit), show(&rb.meta.commit))),
        ),
        (
            "suite",
            (ra.meta.suite_hash != rb.meta.suite_hash)
                .then(|| (short(&ra.meta.suite_hash), short(&rb.meta.suite_hash))),
        ),
        (
            "shard count",
            (ma.count != mb.count).then(|| (ma.count.to_string(), mb.count.to_string())),
        ),
        (
            "plan",
            (ma.plan != mb.plan || ma.units != mb.units)
                .then(|| ("one split".into(), "another".into())),
        ),
        (
            "tool version",
            (ra.tool_version != rb.tool_version)
                .then(|| (ra.tool_version.clone(), rb.tool_version.clone())),
        ),
        ("engine", engine_differs),
    ];
    match differs.into_iter().find_map(|(w, d)| Some((w, d?))) {
        Some((what, (va, vb))) => Err(MergeError::Mismatch {
            what,
            first: a.dir.clone(),
            second: b.dir.clone(),
            a: va,
            b: vb,
        }),
        None => Ok(()),
    }
}

fn short(hash: &Option<String>) -> String {
    hash.as_deref()
        .map_or("none".into(), |h| h.chars().take(12).collect())
}

/// A test one shard ran whole: as it is, its files under `shard-K/`.
fn whole(k: u32, s: &Marked, t: &TestRecord, into: &Path) -> Result<TestRecord, MergeError> {
    let mut t = t.clone();
    t.files = t
        .files
        .iter()
        .map(|f| copy_in(&s.dir, f, k, into))
        .collect::<Result<_, _>>()?;
    Ok(t)
}

/// Copies `rel` from a shard into `into/shard-K/rel`, refusing what is not
/// a plain file (a link could point anywhere).
fn copy_in(dir: &Path, rel: &str, k: u32, into: &Path) -> Result<String, MergeError> {
    let to_rel = format!("shard-{k}/{rel}");
    let to = into.join(&to_rel);
    // A file the run listed but never wrote: the record keeps the name.
    let Some(from) = inside(dir, rel)? else {
        return Ok(to_rel);
    };
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|source| MergeError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    std::fs::copy(&from, &to).map_err(|source| MergeError::Io { path: to, source })?;
    Ok(to_rel)
}

/// A test split over shards: its kind merges the parts' answers; the
/// union is gated as one run would gate it.
fn merge_split(
    unit: &PlannedUnit,
    parts: &[(u32, &Marked, &TestRecord)],
    into: &Path,
) -> Result<TestRecord, MergeError> {
    let (_, _, head) = parts[0];
    let Some(kind) = workload::kind(&head.kind) else {
        return Err(MergeError::BadFile {
            path: parts[0].1.dir.join("results.json"),
            why: format!(
                "test `{}` has a kind this tool does not know: `{}`",
                head.name, head.kind
            ),
        });
    };
    let mut t = TestRecord {
        duration_secs: Some(parts.iter().filter_map(|p| p.2.duration_secs).sum()),
        started_at: parts.iter().filter_map(|p| p.2.started_at).min(),
        ..TestRecord::new(&unit.record, &head.kind, TestStatus::Passed)
    };
    if let Some((k, _, bad)) = parts.iter().find(|p| !finished(p.2.status)) {
        t.status = bad.status;
        t.error = Some(format!(
            "shard {k}: {}",
            bad.error.as_deref().unwrap_or("did not finish")
        ));
        return Ok(t);
    }
    let merged = merged_parts(&head.kind, parts, &unit.subjects)?;
    for (role, mut m) in merged.metrics {
        m.extend(summed_counters(parts, role));
        t.metrics.insert(role, m);
    }
    if let Some(m) = t.metrics.get_mut(&Role::Lmcache) {
        m.extend(merged.compared);
    }
    // Each metric keeps the direction its shards recorded with it.
    for (role, metrics) in t.metrics.iter_mut() {
        for (name, m) in metrics.iter_mut() {
            m.better = m.better.or_else(|| {
                parts
                    .iter()
                    .find_map(|p| p.2.metrics.get(role)?.get(name)?.better)
            });
        }
    }
    gate::evidence::enrich(&mut t.metrics);
    let checks: IndexMap<String, crate::config::CheckConfig> = head
        .checks
        .iter()
        .map(|c| (c.name.clone(), gate::check_of(c)))
        .collect();
    t.checks = gate::evaluate(kind, &checks, &t.metrics, &t.paired);
    t.status = gate::test_status(&t.checks);
    t.notes.push(format!(
        "merged from shards {}: {}",
        parts
            .iter()
            .map(|p| p.0.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        merged.summary
    ));
    for (k, _, p) in parts {
        t.notes.extend(
            p.notes
                .iter()
                .filter(|n| n.starts_with("attempt "))
                .map(|n| format!("shard {k}: {n}")),
        );
    }
    t.notes.extend(merged.notes);
    t.tables = merged.tables;
    for (rel, body) in merged.files {
        let path = into.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| MergeError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, body).map_err(|source| MergeError::Io { path, source })?;
        t.files.push(rel);
    }
    Ok(t)
}

/// The parts of a split test merged by their kind, each file read from
/// inside its shard's directory, at most [`MAX_FILE_MIB`].
fn merged_parts(
    kind: &str,
    parts: &[(u32, &Marked, &TestRecord)],
    subjects: &[String],
) -> Result<Merged, MergeError> {
    let bad = |e: PartError| MergeError::BadFile {
        path: e.path,
        why: e.why,
    };
    let readers: Vec<_> = parts
        .iter()
        .map(|(_, s, _)| {
            move |rel: &str| -> Result<Vec<u8>, PartError> {
                let Some(path) = inside(&s.dir, rel).map_err(|e| PartError {
                    path: s.dir.join(rel),
                    why: e.to_string(),
                })?
                else {
                    return Err(PartError {
                        path: s.dir.join(rel),
                        why: "missing: the shard's answers are what the merge recomputes".into(),
                    });
                };
                crate::results::read_capped(&path, MAX_FILE_MIB).map_err(|e| PartError {
                    path: path.clone(),
                    why: e.to_string(),
                })
            }
        })
        .collect();
    let shard_parts: Vec<ShardPart<'_>> = parts
        .iter()
        .zip(&readers)
        .map(|((_, s, t), read)| ShardPart {
            dir: &s.dir,
            record: t,
            read,
        })
        .collect();
    let Some(merged) = workload::kind(kind).and_then(|k| k.merge(&shard_parts, subjects)) else {
        return Err(MergeError::BadFile {
            path: parts[0].1.dir.join("results.json"),
            why: format!(
                "test `{}` is split over shards, but its kind `{kind}` does not split",
                parts[0].2.name
            ),
        });
    };
    merged.map_err(bad)
}

fn finished(s: TestStatus) -> bool {
    !matches!(
        s,
        TestStatus::NotRun | TestStatus::Running | TestStatus::Error | TestStatus::Interrupted
    )
}

/// Cache counters (`*_total`) grow per shard: the union's growth is their sum.
fn summed_counters(parts: &[(u32, &Marked, &TestRecord)], role: Role) -> IndexMap<String, Metric> {
    let mut sum: IndexMap<String, Metric> = IndexMap::new();
    for (_, _, p) in parts {
        let Some(m) = p.metrics.get(&role) else {
            continue;
        };
        for (name, metric) in m.iter().filter(|(n, _)| n.ends_with("_total")) {
            sum.entry(name.clone())
                .and_modify(|s| s.value += metric.value)
                .or_insert_with(|| Metric::new(metric.value, &metric.unit));
        }
    }
    sum
}

/// The merged run's status: a failed test fails it; otherwise a shard that
/// did not finish makes it an error, and an inconclusive test leaves it
/// undecided.
fn status_of(shards: &[Marked], tests: &[TestRecord]) -> (RunStatus, Option<String>) {
    let failed: Vec<&str> = tests
        .iter()
        .filter(|t| matches!(t.status, TestStatus::Failed | TestStatus::Error))
        .map(|t| t.name.as_str())
        .collect();
    if !failed.is_empty() {
        return (
            RunStatus::Failed,
            Some(format!("failed tests: {}", failed.join(", "))),
        );
    }
    match shards.iter().find(|s| {
        !matches!(
            s.results.status,
            RunStatus::Passed | RunStatus::Inconclusive | RunStatus::Failed
        )
    }) {
        Some(s) => (
            RunStatus::Error,
            Some(format!(
                "shard {} did not finish: {}",
                s.mark.index,
                s.results.message.as_deref().unwrap_or("no message")
            )),
        ),
        None => {
            let undecided: Vec<&str> = tests
                .iter()
                .filter(|t| t.status == TestStatus::Inconclusive)
                .map(|t| t.name.as_str())
                .collect();
            match undecided.is_empty() {
                true => (RunStatus::Passed, None),
                false => (
                    RunStatus::Inconclusive,
                    Some(format!("could not tell: {}", undecided.join(", "))),
                ),
            }
        }
    }
}
