//! MMLU data in the Hendrycks layout (`data/{dev,test}/<subject>_{dev,test}.csv`):
//! safe, idempotent extraction of `data.tar.xz` and reading its CSVs.
//!
//! Extraction streams xz and tar, refuses any entry that could write outside
//! the destination, works in a temporary directory renamed into place, and
//! never touches the archive (today's `setup.sh` deletes it with `unxz`).

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use crate::results::ErrorClass;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub(crate) enum DataError {
    #[error("failed to read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("failed to extract {archive}: it is corrupt or truncated ({message}); fetch it again")]
    Corrupt { archive: PathBuf, message: String },
    #[error("refused to extract {archive}: entry `{entry}` {why}")]
    Hostile {
        archive: PathBuf,
        entry: String,
        why: String,
    },
    #[error("{path} is not MMLU data in the Hendrycks layout: {why}")]
    Layout { path: PathBuf, why: String },
    #[error("failed to parse {path} line {line}: {message}")]
    Csv {
        path: PathBuf,
        line: u64,
        message: String,
    },
}

impl DataError {
    /// Preparing the data set on this machine.
    pub(crate) fn class(&self) -> ErrorClass {
        ErrorClass::Setup
    }
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where the data ended up and whether this call extracted it.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The directory holding `dev/` and `test/`.
    pub data_dir: PathBuf,
    pub extracted: bool,
    pub sha256: Option<String>,
    pub subjects: usize,
}

const STAMP: &str = ".lmcache-e2e-mmlu.sha256";

/// Makes MMLU data available under `into/data` from an archive, or uses an
/// already extracted directory as it is.
pub(crate) fn prepare(source: &Path, into: &Path) -> Result<Prepared, DataError> {
    if source.is_dir() {
        let data_dir = [source.to_path_buf(), source.join("data")]
            .into_iter()
            .find(|d| d.join("test").is_dir())
            .ok_or_else(|| DataError::Layout {
                path: source.to_path_buf(),
                why: "no test/ directory (nor data/test/)".into(),
            })?;
        let subjects = subjects(&data_dir)?.len();
        return Ok(Prepared {
            data_dir,
            extracted: false,
            sha256: None,
            subjects,
        });
    }
    let sha = sha256_file(source)?;
    let data_dir = into.join("data");
    let stamp = into.join(STAMP);
    if fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == sha) && data_dir.join("test").is_dir() {
        let subjects = subjects(&data_dir)?.len();
        return Ok(Prepared {
            data_dir,
            extracted: false,
            sha256: Some(sha),
            subjects,
        });
    }
    fs::create_dir_all(into).map_err(io_err(into))?;
    // Dropped (and deleted) on any error: a failure leaves nothing behind.
    let tmp = tempfile::Builder::new()
        .prefix(".extract-")
        .tempdir_in(into)
        .map_err(io_err(into))?;
    unpack(source, tmp.path())?;
    let staged = tmp.path().join("data");
    if !staged.join("test").is_dir() || !staged.join("dev").is_dir() {
        return Err(DataError::Layout {
            path: source.to_path_buf(),
            why: "the archive has no data/dev/ and data/test/".into(),
        });
    }
    let subjects = subjects(&staged)?.len();
    if data_dir.exists() {
        let old = tmp.path().join("previous");
        fs::rename(&data_dir, &old).map_err(io_err(&data_dir))?;
    }
    fs::rename(&staged, &data_dir).map_err(io_err(&data_dir))?;
    fs::write(&stamp, format!("{sha}\n")).map_err(io_err(&stamp))?;
    Ok(Prepared {
        data_dir,
        extracted: true,
        sha256: Some(sha),
        subjects,
    })
}

pub(crate) fn sha256_file(path: &Path) -> Result<String, DataError> {
    let mut f = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The entry's path as a relative path with no `..`, or why not.
fn confined(path: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("climbs out with `..`".into()),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path".into()),
        }
    }
    Ok(out)
}

/// Lexically resolves `target` from `dir` (both relative to the
/// destination); `None` when it would leave the destination.
fn resolve_inside(dir: &Path, target: &Path) -> Option<PathBuf> {
    if target.is_absolute() {
        return None;
    }
    let mut parts: Vec<_> = dir.components().collect();
    for c in target.components() {
        match c {
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            other => parts.push(other),
        }
    }
    Some(parts.iter().collect())
}

/// The first directory of `rel`'s path under `dest` that is a symlink
/// (relative to `dest`), if any.
fn symlink_on_the_way(dest: &Path, rel: &Path) -> Option<PathBuf> {
    let mut prefix = dest.to_path_buf();
    for c in rel.parent().into_iter().flat_map(Path::components) {
        prefix.push(c);
        if fs::symlink_metadata(&prefix).is_ok_and(|m| m.file_type().is_symlink()) {
            return Some(prefix.strip_prefix(dest).unwrap_or(&prefix).to_path_buf());
        }
    }
    None
}

/// The most an MMLU archive may hold: far above the real data set (57
/// subjects, ~120 files, ~170 MiB), far below what a tar bomb unpacks to.
const MAX_ENTRIES: usize = 5_000;
const MAX_BYTES: u64 = 1 << 30;

/// What an archive has unpacked so far, against the bounds.
#[derive(Default)]
struct Budget {
    entries: usize,
    bytes: u64,
}

impl Budget {
    fn take(&mut self, size: u64) -> Result<(), String> {
        self.entries += 1;
        self.bytes = self.bytes.saturating_add(size);
        if self.entries > MAX_ENTRIES || self.bytes > MAX_BYTES {
            return Err(format!(
                "takes the archive past {MAX_ENTRIES} entries or {} MiB: MMLU's data is about 120 files and 170 MiB, so this is not it",
                MAX_BYTES >> 20
            ));
        }
        Ok(())
    }
}

/// Unpacks `archive` into `dest`, every entry checked as hostile: its
/// path, the links on its way, its kind, the budget.
fn unpack(archive: &Path, dest: &Path) -> Result<(), DataError> {
    let file = File::open(archive).map_err(io_err(archive))?;
    let mut tar = tar::Archive::new(xz2::read::XzDecoder::new(BufReader::new(file)));
    let corrupt = |e: io::Error| DataError::Corrupt {
        archive: archive.to_path_buf(),
        message: e.to_string(),
    };
    let hostile = |entry: &Path, why: String| DataError::Hostile {
        archive: archive.to_path_buf(),
        entry: entry.display().to_string(),
        why,
    };
    let mut budget = Budget::default();
    for entry in tar.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let raw = entry.path().map_err(corrupt)?.into_owned();
        budget
            .take(entry.header().size().unwrap_or(0))
            .map_err(|why| hostile(&raw, why))?;
        let rel = confined(&raw).map_err(|why| hostile(&raw, why))?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        // A link extracted earlier must not carry a later entry elsewhere.
        if let Some(link) = symlink_on_the_way(dest, &rel) {
            return Err(hostile(
                &raw,
                format!("goes through the symlink `{}`", link.display()),
            ));
        }
        let out = dest.join(&rel);
        let parent_of = |p: &Path| {
            p.parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| dest.to_path_buf())
        };
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => fs::create_dir_all(&out).map_err(io_err(&out))?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                fs::create_dir_all(parent_of(&out)).map_err(io_err(&out))?;
                let mut f = File::create(&out).map_err(io_err(&out))?;
                io::copy(&mut entry, &mut f).map_err(corrupt)?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let hard = kind == tar::EntryType::Link;
                let what = if hard { "hardlink" } else { "symlink" };
                let target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| hostile(&raw, format!("is a {what} without a target")))?
                    .into_owned();
                make_link(dest, &rel, &target, hard, &|why| hostile(&raw, why))?;
            }
            // Metadata records the tar reader already applied.
            tar::EntryType::XHeader
            | tar::EntryType::XGlobalHeader
            | tar::EntryType::GNULongName
            | tar::EntryType::GNULongLink => {}
            other => {
                return Err(hostile(
                    &raw,
                    format!("is a {other:?} entry (device, fifo or other special file)"),
                ));
            }
        }
    }
    Ok(())
}

/// Makes a link entry at `rel`: a symlink whose target resolves inside
/// `dest`, or a hardlink to a file extracted before it; else says why not.
fn make_link(
    dest: &Path,
    rel: &Path,
    target: &Path,
    hard: bool,
    hostile: &dyn Fn(String) -> DataError,
) -> Result<(), DataError> {
    let out = dest.join(rel);
    fs::create_dir_all(out.parent().unwrap_or(dest)).map_err(io_err(&out))?;
    if !hard {
        if resolve_inside(rel.parent().unwrap_or(Path::new("")), target).is_none() {
            return Err(hostile(format!(
                "is a symlink pointing outside the destination (`{}`)",
                target.display()
            )));
        }
        return std::os::unix::fs::symlink(target, &out).map_err(io_err(&out));
    }
    let inside =
        confined(target).map_err(|why| hostile(format!("is a hardlink whose target {why}")))?;
    let src = dest.join(inside);
    if !src.starts_with(dest)
        || fs::symlink_metadata(&src)
            .map(|m| !m.is_file())
            .unwrap_or(true)
    {
        return Err(hostile(format!(
            "is a hardlink to `{}`, which is not a file extracted before it",
            target.display()
        )));
    }
    fs::hard_link(&src, &out).map_err(io_err(&out))
}

/// Subject names (file stems without `_test`) of `data_dir/test`, sorted.
pub(crate) fn subjects(data_dir: &Path) -> Result<Vec<String>, DataError> {
    let test = data_dir.join("test");
    let mut names: Vec<String> = fs::read_dir(&test)
        .map_err(io_err(&test))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix("_test.csv")
                .map(String::from)
        })
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(DataError::Layout {
            path: test,
            why: "no <subject>_test.csv files".into(),
        });
    }
    Ok(names)
}

/// One MMLU question: the text, four choices and the answer letter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Question {
    pub question: String,
    pub choices: [String; 4],
    pub answer: char,
}

/// Reads a Hendrycks CSV: no header, six columns, quoted fields may hold
/// commas and newlines.
pub(crate) fn read_questions(path: &Path) -> Result<Vec<Question>, DataError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(BufReader::new(file));
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| DataError::Csv {
            path: path.to_path_buf(),
            line: e.position().map_or(0, |p| p.line()),
            message: e.to_string(),
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let bad = |message: String| DataError::Csv {
            path: path.to_path_buf(),
            line,
            message,
        };
        // Some copies of MMLU (two dev files of the shared archive among
        // them) start with a `question,answer_a,...,answer` header.
        if line == 1 && record.len() == 6 && record[5].trim().eq_ignore_ascii_case("answer") {
            continue;
        }
        if record.len() != 6 {
            return Err(bad(format!(
                "expected 6 fields (question, A, B, C, D, answer), found {}",
                record.len()
            )));
        }
        let answer = record[5].trim();
        let letter = match answer {
            "A" | "B" | "C" | "D" => answer.chars().next().unwrap_or('A'),
            other => {
                return Err(bad(format!(
                    "the answer must be A, B, C or D, not {other:?}"
                )))
            }
        };
        out.push(Question {
            question: record[0].to_string(),
            choices: [
                record[1].to_string(),
                record[2].to_string(),
                record[3].to_string(),
                record[4].to_string(),
            ],
            answer: letter,
        });
    }
    Ok(out)
}

/// Subjects of the built-in dataset: small, generated, and in the Hendrycks
/// layout, so a machine without the real MMLU still runs the whole path.
const BUILTIN: &[(&str, char)] = &[
    ("elementary_addition", '+'),
    ("elementary_multiplication", '*'),
    ("elementary_subtraction", '-'),
    ("integer_remainders", '%'),
];

/// Writes the built-in dataset (4 subjects, 5 dev and 50 test questions each:
/// 200 paired questions bound a drop to 1 point when none changes)
/// under `dir/{dev,test}`. Deterministic: the same files every time.
pub(crate) fn write_builtin(dir: &Path) -> io::Result<()> {
    let mut state: u64 = 0x5eed;
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    for (subject, op) in BUILTIN {
        for (kind, count) in [("dev", 5), ("test", 50)] {
            let sub = dir.join(kind);
            fs::create_dir_all(&sub)?;
            let mut w = csv::Writer::from_path(sub.join(format!("{subject}_{kind}.csv")))?;
            for i in 0..count {
                let (a, b) = (next(90) + 10, next(9) + 2);
                let right = match op {
                    '+' => a + b,
                    '*' => a * b,
                    '-' => a - b,
                    _ => a % b,
                } as i64;
                let slot = (i % 4) as i64;
                let choices: Vec<String> = (0..4)
                    .map(|c| (right + (c - slot) * 3).to_string())
                    .collect();
                let question = format!("What is {a} {op} {b}?");
                let answer = ["A", "B", "C", "D"][slot as usize];
                w.write_record([
                    question.as_str(),
                    &choices[0],
                    &choices[1],
                    &choices[2],
                    &choices[3],
                    answer,
                ])?;
            }
            w.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    mod fuzz_data {
        use super::*;
        use crate::results::fuzz::{mutated, timed};
        use proptest::prelude::proptest;

        proptest! {
            #[test]
            fn fuzz_mmlu_csv(bytes in mutated(include_bytes!("../../../tests/fixtures/fuzz/mmlu_test.csv"))) {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("x_test.csv");
                std::fs::write(&path, &bytes).unwrap();
                if let Err(e) = timed("an MMLU CSV", || read_questions(&path)) {
                    assert!(e.to_string().contains("x_test.csv"), "{e}");
                }
            }

            // A hostile archive: refused with its name, never written
            // outside `into`, never a panic or a hang.
            #[test]
            fn fuzz_mmlu_archive(bytes in mutated(include_bytes!("../../../tests/fixtures/fuzz/mmlu.tar.xz"))) {
                let dir = tempfile::tempdir().unwrap();
                let archive = dir.path().join("data.tar.xz");
                std::fs::write(&archive, &bytes).unwrap();
                let into = dir.path().join("out");
                match timed("an MMLU archive", || prepare(&archive, &into)) {
                    Err(e) => assert!(e.to_string().contains("data.tar.xz"), "{e}"),
                    Ok(p) => assert!(p.data_dir.starts_with(&into), "{:?}", p.data_dir),
                }
                let outside: Vec<_> = std::fs::read_dir(dir.path())
                    .unwrap()
                    .filter_map(Result::ok)
                    .map(|e| e.file_name())
                    .filter(|n| n != "data.tar.xz" && n != "out")
                    .collect();
                assert!(outside.is_empty(), "written outside: {outside:?}");
            }
        }
    }

    #[test]
    fn csv_handles_quotes_commas_and_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x_test.csv");
        fs::write(
            &p,
            "\"What, exactly,\nis \"\"this\"\"?\",a,b,c,d,C\nq2,1,2,3,4,A\n",
        )
        .unwrap();
        let q = read_questions(&p).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].question, "What, exactly,\nis \"this\"?");
        assert_eq!(q[0].answer, 'C');
        assert_eq!(q[1].choices[3], "4");
    }

    #[test]
    fn a_header_row_is_skipped_only_on_line_one() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("z_dev.csv");
        fs::write(
            &p,
            "question,answer_a,answer_b,answer_c,answer_d,answer\nq1,a,b,c,d,B\n",
        )
        .unwrap();
        let q = read_questions(&p).unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].answer, 'B');
        fs::write(
            &p,
            "q1,a,b,c,d,B\nquestion,answer_a,answer_b,answer_c,answer_d,answer\n",
        )
        .unwrap();
        assert!(read_questions(&p)
            .unwrap_err()
            .to_string()
            .contains("line 2"));
    }

    #[test]
    fn malformed_rows_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("y_test.csv");
        fs::write(&p, "q1,a,b,c,d,A\nq2,a,b,c,d\n").unwrap();
        let e = read_questions(&p).unwrap_err().to_string();
        assert!(
            e.contains("y_test.csv line 2") && e.contains("expected 6 fields"),
            "{e}"
        );
        fs::write(&p, "q1,a,b,c,d,E\n").unwrap();
        let e = read_questions(&p).unwrap_err().to_string();
        assert!(e.contains("line 1") && e.contains("\"E\""), "{e}");
    }

    #[test]
    fn builtin_data_is_a_valid_hendrycks_layout() {
        let dir = tempfile::tempdir().unwrap();
        write_builtin(dir.path()).unwrap();
        let subjects = subjects(dir.path()).unwrap();
        assert_eq!(subjects.len(), 4);
        for s in &subjects {
            let test = read_questions(&dir.path().join(format!("test/{s}_test.csv"))).unwrap();
            assert_eq!(test.len(), 50);
            assert_eq!(
                read_questions(&dir.path().join(format!("dev/{s}_dev.csv")))
                    .unwrap()
                    .len(),
                5
            );
            // Every answer letter is used, so a constant answer cannot score well.
            for letter in ['A', 'B', 'C', 'D'] {
                assert!(test.iter().any(|q| q.answer == letter));
            }
        }
        let first = std::fs::read(dir.path().join("test/elementary_addition_test.csv")).unwrap();
        write_builtin(dir.path()).unwrap();
        assert_eq!(
            first,
            std::fs::read(dir.path().join("test/elementary_addition_test.csv")).unwrap()
        );
    }

    #[test]
    fn lexical_resolution_of_link_targets() {
        assert_eq!(
            resolve_inside(Path::new("a/b"), Path::new("../c")),
            Some(PathBuf::from("a/c"))
        );
        assert_eq!(resolve_inside(Path::new("a"), Path::new("../../x")), None);
        assert_eq!(
            resolve_inside(Path::new(""), Path::new("/etc/passwd")),
            None
        );
        assert!(confined(Path::new("data/../../x")).is_err());
        assert!(confined(Path::new("/abs")).is_err());
        assert_eq!(
            confined(Path::new("./data/x")).unwrap(),
            PathBuf::from("data/x")
        );
    }
}
