//! MMLU prompts and answer parsing, with the exact text of LMCache's
//! correctness suite (`lmcache`: `mmlu-test.py`; `lmcache_http`: its older
//! HTTP scripts) and of Dynamo's `tests/lmcache/` (`dynamo`).

use super::data::Question;
use serde::{Deserialize, Serialize};

/// Which suite's prompts and answer budget a test reproduces.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Variant {
    /// `.buildkite/correctness/mmlu-test.py`, as LMCache runs it today.
    #[default]
    Lmcache,
    /// The older HTTP scripts of the same suite (a bare `Answer:` cue,
    /// three tokens).
    LmcacheHttp,
    /// Dynamo's `tests/lmcache/`.
    Dynamo,
}

impl Variant {
    /// `max_tokens` each suite asks for.
    pub(crate) fn max_tokens(self) -> u32 {
        match self {
            Variant::Lmcache => 2,
            Variant::LmcacheHttp | Variant::Dynamo => 3,
        }
    }
}

/// The text before the model's answer, as each suite ends its prompts.
fn answer_cue(variant: Variant) -> &'static str {
    match variant {
        Variant::Lmcache => "\n You must answer with a single letter only. Either \"A\", \"B\", \"C\", or \"D\". Do not include any other text in your response. Answer:",
        Variant::LmcacheHttp => "\nAnswer:",
        Variant::Dynamo => "\nRespond with **only the letter** (A, B, C, D).  Do **not** output any explanation, analysis, or extra words. Answer:",
    }
}

/// Subject as shown in a prompt: `high_school_physics` → `high school physics`.
pub(crate) fn display_subject(subject: &str) -> String {
    subject.replace('_', " ")
}

/// The header of a subject's prompt. The reference scripts also carry runs
/// of spaces from backslash-continued f-strings; those are artefacts, not
/// part of the instruction, and are left out.
pub(crate) fn header(variant: Variant, subject: &str) -> String {
    let subject = display_subject(subject);
    match variant {
        Variant::Lmcache | Variant::LmcacheHttp => format!(
            "The following are multiple choice questions (with answers) about {subject}. You must respond with a single letter only. Either \"A\", \"B\", \"C\", or \"D\". Do not include any other text in your response. \n\n"
        ),
        Variant::Dynamo => format!("The following are multiple choice questions (with answers) about {subject}. \n\n"),
    }
}

/// One question with its choices and the answer cue, plus ` {answer}\n\n`
/// when it is a few-shot example.
pub(crate) fn format_example(variant: Variant, q: &Question, with_answer: bool) -> String {
    let [a, b, c, d] = &q.choices;
    let mut s = format!(
        "{}\nA. {a}\nB. {b}\nC. {c}\nD. {d}{}",
        q.question,
        answer_cue(variant)
    );
    if with_answer {
        s.push_str(&format!(" {}\n\n", q.answer));
    }
    s
}

/// `header_and_examples + "\n\n" + question`, as the reference builds it.
pub(crate) fn prompt(header_and_examples: &str, variant: Variant, q: &Question) -> String {
    format!(
        "{header_and_examples}\n\n{}",
        format_example(variant, q, false)
    )
}

/// The reference's parser: the stripped text's first character if it is a
/// letter A-D, else the first A-D anywhere, else "A".
pub(crate) fn parse_answer(text: &str) -> char {
    let t = text.trim();
    match t.chars().next() {
        Some(c @ 'A'..='D') => c,
        _ => t.chars().find(|c| matches!(c, 'A'..='D')).unwrap_or('A'),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first question of a real subject with its five dev examples.
    fn real_prompt(variant: Variant, subject: &str) -> String {
        let archive = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/data/mmlu/data.tar.xz");
        let dir = tempfile::tempdir().unwrap();
        let data = crate::workload::mmlu::data::prepare(&archive, dir.path())
            .unwrap()
            .data_dir;
        let read = |kind: &str| {
            crate::workload::mmlu::data::read_questions(
                &data.join(kind).join(format!("{subject}_{kind}.csv")),
            )
            .unwrap()
        };
        let mut head = header(variant, subject);
        for ex in read("dev").iter().take(5) {
            head.push_str(&format_example(variant, ex, true));
        }
        prompt(&head, variant, &read("test")[0])
    }

    #[test]
    fn prompts_on_real_subjects() {
        insta::assert_snapshot!(
            "lmcache_high_school_physics",
            real_prompt(Variant::Lmcache, "high_school_physics")
        );
        insta::assert_snapshot!(
            "dynamo_abstract_algebra",
            real_prompt(Variant::Dynamo, "abstract_algebra")
        );
    }

    #[test]
    fn answer_parser_matches_the_reference() {
        assert_eq!(parse_answer(" B"), 'B');
        assert_eq!(parse_answer("\n C."), 'C');
        assert_eq!(parse_answer("The answer is D"), 'D');
        assert_eq!(parse_answer("the answer is D"), 'D');
        assert_eq!(
            parse_answer("Answer: B"),
            'A',
            "a leading A counts, as in the reference"
        );
        assert_eq!(parse_answer("none"), 'A', "no letter at all scores as A");
        assert_eq!(parse_answer(""), 'A');
        assert_eq!(parse_answer("  d"), 'A', "lowercase is not a letter answer");
        assert_eq!(parse_answer("xyzC"), 'C');
    }
}
