//! Exports for the dashboards teams already run, one module per format
//! (hyperfine's exporters are the model): Bencher Metric Format and
//! github-action-benchmark's custom JSON, each writing every finite metric
//! of every engine and every check's value, with its interval where it has
//! one. `FORMATS` is the one list of them.

mod api;
mod bencher;
mod benchmark;
mod rows;

pub(crate) use api::Exporter;

/// Every export format, in the order `--format`'s help gives them.
pub(crate) const FORMATS: &[&dyn Exporter] =
    &[&bencher::Bencher, &benchmark::Smaller, &benchmark::Bigger];

/// A format `--format` named that no row of the table is.
#[derive(Debug, thiserror::Error)]
#[error("no export format `{asked}`; the formats are {known}")]
pub(crate) struct UnknownFormat {
    asked: String,
    known: String,
}

/// The format of `table` named `name`.
pub(crate) fn find<'a>(
    table: &[&'a dyn Exporter],
    name: &str,
) -> Result<&'a dyn Exporter, UnknownFormat> {
    table
        .iter()
        .copied()
        .find(|f| f.name() == name)
        .ok_or_else(|| UnknownFormat {
            asked: name.to_string(),
            known: table
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::samples;
    use crate::results::Better;
    use crate::results::RunResults;
    use serde_json::{json, Value};

    fn export(table: &[&dyn Exporter], name: &str, r: &RunResults) -> Result<Value, UnknownFormat> {
        find(table, name).map(|f| f.export(r))
    }

    fn github_benchmark(r: &RunResults, which: Better) -> Value {
        let format = match which {
            Better::Smaller => "benchmark-smaller",
            Better::Bigger => "benchmark-bigger",
        };
        export(FORMATS, format, r).unwrap()
    }

    fn bencher(r: &RunResults) -> Value {
        export(FORMATS, "bencher", r).unwrap()
    }

    /// A format made here, beside the real ones, goes through the same
    /// lookup: what a new format needs is its `Exporter` and its row.
    #[test]
    fn a_new_format_is_its_exporter_and_a_row() {
        struct Toy;
        impl Exporter for Toy {
            fn name(&self) -> &'static str {
                "toy"
            }
            fn export(&self, results: &RunResults) -> Value {
                json!({ "suite": results.suite, "tests": results.tests.len() })
            }
        }
        let r = samples::gate_failure();
        let table: Vec<&dyn Exporter> = FORMATS
            .iter()
            .copied()
            .chain([&Toy as &dyn Exporter])
            .collect();
        let v = export(&table, "toy", &r).unwrap();
        assert_eq!(v["suite"], json!(r.suite));
        assert_eq!(export(&table, "bencher", &r).unwrap(), bencher(&r));
        let err = export(FORMATS, "toy", &r).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no export format `toy`; the formats are bencher, benchmark-smaller, benchmark-bigger"
        );
    }

    /// `export --format`'s help names every format, so one added here is
    /// one a user can find.
    #[test]
    fn the_help_names_every_format() {
        use clap::CommandFactory;
        let mut cmd = crate::cli::Cli::command();
        let export = cmd.find_subcommand_mut("export").unwrap();
        let help = export
            .get_arguments()
            .find(|a| a.get_id() == "format")
            .and_then(|a| a.get_long_help().or(a.get_help()))
            .map(|h| h.to_string())
            .unwrap();
        for f in FORMATS {
            assert!(
                help.contains(&format!("`{}`", f.name())),
                "{} in {help}",
                f.name()
            );
        }
    }

    #[test]
    fn a_metric_goes_where_its_declared_direction_says_and_none_is_left_out() {
        let r = samples::gate_failure();
        let names = |b: Better| -> Vec<String> {
            github_benchmark(&r, b)
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect()
        };
        let (smaller, bigger) = (names(Better::Smaller), names(Better::Bigger));
        let has = |v: &[String], metric: &str| v.iter().any(|n| n.contains(metric));
        assert!(has(&smaller, "query_ttft_per_prompt"), "{smaller:?}");
        assert!(!has(&bigger, "query_ttft_per_prompt"), "{bigger:?}");
        // The sample declares no direction for `requests`-like counts.
        let all = [smaller, bigger].concat();
        assert!(!has(&all, "questions"), "{all:?}");
    }

    #[test]
    fn bencher_has_one_benchmark_per_test_and_engine_with_intervals() {
        let r = samples::gate_failure();
        let v = bencher(&r);
        let obj = v.as_object().unwrap();
        assert!(!obj.is_empty());
        for (bench, measures) in obj {
            assert!(bench.starts_with(&format!("{}/", r.suite)), "{bench}");
            for (slug, m) in measures.as_object().unwrap() {
                assert!(slug.len() <= 64 && !slug.contains('_'), "{slug}");
                assert!(m["value"].is_number());
                assert_eq!(
                    m.get("lower_value").is_some(),
                    m.get("upper_value").is_some()
                );
            }
        }
        assert!(obj.keys().any(|k| k.ends_with("/checks")));
    }

    #[test]
    fn github_benchmark_splits_by_direction() {
        let r = samples::gate_failure();
        let smaller = github_benchmark(&r, Better::Smaller);
        let bigger = github_benchmark(&r, Better::Bigger);
        let names = |v: &Value| -> Vec<String> {
            v.as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_string())
                .collect()
        };
        let (s, b) = (names(&smaller), names(&bigger));
        assert!(!s.is_empty() && !b.is_empty());
        assert!(s.iter().all(|n| !b.contains(n)));
    }
}
