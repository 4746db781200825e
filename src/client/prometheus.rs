//! Prometheus text exposition, as vLLM's and LMCache's `/metrics` serve
//! it: every sample summed per metric name (over its labels, except the
//! labels that split a metric into parts worth keeping apart), comments and
//! lines that are not samples skipped. Hostile input is tolerated: a bad
//! line is passed over, never a panic, and the answer is bounded.

use indexmap::IndexMap;

/// At most this many distinct names are kept from one scrape.
const MAX_NAMES: usize = 10_000;

/// Metrics whose parts mean different things, and the label that names
/// the part: vLLM 0.26's prompt tokens by where they came from (computed,
/// the GPU's prefix cache, a KV connector such as LMCache). Summed over
/// `source` they are just the prompt tokens, and the proof is lost.
const KEPT_APART: &[(&str, &str)] = &[("vllm:prompt_tokens_by_source_total", "source")];

/// `name{labels} value [timestamp]` lines, summed per name; a metric of
/// [`KEPT_APART`] per part, as `name{label="part"}`.
pub(crate) fn parse(text: &str) -> IndexMap<String, f64> {
    let mut out: IndexMap<String, f64> = IndexMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, labels, value)) = sample(line) else {
            continue;
        };
        let key = match KEPT_APART.iter().find(|(n, _)| *n == name) {
            Some((_, label)) => match label_value(labels, label) {
                Some(part) => format!("{name}{{{label}=\"{part}\"}}"),
                None => name.to_string(),
            },
            None => name.to_string(),
        };
        if !out.contains_key(&key) && out.len() >= MAX_NAMES {
            continue;
        }
        *out.entry(key).or_insert(0.0) += value;
    }
    out
}

/// A sample's name, its label set's text (between the braces) and value.
fn sample(line: &str) -> Option<(&str, &str, f64)> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut label_text = "";
    if let Some(labels) = rest.strip_prefix('{') {
        let end = label_end(labels)?;
        label_text = &labels[..end - 1];
        rest = &labels[end..];
    }
    let value = rest.split_whitespace().next()?;
    let v = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse::<f64>().ok()?,
    };
    v.is_finite().then_some((name, label_text, v))
}

/// The value of `label` in a label set's text, if it is a plain one (no
/// escapes; a part name worth keeping has none), at most 64 characters.
fn label_value<'a>(labels: &'a str, label: &str) -> Option<&'a str> {
    let mut rest = labels;
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        let (key, after) = rest.split_once('=')?;
        let after = after.strip_prefix('"')?;
        let mut escaped = false;
        let mut close = None;
        for (i, c) in after.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    close = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let close = close?;
        let value = &after[..close];
        if key.trim() == label {
            let plain = !value.contains('\\') && value.len() <= 64;
            return plain.then_some(value);
        }
        rest = &after[close + 1..];
    }
}

/// Tokens the engine's GPU KV cache holds, as vLLM 0.26's
/// `vllm:cache_config_info` says: its `kv_cache_size_tokens` label, else
/// `num_gpu_blocks` × `block_size`; summed over engines (data parallel).
pub(crate) fn kv_cache_tokens(text: &str) -> Option<u64> {
    let mut total: Option<u64> = None;
    for line in text.lines().map(str::trim) {
        if !line.starts_with("vllm:cache_config_info{") {
            continue;
        }
        let Some((_, labels, _)) = sample(line) else {
            continue;
        };
        let number = |label: &str| {
            label_value(labels, label)?
                .parse::<u64>()
                .ok()
                .filter(|v| *v > 0)
        };
        let tokens = number("kv_cache_size_tokens")
            .or_else(|| number("num_gpu_blocks")?.checked_mul(number("block_size")?));
        if let Some(t) = tokens {
            total = Some(total.unwrap_or(0).saturating_add(t));
        }
    }
    total
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
    fn the_kv_capacity_is_read_from_vllms_cache_config() {
        // vLLM 0.26 on an H200 at 0.25 of its memory (tests/fixtures/vllm).
        let h200 = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/vllm/metrics-baseline-before.prom"
        ))
        .unwrap();
        assert_eq!(kv_cache_tokens(&h200), Some(163_792));
        // Without the tokens label: blocks × block size.
        let older =
            r#"vllm:cache_config_info{block_size="16",engine="0",num_gpu_blocks="2048"} 1.0"#;
        assert_eq!(kv_cache_tokens(older), Some(32_768));
        assert_eq!(
            kv_cache_tokens(r#"vllm:cache_config_info{num_gpu_blocks="None"} 1.0"#),
            None
        );
        assert_eq!(kv_cache_tokens("process_start_time_seconds 1.7e9"), None);
    }

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

    #[test]
    fn prompt_tokens_by_source_keep_their_sources() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/vllm/metrics-lmcache-after.prom"
        ))
        .unwrap();
        let m = parse(&text);
        let part = |s: &str| m[&format!("vllm:prompt_tokens_by_source_total{{source=\"{s}\"}}")];
        let sum = part("local_compute") + part("local_cache_hit") + part("external_kv_transfer");
        assert_eq!(
            sum, m["vllm:prompt_tokens_total"],
            "the parts add up to the prompt tokens"
        );
        assert!(!m.contains_key("vllm:prompt_tokens_by_source_total"));
        assert_eq!(
            label_value(
                r#"engine="0",model_name="/root/model",source="local_cache_hit""#,
                "source"
            ),
            Some("local_cache_hit")
        );
        assert_eq!(
            label_value(r#"a="x\",source=\"y",source="z""#, "source"),
            Some("z")
        );
        assert_eq!(label_value(r#"a="x\"y",source="z""#, "nope"), None);
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
