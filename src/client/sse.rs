//! Incremental parser of a `text/event-stream` body into the `data` of each
//! event, robust to events split across network reads and to CRLF.

#[derive(Default)]
pub(crate) struct SseParser {
    buf: Vec<u8>,
}

impl SseParser {
    /// Feeds bytes; returns the data of every event completed by them.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.buf.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some((end, sep)) = find_boundary(&self.buf) {
            let raw: Vec<u8> = self.buf.drain(..end + sep).collect();
            let text = String::from_utf8_lossy(&raw[..end]);
            let mut data: Vec<&str> = Vec::new();
            for line in text.split('\n') {
                let line = line.strip_suffix('\r').unwrap_or(line);
                if let Some(rest) = line.strip_prefix("data:") {
                    data.push(rest.strip_prefix(' ').unwrap_or(rest));
                }
            }
            if !data.is_empty() {
                events.push(data.join("\n"));
            }
        }
        events
    }
}

/// Position and length of the first blank line ending an event.
fn find_boundary(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2));
    let crlf = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| (p, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    mod fuzz_stream {
        use super::*;
        use crate::results::fuzz::{mutated, timed};
        use proptest::prelude::{any, proptest};

        proptest! {
            // However the network splits a stream, the events are the same.
            #[test]
            fn fuzz_sse_stream(
                bytes in mutated(include_bytes!("../../tests/fixtures/fuzz/stream.sse")),
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
            ) {
                let whole = timed("an event stream", || SseParser::default().push(&bytes));
                let mut at: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
                at.sort_unstable();
                let mut p = SseParser::default();
                let mut split = Vec::new();
                let mut from = 0;
                for to in at.into_iter().chain([bytes.len()]) {
                    split.extend(p.push(&bytes[from..to]));
                    from = to;
                }
                assert_eq!(whole, split);
            }
        }
    }

    #[test]
    fn events_split_across_reads_are_reassembled() {
        let mut p = SseParser::default();
        assert!(p.push(b"data: {\"a\"").is_empty());
        assert_eq!(p.push(b":1}\n\ndata: [DO"), vec!["{\"a\":1}"]);
        assert_eq!(p.push(b"NE]\n\n"), vec!["[DONE]"]);
    }

    #[test]
    fn crlf_comments_and_multiline_data() {
        let mut p = SseParser::default();
        let got = p.push(b": keep-alive\r\n\r\ndata:x\r\ndata: y\r\n\r\n");
        assert_eq!(got, vec!["x\ny"]);
    }
}
