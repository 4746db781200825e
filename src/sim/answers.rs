//! How the sim answers multiple-choice prompts: from an MMLU answer key
//! when it has one (right with a set accuracy, seeded per question so every
//! engine agrees), and the fault of flipping answers on cache hits, so a
//! gate on paired accuracy has a true drop to find.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::text::fnv1a;

const LETTERS: [&str; 4] = ["A", "B", "C", "D"];

#[derive(Debug, thiserror::Error)]
#[error("failed to read the answer key {path}: {message}; give a directory of MMLU CSV files (question,A,B,C,D,answer)")]
pub(crate) struct KeyError {
    path: PathBuf,
    message: String,
}

#[derive(Default)]
pub(super) struct Answers {
    /// The question block as prompts show it (`question\nA. …\nD. …`) →
    /// the index of its right letter.
    key: HashMap<String, usize>,
    accuracy: f64,
    flip_on_hit_rate: f64,
}

impl Answers {
    pub(super) fn new(
        dir: Option<&Path>,
        accuracy: f64,
        flip_on_hit_rate: f64,
    ) -> Result<Self, KeyError> {
        let key = match dir {
            Some(d) => read_key(d)?,
            None => HashMap::new(),
        };
        Ok(Self {
            key,
            accuracy,
            flip_on_hit_rate,
        })
    }

    pub(super) fn known_questions(&self) -> usize {
        self.key.len()
    }

    /// The letter for a prompt ending in an answer cue: `fallback` (the
    /// sim's hashed letter) unless the key knows the question; flipped to
    /// another letter on a fraction of cache hits.
    pub(super) fn letter(&self, prompt: &str, fallback: &'static str, hit: bool) -> &'static str {
        let block = last_question(prompt);
        let h = |salt: u64| fnv1a(salt, block.unwrap_or(prompt).as_bytes());
        let mut answer = LETTERS.iter().position(|l| *l == fallback).unwrap_or(0);
        if let Some(right) = block.and_then(|b| self.key.get(b)) {
            answer = if unit(h(0xacc)) < self.accuracy {
                *right
            } else {
                (right + 1 + (h(0x3c0) % 3) as usize) % 4
            };
            if hit && unit(h(0xf11)) < self.flip_on_hit_rate {
                // Away from the right answer, and from the one given.
                let wrong = (0..4).filter(|i| i != right && *i != answer);
                let choices: Vec<usize> = wrong.collect();
                answer = choices[(h(0xf12) % choices.len() as u64) as usize];
            }
        } else if hit && unit(h(0xf11)) < self.flip_on_hit_rate {
            answer = (answer + 1 + (h(0xf12) % 3) as usize) % 4;
        }
        LETTERS[answer]
    }
}

/// A hash as a uniform draw in [0, 1).
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The prompt's last question with its four choices: from the paragraph
/// break before it to the end of its `D.` line.
fn last_question(prompt: &str) -> Option<&str> {
    let d = prompt.rfind("\nD. ")?;
    let end = prompt[d + 1..]
        .find('\n')
        .map_or(prompt.len(), |i| d + 1 + i);
    let start = prompt[..d].rfind("\n\n").map_or(0, |i| i + 2);
    Some(&prompt[start..end])
}

fn read_key(dir: &Path) -> Result<HashMap<String, usize>, KeyError> {
    let err = |path: &Path, message: String| KeyError {
        path: path.to_path_buf(),
        message,
    };
    let mut files: Vec<PathBuf> = if dir.is_file() {
        vec![dir.to_path_buf()]
    } else {
        std::fs::read_dir(dir)
            .map_err(|e| err(dir, e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "csv"))
            .collect()
    };
    files.sort();
    if files.is_empty() {
        return Err(err(dir, "no .csv files in it".into()));
    }
    let mut key = HashMap::new();
    for file in files {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_path(&file)
            .map_err(|e| err(&file, e.to_string()))?;
        for (i, row) in reader.records().enumerate() {
            let row = row.map_err(|e| err(&file, e.to_string()))?;
            let (Some(q), Some(answer)) = (row.get(0), row.get(5)) else {
                return Err(err(&file, format!("row {} has fewer than 6 fields", i + 1)));
            };
            let Some(right) = LETTERS.iter().position(|l| *l == answer.trim()) else {
                return Err(err(
                    &file,
                    format!("row {}: answer {answer:?} is not A-D", i + 1),
                ));
            };
            let block = format!(
                "{q}\nA. {}\nB. {}\nC. {}\nD. {}",
                &row[1], &row[2], &row[3], &row[4]
            );
            key.insert(block, right);
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(accuracy: f64, flips: f64) -> (Answers, Vec<(String, usize)>) {
        let dir = tempfile::tempdir().unwrap();
        let mut csv = String::new();
        let mut prompts = Vec::new();
        for i in 0..400 {
            let right = i % 4;
            csv.push_str(&format!(
                "\"Q{i}, really?\",w{i},x{i},y{i},z{i},{}\n",
                LETTERS[right]
            ));
            prompts.push((
                format!("Header.\n\nEx?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n\n\nQ{i}, really?\nA. w{i}\nB. x{i}\nC. y{i}\nD. z{i}\nAnswer:"),
                right,
            ));
        }
        std::fs::write(dir.path().join("s_test.csv"), csv).unwrap();
        (
            Answers::new(Some(dir.path()), accuracy, flips).unwrap(),
            prompts,
        )
    }

    fn accuracy(a: &Answers, prompts: &[(String, usize)], hit: bool) -> f64 {
        let right = prompts
            .iter()
            .filter(|(p, r)| a.letter(p, "A", hit) == LETTERS[*r])
            .count();
        right as f64 / prompts.len() as f64
    }

    #[test]
    fn a_keyed_sim_is_as_accurate_as_asked_and_flips_cost_accuracy_on_hits() {
        let (a, prompts) = keyed(0.6, 0.0);
        assert_eq!(a.known_questions(), 400);
        let acc = accuracy(&a, &prompts, false);
        assert!((0.53..0.67).contains(&acc), "{acc}");
        assert_eq!(acc, accuracy(&a, &prompts, true), "no flips asked");
        let (f, _) = keyed(0.6, 0.25);
        assert_eq!(accuracy(&f, &prompts, false), acc, "flips need a hit");
        let flipped = accuracy(&f, &prompts, true);
        assert!(
            (acc - flipped) > 0.1 && (acc - flipped) < 0.2,
            "{acc} → {flipped}"
        );
    }

    #[test]
    fn a_bad_key_names_the_file_and_row() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.csv"), "q,a,b,c,d,E\n").unwrap();
        let e = Answers::new(Some(dir.path()), 0.6, 0.0).err().unwrap();
        assert!(
            e.to_string().contains("x.csv") && e.to_string().contains("row 1"),
            "{e}"
        );
        let empty = tempfile::tempdir().unwrap();
        let e = Answers::new(Some(empty.path()), 0.6, 0.0).err().unwrap();
        assert!(e.to_string().contains("no .csv files"), "{e}");
    }
}
