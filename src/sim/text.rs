//! Tokens and deterministic output text of the simulated engine.

/// Whitespace-separated words are the sim's tokens.
pub(super) fn tokenize(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

/// FNV-1a: stable across Rust versions and runs, unlike `DefaultHasher`.
pub(super) fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut hash = seed ^ 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Token id of a word, as `/tokenize` reports it.
pub(super) fn token_id(word: &str) -> u32 {
    (fnv1a(0, word.as_bytes()) % 32_000) as u32
}

const VOCAB: &[&str] = &[
    "the", "cache", "answer", "is", "A", "B", "C", "D", "document", "token", "prefix", "model",
    "of", "and", "to", "in", "value", "layer", "key", "query", "result", "with", "for", "on",
    "store", "load", "chunk", "hit", "miss", "engine", "fast", "slow",
];

/// Output words for a prompt: a pure function of the prompt text and `variant`
/// (0 normally; another value models corrupted KV).
pub(super) fn output_words(prompt: &str, n: usize, variant: u64) -> Vec<&'static str> {
    let mut state = fnv1a(variant, prompt.as_bytes());
    let mut words: Vec<&'static str> = (0..n)
        .map(|_| {
            // splitmix64 step: cheap and well mixed.
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            VOCAB[(z % VOCAB.len() as u64) as usize]
        })
        .collect();
    // A multiple-choice prompt (MMLU's "Answer:" cue) gets a letter first,
    // as an instruction-tuned model gives it.
    if prompt.trim_end().ends_with("Answer:") {
        if let Some(first) = words.first_mut() {
            *first = ["A", "B", "C", "D"][(fnv1a(variant ^ 0xa11, prompt.as_bytes()) % 4) as usize];
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_a_function_of_the_prompt() {
        assert_eq!(
            output_words("hello world", 8, 0),
            output_words("hello world", 8, 0)
        );
        assert_ne!(
            output_words("hello world", 8, 0),
            output_words("hello there", 8, 0)
        );
        assert_ne!(
            output_words("hello world", 8, 0),
            output_words("hello world", 8, 1)
        );
        assert_eq!(output_words("x", 5, 0).len(), 5);
    }

    #[test]
    fn multiple_choice_prompts_are_answered_with_a_letter() {
        let letters: Vec<&str> = (0..40)
            .map(|i| output_words(&format!("Q{i}?\nAnswer:"), 2, 0)[0])
            .collect();
        assert!(letters.iter().all(|l| ["A", "B", "C", "D"].contains(l)));
        assert!(
            ["A", "B", "C", "D"].iter().all(|l| letters.contains(l)),
            "all letters occur"
        );
        let corrupted = (0..40)
            .filter(|i| output_words(&format!("Q{i}?\nAnswer:"), 2, 1)[0] != letters[*i])
            .count();
        assert!(
            corrupted > 10,
            "corrupt KV changes many answers: {corrupted}"
        );
    }

    #[test]
    fn tokens_are_whitespace_words() {
        assert_eq!(tokenize(" 0 hi\nhi\thi "), vec!["0", "hi", "hi", "hi"]);
    }
}
