//! An engine log's WARNING and ERROR lines, counted by kind: a line with
//! its numbers masked is one kind, so 2,340 "Pin count of MemoryObj … is
//! negative" warnings read as one finding with its count, not a flood.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::results::{LogFindings, LogKind};

/// Kinds kept, the most frequent first.
const TOP: usize = 5;
/// Read at most this much of a log: a runaway engine must not stall the
/// report.
const MAX_BYTES: u64 = 256 * 1024 * 1024;
/// A line shown is cut to this many characters.
const MAX_LINE: usize = 300;

/// The level a log line is written at, as vLLM (`WARNING 12-02 …`),
/// LMCache (`LMCache WARNING:`) and Python's logging (`WARNING:name:`)
/// write it.
fn level(line: &str) -> Option<&'static str> {
    // The first level word of the head decides: an INFO line that quotes
    // "ERROR" later is not an error line.
    let head: String = line.chars().take(80).collect();
    let words = head.split(|c: char| !c.is_ascii_alphabetic());
    for w in words {
        match w {
            "WARNING" | "WARN" => return Some("WARNING"),
            "ERROR" | "CRITICAL" | "FATAL" => return Some("ERROR"),
            "INFO" | "DEBUG" | "TRACE" => return None,
            _ => {}
        }
    }
    None
}

/// What makes two lines the same kind: the text after the level, with
/// digit runs and hex ids masked (timestamps, PIDs, sizes, addresses).
fn kind_of(line: &str, level: &str) -> String {
    let word = if level == "ERROR" && !line.contains("ERROR") {
        ["CRITICAL", "FATAL"]
            .into_iter()
            .find(|w| line.contains(w))
            .unwrap_or(level)
    } else if level == "WARNING" && !line.contains("WARNING") {
        "WARN"
    } else {
        level
    };
    let rest = line.find(word).map_or(line, |i| &line[i + word.len()..]);
    let mut out = String::with_capacity(rest.len());
    let mut in_number = false;
    for c in rest.chars() {
        if c.is_ascii_hexdigit() && (c.is_ascii_digit() || in_number) {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

/// Counts the log's warnings and errors; `None` when it cannot be read.
pub(crate) fn scan(path: &Path) -> Option<LogFindings> {
    let file = std::fs::File::open(path).ok()?;
    Some(scan_reader(BufReader::new(file.take(MAX_BYTES))))
}

fn scan_reader(reader: impl BufRead) -> LogFindings {
    let mut findings = LogFindings::default();
    // kind → (level, count, first line, first seen)
    let mut kinds: HashMap<String, (&'static str, u64, String, usize)> = HashMap::new();
    for (n, line) in reader.split(b'\n').map_while(Result::ok).enumerate() {
        let line = crate::results::strip_ansi(&String::from_utf8_lossy(&line));
        let Some(level) = level(&line) else {
            continue;
        };
        match level {
            "ERROR" => findings.errors += 1,
            _ => findings.warnings += 1,
        }
        let entry = kinds
            .entry(kind_of(&line, level))
            .or_insert_with(|| (level, 0, line.chars().take(MAX_LINE).collect(), n));
        entry.1 += 1;
    }
    let mut top: Vec<_> = kinds.into_values().collect();
    // Errors before warnings, then the most frequent, then the earliest.
    top.sort_by(|a, b| {
        (b.0 == "ERROR")
            .cmp(&(a.0 == "ERROR"))
            .then(b.1.cmp(&a.1))
            .then(a.3.cmp(&b.3))
    });
    findings.top = top
        .into_iter()
        .take(TOP)
        .map(|(level, count, example, _)| LogKind {
            level: level.to_string(),
            count,
            example,
        })
        .collect();
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::proptest;

    fn scan_text(text: &str) -> LogFindings {
        scan_reader(text.as_bytes())
    }

    #[test]
    fn repeated_warnings_are_one_kind_with_their_count() {
        let mut log = String::from(
            "(APIServer pid=811) INFO 12-02 06:10:01 [api_server.py:1] Starting vLLM API server 0 on http://127.0.0.1:8000\n",
        );
        for i in 0..2340 {
            log.push_str(&format!(
                "[2026-12-02 06:12:{:02},{i:03}] LMCache WARNING: Pin count of MemoryObj {} is negative: -1. Double unpin occurred somewhere (memory_management.py:426:lmcache.v1.memory_management)\n",
                i % 60,
                0x7f00_0000 + i
            ));
        }
        log.push_str(
            "(EngineCore pid=902) ERROR 12-02 06:13:00 [core.py:800] EngineCore failed to start.\n",
        );
        log.push_str(
            "(APIServer pid=811) INFO 12-02 06:13:00 [x.py:1] an INFO line that quotes ERROR\n",
        );
        let f = scan_text(&log);
        assert_eq!((f.warnings, f.errors), (2340, 1));
        assert_eq!(f.top.len(), 2);
        assert_eq!(f.top[0].level, "ERROR", "errors first");
        assert!(f.top[0].example.contains("EngineCore failed to start"));
        assert_eq!(f.top[1].count, 2340);
        assert!(f.top[1].example.contains("Pin count of MemoryObj"));
    }

    /// vLLM 0.26's start and stop and LMCache 0.5.2's engine lines as the
    /// H200 wrote them (colours and all).
    #[test]
    fn real_vllm_and_lmcache_logs_are_counted() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/vllm/");
        let start = scan(Path::new(&format!("{dir}vllm-start.log"))).unwrap();
        assert_eq!((start.warnings, start.errors), (3, 0), "{start:?}");
        assert!(start
            .top
            .iter()
            .any(|k| k.example.contains("No FlashInfer autotune cache entries")));
        let stop = scan(Path::new(&format!("{dir}vllm-stop.log"))).unwrap();
        assert_eq!(stop.warnings, 1);
        assert!(stop.top[0]
            .example
            .contains("force killing remaining processes count=1"));
        let lmcache = scan(Path::new(&format!("{dir}lmcache-engine.log"))).unwrap();
        let unpin = lmcache
            .top
            .iter()
            .find(|k| k.example.contains("Double unpin"))
            .expect("the double unpin warnings, as one kind");
        assert!(
            unpin.count > 1 && !unpin.example.contains('\u{1b}'),
            "{unpin:?}"
        );
    }

    #[test]
    fn python_logging_and_warn_spellings_count() {
        let f = scan_text(
            "WARNING:root:something\nWARN something else 12\nCRITICAL: out of memory\nplain line\n",
        );
        assert_eq!((f.warnings, f.errors), (2, 1));
    }

    proptest! {
        #[test]
        fn any_bytes_scan_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
            let f = scan_reader(&bytes[..]);
            assert!(f.top.len() <= TOP);
            assert!(f.top.iter().map(|k| k.count).sum::<u64>() <= f.warnings + f.errors);
        }
    }
}
