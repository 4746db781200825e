//! The default branch's history: one JSON line per run (per check its
//! estimate, interval and n, and the fingerprint that says which runs may
//! be compared), appended by runs of the default branch and read by pull
//! requests. The file travels as a CI cache or artifact, so reading it
//! trusts nothing: a line that does not parse is skipped and counted.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use super::{ResultsError, RunResults};

/// What must be equal for two runs' numbers to be compared: the suite,
/// the tool, the models, each engine's kind and version, the GPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Fingerprint {
    pub suite_hash: Option<String>,
    pub tool_version: String,
    pub models: Vec<String>,
    /// `role kind version` of each engine, sorted, once each.
    pub engines: Vec<String>,
    /// The GPUs without their indices, sorted, once each.
    pub gpus: Vec<String>,
}

impl Fingerprint {
    pub(crate) fn of(results: &RunResults) -> Self {
        let mut engines: Vec<String> = results
            .engines
            .iter()
            .map(|e| {
                format!(
                    "{} {} {}",
                    e.role,
                    e.kind,
                    e.version.as_deref().unwrap_or("?")
                )
            })
            .collect();
        engines.sort();
        engines.dedup();
        let mut gpus: Vec<String> = results
            .meta
            .gpus
            .iter()
            .map(|g| {
                // "GPU 3 (22 GiB)" -> "(22 GiB)": the index is the agent's.
                let rest = g.strip_prefix("GPU ").unwrap_or(g);
                rest.trim_start_matches(|c: char| c.is_ascii_digit())
                    .trim()
                    .to_string()
            })
            .collect();
        gpus.sort();
        gpus.dedup();
        Self {
            suite_hash: results.meta.suite_hash.clone(),
            tool_version: results.tool_version.clone(),
            models: results.meta.models.clone(),
            engines,
            gpus,
        }
    }

    /// A short key naming it (12 hex digits of its SHA-256).
    pub(crate) fn key(&self) -> String {
        use sha2::Digest as _;
        let json = serde_json::to_vec(self).expect("fingerprint serializes");
        format!("{:x}", sha2::Sha256::digest(json))[..12].to_string()
    }
}

/// One check's value in one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Point {
    pub value: f64,
    pub unit: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
}

/// One run of the default branch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Entry {
    pub at: chrono::DateTime<chrono::Utc>,
    pub commit: Option<String>,
    pub branch: Option<String>,
    pub build_url: Option<String>,
    pub fingerprint: Fingerprint,
    /// `test: check` -> its value.
    pub checks: IndexMap<String, Point>,
}

impl Entry {
    pub(crate) fn of(results: &RunResults) -> Self {
        let checks = results
            .tests
            .iter()
            .flat_map(|t| t.checks.iter().map(move |c| (t, c)))
            .filter_map(|(t, c)| {
                let value = c.value.filter(|v| v.is_finite())?;
                Some((
                    format!("{}: {}", t.name, c.name),
                    Point {
                        value,
                        unit: c.unit.clone(),
                        low: c.interval.map(|i| i.low),
                        high: c.interval.map(|i| i.high),
                        n: c.n,
                    },
                ))
            })
            .collect();
        Self {
            at: results.finished_at.unwrap_or(results.started_at),
            commit: results.meta.commit.clone(),
            branch: results.meta.branch.clone(),
            build_url: results.meta.build_url.clone(),
            fingerprint: Fingerprint::of(results),
            checks,
        }
    }
}

/// The store's runs that could be read, and how many lines could not.
#[derive(Debug, Default)]
pub(crate) struct Read {
    pub entries: Vec<Entry>,
    pub skipped: usize,
}

/// Reads the store (a missing file is an empty history), at most
/// `max_mib`; each line is checked on its own.
pub(crate) fn read(path: &Path, max_mib: u64) -> Result<Read, ResultsError> {
    let bytes = match super::read_capped(path, max_mib) {
        // No store yet: the first run of the default branch starts it.
        Err(ResultsError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Read::default())
        }
        read => read?,
    };
    let mut out = Read::default();
    for line in bytes.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Entry>(line) {
            Ok(e) if e.checks.values().all(|p| p.value.is_finite()) => out.entries.push(e),
            _ => out.skipped += 1,
        }
    }
    Ok(out)
}

/// Appends one run as one line.
pub(crate) fn append(path: &Path, entry: &Entry) -> Result<(), ResultsError> {
    let err = |source| ResultsError::Write {
        path: PathBuf::from(path),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut line = serde_json::to_string(entry).expect("entry serializes");
    line.push('\n');
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(v: f64) -> Entry {
        Entry {
            at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            commit: Some("abc".into()),
            branch: Some("main".into()),
            build_url: None,
            fingerprint: Fingerprint {
                suite_hash: Some("s".into()),
                tool_version: "0.1.0".into(),
                models: vec!["m".into()],
                engines: vec!["baseline sim ?".into()],
                gpus: Vec::new(),
            },
            checks: IndexMap::from([(
                "t: c".to_string(),
                Point {
                    value: v,
                    unit: "%".into(),
                    low: None,
                    high: None,
                    n: Some(3),
                },
            )]),
        }
    }

    mod fuzz_history {
        use super::super::super::fuzz::{mutated, timed};
        use super::*;
        use proptest::prelude::proptest;

        proptest! {
            // Another job's cache: each line parsed and checked, or skipped
            // and counted; never a panic, a hang or a non-finite value.
            #[test]
            fn fuzz_history_jsonl(bytes in mutated(include_bytes!("../../tests/fixtures/fuzz/history.jsonl"))) {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("history.jsonl");
                std::fs::write(&path, &bytes).unwrap();
                let r = timed("history.jsonl", || read(&path, 1)).unwrap();
                let lines = bytes.split(|b| *b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count();
                assert_eq!(r.entries.len() + r.skipped, lines);
                for e in &r.entries {
                    assert!(e.checks.values().all(|p| p.value.is_finite()));
                }
            }
        }
    }

    #[test]
    fn appended_runs_read_back_and_bad_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h/history.jsonl");
        assert!(read(&path, 1).unwrap().entries.is_empty());
        append(&path, &entry(1.0)).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{not json\n\n[]\n")
            .unwrap();
        append(&path, &entry(2.0)).unwrap();
        let r = read(&path, 1).unwrap();
        assert_eq!(r.entries, vec![entry(1.0), entry(2.0)]);
        assert_eq!(r.skipped, 2);
    }

    #[test]
    fn the_key_changes_with_any_part_of_the_fingerprint() {
        let a = entry(1.0).fingerprint;
        let mut b = a.clone();
        b.engines = vec!["baseline vllm 0.9.1".into()];
        assert_ne!(a.key(), b.key());
        assert_eq!(a.key(), entry(2.0).fingerprint.key());
        assert_eq!(a.key().len(), 12);
    }
}
