//! Dispatch of each subcommand to the module that does the work.

use std::time::Duration;

use crate::ci;
use crate::cli::{
    CleanupArgs, Cli, Command, ConfigCommand, ReportArgs, SetupArgs, SetupCommand, SimCommand,
};
use crate::compare;
use crate::engine;
use crate::error::Error;
use crate::report::publish;
use crate::report::results::{write_atomic, RunResults};

pub(crate) async fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Ci(args) => ci::run(args).await,
        Command::List(args) => {
            let loaded = ci::load_suite(&args)?;
            for (name, test) in &loaded.suite.tests {
                let state = if test.enabled { "" } else { "  (disabled)" };
                println!(
                    "{name}  [{}]  {} checks{state}",
                    test.kind.as_str(),
                    test.checks.len()
                );
            }
            Ok(())
        }
        Command::Config(ConfigCommand::Show(args)) => {
            let loaded = ci::load_suite(&args)?;
            let rows = loaded.show();
            let width = rows
                .iter()
                .map(|(k, v, _)| k.len() + v.len() + 3)
                .max()
                .unwrap_or(0);
            println!("# effective suite (base: {})", loaded.base);
            for (key, value, source) in rows {
                let line = format!("{key} = {value}");
                println!("{line:<width$}  # {source}");
            }
            Ok(())
        }
        Command::Report(args) => report(args).await,
        Command::Recommend(args) => {
            use crate::setup::recommend;
            let (path, cfg) = recommend::find_config(&args.model, args.config.as_deref())?;
            let (gpus, gpu_mib) = match (args.gpus, args.gpu_mib) {
                (Some(n), Some(m)) => (n, m),
                (n, m) => {
                    let smi = which::which("nvidia-smi")
                        .map_err(|_| recommend::RecommendError::NoGpus)?;
                    let out = std::process::Command::new(smi)
                        .args(engine::gpu::QUERY_ARGS)
                        .output()
                        .map_err(|e| engine::gpu::GpuError::Query(e.to_string()))?;
                    let states = engine::gpu::parse(&String::from_utf8_lossy(&out.stdout))?;
                    let mem = states
                        .iter()
                        .filter_map(|g| g.memory_total_mib)
                        .min()
                        .unwrap_or(0);
                    (n.unwrap_or(states.len()), m.unwrap_or(mem))
                }
            };
            let ram = args
                .host_ram_gb
                .or_else(recommend::host_ram_gb)
                .unwrap_or(0.0);
            let r = recommend::recommend(&args.model, &cfg, gpus, gpu_mib, ram)?;
            println!(
                "# {} from {}: {:.1} B parameters, {} KiB of KV per token; {gpus} GPU(s) of {gpu_mib} MiB, {ram:.0} GB RAM available\n",
                args.model,
                path.display(),
                cfg.params() as f64 / 1e9,
                cfg.kv_bytes_per_token() / 1024
            );
            println!("{}", recommend::render(&args.model, &r));
            Ok(())
        }
        Command::Setup(SetupArgs {
            step: None,
            check: true,
            suite,
        }) => {
            let loaded = ci::load_suite(&suite)?;
            let checks = crate::setup::prereqs::check(&loaded.suite);
            println!("{}", crate::setup::prereqs::table(&checks));
            let missing: Vec<&str> = checks
                .iter()
                .filter(|c| c.required && c.found.is_none())
                .map(|c| c.name)
                .collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(Error::Setup(crate::setup::env::SetupError::Missing(
                    missing.join(", "),
                )))
            }
        }
        Command::Setup(SetupArgs {
            step: None, suite, ..
        }) => {
            let loaded = ci::load_suite(&suite)?;
            let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
            if github {
                eprintln!("::group::lmcache-e2e setup");
            } else if std::env::var("BUILDKITE").is_ok_and(|v| v == "true") {
                eprintln!("--- lmcache-e2e setup");
            }
            let started = std::time::Instant::now();
            let result = crate::setup::env::setup(&loaded.suite.setup, &loaded.suite_dir());
            if github {
                eprintln!("::endgroup::");
            }
            let steps = result?;
            let changed = steps.iter().filter(|s| s.changed).count();
            println!(
                "setup: {} steps, {changed} changed, {:.2} s",
                steps.len(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Gpus(args) => {
            let req = engine::gpu::GpuRequest {
                count: args.count,
                min_free_mib: args.min_free_mib,
                max_util_pct: args.max_util_pct,
                timeout: Duration::from_secs_f64(args.timeout_secs.max(0.0)),
                poll: Duration::from_secs_f64(args.poll_secs.max(0.01)),
            };
            let chosen = engine::gpu::choose_gpus(&req).await?;
            println!(
                "{}",
                chosen
                    .iter()
                    .map(|g| g.index.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            );
            Ok(())
        }
        Command::Compare(args) => {
            let reports = compare::run(&args.files, args.max_accuracy_drop, args.max_subject_drop)?;
            for r in &reports {
                println!("{}", r.text);
            }
            let failed: Vec<&str> = reports
                .iter()
                .filter(|r| !r.passed)
                .map(|r| r.model.as_str())
                .collect();
            if failed.is_empty() {
                Ok(())
            } else {
                Err(Error::Failed(format!(
                    "LMCache changed MMLU accuracy beyond the thresholds for: {}",
                    failed.join(", ")
                )))
            }
        }
        Command::Setup(SetupArgs {
            step: Some(SetupCommand::Data(args)),
            ..
        }) => {
            let started = std::time::Instant::now();
            let p = crate::setup::mmlu_data::prepare(&args.archive, &args.into)?;
            let what = if p.extracted {
                "extracted"
            } else {
                "already up to date"
            };
            println!(
                "MMLU data {what}: {} ({} subjects{}) in {:.2} s",
                p.data_dir.display(),
                p.subjects,
                p.sha256
                    .map(|s| format!(", sha256 {s}"))
                    .unwrap_or_default(),
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Cleanup(args) => cleanup(args).await,
        Command::Sim(SimCommand::Serve(args)) => {
            engine::sim::serve(&args.host, args.port, args.options)
                .await
                .map_err(|e| {
                    Error::Engine(engine::EngineError::Spawn {
                        engine: "sim".into(),
                        command: "lmcache-e2e sim serve".into(),
                        source: std::io::Error::other(e.to_string()),
                    })
                })
        }
    }
}

async fn report(args: ReportArgs) -> Result<(), Error> {
    let mut results = RunResults::read(&args.results_dir)?;
    // Another job downloads the results elsewhere: reports go beside them.
    results.results_dir = args.results_dir.clone();
    let env = |k: &str| std::env::var(k).ok();
    let delivered =
        publish::publish(&results, &args.report, false, &publish::Env { get: &env }).await?;
    let md = std::fs::read_to_string(&delivered.summary_md).map_err(|source| {
        crate::report::ReportError::Read {
            path: delivered.summary_md.clone(),
            source,
        }
    })?;
    match args.output {
        Some(path) => write_atomic(&path, md.as_bytes())?,
        None => println!("{md}"),
    }
    Ok(())
}

async fn cleanup(args: CleanupArgs) -> Result<(), Error> {
    let grace = Duration::from_secs_f64(args.grace_period_secs.max(0.0));
    let records = match (&args.results_dir, &args.run_id) {
        (Some(dir), _) => engine::cleanup_from_state(&dir.join("state.json"), grace).await?,
        (None, run_id) => {
            let cli = which::which(&args.cli).map_err(|source| engine::EngineError::NotFound {
                engine: "cleanup".into(),
                command: args.cli.clone(),
                source,
            })?;
            let filter = match run_id {
                Some(id) => engine::LabelFilter::Run(id),
                None => engine::LabelFilter::Stale,
            };
            engine::cleanup_by_label(&cli, filter, grace).await?
        }
    };
    if records.is_empty() {
        println!("nothing to clean up");
    }
    for r in records {
        println!("{}: {}: {}", r.name, r.what, r.action);
    }
    Ok(())
}
