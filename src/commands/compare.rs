//! `lmcache-e2e compare`: the MMLU comparison and gate on jsonl files written
//! by today's Python scripts, printed per model.

/// `compare FILES...`: prints each model's report and fails (exit 1) on a
/// regression.
pub(crate) fn command(args: &crate::cli::CompareArgs) -> Result<(), crate::error::Error> {
    let reports =
        crate::run::compare::run(&args.files, args.max_accuracy_drop, args.max_subject_drop)?;
    for r in &reports {
        super::common::Out::new().line(&r.text);
    }
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.model.as_str())
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(crate::error::Error::Failed(format!(
            "LMCache changed MMLU accuracy beyond the thresholds for: {}",
            failed.join(", ")
        )))
    }
}
