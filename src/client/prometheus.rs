//! Prometheus text exposition, as vLLM's and LMCache's `/metrics` serve
//! it: every sample summed per metric name (over its labels), comments and
//! lines that are not samples skipped. Hostile input is tolerated: a bad
//! line is passed over, never a panic, and the answer is bounded.

use indexmap::IndexMap;

/// At most this many distinct names are kept from one scrape.
const MAX_NAMES: usize = 10_000;

/// `name{labels} value [timestamp]` lines, summed per name.
pub(crate) fn parse(text: &str) -> IndexMap<String, f64> {
    let mut out: IndexMap<String, f64> = IndexMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = sample(line) else {
            continue;
        };
        if !out.contains_key(name) && out.len() >= MAX_NAMES {
            continue;
        }
        *out.entry(name.to_string()).or_insert(0.0) += value;
    }
    out
}

fn sample(line: &str) -> Option<(&str, f64)> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut rest = &line[name_end..];
    if let Some(labels) = rest.strip_prefix('{') {
        rest = &labels[label_end(labels)?..];
    }
    let value = rest.split_whitespace().next()?;
    let v = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse::<f64>().ok()?,
    };
    v.is_finite().then_some((name, v))
}

/// Where the label set that `labels` opens ends (just past its `}`),
/// honouring quoted values with escapes.
fn label_end(labels: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in labels.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i + 1),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn samples_are_summed_over_labels() {
        let text = r#"# HELP vllm:prefix_cache_hits_total Prefix cache hits, in tokens.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 1536.0
vllm:prefix_cache_hits_total{engine="1",model_name="a}b \"q\""} 512
lmcache_mp_l1_read_chunks_total 7 1700000000000
vllm:num_requests_running{engine="0"} NaN
garbage line here
"#;
        let m = parse(text);
        assert_eq!(m["vllm:prefix_cache_hits_total"], 2048.0);
        assert_eq!(m["lmcache_mp_l1_read_chunks_total"], 7.0);
        assert!(
            !m.contains_key("vllm:num_requests_running"),
            "NaN is no value"
        );
        assert!(!m.contains_key("garbage"));
    }

    proptest! {
        #[test]
        fn never_panics_and_keeps_only_finite_values(text in "\\PC{0,400}") {
            for v in parse(&text).values() {
                prop_assert!(v.is_finite());
            }
        }

        #[test]
        fn a_well_formed_sample_is_read_back(name in "[a-z_:][a-z0-9_:]{0,20}", v in -1e9f64..1e9, label in "[ -~]{0,10}") {
            let label = label.replace('\\', "\\\\").replace('"', "\\\"");
            let m = parse(&format!("{name}{{l=\"{label}\"}} {v}\n"));
            prop_assert!((m[&name] - v).abs() <= 1e-6 * v.abs().max(1.0));
        }
    }
}
