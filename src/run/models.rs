//! The names a run gives its models and tests: a suite of several models
//! runs each test once per model, recorded as `test@label`.

use crate::config;

/// Each model to run, with the label its names carry when there are several.
pub(crate) fn models_of(run: &config::RunConfig) -> Vec<(String, Option<String>)> {
    if run.models.is_empty() {
        return vec![(run.model.clone(), None)];
    }
    let label =
        |m: &String| (run.models.len() > 1).then(|| config::RunConfig::model_tail(m).to_string());
    run.models.iter().map(|m| (m.clone(), label(m))).collect()
}

pub(crate) fn record_name(test: &str, label: Option<&str>) -> String {
    match label {
        Some(l) => format!("{test}@{l}"),
        None => test.to_string(),
    }
}
