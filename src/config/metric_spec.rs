//! What a metric is, as a test kind declares it (its unit, its better
//! side, whether a bound holds in every trial, its own method), and the
//! engine counters the tool knows, declared the same way.

use crate::results::method::Method;
use crate::results::Better;

/// How a check on a metric weighs a test's trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Judged {
    /// On the value pooled over the trials.
    Mean,
    /// In every trial: the worst one is judged, so one trial without a
    /// single cache hit fails even when the others bring the mean up.
    EveryTrial,
}

/// One metric a test kind records (or an engine counter it reads): what
/// its checks may bound and how, declared rather than guessed from its
/// name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct MetricSpec {
    pub name: &'static str,
    /// As results record it (`s`, `%`, `requests`; `""` for a ratio).
    pub unit: &'static str,
    /// Which way is better; none for a count such as `requests`.
    pub better: Option<Better>,
    pub judged: Judged,
    /// The method the gate weighs a check on it by, where the kind has its
    /// own (for a relative check, or an absolute one, as the method is).
    pub method: Option<Method>,
}

impl MetricSpec {
    pub(crate) const fn new(name: &'static str, unit: &'static str) -> Self {
        Self {
            name,
            unit,
            better: None,
            judged: Judged::Mean,
            method: None,
        }
    }

    pub(crate) const fn smaller(self) -> Self {
        Self {
            better: Some(Better::Smaller),
            ..self
        }
    }

    pub(crate) const fn bigger(self) -> Self {
        Self {
            better: Some(Better::Bigger),
            ..self
        }
    }

    pub(crate) const fn every_trial(self) -> Self {
        Self {
            judged: Judged::EveryTrial,
            ..self
        }
    }

    pub(crate) const fn by(self, method: Method) -> Self {
        Self {
            method: Some(method),
            ..self
        }
    }

    /// The method of a check on it, relative or absolute, where it has one.
    pub(crate) fn method_for(&self, relative: bool) -> Option<Method> {
        self.method.filter(|m| m.relative() == relative)
    }
}

/// The engine counters (and the shares the tool computes of them) whose
/// meaning the tool knows: the hits that prove a cache served, judged in
/// every trial. vLLM 0.26's names, as `/metrics` served them on an H100
/// with LMCache 0.5.2 (`tests/fixtures/lm_eval-h100-reset/lmcache-after.prom`,
/// which a test holds this table to); LMCache 0.5.2's own `lmcache_mp_*`
/// counters there count no hits. Any other counter may be bounded too, on
/// its mean, with no better side.
pub(crate) const ENGINE_COUNTERS: &[MetricSpec] = {
    use MetricSpec as M;
    &[
        M::new("vllm:prefix_cache_hits_total", "tokens")
            .bigger()
            .every_trial(),
        M::new("vllm:external_prefix_cache_hits_total", "tokens")
            .bigger()
            .every_trial(),
        M::new(
            r#"vllm:prompt_tokens_by_source_total{source="external_kv_transfer"}"#,
            "tokens",
        )
        .bigger()
        .every_trial(),
        M::new("prefix_cache_hit_pct", "%").bigger().every_trial(),
        M::new("external_prefix_cache_hit_pct", "%")
            .bigger()
            .every_trial(),
    ]
};
