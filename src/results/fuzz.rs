//! Test-only: inputs for the property tests of every reader of outside
//! bytes (`fuzz_*`), made by mutating a valid seed (a committed corpus of
//! one file per reader) so the cases reach past the first parse error, and
//! the budget they share. `PROPTEST_CASES` sets how many cases each runs:
//! the default (256) in `.ci/run`, many more in the long run the README
//! documents.

use std::time::{Duration, Instant};

use proptest::prelude::{any, prop_oneof, Just, Strategy};

/// The longest one case may take: a reader that slows down on some input
/// is a hang waiting for a larger one.
pub(crate) const PER_CASE: Duration = Duration::from_secs(2);

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, u8),
    Delete(usize),
    Replace(usize, u8),
    /// Repeats a slice, as a copy-paste or a doubled field would.
    Duplicate(usize, usize),
    Truncate(usize),
}

/// Bytes a hostile writer could produce from `seed`: up to 16 random
/// edits, with bytes biased towards the seed's own syntax.
pub(crate) fn mutated(seed: &'static [u8]) -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        any::<u8>(),
        proptest::sample::select(b"{}[]\",:\\\n\r\t =#'<>-0123456789.eE+/".to_vec()),
        Just(0u8),
        Just(0xffu8),
    ];
    let edit = prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), byte).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Duplicate(i, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ];
    proptest::collection::vec(edit, 0..16).prop_map(move |edits| {
        let mut b = seed.to_vec();
        for e in edits {
            let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
            match e {
                Edit::Insert(i, x) => {
                    let i = at(i, b.len() + 1);
                    b.insert(i, x);
                }
                Edit::Delete(i) if !b.is_empty() => {
                    let i = at(i, b.len());
                    b.remove(i);
                }
                Edit::Replace(i, x) if !b.is_empty() => {
                    let i = at(i, b.len());
                    b[i] = x;
                }
                Edit::Duplicate(i, n) if !b.is_empty() => {
                    let i = at(i, b.len());
                    let end = (i + n).min(b.len());
                    let piece = b[i..end].to_vec();
                    b.splice(i..i, piece);
                }
                Edit::Truncate(i) => {
                    let i = at(i, b.len() + 1);
                    b.truncate(i);
                }
                _ => {}
            }
        }
        b
    })
}

/// Runs `read` on one case and fails if it took longer than [`PER_CASE`].
pub(crate) fn timed<T>(what: &str, read: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = read();
    assert!(
        start.elapsed() < PER_CASE,
        "{what} took {:?} on one input",
        start.elapsed()
    );
    out
}
