//! How every report writes figures, outcomes and outside text: numbers with
//! their units, intervals and p-values, each outcome's icon and the order of
//! verdicts, and text from users, servers and logs made inert for Markdown,
//! fenced blocks and links. Below every renderer, so none of them imports
//! another for a helper.

use crate::results::{CheckKind, CheckOutcome, RunResults, RunStatus, TestStatus, Verdict};

/// An outcome as every report marks it: a check's verdict, a test's or a
/// run's status. The one place each gets its icon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mark {
    Pass,
    Warning,
    Flaky,
    Inconclusive,
    Fail,
    Error,
    Interrupted,
    NotRun,
    Running,
}

impl Mark {
    pub(crate) fn icon(self) -> &'static str {
        match self {
            Mark::Pass => "✅",
            Mark::Warning => "⚠️",
            Mark::Flaky => "🔁",
            Mark::Inconclusive => "❔",
            Mark::Fail => "❌",
            Mark::Error => "💥",
            Mark::Interrupted => "🛑",
            Mark::NotRun => "⏭️",
            Mark::Running => "⏳",
        }
    }
}

impl From<Verdict> for Mark {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Pass => Mark::Pass,
            Verdict::Warning => Mark::Warning,
            Verdict::Flaky => Mark::Flaky,
            Verdict::Inconclusive => Mark::Inconclusive,
            Verdict::Fail => Mark::Fail,
        }
    }
}

impl From<TestStatus> for Mark {
    fn from(s: TestStatus) -> Self {
        match s {
            TestStatus::Passed => Mark::Pass,
            TestStatus::Warning => Mark::Warning,
            TestStatus::Flaky => Mark::Flaky,
            TestStatus::Inconclusive => Mark::Inconclusive,
            TestStatus::Failed => Mark::Fail,
            TestStatus::Error => Mark::Error,
            TestStatus::Interrupted => Mark::Interrupted,
            TestStatus::NotRun => Mark::NotRun,
            TestStatus::Running => Mark::Running,
        }
    }
}

impl From<RunStatus> for Mark {
    fn from(s: RunStatus) -> Self {
        match s {
            RunStatus::Passed => Mark::Pass,
            RunStatus::Inconclusive => Mark::Inconclusive,
            RunStatus::Failed => Mark::Fail,
            RunStatus::Interrupted => Mark::Interrupted,
            RunStatus::Error => Mark::Error,
            RunStatus::Running => Mark::Running,
        }
    }
}

/// Worst first, as every report lists verdicts: a flaky pass (a hard check
/// failed once) before a warning (a soft check failed).
pub(crate) fn verdict_rank(v: Verdict) -> u8 {
    match v {
        Verdict::Fail => 0,
        Verdict::Inconclusive => 1,
        Verdict::Flaky => 2,
        Verdict::Warning => 3,
        Verdict::Pass => 4,
    }
}

/// The most characters of one piece of outside text a report shows (a
/// name, a message, a note): results.json may come from anyone.
pub(crate) const MAX_TEXT_CHARS: usize = 2000;

/// Makes text from users, servers and logs inert in Markdown: no column
/// breaks, no HTML, no emphasis, links or headings, and no control or
/// bidirectional-override characters (a terminal or a reader would obey
/// them); cut to [`MAX_TEXT_CHARS`].
pub(crate) fn md_escape(s: &str) -> String {
    cleaned(s, |ch, out| match ch {
        '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '!' | '~' | '&' => {
            out.push('\\');
            out.push(ch);
        }
        _ => out.push(ch),
    })
}

/// `s` cut to [`MAX_TEXT_CHARS`], without controls and bidirectional
/// overrides, white space made one line, every other character as `put`
/// writes it.
fn cleaned(s: &str, put: impl Fn(char, &mut String)) -> String {
    let mut out = String::with_capacity(s.len().min(4 * MAX_TEXT_CHARS));
    for (i, ch) in s.chars().enumerate() {
        if i == MAX_TEXT_CHARS {
            out.push('…');
            break;
        }
        match ch {
            '\n' | '\r' | '\t' => out.push(' '),
            c if inert(c) => {}
            c => put(c, &mut out),
        }
    }
    out
}

/// Text for raw HTML such as `<summary>`, where GitHub applies no
/// Markdown (a backslash escape would show as a backslash): entities for
/// what HTML reads, nothing else, cut and cleaned as [`md_escape`].
pub(crate) fn html_text(s: &str) -> String {
    cleaned(s, |ch, out| match ch {
        '<' => out.push_str("&lt;"),
        '>' => out.push_str("&gt;"),
        '&' => out.push_str("&amp;"),
        '|' => out.push_str("&#124;"),
        _ => out.push(ch),
    })
}

/// Characters no report shows: controls (a terminal obeys ESC) and the
/// bidirectional overrides that make text read otherwise than it is.
pub(crate) fn inert(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Log lines go into a fenced block: only a fence could break out of it;
/// control characters are dropped and each line cut as text is.
pub(crate) fn fence_safe(s: &str) -> String {
    let clean: String = s
        .chars()
        .filter(|c| *c == '\t' || !inert(*c))
        .take(MAX_TEXT_CHARS)
        .collect();
    clean.replace("```", "ˋˋˋ").replace("~~~", "˜˜˜")
}

/// A URL for a Markdown link target: only http(s), and no character that
/// could end the link.
pub(crate) fn link_target(url: &str) -> Option<String> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return None;
    }
    Some(
        url.chars()
            .map(|c| match c {
                '(' => "%28".to_string(),
                ')' => "%29".to_string(),
                ' ' => "%20".to_string(),
                '<' => "%3C".to_string(),
                '>' => "%3E".to_string(),
                '"' => "%22".to_string(),
                c if c.is_control() => String::new(),
                c => c.to_string(),
            })
            .collect(),
    )
}

/// Text inside backticks: nothing that could close them or break a line.
pub(crate) fn code_safe(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '`' && !inert(*c))
        .take(200)
        .collect()
}

pub(crate) fn number(v: f64, unit: &str) -> String {
    if v.is_nan() {
        return "–".to_string();
    }
    // Counts (requests, tokens) read best without decimals; times with three.
    let digits = if unit != "s" && unit != "%" && v.fract() == 0.0 {
        0
    } else if v.abs() >= 100.0 {
        1
    } else if v.abs() >= 1.0 {
        2
    } else {
        3
    };
    match unit {
        "" => format!("{v:.digits$}"),
        "%" => format!("{v:+.1} %"),
        u => format!("{v:.digits$} {u}"),
    }
}

/// What a check's value rests on: its interval, n and p, or that it is a
/// single comparison with no interval.
pub(crate) fn evidence(c: &CheckOutcome) -> String {
    let unit = if c.kind == CheckKind::Relative {
        "%"
    } else {
        ""
    };
    let mut parts = Vec::new();
    match c.interval {
        Some(i) => parts.push(format!(
            "{:.0} % CI {} … {}",
            i.level * 100.0,
            number(i.low, unit).trim_start_matches('+'),
            number(i.high, unit).trim_start_matches('+')
        )),
        None if c.kind == CheckKind::Relative => parts.push("no interval: 1 trial".into()),
        None => {}
    }
    match (c.worst_trial, c.n) {
        (Some(t), Some(n)) => parts.push(format!("every trial: worst is trial {t} of {n}")),
        (None, Some(n)) => parts.push(format!("n = {n}")),
        _ => {}
    }
    if let Some(p) = c.p {
        parts.push(match p_value(p) {
            small if small.starts_with('<') => format!("p {small}"),
            p => format!("p = {p}"),
        });
    }
    if parts.is_empty() {
        "–".into()
    } else {
        parts.join(" · ")
    }
}

/// One line on the statistics behind the run's verdicts: the methods the
/// intervals came from and how the hard checks shared their false-alarm
/// budget. None when no check has an interval.
pub(crate) fn statistics(results: &RunResults) -> Option<String> {
    let mut methods: Vec<&str> = Vec::new();
    for c in results.tests.iter().flat_map(|t| &t.checks) {
        if let Some(m) = c.method.as_deref() {
            if !methods.contains(&m) {
                methods.push(m);
            }
        }
    }
    if methods.is_empty() && results.family.is_none() {
        return None;
    }
    let mut line = format!("95 % intervals: {}.", methods.join("; "));
    if let Some(f) = &results.family {
        line.push_str(&match f.method.as_str() {
            "holm" => format!(
                " Holm over the run's {} hard check{} with intervals: one false-alarm budget of {:.0} %.",
                f.checks,
                if f.checks == 1 { "" } else { "s" },
                f.alpha * 100.0
            ),
            _ => format!(
                " Hard checks with intervals: {}, each judged alone (`run.holm = false`).",
                f.checks
            ),
        });
        if !f.softened.is_empty() {
            line.push_str(&format!(
                " Not beyond their threshold after it: {}.",
                f.softened.join(", ")
            ));
        }
    }
    Some(line)
}

/// A p-value as people read it: three decimals, or `< 0.001`.
pub(crate) fn p_value(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("{p:.3}")
    }
}

pub(crate) fn opt_number(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "–".to_string(), |v| number(v, unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_icon_per_outcome_and_verdicts_and_statuses_share_them() {
        let all = [
            Mark::Pass,
            Mark::Warning,
            Mark::Flaky,
            Mark::Inconclusive,
            Mark::Fail,
            Mark::Error,
            Mark::Interrupted,
            Mark::NotRun,
            Mark::Running,
        ];
        let icons: std::collections::BTreeSet<&str> = all.iter().map(|m| m.icon()).collect();
        assert_eq!(icons.len(), all.len());
        let pairs = [
            (Verdict::Pass, TestStatus::Passed),
            (Verdict::Warning, TestStatus::Warning),
            (Verdict::Flaky, TestStatus::Flaky),
            (Verdict::Inconclusive, TestStatus::Inconclusive),
            (Verdict::Fail, TestStatus::Failed),
        ];
        for (v, s) in pairs {
            assert_eq!(Mark::from(v), Mark::from(s));
        }
        assert_eq!(Mark::from(RunStatus::Failed), Mark::Fail);
        // Worst first: a flaky pass before a warning.
        let mut order = [
            Verdict::Pass,
            Verdict::Warning,
            Verdict::Flaky,
            Verdict::Fail,
        ];
        order.sort_by_key(|v| verdict_rank(*v));
        assert_eq!(
            order,
            [
                Verdict::Fail,
                Verdict::Flaky,
                Verdict::Warning,
                Verdict::Pass
            ]
        );
    }
}
